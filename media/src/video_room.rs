//! SFU-style video rooms: browsers (customer, agent, later a supervisor) each hold one peer
//! connection to the engine, and what one sends is forwarded to the others **without
//! transcoding** (RTP payloads untouched; SSRC rewritten per receiver).
//!
//! Every browser joins with the same layout of three sendrecv transceivers, in order: audio
//! (microphone), camera, screen. It names which of its media streams is which
//! (`streams`: stream id → `audio` / `camera` / `screen`), and receives the others' tracks in
//! streams of those same names, so a page knows which track is the screen. The screen slot
//! exists from the start and carries nothing until the customer shares (the page swaps the
//! track in with `replaceTrack`), so sharing needs no renegotiation.
//!
//! RTCP: keyframe requests (PLI, FIR) a receiver sends about a forwarded track are passed to
//! the sender of that stream (an interceptor marks them for the application), and a keyframe is
//! requested from every video source when someone joins; NACKs are answered hop by hop by
//! webrtc-rs's interceptors (the engine keeps a send buffer per forwarded stream). Data
//! channels are relayed by label: a message on a member's channel `chat` goes to every other
//! member's channel `chat`.
//!
//! The video codec is the room's (VP8 or H.264): only it is registered, so every browser
//! sends it and forwarding never needs to translate.

use crate::webrtc::{PeerError, PeerEvent, PeerEvents, PeerSettings};
use bytes::BytesMut;
use rtc::interceptor::{Attribute, Interceptor, Packet, Slot, StreamInfo, TaggedPacket};
use rtc::media_stream::MediaStreamTrack;
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
    RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::sansio::Protocol;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    register_default_interceptors, MediaEngine, PeerConnection, PeerConnectionBuilder,
    PeerConnectionEventHandler, RTCConfigurationBuilder, RTCIceCandidateInit, RTCIceCandidateType,
    RTCPeerConnectionIceEvent, RTCPeerConnectionState, RTCSessionDescription, Registry,
    SettingEngineBuilder,
};

/// The video codec of a room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VideoCodec {
    /// VP8 (`video/VP8`).
    Vp8,
    /// H.264 constrained baseline, packetization mode 1.
    H264,
}

impl VideoCodec {
    /// By name (`vp8`, `h264`, any case).
    pub fn from_name(name: &str) -> Option<VideoCodec> {
        match name.to_ascii_lowercase().as_str() {
            "vp8" => Some(VideoCodec::Vp8),
            "h264" => Some(VideoCodec::H264),
            _ => None,
        }
    }

    fn rtp_codec(self) -> RTCRtpCodec {
        let fb = |typ: &str, parameter: &str| RTCPFeedback {
            typ: typ.to_owned(),
            parameter: parameter.to_owned(),
        };
        let (mime, fmtp) = match self {
            VideoCodec::Vp8 => ("video/VP8", ""),
            VideoCodec::H264 => (
                "video/H264",
                "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
            ),
        };
        RTCRtpCodec {
            mime_type: mime.to_owned(),
            clock_rate: 90000,
            channels: 0,
            sdp_fmtp_line: fmtp.to_owned(),
            rtcp_feedback: vec![
                fb("goog-remb", ""),
                fb("ccm", "fir"),
                fb("nack", ""),
                fb("nack", "pli"),
            ],
        }
    }
}

fn opus() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: "audio/opus".to_owned(),
        clock_rate: 48000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

/// The three slots of every member, in transceiver order.
pub const SLOTS: [&str; 3] = ["audio", "camera", "screen"];

fn werr(e: impl std::fmt::Display) -> PeerError {
    PeerError::Webrtc(e.to_string())
}

/// Passes inbound keyframe requests (PLI, FIR) to the application; other RTCP stays with the
/// interceptors.
struct KeyframeRequests {
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

fn is_keyframe_request(p: &dyn rtc::rtcp::Packet) -> bool {
    let any = p.as_any();
    any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for KeyframeRequests {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            let keep: Vec<Box<dyn rtc::rtcp::Packet>> = packets
                .iter()
                .filter(|p| is_keyframe_request(p.as_ref()))
                .cloned()
                .collect();
            if keep.is_empty() {
                return Ok(());
            }
            msg.message.packet = Packet::Rtcp(keep);
            msg.message.add(Attribute::DeliverToApplication);
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write.pop_front()
    }
}

impl Interceptor for KeyframeRequests {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

/// A video room: its members and codec.
pub struct Room {
    name: String,
    codec: VideoCodec,
    members: Mutex<Vec<Arc<Member>>>,
    next_id: AtomicU64,
}

/// A member's incoming track and its SSRC (where keyframe requests for it go).
type Source = (Arc<dyn TrackRemote>, u32);

/// What a room forwards to and from one browser.
struct Member {
    id: u64,
    role: String,
    pc: Arc<dyn PeerConnection>,
    /// What the engine sends this member, per slot.
    local: [Arc<TrackLocalStaticRTP>; 3],
    ssrcs: [u32; 3],
    /// What this member sends, per slot (for keyframe requests): the track and its SSRC.
    sources: Mutex<[Option<Source>; 3]>,
    /// This member's stream ids → slot.
    stream_slots: HashMap<String, usize>,
    channels: Mutex<Vec<(String, Arc<dyn DataChannel>)>>,
    events: PeerEvents,
    /// Forwarded packets per slot (statistics).
    forwarded: [AtomicU64; 3],
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means a task panicked while holding it; the data is still whole.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Room {
    /// A new empty room.
    pub fn new(name: &str, codec: VideoCodec) -> Arc<Room> {
        Arc::new(Room {
            name: name.to_owned(),
            codec,
            members: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
        })
    }

    /// The room's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many browsers are in the room.
    pub fn len(&self) -> usize {
        lock(&self.members).len()
    }

    /// Whether the room is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn others(&self, id: u64) -> Vec<Arc<Member>> {
        lock(&self.members)
            .iter()
            .filter(|m| m.id != id)
            .cloned()
            .collect()
    }

    /// Joins a browser: answers its offer (three sendrecv transceivers: audio, camera,
    /// screen) and returns its handle and the answer SDP. `streams` maps the browser's media
    /// stream ids to slot names.
    pub async fn join(
        self: &Arc<Self>,
        role: &str,
        offer: &str,
        streams: &HashMap<String, String>,
        settings: &PeerSettings,
        events: PeerEvents,
    ) -> Result<(RoomPeer, String), PeerError> {
        let mut media = MediaEngine::default();
        media
            .register_codec(
                RTCRtpCodecParameters {
                    rtp_codec: opus(),
                    payload_type: 111,
                },
                RtpCodecKind::Audio,
            )
            .map_err(werr)?;
        media
            .register_codec(
                RTCRtpCodecParameters {
                    rtp_codec: self.codec.rtp_codec(),
                    payload_type: 96,
                },
                RtpCodecKind::Video,
            )
            .map_err(werr)?;
        let registry = register_default_interceptors(Registry::new(), &mut media)
            .map_err(werr)?
            .with(
                Slot::from(14_000),
                KeyframeRequests {
                    read: VecDeque::new(),
                    write: VecDeque::new(),
                },
            );
        let mut setting = SettingEngineBuilder::new();
        if let Some(ip) = settings.advertised_ip {
            setting = setting.with_nat_1to1_ips(vec![ip.to_string()], RTCIceCandidateType::Host);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let ssrcs = [rand_u32(id, 0), rand_u32(id, 1), rand_u32(id, 2)];
        let local: [Arc<TrackLocalStaticRTP>; 3] = std::array::from_fn(|slot| {
            let (kind, codec) = if slot == 0 {
                (RtpCodecKind::Audio, opus())
            } else {
                (RtpCodecKind::Video, self.codec.rtp_codec())
            };
            Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
                SLOTS[slot].to_owned(),
                format!("{}-{id}", SLOTS[slot]),
                SLOTS[slot].to_owned(),
                kind,
                vec![RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters {
                        ssrc: Some(ssrcs[slot]),
                        ..Default::default()
                    },
                    codec,
                    active: true,
                    ..Default::default()
                }],
            )))
        });
        let stream_slots = streams
            .iter()
            .filter_map(|(sid, name)| Some((sid.clone(), SLOTS.iter().position(|s| s == name)?)))
            .collect();
        let (member_tx, member_rx) = tokio::sync::oneshot::channel::<Arc<Member>>();
        let handler = Arc::new(RoomHandler {
            room: self.clone(),
            member: tokio::sync::OnceCell::new(),
            member_rx: Mutex::new(Some(member_rx)),
            events: events.clone(),
        });
        let pc = PeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_media_engine(media)
            .with_setting_engine(setting.build())
            .with_interceptor_registry(registry)
            .with_handler(handler)
            .with_udp_addrs(vec![std::net::SocketAddr::new(settings.ice_ip, 0)])
            .build()
            .await
            .map_err(werr)?;
        let pc: Arc<dyn PeerConnection> = Arc::new(pc);
        pc.set_remote_description(RTCSessionDescription::offer(offer.to_owned()).map_err(werr)?)
            .await
            .map_err(werr)?;
        for t in &local {
            pc.add_track(t.clone() as Arc<dyn TrackLocal>)
                .await
                .map_err(werr)?;
        }
        let answer = pc.create_answer(None).await.map_err(werr)?;
        let sdp = answer.sdp.clone();
        pc.set_local_description(answer).await.map_err(werr)?;
        let member = Arc::new(Member {
            id,
            role: role.to_owned(),
            pc,
            local,
            ssrcs,
            sources: Mutex::new([None, None, None]),
            stream_slots,
            channels: Mutex::new(Vec::new()),
            events,
            forwarded: Default::default(),
        });
        let _ = member_tx.send(member.clone());
        lock(&self.members).push(member.clone());
        tracing::info!(room = %self.name, role, member = id, "joined video room");
        Ok((
            RoomPeer {
                room: self.clone(),
                member,
            },
            sdp,
        ))
    }

    /// Sends `packet` (from member `from`, slot `slot`) to every other member.
    async fn forward(&self, from: u64, slot: usize, packet: &rtc::rtp::Packet) {
        for m in self.others(from) {
            let mut p = packet.clone();
            p.header.ssrc = m.ssrcs[slot];
            if m.local[slot].write_rtp(p).await.is_ok() {
                m.forwarded[slot].fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Asks the senders of `slot` (every member but `except`) for a keyframe.
    async fn request_keyframe(&self, except: u64, slot: usize) {
        for m in self.others(except) {
            let src = lock(&m.sources)[slot].clone();
            if let Some((track, ssrc)) = src {
                let pli = PictureLossIndication {
                    sender_ssrc: 0,
                    media_ssrc: ssrc,
                };
                let _ = track.write_rtcp(vec![Box::new(pli)]).await;
            }
        }
    }

    /// Tells every member but `from` (their `events` get `PeerEvent::Control`).
    fn tell_others(&self, from: u64, v: serde_json::Value) {
        for m in self.others(from) {
            (m.events)(PeerEvent::Control(v.clone()));
        }
    }
}

struct RoomHandler {
    room: Arc<Room>,
    member: tokio::sync::OnceCell<Arc<Member>>,
    member_rx: Mutex<Option<tokio::sync::oneshot::Receiver<Arc<Member>>>>,
    events: PeerEvents,
}

impl RoomHandler {
    /// The member this handler belongs to (known once the answer is set).
    async fn member(&self) -> Option<Arc<Member>> {
        let rx = lock(&self.member_rx).take();
        self.member
            .get_or_try_init(|| async move {
                match rx {
                    Some(rx) => rx.await.map_err(|_| ()),
                    None => Err(()),
                }
            })
            .await
            .ok()
            .cloned()
    }
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for RoomHandler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        let Ok(init) = event.candidate.to_json() else {
            return;
        };
        if let Ok(v) = serde_json::to_value(init) {
            (self.events)(PeerEvent::Candidate(v));
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        match state {
            RTCPeerConnectionState::Connected => {
                (self.events)(PeerEvent::Connected);
                let Some(me) = self.member().await else {
                    return;
                };
                // Keyframe requests from this member about what it receives go to the senders.
                for slot in 1..3 {
                    let (room, me, track) = (self.room.clone(), me.clone(), me.local[slot].clone());
                    tokio::spawn(async move {
                        while let Some(TrackLocalEvent::OnRtcpPacket(p)) = track.poll().await {
                            if p.iter().any(|p| is_keyframe_request(p.as_ref())) {
                                room.request_keyframe(me.id, slot).await;
                            }
                        }
                    });
                }
                // A newcomer needs keyframes from everyone.
                for slot in 1..3 {
                    self.room.request_keyframe(me.id, slot).await;
                }
                let v = serde_json::json!({"type": "joined", "role": me.role});
                self.room.tell_others(me.id, v);
            }
            RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                (self.events)(PeerEvent::Closed(state.to_string()))
            }
            _ => {}
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let Some(me) = self.member().await else {
            return;
        };
        let room = self.room.clone();
        let kind = track.kind().await;
        tokio::spawn(async move {
            let mut slot = if kind == RtpCodecKind::Audio { 0 } else { 1 };
            while let Some(evt) = track.poll().await {
                match evt {
                    TrackRemoteEvent::OnOpen(init) => {
                        if let Some(s) = init
                            .stream_ids
                            .iter()
                            .find_map(|sid| me.stream_slots.get(sid).copied())
                        {
                            slot = s;
                        }
                        lock(&me.sources)[slot] = Some((track.clone(), init.ssrc));
                        tracing::info!(room = %room.name, role = %me.role, slot = SLOTS[slot],
                                       "video room: track open");
                        if slot > 0 {
                            let pli = PictureLossIndication {
                                sender_ssrc: 0,
                                media_ssrc: init.ssrc,
                            };
                            let _ = track.write_rtcp(vec![Box::new(pli)]).await;
                        }
                    }
                    TrackRemoteEvent::OnRtpPacket(p) => room.forward(me.id, slot, &p).await,
                    _ => {}
                }
            }
        });
    }

    async fn on_data_channel(&self, dc: Arc<dyn DataChannel>) {
        let Some(me) = self.member().await else {
            return;
        };
        let room = self.room.clone();
        tokio::spawn(async move {
            let label = dc.label().await.unwrap_or_default();
            lock(&me.channels).push((label.clone(), dc.clone()));
            while let Some(evt) = dc.poll().await {
                let DataChannelEvent::OnMessage(msg) = evt else {
                    continue;
                };
                for m in room.others(me.id) {
                    let peers: Vec<_> = lock(&m.channels)
                        .iter()
                        .filter(|(l, _)| *l == label)
                        .map(|(_, c)| c.clone())
                        .collect();
                    for c in peers {
                        let _ = if msg.is_string {
                            c.send_text(&String::from_utf8_lossy(&msg.data)).await
                        } else {
                            c.send(BytesMut::from(&msg.data[..])).await
                        };
                    }
                }
            }
        });
    }
}

/// One browser in a room. Dropping it leaves the room and closes the connection.
pub struct RoomPeer {
    room: Arc<Room>,
    member: Arc<Member>,
}

impl RoomPeer {
    /// The room.
    pub fn room(&self) -> &Arc<Room> {
        &self.room
    }

    /// Adds a remote (trickled) ICE candidate, a JSON `RTCIceCandidateInit`.
    pub async fn add_candidate(&self, candidate: serde_json::Value) -> Result<(), PeerError> {
        let init: RTCIceCandidateInit = serde_json::from_value(candidate).map_err(werr)?;
        self.member.pc.add_ice_candidate(init).await.map_err(werr)
    }

    /// Passes a control message (screen-share request, consent…) to the other members, as
    /// `{"type":"control","from":ROLE,"data":…}`.
    pub fn control(&self, data: serde_json::Value) {
        let v = serde_json::json!({"type": "control", "from": self.member.role, "data": data});
        self.room.tell_others(self.member.id, v);
    }

    /// Packets forwarded to this member so far, per slot (audio, camera, screen).
    pub fn forwarded(&self) -> [u64; 3] {
        std::array::from_fn(|i| self.member.forwarded[i].load(Ordering::Relaxed))
    }

    /// Leaves the room and closes the connection.
    pub async fn close(&self) {
        self.leave();
        let _ = self.member.pc.close().await;
    }

    fn leave(&self) {
        let mut members = lock(&self.room.members);
        let before = members.len();
        members.retain(|m| m.id != self.member.id);
        if members.len() != before {
            drop(members);
            let v = serde_json::json!({"type": "left", "role": self.member.role});
            self.room.tell_others(self.member.id, v);
        }
    }
}

impl Drop for RoomPeer {
    fn drop(&mut self) {
        self.leave();
        let pc = self.member.pc.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = pc.close().await;
            });
        }
    }
}

/// A per-member SSRC: std's `RandomState` keys are random per process.
fn rand_u32(id: u64, slot: u64) -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(id);
    h.write_u64(slot);
    h.finish() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_names() {
        assert_eq!(VideoCodec::from_name("VP8"), Some(VideoCodec::Vp8));
        assert_eq!(VideoCodec::from_name("h264"), Some(VideoCodec::H264));
        assert_eq!(VideoCodec::from_name("av1"), None);
    }
}
