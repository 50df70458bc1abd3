//! The calling side: starts calls at the paced rate, ACKs the answer, hangs up after the
//! call's duration, and counts what happened. Sans-IO over the engine's transaction layer.

use crate::agent::{remote_audio, sdp_body, Agent, MediaEvent, Sip};
use crate::pace::Pacer;
use crate::stats::{Counters, Failure};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_engine::dialog::{new_request, Dialog};
use switchboard_engine::sip::build::response;
use switchboard_engine::sip::{HeaderName, Message, Method, Request, Response, SipHeaders};
use switchboard_engine::transaction::{Peer, TransportKind, TuEvent, TxKey};

/// What one UAC worker does.
#[derive(Clone, Debug)]
pub struct UacConfig {
    /// Where calls go.
    pub target: SocketAddr,
    /// The user part of the Request-URI and To.
    pub service: String,
    /// The user part of From.
    pub caller: String,
    /// Calls per second for this worker, and the ramp to reach it.
    pub rate: f64,
    /// Linear ramp-up time.
    pub ramp: Duration,
    /// Calls this worker starts at most; `None` = until drained.
    pub calls: Option<u64>,
    /// Live calls at most; beyond it due calls wait.
    pub max_concurrent: u64,
    /// How long a call stays up after the answer before we send BYE.
    pub duration: Duration,
    /// Our RTP address offered in SDP (one shared port per media thread), and the payload
    /// type offered first.
    pub media: SocketAddr,
    /// PCMU (0) or PCMA (8).
    pub payload_type: u8,
    /// Whether to start RTP on answer.
    pub with_media: bool,
    /// Distinguishes this worker's Call-IDs.
    pub worker: usize,
}

#[derive(Debug)]
enum State {
    /// INVITE sent.
    Inviting,
    /// 2xx received and ACKed; BYE due at the given instant.
    Up,
    /// BYE sent.
    Ending,
}

#[derive(Debug)]
struct Call {
    invite: Request,
    started: Instant,
    state: State,
    dialog: Option<Dialog>,
    ack: Option<Request>,
    rang: bool,
}

/// The UAC state machine for one worker.
#[derive(Debug)]
pub struct Uac {
    cfg: UacConfig,
    sip: Sip,
    pacer: Pacer,
    calls: HashMap<u64, Call>,
    by_call_id: HashMap<String, u64>,
    by_tx: HashMap<u64, u64>,
    timers: BinaryHeap<Reverse<(Instant, u64)>>,
    next_call: u64,
    draining: bool,
}

impl Uac {
    /// A UAC worker sending from `local`, its calls starting at `start`.
    pub fn new(
        cfg: UacConfig,
        local: SocketAddr,
        start: Instant,
        t1_ms: u64,
        counters: Arc<Counters>,
    ) -> Uac {
        Uac {
            pacer: Pacer::new(start, cfg.rate, cfg.ramp),
            sip: Sip::new(local, t1_ms, counters),
            cfg,
            calls: HashMap::new(),
            by_call_id: HashMap::new(),
            by_tx: HashMap::new(),
            timers: BinaryHeap::new(),
            next_call: 0,
            draining: false,
        }
    }

    fn counters(&self) -> &Counters {
        &self.sip.counters
    }

    fn may_start(&self) -> bool {
        !self.draining && self.cfg.calls.is_none_or(|max| self.next_call < max)
    }

    fn start_calls(&mut self, now: Instant) {
        if !self.may_start() {
            return;
        }
        let due = self.pacer.take(now);
        let room = self
            .cfg
            .max_concurrent
            .saturating_sub(self.calls.len() as u64);
        let left = self
            .cfg
            .calls
            .map_or(u64::MAX, |m| m.saturating_sub(self.next_call));
        let n = due.min(room).min(left);
        self.pacer.give_back(due - n);
        for _ in 0..n {
            self.start_call(now);
        }
    }

    fn start_call(&mut self, now: Instant) {
        let id = self.next_call;
        self.next_call += 1;
        let local = self.sip.local;
        let target = self.cfg.target;
        let call_id = format!(
            "{}-{id}-{}@{}",
            self.cfg.worker,
            std::process::id(),
            local.ip()
        );
        let ruri = format!("sip:{}@{target}", self.cfg.service);
        let mut invite = new_request(
            Method::Invite,
            &ruri,
            &format!("<sip:{}@{}>", self.cfg.caller, local),
            &format!("<{ruri}>"),
            &call_id,
            1,
            local,
            TransportKind::Udp,
        );
        invite
            .headers
            .push(HeaderName::ContentType, "application/sdp");
        invite.body = sdp_body(id, self.cfg.media, self.cfg.payload_type);
        self.counters().started.fetch_add(1, Relaxed);
        self.sip.count_request();
        match self.sip.layer.send_request(
            now,
            invite.clone(),
            Peer::new(TransportKind::Udp, target),
        ) {
            Ok(tx) => {
                self.by_tx.insert(tx.id(), id);
                self.by_call_id.insert(call_id, id);
                self.calls.insert(
                    id,
                    Call {
                        invite,
                        started: now,
                        state: State::Inviting,
                        dialog: None,
                        ack: None,
                        rang: false,
                    },
                );
            }
            Err(_) => self.counters().fail(Failure::SendError),
        }
    }

    fn end(&mut self, id: u64, outcome: Result<(), Failure>) {
        let Some(call) = self.calls.remove(&id) else {
            return;
        };
        if let Some(cid) = call.invite.call_id() {
            self.by_call_id.remove(cid);
        }
        if call.ack.is_some() && self.cfg.with_media {
            self.sip.media.push_back(MediaEvent::Stop { call: id });
        }
        match outcome {
            Ok(()) => {
                self.counters().completed.fetch_add(1, Relaxed);
            }
            Err(f) => self.counters().fail(f),
        }
    }

    fn send_bye(&mut self, now: Instant, id: u64) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(d) = call.dialog.as_mut() else {
            return;
        };
        let bye = d.request(Method::Bye);
        let dest = d.peer;
        call.state = State::Ending;
        self.sip.count_request();
        match self.sip.layer.send_request(now, bye, dest) {
            Ok(tx) => {
                self.by_tx.insert(tx.id(), id);
            }
            Err(_) => self.end(id, Err(Failure::SendError)),
        }
    }

    fn on_response(&mut self, now: Instant, tx: TxKey, resp: Response) {
        let Some(&id) = self.by_tx.get(&tx.id()) else {
            return;
        };
        let method = resp.cseq().map(|c| c.1);
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        match (method, resp.status) {
            (Some(Method::Invite), 180..=199) if !call.rang => {
                call.rang = true;
                let us = now.duration_since(call.started).as_micros() as u64;
                self.sip.counters.ringing.record(us);
            }
            (Some(Method::Invite), 100..=199) => {}
            (Some(Method::Invite), 200..=299) => {
                if let Some(ack) = &call.ack {
                    // A retransmitted 2xx: our ACK was lost.
                    let dest = Peer::new(TransportKind::Udp, self.cfg.target);
                    self.sip
                        .layer
                        .send_stateless(Message::Request(ack.clone()), dest);
                    return;
                }
                let peer = Peer::new(TransportKind::Udp, self.cfg.target);
                let Some(d) = Dialog::uac(&call.invite, &resp, peer, self.sip.local) else {
                    return;
                };
                let ack = d.ack(1);
                self.sip
                    .layer
                    .send_stateless(Message::Request(ack.clone()), d.peer);
                call.ack = Some(ack);
                call.dialog = Some(d);
                call.state = State::Up;
                let us = now.duration_since(call.started).as_micros() as u64;
                self.sip.counters.setup.record(us);
                self.sip.counters.answered.fetch_add(1, Relaxed);
                if self.cfg.with_media {
                    if let Some((remote, payload_type)) = remote_audio(&resp.body) {
                        self.sip.media.push_back(MediaEvent::Start {
                            call: id,
                            remote,
                            payload_type,
                        });
                    }
                }
                if self.draining {
                    self.send_bye(now, id);
                } else {
                    self.timers.push(Reverse((now + self.cfg.duration, id)));
                }
            }
            (Some(Method::Invite), status) => self.end(id, Err(Failure::Status(status))),
            (Some(Method::Bye), 200..=299) => self.end(id, Ok(())),
            (Some(Method::Bye), 100..=199) => {}
            (Some(Method::Bye), status) => self.end(id, Err(Failure::Status(status))),
            _ => {}
        }
    }

    fn on_request(&mut self, now: Instant, tx: TxKey, req: Request) {
        let id = req.call_id().and_then(|c| self.by_call_id.get(c)).copied();
        let status = match (&req.method, id) {
            (Method::Bye, Some(id)) => {
                let _ = self.sip.layer.send_response(now, &tx, response(&req, 200));
                self.end(id, Ok(()));
                return;
            }
            (Method::Bye, None) => 481,
            (Method::Options | Method::Info | Method::Update, _) => 200,
            (Method::Invite, Some(_)) => 200,
            _ => 481,
        };
        let _ = self
            .sip
            .layer
            .send_response(now, &tx, response(&req, status));
    }
}

impl Agent for Uac {
    fn handle_datagram(&mut self, now: Instant, data: &[u8], from: SocketAddr) {
        let Some(msg) = self.sip.parse(data) else {
            return;
        };
        let peer = Peer::new(TransportKind::Udp, from);
        match msg {
            Message::Request(r) => {
                let _ = self.sip.layer.handle_request(now, r, peer);
            }
            Message::Response(r) => self.sip.layer.handle_response(now, r, peer),
        }
        self.pump(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.sip.layer.poll_timeout().is_some_and(|t| t <= now) {
            self.sip.layer.handle_timeout(now);
        }
        while let Some(Reverse((at, id))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            if matches!(self.calls.get(&id).map(|c| &c.state), Some(State::Up)) {
                self.send_bye(now, id);
            }
        }
        self.start_calls(now);
        self.pump(now);
    }

    fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.sip.poll_transmit()
    }

    fn poll_media(&mut self) -> Option<MediaEvent> {
        self.sip.media.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let mut t = self.sip.layer.poll_timeout();
        let mut consider = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        consider(self.timers.peek().map(|r| r.0 .0));
        if self.may_start() {
            consider(self.pacer.next_due());
        }
        t
    }

    fn drain(&mut self, now: Instant) {
        self.draining = true;
        let up: Vec<u64> = self
            .calls
            .iter()
            .filter(|(_, c)| matches!(c.state, State::Up))
            .map(|(id, _)| *id)
            .collect();
        for id in up {
            self.send_bye(now, id);
        }
        self.pump(now);
    }

    fn finished(&self) -> bool {
        !self.may_start() && self.calls.is_empty()
    }

    fn abandon(&mut self) {
        let ids: Vec<u64> = self.calls.keys().copied().collect();
        for id in ids {
            self.end(id, Err(Failure::Unfinished));
        }
    }
}

impl Uac {
    /// Hands the layer's events to the call state machines.
    fn pump(&mut self, now: Instant) {
        while let Some(ev) = self.sip.layer.poll_event() {
            match ev {
                TuEvent::Response { tx, resp } => self.on_response(now, tx, resp),
                TuEvent::Request { tx, req, .. } => self.on_request(now, tx, req),
                TuEvent::Timeout { tx } => {
                    if let Some(id) = self.by_tx.remove(&tx.id()) {
                        let answered = self.calls.get(&id).is_some_and(|c| c.ack.is_some());
                        // A timed-out INVITE after its 2xx (Timer M) is normal.
                        if !(answered && tx.kind().is_invite()) {
                            self.end(id, Err(Failure::Timeout));
                        }
                    }
                }
                TuEvent::Terminated { tx } => {
                    self.by_tx.remove(&tx.id());
                }
                TuEvent::AckFor2xx { .. } | TuEvent::StrayResponse { .. } => {}
            }
        }
    }
}
