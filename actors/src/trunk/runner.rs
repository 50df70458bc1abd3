//! The async shell of a trunk's background work: drives its [`Registration`] and [`Prober`]
//! (sans-IO) with the clock, sends their requests as client transactions through a shard
//! ([`Command::Request`]) and feeds the answers back.

use super::probe::Prober;
use super::register::Registration;
use super::{lock, Trunk, Trunks};
use crate::router::{ClientReply, Command, ShardHandle};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_engine::server::new_call_id;
use switchboard_engine::sip::Request;
use switchboard_engine::transaction::Peer;

/// What a request in flight was.
enum Sent {
    Register(u32),
    Probe(usize, u64),
}

/// Runs until the engine stops.
pub(super) async fn run(trunks: Arc<Trunks>, trunk: Arc<Trunk>) {
    let shard: ShardHandle = loop {
        if let Some(h) = trunks.any_shard() {
            break h;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let kind = trunk.config.transport.kind();
    let local = shard.shared.local_addr(kind);
    let host = local.ip().to_string();
    let shard_no = shard.shard;
    let now = Instant::now();
    {
        let mut st = lock(&trunk.state);
        if let Some(rc) = &trunk.config.register {
            let registrar = rc
                .registrar
                .or_else(|| trunk.gateways.first().map(|g| g.address))
                .unwrap_or(local);
            st.registration = Some(
                Registration::new(
                    rc.clone(),
                    registrar,
                    local,
                    new_call_id(shard_no, &host),
                    now,
                )
                .with_transport(kind),
            );
        }
        if trunk.config.probe.interval_secs > 0 {
            let addrs: Vec<_> = trunk.gateways.iter().map(|g| g.address).collect();
            st.prober =
                Some(Prober::new(trunk.config.probe.clone(), &addrs, now).with_transport(kind));
        }
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<ClientReply>();
    let mut in_flight: HashMap<u64, Sent> = HashMap::new();
    let mut next_tag: u64 = 0;
    let mut seen = snapshot(&trunk);
    loop {
        publish_changes(&trunks, &trunk, &mut seen);
        let now = Instant::now();
        let mut out: Vec<(Sent, Request, std::net::SocketAddr)> = Vec::new();
        let deadline = {
            let mut st = lock(&trunk.state);
            let st = &mut *st;
            let mut deadline = now + Duration::from_secs(3600);
            if let Some(r) = st.registration.as_mut() {
                r.handle_timeout(now);
                while let Some(req) = r.poll_request(now) {
                    out.push((Sent::Register(cseq_of(&req)), req, r.registrar()));
                }
                deadline = deadline.min(r.poll_timeout());
            }
            if let Some(p) = st.prober.as_mut() {
                p.handle_timeout(now);
                let mut ids = || new_call_id(shard_no, &host);
                while let Some((i, id, req)) = p.poll_request(now, local, &mut ids) {
                    if let Some(g) = trunk.gateways.get(i) {
                        out.push((Sent::Probe(i, id), req, g.address));
                    }
                }
                if let Some(t) = p.poll_timeout() {
                    deadline = deadline.min(t);
                }
            }
            deadline
        };
        for (sent, req, dest) in out {
            next_tag += 1;
            in_flight.insert(next_tag, sent);
            shard.post(Command::Request {
                req,
                dest: Peer {
                    transport: kind,
                    addr: dest,
                    conn: None,
                },
                reply: tx.clone(),
                tag: next_tag,
            });
        }
        tokio::select! {
            reply = rx.recv() => {
                let Some(reply) = reply else { return };
                let final_answer = reply.response.as_ref().is_none_or(|r| r.status >= 200);
                let sent = if final_answer {
                    in_flight.remove(&reply.tag)
                } else {
                    None
                };
                let now = Instant::now();
                let mut st = lock(&trunk.state);
                match (sent, reply.response) {
                    (Some(Sent::Register(cseq)), Some(resp)) => {
                        if let Some(r) = st.registration.as_mut() {
                            r.handle_response(now, cseq, &resp);
                        }
                    }
                    (Some(Sent::Register(cseq)), None) => {
                        if let Some(r) = st.registration.as_mut() {
                            r.handle_failure(now, cseq);
                        }
                    }
                    (Some(Sent::Probe(i, id)), Some(resp)) => {
                        if let Some(p) = st.prober.as_mut() {
                            p.handle_response(i, id, resp.status, &resp.reason);
                        }
                    }
                    (Some(Sent::Probe(i, id)), None) => {
                        if let Some(p) = st.prober.as_mut() {
                            p.handle_failure(i, id);
                        }
                    }
                    (None, _) => {}
                }
            }
            _ = tokio::time::sleep_until(deadline.into()) => {}
        }
        // Requests whose transaction never reports back (the shard dropped them) must not
        // pile up: the state machines time them out themselves.
        if in_flight.len() > 1024 {
            in_flight.clear();
        }
    }
}

fn cseq_of(req: &Request) -> u32 {
    req.headers
        .get(&switchboard_engine::sip::HeaderName::CSeq)
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// What trunk events are derived from: the registration state and each gateway's `up`.
type Snapshot = (Option<super::register::State>, Vec<bool>);

fn snapshot(trunk: &Trunk) -> Snapshot {
    let st = lock(&trunk.state);
    let reg = st.registration.as_ref().map(|r| r.state());
    let ups = match &st.prober {
        Some(p) => (0..trunk.gateways.len())
            .map(|i| p.health(i).is_none_or(|h| h.up))
            .collect(),
        None => Vec::new(),
    };
    (reg, ups)
}

/// Publishes `trunk.registration_changed` and `gateway.down` / `gateway.up` for what changed
/// since `seen`.
fn publish_changes(trunks: &Trunks, trunk: &Trunk, seen: &mut Snapshot) {
    let now = snapshot(trunk);
    if let Some(events) = trunks.events() {
        if now.0 != seen.0 {
            if let Some(state) = now.0 {
                events.publish(
                    "trunk.registration_changed",
                    serde_json::json!({ "trunk": trunk.name, "state": state }),
                );
            }
        }
        for (i, up) in now.1.iter().enumerate() {
            if seen.1.get(i).is_some_and(|was| was != up) {
                let address = trunk.gateways.get(i).map(|g| g.address.to_string());
                events.publish(
                    if *up { "gateway.up" } else { "gateway.down" },
                    serde_json::json!({ "trunk": trunk.name, "gateway": i, "address": address }),
                );
            }
        }
    }
    *seen = now;
}
