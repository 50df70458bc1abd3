//! Dialog state (RFC 3261 §12) and the requests a B2BUA builds: in-dialog requests, ACK for a
//! 2xx, CANCEL for a pending INVITE, and new outgoing requests with this engine's Via and
//! Contact. Pure data and functions: no I/O.

use crate::server::BRANCH_PREFIX;
use crate::sip::grammar::{check_list, list_elems, parse_name_addr_ref, split_list};
use crate::sip::{HeaderName, Headers, Method, Request, Response, SipHeaders};
use crate::transaction::{Peer, TransportKind};
use bytes::Bytes;
use std::net::SocketAddr;

/// A fresh branch for a Via this engine creates (prefixed for loop detection): the prefix
/// and 96 random bits in hex.
pub fn new_branch() -> String {
    let bits: u128 = rand::random();
    let mut s = String::with_capacity(BRANCH_PREFIX.len() + 24);
    s.push_str(BRANCH_PREFIX);
    push_hex(&mut s, (bits >> 32) as u64, 16);
    push_hex(&mut s, bits as u64 & 0xffff_ffff, 8);
    s
}

/// A fresh tag for From/To: 48 random bits in hex.
pub fn new_tag() -> String {
    let mut s = String::with_capacity(12);
    push_hex(&mut s, rand::random::<u64>() & 0xffff_ffff_ffff, 12);
    s
}

/// Appends the low `digits` hex digits of `n` (lower case, leading zeros kept), as
/// `format!("{n:0digits$x}")` writes a number below `16^digits`.
pub(crate) fn push_hex(out: &mut String, n: u64, digits: u32) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for i in (0..digits).rev() {
        out.push(char::from(HEX[((n >> (4 * i)) & 0xf) as usize]));
    }
}

/// Our Via value for a request sent from `local` over `transport`.
pub fn via_value(local: SocketAddr, transport: TransportKind) -> String {
    format!(
        "SIP/2.0/{} {local};branch={};rport",
        transport.as_str(),
        new_branch()
    )
}

/// Our Contact value. Over TLS a `sips:` URI (RFC 5630 §3.1.3: `transport=tls` is
/// deprecated); over WebSocket `transport=ws`, with `sips:` for WSS (RFC 7118 §5.2).
pub fn contact_value(local: SocketAddr, transport: TransportKind) -> String {
    match transport {
        TransportKind::Udp => format!("<sip:switchboard@{local}>"),
        TransportKind::Tcp => format!("<sip:switchboard@{local};transport=tcp>"),
        TransportKind::Tls => format!("<sips:switchboard@{local}>"),
        TransportKind::Ws => format!("<sip:switchboard@{local};transport=ws>"),
        TransportKind::Wss => format!("<sips:switchboard@{local};transport=ws>"),
    }
}

/// Our Contact in a dialog with a peer whose URIs (Request-URI, Contact, remote target) are
/// `peer_uris`: over TLS a `sips:` URI only when the peer uses `sips:` itself (RFC 3261
/// §12.1.1), else `sip:…;transport=tls`, which clients that cannot send in-dialog requests to a
/// `sips:` target (baresip 1.0 / libre 1.1: ENOSYS) understand. Other transports as
/// [`contact_value`].
pub fn contact_for(local: SocketAddr, transport: TransportKind, peer_uris: &[&str]) -> String {
    let sips = peer_uris.iter().any(|u| {
        u.trim_start_matches(|c: char| c == '<' || c.is_whitespace())
            .get(..5)
            .is_some_and(|s| s.eq_ignore_ascii_case("sips:"))
    });
    if transport == TransportKind::Tls && !sips {
        return format!("<sip:switchboard@{local};transport=tls>");
    }
    contact_value(local, transport)
}

/// The URI inside a name-addr header value (`"A" <sip:a@b>;tag=1` → `sip:a@b`).
pub fn uri_of(value: &str) -> Option<String> {
    parse_name_addr_ref(value).ok().map(|n| n.uri.to_string())
}

/// The user part of a SIP URI (`sip:alice@host` → `alice`).
pub fn user_of(uri: &str) -> Option<&str> {
    let rest = uri.split_once(':')?.1;
    let at = rest.find('@')?;
    let user = &rest[..at];
    Some(user.split(';').next().unwrap_or(user))
}

/// One side of a dialog, as seen by this engine.
#[derive(Clone, Debug)]
pub struct Dialog {
    /// The Call-ID.
    pub call_id: String,
    /// Our tag.
    pub local_tag: String,
    /// The peer's tag.
    pub remote_tag: String,
    /// Our URI (From in requests we send), without tag.
    pub local_uri: String,
    /// The peer's URI (To in requests we send), without tag.
    pub remote_uri: String,
    /// Where in-dialog requests are addressed (the peer's Contact).
    pub remote_target: String,
    /// Route set, in the order Route headers are written.
    pub route_set: Vec<String>,
    /// The last CSeq number we used.
    pub local_cseq: u32,
    /// The flow the peer is reached on (symmetric: where its messages came from).
    pub peer: Peer,
    /// Our address for Via and Contact.
    pub local: SocketAddr,
}

fn header_uri(h: &Headers, name: &HeaderName) -> String {
    uri_and_tag(h, name).0
}

/// What `header_uri` and the tag accessor (`from_tag`, `to_tag`) say about one header, from
/// one parse: `<uri>` (or the raw value when it does not parse) and the tag.
fn uri_and_tag(h: &Headers, name: &HeaderName) -> (String, Option<String>) {
    let Some(v) = h.get(name) else {
        return (String::new(), None);
    };
    match parse_name_addr_ref(v) {
        Ok(n) => {
            let mut s = String::with_capacity(n.uri.len() + 2);
            s.push('<');
            s.push_str(n.uri);
            s.push('>');
            (s, n.tag().map(str::to_string))
        }
        Err(_) => (v.to_string(), None),
    }
}

fn contact_uri(h: &Headers) -> Option<String> {
    let c = h.get(&HeaderName::Contact)?;
    // The first element of a well-formed list.
    check_list(c).ok()?;
    let first = list_elems(c).next()?.ok()?;
    uri_of(first)
}

fn record_routes(h: &Headers) -> Vec<String> {
    h.get_all(&HeaderName::RecordRoute)
        .flat_map(|v| split_list(v).unwrap_or_default())
        .map(str::to_string)
        .collect()
}

impl Dialog {
    /// The dialog a UAS creates by answering `invite` with `local_tag`.
    pub fn uas(invite: &Request, local_tag: &str, peer: Peer, local: SocketAddr) -> Option<Dialog> {
        let call_id = invite.call_id()?.to_string();
        let (remote_uri, remote_tag) = uri_and_tag(&invite.headers, &HeaderName::From);
        Some(Dialog {
            call_id,
            local_tag: local_tag.to_string(),
            remote_tag: remote_tag.unwrap_or_default(),
            local_uri: header_uri(&invite.headers, &HeaderName::To),
            remote_uri,
            remote_target: contact_uri(&invite.headers).unwrap_or_else(|| invite.uri.clone()),
            route_set: record_routes(&invite.headers),
            local_cseq: rand::random::<u16>() as u32 + 1,
            peer,
            local,
        })
    }

    /// The dialog a UAC holds once `resp` (2xx or a tagged 1xx) answers the `invite` it sent.
    pub fn uac(invite: &Request, resp: &Response, peer: Peer, local: SocketAddr) -> Option<Dialog> {
        let mut routes = record_routes(&resp.headers);
        routes.reverse();
        let call_id = invite.call_id()?.to_string();
        let (local_uri, local_tag) = uri_and_tag(&invite.headers, &HeaderName::From);
        Some(Dialog {
            call_id,
            local_tag: local_tag.unwrap_or_default(),
            remote_tag: resp.to_tag().unwrap_or_default(),
            local_uri,
            remote_uri: header_uri(&invite.headers, &HeaderName::To),
            remote_target: contact_uri(&resp.headers).unwrap_or_else(|| invite.uri.clone()),
            route_set: routes,
            local_cseq: invite.cseq().map_or(1, |c| c.0),
            peer,
            local,
        })
    }

    fn base(&self, method: Method, cseq: u32, via: String) -> Request {
        let mut h = Headers::new();
        h.push(HeaderName::Via, via);
        h.push(HeaderName::MaxForwards, "70");
        h.push(
            HeaderName::From,
            format!("{};tag={}", self.local_uri, self.local_tag),
        );
        h.push(
            HeaderName::To,
            format!("{};tag={}", self.remote_uri, self.remote_tag),
        );
        h.push(HeaderName::CallId, self.call_id.clone());
        h.push(HeaderName::CSeq, format!("{cseq} {method}"));
        for r in &self.route_set {
            h.push(HeaderName::Route, r.clone());
        }
        Request {
            method,
            uri: self.remote_target.clone(),
            headers: h,
            body: Bytes::new(),
        }
    }

    /// A new in-dialog request (BYE, re-INVITE, UPDATE, INFO…) with the next CSeq.
    pub fn request(&mut self, method: Method) -> Request {
        self.local_cseq = self.local_cseq.wrapping_add(1);
        let mut r = self.base(
            method.clone(),
            self.local_cseq,
            via_value(self.local, self.peer.transport),
        );
        if matches!(method, Method::Invite | Method::Update) {
            r.headers.push(
                HeaderName::Contact,
                contact_for(self.local, self.peer.transport, &[&self.remote_target]),
            );
        }
        r
    }

    /// The ACK for a 2xx to the INVITE with CSeq number `invite_cseq` (a new transaction, RFC
    /// 3261 §13.2.2.4).
    pub fn ack(&self, invite_cseq: u32) -> Request {
        self.base(
            Method::Ack,
            invite_cseq,
            via_value(self.local, self.peer.transport),
        )
    }
}

/// The CANCEL for an INVITE this engine sent (RFC 3261 §9.1): same Request-URI, Call-ID, From,
/// To, CSeq number and top Via.
pub fn cancel_for(invite: &Request) -> Request {
    let mut h = Headers::new();
    if let Some(v) = invite.headers.get(&HeaderName::Via) {
        h.push(HeaderName::Via, v.to_string());
    }
    h.push(HeaderName::MaxForwards, "70");
    for name in [HeaderName::From, HeaderName::To, HeaderName::CallId] {
        if let Some(v) = invite.headers.get(&name) {
            h.push(name.clone(), v.to_string());
        }
    }
    let n = invite.cseq().map_or(1, |c| c.0);
    h.push(HeaderName::CSeq, format!("{n} CANCEL"));
    for r in invite.headers.get_all(&HeaderName::Route) {
        h.push(HeaderName::Route, r.to_string());
    }
    Request {
        method: Method::Cancel,
        uri: invite.uri.clone(),
        headers: h,
        body: Bytes::new(),
    }
}

/// A new out-of-dialog request from this engine (the B leg's INVITE): our Via and Contact, a
/// new From tag, and the given Call-ID.
#[allow(clippy::too_many_arguments)]
pub fn new_request(
    method: Method,
    request_uri: &str,
    from: &str,
    to: &str,
    call_id: &str,
    cseq: u32,
    local: SocketAddr,
    transport: TransportKind,
) -> Request {
    let mut h = Headers::new();
    h.push(HeaderName::Via, via_value(local, transport));
    h.push(HeaderName::MaxForwards, "70");
    h.push(HeaderName::From, format!("{from};tag={}", new_tag()));
    h.push(HeaderName::To, to.to_string());
    h.push(HeaderName::CallId, call_id.to_string());
    h.push(HeaderName::CSeq, format!("{cseq} {method}"));
    h.push(
        HeaderName::Contact,
        contact_for(local, transport, &[request_uri]),
    );
    Request {
        method,
        uri: request_uri.to_string(),
        headers: h,
        body: Bytes::new(),
    }
}

/// Adds our To tag to a response (for responses the TU builds itself).
pub fn with_to_tag(mut resp: Response, tag: &str) -> Response {
    if let Some(to) = resp.headers.get_mut(&HeaderName::To) {
        if let Ok(n) = crate::sip::grammar::parse_name_addr(to) {
            if n.tag().is_none() {
                to.push_str(";tag=");
                to.push_str(tag);
            }
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::{parse_datagram, Message};

    #[test]
    fn hex_as_format_writes_it() {
        for n in [0u64, 1, 0xabc, 0xffff_ffff, 0x0123_4567_89ab_cdef, u64::MAX] {
            let mut s = String::new();
            push_hex(&mut s, n, 16);
            assert_eq!(s, format!("{n:016x}"));
            let mut s = String::new();
            push_hex(&mut s, n & 0xffff_ffff_ffff, 12);
            assert_eq!(s, format!("{:012x}", n & 0xffff_ffff_ffff));
        }
        let b = new_branch();
        assert!(
            b.starts_with(BRANCH_PREFIX) && b.len() == BRANCH_PREFIX.len() + 24,
            "{b}"
        );
        assert_eq!(new_tag().len(), 12);
        assert_ne!(new_branch(), new_branch());
    }

    #[test]
    fn contact_and_via_per_transport() {
        let local: SocketAddr = "127.0.0.1:5061".parse().unwrap();
        assert_eq!(
            contact_value(local, TransportKind::Tls),
            "<sips:switchboard@127.0.0.1:5061>"
        );
        assert_eq!(
            contact_for(
                local,
                TransportKind::Tls,
                &["sip:bob@127.0.0.1:5061;transport=tls"]
            ),
            "<sip:switchboard@127.0.0.1:5061;transport=tls>"
        );
        assert_eq!(
            contact_for(local, TransportKind::Tls, &["<sips:bob@127.0.0.1:5061>"]),
            "<sips:switchboard@127.0.0.1:5061>"
        );
        assert_eq!(
            contact_value(local, TransportKind::Ws),
            "<sip:switchboard@127.0.0.1:5061;transport=ws>"
        );
        assert_eq!(
            contact_value(local, TransportKind::Wss),
            "<sips:switchboard@127.0.0.1:5061;transport=ws>"
        );
        assert!(via_value(local, TransportKind::Wss).starts_with("SIP/2.0/WSS 127.0.0.1:5061;"));
        assert!(via_value(local, TransportKind::Tls).starts_with("SIP/2.0/TLS 127.0.0.1:5061;"));
    }

    #[test]
    fn uac_dialog_builds_ack_and_bye() {
        let local: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        let peer = Peer::new(TransportKind::Udp, "127.0.0.1:5070".parse().unwrap());
        let inv = new_request(
            Method::Invite,
            "sip:bob@127.0.0.1:5070",
            "<sip:alice@sb>",
            "<sip:bob@sb>",
            "sb0-x@h",
            1,
            local,
            TransportKind::Udp,
        );
        let Message::Request(inv) = parse_datagram(&inv.to_bytes()).unwrap() else {
            panic!()
        };
        let mut resp = crate::sip::build::response(&inv, 200);
        resp.headers
            .push(HeaderName::Contact, "<sip:bob@127.0.0.1:5070>");
        resp.headers
            .push(HeaderName::RecordRoute, "<sip:p1;lr>, <sip:p2;lr>");
        let Message::Response(resp) = parse_datagram(&resp.to_bytes()).unwrap() else {
            panic!()
        };
        let mut d = Dialog::uac(&inv, &resp, peer, local).unwrap();
        assert_eq!(d.remote_target, "sip:bob@127.0.0.1:5070");
        assert_eq!(d.route_set, vec!["<sip:p2;lr>", "<sip:p1;lr>"]);
        let ack = d.ack(1);
        assert_eq!(ack.cseq().unwrap(), (1, Method::Ack));
        let bye = d.request(Method::Bye);
        assert_eq!(bye.cseq().unwrap(), (2, Method::Bye));
        assert_eq!(bye.to_tag(), resp.to_tag());
        assert!(parse_datagram(&bye.to_bytes()).is_ok());
        let c = cancel_for(&inv);
        assert_eq!(
            c.top_via().unwrap().branch(),
            inv.top_via().unwrap().branch()
        );
        assert!(parse_datagram(&c.to_bytes()).is_ok());
    }
}
