//! Where a request came from and where its responses go: RFC 3261 §18.2.1 (`received`),
//! RFC 3581 (`rport`) and RFC 3261 §18.2.2 (sending responses).

use crate::sip::grammar::split_list;
use crate::sip::{HeaderName, Request, Response, SipHeaders, Via};
use std::net::{IpAddr, SocketAddr};

/// Stamps the top Via of a received request with `received` (when the sent-by host is not the
/// source address) and fills an empty `rport` with the source port.
pub fn stamp_received(req: &mut Request, src: SocketAddr) {
    let Some(first) = req.headers.get_mut(&HeaderName::Via) else {
        return;
    };
    let Ok(items) = split_list(first) else { return };
    let Some(Ok(mut via)) = items.first().map(|v| Via::parse(v)) else {
        return;
    };
    let host_is_src = via.host.trim_matches(['[', ']']).parse::<IpAddr>().ok() == Some(src.ip());
    let wants_rport = via.has_param("rport");
    if host_is_src && !wants_rport {
        return;
    }
    if !host_is_src || wants_rport {
        via.set_param("received", Some(src.ip().to_string()));
    }
    if wants_rport {
        via.set_param("rport", Some(src.port().to_string()));
    }
    let mut value = via.to_string();
    for rest in &items[1..] {
        value.push_str(", ");
        value.push_str(rest);
    }
    *first = value;
}

/// The UDP destination of a response (RFC 3261 §18.2.2 / RFC 3581 §4): `received` with
/// `rport`, else `received` with the sent-by port, else the sent-by address when it is an IP,
/// else the source of the request. Never a name lookup.
pub fn response_destination(resp: &Response, source: SocketAddr) -> SocketAddr {
    let Some(via) = resp.top_via() else {
        return source;
    };
    let port = via.port.unwrap_or(5060);
    if let Some(ip) = via
        .param("received")
        .and_then(|r| r.trim_matches(['[', ']']).parse::<IpAddr>().ok())
    {
        let port = via
            .param("rport")
            .and_then(|p| p.parse().ok())
            .unwrap_or(port);
        return SocketAddr::new(ip, port);
    }
    match via.host.trim_matches(['[', ']']).parse::<IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, port),
        Err(_) => source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::build::response;
    use crate::sip::{parse_datagram, Message};

    fn req(via: &str) -> Request {
        let m = format!("OPTIONS sip:x@y SIP/2.0\r\nVia: {via}\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:x@y>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n");
        match parse_datagram(m.as_bytes()) {
            Ok(Message::Request(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rport_and_received() {
        let src: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let mut r = req("SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK1;rport, SIP/2.0/UDP 10.0.0.1");
        stamp_received(&mut r, src);
        let via = r.top_via().unwrap();
        assert_eq!(via.param("received"), Some("127.0.0.1"));
        assert_eq!(via.param("rport"), Some("40000"));
        assert_eq!(
            r.headers
                .get(&HeaderName::Via)
                .unwrap()
                .matches("SIP/2.0")
                .count(),
            2
        );
        assert_eq!(response_destination(&response(&r, 200), src), src);

        let mut r = req("SIP/2.0/UDP host.example.com;branch=z9hG4bK1");
        stamp_received(&mut r, src);
        assert_eq!(
            response_destination(&response(&r, 200), src),
            "127.0.0.1:5060".parse().unwrap()
        );

        let mut r = req("SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1");
        stamp_received(&mut r, src);
        assert_eq!(r.top_via().unwrap().param("received"), None);
        assert_eq!(
            response_destination(&response(&r, 200), src),
            "127.0.0.1:5070".parse().unwrap()
        );
    }
}
