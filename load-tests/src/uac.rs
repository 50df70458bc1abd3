//! The calling side: starts calls (or OPTIONS pings, or REGISTERs) at the paced rate, runs the
//! built-in scenario for each, and counts what happened. Sans-IO over the engine's transaction
//! layer.

use crate::agent::{
    earliest, remote_audio, sdp_body, Agent, CallIdMap, IdMap, MediaEvent, SdpTemplate, Sip,
};
use crate::pace::Pacer;
use crate::stats::{Counters, Failure};
use bytes::Bytes;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_engine::auth::Challenge;
use switchboard_engine::dialog::{
    cancel_for, contact_value, new_branch, new_request, new_tag, Dialog,
};
use switchboard_engine::sip::build::response;
use switchboard_engine::sip::{
    HeaderName, Headers, Message, Method, Request, Response, SipHeaders,
};
use switchboard_engine::transaction::{Peer, TransportKind, TuEvent, TxKey};

/// What each "call" of a run does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// INVITE, ACK, the call's duration, BYE (RTP when media is on).
    Call,
    /// Like `Call`, and at a third and two thirds of the duration a re-INVITE puts the call on
    /// hold (a=sendonly) and takes it back (a=sendrecv).
    Hold,
    /// Like `Call`, and once answered the digits are sent as RFC 4733 events in the RTP stream.
    Dtmf(String),
    /// INVITE, then CANCEL on the first 180/183: success is the 487.
    Cancel,
    /// One OPTIONS request; success is a 2xx.
    Options,
    /// REGISTER a new Contact (answering the 401/407 digest challenge), keep it for the call's
    /// duration, then REGISTER it away (Expires: 0); success is the second 2xx.
    Register {
        /// Digest user name (also the AOR user).
        user: String,
        /// Password.
        password: String,
        /// Expires asked for.
        expires: u32,
    },
}

/// What one UAC worker does.
#[derive(Clone, Debug)]
pub struct UacConfig {
    /// Where calls go.
    pub target: SocketAddr,
    /// The user part of the Request-URI and To.
    pub service: String,
    /// The user part of From.
    pub caller: String,
    /// The scenario.
    pub scenario: Scenario,
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
    /// Our RTP address offered in SDP (one shared port per media thread).
    pub media: SocketAddr,
    /// PCMU (0) or PCMA (8).
    pub payload_type: u8,
    /// Whether to start RTP on answer.
    pub with_media: bool,
    /// Distinguishes this worker's Call-IDs.
    pub worker: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// The first request is out.
    Starting,
    /// CANCEL sent, waiting for the 487.
    Cancelling,
    /// 2xx received and ACKed.
    Up,
    /// A re-INVITE is out.
    Reinviting,
    /// BYE sent.
    Ending,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Hold,
    Unhold,
    Bye,
}

#[derive(Debug)]
struct Call {
    request: Request,
    started: Instant,
    state: State,
    dialog: Option<Dialog>,
    ack: Option<Request>,
    rang: bool,
    authenticated: bool,
    media: bool,
    /// The last digest challenge, reused (next nonce count) for the de-registration.
    challenge: Option<Challenge>,
}

/// The UAC state machine for one worker.
#[derive(Debug)]
pub struct Uac {
    cfg: UacConfig,
    sip: Sip,
    pacer: Pacer,
    calls: IdMap<Call>,
    by_call_id: CallIdMap<u64>,
    by_tx: IdMap<u64>,
    timers: BinaryHeap<Reverse<(Instant, u64, Timer)>>,
    next_call: u64,
    draining: bool,
    /// The SDP offer, written once.
    sdp: SdpTemplate,
    /// The fixed parts of every first request, written once.
    parts: FirstRequestParts,
}

/// What [`Uac::first_request`] would format for every call but is the same for all of them.
#[derive(Debug)]
struct FirstRequestParts {
    /// `{worker}-`: the start of each Call-ID.
    call_id_head: String,
    /// `-{pid}@{local ip}`: the end of each Call-ID.
    call_id_tail: String,
    /// `SIP/2.0/UDP {local};branch=`: our Via up to the branch.
    via_head: String,
    /// The Request-URI (INVITE and OPTIONS).
    ruri: String,
    /// To (INVITE and OPTIONS).
    to: String,
    /// From without its tag (INVITE and OPTIONS).
    from: String,
    /// Our Contact.
    contact: String,
}

impl FirstRequestParts {
    fn new(cfg: &UacConfig, local: SocketAddr) -> FirstRequestParts {
        let target = cfg.target;
        FirstRequestParts {
            call_id_head: format!("{}-", cfg.worker),
            call_id_tail: format!("-{}@{}", std::process::id(), local.ip()),
            via_head: format!("SIP/2.0/{} {local};branch=", TransportKind::Udp.as_str()),
            ruri: format!("sip:{}@{target}", cfg.service),
            to: format!("<sip:{}@{target}>", cfg.service),
            from: format!("<sip:{}@{local}>", cfg.caller),
            contact: contact_value(local, TransportKind::Udp),
        }
    }
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
            sdp: SdpTemplate::new(cfg.media, cfg.payload_type),
            parts: FirstRequestParts::new(&cfg, local),
            pacer: Pacer::new(start, cfg.rate, cfg.ramp),
            sip: Sip::new(local, t1_ms, counters),
            cfg,
            calls: IdMap::default(),
            by_call_id: CallIdMap::default(),
            by_tx: IdMap::default(),
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
        let n = self.pacer.admit(
            now,
            self.calls.len() as u64,
            self.cfg.max_concurrent,
            self.next_call,
            self.cfg.calls,
        );
        for _ in 0..n {
            self.start_call(now);
        }
    }

    /// The first request of call `id`.
    fn first_request(&self, id: u64) -> Request {
        let method = match self.cfg.scenario {
            Scenario::Register { .. } => return self.first_register(id),
            Scenario::Options => Method::Options,
            _ => Method::Invite,
        };
        // What `new_request(method, ruri, from, to, call_id, 1, local, Udp)` builds, from the
        // parts written once.
        let p = &self.parts;
        let mut call_id = String::with_capacity(p.call_id_head.len() + 20 + p.call_id_tail.len());
        call_id.push_str(&p.call_id_head);
        push_decimal(&mut call_id, id);
        call_id.push_str(&p.call_id_tail);
        let branch = new_branch();
        let mut via = String::with_capacity(p.via_head.len() + branch.len() + 6);
        via.push_str(&p.via_head);
        via.push_str(&branch);
        via.push_str(";rport");
        let tag = new_tag();
        let mut from = String::with_capacity(p.from.len() + 5 + tag.len());
        from.push_str(&p.from);
        from.push_str(";tag=");
        from.push_str(&tag);
        let mut cseq = String::with_capacity(12);
        cseq.push_str("1 ");
        cseq.push_str(method.as_str());
        let mut h = Headers::with_capacity(9);
        h.push(HeaderName::Via, via);
        h.push(HeaderName::MaxForwards, "70");
        h.push(HeaderName::From, from);
        h.push(HeaderName::To, p.to.clone());
        h.push(HeaderName::CallId, call_id);
        h.push(HeaderName::CSeq, cseq);
        h.push(HeaderName::Contact, p.contact.clone());
        let mut r = Request {
            method,
            uri: p.ruri.clone(),
            headers: h,
            body: Bytes::new(),
        };
        if r.method == Method::Invite {
            r.headers.push(HeaderName::ContentType, "application/sdp");
            r.body = self.sdp.body(id);
        }
        r
    }

    /// The first REGISTER of "call" `id`.
    fn first_register(&self, id: u64) -> Request {
        let local = self.sip.local;
        let target = self.cfg.target;
        let call_id = format!(
            "{}-{id}-{}@{}",
            self.cfg.worker,
            std::process::id(),
            local.ip()
        );
        let from_user = match &self.cfg.scenario {
            Scenario::Register { user, .. } => user.as_str(),
            _ => self.cfg.caller.as_str(),
        };
        let (method, ruri, to) = match &self.cfg.scenario {
            Scenario::Options => (
                Method::Options,
                format!("sip:{}@{target}", self.cfg.service),
                format!("<sip:{}@{target}>", self.cfg.service),
            ),
            Scenario::Register { user, .. } => (
                Method::Register,
                format!("sip:{target}"),
                format!("<sip:{user}@{target}>"),
            ),
            _ => (
                Method::Invite,
                format!("sip:{}@{target}", self.cfg.service),
                format!("<sip:{}@{target}>", self.cfg.service),
            ),
        };
        let from = match &self.cfg.scenario {
            Scenario::Register { user, .. } => format!("<sip:{user}@{target}>"),
            _ => format!("<sip:{from_user}@{local}>"),
        };
        let mut r = new_request(
            method.clone(),
            &ruri,
            &from,
            &to,
            &call_id,
            1,
            local,
            TransportKind::Udp,
        );
        match (&self.cfg.scenario, method) {
            (Scenario::Register { user, expires, .. }, _) => {
                // One binding per "call": a distinct Contact user.
                r.headers.set(
                    HeaderName::Contact,
                    format!("<sip:{user}-{}-{id}@{local}>", self.cfg.worker),
                );
                r.headers.push(HeaderName::Expires, expires.to_string());
            }
            (_, Method::Invite) => {
                r.headers.push(HeaderName::ContentType, "application/sdp");
                r.body = self.sdp.body(id);
            }
            _ => {}
        }
        r
    }

    fn start_call(&mut self, now: Instant) {
        let id = self.next_call;
        self.next_call += 1;
        let request = self.first_request(id);
        self.counters().started.fetch_add(1, Relaxed);
        if let Some(cid) = request.call_id() {
            self.by_call_id.insert(cid.to_string(), id);
        }
        self.calls.insert(
            id,
            Call {
                request: request.clone(),
                started: now,
                state: State::Starting,
                dialog: None,
                ack: None,
                rang: false,
                authenticated: false,
                media: false,
                challenge: None,
            },
        );
        let dest = Peer::new(TransportKind::Udp, self.cfg.target);
        self.send(now, id, request, dest);
    }

    /// Starts a client transaction for call `id`; a refusal ends the call.
    fn send(&mut self, now: Instant, id: u64, req: Request, dest: Peer) {
        self.sip.count_request();
        match self.sip.layer.send_request(now, req, dest) {
            Ok(tx) => {
                self.by_tx.insert(tx.id(), id);
            }
            Err(_) => self.end(id, Err(Failure::SendError)),
        }
    }

    fn end(&mut self, id: u64, outcome: Result<(), Failure>) {
        let Some(call) = self.calls.remove(&id) else {
            return;
        };
        if let Some(cid) = call.request.call_id() {
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

    /// Sends an in-dialog request (BYE or re-INVITE) on call `id`.
    fn in_dialog(&mut self, now: Instant, id: u64, method: Method, direction: Option<&str>) {
        let media = self.cfg.media;
        let pt = self.cfg.payload_type;
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(d) = call.dialog.as_mut() else {
            return;
        };
        let mut req = dialog_request(d, method.clone(), &self.parts.via_head, &self.parts.contact);
        if let Some(dir) = direction {
            req.headers.push(HeaderName::ContentType, "application/sdp");
            let body = String::from_utf8_lossy(&sdp_body(id, media, pt))
                .replace("a=sendrecv", &format!("a={dir}"));
            req.body = Bytes::from(body);
        }
        let dest = d.peer;
        call.state = if method == Method::Bye {
            State::Ending
        } else {
            State::Reinviting
        };
        self.send(now, id, req, dest);
    }

    fn on_answer(&mut self, now: Instant, id: u64, resp: &Response) {
        let local = self.sip.local;
        let target = self.cfg.target;
        let with_media = self.cfg.with_media;
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if let Some(ack) = &call.ack {
            // A retransmitted 2xx: our ACK was lost.
            let dest = Peer::new(TransportKind::Udp, target);
            self.sip
                .layer
                .send_stateless(Message::Request(ack.clone()), dest);
            return;
        }
        let peer = Peer::new(TransportKind::Udp, target);
        let Some(d) = Dialog::uac(&call.request, resp, peer, local) else {
            return;
        };
        let ack = dialog_ack(&d, 1, &self.parts.via_head);
        self.sip
            .layer
            .send_stateless(Message::Request(ack.clone()), d.peer);
        call.ack = Some(ack);
        call.dialog = Some(d);
        let cancelled = call.state == State::Cancelling;
        call.state = State::Up;
        let us = now.duration_since(call.started).as_micros() as u64;
        self.sip.counters.setup.record(us);
        self.sip.counters.answer();
        if cancelled {
            // The 2xx crossed our CANCEL: hang up, and count the call as not cancelled.
            self.in_dialog(now, id, Method::Bye, None);
            if let Some(c) = self.calls.get_mut(&id) {
                c.state = State::Ending;
            }
            self.counters().fail(Failure::Status(200));
            return;
        }
        if with_media {
            if let Some((remote, payload_type)) = remote_audio(&resp.body) {
                if let Some(c) = self.calls.get_mut(&id) {
                    c.media = true;
                }
                self.sip.media.push_back(MediaEvent::Start {
                    call: id,
                    remote,
                    payload_type,
                });
                if let Scenario::Dtmf(digits) = &self.cfg.scenario {
                    self.sip.media.push_back(MediaEvent::Dtmf {
                        call: id,
                        digits: digits.clone(),
                    });
                }
            }
        }
        if self.draining {
            self.in_dialog(now, id, Method::Bye, None);
            return;
        }
        let d = self.cfg.duration;
        if self.cfg.scenario == Scenario::Hold {
            self.timers.push(Reverse((now + d / 3, id, Timer::Hold)));
            self.timers
                .push(Reverse((now + d * 2 / 3, id, Timer::Unhold)));
        }
        self.timers.push(Reverse((now + d, id, Timer::Bye)));
    }

    /// Answers a 401/407 once with credentials; a second challenge fails the call.
    fn on_challenge(&mut self, now: Instant, id: u64, resp: &Response) {
        let Scenario::Register { user, password, .. } = &self.cfg.scenario else {
            return self.end(id, Err(Failure::Status(resp.status)));
        };
        let (user, password) = (user.clone(), password.clone());
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let header = if resp.status == 401 {
            HeaderName::WwwAuthenticate
        } else {
            HeaderName::ProxyAuthenticate
        };
        let challenge = resp
            .headers
            .get_all(&header)
            .filter_map(Challenge::parse)
            .next();
        let (Some(ch), false) = (challenge, call.authenticated) else {
            return self.end(id, Err(Failure::Status(resp.status)));
        };
        call.authenticated = true;
        let mut req = call.request.clone();
        let method = req.method.as_str().to_string();
        let auth = ch.authorization(&user, &password, &method, &req.uri, 1, &new_branch());
        call.challenge = Some(ch);
        let name = if resp.status == 401 {
            HeaderName::Authorization
        } else {
            HeaderName::ProxyAuthorization
        };
        let next = req.cseq().map_or(1, |c| c.0).wrapping_add(1);
        req.headers.remove(&name);
        req.headers.push(name, auth);
        req.headers
            .set(HeaderName::CSeq, format!("{next} {method}"));
        let via = req
            .headers
            .get(&HeaderName::Via)
            .map(|v| v.split(";branch=").next().unwrap_or(v).to_string());
        if let Some(v) = via {
            req.headers.set(
                HeaderName::Via,
                format!("{v};branch={};rport", new_branch()),
            );
        }
        let dest = Peer::new(TransportKind::Udp, self.cfg.target);
        self.send(now, id, req, dest);
    }

    fn on_response(&mut self, now: Instant, tx: TxKey, resp: Response) {
        let Some(&id) = self.by_tx.get(&tx.id()) else {
            return;
        };
        let method = resp.cseq().map(|c| c.1);
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let state = call.state;
        match (method, resp.status) {
            (Some(Method::Invite), 180..=189) if state == State::Starting => {
                if !call.rang {
                    call.rang = true;
                    let us = now.duration_since(call.started).as_micros() as u64;
                    self.sip.counters.ringing.record(us);
                }
                if self.cfg.scenario == Scenario::Cancel {
                    call.state = State::Cancelling;
                    let cancel = cancel_for(&call.request);
                    let dest = Peer::new(TransportKind::Udp, self.cfg.target);
                    self.send(now, id, cancel, dest);
                }
            }
            (Some(Method::Invite | Method::Cancel), 100..=199) => {}
            (Some(Method::Invite), 200..=299) if state == State::Reinviting => {
                // The answer to our re-INVITE: ACK it.
                if let Some(d) = call.dialog.as_ref() {
                    let ack = dialog_ack(d, d.local_cseq, &self.parts.via_head);
                    let dest = d.peer;
                    self.sip.layer.send_stateless(Message::Request(ack), dest);
                }
                call.state = State::Up;
            }
            (Some(Method::Invite), 200..=299) => self.on_answer(now, id, &resp),
            (Some(Method::Invite), 487) if state == State::Cancelling => self.end(id, Ok(())),
            (Some(Method::Invite), status) if state == State::Reinviting => {
                self.end(id, Err(Failure::Status(status)));
            }
            (Some(Method::Invite), status) => self.end(id, Err(Failure::Status(status))),
            (Some(Method::Cancel), _) => {}
            (Some(Method::Bye), 200..=299) if state == State::Ending => {
                // A call that was meant to be cancelled already counted its failure.
                if self.cfg.scenario == Scenario::Cancel {
                    self.end_quietly(id);
                } else {
                    self.end(id, Ok(()));
                }
            }
            (Some(Method::Bye), 100..=199) => {}
            (Some(Method::Bye), status) => self.end(id, Err(Failure::Status(status))),
            (Some(Method::Register), 200..=299) if state == State::Starting => {
                let us = now.duration_since(call.started).as_micros() as u64;
                call.state = State::Up;
                self.sip.counters.setup.record(us);
                self.sip.counters.answer();
                if self.draining {
                    self.unregister(now, id);
                } else {
                    let at = now + self.cfg.duration;
                    self.timers.push(Reverse((at, id, Timer::Bye)));
                }
            }
            (Some(Method::Register), 200..=299) => self.end(id, Ok(())),
            (Some(Method::Options), 200..=299) => {
                let us = now.duration_since(call.started).as_micros() as u64;
                self.sip.counters.setup.record(us);
                self.sip.counters.answer();
                self.end(id, Ok(()));
            }
            (Some(Method::Options | Method::Register), 100..=199) => {}
            (Some(Method::Register), 401 | 407) => self.on_challenge(now, id, &resp),
            (_, status) => self.end(id, Err(Failure::Status(status))),
        }
    }

    /// Removes the binding of a registered "call": REGISTER with Expires: 0 for its Contact,
    /// authorized with the stored challenge (next nonce count).
    fn unregister(&mut self, now: Instant, id: u64) {
        let Scenario::Register { user, password, .. } = &self.cfg.scenario else {
            return;
        };
        let (user, password) = (user.clone(), password.clone());
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let mut req = call.request.clone();
        req.headers.set(HeaderName::Expires, "0");
        req.headers.set(HeaderName::CSeq, "3 REGISTER");
        if let Some(ch) = &call.challenge {
            let auth = ch.authorization(&user, &password, "REGISTER", &req.uri, 2, &new_branch());
            req.headers.push(HeaderName::Authorization, auth);
        }
        let via = req
            .headers
            .get(&HeaderName::Via)
            .map(|v| v.split(";branch=").next().unwrap_or(v).to_string());
        if let Some(v) = via {
            req.headers.set(
                HeaderName::Via,
                format!("{v};branch={};rport", new_branch()),
            );
        }
        call.request = req.clone();
        call.authenticated = false;
        call.state = State::Ending;
        let dest = Peer::new(TransportKind::Udp, self.cfg.target);
        self.send(now, id, req, dest);
    }

    /// Removes a call whose outcome was already counted.
    fn end_quietly(&mut self, id: u64) {
        if let Some(call) = self.calls.remove(&id) {
            if let Some(cid) = call.request.call_id() {
                self.by_call_id.remove(cid);
            }
            if call.media {
                self.sip.media.push_back(MediaEvent::Stop { call: id });
            }
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

impl Agent for Uac {
    fn handle_datagram(&mut self, now: Instant, data: &[u8], from: SocketAddr) {
        self.sip.receive(now, data, from);
        self.pump(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.sip.layer.poll_timeout().is_some_and(|t| t <= now) {
            self.sip.layer.handle_timeout(now);
        }
        while let Some(Reverse((at, id, timer))) = self.timers.peek().cloned() {
            if at > now {
                break;
            }
            self.timers.pop();
            let state = self.calls.get(&id).map(|c| c.state);
            let registering = matches!(self.cfg.scenario, Scenario::Register { .. });
            match (timer, state) {
                (Timer::Bye, Some(State::Up)) if registering => self.unregister(now, id),
                (Timer::Bye, Some(State::Up)) => self.in_dialog(now, id, Method::Bye, None),
                (Timer::Bye, Some(State::Reinviting)) => {
                    // Still waiting for the re-INVITE's answer: try again shortly.
                    self.timers
                        .push(Reverse((now + Duration::from_millis(100), id, Timer::Bye)));
                }
                (Timer::Hold, Some(State::Up)) => {
                    self.in_dialog(now, id, Method::Invite, Some("sendonly"));
                }
                (Timer::Unhold, Some(State::Up)) => {
                    self.in_dialog(now, id, Method::Invite, Some("sendrecv"));
                }
                _ => {}
            }
        }
        self.start_calls(now);
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
            self.may_start().then(|| self.pacer.next_due()).flatten(),
        ])
    }

    fn drain(&mut self, now: Instant) {
        self.draining = true;
        let up: Vec<u64> = self
            .calls
            .iter()
            .filter(|(_, c)| c.state == State::Up)
            .map(|(id, _)| *id)
            .collect();
        let registering = matches!(self.cfg.scenario, Scenario::Register { .. });
        for id in up {
            if registering {
                self.unregister(now, id);
            } else {
                self.in_dialog(now, id, Method::Bye, None);
            }
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

/// What `d.request(method)` builds (over UDP), with our Via and Contact written once
/// (`via_head` is `SIP/2.0/UDP {local};branch=`).
fn dialog_request(d: &mut Dialog, method: Method, via_head: &str, contact: &str) -> Request {
    d.local_cseq = d.local_cseq.wrapping_add(1);
    let mut r = dialog_base(d, method, d.local_cseq, via_head);
    if matches!(r.method, Method::Invite | Method::Update) {
        r.headers.push(HeaderName::Contact, contact.to_string());
    }
    r
}

/// What `d.ack(invite_cseq)` builds (over UDP).
fn dialog_ack(d: &Dialog, invite_cseq: u32, via_head: &str) -> Request {
    dialog_base(d, Method::Ack, invite_cseq, via_head)
}

/// The in-dialog request of `Dialog::base`: a fresh Via, Max-Forwards, From and To with the
/// dialog's tags, Call-ID, CSeq and the route set, to the remote target.
fn dialog_base(d: &Dialog, method: Method, cseq: u32, via_head: &str) -> Request {
    let branch = new_branch();
    let mut via = String::with_capacity(via_head.len() + branch.len() + 6);
    via.push_str(via_head);
    via.push_str(&branch);
    via.push_str(";rport");
    let tagged = |uri: &str, tag: &str| {
        let mut v = String::with_capacity(uri.len() + 5 + tag.len());
        v.push_str(uri);
        v.push_str(";tag=");
        v.push_str(tag);
        v
    };
    let mut cseq_value = String::with_capacity(24);
    push_decimal(&mut cseq_value, u64::from(cseq));
    cseq_value.push(' ');
    cseq_value.push_str(method.as_str());
    let mut h = Headers::with_capacity(8 + d.route_set.len());
    h.push(HeaderName::Via, via);
    h.push(HeaderName::MaxForwards, "70");
    h.push(HeaderName::From, tagged(&d.local_uri, &d.local_tag));
    h.push(HeaderName::To, tagged(&d.remote_uri, &d.remote_tag));
    h.push(HeaderName::CallId, d.call_id.clone());
    h.push(HeaderName::CSeq, cseq_value);
    for r in &d.route_set {
        h.push(HeaderName::Route, r.clone());
    }
    Request {
        method,
        uri: d.remote_target.clone(),
        headers: h,
        body: Bytes::new(),
    }
}

/// Appends `n` in decimal, as `format!("{n}")` writes it.
fn push_decimal(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend(digits[i..].iter().map(|&d| char::from(d)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_invite_is_what_new_request_builds() {
        let local: SocketAddr = "127.0.0.1:5070".parse().expect("addr");
        let cfg = UacConfig {
            target: "127.0.0.1:5080".parse().expect("addr"),
            service: "svc".into(),
            caller: "me".into(),
            scenario: Scenario::Call,
            rate: 1.0,
            ramp: Duration::ZERO,
            calls: Some(1),
            max_concurrent: 1,
            duration: Duration::ZERO,
            media: "127.0.0.1:40000".parse().expect("addr"),
            payload_type: 0,
            with_media: false,
            worker: 3,
        };
        let uac = Uac::new(
            cfg.clone(),
            local,
            Instant::now(),
            500,
            Arc::new(Counters::default()),
        );
        let ours = uac.first_request(42);
        let call_id = format!("3-42-{}@127.0.0.1", std::process::id());
        let mut theirs = new_request(
            Method::Invite,
            "sip:svc@127.0.0.1:5080",
            "<sip:me@127.0.0.1:5070>",
            "<sip:svc@127.0.0.1:5080>",
            &call_id,
            1,
            local,
            TransportKind::Udp,
        );
        theirs
            .headers
            .push(HeaderName::ContentType, "application/sdp");
        theirs.body = sdp_body(42, cfg.media, 0);
        assert_eq!(ours.uri, theirs.uri);
        assert_eq!(ours.body, theirs.body);
        let names = |r: &Request| r.headers.iter().map(|h| h.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&ours), names(&theirs));
        same_but_random(&ours, &theirs);
    }

    #[test]
    fn dialog_requests_are_what_dialog_builds() {
        let local: SocketAddr = "127.0.0.1:5070".parse().expect("addr");
        let invite = new_request(
            Method::Invite,
            "sip:svc@127.0.0.1:5080",
            "<sip:me@127.0.0.1:5070>",
            "<sip:svc@127.0.0.1:5080>",
            "c1@h",
            1,
            local,
            TransportKind::Udp,
        );
        let mut ok = response(&invite, 200);
        ok.headers
            .push(HeaderName::Contact, "<sip:x@127.0.0.9:7000>");
        ok.headers
            .push(HeaderName::RecordRoute, "<sip:p1;lr>, <sip:p2;lr>");
        let peer = Peer::new(TransportKind::Udp, "127.0.0.1:5080".parse().expect("addr"));
        let mut d = Dialog::uac(&invite, &ok, peer, local).expect("dialog");
        let parts = FirstRequestParts::new(
            &UacConfig {
                target: "127.0.0.1:5080".parse().expect("addr"),
                service: "svc".into(),
                caller: "me".into(),
                scenario: Scenario::Call,
                rate: 1.0,
                ramp: Duration::ZERO,
                calls: Some(1),
                max_concurrent: 1,
                duration: Duration::ZERO,
                media: "127.0.0.1:40000".parse().expect("addr"),
                payload_type: 0,
                with_media: false,
                worker: 0,
            },
            local,
        );
        same_but_random(&dialog_ack(&d, 1, &parts.via_head), &d.ack(1));
        for method in [Method::Bye, Method::Invite] {
            let mut d2 = d.clone();
            let ours = dialog_request(&mut d, method.clone(), &parts.via_head, &parts.contact);
            let theirs = d2.request(method);
            assert_eq!(d.local_cseq, d2.local_cseq);
            same_but_random(&ours, &theirs);
        }
    }

    /// Equal but for the random Via branch and From tag.
    fn same_but_random(ours: &Request, theirs: &Request) {
        assert_eq!(ours.method, theirs.method);
        assert_eq!(ours.uri, theirs.uri);
        assert_eq!(ours.body, theirs.body);
        let names = |r: &Request| r.headers.iter().map(|h| h.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(ours), names(theirs));
        for (x, y) in ours.headers.iter().zip(theirs.headers.iter()) {
            match x.name {
                HeaderName::Via => {
                    let (a, b) = (
                        x.value.split_once(";branch=z9hG4bK-sb"),
                        y.value.split_once(";branch=z9hG4bK-sb"),
                    );
                    let (Some((a, ar)), Some((b, br))) = (a, b) else {
                        panic!("{x:?} {y:?}")
                    };
                    assert_eq!(a, b);
                    assert_eq!((ar.len(), ar.ends_with(";rport")), (br.len(), true));
                }
                HeaderName::From => {
                    assert_eq!(
                        x.value.split_once(";tag=").map(|p| p.0),
                        y.value.split_once(";tag=").map(|p| p.0)
                    );
                }
                _ => assert_eq!(x, y),
            }
        }
    }
}
