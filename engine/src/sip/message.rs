//! SIP requests and responses after parsing and validation, with typed accessors for the
//! fields the transaction and dialog layers need, and serialization.

use super::grammar::{parse_name_addr, parse_name_addr_ref, NameAddr};
use super::header::{HeaderName, Headers};
use super::method::Method;
use super::via::{Via, ViaRef};
use bytes::Bytes;

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
        self.top_via_ref()?.to_via().ok()
    }

    /// The topmost Via element read in place (no copies): `None` where
    /// [`top_via`](Self::top_via) is `None`.
    fn top_via_ref(&self) -> Option<ViaRef<'_>> {
        ViaRef::first_of_list(self.headers().get(&HeaderName::Via)?).ok()
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
        self.from_tag_ref().map(str::to_string)
    }

    /// The To tag.
    fn to_tag(&self) -> Option<String> {
        self.to_tag_ref().map(str::to_string)
    }

    /// The From tag, borrowed (no copies). (The name is the SIP term, not a conversion.)
    #[allow(clippy::wrong_self_convention)]
    fn from_tag_ref(&self) -> Option<&str> {
        parse_name_addr_ref(self.headers().get(&HeaderName::From)?)
            .ok()?
            .tag()
    }

    /// The To tag, borrowed (no copies).
    fn to_tag_ref(&self) -> Option<&str> {
        parse_name_addr_ref(self.headers().get(&HeaderName::To)?)
            .ok()?
            .tag()
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
        out.reserve(self.uri.len() + 64 + self.body.len());
        out.extend_from_slice(self.method.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.uri.as_bytes());
        out.extend_from_slice(b" SIP/2.0\r\n");
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
        self.to_tag_ref().is_some()
    }
}

impl Response {
    /// Serializes the response. Content-Length is always written from the body length.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.reserve(self.reason.len() + 64 + self.body.len());
        out.extend_from_slice(b"SIP/2.0 ");
        push_decimal(out, usize::from(self.status));
        out.push(b' ');
        out.extend_from_slice(self.reason.as_bytes());
        out.extend_from_slice(b"\r\n");
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
    out.extend_from_slice(b"Content-Length: ");
    push_decimal(out, body.len());
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
}

/// Appends `n` in decimal (what `write!(out, "{n}")` writes, without the formatting machinery).
fn push_decimal(out: &mut Vec<u8>, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}
