//! The RTP/RTCP relay of one call: media anchoring with symmetric latching.
//!
//! Leg A faces the caller, leg B the callee. Each leg has an RTP and an RTCP socket (ports `p` and
//! `p + 1` from the [`PortAllocator`]). A packet received on a leg's socket is sent out of the
//! *other* leg's socket of the same kind to that leg's remote address, untouched: the relay is
//! payload-agnostic (G.711, Opus, RFC 4733 events, SRTP, even STUN pass through).
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
//! Measured with `media/benches/relay.rs` on the 2-core box: 1 000 calls (100 000 packets/s in,
//! 100 000 out) cost ≈ 0.34–0.52 of one core on one runtime thread, ≈ 3.5–5 µs per relayed packet
//! (most of it the loopback `sendto`, whose delivery cost the sender pays), ≈ 13 KiB RSS per
//! session. A `recvmmsg` variant (one non-blocking batch per wake-up, readiness cleared through
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
//! # Shutdown
//!
//! [`RelaySession::stop`] aborts the tasks and returns once they are gone: the sockets are closed
//! and the ports are back in the allocator. Dropping the session aborts the tasks too; the ports
//! come back as soon as the runtime has dropped them (immediately on a live runtime).

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use socket2::{SockAddr, SockRef};
use tokio::net::UdpSocket;
use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio::task::{AbortHandle, JoinHandle};

use crate::ports::{PortAllocator, PortError, PortLease};
use crate::rtp::{RtpHeader, SeqTracker};

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

/// The relay of one call. See the module documentation for the threading and latching rules.
#[derive(Debug)]
pub struct RelaySession {
    shared: Arc<Shared>,
    local: [SocketAddr; 2],
    handle: Handle,
    tasks: Vec<JoinHandle<()>>,
    watchdogs: Mutex<Vec<AbortHandle>>,
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
        let shared = Arc::new(Shared {
            epoch: Instant::now(),
            relatch_after: config.relatch_after.max(1),
            legs: Default::default(),
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
        for t in std::mem::take(&mut self.tasks) {
            let _ = t.await;
        }
    }

    fn abort(&self) {
        for t in &self.tasks {
            t.abort();
        }
        let w = self
            .watchdogs
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for h in w.iter() {
            h.abort();
        }
    }
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
    fn latch(&self, leg: Leg, kind: Kind) -> std::sync::MutexGuard<'_, Latch> {
        // Latch updates cannot leave a half-written state: a poisoned lock is still consistent.
        self.legs[leg.idx()].latch[kind as usize]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
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

/// The receive-and-forward loop of one socket.
async fn pump(sockets: Arc<Sockets>, shared: Arc<Shared>, from: Leg, kind: Kind) {
    let rx = &sockets.socks[from.idx()][kind as usize];
    let tx = &sockets.socks[from.other().idx()][kind as usize];
    let counters = &shared.legs[from.idx()].stats;
    let mut seq = SeqTracker::default();
    let mut buf = vec![0u8; MAX_PACKET];
    loop {
        let (len, src) = match rx.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                // Unconnected UDP sockets report no ICMP errors on Linux; anything here is
                // transient (ENOMEM, …). Do not spin.
                tracing::debug!(error = %e, "RTP receive error");
                tokio::task::yield_now().await;
                continue;
            }
        };
        if !shared.latch(from, kind).accept(src, shared.relatch_after) {
            counters.foreign.fetch_add(1, Relaxed);
            continue;
        }
        let packet = buf.get(..len).unwrap_or_default();
        match kind {
            Kind::Rtp => match RtpHeader::parse(packet) {
                Some(h) => {
                    counters.packets.fetch_add(1, Relaxed);
                    counters.bytes.fetch_add(len as u64, Relaxed);
                    counters.last_rtp.store(shared.now_mark(), Relaxed);
                    let before = seq.lost();
                    seq.on_packet(&h);
                    let lost = seq.lost();
                    if lost != before {
                        counters.lost.store(lost, Relaxed);
                    }
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
        let dst = shared.latch(from.other(), kind).remote;
        let sent = match dst {
            Some(dst) => SockRef::from(tx)
                .send_to(packet, &SockAddr::from(dst))
                .is_ok(),
            None => false,
        };
        if sent {
            counters.forwarded.fetch_add(1, Relaxed);
        } else {
            counters.dropped.fetch_add(1, Relaxed);
        }
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
