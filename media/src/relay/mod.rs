//! The RTP/RTCP relay of one call: media anchoring with symmetric latching.
//!
//! Leg A faces the caller, leg B the callee. Each leg has an RTP and an RTCP socket (ports `p` and
//! `p + 1` from the [`PortAllocator`]). A packet received on a leg's socket is sent out of the
//! *other* leg's socket of the same kind to that leg's remote address, untouched: the relay is
//! payload-agnostic (G.711, Opus, RFC 4733 events, end-to-end SRTP, even STUN pass through).
//!
//! A leg keyed with [`RelaySession::set_srtp`] is secured instead: SRTP/SRTCP is terminated at
//! that leg's edge (`secure.rs`): what it sends is authenticated and decrypted on arrival (or
//! dropped and counted, [`DirectionStats::srtp_rejected`]) before latching and before anything
//! else sees it, and what is sent into it is encrypted with the engine's key for the leg. So a
//! secured leg bridges to a plain one, and everything below works on plaintext.
//!
//! # Threads and tasks
//!
//! [`RelaySession::start`] spawns four tokio tasks (one per socket, each a tight
//! receive-and-forward loop) on the runtime whose [`Handle`] it is given; the sockets are
//! registered with that runtime's reactor. Give it a multi-thread runtime dedicated to media (or
//! the engine's I/O runtime), never an actix arbiter: packets never cross an actor mailbox. The
//! session's methods are synchronous and may be called from any thread (an actix actor, a test).
//!
//! # Cost, and why there is no `recvmmsg`/`sendmmsg`
//!
//! Measured with `load-tests/benches/relay.rs` on the 2-core box: 1 000 calls (100 000
//! packets/s in, 100 000 out) cost ≈ 0.34–0.52 of one core on one runtime thread, ≈ 3.5–5 µs per
//! relayed packet (most of it the loopback `sendto`, whose delivery cost the sender pays),
//! ≈ 13 KiB RSS per session. A `recvmmsg` variant (one non-blocking batch per wake-up, readiness cleared through
//! `try_io` when the batch was short) measured the same within noise: a call's socket sees one
//! packet per 20 ms, so batches hold one packet, and tokio already issues ≈ 1.03 receive calls per
//! packet (strace). `sendmmsg` cannot batch either: each leg sends from its own socket. So the
//! loop stays plain. Sends are a direct non-blocking `sendto` on the fd (through `SockRef`), not
//! tokio's `try_send_to`, which refuses to send before the reactor has reported writability: a
//! full socket buffer drops the packet (counted), real-time media is never queued.
//!
//! # Symmetric latching (NAT traversal, RFC 7362-style)
//!
//! For each leg and kind (RTP, RTCP) the relay keeps a *remote address*, where it sends what the
//! other leg receives:
//!
//! 1. It starts as the address from SDP ([`RelaySession::set_remote`]; RTCP defaults to RTP + 1),
//!    or unknown (packets for that leg are then dropped and counted).
//! 2. The first packet received on the leg *latches*: its source becomes the remote address,
//!    whatever the SDP said (the phone may be behind NAT).
//! 3. Once latched, packets from any other source are dropped (counted as `foreign`), unless
//!    [`RelayConfig::relatch_after`] consecutive packets arrive from one new source with none from
//!    the latched one in between: then the relay re-latches to it (a NAT rebinding, a phone that
//!    changed its port).
//! 4. [`RelaySession::set_remote`] (a new SDP) and [`RelaySession::reset_latch`] (hold/unhold,
//!    re-INVITE) unlatch: the next packet latches again immediately.
//!
//! # The media plane: formats, routes, players, DTMF, recording, forks
//!
//! The same sockets (so the ports in SDP never change) also make the relay a media endpoint.
//! Configuration is per leg: [`RelaySession::set_format`] (the negotiated codec, payload type and
//! telephone-event payload type) and [`RelaySession::set_route`] ([`Route::Bridge`] to the other
//! leg, [`Route::Echo`] back to the sender, [`Route::Local`] nowhere). The pumps hold their own
//! copy of the configuration and re-read it only when a generation counter moved, so with equal
//! (or unknown) formats and nothing tapping, a packet costs what it did before: one atomic load
//! more, the RFC 3550 jitter update, no decode, no lock beyond the latch.
//!
//! * **Transcoding** when both formats are known and differ: in the receiving pump, through a
//!   [`crate::transcode::JitterTranscoder`] (an adaptive [`crate::jitter::JitterBuffer`] in front
//!   of the [`crate::transcode::Transcoder`]): packets are put in order, duplicates and late ones
//!   dropped, losses concealed (Opus FEC, PLC), and one frame is played out per packet duration
//!   on a timer of that pump (the pump then waits on its socket *or* the playout deadline; with
//!   nothing to play, or in pass-through, it waits on the socket only). The output goes out on the
//!   engine's own stream to the destination (its own SSRC, sequence and timestamps).
//! * **Telephone-events** (RFC 4733) are always detected on a leg whose format has a dtmf payload
//!   type: one [`MediaEvent::Dtmf`] per press, in every route. In `Bridge` they are forwarded
//!   (payload type rewritten when the legs differ, re-stamped on the engine's stream when
//!   transcoding), or not at all when the destination has no telephone-event. Both legs' events
//!   are taken to run at their audio codec's RTP clock. A press whose end packets were all lost
//!   is closed by the next packet that arrives at least 1 s after its last one.
//! * **In-band** detection ([`RelaySession::detect_inband`]) decodes the leg's packets in the pump
//!   (arrival order) into the Goertzel detector.
//! * **Players and DTMF senders** ([`RelaySession::play`], [`RelaySession::send_dtmf`]) are tasks
//!   sending from the leg's socket on one outgoing stream per leg (random SSRC; sequence numbers
//!   and timestamps continue across plays; after a pause of more than 200 ms the timestamp moves
//!   on by the wall time). While one runs on a leg, bridged or echoed media toward the leg is not
//!   sent; a player holds its frames while a digit is sent into its leg.
//! * **Live streams** ([`RelaySession::stream`]): a [`LiveAudio`] handle feeds PCM frames that
//!   the leg's player encodes and paces like a clip (a conference room's output, a bot's voice).
//! * **Recording and forks** ([`RelaySession::start_recording`], [`RelaySession::subscribe`]): the
//!   pumps copy the packets of tapped legs (bounded queue, never blocking) to one tap task per
//!   session that runs each leg through a [`crate::jitter::JitterBuffer`] and its decoder every
//!   20 ms (losses concealed) into the stereo WAV writer and the subscribers. The task sleeps
//!   when nothing is tapped and the pumps stop copying.
//!
//! RTCP follows the route (forwarded untouched in `Bridge`, echoed in `Echo`); when transcoding,
//! its SSRCs no longer match the media the far end receives (the far end's reports on the
//! engine's stream are not rewritten either).
//!
//! # Shutdown
//!
//! [`RelaySession::stop`] aborts the tasks (relay, players, DTMF senders, the tap) and returns
//! once they are gone: the sockets are closed and the ports are back in the allocator. A
//! recording still open is then finished as far as it was written, without its header fixed up:
//! call [`RelaySession::stop_recording`] first. Dropping the session aborts the tasks too; the
//! ports come back as soon as the runtime has dropped them (immediately on a live runtime).

mod dtls;
mod live;
mod plane;
mod player;
mod secure;
mod tap;

pub use dtls::{DtlsOutcome, DtlsParams};
pub use live::{LiveAudio, LIVE_QUEUE};
pub use secure::LegSrtp;

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use socket2::SockRef;
use tokio::net::UdpSocket;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{AbortHandle, JoinHandle};

use crate::codec::CodecKind;
use crate::dtmf::Digit;
use crate::pcm::Pcm;
use crate::ports::{PortAllocator, PortError, PortLease};
use crate::quality::CodecImpairment;
use crate::recording::{RecordingError, StereoWavWriter};
use crate::rtp::{RtpHeader, SeqTracker};
use crate::srtp::{SrtpContext, SrtpError, SrtpSuite};
use plane::{send_leg, Plane, PumpMedia, Sends};
use tap::{Recorder, Subscriber, Tap, TapPacket};

/// Largest datagram relayed whole; longer ones are truncated by the kernel (an RTP packet over UDP
/// stays below the path MTU, 1500 bytes on Ethernet).
pub const MAX_PACKET: usize = 2048;

/// One side of the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Leg {
    /// The caller side.
    A,
    /// The callee side.
    B,
}

impl Leg {
    /// The other leg.
    pub fn other(self) -> Leg {
        match self {
            Leg::A => Leg::B,
            Leg::B => Leg::A,
        }
    }

    fn idx(self) -> usize {
        self as usize
    }
}

/// Tuning of a relay session.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// Consecutive packets from one new source needed to re-latch (see the module docs).
    pub relatch_after: u32,
    /// `SO_RCVBUF` for the four sockets (`None` = the system default, ≈ 208 KiB on Linux).
    pub recv_buffer: Option<usize>,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            relatch_after: 5,
            recv_buffer: None,
        }
    }
}

/// Why a session could not start.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// No port pair for one of the legs.
    #[error(transparent)]
    Ports(#[from] PortError),
    /// Registering a socket with the runtime failed.
    #[error("registering an RTP socket: {0}")]
    Io(#[from] io::Error),
}

/// Counters of one direction (packets received on one leg and relayed to the other).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirectionStats {
    /// RTP packets accepted (from the latched source) on the receiving leg.
    pub packets: u64,
    /// Their bytes (UDP payload).
    pub bytes: u64,
    /// RTP packets lost before reaching the relay (sequence gaps, RFC 3550 A.3).
    pub lost: u64,
    /// RTP and RTCP packets sent on to the other leg.
    pub forwarded: u64,
    /// Accepted packets that could not be sent on (remote unknown, socket buffer full, error).
    pub dropped: u64,
    /// Packets dropped because they came from a source other than the latched one.
    pub foreign: u64,
    /// RTCP packets accepted (on the RTCP socket, or multiplexed on the RTP socket).
    pub rtcp_packets: u64,
    /// SRTP/SRTCP packets dropped on a secured leg: failed authentication, replayed, malformed,
    /// or sent before the leg's key was known. Never forwarded.
    pub srtp_rejected: u64,
    /// When the last RTP packet was accepted.
    pub last_packet: Option<Instant>,
}

/// A snapshot of a session's counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelayStats {
    /// Caller → callee (received on leg A).
    pub a_to_b: DirectionStats,
    /// Callee → caller (received on leg B).
    pub b_to_a: DirectionStats,
    /// Time since the last RTP packet in either direction (or since start).
    pub idle_for: Duration,
}

/// Negotiated format of one leg (from the SDP answer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LegFormat {
    /// The audio codec.
    pub codec: CodecKind,
    /// Its RTP payload type on this leg.
    pub payload_type: u8,
    /// The telephone-event (RFC 4733) payload type, if the leg negotiated one.
    pub dtmf_payload_type: Option<u8>,
}

/// Where RTP received on a leg goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Route {
    /// To the other leg: untouched when both formats are equal or unknown, transcoded when both
    /// are known and differ.
    #[default]
    Bridge,
    /// Back to the same leg (the echo test), untouched.
    Echo,
    /// Nowhere: only detectors, recording and subscribers see it.
    Local,
}

/// How a DTMF digit was received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DtmfSource {
    /// RFC 4733 telephone-event packets.
    Rfc4733,
    /// The tone pair in the audio (Goertzel detection).
    Inband,
}

/// What the media plane tells the call actor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MediaEvent {
    /// A key press received on a leg (once per press, at its end).
    Dtmf {
        /// The leg it came from.
        leg: Leg,
        /// The key.
        digit: Digit,
        /// How long it was held, ms.
        duration_ms: u32,
        /// Telephone-event or in-band.
        source: DtmfSource,
        /// When it was reported.
        at: Instant,
    },
    /// A clip started with [`RelaySession::play`] ran out (not sent when stopped or replaced).
    PlayDone {
        /// The leg it played into.
        leg: Leg,
        /// The id given to `play`.
        id: u64,
    },
}

/// A finished recording.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordingInfo {
    /// The WAV file.
    pub path: PathBuf,
    /// Its length, ms.
    pub duration_ms: u64,
    /// Its size on disk, bytes.
    pub bytes: u64,
    /// Sample rate, Hz (8000, or 16000 when a leg is wideband at the start).
    pub rate: u32,
    /// Channels: 2 (leg A left, leg B right).
    pub legs: u8,
}

/// Reception quality of the RTP received from a leg.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct StreamQuality {
    /// RTP packets received.
    pub packets: u64,
    /// Packets lost (RFC 3550 sequence gaps).
    pub lost: u64,
    /// `lost` in percent of the packets expected.
    pub loss_percent: f64,
    /// RFC 3550 interarrival jitter, ms.
    pub jitter_ms: f64,
    /// E-model MOS estimate (network delay taken as 0: the relay does not measure it).
    pub mos: f64,
}

/// Why a recording could not start.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Creating the directory or the file failed.
    #[error("recording: {0}")]
    Io(#[from] io::Error),
    /// The session is already recording.
    #[error("already recording")]
    AlreadyRecording,
    /// The WAV writer refused.
    #[error(transparent)]
    Wav(#[from] RecordingError),
}

/// The relay of one call. See the module documentation for the threading and latching rules.
#[derive(Debug)]
pub struct RelaySession {
    shared: Arc<Shared>,
    local: [SocketAddr; 2],
    handle: Handle,
    tasks: Vec<JoinHandle<()>>,
    watchdogs: Mutex<Vec<AbortHandle>>,
    sockets: Arc<Sockets>,
    /// Players, DTMF senders and the tap task.
    aux: Mutex<Vec<JoinHandle<()>>>,
    players: Mutex<[Option<AbortHandle>; 2]>,
    events: Mutex<Option<mpsc::Receiver<MediaEvent>>>,
    tap: Mutex<Option<Arc<Tap>>>,
}

/// A cheap, cloneable read-only view of a session (stats and idle time) for another thread or
/// actor; it does not keep the sockets or ports alive.
#[derive(Clone, Debug)]
pub struct RelayMonitor {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    epoch: Instant,
    relatch_after: u32,
    legs: [LegShared; 2],
    plane: Plane,
    /// Per leg: its DTLS-SRTP association, when it has one (`dtls.rs`).
    dtls: [dtls::LegDtls; 2],
    /// Numbers DTLS sessions, so a replaced session's driver task ends.
    dtls_generation: AtomicU64,
}

#[derive(Debug, Default)]
struct LegShared {
    /// Index 0 = RTP, 1 = RTCP.
    latch: [Mutex<Latch>; 2],
    stats: Counters,
}

#[derive(Debug, Default)]
struct Counters {
    packets: AtomicU64,
    bytes: AtomicU64,
    lost: AtomicU64,
    forwarded: AtomicU64,
    dropped: AtomicU64,
    foreign: AtomicU64,
    rtcp_packets: AtomicU64,
    srtp_rejected: AtomicU64,
    /// Nanoseconds since `epoch` + 1 of the last RTP packet; 0 = none yet.
    last_rtp: AtomicU64,
}

#[derive(Debug, Default)]
struct Latch {
    remote: Option<SocketAddr>,
    latched: bool,
    candidate: Option<SocketAddr>,
    candidate_count: u32,
}

impl Latch {
    /// Applies the latching rule to a packet from `src`; true if the packet is accepted.
    fn accept(&mut self, src: SocketAddr, relatch_after: u32) -> bool {
        if !self.latched {
            self.remote = Some(src);
            self.latched = true;
            self.candidate = None;
            return true;
        }
        if self.remote == Some(src) {
            self.candidate = None;
            return true;
        }
        if self.candidate == Some(src) {
            self.candidate_count += 1;
        } else {
            self.candidate = Some(src);
            self.candidate_count = 1;
        }
        if self.candidate_count >= relatch_after {
            tracing::debug!(from = ?self.remote, to = %src, "RTP re-latched");
            self.remote = Some(src);
            self.candidate = None;
            return true;
        }
        false
    }

    fn unlatch(&mut self) {
        self.latched = false;
        self.candidate = None;
    }
}

/// The four sockets and the two port leases, shared by the four tasks only: when the last task
/// ends, the sockets close first and then the leases return the ports (field order).
struct Sockets {
    socks: [[UdpSocket; 2]; 2],
    _leases: [PortLease; 2],
}

impl std::fmt::Debug for Sockets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sockets").finish_non_exhaustive()
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Rtp = 0,
    Rtcp = 1,
}

impl RelaySession {
    /// Allocates two port pairs on `allocator` and starts relaying on the runtime of `handle`.
    /// Both remotes start unknown: call [`RelaySession::set_remote`] with the SDP addresses.
    pub fn start(
        handle: &Handle,
        allocator: &PortAllocator,
        config: RelayConfig,
    ) -> Result<RelaySession, RelayError> {
        let a = allocator.allocate()?;
        let b = allocator.allocate()?;
        let local = [a.rtp.local_addr()?, b.rtp.local_addr()?];
        let register = |s: std::net::UdpSocket| -> io::Result<UdpSocket> {
            if let Some(size) = config.recv_buffer {
                SockRef::from(&s).set_recv_buffer_size(size)?;
            }
            UdpSocket::from_std(s)
        };
        let sockets = {
            let _guard = handle.enter();
            Arc::new(Sockets {
                socks: [
                    [register(a.rtp)?, register(a.rtcp)?],
                    [register(b.rtp)?, register(b.rtcp)?],
                ],
                _leases: [a.lease, b.lease],
            })
        };
        let (events_tx, events_rx) = mpsc::channel(plane::EVENTS);
        let shared = Arc::new(Shared {
            epoch: Instant::now(),
            relatch_after: config.relatch_after.max(1),
            legs: Default::default(),
            plane: Plane::new(events_tx),
            dtls: Default::default(),
            dtls_generation: AtomicU64::new(0),
        });
        let mut tasks = Vec::with_capacity(4);
        for leg in [Leg::A, Leg::B] {
            for kind in [Kind::Rtp, Kind::Rtcp] {
                tasks.push(handle.spawn(pump(sockets.clone(), shared.clone(), leg, kind)));
            }
        }
        Ok(RelaySession {
            shared,
            local,
            handle: handle.clone(),
            tasks,
            watchdogs: Mutex::new(Vec::new()),
            sockets,
            aux: Mutex::new(Vec::new()),
            players: Mutex::new([None, None]),
            events: Mutex::new(Some(events_rx)),
            tap: Mutex::new(None),
        })
    }

    /// The relay's RTP address for a leg: what goes in the SDP sent to that leg's endpoint
    /// (`c=` and `m=` port; RTCP is on port + 1).
    pub fn local_addr(&self, leg: Leg) -> SocketAddr {
        self.local[leg.idx()]
    }

    /// Sets where a leg's endpoint receives RTP (from its SDP; `None` if unknown or on
    /// `c=0.0.0.0`) and RTCP at RTP port + 1, and unlatches the leg.
    pub fn set_remote(&self, leg: Leg, rtp: Option<SocketAddr>) {
        let rtcp = rtp.and_then(|a| Some(SocketAddr::new(a.ip(), a.port().checked_add(1)?)));
        self.set_remote_rtcp(leg, rtcp);
        let mut l = self.shared.latch(leg, Kind::Rtp);
        l.remote = rtp;
        l.unlatch();
    }

    /// Overrides where a leg's endpoint receives RTCP (SDP `a=rtcp`, or the RTP address with
    /// `a=rtcp-mux`), and unlatches the leg's RTCP.
    pub fn set_remote_rtcp(&self, leg: Leg, rtcp: Option<SocketAddr>) {
        let mut l = self.shared.latch(leg, Kind::Rtcp);
        l.remote = rtcp;
        l.unlatch();
    }

    /// Unlatches a leg (RTP and RTCP) but keeps its current remote: the next packet received on
    /// the leg latches again. Use on hold/unhold and re-INVITEs that keep the address.
    pub fn reset_latch(&self, leg: Leg) {
        self.shared.latch(leg, Kind::Rtp).unlatch();
        self.shared.latch(leg, Kind::Rtcp).unlatch();
    }

    /// Where the relay currently sends RTP for a leg (latched or from SDP).
    pub fn remote(&self, leg: Leg) -> Option<SocketAddr> {
        self.shared.latch(leg, Kind::Rtp).remote
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> RelayStats {
        self.shared.stats()
    }

    /// Time since the last RTP packet in either direction (since start if none yet).
    pub fn idle_for(&self) -> Duration {
        self.shared.idle_for()
    }

    /// A cloneable view for stats and idle time from other threads.
    pub fn monitor(&self) -> RelayMonitor {
        RelayMonitor {
            shared: self.shared.clone(),
        }
    }

    /// Resolves with the idle time once no RTP has been seen for `timeout` in either direction
    /// (measured as by [`RelaySession::idle_for`]). One timer task on the session's runtime; it
    /// ends with the session (the receiver then gets an error) or when the receiver is dropped.
    /// RTCP does not count as activity: on hold, use a longer timeout (or none).
    pub fn on_timeout(&self, timeout: Duration) -> oneshot::Receiver<Duration> {
        let (mut tx, rx) = oneshot::channel();
        let shared = self.shared.clone();
        let task = self.handle.spawn(async move {
            loop {
                let idle = shared.idle_for();
                if idle >= timeout {
                    let _ = tx.send(idle);
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(timeout - idle) => {}
                    _ = tx.closed() => return,
                }
            }
        });
        let mut w = self
            .watchdogs
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        w.retain(|h| !h.is_finished());
        w.push(task.abort_handle());
        rx
    }

    /// Stops relaying and waits until the tasks are gone: on return the sockets are closed and
    /// the ports are back in the allocator.
    pub async fn stop(mut self) {
        self.abort();
        let aux = std::mem::take(&mut *lock(&self.aux));
        for t in std::mem::take(&mut self.tasks).into_iter().chain(aux) {
            let _ = t.await;
        }
    }

    fn abort(&self) {
        for t in &self.tasks {
            t.abort();
        }
        for h in lock(&self.watchdogs).iter() {
            h.abort();
        }
        for t in lock(&self.aux).iter() {
            t.abort();
        }
    }

    /// Keeps a player, sender or tap task to abort with the session.
    fn track(&self, task: JoinHandle<()>) {
        let mut aux = lock(&self.aux);
        aux.retain(|t| !t.is_finished());
        aux.push(task);
    }

    /// Sets the negotiated format of a leg (`None`: unknown, e.g. before the answer). Decides
    /// pass-through or transcoding in `Bridge`, the telephone-event payload type detected and
    /// sent, and what players encode into. May change at any time (re-INVITE), recording too.
    pub fn set_format(&self, leg: Leg, format: Option<LegFormat>) {
        self.shared
            .plane
            .update(|c| c.legs[leg.idx()].format = format);
    }

    /// Secures a leg with SRTP/SRTCP (`Some`) or makes it plain RTP again (`None`). From then
    /// on what the leg sends is authenticated and decrypted on arrival (failures dropped and
    /// counted in [`DirectionStats::srtp_rejected`]) and everything sent into it is protected
    /// with `srtp.send`. Setting the same keys again keeps the contexts (rollover counters,
    /// replay windows). Fails, changing nothing, when a key cannot be used.
    pub fn set_srtp(&self, leg: Leg, srtp: Option<LegSrtp>) -> Result<(), SrtpError> {
        self.shared.key_leg(leg, srtp)
    }

    /// Secures a leg with DTLS-SRTP (RFC 5764): the handshake runs on the leg's RTP socket
    /// (`dtls.rs`), as client toward the leg's current remote (set it first, from the SDP) or
    /// as server; until it completes, whatever the leg sends is dropped. Replaces any DTLS
    /// session the leg had. The receiver gets the outcome once (dropped unanswered when the
    /// session is replaced or the relay stops).
    pub fn start_dtls(
        &self,
        leg: Leg,
        params: DtlsParams,
    ) -> Result<oneshot::Receiver<DtlsOutcome>, String> {
        let now = Instant::now();
        let mut session = crate::dtls::DtlsSession::new(
            &params.identity,
            params.role,
            params.peer,
            self.local_addr(leg),
            now,
            params.timeout,
        )
        .map_err(|e| e.to_string())?;
        if params.role == crate::dtls::DtlsRole::Client {
            let remote = self
                .remote(leg)
                .ok_or("DTLS client without the peer's address")?;
            session.connect(now, remote);
        }
        // Until the handshake completes: send nothing, take nothing (a secured leg without a
        // receive key drops what arrives; the blocked egress sends nothing).
        let placeholder = crate::srtp::SrtpKey::generate(SrtpSuite::AesCm128HmacSha1_80)
            .map_err(|e| e.to_string())?;
        self.set_srtp(
            leg,
            Some(LegSrtp {
                send: placeholder,
                recv: None,
            }),
        )
        .map_err(|e| e.to_string())?;
        self.shared.plane.legs[leg.idx()].egress.block();
        let (tx, rx) = oneshot::channel();
        let generation = self.shared.dtls_generation.fetch_add(1, Relaxed) + 1;
        dtls::install(&self.shared, &self.sockets, leg, session, generation, tx);
        let task = self.handle.spawn(dtls::drive(
            self.shared.clone(),
            self.sockets.clone(),
            leg,
            generation,
        ));
        self.track(task);
        Ok(rx)
    }

    /// The engine offered DTLS-SRTP to a leg: DTLS records that arrive before
    /// [`RelaySession::start_dtls`] (a peer answering `active` may send its ClientHello before
    /// the engine has read its answer) are kept for the session instead of being relayed.
    pub fn expect_dtls(&self, leg: Leg) {
        self.shared.dtls[leg.idx()].expect.store(true, Relaxed);
    }

    /// Ends a leg's DTLS-SRTP (close_notify if it was up) and unkeys the leg.
    pub fn stop_dtls(&self, leg: Leg) {
        dtls::remove(&self.shared, &self.sockets, leg);
        let _ = self.set_srtp(leg, None);
    }

    /// Whether a leg runs DTLS-SRTP.
    pub fn has_dtls(&self, leg: Leg) -> bool {
        self.shared.dtls[leg.idx()].on.load(Relaxed)
    }

    /// Sets where RTP (and RTCP) received on a leg goes.
    pub fn set_route(&self, leg: Leg, route: Route) {
        self.shared
            .plane
            .update(|c| c.legs[leg.idx()].route = route);
    }

    /// Plays a clip into a leg, `loops` times (0 = until stop_play / another play). Replaces
    /// what the leg's player was playing. While a player runs on leg X, bridged media toward X
    /// is not sent (the player wins). Encodes into the leg's format (the clip resampled once per
    /// play), 20 ms packets paced on the media runtime, one outgoing SSRC per leg with
    /// seq/timestamp continuing across plays, marker bit on the first packet of each play. When
    /// the clip ran out (not when stopped or replaced) emits `PlayDone { leg, id }`; also at
    /// once, with a warning, when the leg has no format, or the clip is empty or cannot be
    /// resampled or encoded.
    pub fn play(&self, leg: Leg, clip: Pcm, loops: u32, id: u64) {
        let mut players = lock(&self.players);
        if let Some(h) = players[leg.idx()].take() {
            h.abort();
        }
        let Some(format) = self.shared.plane.format(leg) else {
            tracing::warn!(?leg, id, "play on a leg without a format: nothing played");
            self.shared.plane.emit(MediaEvent::PlayDone { leg, id });
            return;
        };
        let task = self.handle.spawn(player::play(
            self.shared.clone(),
            self.sockets.clone(),
            leg,
            format,
            clip,
            loops,
            id,
        ));
        players[leg.idx()] = Some(task.abort_handle());
        drop(players);
        self.track(task);
    }

    /// Stops the leg's player or live stream, if any (no `PlayDone`); bridged media toward the
    /// leg resumes.
    pub fn stop_play(&self, leg: Leg) {
        if let Some(h) = lock(&self.players)[leg.idx()].take() {
            h.abort();
        }
    }

    /// A live PCM source into a leg: the returned [`LiveAudio`] takes 20 ms frames of mono PCM
    /// at `rate` Hz, which the leg's player resamples, encodes in the leg's format (read again
    /// when it changes) and sends on the engine's outgoing stream of the leg, one every 20 ms,
    /// paced on the media runtime. The queue is bounded ([`LIVE_QUEUE`] frames; a full queue
    /// drops the oldest). A tick that finds the queue empty sends a frame of silence (comfort
    /// silence: the far end's stream stays continuous). While the leg has no format, or a digit
    /// is being sent into it, frames are taken and dropped (nothing is sent), so the stream
    /// never falls behind.
    ///
    /// The stream is the leg's player: while it runs, bridged or echoed media toward the leg is
    /// not sent; it replaces what the leg's player was playing, and a later [`RelaySession::play`],
    /// [`RelaySession::stop_play`] or `stream` on the leg ends it (the handle's pushes then
    /// return false). Dropping the handle ends it too (within 20 ms). A `rate` the resampler
    /// does not support (8 to 48 kHz, whole samples per 20 ms) gives a handle that is ended at
    /// once.
    pub fn stream(&self, leg: Leg, rate: u32) -> LiveAudio {
        let (audio, end) = LiveAudio::new(rate);
        if !crate::resample::supported_rate(rate) {
            tracing::warn!(?leg, rate, "live stream at an unsupported rate");
            return audio; // `end` dropped: ended at once
        }
        let mut players = lock(&self.players);
        if let Some(h) = players[leg.idx()].take() {
            h.abort();
        }
        let task = self.handle.spawn(live::run(
            self.shared.clone(),
            self.sockets.clone(),
            leg,
            rate,
            end,
        ));
        players[leg.idx()] = Some(task.abort_handle());
        drop(players);
        self.track(task);
        audio
    }

    /// Sends a digit into a leg: RFC 4733 with the leg's dtmf PT (updates every 50 ms, 3 end
    /// packets) when the leg has telephone-event, else the DTMF tone pair in-band in its codec
    /// (followed by 60 ms of silence). Nothing, with a warning, when the leg has no format.
    pub fn send_dtmf(&self, leg: Leg, digit: Digit, duration_ms: u32) {
        let Some(format) = self.shared.plane.format(leg) else {
            tracing::warn!(?leg, %digit, "DTMF into a leg without a format: not sent");
            return;
        };
        let task = self.handle.spawn(player::dtmf(
            self.shared.clone(),
            self.sockets.clone(),
            leg,
            format,
            digit,
            duration_ms,
        ));
        self.track(task);
    }

    /// Turns Goertzel in-band detection on audio received from a leg on/off (decodes that leg's
    /// packets only while on; needs the leg's format). RFC 4733 detection is always on.
    pub fn detect_inband(&self, leg: Leg, on: bool) {
        self.shared.plane.update(|c| c.legs[leg.idx()].inband = on);
    }

    /// The event receiver (bounded, 256; events beyond are dropped and counted, never block the
    /// media tasks). Returns Some once, then None.
    pub fn take_events(&self) -> Option<mpsc::Receiver<MediaEvent>> {
        lock(&self.events).take()
    }

    /// The session's tap, started on first use.
    fn tap(&self) -> Arc<Tap> {
        let mut slot = lock(&self.tap);
        if let Some(t) = slot.as_ref() {
            return t.clone();
        }
        let t = Arc::new(Tap::default());
        let (tx, rx) = mpsc::channel::<TapPacket>(tap::TAP_QUEUE);
        self.shared.plane.update(|c| c.tap = Some(tx));
        let task = self
            .handle
            .spawn(tap::run(self.shared.clone(), t.clone(), rx));
        self.track(task);
        *slot = Some(t.clone());
        t
    }

    /// Starts a stereo WAV recording (leg A = left, leg B = right) of what each leg sends to
    /// the engine, placed by RTP timestamps through the jitter buffer; creates parent dirs.
    /// 16 kHz if a leg's format is wideband at the start, else 8 kHz. Survives a format change.
    pub fn start_recording(&self, path: &Path) -> Result<(), RecordError> {
        let tap = self.tap();
        let mut st = tap.state();
        if st.recorder.is_some() {
            return Err(RecordError::AlreadyRecording);
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let wide = {
            let c = self.shared.plane.config();
            c.legs
                .iter()
                .any(|l| l.format.is_some_and(|f| f.codec.sample_rate() > 8000))
        };
        let rate = if wide { 16000 } else { 8000 };
        let writer = StereoWavWriter::create(path, rate, self.shared.now_ms())?;
        st.recorder = Some(Recorder {
            writer,
            path: path.to_path_buf(),
            rate,
            failed: false,
        });
        st.publish(&self.shared);
        drop(st);
        tap.notify.notify_one();
        Ok(())
    }

    /// Pauses the recording: the paused span is recorded as silence (the file keeps the call's
    /// timeline). No effect when not recording.
    pub fn pause_recording(&self) {
        self.with_recorder(|r, now| r.writer.pause(now));
    }

    /// Resumes a paused recording.
    pub fn resume_recording(&self) {
        self.with_recorder(|r, now| r.writer.resume(now));
    }

    fn with_recorder(&self, f: impl FnOnce(&mut Recorder, u64)) {
        let Some(tap) = lock(&self.tap).clone() else {
            return;
        };
        let now = self.shared.now_ms();
        let mut st = tap.state();
        if let Some(r) = st.recorder.as_mut() {
            f(r, now);
        }
    }

    /// Finishes the file (header fixed up) and describes it; None when not recording (or when
    /// finishing the file failed: logged).
    pub async fn stop_recording(&self) -> Option<RecordingInfo> {
        let tap = lock(&self.tap).clone()?;
        let rec = {
            let mut st = tap.state();
            let rec = st.recorder.take()?;
            st.publish(&self.shared);
            rec
        };
        let (path, rate) = (rec.path.clone(), rec.rate);
        let finished = self
            .handle
            .spawn_blocking(move || rec.writer.finish())
            .await;
        let summary = match finished {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::warn!(path = %path.display(), error = %e, "finishing the recording");
                return None;
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "finishing the recording");
                return None;
            }
        };
        let bytes = std::fs::metadata(&path).map_or(0, |m| m.len());
        Some(RecordingInfo {
            path,
            duration_ms: summary.duration_ms,
            bytes,
            rate,
            legs: 2,
        })
    }

    /// A PCM fork of the audio received from a leg: decoded (through the jitter buffer with
    /// loss concealment), resampled to `rate`, 20 ms frames. Bounded channel (50 frames); a slow
    /// subscriber loses frames (counted), never slows the relay. Several subscribers at once.
    /// Dropping the receiver unsubscribes. A `rate` the resampler does not support (8 to 48 kHz,
    /// whole samples per 20 ms) gives a receiver that is closed at once.
    pub fn subscribe(&self, leg: Leg, rate: u32) -> mpsc::Receiver<Vec<i16>> {
        let (tx, rx) = mpsc::channel(tap::SUBSCRIBER_QUEUE);
        if !crate::resample::supported_rate(rate) {
            tracing::warn!(?leg, rate, "subscription at an unsupported rate");
            return rx;
        }
        let tap = self.tap();
        {
            let mut st = tap.state();
            st.subs[leg.idx()].push(Subscriber::new(tx, rate));
            st.publish(&self.shared);
        }
        tap.notify.notify_one();
        rx
    }

    /// RFC 3550 loss and interarrival jitter and an E-model MOS (media::quality) of the RTP
    /// received from a leg.
    pub fn quality(&self, leg: Leg) -> StreamQuality {
        let c = &self.shared.legs[leg.idx()].stats;
        let (packets, lost) = (c.packets.load(Relaxed), c.lost.load(Relaxed));
        let expected = packets + lost;
        let loss_percent = if expected == 0 {
            0.0
        } else {
            lost as f64 * 100.0 / expected as f64
        };
        let jitter_ms = f64::from_bits(self.shared.plane.legs[leg.idx()].jitter_ms.load(Relaxed));
        let codec = self
            .shared
            .plane
            .format(leg)
            .map_or(CodecKind::Pcmu, |f| f.codec);
        let mos =
            crate::quality::estimate(CodecImpairment::of(codec), loss_percent, 0.0, jitter_ms).mos;
        StreamQuality {
            packets,
            lost,
            loss_percent,
            jitter_ms,
            mos,
        }
    }
}

/// Locks a mutex whose data stays consistent even if a holder panicked (handles and slots).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Drop for RelaySession {
    fn drop(&mut self) {
        self.abort();
    }
}

impl RelayMonitor {
    /// A snapshot of the counters.
    pub fn stats(&self) -> RelayStats {
        self.shared.stats()
    }

    /// Time since the last RTP packet in either direction (since start if none yet).
    pub fn idle_for(&self) -> Duration {
        self.shared.idle_for()
    }
}

impl Shared {
    /// Keys (or unkeys) a leg's SRTP: the sending context now, the pumps' receiving contexts
    /// on their next packet.
    fn key_leg(&self, leg: Leg, srtp: Option<LegSrtp>) -> Result<(), SrtpError> {
        if let Some(k) = srtp.as_ref().and_then(|s| s.recv.as_ref()) {
            SrtpContext::receiver(k)?;
        }
        let egress = &self.plane.legs[leg.idx()].egress;
        egress.set(srtp.as_ref().map(|s| &s.send))?;
        self.plane
            .update(|c| c.srtp[leg.idx()] = srtp.map(Arc::new));
        Ok(())
    }

    fn latch(&self, leg: Leg, kind: Kind) -> std::sync::MutexGuard<'_, Latch> {
        // Latch updates cannot leave a half-written state: a poisoned lock is still consistent.
        self.legs[leg.idx()].latch[kind as usize]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Milliseconds since the session started (the tap's and the recorder's clock).
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn now_mark(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1)
    }

    fn idle_for(&self) -> Duration {
        let last = self
            .legs
            .iter()
            .map(|l| l.stats.last_rtp.load(Relaxed))
            .max()
            .unwrap_or(0);
        let since_epoch = Duration::from_nanos(last.saturating_sub(1));
        self.epoch.elapsed().saturating_sub(since_epoch)
    }

    fn stats(&self) -> RelayStats {
        let dir = |leg: Leg| {
            let c = &self.legs[leg.idx()].stats;
            let last = c.last_rtp.load(Relaxed);
            DirectionStats {
                packets: c.packets.load(Relaxed),
                bytes: c.bytes.load(Relaxed),
                lost: c.lost.load(Relaxed),
                forwarded: c.forwarded.load(Relaxed),
                dropped: c.dropped.load(Relaxed),
                foreign: c.foreign.load(Relaxed),
                rtcp_packets: c.rtcp_packets.load(Relaxed),
                srtp_rejected: c.srtp_rejected.load(Relaxed),
                last_packet: (last != 0)
                    .then(|| self.epoch.checked_add(Duration::from_nanos(last - 1)))
                    .flatten(),
            }
        };
        RelayStats {
            a_to_b: dir(Leg::A),
            b_to_a: dir(Leg::B),
            idle_for: self.idle_for(),
        }
    }
}

/// The receive-and-forward loop of one socket. A pump whose leg is transcoded also wakes up
/// on its jitter buffer's playout timer ([`PumpMedia::playout_at`]).
async fn pump(sockets: Arc<Sockets>, shared: Arc<Shared>, from: Leg, kind: Kind) {
    let rx = &sockets.socks[from.idx()][kind as usize];
    let tx = &sockets.socks[from.other().idx()][kind as usize];
    let counters = &shared.legs[from.idx()].stats;
    let mut seq = SeqTracker::default();
    let mut media = PumpMedia::new(from, matches!(kind, Kind::Rtp));
    let remote = |leg: Leg| shared.latch(leg, kind).remote;
    let io = Sends {
        rx,
        tx,
        remote: &remote,
    };
    let mut buf = vec![0u8; MAX_PACKET];
    loop {
        let received = match media.playout_at() {
            // Pass-through, or nothing to play out: wait for packets only.
            None => rx.recv_from(&mut buf).await,
            // Transcoding: the jitter buffer's playout timer too.
            Some(at_ms) => {
                let at = shared.epoch + Duration::from_millis(at_ms);
                tokio::select! {
                    biased;
                    r = rx.recv_from(&mut buf) => r,
                    () = tokio::time::sleep_until(at.into()) => {
                        let sent = media.on_playout(&shared.plane, shared.now_ms(), &io);
                        count(counters, sent.forwarded, sent.dropped);
                        continue;
                    }
                }
            }
        };
        let (len, src) = match received {
            Ok(r) => r,
            Err(e) => {
                // Unconnected UDP sockets report no ICMP errors on Linux; anything here is
                // transient (ENOMEM, …). Do not spin.
                tracing::debug!(error = %e, "RTP receive error");
                tokio::task::yield_now().await;
                continue;
            }
        };
        // DTLS (RFC 7983 demultiplexing) on a leg's RTP socket: to the leg's handshake, or
        // kept for the one to come; never relayed.
        if matches!(kind, Kind::Rtp) {
            let d = &shared.dtls[from.idx()];
            if let Some(data) = buf.get(..len).filter(|d| crate::dtls::is_dtls(d)) {
                if d.on.load(Relaxed) {
                    dtls::on_datagram(&shared, &sockets, from, src, data);
                    continue;
                }
                if d.expect.load(Relaxed) {
                    dtls::keep_early(&shared, from, src, data);
                    continue;
                }
            }
        }
        media.refresh(&shared.plane);
        // A secured leg: only authenticated packets go on, and only they may latch.
        let len = if media.srtp.active() {
            match media.srtp.unprotect(&mut buf, len) {
                Some(n) => n,
                None => {
                    counters.srtp_rejected.fetch_add(1, Relaxed);
                    continue;
                }
            }
        } else {
            len
        };
        if !shared.latch(from, kind).accept(src, shared.relatch_after) {
            counters.foreign.fetch_add(1, Relaxed);
            continue;
        }
        let Some(packet) = buf.get_mut(..len) else {
            continue;
        };
        match kind {
            Kind::Rtp => match RtpHeader::parse(packet) {
                Some(h) => {
                    let mark = shared.now_mark();
                    counters.packets.fetch_add(1, Relaxed);
                    counters.bytes.fetch_add(len as u64, Relaxed);
                    counters.last_rtp.store(mark, Relaxed);
                    let before = seq.lost();
                    seq.on_packet(&h);
                    let lost = seq.lost();
                    if lost != before {
                        counters.lost.store(lost, Relaxed);
                    }
                    let sent = media.on_rtp(&shared.plane, &h, packet, mark - 1, &io);
                    count(counters, sent.forwarded, sent.dropped);
                    continue;
                }
                None if packet.len() >= 2 && (192..=223).contains(&packet[1]) => {
                    counters.rtcp_packets.fetch_add(1, Relaxed);
                }
                None => {}
            },
            Kind::Rtcp => {
                counters.rtcp_packets.fetch_add(1, Relaxed);
            }
        }
        // RTCP and anything that is not RTP: untouched, along the route.
        let plane = &shared.plane;
        let sent = match media.route() {
            Route::Bridge => send_leg(plane, from.other(), tx, remote(from.other()), packet),
            Route::Echo => send_leg(plane, from, rx, remote(from), packet),
            Route::Local => continue,
        };
        count(counters, u64::from(sent), u64::from(!sent));
    }
}

fn count(counters: &Counters, forwarded: u64, dropped: u64) {
    if forwarded != 0 {
        counters.forwarded.fetch_add(forwarded, Relaxed);
    }
    if dropped != 0 {
        counters.dropped.fetch_add(dropped, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(p: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], p))
    }

    #[test]
    fn latch_rules() {
        let mut l = Latch {
            remote: Some(addr(1)),
            ..Latch::default()
        };
        assert!(l.accept(addr(2), 3), "first packet latches");
        assert_eq!(l.remote, Some(addr(2)));
        assert!(!l.accept(addr(3), 3));
        assert!(!l.accept(addr(3), 3));
        assert!(l.accept(addr(2), 3), "latched source resets the candidate");
        assert!(!l.accept(addr(3), 3));
        assert!(!l.accept(addr(3), 3));
        assert!(l.accept(addr(3), 3), "third in a row re-latches");
        assert_eq!(l.remote, Some(addr(3)));
        assert!(!l.accept(addr(2), 3));
        l.unlatch();
        assert!(l.accept(addr(2), 3));
        assert_eq!(l.remote, Some(addr(2)));
    }
}
