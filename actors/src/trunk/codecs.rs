//! A trunk's codec preference applied to the offer sent to its gateway.

use switchboard_engine::sdp::Sdp;

/// Reorders the audio formats of `offer` to follow `prefs` (codec names, case-insensitive):
/// listed voice codecs first in that order, unlisted voice codecs removed, non-voice formats
/// (telephone-event, comfort noise) kept after them. `None` when no listed codec is offered
/// (the gateway cannot be used for this call) or the offer has no audio.
pub fn prefer(offer: &Sdp, prefs: &[String]) -> Option<Sdp> {
    if prefs.is_empty() {
        return Some(offer.clone());
    }
    let mut out = offer.clone();
    let idx = out.audio_index()?;
    let m = out.media.get_mut(idx)?;
    let details = m.format_details();
    let name_of = |f: &switchboard_engine::sdp::Format| -> Option<String> {
        match (&f.codec, &f.rtpmap) {
            (Some(c), _) => Some(c.encoding_name().to_ascii_lowercase()),
            (None, Some(r)) => Some(r.encoding.to_ascii_lowercase()),
            (None, None) => None,
        }
    };
    let is_voice = |f: &switchboard_engine::sdp::Format| f.codec.is_some_and(|c| c.is_voice());
    let mut keep: Vec<u8> = Vec::new();
    for p in prefs {
        let p = p.to_ascii_lowercase();
        keep.extend(
            details
                .iter()
                .filter(|f| is_voice(f) && name_of(f).as_deref() == Some(p.as_str()))
                .map(|f| f.payload_type),
        );
    }
    if keep.is_empty() {
        return None;
    }
    keep.extend(
        details
            .iter()
            .filter(|f| !is_voice(f) && f.codec.is_some())
            .map(|f| f.payload_type),
    );
    m.formats = keep.iter().map(u8::to_string).collect();
    m.attributes
        .retain(|a| a.payload_type().is_none_or(|pt| keep.contains(&pt)));
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reorders_and_filters() {
        let sdp = Sdp::parse(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio 4000 RTP/AVP 0 8 9 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
             a=rtpmap:9 G722/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n",
        )
        .unwrap();
        let out = prefer(&sdp, &["PCMA".into(), "pcmu".into()]).unwrap();
        assert_eq!(out.media[0].formats, ["8", "0", "101"]);
        assert!(!out.to_string().contains("G722"));
        assert!(out.to_string().contains("a=fmtp:101 0-15"));
        assert!(prefer(&sdp, &["opus".into()]).is_none());
    }
}
