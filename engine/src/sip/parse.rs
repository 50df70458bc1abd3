//! The wire parser: bytes to a validated [`Message`], or a [`ParseError`] that says which
//! answer (400 / 505, with a reason phrase naming the fault) the sender gets, or that the
//! message is to be dropped.
//!
//! Validation is eager (unlike rsipstack's lazily typed headers) because a message that reaches
//! the transaction layer must already be known good: request line, mandatory headers, single
//! values where the RFC wants one, CSeq against the method, Via, From/To/Contact syntax and
//! Content-Length framing (RFC 3261 §7, §8.2, §18.3 and the RFC 4475 torture cases).

use super::grammar::{
    check_list, is_token, is_token_char, list_elems, parse_name_addr_ref, sole_elem, trim,
};
use super::header::{Header, HeaderName, Headers};
use super::message::{parse_cseq, Message, Request, Response};
use super::method::Method;
use super::uri::check_request_uri;
use super::via::ViaRef;
use bytes::Bytes;

/// Most header lines a message may carry before it is rejected.
pub const MAX_HEADERS: usize = 256;

/// Why a message was refused, and how to answer it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// The status to answer with (400, 505), or 0 when the message is to be dropped silently
    /// (malformed responses, garbage without a request line).
    pub status: u16,
    /// What was wrong; used as the reason phrase of the answer.
    pub reason: String,
    /// What could be read of the request (headers above all), enough to build the answer.
    pub request: Option<Box<Request>>,
}

impl ParseError {
    fn drop(reason: impl Into<String>) -> ParseError {
        ParseError {
            status: 0,
            reason: reason.into(),
            request: None,
        }
    }
}

/// How the end of the body is found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    /// One UDP datagram: without Content-Length the body runs to its end; a Content-Length
    /// larger than what arrived is an error; octets after the body are ignored.
    Datagram,
    /// A message already cut out of a stream by Content-Length ([`crate::transport::framing`]).
    Stream,
}

/// Parses one UDP datagram.
pub fn parse_datagram(buf: &[u8]) -> Result<Message, ParseError> {
    parse(buf, Framing::Datagram)
}

/// Parses one message that stream framing has already delimited (head plus body).
pub fn parse_stream_message(buf: &[u8]) -> Result<Message, ParseError> {
    parse(buf, Framing::Stream)
}

struct Head<'a> {
    start_line: &'a str,
    headers: Headers,
    /// The first lexical fault in the header section, if any.
    fault: Option<String>,
    body: &'a [u8],
}

/// The end of a message head, searched once per message with a finder built once.
static HEAD_END: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\r\n\r\n"));

fn split_head(buf: &[u8]) -> Result<Head<'_>, ParseError> {
    match split_head_plain(buf) {
        Some(head) => Ok(head),
        None => split_head_general(buf),
    }
}

/// [`split_head_general`] for the common message: a complete head, valid UTF-8, every line
/// ending in CRLF (no bare CR or LF), no folded lines, every header line `token *WS ":"`, and
/// room under [`MAX_HEADERS`]. One pass; `None` sends anything else to the general path, which
/// produces the same result for the messages accepted here.
fn split_head_plain(buf: &[u8]) -> Option<Head<'_>> {
    let end = HEAD_END.find(buf)?;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let hb = head.as_bytes();
    let body = &buf[end + 4..];
    // Line ends: every CR must start a CRLF and every LF end one.
    // Where the line starting at `from` ends: at the CR of its CRLF, or (`None`) at the end of
    // the head; a bare CR or LF sends the message to the general path.
    let line_end = |from: usize| -> Option<Option<usize>> {
        let rest = hb.get(from..)?;
        match memchr::memchr2(b'\r', b'\n', rest) {
            None => Some(None),
            Some(k) => {
                let i = from + k;
                (hb[i] == b'\r' && hb.get(i + 1) == Some(&b'\n')).then_some(Some(i))
            }
        }
    };
    let first_end = line_end(0)?;
    let start_line = &head[..first_end.unwrap_or(hb.len())];
    if start_line.is_empty() {
        return None;
    }
    // The lines are collected first and shared once at the end.
    let mut lines: Vec<Header> = Vec::with_capacity(16);
    let mut pos = match first_end {
        Some(e) => e + 2,
        None => hb.len() + 1,
    };
    while pos <= hb.len() {
        let this_end = line_end(pos)?.unwrap_or(hb.len());
        let line = &hb[pos..this_end];
        // A header name: token characters, optional white space, then the colon.
        let name_len = line
            .iter()
            .position(|&c| !is_token_char(c))
            .unwrap_or(line.len());
        if name_len == 0 {
            // Folded line, empty name or another fault: the general path sorts it out.
            return None;
        }
        let mut colon = name_len;
        while colon < line.len() && (line[colon] == b' ' || line[colon] == b'\t') {
            colon += 1;
        }
        if line.get(colon) != Some(&b':') {
            return None;
        }
        let name = HeaderName::from_token(&head[pos..pos + name_len]);
        if name != HeaderName::ContentLength && lines.len() >= MAX_HEADERS {
            return None;
        }
        let value = trim(&head[pos + colon + 1..this_end]).to_string();
        lines.push(Header { name, value });
        pos = this_end + 2;
    }
    Some(Head {
        start_line,
        headers: Headers::from_lines(lines),
        fault: None,
        body,
    })
}

/// Splits the head of any message, noting the first lexical fault.
fn split_head_general(buf: &[u8]) -> Result<Head<'_>, ParseError> {
    let (head, body, mut fault) = match HEAD_END.find(buf) {
        Some(end) => (&buf[..end], &buf[end + 4..], None),
        None => {
            let trimmed = buf.strip_suffix(b"\r\n").unwrap_or(buf);
            (
                trimmed,
                &buf[buf.len()..],
                Some("Missing empty line after the headers".to_string()),
            )
        }
    };
    let mut lines = split_crlf(head);
    let first = lines.next().unwrap_or_default();
    let start_line =
        std::str::from_utf8(first).map_err(|_| ParseError::drop("start line is not UTF-8"))?;
    if start_line.is_empty() {
        return Err(ParseError::drop("empty start line"));
    }
    if start_line.contains(['\n', '\r']) {
        return Err(ParseError::drop("start line has a bare CR or LF"));
    }
    // Room for a typical message's lines, so pushing them does not reallocate.
    let mut headers = Headers::with_capacity(16);
    let mut current: Option<(HeaderName, String)> = None;
    for line in lines {
        if line.contains(&b'\n') || line.contains(&b'\r') {
            fault.get_or_insert_with(|| "Header line with a bare CR or LF".into());
            continue;
        }
        let Ok(line) = std::str::from_utf8(line) else {
            fault.get_or_insert_with(|| "Header line is not valid UTF-8".into());
            continue;
        };
        if line.starts_with([' ', '\t']) {
            let piece = line.trim();
            match current.as_mut() {
                Some(_) if piece.is_empty() => {}
                Some((_, v)) => {
                    if !v.is_empty() {
                        v.push(' ');
                    }
                    v.push_str(piece);
                }
                None => {
                    fault.get_or_insert_with(|| "Continuation line before any header".into());
                }
            }
            continue;
        }
        if let Some((n, v)) = current.take() {
            headers.push(n, v);
        }
        let Some(colon) = line.find(':') else {
            fault.get_or_insert_with(|| format!("Header line without a colon: {}", clip(line)));
            continue;
        };
        let name = line[..colon].trim_end_matches([' ', '\t']);
        if !is_token(name) {
            fault.get_or_insert_with(|| format!("Invalid header name: {}", clip(name)));
            continue;
        }
        let name = HeaderName::from_token(name);
        // The cap is on received lines other than Content-Length, which serialization rewrites.
        if name != HeaderName::ContentLength && headers.len() >= MAX_HEADERS {
            fault.get_or_insert_with(|| "Too many header lines".into());
            break;
        }
        current = Some((name, line[colon + 1..].trim().to_string()));
    }
    if let Some((n, v)) = current {
        headers.push(n, v);
    }
    Ok(Head {
        start_line,
        headers,
        fault,
        body,
    })
}

/// Cuts a value for use inside a reason phrase.
fn clip(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(40).collect()
}

/// Splits on CRLF exactly; a bare CR or LF stays inside a line (and is refused there).
fn split_crlf(head: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(head);
    std::iter::from_fn(move || {
        let r = rest?;
        // The first LF preceded by a CR (memchr per LF is far cheaper than building a
        // substring finder per line).
        let mut from = 0;
        loop {
            let Some(i) = r.get(from..).and_then(|t| memchr::memchr(b'\n', t)) else {
                rest = None;
                return Some(r);
            };
            let lf = from + i;
            if lf > 0 && r.get(lf - 1) == Some(&b'\r') {
                rest = r.get(lf + 1..);
                return r.get(..lf - 1);
            }
            from = lf + 1;
        }
    })
}

fn parse(buf: &[u8], framing: Framing) -> Result<Message, ParseError> {
    let head = split_head(buf)?;
    if head
        .start_line
        .as_bytes()
        .get(..4)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/"))
    {
        parse_response(head, framing).map(Message::Response)
    } else {
        parse_request(head, framing).map(Message::Request)
    }
}

fn parse_request(head: Head<'_>, framing: Framing) -> Result<Request, ParseError> {
    let mut parts = head.start_line.split(' ');
    let method_tok = parts.next().unwrap_or_default();
    let uri = parts.next().unwrap_or_default();
    let version = parts.next().unwrap_or_default();
    let extra = parts.next().is_some();
    let method = if is_token(method_tok) {
        Method::from_token(method_tok)
    } else {
        Method::Extension("UNKNOWN".into())
    };
    let mut req = Request {
        method,
        uri: uri.to_string(),
        headers: head.headers,
        body: Bytes::new(),
    };

    let fault = (|| -> Result<(), (u16, String)> {
        let bad = |s: &str| Err((400, s.to_string()));
        if !is_token(method_tok) {
            return bad("Invalid method in Request-Line");
        }
        if uri.is_empty() || version.is_empty() || extra {
            return bad("Malformed Request-Line (elements must be separated by one SP)");
        }
        check_version(version).map_err(|e| (if e.0 { 505 } else { 400 }, e.1.to_string()))?;
        check_request_uri(uri).map_err(|e| (400, format!("Malformed Request-URI: {e}")))?;
        if let Some(f) = &head.fault {
            return Err((400, f.clone()));
        }
        req.body = frame_body(&req.headers, head.body, framing)?;
        check_common_headers(&req.headers).map_err(|e| (400, e))?;
        let (_, cseq_method) = req
            .headers
            .get(&HeaderName::CSeq)
            .map(parse_cseq)
            .unwrap_or(Err("missing"))
            .map_err(|e| (400, format!("Malformed CSeq: {e}")))?;
        if cseq_method != req.method {
            return bad("CSeq method does not match the Request-Line");
        }
        if req.method == Method::Register {
            let to = req
                .headers
                .get(&HeaderName::To)
                .and_then(|t| parse_name_addr_ref(t).ok());
            if !to.is_some_and(|t| {
                t.uri.get(..4).is_some_and(|s| {
                    s.eq_ignore_ascii_case("sip:") || s.eq_ignore_ascii_case("sips")
                })
            }) {
                return bad("REGISTER To is not a SIP or SIPS address-of-record");
            }
        }
        if let Some(mf) = req.headers.get(&HeaderName::MaxForwards) {
            if mf.is_empty() || !mf.bytes().all(|c| c.is_ascii_digit()) {
                return bad("Malformed Max-Forwards");
            }
            if mf.parse::<u32>().map_or(true, |v| v > 255) {
                return bad("Max-Forwards out of range");
            }
        }
        for c in req.headers.get_all(&HeaderName::Contact) {
            if c != "*" {
                let malformed = |e: &str| (400, format!("Malformed Contact: {e}"));
                check_list(c).map_err(malformed)?;
                for elem in list_elems(c) {
                    parse_name_addr_ref(elem.map_err(malformed)?).map_err(malformed)?;
                }
            }
        }
        Ok(())
    })();
    match fault {
        Ok(()) => Ok(req),
        Err((status, reason)) => Err(ParseError {
            status,
            reason,
            request: Some(Box::new(req)),
        }),
    }
}

/// `Ok` for SIP/2.0; `Err((true, _))` for a well-formed other version (505), `Err((false, _))`
/// for a malformed one (400).
fn check_version(v: &str) -> Result<(), (bool, &'static str)> {
    let Some(num) = v
        .get(..4)
        .filter(|p| p.eq_ignore_ascii_case("SIP/"))
        .and(v.get(4..))
    else {
        return Err((false, "Malformed SIP-Version"));
    };
    let mut it = num.split('.');
    let (Some(maj), Some(min), None) = (it.next(), it.next(), it.next()) else {
        return Err((false, "Malformed SIP-Version"));
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    if !digits(maj) || !digits(min) {
        return Err((false, "Malformed SIP-Version"));
    }
    if num != "2.0" {
        return Err((true, "Version Not Supported"));
    }
    Ok(())
}

/// Checks the Content-Length and returns the body.
fn frame_body(headers: &Headers, rest: &[u8], framing: Framing) -> Result<Bytes, (u16, String)> {
    let bad = |s: &str| Err((400, s.to_string()));
    match content_length(headers) {
        ContentLength::Absent => Ok(Bytes::copy_from_slice(rest)),
        ContentLength::Invalid(why) => bad(why),
        ContentLength::Value(n) if n > rest.len() => bad("Content-Length larger than the message"),
        ContentLength::Value(n) => {
            if framing == Framing::Stream && n != rest.len() {
                return bad("Content-Length does not match the framed body");
            }
            Ok(Bytes::copy_from_slice(&rest[..n]))
        }
    }
}

/// What the Content-Length headers of a message say.
#[derive(Debug, PartialEq, Eq)]
pub enum ContentLength {
    /// No Content-Length header.
    Absent,
    /// One well-formed value.
    Value(usize),
    /// Negative, non-numeric, overlarge or repeated: a framing error.
    Invalid(&'static str),
}

/// Reads the Content-Length of a header list.
pub fn content_length(headers: &Headers) -> ContentLength {
    let mut values = headers.get_all(&HeaderName::ContentLength);
    let Some(v) = values.next() else {
        return ContentLength::Absent;
    };
    if values.next().is_some() {
        return ContentLength::Invalid("Multiple Content-Length values");
    }
    content_length_value(v)
}

/// Parses one Content-Length value (`1*DIGIT`, at most 8 digits).
pub fn content_length_value(v: &str) -> ContentLength {
    if v.is_empty() || !v.bytes().all(|c| c.is_ascii_digit()) {
        return ContentLength::Invalid("Malformed Content-Length");
    }
    match v.parse::<usize>() {
        Ok(n) if v.len() <= 8 => ContentLength::Value(n),
        _ => ContentLength::Invalid("Content-Length too large"),
    }
}

/// The checks requests and responses share: mandatory headers present once, Via, From and To
/// well formed.
fn check_common_headers(h: &Headers) -> Result<(), String> {
    // One pass: how many lines carry each checked name, and the first From, To and Call-ID.
    const VIA: usize = 0;
    const FROM: usize = 1;
    const TO: usize = 2;
    const CALL_ID: usize = 3;
    const CSEQ: usize = 4;
    const MAX_FORWARDS: usize = 5;
    const CONTENT_TYPE: usize = 6;
    const NAMES: [HeaderName; 7] = [
        HeaderName::Via,
        HeaderName::From,
        HeaderName::To,
        HeaderName::CallId,
        HeaderName::CSeq,
        HeaderName::MaxForwards,
        HeaderName::ContentType,
    ];
    let mut count = [0usize; 7];
    let mut first: [&str; 7] = [""; 7];
    for line in h.iter() {
        let i = match line.name {
            HeaderName::Via => VIA,
            HeaderName::From => FROM,
            HeaderName::To => TO,
            HeaderName::CallId => CALL_ID,
            HeaderName::CSeq => CSEQ,
            HeaderName::MaxForwards => MAX_FORWARDS,
            HeaderName::ContentType => CONTENT_TYPE,
            _ => continue,
        };
        if count[i] == 0 {
            first[i] = &line.value;
        }
        count[i] += 1;
    }
    for i in [VIA, FROM, TO, CALL_ID, CSEQ] {
        if count[i] == 0 {
            return Err(format!("Missing {} header", NAMES[i]));
        }
    }
    for i in [FROM, TO, CALL_ID, CSEQ, MAX_FORWARDS, CONTENT_TYPE] {
        if count[i] > 1 {
            return Err(format!("Multiple {} headers", NAMES[i]));
        }
    }
    let malformed_via = |e: &str| format!("Malformed Via: {e}");
    if count[VIA] == 1 {
        // The usual single Via line, often a single element.
        check_via_value(first[VIA]).map_err(malformed_via)?;
    } else {
        for v in h.get_all(&HeaderName::Via) {
            check_via_value(v).map_err(malformed_via)?;
        }
    }
    for i in [FROM, TO] {
        let name = &NAMES[i];
        let v = first[i];
        let first = match sole_elem(v) {
            Some(sole) => sole.map_err(|e| format!("Malformed {name}: {e}"))?,
            None => {
                let mut first = None;
                let mut n = 0;
                for elem in list_elems(v) {
                    let elem = elem.map_err(|e| format!("Malformed {name}: {e}"))?;
                    first.get_or_insert(elem);
                    n += 1;
                }
                let (Some(first), 1) = (first, n) else {
                    return Err(format!("Multiple {name} values"));
                };
                first
            }
        };
        let na = parse_name_addr_ref(first).map_err(|e| format!("Malformed {name}: {e}"))?;
        if na.has_valueless_tag() {
            return Err(format!("Malformed {name}: tag without a value"));
        }
    }
    let call_id = first[CALL_ID];
    if call_id.is_empty() || call_id.contains([' ', '\t', ',']) {
        return Err("Malformed Call-ID".into());
    }
    Ok(())
}

/// Checks one Via header value: a list whose every element is a valid Via (what
/// `first_of_list` checks, which then remembers the value for the transaction layer's read).
fn check_via_value(v: &str) -> Result<(), &'static str> {
    ViaRef::first_of_list(v).map(|_| ())
}

fn parse_response(head: Head<'_>, framing: Framing) -> Result<Response, ParseError> {
    let line = head.start_line;
    let rest = line.get(4..).unwrap_or_default();
    let (version, rest) = rest
        .split_once(' ')
        .ok_or_else(|| ParseError::drop("malformed Status-Line"))?;
    if version != "2.0" {
        return Err(ParseError::drop("unsupported SIP version in response"));
    }
    let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
    if code.len() != 3 || !code.bytes().all(|c| c.is_ascii_digit()) {
        return Err(ParseError::drop("status code is not three digits"));
    }
    let status: u16 = code
        .parse()
        .map_err(|_| ParseError::drop("bad status code"))?;
    if !(100..=699).contains(&status) {
        return Err(ParseError::drop("status code out of range"));
    }
    if let Some(f) = head.fault {
        return Err(ParseError::drop(f));
    }
    let body = frame_body(&head.headers, head.body, framing).map_err(|e| ParseError::drop(e.1))?;
    check_common_headers(&head.headers).map_err(ParseError::drop)?;
    let cseq = head.headers.get(&HeaderName::CSeq).unwrap_or_default();
    parse_cseq(cseq).map_err(ParseError::drop)?;
    Ok(Response {
        status,
        reason: reason.to_string(),
        headers: head.headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::SipHeaders;

    const OPTIONS: &[u8] = b"OPTIONS sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1;rport\r\n\
Max-Forwards: 70\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\n\
Call-ID: abc@host\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn parses_and_round_trips() {
        let Message::Request(r) = parse_datagram(OPTIONS).unwrap() else {
            panic!("not a request")
        };
        assert_eq!(r.method, Method::Options);
        assert_eq!(r.cseq(), Some((1, Method::Options)));
        assert_eq!(r.top_via().unwrap().branch(), Some("z9hG4bK-1"));
        let again = parse_datagram(&r.to_bytes()).unwrap();
        assert_eq!(again, Message::Request(r));
    }

    /// The one-pass head splitter agrees with the general one wherever it accepts a message:
    /// every message below with each interesting byte inserted at, or replacing, every offset.
    #[test]
    fn plain_head_split_agrees_with_general() {
        let samples: [&[u8]; 3] = [
            OPTIONS,
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKa\r\nf: <sip:a@b>;tag=1\r\nTo: <sip:x@y>;tag=2\r\ni: c1\r\nCSeq: 1 INVITE\r\nX-\xc3\xa9: \xc2\xa0v\xc2\xa0\r\nl: 3\r\n\r\nabc",
            b"INVITE sip:x@y SIP/2.0\r\nSubject:\r\nA  :  b \r\nCall-ID:x\r\nContent-Length: 0\r\n\r\n",
        ];
        let bytes = [
            b' ', b'\t', b'\r', b'\n', b':', b',', b'"', b'<', 0xc3, 0x0b, b'a',
        ];
        let mut seen = 0;
        let mut check = |m: &[u8]| {
            let Some(plain) = split_head_plain(m) else {
                return;
            };
            seen += 1;
            let general = split_head_general(m).expect("the general path accepts it too");
            assert_eq!(plain.start_line, general.start_line, "{m:?}");
            assert_eq!(plain.headers, general.headers, "{m:?}");
            assert_eq!(plain.fault, general.fault, "{m:?}");
            assert_eq!(plain.body, general.body, "{m:?}");
        };
        for m in samples {
            check(m);
            for i in 0..=m.len() {
                for b in bytes {
                    let mut v = m.to_vec();
                    v.insert(i, b);
                    check(&v);
                    if i < m.len() {
                        let mut v = m.to_vec();
                        v[i] = b;
                        check(&v);
                    }
                }
            }
        }
        assert!(seen > 1000, "{seen}");
    }

    #[test]
    fn compact_and_folded_headers() {
        let m = b"INVITE sip:x@y SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bKa\r\nf: <sip:a@b>;tag=1\r\nt:\r\n  <sip:x@y>\r\ni: c1\r\nCSeq: 1 INVITE\r\nl: 0\r\n\r\n";
        let Message::Request(r) = parse_datagram(m).unwrap() else {
            panic!("not a request")
        };
        assert_eq!(r.call_id(), Some("c1"));
        assert_eq!(r.headers.get(&HeaderName::To), Some("<sip:x@y>"));
    }

    #[test]
    fn faults_are_named() {
        let e =
            parse_datagram(b"OPTIONS sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n\r\n").unwrap_err();
        assert_eq!(e.status, 400);
        assert_eq!(e.reason, "Missing From header");
        let e =
            parse_datagram(b"OPTIONS sip:x@y SIP/7.0\r\nVia: SIP/2.0/UDP h\r\n\r\n").unwrap_err();
        assert_eq!(e.status, 505);
        assert_eq!(
            parse_datagram(b"SIP/2.0 4294967301 Huge\r\n\r\n")
                .unwrap_err()
                .status,
            0
        );
    }
}
