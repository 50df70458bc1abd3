//! A fail2ban-style ban list (sans-IO): a source address with `max_failures` failed digest
//! authentications (REGISTER or INVITE answered 403) within `window` is banned for `ban`:
//! its new requests get 403 without being looked at. Bans expire by themselves.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The ban list.
#[derive(Debug)]
pub struct BanList {
    max_failures: u32,
    window: Duration,
    ban: Duration,
    /// Failures in the current window, per source: (window start, count).
    failures: HashMap<IpAddr, (Instant, u32)>,
    /// Banned sources and when their ban ends, with the failures that caused it.
    banned: HashMap<IpAddr, (Instant, u32)>,
}

impl BanList {
    /// `max_failures` 0 disables banning.
    pub fn new(max_failures: u32, window: Duration, ban: Duration) -> BanList {
        BanList {
            max_failures,
            window,
            ban,
            failures: HashMap::new(),
            banned: HashMap::new(),
        }
    }

    /// Whether `ip` is banned at `now`.
    pub fn is_banned(&mut self, ip: IpAddr, now: Instant) -> bool {
        match self.banned.get(&ip) {
            Some((until, _)) if now < *until => true,
            Some(_) => {
                self.banned.remove(&ip);
                false
            }
            None => false,
        }
    }

    /// A failed authentication from `ip`; true when it starts a ban.
    pub fn failure(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.max_failures == 0 {
            return false;
        }
        if self.failures.len() > 100_000 {
            // Bounded memory under a spray of sources: forget windows that have passed.
            let window = self.window;
            self.failures
                .retain(|_, (start, _)| now.saturating_duration_since(*start) < window);
        }
        let e = self.failures.entry(ip).or_insert((now, 0));
        if now.saturating_duration_since(e.0) >= self.window {
            *e = (now, 0);
        }
        e.1 += 1;
        if e.1 >= self.max_failures {
            let n = e.1;
            self.failures.remove(&ip);
            self.banned.insert(ip, (now + self.ban, n));
            tracing::warn!(%ip, failures = n, secs = self.ban.as_secs(), "source banned after failed authentications");
            return true;
        }
        false
    }

    /// The bans in force: (source, time left, failures).
    pub fn list(&mut self, now: Instant) -> Vec<(IpAddr, Duration, u32)> {
        self.banned.retain(|_, (until, _)| now < *until);
        let mut v: Vec<_> = self
            .banned
            .iter()
            .map(|(ip, (until, n))| (*ip, until.saturating_duration_since(now), *n))
            .collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bans_after_failures_in_window_and_expires() {
        let t0 = Instant::now();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let mut b = BanList::new(3, Duration::from_secs(60), Duration::from_secs(300));
        assert!(!b.failure(ip, t0));
        // The window passed: counting starts again.
        assert!(!b.failure(ip, t0 + Duration::from_secs(61)));
        assert!(!b.failure(ip, t0 + Duration::from_secs(62)));
        assert!(b.failure(ip, t0 + Duration::from_secs(63)));
        assert!(b.is_banned(ip, t0 + Duration::from_secs(64)));
        assert_eq!(b.list(t0 + Duration::from_secs(64)).len(), 1);
        assert!(!b.is_banned(ip, t0 + Duration::from_secs(364)));
        assert!(b.list(t0 + Duration::from_secs(364)).is_empty());
        let mut off = BanList::new(0, Duration::from_secs(60), Duration::from_secs(300));
        for _ in 0..10 {
            assert!(!off.failure(ip, t0));
        }
        assert!(!off.is_banned(ip, t0));
    }
}
