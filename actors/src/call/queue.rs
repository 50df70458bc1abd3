//! A call waiting in a contact-centre queue: music on hold while it waits, offers from the
//! routing actor rung as B legs (the agent's registered SIP user), the bridge on answer, and
//! what the router must hear back (answered, failed, ended).

use super::ivr::Running;
use super::CallActor;
use crate::contact::{InteractionId, ReservationId, VoiceEnqueue, VoiceUpdate};
use actix::prelude::*;
use std::time::Duration;
use switchboard_dialplans::{DialTarget, Event};
use switchboard_engine::sip::HeaderName;
use switchboard_media::prompt::{tone, ToneKind};
use switchboard_media::Leg;

/// The queue state of a call.
pub(super) struct Queued {
    interaction: Option<InteractionId>,
    /// The reservation being rung, if any.
    pub(super) offer: Option<ReservationId>,
    /// The reservation of the agent on the line, once answered.
    answered: Option<ReservationId>,
    bridged: bool,
    /// The position announcement playing (its prompt id), hold music resumes after it.
    announcing: Option<u64>,
    /// The digit that asks for a callback, when offered.
    callback_digit: Option<char>,
}

impl CallActor {
    /// The `queue` action: answer, music on hold, enqueue.
    pub(super) fn start_queue(
        &mut self,
        ctx: &mut Context<Self>,
        name: String,
        priority: i64,
        attributes: Vec<(String, String)>,
        callback_digit: Option<char>,
    ) -> Option<Event> {
        let Some(cc) = self.setup.services.contact.clone() else {
            tracing::warn!(queue = %name, "queue action without a contact centre");
            return Some(Event::ActionCompleted);
        };
        if let Err(e) = self.answer_here(ctx) {
            tracing::warn!(error = %e, "queue: cannot answer");
            return Some(Event::ActionCompleted);
        }
        self.play_hold_music(ctx);
        self.queued = Some(Queued {
            interaction: None,
            offer: None,
            answered: None,
            bridged: false,
            announcing: None,
            callback_digit,
        });
        if let Some(i) = self.ivr.as_mut() {
            i.running = Running::Queue;
        }
        let req = VoiceEnqueue {
            queue: name,
            priority,
            attributes: attributes
                .into_iter()
                .map(|(k, v)| (k, serde_json::Value::String(v)))
                .collect(),
            caller: self.guard.state.record.caller.clone(),
            call_id: self.guard.state.record.call_id.clone(),
            call: ctx.address().recipient(),
            supervise: ctx.address().recipient(),
        };
        async move { cc.enqueue_voice(req).await }
            .into_actor(self)
            .map(|res, act, ctx| match res {
                Ok(id) => {
                    if let Some(q) = act.queued.as_mut() {
                        q.interaction = Some(id);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "enqueue refused");
                    act.leave_queue(ctx, &e.to_string());
                }
            })
            .wait(ctx);
        None
    }

    /// Music on hold (the configured file, else a ringback tone) looping into the caller.
    pub(super) fn play_hold_music(&mut self, ctx: &mut Context<Self>) {
        let rate = self.a_rate();
        let tools = &self.setup.services.ivr;
        match tools.music_on_hold.clone() {
            Some(path) => {
                let prompts = tools.prompts.clone();
                async move {
                    tokio::task::spawn_blocking(move || prompts.get(&path, rate))
                        .await
                        .ok()
                        .and_then(Result::ok)
                }
                .into_actor(self)
                .map(move |clip, act, _| {
                    let clip = clip
                        .unwrap_or_else(|| tone(ToneKind::Ringback, rate, Duration::from_secs(4)));
                    if let Some(r) = &act.relay {
                        r.play(Leg::A, clip, 0, 0);
                    }
                })
                .spawn(ctx);
            }
            None => {
                if let Some(r) = &self.relay {
                    r.play(
                        Leg::A,
                        tone(ToneKind::Ringback, rate, Duration::from_secs(4)),
                        0,
                        0,
                    );
                }
            }
        }
    }

    /// Speaks the caller's place in line (and the estimated wait) over the hold music, which
    /// resumes when the announcement ends. Not while an agent rings or talks.
    fn announce_position(&mut self, ctx: &mut Context<Self>, position: u32, wait: Option<u32>) {
        let Some(q) = self.queued.as_ref() else {
            return;
        };
        if q.offer.is_some() || q.bridged || q.announcing.is_some() || position == 0 {
            return;
        }
        let mut text = format!("You are number {position} in line.");
        if let Some(w) = wait.filter(|w| *w >= 60) {
            let minutes = w.div_ceil(60);
            let unit = if minutes == 1 { "minute" } else { "minutes" };
            text.push_str(&format!(" Your estimated wait is about {minutes} {unit}."));
        }
        let rate = self.a_rate();
        let tts = self.setup.services.ivr.tts.clone();
        let voice = self.setup.services.ivr.tts_voice.clone();
        let id = u64::MAX - u64::from(position);
        if let Some(q) = self.queued.as_mut() {
            q.announcing = Some(id);
        }
        async move {
            tokio::task::spawn_blocking(move || tts.render(&text, voice.as_deref(), rate))
                .await
                .ok()
                .and_then(Result::ok)
        }
        .into_actor(self)
        .map(move |clip, act, ctx| {
            let ringing = act
                .queued
                .as_ref()
                .is_none_or(|q| q.offer.is_some() || q.bridged || q.announcing != Some(id));
            match (clip, &act.relay) {
                (Some(clip), Some(r)) if !ringing => r.play(Leg::A, clip, 1, id),
                _ => act.queue_announcement_done(ctx, id),
            }
        })
        .spawn(ctx);
    }

    /// An announcement ended (or could not play): back to the hold music.
    pub(super) fn queue_announcement_done(&mut self, ctx: &mut Context<Self>, id: u64) {
        let Some(q) = self.queued.as_mut() else {
            return;
        };
        if q.announcing != Some(id) {
            return;
        }
        q.announcing = None;
        if q.offer.is_none() && !q.bridged {
            self.play_hold_music(ctx);
        }
    }

    /// The call leaves the queue without an agent: the dialplan goes on.
    fn leave_queue(&mut self, ctx: &mut Context<Self>, reason: &str) {
        self.queued = None;
        if let Some(r) = &self.relay {
            r.stop_play(Leg::A);
        }
        if let Some(i) = self.ivr.as_mut() {
            i.session.set_var("queue_result", reason);
        }
        self.step(ctx, Event::ActionCompleted);
    }

    /// A digit while waiting: the callback digit trades the wait for a callback (the place in
    /// line is kept; the plan goes on with `queue_result` = `callback`, e.g. to say so and hang
    /// up). Not while an agent rings.
    pub(super) fn queue_digit(&mut self, ctx: &mut Context<Self>, c: char) {
        let Some(q) = self.queued.as_ref() else {
            return;
        };
        if q.callback_digit != Some(c) || q.offer.is_some() || q.bridged {
            return;
        }
        let (Some(cc), Some(i)) = (&self.setup.services.contact, q.interaction) else {
            return;
        };
        let number = self.callback_number();
        tracing::info!(interaction = %i, %number, "callback requested");
        cc.request_callback(i, number);
        self.queued = None;
        self.leave_queue(ctx, "callback");
    }

    /// Where to call this caller back: their user name when they authenticated (reached through
    /// the registrar), else the Contact of their INVITE (a SIP URI reachable directly).
    fn callback_number(&self) -> String {
        if let Some(u) = &self.authenticated_user {
            return u.clone();
        }
        self.setup
            .invite
            .headers
            .get(&HeaderName::Contact)
            .and_then(switchboard_engine::dialog::uri_of)
            .unwrap_or_else(|| self.guard.state.record.caller.clone())
    }

    /// A ringing offer failed: tell the router (it picks the next agent); hold music goes on.
    pub(super) fn queue_offer_failed(&mut self, _ctx: &mut Context<Self>, code: u16) -> Option<()> {
        let q = self.queued.as_mut()?;
        let r = q.offer.take()?;
        if let (Some(cc), Some(i)) = (&self.setup.services.contact, q.interaction) {
            cc.offer_failed(i, r, code);
        }
        Some(())
    }

    /// The agent answered: the bridge is up (done by the caller); tell the router.
    pub(super) fn queue_offer_answered(&mut self, _ctx: &mut Context<Self>) -> bool {
        let Some(q) = self.queued.as_mut() else {
            return false;
        };
        let Some(r) = q.offer.take() else {
            return false;
        };
        q.bridged = true;
        q.answered = Some(r);
        if let (Some(cc), Some(i)) = (&self.setup.services.contact, q.interaction) {
            cc.offer_answered(i, r);
        }
        self.csat_leg_answered();
        true
    }

    /// The agent hung up: the interaction is over (wrap-up starts); the plan goes on, after
    /// the post-call survey when the queue asks for one (`csat_survey`).
    pub(super) fn queue_bridge_ended(&mut self, ctx: &mut Context<Self>) -> bool {
        if !self.queued.as_ref().is_some_and(|q| q.bridged) {
            return false;
        }
        self.queue_call_ended();
        self.winner = None;
        self.unbridge_media();
        if self.queue_wants_survey() {
            if let Some(i) = self.ivr.as_mut() {
                i.running = Running::Idle;
            }
            if let Some(ev) = self.start_survey(ctx, switchboard_dialplans::CsatSurvey::default()) {
                self.step(ctx, ev);
            }
            return true;
        }
        self.step(ctx, Event::ActionCompleted);
        true
    }

    /// The call is over (or its bridge): the router closes the interaction.
    pub(super) fn queue_call_ended(&mut self) {
        if let Some(q) = self.queued.take() {
            if let (Some(cc), Some(i)) = (&self.setup.services.contact, q.interaction) {
                cc.call_ended(i);
            }
        }
    }
}

impl Handler<VoiceUpdate> for CallActor {
    type Result = ();

    fn handle(&mut self, msg: VoiceUpdate, ctx: &mut Context<Self>) {
        if self.ended {
            return;
        }
        match msg {
            VoiceUpdate::Offer {
                interaction,
                reservation,
                agent,
                sip_user,
                timeout_secs,
                queue,
                csat_survey,
            } => {
                let Some(q) = self.queued.as_mut() else {
                    return;
                };
                if q.offer.is_some() || q.bridged {
                    // One agent at a time per call: a decline, not a missed offer (603 does
                    // not count towards the agent's auto-pause).
                    if let (Some(cc), Some(i)) = (&self.setup.services.contact, q.interaction) {
                        cc.offer_failed(i, reservation, 603);
                    }
                    return;
                }
                q.offer = Some(reservation);
                self.csat.offered = Some(super::csat::AgentLeg {
                    interaction,
                    agent,
                    queue,
                    survey: csat_survey,
                });
                let ring = Duration::from_secs(u64::from(timeout_secs.clamp(1, 600)));
                self.dial(ctx, vec![DialTarget::User(sip_user)], ring);
            }
            VoiceUpdate::Withdraw { reservation } => {
                let Some(q) = self.queued.as_mut() else {
                    return;
                };
                if q.offer == Some(reservation) {
                    q.offer = None;
                    self.dial_gen += 1;
                    for j in 0..self.legs.len() {
                        self.hang_up_leg(j as u32);
                    }
                } else if q.answered == Some(reservation) {
                    // The offer lapsed just as the agent answered: the router refused the
                    // answer, so drop the agent's leg and wait for the next offer.
                    q.answered = None;
                    q.bridged = false;
                    if let Some(w) = self.winner.take() {
                        self.hang_up_leg(w);
                    }
                    self.unbridge_media();
                    self.play_hold_music(ctx);
                }
            }
            VoiceUpdate::Position {
                position,
                estimated_wait_secs,
            } => {
                if let Some(i) = self.ivr.as_mut() {
                    i.session.set_var("queue_position", position.to_string());
                    if let Some(w) = estimated_wait_secs {
                        i.session.set_var("queue_wait_secs", w.to_string());
                    }
                }
                self.announce_position(ctx, position, estimated_wait_secs);
            }
            VoiceUpdate::Left { reason } => {
                if self.queued.as_ref().is_some_and(|q| !q.bridged) {
                    self.leave_queue(ctx, &reason);
                }
            }
        }
    }
}
