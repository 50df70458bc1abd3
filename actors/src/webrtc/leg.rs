//! [`BrowserLeg`]: one actor per browser WebSocket (`GET /webrtc/ws`), holding one call leg.
//!
//! Browser → server (JSON text frames):
//!
//! ```json
//! {"type": "call", "to": "740", "sdp": "<offer>"}
//! {"type": "candidate", "candidate": {"candidate": "candidate:…", "sdpMid": "0", "sdpMLineIndex": 0}}
//! {"type": "bye"}
//! {"type": "join", "room": "r-7f3a…", "role": "agent", "sdp": "<offer>",
//!  "streams": {"<media stream id>": "audio" | "camera" | "screen"}}
//! {"type": "control", "data": {…}}          (in a room: to the other members)
//! ```
//!
//! Server → browser: `hello` (the leg id and the `ice_servers` to use), `answer` (the SDP
//! answer), `candidate` (trickled local candidates), `connected` (ICE + DTLS up), `ringing`,
//! `answered` (the far end answered), `bye` (with `status` and `reason`; then the socket
//! closes), `error` (a bad frame; the leg goes on).
//!
//! In a room (`join`, see [`switchboard_media::video_room`]) the server also sends `joined` and
//! `left` (another member, by role) and `control` (`{"from": ROLE, "data": …}`: what another
//! member sent, e.g. a screen-share request and the customer's consent).
//!
//! DTMF travels in the media (RTCDTMFSender → `telephone-event` → RFC 4733 on the SIP side).

use super::sip_ua::{self, UaCall, UaEvent, UaHandle};
use super::{GatewayGuard, LegSlot, WebRtcService};
use actix::prelude::*;
use actix_ws::{Message as WsMessage, MessageStream, ProtocolError, Session};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use switchboard_engine::sdp::Codec;
use switchboard_engine::sdp::Sdp;
use switchboard_media::video_room::{RoomPeer, VideoCodec};
use switchboard_media::webrtc::{BrowserPeer, PeerEvent};
use tracing::Instrument;

/// What the peer and the SIP side report to the leg.
#[derive(Message)]
#[rtype(result = "()")]
enum LegEvent {
    Peer(PeerEvent),
    Ua(UaEvent),
}

/// A browser frame.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Frame {
    Call {
        to: String,
        sdp: String,
    },
    Candidate {
        candidate: Value,
    },
    Bye,
    Join {
        room: String,
        role: String,
        sdp: String,
        #[serde(default)]
        streams: HashMap<String, String>,
    },
    Control {
        data: Value,
    },
}

/// The media side of a leg: a call bridged to SIP, or a member of a video room.
enum LegPeer {
    Call(Arc<BrowserPeer>),
    Room(Arc<RoomPeer>),
}

impl LegPeer {
    async fn add_candidate(&self, c: Value) -> Result<(), switchboard_media::webrtc::PeerError> {
        match self {
            LegPeer::Call(p) => p.add_candidate(c).await,
            LegPeer::Room(p) => p.add_candidate(c).await,
        }
    }

    async fn close(&self) {
        match self {
            LegPeer::Call(p) => p.close().await,
            LegPeer::Room(p) => p.close().await,
        }
    }
}

/// One browser leg.
pub struct BrowserLeg {
    svc: &'static WebRtcService,
    id: String,
    span: tracing::Span,
    ws: Session,
    stream: Option<MessageStream>,
    slot: Option<LegSlot>,
    peer: Option<Arc<LegPeer>>,
    /// Dropping it hangs up the SIP side.
    ua: Option<UaHandle>,
    calling: bool,
    ended: bool,
}

/// A leg id: `wrtc-` and 16 hex digits (used as the SIP Call-ID).
fn mint_id() -> String {
    format!("wrtc-{:016x}", rand::random::<u64>())
}

/// A room name: 8–64 of `[A-Za-z0-9_-]` (names are the rooms' only secret: make them long).
fn valid_room(name: &str) -> bool {
    (8..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A destination a browser may put in a Request-URI: 1–64 of `[A-Za-z0-9+*#._-]`.
fn valid_destination(to: &str) -> bool {
    !to.is_empty()
        && to.len() <= 64
        && to
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+*#._-".contains(&b))
}

impl BrowserLeg {
    /// Starts the leg's actor on the current (HTTP) arbiter.
    pub fn start_on_socket(svc: &'static WebRtcService, ws: Session, stream: MessageStream) {
        let id = mint_id();
        let span = tracing::info_span!("webrtc_leg", leg = %id);
        BrowserLeg {
            svc,
            id,
            span,
            ws,
            stream: Some(stream),
            slot: None,
            peer: None,
            ua: None,
            calling: false,
            ended: false,
        }
        .start();
    }

    fn send(&mut self, ctx: &mut Context<Self>, v: Value, close: bool) {
        let mut ws = self.ws.clone();
        ctx.wait(
            async move { ws.text(v.to_string()).await }
                .into_actor(self)
                .map(move |r, _act, ctx| {
                    if r.is_err() || close {
                        ctx.stop();
                    }
                }),
        );
    }

    fn error(&mut self, ctx: &mut Context<Self>, error: &str) {
        self.send(ctx, json!({"type": "error", "error": error}), false);
    }

    /// Ends the leg: tells the browser (unless it left) and stops.
    fn end(&mut self, ctx: &mut Context<Self>, status: u16, reason: &str) {
        if self.ended {
            return;
        }
        self.ended = true;
        tracing::info!(parent: &self.span, status, reason, "webrtc leg ended");
        if let Some(ua) = self.ua.take() {
            ua.hang_up();
        }
        self.send(
            ctx,
            json!({"type": "bye", "status": status, "reason": reason}),
            true,
        );
    }

    fn call(&mut self, ctx: &mut Context<Self>, to: String, offer: String) {
        if self.calling {
            return self.error(ctx, "this socket has a call");
        }
        if !valid_destination(&to) {
            return self.error(ctx, "to: 1-64 of A-Z a-z 0-9 + * # . _ -");
        }
        if !self.svc.allows(&to) {
            return self.end(ctx, 403, "Forbidden (destination not allowed)");
        }
        let Some(slot) = self.svc.admit() else {
            return self.end(ctx, 503, "Service Unavailable (too many WebRTC legs)");
        };
        self.slot = Some(slot);
        self.calling = true;
        tracing::info!(parent: &self.span, %to, "webrtc leg calling");
        let me = ctx.address();
        let (svc, id) = (self.svc, self.id.clone());
        let peer_events = {
            let me = me.clone();
            Arc::new(move |e| me.do_send(LegEvent::Peer(e)))
        };
        let ua_events: sip_ua::UaEvents = Arc::new(move |e| me.do_send(LegEvent::Ua(e)));
        let setup = async move {
            let (peer, answer) = BrowserPeer::answer(&offer, &svc.settings, peer_events)
                .await
                .map_err(|e| e.to_string())?;
            let bind = std::net::SocketAddr::new(svc.sip.ip(), 0);
            let socket = tokio::net::UdpSocket::bind(bind)
                .await
                .map_err(|e| format!("SIP socket: {e}"))?;
            let local = socket.local_addr().map_err(|e| e.to_string())?;
            let audio = peer.audio();
            let call = UaCall {
                engine: svc.sip,
                leg_id: id,
                to,
                rtp: peer.plain_addr(),
                opus_pt: audio.opus_pt,
                event_pt: audio.event_pt,
            };
            let ua = sip_ua::start(call, ua_events, GatewayGuard::new(local), socket).await;
            Ok::<_, String>((Arc::new(peer), answer, ua))
        }
        .instrument(self.span.clone());
        let job = self.svc.media.spawn(setup);
        ctx.wait(job.into_actor(self).map(|r, act, ctx| match r {
            Ok(Ok((peer, answer, ua))) => {
                act.peer = Some(Arc::new(LegPeer::Call(peer)));
                act.ua = Some(ua);
                let v = json!({"type": "answer", "sdp": answer, "id": act.id});
                act.send(ctx, v, false);
            }
            Ok(Err(e)) => {
                tracing::info!(parent: &act.span, error = %e, "webrtc offer refused");
                act.end(ctx, 488, &format!("Not Acceptable Here ({e})"));
            }
            Err(_) => act.end(ctx, 500, "Server Internal Error"),
        }));
    }

    fn join(
        &mut self,
        ctx: &mut Context<Self>,
        room: String,
        role: String,
        offer: String,
        streams: HashMap<String, String>,
    ) {
        if self.calling {
            return self.error(ctx, "this socket has a call");
        }
        if !self.svc.config.rooms {
            return self.end(ctx, 403, "Forbidden (video rooms are off)");
        }
        if !valid_room(&room) {
            return self.error(ctx, "room: 8-64 of A-Z a-z 0-9 _ -");
        }
        if !matches!(role.as_str(), "customer" | "agent" | "supervisor") {
            return self.error(ctx, "role: customer, agent or supervisor");
        }
        let codec = VideoCodec::from_name(&self.svc.config.room_codec).unwrap_or(VideoCodec::Vp8);
        let r = super::room(&room, codec);
        if r.len() >= self.svc.config.max_room_members {
            return self.end(ctx, 486, "Busy Here (the room is full)");
        }
        let Some(slot) = self.svc.admit() else {
            return self.end(ctx, 503, "Service Unavailable (too many WebRTC legs)");
        };
        self.slot = Some(slot);
        self.calling = true;
        tracing::info!(parent: &self.span, %room, %role, "webrtc leg joining a room");
        let me = ctx.address();
        let events = Arc::new(move |e| me.do_send(LegEvent::Peer(e)));
        let svc = self.svc;
        let setup = async move {
            r.join(&role, &offer, &streams, &svc.settings, events)
                .await
                .map_err(|e| e.to_string())
        }
        .instrument(self.span.clone());
        let job = self.svc.media.spawn(setup);
        ctx.wait(job.into_actor(self).map(|r, act, ctx| match r {
            Ok(Ok((peer, answer))) => {
                act.peer = Some(Arc::new(LegPeer::Room(Arc::new(peer))));
                let v = json!({"type": "answer", "sdp": answer, "id": act.id});
                act.send(ctx, v, false);
            }
            Ok(Err(e)) => act.end(ctx, 488, &format!("Not Acceptable Here ({e})")),
            Err(_) => act.end(ctx, 500, "Server Internal Error"),
        }));
    }

    fn candidate(&mut self, ctx: &mut Context<Self>, candidate: Value) {
        let Some(peer) = self.peer.clone() else {
            return self.error(ctx, "candidate before call");
        };
        let span = self.span.clone();
        self.svc.media.spawn(
            async move {
                if let Err(e) = peer.add_candidate(candidate).await {
                    tracing::debug!(error = %e, "remote candidate refused");
                }
            }
            .instrument(span),
        );
    }

    fn answered(&mut self, ctx: &mut Context<Self>, sdp: &str) {
        let far = Sdp::parse(sdp).ok().and_then(|s| s.audio_stream());
        let peer = match self.peer.as_deref() {
            Some(LegPeer::Call(p)) => Some(p.clone()),
            _ => None,
        };
        let (Some(peer), Some(far)) = (peer, far) else {
            return self.end(
                ctx,
                488,
                "Not Acceptable Here (no audio in the engine's answer)",
            );
        };
        let pt_of = |c: Codec| {
            far.formats
                .iter()
                .find(|f| f.codec == Some(c))
                .map(|f| f.payload_type)
        };
        let (Some(addr), Some(opus)) = (far.rtp, pt_of(Codec::Opus)) else {
            return self.end(
                ctx,
                488,
                "Not Acceptable Here (the engine did not take Opus)",
            );
        };
        peer.set_far_end(addr, opus, pt_of(Codec::TelephoneEvent));
        tracing::info!(parent: &self.span, %addr, "webrtc leg answered");
        self.send(ctx, json!({"type": "answered"}), false);
    }
}

impl Actor for BrowserLeg {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(s) = self.stream.take() {
            ctx.add_stream(s.max_frame_size(64 * 1024));
        }
        let hello = json!({"type": "hello", "id": self.id, "ice_servers": self.svc.ice_servers()});
        self.send(ctx, hello, false);
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        // The SIP side hangs up when its handle drops; the peer closes on the media runtime.
        self.ua.take();
        if let Some(peer) = self.peer.take() {
            self.svc.media.spawn(async move { peer.close().await });
        }
        let ws = self.ws.clone();
        actix_rt::spawn(async move {
            let _ = ws.close(None).await;
        });
    }
}

impl Handler<LegEvent> for BrowserLeg {
    type Result = ();

    fn handle(&mut self, msg: LegEvent, ctx: &mut Context<Self>) {
        if self.ended {
            return;
        }
        match msg {
            LegEvent::Peer(PeerEvent::Candidate(c)) => {
                self.send(ctx, json!({"type": "candidate", "candidate": c}), false)
            }
            LegEvent::Peer(PeerEvent::Connected) => {
                tracing::info!(parent: &self.span, "webrtc peer connected");
                self.send(ctx, json!({"type": "connected"}), false)
            }
            LegEvent::Peer(PeerEvent::Control(v)) => self.send(ctx, v, false),
            LegEvent::Peer(PeerEvent::Closed(why)) => {
                self.end(ctx, 480, &format!("Temporarily Unavailable (peer {why})"))
            }
            LegEvent::Ua(UaEvent::Ringing) => self.send(ctx, json!({"type": "ringing"}), false),
            LegEvent::Ua(UaEvent::Answered { sdp }) => self.answered(ctx, &sdp),
            LegEvent::Ua(UaEvent::Failed { status, reason }) => {
                self.ua = None;
                self.end(ctx, status, &reason)
            }
            LegEvent::Ua(UaEvent::Bye) => {
                self.ua = None;
                self.end(ctx, 200, "remote hangup")
            }
        }
    }
}

impl StreamHandler<Result<WsMessage, ProtocolError>> for BrowserLeg {
    fn handle(&mut self, msg: Result<WsMessage, ProtocolError>, ctx: &mut Context<Self>) {
        let text = match msg {
            Ok(WsMessage::Text(t)) => t,
            Ok(WsMessage::Ping(p)) => {
                let mut ws = self.ws.clone();
                ctx.wait(
                    async move {
                        let _ = ws.pong(&p).await;
                    }
                    .into_actor(self),
                );
                return;
            }
            Ok(WsMessage::Close(_)) | Err(_) => {
                ctx.stop();
                return;
            }
            Ok(WsMessage::Binary(_)) => return self.error(ctx, "send JSON text frames"),
            Ok(_) => return,
        };
        if self.ended {
            return;
        }
        match serde_json::from_str::<Frame>(&text) {
            Ok(Frame::Call { to, sdp }) => self.call(ctx, to, sdp),
            Ok(Frame::Candidate { candidate }) => self.candidate(ctx, candidate),
            Ok(Frame::Bye) => self.end(ctx, 200, "hangup"),
            Ok(Frame::Join {
                room,
                role,
                sdp,
                streams,
            }) => self.join(ctx, room, role, sdp, streams),
            Ok(Frame::Control { data }) => match self.peer.as_deref() {
                Some(LegPeer::Room(p)) => p.control(data),
                _ => self.error(ctx, "control outside a room"),
            },
            Err(e) => self.error(ctx, &format!("bad frame: {e}")),
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_cannot_inject_sip() {
        assert!(valid_destination("740"));
        assert!(valid_destination("+4420*1#"));
        assert!(valid_destination("alice.smith"));
        assert!(!valid_destination(""));
        assert!(!valid_destination("740@evil"));
        assert!(!valid_destination("740>\r\nX-A: b"));
        assert!(!valid_destination(&"1".repeat(65)));
    }

    #[test]
    fn frames_parse() {
        assert!(matches!(
            serde_json::from_str::<Frame>(r#"{"type":"call","to":"1","sdp":"v=0"}"#),
            Ok(Frame::Call { .. })
        ));
        assert!(matches!(
            serde_json::from_str::<Frame>(r#"{"type":"bye"}"#),
            Ok(Frame::Bye)
        ));
        assert!(serde_json::from_str::<Frame>(r#"{"type":"nope"}"#).is_err());
    }
}
