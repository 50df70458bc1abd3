//! The answering side: rings, answers (or rejects a share of calls with a chosen code),
//! retransmits its 2xx until the ACK, answers BYE, CANCEL, OPTIONS and REGISTER. Sans-IO over
//! the engine's transaction layer.

use crate::agent::{
    earliest, sdp_body, Agent, CallIdMap, IdMap, MediaEvent, RemoteAudioMemo, SdpTemplate, Sip,
};
use crate::stats::{Counters, Failure};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_engine::dialog::{contact_value, new_tag, with_to_tag};
use switchboard_engine::sip::build::{reason_phrase, response};
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
    /// The 180 sent; the 200 is built from it (same header lines, plus Content-Type).
    ringing: Response,
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
    calls: IdMap<Call>,
    by_call_id: CallIdMap<u64>,
    timers: BinaryHeap<Reverse<(Instant, u64, Timer)>>,
    next_call: u64,
    draining: bool,
    /// Our Contact value (the same in every response).
    contact: String,
    /// The SDP answers, PCMU and PCMA, written once.
    sdp: [SdpTemplate; 2],
    /// What the last offer asked for.
    offers: RemoteAudioMemo,
}

impl Uas {
    /// A UAS worker answering at `local`.
    pub fn new(cfg: UasConfig, local: SocketAddr, t1_ms: u64, counters: Arc<Counters>) -> Uas {
        let t1 = Duration::from_millis(t1_ms.max(1));
        let sdp = [
            SdpTemplate::new(cfg.media, 0),
            SdpTemplate::new(cfg.media, 8),
        ];
        Uas {
            contact: contact_value(local, TransportKind::Udp),
            sdp,
            offers: RemoteAudioMemo::default(),
            cfg,
            sip: Sip::new(local, t1_ms, counters),
            t1,
            t2: Duration::from_secs(4),
            calls: IdMap::default(),
            by_call_id: CallIdMap::default(),
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

    /// The SDP answer of call (session) `id` to an offer whose payload type is `pt`.
    fn sdp_answer(&self, id: u64, pt: u8) -> bytes::Bytes {
        match self.sdp.iter().find(|t| t.is_for(self.cfg.media, pt)) {
            Some(t) => t.body(id),
            None => sdp_body(id, self.cfg.media, pt),
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
                if call.is_some() {
                    // The re-INVITE's To carries the call's tag, which `response` keeps.
                    let mut r = response(&req, 200);
                    r.headers.push(HeaderName::Contact, self.contact.clone());
                    r.headers.push(HeaderName::ContentType, "application/sdp");
                    let pt = remote_pt(&mut self.offers, &req.body);
                    r.body = self.sdp_answer(1, pt);
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
        let reject = self.cfg.reject_percent > 0
            && (id * u64::from(self.cfg.reject_percent)) / 100
                != ((id + 1) * u64::from(self.cfg.reject_percent)) / 100;
        if reject {
            let r = with_to_tag(response(&req, self.cfg.reject_code), &new_tag());
            self.counters().rejected.fetch_add(1, Relaxed);
            return self.respond(now, &tx, r);
        }
        // `response` tags the To (a hash of the request, so the 200 gets the same tag).
        let mut ringing = response(&req, 180);
        ringing
            .headers
            .push(HeaderName::Contact, self.contact.clone());
        self.respond(now, &tx, ringing.clone());
        if let Some(cid) = req.call_id() {
            self.by_call_id.insert(cid.to_string(), id);
        }
        self.calls.insert(
            id,
            Call {
                invite_tx: tx,
                invite: req,
                ringing,
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
        let t1 = self.t1;
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        // The 180's lines (Via, From, tagged To, Call-ID, CSeq, Server, Contact): what
        // `response(invite, 200)` and our Contact give.
        let mut ok = Response {
            status: 200,
            reason: reason_phrase(200).to_string(),
            headers: call.ringing.headers.clone(),
            body: bytes::Bytes::new(),
        };
        let pt = remote_pt(&mut self.offers, &call.invite.body);
        let body = self.sdp_answer(id, pt);
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        ok.headers.push(HeaderName::ContentType, "application/sdp");
        ok.body = body;
        call.ok = Some(ok.clone());
        call.answered_at = Some(now);
        call.retransmit = Some((now + t1, t1));
        let tx = call.invite_tx;
        self.timers.push(Reverse((now + t1, id, Timer::Retransmit)));
        self.counters().answer();
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
            if let Some((remote, payload_type)) = self.offers.remote_audio(&call.invite.body) {
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
                        // Tagged as the 180 was (see `on_invite`).
                        let invite = response(&c.invite, 487);
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
fn remote_pt(offers: &mut RemoteAudioMemo, offer: &[u8]) -> u8 {
    offers.remote_audio(offer).map_or(0, |(_, pt)| pt)
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

    fn poll_transmit_into(&mut self, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        self.sip.poll_transmit_into(buf)
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
