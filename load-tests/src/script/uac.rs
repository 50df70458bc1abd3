//! [`ScriptedUac`]: runs one instance of a [`Script`] per call, calls started at the paced
//! rate as [`crate::uac::Uac`] does, or, in the answering role ([`ScriptedUac::answering`],
//! wrapped by [`super::uas::ScriptedUas`]), one instance per request that opens a call. Sans-IO over the engine's transaction layer: requests
//! other than ACK get a client transaction (RFC 3261 retransmissions over UDP, non-2xx finals
//! ACKed by the transaction), ACKs are sent statelessly and sent again for each retransmitted
//! 2xx, responses go out on the server transaction of the last request received.
//!
//! Every message goes to the target address (as SIPp does). Messages that arrive while the
//! script is not at an `expect` wait in a small per-call queue; at an `expect`, a message is
//! matched against that step and the optional ones after it. A provisional response nothing
//! expects is ignored; any other unexpected message fails the call.

use super::digest;
use super::parse::{DtmfMode, Expect, Source, Step};
use super::template::{Env, StartLine, Var};
use super::Script;
use crate::agent::{earliest, remote_audio, Agent, CallIdMap, MediaEvent, Sip};
use crate::pace::Pacer;
use crate::stats::{Counters, Failure};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_engine::dialog::{new_branch, new_tag, Dialog};
use switchboard_engine::sip::build::response;
use switchboard_engine::sip::message::parse_cseq;
use switchboard_engine::sip::{
    parse_datagram, HeaderName, Message, Method, Request, Response, SipHeaders,
};
use switchboard_engine::transaction::{Peer, TransportKind, TuEvent, TxKey};

/// What one scripted UAC worker does.
#[derive(Clone, Debug)]
pub struct ScriptConfig {
    /// Where every message goes (`[remote_ip]`, `[remote_port]`).
    pub target: SocketAddr,
    /// `[service]`.
    pub service: String,
    /// `[caller]`.
    pub caller: String,
    /// Calls per second for this worker.
    pub rate: f64,
    /// Linear ramp-up time.
    pub ramp: Duration,
    /// Calls this worker starts at most; `None` = until drained.
    pub calls: Option<u64>,
    /// Live calls at most; beyond it due calls wait.
    pub max_concurrent: u64,
    /// Our RTP address (`[media_ip]`, `[media_port]`).
    pub media: SocketAddr,
    /// Whether `play` steps start RTP (a media pool is running).
    pub with_media: bool,
    /// Distinguishes this worker's Call-IDs.
    pub worker: usize,
}

/// Most messages a call holds while it is not at an `expect`.
const QUEUE_MAX: usize = 32;
/// One RFC 4733 digit and its gap, as the media pool sends them.
const DTMF_DIGIT: Duration = Duration::from_millis(160);
/// Most steps one call runs without waiting before it yields to the other calls.
const STEP_BUDGET: u32 = 10_000;

/// A message for the script.
#[derive(Debug)]
struct Incoming {
    msg: Message,
    /// For a response: the client transaction it belongs to.
    client_tx: Option<u64>,
    /// For a request with a server transaction: it and where the request came from.
    server: Option<(TxKey, Peer)>,
}

impl Incoming {
    fn is_provisional(&self) -> bool {
        matches!(&self.msg, Message::Response(r) if r.status < 200)
    }
}

/// What a message is, in a failure label.
fn describe(msg: &Message) -> String {
    match msg {
        Message::Request(r) => r.method.to_string(),
        Message::Response(r) => match r.cseq() {
            Some((_, m)) => format!("{} ({m})", r.status),
            None => r.status.to_string(),
        },
    }
}

/// Credentials kept for a request that may be challenged.
#[derive(Debug)]
struct AuthPending {
    step: usize,
    user: String,
    password: String,
}

#[derive(Debug)]
struct DtmfState {
    next: usize,
    tx: Option<u64>,
}

/// Why a call failed: the counters' slot (none: the total only) and the report's label.
#[derive(Debug)]
struct Fail {
    kind: Option<Failure>,
    label: String,
}

impl Fail {
    fn other(label: String) -> Fail {
        Fail { kind: None, label }
    }
}

/// A 2xx to an INVITE the script sent, retransmitted (T1, doubling up to T2) until its ACK
/// arrives or 64·T1 have passed (RFC 3261 §13.3.1.4).
#[derive(Debug)]
struct Pending2xx {
    resp: Response,
    dest: Peer,
    cseq: u32,
    next: Instant,
    interval: Duration,
    since: Instant,
}

#[derive(Debug)]
struct Call {
    started: Instant,
    /// Where this call's requests go: the target (uac) or where the call's first request came
    /// from (uas); `[remote_ip]` and `[remote_port]`.
    peer: SocketAddr,
    /// The step being run.
    pc: usize,
    /// The step a deadline belongs to (an expect's timeout, a pause's end) and the deadline.
    wait: Option<(usize, Instant)>,
    /// The call's injection line.
    row: Option<usize>,
    vars: HashMap<String, String>,
    loops: Vec<u32>,
    call_id: String,
    tag: String,
    cseq: u32,
    /// `[branch]` of the message being rendered.
    branch: String,
    /// The last message an `expect` took.
    last: Option<Message>,
    /// The server transaction of the last request taken, for a `send` of a response.
    server_tx: Option<(TxKey, Peer)>,
    /// Every server transaction taken (CSeq number, method), so that a response goes to the
    /// request its CSeq names (a 487 to the INVITE after the 200 to a CANCEL).
    server_txs: Vec<(u32, Method, TxKey, Peer)>,
    /// The INVITE that opened the call (uas), for its dialog.
    far_invite: Option<Request>,
    /// A 2xx to an INVITE waiting for its ACK.
    pending_2xx: Option<Pending2xx>,
    /// CSeq numbers of INVITEs whose 2xx was ACKed (later ACKs are retransmissions).
    acked_2xx: Vec<u32>,
    /// A BYE from the far side was taken.
    bye_received: bool,
    /// The last INVITE sent.
    invite: Option<Request>,
    dialog: Option<Dialog>,
    /// An ACK was sent for a 2xx.
    acked: bool,
    /// The INVITE transaction whose 2xx the script took and has not ACKed yet.
    unacked_2xx: Option<u64>,
    /// INVITE transactions whose 2xx was taken (later copies are retransmissions).
    seen_2xx: HashSet<u64>,
    queue: VecDeque<Incoming>,
    /// Client transactions and their methods.
    txs: Vec<(u64, Method)>,
    auth: HashMap<u64, AuthPending>,
    dtmf: Option<DtmfState>,
    remote_media: Option<(SocketAddr, u8)>,
    media_on: bool,
    media_stop_at: Option<Instant>,
    rang: bool,
    answered: bool,
    bye_sent: bool,
    /// Call-IDs of requests sent, to route requests from the far side.
    call_ids: Vec<String>,
}

/// The answering role: calls open on requests, not on a pacer.
#[derive(Debug)]
struct Answering {
    /// Calls still to take, shared by every worker; `None` = until drained.
    calls_left: Option<Arc<AtomicU64>>,
    /// The method of the first step's `expect`: a request with a new Call-ID and this method
    /// opens a call.
    opens_with: Method,
    /// The script takes an INVITE: only a 2xx to an INVITE counts the call as answered.
    takes_invite: bool,
}

/// The scripted UAC (or, with [`ScriptedUac::answering`], UAS) for one worker.
#[derive(Debug)]
pub struct ScriptedUac {
    script: Arc<Script>,
    cfg: ScriptConfig,
    sip: Sip,
    pacer: Pacer,
    calls: HashMap<u64, Call>,
    by_call_id: CallIdMap<u64>,
    by_tx: HashMap<u64, u64>,
    /// ACKs sent, by the INVITE transaction whose 2xx they answer (for retransmitted 2xx).
    acks: HashMap<u64, (Request, Peer)>,
    timers: BinaryHeap<Reverse<(Instant, u64)>>,
    next_call: u64,
    draining: bool,
    /// The latest instant an input carried (for `abandon`, which gets none).
    last_now: Instant,
    /// SIP timer T1 (2xx retransmissions).
    t1: Duration,
    /// Set in the answering role.
    answering: Option<Answering>,
}

/// The variables of one call while a template renders.
struct CallEnv<'a> {
    cfg: &'a ScriptConfig,
    local: SocketAddr,
    call: &'a Call,
    id: u64,
    row: Option<&'a [String]>,
}

fn push_uri_ip(out: &mut String, ip: IpAddr) {
    let _ = match ip {
        IpAddr::V4(v4) => write!(out, "{v4}"),
        IpAddr::V6(v6) => write!(out, "[{v6}]"),
    };
}

fn ip_type(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "4"
    } else {
        "6"
    }
}

impl Env for CallEnv<'_> {
    fn write(&self, var: &Var, out: &mut String) -> Result<(), String> {
        let c = self.call;
        let _ = match var {
            Var::Service => write!(out, "{}", self.cfg.service),
            Var::Caller => write!(out, "{}", self.cfg.caller),
            Var::RemoteIp => {
                push_uri_ip(out, c.peer.ip());
                Ok(())
            }
            Var::RemotePort => write!(out, "{}", c.peer.port()),
            Var::LocalIp => {
                push_uri_ip(out, self.local.ip());
                Ok(())
            }
            Var::LocalPort => write!(out, "{}", self.local.port()),
            Var::LocalIpType => write!(out, "{}", ip_type(self.local.ip())),
            Var::Transport => write!(out, "UDP"),
            Var::MediaIp => write!(out, "{}", self.cfg.media.ip()),
            Var::MediaPort => write!(out, "{}", self.cfg.media.port()),
            Var::MediaIpType => write!(out, "{}", ip_type(self.cfg.media.ip())),
            Var::CallId => write!(out, "{}", c.call_id),
            Var::CallNumber => write!(out, "{}", self.id),
            Var::Branch => write!(out, "{}", c.branch),
            Var::Cseq => write!(out, "{}", c.cseq),
            Var::Tag => write!(out, "{}", c.tag),
            Var::Pid => write!(out, "{}", std::process::id()),
            Var::Len => write!(out, "0"),
            Var::Field(n) => match self.row.and_then(|r| r.get(*n)) {
                Some(v) => write!(out, "{v}"),
                None => return Err(format!("no [field{n}] on this call's --inf line")),
            },
            Var::User(name) => match c.vars.get(name) {
                Some(v) => write!(out, "{v}"),
                None => return Err(format!("variable [${name}] is not set")),
            },
            Var::LastHeader(name) => {
                let want = HeaderName::from_token(name);
                let mut first = true;
                for h in c.last.iter().flat_map(|m| m.headers().iter()) {
                    if h.name.as_str().eq_ignore_ascii_case(want.as_str()) {
                        if !first {
                            out.push_str("\r\n");
                        }
                        first = false;
                        let _ = write!(out, "{}: {}", h.name, h.value);
                    }
                }
                Ok(())
            }
            Var::LastRequestUri => match &c.last {
                Some(Message::Request(r)) => write!(out, "{}", r.uri),
                _ => Ok(()),
            },
            Var::LastCseqNumber => {
                let n = c
                    .last
                    .as_ref()
                    .and_then(|m| m.headers().get(&HeaderName::CSeq))
                    .and_then(|v| parse_cseq(v).ok())
                    .map(|(n, _)| n);
                match n {
                    Some(n) => write!(out, "{n}"),
                    None => Ok(()),
                }
            }
        };
        Ok(())
    }
}

/// True when `msg` is what `e` expects.
fn matches(e: &Expect, msg: &Message) -> bool {
    let m = &e.matcher;
    match msg {
        Message::Response(r) => {
            m.code.is_some_and(|c| c.matches(r.status))
                && m.method
                    .as_ref()
                    .is_none_or(|want| r.cseq().is_some_and(|(_, got)| got == *want))
        }
        Message::Request(r) => m.code.is_none() && m.method.as_ref() == Some(&r.method),
    }
}

impl ScriptedUac {
    /// A scripted UAC worker sending from `local`, its calls starting at `start`.
    pub fn new(
        script: Arc<Script>,
        cfg: ScriptConfig,
        local: SocketAddr,
        start: Instant,
        t1_ms: u64,
        counters: Arc<Counters>,
    ) -> ScriptedUac {
        ScriptedUac {
            pacer: Pacer::new(start, cfg.rate, cfg.ramp),
            sip: Sip::new(local, t1_ms, counters),
            script,
            cfg,
            calls: HashMap::new(),
            by_call_id: CallIdMap::default(),
            by_tx: HashMap::new(),
            acks: HashMap::new(),
            timers: BinaryHeap::new(),
            next_call: 0,
            draining: false,
            last_now: start,
            t1: Duration::from_millis(t1_ms.max(1)),
            answering: None,
        }
    }

    /// The same agent in the answering role (a scripted UAS): no calls are placed; a request
    /// with a new Call-ID whose method is the one the script's first step expects opens a
    /// call (while `calls_left` lasts and the run is not draining; others get 503), and the
    /// script runs from there. Requests go back to where that first request came from. Of
    /// `cfg`, `service`, `caller`, `media`, `with_media` and `worker` are used.
    ///
    /// Errors when the first step is not an `expect` of a request.
    pub fn answering(
        script: Arc<Script>,
        cfg: ScriptConfig,
        calls_left: Option<Arc<AtomicU64>>,
        local: SocketAddr,
        t1_ms: u64,
        counters: Arc<Counters>,
    ) -> Result<ScriptedUac, String> {
        let opens_with = answering_method(&script)?;
        let takes_invite = script.scenario().steps.iter().any(|s| {
            matches!(s, Step::Expect(e) if e.matcher.code.is_none()
                && e.matcher.method == Some(Method::Invite))
        });
        let mut agent = ScriptedUac::new(script, cfg, local, Instant::now(), t1_ms, counters);
        agent.answering = Some(Answering {
            calls_left,
            opens_with,
            takes_invite,
        });
        Ok(agent)
    }

    fn counters(&self) -> &Counters {
        &self.sip.counters
    }

    fn may_start(&self) -> bool {
        self.answering.is_none()
            && !self.draining
            && self.cfg.calls.is_none_or(|max| self.next_call < max)
    }

    /// The uas still takes new calls.
    fn accepting(&self) -> bool {
        !self.draining
            && self.answering.as_ref().is_some_and(|a| {
                a.calls_left
                    .as_ref()
                    .is_none_or(|left| left.load(Relaxed) > 0)
            })
    }

    /// Takes one call from the shared quota; false when it is used up.
    fn take_quota(&self) -> bool {
        match self.answering.as_ref().and_then(|a| a.calls_left.as_ref()) {
            None => true,
            Some(left) => left
                .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
                .is_ok(),
        }
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

    fn start_call(&mut self, now: Instant) {
        let id = self.next_call;
        self.next_call += 1;
        let call_id = format!(
            "s{}-{id}-{}@{}",
            self.cfg.worker,
            std::process::id(),
            self.sip.local.ip()
        );
        let call = self.new_call(now, call_id.clone(), self.cfg.target);
        self.by_call_id.insert(call_id, id);
        self.calls.insert(id, call);
        self.counters().started.fetch_add(1, Relaxed);
        self.advance(now, id);
    }

    /// A request with a new Call-ID reached the uas: opens a call when it is what the script
    /// starts with, else answers it.
    fn open_call(&mut self, now: Instant, tx: TxKey, req: Request, source: Peer) {
        let Some(a) = &self.answering else {
            let _ = self.sip.layer.send_response(now, &tx, response(&req, 481));
            return;
        };
        if req.method != a.opens_with {
            let status = if req.method == Method::Options {
                200
            } else {
                481
            };
            let _ = self
                .sip
                .layer
                .send_response(now, &tx, response(&req, status));
            return;
        }
        let Some(call_id) = req.call_id().map(str::to_string) else {
            return;
        };
        if !self.accepting() || !self.take_quota() {
            let _ = self.sip.layer.send_response(now, &tx, response(&req, 503));
            return;
        }
        let id = self.next_call;
        self.next_call += 1;
        let call = self.new_call(now, call_id.clone(), source.addr);
        self.by_call_id.insert(call_id, id);
        self.calls.insert(id, call);
        self.counters().started.fetch_add(1, Relaxed);
        self.enqueue(
            now,
            id,
            Incoming {
                msg: Message::Request(req),
                client_tx: None,
                server: Some((tx, source)),
            },
        );
    }

    fn new_call(&self, now: Instant, call_id: String, peer: SocketAddr) -> Call {
        Call {
            started: now,
            peer,
            pc: 0,
            wait: None,
            row: self.script.injection().map(|i| i.pick()),
            vars: HashMap::new(),
            loops: vec![0; self.script.scenario().gotos],
            tag: new_tag(),
            cseq: 0,
            branch: String::new(),
            last: None,
            server_tx: None,
            invite: None,
            dialog: None,
            acked: false,
            unacked_2xx: None,
            seen_2xx: HashSet::new(),
            queue: VecDeque::new(),
            txs: Vec::new(),
            auth: HashMap::new(),
            dtmf: None,
            remote_media: None,
            media_on: false,
            media_stop_at: None,
            rang: false,
            answered: false,
            bye_sent: false,
            call_ids: vec![call_id.clone()],
            call_id,
            server_txs: Vec::new(),
            far_invite: None,
            pending_2xx: None,
            acked_2xx: Vec::new(),
            bye_received: false,
        }
    }

    /// Runs the call's steps until one waits, the script ends or the call fails.
    fn advance(&mut self, now: Instant, id: u64) {
        let script = Arc::clone(&self.script);
        let steps = &script.scenario().steps;
        for _ in 0..STEP_BUDGET {
            let Some(pc) = self.calls.get(&id).map(|c| c.pc) else {
                return;
            };
            let Some(step) = steps.get(pc) else {
                self.finish(now, id, Ok(()));
                return;
            };
            let r = match step {
                Step::Send(_) => self.send_step(now, id, pc, None).map(|()| {
                    self.set_pc(id, pc + 1);
                    true
                }),
                Step::Expect(_) => self.expect_step(now, id, pc),
                Step::Pause(d) => Ok(self.pause_step(now, id, pc, *d)),
                Step::Play(d) => self.play_step(now, id, pc, *d),
                Step::Dtmf(_) => self.dtmf_step(now, id, pc),
                Step::Label(_) => {
                    self.set_pc(id, pc + 1);
                    Ok(true)
                }
                Step::Goto(g) => {
                    if let Some(c) = self.calls.get_mut(&id) {
                        match c.loops.get_mut(g.counter) {
                            Some(n) if *n < g.times => {
                                *n += 1;
                                c.pc = g.target;
                            }
                            _ => c.pc = pc + 1,
                        }
                    }
                    Ok(true)
                }
                Step::Set(vars) => self.set_step(id, pc, vars),
            };
            match r {
                Ok(true) => {}
                Ok(false) => return,
                Err(f) => {
                    self.finish(now, id, Err(f));
                    return;
                }
            }
        }
        // A long loop without a wait: let the other calls run, then go on.
        self.timers.push(Reverse((now, id)));
    }

    fn set_pc(&mut self, id: u64, pc: usize) {
        if let Some(c) = self.calls.get_mut(&id) {
            c.pc = pc;
            c.wait = None;
        }
    }

    fn env<'a>(
        script: &'a Script,
        cfg: &'a ScriptConfig,
        local: SocketAddr,
        id: u64,
        call: &'a Call,
    ) -> CallEnv<'a> {
        CallEnv {
            cfg,
            local,
            call,
            id,
            row: call
                .row
                .and_then(|r| script.injection().and_then(|i| i.row(r))),
        }
    }

    fn set_step(
        &mut self,
        id: u64,
        pc: usize,
        vars: &[(String, super::template::Template)],
    ) -> Result<bool, Fail> {
        let Some(call) = self.calls.get(&id) else {
            return Ok(false);
        };
        let env = Self::env(&self.script, &self.cfg, self.sip.local, id, call);
        let mut values = Vec::with_capacity(vars.len());
        for (name, t) in vars {
            let v = t
                .render_string(&env)
                .map_err(|e| Fail::other(format!("step {}: {e}", pc + 1)))?;
            values.push((name.clone(), v));
        }
        if let Some(call) = self.calls.get_mut(&id) {
            call.vars.extend(values);
            call.pc = pc + 1;
        }
        Ok(true)
    }

    fn pause_step(&mut self, now: Instant, id: u64, pc: usize, d: Duration) -> bool {
        let Some(call) = self.calls.get_mut(&id) else {
            return false;
        };
        match call.wait {
            Some((p, until)) if p == pc => {
                if now >= until {
                    call.wait = None;
                    call.pc = pc + 1;
                    true
                } else {
                    false
                }
            }
            _ if d.is_zero() => {
                call.pc = pc + 1;
                true
            }
            _ => {
                call.wait = Some((pc, now + d));
                self.timers.push(Reverse((now + d, id)));
                false
            }
        }
    }

    fn play_step(&mut self, now: Instant, id: u64, pc: usize, d: Duration) -> Result<bool, Fail> {
        let with_media = self.cfg.with_media;
        let Some(call) = self.calls.get_mut(&id) else {
            return Ok(false);
        };
        call.pc = pc + 1;
        if !with_media {
            return Ok(true);
        }
        let Some((remote, payload_type)) = call.remote_media else {
            return Err(Fail::other(format!(
                "step {}: play before any SDP was received",
                pc + 1
            )));
        };
        if call.media_on {
            self.sip.media.push_back(MediaEvent::Stop { call: id });
        }
        self.sip.media.push_back(MediaEvent::Start {
            call: id,
            remote,
            payload_type,
        });
        call.media_on = true;
        call.media_stop_at = Some(now + d);
        self.timers.push(Reverse((now + d, id)));
        Ok(true)
    }

    fn dtmf_step(&mut self, now: Instant, id: u64, pc: usize) -> Result<bool, Fail> {
        let script = Arc::clone(&self.script);
        let Some(Step::Dtmf(d)) = script.scenario().steps.get(pc) else {
            return Ok(false);
        };
        match d.mode {
            DtmfMode::Rfc4733 => self.dtmf_rtp(now, id, pc, &d.digits),
            DtmfMode::Info { duration_ms } => self.dtmf_info(now, id, pc, &d.digits, duration_ms),
        }
    }

    /// RFC 4733 digits through the media pool; the step lasts as long as they do.
    fn dtmf_rtp(&mut self, now: Instant, id: u64, pc: usize, digits: &str) -> Result<bool, Fail> {
        let with_media = self.cfg.with_media;
        let Some(call) = self.calls.get_mut(&id) else {
            return Ok(false);
        };
        match call.wait {
            Some((p, until)) if p == pc => {
                if now < until {
                    return Ok(false);
                }
                call.wait = None;
                call.pc = pc + 1;
                return Ok(true);
            }
            _ if !with_media => {
                // No media pool: like `play`, nothing to do.
                call.pc = pc + 1;
                return Ok(true);
            }
            _ if !call.media_on => {
                return Err(Fail::other(format!(
                    "step {}: RFC 4733 dtmf needs a running `play` (or mode = \"info\")",
                    pc + 1
                )));
            }
            _ => {}
        }
        self.sip.media.push_back(MediaEvent::Dtmf {
            call: id,
            digits: digits.to_string(),
        });
        // 100 ms per digit, 60 ms apart, and the end packets.
        let lasts = DTMF_DIGIT * digits.len() as u32 + DTMF_DIGIT;
        let until = now + lasts;
        if call.media_stop_at.is_some_and(|t| t < until) {
            call.media_stop_at = Some(until);
        }
        call.wait = Some((pc, until));
        self.timers.push(Reverse((until, id)));
        Ok(false)
    }

    /// One SIP INFO per digit, each waiting for its 2xx.
    fn dtmf_info(
        &mut self,
        now: Instant,
        id: u64,
        pc: usize,
        digits: &str,
        duration_ms: u32,
    ) -> Result<bool, Fail> {
        let Some(call) = self.calls.get_mut(&id) else {
            return Ok(false);
        };
        let target = Peer::new(TransportKind::Udp, call.peer);
        let state = call.dtmf.get_or_insert(DtmfState { next: 0, tx: None });
        if state.tx.is_some() {
            return Ok(false);
        }
        let Some(digit) = digits.chars().nth(state.next) else {
            call.dtmf = None;
            call.pc = pc + 1;
            return Ok(true);
        };
        let Some(dialog) = call.dialog.as_mut() else {
            return Err(Fail::other(format!(
                "step {}: dtmf needs a dialog (a 2xx to an INVITE)",
                pc + 1
            )));
        };
        dialog.local_cseq = call.cseq;
        let mut info = dialog.request(Method::Info);
        call.cseq = dialog.local_cseq;
        info.headers
            .push(HeaderName::ContentType, "application/dtmf-relay");
        info.body = format!("Signal={digit}\r\nDuration={duration_ms}\r\n").into();
        self.sip.count_request();
        match self.sip.layer.send_request(now, info, target) {
            Ok(tx) => {
                self.by_tx.insert(tx.id(), id);
                call.txs.push((tx.id(), Method::Info));
                if let Some(s) = call.dtmf.as_mut() {
                    s.tx = Some(tx.id());
                }
                Ok(false)
            }
            Err(e) => Err(Fail {
                kind: Some(Failure::SendError),
                label: format!("step {}: INFO refused: {e}", pc + 1),
            }),
        }
    }

    /// Sends the message of step `step`; with `challenge`, answers it (a retry with
    /// credentials).
    fn send_step(
        &mut self,
        now: Instant,
        id: u64,
        step: usize,
        challenge: Option<(&Response, AuthPending)>,
    ) -> Result<(), Fail> {
        let script = Arc::clone(&self.script);
        let Some(Step::Send(send)) = script.scenario().steps.get(step) else {
            return Ok(());
        };
        let label = |what: String| Fail::other(format!("step {}: {what}", step + 1));
        let local = self.sip.local;
        let t1 = self.t1;
        let uas_takes_invite = self.answering.as_ref().map(|a| a.takes_invite);
        let Some(call) = self.calls.get_mut(&id) else {
            return Ok(());
        };
        let dest = Peer::new(TransportKind::Udp, call.peer);
        let method = match &send.message.start {
            StartLine::Request(m) => Some(m.clone()),
            StartLine::Response(_) => None,
        };
        if method
            .as_ref()
            .is_some_and(|m| *m != Method::Ack && *m != Method::Cancel)
        {
            call.cseq = call.cseq.wrapping_add(1);
        }
        call.branch = match method {
            Some(Method::Cancel) => call
                .invite
                .as_ref()
                .and_then(|i| i.top_via())
                .and_then(|v| v.branch().map(str::to_string))
                .unwrap_or_else(new_branch),
            _ => new_branch(),
        };
        let env = Self::env(&script, &self.cfg, local, id, call);
        let text = send.message.render(&env).map_err(label)?;
        // Credentials for a first send that may be challenged.
        let creds = match (&send.auth, &challenge) {
            (Some(a), None) => Some((
                a.user.render_string(&env).map_err(label)?,
                a.password.render_string(&env).map_err(label)?,
            )),
            _ => None,
        };
        let msg = parse_datagram(text.as_bytes())
            .map_err(|e| label(format!("the message does not parse: {}", e.reason)))?;
        let mut req = match msg {
            Message::Response(resp) => {
                // The request the response's CSeq names, else the last one taken.
                let cseq = resp.cseq();
                let named = cseq.as_ref().and_then(|(n, m)| {
                    call.server_txs
                        .iter()
                        .rev()
                        .find(|(tn, tm, _, _)| tn == n && tm == m)
                        .map(|(_, _, tx, peer)| (*tx, *peer))
                });
                let Some((tx, source)) = named.or(call.server_tx) else {
                    return Err(label(
                        "a response to send, but no request was received".into(),
                    ));
                };
                let ok_to_invite = (200..=299).contains(&resp.status)
                    && cseq.as_ref().is_some_and(|(_, m)| *m == Method::Invite);
                if ok_to_invite {
                    if call.dialog.is_none() {
                        if let (Some(inv), Some(tag)) = (&call.far_invite, resp.to_tag()) {
                            call.dialog = Dialog::uas(inv, &tag, source, local);
                        }
                    }
                    call.pending_2xx = Some(Pending2xx {
                        resp: resp.clone(),
                        dest: source,
                        cseq: cseq.as_ref().map_or(0, |c| c.0),
                        next: now + t1,
                        interval: t1,
                        since: now,
                    });
                    self.timers.push(Reverse((now + t1, id)));
                }
                // The uas counts its call answered on its first 2xx (to an INVITE when the
                // script takes one).
                if let Some(takes_invite) = uas_takes_invite {
                    if (200..=299).contains(&resp.status)
                        && !call.answered
                        && (ok_to_invite || !takes_invite)
                    {
                        call.answered = true;
                        self.sip.counters.answer();
                    }
                }
                if self
                    .sip
                    .layer
                    .send_response(now, &tx, resp.clone())
                    .is_err()
                {
                    // The transaction is gone (or has its final answer): send it anyway.
                    self.sip
                        .layer
                        .send_stateless(Message::Response(resp), source);
                }
                return Ok(());
            }
            Message::Request(req) => req,
        };
        if let Some(cid) = req.call_id() {
            if !call.call_ids.iter().any(|c| c == cid) {
                call.call_ids.push(cid.to_string());
                self.by_call_id.insert(cid.to_string(), id);
            }
        }
        if req.method == Method::Ack {
            if let Some(tx) = call.unacked_2xx.take() {
                self.acks.insert(tx, (req.clone(), dest));
                call.acked = true;
            }
            self.sip.layer.send_stateless(Message::Request(req), dest);
            return Ok(());
        }
        if let Some((resp, pending)) = challenge {
            let cnonce = format!("{:08x}", rand_u32(id, call.cseq));
            let uri = req.uri.clone();
            let Some((name, value)) = digest::authorize(
                resp,
                req.method.as_str(),
                &uri,
                &pending.user,
                &pending.password,
                &cnonce,
            ) else {
                return Err(Fail {
                    kind: Some(Failure::Status(resp.status)),
                    label: format!(
                        "step {}: no digest challenge to answer in the {}",
                        step + 1,
                        resp.status
                    ),
                });
            };
            req.headers.remove(&name);
            req.headers.push(name, value);
        }
        if req.method == Method::Bye {
            call.bye_sent = true;
        }
        self.sip.count_request();
        match self.sip.layer.send_request(now, req.clone(), dest) {
            Ok(tx) => {
                self.by_tx.insert(tx.id(), id);
                call.txs.push((tx.id(), req.method.clone()));
                if let Some((user, password)) = creds {
                    call.auth.insert(
                        tx.id(),
                        AuthPending {
                            step,
                            user,
                            password,
                        },
                    );
                }
                if req.method == Method::Invite {
                    call.invite = Some(req);
                }
                Ok(())
            }
            Err(e) => Err(Fail {
                kind: Some(Failure::SendError),
                label: format!(
                    "step {}: the transaction layer refused the request: {e}",
                    step + 1
                ),
            }),
        }
    }

    /// At an `expect`: takes queued messages, or arms the timeout.
    fn expect_step(&mut self, now: Instant, id: u64, pc: usize) -> Result<bool, Fail> {
        let script = Arc::clone(&self.script);
        let steps = &script.scenario().steps;
        let Some(Step::Expect(here)) = steps.get(pc) else {
            return Ok(false);
        };
        loop {
            let Some(call) = self.calls.get_mut(&id) else {
                return Ok(false);
            };
            let Some(inc) = call.queue.pop_front() else {
                break;
            };
            let mut j = pc;
            let mut found = None;
            while let Some(Step::Expect(e)) = steps.get(j) {
                if matches(e, &inc.msg) {
                    found = Some((j, e));
                    break;
                }
                if !e.optional {
                    break;
                }
                j += 1;
            }
            match found {
                Some((j, e)) => {
                    self.take(now, id, j, e, inc)?;
                    self.set_pc(id, e.next.unwrap_or(j + 1));
                    return Ok(true);
                }
                None if inc.is_provisional() => {}
                None => {
                    let mut wanted: Vec<String> = Vec::new();
                    let mut k = pc;
                    while let Some(Step::Expect(e)) = steps.get(k) {
                        wanted.push(e.matcher.to_string());
                        if !e.optional {
                            break;
                        }
                        k += 1;
                    }
                    let wanted = match wanted.split_last() {
                        Some((last, rest)) if !rest.is_empty() => {
                            format!("{} or {last}", rest.join(", "))
                        }
                        _ => here.matcher.to_string(),
                    };
                    let kind = match &inc.msg {
                        Message::Response(r) if r.status >= 300 => Some(Failure::Status(r.status)),
                        _ => None,
                    };
                    return Err(Fail {
                        kind,
                        label: format!(
                            "step {}: expected {wanted}, got {}",
                            pc + 1,
                            describe(&inc.msg)
                        ),
                    });
                }
            }
        }
        let timeout = here.timeout.unwrap_or(script.scenario().timeout);
        let Some(call) = self.calls.get_mut(&id) else {
            return Ok(false);
        };
        match call.wait {
            Some((p, at)) if p == pc => {
                if now < at {
                    return Ok(false);
                }
                call.wait = None;
                if here.optional {
                    call.pc = pc + 1;
                    return Ok(true);
                }
                Err(Fail {
                    kind: Some(Failure::Timeout),
                    label: format!("step {}: timeout waiting for {}", pc + 1, here.matcher),
                })
            }
            _ => {
                call.wait = Some((pc, now + timeout));
                self.timers.push(Reverse((now + timeout, id)));
                Ok(false)
            }
        }
    }

    /// An expected message arrived at step `j`: captures, dialog, statistics.
    fn take(
        &mut self,
        now: Instant,
        id: u64,
        j: usize,
        e: &Expect,
        inc: Incoming,
    ) -> Result<(), Fail> {
        let sends_invite = self.script.scenario().sends_invite;
        let local = self.sip.local;
        let Some(call) = self.calls.get_mut(&id) else {
            return Ok(());
        };
        let dest = Peer::new(TransportKind::Udp, call.peer);
        for cap in &e.captures {
            let found = capture(cap, &inc.msg);
            match found {
                Some(v) => {
                    call.vars.insert(cap.var.clone(), v);
                }
                None if cap.required => {
                    return Err(Fail::other(format!(
                        "step {}: capture ${} found nothing",
                        j + 1,
                        cap.var
                    )))
                }
                None => {}
            }
        }
        let body = match &inc.msg {
            Message::Request(r) => &r.body,
            Message::Response(r) => &r.body,
        };
        if let Some(m) = remote_audio(body) {
            call.remote_media = Some(m);
        }
        match &inc.msg {
            Message::Response(resp) => {
                let method = resp.cseq().map(|c| c.1);
                let invite = method == Some(Method::Invite);
                let us = now.duration_since(call.started).as_micros() as u64;
                if invite && (180..=199).contains(&resp.status) && !call.rang {
                    call.rang = true;
                    self.sip.counters.ringing.record(us);
                }
                if (200..=299).contains(&resp.status) {
                    if !call.answered && (invite || !sends_invite) {
                        call.answered = true;
                        self.sip.counters.setup.record(us);
                        self.sip.counters.answer();
                    }
                    if invite {
                        if let Some(inv) = &call.invite {
                            if let Some(d) = Dialog::uac(inv, resp, dest, local) {
                                call.dialog = Some(d);
                            }
                        }
                        call.unacked_2xx = inc.client_tx;
                    }
                }
            }
            Message::Request(req) => {
                call.server_tx = inc.server;
                if let (Some((tx, peer)), Some((n, m))) = (inc.server, req.cseq()) {
                    if call.server_txs.len() >= QUEUE_MAX {
                        call.server_txs.remove(0);
                    }
                    call.server_txs.push((n, m, tx, peer));
                }
                match req.method {
                    Method::Invite if call.far_invite.is_none() && call.invite.is_none() => {
                        call.far_invite = Some(req.clone());
                    }
                    Method::Bye => call.bye_received = true,
                    _ => {}
                }
            }
        }
        call.last = Some(inc.msg);
        Ok(())
    }

    fn finish(&mut self, now: Instant, id: u64, outcome: Result<(), Fail>) {
        let Some(mut call) = self.calls.remove(&id) else {
            return;
        };
        for cid in &call.call_ids {
            self.by_call_id.remove(cid);
        }
        for (t, _) in &call.txs {
            self.by_tx.remove(t);
        }
        if call.media_on {
            self.sip.media.push_back(MediaEvent::Stop { call: id });
        }
        let outcome =
            outcome.and_then(|()| match call.queue.iter().find(|i| !i.is_provisional()) {
                Some(i) => Err(Fail::other(format!(
                    "after the last step: unexpected {}",
                    describe(&i.msg)
                ))),
                None => Ok(()),
            });
        match outcome {
            Ok(()) => {
                self.counters().completed.fetch_add(1, Relaxed);
            }
            Err(f) => {
                match f.kind {
                    Some(k) => self.counters().fail(k),
                    None => {
                        self.counters().failed.fetch_add(1, Relaxed);
                    }
                }
                self.script.note_failure(&f.label);
                // Do not leave a confirmed dialog up at the far side.
                if call.acked && !call.bye_sent && !call.bye_received {
                    if let Some(d) = call.dialog.as_mut() {
                        d.local_cseq = call.cseq;
                        let bye = d.request(Method::Bye);
                        let dest = Peer::new(TransportKind::Udp, call.peer);
                        self.sip.count_request();
                        let _ = self.sip.layer.send_request(now, bye, dest);
                    }
                }
            }
        }
    }

    fn enqueue(&mut self, now: Instant, id: u64, inc: Incoming) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if call.queue.len() >= QUEUE_MAX {
            let f = Fail::other(format!(
                "step {}: more than {QUEUE_MAX} messages waiting",
                call.pc + 1
            ));
            self.finish(now, id, Err(f));
            return;
        }
        call.queue.push_back(inc);
        self.advance(now, id);
    }

    fn on_response(&mut self, now: Instant, tx: TxKey, resp: Response) {
        let txid = tx.id();
        let ok = (200..=299).contains(&resp.status);
        if ok && tx.kind().is_invite() {
            if let Some((ack, dest)) = self.acks.get(&txid) {
                // A retransmitted 2xx: our ACK was lost.
                let (ack, dest) = (ack.clone(), *dest);
                self.sip.layer.send_stateless(Message::Request(ack), dest);
                return;
            }
        }
        let Some(&id) = self.by_tx.get(&txid) else {
            return;
        };
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if matches!(resp.status, 401 | 407) {
            if let Some(pending) = call.auth.remove(&txid) {
                let step = pending.step;
                if let Err(f) = self.send_step(now, id, step, Some((&resp, pending))) {
                    self.finish(now, id, Err(f));
                }
                return;
            }
        }
        if let Some(d) = call.dtmf.as_mut().filter(|d| d.tx == Some(txid)) {
            if resp.status < 200 {
                return;
            }
            if ok {
                d.tx = None;
                d.next += 1;
                self.advance(now, id);
            } else {
                let f = Fail {
                    kind: Some(Failure::Status(resp.status)),
                    label: format!("step {}: INFO (dtmf) answered {}", call.pc + 1, resp.status),
                };
                self.finish(now, id, Err(f));
            }
            return;
        }
        if ok && tx.kind().is_invite() && !call.seen_2xx.insert(txid) {
            // The same 2xx again before the script's ACK.
            return;
        }
        self.enqueue(
            now,
            id,
            Incoming {
                msg: Message::Response(resp),
                client_tx: Some(txid),
                server: None,
            },
        );
    }

    fn on_request(&mut self, now: Instant, tx: TxKey, req: Request, source: Peer) {
        let id = req.call_id().and_then(|c| self.by_call_id.get(c)).copied();
        match id {
            Some(id) => self.enqueue(
                now,
                id,
                Incoming {
                    msg: Message::Request(req),
                    client_tx: None,
                    server: Some((tx, source)),
                },
            ),
            None => self.open_call(now, tx, req, source),
        }
    }

    fn on_timeout(&mut self, now: Instant, tx: TxKey) {
        let Some(id) = self.by_tx.remove(&tx.id()) else {
            return;
        };
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        // Timer M after a 2xx, or the ACK's INVITE: normal.
        if call.seen_2xx.contains(&tx.id()) {
            return;
        }
        let method = call
            .txs
            .iter()
            .find(|(t, _)| *t == tx.id())
            .map_or_else(|| "request".to_string(), |(_, m)| m.to_string());
        let f = Fail {
            kind: Some(Failure::Timeout),
            label: format!("no final response to {method}"),
        };
        self.finish(now, id, Err(f));
    }

    /// Hands the layer's events to the calls.
    fn pump(&mut self, now: Instant) {
        while let Some(ev) = self.sip.layer.poll_event() {
            match ev {
                TuEvent::Response { tx, resp } => self.on_response(now, tx, resp),
                TuEvent::Request {
                    tx, req, source, ..
                } => self.on_request(now, tx, req, source),
                TuEvent::AckFor2xx { req, source: _ } => {
                    let id = req.call_id().and_then(|c| self.by_call_id.get(c)).copied();
                    if let Some(id) = id {
                        if !self.on_ack(id, &req) {
                            continue;
                        }
                        self.enqueue(
                            now,
                            id,
                            Incoming {
                                msg: Message::Request(req),
                                client_tx: None,
                                server: None,
                            },
                        );
                    }
                }
                TuEvent::Timeout { tx } => self.on_timeout(now, tx),
                TuEvent::Terminated { tx } => {
                    self.by_tx.remove(&tx.id());
                    self.acks.remove(&tx.id());
                }
                TuEvent::StrayResponse { .. } => {}
            }
        }
    }

    /// An ACK for a 2xx arrived for call `id`: it ends the 2xx's retransmissions. False when
    /// it is a retransmission the script must not see.
    fn on_ack(&mut self, id: u64, ack: &Request) -> bool {
        let Some(call) = self.calls.get_mut(&id) else {
            return false;
        };
        let Some(n) = ack.cseq().map(|c| c.0) else {
            return true;
        };
        if call.pending_2xx.as_ref().is_some_and(|p| p.cseq == n) {
            call.pending_2xx = None;
            call.acked = true;
            call.acked_2xx.push(n);
            return true;
        }
        !call.acked_2xx.contains(&n)
    }

    /// Retransmits the call's pending 2xx when due; fails the call after 64·T1 without ACK.
    fn retransmit_2xx(&mut self, now: Instant, id: u64) {
        let t2 = self.sip.layer.config().timers.t2;
        let give_up = self.t1 * 64;
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(p) = call.pending_2xx.as_mut() else {
            return;
        };
        if p.next > now {
            return;
        }
        if now.duration_since(p.since) >= give_up {
            let f = Fail {
                kind: Some(Failure::NoAck),
                label: format!("no ACK for the {} to INVITE", p.resp.status),
            };
            self.finish(now, id, Err(f));
            return;
        }
        p.interval = (p.interval * 2).min(t2);
        p.next = now + p.interval;
        let (resp, dest, next) = (p.resp.clone(), p.dest, p.next);
        self.timers.push(Reverse((next, id)));
        self.sip.counters.retransmissions.fetch_add(1, Relaxed);
        self.sip.layer.send_stateless(Message::Response(resp), dest);
    }

    /// A call's timer fired: stop its media if due, then run it.
    fn tick(&mut self, now: Instant, id: u64) {
        self.retransmit_2xx(now, id);
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if call.media_stop_at.is_some_and(|t| t <= now) {
            call.media_stop_at = None;
            call.media_on = false;
            self.sip.media.push_back(MediaEvent::Stop { call: id });
        }
        self.advance(now, id);
    }
}

/// The first capture of `cap` in `msg`: its first group, or the whole match.
fn capture(cap: &super::parse::Capture, msg: &Message) -> Option<String> {
    let grab = |text: &str| {
        cap.regex.captures(text).and_then(|c| {
            c.get(1)
                .or_else(|| c.get(0))
                .map(|m| m.as_str().to_string())
        })
    };
    match &cap.source {
        Source::Header(name) => msg
            .headers()
            .iter()
            .filter(|h| h.name.as_str().eq_ignore_ascii_case(name.as_str()))
            .find_map(|h| grab(&h.value)),
        Source::Body => {
            let body = match msg {
                Message::Request(r) => &r.body,
                Message::Response(r) => &r.body,
            };
            grab(&String::from_utf8_lossy(body))
        }
        Source::Message => grab(&String::from_utf8_lossy(&msg.to_bytes())),
    }
}

/// A cnonce: a hash of the call, its CSeq and the clock (no need for a strong random).
fn rand_u32(id: u64, cseq: u32) -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let x = id
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(u64::from(cseq) << 32 | u64::from(t));
    (x ^ (x >> 29)) as u32
}

impl Agent for ScriptedUac {
    fn handle_datagram(&mut self, now: Instant, data: &[u8], from: SocketAddr) {
        self.last_now = now;
        self.sip.receive(now, data, from);
        self.pump(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.last_now = now;
        if self.sip.layer.poll_timeout().is_some_and(|t| t <= now) {
            self.sip.layer.handle_timeout(now);
        }
        self.pump(now);
        while let Some(Reverse((at, id))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            self.tick(now, id);
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
        earliest([
            self.sip.layer.poll_timeout(),
            self.timers.peek().map(|r| r.0 .0),
            self.may_start().then(|| self.pacer.next_due()).flatten(),
        ])
    }

    fn drain(&mut self, _now: Instant) {
        // Live calls run their script to its end (or the abandon deadline).
        self.draining = true;
    }

    fn finished(&self) -> bool {
        !self.may_start() && !self.accepting() && self.calls.is_empty()
    }

    fn abandon(&mut self) {
        let now = self.last_now;
        let ids: Vec<u64> = self.calls.keys().copied().collect();
        for id in ids {
            let f = Fail {
                kind: Some(Failure::Unfinished),
                label: "unfinished".into(),
            };
            self.finish(now, id, Err(f));
        }
    }
}

/// The method whose request opens a call in the answering role: the first step must be an
/// `expect` of a request.
pub fn answering_method(script: &Script) -> Result<Method, String> {
    match script.scenario().steps.first() {
        Some(Step::Expect(e)) if e.matcher.code.is_none() && !e.optional => e
            .matcher
            .method
            .clone()
            .ok_or_else(|| "the first step expects nothing".to_string()),
        _ => Err(
            "a uas scenario starts with the request that opens a call: make step 1 \
             `expect = \"INVITE\"` (or another method), not optional"
                .into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::Injection;
    use switchboard_engine::auth::{self, Authenticator, Credentials, Verdict};
    use switchboard_engine::dialog::with_to_tag;

    const OPTIONS: &str = r#"
OPTIONS sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/UDP [local_ip]:[local_port];branch=[branch]
From: <sip:[caller]@[local_ip]>;tag=[tag]
To: <sip:[service]@[remote_ip]>
Call-ID: [call_id]
CSeq: [cseq] OPTIONS
"#;

    const INVITE: &str = r#"
INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/UDP [local_ip]:[local_port];branch=[branch]
From: <sip:[caller]@[local_ip]>;tag=[tag]
To: <sip:[service]@[remote_ip]>
Call-ID: [call_id]
CSeq: [cseq] INVITE
Contact: <sip:[caller]@[local_ip]:[local_port]>
"#;

    /// A scripted UAC with one call, driven by hand with simulated time.
    struct Harness {
        uac: ScriptedUac,
        script: Arc<Script>,
        counters: Arc<Counters>,
        now: Instant,
        target: SocketAddr,
    }

    impl Harness {
        fn new(toml: &str, inf: Option<&str>) -> Harness {
            let scenario = crate::script::parse::parse(toml).expect("valid scenario");
            let inf = inf.map(|t| Injection::parse(t).expect("valid injection"));
            let script = Arc::new(Script::new(scenario, inf).expect("fields exist"));
            let target: SocketAddr = "127.0.0.1:5060".parse().expect("addr");
            let local: SocketAddr = "127.0.0.1:5099".parse().expect("addr");
            let counters = Arc::new(Counters::new());
            let now = Instant::now();
            let uac = ScriptedUac::new(
                Arc::clone(&script),
                ScriptConfig {
                    target,
                    service: "svc".into(),
                    caller: "me".into(),
                    rate: 1000.0,
                    ramp: Duration::ZERO,
                    calls: Some(1),
                    max_concurrent: 1,
                    media: "127.0.0.1:4000".parse().expect("addr"),
                    with_media: false,
                    worker: 0,
                },
                local,
                now,
                500,
                Arc::clone(&counters),
            );
            let mut h = Harness {
                uac,
                script,
                counters,
                now,
                target,
            };
            h.wait(Duration::from_millis(5));
            h
        }

        fn wait(&mut self, d: Duration) {
            self.now += d;
            self.uac.handle_timeout(self.now);
        }

        /// Everything sent since the last call, parsed.
        fn sent(&mut self) -> Vec<Message> {
            let mut out = Vec::new();
            while let Some((dest, bytes)) = self.uac.poll_transmit() {
                assert_eq!(dest, self.target);
                out.push(parse_datagram(&bytes).expect("we send valid SIP"));
            }
            out
        }

        fn one_request(&mut self) -> Request {
            let mut sent = self.sent();
            assert_eq!(sent.len(), 1, "{sent:?}");
            match sent.pop() {
                Some(Message::Request(r)) => r,
                other => panic!("expected a request, got {other:?}"),
            }
        }

        fn feed(&mut self, msg: &Message) {
            self.uac
                .handle_datagram(self.now, &msg.to_bytes(), self.target);
        }

        fn reply(&mut self, req: &Request, status: u16) -> Response {
            let mut r = with_to_tag(response(req, status), "far");
            r.headers
                .push(HeaderName::Contact, "<sip:far@127.0.0.1:5060>");
            self.feed(&Message::Response(r.clone()));
            r
        }

        fn completed(&self) -> u64 {
            self.counters.completed.load(Relaxed)
        }
    }

    #[test]
    fn auth_loops_captures_and_fields() {
        let toml = format!(
            r#"
[[step]]
set = {{ prev = "start" }}

[[step]]
label = "top"

[[step]]
send = """{OPTIONS}X-Prev: [$prev]
X-User: [field0]
"""
auth = {{ user = "[field0]", password = "[field1]" }}

[[step]]
expect = 200
capture = [{{ var = "prev", header = "X-Token", regex = "t(\\d+)", required = true }}]

[[step]]
goto = "top"
times = 2
"#
        );
        let mut h = Harness::new(&toml, Some("SEQUENTIAL\nalice;s3cret\n"));
        let a = Authenticator::with_algorithms("sb", Duration::from_secs(60), &["MD5".into()]);
        let mut prev = "start".to_string();
        for round in 1..=3u32 {
            let first = h.one_request();
            assert_eq!(
                first.headers.get(&HeaderName::Other("X-Prev".into())),
                Some(prev.as_str())
            );
            assert_eq!(
                first.headers.get(&HeaderName::Other("X-User".into())),
                Some("alice")
            );
            let mut challenge = response(&first, 401);
            for c in a.challenges(1_000, false) {
                challenge.headers.push(HeaderName::WwwAuthenticate, c);
            }
            h.feed(&Message::Response(challenge));
            let retry = h.one_request();
            let (n1, _) = first.cseq().expect("cseq");
            let (n2, _) = retry.cseq().expect("cseq");
            assert_eq!(n2, n1 + 1);
            assert_ne!(
                retry.top_via().and_then(|v| v.branch().map(str::to_string)),
                first.top_via().and_then(|v| v.branch().map(str::to_string))
            );
            let creds = Credentials::parse(
                retry
                    .headers
                    .get(&HeaderName::Authorization)
                    .expect("credentials"),
            )
            .expect("parse");
            let ha1 = auth::ha1(auth::Algorithm::Md5, "alice", "sb", "s3cret");
            assert_eq!(a.verify(&creds, "OPTIONS", &ha1, 1_100), Verdict::Ok);
            let mut ok = response(&retry, 200);
            ok.headers
                .push(HeaderName::Other("X-Token".into()), format!("t{round}"));
            h.feed(&Message::Response(ok));
            prev = round.to_string();
            if round < 3 {
                assert_eq!(h.completed(), 0);
            }
        }
        assert!(h.sent().is_empty());
        assert_eq!(h.completed(), 1, "{:?}", h.script.failure_reasons());
        assert_eq!(h.counters.answered.load(Relaxed), 1);
    }

    #[test]
    fn a_retransmitted_2xx_is_acked_again() {
        let toml = format!(
            r#"
[[step]]
send = """{INVITE}"""

[[step]]
expect = 200

[[step]]
send = """
ACK sip:far@127.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP [local_ip]:[local_port];branch=[branch]
From: <sip:[caller]@[local_ip]>;tag=[tag]
[last_To:]
Call-ID: [call_id]
CSeq: [cseq] ACK
"""

[[step]]
pause = 50

[[step]]
send = """
BYE sip:far@127.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP [local_ip]:[local_port];branch=[branch]
From: <sip:[caller]@[local_ip]>;tag=[tag]
[last_To:]
Call-ID: [call_id]
CSeq: [cseq] BYE
"""

[[step]]
expect = {{ code = 200, method = "BYE" }}
"#
        );
        let mut h = Harness::new(&toml, None);
        let invite = h.one_request();
        let ok = h.reply(&invite, 200);
        let ack = h.one_request();
        assert_eq!(ack.method, Method::Ack);
        assert_eq!(ack.cseq(), Some((1, Method::Ack)));
        assert!(ok.to_tag().is_some());
        assert_eq!(ack.to_tag(), ok.to_tag());
        // The 200 again (our ACK was lost): the same ACK again, nothing for the script.
        h.feed(&Message::Response(ok));
        let again = h.one_request();
        assert_eq!(again, ack);
        h.wait(Duration::from_millis(60));
        let bye = h.one_request();
        assert_eq!(bye.cseq(), Some((2, Method::Bye)));
        h.reply(&bye, 200);
        assert_eq!(h.completed(), 1, "{:?}", h.script.failure_reasons());
        assert_eq!(h.counters.setup.snapshot().count(), 1);
    }

    #[test]
    fn cancel_reuses_the_invite_branch() {
        let toml = format!(
            r#"
[[step]]
send = """{INVITE}"""

[[step]]
expect = 180

[[step]]
send = """
CANCEL sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/UDP [local_ip]:[local_port];branch=[branch]
From: <sip:[caller]@[local_ip]>;tag=[tag]
To: <sip:[service]@[remote_ip]>
Call-ID: [call_id]
CSeq: [cseq] CANCEL
"""

[[step]]
expect = {{ code = 200, method = "CANCEL" }}

[[step]]
expect = 487
"#
        );
        let mut h = Harness::new(&toml, None);
        let invite = h.one_request();
        h.reply(&invite, 100);
        assert!(h.sent().is_empty());
        h.reply(&invite, 180);
        let cancel = h.one_request();
        assert_eq!(cancel.method, Method::Cancel);
        assert_eq!(cancel.cseq(), Some((1, Method::Cancel)));
        assert_eq!(
            cancel
                .top_via()
                .and_then(|v| v.branch().map(str::to_string)),
            invite
                .top_via()
                .and_then(|v| v.branch().map(str::to_string))
        );
        h.feed(&Message::Response(response(&cancel, 200)));
        h.reply(&invite, 487);
        // The transaction layer ACKs the 487 itself.
        let ack = h.one_request();
        assert_eq!(ack.method, Method::Ack);
        assert_eq!(h.completed(), 1, "{:?}", h.script.failure_reasons());
    }

    #[test]
    fn timeouts_and_unexpected_messages_fail_with_a_reason() {
        let toml = format!(
            "[[step]]\nsend = \"\"\"{OPTIONS}\"\"\"\n\n[[step]]\nexpect = 200\ntimeout_ms = 100\n"
        );
        let mut h = Harness::new(&toml, None);
        let _ = h.one_request();
        h.wait(Duration::from_millis(120));
        assert_eq!(h.counters.failed.load(Relaxed), 1);
        assert_eq!(h.counters.failures().get("timeout"), Some(&1));
        assert_eq!(
            h.script
                .failure_reasons()
                .get("step 2: timeout waiting for 200"),
            Some(&1)
        );

        let mut h = Harness::new(&toml, None);
        let options = h.one_request();
        let mut bye = options.clone();
        bye.method = Method::Bye;
        bye.headers.set(HeaderName::CSeq, "7 BYE");
        bye.headers.set(
            HeaderName::Via,
            "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKfar1",
        );
        h.feed(&Message::Request(bye));
        assert_eq!(h.counters.failed.load(Relaxed), 1);
        assert_eq!(
            h.script
                .failure_reasons()
                .get("step 2: expected 200, got BYE"),
            Some(&1),
            "{:?}",
            h.script.failure_reasons()
        );
        // An optional expect that times out is skipped.
        let toml = format!(
            "[[step]]\nsend = \"\"\"{OPTIONS}\"\"\"\n\n[[step]]\nexpect = 100\noptional = true\ntimeout_ms = 50\n\n[[step]]\nexpect = 200\n"
        );
        let mut h = Harness::new(&toml, None);
        let options = h.one_request();
        h.wait(Duration::from_millis(60));
        h.reply(&options, 200);
        assert_eq!(h.completed(), 1, "{:?}", h.script.failure_reasons());
    }
}
