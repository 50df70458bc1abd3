//! The answering side: rings, answers (or rejects a share of calls with a chosen code),
//! retransmits its 2xx until the ACK, answers BYE, CANCEL, OPTIONS and REGISTER. Sans-IO over
//! the engine's transaction layer.

use crate::agent::{earliest, remote_audio, sdp_body, Agent, MediaEvent, Sip};
use crate::stats::{Counters, Failure};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_engine::dialog::{contact_value, new_tag, with_to_tag};
use switchboard_engine::sip::build::response;
use switchboard_engine::sip::{HeaderName, Message, Method, Request, Response, SipHeaders};
use switchboard_engine::transaction::{Peer, TransportKind, TuEvent, TxKey};

/// What one UAS worker does.
#[derive(Clone, Debug)]
pub struct UasConfig {
    /// Calls still to take, shared by every uas worker (callers may all land on one of
    /// them); `None` = until drained.
    pub calls_left: Option<Arc<AtomicU64>>,
    /// Share of calls rejected, 0–100, and with which status.
    pub reject_percent: u8,
    /// The status of rejected calls (e.g. 486, 503).
    pub reject_code: u16,
    /// Ring time between 180 and 200.
    pub ring: Duration,
    /// Our RTP address in the SDP answer.
    pub media: SocketAddr,
    /// Whether to start RTP (play or echo) once the call is up.
    pub with_media: bool,
}

#[derive(Debug)]
struct Call {
    invite_tx: TxKey,
    invite: Request,
    tag: String,
    ok: Option<Response>,
    source: Peer,
    /// Next 2xx retransmission and its interval.
    retransmit: Option<(Instant, Duration)>,
    /// The 2xx was sent at this instant (for the no-ACK give-up).
    answered_at: Option<Instant>,
    acked: bool,
    media: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    /// Send the 200 (ring time over).
    Answer,
    /// Retransmit the 2xx or give up.
    Retransmit,
}

/// The UAS state machine for one worker.
#[derive(Debug)]
pub struct Uas {
    cfg: UasConfig,
    sip: Sip,
    t1: Duration,
    t2: Duration,
    calls: HashMap<u64, Call>,
    by_call_id: HashMap<String, u64>,
    timers: BinaryHeap<Reverse<(Instant, u64, Timer)>>,
    next_call: u64,
    draining: bool,
}

impl Uas {
    /// A UAS worker answering at `local`.
    pub fn new(cfg: UasConfig, local: SocketAddr, t1_ms: u64, counters: Arc<Counters>) -> Uas {
        let t1 = Duration::from_millis(t1_ms.max(1));
        Uas {
            cfg,
            sip: Sip::new(local, t1_ms, counters),
            t1,
            t2: Duration::from_secs(4),
            calls: HashMap::new(),
            by_call_id: HashMap::new(),
            timers: BinaryHeap::new(),
            next_call: 0,
            draining: false,
        }
    }

    fn counters(&self) -> &Counters {
        &self.sip.counters
    }

    fn accepting(&self) -> bool {
        !self.draining
            && self
                .cfg
                .calls_left
                .as_ref()
                .is_none_or(|left| left.load(Relaxed) > 0)
    }

    /// Takes one call from the shared quota; false when it is used up.
    fn take_quota(&self) -> bool {
        match &self.cfg.calls_left {
            None => true,
            Some(left) => left
                .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
                .is_ok(),
        }
    }

    fn respond(&mut self, now: Instant, tx: &TxKey, resp: Response) {
        let _ = self.sip.layer.send_response(now, tx, resp);
    }

    fn on_invite(&mut self, now: Instant, tx: TxKey, req: Request, source: Peer) {
        if let Some(cid) = req.call_id() {
            if self.by_call_id.contains_key(cid) {
                // A re-INVITE (hold, session refresh): answer with the same SDP.
                let id = self.by_call_id.get(cid).copied();
                let call = id.and_then(|id| self.calls.get(&id));
                if let Some(c) = call {
                    let mut r = with_to_tag(response(&req, 200), &c.tag);
                    r.headers.push(
                        HeaderName::Contact,
                        contact_value(self.sip.local, TransportKind::Udp),
                    );
                    r.headers.push(HeaderName::ContentType, "application/sdp");
                    r.body = sdp_body(1, self.cfg.media, remote_pt(&req.body));
                    self.respond(now, &tx, r);
                }
                return;
            }
        }
        if self.draining || !self.take_quota() {
            let r = response(&req, 503);
            return self.respond(now, &tx, r);
        }
        let id = self.next_call;
        self.next_call += 1;
        self.counters().started.fetch_add(1, Relaxed);
        let tag = new_tag();
        let reject = self.cfg.reject_percent > 0
            && (id * u64::from(self.cfg.reject_percent)) / 100
                != ((id + 1) * u64::from(self.cfg.reject_percent)) / 100;
        if reject {
            let r = with_to_tag(response(&req, self.cfg.reject_code), &tag);
            self.counters().rejected.fetch_add(1, Relaxed);
            return self.respond(now, &tx, r);
        }
        let mut ringing = with_to_tag(response(&req, 180), &tag);
        ringing.headers.push(
            HeaderName::Contact,
            contact_value(self.sip.local, TransportKind::Udp),
        );
        self.respond(now, &tx, ringing);
        if let Some(cid) = req.call_id() {
            self.by_call_id.insert(cid.to_string(), id);
        }
        self.calls.insert(
            id,
            Call {
                invite_tx: tx,
                invite: req,
                tag,
                ok: None,
                source,
                retransmit: None,
                answered_at: None,
                acked: false,
                media: false,
            },
        );
        if self.cfg.ring.is_zero() {
            self.answer(now, id);
        } else {
            self.timers
                .push(Reverse((now + self.cfg.ring, id, Timer::Answer)));
        }
    }

    fn answer(&mut self, now: Instant, id: u64) {
        let local = self.sip.local;
        let media = self.cfg.media;
        let t1 = self.t1;
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let mut ok = with_to_tag(response(&call.invite, 200), &call.tag);
        ok.headers.push(
            HeaderName::Contact,
            contact_value(local, TransportKind::Udp),
        );
        ok.headers.push(HeaderName::ContentType, "application/sdp");
        ok.body = sdp_body(id, media, remote_pt(&call.invite.body));
        call.ok = Some(ok.clone());
        call.answered_at = Some(now);
        call.retransmit = Some((now + t1, t1));
        let tx = call.invite_tx;
        self.timers.push(Reverse((now + t1, id, Timer::Retransmit)));
        self.counters().answered.fetch_add(1, Relaxed);
        self.respond(now, &tx, ok);
    }

    fn on_retransmit_timer(&mut self, now: Instant, id: u64) {
        let t2 = self.t2;
        let give_up = self.t1 * 64;
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if call.acked {
            return;
        }
        let Some((at, interval)) = call.retransmit else {
            return;
        };
        if at > now {
            return;
        }
        if call
            .answered_at
            .is_some_and(|a| now.duration_since(a) >= give_up)
        {
            self.end(id, Err(Failure::NoAck));
            return;
        }
        if let Some(ok) = call.ok.clone() {
            let next = (interval * 2).min(t2);
            call.retransmit = Some((now + next, next));
            let dest = call.source;
            self.timers
                .push(Reverse((now + next, id, Timer::Retransmit)));
            self.counters().retransmissions.fetch_add(1, Relaxed);
            self.sip.layer.send_stateless(Message::Response(ok), dest);
        }
    }

    fn on_ack(&mut self, req: &Request) {
        let Some(id) = req.call_id().and_then(|c| self.by_call_id.get(c)).copied() else {
            return;
        };
        let with_media = self.cfg.with_media;
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if call.acked || call.ok.is_none() {
            return;
        }
        call.acked = true;
        call.retransmit = None;
        if with_media {
            if let Some((remote, payload_type)) = remote_audio(&call.invite.body) {
                call.media = true;
                self.sip.media.push_back(MediaEvent::Start {
                    call: id,
                    remote,
                    payload_type,
                });
            }
        }
    }

    fn end(&mut self, id: u64, outcome: Result<(), Failure>) {
        let Some(call) = self.calls.remove(&id) else {
            return;
        };
        if let Some(cid) = call.invite.call_id() {
            self.by_call_id.remove(cid);
        }
        if call.media {
            self.sip.media.push_back(MediaEvent::Stop { call: id });
        }
        match outcome {
            Ok(()) => {
                self.counters().completed.fetch_add(1, Relaxed);
            }
            Err(f) => self.counters().fail(f),
        }
    }

    fn on_request(&mut self, now: Instant, tx: TxKey, req: Request, source: Peer) {
        let id = req.call_id().and_then(|c| self.by_call_id.get(c)).copied();
        match req.method {
            Method::Invite => self.on_invite(now, tx, req, source),
            Method::Bye => {
                let status = if id.is_some() { 200 } else { 481 };
                self.respond(now, &tx, response(&req, status));
                if let Some(id) = id {
                    self.end(id, Ok(()));
                }
            }
            Method::Cancel => {
                let live = id.and_then(|id| self.calls.get(&id).map(|c| (id, c)));
                match live {
                    Some((id, c)) if c.ok.is_none() => {
                        let invite = with_to_tag(response(&c.invite, 487), &c.tag);
                        let itx = c.invite_tx;
                        self.respond(now, &tx, response(&req, 200));
                        self.respond(now, &itx, invite);
                        self.end(id, Ok(()));
                    }
                    _ => self.respond(now, &tx, response(&req, 481)),
                }
            }
            Method::Register => {
                let mut r = response(&req, 200);
                if let Some(c) = req.headers.get(&HeaderName::Contact) {
                    r.headers.push(HeaderName::Contact, c.to_string());
                }
                self.respond(now, &tx, r);
            }
            Method::Options | Method::Info | Method::Update | Method::Message => {
                self.respond(now, &tx, response(&req, 200));
            }
            _ => self.respond(now, &tx, response(&req, 405)),
        }
    }

    fn pump(&mut self, now: Instant) {
        while let Some(ev) = self.sip.layer.poll_event() {
            match ev {
                TuEvent::Request {
                    tx, req, source, ..
                } => self.on_request(now, tx, req, source),
                TuEvent::AckFor2xx { req, .. } => self.on_ack(&req),
                TuEvent::Timeout { .. }
                | TuEvent::Terminated { .. }
                | TuEvent::Response { .. }
                | TuEvent::StrayResponse { .. } => {}
            }
        }
    }
}

/// The payload type to answer with: PCMA when the offer lists it before PCMU, else PCMU.
fn remote_pt(offer: &[u8]) -> u8 {
    remote_audio(offer).map_or(0, |(_, pt)| pt)
}

impl Agent for Uas {
    fn handle_datagram(&mut self, now: Instant, data: &[u8], from: SocketAddr) {
        self.sip.receive(now, data, from);
        self.pump(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.sip.layer.poll_timeout().is_some_and(|t| t <= now) {
            self.sip.layer.handle_timeout(now);
        }
        while let Some(Reverse((at, id, timer))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            match timer {
                Timer::Answer => self.answer(now, id),
                Timer::Retransmit => self.on_retransmit_timer(now, id),
            }
        }
        self.pump(now);
    }

    fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.sip.poll_transmit()
    }

    fn poll_media(&mut self) -> Option<MediaEvent> {
        self.sip.media.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        earliest([
            self.sip.layer.poll_timeout(),
            self.timers.peek().map(|r| r.0 .0),
        ])
    }

    fn drain(&mut self, _now: Instant) {
        self.draining = true;
    }

    fn finished(&self) -> bool {
        !self.accepting() && self.calls.is_empty()
    }

    fn abandon(&mut self) {
        let ids: Vec<u64> = self.calls.keys().copied().collect();
        for id in ids {
            self.end(id, Err(Failure::Unfinished));
        }
    }
}
