//! DTLS-SRTP attributes (RFC 5763, RFC 8122, RFC 4145): reading the peer's `a=fingerprint` and
//! `a=setup`, and writing the engine's own in place of another leg's.

use super::{Attribute, MediaSection, Sdp};

/// Attributes that belong to one DTLS association and never cross to another leg.
pub const DTLS_ATTRIBUTES: &[&str] = &["fingerprint", "setup", "connection", "tls-id"];

/// `a=setup` (RFC 4145 §4): which side opens the DTLS association.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setup {
    /// `active`: this side is the DTLS client.
    Active,
    /// `passive`: this side is the DTLS server.
    Passive,
    /// `actpass`: either; the answerer chooses (an offerer's value).
    ActPass,
    /// `holdconn`: no association for now.
    HoldConn,
}

impl Setup {
    /// The SDP value.
    pub fn as_str(self) -> &'static str {
        match self {
            Setup::Active => "active",
            Setup::Passive => "passive",
            Setup::ActPass => "actpass",
            Setup::HoldConn => "holdconn",
        }
    }

    /// Parses an SDP value (case-insensitive).
    pub fn parse(value: &str) -> Option<Setup> {
        Some(match value.trim().to_ascii_lowercase().as_str() {
            "active" => Setup::Active,
            "passive" => Setup::Passive,
            "actpass" => Setup::ActPass,
            "holdconn" => Setup::HoldConn,
            _ => return None,
        })
    }
}

fn value<'a>(attrs: &'a [Attribute], name: &str) -> Option<&'a str> {
    attrs.iter().find_map(|a| match a {
        Attribute::Other { name: n, value } if n.eq_ignore_ascii_case(name) => value.as_deref(),
        _ => None,
    })
}

impl Sdp {
    /// The `a=fingerprint` value for media section `index`: its own, else the session's.
    pub fn fingerprint(&self, index: usize) -> Option<&str> {
        self.media
            .get(index)
            .and_then(|m| value(&m.attributes, "fingerprint"))
            .or_else(|| value(&self.attributes, "fingerprint"))
    }

    /// The `a=setup` of media section `index` (its own, else the session's); `None` when
    /// absent or unknown.
    pub fn setup(&self, index: usize) -> Option<Setup> {
        self.media
            .get(index)
            .and_then(|m| value(&m.attributes, "setup"))
            .or_else(|| value(&self.attributes, "setup"))
            .and_then(Setup::parse)
    }

    /// Removes the session-level DTLS attributes (before the SDP goes to another leg).
    pub fn clear_session_dtls(&mut self) {
        self.attributes
            .retain(|a| !DTLS_ATTRIBUTES.contains(&a.name()));
    }
}

impl MediaSection {
    /// Makes the section DTLS-SRTP with the engine's `fingerprint` (`sha-256 AB:…`) and `setup`:
    /// protocol `UDP/TLS/RTP/SAVP` (`…SAVPF` when it had feedback), no `a=crypto`, the other
    /// leg's DTLS attributes replaced.
    pub fn set_dtls(&mut self, fingerprint: &str, setup: Setup) {
        self.attributes
            .retain(|a| a.name() != "crypto" && !DTLS_ATTRIBUTES.contains(&a.name()));
        let feedback = self.proto.to_ascii_uppercase().ends_with('F');
        self.proto = if feedback {
            "UDP/TLS/RTP/SAVPF"
        } else {
            "UDP/TLS/RTP/SAVP"
        }
        .to_string();
        self.attributes.push(Attribute::Other {
            name: "fingerprint".into(),
            value: Some(fingerprint.to_string()),
        });
        self.attributes.push(Attribute::Other {
            name: "setup".into(),
            value: Some(setup.as_str().into()),
        });
    }

    /// Makes a DTLS-SRTP section plain `RTP/AVP` without DTLS attributes (the other leg's
    /// transport is the engine's business). Feedback (`…SAVPF`, always there in WebRTC-style
    /// offers) is not carried over: plain SIP phones refuse `RTP/AVPF`, and the relay does not
    /// translate RTCP feedback.
    pub fn clear_dtls(&mut self) {
        self.attributes
            .retain(|a| !DTLS_ATTRIBUTES.contains(&a.name()));
        self.proto = "RTP/AVP".to_string();
    }

    /// Adds `a=rtcp-mux` (RFC 5761) unless present.
    pub fn add_rtcp_mux(&mut self) {
        if !self.has_attribute("rtcp-mux") {
            self.attributes.push(Attribute::Other {
                name: "rtcp-mux".into(),
                value: None,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdp::MediaSecurity;

    const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
a=fingerprint:sha-256 AA:BB\r\nm=audio 4000 UDP/TLS/RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\n\
a=setup:actpass\r\na=rtcp-mux\r\n";

    #[test]
    fn reads_session_level_fingerprint_and_media_setup() {
        let sdp = Sdp::parse(OFFER).expect("valid");
        assert_eq!(sdp.media[0].security(), MediaSecurity::Dtls);
        assert_eq!(sdp.fingerprint(0), Some("sha-256 AA:BB"));
        assert_eq!(sdp.setup(0), Some(Setup::ActPass));
        assert_eq!(sdp.setup(1), None);
    }

    #[test]
    fn rewrites_both_ways() {
        let mut sdp = Sdp::parse(OFFER).expect("valid");
        sdp.clear_session_dtls();
        sdp.media[0].clear_dtls();
        assert_eq!(sdp.media[0].proto, "RTP/AVP");
        assert_eq!(sdp.fingerprint(0), None);
        assert_eq!(sdp.setup(0), None);
        sdp.media[0].set_dtls("sha-256 CC:DD", Setup::Active);
        sdp.media[0].add_rtcp_mux();
        sdp.media[0].add_rtcp_mux();
        let text = sdp.to_string();
        assert!(text.contains("m=audio 4000 UDP/TLS/RTP/SAVP 0"), "{text}");
        assert!(text.contains("a=fingerprint:sha-256 CC:DD"), "{text}");
        assert!(text.contains("a=setup:active"), "{text}");
        assert_eq!(text.matches("a=rtcp-mux").count(), 1, "{text}");
        for v in ["active", "PASSIVE", "actpass", "holdconn"] {
            assert!(Setup::parse(v).is_some());
        }
        assert!(Setup::parse("both").is_none());
    }
}
