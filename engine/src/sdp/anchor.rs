//! Anchoring a media stream on the engine's RTP relay, and the per-leg `o=` line.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;

use super::{Attribute, Connection, Direction, Origin, Sdp};

/// Media-level attributes removed by [`Sdp::rewrite_for_anchor`]: they describe transport
/// addresses of the original endpoint (or an ICE agent there) that the other leg must not use.
///
/// * `rtcp` (RFC 3605): the endpoint's RTCP address; the relay's RTCP port is RTP + 1, the RFC
///   3550 default, so no `a=rtcp` is needed.
/// * `rtcp-mux`, `rtcp-mux-only` (RFC 5761/8858): the relay receives RTCP on its own RTP + 1 port;
///   without the attribute in the answer both ends fall back to separate ports (RFC 5761 §5.1.1).
/// * ICE (RFC 8839): `candidate`, `remote-candidates`, `end-of-candidates`, `ice-ufrag`, `ice-pwd`,
///   `ice-options`, `ice-lite`, `ice-mismatch`, `ice-pacing`: the candidates point at the endpoint,
///   not the relay, and the relay does not run ICE.
pub const DROPPED_MEDIA_ATTRIBUTES: &[&str] = &[
    "rtcp",
    "rtcp-mux",
    "rtcp-mux-only",
    "candidate",
    "remote-candidates",
    "end-of-candidates",
    "ice-ufrag",
    "ice-pwd",
    "ice-options",
    "ice-lite",
    "ice-mismatch",
    "ice-pacing",
];

/// Session-level attributes removed by [`Sdp::rewrite_for_anchor`] (the ICE ones, see
/// [`DROPPED_MEDIA_ATTRIBUTES`]).
pub const DROPPED_SESSION_ATTRIBUTES: &[&str] = &[
    "ice-ufrag",
    "ice-pwd",
    "ice-options",
    "ice-lite",
    "ice-pacing",
];

/// Why a rewrite could not be done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AnchorError {
    /// The media index is out of range.
    #[error("no media section {0}")]
    NoSuchMedia(usize),
}

impl Sdp {
    /// Points media section `media_index` at the relay (`ip`, `port`), for sending to the other
    /// leg:
    ///
    /// * the section's port becomes `port`; its `c=` (if any) and the session-level `c=` (if any)
    ///   become `ip`; a section with neither gets a media-level `c=`. Other sections that relied
    ///   on the session-level `c=` get their old address pinned as their own `c=` so they do not
    ///   silently move;
    /// * an RFC 2543 hold (`c=0.0.0.0`) is turned into its RFC 3264 form: `sendrecv` → `sendonly`,
    ///   `recvonly` → `inactive` (the relay address replaces 0.0.0.0);
    /// * the attributes in [`DROPPED_MEDIA_ATTRIBUTES`] and [`DROPPED_SESSION_ATTRIBUTES`] are
    ///   removed;
    /// * the origin's version is incremented (RFC 3264 §8). A B2BUA should rather stamp its own
    ///   per-leg origin with [`LegOrigin::stamp`] afterwards, which also hides the other leg's
    ///   `o=` address.
    pub fn rewrite_for_anchor(
        &mut self,
        media_index: usize,
        ip: IpAddr,
        port: u16,
    ) -> Result<(), AnchorError> {
        if media_index >= self.media.len() {
            return Err(AnchorError::NoSuchMedia(media_index));
        }
        let old_hold = self
            .connection_for(media_index)
            .is_some_and(Connection::is_unspecified);
        let direction = self.direction(media_index);
        let ours = Connection::from_ip(ip);

        if let Some(session_c) = self.connection.replace(ours.clone()) {
            for (i, m) in self.media.iter_mut().enumerate() {
                if i != media_index && m.connection.is_none() {
                    m.connection = Some(session_c.clone());
                }
            }
        }
        self.attributes
            .retain(|a| !DROPPED_SESSION_ATTRIBUTES.contains(&a.name()));

        let Some(m) = self.media.get_mut(media_index) else {
            return Err(AnchorError::NoSuchMedia(media_index));
        };
        m.port = port;
        if m.connection.is_some() || self.connection.is_none() {
            m.connection = Some(ours);
        }
        m.attributes
            .retain(|a| !DROPPED_MEDIA_ATTRIBUTES.contains(&a.name()));
        if old_hold {
            m.set_direction(match direction {
                Direction::SendRecv => Direction::SendOnly,
                Direction::RecvOnly => Direction::Inactive,
                d => d,
            });
        }
        self.origin.session_version = self.origin.session_version.wrapping_add(1);
        Ok(())
    }

    /// Removes every attribute named `name`, session and media level (a small helper for
    /// callers that want to strip more than the rewrite does, e.g. `crypto`).
    pub fn remove_attribute(&mut self, name: &str) {
        let keep = |a: &Attribute| a.name() != name;
        self.attributes.retain(keep);
        for m in &mut self.media {
            m.attributes.retain(keep);
        }
    }
}

/// The engine's own `o=` line towards one leg of a call, stable for the life of the dialog.
///
/// RFC 3264 §8: every SDP sent in a session keeps the same session id and increments the version
/// by exactly one when the content changed, and keeps it when the SDP is identical (a re-INVITE
/// that only refreshes the session). A B2BUA relays the *other* leg's SDP, whose `o=` belongs to
/// another session, so it keeps one `LegOrigin` per leg and stamps each outgoing body with it.
#[derive(Clone, Debug)]
pub struct LegOrigin {
    origin: Origin,
    last: Option<u64>,
}

impl LegOrigin {
    /// An origin `o=- <session_id> <session_id> IN IP4|IP6 <ip>` (the first version equals the id,
    /// a common convention).
    pub fn new(session_id: u64, ip: IpAddr) -> LegOrigin {
        LegOrigin {
            origin: Origin::new("-", session_id, session_id, ip),
            last: None,
        }
    }

    /// [`LegOrigin::new`] with a random id below 2^62, so that peers that read it as a signed
    /// 64-bit integer can increment it for years.
    pub fn random(ip: IpAddr) -> LegOrigin {
        LegOrigin::new((rand::random::<u64>() >> 2).max(1), ip)
    }

    /// The origin the next unchanged body will carry.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// Replaces `sdp`'s `o=` line with this leg's origin, incrementing the version if the body
    /// differs from the last one stamped.
    pub fn stamp(&mut self, sdp: &mut Sdp) {
        let mut placeholder = self.origin.clone();
        placeholder.session_version = 0;
        sdp.origin = placeholder;
        let mut h = DefaultHasher::new();
        sdp.to_string().hash(&mut h);
        let digest = h.finish();
        if self.last.is_some_and(|last| last != digest) {
            self.origin.session_version = self.origin.session_version.wrapping_add(1);
        }
        self.last = Some(digest);
        sdp.origin = self.origin.clone();
    }
}
