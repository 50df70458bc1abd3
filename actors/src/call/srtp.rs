//! SDES-SRTP (RFC 4568) for the call's two legs: the engine terminates SRTP on every secured
//! leg (its own fresh key toward each), so the relay decrypts what a leg sends and encrypts
//! what it forwards, and a secured leg can be bridged to a plain one.
//!
//! The call actor routes every SDP through here, on its way from one leg to the other:
//!
//! * an **offer from leg X** ([`CallSrtp::take_offer`]): X's usable `a=crypto` line is chosen
//!   (RTP/SAVP without one → the caller answers 488), the relay's X side is keyed (X's key to
//!   decrypt, ours to encrypt) and the line the engine will answer X with is remembered;
//! * the **offer forwarded to leg Y** ([`CallSrtp::make_offer`]): plain `RTP/AVP`, or
//!   `RTP/SAVP` with one fresh key per offered suite, by the policy for Y;
//! * **Y's answer** ([`CallSrtp::take_answer`]): the tag Y accepted picks our key, Y's key
//!   keys the relay's Y side (a secure offer answered without usable crypto is refused);
//! * the **answer relayed to X** ([`CallSrtp::make_answer`]): X's offered profile with the
//!   engine's own line (never Y's key).
//!
//! Keys are reused when a re-INVITE repeats the same suite, so the relay's SRTP contexts (and
//! their rollover counters) survive hold/unhold.
//!
//! DTLS-SRTP sections (`UDP/TLS/RTP/SAVP(F)`) are terminated too under `calls.dtls =
//! "terminate"` (`dtls.rs`: the engine's fingerprint and `a=setup` in what it sends, the
//! handshake on the relay once the leg's address is known); under `passthrough` they are left
//! alone (relayed end to end), under `reject` they get 488.

use std::sync::Arc;
use std::time::Duration;

use switchboard_engine::config::{DtlsMode, SrtpPolicy};
use switchboard_engine::sdp::{Crypto, MediaSecurity, Sdp, Setup};
use switchboard_media::dtls::{DtlsIdentity, Fingerprint};
use switchboard_media::srtp::{SrtpKey, SrtpSuite};
use switchboard_media::{Leg, LegSrtp, RelaySession};

use super::dtls::{answer_setup, role_from_answer, DtlsSetup, LegDtls};

/// What an offer the engine makes asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum OfferKind {
    /// `RTP/AVP`, no crypto.
    Plain,
    /// `RTP/AVP` with `a=crypto` (SRTP if the answerer takes it).
    Optional,
    /// `RTP/SAVP` with `a=crypto`.
    Sdes,
    /// `UDP/TLS/RTP/SAVP` with the engine's `a=fingerprint`, `a=setup:actpass`.
    Dtls,
}

/// What the engine answers a leg's offer with.
#[derive(Clone, Debug)]
enum Answer {
    /// The offer was plain (or best-effort SRTP the engine could not use): no crypto.
    Plain { proto: String },
    /// The engine's own line, with the tag of the line it accepted.
    Secure { proto: String, line: Crypto },
    /// DTLS-SRTP: the engine's fingerprint and this `a=setup`.
    Dtls {
        proto: String,
        setup: Setup,
        mux: bool,
    },
}

#[derive(Debug, Default)]
struct LegCrypto {
    /// The keys in force on the relay's side for this leg.
    keys: Option<LegSrtp>,
    /// Our lines in the last offer sent to this leg (tag, key); empty for a plain offer.
    offered: Vec<(u32, SrtpKey)>,
    /// That offer was best-effort (`RTP/AVP` with `a=crypto`): a plain answer is fine.
    offered_optional: bool,
    /// The answer owed to this leg for its last offer.
    answer: Option<Answer>,
    /// The leg uses DTLS-SRTP end to end (`passthrough`): not ours to touch.
    dtls: bool,
    /// Our last offer to this leg was DTLS-SRTP.
    offered_dtls: bool,
    /// The DTLS association the leg's last SDP asked for, not started yet.
    dtls_pending: Option<LegDtls>,
    /// The association running on the relay.
    dtls_running: Option<LegDtls>,
}

/// The SDES and DTLS-SRTP state of one call.
#[derive(Debug, Default)]
pub(super) struct CallSrtp {
    legs: [LegCrypto; 2],
    dtls: DtlsSetup,
}

impl CallSrtp {
    /// A call's SRTP state, terminating DTLS-SRTP as `dtls` says.
    pub fn new(dtls: DtlsSetup) -> CallSrtp {
        CallSrtp {
            legs: Default::default(),
            dtls,
        }
    }

    /// Whether a leg is secured with SDES-SRTP (or its offer asked for it).
    pub fn secured(&self, leg: Leg) -> bool {
        let l = &self.legs[leg as usize];
        l.keys.is_some() || matches!(l.answer, Some(Answer::Secure { .. }))
    }

    /// Whether a leg is (or is to be) secured with DTLS-SRTP terminated by the engine.
    pub fn dtls_secured(&self, leg: Leg) -> bool {
        let l = &self.legs[leg as usize];
        l.dtls_running.is_some()
            || l.dtls_pending.is_some()
            || matches!(l.answer, Some(Answer::Dtls { .. }))
    }

    /// The association to start on a leg now that its remote address is set: what its SDP
    /// asked for, unless the same one already runs.
    pub fn dtls_to_start(&mut self, leg: Leg) -> Option<(LegDtls, Arc<DtlsIdentity>, Duration)> {
        let identity = self.dtls.identity.clone()?;
        let l = &mut self.legs[leg as usize];
        let want = l.dtls_pending.take()?;
        if l.dtls_running.as_ref() == Some(&want) {
            return None; // a re-INVITE that repeats the same association: keep it
        }
        Some((want, identity, self.dtls.timeout))
    }

    /// Records the association started on a leg.
    pub fn dtls_started(&mut self, leg: Leg, running: LegDtls) {
        self.legs[leg as usize].dtls_running = Some(running);
    }

    /// Stops a leg's DTLS (its new SDP is not DTLS).
    fn stop_dtls(&mut self, leg: Leg, relay: Option<&RelaySession>) {
        let l = &mut self.legs[leg as usize];
        l.dtls_pending = None;
        if l.dtls_running.take().is_some() {
            if let Some(r) = relay {
                r.stop_dtls(leg);
            }
        }
    }

    /// Reads a DTLS offer from leg `from` (terminate mode).
    fn take_dtls_offer(&mut self, from: Leg, sdp: &Sdp, index: usize) -> Result<(), String> {
        if self.dtls.identity.is_none() {
            return Err("DTLS-SRTP is not available".into());
        }
        let m = sdp.media.get(index).ok_or("no such media section")?;
        let peer = sdp
            .fingerprint(index)
            .and_then(Fingerprint::parse)
            .ok_or("no usable a=fingerprint for UDP/TLS/RTP/SAVP")?;
        let (role, setup) = answer_setup(sdp.setup(index))?;
        let mux = m.has_attribute("rtcp-mux");
        let l = &mut self.legs[from as usize];
        l.dtls = false;
        l.answer = Some(Answer::Dtls {
            proto: m.proto.clone(),
            setup,
            mux,
        });
        l.dtls_pending = Some(LegDtls { role, peer, mux });
        Ok(())
    }

    /// After the anchor rewrite (which drops `a=rtcp-mux`): a DTLS-SRTP section the engine
    /// sends to leg `to` multiplexes RTCP when it may (always in the engine's offers; in
    /// answers when the offer did).
    pub fn finish_sdp(&self, to: Leg, sdp: &mut Sdp, index: usize, offer: bool) {
        let l = &self.legs[to as usize];
        let Some(m) = sdp.media.get_mut(index) else {
            return;
        };
        if m.security() != MediaSecurity::Dtls || l.dtls {
            return;
        }
        let mux = match &l.answer {
            _ if offer => true,
            Some(Answer::Dtls { mux, .. }) => *mux,
            _ => false,
        };
        if mux {
            m.add_rtcp_mux();
        }
    }

    /// The suite in force on a leg.
    pub fn suite(&self, leg: Leg) -> Option<SrtpSuite> {
        self.legs[leg as usize]
            .keys
            .as_ref()
            .map(|k| k.send.suite())
    }

    /// Reads an offer that leg `from` sent; keys the relay's `from` side when it is SDES. Err
    /// (the reason for a 488) when it requires SRTP (`RTP/SAVP`) and no line is usable.
    pub fn take_offer(
        &mut self,
        from: Leg,
        sdp: &Sdp,
        index: usize,
        relay: Option<&RelaySession>,
    ) -> Result<(), String> {
        let Some(m) = sdp.media.get(index) else {
            return Ok(());
        };
        let security = m.security();
        if security == MediaSecurity::Dtls {
            match self.dtls.mode {
                DtlsMode::Terminate => {
                    self.legs[from as usize].keys = None;
                    return self.take_dtls_offer(from, sdp, index);
                }
                DtlsMode::Reject => return Err("DTLS-SRTP is not accepted".into()),
                DtlsMode::Passthrough => {}
            }
        } else {
            self.stop_dtls(from, relay);
        }
        let l = &mut self.legs[from as usize];
        l.dtls = security == MediaSecurity::Dtls;
        if !matches!(security, MediaSecurity::Sdes | MediaSecurity::Optional) {
            l.answer = Some(Answer::Plain {
                proto: m.proto.clone(),
            });
            return set_keys(l, from, None, relay);
        }
        let chosen = m
            .crypto()
            .into_iter()
            .find_map(|c| usable(&c).map(|k| (c.tag, k)));
        let Some((tag, theirs)) = chosen else {
            if security == MediaSecurity::Sdes {
                return Err("no usable a=crypto for RTP/SAVP".into());
            }
            l.answer = Some(Answer::Plain {
                proto: m.proto.clone(),
            });
            return set_keys(l, from, None, relay);
        };
        let suite = theirs.suite();
        let ours = match l.keys.as_ref().map(|k| &k.send) {
            Some(k) if k.suite() == suite => k.clone(),
            _ => SrtpKey::generate(suite).map_err(|e| e.to_string())?,
        };
        l.answer = Some(Answer::Secure {
            proto: m.proto.clone(),
            line: Crypto::new(tag, suite.sdes_name(), ours.inline_bytes()),
        });
        let keys = LegSrtp {
            send: ours,
            recv: Some(theirs),
        };
        set_keys(l, from, Some(keys), relay)
    }

    /// What the offer forwarded to leg `to` should ask for, by `policy` (for the B leg) or by
    /// what the leg already uses (the A leg, in re-INVITEs from B). `mirror` copies the A leg,
    /// best effort included.
    pub fn wants_secure(&self, to: Leg, policy: SrtpPolicy) -> OfferKind {
        let like_a = || {
            let a = &self.legs[Leg::A as usize];
            if self.dtls_secured(Leg::A) {
                return OfferKind::Dtls;
            }
            match &a.answer {
                Some(Answer::Secure { proto, .. })
                    if !proto.to_ascii_uppercase().contains("SAVP") =>
                {
                    OfferKind::Optional
                }
                _ if a.keys.is_some() || matches!(a.answer, Some(Answer::Secure { .. })) => {
                    OfferKind::Sdes
                }
                _ => OfferKind::Plain,
            }
        };
        if to == Leg::A {
            return if self.dtls_secured(Leg::A) {
                OfferKind::Dtls
            } else if self.secured(Leg::A) {
                OfferKind::Sdes
            } else {
                OfferKind::Plain
            };
        }
        match policy {
            SrtpPolicy::Sdes => OfferKind::Sdes,
            SrtpPolicy::Off => OfferKind::Plain,
            SrtpPolicy::Mirror => like_a(),
            SrtpPolicy::Dtls if self.dtls.identity.is_some() => OfferKind::Dtls,
            SrtpPolicy::Dtls => OfferKind::Sdes,
        }
    }

    /// Writes the offer's crypto for leg `to`: plain `RTP/AVP`, or `RTP/SAVP` (best effort:
    /// `RTP/AVP`) with one fresh key per suite (the other leg's suite first, then
    /// AES_CM_128_HMAC_SHA1_80 and _32; a suite already in force on `to` keeps its key). A
    /// secured `to` drops packets until its answer brings its key.
    pub fn make_offer(
        &mut self,
        to: Leg,
        sdp: &mut Sdp,
        index: usize,
        kind: OfferKind,
        relay: Option<&RelaySession>,
    ) -> Result<(), String> {
        let secure = kind != OfferKind::Plain;
        let prefer = self.suite(to.other());
        let terminate = self.dtls.mode == DtlsMode::Terminate;
        let fingerprint = self.dtls.fingerprint();
        let l = &mut self.legs[to as usize];
        let Some(m) = sdp.media.get_mut(index) else {
            return Ok(());
        };
        match m.security() {
            MediaSecurity::Dtls if !terminate => return Ok(()), // end to end: as it is
            MediaSecurity::Other => return Ok(()), // a profile the engine does not rewrite
            MediaSecurity::Dtls => {
                // The other leg's DTLS is the engine's: what goes on is plain RTP (or ours).
                m.clear_dtls();
                sdp.clear_session_dtls();
            }
            _ => {}
        }
        let Some(m) = sdp.media.get_mut(index) else {
            return Ok(());
        };
        l.offered_dtls = false;
        if kind == OfferKind::Dtls {
            let fp = fingerprint.ok_or("DTLS-SRTP is not available")?;
            m.set_dtls(&fp, Setup::ActPass);
            l.offered.clear();
            l.offered_dtls = true;
            if let Some(r) = relay {
                r.expect_dtls(to);
            }
            return Ok(());
        }
        if l.dtls_running.is_some() || l.dtls_pending.is_some() {
            l.dtls_pending = None;
            if l.dtls_running.take().is_some() {
                if let Some(r) = relay {
                    r.stop_dtls(to);
                }
            }
        }
        if !secure {
            m.set_crypto(&[], false, false);
            l.offered.clear();
            if l.keys.is_some() {
                set_keys(l, to, None, relay)?;
            }
            return Ok(());
        }
        let mut suites = Vec::with_capacity(3);
        for s in prefer.into_iter().chain([
            SrtpSuite::AesCm128HmacSha1_80,
            SrtpSuite::AesCm128HmacSha1_32,
        ]) {
            if !suites.contains(&s) {
                suites.push(s);
            }
        }
        let current = l.keys.as_ref().map(|k| k.send.clone());
        let mut offered = Vec::with_capacity(suites.len());
        for (i, s) in suites.into_iter().enumerate() {
            let key = match &current {
                Some(k) if k.suite() == s => k.clone(),
                _ => SrtpKey::generate(s).map_err(|e| e.to_string())?,
            };
            offered.push((i as u32 + 1, key));
        }
        let lines: Vec<Crypto> = offered
            .iter()
            .map(|(tag, k)| Crypto::new(*tag, k.suite().sdes_name(), k.inline_bytes()))
            .collect();
        m.set_crypto(&lines, kind == OfferKind::Sdes, false);
        l.offered = offered;
        l.offered_optional = kind == OfferKind::Optional;
        if l.keys.is_none() && kind == OfferKind::Sdes {
            // Until the answer: encrypt with our first key, drop whatever the leg sends.
            if let Some((_, k)) = l.offered.first() {
                let keys = LegSrtp {
                    send: k.clone(),
                    recv: None,
                };
                set_keys(l, to, Some(keys), relay)?;
            }
        }
        Ok(())
    }

    /// Reads leg `from`'s answer to the offer the engine sent it. Err when the offer was
    /// SDES-SRTP and the answer accepts none of its lines.
    pub fn take_answer(
        &mut self,
        from: Leg,
        sdp: &Sdp,
        index: usize,
        relay: Option<&RelaySession>,
    ) -> Result<(), String> {
        let l = &mut self.legs[from as usize];
        let Some(m) = sdp.media.get(index) else {
            return Ok(());
        };
        if l.offered_dtls {
            if m.security() != MediaSecurity::Dtls {
                return Err("a DTLS-SRTP offer answered without UDP/TLS/RTP/SAVP".into());
            }
            let peer = sdp
                .fingerprint(index)
                .and_then(Fingerprint::parse)
                .ok_or("no usable a=fingerprint in the answer")?;
            let role = role_from_answer(sdp.setup(index))?;
            let mux = m.has_attribute("rtcp-mux");
            l.dtls_pending = Some(LegDtls { role, peer, mux });
            return Ok(());
        }
        if l.offered.is_empty() {
            l.dtls = m.security() == MediaSecurity::Dtls;
            return Ok(()); // a plain offer (or DTLS passed through): nothing to key
        }
        let accepted = m.crypto().into_iter().find_map(|c| {
            let (_, ours) = l.offered.iter().find(|(tag, _)| *tag == c.tag)?;
            let theirs = usable(&c).filter(|k| k.suite() == ours.suite())?;
            Some((ours.clone(), theirs))
        });
        let Some((ours, theirs)) = accepted else {
            if l.offered_optional {
                return set_keys(l, from, None, relay);
            }
            return Err("the answer accepts none of the offered a=crypto lines".into());
        };
        let keys = LegSrtp {
            send: ours,
            recv: Some(theirs),
        };
        set_keys(l, from, Some(keys), relay)
    }

    /// Writes the engine's answer crypto for leg `to` (which made the offer): its offered
    /// profile, with the engine's own line when it is secured.
    pub fn make_answer(&self, to: Leg, sdp: &mut Sdp, index: usize) {
        let Some(m) = sdp.media.get_mut(index) else {
            return;
        };
        match &self.legs[to as usize].answer {
            Some(Answer::Dtls { proto, setup, mux }) => {
                let Some(fp) = self.dtls.fingerprint() else {
                    return;
                };
                m.set_dtls(&fp, *setup);
                m.proto = proto.clone();
                if *mux {
                    m.add_rtcp_mux();
                }
                sdp.clear_session_dtls();
            }
            Some(Answer::Secure { proto, line }) => {
                m.set_crypto(std::slice::from_ref(line), true, true);
                m.proto = proto.clone();
            }
            Some(Answer::Plain { proto }) if !self.legs[to as usize].dtls => {
                m.set_crypto(&[], false, true);
                m.proto = proto.clone();
            }
            _ => {}
        }
    }
}

/// The key of a line the engine can use: a suite it runs, exactly one key of the suite's
/// length, no MKI, and no session parameter other than `WSH` (KDR, unencrypted or
/// unauthenticated SRTP and FEC are not supported).
fn usable(c: &Crypto) -> Option<SrtpKey> {
    let suite = SrtpSuite::from_sdes_name(&c.suite)?;
    let [key] = c.keys.as_slice() else {
        return None;
    };
    if key.mki.is_some() || c.session_params.iter().any(|p| !p.starts_with("WSH=")) {
        return None;
    }
    SrtpKey::from_inline(suite, &key.key_salt).ok()
}

fn set_keys(
    l: &mut LegCrypto,
    leg: Leg,
    keys: Option<LegSrtp>,
    relay: Option<&RelaySession>,
) -> Result<(), String> {
    if l.keys == keys {
        return Ok(());
    }
    if let Some(r) = relay {
        r.set_srtp(leg, keys.clone()).map_err(|e| e.to_string())?;
    }
    let suite = keys.as_ref().map(|k| k.send.suite().sdes_name());
    match keys.as_ref().and_then(|k| k.recv.as_ref()) {
        Some(_) => tracing::info!(?leg, suite, "SRTP: leg secured"),
        None if keys.is_some() => tracing::debug!(?leg, suite, "SRTP: leg offered, key pending"),
        None => tracing::info!(?leg, "SRTP: leg plain"),
    }
    l.keys = keys;
    Ok(())
}
