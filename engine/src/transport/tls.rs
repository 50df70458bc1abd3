//! SIP over TLS (RFC 3261 §26.2, RFC 5630): rustls with the ring provider, the certificate
//! chain and key from PEM files, optional mutual TLS. After the handshake a connection is
//! served exactly like TCP ([`super::tcp::run_stream`]: the same framing, keep-alives, limits,
//! and responses on the same connection), as [`TransportKind::Tls`].

use super::tcp;
use crate::server::Shared;
use crate::transaction::TransportKind;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// Why the TLS settings cannot be used: the config key at fault and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfigError {
    /// The dotted config key (`sip.tls_cert`, `sip.tls_key`, `sip.tls_client_ca`).
    pub key: &'static str,
    /// What is wrong, with the file name.
    pub reason: String,
}

impl std::fmt::Display for TlsConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.reason)
    }
}

/// Builds the server configuration from PEM files: `cert` holds the chain (leaf first), `key`
/// its private key; with `client_ca`, clients must present a certificate that chains to one of
/// its CAs.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<rustls::ServerConfig>, TlsConfigError> {
    let fail = |key: &'static str, path: &Path, e: String| TlsConfigError {
        key,
        reason: format!("{}: {e}", path.display()),
    };
    let certs = read_certs(cert).map_err(|e| fail("sip.tls_cert", cert, e))?;
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| fail("sip.tls_key", key, format!("no usable private key: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| fail("sip.tls_cert", cert, e.to_string()))?;
    let builder = match client_ca {
        Some(ca) => {
            let err = |e: String| fail("sip.tls_client_ca", ca, e);
            let mut roots = rustls::RootCertStore::empty();
            for c in read_certs(ca).map_err(err)? {
                roots.add(c).map_err(|e| err(e.to_string()))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| err(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder.with_single_cert(certs, key_der).map_err(|e| {
        fail(
            "sip.tls_key",
            key,
            format!("unusable with sip.tls_cert: {e}"),
        )
    })?;
    Ok(Arc::new(config))
}

/// Every certificate in a PEM file; an error when there is none.
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read certificates: {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no certificate in the file".into());
    }
    Ok(certs)
}

/// Accepts TLS connections forever: admission (engine-wide and per-source limits), then the
/// handshake under `limits.handshake_timeout_secs`, then [`tcp::run_stream`].
pub async fn serve(listener: TcpListener, acceptor: TlsAcceptor, shared: Arc<Shared>) {
    let conn_shared = shared.clone();
    super::accept_secure(listener, shared, "TLS", move |stream, remote| {
        connection(stream, remote, acceptor.clone(), conn_shared.clone())
    })
    .await
}

async fn connection(
    stream: TcpStream,
    remote: SocketAddr,
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
) {
    let handshake = shared.limiter.handshake();
    let timeout = Duration::from_secs(shared.config.limits.handshake_timeout_secs);
    let tls = match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(peer = %remote, error = %e, "TLS handshake failed");
            shared
                .metrics
                .dropped
                .with_label_values(&["tls_handshake_failed"])
                .inc();
            return;
        }
        Err(_) => {
            tracing::debug!(peer = %remote, "TLS handshake timed out");
            shared
                .metrics
                .dropped
                .with_label_values(&["tls_handshake_timeout"])
                .inc();
            return;
        }
    };
    drop(handshake);
    let (rd, wr) = tokio::io::split(tls);
    tcp::run_stream(rd, wr, remote, TransportKind::Tls, shared).await;
}
