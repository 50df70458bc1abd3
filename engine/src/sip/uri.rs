//! URI checks the engine needs before routing: the scheme, and the structure of a SIP/SIPS
//! Request-URI. Full typed URIs come from rsipstack's codec ([`to_rsip`]).

/// The URI scheme class, as far as this engine cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchemeKind {
    /// `sip:`
    Sip,
    /// `sips:`
    Sips,
    /// `tel:`
    Tel,
    /// Any other syntactically valid scheme (answered with 416 in a Request-URI).
    Other,
}

/// Extracts and classifies the scheme of an absolute URI (`scheme = ALPHA *( ALPHA / DIGIT /
/// "+" / "-" / "." )` followed by `:`).
pub fn scheme(uri: &str) -> Result<SchemeKind, &'static str> {
    let b = uri.as_bytes();
    let colon = b
        .iter()
        .position(|&c| c == b':')
        .ok_or("URI without a scheme")?;
    let sch = &b[..colon];
    match sch.first() {
        Some(c) if c.is_ascii_alphabetic() => {}
        _ => return Err("URI scheme must start with a letter"),
    }
    if !sch[1..]
        .iter()
        .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
    {
        return Err("invalid character in URI scheme");
    }
    Ok(if sch.eq_ignore_ascii_case(b"sip") {
        SchemeKind::Sip
    } else if sch.eq_ignore_ascii_case(b"sips") {
        SchemeKind::Sips
    } else if sch.eq_ignore_ascii_case(b"tel") {
        SchemeKind::Tel
    } else {
        SchemeKind::Other
    })
}

/// Validates a Request-URI: no whitespace or brackets, a scheme, and for SIP/SIPS a host part
/// and no `?headers` (RFC 3261 §19.1.1: headers are not allowed in a Request-URI).
pub fn check_request_uri(uri: &str) -> Result<SchemeKind, &'static str> {
    // `check_uri_chars` checks the scheme too, and says which.
    let kind = crate::sip::grammar::check_uri_chars(uri)?;
    if matches!(kind, SchemeKind::Sip | SchemeKind::Sips) {
        let rest = &uri[pos(uri, b':').map_or(0, |c| c + 1)..];
        // userinfo never holds an unescaped '@', so the host part follows the first one.
        let hostpart = pos(rest, b'@').map_or(rest, |at| &rest[at + 1..]);
        if pos(hostpart, b'?').is_some() {
            return Err("headers are not allowed in a Request-URI");
        }
        let host_end = pos(hostpart, b';').unwrap_or(hostpart.len());
        check_hostport(&hostpart[..host_end])?;
        if host_end < hostpart.len() {
            check_uri_params(&hostpart[host_end..])?;
        }
    }
    Ok(kind)
}

/// Where the ASCII byte `c` first occurs in `s` (a character boundary, so `s` may be sliced
/// there).
#[inline]
fn pos(s: &str, c: u8) -> Option<usize> {
    s.bytes().position(|b| b == c)
}

/// Validates `host[:port]` (hostname, IPv4 address or `[IPv6]`).
pub fn check_hostport(hp: &str) -> Result<(), &'static str> {
    let (host, port) = if let Some(rest) = hp.strip_prefix('[') {
        let end = rest.find(']').ok_or("unterminated IPv6 reference")?;
        if rest[..end].parse::<std::net::Ipv6Addr>().is_err() {
            return Err("invalid IPv6 address");
        }
        (None, &rest[end + 1..])
    } else {
        match pos(hp, b':') {
            Some(c) => (Some(&hp[..c]), &hp[c..]),
            None => (Some(hp), ""),
        }
    };
    if let Some(h) = host {
        if h.is_empty()
            || !h
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.')
        {
            return Err("invalid host");
        }
    }
    if !port.is_empty() {
        let digits = port.strip_prefix(':').ok_or("junk after host")?;
        if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|c| c.is_ascii_digit()) {
            return Err("invalid port");
        }
        if digits.parse::<u32>().map_or(true, |p| p > 65535) {
            return Err("port out of range");
        }
    }
    Ok(())
}

fn check_uri_params(params: &str) -> Result<(), &'static str> {
    for p in params.split(';').skip(1) {
        let name = p.split('=').next().unwrap_or("");
        if name.is_empty() {
            return Err("empty URI parameter");
        }
    }
    Ok(())
}

/// Parses a URI with rsipstack's codec, catching any panic inside it so that no input can
/// take the engine down.
pub fn to_rsip(uri: &str) -> Option<rsipstack::sip::Uri> {
    let owned = uri.to_string();
    std::panic::catch_unwind(move || rsipstack::sip::parse_uri(&owned).ok())
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_uris() {
        assert_eq!(
            check_request_uri("sip:vivekg@chair-dnrc.example.com;unknownparam"),
            Ok(SchemeKind::Sip)
        );
        assert_eq!(
            check_request_uri("nobodyKnowsThisScheme:totallyopaquecontent"),
            Ok(SchemeKind::Other)
        );
        assert_eq!(
            check_request_uri("soap.beep://192.0.2.103:3002"),
            Ok(SchemeKind::Other)
        );
        assert!(check_request_uri("<sip:user@example.com>").is_err());
        assert!(check_request_uri("sip:user@example.com?Route=%3Csip:example.com%3E").is_err());
        assert!(check_request_uri("sip:user;par=u%40example.net@example.com").is_ok());
        assert!(check_request_uri("sip:[2001:db8::10]:5070").is_ok());
        assert!(check_request_uri("sip:host:99999").is_err());
    }

    #[test]
    fn rsip_bridge() {
        assert!(to_rsip("sip:alice@example.com:5060").is_some());
    }
}
