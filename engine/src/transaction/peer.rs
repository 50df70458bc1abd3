//! Where a message came from or goes to: the transport kind, the remote address and, for
//! connection-oriented transports, the connection it travelled on.

use std::fmt;
use std::net::SocketAddr;

/// The transport a message travels over (RFC 3261 §18, RFC 7118 for WebSocket).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TransportKind {
    /// UDP: unreliable, the transaction layer retransmits.
    Udp,
    /// TCP.
    Tcp,
    /// TLS over TCP.
    Tls,
    /// WebSocket (RFC 7118).
    Ws,
    /// Secure WebSocket (RFC 7118).
    Wss,
}

impl TransportKind {
    /// True for transports that deliver reliably: no retransmissions, and timers D, I, J and
    /// K are zero (RFC 3261 §17).
    pub fn is_reliable(self) -> bool {
        !matches!(self, TransportKind::Udp)
    }

    /// The Via transport token (`UDP`, `TCP`, `TLS`, `WS`, `WSS`).
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::Udp => "UDP",
            TransportKind::Tcp => "TCP",
            TransportKind::Tls => "TLS",
            TransportKind::Ws => "WS",
            TransportKind::Wss => "WSS",
        }
    }
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The remote end of a message: where a request came from, or where a message is to be sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Peer {
    /// The transport.
    pub transport: TransportKind,
    /// The remote socket address (source of a received message, destination of a sent one).
    pub addr: SocketAddr,
    /// The connection the message arrived on or should leave by, for connection-oriented
    /// transports; `None` for UDP or when any connection to `addr` will do.
    pub conn: Option<u64>,
}

impl Peer {
    /// A peer reached over `transport` at `addr`, on no particular connection.
    pub fn new(transport: TransportKind, addr: SocketAddr) -> Peer {
        Peer {
            transport,
            addr,
            conn: None,
        }
    }
}
