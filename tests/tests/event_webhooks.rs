//! Signed event webhooks: a small HTTP receiver in the test gets every `call.*` and
//! `registration.*` event of SIPp calls through the engine, checks each
//! `X-Switchboard-Signature` (HMAC-SHA256 over `t.body`), refuses the first delivery with a 500
//! and sees it retried, then sees the rest in sequence order.

use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use switchboard_tests::{sipp_uac, Engine, SippUas};

const SECRET: &str = "whsec_test_secret";
const CALLS: u32 = 20;

/// One request the receiver got.
struct Delivery {
    signature: String,
    body: String,
}

/// Checks `t=<unix>,v1=<hex>` against the body, as a receiver should (constant-time compare
/// through `verify_slice`, timestamp within 5 minutes).
fn verify(header: &str, body: &str) -> Result<(), String> {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = v.parse::<u64>().ok(),
            Some(("v1", v)) => v1 = hex::decode(v).ok(),
            _ => {}
        }
    }
    let (t, v1) = t.zip(v1).ok_or("malformed header")?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    if now.abs_diff(t) > 300 {
        return Err("timestamp too old".into());
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key length");
    mac.update(format!("{t}.{body}").as_bytes());
    mac.verify_slice(&v1)
        .map_err(|_| "signature mismatch".to_string())
}

/// Serves keep-alive HTTP/1.1 on `conn`: answers the very first request of the test 500, the
/// rest 200, and hands each request to `tx`.
fn serve(conn: TcpStream, tx: mpsc::Sender<Delivery>, first: &std::sync::atomic::AtomicBool) {
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    let mut out = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut len = 0usize;
        let mut signature = String::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((name, value)) = h.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    len = value.parse().unwrap_or(0);
                } else if name.eq_ignore_ascii_case("x-switchboard-signature") {
                    signature = value.to_string();
                }
            }
        }
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let refuse = first.swap(false, std::sync::atomic::Ordering::SeqCst);
        let status = if refuse {
            "500 Internal Server Error"
        } else {
            "200 OK"
        };
        let _ = tx.send(Delivery {
            signature,
            body: String::from_utf8(body).expect("UTF-8 body"),
        });
        if write!(out, "HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").is_err() {
            return;
        }
    }
}

#[test]
fn webhook_deliveries_are_signed_ordered_and_retried() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind receiver");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let first: &'static std::sync::atomic::AtomicBool =
            Box::leak(Box::new(std::sync::atomic::AtomicBool::new(true)));
        for conn in listener.incoming().flatten() {
            let tx = tx.clone();
            std::thread::spawn(move || serve(conn, tx, first));
        }
    });
    let engine = Engine::start(&format!(
        "[calls]\ntrusted_sources = [\"127.0.0.1\"]\n\
         [[events.webhooks]]\nurl = \"http://127.0.0.1:{port}/hook\"\nsecret = \"{SECRET}\"\n\
         types = [\"call.*\", \"registration.*\"]\n"
    ));
    engine.add_user("uas", "uas-secret");
    let uas = SippUas::start(CALLS);
    assert_eq!(uas.register(&engine, "uas", "uas-secret"), 200);
    let status = sipp_uac(&engine, "uas", CALLS, 10, 10, 100)
        .wait()
        .expect("sipp uac");
    assert!(status.success(), "SIPp reported failed calls");
    drop(uas);

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut bodies: Vec<Value> = Vec::new();
    let mut raw: Vec<String> = Vec::new();
    let mut ended = 0;
    while ended < CALLS {
        let left = deadline.saturating_duration_since(Instant::now());
        let d = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("timed out with {ended} of {CALLS} call.ended delivered"));
        verify(&d.signature, &d.body).unwrap_or_else(|e| panic!("{e}: {}", d.signature));
        let v: Value = serde_json::from_str(&d.body).expect("JSON body");
        if v["type"] == "call.ended" {
            ended += 1;
        }
        raw.push(d.body);
        bodies.push(v);
    }
    // The refused first delivery came again, unchanged, before anything else.
    assert!(raw.len() >= 2);
    assert_eq!(raw[0], raw[1], "the refused delivery is retried first");
    assert_eq!(bodies[0]["type"], "registration.created");
    // After the retry: strictly increasing sequence numbers, only the types asked for.
    let seqs: Vec<u64> = bodies[1..]
        .iter()
        .map(|b| b["seq"].as_u64().expect("seq"))
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order: {seqs:?}");
    let count = |t: &str| bodies[1..].iter().filter(|b| b["type"] == t).count() as u32;
    for t in [
        "call.created",
        "call.ringing",
        "call.answered",
        "call.ended",
    ] {
        assert_eq!(count(t), CALLS, "{t}");
    }
    assert!(bodies.iter().all(|b| {
        let t = b["type"].as_str().unwrap_or("");
        t.starts_with("call.") || t.starts_with("registration.")
    }));
}
