//! The call actor: one per call, a B2BUA between the caller's leg (A) and one or more callee
//! legs (B, forked in parallel; the first 2xx wins, the others are cancelled). It lives on its
//! shard's arbiter and talks SIP only through [`Command`]s to the shard, which owns the
//! transactions.
//!
//! A [`TeardownGuard`] travels inside the actor: if the actor dies without finishing (a panic in
//! a handler: actix does not supervise those), the guard's `Drop` tears the call down: 500 on a
//! pending caller INVITE, BYE on answered legs, CANCEL on ringing ones, and a CDR with cause
//! `internal_error`.

mod callback;
mod control;
mod csat;
mod dtls;
mod events;
mod ivr;
mod prack;
mod queue;
mod session_timer;
mod srtp;
mod supervise;
mod transfer;
mod trunk_dial;
use trunk_dial::cseq_number;

pub use callback::{CallbackCall, CallbackEnv};
pub use dtls::init_identity as init_dtls;
pub use ivr::IvrTools;
pub use supervise::{SuperviseMsg, SupervisionEnded};
pub use transfer::{HandOver, Party};

use crate::registrar::{aor_key, now_ms, Binding, Lookup};
use crate::router::{Command, Services, ShardHandle};
use actix::prelude::*;
use bytes::Bytes;
use std::time::Duration;
use switchboard_engine::auth::{Algorithm, Credentials, Verdict};
use switchboard_engine::dialog::{cancel_for, new_request, uri_of, with_to_tag, Dialog};
use switchboard_engine::sdp::{filter_offer, has_voice_codec, LegOrigin, Sdp};
use switchboard_engine::server::new_call_id;
use switchboard_engine::sip::build::{response, response_with_reason};
use switchboard_engine::sip::{HeaderName, Message, Method, Request, Response, SipHeaders};
use switchboard_engine::transaction::{Peer, TxKey};
use switchboard_media::{Leg, LegFormat, RelayConfig, RelaySession};

/// Which side of a call a message belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The caller.
    A,
    /// A callee leg (fork index).
    B(u32),
}

/// What a client transaction is, for its call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxTag {
    /// The INVITE of B leg n.
    Invite(u32),
    /// A request forwarded from the other side, whose final answer is relayed back.
    Forwarded(u64),
    /// Anything whose answer does not matter (BYE, CANCEL).
    Fire,
    /// A session refresh the engine sent to the caller (RFC 4028).
    Refresh,
}

/// Everything a new call starts from.
pub struct CallSetup {
    /// The caller's INVITE server transaction.
    pub tx: TxKey,
    /// The caller's INVITE.
    pub invite: Request,
    /// Where it came from.
    pub source: Peer,
    /// The shard.
    pub shard: ShardHandle,
    /// Engine-wide services.
    pub services: Services,
    /// The trunk this call came in on (its admission slot, freed with the call).
    pub trunk: Option<crate::trunk::Lease>,
}

/// Messages the router delivers to a call.
#[derive(Message)]
#[rtype(result = "()")]
pub enum CallMsg {
    /// A request for this call (in-dialog, or CANCEL of the caller's INVITE).
    Request {
        /// Its server transaction.
        tx: TxKey,
        /// The request.
        req: Request,
        /// Where it came from.
        source: Peer,
        /// Which side sent it.
        side: Side,
    },
    /// An ACK for a 2xx this call sent.
    Ack {
        /// Which side sent it.
        side: Side,
    },
    /// A response to one of the call's client transactions.
    Response {
        /// Which transaction.
        tag: TxTag,
        /// The response.
        resp: Response,
    },
    /// A client transaction timed out (or could not be sent).
    Timeout {
        /// Which transaction.
        tag: TxTag,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LegState {
    Calling,
    Early,
    Answered,
    Done,
}

struct BLeg {
    invite: Request,
    dest: Peer,
    call_id: String,
    state: LegState,
    dialog: Option<Dialog>,
}

/// A request forwarded to the other side, waiting for its final answer.
struct Pending {
    id: u64,
    from: Side,
    tx: TxKey,
    req: Request,
}

/// The call record kept while the call runs and written at its end.
#[derive(Clone, Debug, Default)]
pub struct CallRecord {
    /// The caller's Call-ID.
    pub call_id: String,
    /// Caller URI.
    pub caller: String,
    /// Called URI.
    pub callee: String,
    /// Start (ms since the epoch).
    pub start_ms: i64,
    /// Answer time.
    pub answer_ms: Option<i64>,
    /// End time.
    pub end_ms: i64,
    /// Why it ended.
    pub cause: String,
    /// The final status sent to the caller.
    pub sip_code: u16,
    /// RTP packets caller → callee.
    pub packets_a_to_b: u64,
    /// RTP packets callee → caller.
    pub packets_b_to_a: u64,
    /// RTP bytes caller → callee.
    pub bytes_a_to_b: u64,
    /// RTP bytes callee → caller.
    pub bytes_b_to_a: u64,
    /// RTP packets lost caller → callee (sequence gaps).
    pub lost_a_to_b: u64,
    /// RTP packets lost callee → caller.
    pub lost_b_to_a: u64,
    /// MOS of the audio received from the caller / from the callee.
    pub mos: [Option<f64>; 2],
    /// RFC 3550 jitter (ms) of the audio received from the caller / from the callee.
    pub jitter_ms: [Option<f64>; 2],
    /// Codec of the caller's / callee's leg.
    pub codecs: [Option<String>; 2],
    /// The last recording made during the call.
    pub recording: Option<String>,
}

/// What the guard needs to tear a call down after a panic.
#[derive(Default)]
struct Teardown {
    a_pending: Option<(TxKey, Request)>,
    a_dialog: Option<Dialog>,
    b_calling: Vec<(Request, Peer)>,
    b_dialogs: Vec<Dialog>,
    call_ids: Vec<String>,
    record: CallRecord,
    finished: bool,
    /// `call.created` was published (so `call.ended` is due).
    announced: bool,
    /// `call.ringing` was published.
    rang: bool,
}

/// Tears the call down if the actor is dropped before it finished (see the module doc).
pub struct TeardownGuard {
    shard: ShardHandle,
    cdrs: crate::cdr::CdrSink,
    events: crate::events::Events,
    addr: Option<Addr<CallActor>>,
    state: Teardown,
}

impl Drop for TeardownGuard {
    fn drop(&mut self) {
        let m = &self.shard.shared.metrics;
        if self.addr.is_some() || self.state.finished {
            m.calls_active.dec();
        }
        let t = &mut self.state;
        if t.finished {
            m.calls_ended.with_label_values(&[&t.record.cause]).inc();
        } else {
            m.calls_ended.with_label_values(&["internal_error"]).inc();
        }
        if t.finished {
            return;
        }
        tracing::error!(call_id = %t.record.call_id, "call actor died; tearing the call down");
        if let Some((tx, invite)) = t.a_pending.take() {
            let resp = response_with_reason(&invite, 500, "Server Internal Error (call failed)");
            self.shard.post(Command::Respond { tx, resp });
        }
        let mut byes: Vec<(Request, Peer)> = Vec::new();
        if let Some(d) = t.a_dialog.as_mut() {
            byes.push((d.request(Method::Bye), d.peer));
        }
        for d in t.b_dialogs.iter_mut() {
            byes.push((d.request(Method::Bye), d.peer));
        }
        for (invite, dest) in &t.b_calling {
            byes.push((cancel_for(invite), *dest));
        }
        for (req, dest) in byes {
            self.shard.post(Command::Stateless {
                msg: Message::Request(req),
                dest,
            });
        }
        self.shard.post(Command::Forget {
            ids: std::mem::take(&mut t.call_ids),
            owner: self.addr.take().map(Addr::recipient),
        });
        t.record.end_ms = now_ms();
        t.record.cause = "internal_error".into();
        if t.record.sip_code == 0 {
            t.record.sip_code = 500;
        }
        self.cdrs.write(&t.record);
        if t.announced {
            events::publish_ended(&self.events, &t.record);
        }
    }
}

/// The B2BUA call actor.
pub struct CallActor {
    setup: CallSetup,
    a_tag: String,
    a_dialog: Option<Dialog>,
    a_final: bool,
    a_acked: bool,
    ok_to_a: Option<Response>,
    legs: Vec<BLeg>,
    winner: Option<u32>,
    pending: Vec<Pending>,
    next_id: u64,
    best_failure: Option<Response>,
    guard: TeardownGuard,
    ended: bool,
    relay: Option<std::sync::Arc<RelaySession>>,
    offer_to_b: Option<Sdp>,
    b_body: Bytes,
    origins: [LegOrigin; 2],
    write_cdr: bool,
    /// The dialplan state, when a plan routes this call.
    ivr: Option<Box<ivr::Ivr>>,
    /// The user the caller authenticated as.
    authenticated_user: Option<String>,
    /// The REFER of a blind transfer in progress.
    transfer_tx: Option<u64>,
    /// Negotiated formats of legs A and B (for DTMF interworking and the CDR).
    leg_formats: [Option<LegFormat>; 2],
    /// What the callee's answer agreed (codec, DTMF).
    negotiated_b: Option<switchboard_engine::sdp::Negotiated>,
    /// Counts dial attempts, so a ring timer of an old attempt does nothing.
    dial_gen: u64,
    /// The queue this call waits in, if any.
    queued: Option<queue::Queued>,
    /// The post-call survey: the last agent leg and the survey running (`csat.rs`).
    csat: csat::CsatCall,
    /// The whole-call recording (`record_session`), while it runs.
    session_recording: Option<std::path::PathBuf>,
    /// Supervisors listening to this call (its bridge moved into a room).
    supervision: Option<supervise::Supervision>,
    /// The call this one supervises (dialplan `monitor`).
    monitoring: Option<supervise::Monitoring>,
    /// SDES-SRTP of both legs (`srtp.rs`).
    srtp: srtp::CallSrtp,
    /// The call-control API's view and requests (`control.rs`).
    api: control::ApiState,
    /// Reliable provisional responses on both legs (`prack.rs`).
    prack: prack::CallPrack,
    /// The caller leg's session timer (`session_timer.rs`).
    timer: session_timer::CallTimer,
    /// Transfers the phones asked for (`transfer.rs`).
    xfer: transfer::CallTransfer,
}

impl CallActor {
    /// A call for a new INVITE.
    pub fn new(setup: CallSetup) -> CallActor {
        let dtls_setup = dtls::DtlsSetup::from_config(&setup.shard.shared.config.calls);
        let record = CallRecord {
            call_id: setup.invite.call_id().unwrap_or_default().to_string(),
            caller: setup
                .invite
                .headers
                .get(&HeaderName::From)
                .and_then(uri_of)
                .unwrap_or_default(),
            callee: setup.invite.uri.clone(),
            start_ms: now_ms(),
            ..Default::default()
        };
        let guard = TeardownGuard {
            shard: setup.shard.clone(),
            cdrs: setup.services.cdrs.clone(),
            events: setup.services.events.clone(),
            addr: None,
            state: Teardown {
                a_pending: Some((setup.tx, setup.invite.clone())),
                call_ids: vec![record.call_id.clone()],
                record,
                ..Default::default()
            },
        };
        let ip = setup.services.media.sdp_ip;
        // The tag `response()` puts on every answer to this INVITE: the caller's dialog must
        // carry the tag the caller saw (its requests, and ours, match it).
        let a_tag = switchboard_engine::sip::build::local_tag(&setup.invite);
        CallActor {
            b_body: setup.invite.body.clone(),
            origins: [LegOrigin::random(ip), LegOrigin::random(ip)],
            setup,
            a_tag,
            a_dialog: None,
            a_final: false,
            a_acked: false,
            ok_to_a: None,
            legs: Vec::new(),
            winner: None,
            pending: Vec::new(),
            next_id: 0,
            best_failure: None,
            guard,
            ended: false,
            relay: None,
            offer_to_b: None,
            write_cdr: true,
            ivr: None,
            authenticated_user: None,
            transfer_tx: None,
            leg_formats: [None, None],
            negotiated_b: None,
            dial_gen: 0,
            queued: None,
            csat: csat::CsatCall::default(),
            session_recording: None,
            supervision: None,
            monitoring: None,
            srtp: srtp::CallSrtp::new(dtls_setup),
            api: control::ApiState::default(),
            prack: prack::CallPrack::default(),
            timer: session_timer::CallTimer::default(),
            xfer: transfer::CallTransfer::default(),
        }
    }

    /// Posts a command to the shard; a call holding a dialog of another shard (taken over by
    /// a transfer) posts that dialog's commands to its shard.
    fn post(&self, c: Command) {
        if self.xfer.foreign {
            if let Command::Forget { ids, owner } = c {
                return self.post_forget(ids, owner);
            }
            if let Some(h) = self.shard_for(&c) {
                return h.post(c);
            }
        }
        self.setup.shard.post(c);
    }

    fn local(&self) -> std::net::SocketAddr {
        self.setup.shard.shared.local_addr_for(self.setup.source)
    }

    /// Our Contact towards the caller: `sips:` over TLS only when the caller uses `sips:`.
    fn a_contact(&self) -> String {
        let inv = &self.setup.invite;
        let theirs = inv
            .headers
            .get(&HeaderName::Contact)
            .map(str::to_string)
            .unwrap_or_default();
        switchboard_engine::dialog::contact_for(
            self.local(),
            self.setup.source.transport,
            &[&inv.uri, &theirs],
        )
    }

    /// A response to the caller's INVITE, with our To tag and Contact.
    fn a_response(&self, status: u16, reason: Option<&str>) -> Response {
        let r = match reason {
            Some(reason) => response_with_reason(&self.setup.invite, status, reason),
            None => response(&self.setup.invite, status),
        };
        let mut r = with_to_tag(r, &self.a_tag);
        if (101..300).contains(&status) {
            r.headers.push(HeaderName::Contact, self.a_contact());
        }
        r
    }

    /// Sends the caller a final answer (non-2xx) and ends the call.
    fn fail_a(&mut self, ctx: &mut Context<Self>, resp: Response, cause: &str) {
        if !self.a_final {
            self.a_final = true;
            self.prack_final_sent();
            self.guard.state.record.sip_code = resp.status;
            self.guard.state.a_pending = None;
            self.post(Command::Respond {
                tx: self.setup.tx,
                resp,
            });
        }
        self.end(ctx, cause);
    }

    fn end(&mut self, ctx: &mut Context<Self>, cause: &str) {
        if self.ended {
            return;
        }
        self.ended = true;
        // event: call.ended (cause, CDR fields)
        self.api.listing = None;
        for i in 0..self.legs.len() {
            self.hang_up_leg(i as u32);
        }
        self.end_supervision();
        self.stop_monitoring();
        self.queue_call_ended();
        let legs = if self.session_recording.is_some() {
            "caller,callee"
        } else {
            "caller"
        };
        let recording = self.session_recording.is_some()
            || self
                .ivr
                .as_ref()
                .is_some_and(|i| matches!(&i.running, ivr::Running::Record(_)));
        let relay = self.relay.take();
        let formats = self.leg_formats;
        let t = &mut self.guard.state;
        for (i, f) in formats.iter().enumerate() {
            t.record.codecs[i] = f.map(|f| f.codec.sdp_name().to_string());
        }
        if let Some(relay) = relay {
            for leg in [Leg::A, Leg::B] {
                let q = relay.quality(leg);
                if q.packets > 0 {
                    t.record.mos[leg as usize] = Some(q.mos);
                    t.record.jitter_ms[leg as usize] = Some(q.jitter_ms);
                    self.setup
                        .shard
                        .shared
                        .metrics
                        .rtp_jitter_ms
                        .observe(q.jitter_ms);
                }
            }
            let s = relay.stats();
            let rejected = s.a_to_b.srtp_rejected + s.b_to_a.srtp_rejected;
            if rejected > 0 {
                tracing::warn!(
                    call_id = %t.record.call_id,
                    a_to_b = s.a_to_b.srtp_rejected,
                    b_to_a = s.b_to_a.srtp_rejected,
                    "SRTP packets rejected"
                );
                self.setup
                    .shard
                    .shared
                    .metrics
                    .srtp_rejected
                    .inc_by(rejected);
            }
            t.record.packets_a_to_b = s.a_to_b.packets;
            t.record.packets_b_to_a = s.b_to_a.packets;
            t.record.bytes_a_to_b = s.a_to_b.bytes;
            t.record.bytes_b_to_a = s.b_to_a.bytes;
            t.record.lost_a_to_b = s.a_to_b.lost;
            t.record.lost_b_to_a = s.b_to_a.lost;
            let m = &self.setup.shard.shared.metrics;
            for (dir, d) in [("a_to_b", &s.a_to_b), ("b_to_a", &s.b_to_a)] {
                m.rtp_packets.with_label_values(&[dir]).inc_by(d.packets);
                m.rtp_lost.with_label_values(&[dir]).inc_by(d.lost);
            }
            let storage = self.setup.services.storage.clone();
            let call_id = t.record.call_id.clone();
            actix_rt::spawn(async move {
                if recording {
                    // A voicemail the caller hung up on is still a voicemail.
                    if let Some(info) = relay.stop_recording().await {
                        index_recording(&storage, &call_id, &info, legs).await;
                    }
                }
                if let Ok(relay) = std::sync::Arc::try_unwrap(relay) {
                    relay.stop().await
                }
            });
        }
        t.record.end_ms = now_ms();
        t.record.cause = cause.to_string();
        t.finished = true;
        if self.write_cdr {
            self.guard.cdrs.write(&t.record);
        }
        if t.announced {
            events::publish_ended(&self.setup.services.events, &t.record);
        }
        let ids = std::mem::take(&mut t.call_ids);
        self.post(Command::Forget {
            ids,
            owner: Some(ctx.address().recipient()),
        });
        ctx.stop();
    }

    /// CANCEL a ringing leg, BYE an answered one.
    fn hang_up_leg(&mut self, i: u32) {
        let Some(leg) = self.legs.get_mut(i as usize) else {
            return;
        };
        let cmd = match leg.state {
            LegState::Calling | LegState::Early => Some(Command::Send {
                req: cancel_for(&leg.invite),
                dest: leg.dest,
                owner: None,
                tag: TxTag::Fire,
            }),
            LegState::Answered => leg
                .dialog
                .as_mut()
                .map(|d| (d.request(Method::Bye), d.peer))
                .map(|(req, dest)| Command::Stateless {
                    msg: Message::Request(req),
                    dest,
                }),
            LegState::Done => None,
        };
        leg.state = LegState::Done;
        if let Some(c) = cmd {
            self.post(c);
        }
    }

    fn on_located(&mut self, ctx: &mut Context<Self>, bindings: Vec<Binding>) {
        if self.a_final {
            return;
        }
        if bindings.is_empty() {
            let r = self.a_response(404, Some("Not Found (not registered)"));
            return self.fail_a(ctx, r, "not_found");
        }
        let ring = Duration::from_secs(self.setup.shard.shared.config.calls.no_answer_timeout_secs);
        self.start_b_legs(ctx, bindings, ring);
    }

    /// Forks an INVITE to every binding (the B legs), with `ring` as the no-answer timeout.
    fn start_b_legs(&mut self, ctx: &mut Context<Self>, bindings: Vec<Binding>, ring: Duration) {
        let inv = &self.setup.invite;
        let from = inv
            .headers
            .get(&HeaderName::From)
            .and_then(uri_of)
            .map(|u| format!("<{u}>"))
            .unwrap_or_else(|| "<sip:anonymous@anonymous.invalid>".into());
        let to = inv
            .headers
            .get(&HeaderName::To)
            .and_then(uri_of)
            .map(|u| format!("<{u}>"))
            .unwrap_or_else(|| format!("<{}>", inv.uri));
        let max_forwards = inv
            .headers
            .get(&HeaderName::MaxForwards)
            .and_then(|m| m.parse::<u32>().ok())
            .unwrap_or(70)
            .saturating_sub(1);
        let local = self.local();
        let host = local.ip().to_string();
        let first = self.legs.len();
        for (n, b) in bindings.iter().enumerate() {
            let i = first + n;
            let call_id = new_call_id(self.setup.shard.shard, &host);
            // A trunk leg carries the trunk's caller ID and codec preference.
            let (leg_from, leg_body) = self.trunk_leg(&b.contact).unzip();
            let mut req = new_request(
                Method::Invite,
                &b.contact,
                leg_from.as_deref().unwrap_or(&from),
                &to,
                &call_id,
                1,
                // Via and Contact name the listener of the leg's own transport.
                self.setup.shard.shared.local_addr(b.source.transport),
                b.source.transport,
            );
            req.headers
                .set(HeaderName::MaxForwards, max_forwards.to_string());
            self.identity_headers(&mut req, b.destination().addr.ip());
            req.headers
                .push(HeaderName::Supported, switchboard_engine::prack::OPTION_TAG);
            let body = leg_body.unwrap_or_else(|| self.b_body.clone());
            if !body.is_empty() {
                req.headers.push(HeaderName::ContentType, "application/sdp");
                req.body = body;
            }
            let side = Side::B(i as u32);
            self.post(Command::Route {
                call_id: call_id.clone(),
                to: ctx.address().recipient(),
                side,
            });
            self.post(Command::Send {
                req: req.clone(),
                dest: b.destination(),
                owner: Some(ctx.address().recipient()),
                tag: TxTag::Invite(i as u32),
            });
            self.guard.state.call_ids.push(call_id.clone());
            self.guard
                .state
                .b_calling
                .push((req.clone(), b.destination()));
            self.legs.push(BLeg {
                invite: req,
                dest: b.destination(),
                call_id,
                state: LegState::Calling,
                dialog: None,
            });
        }
        self.dial_gen += 1;
        let gen = self.dial_gen;
        ctx.run_later(ring, move |act, ctx| {
            if act.winner.is_some() || act.dial_gen != gen || act.ended {
                return;
            }
            if act.ivr.is_some() {
                for j in first..act.legs.len() {
                    act.hang_up_leg(j as u32);
                }
                act.dial_failed(ctx, 480, "Temporarily Unavailable (no answer)");
            } else if !act.a_final {
                let r = act.a_response(480, Some("Temporarily Unavailable (no answer)"));
                act.fail_a(ctx, r, "no_answer");
            }
        });
    }

    fn on_leg_response(&mut self, ctx: &mut Context<Self>, i: u32, resp: Response) {
        if self.is_transfer_leg(i) {
            return self.on_transfer_leg_response(ctx, i, resp);
        }
        self.on_adopted_response(i, &resp);
        let shard = self.setup.shard.clone();
        let (winner_none, has_ivr, dialing, a_final) = (
            self.winner.is_none(),
            self.ivr.is_some(),
            self.dialing(),
            self.a_final,
        );
        let Some(leg) = self.legs.get_mut(i as usize) else {
            return;
        };
        if leg.state == LegState::Done && resp.status >= 300 {
            // A leg given up already (cancelled, or timed out towards a trunk gateway).
            return;
        }
        if leg.state == LegState::Done && resp.status >= 200 && resp.status < 300 {
            // A late 2xx on a cancelled fork: ACK and BYE it (RFC 3261 §13.2.2.4 / §15).
            if let Some(mut d) = Dialog::uac(
                &leg.invite,
                &resp,
                leg.dest,
                self.setup.shard.shared.local_addr(leg.dest.transport),
            ) {
                let ack = d.ack(cseq_number(&leg.invite));
                let bye = d.request(Method::Bye);
                shard.post(Command::Stateless {
                    msg: Message::Request(ack),
                    dest: leg.dest,
                });
                shard.post(Command::Stateless {
                    msg: Message::Request(bye),
                    dest: leg.dest,
                });
            }
            return;
        }
        match resp.status {
            100 => {}
            101..=199 => {
                leg.state = LegState::Early;
                let Some(reliable) = self.prack_leg_provisional(ctx, i, &resp) else {
                    return; // a retransmitted reliable provisional, PRACKed already
                };
                if !self.a_final {
                    let status = resp.status;
                    let mut r = self.a_response(resp.status, Some(&resp.reason));
                    if !resp.body.is_empty() {
                        if let Ok(body) = self.anchor(&resp.body, Leg::B, false) {
                            r.headers.push(HeaderName::ContentType, "application/sdp");
                            r.body = body;
                        }
                    }
                    self.provisional_to_a(ctx, r, reliable);
                    self.publish_ringing(status);
                }
            }
            200..=299 => {
                let local = self.setup.shard.shared.local_addr(leg.dest.transport);
                let Some(mut d) = Dialog::uac(&leg.invite, &resp, leg.dest, local) else {
                    return;
                };
                let ack = d.ack(cseq_number(&leg.invite));
                self.prack_carry_cseq(i, &mut d);
                let Some(leg) = self.legs.get_mut(i as usize) else {
                    return;
                };
                shard.post(Command::Stateless {
                    msg: Message::Request(ack),
                    dest: leg.dest,
                });
                let wanted = winner_none && if has_ivr { dialing } else { !a_final };
                if !wanted {
                    let bye = d.request(Method::Bye);
                    shard.post(Command::Stateless {
                        msg: Message::Request(bye),
                        dest: leg.dest,
                    });
                    leg.state = LegState::Done;
                    return;
                }
                leg.state = LegState::Answered;
                leg.dialog = Some(d.clone());
                // event: call.bridged (leg i answered)
                self.winner = Some(i);
                self.guard.state.b_calling.clear();
                self.guard.state.b_dialogs.push(d);
                for j in 0..self.legs.len() as u32 {
                    if j != i {
                        self.hang_up_leg(j);
                    }
                }
                if self.a_final {
                    // The engine answered the caller itself (IVR, queue): bridge to this leg.
                    if let Err(e) = self.accept_b_answer(&resp) {
                        tracing::warn!(error = %e, "callee answer unusable");
                        self.hang_up_leg(i);
                        self.winner = None;
                        return self.dial_failed(ctx, 488, "Not Acceptable Here");
                    }
                    self.bridge_media();
                    self.dial_answered(ctx);
                } else {
                    self.answer_a(ctx, &resp);
                    if self.ivr.is_some() && !self.ended {
                        self.dial_answered(ctx);
                    }
                }
                let shared = &self.setup.shard.shared;
                if shared.config.calls.debug_panic_injection
                    && self
                        .setup
                        .invite
                        .headers
                        .get(&HeaderName::Other("X-Switchboard-Panic".into()))
                        == Some("answer")
                {
                    panic!("panic injected by X-Switchboard-Panic (debug_panic_injection is on)");
                }
            }
            401 | 407 if self.trunk_auth_retry(ctx, i, &resp) => {}
            _ => {
                let Some(leg) = self.legs.get_mut(i as usize) else {
                    return;
                };
                leg.state = LegState::Done;
                self.guard
                    .state
                    .b_calling
                    .retain(|(r, _)| r.call_id() != Some(leg.call_id.as_str()));
                let better = match &self.best_failure {
                    None => true,
                    Some(b) => resp.status >= 600 || (b.status < 600 && resp.status < b.status),
                };
                if better {
                    self.best_failure = Some(resp);
                }
                if self.legs.iter().all(|l| l.state == LegState::Done)
                    && self.winner.is_none()
                    && self.ivr.is_some()
                {
                    let (status, reason) = self
                        .best_failure
                        .take()
                        .map_or((480, "Temporarily Unavailable".to_string()), |b| {
                            (b.status, b.reason)
                        });
                    return self.dial_failed(ctx, status, &reason);
                }
                if self.legs.iter().all(|l| l.state == LegState::Done) && self.winner.is_none() {
                    let (status, reason) = self
                        .best_failure
                        .as_ref()
                        .map_or((480, "Temporarily Unavailable".to_string()), |b| {
                            (b.status, b.reason.clone())
                        });
                    let cause = match status {
                        486 | 600 => "busy",
                        408 | 480 => "no_answer",
                        _ => "rejected",
                    };
                    let r = self.a_response(status, Some(&reason));
                    self.fail_a(ctx, r, cause);
                }
            }
        }
    }

    fn answer_a(&mut self, ctx: &mut Context<Self>, b_ok: &Response) {
        let mut ok = self.a_response(200, None);
        if !b_ok.body.is_empty() {
            match self.anchor(&b_ok.body, Leg::B, false) {
                Ok(body) => {
                    ok.headers.push(HeaderName::ContentType, "application/sdp");
                    ok.body = body;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "callee answer unusable");
                    let r = self.a_response(488, Some("Not Acceptable Here (no common codec)"));
                    self.winner = None;
                    return self.fail_a(ctx, r, "rejected");
                }
            }
        }
        if let (Some(relay), Some(n)) = (&self.relay, &self.negotiated_b) {
            // Pass-through: both legs use the format the callee chose.
            let f = ivr::leg_format(&n.codec, n.telephone_event);
            relay.set_format(Leg::A, f);
            relay.set_format(Leg::B, f);
            self.leg_formats = [f, f];
        }
        self.send_ok_to_a(ctx, ok.body.clone());
    }

    /// Answers the caller 200 with `body` (SDP, or empty): dialog, CDR answer time, 2xx
    /// retransmission, RTP and maximum-duration watchdogs.
    fn send_ok_to_a(&mut self, ctx: &mut Context<Self>, body: Bytes) {
        let mut ok = self.a_response(200, None);
        if !body.is_empty() {
            ok.headers.push(HeaderName::ContentType, "application/sdp");
            ok.body = body;
        }
        if let Some(relay) = &self.relay {
            let timeout =
                Duration::from_secs(self.setup.shard.shared.config.calls.rtp_timeout_secs);
            relay
                .on_timeout(timeout)
                .into_actor(self)
                .map(|r, act, ctx| {
                    if r.is_ok() {
                        act.hang_up(ctx, "rtp_timeout");
                    }
                })
                .spawn(ctx);
        }
        self.session_timer_headers(&mut ok);
        self.a_final = true;
        self.prack_final_sent();
        self.guard.state.a_pending = None;
        let local = self.local();
        self.a_dialog = Dialog::uas(&self.setup.invite, &self.a_tag, self.setup.source, local);
        self.guard.state.a_dialog = self.a_dialog.clone();
        // event: call.answered
        self.guard.state.record.answer_ms = Some(now_ms());
        self.guard.state.record.sip_code = 200;
        self.publish_answered();
        self.post(Command::Respond {
            tx: self.setup.tx,
            resp: ok.clone(),
        });
        self.ok_to_a = Some(ok);
        self.session_timer_start(ctx);
        if !self.setup.source.transport.is_reliable() {
            let t1 = Duration::from_millis(self.setup.shard.shared.config.sip.t1_ms);
            self.retransmit_ok(ctx, t1, Duration::ZERO);
        }
        let max = Duration::from_secs(self.setup.shard.shared.config.calls.max_duration_secs);
        ctx.run_later(max, |act, ctx| act.hang_up(ctx, "max_duration"));
    }

    /// RFC 3261 §13.3.1.4: the UAS core retransmits its 2xx until the ACK arrives.
    fn retransmit_ok(&mut self, ctx: &mut Context<Self>, interval: Duration, elapsed: Duration) {
        let cfg = &self.setup.shard.shared.config.sip;
        let t2 = Duration::from_millis(cfg.t2_ms);
        let limit = Duration::from_millis(cfg.t1_ms * 64);
        ctx.run_later(interval, move |act, ctx| {
            if act.a_acked || act.ended {
                return;
            }
            let elapsed = elapsed + interval;
            if elapsed >= limit {
                return act.hang_up(ctx, "no_ack");
            }
            if let Some(ok) = act.ok_to_a.clone() {
                act.post(Command::Stateless {
                    msg: Message::Response(ok),
                    dest: act.setup.source,
                });
            }
            act.retransmit_ok(ctx, (interval * 2).min(t2), elapsed);
        });
    }

    /// Ends an answered call from our side: BYE to both parties.
    fn hang_up(&mut self, ctx: &mut Context<Self>, cause: &str) {
        if let Some(d) = self.a_dialog.as_mut() {
            let bye = d.request(Method::Bye);
            let dest = d.peer;
            self.post(Command::Stateless {
                msg: Message::Request(bye),
                dest,
            });
        }
        self.end(ctx, cause);
    }

    /// Rewrites an SDP that leg `from` sent so that the other leg sends its media to us: points
    /// the relay's `from` side at the author's RTP address and puts our relay port for the
    /// other side in the body. Without a relay (no SDP in the INVITE) bodies pass unchanged.
    /// `offer` tells an offer from an answer, for SRTP: the crypto of the author's leg is read
    /// and the other leg gets the engine's own (`srtp.rs`).
    fn anchor(&mut self, body: &Bytes, from: Leg, offer: bool) -> Result<Bytes, String> {
        let policy = self.b_srtp_policy();
        let Some(relay) = &self.relay else {
            return Ok(body.clone());
        };
        let mut sdp = Sdp::parse_bytes(body).map_err(|e| e.to_string())?;
        let stream = sdp.audio_stream().ok_or("no audio stream")?;
        if from == Leg::B {
            if let Some(offer) = &self.offer_to_b {
                let n = switchboard_engine::sdp::negotiate(offer, &sdp)
                    .map_err(|e| format!("{e:?}"))?;
                self.negotiated_b = Some(n);
            }
        }
        let to = from.other();
        let relay_ref = Some(&**relay);
        if offer {
            self.srtp.take_offer(from, &sdp, stream.index, relay_ref)?;
            let secure = self.srtp.wants_secure(to, policy);
            self.srtp
                .make_offer(to, &mut sdp, stream.index, secure, relay_ref)?;
        } else {
            self.srtp.take_answer(from, &sdp, stream.index, relay_ref)?;
            self.srtp.make_answer(to, &mut sdp, stream.index);
        }
        if stream.rtp.is_some() {
            relay.set_remote(from, stream.rtp);
        } else {
            relay.reset_latch(from);
        }
        sdp.rewrite_for_anchor(
            stream.index,
            self.setup.services.media.sdp_ip,
            relay.local_addr(to).port(),
        )
        .map_err(|e| format!("{e:?}"))?;
        self.srtp.finish_sdp(to, &mut sdp, stream.index, offer);
        self.origins[to as usize].stamp(&mut sdp);
        if to == Leg::B && self.offer_to_b.is_none() {
            self.offer_to_b = Some(sdp.clone());
        }
        self.start_dtls(from);
        Ok(Bytes::from(sdp.to_string()))
    }

    /// The callee answered a call the engine had answered itself: point leg B at the callee's
    /// media and set its format (the caller already has the engine's own answer).
    fn accept_b_answer(&mut self, resp: &Response) -> Result<(), String> {
        let Some(relay) = &self.relay else {
            return Ok(());
        };
        let sdp = Sdp::parse_bytes(&resp.body).map_err(|e| e.to_string())?;
        let offer = self.offer_to_b.as_ref().ok_or("no offer was sent")?;
        let n = switchboard_engine::sdp::negotiate(offer, &sdp).map_err(|e| e.to_string())?;
        self.srtp
            .take_answer(Leg::B, &sdp, n.index, Some(&**relay))?;
        relay.set_remote(Leg::B, n.remote_rtp);
        let f = ivr::leg_format(&n.codec, n.telephone_event);
        relay.set_format(Leg::B, f);
        self.leg_formats[1] = f;
        self.negotiated_b = Some(n);
        self.start_dtls(Leg::B);
        Ok(())
    }

    /// The SRTP policy toward the B leg: `calls.srtp`, or the called user's override.
    fn b_srtp_policy(&self) -> switchboard_engine::config::SrtpPolicy {
        let user = aor_key(&self.setup.invite.uri);
        self.setup
            .shard
            .shared
            .config
            .calls
            .srtp_for(user.as_deref())
    }

    /// Whether a B-leg answer is wanted now: a dial or a queue offer is ringing.
    fn dialing(&self) -> bool {
        if self.queued.as_ref().is_some_and(|q| q.offer.is_some()) {
            return true;
        }
        matches!(
            self.ivr.as_ref().map(|i| &i.running),
            Some(ivr::Running::Dial { bridged: false, .. })
        )
    }

    /// Whether `ip` is in `calls.trusted_sources` (the trust domain of RFC 3325: carriers and
    /// proxies, not user phones).
    fn is_trusted(&self, ip: std::net::IpAddr) -> bool {
        self.setup
            .services
            .trusted
            .iter()
            .any(|n| switchboard_engine::config::cidr_contains(*n, ip))
    }

    /// Identity headers of a B leg, at the trust boundary (RFC 3325, RFC 3323):
    /// `P-Asserted-Identity` is the authenticated user's own identity, the caller's when the
    /// caller is trusted, and dropped from untrusted callers; it is withheld from an untrusted
    /// destination when the caller asked `Privacy: id`. `Privacy: user` / `header` anonymise
    /// From. `Privacy`, `Diversion` and `History-Info` pass through.
    fn identity_headers(&self, req: &mut Request, dest: std::net::IpAddr) {
        let inv = &self.setup.invite;
        let named = |name: &str| -> Vec<String> {
            inv.headers
                .iter()
                .filter(|h| h.name.as_str().eq_ignore_ascii_case(name))
                .map(|h| h.value.to_string())
                .collect()
        };
        let privacy: Vec<String> = named("Privacy")
            .iter()
            .flat_map(|v| v.split(';').map(|t| t.trim().to_ascii_lowercase()))
            .filter(|t| !t.is_empty())
            .collect();
        let pai = match &self.authenticated_user {
            Some(u) => vec![format!("<sip:{u}@{}>", self.setup.services.auth.realm())],
            None if self.is_trusted(self.setup.source.addr.ip()) => named("P-Asserted-Identity"),
            None => Vec::new(),
        };
        let withhold = privacy.iter().any(|t| t == "id") && !self.is_trusted(dest);
        if !withhold {
            for v in pai {
                req.headers
                    .push(HeaderName::Other("P-Asserted-Identity".into()), v);
            }
        }
        if privacy.iter().any(|t| t == "user" || t == "header") {
            if let Some(from) = req.headers.get_mut(&HeaderName::From) {
                let tag = from.find(";tag=").map(|i| from[i..].to_string());
                *from = format!(
                    "\"Anonymous\" <sip:anonymous@anonymous.invalid>{}",
                    tag.unwrap_or_default()
                );
            }
        }
        for name in ["Privacy", "Diversion", "History-Info"] {
            for v in named(name) {
                req.headers.push(HeaderName::Other(name.into()), v);
            }
        }
    }

    /// Checks the caller's Proxy-Authorization; routes the call when it is right.
    fn authenticate(&mut self, ctx: &mut Context<Self>) {
        let creds = self
            .setup
            .invite
            .headers
            .get_all(&HeaderName::ProxyAuthorization)
            .find_map(Credentials::parse);
        let Some(creds) = creds else {
            return self.challenge(ctx, false);
        };
        if self.trunk_credentials(ctx, &creds) {
            return;
        }
        let storage = self.setup.services.storage.clone();
        let realm = self.setup.services.auth.realm().to_string();
        let user = creds.username.clone();
        async move { storage.get_user(&user, &realm).await }
            .into_actor(self)
            .map(move |found, act, ctx| match found {
                Ok(Some(u)) => {
                    let ha1 = if creds.algorithm() == Some(Algorithm::Sha256) {
                        &u.ha1_sha256
                    } else {
                        &u.ha1_md5
                    };
                    match act.setup.services.auth.verify(
                        &creds,
                        "INVITE",
                        ha1,
                        now_ms().max(0) as u64,
                    ) {
                        Verdict::Ok => {
                            act.guard.state.record.caller =
                                format!("sip:{}@{}", u.username, u.realm);
                            act.authenticated_user = Some(u.username.clone());
                            act.route(ctx)
                        }
                        Verdict::Stale => act.challenge(ctx, true),
                        Verdict::BadNonce => act.challenge(ctx, false),
                        Verdict::WrongPassword => {
                            act.auth_failed();
                            let r = act.a_response(403, Some("Forbidden (wrong password)"));
                            act.fail_a(ctx, r, "rejected")
                        }
                    }
                }
                Ok(None) => {
                    act.auth_failed();
                    let r = act.a_response(403, Some("Forbidden"));
                    act.fail_a(ctx, r, "rejected")
                }
                Err(e) => {
                    tracing::error!(error = %e, "user lookup failed");
                    let r = act.a_response(500, Some("Server Internal Error (user lookup)"));
                    act.fail_a(ctx, r, "internal_error")
                }
            })
            .wait(ctx);
    }

    fn challenge(&mut self, ctx: &mut Context<Self>, stale: bool) {
        let mut r = self.a_response(407, None);
        for c in self
            .setup
            .services
            .auth
            .challenges(now_ms().max(0) as u64, stale)
        {
            r.headers.push(HeaderName::ProxyAuthenticate, c);
        }
        self.write_cdr = false; // a challenge is not a call
        self.fail_a(ctx, r, "auth_challenge");
    }

    /// Anchors the media of the caller's offer and looks the callee up.
    fn route(&mut self, ctx: &mut Context<Self>) {
        self.publish_created();
        if !self.session_timer_check(ctx) {
            return;
        }
        if !self.setup.invite.body.is_empty() {
            let offer = match Sdp::parse_bytes(&self.setup.invite.body) {
                Ok(s) => filter_offer(&s),
                Err(e) => {
                    let r = self.a_response(400, Some(&format!("Malformed SDP: {e}")));
                    return self.fail_a(ctx, r, "rejected");
                }
            };
            if !has_voice_codec(&offer) {
                let r = self.a_response(488, Some("Not Acceptable Here (no supported codec)"));
                return self.fail_a(ctx, r, "rejected");
            }
            let media = &self.setup.services.media;
            match RelaySession::start(&media.handle, &media.ports, RelayConfig::default()) {
                Ok(relay) => self.relay = Some(std::sync::Arc::new(relay)),
                Err(e) => {
                    tracing::warn!(error = %e, "no media ports");
                    let r = self.a_response(503, Some("Service Unavailable (no media ports)"));
                    return self.fail_a(ctx, r, "no_media_ports");
                }
            }
            let body = Bytes::from(offer.to_string());
            match self.anchor(&body, Leg::A, true) {
                Ok(b) => self.b_body = b,
                Err(e) => {
                    let r = self.a_response(488, Some(&format!("Not Acceptable Here ({e})")));
                    return self.fail_a(ctx, r, "rejected");
                }
            }
        }
        if self.invite_replaces(ctx) {
            return;
        }
        if self.start_dialplan(ctx) {
            return;
        }
        let Some(key) = aor_key(&self.setup.invite.uri) else {
            let r = self.a_response(404, Some("Not Found (no user in the Request-URI)"));
            return self.fail_a(ctx, r, "not_found");
        };
        self.setup
            .services
            .registrar
            .send(Lookup(key))
            .into_actor(self)
            .map(|res, act, ctx| act.on_located(ctx, res.unwrap_or_default()))
            .wait(ctx);
    }

    fn on_request(
        &mut self,
        ctx: &mut Context<Self>,
        tx: TxKey,
        req: Request,
        source: Peer,
        side: Side,
    ) {
        if req.method == Method::Prack {
            return self.on_prack(ctx, tx, &req);
        }
        if self.transfer_intercepts(tx, &req, side) {
            return;
        }
        if req.method == Method::Refer {
            return self.on_refer(ctx, tx, req, side);
        }
        if req.method == Method::Notify {
            // The progress of a REFER the engine sent (API or dialplan transfer): read here,
            // never forwarded (the other party subscribed to nothing).
            return self.post(Command::Respond {
                tx,
                resp: response(&req, 200),
            });
        }
        if req.method == Method::Info && self.info_as_dtmf(ctx, side, &req) {
            return self.post(Command::Respond {
                tx,
                resp: response(&req, 200),
            });
        }
        let in_ivr = self.ivr.is_some() && self.winner.is_none() && self.a_dialog.is_some();
        if in_ivr && side == Side::A && matches!(req.method, Method::Invite | Method::Update) {
            self.session_refreshed(ctx);
            return self.reoffer_here(tx, &req);
        }
        if let (Method::Bye, Side::B(i)) = (&req.method, side) {
            if self.ivr.is_some() && self.winner == Some(i) {
                self.post(Command::Respond {
                    tx,
                    resp: response(&req, 200),
                });
                if let Some(l) = self.legs.get_mut(i as usize) {
                    l.state = LegState::Done;
                }
                if self.bridge_ended(ctx) {
                    return;
                }
                return self.hang_up(ctx, "callee_hangup");
            }
        }
        match (req.method.clone(), side) {
            (Method::Cancel, Side::A) => {
                self.post(Command::Respond {
                    tx,
                    resp: response(&req, 200),
                });
                if !self.a_final {
                    let r = self.a_response(487, None);
                    self.fail_a(ctx, r, "caller_cancel");
                }
            }
            (Method::Bye, _) => {
                self.post(Command::Respond {
                    tx,
                    resp: response(&req, 200),
                });
                let other = match side {
                    Side::A => self
                        .winner
                        .and_then(|w| self.legs.get_mut(w as usize))
                        .and_then(|l| l.dialog.as_mut()),
                    Side::B(_) => self.a_dialog.as_mut(),
                };
                if let Some(d) = other {
                    let bye = d.request(Method::Bye);
                    let dest = d.peer;
                    self.post(Command::Stateless {
                        msg: Message::Request(bye),
                        dest,
                    });
                }
                if let Side::B(i) = side {
                    if let Some(l) = self.legs.get_mut(i as usize) {
                        l.state = LegState::Done;
                    }
                }
                if side == Side::A {
                    if let Some(l) = self.winner.and_then(|w| self.legs.get_mut(w as usize)) {
                        l.state = LegState::Done;
                    }
                }
                let cause = if side == Side::A {
                    "normal_clearing"
                } else {
                    "callee_hangup"
                };
                self.end(ctx, cause);
            }
            (Method::Ack, _) => {}
            (_, _) if self.winner.is_none() || self.a_dialog.is_none() => {
                self.post(Command::Respond {
                    tx,
                    resp: response(&req, 481),
                });
            }
            (method, _) => {
                // re-INVITE, UPDATE, INFO…: forward to the other side, relay its final answer.
                if method == Method::Invite
                    && self.pending.iter().any(|p| p.req.method == Method::Invite)
                {
                    let mut r = response(&req, 491);
                    r.headers.push(HeaderName::RetryAfter, "1");
                    return self.post(Command::Respond { tx, resp: r });
                }
                let other = match side {
                    Side::A => self
                        .winner
                        .and_then(|w| self.legs.get_mut(w as usize))
                        .and_then(|l| l.dialog.as_mut()),
                    Side::B(_) => self.a_dialog.as_mut(),
                };
                let Some(d) = other else {
                    return self.post(Command::Respond {
                        tx,
                        resp: response(&req, 481),
                    });
                };
                let mut fwd = d.request(method);
                for name in [
                    HeaderName::ContentType,
                    HeaderName::Other("Content-Disposition".into()),
                ] {
                    if let Some(v) = req.headers.get(&name) {
                        fwd.headers.push(name.clone(), v.to_string());
                    }
                }
                fwd.body = req.body.clone();
                let dest = d.peer;
                let from = if side == Side::A { Leg::A } else { Leg::B };
                if !fwd.body.is_empty()
                    && fwd
                        .headers
                        .get(&HeaderName::ContentType)
                        .is_some_and(|t| t.starts_with("application/sdp"))
                {
                    match self.anchor(&req.body, from, true) {
                        Ok(b) => fwd.body = b,
                        Err(_) => {
                            return self.post(Command::Respond {
                                tx,
                                resp: response(&req, 488),
                            })
                        }
                    }
                }
                self.next_id += 1;
                let id = self.next_id;
                self.pending.push(Pending {
                    id,
                    from: side,
                    tx,
                    req,
                });
                let _ = source;
                self.post(Command::Send {
                    req: fwd,
                    dest,
                    owner: Some(ctx.address().recipient()),
                    tag: TxTag::Forwarded(id),
                });
            }
        }
    }

    /// A SIP INFO carrying a digit (`application/dtmf-relay`): a gather input while the engine
    /// holds the caller, or RFC 4733 into the other leg when that leg has telephone-event.
    /// False when the INFO should be forwarded as it is.
    fn info_as_dtmf(&mut self, ctx: &mut Context<Self>, side: Side, req: &Request) -> bool {
        let Some(c) = ivr::info_digit(&req.body) else {
            return false;
        };
        if self.winner.is_none() {
            if side == Side::A && self.ivr.is_some() {
                self.on_caller_digit(ctx, c);
                return true;
            }
            return false;
        }
        let to = if side == Side::A { Leg::B } else { Leg::A };
        let has_events =
            self.leg_formats[to as usize].is_some_and(|f| f.dtmf_payload_type.is_some());
        match (&self.relay, ivr::to_digit(c)) {
            (Some(relay), Some(d)) if has_events => {
                relay.send_dtmf(to, d, 160);
                true
            }
            _ => false,
        }
    }

    /// A re-INVITE or UPDATE from a caller the engine holds itself: answer with the engine's SDP.
    fn reoffer_here(&mut self, tx: TxKey, req: &Request) {
        let mut ok = response(req, 200);
        ok = with_to_tag(ok, &self.a_tag);
        if !req.body.is_empty() {
            let answer = Sdp::parse_bytes(&req.body)
                .ok()
                .map(|o| filter_offer(&o))
                .zip(self.relay.as_ref())
                .and_then(|(o, r)| {
                    let (a, n) =
                        switchboard_engine::sdp::answer_offer(&o, r.local_addr(Leg::A)).ok()?;
                    self.srtp.take_offer(Leg::A, &o, n.index, Some(&**r)).ok()?;
                    Some((a, n))
                });
            let Some((mut sdp, n)) = answer else {
                return self.post(Command::Respond {
                    tx,
                    resp: response(req, 488),
                });
            };
            if let Some(relay) = &self.relay {
                relay.set_remote(Leg::A, n.remote_rtp);
                let f = ivr::leg_format(&n.codec, n.telephone_event);
                relay.set_format(Leg::A, f);
                self.leg_formats[0] = f;
            }
            self.srtp.make_answer(Leg::A, &mut sdp, n.index);
            self.start_dtls(Leg::A);
            self.origins[Leg::A as usize].stamp(&mut sdp);
            ok.headers.push(HeaderName::ContentType, "application/sdp");
            ok.body = Bytes::from(sdp.to_string());
        }
        ok.headers.push(HeaderName::Contact, self.a_contact());
        self.post(Command::Respond { tx, resp: ok });
    }

    fn on_forwarded_response(&mut self, ctx: &mut Context<Self>, id: u64, resp: Response) {
        if resp.status < 200 {
            return;
        }
        if self.api_refer_answered(ctx, id, resp.status) {
            return;
        }
        if self.transfer_tx == Some(id) {
            return self.on_refer_response(ctx, resp.status);
        }
        let Some(pos) = self.pending.iter().position(|p| p.id == id) else {
            return;
        };
        let p = self.pending.remove(pos);
        // The side that answered is the other one: ACK its 2xx to a re-INVITE ourselves.
        if p.req.method == Method::Invite && resp.status < 300 {
            let answering = match p.from {
                Side::A => self
                    .winner
                    .and_then(|w| self.legs.get_mut(w as usize))
                    .and_then(|l| l.dialog.as_mut()),
                Side::B(_) => self.a_dialog.as_mut(),
            };
            if let Some(d) = answering {
                let cseq = d.local_cseq;
                let ack = d.ack(cseq);
                let dest = d.peer;
                self.post(Command::Stateless {
                    msg: Message::Request(ack),
                    dest,
                });
            }
        }
        let mut r = response_with_reason(&p.req, resp.status, &resp.reason);
        if let Some(tag) = match p.from {
            Side::A => Some(self.a_tag.clone()),
            Side::B(_) => self
                .a_dialog
                .as_ref()
                .map(|d| d.local_tag.clone())
                .and_then(|_| {
                    self.winner
                        .and_then(|w| self.legs.get(w as usize))
                        .and_then(|l| l.dialog.as_ref())
                        .map(|d| d.local_tag.clone())
                }),
        } {
            r = with_to_tag(r, &tag);
        }
        if !resp.body.is_empty() {
            let ctype = resp
                .headers
                .get(&HeaderName::ContentType)
                .unwrap_or("application/sdp")
                .to_string();
            let answering = if p.from == Side::A { Leg::B } else { Leg::A };
            r.body = if ctype.starts_with("application/sdp") {
                self.anchor(&resp.body, answering, false)
                    .unwrap_or_else(|_| resp.body.clone())
            } else {
                resp.body.clone()
            };
            r.headers.push(HeaderName::ContentType, ctype);
        }
        if (200..300).contains(&resp.status)
            && matches!(p.req.method, Method::Invite | Method::Update)
        {
            self.session_refreshed(ctx);
            if p.from == Side::A {
                self.session_timer_headers(&mut r);
            }
        }
        if (200..300).contains(&resp.status) && p.req.method == Method::Invite {
            r.headers.push(HeaderName::Contact, self.a_contact());
        }
        self.post(Command::Respond { tx: p.tx, resp: r });
    }
}

impl Actor for CallActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.guard.addr = Some(ctx.address());
        self.setup.shard.shared.metrics.calls_active.inc();
        // event: call.created
        self.list_in_directory(ctx);
        self.setup.shard.shared.metrics.calls_total.inc();
        self.post(Command::Respond {
            tx: self.setup.tx,
            resp: response(&self.setup.invite, 100),
        });
        if self.is_trusted(self.setup.source.addr.ip())
            || self.setup.trunk.is_some()
            || crate::webrtc::is_gateway(self.setup.source.addr)
        {
            self.route(ctx);
        } else {
            self.authenticate(ctx);
        }
    }
}

impl Handler<CallMsg> for CallActor {
    type Result = ();

    fn handle(&mut self, msg: CallMsg, ctx: &mut Context<Self>) {
        match msg {
            CallMsg::Request {
                tx,
                req,
                source,
                side,
            } => self.on_request(ctx, tx, req, source, side),
            CallMsg::Ack { side: Side::A } => self.a_acked = true,
            CallMsg::Ack { .. } => {}
            CallMsg::Response {
                tag: TxTag::Invite(i),
                resp,
            } => self.on_leg_response(ctx, i, resp),
            CallMsg::Response {
                tag: TxTag::Forwarded(id),
                resp,
            } => self.on_forwarded_response(ctx, id, resp),
            CallMsg::Response {
                tag: TxTag::Refresh,
                resp,
            } => self.on_refresh_response(ctx, resp),
            CallMsg::Response {
                tag: TxTag::Fire, ..
            }
            | CallMsg::Timeout {
                tag: TxTag::Fire | TxTag::Refresh,
            } => {}
            CallMsg::Timeout {
                tag: TxTag::Invite(i),
            } => {
                let r = Response {
                    status: 408,
                    reason: "Request Timeout".into(),
                    headers: Default::default(),
                    body: Bytes::new(),
                };
                self.on_leg_response(ctx, i, r);
            }
            CallMsg::Timeout {
                tag: TxTag::Forwarded(id),
            } => {
                let r = Response {
                    status: 408,
                    reason: "Request Timeout".into(),
                    headers: Default::default(),
                    body: Bytes::new(),
                };
                self.on_forwarded_response(ctx, id, r);
            }
        }
        self.refresh_listing();
    }
}

impl Handler<ivr::MediaMsg> for CallActor {
    type Result = ();

    fn handle(&mut self, msg: ivr::MediaMsg, ctx: &mut Context<Self>) {
        self.on_media_event(ctx, msg.0);
        self.refresh_listing();
    }
}

impl Handler<ivr::SpeechMsg> for CallActor {
    type Result = ();

    fn handle(&mut self, msg: ivr::SpeechMsg, ctx: &mut Context<Self>) {
        self.on_speech(ctx, msg.0);
    }
}

/// Writes a recording's index row (best effort: a failure is logged, the file stays).
async fn index_recording(
    storage: &switchboard_storage::Storage,
    call_id: &str,
    info: &switchboard_media::RecordingInfo,
    legs: &str,
) {
    let rec = switchboard_storage::Recording {
        id: 0,
        call_id: call_id.to_string(),
        path: info.path.display().to_string(),
        started_ms: now_ms() - info.duration_ms as i64,
        duration_ms: info.duration_ms as i64,
        bytes: info.bytes as i64,
        rate: i64::from(info.rate),
        channels: i64::from(info.legs),
        legs: legs.to_string(),
        format: "wav".into(),
        created_ms: now_ms(),
    };
    if let Err(e) = storage.insert_recording(&rec).await {
        tracing::warn!(error = %e, "recording not indexed");
    }
}
