//! Outbound connections (RFC 3261 §18.1.1): a request for a TCP or TLS peer on no particular
//! connection reuses an open connection to that address, else opens one. The new connection
//! is registered at once, so messages queued while it connects are written when it is up and
//! other shards reuse it; once up it is served like an accepted one ([`tcp::serve_stream`]).
//! TLS client settings come per destination from the trunks (`[trunks.NAME] transport =
//! "tls"`): the CAs trusted, the name checked, and an optional client certificate.

use super::tcp::{self, Reserved};
use crate::config::{Config, TrunkConfig, TrunkTransport};
use crate::server::Shared;
use crate::transaction::TransportKind;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

/// TLS client settings for one destination.
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
}

/// TLS client settings by destination address, from the trunks with `transport = "tls"`.
#[derive(Clone, Default)]
pub struct ClientTlsMap {
    by_dest: HashMap<SocketAddr, ClientTls>,
}

impl ClientTlsMap {
    /// Builds the settings of every TLS trunk (its gateways and its registrar); an error
    /// names the config key whose file cannot be used.
    pub fn from_config(config: &Config) -> Result<ClientTlsMap, super::tls::TlsConfigError> {
        let mut by_dest = HashMap::new();
        for (name, t) in &config.trunks {
            if t.transport != TrunkTransport::Tls {
                continue;
            }
            let client = client_config(name, t)?;
            let mut dests: Vec<SocketAddr> = t.all_gateways().iter().map(|g| g.address).collect();
            if let Some(r) = t.register.as_ref().and_then(|r| r.registrar) {
                dests.push(r);
            }
            for d in dests {
                let name = match &t.tls_server_name {
                    Some(n) => {
                        ServerName::try_from(n.clone()).map_err(|e| super::tls::TlsConfigError {
                            key: "trunks.*.tls_server_name",
                            reason: format!("{n}: {e}"),
                        })?
                    }
                    None => ServerName::IpAddress(d.ip().into()),
                };
                by_dest.insert(
                    d,
                    ClientTls {
                        config: client.clone(),
                        name,
                    },
                );
            }
        }
        Ok(ClientTlsMap { by_dest })
    }

    fn get(&self, dest: SocketAddr) -> Option<&ClientTls> {
        self.by_dest.get(&dest)
    }
}

/// The rustls client configuration of trunk `name`.
fn client_config(
    name: &str,
    t: &TrunkConfig,
) -> Result<Arc<rustls::ClientConfig>, super::tls::TlsConfigError> {
    let fail = |key: &'static str, reason: String| super::tls::TlsConfigError {
        key,
        reason: format!("trunk {name}: {reason}"),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| fail("trunks.*.transport", e.to_string()))?;
    let builder = if t.tls_verify {
        let mut roots = rustls::RootCertStore::empty();
        if let Some(ca) = &t.tls_ca {
            for c in read_certs(ca).map_err(|e| fail("trunks.*.tls_ca", e))? {
                roots
                    .add(c)
                    .map_err(|e| fail("trunks.*.tls_ca", e.to_string()))?;
            }
        }
        builder.with_root_certificates(roots)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
    };
    let config = match (&t.tls_cert, &t.tls_key) {
        (Some(cert), Some(key)) => {
            let certs = read_certs(cert).map_err(|e| fail("trunks.*.tls_cert", e))?;
            let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                fail(
                    "trunks.*.tls_key",
                    format!("{}: no usable private key: {e}", key.display()),
                )
            })?;
            builder
                .with_client_auth_cert(certs, key_der)
                .map_err(|e| fail("trunks.*.tls_key", e.to_string()))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

fn read_certs(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: cannot read certificates: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in the file", path.display()));
    }
    Ok(certs)
}

/// `tls_verify = false`: any certificate is accepted, signatures are still checked.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The connection a message for `dest` over `kind` (TCP or TLS) leaves by: an open one to that
/// address, else a new one being opened. `None` for transports the engine cannot open (WS,
/// WSS: browsers connect to us) and for TLS to a destination without client settings.
pub(crate) fn connection_to(
    shared: &Arc<Shared>,
    kind: TransportKind,
    dest: SocketAddr,
) -> Option<u64> {
    let tls = match kind {
        TransportKind::Tcp => None,
        TransportKind::Tls => match shared.client_tls.get(dest) {
            Some(t) => Some(t.clone()),
            None => {
                if let Some(id) = shared.tcp.find(dest) {
                    return Some(id);
                }
                tracing::debug!(%dest, "no TLS client settings for this destination");
                shared
                    .metrics
                    .dropped
                    .with_label_values(&["no_tls_client_config"])
                    .inc();
                return None;
            }
        },
        _ => return shared.tcp.find(dest),
    };
    match shared.tcp.find_or_reserve(dest) {
        Ok(id) => Some(id),
        Err(reserved) => {
            let id = reserved.0;
            tokio::spawn(open(shared.clone(), kind, dest, tls, reserved));
            Some(id)
        }
    }
}

/// Connects (and handshakes, for TLS) within `limits.handshake_timeout_secs`, then serves the
/// connection until it closes; on failure the reservation is dropped with what was queued.
async fn open(
    shared: Arc<Shared>,
    kind: TransportKind,
    dest: SocketAddr,
    tls: Option<ClientTls>,
    reserved: Reserved,
) {
    let id = reserved.0;
    let timeout = Duration::from_secs(shared.config.limits.handshake_timeout_secs.max(1));
    let fail = |why: &'static str, e: String| {
        tracing::info!(%dest, transport = kind.as_str(), error = %e, "outbound connection failed");
        shared.metrics.dropped.with_label_values(&[why]).inc();
        shared.tcp.remove(id);
    };
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(dest)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return fail("connect_failed", e.to_string()),
        Err(_) => return fail("connect_failed", "timed out".into()),
    };
    let _ = stream.set_nodelay(true);
    tracing::debug!(%dest, transport = kind.as_str(), "outbound connection up");
    match tls {
        None => {
            let (rd, wr) = stream.into_split();
            tcp::serve_stream(rd, wr, dest, kind, shared, reserved).await;
        }
        Some(t) => {
            let connector = tokio_rustls::TlsConnector::from(t.config);
            let s = match tokio::time::timeout(timeout, connector.connect(t.name, stream)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return fail("tls_handshake_failed", e.to_string()),
                Err(_) => return fail("tls_handshake_timeout", "timed out".into()),
            };
            let (rd, wr) = tokio::io::split(s);
            tcp::serve_stream(rd, wr, dest, kind, shared, reserved).await;
        }
    }
}
