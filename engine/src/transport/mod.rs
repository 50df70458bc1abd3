//! Transports: UDP, TCP, TLS and WebSocket (WS/WSS) listeners, stream framing, and response
//! routing. The shells here only move bytes; parsing and decisions live in [`crate::sip`],
//! [`crate::inspect`] and [`crate::transaction`].

pub mod framing;
pub mod limit;
pub mod route;
pub mod tcp;
pub mod tls;
pub mod udp;
pub mod ws;

pub use crate::transaction::{Peer, TransportKind};

use crate::server::Shared;
use std::net::SocketAddr;

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
