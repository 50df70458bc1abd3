//! Web chat and the API channel end to end, over real WebSockets and HTTP against the release
//! binary:
//!
//! * `chat_round_trip_typing_receipts_and_csat`: a customer WebSocket starts a chat, it is
//!   routed (channel chat) to an agent's desktop WebSocket, accepted, messages both ways
//!   (desktop and REST), typing, delivery and read receipts, the agent ends it, the customer
//!   rates it; the stored transcript has it all.
//! * `resume_gets_missed_messages`: the customer's socket drops, the agent writes, the customer
//!   reconnects with its token and `since` and gets exactly what it missed, in order; a bad
//!   token is refused.
//! * `attachment_limits`: 413 / 415 / 401 JSON errors, an upload referenced in a message, the
//!   download by both sides.
//! * `api_channel_round_trip_with_signatures`: signed inbound messages (bad, missing, stale
//!   signatures → 401), routing to an agent, agent replies as signed outbound webhooks verified
//!   by a local HTTP receiver that fails the first delivery (retried).
//! * `chat_session_panic_is_contained`: an injected panic in one chat session ends that chat
//!   (by `system`, via the session's drop guard) and leaves another chat working.

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use switchboard_tests::{api, api_get, http_json, Engine};
use tungstenite::{Message, WebSocket};

/// Longest wait for any expected frame.
const GUARD: Duration = Duration::from_secs(20);

struct Ws {
    ws: WebSocket<TcpStream>,
    /// Frames read while looking for another kind.
    backlog: Vec<Value>,
}

impl Ws {
    fn connect(addr: SocketAddr, path: &str) -> Ws {
        let stream = TcpStream::connect(addr).expect("tcp");
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let (ws, _) = tungstenite::client(format!("ws://{addr}{path}"), stream).expect("handshake");
        Ws {
            ws,
            backlog: Vec::new(),
        }
    }

    fn send(&mut self, v: Value) {
        self.ws.send(Message::text(v.to_string())).expect("send");
    }

    /// The next frame of type `kind` (others are kept for later).
    fn next(&mut self, kind: &str) -> Value {
        self.next_where(kind, |_| true)
    }

    /// The next frame of type `kind` that `pred` accepts.
    fn next_where(&mut self, kind: &str, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self
            .backlog
            .iter()
            .position(|f| f["type"] == kind && pred(f))
        {
            return self.backlog.remove(i);
        }
        let deadline = Instant::now() + GUARD;
        loop {
            assert!(
                Instant::now() < deadline,
                "no `{kind}` frame; backlog: {:?}",
                self.backlog
            );
            match self.ws.read() {
                Ok(Message::Text(t)) => {
                    let v: Value = serde_json::from_str(t.as_str()).expect("JSON frame");
                    if v["type"] == kind && pred(&v) {
                        return v;
                    }
                    self.backlog.push(v);
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!(
                    "socket closed waiting for `{kind}`: {e}; {:?}",
                    self.backlog
                ),
            }
        }
    }

    fn close(mut self) {
        let _ = self.ws.close(None);
        let _ = self.ws.flush();
    }
}

/// An engine with queue `web` (chat) and `msg` (messaging) served by agent `ann`.
fn engine(extra: &str) -> Engine {
    let e = Engine::start(&format!("[contact_centre]\nconfig_file = \"\"\n{extra}"));
    api(&e, "POST", "/api/v1/queues", Some(json!({"name": "web"})));
    api(&e, "POST", "/api/v1/queues", Some(json!({"name": "msg"})));
    api(
        &e,
        "POST",
        "/api/v1/agents",
        Some(
            json!({"name": "ann", "capacity": {"chat": 3, "messaging": 3},
                    "queues": [{"queue": "web"}, {"queue": "msg"}]}),
        ),
    );
    e
}

/// Ann's desktop, logged in.
fn desktop(e: &Engine) -> Ws {
    let mut d = Ws::connect(e.http_addr(), "/api/v1/agents/ann/ws");
    d.next("hello");
    d.send(json!({"type": "state", "state": "available"}));
    d.next_where("ack", |f| f["command"] == "state");
    d
}

/// A customer socket with a started chat: (socket, chat id, token).
fn customer(e: &Engine, name: &str) -> (Ws, String, String) {
    let mut c = Ws::connect(e.http_addr(), "/chat/ws");
    c.send(
        json!({"type": "start", "name": name, "email": "ann@example.com",
                  "queue": "web", "visitor_id": format!("v-{name}")}),
    );
    let s = c.next("started");
    let chat = s["chat"].as_str().expect("chat id").to_string();
    let token = s["token"].as_str().expect("token").to_string();
    (c, chat, token)
}

/// The agent accepts the next offer; returns (interaction, chat_history frame).
fn accept(d: &mut Ws) -> (u64, Value) {
    let offer = d.next("offer");
    d.send(json!({"type": "accept", "reservation": offer["reservation"]}));
    let h = d.next("chat_history");
    (offer["interaction"].as_u64().expect("interaction"), h)
}

#[test]
fn chat_round_trip_typing_receipts_and_csat() {
    let e = engine("");
    let mut d = desktop(&e);
    let (mut c, chat, _token) = customer(&e, "Bob");
    // Bad input: errors naming the field, the socket stays open.
    c.send(json!({"type": "message", "text": ""}));
    assert_eq!(c.next("error")["field"], "text");
    c.send(json!({"type": "csat", "score": 3}));
    assert_eq!(c.next("error")["field"], "score");
    c.send(json!({"type": "message", "text": "hello, I need help", "cid": 1}));
    let ack = c.next_where("ack", |f| f["command"] == "message");
    assert_eq!(
        (ack["seq"].as_i64(), ack["cid"].as_i64()),
        (Some(1), Some(1))
    );

    let (interaction, history) = accept(&mut d);
    assert_eq!(history["chat"], chat.as_str());
    assert_eq!(history["messages"][0]["text"], "hello, I need help");
    assert_eq!(history["customer"]["name"], "Bob");
    assert_eq!(c.next("agent_joined")["agent"], "ann");
    let joined = c.next_where("message", |f| f["from"] == "system");
    assert_eq!(joined["seq"], 2);

    d.send(json!({"type": "chat_typing", "chat": chat, "typing": true}));
    assert_eq!(c.next("typing")["typing"], true);
    c.send(json!({"type": "typing", "typing": true}));
    assert_eq!(d.next("chat_typing")["typing"], true);

    d.send(json!({"type": "chat_message", "chat": chat, "text": "Hi Bob, Ann here"}));
    let ack = d.next_where("ack", |f| f["command"] == "chat_message");
    assert_eq!(ack["result"]["seq"], 3);
    let m = c.next_where("message", |f| f["from"] == "agent");
    assert_eq!(
        (m["seq"].as_i64(), m["author"].as_str()),
        (Some(3), Some("ann"))
    );
    assert_eq!(m["text"], "Hi Bob, Ann here");

    // Receipts both ways.
    c.send(json!({"type": "delivered", "seq": 3}));
    let r = d.next("chat_receipt");
    assert_eq!(
        (r["seq"].as_i64(), r["status"].as_str()),
        (Some(3), Some("delivered"))
    );
    c.send(json!({"type": "read", "seq": 3}));
    assert_eq!(d.next("chat_receipt")["status"], "read");
    d.send(json!({"type": "chat_read", "chat": chat, "seq": 1}));
    let r = c.next("receipt");
    assert_eq!(
        (r["seq"].as_i64(), r["status"].as_str()),
        (Some(1), Some("read"))
    );

    // The agent-side REST reply; another agent may not write.
    let (st, body) = http_json(
        e.http_addr(),
        "POST",
        &format!("/api/v1/chats/{chat}/messages"),
        Some(&json!({"agent": "ann", "text": "sent over REST"})),
    )
    .expect("answer");
    assert_eq!(st, 201, "{body}");
    assert_eq!(
        c.next_where("message", |f| f["seq"] == 4)["text"],
        "sent over REST"
    );
    let (st, body) = http_json(
        e.http_addr(),
        "POST",
        &format!("/api/v1/chats/{chat}/messages"),
        Some(&json!({"agent": "zed", "text": "hi"})),
    )
    .expect("answer");
    assert_eq!(st, 403, "{body}");
    let err: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(err["field"], "chat");

    // The agent ends the chat; the customer rates it.
    d.send(json!({"type": "end", "interaction": interaction}));
    let ended = c.next("ended");
    assert_eq!(ended["by"], "agent");
    assert_eq!(d.next("chat_ended")["by"], "agent");
    c.send(json!({"type": "message", "text": "still there?"}));
    assert_eq!(c.next("error")["status"], 409);
    c.send(json!({"type": "csat", "score": 9}));
    assert_eq!(c.next("error")["field"], "score");
    c.send(json!({"type": "csat", "score": 4}));
    assert_eq!(c.next_where("ack", |f| f["command"] == "csat")["score"], 4);
    assert_eq!(d.next("chat_csat")["score"], 4);

    let v = api_get(&e, &format!("/api/v1/chats/{chat}"));
    assert_eq!(v["state"], "ended");
    assert_eq!(v["ended_by"], "agent");
    assert_eq!(v["csat"], 4);
    assert_eq!(v["agent"], "ann");
    assert_eq!(v["interaction"].as_u64(), Some(interaction));
    assert_eq!(v["external_user_id"], "v-Bob");
    let seqs: Vec<i64> = v["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["seq"].as_i64())
        .collect();
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>());
    assert!(seqs.len() >= 5, "{v}");
    assert!(v["messages"][2]["read_at"].is_i64(), "{v}");
    assert!(v["messages"][0]["read_at"].is_i64(), "{v}");
    let (st, _) = switchboard_tests::http_get(e.http_addr(), "/api/v1/chats/nope").expect("answer");
    assert_eq!(st, 404, "unknown chat");
    c.close();
    d.close();
}

#[test]
fn resume_gets_missed_messages() {
    let e = engine("");
    let mut d = desktop(&e);
    let (mut c, chat, token) = customer(&e, "Cat");
    accept(&mut d);
    c.next("agent_joined");
    let joined = c.next_where("message", |f| f["from"] == "system");
    let seen = joined["seq"].as_i64().expect("seq");
    c.close();
    // While the customer is away the agent writes three messages.
    for i in 0..3 {
        d.send(json!({"type": "chat_message", "chat": chat, "text": format!("missed {i}")}));
        d.next_where("ack", |f| f["command"] == "chat_message");
    }
    let mut c = Ws::connect(
        e.http_addr(),
        &format!("/chat/ws?resume={token}&since={seen}"),
    );
    let r = c.next("resumed");
    assert_eq!(r["chat"], chat.as_str());
    assert_eq!(r["state"], "active");
    assert_eq!(r["agent"], "ann");
    let got: Vec<(i64, String)> = (0..3)
        .map(|_| {
            let m = c.next("message");
            (
                m["seq"].as_i64().expect("seq"),
                m["text"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (seen + 1, "missed 0".to_string()),
            (seen + 2, "missed 1".to_string()),
            (seen + 3, "missed 2".to_string())
        ]
    );
    // The resumed socket is the chat's: messages flow again.
    c.send(json!({"type": "message", "text": "back again"}));
    assert_eq!(
        c.next_where("ack", |f| f["command"] == "message")["seq"].as_i64(),
        Some(seen + 4)
    );
    assert_eq!(
        d.next_where("chat_message", |f| f["from"] == "customer")["text"],
        "back again"
    );
    // Resuming from 0 replays everything from the start.
    let mut again = Ws::connect(e.http_addr(), &format!("/chat/ws?resume={token}&since=0"));
    again.next("resumed");
    assert_eq!(again.next("message")["seq"], 1);
    // The older socket was replaced.
    assert!(c.next("error")["error"]
        .as_str()
        .unwrap_or("")
        .contains("elsewhere"));
    // A bad token is refused.
    let mut bad = Ws::connect(e.http_addr(), "/chat/ws?resume=0000&since=0");
    let err = bad.next("error");
    assert_eq!(
        (err["status"].as_u64(), err["field"].as_str()),
        (Some(401), Some("resume"))
    );
    again.close();
    d.close();
}

/// A raw HTTP request: (status, body bytes).
fn http_raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    ctype: &str,
    body: &[u8],
) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: {ctype}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).expect("head");
    // The server may answer 413 before reading the body.
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("headers");
    let head = String::from_utf8_lossy(&out[..split]);
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (status, out[split + 4..].to_vec())
}

#[test]
fn attachment_limits() {
    let e = engine(
        "[chat]\nmax_attachment_bytes = 1024\nattachment_types = [\"image/png\", \"text/plain\"]\n",
    );
    let mut d = desktop(&e);
    let (mut c, chat, token) = customer(&e, "Dan");
    accept(&mut d);
    let up = |ctype: &str, body: &[u8], token: &str| {
        http_raw(
            e.http_addr(),
            "POST",
            &format!("/chat/{chat}/attachments?token={token}&name=receipt%20photo.png"),
            ctype,
            body,
        )
    };
    let json_of = |b: &[u8]| -> Value { serde_json::from_slice(b).expect("JSON error") };
    let (st, b) = up("image/png", &[7u8; 2000], &token);
    assert_eq!(st, 413);
    assert!(json_of(&b)["error"].as_str().unwrap_or("").contains("1024"));
    let (st, b) = up("application/x-msdownload", b"MZ", &token);
    assert_eq!(st, 415);
    assert_eq!(json_of(&b)["field"], "Content-Type");
    let (st, _) = up("image/png", b"png", "wrong-token");
    assert_eq!(st, 401);
    let png: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
    let (st, b) = up("image/png; charset=binary", &png, &token);
    assert_eq!(st, 201, "{}", String::from_utf8_lossy(&b));
    let meta = json_of(&b);
    assert_eq!(meta["name"], "receipt_photo.png");
    assert_eq!(
        (meta["size"].as_u64(), meta["mime"].as_str()),
        (Some(1000), Some("image/png"))
    );
    // Referenced in a message: the agent gets it.
    c.send(json!({"type": "message", "text": "my receipt", "attachment": meta["id"]}));
    c.next_where("ack", |f| f["command"] == "message");
    let m = d.next_where("chat_message", |f| f["from"] == "customer");
    assert_eq!(m["attachment"]["id"], meta["id"]);
    c.send(json!({"type": "message", "text": "x", "attachment": "nope"}));
    assert_eq!(c.next("error")["field"], "attachment");
    // Both sides download the bytes.
    let url = meta["url"].as_str().expect("url");
    let (st, bytes) = http_raw(
        e.http_addr(),
        "GET",
        &format!("{url}?token={token}"),
        "text/plain",
        b"",
    );
    assert_eq!((st, bytes.len()), (200, 1000));
    assert_eq!(bytes, png);
    let (st, _) = http_raw(
        e.http_addr(),
        "GET",
        &format!("{url}?token=bad"),
        "text/plain",
        b"",
    );
    assert_eq!(st, 401);
    let agent_url = meta["agent_url"].as_str().expect("agent url");
    let (st, bytes) = http_raw(e.http_addr(), "GET", agent_url, "text/plain", b"");
    assert_eq!((st, bytes), (200, png));
    c.close();
    d.close();
}

const SECRET: &str = "tg-relay-secret-0123456789";

fn sign(t: i64, body: &[u8]) -> String {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()).expect("key");
    m.update(format!("{t}.").as_bytes());
    m.update(body);
    format!("t={t},v1={}", hex::encode(m.finalize().into_bytes()))
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// POSTs `body` to the API channel with the given signature header (none if `None`).
fn inbound(e: &Engine, body: &Value, sig: Option<String>) -> (u16, Value) {
    let text = body.to_string();
    let mut s = TcpStream::connect(e.http_addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let sig = sig
        .map(|v| format!("X-Switchboard-Signature: {v}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "POST /api/v1/channels/tg/messages HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Content-Type: application/json\r\n{sig}Content-Length: {}\r\n\r\n{text}",
        text.len()
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let body = out.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// A webhook receiver: answers 503 to the first request, 200 to the others; sends each
/// (signature header, body) it gets.
fn receiver() -> (u16, mpsc::Receiver<(String, Vec<u8>)>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for (n, conn) in l.incoming().enumerate() {
            let Ok(mut s) = conn else { continue };
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let (head, body) = loop {
                let Ok(k) = s.read(&mut chunk) else {
                    break (String::new(), Vec::new());
                };
                if k == 0 {
                    break (String::new(), Vec::new());
                }
                buf.extend_from_slice(&chunk[..k]);
                if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..p]).to_string();
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse().ok())?
                        })
                        .unwrap_or(0);
                    let mut body = buf[p + 4..].to_vec();
                    while body.len() < len {
                        match s.read(&mut chunk) {
                            Ok(0) | Err(_) => break,
                            Ok(k) => body.extend_from_slice(&chunk[..k]),
                        }
                    }
                    break (head, body);
                }
            };
            let sig = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("x-switchboard-signature")
                        .then(|| v.trim().to_string())
                })
                .unwrap_or_default();
            let status = if n == 0 {
                "503 Service Unavailable"
            } else {
                "200 OK"
            };
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            if n > 0 && tx.send((sig, body)).is_err() {
                break;
            }
        }
    });
    (port, rx)
}

/// Checks an outbound webhook's signature the way an adapter would.
fn verified(sig: &str, body: &[u8]) -> bool {
    let t: i64 = sig
        .split(',')
        .find_map(|p| p.strip_prefix("t="))
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    (now_secs() - t).abs() <= 300 && sign(t, body) == sig
}

#[test]
fn api_channel_round_trip_with_signatures() {
    let (port, hooks) = receiver();
    let e = engine(&format!(
        "[channels.tg]\nsecret = \"{SECRET}\"\nwebhook_url = \"http://127.0.0.1:{port}/hook\"\nqueue = \"msg\"\n"
    ));
    let mut d = desktop(&e);
    let msg = json!({"channel": "tg", "external_user_id": "tg-42", "text": "Where is my order?",
                     "name": "Eve", "attachments": [{"url": "https://files.example/1.jpg",
                     "name": "photo.jpg", "mime": "image/jpeg"}]});
    let body = msg.to_string();
    // Refused: no signature, wrong signature, stale timestamp, another secret.
    let (st, v) = inbound(&e, &msg, None);
    assert_eq!(st, 401, "{v}");
    assert_eq!(v["field"], "X-Switchboard-Signature");
    let (st, _) = inbound(
        &e,
        &msg,
        Some(format!("t={},v1={}", now_secs(), "00".repeat(32))),
    );
    assert_eq!(st, 401);
    let (st, v) = inbound(&e, &msg, Some(sign(now_secs() - 3600, body.as_bytes())));
    assert_eq!(st, 401);
    assert!(
        v["error"].as_str().unwrap_or("").contains("tolerance"),
        "{v}"
    );
    let (st, _) = inbound(&e, &msg, Some("t=abc".into()));
    assert_eq!(st, 401);
    // Accepted.
    let (st, v) = inbound(&e, &msg, Some(sign(now_secs(), body.as_bytes())));
    assert_eq!(st, 202, "{v}");
    assert_eq!(v["created"], true);
    let chat = v["chat"].as_str().expect("chat").to_string();
    assert_eq!(v["seqs"], json!([1, 2]));

    let offer = d.next("offer");
    assert_eq!(offer["channel"], "messaging");
    assert_eq!(offer["attributes"]["source"], "tg");
    d.send(json!({"type": "accept", "reservation": offer["reservation"]}));
    let h = d.next("chat_history");
    assert_eq!(h["messages"][0]["text"], "Where is my order?");
    assert_eq!(
        h["messages"][1]["attachment"]["url"],
        "https://files.example/1.jpg"
    );
    let interaction = offer["interaction"].as_u64().expect("interaction");

    // A second message of the same user continues the conversation.
    let msg2 = json!({"external_user_id": "tg-42", "text": "Order 1234"});
    let b2 = msg2.to_string();
    let (st, v) = inbound(&e, &msg2, Some(sign(now_secs(), b2.as_bytes())));
    assert_eq!(st, 202, "{v}");
    assert_eq!(
        (v["chat"].as_str(), v["created"].as_bool()),
        (Some(chat.as_str()), Some(false))
    );
    assert_eq!(
        d.next_where("chat_message", |f| f["from"] == "customer")["text"],
        "Order 1234"
    );
    // Bad input names the field.
    let bad = json!({"external_user_id": "", "text": "x"});
    let (st, v) = inbound(&e, &bad, Some(sign(now_secs(), bad.to_string().as_bytes())));
    assert_eq!((st, v["field"].as_str()), (400, Some("external_user_id")));

    // The agent's reply goes out signed; the first delivery fails and is retried.
    d.send(json!({"type": "chat_message", "chat": chat, "text": "It ships today"}));
    d.next_where("ack", |f| f["command"] == "chat_message");
    let (sig, body) = hooks.recv_timeout(GUARD).expect("webhook");
    assert!(
        verified(&sig, &body),
        "signature {sig} over {}",
        String::from_utf8_lossy(&body)
    );
    let hook: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(hook["type"], "message");
    assert_eq!(hook["text"], "It ships today");
    assert_eq!(hook["external_user_id"], "tg-42");
    assert_eq!(hook["channel"], "tg");
    assert_eq!(hook["agent"], "ann");
    // The agent ends: the adapter hears it; the next message starts a new conversation.
    d.send(json!({"type": "end", "interaction": interaction}));
    let (sig, body) = hooks.recv_timeout(GUARD).expect("end webhook");
    assert!(verified(&sig, &body));
    assert_eq!(
        serde_json::from_slice::<Value>(&body).expect("JSON")["type"],
        "ended"
    );
    let (st, v) = inbound(&e, &msg2, Some(sign(now_secs(), b2.as_bytes())));
    assert_eq!(st, 202, "{v}");
    assert_eq!(v["created"], true);
    assert_ne!(v["chat"].as_str(), Some(chat.as_str()));
    // Both conversations of (tg, tg-42) are on one CRM contact (identity `ext:tg`), as
    // interactions of channel `api` whose text holds the messages.
    let second = v["chat"].as_str().expect("chat").to_string();
    let contact = wait_linked(&e, &chat);
    assert_eq!(wait_linked(&e, &second), contact);
    let found = api_get(&e, "/api/v1/contacts?identity=ext:tg:tg-42");
    assert_eq!(found["contacts"][0]["id"], contact, "{found}");
    let tl = api_get(&e, &format!("/api/v1/contacts/{contact}/timeline"));
    let convs: Vec<&Value> = tl["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|i| i["channel"] == "api")
        .collect();
    assert_eq!(convs.len(), 2, "{tl}");
    assert!(
        convs[0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("Where is my order?") && t.contains("It ships today")),
        "{tl}"
    );
    d.close();
}

/// The CRM contact chat `chat` was linked to (waits for the background link).
fn wait_linked(e: &Engine, chat: &str) -> i64 {
    let deadline = Instant::now() + GUARD;
    loop {
        let c = api_get(e, &format!("/api/v1/chats/{chat}"));
        if let Some(id) = c["contact_id"].as_i64() {
            return id;
        }
        assert!(Instant::now() < deadline, "chat {chat} never linked: {c}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn chat_session_panic_is_contained() {
    let e = engine("[calls]\ndebug_panic_injection = true\n");
    let mut d = desktop(&e);
    let (mut doomed, doomed_id, _) = customer(&e, "Fay");
    let (i1, _) = accept(&mut d);
    let (mut ok, ok_id, _) = customer(&e, "Gus");
    accept(&mut d);
    doomed.send(json!({"type": "debug_panic"}));
    let ended = doomed.next("ended");
    assert_eq!(ended["by"], "system");
    let gone = d.next_where("chat_ended", |f| f["chat"] == doomed_id.as_str());
    assert_eq!(gone["by"], "system");
    // The agent's interaction with the dead chat is over (wrap-up): the router was told.
    let deadline = Instant::now() + GUARD;
    loop {
        let v = api_get(&e, &format!("/api/v1/interactions/{i1}"));
        if v.get("state").is_none_or(|s| s != "assigned") {
            break;
        }
        assert!(Instant::now() < deadline, "interaction still assigned: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The other chat is untouched.
    ok.send(json!({"type": "message", "text": "still fine?"}));
    ok.next_where("ack", |f| f["command"] == "message");
    d.send(json!({"type": "chat_message", "chat": ok_id, "text": "yes"}));
    assert_eq!(
        ok.next_where("message", |f| f["from"] == "agent")["text"],
        "yes"
    );
    let v = api_get(&e, &format!("/api/v1/chats/{doomed_id}"));
    assert_eq!(
        (v["state"].as_str(), v["ended_by"].as_str()),
        (Some("ended"), Some("system"))
    );
    // Without panic injection the command is refused (see the other tests' engines).
    assert!(e.log().contains("chat session died"));
    ok.close();
    d.close();
}
