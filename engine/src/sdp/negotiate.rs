//! RFC 3264 offer/answer for the audio the engine relays.
//!
//! Supported: PCMU (static 0), PCMA (static 8), G.722 (static 9), `telephone-event` (RFC 4733,
//! dynamic) and Opus (dynamic, 48000/2). Formats pass through the relay untouched when both legs
//! agree; the media plane transcodes when they differ. The B2BUA relays
//! the caller's offer to the callee and the callee's answer back, so it never builds an answer
//! itself: it filters the offer ([`filter_offer`]), checks that something usable is left
//! ([`has_voice_codec`], else 488) and validates the callee's answer ([`negotiate`]).

use std::net::SocketAddr;

use super::{Direction, MediaSection, RtpMap, Sdp};

/// An audio codec the engine accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 µ-law, payload type 0.
    Pcmu,
    /// G.711 A-law, payload type 8.
    Pcma,
    /// RFC 4733 DTMF events (dynamic payload type).
    TelephoneEvent,
    /// Opus (dynamic payload type, `opus/48000/2`).
    Opus,
    /// G.722 (static 9, `G722/8000` on the wire, 16 kHz audio).
    G722,
}

impl Codec {
    /// Identifies a payload type from its `a=rtpmap` (if any): static 0 and 8 need none; dynamic
    /// types are matched by encoding name (case-insensitive) and clock rate. `None` = unsupported.
    pub fn identify(payload_type: u8, rtpmap: Option<&RtpMap>) -> Option<Codec> {
        let Some(m) = rtpmap else {
            return match payload_type {
                0 => Some(Codec::Pcmu),
                8 => Some(Codec::Pcma),
                9 => Some(Codec::G722),
                _ => None,
            };
        };
        let name = m.encoding.to_ascii_lowercase();
        match (name.as_str(), m.clock_rate) {
            ("pcmu", 8000) => Some(Codec::Pcmu),
            ("pcma", 8000) => Some(Codec::Pcma),
            ("telephone-event", _) => Some(Codec::TelephoneEvent),
            ("opus", 48000) => Some(Codec::Opus),
            ("g722", 8000) => Some(Codec::G722),
            _ => None,
        }
    }

    /// Whether this codec carries voice (everything but `telephone-event`).
    pub fn is_voice(self) -> bool {
        self != Codec::TelephoneEvent
    }

    /// The rtpmap encoding name.
    pub fn encoding_name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
            Codec::TelephoneEvent => "telephone-event",
            Codec::Opus => "opus",
            Codec::G722 => "G722",
        }
    }

    /// The `a=rtpmap` clock rate and channel count written for this codec.
    pub fn rtpmap_clock(self) -> (u32, Option<u16>) {
        match self {
            Codec::Opus => (48000, Some(2)),
            _ => (8000, None),
        }
    }
}

/// One entry of an RTP format list with what the SDP says about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Format {
    /// The payload type.
    pub payload_type: u8,
    /// The codec, if the engine supports it.
    pub codec: Option<Codec>,
    /// Its `a=rtpmap`, if present.
    pub rtpmap: Option<RtpMap>,
    /// Its `a=fmtp` parameters, if present.
    pub fmtp: Option<String>,
}

/// What the B2BUA needs to know about the first active audio stream of an SDP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AudioStream {
    /// Index of the media section.
    pub index: usize,
    /// Where the author receives RTP (`None` on `c=0.0.0.0` or a host name).
    pub rtp: Option<SocketAddr>,
    /// Where the author receives RTCP (see [`Sdp::rtcp_addr`]).
    pub rtcp: Option<SocketAddr>,
    /// Whether the author offered/accepted `a=rtcp-mux`.
    pub rtcp_mux: bool,
    /// The formats, in the author's order of preference.
    pub formats: Vec<Format>,
    /// The effective direction.
    pub direction: Direction,
    /// Whether the stream signals a hold (see [`Sdp::is_hold`]).
    pub on_hold: bool,
    /// `a=ptime`, in milliseconds.
    pub ptime: Option<u32>,
}

/// The outcome of an offer/answer exchange for the anchored audio stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    /// Index of the audio media section (same in offer and answer).
    pub index: usize,
    /// The voice format the answerer will send: the first voice codec of the answer that the
    /// offer also lists.
    pub codec: Format,
    /// The answer's `telephone-event` payload type, when both sides list one.
    pub telephone_event: Option<u8>,
    /// The answer's direction.
    pub direction: Direction,
    /// Where the answerer receives RTP.
    pub remote_rtp: Option<SocketAddr>,
}

/// Why an answer does not fit its offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NegotiationError {
    /// RFC 3264 §6: the answer must have exactly as many m= lines as the offer.
    #[error("answer has {answer} media sections, offer has {offer}")]
    MediaCountMismatch {
        /// m= lines in the offer.
        offer: usize,
        /// m= lines in the answer.
        answer: usize,
    },
    /// The offer has no enabled RTP audio stream.
    #[error("offer has no active audio stream")]
    NoAudio,
    /// The answerer rejected the audio stream (port 0).
    #[error("answerer rejected the audio stream")]
    Rejected,
    /// No voice codec of the answer appears in the offer.
    #[error("no common voice codec")]
    NoCommonCodec,
}

impl MediaSection {
    /// The format list with codec identification, rtpmap and fmtp, in order.
    pub fn format_details(&self) -> Vec<Format> {
        self.payload_types()
            .into_iter()
            .map(|pt| {
                let rtpmap = self.rtpmap(pt).cloned();
                Format {
                    payload_type: pt,
                    codec: Codec::identify(pt, rtpmap.as_ref()),
                    rtpmap,
                    fmtp: self.fmtp(pt).map(str::to_string),
                }
            })
            .collect()
    }
}

impl Sdp {
    /// The first enabled RTP audio stream: address, formats, direction, hold.
    pub fn audio_stream(&self) -> Option<AudioStream> {
        let index = self.audio_index()?;
        let m = self.media.get(index)?;
        Some(AudioStream {
            index,
            rtp: self.rtp_addr(index),
            rtcp: self.rtcp_addr(index),
            rtcp_mux: m.has_attribute("rtcp-mux"),
            formats: m.format_details(),
            direction: self.direction(index),
            on_hold: self.is_hold(index),
            ptime: m.ptime(),
        })
    }
}

/// Keeps only what the engine can relay, preserving the offerer's order and the number of m= lines
/// (RFC 3264 §6 needs it to map the answer back):
///
/// * the first enabled RTP audio section keeps its supported formats (with their `rtpmap`/`fmtp`
///   lines); if no voice codec remains it is disabled (port 0) like every other section;
/// * every other section (video, T.38 `image`, a second audio stream, …) is disabled with port 0,
///   because the relay anchors one audio stream and nothing may flow around it.
pub fn filter_offer(offer: &Sdp) -> Sdp {
    let mut out = offer.clone();
    let audio = offer.audio_index();
    for (i, m) in out.media.iter_mut().enumerate() {
        if Some(i) != audio {
            m.port = 0;
            continue;
        }
        let keep: Vec<Format> = m
            .format_details()
            .into_iter()
            .filter(|f| f.codec.is_some())
            .collect();
        if !keep.iter().any(|f| f.codec.is_some_and(Codec::is_voice)) {
            m.port = 0;
            continue;
        }
        let kept = |pt: u8| keep.iter().any(|f| f.payload_type == pt);
        m.formats = keep.iter().map(|f| f.payload_type.to_string()).collect();
        // Only rtpmap/fmtp carry a payload type: drop those of the removed formats.
        m.attributes.retain(|a| a.payload_type().is_none_or(kept));
    }
    out
}

/// Whether the SDP has an enabled audio stream with at least one supported voice codec. After
/// [`filter_offer`], `false` means the B2BUA answers 488 Not Acceptable Here.
pub fn has_voice_codec(sdp: &Sdp) -> bool {
    sdp.audio_stream().is_some_and(|s| {
        s.formats
            .iter()
            .any(|f| f.codec.is_some_and(Codec::is_voice))
    })
}

/// Checks the callee's answer against the offer that was sent to it and says what was agreed for
/// the anchored audio stream.
pub fn negotiate(offer: &Sdp, answer: &Sdp) -> Result<Negotiated, NegotiationError> {
    if offer.media.len() != answer.media.len() {
        return Err(NegotiationError::MediaCountMismatch {
            offer: offer.media.len(),
            answer: answer.media.len(),
        });
    }
    let offered = offer.audio_stream().ok_or(NegotiationError::NoAudio)?;
    let index = offered.index;
    let m = answer.media.get(index).ok_or(NegotiationError::Rejected)?;
    if m.port == 0 {
        return Err(NegotiationError::Rejected);
    }
    let offered_has = |c: Codec| offered.formats.iter().any(|f| f.codec == Some(c));
    let answered = m.format_details();
    let codec = answered
        .iter()
        .find(|f| f.codec.is_some_and(|c| c.is_voice() && offered_has(c)))
        .cloned()
        .ok_or(NegotiationError::NoCommonCodec)?;
    let telephone_event = answered
        .iter()
        .find(|f| f.codec == Some(Codec::TelephoneEvent))
        .filter(|_| offered_has(Codec::TelephoneEvent))
        .map(|f| f.payload_type);
    Ok(Negotiated {
        index,
        codec,
        telephone_event,
        direction: answer.direction(index),
        remote_rtp: answer.rtp_addr(index),
    })
}
