//! Inputs and timers: agents coming and going, offers and their outcomes, conversation end,
//! wrap-up, abandon, callback, transfer and move.

use super::timers::TimerKind;
use super::{Input, Output, RescindReason, Router, RouterError};
use crate::routing::agent::{Agent, AgentSpec, Presence, Work, WorkPhase};
use crate::routing::events::{Decision, EventKind, ExitReason, Explanation, OfferOutcome, Trigger};
use crate::routing::ids::{AgentId, InteractionId, QueueId};
use crate::routing::interaction::{InteractionState, NewInteraction, StepRef};
use crate::routing::queue::LeaveReason;

/// Applies one input.
pub(super) fn dispatch(r: &mut Router, input: Input) -> Result<(), RouterError> {
    match input {
        Input::AddAgent(spec) => r.add_agent(spec),
        Input::UpdateAgent(spec) => r.update_agent(spec),
        Input::RemoveAgent(id) => r.remove_agent(id),
        Input::SetPresence { agent, presence } => r.set_presence(agent, presence),
        Input::Enqueue(n) => r.start(n, None),
        Input::Accept { interaction, agent } => r.accept(interaction, agent),
        Input::Reject { interaction, agent } => {
            let slot = r.agent_slot(agent)?;
            r.check_offered(interaction, slot, agent)?;
            r.withdraw(interaction, slot, OfferOutcome::Rejected);
            Ok(())
        }
        Input::Hold { interaction, on } => r.hold(interaction, on),
        Input::Complete { interaction } => r.complete(interaction),
        Input::EndWrapUp {
            interaction,
            disposition,
        } => r.end_wrap_up(interaction, disposition),
        Input::Abandon { interaction } => r.abandon(interaction),
        Input::RequestCallback {
            interaction,
            number,
        } => r.request_callback(interaction, number),
        Input::Transfer {
            interaction,
            new_id,
            queue,
        } => r.transfer(interaction, new_id, queue),
        Input::Move { interaction, queue } => r.move_to(interaction, queue),
        Input::Reprioritise {
            interaction,
            priority,
            boost_ms,
        } => r.reprioritise(interaction, priority, boost_ms),
        Input::Tick => Ok(()),
    }
}

impl Router {
    /// Fires the timers due at `self.now`, oldest first, at most `timer_batch` of them.
    pub(super) fn fire_timers(&mut self) {
        let mut budget = self.cfg.timer_batch.max(1);
        while budget > 0 {
            let Some((_at, kind)) = self.timers.pop_due(self.now) else {
                break;
            };
            budget -= 1;
            match kind {
                TimerKind::StepTimeout { id, gen } => {
                    if let Some(st) = self.step_timer_state(id, gen) {
                        match st {
                            Some(expires) => self.timers.set(expires, kind),
                            None => self.on_step_timeout(id),
                        }
                    }
                }
                TimerKind::MaxWait { id, gen } => {
                    if let Some(st) = self.step_timer_state(id, gen) {
                        match st {
                            Some(expires) => self.timers.set(expires, kind),
                            None => self.exit(id, ExitReason::MaxWait),
                        }
                    }
                }
                TimerKind::DelayElapsed { id, gen } => {
                    if let Some(None) = self.step_timer_state(id, gen) {
                        self.route_interaction(id, Trigger::DelayElapsed);
                    }
                }
                TimerKind::OfferExpiry { id, gen } => {
                    let live = self.interactions.get(&id).filter(|it| {
                        it.state == InteractionState::Offered && it.route.offer_gen == gen
                    });
                    if let Some(it) = live {
                        let slots = it.route.offered_to.clone();
                        let outcome = OfferOutcome::TimedOut;
                        for s in slots {
                            self.withdraw(id, s, outcome);
                        }
                    }
                }
                TimerKind::WrapUpEnd { id, slot } => {
                    let due = self
                        .agents
                        .get(slot as usize)
                        .and_then(|a| a.work.iter().find(|w| w.interaction == id).map(|w| w.phase));
                    if let Some(WorkPhase::WrapUp { until }) = due {
                        if until <= self.now {
                            self.finish_wrap(id, slot, None);
                        }
                    }
                }
            }
        }
    }

    /// For a step-generation timer: `None` if stale, `Some(None)` if it applies now,
    /// `Some(Some(t))` if the interaction is being offered and the timer should wait until `t`.
    fn step_timer_state(&self, id: InteractionId, gen: u32) -> Option<Option<u64>> {
        let it = self.interactions.get(&id)?;
        if it.route.step_gen != gen {
            return None;
        }
        match it.state {
            s if s.is_waiting() => Some(None),
            InteractionState::Offered => Some(Some(it.route.expires_at.max(self.now + 1))),
            _ => None,
        }
    }

    fn add_agent(&mut self, spec: AgentSpec) -> Result<(), RouterError> {
        if self.agent_slots.contains_key(&spec.id) {
            return Err(RouterError::DuplicateAgent(spec.id));
        }
        let slot = self.agents.len();
        let id = spec.id;
        let agent = Agent::new(spec, &mut self.vocab, self.now);
        self.agents.push(agent);
        self.agent_slots.insert(id, slot as u32);
        self.live.insert(slot);
        self.classes
            .index_agent(slot, &self.agents[slot], &self.vocab);
        self.index_profile(slot, true);
        self.refresh_agent(slot as u32);
        Ok(())
    }

    fn update_agent(&mut self, spec: AgentSpec) -> Result<(), RouterError> {
        let slot = self.agent_slot(spec.id)?;
        let s = slot as usize;
        self.index_profile(s, false);
        self.agents[s].apply_spec(spec, &mut self.vocab);
        self.classes.index_agent(s, &self.agents[s], &self.vocab);
        self.index_profile(s, true);
        self.refresh_agent(slot);
        self.route_agent(slot);
        Ok(())
    }

    fn remove_agent(&mut self, id: AgentId) -> Result<(), RouterError> {
        let slot = self.agent_slot(id)?;
        let s = slot as usize;
        if !self.agents[s].work.is_empty() {
            return Err(RouterError::AgentBusy(id));
        }
        self.set_presence(id, Presence::Offline)?;
        self.index_profile(s, false);
        self.classes.unindex_agent(s);
        self.live.remove(s);
        self.agent_slots.remove(&id);
        self.refresh_agent(slot);
        Ok(())
    }

    fn set_presence(&mut self, id: AgentId, presence: Presence) -> Result<(), RouterError> {
        let slot = self.agent_slot(id)?;
        let s = slot as usize;
        let was_offline = self.agents[s].presence == Presence::Offline;
        let now_offline = presence == Presence::Offline;
        if was_offline != now_offline {
            // Staffed counts follow login state.
            self.index_profile(s, false);
            self.agents[s].presence = presence.clone();
            self.index_profile(s, true);
        }
        let a = &mut self.agents[s];
        a.presence = presence.clone();
        if presence == Presence::Available {
            a.stats.missed_in_row = 0;
            if a.work.is_empty() {
                a.stats.idle_since = self.now;
            }
        }
        self.refresh_agent(slot);
        if presence != Presence::Available {
            let pending: Vec<InteractionId> = self.agents[s]
                .work
                .iter()
                .filter(|w| w.phase == WorkPhase::Offered)
                .map(|w| w.interaction)
                .collect();
            for id in pending {
                self.withdraw(id, slot, OfferOutcome::Rescinded);
            }
        }
        if now_offline && !was_offline {
            self.leave_if_empty(slot);
        }
        if presence == Presence::Available {
            self.route_agent(slot);
        }
        Ok(())
    }

    /// After an agent logged out: empty the `leave_when_empty` queues nobody staffs any more.
    fn leave_if_empty(&mut self, slot: u32) {
        let queues: Vec<u32> = self.agents[slot as usize]
            .profile
            .iter()
            .filter_map(|p| self.queue_slots.get(&p.queue).copied())
            .filter(|&q| {
                let qs = &self.queues[q as usize];
                qs.staffed == 0 && qs.queue.config.leave_when_empty
            })
            .collect();
        for q in queues {
            for id in self.queues[q as usize].queue.waiting_ids() {
                self.exit(id, ExitReason::QueueEmpty);
            }
        }
    }

    /// Takes a waiting interaction out of line and offers it to `slots`. Returns false if it
    /// could not (not waiting, no queue).
    pub(super) fn make_offer(
        &mut self,
        id: InteractionId,
        slots: &[u32],
        decision: Decision,
    ) -> bool {
        let now = self.now;
        let Some(it) = self.interactions.get(&id) else {
            return false;
        };
        let Some(q) = it.route.queue_slot else {
            return false;
        };
        let channel = it.channel;
        let Ok(ev) = self.queues[q as usize].queue.reserve(id, now) else {
            return false;
        };
        self.queue_event(q, ev);
        let timeout = self.queues[q as usize].queue.config.offer_timeout_ms;
        let qid = self.queues[q as usize].queue.id;
        let expires_at = now + timeout;
        let Some(&first) = slots.first() else {
            return false;
        };
        let first = self.agents[first as usize].id;
        let Some(it) = self.interactions.get_mut(&id) else {
            return false;
        };
        if it.transition(InteractionState::Offered, now).is_err() {
            return false;
        }
        it.route.offer_gen += 1;
        it.route.offered_to = slots.to_vec();
        it.route.ring_all = slots.len() > 1;
        it.route.expires_at = expires_at;
        it.agent = Some(first);
        let gen = it.route.offer_gen;
        self.timers
            .set(expires_at, TimerKind::OfferExpiry { id, gen });
        self.explain(Explanation::Decision(decision));
        for &slot in slots {
            let a = &mut self.agents[slot as usize];
            a.work.push(Work {
                interaction: id,
                channel,
                phase: WorkPhase::Offered,
                since: now,
            });
            a.load.add(channel);
            let agent = a.id;
            self.refresh_agent(slot);
            self.push(Output::Offer {
                interaction: id,
                agent,
                channel,
                expires_at,
            });
            self.event(EventKind::Offered {
                interaction: id,
                agent,
                queue: qid,
            });
        }
        true
    }

    fn check_offered(
        &self,
        id: InteractionId,
        slot: u32,
        agent: AgentId,
    ) -> Result<(), RouterError> {
        let it = self
            .interactions
            .get(&id)
            .ok_or(RouterError::UnknownInteraction(id))?;
        if it.state != InteractionState::Offered || !it.route.offered_to.contains(&slot) {
            return Err(RouterError::NotOffered(id, agent));
        }
        Ok(())
    }

    fn accept(&mut self, id: InteractionId, agent: AgentId) -> Result<(), RouterError> {
        let slot = self.agent_slot(agent)?;
        self.check_offered(id, slot, agent)?;
        let now = self.now;
        let Some(it) = self.interactions.get_mut(&id) else {
            return Err(RouterError::UnknownInteraction(id));
        };
        it.transition(InteractionState::Assigned, now)?;
        it.agent = Some(agent);
        let others: Vec<u32> = it
            .route
            .offered_to
            .drain(..)
            .filter(|&s| s != slot)
            .collect();
        let (q, channel, waited) = (it.route.queue_slot, it.channel, it.waited(now));
        let qid = it.queue;
        if let Some(q) = q {
            if let Ok(ev) = self.queues[q as usize]
                .queue
                .leave(id, LeaveReason::Assigned, now)
            {
                self.queue_event(q, ev);
            }
        }
        let a = &mut self.agents[slot as usize];
        if let Some(w) = a.work_mut(id) {
            w.phase = WorkPhase::Active;
            w.since = now;
        }
        a.stats.missed_in_row = 0;
        self.refresh_agent(slot);
        self.push(Output::Assigned {
            interaction: id,
            agent,
        });
        if let Some(queue) = qid {
            self.event(EventKind::Answered {
                interaction: id,
                agent,
                queue,
                channel,
                waited_ms: waited,
            });
        }
        for s in others {
            self.release_offer(id, s, RescindReason::Taken);
            self.route_agent(s);
        }
        Ok(())
    }

    /// Frees an agent from an offer of `id` (the interaction is handled by the caller).
    fn release_offer(&mut self, id: InteractionId, slot: u32, reason: RescindReason) {
        let a = &mut self.agents[slot as usize];
        if a.release(id).is_none() {
            return;
        }
        let agent = a.id;
        self.refresh_agent(slot);
        self.push(Output::Rescind {
            interaction: id,
            agent,
            reason,
        });
        self.event(EventKind::OfferEnded {
            interaction: id,
            agent,
            outcome: match reason {
                RescindReason::Expired => OfferOutcome::TimedOut,
                _ => OfferOutcome::Rescinded,
            },
        });
    }

    /// Ends one agent's offer of `id` without an answer; when nobody is left ringing, the
    /// interaction goes back in line and on to the next agent.
    pub(super) fn withdraw(&mut self, id: InteractionId, slot: u32, outcome: OfferOutcome) {
        let now = self.now;
        let Some(it) = self.interactions.get_mut(&id) else {
            return;
        };
        let ring_all = it.route.ring_all;
        it.route.offered_to.retain(|&s| s != slot);
        let last = it.route.offered_to.is_empty();
        // A single offer that was refused or missed is not offered to that agent again on this
        // step; a ring-all timeout rings everyone again.
        if outcome == OfferOutcome::Rejected || (outcome == OfferOutcome::TimedOut && !ring_all) {
            it.route.rejected.push(slot);
        }
        let a = &mut self.agents[slot as usize];
        if a.release(id).is_some() {
            let agent = a.id;
            let missed = outcome == OfferOutcome::TimedOut && !ring_all;
            if missed {
                a.stats.missed_in_row += 1;
            }
            let pause =
                missed && a.auto_pause_after > 0 && a.stats.missed_in_row >= a.auto_pause_after;
            if pause {
                a.presence = Presence::Break {
                    reason: self.cfg.auto_pause_reason.clone(),
                };
            }
            if outcome != OfferOutcome::Rejected {
                let reason = if outcome == OfferOutcome::TimedOut {
                    RescindReason::Expired
                } else {
                    RescindReason::AgentUnavailable
                };
                self.push(Output::Rescind {
                    interaction: id,
                    agent,
                    reason,
                });
            }
            self.event(EventKind::OfferEnded {
                interaction: id,
                agent,
                outcome,
            });
            self.refresh_agent(slot);
        }
        if last {
            self.put_back(id, now);
        }
        if self.agents[slot as usize].presence == Presence::Available {
            self.route_agent(slot);
        }
    }

    /// An offered interaction nobody took goes back to its place, or leaves on max wait.
    fn put_back(&mut self, id: InteractionId, now: u64) {
        let Some(it) = self.interactions.get_mut(&id) else {
            return;
        };
        let back = if it.callback.is_some() {
            InteractionState::Callback
        } else {
            InteractionState::Queued
        };
        if it.transition(back, now).is_err() {
            return;
        }
        let Some(q) = it.route.queue_slot else {
            return;
        };
        let waited = now.saturating_sub(it.times.queued.unwrap_or(now));
        if let Ok(ev) = self.queues[q as usize].queue.put_back(id, now) {
            self.queue_event(q, ev);
        }
        if self.queues[q as usize]
            .queue
            .config
            .max_wait_ms
            .is_some_and(|m| waited >= m)
        {
            self.exit(id, ExitReason::MaxWait);
            return;
        }
        self.route_interaction(id, Trigger::Returned);
    }

    /// A waiting interaction leaves routing without an agent.
    fn exit(&mut self, id: InteractionId, reason: ExitReason) {
        let now = self.now;
        let Some(it) = self.interactions.get_mut(&id) else {
            return;
        };
        if it.transition(InteractionState::Transferred, now).is_err() {
            return;
        }
        let (q, qid) = (it.route.queue_slot, it.queue);
        self.interactions.remove(&id);
        if let Some(q) = q {
            let why = match reason {
                ExitReason::MaxWait => LeaveReason::MaxWait,
                ExitReason::QueueEmpty => LeaveReason::Empty,
            };
            if let Ok(ev) = self.queues[q as usize].queue.leave(id, why, now) {
                self.queue_event(q, ev);
            }
        }
        self.event(EventKind::Exited {
            interaction: id,
            queue: qid,
            reason,
        });
        self.push(Output::Exited {
            interaction: id,
            reason,
        });
    }

    fn assigned_agent(
        &self,
        id: InteractionId,
        want: InteractionState,
    ) -> Result<u32, RouterError> {
        let it = self
            .interactions
            .get(&id)
            .ok_or(RouterError::UnknownInteraction(id))?;
        if it.state != want {
            return Err(RouterError::Transition(
                crate::routing::interaction::TransitionError {
                    id,
                    from: it.state,
                    to: if want == InteractionState::Assigned {
                        InteractionState::Wrapping
                    } else {
                        InteractionState::Completed
                    },
                },
            ));
        }
        let agent = it.agent.ok_or(RouterError::UnknownInteraction(id))?;
        self.agent_slot(agent)
    }

    fn hold(&mut self, id: InteractionId, on: bool) -> Result<(), RouterError> {
        self.assigned_agent(id, InteractionState::Assigned)?;
        let now = self.now;
        let Some(it) = self.interactions.get_mut(&id) else {
            return Err(RouterError::UnknownInteraction(id));
        };
        match (on, it.route.hold_since) {
            (true, None) => {
                it.route.hold_since = Some(now);
                self.event(EventKind::HoldStarted { interaction: id });
            }
            (false, Some(_)) => {
                it.route.hold_since = None;
                self.event(EventKind::HoldEnded { interaction: id });
            }
            _ => {}
        }
        Ok(())
    }

    /// Ends the conversation of an assigned interaction: the agent goes to wrap-up.
    fn complete(&mut self, id: InteractionId) -> Result<(), RouterError> {
        let slot = self.assigned_agent(id, InteractionState::Assigned)?;
        let now = self.now;
        let Some(it) = self.interactions.get_mut(&id) else {
            return Err(RouterError::UnknownInteraction(id));
        };
        it.transition(InteractionState::Wrapping, now)?;
        let on_hold = it.route.hold_since.take().is_some();
        self.start_wrap(id, slot, on_hold);
        Ok(())
    }

    fn start_wrap(&mut self, id: InteractionId, slot: u32, on_hold: bool) {
        let now = self.now;
        if on_hold {
            self.event(EventKind::HoldEnded { interaction: id });
        }
        let wrap = self
            .interactions
            .get(&id)
            .and_then(|it| it.route.queue_slot)
            .and_then(|q| self.queues[q as usize].queue.config.wrap_up_ms);
        let a = &mut self.agents[slot as usize];
        let agent = a.id;
        let until = wrap.map_or(u64::MAX, |w| now.saturating_add(w));
        let mut talk = 0;
        if let Some(w) = a.work_mut(id) {
            talk = now.saturating_sub(w.since);
            w.phase = WorkPhase::WrapUp { until };
        }
        a.stats.talk_ms += talk;
        self.event(EventKind::WrapUpStarted {
            interaction: id,
            agent,
        });
        self.push(Output::WrapUp {
            interaction: id,
            agent,
            ends_at: wrap.map(|_| until),
        });
        match wrap {
            Some(0) => self.finish_wrap(id, slot, None),
            Some(_) => {
                self.timers.set(until, TimerKind::WrapUpEnd { id, slot });
                self.refresh_agent(slot);
            }
            None => self.refresh_agent(slot),
        }
    }

    fn end_wrap_up(
        &mut self,
        id: InteractionId,
        disposition: Option<String>,
    ) -> Result<(), RouterError> {
        let it = self
            .interactions
            .get(&id)
            .ok_or(RouterError::UnknownInteraction(id))?;
        if !matches!(
            it.state,
            InteractionState::Wrapping | InteractionState::Transferred
        ) {
            return Err(RouterError::Transition(
                crate::routing::interaction::TransitionError {
                    id,
                    from: it.state,
                    to: InteractionState::Completed,
                },
            ));
        }
        let agent = it.agent.ok_or(RouterError::UnknownInteraction(id))?;
        let slot = self.agent_slot(agent)?;
        let wrapping = self.agents[slot as usize]
            .work
            .iter()
            .any(|w| w.interaction == id && matches!(w.phase, WorkPhase::WrapUp { .. }));
        if !wrapping {
            return Err(RouterError::UnknownInteraction(id));
        }
        if let (Some(code), Some(q)) = (&disposition, it.route.queue_slot) {
            let allowed = &self.queues[q as usize].queue.config.dispositions;
            if !allowed.is_empty() && !allowed.contains(code) {
                return Err(RouterError::Disposition(code.clone()));
            }
        }
        self.finish_wrap(id, slot, disposition);
        Ok(())
    }

    /// Ends after-contact work: the agent is free of `id`, which is completed (or stays
    /// transferred) and forgotten.
    fn finish_wrap(&mut self, id: InteractionId, slot: u32, disposition: Option<String>) {
        let now = self.now;
        let a = &mut self.agents[slot as usize];
        let Some(work) = a.release(id) else {
            return;
        };
        a.stats.handled += 1;
        if a.work.is_empty() {
            a.stats.idle_since = now;
        }
        let agent = a.id;
        let mut queue = None;
        if let Some(mut it) = self.interactions.remove(&id) {
            queue = it.queue;
            let handle = now.saturating_sub(it.times.assigned.unwrap_or(work.since));
            if let Some(q) = it.route.queue_slot {
                let ev = self.queues[q as usize]
                    .queue
                    .record_handle_time(handle, now);
                self.queue_event(q, ev);
            }
            if it.state == InteractionState::Wrapping {
                let _ = it.transition(InteractionState::Completed, now);
            }
            it.disposition = disposition.clone();
        }
        self.event(EventKind::Completed {
            interaction: id,
            agent,
            queue,
            disposition: disposition.clone(),
        });
        self.push(Output::Completed {
            interaction: id,
            agent,
            disposition,
        });
        self.refresh_agent(slot);
        if self.agents[slot as usize].presence == Presence::Available {
            self.route_agent(slot);
        }
    }

    fn abandon(&mut self, id: InteractionId) -> Result<(), RouterError> {
        let now = self.now;
        let it = self
            .interactions
            .get_mut(&id)
            .ok_or(RouterError::UnknownInteraction(id))?;
        it.transition(InteractionState::Abandoned, now)?;
        let offered: Vec<u32> = it.route.offered_to.drain(..).collect();
        let (q, qid, waited) = (it.route.queue_slot, it.queue, it.waited(now));
        self.interactions.remove(&id);
        if let Some(q) = q {
            if let Ok(ev) = self.queues[q as usize]
                .queue
                .leave(id, LeaveReason::Abandoned, now)
            {
                self.queue_event(q, ev);
            }
        }
        self.event(EventKind::Abandoned {
            interaction: id,
            queue: qid,
            waited_ms: waited,
        });
        for s in offered {
            self.release_offer(id, s, RescindReason::Abandoned);
            self.route_agent(s);
        }
        Ok(())
    }

    fn request_callback(&mut self, id: InteractionId, number: String) -> Result<(), RouterError> {
        let now = self.now;
        let it = self
            .interactions
            .get_mut(&id)
            .ok_or(RouterError::UnknownInteraction(id))?;
        if it.state != InteractionState::Queued {
            return Err(RouterError::Transition(
                crate::routing::interaction::TransitionError {
                    id,
                    from: it.state,
                    to: InteractionState::Callback,
                },
            ));
        }
        it.transition(InteractionState::Callback, now)?;
        it.callback = Some(number);
        let (q, qid) = (it.route.queue_slot, it.queue);
        if let (Some(q), Some(queue)) = (q, qid) {
            if let Ok(ev) = self.queues[q as usize].queue.request_callback(id, now) {
                self.queue_event(q, ev);
            }
            self.event(EventKind::CallbackRequested {
                interaction: id,
                queue,
            });
        }
        Ok(())
    }

    fn transfer(
        &mut self,
        id: InteractionId,
        new_id: InteractionId,
        queue: QueueId,
    ) -> Result<(), RouterError> {
        let slot = self.assigned_agent(id, InteractionState::Assigned)?;
        self.queue_slot(queue)?;
        let Some(it) = self.interactions.get(&id) else {
            return Err(RouterError::UnknownInteraction(id));
        };
        let n = NewInteraction {
            id: new_id,
            channel: it.channel,
            customer: it.customer.clone(),
            attributes: it.attributes.clone(),
            priority: it.priority,
            queue: Some(queue),
        };
        self.start(n, Some(id))?;
        let now = self.now;
        let Some(it) = self.interactions.get_mut(&id) else {
            return Err(RouterError::UnknownInteraction(id));
        };
        it.transition(InteractionState::Transferred, now)?;
        let on_hold = it.route.hold_since.take().is_some();
        self.event(EventKind::Transferred {
            interaction: id,
            to: new_id,
            queue,
        });
        self.start_wrap(id, slot, on_hold);
        Ok(())
    }

    fn move_to(&mut self, id: InteractionId, queue: QueueId) -> Result<(), RouterError> {
        let q = self.queue_slot(queue)?;
        let it = self
            .interactions
            .get(&id)
            .ok_or(RouterError::UnknownInteraction(id))?;
        if !it.state.is_waiting() {
            return Err(RouterError::Transition(
                crate::routing::interaction::TransitionError {
                    id,
                    from: it.state,
                    to: it.state,
                },
            ));
        }
        let old = it.route.queue_slot;
        let qs = &self.queues[q as usize];
        let full = qs
            .queue
            .config
            .max_length
            .is_some_and(|m| qs.queue.held() >= m);
        let closed = qs.staffed == 0 && !qs.queue.config.join_when_empty;
        if (full && old != Some(q)) || closed {
            return Err(RouterError::NoRoute(id));
        }
        if let Some(o) = old {
            if let Ok(ev) = self.queues[o as usize]
                .queue
                .leave(id, LeaveReason::Moved, self.now)
            {
                self.queue_event(o, ev);
            }
            if let Some(it) = self.interactions.get_mut(&id) {
                it.route.queue_slot = None;
            }
        }
        if !self.enter_step(
            id,
            StepRef::Direct(q),
            crate::routing::events::StepReason::First,
        ) {
            return Err(RouterError::NoRoute(id));
        }
        self.route_interaction(id, Trigger::StepChanged);
        Ok(())
    }

    fn reprioritise(
        &mut self,
        id: InteractionId,
        priority: u32,
        boost_ms: u64,
    ) -> Result<(), RouterError> {
        let now = self.now;
        let it = self
            .interactions
            .get_mut(&id)
            .ok_or(RouterError::UnknownInteraction(id))?;
        it.priority = priority;
        it.boost_ms = boost_ms;
        if let Some(q) = it.route.queue_slot {
            if let Ok(ev) = self.queues[q as usize]
                .queue
                .reprioritise(id, priority, boost_ms, now)
            {
                self.queue_event(q, ev);
            }
        }
        Ok(())
    }
}
