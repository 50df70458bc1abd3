//! The contact-centre routing core (issue 8): interactions, agents, queues, a TaskRouter-style
//! workflow router with Amazon Connect routing profiles, and metrics from immutable events.
//!
//! Everything here is **sans-IO**: plain state machines driven with simulated time (`now` in
//! milliseconds), no actors, sockets, clocks or threads. The queue, agent and router actors are
//! thin shells around [`router::Router`]; see its docs for the `handle` / `poll_output` /
//! `poll_timeout` call order.
//!
//! Code map:
//!
//! * [`ids`]: identifiers and [`ids::Channel`].
//! * [`interaction`]: the interaction model and its validated state machine.
//! * [`agent`], [`capacity`]: agents, presence and status, skills, routing profiles, channel
//!   capacity with interruptibility.
//! * [`queue`]: priority/age ordering, limits, position and estimated wait, callbacks,
//!   event-sourced state ([`queue::Queue::replay`]).
//! * [`expr`]: the expression language for filters, targets and `skip_if`, compiled once.
//! * [`workflow`], [`order`]: workflow configuration and agent orderings.
//! * [`router`]: the decision engine.
//! * [`events`]: routing events and decision explanations; [`metrics`] folds events into Amazon
//!   Connect style figures.
//!
//! Architecture invariant: nothing in this module reads the time, allocates per agent per
//! decision, or scans every agent or every waiting interaction to make a decision.

pub mod agent;
pub mod bitset;
pub mod capacity;
pub mod events;
pub mod expr;
pub mod ids;
pub mod interaction;
pub mod metrics;
pub mod order;
pub mod queue;
mod rng;
pub mod router;
pub mod vocab;
pub mod workflow;

pub use agent::{AgentSpec, AgentStatus, Presence, ProfileEntry};
pub use capacity::Capacity;
pub use events::{Decision, EventKind, Explanation, RoutingEvent};
pub use ids::{AgentId, Channel, InteractionId, QueueId};
pub use interaction::{Customer, Interaction, InteractionState, NewInteraction};
pub use order::AgentOrder;
pub use queue::{Queue, QueueConfig, QueueEvent};
pub use router::{Input, Output, Router, RouterConfig, RouterError};
pub use workflow::{FilterSpec, StepSpec, WorkflowSpec};

#[cfg(test)]
mod tests;
