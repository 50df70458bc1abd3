//! OPTIONS keep-alive probes of a trunk's gateways (sans-IO), like Kamailio's dispatcher: every
//! `interval_secs` each gateway gets an OPTIONS; `down_after` failures in a row (no final
//! answer within `timeout_ms`, or a 5xx/6xx) mark it down, `up_after` answers in a row mark it
//! up again. Any 1xx–4xx final answer counts as alive: the gateway parses SIP.
//!
//! Call order: [`Prober::handle_timeout`] when [`Prober::poll_timeout`] has passed,
//! [`Prober::handle_response`] / [`Prober::handle_failure`] for each outcome, then
//! [`Prober::poll_request`] until `None`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use switchboard_engine::config::ProbeConfig;
use switchboard_engine::dialog::new_request;
use switchboard_engine::sip::{Method, Request};
use switchboard_engine::transaction::TransportKind;

/// The probe state of one gateway.
#[derive(Clone, Debug)]
pub struct Health {
    /// Up: calls may go there.
    pub up: bool,
    /// Failed probes in a row.
    pub failures: u32,
    /// Answered probes in a row.
    pub successes: u32,
    /// The last probe outcome (`200 OK`, `timeout`).
    pub last: Option<String>,
    next_at: Instant,
    pending: Option<(u64, Instant)>,
}

/// The prober of one trunk.
#[derive(Debug)]
pub struct Prober {
    cfg: ProbeConfig,
    gateways: Vec<(SocketAddr, Health)>,
    seq: u64,
    transport: TransportKind,
}

impl Prober {
    /// Probes `gateways`, all up at first; the first round is due at `now`.
    pub fn new(cfg: ProbeConfig, gateways: &[SocketAddr], now: Instant) -> Prober {
        let health = Health {
            up: true,
            failures: 0,
            successes: 0,
            last: None,
            next_at: now,
            pending: None,
        };
        Prober {
            cfg,
            gateways: gateways.iter().map(|a| (*a, health.clone())).collect(),
            seq: 0,
            transport: TransportKind::Udp,
        }
    }

    /// The same prober sending its OPTIONS over `transport` (TCP, TLS).
    pub fn with_transport(mut self, transport: TransportKind) -> Prober {
        self.transport = transport;
        self
    }

    /// Whether probing runs at all.
    pub fn enabled(&self) -> bool {
        self.cfg.interval_secs > 0
    }

    /// The health of gateway `i`.
    pub fn health(&self, i: usize) -> Option<&Health> {
        self.gateways.get(i).map(|(_, h)| h)
    }

    /// The next probe to send: `(gateway, probe id, request)`. `call_id` mints a Call-ID.
    pub fn poll_request(
        &mut self,
        now: Instant,
        local: SocketAddr,
        call_id: &mut dyn FnMut() -> String,
    ) -> Option<(usize, u64, Request)> {
        if !self.enabled() {
            return None;
        }
        let timeout = Duration::from_millis(self.cfg.timeout_ms);
        let interval = Duration::from_secs(self.cfg.interval_secs);
        let i = self
            .gateways
            .iter()
            .position(|(_, h)| h.pending.is_none() && now >= h.next_at)?;
        self.seq += 1;
        let id = self.seq;
        let (addr, h) = &mut self.gateways[i];
        h.pending = Some((id, now + timeout));
        h.next_at = now + interval;
        let uri = match self.transport {
            TransportKind::Tls => format!("sips:{addr}"),
            TransportKind::Udp => format!("sip:{addr}"),
            t => format!("sip:{addr};transport={}", t.as_str().to_ascii_lowercase()),
        };
        let req = new_request(
            Method::Options,
            &uri,
            &format!("<sip:switchboard@{local}>"),
            &format!("<{uri}>"),
            &call_id(),
            1,
            local,
            self.transport,
        );
        Some((i, id, req))
    }

    /// A final answer `status` to probe `id` of gateway `i`.
    pub fn handle_response(&mut self, i: usize, id: u64, status: u16, reason: &str) {
        if status < 200 {
            return;
        }
        let ok = status < 500;
        self.outcome(i, id, ok, format!("{status} {reason}"));
    }

    /// Probe `id` of gateway `i` got no answer (transaction timeout, send error).
    pub fn handle_failure(&mut self, i: usize, id: u64) {
        self.outcome(i, id, false, "timeout".into());
    }

    /// Probes past their deadline have failed.
    pub fn handle_timeout(&mut self, now: Instant) {
        let late: Vec<(usize, u64)> = self
            .gateways
            .iter()
            .enumerate()
            .filter_map(|(i, (_, h))| h.pending.filter(|p| now >= p.1).map(|p| (i, p.0)))
            .collect();
        for (i, id) in late {
            self.handle_failure(i, id);
        }
    }

    /// When the next probe is due or a pending one times out.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.enabled() {
            return None;
        }
        self.gateways
            .iter()
            .map(|(_, h)| h.pending.map_or(h.next_at, |p| p.1))
            .min()
    }

    fn outcome(&mut self, i: usize, id: u64, ok: bool, last: String) {
        let (down_after, up_after) = (self.cfg.down_after.max(1), self.cfg.up_after.max(1));
        let Some((addr, h)) = self.gateways.get_mut(i) else {
            return;
        };
        if h.pending.map(|p| p.0) != Some(id) {
            return;
        }
        h.pending = None;
        h.last = Some(last);
        if ok {
            h.failures = 0;
            h.successes += 1;
            if !h.up && h.successes >= up_after {
                h.up = true;
                tracing::info!(gateway = %addr, "gateway up (OPTIONS answered)");
            }
        } else {
            h.successes = 0;
            h.failures += 1;
            if h.up && h.failures >= down_after {
                h.up = false;
                tracing::warn!(gateway = %addr, "gateway down (OPTIONS probes failed)");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_after_failures_up_after_answers() {
        let t0 = Instant::now();
        let cfg = ProbeConfig {
            interval_secs: 1,
            timeout_ms: 500,
            down_after: 2,
            up_after: 1,
        };
        let gws: Vec<SocketAddr> = vec!["127.0.0.1:5070".parse().unwrap()];
        let local = "127.0.0.1:5060".parse().unwrap();
        let mut p = Prober::new(cfg, &gws, t0);
        let mut ids = || "sb0-x@h".to_string();
        let mut now = t0;
        for round in 0..2 {
            let (i, id, req) = p.poll_request(now, local, &mut ids).unwrap();
            assert_eq!(req.method, Method::Options);
            assert!(p.poll_request(now, local, &mut ids).is_none());
            now = p.poll_timeout().unwrap();
            p.handle_timeout(now);
            let _ = (i, id);
            assert_eq!(p.health(0).unwrap().up, round == 0);
            now = p.poll_timeout().unwrap();
        }
        let (i, id, _) = p.poll_request(now, local, &mut ids).unwrap();
        p.handle_response(i, id + 1, 200, "OK");
        assert!(!p.health(0).unwrap().up, "a stale probe id is ignored");
        p.handle_response(i, id, 404, "Not Found");
        assert!(p.health(0).unwrap().up);
        let now = p.poll_timeout().unwrap();
        let (i, id, _) = p.poll_request(now, local, &mut ids).unwrap();
        p.handle_response(i, id, 503, "Service Unavailable");
        assert_eq!(p.health(0).unwrap().failures, 1);
    }
}
