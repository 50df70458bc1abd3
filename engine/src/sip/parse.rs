//! The wire parser: bytes to a validated [`Message`], or a [`ParseError`] that says which
//! answer (400 / 505, with a reason phrase naming the fault) the sender gets, or that the
//! message is to be dropped.
//!
//! Validation is eager (unlike rsipstack's lazily typed headers) because a message that reaches
//! the transaction layer must already be known good: request line, mandatory headers, single
//! values where the RFC wants one, CSeq against the method, Via, From/To/Contact syntax and
//! Content-Length framing (RFC 3261 §7, §8.2, §18.3 and the RFC 4475 torture cases).

use super::grammar::{check_list, find_param_in, is_token, list_elems, parse_name_addr_ref};
use super::header::{HeaderName, Headers};
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
    for name in [
        HeaderName::Via,
        HeaderName::From,
        HeaderName::To,
        HeaderName::CallId,
        HeaderName::CSeq,
    ] {
        if h.count(&name) == 0 {
            return Err(format!("Missing {name} header"));
        }
    }
    for name in [
        HeaderName::From,
        HeaderName::To,
        HeaderName::CallId,
        HeaderName::CSeq,
        HeaderName::MaxForwards,
        HeaderName::ContentType,
    ] {
        if h.count(&name) > 1 {
            return Err(format!("Multiple {name} headers"));
        }
    }
    for v in h.get_all(&HeaderName::Via) {
        let malformed = |e: &str| format!("Malformed Via: {e}");
        check_list(v).map_err(malformed)?;
        for elem in list_elems(v) {
            ViaRef::parse(elem.map_err(malformed)?).map_err(malformed)?;
        }
    }
    for name in [HeaderName::From, HeaderName::To] {
        let v = h.get(&name).unwrap_or_default();
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
        let na = parse_name_addr_ref(first).map_err(|e| format!("Malformed {name}: {e}"))?;
        if find_param_in(na.params, "tag").is_some_and(|v| v.is_none()) {
            return Err(format!("Malformed {name}: tag without a value"));
        }
    }
    let call_id = h.get(&HeaderName::CallId).unwrap_or_default();
    if call_id.is_empty() || call_id.contains([' ', '\t', ',']) {
        return Err("Malformed Call-ID".into());
    }
    Ok(())
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
