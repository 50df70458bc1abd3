//! SRTP and SRTCP (RFC 3711) for one direction of one leg: a sans-IO wrapper around the
//! webrtc-rs `rtc-srtp` crate (the SRTP layer of webrtc 0.21), keyed by SDES (RFC 4568) today
//! and by DTLS-SRTP exporters later.
//!
//! * [`SrtpSuite`]: the crypto suites the engine speaks, by their SDES names (RFC 4568, RFC 6188,
//!   RFC 7714) and their key/salt sizes.
//! * [`SrtpKey`]: a master key and salt for one suite; [`SrtpKey::generate`] draws a fresh one from
//!   the operating system's random source, [`SrtpKey::from_inline`] reads the `key||salt` bytes
//!   of an SDES `inline:` parameter.
//! * [`SrtpContext`]: the state of one direction (rollover counters, replay windows), used only
//!   to protect (what the engine sends) or only to unprotect (what it receives).
//!
//! Nothing here does I/O or reads a clock; every error is a value. A packet that fails
//! authentication, is a replay, or is too short is refused with [`SrtpError::Rejected`]: the
//! relay drops it and counts it.

use std::fmt;

use rtc_srtp::context::Context;
use rtc_srtp::crypto::providers::{RingCrypto, RingRandom};
use rtc_srtp::crypto::RTCRandom;
use rtc_srtp::option::{srtcp_replay_protection, srtp_replay_protection};
use rtc_srtp::protection_profile::ProtectionProfile;

/// Replay window (packets) of a receiving context, RTP and RTCP alike (RFC 3711 §3.3.2 asks
/// for at least 64).
pub const REPLAY_WINDOW: usize = 128;

/// An SRTP crypto suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SrtpSuite {
    /// `AES_CM_128_HMAC_SHA1_80` (RFC 4568): AES-128 counter mode, 80-bit HMAC-SHA1 tag.
    AesCm128HmacSha1_80,
    /// `AES_CM_128_HMAC_SHA1_32` (RFC 4568): as above with a 32-bit tag on SRTP (SRTCP keeps 80).
    AesCm128HmacSha1_32,
    /// `AES_256_CM_HMAC_SHA1_80` (RFC 6188).
    Aes256CmHmacSha1_80,
    /// `AES_256_CM_HMAC_SHA1_32` (RFC 6188).
    Aes256CmHmacSha1_32,
    /// `AEAD_AES_128_GCM` (RFC 7714): AES-128-GCM, 16-byte tag, 12-byte salt.
    AeadAes128Gcm,
    /// `AEAD_AES_256_GCM` (RFC 7714).
    AeadAes256Gcm,
}

impl SrtpSuite {
    /// Every suite, in the engine's order of preference when it offers several.
    pub const ALL: [SrtpSuite; 6] = [
        SrtpSuite::AesCm128HmacSha1_80,
        SrtpSuite::AesCm128HmacSha1_32,
        SrtpSuite::AeadAes128Gcm,
        SrtpSuite::Aes256CmHmacSha1_80,
        SrtpSuite::Aes256CmHmacSha1_32,
        SrtpSuite::AeadAes256Gcm,
    ];

    /// The SDES name (`a=crypto:<tag> <name> inline:…`).
    pub fn sdes_name(self) -> &'static str {
        match self {
            SrtpSuite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            SrtpSuite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
            SrtpSuite::Aes256CmHmacSha1_80 => "AES_256_CM_HMAC_SHA1_80",
            SrtpSuite::Aes256CmHmacSha1_32 => "AES_256_CM_HMAC_SHA1_32",
            SrtpSuite::AeadAes128Gcm => "AEAD_AES_128_GCM",
            SrtpSuite::AeadAes256Gcm => "AEAD_AES_256_GCM",
        }
    }

    /// Parses an SDES suite name (case-sensitive, as RFC 4568 registers them; the
    /// `AES_CM_256_…` spelling some phones use for RFC 6188's suites is accepted too).
    pub fn from_sdes_name(name: &str) -> Option<SrtpSuite> {
        Some(match name {
            "AES_CM_128_HMAC_SHA1_80" => SrtpSuite::AesCm128HmacSha1_80,
            "AES_CM_128_HMAC_SHA1_32" => SrtpSuite::AesCm128HmacSha1_32,
            "AES_256_CM_HMAC_SHA1_80" | "AES_CM_256_HMAC_SHA1_80" => SrtpSuite::Aes256CmHmacSha1_80,
            "AES_256_CM_HMAC_SHA1_32" | "AES_CM_256_HMAC_SHA1_32" => SrtpSuite::Aes256CmHmacSha1_32,
            "AEAD_AES_128_GCM" => SrtpSuite::AeadAes128Gcm,
            "AEAD_AES_256_GCM" => SrtpSuite::AeadAes256Gcm,
            _ => return None,
        })
    }

    /// Master key length, bytes.
    pub fn key_len(self) -> usize {
        self.profile().key_len()
    }

    /// Master salt length, bytes.
    pub fn salt_len(self) -> usize {
        self.profile().salt_len()
    }

    fn profile(self) -> ProtectionProfile {
        match self {
            SrtpSuite::AesCm128HmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
            SrtpSuite::AesCm128HmacSha1_32 => ProtectionProfile::Aes128CmHmacSha1_32,
            SrtpSuite::Aes256CmHmacSha1_80 => ProtectionProfile::Aes256CmHmacSha1_80,
            SrtpSuite::Aes256CmHmacSha1_32 => ProtectionProfile::Aes256CmHmacSha1_32,
            SrtpSuite::AeadAes128Gcm => ProtectionProfile::AeadAes128Gcm,
            SrtpSuite::AeadAes256Gcm => ProtectionProfile::AeadAes256Gcm,
        }
    }
}

impl fmt::Display for SrtpSuite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.sdes_name())
    }
}

/// A master key and master salt for one suite.
#[derive(Clone, PartialEq, Eq)]
pub struct SrtpKey {
    suite: SrtpSuite,
    /// `key || salt`, exactly `suite.key_len() + suite.salt_len()` bytes.
    material: Vec<u8>,
}

impl fmt::Debug for SrtpKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("SrtpKey")
            .field("suite", &self.suite)
            .finish_non_exhaustive()
    }
}

impl SrtpKey {
    /// A fresh random key and salt for `suite` (the operating system's CSPRNG).
    pub fn generate(suite: SrtpSuite) -> Result<SrtpKey, SrtpError> {
        let mut material = vec![0u8; suite.key_len() + suite.salt_len()];
        RingRandom
            .fill(&mut material)
            .map_err(|e| SrtpError::Key(e.to_string()))?;
        Ok(SrtpKey { suite, material })
    }

    /// A key from the `key || salt` bytes of an SDES `inline:` parameter; the length must be
    /// exactly the suite's.
    pub fn from_inline(suite: SrtpSuite, material: &[u8]) -> Result<SrtpKey, SrtpError> {
        let want = suite.key_len() + suite.salt_len();
        if material.len() != want {
            return Err(SrtpError::Key(format!(
                "{suite} needs {want} bytes of key and salt, got {}",
                material.len()
            )));
        }
        Ok(SrtpKey {
            suite,
            material: material.to_vec(),
        })
    }

    /// The suite.
    pub fn suite(&self) -> SrtpSuite {
        self.suite
    }

    /// `key || salt`, as an SDES `inline:` parameter carries it (base64-encoded there).
    pub fn inline_bytes(&self) -> &[u8] {
        &self.material
    }

    fn split(&self) -> (&[u8], &[u8]) {
        self.material.split_at(self.suite.key_len())
    }
}

/// Why SRTP refused something.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SrtpError {
    /// The key could not be made or used.
    #[error("SRTP key: {0}")]
    Key(String),
    /// A packet failed authentication, was a replay, or was malformed.
    #[error("SRTP packet rejected: {0}")]
    Rejected(String),
}

/// The SRTP/SRTCP state of one direction: either every call protects (what the engine sends to
/// the leg, keyed with the engine's own key) or every call unprotects (what the leg sends,
/// keyed with the leg's key, with replay protection).
pub struct SrtpContext {
    ctx: Context,
    suite: SrtpSuite,
}

impl fmt::Debug for SrtpContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SrtpContext")
            .field("suite", &self.suite)
            .finish_non_exhaustive()
    }
}

impl SrtpContext {
    /// A context that protects outgoing packets with `key`.
    pub fn sender(key: &SrtpKey) -> Result<SrtpContext, SrtpError> {
        SrtpContext::new(key, false)
    }

    /// A context that unprotects incoming packets keyed with `key`, with replay windows of
    /// [`REPLAY_WINDOW`] packets for SRTP and SRTCP.
    pub fn receiver(key: &SrtpKey) -> Result<SrtpContext, SrtpError> {
        SrtpContext::new(key, true)
    }

    fn new(key: &SrtpKey, replay: bool) -> Result<SrtpContext, SrtpError> {
        let (master_key, master_salt) = key.split();
        let (rtp_opt, rtcp_opt) = if replay {
            (
                Some(srtp_replay_protection(REPLAY_WINDOW)),
                Some(srtcp_replay_protection(REPLAY_WINDOW)),
            )
        } else {
            (None, None)
        };
        let ctx = Context::new(
            master_key,
            master_salt,
            key.suite.profile(),
            rtp_opt,
            rtcp_opt,
            &RingCrypto,
        )
        .map_err(|e| SrtpError::Key(e.to_string()))?;
        Ok(SrtpContext {
            ctx,
            suite: key.suite,
        })
    }

    /// The suite this context runs.
    pub fn suite(&self) -> SrtpSuite {
        self.suite
    }

    /// RTP → SRTP (header kept, payload encrypted, tag appended).
    pub fn protect_rtp(&mut self, packet: &[u8]) -> Result<Vec<u8>, SrtpError> {
        self.ctx
            .encrypt_rtp(packet)
            .map(|b| b.to_vec())
            .map_err(|e| SrtpError::Rejected(e.to_string()))
    }

    /// SRTP → RTP: authenticated, checked against the replay window, decrypted.
    pub fn unprotect_rtp(&mut self, packet: &[u8]) -> Result<Vec<u8>, SrtpError> {
        self.ctx
            .decrypt_rtp(packet)
            .map(|b| b.to_vec())
            .map_err(|e| SrtpError::Rejected(e.to_string()))
    }

    /// RTCP → SRTCP (E flag, index and tag appended).
    pub fn protect_rtcp(&mut self, packet: &[u8]) -> Result<Vec<u8>, SrtpError> {
        self.ctx
            .encrypt_rtcp(packet)
            .map(|b| b.to_vec())
            .map_err(|e| SrtpError::Rejected(e.to_string()))
    }

    /// SRTCP → RTCP.
    pub fn unprotect_rtcp(&mut self, packet: &[u8]) -> Result<Vec<u8>, SrtpError> {
        self.ctx
            .decrypt_rtcp(packet)
            .map(|b| b.to_vec())
            .map_err(|e| SrtpError::Rejected(e.to_string()))
    }

    /// [`SrtpContext::protect_rtcp`] for RTCP (RFC 5761 packet types 192–223), else
    /// [`SrtpContext::protect_rtp`].
    pub fn protect(&mut self, packet: &[u8]) -> Result<Vec<u8>, SrtpError> {
        if is_rtcp(packet) {
            self.protect_rtcp(packet)
        } else {
            self.protect_rtp(packet)
        }
    }

    /// [`SrtpContext::unprotect_rtcp`] for RTCP (RFC 5761 packet types 192–223), else
    /// [`SrtpContext::unprotect_rtp`].
    pub fn unprotect(&mut self, packet: &[u8]) -> Result<Vec<u8>, SrtpError> {
        if is_rtcp(packet) {
            self.unprotect_rtcp(packet)
        } else {
            self.unprotect_rtp(packet)
        }
    }
}

/// Whether a datagram is RTCP rather than RTP, by its second byte (RFC 5761 §4: RTCP packet
/// types 192–223 where RTP would have the marker bit and payload types 64–95).
pub fn is_rtcp(packet: &[u8]) -> bool {
    packet.len() >= 8 && (192..=223).contains(&packet[1])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(seq: u16, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, 0];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
        p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    fn rtcp_rr() -> Vec<u8> {
        // RR, no report blocks: V=2, PT=201, length 1, SSRC.
        vec![0x80, 201, 0, 1, 0x12, 0x34, 0x56, 0x78]
    }

    #[test]
    fn every_suite_round_trips_rtp_and_rtcp() {
        for suite in SrtpSuite::ALL {
            let key = SrtpKey::generate(suite).expect("random key");
            assert_eq!(key.inline_bytes().len(), suite.key_len() + suite.salt_len());
            let mut tx = SrtpContext::sender(&key).expect("sender");
            let mut rx = SrtpContext::receiver(&key).expect("receiver");
            for seq in 1..20u16 {
                let plain = rtp(seq, &[seq as u8; 160]);
                let wire = tx.protect(&plain).expect("protect");
                assert_ne!(
                    &wire[12..172],
                    &plain[12..172],
                    "{suite}: payload encrypted"
                );
                assert_eq!(rx.unprotect(&wire).expect("unprotect"), plain, "{suite}");
            }
            let wire = tx.protect(&rtcp_rr()).expect("protect RTCP");
            assert!(wire.len() > 8 + 4, "{suite}: SRTCP index and tag appended");
            assert_eq!(rx.unprotect(&wire).expect("unprotect RTCP"), rtcp_rr());
        }
    }

    #[test]
    fn tampered_replayed_and_wrong_key_packets_are_rejected() {
        let key = SrtpKey::generate(SrtpSuite::AesCm128HmacSha1_80).expect("key");
        let mut tx = SrtpContext::sender(&key).expect("sender");
        let mut rx = SrtpContext::receiver(&key).expect("receiver");
        let wire = tx.protect(&rtp(1, &[7; 160])).expect("protect");
        let mut bad = wire.clone();
        bad[20] ^= 1;
        assert!(matches!(rx.unprotect(&bad), Err(SrtpError::Rejected(_))));
        assert!(
            rx.unprotect(&wire).is_ok(),
            "the genuine packet still passes"
        );
        assert!(rx.unprotect(&wire).is_err(), "a replay is refused");
        let other = SrtpKey::generate(SrtpSuite::AesCm128HmacSha1_80).expect("key");
        let mut rx2 = SrtpContext::receiver(&other).expect("receiver");
        let next = tx.protect(&rtp(2, &[7; 160])).expect("protect");
        assert!(
            rx2.unprotect(&next).is_err(),
            "another key does not authenticate"
        );
    }

    #[test]
    fn garbage_never_panics() {
        let key = SrtpKey::generate(SrtpSuite::AeadAes128Gcm).expect("key");
        let key32 = SrtpKey::generate(SrtpSuite::AesCm128HmacSha1_32).expect("key");
        let mut rxs = [
            SrtpContext::receiver(&key).expect("receiver"),
            SrtpContext::receiver(&key32).expect("receiver"),
        ];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 0..400usize {
            let mut p = vec![0u8; len % 200];
            for b in &mut p {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            if let Some(b) = p.first_mut() {
                *b = 0x80 | (*b & 0x3f);
            }
            for rx in &mut rxs {
                let _ = rx.unprotect(&p);
                let _ = rx.unprotect_rtcp(&p);
                let _ = rx.unprotect_rtp(&p);
            }
        }
    }

    #[test]
    fn inline_lengths_and_names() {
        assert!(SrtpKey::from_inline(SrtpSuite::AesCm128HmacSha1_80, &[0; 30]).is_ok());
        assert!(SrtpKey::from_inline(SrtpSuite::AesCm128HmacSha1_80, &[0; 29]).is_err());
        assert!(SrtpKey::from_inline(SrtpSuite::AeadAes128Gcm, &[0; 28]).is_ok());
        for s in SrtpSuite::ALL {
            assert_eq!(SrtpSuite::from_sdes_name(s.sdes_name()), Some(s));
        }
        assert_eq!(SrtpSuite::from_sdes_name("F8_128_HMAC_SHA1_80"), None);
        assert!(!format!(
            "{:?}",
            SrtpKey::generate(SrtpSuite::AeadAes128Gcm).expect("key")
        )
        .contains("material"));
    }
}
