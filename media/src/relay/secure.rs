//! SRTP at a leg's packet ingress and egress: the relay's only contact with [`crate::srtp`].
//!
//! * **Ingress** ([`Ingress`]): each pump of a secured leg owns a receiving context (the RTP
//!   pump's handles SRTP and, with rtcp-mux, SRTCP; the RTCP pump's handles SRTCP) and turns what
//!   arrives back into plain RTP/RTCP *before* latching and before anything else looks at it, so
//!   everything downstream (DTMF, transcoding, taps, forwarding) sees plain packets. A packet
//!   that fails authentication or the replay check, or arrives while the leg's key is not known
//!   yet, is dropped and counted (`srtp_rejected`); it never latches the leg.
//! * **Egress** ([`Egress`]): every task that sends into a secured leg (the other leg's pumps,
//!   the leg's own pumps in echo, players, DTMF senders, live streams) protects through the
//!   leg's one sending context, behind a mutex (touched only on secured legs).
//!
//! A plain leg costs one relaxed atomic load per sent packet and one branch per received one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::srtp::{SrtpContext, SrtpError, SrtpKey};

/// The SRTP keys of one leg (from SDES today; from a DTLS-SRTP exporter later).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LegSrtp {
    /// The engine's key: protects what the engine sends to the leg.
    pub send: SrtpKey,
    /// The leg's key: unprotects what the leg sends. `None` while it is not known yet (the
    /// leg's answer has not come): packets from the leg are dropped and counted meanwhile.
    pub recv: Option<SrtpKey>,
}

/// The sending side of a leg, shared by every task that sends into it.
#[derive(Default)]
pub(super) struct Egress {
    on: AtomicBool,
    ctx: Mutex<Option<(SrtpKey, SrtpContext)>>,
}

impl std::fmt::Debug for Egress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Egress")
            .field("on", &self.on.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Egress {
    /// Keys (or, with `None`, unkeys) the leg's sending side. The same key again keeps the
    /// context (its rollover counters), so a re-INVITE that repeats the key changes nothing.
    pub fn set(&self, key: Option<&SrtpKey>) -> Result<(), SrtpError> {
        let mut slot = self.ctx.lock().unwrap_or_else(PoisonError::into_inner);
        match key {
            None => {
                *slot = None;
                self.on.store(false, Ordering::Release);
            }
            Some(k) if slot.as_ref().is_some_and(|(old, _)| old == k) => {}
            Some(k) => {
                *slot = Some((k.clone(), SrtpContext::sender(k)?));
                self.on.store(true, Ordering::Release);
            }
        }
        Ok(())
    }

    /// Sends nothing into the leg until [`Egress::set`] keys it (a DTLS-SRTP leg during its
    /// handshake: the peer could not read anything yet, and might play it as audio).
    pub fn block(&self) {
        let mut slot = self.ctx.lock().unwrap_or_else(PoisonError::into_inner);
        *slot = None;
        self.on.store(true, Ordering::Release);
    }

    /// Whether packets into the leg must be protected.
    #[inline]
    pub fn is_on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// The protected form of `packet` (SRTP, or SRTCP for RTCP packet types); `None` when the
    /// leg was unkeyed meanwhile or the packet cannot be protected (not RTP/RTCP).
    pub fn protect(&self, packet: &[u8]) -> Option<Vec<u8>> {
        // The context only holds counters: consistent even if a holder panicked.
        let mut slot = self.ctx.lock().unwrap_or_else(PoisonError::into_inner);
        let (_, ctx) = slot.as_mut()?;
        ctx.protect(packet).ok()
    }
}

/// The receiving side of one pump.
#[derive(Debug, Default)]
pub(super) struct Ingress {
    keys: Option<Arc<LegSrtp>>,
    ctx: Option<SrtpContext>,
}

impl Ingress {
    /// Picks up the leg's keys after a configuration change. The same receive key again keeps
    /// the context (rollover counter and replay window).
    pub fn refresh(&mut self, keys: Option<&Arc<LegSrtp>>) {
        let old = self.keys.as_ref().and_then(|k| k.recv.as_ref());
        let new = keys.and_then(|k| k.recv.as_ref());
        if old != new || self.ctx.is_none() {
            // A key that does not build a context (checked by `set_srtp`) leaves the leg
            // dropping everything rather than passing ciphertext on as audio.
            self.ctx = new.and_then(|k| SrtpContext::receiver(k).ok());
        }
        self.keys = keys.cloned();
    }

    /// Whether the leg is secured (packets must be unprotected, or dropped).
    #[inline]
    pub fn active(&self) -> bool {
        self.keys.is_some()
    }

    /// Unprotects `buf[..len]` in place; the plain length, or `None` to drop the packet.
    pub fn unprotect(&mut self, buf: &mut [u8], len: usize) -> Option<usize> {
        let ctx = self.ctx.as_mut()?;
        let plain = ctx.unprotect(buf.get(..len)?).ok()?;
        let n = plain.len();
        buf.get_mut(..n)?.copy_from_slice(&plain);
        Some(n)
    }
}
