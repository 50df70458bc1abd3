//! SDP the engine writes as a media *endpoint* rather than as a relay: the answer it gives a
//! caller whose call it takes itself (IVR, queue, voicemail), and the offer it makes to a callee
//! once the caller's own offer/answer is already done (a dial after an IVR).

use std::net::SocketAddr;

use super::negotiate::{Codec, Format, Negotiated, NegotiationError};
use super::{Attribute, Connection, Direction, MediaSection, Origin, RtpMap, Sdp};

/// Voice codecs the engine offers when it writes its own offer, in order of preference.
pub const OFFER_CODECS: &[Codec] = &[Codec::Pcmu, Codec::Pcma, Codec::G722];

/// Payload type of `telephone-event` in the engine's own offers.
pub const OFFER_TELEPHONE_EVENT: u8 = 101;

/// The engine's answer to `offer` with its media on `local`: the offerer's most preferred voice
/// codec the engine supports, plus `telephone-event` when offered. The other media sections are
/// rejected (port 0), as RFC 3264 §6 requires them to be kept in the answer. Also returns what was
/// agreed (the caller's RTP address, its codec and DTMF payload type).
pub fn answer_offer(offer: &Sdp, local: SocketAddr) -> Result<(Sdp, Negotiated), NegotiationError> {
    let stream = offer.audio_stream().ok_or(NegotiationError::NoAudio)?;
    let voice = stream
        .formats
        .iter()
        .find(|f| f.codec.is_some_and(Codec::is_voice))
        .cloned()
        .ok_or(NegotiationError::NoCommonCodec)?;
    let dtmf = stream
        .formats
        .iter()
        .find(|f| f.codec == Some(Codec::TelephoneEvent))
        .cloned();
    let mut formats = vec![voice.clone()];
    formats.extend(dtmf.clone());
    let direction = match stream.direction {
        Direction::SendOnly => Direction::RecvOnly,
        Direction::RecvOnly => Direction::SendOnly,
        d => d,
    };
    let media = offer
        .media
        .iter()
        .enumerate()
        .map(|(i, m)| {
            if i == stream.index {
                audio_section(local, &formats, direction)
            } else {
                MediaSection {
                    media: m.media.clone(),
                    port: 0,
                    port_count: None,
                    proto: m.proto.clone(),
                    formats: m.formats.clone(),
                    connection: None,
                    attributes: Vec::new(),
                    other: Vec::new(),
                }
            }
        })
        .collect();
    let sdp = session(local, media);
    let negotiated = Negotiated {
        index: stream.index,
        codec: voice,
        telephone_event: dtmf.map(|f| f.payload_type),
        direction: stream.direction,
        remote_rtp: stream.rtp,
    };
    Ok((sdp, negotiated))
}

/// The engine's own offer with media on `local`: `codecs` (static payload types where they have
/// one, dynamic from 96 otherwise) and `telephone-event` on [`OFFER_TELEPHONE_EVENT`].
pub fn endpoint_offer(local: SocketAddr, codecs: &[Codec]) -> Sdp {
    let mut next_dynamic = 96u8;
    let mut formats: Vec<Format> = codecs
        .iter()
        .filter(|c| c.is_voice())
        .map(|&c| {
            let pt = match c {
                Codec::Pcmu => 0,
                Codec::Pcma => 8,
                Codec::G722 => 9,
                _ => {
                    let pt = next_dynamic;
                    next_dynamic += 1;
                    pt
                }
            };
            format_for(c, pt)
        })
        .collect();
    formats.push(format_for(Codec::TelephoneEvent, OFFER_TELEPHONE_EVENT));
    session(
        local,
        vec![audio_section(local, &formats, Direction::SendRecv)],
    )
}

fn format_for(codec: Codec, payload_type: u8) -> Format {
    let (clock_rate, channels) = codec.rtpmap_clock();
    Format {
        payload_type,
        codec: Some(codec),
        rtpmap: Some(RtpMap {
            payload_type,
            encoding: codec.encoding_name().to_string(),
            clock_rate,
            channels,
        }),
        fmtp: (codec == Codec::TelephoneEvent).then(|| "0-16".to_string()),
    }
}

fn audio_section(local: SocketAddr, formats: &[Format], direction: Direction) -> MediaSection {
    let mut attributes = Vec::new();
    for f in formats {
        let rtpmap = f.rtpmap.clone().or_else(|| {
            f.codec.map(|c| {
                let (clock_rate, channels) = c.rtpmap_clock();
                RtpMap {
                    payload_type: f.payload_type,
                    encoding: c.encoding_name().to_string(),
                    clock_rate,
                    channels,
                }
            })
        });
        if let Some(m) = rtpmap {
            attributes.push(Attribute::Rtpmap(m));
        }
        if let Some(p) = &f.fmtp {
            attributes.push(Attribute::Fmtp(super::Fmtp {
                payload_type: f.payload_type,
                params: p.clone(),
            }));
        }
    }
    attributes.push(Attribute::Ptime(20));
    attributes.push(Attribute::Direction(direction));
    MediaSection {
        media: "audio".into(),
        port: local.port(),
        port_count: None,
        proto: "RTP/AVP".into(),
        formats: formats.iter().map(|f| f.payload_type.to_string()).collect(),
        connection: None,
        attributes,
        other: Vec::new(),
    }
}

fn session(local: SocketAddr, media: Vec<MediaSection>) -> Sdp {
    Sdp {
        origin: Origin::new("-", 1, 1, local.ip()),
        session_name: "switchboard".into(),
        connection: Some(Connection::from_ip(local.ip())),
        attributes: Vec::new(),
        other: Vec::new(),
        media,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdp::negotiate;

    const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n\
m=video 4002 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n";

    #[test]
    fn answer_takes_the_offerers_first_codec_and_dtmf() {
        let offer = Sdp::parse(OFFER).expect("valid offer");
        let local: SocketAddr = "127.0.0.1:30000".parse().expect("address");
        let (answer, n) = answer_offer(&offer, local).expect("answerable");
        assert_eq!(n.codec.payload_type, 8);
        assert_eq!(n.telephone_event, Some(101));
        assert_eq!(
            n.remote_rtp,
            Some("10.0.0.1:4000".parse().expect("address"))
        );
        assert_eq!(answer.media.len(), 2);
        assert_eq!(answer.media[1].port, 0, "video rejected");
        // The answer is a valid answer to the offer.
        let agreed = negotiate(&offer, &answer).expect("consistent");
        assert_eq!(agreed.codec.codec, Some(Codec::Pcma));
        assert_eq!(agreed.remote_rtp, Some(local));
    }

    #[test]
    fn own_offer_lists_codecs_and_events() {
        let local: SocketAddr = "127.0.0.1:30002".parse().expect("address");
        let offer = endpoint_offer(local, OFFER_CODECS);
        let text = offer.to_string();
        assert!(text.contains("m=audio 30002 RTP/AVP 0 8 9 101"), "{text}");
        let parsed = Sdp::parse(&text).expect("round trip");
        assert!(crate::sdp::has_voice_codec(&parsed));
    }
}
