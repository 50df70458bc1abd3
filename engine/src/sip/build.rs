//! Building responses from requests (RFC 3261 §8.2.6): Via, From, To, Call-ID and CSeq copied,
//! a To tag added to non-100 answers that lack one.

use super::header::{HeaderName, Headers};
use super::message::{Request, Response};
use bytes::Bytes;
use std::hash::{BuildHasher, Hash, Hasher};

/// The Server header value the engine sends.
pub const SERVER: &str = concat!("switchboard/", env!("CARGO_PKG_VERSION"));

/// The standard reason phrase of a status code.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        180 => "Ringing",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        603 => "Decline",
        _ => "Unknown",
    }
}

/// A response to `req` with the standard reason phrase.
pub fn response(req: &Request, status: u16) -> Response {
    response_with_reason(req, status, reason_phrase(status))
}

/// A response to `req` with a given reason phrase (control characters are removed, so a reason
/// built from input cannot break the Status-Line).
pub fn response_with_reason(req: &Request, status: u16, reason: &str) -> Response {
    response_to_headers(&req.headers, status, reason)
}

/// [`response_with_reason`] from the request's headers alone (all a response copies).
pub fn response_to_headers(headers: &Headers, status: u16, reason: &str) -> Response {
    let reason = if reason.contains(char::is_control) {
        reason.chars().filter(|c| !c.is_control()).collect()
    } else {
        reason.to_string()
    };
    let mut r = Response {
        status,
        reason,
        headers: Headers::with_capacity(8),
        body: Bytes::new(),
    };
    for h in headers.iter() {
        match h.name {
            HeaderName::Via | HeaderName::From | HeaderName::CallId | HeaderName::CSeq => {
                r.headers.push(h.name.clone(), h.value.clone())
            }
            HeaderName::To => {
                let mut to = h.value.clone();
                if status > 100 && !has_tag(&to) {
                    to.push_str(";tag=");
                    to.push_str(&local_tag_of(headers));
                }
                r.headers.push(HeaderName::To, to)
            }
            _ => {}
        }
    }
    r.headers.push(HeaderName::Server, SERVER);
    r
}

fn has_tag(to: &str) -> bool {
    crate::sip::grammar::parse_name_addr_ref(to).is_ok_and(|n| n.tag().is_some())
}

/// A To tag derived from the request's identity, so a retransmitted request that is answered
/// again (statelessly) gets the same tag.
pub fn local_tag(req: &Request) -> String {
    local_tag_of(&req.headers)
}

fn local_tag_of(headers: &Headers) -> String {
    // A fixed seed: the same request gets the same tag for the life of the process (and
    // across restarts), as the stateless answer to a retransmission needs.
    let mut h = foldhash::fast::FixedState::with_seed(0x7362_7461_6773).build_hasher();
    for name in [
        HeaderName::CallId,
        HeaderName::From,
        HeaderName::CSeq,
        HeaderName::Via,
    ] {
        headers.get(&name).hash(&mut h);
    }
    let n = h.finish();
    // `format!("sb{n:x}")`: hex without leading zeros.
    let digits = (64 - n.leading_zeros()).div_ceil(4).max(1);
    let mut tag = String::with_capacity(2 + 16);
    tag.push_str("sb");
    crate::dialog::push_hex(&mut tag, n, digits);
    tag
}
