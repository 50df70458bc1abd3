//! Voice callbacks: a caller waiting in a queue pressed the callback digit and hung up, keeping
//! their place in line (interaction state `callback`). When the router offers the interaction,
//! [`CallbackCall`] stands in for the caller's call: it rings the agent's SIP user (the offer,
//! answered / failed / withdrawn like any voice offer), and once the agent answers it plays
//! ringback to them and calls the customer back; the customer answering bridges the two. Both
//! legs are outbound from the engine, which is the media endpoint of each (one relay session:
//! leg B the agent, leg A the customer; transcoding when their codecs differ).
//!
//! One attempt per offer: when the customer does not answer, the agent hears a busy tone, the
//! interaction completes (the agent wraps up) and the CDR says `callback_no_answer`.
//!
//! The same actor places API-originated calls (`POST /api/v1/calls`, [`CallbackCall::originate`]):
//! the first endpoint plays the agent's part (rung first, ringback while the second is called)
//! without the contact-centre hooks ([`Purpose`]). Both kinds list themselves in the live-call
//! directory and take [`Control`] requests (API leg `a` = the first endpoint, `b` = the second).

use super::ivr::{direct_binding, leg_format};
use super::{CallMsg, CallRecord, Side, TxTag};
use crate::calls_api::{ApiLeg, CallInfo, CallKind, Control, ControlError, ControlResult};
use crate::calls_api::{LegInfo, Listing};
use crate::contact::{ContactCentre, InteractionId, ReservationId, VoiceUpdate};
use crate::registrar::{aor_key, now_ms, Binding, Lookup};
use crate::router::{Command, Services, ShardHandle};
use actix::prelude::*;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use switchboard_engine::dialog::{cancel_for, new_request, Dialog};
use switchboard_engine::sdp::{endpoint_offer, negotiate, Sdp, OFFER_CODECS};
use switchboard_engine::server::new_call_id;
use switchboard_engine::sip::build::response;
use switchboard_engine::sip::{Message, Method, Request, Response, SipHeaders};
use switchboard_engine::transaction::Peer;
use switchboard_media::prompt::{tone, ToneKind};
use switchboard_media::{Leg, RelayConfig, RelaySession, Route};

/// What a callback needs from the engine: its services and a shard to send SIP through
/// (filled in when the SIP server starts).
#[derive(Clone)]
pub struct CallbackEnv {
    /// Engine services.
    pub services: Services,
    /// The shard the callback's transactions live on.
    pub shard: ShardHandle,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Calling,
    Answered,
    Done,
}

struct OutLeg {
    invite: Request,
    dest: Peer,
    offer: Sdp,
    state: State,
    dialog: Option<Dialog>,
}

/// Who asked for the two-leg call, and what that adds to it.
enum Purpose {
    /// A contact-centre callback: leg 0 is the agent (the interaction's offer), leg 1 the
    /// customer.
    Callback {
        cc: ContactCentre,
        interaction: InteractionId,
    },
    /// `POST /api/v1/calls`: leg 0 is `from`, leg 1 `to`.
    Originate {
        from: String,
        ring: Duration,
        caller_id: Option<String>,
        /// Tells the API the directory id once listed.
        listed: Option<tokio::sync::oneshot::Sender<u64>>,
    },
}

/// The engine's two-leg outbound call: a callback interaction's call, or an API-originated
/// one (see the module doc).
pub struct CallbackCall {
    env: CallbackEnv,
    purpose: Purpose,
    /// Called second (the customer; the originate's `to`).
    number: String,
    relay: Option<Arc<RelaySession>>,
    /// Index 0: the agent; 1: the customer.
    legs: [Option<OutLeg>; 2],
    offer: Option<ReservationId>,
    answered: Option<ReservationId>,
    gen: u64,
    ended: bool,
    call_ids: Vec<String>,
    record: CallRecord,
    agent_rate: u32,
    /// Leg 0 answered.
    connected: bool,
    /// The directory entry.
    listing: Option<Listing>,
    /// The id of a REFER sent by the API, waiting for its answer.
    refer: Option<u64>,
    next_id: u64,
}

impl CallbackCall {
    /// A callback for `interaction`, to call `number` back (a registered user's name or a SIP
    /// URI with an IP host).
    pub fn new(
        env: CallbackEnv,
        cc: ContactCentre,
        interaction: InteractionId,
        number: String,
    ) -> CallbackCall {
        let record = CallRecord {
            call_id: format!("callback-{}", interaction.0),
            caller: "callback".into(),
            callee: number.clone(),
            start_ms: now_ms(),
            ..Default::default()
        };
        CallbackCall::with(env, Purpose::Callback { cc, interaction }, number, record)
    }

    /// An API-originated call: rings `from` (a registered user's name or a SIP URI with an IP
    /// host) for up to `ring`; once it answers, calls `to` and bridges. `listed` receives the
    /// directory id when the actor starts.
    pub fn originate(
        env: CallbackEnv,
        from: String,
        to: String,
        ring: Duration,
        caller_id: Option<String>,
        listed: tokio::sync::oneshot::Sender<u64>,
    ) -> CallbackCall {
        let realm = env.services.auth.realm().to_string();
        let uri = |e: &str| {
            if e.contains(':') {
                e.to_string()
            } else {
                format!("sip:{e}@{realm}")
            }
        };
        let record = CallRecord {
            caller: uri(&from),
            callee: uri(&to),
            start_ms: now_ms(),
            ..Default::default()
        };
        let purpose = Purpose::Originate {
            from,
            ring,
            caller_id,
            listed: Some(listed),
        };
        CallbackCall::with(env, purpose, to, record)
    }

    fn with(env: CallbackEnv, purpose: Purpose, number: String, record: CallRecord) -> Self {
        CallbackCall {
            env,
            purpose,
            number,
            relay: None,
            legs: [None, None],
            offer: None,
            answered: None,
            gen: 0,
            ended: false,
            call_ids: Vec::new(),
            record,
            agent_rate: 8000,
            connected: false,
            listing: None,
            refer: None,
            next_id: 0,
        }
    }

    fn is_callback(&self) -> bool {
        matches!(self.purpose, Purpose::Callback { .. })
    }

    /// What the logs call this call.
    fn label(&self) -> String {
        match &self.purpose {
            Purpose::Callback { interaction, .. } => format!("interaction {interaction}"),
            Purpose::Originate { .. } => self.record.call_id.clone(),
        }
    }

    /// The From of leg `i`: each endpoint sees the other one (or the API's caller ID); a
    /// callback shows the engine.
    fn leg_from(&self, i: usize) -> String {
        match &self.purpose {
            Purpose::Callback { .. } => "<sip:callback@switchboard.invalid>".into(),
            Purpose::Originate {
                caller_id: Some(c), ..
            } => format!("<{c}>"),
            Purpose::Originate { .. } => {
                let other = if i == 0 {
                    &self.record.callee
                } else {
                    &self.record.caller
                };
                format!("<{other}>")
            }
        }
    }

    fn relay(&mut self) -> Option<Arc<RelaySession>> {
        if self.relay.is_none() {
            let media = &self.env.services.media;
            match RelaySession::start(&media.handle, &media.ports, RelayConfig::default()) {
                Ok(r) => self.relay = Some(Arc::new(r)),
                Err(e) => tracing::warn!(error = %e, "callback: no media ports"),
            }
        }
        self.relay.clone()
    }

    /// Looks `who` up (user name → registrar; SIP URI → direct) and calls it on leg `i`.
    fn place(&mut self, ctx: &mut Context<Self>, i: usize, who: String, ring: Duration) {
        let registrar = self.env.services.registrar.clone();
        let realm = self.env.services.auth.realm().to_string();
        async move {
            if who.contains(':') {
                return direct_binding(&who).into_iter().collect::<Vec<Binding>>();
            }
            match aor_key(&format!("sip:{who}@{realm}")) {
                Some(key) => registrar.send(Lookup(key)).await.unwrap_or_default(),
                None => Vec::new(),
            }
        }
        .into_actor(self)
        .map(move |bindings, act, ctx| {
            let best = bindings
                .into_iter()
                .max_by(|a, b| a.q.partial_cmp(&b.q).unwrap_or(std::cmp::Ordering::Equal));
            match best {
                Some(b) => act.invite(ctx, i, &b, ring),
                None => act.leg_failed(ctx, i, 404),
            }
        })
        .wait(ctx);
    }

    fn invite(&mut self, ctx: &mut Context<Self>, i: usize, b: &Binding, ring: Duration) {
        let Some(relay) = self.relay() else {
            return self.leg_failed(ctx, i, 503);
        };
        let leg = if i == 0 { Leg::B } else { Leg::A };
        let dest = b.destination();
        let local = self.env.shard.shared.local_addr(dest.transport);
        let call_id = new_call_id(self.env.shard.shard, &local.ip().to_string());
        let offer = endpoint_offer(relay.local_addr(leg), OFFER_CODECS);
        let from = self.leg_from(i);
        let mut req = new_request(
            Method::Invite,
            &b.contact,
            &from,
            &format!("<{}>", b.contact),
            &call_id,
            1,
            local,
            dest.transport,
        );
        req.headers.push(
            switchboard_engine::sip::HeaderName::ContentType,
            "application/sdp",
        );
        req.body = Bytes::from(offer.to_string());
        let me = ctx.address().recipient();
        self.env.shard.post(Command::Route {
            call_id: call_id.clone(),
            to: me.clone(),
            side: Side::B(i as u32),
        });
        self.env.shard.post(Command::Send {
            req: req.clone(),
            dest,
            owner: Some(me),
            tag: TxTag::Invite(i as u32),
        });
        self.call_ids.push(call_id);
        self.legs[i] = Some(OutLeg {
            invite: req,
            dest,
            offer,
            state: State::Calling,
            dialog: None,
        });
        self.gen += 1;
        let gen = self.gen;
        ctx.run_later(ring, move |act, ctx| {
            let ringing = act.legs[i]
                .as_ref()
                .is_some_and(|l| l.state == State::Calling);
            if act.gen == gen && ringing && !act.ended {
                act.hang_up_leg(i);
                act.leg_failed(ctx, i, 408);
            }
        });
    }

    fn hang_up_leg(&mut self, i: usize) {
        let Some(leg) = self.legs[i].as_mut() else {
            return;
        };
        let cmd = match leg.state {
            State::Calling => Some(Command::Send {
                req: cancel_for(&leg.invite),
                dest: leg.dest,
                owner: None,
                tag: TxTag::Fire,
            }),
            State::Answered => leg.dialog.as_mut().map(|d| Command::Stateless {
                msg: Message::Request(d.request(Method::Bye)),
                dest: d.peer,
            }),
            State::Done => None,
        };
        leg.state = State::Done;
        if let Some(c) = cmd {
            self.env.shard.post(c);
        }
    }

    fn on_response(&mut self, ctx: &mut Context<Self>, i: usize, resp: Response) {
        let Some(leg) = self.legs[i].as_mut() else {
            return;
        };
        match resp.status {
            100..=199 => {}
            200..=299 => {
                let local = self.env.shard.shared.local_addr(leg.dest.transport);
                let Some(mut d) = Dialog::uac(&leg.invite, &resp, leg.dest, local) else {
                    return;
                };
                self.env.shard.post(Command::Stateless {
                    msg: Message::Request(d.ack(1)),
                    dest: leg.dest,
                });
                if leg.state != State::Calling {
                    // Cancelled meanwhile (or a retransmitted 2xx): end this dialog.
                    if leg.state == State::Done && leg.dialog.is_none() {
                        self.env.shard.post(Command::Stateless {
                            msg: Message::Request(d.request(Method::Bye)),
                            dest: leg.dest,
                        });
                    }
                    return;
                }
                leg.state = State::Answered;
                leg.dialog = Some(d);
                let media = Sdp::parse_bytes(&resp.body)
                    .ok()
                    .and_then(|a| negotiate(&leg.offer, &a).ok());
                let relay_leg = if i == 0 { Leg::B } else { Leg::A };
                let format = media
                    .as_ref()
                    .and_then(|n| leg_format(&n.codec, n.telephone_event));
                match (&self.relay, media, format) {
                    (Some(r), Some(n), Some(f)) => {
                        r.set_remote(relay_leg, n.remote_rtp);
                        r.set_format(relay_leg, Some(f));
                        r.set_route(relay_leg, Route::Local);
                        if i == 0 {
                            self.agent_rate = f.codec.sample_rate();
                        }
                    }
                    _ => {
                        tracing::warn!("callback: answer without usable media");
                        self.hang_up_leg(i);
                        return self.leg_failed(ctx, i, 488);
                    }
                }
                if i == 0 {
                    self.agent_answered(ctx);
                } else {
                    self.customer_answered();
                }
            }
            code => {
                leg.state = State::Done;
                self.leg_failed(ctx, i, code);
            }
        }
    }

    fn agent_answered(&mut self, ctx: &mut Context<Self>) {
        if let Purpose::Callback { cc, interaction } = &self.purpose {
            let Some(r) = self.offer.take() else {
                return;
            };
            self.answered = Some(r);
            cc.offer_answered(*interaction, r);
        }
        self.connected = true;
        self.record.answer_ms = Some(now_ms());
        self.env.services.events.publish(
            "call.answered",
            serde_json::json!({ "call_id": self.record.call_id }),
        );
        if let Some(relay) = &self.relay {
            let rate = self.agent_rate;
            relay.play(
                Leg::B,
                tone(ToneKind::Ringback, rate, Duration::from_secs(4)),
                0,
                0,
            );
            let timeout = Duration::from_secs(self.env.shard.shared.config.calls.rtp_timeout_secs);
            relay
                .on_timeout(timeout)
                .into_actor(self)
                .map(|r, act, ctx| {
                    if r.is_ok() {
                        act.finish(ctx, "rtp_timeout");
                    }
                })
                .spawn(ctx);
        }
        let ring = Duration::from_secs(self.env.shard.shared.config.calls.no_answer_timeout_secs);
        tracing::info!(call = %self.label(), number = %self.number,
            "outbound call: first leg answered, calling the second");
        self.place(ctx, 1, self.number.clone(), ring);
    }

    fn customer_answered(&mut self) {
        self.env.services.events.publish(
            "call.bridged",
            serde_json::json!({ "call_id": self.record.call_id }),
        );
        tracing::info!(call = %self.label(), "outbound call: second leg answered, bridged");
        if let Some(r) = &self.relay {
            r.stop_play(Leg::B);
            r.set_route(Leg::A, Route::Bridge);
            r.set_route(Leg::B, Route::Bridge);
        }
    }

    fn leg_failed(&mut self, ctx: &mut Context<Self>, i: usize, code: u16) {
        if self.ended {
            return;
        }
        if i == 0 {
            if let Purpose::Callback { cc, interaction } = &self.purpose {
                // The agent did not take it: the router offers it again (to someone else).
                self.legs[0] = None;
                if let Some(r) = self.offer.take() {
                    cc.offer_failed(*interaction, r, code);
                }
                return;
            }
            self.record.sip_code = code;
            return self.finish(ctx, failure_cause(code));
        }
        tracing::info!(call = %self.label(), code, "outbound call: second leg not reached");
        self.record.sip_code = code;
        if let Some(relay) = &self.relay {
            relay.play(
                Leg::B,
                tone(ToneKind::Busy, self.agent_rate, Duration::from_secs(3)),
                1,
                0,
            );
        }
        let cause = if self.is_callback() {
            "callback_no_answer"
        } else {
            failure_cause(code)
        };
        ctx.run_later(Duration::from_secs(3), move |act, ctx| {
            act.finish(ctx, cause)
        });
    }

    /// Ends both legs, closes the interaction (the agent wraps up) and writes the CDR.
    fn finish(&mut self, ctx: &mut Context<Self>, cause: &str) {
        if self.ended {
            return;
        }
        self.ended = true;
        self.listing = None;
        self.hang_up_leg(0);
        self.hang_up_leg(1);
        if let (Purpose::Callback { cc, interaction }, Some(_)) = (&self.purpose, self.answered) {
            cc.call_ended(*interaction);
        }
        let recording = self.record.recording.is_some();
        if let Some(relay) = self.relay.take() {
            let s = relay.stats();
            self.record.packets_a_to_b = s.a_to_b.packets;
            self.record.packets_b_to_a = s.b_to_a.packets;
            self.record.bytes_a_to_b = s.a_to_b.bytes;
            self.record.bytes_b_to_a = s.b_to_a.bytes;
            let storage = self.env.services.storage.clone();
            let call_id = self.record.call_id.clone();
            actix_rt::spawn(async move {
                if recording {
                    if let Some(info) = relay.stop_recording().await {
                        super::index_recording(&storage, &call_id, &info, "caller,callee").await;
                    }
                }
                if let Ok(relay) = Arc::try_unwrap(relay) {
                    relay.stop().await
                }
            });
        }
        self.record.end_ms = now_ms();
        self.record.cause = cause.to_string();
        if self.record.sip_code == 0 {
            self.record.sip_code = 200;
        }
        if self.answered.is_some() || !self.is_callback() {
            self.env.services.cdrs.write(&self.record);
        }
        super::events::publish_ended(&self.env.services.events, &self.record);
        self.env.shard.post(Command::Forget {
            ids: std::mem::take(&mut self.call_ids),
            owner: Some(ctx.address().recipient()),
        });
        ctx.stop();
    }

    fn on_request(
        &mut self,
        ctx: &mut Context<Self>,
        tx: switchboard_engine::transaction::TxKey,
        req: Request,
        side: Side,
    ) {
        let i = match side {
            Side::B(i) => i as usize,
            Side::A => return,
        };
        let resp = match req.method {
            Method::Bye => {
                self.env.shard.post(Command::Respond {
                    tx,
                    resp: response(&req, 200),
                });
                if let Some(l) = self.legs.get_mut(i).and_then(Option::as_mut) {
                    l.state = State::Done;
                }
                tracing::info!(call = %self.label(), leg = i, "outbound call: hung up");
                if i == 0 && self.answered.is_none() && self.is_callback() {
                    return;
                }
                return self.finish(ctx, "normal_clearing");
            }
            Method::Invite => {
                // A re-INVITE (hold, refresh): keep the media as negotiated.
                let body = self
                    .legs
                    .get(i)
                    .and_then(Option::as_ref)
                    .map(|l| Bytes::from(l.offer.to_string()));
                let mut r = response(&req, 200);
                if let Some(b) = body {
                    r.headers.push(
                        switchboard_engine::sip::HeaderName::ContentType,
                        "application/sdp",
                    );
                    r.body = b;
                }
                r
            }
            Method::Info | Method::Update | Method::Options => response(&req, 200),
            _ => response(&req, 405),
        };
        self.env.shard.post(Command::Respond { tx, resp });
    }
}

impl Actor for CallbackCall {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.env.services.events.publish(
            "call.created",
            serde_json::json!({
                "call_id": self.record.call_id,
                "caller": self.record.caller,
                "callee": self.record.callee,
                "kind": if self.is_callback() { "callback" } else { "originate" },
            }),
        );
        let kind = if self.is_callback() {
            CallKind::Callback
        } else {
            CallKind::Originate
        };
        let info = CallInfo {
            id: 0,
            kind,
            call_id: self.record.call_id.clone(),
            caller: self.record.caller.clone(),
            callee: self.record.callee.clone(),
            state: "ringing",
            start_ms: self.record.start_ms,
            answer_ms: None,
            legs: Vec::new(),
            recording: false,
        };
        let listing = self
            .env
            .services
            .calls
            .list(info, ctx.address().recipient());
        let id = listing.id();
        self.listing = Some(listing);
        if let Purpose::Originate {
            from, ring, listed, ..
        } = &mut self.purpose
        {
            self.record.call_id = format!("originate-{id}");
            if let Some(tx) = listed.take() {
                let _ = tx.send(id);
            }
            let (from, ring) = (from.clone(), *ring);
            self.place(ctx, 0, from, ring);
        }
        self.refresh_listing();
    }
}

/// The CDR cause of a leg that was not answered with `code`.
fn failure_cause(code: u16) -> &'static str {
    match code {
        486 | 600 => "busy",
        408 | 480 => "no_answer",
        404 => "not_found",
        _ => "rejected",
    }
}

fn out_state(s: State) -> &'static str {
    match s {
        State::Calling => "calling",
        State::Answered => "answered",
        State::Done => "ended",
    }
}

impl CallbackCall {
    /// Brings the directory entry up to date.
    fn refresh_listing(&mut self) {
        let Some(l) = &self.listing else { return };
        let legs: Vec<LegInfo> = self
            .legs
            .iter()
            .enumerate()
            .filter_map(|(i, l)| {
                let l = l.as_ref()?;
                Some(LegInfo {
                    leg: if i == 0 { "a" } else { "b" },
                    call_id: l.invite.call_id().unwrap_or_default().to_string(),
                    uri: l.invite.uri.clone(),
                    state: out_state(l.state),
                })
            })
            .collect();
        let both = legs.len() == 2 && legs.iter().all(|l| l.state == "answered");
        let state = if both {
            "bridged"
        } else if self.connected {
            "answered"
        } else {
            "ringing"
        };
        let (call_id, answer_ms) = (self.record.call_id.clone(), self.record.answer_ms);
        let recording = self.record.recording.is_some();
        l.update(|i| {
            i.call_id = call_id;
            i.state = state;
            i.answer_ms = answer_ms;
            i.legs = legs;
            i.recording = recording;
        });
    }

    /// The leg index and relay leg of an API leg (`a` = leg 0 on relay B, `b` = leg 1 on A).
    fn api_leg(leg: ApiLeg) -> (usize, Leg) {
        match leg {
            ApiLeg::A => (0, Leg::B),
            ApiLeg::B => (1, Leg::A),
        }
    }

    fn answered_leg(&mut self, leg: ApiLeg) -> Result<(usize, Leg), ControlError> {
        let (i, media) = Self::api_leg(leg);
        match self.legs[i].as_ref() {
            Some(l) if l.state == State::Answered => Ok((i, media)),
            _ => Err(ControlError::conflict(format!(
                "leg {} is not answered",
                leg.name()
            ))),
        }
    }

    fn control(
        &mut self,
        ctx: &mut Context<Self>,
        msg: Control,
    ) -> Result<ControlFuture, ControlError> {
        match msg {
            Control::Replace(_) => Err(super::transfer::not_replaceable()),
            Control::Hangup => {
                self.finish(ctx, "api");
                Ok(done(
                    serde_json::json!({ "state": "ended", "cause": "api" }),
                ))
            }
            Control::Transfer { leg, to } => {
                if self.refer.is_some() {
                    return Err(ControlError::conflict("a transfer is in progress"));
                }
                let (i, _) = self.answered_leg(leg)?;
                let local = self.env.shard.shared.local_addr(
                    self.legs[i]
                        .as_ref()
                        .map_or(switchboard_engine::transaction::TransportKind::Udp, |l| {
                            l.dest.transport
                        }),
                );
                let target = super::control::refer_target(&to, local);
                let Some(d) = self.legs[i].as_mut().and_then(|l| l.dialog.as_mut()) else {
                    return Err(ControlError::conflict("the leg has no dialog"));
                };
                let (req, dest) = (super::control::refer_request(d, &target, local), d.peer);
                self.next_id += 1;
                self.refer = Some(self.next_id);
                self.env.shard.post(Command::Send {
                    req,
                    dest,
                    owner: Some(ctx.address().recipient()),
                    tag: TxTag::Forwarded(self.next_id),
                });
                Ok(done(
                    serde_json::json!({ "leg": leg.name(), "to": target, "state": "referring" }),
                ))
            }
            Control::Recording { start } => {
                let relay = self
                    .relay
                    .clone()
                    .ok_or_else(|| ControlError::conflict("the call has no media"))?;
                if start {
                    if self.record.recording.is_some() {
                        return Err(ControlError::conflict("already recording"));
                    }
                    let dir = self.env.services.ivr.recordings_dir.clone();
                    let path = super::control::start_recording(&relay, dir, &self.record.call_id)?;
                    // event: call.recording_started
                    self.record.recording = Some(path.display().to_string());
                    return Ok(done(
                        serde_json::json!({ "recording": true, "path": path.display().to_string() }),
                    ));
                }
                let Some(path) = self.record.recording.take() else {
                    return Err(ControlError::conflict("not recording"));
                };
                // event: call.recording_stopped
                let storage = self.env.services.storage.clone();
                let call_id = self.record.call_id.clone();
                Ok(Box::pin(async move {
                    super::control::stop_recording(&relay, &storage, &call_id, path.into()).await
                }))
            }
            Control::Play { leg, prompt } => {
                let (_, media) = self.answered_leg(leg)?;
                let relay = self
                    .relay
                    .clone()
                    .ok_or_else(|| ControlError::conflict("the call has no media"))?;
                let rate = if media == Leg::B {
                    self.agent_rate
                } else {
                    8000
                };
                let field = super::control::prompt_field(&prompt);
                let render = super::control::render_prompt(&self.env.services.ivr, prompt, rate);
                Ok(Box::pin(async move {
                    let clip = render
                        .await
                        .map_err(|e| ControlError::field(422, field, e))?;
                    let ms = super::control::clip_ms(&clip);
                    // event: call.play_started
                    relay.play(media, clip, 1, super::control::API_PLAY_ID);
                    Ok(serde_json::json!({ "leg": leg.name(), "playing": true, "duration_ms": ms }))
                }))
            }
            Control::Dtmf {
                leg,
                digits,
                duration_ms,
            } => {
                let (_, media) = self.answered_leg(leg)?;
                let relay = self
                    .relay
                    .clone()
                    .ok_or_else(|| ControlError::conflict("the call has no media"))?;
                super::control::send_digits(
                    &self.env.services.media.handle,
                    relay,
                    media,
                    &digits,
                    duration_ms,
                );
                Ok(done(
                    serde_json::json!({ "leg": leg.name(), "digits": digits }),
                ))
            }
        }
    }
}

type ControlFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ControlResult>>>;

fn done(v: serde_json::Value) -> ControlFuture {
    Box::pin(std::future::ready(Ok(v)))
}

impl Handler<Control> for CallbackCall {
    type Result = ResponseFuture<ControlResult>;

    fn handle(&mut self, msg: Control, ctx: &mut Context<Self>) -> Self::Result {
        if self.ended {
            return super::control::ready(Err(ControlError::not_found()));
        }
        let r = self.control(ctx, msg);
        self.refresh_listing();
        match r {
            Ok(f) => f,
            Err(e) => super::control::ready(Err(e)),
        }
    }
}

impl Handler<CallMsg> for CallbackCall {
    type Result = ();

    fn handle(&mut self, msg: CallMsg, ctx: &mut Context<Self>) {
        match msg {
            CallMsg::Response {
                tag: TxTag::Invite(i),
                resp,
            } if i < 2 => self.on_response(ctx, i as usize, resp),
            CallMsg::Timeout {
                tag: TxTag::Invite(i),
            } if i < 2 => {
                if let Some(l) = self.legs[i as usize].as_mut() {
                    l.state = State::Done;
                }
                self.leg_failed(ctx, i as usize, 408);
            }
            CallMsg::Request { tx, req, side, .. } => self.on_request(ctx, tx, req, side),
            CallMsg::Response {
                tag: TxTag::Forwarded(id),
                resp,
            } if self.refer == Some(id) && resp.status >= 200 => {
                self.refer = None;
                if resp.status < 300 {
                    // event: call.transferred
                    self.finish(ctx, "transferred");
                }
            }
            _ => {}
        }
        self.refresh_listing();
    }
}

impl Handler<VoiceUpdate> for CallbackCall {
    type Result = ();

    fn handle(&mut self, msg: VoiceUpdate, ctx: &mut Context<Self>) {
        if self.ended {
            return;
        }
        match msg {
            VoiceUpdate::Offer {
                reservation,
                sip_user,
                timeout_secs,
                ..
            } => {
                let Purpose::Callback { cc, interaction } = &self.purpose else {
                    return;
                };
                if self.offer.is_some() || self.answered.is_some() {
                    cc.offer_failed(*interaction, reservation, 603);
                    return;
                }
                self.offer = Some(reservation);
                let ring = Duration::from_secs(u64::from(timeout_secs.clamp(1, 600)));
                self.place(ctx, 0, sip_user, ring);
            }
            VoiceUpdate::Withdraw { reservation } => {
                if self.offer == Some(reservation) {
                    self.offer = None;
                    self.gen += 1;
                    self.hang_up_leg(0);
                    self.legs[0] = None;
                } else if self.answered == Some(reservation) {
                    self.answered = None;
                    self.hang_up_leg(0);
                    self.hang_up_leg(1);
                    self.legs = [None, None];
                }
            }
            VoiceUpdate::Position { .. } => {}
            VoiceUpdate::Left { reason } => {
                tracing::info!(call = %self.label(), %reason, "callback left the queue");
                self.finish(ctx, "callback_expired");
            }
        }
    }
}

impl Handler<super::SuperviseMsg> for CallbackCall {
    type Result = Result<u64, String>;

    fn handle(&mut self, _msg: super::SuperviseMsg, _ctx: &mut Context<Self>) -> Self::Result {
        Err("callback calls cannot be supervised yet".into())
    }
}
