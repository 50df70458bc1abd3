//! A local HTTP receiver for webhook tests: a real TCP listener on 127.0.0.1 that reads
//! HTTP/1.1 requests (keep-alive, `Content-Length` bodies), answers the first `fail_first`
//! of them 500 and the rest 200, and keeps every request (answered either way) in arrival
//! order with its headers and raw body, so a test can check signatures and retries.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Request {
    /// Request line, e.g. `POST /hook HTTP/1.1`.
    pub line: String,
    /// Headers, names lower-cased.
    pub headers: HashMap<String, String>,
    /// The raw body.
    pub body: String,
    /// The status it was answered with.
    pub status: u16,
}

#[derive(Default)]
struct State {
    requests: Vec<Request>,
}

/// A running receiver.
pub struct WebhookSink {
    addr: SocketAddr,
    state: Arc<(Mutex<State>, Condvar)>,
}

impl WebhookSink {
    /// Listens on a free loopback port; the first `fail_first` requests get a 500.
    pub fn start(fail_first: usize) -> WebhookSink {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind webhook sink");
        let addr = listener.local_addr().expect("sink address");
        let state: Arc<(Mutex<State>, Condvar)> = Arc::default();
        let s = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let s = s.clone();
                std::thread::spawn(move || serve(conn, &s, fail_first));
            }
        });
        WebhookSink { addr, state }
    }

    /// `http://127.0.0.1:PORT/PATH`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Waits until `pred` holds for the requests so far (or `timeout`); returns them.
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&[Request]) -> bool) -> Vec<Request> {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.state;
        let mut g = lock.lock().unwrap_or_else(|e| e.into_inner());
        while !pred(&g.requests) {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            g = cv
                .wait_timeout(g, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        g.requests.clone()
    }
}

fn serve(conn: TcpStream, state: &(Mutex<State>, Condvar), fail_first: usize) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    let mut r = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((n, v)) = h.split_once(':') {
                headers.insert(n.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let (lock, cv) = state;
        let status = {
            let mut g = lock.lock().unwrap_or_else(|e| e.into_inner());
            let status = if g.requests.len() < fail_first {
                500
            } else {
                200
            };
            g.requests.push(Request {
                line: line.trim_end().to_string(),
                headers,
                body: String::from_utf8_lossy(&body).into_owned(),
                status,
            });
            status
        };
        cv.notify_all();
        let reason = if status == 200 {
            "OK"
        } else {
            "Internal Server Error"
        };
        let _ = write!(
            out,
            "HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"
        );
    }
}
