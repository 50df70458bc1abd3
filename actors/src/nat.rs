//! Keep-alives to registered users behind NAT and over connections (`[registrar]
//! nat_keepalive`): every `nat_keepalive_secs` each such binding gets an OPTIONS (through a
//! shard, as a client transaction) or a CRLF ping on its flow. With OPTIONS, a binding whose
//! keep-alives go unanswered `nat_keepalive_failures` times in a row is dropped, so calls stop
//! ringing a phone that is gone. Any final answer counts: the phone is there.

use crate::registrar::{Binding, DropBinding, KeepaliveTargets, Registrar};
use crate::router::{ClientReply, Command, ShardHandle};
use crate::trunk::Trunks;
use actix::Addr;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use switchboard_engine::config::{NatKeepalive, RegistrarConfig};
use switchboard_engine::dialog::new_request;
use switchboard_engine::server::new_call_id;
use switchboard_engine::sip::Method;
use switchboard_engine::transaction::TransportKind;

/// Starts the keep-alive task when `nat_keepalive` is not `off`. Call inside the actix system
/// once the SIP server runs.
pub fn start(config: &RegistrarConfig, registrar: Addr<Registrar>, trunks: Arc<Trunks>) {
    if config.nat_keepalive == NatKeepalive::Off {
        return;
    }
    let mode = config.nat_keepalive;
    let every = Duration::from_secs(config.nat_keepalive_secs.max(1));
    let max_failures = config.nat_keepalive_failures.max(1);
    actix_rt::spawn(async move {
        let shard: ShardHandle = loop {
            if let Some(h) = trunks.any_shard() {
                break h;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let mut failures: HashMap<(String, String), u32> = HashMap::new();
        loop {
            tokio::time::sleep(every).await;
            let Ok(targets) = registrar.send(KeepaliveTargets).await else {
                return;
            };
            failures.retain(|k, _| targets.iter().any(|(a, b)| a == &k.0 && b.contact == k.1));
            match mode {
                NatKeepalive::Crlf => targets.iter().for_each(|(_, b)| crlf(&shard, b)),
                NatKeepalive::Options => {
                    let answered = options_round(&shard, &targets, every).await;
                    for ((aor, b), ok) in targets.iter().zip(answered) {
                        let key = (aor.clone(), b.contact.clone());
                        if ok {
                            failures.remove(&key);
                            continue;
                        }
                        let n = failures.entry(key.clone()).or_insert(0);
                        *n += 1;
                        if *n >= max_failures {
                            failures.remove(&key);
                            registrar.do_send(DropBinding {
                                aor: key.0,
                                contact: key.1,
                            });
                        }
                    }
                }
                NatKeepalive::Off => return,
            }
        }
    });
}

/// A CRLF ping on the binding's flow: a double CRLF on a connection (RFC 5626 §4.4.1), a bare
/// CRLF datagram over UDP (refreshes the NAT mapping; ignored by the phone).
fn crlf(shard: &ShardHandle, b: &Binding) {
    let dest = b.destination();
    let shared = shard.shared.clone();
    actix_rt::spawn(async move {
        match (dest.transport, dest.conn) {
            (TransportKind::Udp, conn) => {
                let sock = shared
                    .udp
                    .get(conn.unwrap_or(0) as usize)
                    .or_else(|| shared.udp.first());
                if let Some(sock) = sock {
                    let _ = sock.send_to(b"\r\n", dest.addr).await;
                }
            }
            (_, Some(conn)) => shared.tcp.send(conn, Bytes::from_static(b"\r\n\r\n")).await,
            (_, None) => {}
        }
    });
}

/// Sends one OPTIONS to each target and waits (up to `within`) for the final answers; true for
/// each that answered.
async fn options_round(
    shard: &ShardHandle,
    targets: &[(String, Binding)],
    within: Duration,
) -> Vec<bool> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<ClientReply>();
    for (i, (_, b)) in targets.iter().enumerate() {
        let dest = b.destination();
        let local = shard.shared.local_addr(dest.transport);
        let host = local.ip().to_string();
        let req = new_request(
            Method::Options,
            &b.contact,
            &format!("<sip:keepalive@{local}>"),
            &format!("<{}>", b.contact),
            &new_call_id(shard.shard, &host),
            1,
            local,
            dest.transport,
        );
        shard.post(Command::Request {
            req,
            dest,
            reply: tx.clone(),
            tag: i as u64,
        });
    }
    drop(tx);
    let mut answered = vec![false; targets.len()];
    let deadline = tokio::time::Instant::now() + within.min(Duration::from_secs(8));
    while let Ok(Some(r)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        if r.response.as_ref().is_some_and(|resp| resp.status >= 200) {
            if let Some(a) = answered.get_mut(r.tag as usize) {
                *a = true;
            }
        }
    }
    answered
}
