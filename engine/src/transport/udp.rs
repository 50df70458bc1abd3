//! The UDP transport: one reader task per bound socket.

use crate::server::Shared;
use crate::sip::parse_datagram;
use crate::transaction::{Peer, TransportKind};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::UdpSocket;

/// Socket buffer size requested for SIP UDP sockets (the kernel caps it at `rmem_max`).
const SOCKET_BUFFER: usize = 4 << 20;

/// Binds a UDP socket with large kernel buffers.
pub async fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let domain = socket2::Domain::for_address(addr);
    let s = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    UdpSocket::from_std(s.into())
}

/// Reads datagrams forever and hands each to [`Shared::accept`].
pub async fn serve(sock: Arc<UdpSocket>, index: u64, shared: Arc<Shared>) {
    let max = shared.config.limits.max_message_bytes;
    // One byte more than the limit tells an oversized datagram from one of exactly `max`.
    let mut buf = vec![0u8; max + 1];
    loop {
        let (n, src) = match sock.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                // ICMP port unreachable from an earlier send shows up here on Linux: keep going.
                tracing::trace!(error = %e, "UDP receive error");
                continue;
            }
        };
        if n > max {
            shared
                .metrics
                .dropped
                .with_label_values(&["too_large"])
                .inc();
            continue;
        }
        let data = &buf[..n];
        if data.iter().all(|b| matches!(b, b'\r' | b'\n' | 0)) {
            continue; // keep-alive (CRLF or NUL padding) on UDP: nothing to answer
        }
        let source = Peer {
            transport: TransportKind::Udp,
            addr: src,
            conn: Some(index),
        };
        shared.accept(parse_datagram(data), source).await;
    }
}
