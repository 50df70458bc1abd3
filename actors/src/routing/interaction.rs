//! The interaction: one customer contact on any channel, and its validated state machine.
//!
//! ```text
//!            ┌──────────── reject / offer timeout ───────────┐
//!            ▼                                               │
//! Queued ──offer──▶ Offered ──accept──▶ Assigned ──end──▶ Wrapping ──▶ Completed
//!   │  ▲              │                    │
//!   │  └─ (callback) ─┤                    └──transfer──▶ Transferred
//!   ▼                 ▼
//! Callback        Abandoned  (customer left while queued or offered)
//! ```
//!
//! `Callback` is a waiting state: the customer hung up but keeps their place in line; when their
//! turn comes the interaction is offered like any other. `Transferred` also covers leaving routing
//! without an agent (max wait, empty queue, no route): the interaction goes to a fallback.

use crate::routing::ids::{AgentId, Channel, InteractionId, QueueId};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

/// Who the customer is, as far as routing cares.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    /// A stable customer id (CRM contact id), if known.
    pub id: Option<String>,
    /// Where they are reached: a SIP URI or phone number, a chat session, an e-mail address.
    pub address: Option<String>,
}

/// What the caller gives the router for a new interaction.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NewInteraction {
    /// Its id (unique among live interactions).
    pub id: InteractionId,
    /// Its channel.
    pub channel: Channel,
    /// The customer.
    #[serde(default)]
    pub customer: Customer,
    /// Free-form attributes the workflow filters and targets read.
    #[serde(default)]
    pub attributes: Value,
    /// Priority: higher is served first.
    #[serde(default)]
    pub priority: u32,
    /// Send it straight to this queue instead of through the workflow.
    #[serde(default)]
    pub queue: Option<QueueId>,
}

/// Where an interaction is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InteractionState {
    /// Waiting in a queue.
    Queued,
    /// Waiting in a queue for a call back, the customer no longer on the line.
    Callback,
    /// Reserved for one agent (or rung on several) until accepted, rejected or timed out.
    Offered,
    /// An agent is working on it.
    Assigned,
    /// The conversation ended; the agent is in after-contact work.
    Wrapping,
    /// Done.
    Completed,
    /// The customer left before an agent took it.
    Abandoned,
    /// Handed elsewhere: another queue or agent (a new interaction), or a fallback destination.
    Transferred,
}

impl InteractionState {
    /// Whether `self → next` is a legal transition.
    pub fn can_become(self, next: InteractionState) -> bool {
        use InteractionState::*;
        matches!(
            (self, next),
            (
                Queued,
                Offered | Callback | Abandoned | Transferred | Queued
            ) | (Callback, Offered | Abandoned | Transferred | Callback)
                | (Offered, Assigned | Queued | Callback | Abandoned)
                | (Assigned, Wrapping | Transferred)
                | (Wrapping, Completed)
        )
    }

    /// Whether nothing can follow.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            InteractionState::Completed
                | InteractionState::Abandoned
                | InteractionState::Transferred
        )
    }

    /// Whether it is waiting in line (queued or callback, not offered).
    pub fn is_waiting(self) -> bool {
        matches!(self, InteractionState::Queued | InteractionState::Callback)
    }
}

impl fmt::Display for InteractionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A refused state change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransitionError {
    /// The interaction.
    pub id: InteractionId,
    /// Its state.
    pub from: InteractionState,
    /// The state asked for.
    pub to: InteractionState,
}

impl fmt::Display for TransitionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: cannot go from {} to {}",
            self.id, self.from, self.to
        )
    }
}

impl std::error::Error for TransitionError {}

/// When things happened (milliseconds of the router's clock).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timestamps {
    /// Entered routing. Queue age is measured from here, across overflow steps.
    pub created: u64,
    /// Joined its current queue.
    pub queued: Option<u64>,
    /// Last offered.
    pub offered: Option<u64>,
    /// Accepted by an agent.
    pub assigned: Option<u64>,
    /// Conversation ended, after-contact work started.
    pub wrap_started: Option<u64>,
    /// Reached a terminal state.
    pub ended: Option<u64>,
}

/// Which workflow step an interaction is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StepRef {
    /// Step `step` of filter `filter` of workflow version `workflow`.
    Workflow {
        workflow: u32,
        filter: u32,
        step: u32,
    },
    /// Sent straight to a queue (dense queue slot): its implicit single step.
    Direct(u32),
}

/// Router bookkeeping carried by each interaction.
#[derive(Clone, Debug)]
pub(crate) struct RouteState {
    /// The current step.
    pub step: StepRef,
    /// Bumped on every step (queue) change; stale step timers carry an older value.
    pub step_gen: u32,
    /// Bumped on every offer; stale offer timers carry an older value.
    pub offer_gen: u32,
    /// Agent slots that rejected or missed it on this step.
    pub rejected: Vec<u32>,
    /// Agent slots it is offered to now.
    pub offered_to: Vec<u32>,
    /// Whether the current offer rings several agents at once.
    pub ring_all: bool,
    /// Offer expiry.
    pub expires_at: u64,
    /// Current hold start, if on hold.
    pub hold_since: Option<u64>,
    /// Dense slot of the current queue.
    pub queue_slot: Option<u32>,
    /// Lane (class × channel) in that queue.
    pub lane: u32,
}

/// One customer contact.
#[derive(Clone, Debug)]
pub struct Interaction {
    /// Its id.
    pub id: InteractionId,
    /// Its channel.
    pub channel: Channel,
    /// The customer.
    pub customer: Customer,
    /// Free-form attributes.
    pub attributes: Value,
    /// Priority: higher first.
    pub priority: u32,
    /// Age boost in milliseconds: it sorts as if it had arrived this much earlier.
    pub boost_ms: u64,
    /// Its current queue.
    pub queue: Option<QueueId>,
    /// Its state.
    pub state: InteractionState,
    /// When things happened.
    pub times: Timestamps,
    /// The agent working on it (assigned, wrapping) or last offered it.
    pub agent: Option<AgentId>,
    /// The number to call back, once a callback is requested.
    pub callback: Option<String>,
    /// The wrap-up disposition code.
    pub disposition: Option<String>,
    /// The interaction this one was transferred from.
    pub transferred_from: Option<InteractionId>,
    pub(crate) route: RouteState,
}

impl Interaction {
    pub(crate) fn new(n: NewInteraction, now: u64, step: StepRef) -> Interaction {
        Interaction {
            id: n.id,
            channel: n.channel,
            customer: n.customer,
            attributes: n.attributes,
            priority: n.priority,
            boost_ms: 0,
            queue: None,
            state: InteractionState::Queued,
            times: Timestamps {
                created: now,
                ..Timestamps::default()
            },
            agent: None,
            callback: None,
            disposition: None,
            transferred_from: None,
            route: RouteState {
                step,
                step_gen: 0,
                offer_gen: 0,
                rejected: Vec::new(),
                offered_to: Vec::new(),
                ring_all: false,
                expires_at: 0,
                hold_since: None,
                queue_slot: None,
                lane: 0,
            },
        }
    }

    /// Moves to `to` if the state machine allows it, stamping the time.
    pub fn transition(&mut self, to: InteractionState, now: u64) -> Result<(), TransitionError> {
        if !self.state.can_become(to) {
            return Err(TransitionError {
                id: self.id,
                from: self.state,
                to,
            });
        }
        match to {
            InteractionState::Offered => self.times.offered = Some(now),
            InteractionState::Assigned => self.times.assigned = Some(now),
            InteractionState::Wrapping => self.times.wrap_started = Some(now),
            s if s.is_terminal() => self.times.ended = Some(now),
            _ => {}
        }
        self.state = to;
        Ok(())
    }

    /// How long it has waited since entering routing.
    pub fn waited(&self, now: u64) -> u64 {
        now.saturating_sub(self.times.created)
    }

    /// Whether the customer asked to be called back.
    pub fn is_callback(&self) -> bool {
        self.callback.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_are_validated() {
        use InteractionState::*;
        let n = NewInteraction {
            id: InteractionId(1),
            channel: Channel::Chat,
            customer: Customer::default(),
            attributes: Value::Null,
            priority: 0,
            queue: None,
        };
        let mut i = Interaction::new(n, 5, StepRef::Direct(0));
        assert!(i.transition(Assigned, 6).is_err(), "must be offered first");
        i.transition(Offered, 6).unwrap();
        i.transition(Assigned, 7).unwrap();
        assert!(i.transition(Queued, 8).is_err());
        i.transition(Wrapping, 9).unwrap();
        i.transition(Completed, 10).unwrap();
        assert_eq!(i.times.ended, Some(10));
        for s in [Queued, Offered, Assigned, Wrapping, Abandoned, Callback] {
            assert!(i.transition(s, 11).is_err(), "{s} after Completed");
        }
    }
}
