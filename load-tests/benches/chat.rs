//! Web chat at scale: N concurrent chat sessions over WebSocket on loopback against the release
//! `switchboard` binary, routed through the contact centre to bot agents (real agent-desktop
//! WebSockets that accept every offer and echo every customer message back as an agent
//! message). Reports the message round-trip latency (customer → agent → customer, p50/p99)
//! and the engine's memory per session (VmRSS delta over the sessions / sessions).
//!
//! ```sh
//! cargo build --release --bin switchboard
//! cargo bench -p switchboard-load --bench chat            # 5000 sessions, 5 messages each
//! CHAT_SESSIONS=1000 CHAT_MESSAGES=3 cargo bench -p switchboard-load --bench chat
//! ```

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_tests::{api, Engine};
use tokio::sync::{watch, Semaphore};
use tokio_tungstenite::tungstenite::Message;

/// Chats one bot agent holds at once (the router's default budget allows 6).
const PER_AGENT: usize = 5;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn text(v: &str) -> Value {
    serde_json::from_str(v).unwrap_or(Value::Null)
}

/// A bot agent: goes available, accepts every offer, echoes customer messages.
async fn agent(addr: std::net::SocketAddr, name: String, ready: Arc<AtomicUsize>) {
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/api/v1/agents/{name}/ws"))
        .await
        .expect("agent connect");
    let (mut tx, mut rx) = ws.split();
    tx.send(Message::text(
        json!({"type": "state", "state": "available"}).to_string(),
    ))
    .await
    .expect("state");
    let mut counted = false;
    while let Some(Ok(m)) = rx.next().await {
        let Message::Text(t) = m else { continue };
        let f = text(t.as_str());
        let reply = match f["type"].as_str() {
            Some("ack") if !counted && f["command"] == "state" => {
                counted = true;
                ready.fetch_add(1, Ordering::SeqCst);
                None
            }
            Some("offer") => Some(json!({"type": "accept", "reservation": f["reservation"]})),
            Some("chat_message") if f["from"] == "customer" => {
                Some(json!({"type": "chat_message", "chat": f["chat"], "text": f["text"]}))
            }
            _ => None,
        };
        if let Some(r) = reply {
            if tx.send(Message::text(r.to_string())).await.is_err() {
                break;
            }
        }
    }
}

/// One customer: starts a chat, waits for the agent, then for `go`, then sends `messages`
/// messages one at a time (spread over time) and measures each echo's round trip.
async fn customer(
    addr: std::net::SocketAddr,
    i: usize,
    messages: usize,
    connecting: Arc<Semaphore>,
    joined: Arc<AtomicUsize>,
    mut go: watch::Receiver<bool>,
) -> Vec<Duration> {
    let permit = connecting.acquire().await.expect("semaphore");
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/chat/ws"))
        .await
        .expect("customer connect");
    let (mut tx, mut rx) = ws.split();
    tx.send(Message::text(
        json!({"type": "start", "name": format!("c{i}"), "queue": "bench"}).to_string(),
    ))
    .await
    .expect("start");
    while let Some(Ok(m)) = rx.next().await {
        if let Message::Text(t) = m {
            if text(t.as_str())["type"] == "agent_joined" {
                break;
            }
        }
    }
    drop(permit);
    joined.fetch_add(1, Ordering::SeqCst);
    let _ = go.wait_for(|g| *g).await;
    let mut out = Vec::with_capacity(messages);
    for k in 0..messages {
        // Spread the sends: each session writes about every two seconds.
        let jitter = 1000 + (i * 7919 + k * 104_729) % 2000;
        tokio::time::sleep(Duration::from_millis(jitter as u64)).await;
        let body = format!("m{i}-{k}");
        let t0 = Instant::now();
        tx.send(Message::text(
            json!({"type": "message", "text": body}).to_string(),
        ))
        .await
        .expect("send");
        loop {
            let Some(Ok(m)) = rx.next().await else {
                return out;
            };
            if let Message::Text(t) = m {
                let f = text(t.as_str());
                if f["type"] == "message" && f["from"] == "agent" && f["text"] == body.as_str() {
                    out.push(t0.elapsed());
                    break;
                }
            }
        }
    }
    let _ = tx
        .send(Message::text(json!({"type": "end"}).to_string()))
        .await;
    out
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is parsed.
    let sessions = env("CHAT_SESSIONS", 5000);
    let messages = env("CHAT_MESSAGES", 5);
    let agents = sessions.div_ceil(PER_AGENT);
    let engine = Engine::start("[contact_centre]\nconfig_file = \"\"\n[chat]\nlinger_secs = 2\n");
    api(
        &engine,
        "POST",
        "/api/v1/queues",
        Some(json!({"name": "bench"})),
    );
    for a in 0..agents {
        api(
            &engine,
            "POST",
            "/api/v1/agents",
            Some(
                json!({"name": format!("bot{a}"), "capacity": {"chat": PER_AGENT},
                        "queues": [{"queue": "bench"}]}),
            ),
        );
    }
    let addr = engine.http_addr();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let ready = Arc::new(AtomicUsize::new(0));
        for a in 0..agents {
            tokio::spawn(agent(addr, format!("bot{a}"), ready.clone()));
        }
        while ready.load(Ordering::SeqCst) < agents {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss_before = engine.rss_kb();
        let started = Instant::now();
        let joined = Arc::new(AtomicUsize::new(0));
        let connecting = Arc::new(Semaphore::new(200));
        let (go_tx, go_rx) = watch::channel(false);
        let tasks: Vec<_> = (0..sessions)
            .map(|i| {
                tokio::spawn(customer(
                    addr,
                    i,
                    messages,
                    connecting.clone(),
                    joined.clone(),
                    go_rx.clone(),
                ))
            })
            .collect();
        while joined.load(Ordering::SeqCst) < sessions {
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(
                started.elapsed() < Duration::from_secs(600),
                "only {} of {sessions} chats were assigned",
                joined.load(Ordering::SeqCst)
            );
        }
        let setup = started.elapsed();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss_sessions = engine.rss_kb();
        let t0 = Instant::now();
        let _ = go_tx.send(true);
        let mut lat = Vec::with_capacity(sessions * messages);
        for t in tasks {
            lat.extend(t.await.expect("customer task"));
        }
        let run = t0.elapsed();
        lat.sort();
        let per_session = (rss_sessions.saturating_sub(rss_before)) as f64 / sessions as f64;
        println!("chat benchmark: {sessions} concurrent chat sessions over WebSocket (loopback), {agents} bot agents x {PER_AGENT} chats, routed by the contact centre");
        println!("  setup: {} sessions started and assigned in {:.1} s", sessions, setup.as_secs_f64());
        println!(
            "  messages: {} round trips (customer -> agent -> customer) in {:.1} s = {:.0}/s",
            lat.len(),
            run.as_secs_f64(),
            lat.len() as f64 / run.as_secs_f64()
        );
        println!(
            "  latency: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            pct(&lat, 0.50).as_secs_f64() * 1e3,
            pct(&lat, 0.99).as_secs_f64() * 1e3,
            lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3
        );
        println!(
            "  memory: engine VmRSS {} KiB with agents only, {} KiB with {sessions} sessions: {:.1} KiB per session",
            rss_before, rss_sessions, per_session
        );
        assert_eq!(lat.len(), sessions * messages, "every message came back");
    });
}
