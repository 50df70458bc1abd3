//! DTLS-SRTP at a leg's RTP socket: the thin shell around the sans-IO [`DtlsSession`].
//!
//! * The leg's RTP pump demultiplexes by first byte (RFC 7983): a DTLS record (20–63) on a leg
//!   with DTLS goes to [`on_datagram`] and nowhere else (never latched, never forwarded).
//! * One driver task per DTLS leg sleeps until the session's next timer (retransmission of a
//!   lost flight, or the handshake deadline) or until a datagram moved the state on.
//! * Until the handshake completes the leg is secured without a receive key and with a
//!   blocked egress: whatever the peer sends is dropped and counted (never relayed as plain
//!   RTP), and nothing is sent to it (it could not decrypt it, and might play it). On completion the exported keys key the leg like SDES keys do (`secure.rs`): SRTP
//!   and, with rtcp-mux, SRTCP on the RTP socket.
//! * The outcome (connected with a suite, or failed with a reason) goes once to the receiver
//!   that [`super::RelaySession::start_dtls`] returned: the call actor hangs up on a failure.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, Notify};

use super::plane::send;
use super::secure::LegSrtp;
use super::{Kind, Leg, Shared, Sockets};
use crate::dtls::{DtlsEvent, DtlsIdentity, DtlsRole, DtlsSession, Fingerprint};
use crate::srtp::SrtpSuite;

/// How a leg's DTLS-SRTP is to be set up.
#[derive(Clone, Debug)]
pub struct DtlsParams {
    /// The engine's certificate.
    pub identity: Arc<DtlsIdentity>,
    /// Client (`a=setup:active` on the engine's side) or server (`passive`).
    pub role: DtlsRole,
    /// The fingerprint the leg's SDP announced: its certificate must match.
    pub peer: Fingerprint,
    /// The handshake deadline, from the start.
    pub timeout: Duration,
}

/// How a leg's handshake ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DtlsOutcome {
    /// Keys exported, the leg is secured.
    Connected {
        /// The negotiated SRTP profile.
        suite: SrtpSuite,
    },
    /// The leg cannot carry media (the reason is for logs).
    Failed(String),
}

/// DTLS datagrams kept from a leg that has no session yet (a peer that answered `active`
/// sends its ClientHello with its answer, before the engine has read the answer).
const EARLY: usize = 8;

/// The DTLS state of one leg, shared by its RTP pump and its driver task.
#[derive(Debug, Default)]
pub(super) struct LegDtls {
    /// Whether the leg's RTP pump hands DTLS records here.
    pub on: AtomicBool,
    /// A session is to come (the engine offered DTLS to the leg): keep early records.
    pub expect: AtomicBool,
    session: Mutex<Option<Running>>,
    /// Up to [`EARLY`] DTLS datagrams that came before the session, replayed into it.
    early: Mutex<Vec<(SocketAddr, Vec<u8>)>>,
    wake: Notify,
}

#[derive(Debug)]
struct Running {
    session: DtlsSession,
    /// Identifies this session against a newer one on the same leg.
    generation: u64,
    outcome: Option<oneshot::Sender<DtlsOutcome>>,
}

impl LegDtls {
    fn lock(&self) -> MutexGuard<'_, Option<Running>> {
        // The session is only mutated through its own methods: consistent even after a panic.
        self.session.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Installs a session on a leg (replacing any) and spawns nothing: the caller spawns
/// [`drive`] with the generation returned.
pub(super) fn install(
    shared: &Shared,
    sockets: &Sockets,
    leg: Leg,
    session: DtlsSession,
    generation: u64,
    outcome: oneshot::Sender<DtlsOutcome>,
) {
    let d = &shared.dtls[leg.idx()];
    let mut slot = d.lock();
    let mut r = Running {
        session,
        generation,
        outcome: Some(outcome),
    };
    let early = std::mem::take(&mut *d.early.lock().unwrap_or_else(PoisonError::into_inner));
    let now = Instant::now();
    for (src, data) in early {
        r.session.handle_input(now, src, &data);
    }
    settle(shared, sockets, leg, &mut r);
    *slot = Some(r);
    d.on.store(true, Ordering::Release);
}

/// A DTLS datagram on a leg without a session (yet): kept for the session to come.
pub(super) fn keep_early(shared: &Shared, leg: Leg, src: SocketAddr, data: &[u8]) {
    let mut early = shared.dtls[leg.idx()]
        .early
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if early.len() < EARLY {
        early.push((src, data.to_vec()));
    }
}

/// Stops a leg's DTLS (a new SDP without DTLS, or the session ending): sends close_notify if
/// the association was up.
pub(super) fn remove(shared: &Shared, sockets: &Sockets, leg: Leg) {
    let d = &shared.dtls[leg.idx()];
    d.on.store(false, Ordering::Release);
    d.expect.store(false, Ordering::Release);
    if let Some(mut r) = d.lock().take() {
        r.session.close(Instant::now());
        flush(&mut r.session, sockets, leg);
    }
    d.wake.notify_one();
}

/// A DTLS datagram received on the leg's RTP socket.
pub(super) fn on_datagram(
    shared: &Shared,
    sockets: &Sockets,
    leg: Leg,
    src: SocketAddr,
    data: &[u8],
) {
    let d = &shared.dtls[leg.idx()];
    let mut slot = d.lock();
    let Some(r) = slot.as_mut() else {
        return;
    };
    r.session.handle_input(Instant::now(), src, data);
    settle(shared, sockets, leg, r);
    drop(slot);
    d.wake.notify_one();
}

/// The driver task of one leg's session: timers, until the handshake is over or the session
/// was replaced.
pub(super) async fn drive(shared: Arc<Shared>, sockets: Arc<Sockets>, leg: Leg, generation: u64) {
    let d = &shared.dtls[leg.idx()];
    loop {
        let next = {
            let mut slot = d.lock();
            let Some(r) = slot.as_mut().filter(|r| r.generation == generation) else {
                return;
            };
            let now = Instant::now();
            if r.session.poll_timeout().is_some_and(|t| t <= now) {
                r.session.handle_timeout(now);
                settle(&shared, &sockets, leg, r);
            }
            match r.session.poll_timeout() {
                Some(t) => Some(t),
                // A server waiting for the peer's first datagram: no timer yet.
                None if !r.session.is_connected() && !r.session.is_done() => None,
                None => return, // connected or over: no more timers
            }
        };
        match next {
            Some(at) => tokio::select! {
                () = tokio::time::sleep_until(at.into()) => {}
                () = d.wake.notified() => {}
            },
            None => d.wake.notified().await,
        }
    }
}

/// Sends what the session queued and acts on its events.
fn settle(shared: &Shared, sockets: &Sockets, leg: Leg, r: &mut Running) {
    flush(&mut r.session, sockets, leg);
    while let Some(ev) = r.session.poll_event() {
        match ev {
            DtlsEvent::Connected { send, recv } => {
                let suite = send.suite();
                let keys = LegSrtp {
                    send,
                    recv: Some(recv),
                };
                match shared.key_leg(leg, Some(keys)) {
                    Ok(()) => {
                        tracing::info!(?leg, %suite, role = ?r.session.role(), "DTLS-SRTP: leg secured");
                        report(r, DtlsOutcome::Connected { suite });
                    }
                    Err(e) => report(r, DtlsOutcome::Failed(e.to_string())),
                }
            }
            DtlsEvent::Failed(reason) => {
                tracing::warn!(?leg, %reason, "DTLS-SRTP handshake failed");
                report(r, DtlsOutcome::Failed(reason));
            }
            DtlsEvent::Closed => tracing::debug!(?leg, "DTLS: peer closed"),
        }
    }
}

fn report(r: &mut Running, outcome: DtlsOutcome) {
    if let Some(tx) = r.outcome.take() {
        let _ = tx.send(outcome);
    }
}

fn flush(session: &mut DtlsSession, sockets: &Sockets, leg: Leg) {
    let sock = &sockets.socks[leg.idx()][Kind::Rtp as usize];
    while let Some((to, datagram)) = session.poll_transmit() {
        if !send(sock, Some(to), &datagram) {
            tracing::debug!(?leg, %to, "DTLS datagram not sent");
        }
    }
}
