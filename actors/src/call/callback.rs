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

use super::ivr::{direct_binding, leg_format};
use super::{CallMsg, CallRecord, Side, TxTag};
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
use switchboard_engine::sip::{Message, Method, Request, Response};
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

/// The call of a callback interaction (see the module doc).
pub struct CallbackCall {
    env: CallbackEnv,
    cc: ContactCentre,
    interaction: InteractionId,
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
        CallbackCall {
            env,
            cc,
            interaction,
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
        let from = "<sip:callback@switchboard.invalid>";
        let mut req = new_request(
            Method::Invite,
            &b.contact,
            from,
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
        let Some(r) = self.offer.take() else {
            return;
        };
        self.answered = Some(r);
        self.cc.offer_answered(self.interaction, r);
        self.record.answer_ms = Some(now_ms());
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
        tracing::info!(interaction = %self.interaction, number = %self.number,
            "callback: agent answered, calling the customer");
        self.place(ctx, 1, self.number.clone(), ring);
    }

    fn customer_answered(&mut self) {
        tracing::info!(interaction = %self.interaction, "callback: customer answered, bridged");
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
            // The agent did not take it: the router offers it again (to someone else).
            self.legs[0] = None;
            if let Some(r) = self.offer.take() {
                self.cc.offer_failed(self.interaction, r, code);
            }
            return;
        }
        tracing::info!(interaction = %self.interaction, code, "callback: customer not reached");
        self.record.sip_code = code;
        if let Some(relay) = &self.relay {
            relay.play(
                Leg::B,
                tone(ToneKind::Busy, self.agent_rate, Duration::from_secs(3)),
                1,
                0,
            );
        }
        ctx.run_later(Duration::from_secs(3), |act, ctx| {
            act.finish(ctx, "callback_no_answer")
        });
    }

    /// Ends both legs, closes the interaction (the agent wraps up) and writes the CDR.
    fn finish(&mut self, ctx: &mut Context<Self>, cause: &str) {
        if self.ended {
            return;
        }
        self.ended = true;
        self.hang_up_leg(0);
        self.hang_up_leg(1);
        if self.answered.is_some() {
            self.cc.call_ended(self.interaction);
        }
        if let Some(relay) = self.relay.take() {
            let s = relay.stats();
            self.record.packets_a_to_b = s.a_to_b.packets;
            self.record.packets_b_to_a = s.b_to_a.packets;
            self.record.bytes_a_to_b = s.a_to_b.bytes;
            self.record.bytes_b_to_a = s.b_to_a.bytes;
            actix_rt::spawn(async move {
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
        if self.answered.is_some() {
            self.env.services.cdrs.write(&self.record);
        }
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
                let who = if i == 0 { "agent" } else { "customer" };
                tracing::info!(interaction = %self.interaction, who, "callback: hung up");
                if i == 0 && self.answered.is_none() {
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
            _ => {}
        }
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
                if self.offer.is_some() || self.answered.is_some() {
                    self.cc.offer_failed(self.interaction, reservation, 603);
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
                tracing::info!(interaction = %self.interaction, %reason, "callback left the queue");
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
