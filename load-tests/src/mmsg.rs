//! Batched UDP I/O for the SIP workers: `recvmmsg(2)` reads up to [`BATCH`] datagrams and
//! `sendmmsg(2)` writes up to [`BATCH`] in one system call each.
//!
//! At tens of thousands of calls per second a worker moves hundreds of thousands of datagrams
//! per second; one `recvfrom`/`sendto` each made the system calls a large share of the CPU per
//! call. No crate wraps both calls for mixed destinations without allocating per batch (nix's
//! `MultiHeaders` rebuilds its headers for every call and `quinn-udp` batches only same-size
//! segments to one destination), so this module keeps its buffers and headers for the life of
//! the worker and calls libc directly.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;

/// Datagrams per system call.
pub const BATCH: usize = 64;
/// Largest datagram read; longer ones are truncated by the kernel and dropped here.
const SLOT: usize = 8192;

/// A socket address in the form the kernel reads and writes.
#[derive(Clone, Copy)]
struct RawAddr {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

impl RawAddr {
    fn empty() -> RawAddr {
        RawAddr {
            // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
            storage: unsafe { std::mem::zeroed() },
            len: std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t,
        }
    }

    fn from_std(addr: SocketAddr) -> RawAddr {
        let mut raw = RawAddr::empty();
        match addr {
            SocketAddr::V4(a) => {
                let sin = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: a.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(a.ip().octets()),
                    },
                    sin_zero: [0; 8],
                };
                // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
                unsafe {
                    std::ptr::write(
                        &mut raw.storage as *mut libc::sockaddr_storage as *mut libc::sockaddr_in,
                        sin,
                    )
                };
                raw.len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            }
            SocketAddr::V6(a) => {
                let sin6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: a.port().to_be(),
                    sin6_flowinfo: a.flowinfo(),
                    sin6_addr: libc::in6_addr {
                        s6_addr: a.ip().octets(),
                    },
                    sin6_scope_id: a.scope_id(),
                };
                // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
                unsafe {
                    std::ptr::write(
                        &mut raw.storage as *mut libc::sockaddr_storage as *mut libc::sockaddr_in6,
                        sin6,
                    )
                };
                raw.len = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
            }
        }
        raw
    }

    fn to_std(self) -> Option<SocketAddr> {
        match i32::from(self.storage.ss_family) {
            libc::AF_INET => {
                // SAFETY: the kernel wrote a sockaddr_in (family AF_INET) into the storage.
                let sin = unsafe {
                    &*(&self.storage as *const libc::sockaddr_storage as *const libc::sockaddr_in)
                };
                Some(SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()),
                    u16::from_be(sin.sin_port),
                )))
            }
            libc::AF_INET6 => {
                // SAFETY: the kernel wrote a sockaddr_in6 (family AF_INET6) into the storage.
                let sin6 = unsafe {
                    &*(&self.storage as *const libc::sockaddr_storage as *const libc::sockaddr_in6)
                };
                Some(SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                    u16::from_be(sin6.sin6_port),
                    sin6.sin6_flowinfo,
                    sin6.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }
}

/// Receive buffers for one worker: [`BATCH`] slots read by one `recvmmsg`.
pub struct Receiver {
    bufs: Vec<u8>,
    addrs: Vec<RawAddr>,
    lens: Vec<usize>,
    count: usize,
}

impl Default for Receiver {
    fn default() -> Self {
        Receiver {
            bufs: vec![0; SLOT * BATCH],
            addrs: vec![RawAddr::empty(); BATCH],
            lens: vec![0; BATCH],
            count: 0,
        }
    }
}

impl Receiver {
    /// Reads what is waiting on the non-blocking `socket`, up to [`BATCH`] datagrams, and
    /// returns how many. `Ok(0)` when nothing was waiting.
    pub fn recv(&mut self, socket: &UdpSocket) -> std::io::Result<usize> {
        self.count = 0;
        let mut iovs: [libc::iovec; BATCH] = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; BATCH];
        // SAFETY: mmsghdr is plain old data; all-zero is a valid value.
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for (i, (chunk, iov)) in self.bufs.chunks_mut(SLOT).zip(iovs.iter_mut()).enumerate() {
            iov.iov_base = chunk.as_mut_ptr() as *mut libc::c_void;
            iov.iov_len = chunk.len();
            let addr = &mut self.addrs[i];
            *addr = RawAddr::empty();
            let h = &mut msgs[i].msg_hdr;
            h.msg_name = &mut addr.storage as *mut libc::sockaddr_storage as *mut libc::c_void;
            h.msg_namelen = addr.len;
            h.msg_iov = iov;
            h.msg_iovlen = 1;
        }
        // SAFETY: every header points at a live slot of `self.bufs` and a live address of
        // `self.addrs`, both untouched until the call returns; `msgs` has BATCH entries.
        let r = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                msgs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            return if e.kind() == std::io::ErrorKind::WouldBlock {
                Ok(0)
            } else {
                Err(e)
            };
        }
        let n = r as usize;
        for (i, m) in msgs.iter().take(n).enumerate() {
            self.addrs[i].len = m.msg_hdr.msg_namelen;
            // A truncated datagram is dropped (length 0 is skipped by `get`).
            let truncated = m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            self.lens[i] = if truncated { 0 } else { m.msg_len as usize };
        }
        self.count = n;
        Ok(n)
    }

    /// The `i`-th datagram of the last [`Receiver::recv`] and its source, unless it was
    /// truncated or came from an address family other than IPv4/IPv6.
    pub fn get(&self, i: usize) -> Option<(&[u8], SocketAddr)> {
        if i >= self.count || self.lens[i] == 0 {
            return None;
        }
        let from = self.addrs[i].to_std()?;
        let data = self.bufs.get(i * SLOT..i * SLOT + self.lens[i])?;
        Some((data, from))
    }
}

/// Datagrams queued for one `sendmmsg`.
#[derive(Default)]
pub struct Sender {
    data: Vec<u8>,
    /// (offset in `data`, length, destination) of each queued datagram.
    queued: Vec<(usize, usize, RawAddr)>,
}

impl Sender {
    /// Queues `datagram` for `dest`; sends the batch first when it is full.
    pub fn push(&mut self, socket: &UdpSocket, datagram: &[u8], dest: SocketAddr) {
        if self.queued.len() == BATCH {
            self.flush(socket);
        }
        let at = self.data.len();
        self.data.extend_from_slice(datagram);
        self.queued
            .push((at, datagram.len(), RawAddr::from_std(dest)));
    }

    /// Sends every queued datagram. A datagram the kernel refuses (full send buffer, ICMP
    /// error pending) is dropped, as a lost datagram would be: SIP retransmissions cover it.
    pub fn flush(&mut self, socket: &UdpSocket) {
        let n = self.queued.len();
        if n == 0 {
            return;
        }
        let mut iovs: [libc::iovec; BATCH] = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; BATCH];
        // SAFETY: mmsghdr is plain old data; all-zero is a valid value.
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for (i, (at, len, addr)) in self.queued.iter_mut().enumerate() {
            iovs[i].iov_base = self.data[*at..].as_mut_ptr() as *mut libc::c_void;
            iovs[i].iov_len = *len;
            let h = &mut msgs[i].msg_hdr;
            h.msg_name = &mut addr.storage as *mut libc::sockaddr_storage as *mut libc::c_void;
            h.msg_namelen = addr.len;
            h.msg_iov = &mut iovs[i];
            h.msg_iovlen = 1;
        }
        let mut done = 0;
        while done < n {
            // SAFETY: headers done..n point at live iovecs into `self.data` and at live
            // addresses in `self.queued`; neither moves until the loop ends.
            let r = unsafe {
                libc::sendmmsg(
                    socket.as_raw_fd(),
                    msgs[done..n].as_mut_ptr(),
                    (n - done) as libc::c_uint,
                    0,
                )
            };
            // On an error the first unsent datagram is the one refused: skip it.
            done += if r <= 0 { 1 } else { r as usize };
        }
        self.queued.clear();
        self.data.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_goes_out_and_comes_back_with_sources() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        let mut tx = Sender::default();
        for i in 0..(BATCH + 6) {
            tx.push(
                &c,
                format!("msg {i}").as_bytes(),
                if i % 2 == 0 { a_addr } else { b_addr },
            );
        }
        tx.flush(&c);
        let mut rx = Receiver::default();
        let mut got = Vec::new();
        for sock in [&a, &b] {
            sock.set_nonblocking(true).unwrap();
            // Loopback delivery is synchronous: everything sent is queued by now.
            let n = rx.recv(sock).unwrap();
            for i in 0..n {
                let (data, from) = rx.get(i).unwrap();
                assert_eq!(from, c.local_addr().unwrap());
                got.push(String::from_utf8(data.to_vec()).unwrap());
            }
        }
        assert_eq!(got.len(), BATCH + 6);
        assert!(got.contains(&"msg 0".to_string()) && got.contains(&"msg 69".to_string()));
        assert_eq!(rx.recv(&a).unwrap(), 0);
    }

    #[test]
    fn ipv6_addresses_round_trip() {
        let v6: SocketAddr = "[::1]:5062".parse().unwrap();
        assert_eq!(RawAddr::from_std(v6).to_std(), Some(v6));
        let v4: SocketAddr = "127.0.0.2:5062".parse().unwrap();
        assert_eq!(RawAddr::from_std(v4).to_std(), Some(v4));
    }
}
