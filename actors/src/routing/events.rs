//! What the router reports: immutable routing events (the source of metrics and history) and
//! explanations of each decision.

use crate::routing::agent::AgentStatus;
use crate::routing::ids::{AgentId, Channel, InteractionId, QueueId};
use crate::routing::order::AgentOrder;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// One immutable fact, stamped with the router's clock. Metrics are a fold over these, so live
/// and historical figures agree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutingEvent {
    /// When (ms).
    pub at: u64,
    /// What.
    pub kind: EventKind,
}

/// Why an interaction left routing without an agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitReason {
    /// It waited the queue's `max_wait_ms`.
    MaxWait,
    /// The last agent logged out of a `leave_when_empty` queue.
    QueueEmpty,
}

/// The facts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// Joined a queue (first step, overflow, transfer or move).
    Queued {
        /// The interaction.
        interaction: InteractionId,
        /// The queue.
        queue: QueueId,
        /// Its channel.
        channel: Channel,
    },
    /// Offered to an agent.
    Offered {
        /// The interaction.
        interaction: InteractionId,
        /// The agent.
        agent: AgentId,
        /// The queue.
        queue: QueueId,
    },
    /// An offer ended without an answer.
    OfferEnded {
        /// The interaction.
        interaction: InteractionId,
        /// The agent.
        agent: AgentId,
        /// Why.
        outcome: OfferOutcome,
    },
    /// An agent accepted.
    Answered {
        /// The interaction.
        interaction: InteractionId,
        /// The agent.
        agent: AgentId,
        /// The queue it was answered from.
        queue: QueueId,
        /// Its channel.
        channel: Channel,
        /// Time since it entered routing.
        waited_ms: u64,
    },
    /// The customer left before an agent took it.
    Abandoned {
        /// The interaction.
        interaction: InteractionId,
        /// The queue it waited in.
        queue: Option<QueueId>,
        /// Time since it entered routing.
        waited_ms: u64,
    },
    /// The customer asked for a call back and keeps their place.
    CallbackRequested {
        /// The interaction.
        interaction: InteractionId,
        /// The queue.
        queue: QueueId,
    },
    /// Put on hold.
    HoldStarted {
        /// The interaction.
        interaction: InteractionId,
    },
    /// Taken off hold (or ended while on hold).
    HoldEnded {
        /// The interaction.
        interaction: InteractionId,
    },
    /// Conversation over; after-contact work starts.
    WrapUpStarted {
        /// The interaction.
        interaction: InteractionId,
        /// The agent.
        agent: AgentId,
    },
    /// After-contact work over; the agent is done with it.
    Completed {
        /// The interaction.
        interaction: InteractionId,
        /// The agent.
        agent: AgentId,
        /// The queue it was answered from.
        queue: Option<QueueId>,
        /// The disposition code.
        disposition: Option<String>,
    },
    /// Handed to another queue as a new interaction.
    Transferred {
        /// The interaction.
        interaction: InteractionId,
        /// The new interaction.
        to: InteractionId,
        /// The queue it went to.
        queue: QueueId,
    },
    /// Left routing without an agent.
    Exited {
        /// The interaction.
        interaction: InteractionId,
        /// The queue it waited in.
        queue: Option<QueueId>,
        /// Why.
        reason: ExitReason,
    },
    /// An agent's visible status changed.
    AgentStatus {
        /// The agent.
        agent: AgentId,
        /// The new status.
        status: AgentStatus,
    },
}

/// How an offer ended without being accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OfferOutcome {
    /// The agent rejected it.
    Rejected,
    /// Nobody answered in time (counts towards auto-pause unless ring-all).
    TimedOut,
    /// Withdrawn: another agent took it, the customer left, the agent logged out.
    Rescinded,
}

/// What made the router decide.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// The interaction arrived.
    Arrived,
    /// The interaction moved to a new step.
    StepChanged,
    /// An agent's queue delay elapsed for it.
    DelayElapsed,
    /// It came back after a reject or missed offer.
    Returned,
    /// This agent became free.
    AgentFree(AgentId),
}

/// Why the chosen agents were chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// By the step's ordering, with the winning figure (idle ms, talk ms, handled count, skill
    /// score; 0 for round-robin and random).
    Ordering(AgentOrder, u64),
    /// Every matching agent rings (voice ring-all).
    RingAll,
    /// The agent became free and this was the first interaction in line it can serve, from the
    /// highest-priority queue of its routing profile that had one.
    NextInLine {
        /// The profile priority of the queue.
        profile_priority: u32,
    },
    /// No agent can take it now; it waits.
    NoAgent,
}

/// Why an open agent was passed over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Excluded {
    /// The queue is not in the agent's routing profile.
    NotInQueue,
    /// The agent's delay for this queue has not elapsed.
    Delay,
    /// The step's target expression is false for this agent.
    Target,
    /// The agent already rejected or missed it on this step.
    Rejected,
}

/// One routing decision.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// When.
    pub at: u64,
    /// The interaction.
    pub interaction: InteractionId,
    /// What caused it.
    pub trigger: Trigger,
    /// The workflow filter (`None`: sent straight to a queue).
    pub filter: Option<Arc<str>>,
    /// The step index within the filter.
    pub step: u32,
    /// The queue.
    pub queue: QueueId,
    /// Agents offered (empty: it waits).
    pub chosen: Vec<AgentId>,
    /// Why them.
    pub why: Why,
    /// How many agents matched.
    pub candidates: u32,
    /// Some open agents that were passed over, with the reason (capped by the router config).
    pub skipped: Vec<(AgentId, Excluded)>,
}

/// Why a step was entered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepReason {
    /// The first step of the filter.
    First,
    /// The previous step timed out.
    Timeout,
}

/// Why a step was skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// Its `skip_if` was true.
    SkipIf,
    /// Its queue was full.
    QueueFull,
    /// Its queue had no agent logged in and refuses to join then.
    QueueEmpty,
    /// It was the last step: the interaction stays where it is.
    LastStep,
}

/// An explanation of what the router did and why.
#[derive(Clone, Debug, PartialEq)]
pub enum Explanation {
    /// A filter matched the new interaction (`None`: none did, the default queue took it; or it
    /// named its queue).
    FilterMatched {
        /// When.
        at: u64,
        /// The interaction.
        interaction: InteractionId,
        /// The filter.
        filter: Option<Arc<str>>,
    },
    /// It entered a step.
    StepEntered {
        /// When.
        at: u64,
        /// The interaction.
        interaction: InteractionId,
        /// The step index.
        step: u32,
        /// The step's queue.
        queue: QueueId,
        /// Why.
        reason: StepReason,
    },
    /// It skipped a step.
    StepSkipped {
        /// When.
        at: u64,
        /// The interaction.
        interaction: InteractionId,
        /// The step index.
        step: u32,
        /// Why.
        reason: SkipReason,
    },
    /// A routing decision.
    Decision(Decision),
}
