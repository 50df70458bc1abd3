//! SDP (RFC 4566) for the B2BUA: a sans-IO model that parses a body, keeps every line it does not
//! interpret, and serializes back with CRLF; offer/answer helpers (RFC 3264) for the audio codecs
//! the engine relays; and the rewrite that anchors a media stream on the engine's own RTP relay.
//!
//! How the B2BUA uses it (one call, caller = leg A, callee = leg B):
//!
//! 1. INVITE from the caller: [`Sdp::parse`] the body (error → 400), [`filter_offer`] it, and if
//!    [`has_voice_codec`] is false answer 488. Allocate a relay session (`switchboard-media`),
//!    `set_remote(A, stream.rtp)` from [`Sdp::audio_stream`], then
//!    [`Sdp::rewrite_for_anchor`]`(index, relay_ip, relay_port_B)` and stamp the o= line with the
//!    B-side [`LegOrigin`] before sending the offer to the callee.
//! 2. Answer from the callee (183/200): parse, [`negotiate`] against the offer sent to the callee
//!    (error → CANCEL/BYE the callee, 488 to the caller), `set_remote(B, stream.rtp)`, rewrite with
//!    the A-side relay port, stamp with the A-side [`LegOrigin`], relay to the caller.
//! 3. re-INVITE: same steps in whichever direction; [`Sdp::is_on_hold`] tells a hold from an unhold
//!    (the relay keeps forwarding either way; reset its latch on unhold).
//!
//! Architecture invariant: no sockets, clocks or randomness here except [`LegOrigin::random`];
//! parsing never panics on any input (a fuzz target can call [`Sdp::parse_bytes`] directly).

mod anchor;
mod crypto;
mod dtls;
mod endpoint;
mod negotiate;
mod parse;
#[cfg(test)]
mod tests;

use std::fmt;
use std::net::{IpAddr, SocketAddr};

pub use anchor::{AnchorError, LegOrigin, DROPPED_MEDIA_ATTRIBUTES, DROPPED_SESSION_ATTRIBUTES};
pub use crypto::{Crypto, CryptoKey, MediaSecurity};
pub use dtls::{Setup, DTLS_ATTRIBUTES};
pub use endpoint::{answer_offer, endpoint_offer, OFFER_CODECS, OFFER_TELEPHONE_EVENT};
pub use negotiate::{
    filter_offer, has_voice_codec, negotiate, AudioStream, Codec, Format, Negotiated,
    NegotiationError,
};
pub use parse::{SdpError, SdpErrorKind};

/// A parsed session description.
///
/// Serialization (`Display`) writes the lines in RFC 4566 order (`v o s i u e p c b t r z k a`,
/// then each media section `m i c b k a`), CRLF-terminated. A body that already follows that order
/// round-trips byte for byte (modulo LF → CRLF); a body without `t=` gets `t=0 0`, one without `s=`
/// gets `s=-`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sdp {
    /// The `o=` line.
    pub origin: Origin,
    /// The `s=` value (`-` when the body had none).
    pub session_name: String,
    /// The session-level `c=` line, the default for media sections that have none.
    pub connection: Option<Connection>,
    /// Session-level `a=` lines, in order.
    pub attributes: Vec<Attribute>,
    /// Every other session-level line (`i u e p b t r z k` and unknown letters), in order.
    pub other: Vec<Line>,
    /// The media sections (`m=` lines and what follows each), in order.
    pub media: Vec<MediaSection>,
}

/// A line kept verbatim: its type letter and its value (after `=`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// The type letter (`b`, `t`, `k`, …).
    pub kind: char,
    /// Everything after the `=`.
    pub value: String,
}

/// The `o=` line: `o=<username> <sess-id> <sess-version> <nettype> <addrtype> <address>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// `-` when the originator has no user name.
    pub username: String,
    /// The session id, kept as text (it is only ever compared).
    pub session_id: String,
    /// The version, incremented by one on every changed offer or answer (RFC 3264 §8).
    pub session_version: u64,
    /// `IN`.
    pub net_type: String,
    /// `IP4` or `IP6`.
    pub addr_type: String,
    /// The originator's address (a literal IP or a host name).
    pub address: String,
}

/// A `c=` line: `c=<nettype> <addrtype> <connection-address>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connection {
    /// `IN`.
    pub net_type: String,
    /// `IP4` or `IP6`.
    pub addr_type: String,
    /// The address as written (may carry a multicast `/ttl` or be a host name).
    pub address: String,
}

/// One media section: the `m=` line and the lines that follow it up to the next `m=`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaSection {
    /// `audio`, `video`, `image`, `application`, …
    pub media: String,
    /// The transport port; 0 means the stream is disabled / rejected.
    pub port: u16,
    /// The `/<number of ports>` suffix, if any.
    pub port_count: Option<u16>,
    /// `RTP/AVP`, `RTP/SAVP`, `udptl`, …
    pub proto: String,
    /// The format list; payload type numbers for RTP protocols.
    pub formats: Vec<String>,
    /// The media-level `c=` line (the first one, if several; the others stay in `other`).
    pub connection: Option<Connection>,
    /// The `a=` lines, in order.
    pub attributes: Vec<Attribute>,
    /// Every other line (`i b k`, extra `c=`, unknown letters), in order.
    pub other: Vec<Line>,
}

/// An `a=` line. The attributes the engine interprets are typed; everything else (and a known
/// attribute whose value does not parse, such as RFC 4475's `a=rtpmap:31 LPC`) is kept as
/// [`Attribute::Other`] so it round-trips.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attribute {
    /// `a=rtpmap:<pt> <encoding>/<clock>[/<channels>]`.
    Rtpmap(RtpMap),
    /// `a=fmtp:<pt> <parameters>`.
    Fmtp(Fmtp),
    /// `a=ptime:<milliseconds>`.
    Ptime(u32),
    /// `a=sendrecv`, `a=sendonly`, `a=recvonly`, `a=inactive`.
    Direction(Direction),
    /// `a=rtcp:<port> [<nettype> <addrtype> <address>]` (RFC 3605).
    Rtcp(Rtcp),
    /// Any other attribute: `a=<name>` or `a=<name>:<value>`.
    Other {
        /// The name before the first `:`.
        name: String,
        /// The value after the first `:`, if there was a `:`.
        value: Option<String>,
    },
}

/// `a=rtpmap` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RtpMap {
    /// The payload type (0..=127).
    pub payload_type: u8,
    /// The encoding name as written (`PCMU`, `opus`, `telephone-event`).
    pub encoding: String,
    /// The RTP clock rate.
    pub clock_rate: u32,
    /// Encoding parameters (the channel count for audio).
    pub channels: Option<u16>,
}

/// `a=fmtp` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fmtp {
    /// The payload type (0..=127).
    pub payload_type: u8,
    /// The format parameters as written (`0-16`, `minptime=10;useinbandfec=1`).
    pub params: String,
}

/// `a=rtcp` value (RFC 3605).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rtcp {
    /// The RTCP port.
    pub port: u16,
    /// The RTCP address, when it differs from the media's `c=`.
    pub connection: Option<Connection>,
}

/// The media direction attribute (RFC 3264 §5.1). The default when absent is `SendRecv`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Direction {
    /// `a=sendrecv`.
    #[default]
    SendRecv,
    /// `a=sendonly`: the author only sends (a hold by the author).
    SendOnly,
    /// `a=recvonly`: the author only receives.
    RecvOnly,
    /// `a=inactive`: no media either way.
    Inactive,
}

impl Direction {
    /// The attribute name.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// Parses an attribute name.
    pub fn from_name(name: &str) -> Option<Direction> {
        match name {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }

    /// Whether the author of the SDP sends media.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Whether the author of the SDP receives media.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    /// The direction seen from the other end (`sendonly` ↔ `recvonly`): what an answerer that
    /// accepts everything would answer (RFC 3264 §6.1).
    pub fn reversed(self) -> Direction {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            other => other,
        }
    }
}

impl Connection {
    /// `IN IP4 <ip>` or `IN IP6 <ip>`.
    pub fn from_ip(ip: IpAddr) -> Connection {
        Connection {
            net_type: "IN".into(),
            addr_type: addr_type(ip).into(),
            address: ip.to_string(),
        }
    }

    /// The address as an IP, without a multicast `/ttl` suffix; `None` for a host name.
    pub fn ip(&self) -> Option<IpAddr> {
        let host = self.address.split('/').next().unwrap_or("");
        host.parse().ok()
    }

    /// `c=IN IP4 0.0.0.0` (or `::`): the RFC 2543 way to put a call on hold.
    pub fn is_unspecified(&self) -> bool {
        self.ip().is_some_and(|ip| ip.is_unspecified())
    }
}

impl Origin {
    /// An origin line for an address: `o=<username> <id> <version> IN IP4|IP6 <ip>`.
    pub fn new(username: &str, session_id: u64, session_version: u64, ip: IpAddr) -> Origin {
        Origin {
            username: username.into(),
            session_id: session_id.to_string(),
            session_version,
            net_type: "IN".into(),
            addr_type: addr_type(ip).into(),
            address: ip.to_string(),
        }
    }
}

impl Attribute {
    /// The attribute name (`rtpmap`, `sendonly`, `candidate`, …).
    pub fn name(&self) -> &str {
        match self {
            Attribute::Rtpmap(_) => "rtpmap",
            Attribute::Fmtp(_) => "fmtp",
            Attribute::Ptime(_) => "ptime",
            Attribute::Direction(d) => d.as_str(),
            Attribute::Rtcp(_) => "rtcp",
            Attribute::Other { name, .. } => name,
        }
    }

    /// The payload type an `rtpmap` or `fmtp` attribute is about.
    pub fn payload_type(&self) -> Option<u8> {
        match self {
            Attribute::Rtpmap(m) => Some(m.payload_type),
            Attribute::Fmtp(f) => Some(f.payload_type),
            _ => None,
        }
    }
}

impl Sdp {
    /// Parses a body (CRLF or LF line endings). Never panics; the error names the offending line.
    pub fn parse(text: &str) -> Result<Sdp, SdpError> {
        parse::parse(text)
    }

    /// Parses raw body bytes; non-UTF-8 content is an error naming the line.
    pub fn parse_bytes(bytes: &[u8]) -> Result<Sdp, SdpError> {
        match std::str::from_utf8(bytes) {
            Ok(text) => parse::parse(text),
            Err(e) => Err(parse::not_utf8(bytes, e.valid_up_to())),
        }
    }

    /// The `c=` that applies to media section `index` (its own, else the session's).
    pub fn connection_for(&self, index: usize) -> Option<&Connection> {
        let m = self.media.get(index)?;
        m.connection.as_ref().or(self.connection.as_ref())
    }

    /// The effective direction of media section `index`: its own attribute, else the session's,
    /// else `sendrecv`.
    pub fn direction(&self, index: usize) -> Direction {
        self.media
            .get(index)
            .and_then(MediaSection::direction)
            .or_else(|| direction_of(&self.attributes))
            .unwrap_or_default()
    }

    /// Where the author wants to receive RTP for media section `index`: its `c=` address and port.
    /// `None` when the section is disabled (port 0), has no literal IP, or is on hold with
    /// `c=0.0.0.0`.
    pub fn rtp_addr(&self, index: usize) -> Option<SocketAddr> {
        let m = self.media.get(index)?;
        let ip = self.connection_for(index)?.ip()?;
        if m.port == 0 || ip.is_unspecified() {
            return None;
        }
        Some(SocketAddr::new(ip, m.port))
    }

    /// Where the author wants to receive RTCP for media section `index`: `a=rtcp` if present, the
    /// RTP address with `a=rtcp-mux`, else RTP port + 1 (RFC 3550 §11).
    pub fn rtcp_addr(&self, index: usize) -> Option<SocketAddr> {
        let rtp = self.rtp_addr(index)?;
        let m = self.media.get(index)?;
        if let Some(rtcp) = m.rtcp() {
            let ip = rtcp
                .connection
                .as_ref()
                .and_then(Connection::ip)
                .unwrap_or(rtp.ip());
            return Some(SocketAddr::new(ip, rtcp.port));
        }
        if m.has_attribute("rtcp-mux") {
            return Some(rtp);
        }
        Some(SocketAddr::new(rtp.ip(), rtp.port().checked_add(1)?))
    }

    /// Whether media section `index` signals a hold: `a=sendonly`, `a=inactive` (RFC 3264 §8.4) or
    /// the RFC 2543 `c=0.0.0.0`.
    pub fn is_hold(&self, index: usize) -> bool {
        matches!(
            self.direction(index),
            Direction::SendOnly | Direction::Inactive
        ) || self
            .connection_for(index)
            .is_some_and(Connection::is_unspecified)
    }

    /// Whether the first active audio stream is on hold (see [`Sdp::is_hold`]); false without one.
    pub fn is_on_hold(&self) -> bool {
        self.audio_index().is_some_and(|i| self.is_hold(i))
    }

    /// The index of the first enabled (port ≠ 0) RTP audio section.
    pub fn audio_index(&self) -> Option<usize> {
        self.media
            .iter()
            .position(|m| m.media.eq_ignore_ascii_case("audio") && m.is_rtp() && m.port != 0)
    }
}

impl MediaSection {
    /// Whether the protocol is RTP-based (`RTP/AVP`, `RTP/SAVP`, `UDP/TLS/RTP/SAVPF`, …).
    pub fn is_rtp(&self) -> bool {
        self.proto.split('/').any(|p| p.eq_ignore_ascii_case("RTP"))
    }

    /// The numeric payload types of the format list, in order.
    pub fn payload_types(&self) -> Vec<u8> {
        self.formats.iter().filter_map(|f| f.parse().ok()).collect()
    }

    /// The `a=rtpmap` for a payload type.
    pub fn rtpmap(&self, pt: u8) -> Option<&RtpMap> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::Rtpmap(m) if m.payload_type == pt => Some(m),
            _ => None,
        })
    }

    /// The `a=fmtp` parameters for a payload type.
    pub fn fmtp(&self, pt: u8) -> Option<&str> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::Fmtp(f) if f.payload_type == pt => Some(f.params.as_str()),
            _ => None,
        })
    }

    /// `a=ptime`, in milliseconds.
    pub fn ptime(&self) -> Option<u32> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::Ptime(p) => Some(*p),
            _ => None,
        })
    }

    /// The media-level direction attribute, if present.
    pub fn direction(&self) -> Option<Direction> {
        direction_of(&self.attributes)
    }

    /// Sets (or replaces) the media-level direction attribute.
    pub fn set_direction(&mut self, direction: Direction) {
        match self
            .attributes
            .iter_mut()
            .find(|a| matches!(a, Attribute::Direction(_)))
        {
            Some(a) => *a = Attribute::Direction(direction),
            None => self.attributes.push(Attribute::Direction(direction)),
        }
    }

    /// `a=rtcp`, if present.
    pub fn rtcp(&self) -> Option<&Rtcp> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::Rtcp(r) => Some(r),
            _ => None,
        })
    }

    /// Whether an attribute with this name is present (`rtcp-mux`, `candidate`, …).
    pub fn has_attribute(&self, name: &str) -> bool {
        self.attributes.iter().any(|a| a.name() == name)
    }
}

fn direction_of(attributes: &[Attribute]) -> Option<Direction> {
    attributes.iter().find_map(|a| match a {
        Attribute::Direction(d) => Some(*d),
        _ => None,
    })
}

fn addr_type(ip: IpAddr) -> &'static str {
    match ip {
        IpAddr::V4(_) => "IP4",
        IpAddr::V6(_) => "IP6",
    }
}

impl fmt::Display for Sdp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("v=0\r\n")?;
        write!(f, "o={}\r\n", self.origin)?;
        write!(f, "s={}\r\n", self.session_name)?;
        let before_c = |l: &&Line| matches!(l.kind, 'i' | 'u' | 'e' | 'p');
        for l in self.other.iter().filter(before_c) {
            write!(f, "{l}\r\n")?;
        }
        if let Some(c) = &self.connection {
            write!(f, "c={c}\r\n")?;
        }
        let mut after: Vec<&Line> = self.other.iter().filter(|l| !before_c(l)).collect();
        if !after.iter().any(|l| l.kind == 't') {
            // RFC 4566 requires a t= line: put `t=0 0` after the b= lines.
            let at = after.iter().take_while(|l| l.kind == 'b').count();
            for l in &after[..at] {
                write!(f, "{l}\r\n")?;
            }
            f.write_str("t=0 0\r\n")?;
            after.drain(..at);
        }
        for l in after {
            write!(f, "{l}\r\n")?;
        }
        for a in &self.attributes {
            write!(f, "a={a}\r\n")?;
        }
        for m in &self.media {
            write!(f, "{m}")?;
        }
        Ok(())
    }
}

impl fmt::Display for MediaSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "m={} {}", self.media, self.port)?;
        if let Some(n) = self.port_count {
            write!(f, "/{n}")?;
        }
        write!(f, " {}", self.proto)?;
        for fmt_ in &self.formats {
            write!(f, " {fmt_}")?;
        }
        f.write_str("\r\n")?;
        for l in self.other.iter().filter(|l| l.kind == 'i') {
            write!(f, "{l}\r\n")?;
        }
        if let Some(c) = &self.connection {
            write!(f, "c={c}\r\n")?;
        }
        for l in self.other.iter().filter(|l| l.kind != 'i') {
            write!(f, "{l}\r\n")?;
        }
        for a in &self.attributes {
            write!(f, "a={a}\r\n")?;
        }
        Ok(())
    }
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.kind, self.value)
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {} {} {}",
            self.username,
            self.session_id,
            self.session_version,
            self.net_type,
            self.addr_type,
            self.address
        )
    }
}

impl fmt::Display for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.net_type, self.addr_type, self.address)
    }
}

impl fmt::Display for Attribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Attribute::Rtpmap(m) => {
                write!(
                    f,
                    "rtpmap:{} {}/{}",
                    m.payload_type, m.encoding, m.clock_rate
                )?;
                if let Some(ch) = m.channels {
                    write!(f, "/{ch}")?;
                }
                Ok(())
            }
            Attribute::Fmtp(p) => write!(f, "fmtp:{} {}", p.payload_type, p.params),
            Attribute::Ptime(p) => write!(f, "ptime:{p}"),
            Attribute::Direction(d) => f.write_str(d.as_str()),
            Attribute::Rtcp(r) => {
                write!(f, "rtcp:{}", r.port)?;
                if let Some(c) = &r.connection {
                    write!(f, " {c}")?;
                }
                Ok(())
            }
            Attribute::Other { name, value } => match value {
                Some(v) => write!(f, "{name}:{v}"),
                None => f.write_str(name),
            },
        }
    }
}
