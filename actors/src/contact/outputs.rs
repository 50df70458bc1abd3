//! Carrying out the router's outputs: offers and withdrawals to call actors and desktops,
//! status pushes, journal writes, and position announcements for the queues that changed.

use super::desktop::DesktopPush;
use super::routing_actor::{OfferRef, RoutingActor, VoiceLeg};
use super::{ReservationId, VoiceUpdate};
use crate::routing::events::EventKind;
use crate::routing::{AgentId, Channel, Input, InteractionId, Output, RoutingEvent};
use actix::Actor;
use serde_json::{json, Value};
use std::sync::Arc;

/// The interaction an event is about, if any.
fn event_interaction(k: &EventKind) -> Option<InteractionId> {
    match k {
        EventKind::Queued { interaction, .. }
        | EventKind::Offered { interaction, .. }
        | EventKind::OfferEnded { interaction, .. }
        | EventKind::Answered { interaction, .. }
        | EventKind::Abandoned { interaction, .. }
        | EventKind::CallbackRequested { interaction, .. }
        | EventKind::HoldStarted { interaction }
        | EventKind::HoldEnded { interaction }
        | EventKind::WrapUpStarted { interaction, .. }
        | EventKind::Completed { interaction, .. }
        | EventKind::Transferred { interaction, .. }
        | EventKind::Exited { interaction, .. } => Some(*interaction),
        EventKind::AgentStatus { .. } => None,
    }
}

impl RoutingActor {
    /// Drains and carries out every output, then the inputs this produced, then announces
    /// positions in the queues that changed.
    pub(super) fn drain(&mut self) {
        loop {
            while let Some(o) = self.router.poll_output() {
                self.carry_out(o);
            }
            if self.deferred.is_empty() {
                break;
            }
            let now = self.now();
            for input in std::mem::take(&mut self.deferred) {
                if let Err(e) = self.router.handle(now, input) {
                    tracing::warn!(error = %e, "deferred routing input refused");
                }
            }
        }
        if !self.replaying {
            self.announce_positions();
        }
    }

    fn carry_out(&mut self, o: Output) {
        match o {
            Output::Offer {
                interaction,
                agent,
                channel,
                expires_at,
            } => self.offer(interaction, agent, channel, expires_at),
            Output::Rescind {
                interaction,
                agent,
                reason,
            } => {
                if let Some(r) = self.forget_offer(interaction, agent) {
                    if let Some(leg) = self.live.get(&interaction).and_then(|l| l.voice.as_ref()) {
                        leg.call.do_send(VoiceUpdate::Withdraw { reservation: r });
                    }
                    let why = format!("{reason:?}").to_lowercase();
                    self.push_rescind(agent, r, interaction, &why);
                }
            }
            Output::Assigned { interaction, agent } => {
                let r = self.forget_offer(interaction, agent);
                self.failed_in_row.remove(&agent);
                let channel = self.live.get(&interaction).map(|l| l.channel);
                let name = self.dir.agent_name(agent);
                self.chat_news(
                    interaction,
                    super::ChatLink::Assigned {
                        interaction,
                        agent: name,
                    },
                );
                self.push(
                    agent,
                    json!({"type": "assigned", "interaction": interaction.0,
                           "reservation": r, "channel": channel}),
                );
            }
            Output::WrapUp {
                interaction,
                agent,
                ends_at,
            } => {
                let now = self.now();
                self.chat_news(interaction, super::ChatLink::EndedByAgent { interaction });
                self.push(
                    agent,
                    json!({"type": "wrapup", "interaction": interaction.0,
                           "ends_in_ms": ends_at.map(|e| e.saturating_sub(now))}),
                );
            }
            Output::Completed {
                interaction,
                agent,
                disposition,
            } => {
                if self.router.interaction(interaction).is_none() {
                    self.live.remove(&interaction);
                }
                self.chat_news(interaction, super::ChatLink::EndedByAgent { interaction });
                self.push(
                    agent,
                    json!({"type": "completed", "interaction": interaction.0,
                           "disposition": disposition}),
                );
            }
            Output::Exited {
                interaction,
                reason,
            } => {
                let why = serde_json::to_value(reason)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                self.chat_news(
                    interaction,
                    super::ChatLink::Left {
                        interaction,
                        reason: why,
                    },
                );
                if let Some(leg) = self.live.remove(&interaction).and_then(|l| l.voice) {
                    let reason = serde_json::to_value(reason)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default();
                    leg.call.do_send(VoiceUpdate::Left { reason });
                }
            }
            Output::AgentStatus { agent, status } => {
                self.push(agent, json!({"type": "status", "status": status}));
            }
            Output::Event(e) => self.on_event(e),
            Output::Queue { queue, event } => {
                self.dirty.insert(queue);
                if !self.replaying {
                    self.journal.queue(queue, &event, self.router.now());
                }
            }
            Output::Explain(e) => tracing::debug!(target: "routing", explanation = ?e),
        }
    }

    fn on_event(&mut self, e: RoutingEvent) {
        let interaction = event_interaction(&e.kind);
        match &e.kind {
            EventKind::Queued {
                interaction, queue, ..
            } => {
                if let Some(l) = self.live.get_mut(interaction) {
                    l.queue = Some(*queue);
                }
                self.dirty.insert(*queue);
            }
            EventKind::Abandoned { interaction, .. } => {
                self.live.remove(interaction);
                let interaction = *interaction;
                self.chat_news(
                    interaction,
                    super::ChatLink::Left {
                        interaction,
                        reason: "abandoned".into(),
                    },
                );
            }
            _ => {}
        }
        if !self.replaying {
            self.journal.routing(&e, interaction.map(|i| i.0));
        }
        self.bus.routing(&e, &self.dir, !self.replaying);
        if let (Some(m), false) = (&self.settings.metrics, self.replaying) {
            m.count(&e, &self.dir);
        }
    }

    fn offer(
        &mut self,
        interaction: InteractionId,
        agent: AgentId,
        channel: Channel,
        expires_at: u64,
    ) {
        let r = self.mint_reservation();
        self.offers.insert(
            r,
            OfferRef {
                interaction,
                agent,
                channel,
                expires_at,
            },
        );
        self.offer_of.insert((interaction, agent), r);
        // With a CRM, the offer waits (a bounded time) for the customer's screen pop.
        if !self.replaying && self.start_screen_pop(r) {
            return;
        }
        self.deliver_offer(r, None);
    }

    /// Sends offer `r` to the agent's desktops (with the CRM screen pop when there is one)
    /// and, for a call, rings the agent's phone. Nothing when the offer is gone meanwhile.
    pub(super) fn deliver_offer(&mut self, r: ReservationId, pop: Option<Value>) {
        let Some(&OfferRef {
            interaction,
            agent,
            channel,
            expires_at,
        }) = self.offers.get(&r)
        else {
            return;
        };
        let now = self.now();
        let (queue, customer, attributes) = match self.live.get(&interaction) {
            Some(l) => (
                l.queue.map(|q| self.dir.queue_name(q)),
                serde_json::to_value(&l.customer).unwrap_or(Value::Null),
                l.attributes.clone(),
            ),
            None => (None, Value::Null, Value::Null),
        };
        self.push(
            agent,
            json!({"type": "offer", "reservation": r, "interaction": interaction.0,
                   "channel": channel, "queue": queue, "customer": customer,
                   "attributes": attributes, "timeout_ms": expires_at.saturating_sub(now),
                   "crm": pop}),
        );
        if channel != Channel::Voice {
            return;
        }
        let sip_user = self.dir.agent(agent).and_then(|a| a.def.sip_user.clone());
        self.callback_call(interaction);
        let leg = self.live.get(&interaction).and_then(|l| l.voice.as_ref());
        match (leg, sip_user) {
            (Some(leg), Some(sip_user)) => {
                let secs = expires_at.saturating_sub(now).div_ceil(1000);
                let queue_id = self.live.get(&interaction).and_then(|l| l.queue);
                let csat_survey = queue_id
                    .and_then(|q| self.dir.queues.get(&self.dir.queue_name(q)))
                    .is_some_and(|e| e.def.csat_survey);
                leg.call.do_send(VoiceUpdate::Offer {
                    interaction,
                    reservation: r,
                    agent: self.dir.agent_name(agent),
                    sip_user,
                    timeout_secs: u32::try_from(secs).unwrap_or(u32::MAX),
                    queue: queue_id.map(|q| self.dir.queue_name(q)),
                    csat_survey,
                });
            }
            (leg, sip_user) => {
                // Nothing to ring: pass the offer on at once.
                tracing::warn!(%interaction, agent = %self.dir.agent_name(agent),
                    has_call = leg.is_some(), has_sip_user = sip_user.is_some(),
                    "voice offer cannot ring; rejected");
                self.forget_offer(interaction, agent);
                self.deferred.push(Input::Reject { interaction, agent });
            }
        }
    }

    /// A callback interaction has no call of its own: start the one that rings the agent and
    /// then calls the customer back (once; it handles every later offer).
    fn callback_call(&mut self, interaction: InteractionId) {
        let Some(number) = self
            .router
            .interaction(interaction)
            .and_then(|i| i.callback.clone())
        else {
            return;
        };
        let Some(live) = self.live.get_mut(&interaction) else {
            return;
        };
        if live.voice.is_some() {
            return;
        }
        let Some(env) = self.callback_env.get().cloned() else {
            tracing::warn!(%interaction, "callback cannot be placed: SIP is not running");
            return;
        };
        let Some(cc) = env.services.contact.clone() else {
            return;
        };
        let addr = crate::call::CallbackCall::new(env, cc, interaction, number).start();
        live.voice = Some(VoiceLeg {
            call: addr.clone().recipient(),
            supervise: addr.recipient(),
            call_id: format!("callback-{}", interaction.0),
            last_position: None,
            last_sent: None,
        });
    }

    /// Sends a JSON frame to every desktop of `agent`.
    pub(super) fn push(&self, agent: AgentId, frame: Value) {
        let Some(sockets) = self.desktops.get(&agent) else {
            return;
        };
        let text: Arc<str> = Arc::from(frame.to_string());
        for (_, s) in sockets {
            s.do_send(DesktopPush(text.clone()));
        }
    }

    pub(super) fn push_rescind(
        &self,
        agent: AgentId,
        r: ReservationId,
        interaction: InteractionId,
        reason: &str,
    ) {
        self.push(
            agent,
            json!({"type": "rescind", "reservation": r, "interaction": interaction.0,
                   "reason": reason}),
        );
    }

    /// Sends changed positions to voice callers of the queues that changed (at most one per
    /// caller per `position_update_ms`) and the new line length to desktops serving them.
    fn announce_positions(&mut self) {
        let now = self.now();
        let every = self.settings.position_update_ms;
        for q in std::mem::take(&mut self.dirty) {
            let Some(queue) = self.router.queue(q) else {
                continue;
            };
            let waiting = queue.waiting_ids();
            let aht = queue.average_handle_ms();
            let staffed = u64::from(self.staffed(q).max(1));
            for (i, id) in waiting.iter().enumerate() {
                let Some(leg) = self.live.get_mut(id).and_then(|l| l.voice.as_mut()) else {
                    continue;
                };
                let position = u32::try_from(i + 1).unwrap_or(u32::MAX);
                let est = aht.map(|a| {
                    u32::try_from((u64::from(position) * a / staffed).div_ceil(1000))
                        .unwrap_or(u32::MAX)
                });
                let due = leg.last_sent.is_none_or(|t| now >= t.saturating_add(every));
                if leg.last_position != Some((position, est)) && due {
                    leg.last_position = Some((position, est));
                    leg.last_sent = Some(now);
                    leg.call.do_send(VoiceUpdate::Position {
                        position,
                        estimated_wait_secs: est,
                    });
                }
            }
            if self.desktops.is_empty() {
                continue;
            }
            let name = self.dir.queue_name(q);
            let frame = json!({"type": "queue", "queue": name, "waiting": waiting.len()});
            let serving: Vec<AgentId> = self
                .desktops
                .keys()
                .copied()
                .filter(|a| {
                    self.router
                        .agent(*a)
                        .is_some_and(|r| r.profile.iter().any(|p| p.queue == q))
                })
                .collect();
            for a in serving {
                self.push(a, frame.clone());
            }
        }
    }
}
