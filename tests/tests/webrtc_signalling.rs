//! The WebRTC signalling socket (`/webrtc/ws`) refuses what it must without a browser: bad
//! frames get an `error` frame and the socket stays usable; a destination outside
//! `allowed_destinations` ends the leg with `bye` 403; a destination that could inject SIP is
//! refused; an offer without Opus ends with 488; a short room name is refused. The engine stays
//! healthy throughout.

use serde_json::{json, Value};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use switchboard_tests::{http_get, Engine};
use tungstenite::{Message, WebSocket};

const GUARD: Duration = Duration::from_secs(30);

struct Ws(WebSocket<TcpStream>);

impl Ws {
    fn connect(addr: SocketAddr) -> Ws {
        let stream = TcpStream::connect(addr).expect("tcp");
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let (ws, _) =
            tungstenite::client(format!("ws://{addr}/webrtc/ws"), stream).expect("handshake");
        Ws(ws)
    }

    fn send(&mut self, v: &str) {
        self.0.send(Message::text(v.to_string())).expect("send");
    }

    /// The next JSON frame.
    fn next(&mut self) -> Value {
        let deadline = Instant::now() + GUARD;
        loop {
            assert!(Instant::now() < deadline, "no frame in time");
            match self.0.read() {
                Ok(Message::Text(t)) => return serde_json::from_str(t.as_str()).expect("JSON"),
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("socket closed: {e}"),
            }
        }
    }
}

#[test]
fn bad_frames_and_refused_destinations() {
    let engine = Engine::start("[webrtc]\nallowed_destinations = [\"7*\"]\n");
    let mut ws = Ws::connect(engine.http_addr());
    let hello = ws.next();
    assert_eq!(hello["type"], "hello");
    assert!(hello["id"].as_str().is_some_and(|i| i.starts_with("wrtc-")));
    assert_eq!(hello["ice_servers"], json!([]));

    ws.send("not json");
    assert_eq!(ws.next()["type"], "error");
    ws.send(r#"{"type":"dance"}"#);
    assert_eq!(ws.next()["type"], "error");
    ws.send(r#"{"type":"candidate","candidate":{}}"#);
    assert_eq!(ws.next()["type"], "error", "candidate before a call");
    ws.send(r#"{"type":"call","to":"740>\r\nX-Evil: 1","sdp":"v=0"}"#);
    assert_eq!(ws.next()["type"], "error", "SIP injection refused");
    ws.send(r#"{"type":"join","room":"short","role":"agent","sdp":"v=0"}"#);
    assert_eq!(ws.next()["type"], "error", "room names are 8+ characters");

    // Allowed prefix, but no Opus in the offer: 488.
    ws.send(r#"{"type":"call","to":"740","sdp":"v=0\r\nm=audio 9 RTP/AVP 0\r\n"}"#);
    let bye = ws.next();
    assert_eq!(bye["type"], "bye", "{bye}");
    assert_eq!(bye["status"], 488, "{bye}");

    // Not allowed: 403.
    let mut ws = Ws::connect(engine.http_addr());
    assert_eq!(ws.next()["type"], "hello");
    ws.send(r#"{"type":"call","to":"999","sdp":"v=0"}"#);
    let bye = ws.next();
    assert_eq!(bye["type"], "bye");
    assert_eq!(bye["status"], 403, "{bye}");

    let (status, _) = http_get(engine.http_addr(), "/health").expect("health");
    assert_eq!(status, 200);
    let (status, page) = http_get(engine.http_addr(), "/webrtc").expect("page");
    assert_eq!(status, 200);
    assert!(page.contains("/webrtc/phone.js"));
}

#[test]
fn disabled_webrtc_answers_404() {
    let engine = Engine::start("[webrtc]\nenabled = false\n");
    let (status, _) = http_get(engine.http_addr(), "/webrtc").expect("page");
    assert_eq!(status, 404);
    let (status, _) = http_get(engine.http_addr(), "/webrtc/ws").expect("ws");
    assert_eq!(status, 404);
}
