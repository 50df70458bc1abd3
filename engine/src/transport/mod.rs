//! Transports: UDP, TCP, TLS and WebSocket (WS/WSS) listeners, stream framing, and response
//! routing. The shells here only move bytes; parsing and decisions live in [`crate::sip`],
//! [`crate::inspect`] and [`crate::transaction`].

pub mod connect;
pub mod framing;
pub mod limit;
pub mod route;
pub mod tcp;
pub mod tls;
pub mod udp;
pub mod ws;

pub use crate::transaction::{Peer, TransportKind};

use crate::server::Shared;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// Admits a new TLS, WS or WSS connection from `remote`: refused when the engine-wide
/// `limits.max_tcp_connections` (open connections plus handshakes in progress) or the
/// per-source `limits.max_connections_per_source` is reached. The permit holds the slot.
pub(crate) fn admit_secure(shared: &Shared, remote: SocketAddr) -> Option<limit::SourcePermit> {
    let limits = &shared.config.limits;
    if shared.tcp.len() + shared.limiter.handshaking() >= limits.max_tcp_connections {
        shared
            .metrics
            .dropped
            .with_label_values(&["tcp_connection_limit"])
            .inc();
        return None;
    }
    let permit = shared.limiter.try_acquire(remote.ip());
    if permit.is_none() {
        tracing::debug!(peer = %remote, "per-source connection limit reached");
        shared
            .metrics
            .dropped
            .with_label_values(&["source_connection_limit"])
            .inc();
    }
    permit
}

/// The accept loop of the TLS, WS and WSS listeners: each accepted connection is admitted
/// ([`admit_secure`]) and handed to `handle` on its own task, which keeps the admission permit
/// until the connection ends. `what` names the transport in logs.
pub(crate) async fn accept_secure<F, Fut>(
    listener: TcpListener,
    shared: Arc<Shared>,
    what: &'static str,
    handle: F,
) where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "{what} accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Some(permit) = admit_secure(&shared, remote) else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let conn = handle(stream, remote);
        tokio::spawn(async move {
            conn.await;
            drop(permit);
        });
    }
}
