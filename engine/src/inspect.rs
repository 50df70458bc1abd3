//! Request inspection (RFC 3261 §8.2 and §16.3): the answers the engine gives on its own,
//! before any dialog or call logic sees a request. Pure functions: no I/O, no clock.
//!
//! Order follows RFC 3261: loop and hop-count checks, method inspection (§8.2.1), header
//! inspection (§8.2.2: Request-URI scheme, Require), content processing (§8.2.3), then the
//! Accept check of an INVITE.

use crate::sip::build::{response, response_with_reason};
use crate::sip::grammar::split_list;
use crate::sip::uri::{scheme, SchemeKind};
use crate::sip::{HeaderName, Method, Request, Response};

/// Methods this engine serves; sent in Allow.
pub const ALLOW: &str =
    "INVITE, ACK, BYE, CANCEL, OPTIONS, REGISTER, UPDATE, INFO, PRACK, REFER, NOTIFY";
/// Body types accepted; sent in Accept.
pub const ACCEPT: &str = "application/sdp";
/// Content encodings accepted; sent in Accept-Encoding.
pub const ACCEPT_ENCODING: &str = "identity";
/// Option tags supported (RFC 3261 §19.2); sent in Supported and checked against Require.
pub const SUPPORTED: &[&str] = &[
    crate::prack::OPTION_TAG,
    crate::session_timer::OPTION_TAG,
    REPLACES_TAG,
];
/// The option tag of RFC 3891 (`Require: replaces` on an INVITE with Replaces).
pub const REPLACES_TAG: &str = "replaces";

/// What the engine knows about itself when inspecting: enough to spot its own Via in a loop.
#[derive(Clone, Debug)]
pub struct LocalIdentity {
    /// `host:port` strings this engine puts in its Vias.
    pub sent_by: Vec<String>,
    /// The branch prefix of this engine's Vias.
    pub branch_prefix: String,
}

/// True when the engine implements `m`.
pub fn is_served(m: &Method) -> bool {
    matches!(
        m,
        Method::Invite
            | Method::Ack
            | Method::Bye
            | Method::Cancel
            | Method::Options
            | Method::Register
            | Method::Update
            | Method::Info
            | Method::Prack
            | Method::Refer
            | Method::Notify
    )
}

/// Inspects a request that passed the parser. `Some(response)` is the answer the engine must
/// send itself; `None` lets the request through. ACK never gets an answer.
pub fn inspect(req: &Request, local: &LocalIdentity) -> Option<Response> {
    if req.method == Method::Ack {
        return None;
    }
    if is_loop(req, local) {
        return Some(response(req, 482));
    }
    if req
        .headers
        .get(&HeaderName::MaxForwards)
        .and_then(|v| v.parse::<u8>().ok())
        == Some(0)
    {
        return Some(response(req, 483));
    }
    if !is_served(&req.method) {
        let code = if matches!(req.method, Method::Extension(_)) {
            501
        } else {
            405
        };
        let mut r = response(req, code);
        r.headers.push(HeaderName::Allow, ALLOW);
        return Some(r);
    }
    if matches!(scheme(&req.uri), Ok(SchemeKind::Other) | Err(_)) {
        return Some(response(req, 416));
    }
    if req.method != Method::Cancel {
        let unsupported = unsupported_requires(req);
        if !unsupported.is_empty() {
            let mut r = response(req, 420);
            r.headers
                .push(HeaderName::Unsupported, unsupported.join(", "));
            return Some(r);
        }
    }
    if let Some(r) = check_content(req) {
        return Some(r);
    }
    if req.method == Method::Invite && !accepts_sdp(req) {
        let mut r = response_with_reason(req, 406, "Not Acceptable: Accept lacks application/sdp");
        r.headers.push(
            HeaderName::Warning,
            "399 switchboard \"only application/sdp bodies are produced\"",
        );
        return Some(r);
    }
    None
}

/// The 200 answer to an OPTIONS addressed to the engine (RFC 3261 §11.2).
pub fn options_ok(req: &Request) -> Response {
    let mut r = response(req, 200);
    r.headers.push(HeaderName::Allow, ALLOW);
    r.headers.push(HeaderName::Accept, ACCEPT);
    r.headers.push(HeaderName::AcceptEncoding, ACCEPT_ENCODING);
    r.headers.push(HeaderName::AcceptLanguage, "en");
    r.headers.push(HeaderName::Supported, SUPPORTED.join(", "));
    r
}

/// True when a Via carries one of our sent-by values with our branch prefix: the request has
/// been here before (RFC 3261 §16.3 item 4, loop detection; answered 482).
fn is_loop(req: &Request, local: &LocalIdentity) -> bool {
    req.headers.get_all(&HeaderName::Via).any(|v| {
        crate::sip::Via::parse_list(v).is_ok_and(|vias| {
            vias.iter().any(|via| {
                let sent_by = match via.port {
                    Some(p) => format!("{}:{p}", via.host),
                    None => via.host.clone(),
                };
                via.branch()
                    .is_some_and(|b| b.starts_with(&local.branch_prefix))
                    && local
                        .sent_by
                        .iter()
                        .any(|s| s.eq_ignore_ascii_case(&sent_by))
            })
        })
    })
}

/// The option tags in Require that this engine does not support.
fn unsupported_requires(req: &Request) -> Vec<String> {
    req.headers
        .get_all(&HeaderName::Require)
        .flat_map(|v| split_list(v).unwrap_or_default())
        .filter(|tag| !SUPPORTED.iter().any(|s| s.eq_ignore_ascii_case(tag)))
        .map(str::to_string)
        .collect()
}

/// RFC 3261 §8.2.3: a body of a type or encoding we cannot read gets 415 with what we accept.
fn check_content(req: &Request) -> Option<Response> {
    if let Some(enc) = req.headers.get(&HeaderName::ContentEncoding) {
        let ok = split_list(enc)
            .unwrap_or_default()
            .iter()
            .all(|e| e.eq_ignore_ascii_case("identity"));
        if !ok {
            let mut r = response_with_reason(req, 415, "Unsupported Content-Encoding");
            r.headers.push(HeaderName::AcceptEncoding, ACCEPT_ENCODING);
            return Some(r);
        }
    }
    if req.body.is_empty() {
        return None;
    }
    // INFO bodies (DTMF relay, application events) belong to the call: the B2BUA reads the
    // DTMF ones and forwards the others to the other leg, whose endpoint decides. NOTIFY
    // bodies (the sipfrag of a REFER the engine sent) are the call's too.
    if matches!(req.method, Method::Info | Method::Notify) {
        return None;
    }
    let ctype = req.headers.get(&HeaderName::ContentType).unwrap_or("");
    let media = ctype.split(';').next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("application/sdp") {
        let mut r = response(req, 415);
        r.headers.push(HeaderName::Accept, ACCEPT);
        return Some(r);
    }
    None
}

/// False when an Accept header is present and none of its ranges covers application/sdp.
fn accepts_sdp(req: &Request) -> bool {
    let mut ranges = req.headers.get_all(&HeaderName::Accept).peekable();
    if ranges.peek().is_none() {
        return true;
    }
    ranges
        .flat_map(|v| split_list(v).unwrap_or_default())
        .any(|r| {
            let media = r.split(';').next().unwrap_or("").trim();
            ["application/sdp", "application/*", "*/*"]
                .iter()
                .any(|a| media.eq_ignore_ascii_case(a))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::{parse_datagram, Message};

    fn req(extra: &str, method: &str) -> Request {
        let m = format!(
            "{method} sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n\
From: <sip:a@b>;tag=1\r\nTo: <sip:x@y>\r\nCall-ID: c\r\nCSeq: 1 {method}\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        match parse_datagram(m.as_bytes()) {
            Ok(Message::Request(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    fn local() -> LocalIdentity {
        LocalIdentity {
            sent_by: vec!["127.0.0.1:5060".into()],
            branch_prefix: "z9hG4bK-sb".into(),
        }
    }

    #[test]
    fn answers() {
        let st = |r: Request| inspect(&r, &local()).map(|r| r.status);
        assert_eq!(st(req("", "OPTIONS")), None);
        assert_eq!(st(req("Max-Forwards: 0\r\n", "OPTIONS")), Some(483));
        assert_eq!(st(req("", "FOO")), Some(501));
        assert_eq!(st(req("", "REGISTER")), None);
        assert_eq!(st(req("", "SUBSCRIBE")), Some(405));
        assert_eq!(st(req("Require: nothere\r\n", "OPTIONS")), Some(420));
        assert_eq!(st(req("Accept: text/plain\r\n", "INVITE")), Some(406));
        assert_eq!(
            st(req(
                "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-sb-1\r\n",
                "OPTIONS"
            )),
            Some(482)
        );
        assert_eq!(st(req("", "ACK")), None);
    }
}
