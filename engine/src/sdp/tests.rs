//! SDP tests with bodies captured from real peers (SIPp 3.6.1 `-sn uac`, baresip 1.0 default and
//! with `rtcp_mux yes` + ICE) and from RFC 4475 / RFC 4566.

use std::net::{IpAddr, SocketAddr};

use super::*;

/// SIPp 3.6.1 `-sn uac` INVITE body, as sent on 127.0.0.1 with `-mp 6000`.
const SIPP_UAC: &str = "v=0\r\n\
o=user1 53655765 2353687637 IN IP4 127.0.0.1\r\n\
s=-\r\n\
c=IN IP4 127.0.0.1\r\n\
t=0 0\r\n\
m=audio 6000 RTP/AVP 0\r\n\
a=rtpmap:0 PCMU/8000\r\n";

/// baresip 1.0.0 INVITE body, default config (`audio_codecs=PCMU,PCMA`), captured on loopback.
const BARESIP: &str = "v=0\r\n\
o=- 2766218795 1210858265 IN IP4 127.0.0.1\r\n\
s=-\r\n\
c=IN IP4 127.0.0.1\r\n\
t=0 0\r\n\
a=tool:baresip 1.0.0\r\n\
m=audio 16394 RTP/AVP 0 8 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=sendrecv\r\n\
a=label:1\r\n\
a=rtcp-rsize\r\n\
a=ssrc:1073173297 cname:sip:caller@127.0.0.1\r\n\
a=minptime:20\r\n\
a=ptime:20\r\n";

/// baresip 1.0.0 with `rtcp_mux yes` and `medianat=ice` (captured; it advertises its host
/// candidates, here a documentation address).
const BARESIP_ICE_MUX: &str = "v=0\r\n\
o=- 1396512246 2115384382 IN IP4 127.0.0.1\r\n\
s=-\r\n\
c=IN IP4 127.0.0.1\r\n\
t=0 0\r\n\
a=tool:baresip 1.0.0\r\n\
a=ice-ufrag:fj98JdC\r\n\
a=ice-pwd:iJimJHaUOaHPbIVxDMcqqgIRICxhfTc\r\n\
m=audio 12170 RTP/AVP 0 8 101\r\n\
c=IN IP4 192.0.2.2\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=sendrecv\r\n\
a=label:1\r\n\
a=rtcp-rsize\r\n\
a=ssrc:673885135 cname:sip:caller@127.0.0.1\r\n\
a=rtcp-mux\r\n\
a=minptime:20\r\n\
a=ptime:20\r\n\
a=candidate:c0000202 1 UDP 2113929471 192.0.2.2 12170 typ host\r\n\
a=candidate:020000fd 1 UDP 2113929471 fd00::2 12170 typ host\r\n";

/// The body of RFC 4475 `sdp01` (and most of its INVITEs): note `a=rtpmap:31 LPC` has no clock.
const RFC4475_SDP01: &str = "v=0\r\n\
o=mhandley 29739 7272939 IN IP4 192.0.2.5\r\n\
s=-\r\n\
c=IN IP4 192.0.2.5\r\n\
t=0 0\r\n\
m=audio 49217 RTP/AVP 0 12\r\n\
m=video 3227 RTP/AVP 31\r\n\
a=rtpmap:31 LPC\r\n";

/// RFC 4566 §5 example (multicast, i/u/e lines, session-level recvonly).
const RFC4566: &str = "v=0\r\n\
o=jdoe 2890844526 2890842807 IN IP4 10.47.16.5\r\n\
s=SDP Seminar\r\n\
i=A Seminar on the session description protocol\r\n\
u=http://www.example.com/seminars/sdp.pdf\r\n\
e=j.doe@example.com (Jane Doe)\r\n\
c=IN IP4 224.2.17.12/127\r\n\
t=2873397496 2873404696\r\n\
a=recvonly\r\n\
m=audio 49170 RTP/AVP 0\r\n\
m=video 51372 RTP/AVP 99\r\n\
a=rtpmap:99 h263-1998/90000\r\n";

/// An offer with more than the engine supports: G.729, G.722, Opus, speex, RFC 3605 a=rtcp, video.
const RICH_OFFER: &str = "v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 198.51.100.7\r\n\
s=-\r\n\
c=IN IP4 198.51.100.7\r\n\
t=0 0\r\n\
m=audio 49170 RTP/AVP 18 96 0 9 8 97 101\r\n\
a=rtpmap:18 G729/8000\r\n\
a=fmtp:18 annexb=no\r\n\
a=rtpmap:96 opus/48000/2\r\n\
a=fmtp:96 minptime=10;useinbandfec=1\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:97 speex/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=rtcp:53020 IN IP4 198.51.100.8\r\n\
a=ptime:20\r\n\
m=video 51372 RTP/AVP 99\r\n\
a=rtpmap:99 H264/90000\r\n";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn real_bodies_round_trip_byte_for_byte() {
    for body in [
        SIPP_UAC,
        BARESIP,
        BARESIP_ICE_MUX,
        RFC4475_SDP01,
        RFC4566,
        RICH_OFFER,
    ] {
        let sdp = Sdp::parse(body).unwrap_or_else(|e| panic!("{e}\n{body}"));
        assert_eq!(sdp.to_string(), body);
    }
}

#[test]
fn lf_only_line_endings_are_accepted_and_written_as_crlf() {
    let lf = BARESIP.replace("\r\n", "\n");
    let sdp = Sdp::parse(&lf).unwrap();
    assert_eq!(sdp, Sdp::parse(BARESIP).unwrap());
    assert_eq!(sdp.to_string(), BARESIP);
    // No final newline, a trailing blank line: still fine.
    let sdp2 = Sdp::parse(lf.trim_end()).unwrap();
    assert_eq!(sdp2, sdp);
    assert_eq!(Sdp::parse(&format!("{BARESIP}\r\n")).unwrap(), sdp);
}

#[test]
fn parses_the_interpreted_fields() {
    let sdp = Sdp::parse(BARESIP).unwrap();
    assert_eq!(sdp.origin.username, "-");
    assert_eq!(sdp.origin.session_id, "2766218795");
    assert_eq!(sdp.origin.session_version, 1210858265);
    assert_eq!(sdp.connection.as_ref().unwrap().ip(), Some(ip("127.0.0.1")));
    let m = &sdp.media[0];
    assert_eq!(
        (m.media.as_str(), m.port, m.proto.as_str()),
        ("audio", 16394, "RTP/AVP")
    );
    assert_eq!(m.payload_types(), vec![0, 8, 101]);
    assert_eq!(m.rtpmap(101).unwrap().encoding, "telephone-event");
    assert_eq!(m.fmtp(101), Some("0-15"));
    assert_eq!(m.ptime(), Some(20));
    assert_eq!(m.direction(), Some(Direction::SendRecv));
    // Unknown attributes are kept, in order.
    let names: Vec<&str> = m.attributes.iter().map(Attribute::name).collect();
    assert_eq!(
        names,
        [
            "rtpmap",
            "rtpmap",
            "rtpmap",
            "fmtp",
            "sendrecv",
            "label",
            "rtcp-rsize",
            "ssrc",
            "minptime",
            "ptime"
        ]
    );

    let s = sdp.audio_stream().unwrap();
    assert_eq!(s.index, 0);
    assert_eq!(s.rtp, Some(sa("127.0.0.1:16394")));
    assert_eq!(s.rtcp, Some(sa("127.0.0.1:16395")));
    assert!(!s.rtcp_mux && !s.on_hold);
    let codecs: Vec<_> = s.formats.iter().map(|f| f.codec).collect();
    assert_eq!(
        codecs,
        [
            Some(Codec::Pcmu),
            Some(Codec::Pcma),
            Some(Codec::TelephoneEvent)
        ]
    );

    let rich = Sdp::parse(RICH_OFFER).unwrap();
    assert_eq!(rich.rtcp_addr(0), Some(sa("198.51.100.8:53020")));
    let mux = Sdp::parse(BARESIP_ICE_MUX).unwrap().audio_stream().unwrap();
    assert!(mux.rtcp_mux);
    assert_eq!(mux.rtp, Some(sa("192.0.2.2:12170")));
    assert_eq!(mux.rtcp, mux.rtp);
}

#[test]
fn rfc4475_and_rfc4566_oddities() {
    let sdp = Sdp::parse(RFC4475_SDP01).unwrap();
    // `a=rtpmap:31 LPC` has no clock rate: kept uninterpreted.
    assert!(sdp.media[1].rtpmap(31).is_none());
    assert_eq!(sdp.media[1].attributes[0].name(), "rtpmap");
    assert_eq!(
        sdp.audio_stream().unwrap().formats[1].codec,
        None,
        "PT 12 (QCELP) is not supported"
    );

    let sdp = Sdp::parse(RFC4566).unwrap();
    assert_eq!(
        sdp.connection.as_ref().unwrap().ip(),
        Some(ip("224.2.17.12"))
    );
    assert_eq!(
        sdp.direction(0),
        Direction::RecvOnly,
        "session-level default"
    );
    assert_eq!(sdp.other.len(), 4);

    // RFC 4475 mismatch02: no s= and no t=; accepted and written back RFC-conformant.
    let body = "v=0\r\no=mhandley 29739 7272939 IN IP4 192.0.2.1\r\nc=IN IP4 192.0.2.1\r\n\
                m=audio 49217 RTP/AVP 0 12\r\n";
    let sdp = Sdp::parse(body).unwrap();
    assert_eq!(
        sdp.to_string(),
        "v=0\r\no=mhandley 29739 7272939 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\n\
         t=0 0\r\nm=audio 49217 RTP/AVP 0 12\r\n"
    );
}

#[test]
fn malformed_bodies_give_a_typed_error_naming_the_line() {
    use SdpErrorKind::*;
    let cases: &[(&str, usize, SdpErrorKind)] = &[
        ("", 0, Empty),
        ("\r\n\r\n", 0, Empty),
        ("o=- 1 1 IN IP4 1.2.3.4\r\n", 1, MissingVersion),
        ("v=1\r\no=- 1 1 IN IP4 1.2.3.4\r\n", 1, UnsupportedVersion),
        ("v=0\r\ns=-\r\n", 2, MissingOrigin),
        ("v=0\r\nm=audio 1 RTP/AVP 0\r\n", 2, MissingOrigin),
        ("v=0\r\no=- 1 IN IP4 1.2.3.4\r\n", 2, BadOrigin),
        ("v=0\r\no=- 1 x IN IP4 1.2.3.4\r\n", 2, BadOrigin),
        (
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\no=- 1 1 IN IP4 1.2.3.4\r\n",
            3,
            Duplicate,
        ),
        (
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4\r\n",
            3,
            BadConnection,
        ),
        (
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4 ::1\r\n",
            3,
            BadConnection,
        ),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio\r\n", 3, BadMedia),
        (
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 70000 RTP/AVP 0\r\n",
            3,
            BadMedia,
        ),
        (
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 5/x RTP/AVP 0\r\n",
            3,
            BadMedia,
        ),
        (
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 5 RTP/AVP 0 abc\r\n",
            3,
            BadPayloadType,
        ),
        (
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 5 RTP/AVP 128\r\n",
            3,
            BadPayloadType,
        ),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nhello\r\n", 3, Syntax),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\n==x\r\n", 3, Syntax),
        (
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 5 RTP/AVP 0\r\nv=0\r\n",
            4,
            Duplicate,
        ),
    ];
    for (body, line, kind) in cases {
        let e = Sdp::parse(body).unwrap_err();
        assert_eq!((e.line, e.kind), (*line, *kind), "{body:?} → {e}");
    }
    // RFC 4475 dblreq: `m =video` (space before '=') on line 7.
    let body = RFC4475_SDP01.replace("m=video", "m =video");
    let e = Sdp::parse(&body).unwrap_err();
    assert_eq!((e.line, e.kind), (7, SdpErrorKind::Syntax));
    assert_eq!(
        e.to_string(),
        "SDP line 7: not a `<type>=<value>` line (`m =video 3227 RTP/AVP 31`)"
    );
    // Not UTF-8, on line 3.
    let mut bytes = b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=".to_vec();
    bytes.extend_from_slice(&[0xff, 0xfe, b'\r', b'\n']);
    let e = Sdp::parse_bytes(&bytes).unwrap_err();
    assert_eq!((e.line, e.kind), (3, SdpErrorKind::NotUtf8));
    // Long lines are truncated in the error.
    let long = format!("v=0\r\no={}\r\n", "x".repeat(500));
    assert!(Sdp::parse(&long).unwrap_err().text.chars().count() <= 81);
}

#[test]
fn filter_offer_keeps_supported_codecs_in_order_and_disables_the_rest() {
    let offer = Sdp::parse(RICH_OFFER).unwrap();
    assert!(has_voice_codec(&offer));
    let f = filter_offer(&offer);
    let m = &f.media[0];
    assert_eq!(m.formats, ["96", "0", "9", "8", "101"]);
    assert_eq!(m.port, 49170);
    assert!(m.rtpmap(18).is_none() && m.fmtp(18).is_none() && m.rtpmap(97).is_none());
    assert_eq!(
        m.fmtp(96),
        Some("minptime=10;useinbandfec=1"),
        "Opus fmtp passes through"
    );
    assert_eq!(m.fmtp(101), Some("0-16"));
    assert!(
        m.rtcp().is_some(),
        "filtering does not touch transport attributes"
    );
    assert_eq!(f.media.len(), 2, "m= lines are never removed (RFC 3264 §6)");
    assert_eq!(f.media[1].port, 0, "video is declined");
    assert!(has_voice_codec(&f));
    assert_eq!(filter_offer(&f), f, "idempotent");

    // Only unsupported voice codecs (+ DTMF): nothing left → 488.
    let g729 = RICH_OFFER
        .replace("18 96 0 9 8 97 101", "18 97 101")
        .replace("m=video 51372", "m=video 0");
    let f = filter_offer(&Sdp::parse(&g729).unwrap());
    assert_eq!(f.media[0].port, 0);
    assert!(!has_voice_codec(&f));
    assert!(f.audio_stream().is_none());

    // RFC 4475 sdp01: PCMU kept, QCELP (12) dropped, video declined.
    let f = filter_offer(&Sdp::parse(RFC4475_SDP01).unwrap());
    assert_eq!(f.media[0].formats, ["0"]);
    assert_eq!(f.media[1].port, 0);

    // Case-insensitive names; a second audio stream is declined.
    let two = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
               m=audio 4000 RTP/AVP 100\r\na=rtpmap:100 OPUS/48000/2\r\n\
               m=audio 4002 RTP/AVP 0\r\n";
    let f = filter_offer(&Sdp::parse(two).unwrap());
    assert_eq!((f.media[0].port, f.media[1].port), (4000, 0));
    assert_eq!(
        f.audio_stream().unwrap().formats[0].codec,
        Some(Codec::Opus)
    );
}

#[test]
fn negotiate_checks_the_answer_against_the_offer() {
    let offer = filter_offer(&Sdp::parse(RICH_OFFER).unwrap());
    let answer_body = "v=0\r\no=bob 1 1 IN IP4 203.0.113.9\r\ns=-\r\nc=IN IP4 203.0.113.9\r\n\
                       t=0 0\r\nm=audio 30000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n\
                       a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n\
                       m=video 0 RTP/AVP 99\r\n";
    let answer = Sdp::parse(answer_body).unwrap();
    let n = negotiate(&offer, &answer).unwrap();
    assert_eq!(n.index, 0);
    assert_eq!(n.codec.codec, Some(Codec::Pcma));
    assert_eq!(n.codec.payload_type, 8);
    assert_eq!(n.telephone_event, Some(101));
    assert_eq!(n.direction, Direction::SendRecv);
    assert_eq!(n.remote_rtp, Some(sa("203.0.113.9:30000")));

    let one_mline = answer_body.replace("m=video 0 RTP/AVP 99\r\n", "");
    assert_eq!(
        negotiate(&offer, &Sdp::parse(&one_mline).unwrap()),
        Err(NegotiationError::MediaCountMismatch {
            offer: 2,
            answer: 1
        })
    );
    let rejected = answer_body.replace("m=audio 30000", "m=audio 0");
    assert_eq!(
        negotiate(&offer, &Sdp::parse(&rejected).unwrap()),
        Err(NegotiationError::Rejected)
    );
    let g729 = answer_body
        .replace("RTP/AVP 8 101", "RTP/AVP 18")
        .replace("a=rtpmap:8 PCMA/8000", "a=rtpmap:18 G729/8000");
    assert_eq!(
        negotiate(&offer, &Sdp::parse(&g729).unwrap()),
        Err(NegotiationError::NoCommonCodec)
    );
    let sipp = Sdp::parse(SIPP_UAC).unwrap();
    assert_eq!(negotiate(&sipp, &sipp).unwrap().telephone_event, None);
}

#[test]
fn rewrite_for_anchor_points_the_stream_at_the_relay() {
    let relay = ip("10.1.2.3");
    let mut sdp = Sdp::parse(BARESIP_ICE_MUX).unwrap();
    let version = sdp.origin.session_version;
    sdp.rewrite_for_anchor(0, relay, 20000).unwrap();
    assert_eq!(sdp.origin.session_version, version + 1);
    assert_eq!(sdp.rtp_addr(0), Some(sa("10.1.2.3:20000")));
    assert_eq!(sdp.rtcp_addr(0), Some(sa("10.1.2.3:20001")));
    assert_eq!(sdp.connection.as_ref().unwrap().ip(), Some(relay));
    let text = sdp.to_string();
    for gone in ["candidate", "ice-", "rtcp-mux", "192.0.2.2"] {
        assert!(!text.contains(gone), "{gone} left in\n{text}");
    }
    for kept in [
        "a=ssrc:673885135",
        "a=rtcp-rsize",
        "a=fmtp:101 0-15",
        "a=tool:baresip",
    ] {
        assert!(text.contains(kept), "{kept} lost in\n{text}");
    }
    // Parses back to the same thing.
    assert_eq!(Sdp::parse(&text).unwrap(), sdp);

    // a=rtcp is dropped; IPv6 relay gets IP6.
    let mut rich = Sdp::parse(RICH_OFFER).unwrap();
    rich.rewrite_for_anchor(0, ip("2001:db8::1"), 20002)
        .unwrap();
    assert!(rich.media[0].rtcp().is_none());
    assert_eq!(
        rich.connection.as_ref().unwrap().to_string(),
        "IN IP6 2001:db8::1"
    );
    assert_eq!(rich.rtcp_addr(0), Some(sa("[2001:db8::1]:20003")));
    // The video stream relied on the session c=: its address is pinned, not moved.
    assert_eq!(
        rich.media[1].connection.as_ref().unwrap().ip(),
        Some(ip("198.51.100.7"))
    );

    // Section without its own c= relying on the session c=.
    let mut s = Sdp::parse(SIPP_UAC).unwrap();
    s.rewrite_for_anchor(0, relay, 20004).unwrap();
    assert!(s.media[0].connection.is_none());
    assert_eq!(s.rtp_addr(0), Some(sa("10.1.2.3:20004")));

    assert_eq!(
        s.rewrite_for_anchor(1, relay, 1),
        Err(AnchorError::NoSuchMedia(1))
    );
}

#[test]
fn hold_detection_and_rfc2543_hold_conversion() {
    let base = Sdp::parse(BARESIP).unwrap();
    assert!(!base.is_on_hold());
    for (from, to) in [
        ("a=sendrecv", "a=sendonly"),
        ("a=sendrecv", "a=inactive"),
        ("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0"),
    ] {
        let sdp = Sdp::parse(&BARESIP.replace(from, to)).unwrap();
        assert!(sdp.is_on_hold(), "{to}");
        assert!(sdp.audio_stream().unwrap().on_hold);
    }
    // recvonly is not a hold by the author (it is the answer to one).
    assert!(!Sdp::parse(&BARESIP.replace("a=sendrecv", "a=recvonly"))
        .unwrap()
        .is_on_hold());
    // Session-level sendonly applies to media without their own direction.
    let s = SIPP_UAC.replace("t=0 0\r\n", "t=0 0\r\na=sendonly\r\n");
    assert!(Sdp::parse(&s).unwrap().is_on_hold());

    // c=0.0.0.0 hold: no remote address, and the rewrite turns it into a=sendonly.
    let mut old = Sdp::parse(&BARESIP.replace("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0")).unwrap();
    assert_eq!(old.audio_stream().unwrap().rtp, None);
    old.rewrite_for_anchor(0, ip("10.1.2.3"), 20000).unwrap();
    assert_eq!(old.direction(0), Direction::SendOnly);
    assert!(old.is_on_hold());
    assert_eq!(old.rtp_addr(0), Some(sa("10.1.2.3:20000")));
    assert_eq!(Direction::SendOnly.reversed(), Direction::RecvOnly);
}

#[test]
fn leg_origin_is_stable_and_versions_only_on_change() {
    let relay = ip("10.1.2.3");
    let mut leg = LegOrigin::new(4242, relay);
    let mut a = Sdp::parse(BARESIP).unwrap();
    a.rewrite_for_anchor(0, relay, 20000).unwrap();
    leg.stamp(&mut a);
    assert_eq!(a.origin.to_string(), "- 4242 4242 IN IP4 10.1.2.3");
    // Same content again (a session refresh): same version.
    let mut again = Sdp::parse(BARESIP).unwrap();
    again.rewrite_for_anchor(0, relay, 20000).unwrap();
    again.rewrite_for_anchor(0, relay, 20000).unwrap(); // bumps the foreign origin: irrelevant
    leg.stamp(&mut again);
    assert_eq!(again.to_string(), a.to_string());
    // Hold: content changed → version + 1, same id.
    let mut hold = again.clone();
    hold.media[0].set_direction(Direction::SendOnly);
    leg.stamp(&mut hold);
    assert_eq!(hold.origin.session_id, "4242");
    assert_eq!(hold.origin.session_version, 4243);
    let mut hold2 = hold.clone();
    leg.stamp(&mut hold2);
    assert_eq!(hold2.origin.session_version, 4243);
    let r = LegOrigin::random(relay);
    assert!(r.origin().session_version < 1 << 62);
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Sdp::parse_bytes(&bytes);
        }

        #[test]
        fn never_panics_on_mutated_bodies(
            base in prop::sample::select(vec![BARESIP, BARESIP_ICE_MUX, RICH_OFFER, RFC4566]),
            pos in any::<prop::sample::Index>(),
            del in 0usize..20,
            ins in "[a-z0-9=:/ \r\n.-]{0,12}",
        ) {
            let mut s = base.as_bytes().to_vec();
            let at = pos.index(s.len());
            let end = (at + del).min(s.len());
            s.splice(at..end, ins.bytes());
            if let Ok(sdp) = Sdp::parse_bytes(&s) {
                // Whatever parses serializes and re-parses; after one normalization (added s=/t=)
                // the model is a fixed point. It also survives the B2BUA pipeline.
                let once = Sdp::parse(&sdp.to_string());
                prop_assert!(once.is_ok(), "{:?}", once);
                let once = once.unwrap_or_else(|_| sdp.clone());
                let twice = Sdp::parse(&once.to_string());
                prop_assert_eq!(twice.as_ref(), Ok(&once));
                let mut f = filter_offer(&sdp);
                let _ = has_voice_codec(&f);
                let _ = negotiate(&sdp, &f);
                if let Some(i) = f.audio_index() {
                    f.rewrite_for_anchor(i, "10.0.0.1".parse().unwrap(), 20000).unwrap();
                }
                let _ = sdp.audio_stream();
            }
        }
    }
}
