//! The event stream under a SIPp flood: SIPp uac → switchboard → SIPp uas at 300 calls per
//! second, with WebSocket consumers on `/api/v1/events`.
//!
//! * `reconnect_mid_flood_misses_nothing`: a consumer disconnects in the middle of the flood and
//!   reconnects with its last sequence number; across both connections it sees every sequence
//!   number once, in order, and one `call.created`/`ringing`/`answered`/`ended` per call made.
//! * `slow_consumer_is_cut_others_are_not`: a consumer that never reads is closed with 4008 and
//!   a reason naming where to resume; a reading consumer in the same flood gets everything, and
//!   the cut one, resuming where the reason says, gets the rest.
//!
//! Bounded: every read has a deadline; SIPp runs under `timeout`. No timing assertions.

use serde_json::Value;
use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use switchboard_tests::{http_get, sipp_uac, Engine, SippUas};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::Message;

const TRUSTED: &str = "[calls]\ntrusted_sources = [\"127.0.0.1\"]\n";
const CPS: u32 = 300;

/// What a consumer read.
enum Frame {
    Event(Value),
    Closed(u16, String),
}

/// A WebSocket consumer of `/api/v1/events`.
struct Consumer {
    ws: tungstenite::WebSocket<TcpStream>,
}

impl Consumer {
    /// Connects with `query` (`since=…&types=…`); `rcvbuf` shrinks the socket's receive
    /// buffer (a consumer that does not read then backs up quickly).
    fn connect(http: SocketAddr, query: &str, rcvbuf: Option<usize>) -> Consumer {
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        if let Some(n) = rcvbuf {
            sock.set_recv_buffer_size(n).expect("SO_RCVBUF");
        }
        sock.connect_timeout(&http.into(), Duration::from_secs(5))
            .expect("connect");
        let tcp: TcpStream = sock.into();
        tcp.set_read_timeout(Some(Duration::from_millis(500)))
            .expect("read timeout");
        let url = format!("ws://{http}/api/v1/events?{query}");
        let (ws, _) = tungstenite::client(url.as_str(), tcp).expect("WebSocket upgrade");
        Consumer { ws }
    }

    /// The next frame, or `None` at `deadline`.
    fn next(&mut self, deadline: Instant) -> Option<Frame> {
        while Instant::now() < deadline {
            match self.ws.read() {
                Ok(Message::Text(t)) => {
                    return Some(Frame::Event(
                        serde_json::from_str(t.as_str()).expect("JSON"),
                    ))
                }
                Ok(Message::Close(c)) => {
                    return Some(match c {
                        Some(c) => Frame::Closed(u16::from(c.code), c.reason.to_string()),
                        None => Frame::Closed(u16::from(CloseCode::Status), String::new()),
                    })
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("WebSocket read: {e}"),
            }
        }
        None
    }
}

/// Everything consumers saw, checked as one stream.
#[derive(Default)]
struct Seen {
    seqs: Vec<u64>,
    by_type: HashMap<String, u64>,
    /// Per call: the order of its event types.
    calls: HashMap<String, Vec<String>>,
}

impl Seen {
    fn add(&mut self, e: &Value) {
        let seq = e["seq"].as_u64().expect("seq");
        assert!(e["at"].as_i64().is_some(), "at: {e}");
        let kind = e["type"].as_str().expect("type").to_string();
        if let Some(id) = e["data"]["call_id"].as_str() {
            self.calls
                .entry(id.to_string())
                .or_default()
                .push(kind.clone());
        }
        *self.by_type.entry(kind).or_default() += 1;
        self.seqs.push(seq);
    }

    fn count(&self, kind: &str) -> u64 {
        self.by_type.get(kind).copied().unwrap_or(0)
    }

    fn last(&self) -> u64 {
        self.seqs.last().copied().unwrap_or(0)
    }

    /// Sequence numbers are 1, 2, 3, … with no gap and no duplicate; each call's events come
    /// in call order.
    fn check(&self, calls: u64) {
        for (i, s) in self.seqs.iter().enumerate() {
            assert_eq!(*s, i as u64 + 1, "sequence broken at index {i}");
        }
        for kind in [
            "call.created",
            "call.ringing",
            "call.answered",
            "call.ended",
        ] {
            assert_eq!(self.count(kind), calls, "{kind}: {:?}", self.by_type);
        }
        assert_eq!(self.calls.len() as u64, calls);
        for (id, kinds) in &self.calls {
            assert_eq!(
                kinds,
                &[
                    "call.created",
                    "call.ringing",
                    "call.answered",
                    "call.ended"
                ],
                "call {id}"
            );
        }
    }
}

/// An engine with a SIPp uas registered as `uas`, ready for `calls` calls.
fn setup(calls: u32, extra: &str) -> (Engine, SippUas) {
    let engine = Engine::start(&format!("{TRUSTED}{extra}"));
    engine.add_user("uas", "uas-secret");
    let uas = SippUas::start(calls);
    assert_eq!(uas.register(&engine, "uas", "uas-secret"), 200);
    (engine, uas)
}

/// Reads `c` into `seen` until `calls` calls have ended; panics on a close or at `deadline`.
fn read_until_ended(c: &mut Consumer, seen: &mut Seen, calls: u64, deadline: Instant) {
    while seen.count("call.ended") < calls {
        match c.next(deadline) {
            Some(Frame::Event(e)) => seen.add(&e),
            Some(Frame::Closed(code, why)) => panic!("closed {code} {why:?}"),
            None => panic!(
                "timed out with {} of {calls} calls ended: {:?}",
                seen.count("call.ended"),
                seen.by_type
            ),
        }
    }
}

fn json_page(engine: &Engine, query: &str) -> Value {
    let (status, body) =
        http_get(engine.http_addr(), &format!("/api/v1/events?{query}")).expect("answer");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("JSON page")
}

#[test]
fn reconnect_mid_flood_misses_nothing() {
    const CALLS: u32 = 3_000;
    let (engine, uas) = setup(CALLS, "");
    let deadline = Instant::now() + Duration::from_secs(150);
    let mut seen = Seen::default();
    // The registration happened before anyone listened: start from 0 and replay it.
    let mut first = Consumer::connect(engine.http_addr(), "since=0", None);
    let mut uac = sipp_uac(&engine, "uas", CALLS, CPS, 600, 100);
    // Read a third of the flood, then drop the connection mid-flood.
    while seen.count("call.created") < u64::from(CALLS / 3) {
        match first.next(deadline) {
            Some(Frame::Event(e)) => seen.add(&e),
            Some(Frame::Closed(code, why)) => panic!("closed {code} {why:?}"),
            None => panic!("timed out before a third of the flood: {:?}", seen.by_type),
        }
    }
    drop(first);
    assert!(
        uac.try_wait().expect("sipp").is_none(),
        "the flood is still running when the consumer leaves"
    );
    std::thread::sleep(Duration::from_secs(2));
    // Events happened while it was away.
    let missed = json_page(&engine, &format!("since={}&limit=10", seen.last()));
    assert!(
        !missed["events"].as_array().expect("events").is_empty(),
        "events were published while the consumer was away"
    );
    let mut second = Consumer::connect(engine.http_addr(), &format!("since={}", seen.last()), None);
    read_until_ended(&mut second, &mut seen, u64::from(CALLS), deadline);
    let status = uac.wait().expect("sipp uac");
    drop(uas);
    assert!(status.success(), "SIPp reported failed calls");
    assert_eq!(seen.count("registration.created"), 1, "{:?}", seen.by_type);
    seen.check(u64::from(CALLS));
    // Polling sees the same stream: the first page starts at 1.
    let page = json_page(&engine, "since=0&limit=5&types=call.*");
    let events = page["events"].as_array().expect("events");
    assert_eq!(events.len(), 5);
    assert!(events
        .iter()
        .all(|e| e["type"].as_str().is_some_and(|t| t.starts_with("call."))));
}

#[test]
fn slow_consumer_is_cut_others_are_not() {
    const CALLS: u32 = 1_500;
    let (engine, uas) = setup(CALLS, "[events]\nconsumer_buffer = 256\n");
    let deadline = Instant::now() + Duration::from_secs(150);
    let head = json_page(&engine, "since=0&limit=1000")["next_since"]
        .as_u64()
        .expect("next_since");
    // The slow one connects and never reads (tiny receive buffer).
    let mut slow = Consumer::connect(engine.http_addr(), &format!("since={head}"), Some(4096));
    let http = engine.http_addr();
    let reader = std::thread::spawn(move || {
        let mut seen = Seen::default();
        let mut c = Consumer::connect(http, &format!("since={head}"), None);
        read_until_ended(&mut c, &mut seen, u64::from(CALLS), deadline);
        seen
    });
    let uac = sipp_uac(&engine, "uas", CALLS, CPS, 600, 100);
    // Wait until the bus has cut someone off.
    loop {
        let (_, metrics) = http_get(engine.http_addr(), "/metrics").expect("metrics");
        let cut = metrics
            .lines()
            .find_map(|l| l.strip_prefix("events_consumers_cut_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        if cut >= 1.0 {
            break;
        }
        assert!(Instant::now() < deadline, "no consumer was cut off");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Now it reads: what it was sent, in order, then the close with the reason.
    let mut seen = Seen::default();
    seen.seqs.push(head); // consecutive from the head on
    let resume = loop {
        match slow.next(deadline) {
            Some(Frame::Event(e)) => seen.add(&e),
            Some(Frame::Closed(code, why)) => {
                assert_eq!(code, 4008, "close code ({why})");
                let since = why
                    .strip_prefix("consumer too slow: reconnect with since=")
                    .unwrap_or_else(|| panic!("close reason {why:?}"));
                break since.parse::<u64>().expect("since is a number");
            }
            None => panic!("the slow consumer was never closed"),
        }
    };
    assert_eq!(resume, seen.last(), "the reason names the last event sent");
    // It resumes where the reason says and gets the rest.
    let mut again = Consumer::connect(engine.http_addr(), &format!("since={resume}"), None);
    read_until_ended(&mut again, &mut seen, u64::from(CALLS), deadline);
    let status = { uac }.wait().expect("sipp uac");
    drop(uas);
    assert!(status.success(), "SIPp reported failed calls");
    seen.seqs.remove(0);
    let shifted: Vec<u64> = seen.seqs.iter().map(|s| s - head).collect();
    seen.seqs = shifted;
    seen.check(u64::from(CALLS));
    // The consumer that kept reading got everything, uncut.
    let mut fast = reader.join().expect("reader thread");
    let shifted: Vec<u64> = fast.seqs.iter().map(|s| s - head).collect();
    fast.seqs = shifted;
    fast.check(u64::from(CALLS));
}
