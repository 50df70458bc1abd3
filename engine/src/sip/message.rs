//! SIP requests and responses after parsing and validation, with typed accessors for the
//! fields the transaction and dialog layers need, and serialization.

use super::grammar::{parse_name_addr, NameAddr};
use super::header::{HeaderName, Headers};
use super::method::Method;
use super::via::Via;
use bytes::Bytes;
use std::io::Write;

/// A SIP request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The Request-URI as received.
    pub uri: String,
    /// The headers in order.
    pub headers: Headers,
    /// The body (empty when none).
    pub body: Bytes,
}

/// A SIP response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The status code, 100..=699.
    pub status: u16,
    /// The reason phrase.
    pub reason: String,
    /// The headers in order.
    pub headers: Headers,
    /// The body (empty when none).
    pub body: Bytes,
}

/// A parsed SIP message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A request.
    Request(Request),
    /// A response.
    Response(Response),
}

/// Accessors shared by requests and responses.
pub trait SipHeaders {
    /// The headers.
    fn headers(&self) -> &Headers;

    /// The Call-ID.
    fn call_id(&self) -> Option<&str> {
        self.headers().get(&HeaderName::CallId)
    }

    /// The CSeq number and method.
    fn cseq(&self) -> Option<(u32, Method)> {
        parse_cseq(self.headers().get(&HeaderName::CSeq)?).ok()
    }

    /// The topmost Via element.
    fn top_via(&self) -> Option<Via> {
        let first = self.headers().get(&HeaderName::Via)?;
        Via::parse_list(first).ok()?.into_iter().next()
    }

    /// The From header as a name-addr.
    fn from(&self) -> Option<NameAddr> {
        parse_name_addr(self.headers().get(&HeaderName::From)?).ok()
    }

    /// The To header as a name-addr.
    fn to(&self) -> Option<NameAddr> {
        parse_name_addr(self.headers().get(&HeaderName::To)?).ok()
    }

    /// The From tag. (The name is the SIP term, not a conversion.)
    #[allow(clippy::wrong_self_convention)]
    fn from_tag(&self) -> Option<String> {
        self.from()?.tag().map(str::to_string)
    }

    /// The To tag.
    fn to_tag(&self) -> Option<String> {
        self.to()?.tag().map(str::to_string)
    }
}

impl SipHeaders for Request {
    fn headers(&self) -> &Headers {
        &self.headers
    }
}

impl SipHeaders for Response {
    fn headers(&self) -> &Headers {
        &self.headers
    }
}

/// Parses a CSeq value: `1*DIGIT LWS Method`, the number below 2^32.
pub fn parse_cseq(value: &str) -> Result<(u32, Method), &'static str> {
    let mut it = value.split_ascii_whitespace();
    let num = it.next().ok_or("empty CSeq")?;
    let method = it.next().ok_or("CSeq without method")?;
    if it.next().is_some() {
        return Err("junk after CSeq method");
    }
    if !num.bytes().all(|c| c.is_ascii_digit()) {
        return Err("CSeq number is not a number");
    }
    let n: u32 = num
        .parse()
        .map_err(|_| "CSeq number does not fit in 32 bits")?;
    if !super::grammar::is_token(method) {
        return Err("CSeq method is not a token");
    }
    Ok((n, Method::from_token(method)))
}

impl Request {
    /// Serializes the request. Content-Length is always written from the body length.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let _ = write!(out, "{} {} SIP/2.0\r\n", self.method, self.uri);
        encode_tail(&self.headers, &self.body, out);
    }

    /// Serializes into a new buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(512 + self.body.len());
        self.encode(&mut v);
        v
    }

    /// True when the To header has a tag: the request belongs to an existing dialog.
    pub fn in_dialog(&self) -> bool {
        self.to_tag().is_some()
    }
}

impl Response {
    /// Serializes the response. Content-Length is always written from the body length.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let _ = write!(out, "SIP/2.0 {} {}\r\n", self.status, self.reason);
        encode_tail(&self.headers, &self.body, out);
    }

    /// Serializes into a new buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(512 + self.body.len());
        self.encode(&mut v);
        v
    }
}

impl Message {
    /// Serializes the message.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Message::Request(r) => r.encode(out),
            Message::Response(r) => r.encode(out),
        }
    }

    /// Serializes into a new buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Message::Request(r) => r.to_bytes(),
            Message::Response(r) => r.to_bytes(),
        }
    }

    /// The headers.
    pub fn headers(&self) -> &Headers {
        match self {
            Message::Request(r) => &r.headers,
            Message::Response(r) => &r.headers,
        }
    }
}

fn encode_tail(headers: &Headers, body: &[u8], out: &mut Vec<u8>) {
    for h in headers.iter() {
        if h.name == HeaderName::ContentLength {
            continue;
        }
        out.extend_from_slice(h.name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let _ = write!(out, "Content-Length: {}\r\n\r\n", body.len());
    out.extend_from_slice(body);
}
