//! Socket buffer sizing for the generator's sockets.
//!
//! At tens of thousands of calls per second a worker that is descheduled for a few
//! milliseconds finds its receive queue full: `SO_RCVBUF` is capped by
//! `net.core.rmem_max` (often 4 MiB ≈ 1 800 small datagrams, ≈ 10 ms of traffic per socket).
//! Run as root, the generator asks for its size with `SO_RCVBUFFORCE` / `SO_SNDBUFFORCE`
//! (CAP_NET_ADMIN), which are not capped, and falls back to the capped options otherwise.

use socket2::SockRef;
use std::os::fd::AsRawFd;

/// Receive/send buffer size the SIP and media sockets ask for.
pub const BUFFER_BYTES: usize = 32 << 20;

/// Sets both buffers of `sock` to `bytes`, beyond `rmem_max`/`wmem_max` when privileged.
pub fn grow(sock: SockRef<'_>, bytes: usize) {
    let fd = sock.as_raw_fd();
    if !force(fd, libc::SO_RCVBUFFORCE, bytes) {
        let _ = sock.set_recv_buffer_size(bytes);
    }
    if !force(fd, libc::SO_SNDBUFFORCE, bytes) {
        let _ = sock.set_send_buffer_size(bytes);
    }
}

fn force(fd: std::os::fd::RawFd, opt: libc::c_int, bytes: usize) -> bool {
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: `fd` is an open socket borrowed for the call; `v` outlives the call and its size
    // is passed alongside.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    rc == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_grow_at_least_to_the_default() {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap(); // loopback bind in a test
        let before = SockRef::from(&s).recv_buffer_size().unwrap(); // valid socket
        grow(SockRef::from(&s), 1 << 20);
        assert!(SockRef::from(&s).recv_buffer_size().unwrap() >= before); // valid socket
    }
}
