//! WebRTC browser legs: a [`BrowserPeer`] terminates ICE, DTLS-SRTP and RTCP with one browser
//! (webrtc-rs 0.21) and bridges its audio to a plain RTP socket on the engine's side.
//!
//! What leaves the peer is ordinary RTP: the browser's decrypted Opus (and `telephone-event`)
//! packets are sent unchanged from [`BrowserPeer::plain_addr`] to the far end set by
//! [`BrowserPeer::set_far_end`], and RTP arriving on that socket is written to the browser
//! (SSRC and payload type rewritten to what the browser negotiated). The far end is the
//! engine's own relay, so transcoding (Opus ↔ G.711), DTMF, recording and everything else of
//! the media plane applies to a browser leg unchanged; this module never decodes audio.
//!
//! The peer connection's drivers run on the tokio runtime this is called on (the engine's
//! media runtime), never on an actix arbiter.

use bytes::BytesMut;
use rtc::media_stream::MediaStreamTrack;
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use rtc::shared::marshal::{Marshal, Unmarshal};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use tokio::net::UdpSocket;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    register_default_interceptors, MediaEngine, PeerConnection, PeerConnectionBuilder,
    PeerConnectionEventHandler, RTCConfigurationBuilder, RTCIceCandidateInit, RTCIceCandidateType,
    RTCPeerConnectionIceEvent, RTCPeerConnectionState, RTCSessionDescription, Registry,
    SettingEngineBuilder,
};

/// The payload type the engine registers for `telephone-event/48000` (the browser's offer
/// decides the one used on the wire).
const EVENT_PT: u8 = 110;

/// Where a browser peer binds and what it advertises.
#[derive(Clone, Debug)]
pub struct PeerSettings {
    /// The address ICE (host candidates) binds on.
    pub ice_ip: IpAddr,
    /// Advertised instead of `ice_ip` in host candidates (1:1 NAT), if set.
    pub advertised_ip: Option<IpAddr>,
    /// The address of the plain RTP socket toward the engine's relay.
    pub rtp_ip: IpAddr,
}

/// What a browser peer reports to its owner.
#[derive(Debug)]
pub enum PeerEvent {
    /// A local ICE candidate for the browser (a JSON `RTCIceCandidateInit`).
    Candidate(serde_json::Value),
    /// ICE and DTLS are up.
    Connected,
    /// The connection failed or closed (the reason).
    Closed(String),
    /// A message for the browser from the room (another member joined, left, or sent a
    /// control message), a JSON frame.
    Control(serde_json::Value),
}

/// Who receives a peer's [`PeerEvent`]s (called from the media runtime).
pub type PeerEvents = Arc<dyn Fn(PeerEvent) + Send + Sync>;

/// A browser peer could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The offer has no Opus audio.
    #[error("the offer has no Opus audio (m=audio with opus/48000/2)")]
    NoOpus,
    /// webrtc-rs refused (bad SDP, ICE or DTLS setup).
    #[error("webrtc: {0}")]
    Webrtc(String),
    /// A socket could not be bound.
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
}

fn werr(e: impl std::fmt::Display) -> PeerError {
    PeerError::Webrtc(e.to_string())
}

/// The audio payload types of a browser's offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OfferAudio {
    /// `opus/48000/2`.
    pub opus_pt: u8,
    /// `telephone-event/48000`, when offered.
    pub event_pt: Option<u8>,
}

/// Reads the Opus and `telephone-event/48000` payload types of the first `m=audio` section.
pub fn offer_audio(sdp: &str) -> Option<OfferAudio> {
    let mut in_audio = false;
    let mut seen_audio = false;
    let mut opus = None;
    let mut event = None;
    for line in sdp.lines() {
        let line = line.trim_end();
        if let Some(m) = line.strip_prefix("m=") {
            if seen_audio {
                break;
            }
            in_audio = m.starts_with("audio ");
            seen_audio = in_audio;
            continue;
        }
        if !in_audio {
            continue;
        }
        let Some(map) = line.strip_prefix("a=rtpmap:") else {
            continue;
        };
        let Some((pt, enc)) = map.split_once(' ') else {
            continue;
        };
        let Ok(pt) = pt.trim().parse::<u8>() else {
            continue;
        };
        let enc = enc.trim().to_ascii_lowercase();
        if enc == "opus/48000/2" && opus.is_none() {
            opus = Some(pt);
        } else if enc == "telephone-event/48000" && event.is_none() {
            event = Some(pt);
        }
    }
    Some(OfferAudio {
        opus_pt: opus?,
        event_pt: event,
    })
}

/// Where the plain side sends, and how its payload types map to the browser's.
#[derive(Clone, Copy, Debug)]
struct FarEnd {
    addr: SocketAddr,
    /// (far end's PT, browser's PT) for Opus and for events.
    map: [(u8, u8); 2],
}

/// State shared by the peer's tasks.
struct Bridge {
    plain: Arc<UdpSocket>,
    far: Mutex<Option<FarEnd>>,
    events: PeerEvents,
}

impl Bridge {
    fn far(&self) -> Option<FarEnd> {
        // A poisoned lock only means another task panicked mid-copy of a `Copy` value.
        *self.far.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct Handler {
    bridge: Arc<Bridge>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        let Ok(init) = event.candidate.to_json() else {
            return;
        };
        if let Ok(v) = serde_json::to_value(init) {
            (self.bridge.events)(PeerEvent::Candidate(v));
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        match state {
            RTCPeerConnectionState::Connected => (self.bridge.events)(PeerEvent::Connected),
            RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                (self.bridge.events)(PeerEvent::Closed(state.to_string()))
            }
            _ => {}
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        if track.kind().await != RtpCodecKind::Audio {
            return;
        }
        let bridge = self.bridge.clone();
        tokio::spawn(async move {
            // Browser → far end: the decrypted packets, unchanged.
            while let Some(evt) = track.poll().await {
                let TrackRemoteEvent::OnRtpPacket(packet) = evt else {
                    continue;
                };
                let Some(far) = bridge.far() else { continue };
                if let Ok(bytes) = packet.marshal() {
                    let _ = bridge.plain.send_to(&bytes, far.addr).await;
                }
            }
        });
    }
}

/// One browser's peer connection and its plain RTP socket. Dropping it closes the connection.
pub struct BrowserPeer {
    pc: Arc<dyn PeerConnection>,
    bridge: Arc<Bridge>,
    audio: OfferAudio,
    plain_addr: SocketAddr,
    pump: tokio::task::JoinHandle<()>,
}

impl BrowserPeer {
    /// Answers a browser's offer: returns the peer and the answer SDP. Local candidates are
    /// trickled through `events` from now on.
    pub async fn answer(
        offer: &str,
        settings: &PeerSettings,
        events: PeerEvents,
    ) -> Result<(BrowserPeer, String), PeerError> {
        let audio = offer_audio(offer).ok_or(PeerError::NoOpus)?;
        let mut media = MediaEngine::default();
        media.register_default_codecs().map_err(werr)?;
        media
            .register_codec(
                RTCRtpCodecParameters {
                    rtp_codec: RTCRtpCodec {
                        mime_type: "audio/telephone-event".to_owned(),
                        clock_rate: 48000,
                        channels: 0,
                        sdp_fmtp_line: "0-15".to_owned(),
                        rtcp_feedback: vec![],
                    },
                    payload_type: EVENT_PT,
                },
                RtpCodecKind::Audio,
            )
            .map_err(werr)?;
        let registry = register_default_interceptors(Registry::new(), &mut media).map_err(werr)?;
        let mut setting = SettingEngineBuilder::new();
        if let Some(ip) = settings.advertised_ip {
            setting = setting.with_nat_1to1_ips(vec![ip.to_string()], RTCIceCandidateType::Host);
        }
        let plain = Arc::new(UdpSocket::bind(SocketAddr::new(settings.rtp_ip, 0)).await?);
        let plain_addr = plain.local_addr()?;
        let bridge = Arc::new(Bridge {
            plain: plain.clone(),
            far: Mutex::new(None),
            events,
        });
        let pc = PeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_media_engine(media)
            .with_setting_engine(setting.build())
            .with_interceptor_registry(registry)
            .with_handler(Arc::new(Handler {
                bridge: bridge.clone(),
            }))
            .with_udp_addrs(vec![SocketAddr::new(settings.ice_ip, 0)])
            .build()
            .await
            .map_err(werr)?;
        let pc: Arc<dyn PeerConnection> = Arc::new(pc);
        let ssrc = rand_ssrc();
        let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
            "switchboard".to_owned(),
            "switchboard-audio".to_owned(),
            "switchboard-audio".to_owned(),
            RtpCodecKind::Audio,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                codec: RTCRtpCodec {
                    mime_type: "audio/opus".to_owned(),
                    clock_rate: 48000,
                    channels: 2,
                    sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
                    rtcp_feedback: vec![],
                },
                active: true,
                ..Default::default()
            }],
        )));
        let offer = RTCSessionDescription::offer(offer.to_owned()).map_err(werr)?;
        pc.set_remote_description(offer).await.map_err(werr)?;
        pc.add_track(track.clone() as Arc<dyn TrackLocal>)
            .await
            .map_err(werr)?;
        let answer = pc.create_answer(None).await.map_err(werr)?;
        let sdp = answer.sdp.clone();
        pc.set_local_description(answer).await.map_err(werr)?;
        let pump = tokio::spawn(pump_to_browser(bridge.clone(), track, ssrc));
        Ok((
            BrowserPeer {
                pc,
                bridge,
                audio,
                plain_addr,
                pump,
            },
            sdp,
        ))
    }

    /// The payload types the browser offered.
    pub fn audio(&self) -> OfferAudio {
        self.audio
    }

    /// The plain RTP socket toward the engine (what the engine's SDP for this leg names).
    pub fn plain_addr(&self) -> SocketAddr {
        self.plain_addr
    }

    /// Starts the plain side: RTP goes to `addr`; arriving payload types `opus_pt` and
    /// `event_pt` are rewritten to the browser's.
    pub fn set_far_end(&self, addr: SocketAddr, opus_pt: u8, event_pt: Option<u8>) {
        let browser_event = self.audio.event_pt.unwrap_or(EVENT_PT);
        let far = FarEnd {
            addr,
            map: [
                (opus_pt, self.audio.opus_pt),
                (event_pt.unwrap_or(browser_event), browser_event),
            ],
        };
        *self.bridge.far.lock().unwrap_or_else(|p| p.into_inner()) = Some(far);
    }

    /// Adds a remote (trickled) ICE candidate, a JSON `RTCIceCandidateInit`.
    pub async fn add_candidate(&self, candidate: serde_json::Value) -> Result<(), PeerError> {
        let init: RTCIceCandidateInit = serde_json::from_value(candidate).map_err(werr)?;
        self.pc.add_ice_candidate(init).await.map_err(werr)
    }

    /// Closes the connection (DTLS close_notify, sockets released).
    pub async fn close(&self) {
        self.pump.abort();
        let _ = self.pc.close().await;
    }
}

impl Drop for BrowserPeer {
    fn drop(&mut self) {
        self.pump.abort();
        let pc = self.pc.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = pc.close().await;
            });
        }
    }
}

/// Far end → browser: RTP from the plain socket, SSRC and payload type set to the browser's.
async fn pump_to_browser(bridge: Arc<Bridge>, track: Arc<TrackLocalStaticRTP>, ssrc: u32) {
    let mut buf = vec![0u8; 2048];
    loop {
        let Ok((n, from)) = bridge.plain.recv_from(&mut buf).await else {
            return;
        };
        let Some(far) = bridge.far() else { continue };
        if from.ip() != far.addr.ip() {
            continue;
        }
        let mut bytes = BytesMut::from(&buf[..n]);
        let Ok(mut packet) = rtp::packet::Packet::unmarshal(&mut bytes) else {
            continue;
        };
        let pt = packet.header.payload_type;
        let Some(&(_, to)) = far.map.iter().find(|(f, _)| *f == pt) else {
            continue;
        };
        packet.header.payload_type = to;
        packet.header.ssrc = ssrc;
        if track.write_rtp(packet).await.is_err() {
            return;
        }
    }
}

/// A random SSRC (std's `RandomState` keys are random per process; the clock varies it).
fn rand_ssrc() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    );
    h.finish() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_opus_and_event_payload_types_of_the_audio_section() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 63 110 126\r\n\
                   a=rtpmap:111 opus/48000/2\r\na=rtpmap:63 red/48000/2\r\n\
                   a=rtpmap:110 telephone-event/48000\r\na=rtpmap:126 telephone-event/8000\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 opus/48000/2\r\n";
        assert_eq!(
            offer_audio(sdp),
            Some(OfferAudio {
                opus_pt: 111,
                event_pt: Some(110)
            })
        );
        assert_eq!(offer_audio("v=0\r\nm=audio 9 RTP/AVP 0\r\n"), None);
        assert_eq!(offer_audio(""), None);
    }
}
