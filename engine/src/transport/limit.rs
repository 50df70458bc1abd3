//! Connection admission for the secure transports (TLS, WS, WSS): at most
//! `limits.max_connections_per_source` connections per source IP, handshakes included, and a
//! count of handshakes in progress so the engine-wide `limits.max_tcp_connections` also
//! covers connections that have not finished their handshake yet.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Counts open connections per source IP address.
#[derive(Debug)]
pub struct SourceLimiter {
    per_source: usize,
    counts: Mutex<HashMap<IpAddr, usize>>,
    handshaking: AtomicUsize,
}

/// One admitted connection; gives its slot back when dropped.
#[derive(Debug)]
pub struct SourcePermit {
    limiter: Arc<SourceLimiter>,
    ip: IpAddr,
}

/// A handshake in progress; counted until dropped.
#[derive(Debug)]
pub struct HandshakeGuard {
    limiter: Arc<SourceLimiter>,
}

impl SourceLimiter {
    /// A limiter admitting `per_source` connections per IP address (0 = no limit).
    pub fn new(per_source: usize) -> Arc<SourceLimiter> {
        Arc::new(SourceLimiter {
            per_source,
            counts: Mutex::new(HashMap::new()),
            handshaking: AtomicUsize::new(0),
        })
    }

    /// Admits one more connection from `ip`, or `None` when `ip` is at its limit.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Option<SourcePermit> {
        let mut counts = self.counts.lock().ok()?;
        let n = counts.entry(ip).or_insert(0);
        if self.per_source != 0 && *n >= self.per_source {
            return None;
        }
        *n += 1;
        Some(SourcePermit {
            limiter: self.clone(),
            ip,
        })
    }

    /// Open connections from `ip`.
    pub fn count(&self, ip: IpAddr) -> usize {
        self.counts
            .lock()
            .map_or(0, |m| m.get(&ip).copied().unwrap_or(0))
    }

    /// Marks a handshake as started; it ends when the guard is dropped.
    pub fn handshake(self: &Arc<Self>) -> HandshakeGuard {
        self.handshaking.fetch_add(1, Ordering::Relaxed);
        HandshakeGuard {
            limiter: self.clone(),
        }
    }

    /// Handshakes in progress.
    pub fn handshaking(&self) -> usize {
        self.handshaking.load(Ordering::Relaxed)
    }
}

impl Drop for SourcePermit {
    fn drop(&mut self) {
        if let Ok(mut counts) = self.limiter.counts.lock() {
            if let Some(n) = counts.get_mut(&self.ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    counts.remove(&self.ip);
                }
            }
        }
    }
}

impl Drop for HandshakeGuard {
    fn drop(&mut self) {
        self.limiter.handshaking.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_source_limit() {
        let l = SourceLimiter::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let p1 = l.try_acquire(a).unwrap();
        let _p2 = l.try_acquire(a).unwrap();
        assert!(l.try_acquire(a).is_none());
        let _p3 = l.try_acquire(b).unwrap();
        drop(p1);
        assert_eq!(l.count(a), 1);
        assert!(l.try_acquire(a).is_some());
        let unlimited = SourceLimiter::new(0);
        let permits: Vec<_> = (0..10).filter_map(|_| unlimited.try_acquire(a)).collect();
        assert_eq!(permits.len(), 10);
        drop(permits);
        assert_eq!(unlimited.count(a), 0);
        let g = l.handshake();
        assert_eq!(l.handshaking(), 1);
        drop(g);
        assert_eq!(l.handshaking(), 0);
    }
}
