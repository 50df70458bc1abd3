//! The contact centre on the event bus: routing events become `interaction.*` and `agent.*`
//! events, with queue and agent names rather than internal ids.
//!
//! | bus event | from |
//! |---|---|
//! | `interaction.created` | a new interaction (`id`, `channel`, `customer`, `priority`) |
//! | `interaction.queued` | `Queued` (`queue`, `channel`) |
//! | `interaction.offered` | `Offered` (`agent`, `queue`) |
//! | `interaction.offer_ended` | `OfferEnded` (`agent`, `outcome`: rejected / timed_out / rescinded) |
//! | `interaction.accepted` | `Answered` (`agent`, `queue`, `channel`, `waited_ms`) |
//! | `interaction.abandoned` | `Abandoned` (`queue`, `waited_ms`) |
//! | `interaction.ended` | `WrapUpStarted` (`agent`: the conversation is over) or `Exited` (`reason`) |
//! | `interaction.completed` | `Completed` (`agent`, `queue`, `disposition`) |
//! | `interaction.transferred` | `Transferred` (`to`, `queue`) |
//! | `agent.state_changed` | `AgentStatus` (`agent`, `status`, `reason` for breaks) |
//! | `agent.logged_in` / `agent.logged_out` | `AgentStatus` leaving / entering `offline` |
//!
//! Nothing is published while the journal is replayed at start.

use super::directory::Directory;
use crate::events::Events;
use crate::routing::AgentStatus;
use crate::routing::{AgentId, EventKind, NewInteraction, RoutingEvent};
use serde_json::{json, Value};
use std::collections::HashSet;

/// The routing actor's link to the bus.
#[derive(Default)]
pub struct ContactBus {
    events: Option<Events>,
    /// Agents not offline (for logged_in / logged_out).
    online: HashSet<AgentId>,
}

impl ContactBus {
    /// Publishing on `events` (none: nothing is published).
    pub fn new(events: Option<Events>) -> ContactBus {
        ContactBus {
            events,
            online: HashSet::new(),
        }
    }

    /// `interaction.created`.
    pub fn created(&self, n: &NewInteraction) {
        if let Some(ev) = &self.events {
            ev.publish(
                "interaction.created",
                json!({
                    "interaction": n.id.0,
                    "channel": n.channel,
                    "customer": n.customer,
                    "priority": n.priority,
                }),
            );
        }
    }

    /// The bus events of one routing event; `publish` false while replaying (the agents'
    /// presence is still followed).
    pub fn routing(&mut self, e: &RoutingEvent, dir: &Directory, publish: bool) {
        let q = |id: &crate::routing::QueueId| Value::String(dir.queue_name(*id));
        let oq = |id: &Option<crate::routing::QueueId>| id.as_ref().map_or(Value::Null, q);
        let a = |id: &AgentId| Value::String(dir.agent_name(*id));
        let mut out: Vec<(&'static str, Value)> = Vec::new();
        match &e.kind {
            EventKind::Queued {
                interaction,
                queue,
                channel,
            } => out.push((
                "interaction.queued",
                json!({"interaction": interaction.0, "queue": q(queue), "channel": channel}),
            )),
            EventKind::Offered {
                interaction,
                agent,
                queue,
            } => out.push((
                "interaction.offered",
                json!({"interaction": interaction.0, "agent": a(agent), "queue": q(queue)}),
            )),
            EventKind::OfferEnded {
                interaction,
                agent,
                outcome,
            } => out.push((
                "interaction.offer_ended",
                json!({"interaction": interaction.0, "agent": a(agent), "outcome": outcome}),
            )),
            EventKind::Answered {
                interaction,
                agent,
                queue,
                channel,
                waited_ms,
            } => out.push((
                "interaction.accepted",
                json!({"interaction": interaction.0, "agent": a(agent), "queue": q(queue),
                       "channel": channel, "waited_ms": waited_ms}),
            )),
            EventKind::Abandoned {
                interaction,
                queue,
                waited_ms,
            } => out.push((
                "interaction.abandoned",
                json!({"interaction": interaction.0, "queue": oq(queue), "waited_ms": waited_ms}),
            )),
            EventKind::WrapUpStarted { interaction, agent } => out.push((
                "interaction.ended",
                json!({"interaction": interaction.0, "agent": a(agent), "reason": "conversation_over"}),
            )),
            EventKind::Exited {
                interaction,
                queue,
                reason,
            } => out.push((
                "interaction.ended",
                json!({"interaction": interaction.0, "queue": oq(queue), "reason": reason}),
            )),
            EventKind::Completed {
                interaction,
                agent,
                queue,
                disposition,
            } => out.push((
                "interaction.completed",
                json!({"interaction": interaction.0, "agent": a(agent), "queue": oq(queue),
                       "disposition": disposition}),
            )),
            EventKind::Transferred {
                interaction,
                to,
                queue,
            } => out.push((
                "interaction.transferred",
                json!({"interaction": interaction.0, "to": to.0, "queue": q(queue)}),
            )),
            EventKind::AgentStatus { agent, status } => {
                let name = a(agent);
                let (label, reason) = match status {
                    AgentStatus::Offline => ("offline", None),
                    AgentStatus::Available => ("available", None),
                    AgentStatus::Break { reason } => ("break", Some(reason.clone())),
                    AgentStatus::Busy => ("busy", None),
                    AgentStatus::WrapUp => ("wrapup", None),
                    AgentStatus::Reserved => ("reserved", None),
                };
                let online = *status != AgentStatus::Offline;
                let was_online = if online {
                    !self.online.insert(*agent)
                } else {
                    self.online.remove(agent)
                };
                if online && !was_online {
                    out.push(("agent.logged_in", json!({"agent": name})));
                }
                out.push((
                    "agent.state_changed",
                    json!({"agent": name, "status": label, "reason": reason}),
                ));
                if !online && was_online {
                    out.push(("agent.logged_out", json!({"agent": name})));
                }
            }
            EventKind::CallbackRequested { interaction, queue } => out.push((
                "interaction.callback_requested",
                json!({"interaction": interaction.0, "queue": q(queue)}),
            )),
            EventKind::HoldStarted { .. } | EventKind::HoldEnded { .. } => {}
        }
        if !publish {
            return;
        }
        if let Some(ev) = &self.events {
            for (kind, data) in out {
                ev.publish(kind, data);
            }
        }
    }
}
