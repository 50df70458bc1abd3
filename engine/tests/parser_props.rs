//! Property tests of the SIP wire parser on mutated messages: the 50 RFC 4475 torture messages
//! and three valid ones (INVITE, OPTIONS, 200 OK), each put through a few random mutations
//! (bit flips, inserted delimiters, truncation, duplicated and permuted header lines, huge
//! Content-Length values, deep line folding), then parsed as a datagram and as a framed stream
//! message.
//!
//! Properties:
//! - no panic;
//! - `Ok` messages re-serialize and re-parse to the same message, modulo Content-Length (the
//!   serializer always writes one computed from the body, at the end of the headers) and modulo
//!   known engine bug K1 below;
//! - `Err` is a drop (status 0), or a 400/505 whose answer from `response_with_reason` is a
//!   well-formed response: `SIP/2.0 <status> `, exactly one CRLFCRLF, at the end (empty body);
//!   it re-parses as a response with the same status whenever the request's own Via, From,
//!   To, Call-ID and CSeq lines would make a valid response (a request whose Via is malformed
//!   gets an answer carrying that same malformed Via, which is fine: the answer cannot be
//!   routed anyway, but it does not re-parse);
//! - no amplification: the header bytes a parse stores (values, plus the spelling of unknown
//!   names; known names are enum variants) never exceed the input length.
//!
//! Known engine bugs, documented here and pinned by the `#[ignore]`d `known_bug_*` tests
//! (remove the `ignore` once `engine/src/sip` is fixed, and remove the K1 normalization):
//! - K1: a whitespace-only continuation line at the end of a header leaves a trailing space in
//!   the value (`Subject: a\r\n \r\n` gives `"a "`), which the re-parse trims away.
//! - K2: a datagram with exactly `MAX_HEADERS` header lines and no Content-Length parses, but
//!   its serialization adds Content-Length and is refused ("Too many header lines").
//! - K3: a To with a valueless `tag` parameter (`<sip:b@c>;tag`) is not tagged by
//!   `response_with_reason`: the answer has `;tag;tag=sb…`, whose first `tag` has no value, so
//!   the answer's To tag reads as absent.

use proptest::prelude::*;
use proptest::sample::Index;
use std::sync::OnceLock;
use switchboard_engine::inspect::{inspect, LocalIdentity};
use switchboard_engine::sip::build::response_with_reason;
use switchboard_engine::sip::parse::MAX_HEADERS;
use switchboard_engine::sip::{
    parse_datagram, parse_stream_message, HeaderName, Headers, Message, ParseError, Request,
    Response, SipHeaders,
};

const INVITE: &[u8] = b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: \"Alice A\" <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.example.com>\r\n\
Subject: lunch, today\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 31\r\n\r\n\
v=0\r\no=- 0 0 IN IP4 192.0.2.1\r\n";

const OPTIONS: &[u8] = b"OPTIONS sip:bob@example.com SIP/2.0\r\n\
v: SIP/2.0/TCP 192.0.2.4:5070;branch=z9hG4bK-1;received=192.0.2.4\r\n\
Max-Forwards: 70\r\n\
f: <sip:a@example.com>;tag=1\r\n\
t: <sip:bob@example.com>\r\n\
i: abc@host\r\n\
CSeq: 1 OPTIONS\r\n\
Accept: application/sdp\r\n\
l: 0\r\n\r\n";

const OK_200: &[u8] = b"SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP server10.biloxi.example.com;branch=z9hG4bKnashds8, \
SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;received=192.0.2.1\r\n\
To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:bob@192.0.2.4>\r\n\
Content-Length: 0\r\n\r\n";

/// The RFC 4475 corpus followed by the three valid messages.
fn sources() -> &'static [Vec<u8>] {
    static SOURCES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SOURCES.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/conformance/rfc4475/messages");
        let mut paths: Vec<_> = std::fs::read_dir(&dir)
            .expect("RFC 4475 corpus dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "dat"))
            .collect();
        paths.sort();
        let mut v: Vec<Vec<u8>> = paths
            .iter()
            .map(|p| std::fs::read(p).expect("read"))
            .collect();
        assert_eq!(v.len(), 50, "RFC 4475 has 50 torture messages");
        v.extend([INVITE.to_vec(), OPTIONS.to_vec(), OK_200.to_vec()]);
        v
    })
}

/// Bytes that matter to the SIP grammar.
const DELIMITERS: &[&[u8]] = &[
    b"\r", b"\n", b"\0", b"\"", b"<", b">", b";", b",", b":", b"\r\n", b"\r\n ", b" ", b"\\",
];

/// Content-Length values around the limits (8 digits max, usize, u32).
const HUGE_LENGTHS: &[&str] = &[
    "99999999",
    "100000000",
    "4294967296",
    "18446744073709551615",
    "18446744073709551616",
    "999999999999999999999999999999",
    "-1",
    "00000000000000000000000000000",
    "1e3",
    "0x10",
    " 12 ",
];

#[derive(Clone, Debug)]
enum Mutation {
    FlipBit(Index, u8),
    Insert(Index, &'static [u8]),
    Truncate(Index),
    DuplicateLine(Index, Index),
    SwapLines(Index, Index),
    ContentLength(Index, &'static str),
    /// Folds a header line: `depth` whitespace-only continuation lines before the value, the
    /// value's spaces turned into folds, and (when `trailing`) blank continuations after it.
    DeepFold {
        line: Index,
        depth: usize,
        tab: bool,
        trailing: bool,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        3 => (any::<Index>(), prop::sample::select(DELIMITERS))
            .prop_map(|(i, d)| Mutation::Insert(i, d)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        2 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::DuplicateLine(a, b)),
        2 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        2 => (any::<Index>(), prop::sample::select(HUGE_LENGTHS))
            .prop_map(|(i, v)| Mutation::ContentLength(i, v)),
        2 => (any::<Index>(), 1usize..200, any::<bool>(), any::<bool>()).prop_map(
            |(line, depth, tab, trailing)| Mutation::DeepFold { line, depth, tab, trailing }
        ),
    ]
}

/// A message cut into its head lines (start line first) and what follows the blank line.
struct Lines {
    lines: Vec<Vec<u8>>,
    /// `Some(body)` when the head ended with CRLFCRLF.
    body: Option<Vec<u8>>,
}

impl Lines {
    fn split(msg: &[u8]) -> Lines {
        let (head, body) = match find(msg, b"\r\n\r\n") {
            Some(i) => (&msg[..i], Some(msg[i + 4..].to_vec())),
            None => (msg, None),
        };
        let mut lines = Vec::new();
        let mut rest = head;
        while let Some(i) = find(rest, b"\r\n") {
            lines.push(rest[..i].to_vec());
            rest = &rest[i + 2..];
        }
        lines.push(rest.to_vec());
        Lines { lines, body }
    }

    fn join(&self) -> Vec<u8> {
        let mut out = self.lines.join(&b"\r\n"[..]);
        if let Some(body) = &self.body {
            out.extend_from_slice(b"\r\n\r\n");
            out.extend_from_slice(body);
        }
        out
    }

    /// The index of a header line (never the start line); `None` without header lines.
    fn header(&self, i: &Index) -> Option<usize> {
        (self.lines.len() > 1).then(|| 1 + i.index(self.lines.len() - 1))
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn apply(msg: &mut Vec<u8>, m: &Mutation) {
    match m {
        Mutation::FlipBit(i, bit) => {
            if !msg.is_empty() {
                let at = i.index(msg.len());
                msg[at] ^= 1 << bit;
            }
        }
        Mutation::Insert(i, d) => {
            let at = i.index(msg.len() + 1);
            msg.splice(at..at, d.iter().copied());
        }
        Mutation::Truncate(i) => {
            let at = i.index(msg.len() + 1);
            msg.truncate(at);
        }
        Mutation::DuplicateLine(a, b) => {
            let mut l = Lines::split(msg);
            if let (Some(a), Some(b)) = (l.header(a), l.header(b)) {
                let line = l.lines[a].clone();
                l.lines.insert(b, line);
                *msg = l.join();
            }
        }
        Mutation::SwapLines(a, b) => {
            let mut l = Lines::split(msg);
            if let (Some(a), Some(b)) = (l.header(a), l.header(b)) {
                l.lines.swap(a, b);
                *msg = l.join();
            }
        }
        Mutation::ContentLength(i, v) => {
            let mut l = Lines::split(msg);
            l.lines.retain(|line| {
                let name = line.split(|&c| c == b':').next().unwrap_or_default();
                let name = name.trim_ascii();
                !(name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l"))
            });
            let at = l.header(i).unwrap_or(l.lines.len()).max(1);
            l.lines
                .insert(at, format!("Content-Length: {v}").into_bytes());
            *msg = l.join();
        }
        Mutation::DeepFold {
            line,
            depth,
            tab,
            trailing,
        } => {
            let mut l = Lines::split(msg);
            let Some(at) = l.header(line) else { return };
            let Some(colon) = l.lines[at].iter().position(|&c| c == b':') else {
                return;
            };
            let ws: &[u8] = if *tab { b"\t" } else { b" " };
            let mut folded = l.lines[at][..=colon].to_vec();
            for _ in 0..*depth {
                folded.extend_from_slice(b"\r\n");
                folded.extend_from_slice(ws);
            }
            folded.extend_from_slice(b"\r\n");
            folded.extend_from_slice(ws);
            for &c in l.lines[at][colon + 1..].trim_ascii() {
                if c == b' ' {
                    folded.extend_from_slice(b"\r\n");
                    folded.extend_from_slice(ws);
                } else {
                    folded.push(c);
                }
            }
            if *trailing {
                for _ in 0..(*depth).min(3) {
                    folded.extend_from_slice(b"\r\n");
                    folded.extend_from_slice(ws);
                }
            }
            l.lines[at] = folded;
            *msg = l.join();
        }
    }
}

fn local() -> LocalIdentity {
    LocalIdentity {
        sent_by: vec!["127.0.0.1:5060".into()],
        branch_prefix: "z9hG4bK-sb".into(),
    }
}

type Parser = fn(&[u8]) -> Result<Message, ParseError>;

/// Header bytes a parse keeps: values, and the spelling of names it does not know.
fn stored_header_bytes(h: &Headers) -> usize {
    h.iter()
        .map(|h| {
            h.value.len()
                + match &h.name {
                    HeaderName::Other(n) => n.len(),
                    _ => 0,
                }
        })
        .sum()
}

/// The message as the round trip must preserve it: without Content-Length, which the
/// serializer rewrites, and with trailing spaces of values removed (known bug K1).
fn normalized(msg: &Message) -> Message {
    let mut m = msg.clone();
    let headers = match &mut m {
        Message::Request(r) => &mut r.headers,
        Message::Response(r) => &mut r.headers,
    };
    let mut clean = Headers::new();
    for h in headers.iter() {
        if h.name != HeaderName::ContentLength {
            clean.push(h.name.clone(), h.value.trim_end_matches(' '));
        }
    }
    *headers = clean;
    m
}

/// Checks one parse result of `input`.
fn check(input: &[u8], result: Result<Message, ParseError>, reparse: Parser) {
    match result {
        Ok(msg) => {
            let stored = stored_header_bytes(msg.headers());
            assert!(
                stored <= input.len(),
                "{stored} header bytes from {}",
                input.len()
            );
            assert!(msg.headers().len() <= MAX_HEADERS);
            let bytes = msg.to_bytes();
            let again = reparse(&bytes).unwrap_or_else(|e| {
                panic!(
                    "re-serialized message does not parse ({} {}):\n{}",
                    e.status,
                    e.reason,
                    String::from_utf8_lossy(&bytes)
                )
            });
            assert_eq!(normalized(&again), normalized(&msg), "round trip");
            if let Message::Request(req) = &msg {
                if let Some(resp) = inspect(req, &local()) {
                    check_answer(req, &resp);
                }
            }
        }
        Err(e) if e.status == 0 => assert!(e.request.is_none(), "{e:?}"),
        Err(e) => {
            assert!(matches!(e.status, 400 | 505), "status {}", e.status);
            if let Some(req) = &e.request {
                let stored = stored_header_bytes(&req.headers);
                assert!(
                    stored <= input.len(),
                    "{stored} header bytes from {}",
                    input.len()
                );
                assert!(req.headers.len() <= MAX_HEADERS);
                check_answer(req, &response_with_reason(req, e.status, &e.reason));
            }
        }
    }
}

/// `resp`, an answer to `req`, is well formed.
fn check_answer(req: &Request, resp: &Response) {
    let bytes = resp.to_bytes();
    let text = String::from_utf8_lossy(&bytes);
    let status_line = format!("SIP/2.0 {} ", resp.status);
    assert!(bytes.starts_with(status_line.as_bytes()), "{text}");
    let blank = bytes.windows(4).filter(|w| w == b"\r\n\r\n").count();
    assert_eq!(blank, 1, "{text}");
    assert!(bytes.ends_with(b"\r\n\r\n"), "{text}");
    if copied_headers_valid(req, resp.status) {
        match parse_datagram(&bytes) {
            Ok(Message::Response(r)) => {
                assert_eq!(r.status, resp.status, "{text}");
                // The answer carries the request's Call-ID (modulo K1's trailing spaces).
                let trimmed = |c: Option<&str>| c.map(|c| c.trim_end_matches(' ').to_string());
                assert_eq!(trimmed(r.call_id()), trimmed(req.call_id()), "{text}");
            }
            other => panic!("answer does not re-parse: {other:?}\n{text}"),
        }
    }
}

/// True when a response made of the request's own Via/From/To/Call-ID/CSeq lines parses: then
/// the answer, which adds only a To tag, a Server header and a reason phrase, must parse too.
fn copied_headers_valid(req: &Request, status: u16) -> bool {
    let mut probe = format!("SIP/2.0 {status} Probe\r\n").into_bytes();
    for h in req.headers.iter() {
        if matches!(
            h.name,
            HeaderName::Via
                | HeaderName::From
                | HeaderName::To
                | HeaderName::CallId
                | HeaderName::CSeq
        ) {
            probe.extend_from_slice(format!("{}: {}\r\n", h.name, h.value).as_bytes());
        }
    }
    probe.extend_from_slice(b"\r\n");
    parse_datagram(&probe).is_ok()
}

fn check_both(input: &[u8]) {
    check(input, parse_datagram(input), parse_datagram);
    check(input, parse_stream_message(input), parse_stream_message);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn mutated_messages(
        source in any::<Index>(),
        mutations in prop::collection::vec(mutation(), 0..8),
    ) {
        let all = sources();
        let mut msg = all[source.index(all.len())].clone();
        for m in &mutations {
            apply(&mut msg, m);
        }
        check_both(&msg);
    }
}

#[test]
fn unmutated_sources() {
    for (i, s) in sources().iter().enumerate() {
        check_both(s);
        if i >= 50 {
            // The three valid messages parse.
            assert!(parse_datagram(s).is_ok(), "source {i}");
            assert!(parse_stream_message(s).is_ok(), "source {i}");
        }
    }
}

fn options_head() -> String {
    "OPTIONS sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.4;branch=z9hG4bK-1\r\n\
From: <sip:a@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\n\
Call-ID: abc@host\r\nCSeq: 1 OPTIONS\r\n"
        .to_string()
}

#[test]
fn one_mebibyte_of_header_lines() {
    let mut m = options_head();
    while m.len() < 1 << 20 {
        m.push_str("Subject: the same header line again and again\r\n");
    }
    m.push_str("\r\n");
    let started = std::time::Instant::now();
    let e = parse_datagram(m.as_bytes()).expect_err("too many headers");
    assert_eq!(
        (e.status, e.reason.as_str()),
        (400, "Too many header lines")
    );
    let req = e.request.expect("the request part");
    assert_eq!(req.headers.len(), MAX_HEADERS);
    check(m.as_bytes(), parse_datagram(m.as_bytes()), parse_datagram);
    check(
        m.as_bytes(),
        parse_stream_message(m.as_bytes()),
        parse_stream_message,
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn hundred_thousand_folded_lines() {
    let mut m = options_head();
    m.push_str("Subject: start");
    for _ in 0..100_000 {
        m.push_str("\r\n folded");
    }
    m.push_str("\r\nContent-Length: 0\r\n\r\n");
    let started = std::time::Instant::now();
    let Ok(Message::Request(req)) = parse_datagram(m.as_bytes()) else {
        panic!("folded request does not parse")
    };
    let subject = req.headers.get(&HeaderName::Subject).expect("Subject");
    assert_eq!(subject.len(), "start".len() + 100_000 * " folded".len());
    check(m.as_bytes(), parse_datagram(m.as_bytes()), parse_datagram);
    check(
        m.as_bytes(),
        parse_stream_message(m.as_bytes()),
        parse_stream_message,
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn header_cap_is_exact() {
    let mut m = options_head();
    for _ in 5..MAX_HEADERS - 1 {
        m.push_str("Subject: x\r\n");
    }
    m.push_str("Content-Length: 0\r\n\r\n");
    let Ok(msg) = parse_datagram(m.as_bytes()) else {
        panic!("MAX_HEADERS lines are allowed")
    };
    assert_eq!(msg.headers().len(), MAX_HEADERS);
    check(m.as_bytes(), Ok(msg), parse_datagram);
}

#[test]
fn blank_continuation_line_blank_fold_trailing_space() {
    let mut faults = Vec::new();
    let m = options_head() + "Subject: a\r\n \r\nContent-Length: 0\r\n\r\n";
    match parse_datagram(m.as_bytes()) {
        Ok(Message::Request(req)) if req.headers.get(&HeaderName::Subject) == Some("a") => {}
        other => faults.push(format!("Subject: {other:?}")),
    }
    // The same trailing space makes legal single-token values fail validation.
    for (from, to) in [
        ("Call-ID: abc@host\r\n", "Call-ID: abc@host\r\n \r\n"),
        ("CSeq: 1 OPTIONS\r\n", "CSeq: 1 OPTIONS\r\n\t\r\n"),
        (
            "CSeq: 1 OPTIONS\r\n",
            "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n \r\n",
        ),
    ] {
        let m = options_head().replace(from, to) + "Content-Length: 0\r\n\r\n";
        if let Err(e) = parse_datagram(m.as_bytes()) {
            faults.push(format!("{to:?}: {} {}", e.status, e.reason));
        }
    }
    assert!(faults.is_empty(), "{faults:#?}");
}

#[test]
fn header_cap_round_trip_header_cap_round_trip() {
    let mut m = options_head();
    for _ in 5..MAX_HEADERS {
        m.push_str("Subject: x\r\n");
    }
    m.push_str("\r\n");
    let msg = parse_datagram(m.as_bytes()).expect("MAX_HEADERS lines are allowed");
    assert_eq!(msg.headers().len(), MAX_HEADERS);
    parse_datagram(&msg.to_bytes()).expect("its serialization parses too");
}

#[test]
fn valueless_to_tag_is_refused() {
    // RFC 3261: tag-param = "tag" EQUAL token. A bare `;tag` is malformed (was bug K3).
    let m = options_head().replace("To: <sip:bob@example.com>", "To: <sip:bob@example.com>;tag")
        + "\r\n";
    let e = parse_datagram(m.as_bytes()).expect_err("a valueless tag is malformed");
    assert_eq!(e.status, 400);
    assert!(e.reason.contains("tag without a value"), "{}", e.reason);
}
