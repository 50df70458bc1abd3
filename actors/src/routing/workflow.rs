//! Workflows as in TaskRouter: ordered filters over the interaction (first match wins), each with
//! a cascade of steps. [`WorkflowSpec`] is what configuration files and the REST API carry;
//! the router compiles it once ([`crate::routing::router::Router::set_workflow`]).

use crate::routing::expr::{Expr, ExprError};
use crate::routing::ids::QueueId;
use crate::routing::order::AgentOrder;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// A workflow as configured.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct WorkflowSpec {
    /// Filters, tried in order.
    pub filters: Vec<FilterSpec>,
    /// Where interactions no filter matches go (`None`: they are refused).
    #[serde(default)]
    pub default_queue: Option<QueueId>,
}

/// One filter.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FilterSpec {
    /// A name for explanations.
    pub name: String,
    /// Expression over the interaction (`attributes.vip == true`).
    pub expression: String,
    /// Steps, tried in order as each times out or is skipped.
    pub steps: Vec<StepSpec>,
}

/// One step.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StepSpec {
    /// The queue the interaction waits in during this step.
    pub queue: QueueId,
    /// Which agents of the queue qualify (`skills.billing >= 3`); none: all of them.
    #[serde(default)]
    pub target: Option<String>,
    /// How to choose among qualifying agents.
    #[serde(default)]
    pub order: AgentOrder,
    /// After this long in the step, move to the next one (none: stay).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Skip the step when true (`available == 0`).
    #[serde(default)]
    pub skip_if: Option<String>,
    /// Voice only: ring every qualifying agent at once, the first to accept wins.
    #[serde(default)]
    pub ring_all: bool,
    /// Set the interaction's priority on entering the step.
    #[serde(default)]
    pub priority: Option<u32>,
    /// Raise the interaction's age boost to at least this on entering the step.
    #[serde(default)]
    pub boost_ms: u64,
}

/// A workflow that does not compile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkflowError {
    /// Index of the filter.
    pub filter: usize,
    /// Index of the step, if the error is in one.
    pub step: Option<usize>,
    /// Which field.
    pub field: &'static str,
    /// What is wrong.
    pub kind: WorkflowErrorKind,
}

/// What is wrong in a workflow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorkflowErrorKind {
    /// An expression does not parse or names something unknown.
    Expr(ExprError),
    /// A step names a queue the router does not have.
    UnknownQueue(QueueId),
    /// A filter has no step.
    NoSteps,
}

impl fmt::Display for WorkflowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "filter {}", self.filter)?;
        if let Some(s) = self.step {
            write!(f, " step {s}")?;
        }
        write!(f, " {}: ", self.field)?;
        match &self.kind {
            WorkflowErrorKind::Expr(e) => e.fmt(f),
            WorkflowErrorKind::UnknownQueue(q) => write!(f, "unknown queue {q}"),
            WorkflowErrorKind::NoSteps => f.write_str("no steps"),
        }
    }
}

impl std::error::Error for WorkflowError {}

/// A compiled step.
#[derive(Clone, Debug)]
pub(crate) struct Step {
    /// Dense queue slot.
    pub queue: u32,
    /// Target class.
    pub class: u32,
    pub order: AgentOrder,
    pub timeout_ms: Option<u64>,
    pub skip_if: Option<Expr>,
    pub ring_all: bool,
    pub priority: Option<u32>,
    pub boost_ms: u64,
}

impl Step {
    /// The implicit step of an interaction sent straight to a queue: any agent, longest idle.
    pub fn direct(queue: u32) -> Step {
        Step {
            queue,
            class: 0,
            order: AgentOrder::LongestIdle,
            timeout_ms: None,
            skip_if: None,
            ring_all: false,
            priority: None,
            boost_ms: 0,
        }
    }
}

/// A compiled filter.
#[derive(Clone, Debug)]
pub(crate) struct Filter {
    pub name: Arc<str>,
    pub expr: Expr,
    pub steps: Vec<Step>,
}

/// A compiled workflow.
#[derive(Clone, Debug, Default)]
pub(crate) struct Workflow {
    pub filters: Vec<Filter>,
    /// Dense slot of the default queue.
    pub default_queue: Option<u32>,
}
