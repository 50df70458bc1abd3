//! WebRTC browser legs: a browser joins calls through the engine over a JSON WebSocket
//! (`GET /webrtc/ws`), with ICE, DTLS-SRTP and Opus terminated by the engine
//! ([`switchboard_media::webrtc::BrowserPeer`]) and the call placed into the engine's own SIP
//! listener by a small UAC ([`sip_ua`]), so it runs the dialplan like any SIP caller: a
//! `CallActor`, a CDR (the leg id is the Call-ID), Opus ↔ G.711 transcoding and RFC 4733 DTMF
//! from the media plane.
//!
//! One [`leg::BrowserLeg`] actor per socket holds the leg (id `wrtc-…`, its tracing span); its
//! peer connection and SIP side run as tasks on the media runtime and are torn down when the
//! actor goes, however it goes (dropping the handles closes the peer and hangs up the call).
//!
//! `GET /webrtc` serves a demo phone page.

pub mod leg;
pub mod sip_ua;

use actix_web::{web, HttpRequest, HttpResponse};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use switchboard_engine::config::WebRtcConfig;
use switchboard_media::video_room::{Room, VideoCodec};
use switchboard_media::webrtc::PeerSettings;

static SERVICE: OnceLock<WebRtcService> = OnceLock::new();
static GATEWAYS: OnceLock<Mutex<HashSet<SocketAddr>>> = OnceLock::new();
static ROOMS: OnceLock<Mutex<HashMap<String, Weak<Room>>>> = OnceLock::new();

/// What browser legs need from the running engine.
pub struct WebRtcService {
    /// Where peers bind and what they advertise.
    pub settings: PeerSettings,
    /// The engine's SIP UDP address (where legs place their calls).
    pub sip: SocketAddr,
    /// The media runtime (peer connections and SIP sides run there).
    pub media: tokio::runtime::Handle,
    /// The configuration (ICE servers for browsers, limits, allowed destinations).
    pub config: WebRtcConfig,
    legs: Arc<AtomicUsize>,
}

impl WebRtcService {
    /// A service for an engine whose SIP listens on `sip` and whose relay binds `rtp_ip`.
    pub fn new(
        config: WebRtcConfig,
        sip: SocketAddr,
        rtp_ip: IpAddr,
        media: tokio::runtime::Handle,
    ) -> WebRtcService {
        let loopback_if_any = |ip: IpAddr| {
            if ip.is_unspecified() {
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            } else {
                ip
            }
        };
        WebRtcService {
            settings: PeerSettings {
                ice_ip: config.ice_ip.unwrap_or(rtp_ip),
                advertised_ip: config.advertised_ip,
                rtp_ip: loopback_if_any(rtp_ip),
            },
            sip: SocketAddr::new(loopback_if_any(sip.ip()), sip.port()),
            media,
            config,
            legs: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The `iceServers` a browser should use (JSON for `RTCPeerConnection`).
    pub fn ice_servers(&self) -> serde_json::Value {
        if self.config.ice_servers.is_empty() {
            return serde_json::json!([]);
        }
        let mut s = serde_json::json!({"urls": self.config.ice_servers});
        if !self.config.turn_username.is_empty() {
            s["username"] = self.config.turn_username.clone().into();
            s["credential"] = self.config.turn_credential.clone().into();
        }
        serde_json::json!([s])
    }

    /// Whether `to` may be dialled from a browser: `allowed_destinations` holds exact names
    /// and prefixes ending in `*` (`"*"` allows all).
    pub fn allows(&self, to: &str) -> bool {
        self.config
            .allowed_destinations
            .iter()
            .any(|p| match p.strip_suffix('*') {
                Some(prefix) => to.starts_with(prefix),
                None => p == to,
            })
    }

    /// Takes a leg slot, or `None` at `max_legs`; the slot is freed when the value drops.
    pub fn admit(&self) -> Option<LegSlot> {
        let n = self.legs.fetch_add(1, Ordering::AcqRel);
        if n >= self.config.max_legs {
            self.legs.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(LegSlot(self.legs.clone()))
    }

    /// Browser legs in progress.
    pub fn active(&self) -> usize {
        self.legs.load(Ordering::Acquire)
    }
}

/// The video room called `name` (created on first use; it goes when its last member leaves).
pub fn room(name: &str, codec: VideoCodec) -> Arc<Room> {
    let mut rooms = ROOMS
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    rooms.retain(|_, r| r.strong_count() > 0);
    if let Some(r) = rooms.get(name).and_then(Weak::upgrade) {
        return r;
    }
    let r = Room::new(name, codec);
    rooms.insert(name.to_owned(), Arc::downgrade(&r));
    r
}

/// One admitted leg (see [`WebRtcService::admit`]).
pub struct LegSlot(Arc<AtomicUsize>);

impl Drop for LegSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Installs the service (once, at start).
pub fn install(svc: WebRtcService) {
    let _ = SERVICE.set(svc);
}

/// The service, when WebRTC is enabled.
pub fn service() -> Option<&'static WebRtcService> {
    SERVICE.get()
}

fn gateways() -> std::sync::MutexGuard<'static, HashSet<SocketAddr>> {
    GATEWAYS
        .get_or_init(|| Mutex::new(HashSet::new()))
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// Whether a SIP source is the SIP side of a live browser leg (trusted like
/// `calls.trusted_sources`: the browser leg is the engine's own caller).
pub fn is_gateway(addr: SocketAddr) -> bool {
    GATEWAYS.get().is_some() && gateways().contains(&addr)
}

/// Keeps a browser leg's SIP socket address trusted while it lives.
pub struct GatewayGuard(SocketAddr);

impl GatewayGuard {
    /// Trusts `addr` until the guard drops.
    pub fn new(addr: SocketAddr) -> GatewayGuard {
        gateways().insert(addr);
        GatewayGuard(addr)
    }
}

impl Drop for GatewayGuard {
    fn drop(&mut self) {
        gateways().remove(&self.0);
    }
}

/// Registers `/webrtc` (demo phone), `/webrtc/room` (video room page), their scripts and
/// `/webrtc/ws`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/webrtc", web::get().to(page))
        .route("/webrtc/phone.js", web::get().to(script))
        .route("/webrtc/room", web::get().to(room_page))
        .route("/webrtc/room.js", web::get().to(room_script))
        .route("/webrtc/ws", web::get().to(ws));
}

async fn room_page() -> HttpResponse {
    if service().is_none() {
        return HttpResponse::NotFound().finish();
    }
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(include_str!("assets/room.html"))
}

async fn room_script() -> HttpResponse {
    if service().is_none() {
        return HttpResponse::NotFound().finish();
    }
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .body(include_str!("assets/room.js"))
}

async fn page() -> HttpResponse {
    if service().is_none() {
        return HttpResponse::NotFound().finish();
    }
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(include_str!("assets/phone.html"))
}

async fn script() -> HttpResponse {
    if service().is_none() {
        return HttpResponse::NotFound().finish();
    }
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .body(include_str!("assets/phone.js"))
}

async fn ws(req: HttpRequest, body: web::Payload) -> Result<HttpResponse, actix_web::Error> {
    let Some(svc) = service() else {
        return Ok(HttpResponse::NotFound().json(serde_json::json!({
            "error": "WebRTC is disabled", "status": 404
        })));
    };
    let (res, session, stream) = actix_ws::handle(&req, body)?;
    leg::BrowserLeg::start_on_socket(svc, session, stream);
    Ok(res)
}
