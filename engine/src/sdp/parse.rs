//! The SDP parser: line splitting, the structural lines (`v o s c m`) and the typed attributes.
//!
//! Strict where the engine depends on a value (`v=0` first, `o=`, `c=`, `m=` and RTP payload type
//! numbers), lenient elsewhere: an `a=` line whose value does not parse as the typed attribute is
//! kept as [`Attribute::Other`], unknown line letters are kept verbatim, missing `s=`/`t=` lines
//! are tolerated, empty lines are skipped.

use super::{
    Attribute, Connection, Direction, Fmtp, Line, MediaSection, Origin, Rtcp, RtpMap, Sdp,
};

/// Why a body is not acceptable SDP, and on which line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("SDP line {line}: {kind} (`{text}`)")]
pub struct SdpError {
    /// 1-based line number (0 when the body is empty).
    pub line: usize,
    /// The offending line, truncated to 80 characters.
    pub text: String,
    /// What is wrong with it.
    pub kind: SdpErrorKind,
}

/// The kinds of [`SdpError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SdpErrorKind {
    /// No lines at all.
    #[error("empty body")]
    Empty,
    /// The body is not UTF-8.
    #[error("not UTF-8")]
    NotUtf8,
    /// Not `<letter>=<value>`.
    #[error("not a `<type>=<value>` line")]
    Syntax,
    /// The first line is not `v=`.
    #[error("the body does not start with v=")]
    MissingVersion,
    /// `v=` other than 0.
    #[error("unsupported SDP version")]
    UnsupportedVersion,
    /// No `o=` line before the first `m=`.
    #[error("missing o= line")]
    MissingOrigin,
    /// A second `v=`, `o=` or `s=` line.
    #[error("duplicate line")]
    Duplicate,
    /// A malformed `o=` line.
    #[error("malformed o= line")]
    BadOrigin,
    /// A malformed `c=` line.
    #[error("malformed c= line")]
    BadConnection,
    /// A malformed `m=` line.
    #[error("malformed m= line")]
    BadMedia,
    /// An RTP format that is not a payload type number 0..=127.
    #[error("bad RTP payload type")]
    BadPayloadType,
}

fn err(line: usize, text: &str, kind: SdpErrorKind) -> SdpError {
    let text = match text.char_indices().nth(80) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    };
    SdpError { line, text, kind }
}

pub(super) fn not_utf8(bytes: &[u8], valid_up_to: usize) -> SdpError {
    let head = bytes.get(..valid_up_to).unwrap_or(bytes);
    let line = head.iter().filter(|&&b| b == b'\n').count() + 1;
    err(line, "", SdpErrorKind::NotUtf8)
}

pub(super) fn parse(text: &str) -> Result<Sdp, SdpError> {
    let mut lines = text
        .split('\n')
        .enumerate()
        .map(|(i, l)| (i + 1, l.strip_suffix('\r').unwrap_or(l)))
        .filter(|(_, l)| !l.is_empty());

    let Some((n, first)) = lines.next() else {
        return Err(err(0, "", SdpErrorKind::Empty));
    };
    let (kind, value) = split_line(n, first)?;
    if kind != 'v' {
        return Err(err(n, first, SdpErrorKind::MissingVersion));
    }
    if value.trim() != "0" {
        return Err(err(n, first, SdpErrorKind::UnsupportedVersion));
    }

    let mut origin: Option<Origin> = None;
    let mut session_name: Option<String> = None;
    let mut connection = None;
    let mut attributes = Vec::new();
    let mut other = Vec::new();
    let mut media: Vec<MediaSection> = Vec::new();
    let mut last_line = n;

    for (n, line) in lines {
        last_line = n;
        let (kind, value) = split_line(n, line)?;
        if kind == 'm' {
            if origin.is_none() {
                return Err(err(n, line, SdpErrorKind::MissingOrigin));
            }
            media.push(parse_media(n, line, value)?);
            continue;
        }
        if let Some(m) = media.last_mut() {
            match kind {
                'c' if m.connection.is_none() => {
                    m.connection = Some(parse_connection(n, line, value)?)
                }
                'a' => m.attributes.push(parse_attribute(value)),
                'v' | 'o' | 's' => return Err(err(n, line, SdpErrorKind::Duplicate)),
                _ => m.other.push(Line {
                    kind,
                    value: value.to_string(),
                }),
            }
            continue;
        }
        match kind {
            'v' => return Err(err(n, line, SdpErrorKind::Duplicate)),
            'o' if origin.is_some() => return Err(err(n, line, SdpErrorKind::Duplicate)),
            'o' => origin = Some(parse_origin(n, line, value)?),
            's' if session_name.is_some() => return Err(err(n, line, SdpErrorKind::Duplicate)),
            's' => session_name = Some(value.to_string()),
            'c' if connection.is_none() => connection = Some(parse_connection(n, line, value)?),
            'a' => attributes.push(parse_attribute(value)),
            _ => other.push(Line {
                kind,
                value: value.to_string(),
            }),
        }
    }

    let Some(origin) = origin else {
        return Err(err(last_line, "", SdpErrorKind::MissingOrigin));
    };
    Ok(Sdp {
        origin,
        session_name: session_name.unwrap_or_else(|| "-".into()),
        connection,
        attributes,
        other,
        media,
    })
}

fn split_line(n: usize, line: &str) -> Result<(char, &str), SdpError> {
    let mut chars = line.chars();
    match (chars.next(), chars.next()) {
        (Some(kind), Some('=')) if kind.is_ascii_alphabetic() => Ok((kind, chars.as_str())),
        _ => Err(err(n, line, SdpErrorKind::Syntax)),
    }
}

fn parse_origin(n: usize, line: &str, value: &str) -> Result<Origin, SdpError> {
    let f: Vec<&str> = value.split_ascii_whitespace().collect();
    let [username, session_id, version, net_type, addr_type, address] = f[..] else {
        return Err(err(n, line, SdpErrorKind::BadOrigin));
    };
    let session_version = version
        .parse()
        .map_err(|_| err(n, line, SdpErrorKind::BadOrigin))?;
    Ok(Origin {
        username: username.into(),
        session_id: session_id.into(),
        session_version,
        net_type: net_type.into(),
        addr_type: addr_type.into(),
        address: address.into(),
    })
}

fn parse_connection(n: usize, line: &str, value: &str) -> Result<Connection, SdpError> {
    let f: Vec<&str> = value.split_ascii_whitespace().collect();
    let [net_type, addr_type, address] = f[..] else {
        return Err(err(n, line, SdpErrorKind::BadConnection));
    };
    let c = Connection {
        net_type: net_type.into(),
        addr_type: addr_type.into(),
        address: address.into(),
    };
    // An IP4/IP6 literal must match its address type; host names are legal (RFC 4566 §5.7).
    let ok = match (addr_type, c.ip()) {
        ("IP4", Some(ip)) => ip.is_ipv4(),
        ("IP6", Some(ip)) => ip.is_ipv6(),
        _ => true,
    };
    if !ok {
        return Err(err(n, line, SdpErrorKind::BadConnection));
    }
    Ok(c)
}

fn parse_media(n: usize, line: &str, value: &str) -> Result<MediaSection, SdpError> {
    let mut f = value.split_ascii_whitespace();
    let (Some(media), Some(port), Some(proto)) = (f.next(), f.next(), f.next()) else {
        return Err(err(n, line, SdpErrorKind::BadMedia));
    };
    let bad = || err(n, line, SdpErrorKind::BadMedia);
    let (port, port_count) = match port.split_once('/') {
        Some((p, c)) => (
            p.parse().map_err(|_| bad())?,
            Some(c.parse().map_err(|_| bad())?),
        ),
        None => (port.parse().map_err(|_| bad())?, None),
    };
    let formats: Vec<String> = f.map(str::to_string).collect();
    let m = MediaSection {
        media: media.into(),
        port,
        port_count,
        proto: proto.into(),
        formats,
        connection: None,
        attributes: Vec::new(),
        other: Vec::new(),
    };
    if m.is_rtp() && m.formats.iter().any(|f| parse_pt(f).is_none()) {
        return Err(err(n, line, SdpErrorKind::BadPayloadType));
    }
    Ok(m)
}

fn parse_pt(s: &str) -> Option<u8> {
    s.parse::<u8>().ok().filter(|&pt| pt <= 127)
}

fn parse_attribute(value: &str) -> Attribute {
    let (name, v) = match value.split_once(':') {
        Some((name, v)) => (name, Some(v)),
        None => (value, None),
    };
    let typed = match (name, v) {
        ("rtpmap", Some(v)) => parse_rtpmap(v).map(Attribute::Rtpmap),
        ("fmtp", Some(v)) => parse_fmtp(v).map(Attribute::Fmtp),
        ("ptime", Some(v)) => v.trim().parse().ok().map(Attribute::Ptime),
        ("rtcp", Some(v)) => parse_rtcp(v).map(Attribute::Rtcp),
        (name, None) => Direction::from_name(name).map(Attribute::Direction),
        _ => None,
    };
    typed.unwrap_or_else(|| Attribute::Other {
        name: name.to_string(),
        value: v.map(str::to_string),
    })
}

fn parse_rtpmap(v: &str) -> Option<RtpMap> {
    let (pt, rest) = v.trim().split_once(' ')?;
    let mut parts = rest.trim().split('/');
    let encoding = parts.next().filter(|e| !e.is_empty())?;
    let clock_rate = parts.next()?.parse().ok()?;
    let channels = match parts.next() {
        Some(c) => Some(c.parse().ok()?),
        None => None,
    };
    if parts.next().is_some() {
        return None;
    }
    Some(RtpMap {
        payload_type: parse_pt(pt)?,
        encoding: encoding.to_string(),
        clock_rate,
        channels,
    })
}

fn parse_fmtp(v: &str) -> Option<Fmtp> {
    let (pt, params) = v.split_once(' ')?;
    Some(Fmtp {
        payload_type: parse_pt(pt)?,
        params: params.to_string(),
    })
}

fn parse_rtcp(v: &str) -> Option<Rtcp> {
    let f: Vec<&str> = v.split_ascii_whitespace().collect();
    match f[..] {
        [port] => Some(Rtcp {
            port: port.parse().ok()?,
            connection: None,
        }),
        [port, net_type, addr_type, address] => Some(Rtcp {
            port: port.parse().ok()?,
            connection: Some(Connection {
                net_type: net_type.into(),
                addr_type: addr_type.into(),
                address: address.into(),
            }),
        }),
        _ => None,
    }
}
