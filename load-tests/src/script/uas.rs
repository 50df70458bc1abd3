//! [`ScriptedUas`]: a scenario file drives the answering side (`switchboard load uas
//! --scenario-file FILE`). A request with a new Call-ID whose method is the one the script's
//! first step expects (usually INVITE) opens a call, and the script runs from there: `send`
//! of responses (180, 200 with SDP, 486…) on the request's server transaction, `expect` of
//! ACK, BYE, re-INVITE, CANCEL, `send` of a BYE or re-INVITE of its own (to where the call
//! came from), `pause`, `play`, `dtmf`. Same engine as [`ScriptedUac`] (same parser,
//! variables, captures, CSV injection, failure labels); a 2xx to an INVITE is retransmitted
//! until its ACK (RFC 3261 §13.3.1.4).

use super::uac::{ScriptConfig, ScriptedUac};
use super::Script;
use crate::agent::{Agent, MediaEvent};
use crate::stats::Counters;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one scripted UAS worker does.
#[derive(Clone, Debug)]
pub struct ScriptUasConfig {
    /// Calls still to take, shared by every worker (callers may all land on one of them);
    /// `None` = until drained.
    pub calls_left: Option<Arc<AtomicU64>>,
    /// `[service]`.
    pub service: String,
    /// `[caller]`.
    pub caller: String,
    /// Our RTP address (`[media_ip]`, `[media_port]`).
    pub media: SocketAddr,
    /// Whether `play` steps start RTP (a media pool is running).
    pub with_media: bool,
    /// The worker's number.
    pub worker: usize,
}

/// The scripted UAS for one worker.
#[derive(Debug)]
pub struct ScriptedUas(ScriptedUac);

impl ScriptedUas {
    /// A scripted UAS answering at `local`. Errors when the script does not start with the
    /// `expect` of a request.
    pub fn new(
        script: Arc<Script>,
        cfg: ScriptUasConfig,
        local: SocketAddr,
        t1_ms: u64,
        counters: Arc<Counters>,
    ) -> Result<ScriptedUas, String> {
        let inner = ScriptConfig {
            target: local,
            service: cfg.service,
            caller: cfg.caller,
            rate: 0.0,
            ramp: Duration::ZERO,
            calls: Some(0),
            max_concurrent: 0,
            media: cfg.media,
            with_media: cfg.with_media,
            worker: cfg.worker,
        };
        ScriptedUac::answering(script, inner, cfg.calls_left, local, t1_ms, counters)
            .map(ScriptedUas)
    }
}

impl Agent for ScriptedUas {
    fn handle_datagram(&mut self, now: Instant, data: &[u8], from: SocketAddr) {
        self.0.handle_datagram(now, data, from);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.0.handle_timeout(now);
    }

    fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.0.poll_transmit()
    }

    fn poll_media(&mut self) -> Option<MediaEvent> {
        self.0.poll_media()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.0.poll_timeout()
    }

    fn drain(&mut self, now: Instant) {
        self.0.drain(now);
    }

    fn finished(&self) -> bool {
        self.0.finished()
    }

    fn abandon(&mut self) {
        self.0.abandon();
    }
}
