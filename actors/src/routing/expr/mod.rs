//! The routing expression language: filters over interactions, targets over agents.
//!
//! ```text
//! skills.billing >= 3 AND languages HAS "fr"
//! attributes.vip == true OR priority > 5
//! task.attributes.tier IN ["gold", "platinum"] AND NOT attributes.trainee
//! ```
//!
//! An expression is parsed and resolved **once** ([`Expr::compile`]) into a tree whose skill and
//! language names are already small integers; evaluating it ([`Expr::eval`]) allocates nothing.
//! Parse and name errors carry the byte offset where they start.
//!
//! Names depend on the [`Scope`]:
//!
//! | name | filter / skip_if | target |
//! |---|---|---|
//! | `attributes.PATH` | the interaction's attributes | the agent's attributes |
//! | `task.attributes.PATH`, `task.PATH` | the interaction's attributes | same |
//! | `channel`, `priority` / `task.channel`, `task.priority` | the interaction | `task.` form only |
//! | `skills.NAME` | error | the agent's proficiency (0 when absent) |
//! | `languages` | error | the agent's languages |
//! | `agent.attributes.PATH`, `agent.id` | error | the agent |
//! | `available`, `waiting` | skip_if only: matching agents open now, queue length | error |
//!
//! Comparisons between values of different types are false (`!=` is true); a missing path is `null`.

mod compile;
mod eval;
mod lexer;
mod parser;

use crate::routing::ids::Channel;
use crate::routing::vocab::{LangId, SkillId, Vocabulary};
use serde_json::Value;
use std::fmt;
use std::sync::Arc;

pub(crate) use compile::Node;

/// Where an expression is used; decides which names it may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// A workflow filter: sees the interaction.
    Filter,
    /// A step target: sees the agent (bare names) and the interaction (`task.`).
    Target,
    /// A step's `skip_if`: sees the interaction and the step's live figures.
    SkipIf,
}

/// A parse or name error, with the byte offset where it starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExprError {
    /// Byte offset in the source (0-based).
    pub pos: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at offset {}: {}", self.pos, self.message)
    }
}

impl std::error::Error for ExprError {}

/// What an agent looks like to an expression.
#[derive(Clone, Copy, Debug)]
pub struct AgentView<'a> {
    /// The agent's id.
    pub id: u32,
    /// Proficiency by [`SkillId`] index (0 = no skill).
    pub skills: &'a [u8],
    /// Languages spoken.
    pub languages: &'a [LangId],
    /// Free-form attributes.
    pub attributes: &'a Value,
}

/// What an interaction looks like to an expression.
#[derive(Clone, Copy, Debug)]
pub struct TaskView<'a> {
    /// Its channel.
    pub channel: Channel,
    /// Its priority.
    pub priority: u32,
    /// Its attributes.
    pub attributes: &'a Value,
}

/// Live figures a `skip_if` can test.
#[derive(Clone, Copy, Debug, Default)]
pub struct StepStats {
    /// Agents open now that match the step (`available`).
    pub available: u32,
    /// Interactions waiting in the step's queue (`waiting`).
    pub waiting: u32,
}

/// Everything an evaluation may look at.
#[derive(Clone, Copy, Debug)]
pub struct Ctx<'a> {
    /// The agent, for targets.
    pub agent: Option<AgentView<'a>>,
    /// The interaction.
    pub task: Option<TaskView<'a>>,
    /// Step figures, for `skip_if`.
    pub stats: Option<StepStats>,
    /// Name tables (languages compared by name at run time).
    pub vocab: &'a Vocabulary,
}

/// A compiled expression. Cheap to clone (the source is shared).
#[derive(Clone, Debug)]
pub struct Expr {
    source: Arc<str>,
    node: Node,
    uses_task: bool,
    skills: Vec<SkillId>,
}

impl Expr {
    /// Parses and resolves `source` for `scope`, interning skill and language names in `vocab`.
    pub fn compile(source: &str, scope: Scope, vocab: &mut Vocabulary) -> Result<Expr, ExprError> {
        let ast = parser::parse(source)?;
        let node = compile::resolve(ast, scope, vocab)?;
        Ok(Self::from_node(source.into(), node))
    }

    fn from_node(source: Arc<str>, node: Node) -> Expr {
        let mut skills = Vec::new();
        node.skills(&mut skills);
        skills.sort();
        skills.dedup();
        Expr {
            uses_task: node.uses_task(),
            source,
            node,
            skills,
        }
    }

    /// An expression that is always true.
    pub fn always() -> Expr {
        Expr::from_node("true".into(), Node::Const(true))
    }

    /// Evaluates to a boolean (a non-boolean result is tested for truthiness).
    #[inline]
    pub fn eval(&self, ctx: &Ctx<'_>) -> bool {
        self.node.eval(ctx)
    }

    /// The text it was compiled from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether it reads the interaction (then it must be evaluated per interaction).
    pub fn uses_task(&self) -> bool {
        self.uses_task
    }

    /// Whether it is the constant `true`.
    pub fn is_always(&self) -> bool {
        matches!(self.node, Node::Const(true))
    }

    /// The skills it mentions (for best-skill scoring).
    pub fn skills(&self) -> &[SkillId] {
        &self.skills
    }

    /// Splits a target into the part that reads only the agent (indexable once per agent) and
    /// the part that also reads the interaction (`None` when there is none). The conjunction of
    /// the two equals the original.
    pub fn split_by_task(&self) -> (Expr, Option<Expr>) {
        if !self.uses_task {
            return (self.clone(), None);
        }
        let (agent_only, with_task): (Vec<Node>, Vec<Node>) = match &self.node {
            Node::And(items) => items.iter().cloned().partition(|n| !n.uses_task()),
            other => (Vec::new(), vec![other.clone()]),
        };
        let join = |mut v: Vec<Node>| match v.len() {
            0 => Node::Const(true),
            1 => v.remove(0),
            _ => Node::And(v.into_boxed_slice()),
        };
        let mut stat = Self::from_node(self.source.clone(), join(agent_only));
        // The agent part scores with every skill the whole target mentions.
        stat.skills = self.skills.clone();
        let dynamic = Self::from_node(self.source.clone(), join(with_task));
        (stat, Some(dynamic))
    }
}

#[cfg(test)]
mod tests;
