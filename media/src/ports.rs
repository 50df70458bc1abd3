//! RTP/RTCP port pairs from the configured range.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex, PoisonError};

use socket2::{Domain, Protocol, Socket, Type};

/// Why a port pair could not be had.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// The range holds no even port `p` with `p + 1` also in range.
    #[error("port range {min}..={max} holds no RTP/RTCP pair")]
    EmptyRange {
        /// Configured minimum.
        min: u16,
        /// Configured maximum.
        max: u16,
    },
    /// Every pair is in use.
    #[error("no free RTP port pair")]
    Exhausted,
    /// Every free pair was tried and none could be bound (the last error is kept).
    #[error("could not bind any free RTP port pair: {0}")]
    Bind(#[source] io::Error),
}

/// Hands out RTP/RTCP port pairs (even RTP port `p`, RTCP `p + 1`) from
/// `rtp_port_min..=rtp_port_max` on one IP. Cheap to clone and thread-safe; allocation and release
/// are O(1) (a FIFO free list under a mutex held for a push or a pop).
///
/// Released pairs go to the back of the list, so a port is reused as late as possible: stray
/// packets of a finished call rarely reach the next one. A pair whose bind fails (another process
/// holds the port) is put back at the end and the next one is tried.
#[derive(Clone, Debug)]
pub struct PortAllocator {
    inner: Arc<Pool>,
}

#[derive(Debug)]
struct Pool {
    ip: IpAddr,
    first: u16,
    pairs: usize,
    free: Mutex<VecDeque<u16>>,
}

/// A bound pair: the RTP and RTCP sockets (non-blocking) and the lease that returns the ports to
/// the allocator when dropped. Drop the lease *after* the sockets.
#[derive(Debug)]
pub struct BoundPair {
    /// The RTP socket, bound on the even port.
    pub rtp: UdpSocket,
    /// The RTCP socket, bound on the RTP port + 1.
    pub rtcp: UdpSocket,
    /// Returns the pair to the allocator on drop.
    pub lease: PortLease,
}

/// Ownership of one port pair; dropping it makes the pair available again.
#[derive(Debug)]
pub struct PortLease {
    pool: Arc<Pool>,
    index: u16,
}

impl PortAllocator {
    /// An allocator over `min..=max` on `ip` (`min` is rounded up to even).
    pub fn new(ip: IpAddr, min: u16, max: u16) -> Result<PortAllocator, PortError> {
        let first = min.saturating_add(min % 2);
        let pairs = if max > first {
            // Even ports first, first + 2, … whose + 1 is still ≤ max.
            usize::from(max - first).div_ceil(2)
        } else {
            0
        };
        if pairs == 0 || !first.is_multiple_of(2) {
            return Err(PortError::EmptyRange { min, max });
        }
        // pairs ≤ 32 768, so every index fits in u16.
        let free = (0..pairs).filter_map(|i| u16::try_from(i).ok()).collect();
        Ok(PortAllocator {
            inner: Arc::new(Pool {
                ip,
                first,
                pairs,
                free: Mutex::new(free),
            }),
        })
    }

    /// The IP the sockets bind to.
    pub fn ip(&self) -> IpAddr {
        self.inner.ip
    }

    /// How many pairs the range holds.
    pub fn capacity(&self) -> usize {
        self.inner.pairs
    }

    /// How many pairs are free now.
    pub fn available(&self) -> usize {
        self.inner.lock().len()
    }

    /// Takes a free pair and binds both sockets (non-blocking). A pair that cannot be bound goes
    /// back to the end of the free list and the next one is tried, at most once each.
    pub fn allocate(&self) -> Result<BoundPair, PortError> {
        let mut last_err = None;
        for _ in 0..self.inner.pairs {
            let Some(index) = self.inner.lock().pop_front() else {
                break;
            };
            let lease = PortLease {
                pool: self.inner.clone(),
                index,
            };
            let port = lease.rtp_port();
            match bind_pair(self.inner.ip, port) {
                Ok((rtp, rtcp)) => return Ok(BoundPair { rtp, rtcp, lease }),
                Err(e) => {
                    tracing::debug!(port, error = %e, "RTP port pair busy, trying the next");
                    last_err = Some(e);
                    drop(lease); // back to the end of the list
                }
            }
        }
        Err(match last_err {
            Some(e) => PortError::Bind(e),
            None => PortError::Exhausted,
        })
    }
}

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<u16>> {
        // The critical sections are a push or a pop: a poisoned lock still holds a valid list.
        self.free.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl PortLease {
    /// The RTP (even) port of the pair.
    pub fn rtp_port(&self) -> u16 {
        self.pool.first + 2 * self.index
    }
}

impl Drop for PortLease {
    fn drop(&mut self) {
        self.pool.lock().push_back(self.index);
    }
}

fn bind_pair(ip: IpAddr, port: u16) -> io::Result<(UdpSocket, UdpSocket)> {
    let rtp = bind(SocketAddr::new(ip, port))?;
    let rtcp = bind(SocketAddr::new(ip, port + 1))?;
    Ok((rtp, rtcp))
}

fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_even_and_come_back_on_drop() {
        let a = PortAllocator::new("127.0.0.1".parse().unwrap(), 31001, 31010).unwrap();
        assert_eq!(
            a.capacity(),
            4,
            "31002, 31004, 31006, 31008 (31010 has no +1)"
        );
        let p = a.allocate().unwrap();
        assert_eq!(p.lease.rtp_port() % 2, 0);
        assert_eq!(p.rtp.local_addr().unwrap().port(), p.lease.rtp_port());
        assert_eq!(p.rtcp.local_addr().unwrap().port(), p.lease.rtp_port() + 1);
        assert_eq!(a.available(), 3);
        drop(p);
        assert_eq!(a.available(), 4);
        assert!(matches!(
            PortAllocator::new("127.0.0.1".parse().unwrap(), 31001, 31002),
            Err(PortError::EmptyRange { .. })
        ));
    }

    #[test]
    fn a_busy_pair_is_skipped() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let a = PortAllocator::new(ip, 31020, 31025).unwrap();
        // Someone else holds 31021 (the RTCP port of the first pair).
        let squatter = UdpSocket::bind((ip, 31021)).unwrap();
        let p = a.allocate().unwrap();
        assert_eq!(p.lease.rtp_port(), 31022);
        let q = a.allocate().unwrap();
        assert_eq!(q.lease.rtp_port(), 31024);
        assert!(matches!(a.allocate(), Err(PortError::Bind(_))));
        drop((p, q));
        assert!(a.allocate().is_ok());
        drop(squatter);
    }
}
