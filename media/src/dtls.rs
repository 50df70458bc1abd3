//! DTLS-SRTP (RFC 5763, RFC 5764) for one leg: a sans-IO handshake over the webrtc-rs
//! `rtc-dtls` crate (DTLS 1.2 of the webrtc 0.21 family, the same family as `rtc-srtp`) that
//! ends in the leg's SRTP keys.
//!
//! * [`Fingerprint`]: an SDP `a=fingerprint` (RFC 8122): hash function and digest of a DER
//!   certificate; parsed, printed, computed.
//! * [`DtlsIdentity`]: the engine's certificate and key (self-signed at start, or from PEM) and
//!   its SHA-256 fingerprint, shared by every leg.
//! * [`DtlsSession`]: one leg's handshake, as client (`a=setup:active`) or server
//!   (`a=setup:passive`). The peer's certificate is checked against the fingerprint its SDP
//!   announced; a mismatch, exhausted retransmissions or the handshake deadline end it with
//!   [`DtlsEvent::Failed`]. A completed handshake exports the keying material (RFC 5764 §4.2)
//!   for the negotiated `use_srtp` profile as [`DtlsEvent::Connected`].
//!
//! The session reads no clock and owns no socket. Drive it in this order: feed datagrams with
//! [`DtlsSession::handle_input`] and timers with [`DtlsSession::handle_timeout`], then drain
//! [`DtlsSession::poll_transmit`] (datagrams to send) and [`DtlsSession::poll_event`], and wait
//! until [`DtlsSession::poll_timeout`].

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rtc_dtls::config::{ClientAuthType, ConfigBuilder, ExtendedMasterSecretType};
use rtc_dtls::crypto::Certificate;
use rtc_dtls::crypto_provider::RTCCryptoProvider;
use rtc_dtls::endpoint::{Endpoint, EndpointEvent};
use rtc_dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use rtc_shared::TransportProtocol;

use crate::srtp::{SrtpKey, SrtpSuite};

/// How long a handshake may take, from the session's start, before the leg fails.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// First retransmission interval of a lost flight (rtc-dtls retransmits up to 7 times).
pub const RETRANSMIT_INTERVAL: Duration = Duration::from_millis(500);

/// RFC 5764 §4.2 exporter label.
const EXPORTER_LABEL: &str = "EXTRACTOR-dtls_srtp";

/// Whether a datagram on a media socket is DTLS, by its first byte (RFC 7983 §7: 20–63; STUN is
/// 0–3, ZRTP 16–19, RTP/RTCP 128–191).
pub fn is_dtls(packet: &[u8]) -> bool {
    packet.first().is_some_and(|b| (20..=63).contains(b))
}

/// A hash function of `a=fingerprint` (RFC 8122 §5; the MD2/MD5 ones are refused).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashFunction {
    /// `sha-1`.
    Sha1,
    /// `sha-256`.
    Sha256,
    /// `sha-384`.
    Sha384,
    /// `sha-512`.
    Sha512,
}

impl HashFunction {
    /// The SDP name.
    pub fn name(self) -> &'static str {
        match self {
            HashFunction::Sha1 => "sha-1",
            HashFunction::Sha256 => "sha-256",
            HashFunction::Sha384 => "sha-384",
            HashFunction::Sha512 => "sha-512",
        }
    }

    /// Parses an SDP name (case-insensitive).
    pub fn from_name(name: &str) -> Option<HashFunction> {
        Some(match name.to_ascii_lowercase().as_str() {
            "sha-1" => HashFunction::Sha1,
            "sha-256" => HashFunction::Sha256,
            "sha-384" => HashFunction::Sha384,
            "sha-512" => HashFunction::Sha512,
            _ => return None,
        })
    }

    fn digest(self, data: &[u8]) -> Vec<u8> {
        let alg = match self {
            HashFunction::Sha1 => &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
            HashFunction::Sha256 => &ring::digest::SHA256,
            HashFunction::Sha384 => &ring::digest::SHA384,
            HashFunction::Sha512 => &ring::digest::SHA512,
        };
        ring::digest::digest(alg, data).as_ref().to_vec()
    }
}

/// A certificate fingerprint, as `a=fingerprint:<hash> <HEX:HEX:…>` carries it.
#[derive(Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// The hash function.
    pub hash: HashFunction,
    /// The digest of the DER certificate.
    pub digest: Vec<u8>,
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl fmt::Display for Fingerprint {
    /// `sha-256 AB:CD:…` (upper-case hex, as RFC 8122 writes it).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.hash.name())?;
        for (i, b) in self.digest.iter().enumerate() {
            let sep = if i == 0 { ' ' } else { ':' };
            write!(f, "{sep}{b:02X}")?;
        }
        Ok(())
    }
}

impl Fingerprint {
    /// The fingerprint of a DER certificate.
    pub fn of_der(hash: HashFunction, der: &[u8]) -> Fingerprint {
        Fingerprint {
            hash,
            digest: hash.digest(der),
        }
    }

    /// Parses an `a=fingerprint` value: a known hash function, then hex pairs separated by
    /// colons, exactly as long as the function's digest.
    pub fn parse(value: &str) -> Option<Fingerprint> {
        let (name, hex) = value.trim().split_once(char::is_whitespace)?;
        let hash = HashFunction::from_name(name)?;
        let digest = hex
            .trim()
            .split(':')
            .map(|p| {
                if p.len() == 2 {
                    u8::from_str_radix(p, 16).ok()
                } else {
                    None
                }
            })
            .collect::<Option<Vec<u8>>>()?;
        (digest.len() == hash.digest(b"").len()).then_some(Fingerprint { hash, digest })
    }

    /// Whether `der` is the certificate this fingerprint names.
    pub fn matches(&self, der: &[u8]) -> bool {
        // Constant time is not needed: the digest is public (it is in the SDP).
        self.hash.digest(der) == self.digest
    }
}

/// Why DTLS could not be set up.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DtlsError {
    /// The certificate could not be made or read.
    #[error("DTLS certificate: {0}")]
    Certificate(String),
    /// The handshake configuration was refused.
    #[error("DTLS configuration: {0}")]
    Config(String),
}

/// The engine's DTLS certificate and key, with its SHA-256 fingerprint.
#[derive(Clone)]
pub struct DtlsIdentity {
    certificate: Certificate,
    fingerprint: Fingerprint,
    provider: Arc<dyn RTCCryptoProvider>,
}

impl fmt::Debug for DtlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the key.
        f.debug_struct("DtlsIdentity")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl DtlsIdentity {
    /// A fresh self-signed ECDSA P-256 certificate (what WebRTC endpoints and FreeSWITCH use).
    pub fn generate() -> Result<DtlsIdentity, DtlsError> {
        let provider = provider()?;
        let certificate =
            Certificate::generate_self_signed(vec!["switchboard".to_string()], provider.crypto())
                .map_err(|e| DtlsError::Certificate(e.to_string()))?;
        DtlsIdentity::new(certificate, provider)
    }

    /// A certificate and its PKCS#8 private key from PEM text (the certificate block first,
    /// then the key; the two may come from separate files concatenated).
    pub fn from_pem(pem: &str) -> Result<DtlsIdentity, DtlsError> {
        let provider = provider()?;
        let certificate = Certificate::from_pem(pem, provider.crypto())
            .map_err(|e| DtlsError::Certificate(e.to_string()))?;
        DtlsIdentity::new(certificate, provider)
    }

    fn new(
        certificate: Certificate,
        provider: Arc<dyn RTCCryptoProvider>,
    ) -> Result<DtlsIdentity, DtlsError> {
        let der = certificate
            .certificate
            .first()
            .ok_or_else(|| DtlsError::Certificate("no certificate".into()))?;
        let fingerprint = Fingerprint::of_der(HashFunction::Sha256, der.as_ref());
        Ok(DtlsIdentity {
            certificate,
            fingerprint,
            provider,
        })
    }

    /// The certificate's SHA-256 fingerprint (what the engine puts in `a=fingerprint`).
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }
}

fn provider() -> Result<Arc<dyn RTCCryptoProvider>, DtlsError> {
    rtc_dtls::crypto_provider::default_provider().map_err(|e| DtlsError::Config(e.to_string()))
}

/// Which side of the handshake the engine takes on a leg (RFC 5763 §5: `a=setup:active` is the
/// DTLS client).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DtlsRole {
    /// The engine sends the ClientHello (it answered or was answered `passive`… by the peer).
    Client,
    /// The engine waits for the peer's ClientHello.
    Server,
}

/// What a session reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DtlsEvent {
    /// The handshake completed and the peer's certificate matched its fingerprint: the leg's
    /// SRTP keys (`send` protects what the engine sends, `recv` unprotects what the peer sends).
    Connected {
        /// The engine's key.
        send: SrtpKey,
        /// The peer's key.
        recv: SrtpKey,
    },
    /// The handshake failed (fingerprint mismatch, no common SRTP profile, timeout, a fatal
    /// alert); the leg cannot carry media.
    Failed(String),
    /// The peer closed the association (close_notify), usually at hang-up.
    Closed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Handshaking,
    Connected,
    Done,
}

/// One leg's DTLS association. See the module documentation for the calling order.
pub struct DtlsSession {
    endpoint: Endpoint,
    role: DtlsRole,
    /// The peer's transport address once known (the client knows it from the start).
    remote: Option<SocketAddr>,
    phase: Phase,
    /// When the handshake must be done: from the start for a client; for a server from the
    /// peer's first datagram (a caller that answered `active` connects only once it has the
    /// engine's answer, which may wait for the callee).
    deadline: Option<Instant>,
    timeout: Duration,
    /// Set by the certificate check when the peer's certificate is not the announced one.
    mismatch: Arc<AtomicBool>,
    /// The client's handshake configuration, until [`DtlsSession::connect`] uses it.
    client_config: Option<Arc<rtc_dtls::config::HandshakeConfig>>,
    events: VecDeque<DtlsEvent>,
}

impl fmt::Debug for DtlsSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DtlsSession")
            .field("role", &self.role)
            .field("remote", &self.remote)
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

/// The `use_srtp` profiles the engine offers and accepts, in order of preference.
const PROFILES: [SrtpProtectionProfile; 3] = [
    SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80,
    SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
    SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_32,
];

fn suite_of(p: SrtpProtectionProfile) -> Option<SrtpSuite> {
    Some(match p {
        SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80 => SrtpSuite::AesCm128HmacSha1_80,
        SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_32 => SrtpSuite::AesCm128HmacSha1_32,
        SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm => SrtpSuite::AeadAes128Gcm,
        SrtpProtectionProfile::Srtp_Aead_Aes_256_Gcm => SrtpSuite::AeadAes256Gcm,
        _ => return None,
    })
}

impl DtlsSession {
    /// A session with `identity` in `role`, accepting only a peer certificate that matches
    /// `peer` (its SDP fingerprint), failing if not connected within `timeout` (from `now` for a
    /// client, from the peer's first datagram for a server). A client
    /// needs [`DtlsSession::connect`] next; a server waits for input. `local` is the socket's
    /// address (only for the record of the association).
    pub fn new(
        identity: &DtlsIdentity,
        role: DtlsRole,
        peer: Fingerprint,
        local: SocketAddr,
        now: Instant,
        timeout: Duration,
    ) -> Result<DtlsSession, DtlsError> {
        let mismatch = Arc::new(AtomicBool::new(false));
        let flag = mismatch.clone();
        let verify: rtc_dtls::config::VerifyPeerCertificateFn =
            Arc::new(move |certs: &[Vec<u8>], _| {
                let ok = certs.first().is_some_and(|der| peer.matches(der));
                if ok {
                    Ok(())
                } else {
                    flag.store(true, Ordering::Release);
                    Err(rtc_shared::error::Error::Other(
                        "peer certificate does not match the SDP fingerprint".into(),
                    ))
                }
            });
        let client = role == DtlsRole::Client;
        let builder = ConfigBuilder::default()
            .with_crypto_provider(identity.provider.clone())
            .with_certificates(vec![identity.certificate.clone()])
            .with_srtp_protection_profiles(PROFILES.to_vec())
            .with_extended_master_secret(ExtendedMasterSecretType::Request)
            // Self-signed certificates: authenticity comes from the SDP fingerprint, checked in
            // `verify` (RFC 5763 §5), not from a CA chain.
            .with_insecure_skip_verify(true)
            .with_verify_peer_certificate(Some(verify))
            .with_flight_interval(RETRANSMIT_INTERVAL);
        let builder = if client {
            builder
        } else {
            builder.with_client_auth(ClientAuthType::RequireAnyClientCert)
        };
        let config = Arc::new(
            builder
                .build(client, None)
                .map_err(|e| DtlsError::Config(e.to_string()))?,
        );
        let (server_config, client_config) = if client {
            (None, Some(config))
        } else {
            (Some(config), None)
        };
        Ok(DtlsSession {
            endpoint: Endpoint::new(local, TransportProtocol::UDP, server_config),
            role,
            remote: None,
            phase: Phase::Handshaking,
            deadline: client.then(|| now + timeout),
            timeout,
            mismatch,
            client_config,
            events: VecDeque::new(),
        })
    }

    /// The engine's role.
    pub fn role(&self) -> DtlsRole {
        self.role
    }

    /// Whether the keys have been exported (and the session not closed or failed since).
    pub fn is_connected(&self) -> bool {
        self.phase == Phase::Connected
    }

    /// Whether the session is over (failed or closed).
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// The client starts its handshake toward `remote` (queues the ClientHello). Nothing for a
    /// server, or a second time.
    pub fn connect(&mut self, now: Instant, remote: SocketAddr) {
        let Some(config) = self.client_config.take() else {
            return;
        };
        self.remote = Some(remote);
        if let Err(e) = self.endpoint.connect(now, remote, config, None) {
            self.fail(format!("DTLS connect: {e}"));
        }
    }

    /// A datagram from `src` that [`is_dtls`]. A client ignores datagrams from elsewhere than
    /// the address it connected to; a server takes the first sender as its peer.
    pub fn handle_input(&mut self, now: Instant, src: SocketAddr, datagram: &[u8]) {
        if self.phase == Phase::Done {
            return;
        }
        match self.remote {
            Some(r) if r != src => {
                tracing::debug!(%src, remote = %r, "DTLS datagram from another source: ignored");
                return;
            }
            Some(_) => {}
            None if self.role == DtlsRole::Server => {
                self.remote = Some(src);
                self.deadline = Some(now + self.timeout);
            }
            None => return, // a client that has not connected yet
        }
        let result = self.endpoint.read(now, src, None, BytesMut::from(datagram));
        if self.mismatch.load(Ordering::Acquire) {
            return self.fail("peer certificate does not match the SDP fingerprint".into());
        }
        match result {
            Ok(events) => {
                for ev in events {
                    match ev {
                        EndpointEvent::HandshakeComplete => self.on_complete(),
                        EndpointEvent::PeerClosed => {
                            self.phase = Phase::Done;
                            self.events.push_back(DtlsEvent::Closed);
                        }
                        _ => {} // application data: not used on a media leg
                    }
                }
            }
            // A record that does not parse or decrypt is dropped (it may be a stray or forged
            // datagram); a handshake that cannot finish ends at its deadline.
            Err(e) => tracing::debug!(error = %e, "DTLS datagram refused"),
        }
    }

    /// Retransmits a lost flight when its timer is due; fails the session at the handshake
    /// deadline or when retransmissions are exhausted.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.phase != Phase::Handshaking {
            return;
        }
        if self.deadline.is_some_and(|d| now >= d) {
            return self.fail("DTLS handshake timed out".into());
        }
        let Some(remote) = self.remote else {
            return;
        };
        if let Err(e) = self.endpoint.handle_timeout(remote, now) {
            self.fail(format!("DTLS handshake: {e}"));
        }
    }

    /// When [`DtlsSession::handle_timeout`] is next due: the retransmission timer or the
    /// handshake deadline while handshaking, else never.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.phase != Phase::Handshaking {
            return None;
        }
        let retransmit = self
            .remote
            .and_then(|r| self.endpoint.poll_timeout(&r))
            .or(self.deadline)?;
        Some(self.deadline.map_or(retransmit, |d| retransmit.min(d)))
    }

    /// The next datagram to send, and where.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        let t = self.endpoint.poll_transmit()?;
        Some((t.transport.peer_addr, t.message.to_vec()))
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<DtlsEvent> {
        self.events.pop_front()
    }

    /// Ends the association (queues a close_notify for [`DtlsSession::poll_transmit`]).
    pub fn close(&mut self, now: Instant) {
        if let Some(r) = self.remote {
            self.endpoint.stop(now, r);
        }
        self.phase = Phase::Done;
    }

    fn fail(&mut self, reason: String) {
        if self.phase == Phase::Done {
            return;
        }
        self.phase = Phase::Done;
        self.events.push_back(DtlsEvent::Failed(reason));
    }

    /// RFC 5764 §4.2: `client_key | server_key | client_salt | server_salt` from the exporter;
    /// the engine sends with its own side's key.
    fn on_complete(&mut self) {
        let Some(remote) = self.remote else {
            return self.fail("DTLS completed without a peer".into());
        };
        let Some(state) = self.endpoint.get_connection_state(remote) else {
            return self.fail("DTLS completed without an association".into());
        };
        let Some(suite) = suite_of(state.srtp_protection_profile()) else {
            return self.fail("no common SRTP profile (use_srtp)".into());
        };
        let (k, s) = (suite.key_len(), suite.salt_len());
        let material = match state.export_keying_material(EXPORTER_LABEL, &[], 2 * (k + s)) {
            Ok(m) => m,
            Err(e) => return self.fail(format!("DTLS-SRTP key export: {e}")),
        };
        let m = material.as_ref();
        let (Some(ck), Some(sk), Some(cs), Some(ss)) = (
            m.get(..k),
            m.get(k..2 * k),
            m.get(2 * k..2 * k + s),
            m.get(2 * k + s..2 * (k + s)),
        ) else {
            return self.fail("DTLS-SRTP key export: short".into());
        };
        let key = |key: &[u8], salt: &[u8]| SrtpKey::from_inline(suite, &[key, salt].concat());
        let (client, server) = match (key(ck, cs), key(sk, ss)) {
            (Ok(c), Ok(s)) => (c, s),
            _ => return self.fail("DTLS-SRTP key export: bad key".into()),
        };
        let (send, recv) = match self.role {
            DtlsRole::Client => (client, server),
            DtlsRole::Server => (server, client),
        };
        self.phase = Phase::Connected;
        self.events.push_back(DtlsEvent::Connected { send, recv });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::srtp::SrtpContext;

    fn addr(p: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], p))
    }

    /// Runs two sessions against each other in simulated time, dropping the datagrams for
    /// which `drop` says so; returns their events.
    fn run(
        client: &mut DtlsSession,
        server: &mut DtlsSession,
        mut drop: impl FnMut(usize) -> bool,
    ) -> (Vec<DtlsEvent>, Vec<DtlsEvent>) {
        let (ca, sa) = (addr(4000), addr(5000));
        let mut now = Instant::now();
        client.connect(now, sa);
        let (mut ce, mut se) = (Vec::new(), Vec::new());
        let mut n = 0;
        for _ in 0..400 {
            let mut moved = false;
            while let Some((to, d)) = client.poll_transmit() {
                assert_eq!(to, sa);
                n += 1;
                if !drop(n) {
                    server.handle_input(now, ca, &d);
                }
                moved = true;
            }
            while let Some((to, d)) = server.poll_transmit() {
                assert_eq!(to, ca);
                n += 1;
                if !drop(n) {
                    client.handle_input(now, sa, &d);
                }
                moved = true;
            }
            ce.extend(std::iter::from_fn(|| client.poll_event()));
            se.extend(std::iter::from_fn(|| server.poll_event()));
            if (client.is_connected() || client.is_done())
                && (server.is_connected() || server.is_done())
            {
                break;
            }
            if !moved {
                let next = [client.poll_timeout(), server.poll_timeout()]
                    .into_iter()
                    .flatten()
                    .min();
                let Some(next) = next else { break };
                now = next.max(now);
                client.handle_timeout(now);
                server.handle_timeout(now);
            }
        }
        ce.extend(std::iter::from_fn(|| client.poll_event()));
        se.extend(std::iter::from_fn(|| server.poll_event()));
        (ce, se)
    }

    fn pair(
        client_expects: &DtlsIdentity,
        server_expects: &DtlsIdentity,
    ) -> (DtlsSession, DtlsSession, DtlsIdentity, DtlsIdentity) {
        let (c, s) = (
            DtlsIdentity::generate().expect("client cert"),
            DtlsIdentity::generate().expect("server cert"),
        );
        let now = Instant::now();
        let _ = (client_expects, server_expects);
        let client = DtlsSession::new(
            &c,
            DtlsRole::Client,
            s.fingerprint().clone(),
            addr(4000),
            now,
            HANDSHAKE_TIMEOUT,
        )
        .expect("client");
        let server = DtlsSession::new(
            &s,
            DtlsRole::Server,
            c.fingerprint().clone(),
            addr(5000),
            now,
            HANDSHAKE_TIMEOUT,
        )
        .expect("server");
        (client, server, c, s)
    }

    fn keys(events: &[DtlsEvent]) -> Option<(SrtpKey, SrtpKey)> {
        events.iter().find_map(|e| match e {
            DtlsEvent::Connected { send, recv } => Some((send.clone(), recv.clone())),
            _ => None,
        })
    }

    #[test]
    fn handshake_exports_matching_srtp_keys() {
        let dummy = DtlsIdentity::generate().expect("cert");
        let (mut client, mut server, _, _) = pair(&dummy, &dummy);
        let (ce, se) = run(&mut client, &mut server, |_| false);
        let (c_send, c_recv) = keys(&ce).unwrap_or_else(|| panic!("client: {ce:?}"));
        let (s_send, s_recv) = keys(&se).unwrap_or_else(|| panic!("server: {se:?}"));
        assert_eq!(c_send, s_recv, "client→server key");
        assert_eq!(s_send, c_recv, "server→client key");
        assert_ne!(c_send, s_send);
        assert_eq!(c_send.suite(), SrtpSuite::AesCm128HmacSha1_80);
        // And they work as SRTP.
        let mut tx = SrtpContext::sender(&c_send).expect("ctx");
        let mut rx = SrtpContext::receiver(&s_recv).expect("ctx");
        let mut p = vec![0x80, 0, 0, 1, 0, 0, 0, 160, 1, 2, 3, 4];
        p.extend_from_slice(&[9; 160]);
        let wire = tx.protect(&p).expect("protect");
        assert_eq!(rx.unprotect(&wire).expect("unprotect"), p);
    }

    #[test]
    fn lost_flights_are_retransmitted() {
        let dummy = DtlsIdentity::generate().expect("cert");
        let (mut client, mut server, _, _) = pair(&dummy, &dummy);
        // Lose the first ClientHello and the server's first flight.
        let (ce, se) = run(&mut client, &mut server, |n| n == 1 || n == 3);
        assert!(keys(&ce).is_some(), "client: {ce:?}");
        assert!(keys(&se).is_some(), "server: {se:?}");
    }

    #[test]
    fn a_wrong_fingerprint_fails_the_handshake() {
        let (c, s) = (
            DtlsIdentity::generate().expect("cert"),
            DtlsIdentity::generate().expect("cert"),
        );
        let stranger = DtlsIdentity::generate().expect("cert");
        let now = Instant::now();
        // The server expects someone else's certificate.
        let mut client = DtlsSession::new(
            &c,
            DtlsRole::Client,
            s.fingerprint().clone(),
            addr(4000),
            now,
            HANDSHAKE_TIMEOUT,
        )
        .expect("client");
        let mut server = DtlsSession::new(
            &s,
            DtlsRole::Server,
            stranger.fingerprint().clone(),
            addr(5000),
            now,
            HANDSHAKE_TIMEOUT,
        )
        .expect("server");
        let (_, se) = run(&mut client, &mut server, |_| false);
        assert!(
            se.iter()
                .any(|e| matches!(e, DtlsEvent::Failed(r) if r.contains("fingerprint"))),
            "server: {se:?}"
        );
        assert!(keys(&se).is_none());
        // The other way round: the client checks the server.
        let mut client = DtlsSession::new(
            &c,
            DtlsRole::Client,
            stranger.fingerprint().clone(),
            addr(4000),
            now,
            HANDSHAKE_TIMEOUT,
        )
        .expect("client");
        let mut server = DtlsSession::new(
            &s,
            DtlsRole::Server,
            c.fingerprint().clone(),
            addr(5000),
            now,
            HANDSHAKE_TIMEOUT,
        )
        .expect("server");
        let (ce, _) = run(&mut client, &mut server, |_| false);
        assert!(
            ce.iter()
                .any(|e| matches!(e, DtlsEvent::Failed(r) if r.contains("fingerprint"))),
            "client: {ce:?}"
        );
    }

    #[test]
    fn a_silent_peer_times_out() {
        let (c, s) = (
            DtlsIdentity::generate().expect("cert"),
            DtlsIdentity::generate().expect("cert"),
        );
        let start = Instant::now();
        let mut client = DtlsSession::new(
            &c,
            DtlsRole::Client,
            s.fingerprint().clone(),
            addr(4000),
            start,
            HANDSHAKE_TIMEOUT,
        )
        .expect("client");
        client.connect(start, addr(5000));
        let mut sent = 0;
        let mut events = Vec::new();
        while let Some(at) = client.poll_timeout() {
            while client.poll_transmit().is_some() {
                sent += 1;
            }
            client.handle_timeout(at);
            events.extend(std::iter::from_fn(|| client.poll_event()));
            assert!(at <= start + HANDSHAKE_TIMEOUT, "never past the deadline");
        }
        assert!(sent >= 2, "the ClientHello was retransmitted ({sent})");
        assert!(client.is_done());
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(matches!(&events[0], DtlsEvent::Failed(_)), "{events:?}");
    }

    #[test]
    fn a_server_waits_for_its_peer_without_a_deadline() {
        let (c, s) = (
            DtlsIdentity::generate().expect("cert"),
            DtlsIdentity::generate().expect("cert"),
        );
        let now = Instant::now();
        let mut server = DtlsSession::new(
            &s,
            DtlsRole::Server,
            c.fingerprint().clone(),
            addr(5000),
            now,
            HANDSHAKE_TIMEOUT,
        )
        .expect("server");
        assert_eq!(
            server.poll_timeout(),
            None,
            "no timer before the peer speaks"
        );
        server.handle_timeout(now + HANDSHAKE_TIMEOUT * 3);
        assert!(server.poll_event().is_none() && !server.is_done());
    }

    #[test]
    fn fingerprints_parse_print_and_refuse_garbage() {
        let id = DtlsIdentity::generate().expect("cert");
        let text = id.fingerprint().to_string();
        assert!(text.starts_with("sha-256 "), "{text}");
        assert_eq!(Fingerprint::parse(&text).as_ref(), Some(id.fingerprint()));
        assert_eq!(
            Fingerprint::parse(&text.to_ascii_lowercase().replace("sha-256", "SHA-256")).as_ref(),
            Some(id.fingerprint())
        );
        for bad in [
            "",
            "sha-256",
            "md5 AB:CD",
            "sha-256 AB:CD",
            "sha-1 ZZ:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00",
            "sha-256 ABC:D",
        ] {
            assert!(Fingerprint::parse(bad).is_none(), "{bad:?}");
        }
        assert!(is_dtls(&[22, 254, 253]));
        assert!(!is_dtls(&[0x80, 0]) && !is_dtls(&[0, 1]) && !is_dtls(&[]));
    }

    #[test]
    fn garbage_datagrams_never_panic() {
        let (c, s) = (
            DtlsIdentity::generate().expect("cert"),
            DtlsIdentity::generate().expect("cert"),
        );
        let now = Instant::now();
        let mut server = DtlsSession::new(
            &s,
            DtlsRole::Server,
            c.fingerprint().clone(),
            addr(5000),
            now,
            HANDSHAKE_TIMEOUT,
        )
        .expect("server");
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 0..300usize {
            let mut p = vec![0u8; len % 160];
            for b in &mut p {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            if let Some(b) = p.first_mut() {
                *b = 20 + (*b % 4);
            }
            server.handle_input(now, addr(4000), &p);
            while server.poll_transmit().is_some() {}
        }
    }
}
