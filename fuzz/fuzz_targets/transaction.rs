//! Fuzzes the transaction layer with a sequence of operations read from the input: datagrams
//! (random bytes, or SIP messages built from fuzzed fields so that matching is exercised),
//! time steps, TU answers and client requests. Checks that nothing panics, that the number
//! of live transactions stays within `max_transactions`, and that every transaction ends
//! once enough time has passed.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use switchboard_engine::sip::{
    build, parse_datagram, HeaderName, Headers, Message, Method, Request, Response,
};
use switchboard_engine::transaction::{
    LayerConfig, Peer, TimerConfig, TransactionLayer, TransportKind, TuEvent, TxKey,
};

const MAX_TX: usize = 32;
const METHODS: [&str; 7] = [
    "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "INFO",
];
const STATUSES: [u16; 12] = [100, 180, 183, 200, 202, 302, 404, 486, 487, 500, 603, 699];

/// Reads the fuzz input a byte at a time; runs out as zeros.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }

    fn pick<T: Copy>(&mut self, of: &[T]) -> T {
        of[self.byte() as usize % of.len()]
    }
}

fn peer(inp: &mut Input<'_>) -> Peer {
    let b = inp.byte();
    let transport = if b & 1 == 0 {
        TransportKind::Udp
    } else {
        TransportKind::Tcp
    };
    let addr: SocketAddr = if b & 2 == 0 {
        ([192, 0, 2, 1], 5060).into()
    } else {
        ([192, 0, 2, 2], 5070).into()
    };
    Peer {
        transport,
        addr,
        conn: (b & 4 != 0).then_some(u64::from(b >> 3)),
    }
}

/// The top Via parameters: a magic-cookie branch from a small set (so messages collide), a
/// bare cookie, an RFC 2543 branch, or none.
fn via_params(inp: &mut Input<'_>) -> String {
    let b = inp.byte();
    match b % 8 {
        0 => String::new(),
        1 => ";branch=z9hG4bK".into(),
        2 => format!(";branch=old{}", b >> 3 & 3),
        _ => format!(";branch=z9hG4bK{}", b >> 3 & 7),
    }
}

/// A well-formed SIP message built from fuzzed fields. It is built directly rather than
/// parsed, so this part of the target exercises the layer whatever the parser accepts.
fn structured(inp: &mut Input<'_>, is_response: bool) -> Message {
    let method = inp.pick(&METHODS);
    let host = inp.pick(&["192.0.2.1:5060", "192.0.2.2", "HOST.example"]);
    let via = format!("SIP/2.0/UDP {host}{}", via_params(inp));
    let cseq = 1 + inp.byte() % 3;
    let to_tag = match inp.byte() % 3 {
        0 => String::new(),
        n => format!(";tag=t{n}"),
    };
    let from_tag = inp.byte() % 2;
    let mut headers = Headers::new();
    headers.push(HeaderName::Via, via);
    headers.push(HeaderName::MaxForwards, "70");
    headers.push(
        HeaderName::From,
        format!("<sip:alice@example.com>;tag=f{from_tag}"),
    );
    headers.push(HeaderName::To, format!("<sip:bob@example.com>{to_tag}"));
    headers.push(HeaderName::CallId, "c1@example.com");
    headers.push(HeaderName::CSeq, format!("{cseq} {method}"));
    if is_response {
        let status = inp.pick(&STATUSES);
        Message::Response(Response {
            status,
            reason: "Whatever".into(),
            headers,
            body: Default::default(),
        })
    } else {
        Message::Request(Request {
            method: Method::from_token(method),
            uri: "sip:bob@example.com".into(),
            headers,
            body: Default::default(),
        })
    }
}

fn feed_message(layer: &mut TransactionLayer, now: Instant, message: Message, source: Peer) {
    match message {
        Message::Request(req) => {
            let _ = layer.handle_request(now, req, source);
        }
        Message::Response(resp) => layer.handle_response(now, resp, source),
    }
}

fn feed(layer: &mut TransactionLayer, now: Instant, datagram: &[u8], source: Peer) {
    if let Ok(message) = parse_datagram(datagram) {
        feed_message(layer, now, message, source);
    }
}

/// Drains the layer's output, remembering server transactions the TU still has to answer.
fn drain(layer: &mut TransactionLayer, pending: &mut VecDeque<(TxKey, Request)>) {
    while layer.poll_transmit().is_some() {}
    while let Some(ev) = layer.poll_event() {
        match ev {
            TuEvent::Request { tx, req, .. } => pending.push_back((tx, req)),
            TuEvent::Terminated { tx } => pending.retain(|(k, _)| *k != tx),
            _ => {}
        }
    }
    assert!(layer.len() <= MAX_TX, "{} live transactions", layer.len());
    assert!(pending.len() <= MAX_TX);
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);
    let cfg = LayerConfig {
        timers: TimerConfig {
            t1: Duration::from_millis(50 + u64::from(inp.byte()) * 4),
            t2: Duration::from_millis(500 + u64::from(inp.byte()) * 20),
            t4: Duration::from_millis(u64::from(inp.byte()) * 20),
        },
        max_transactions: MAX_TX,
        trying_delay: Duration::from_millis(u64::from(inp.byte())),
        invite_proceeding_limit: Duration::from_secs(1 + u64::from(inp.byte())),
    };
    let mut layer = TransactionLayer::with_config(cfg);
    let start = Instant::now();
    let mut now = start;
    let mut pending = VecDeque::new();
    while !inp.0.is_empty() {
        match inp.byte() % 6 {
            0 => {
                let len = inp.u16() as usize % 2048;
                let source = peer(&mut inp);
                let datagram = inp.bytes(len).to_vec();
                feed(&mut layer, now, &datagram, source);
            }
            1 => {
                let source = peer(&mut inp);
                let is_response = inp.byte() & 1 == 1;
                let message = structured(&mut inp, is_response);
                feed_message(&mut layer, now, message, source);
            }
            2 => {
                now += Duration::from_millis(u64::from(inp.u16()));
                layer.handle_timeout(now);
            }
            3 => {
                let status = inp.pick(&STATUSES);
                let oldest = pending.pop_front();
                if let Some((tx, req)) = oldest {
                    let _ = layer.send_response(now, &tx, build::response(&req, status));
                    if status < 200 || req.method == Method::Invite && status < 300 {
                        pending.push_back((tx, req));
                    }
                }
            }
            4 => {
                let dest = peer(&mut inp);
                if let Message::Request(req) = structured(&mut inp, false) {
                    let _ = layer.send_request(now, req, dest);
                }
            }
            _ => {
                // A response for one of our client transactions or a stray one.
                let source = peer(&mut inp);
                let message = structured(&mut inp, true);
                feed_message(&mut layer, now, message, source);
            }
        }
        drain(&mut layer, &mut pending);
    }
    // Liveness: once enough time has passed, every transaction has ended.
    now += Duration::from_secs(3600);
    let mut rounds = 0;
    while let Some(at) = layer.poll_timeout() {
        layer.handle_timeout(at.max(now));
        drain(&mut layer, &mut pending);
        rounds += 1;
        assert!(rounds < 100_000, "timers never settle");
    }
    assert!(
        layer.is_empty(),
        "{} transactions outlived every timer",
        layer.len()
    );
});
