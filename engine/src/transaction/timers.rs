//! The RFC 3261 timer values (table 4, §17) and the deadline queue that tells the layer which
//! transaction to wake next.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// The base timer values of RFC 3261 §17 (table 4). Every other timer derives from them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerConfig {
    /// T1, the round-trip time estimate (500 ms by default).
    pub t1: Duration,
    /// T2, the longest retransmit interval for non-INVITE requests and INVITE responses (4 s).
    pub t2: Duration,
    /// T4, the longest time a message stays in the network (5 s).
    pub t4: Duration,
}

impl Default for TimerConfig {
    fn default() -> TimerConfig {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl TimerConfig {
    /// 64·T1: timers B, F, H, J (unreliable), L and M.
    pub fn t1x64(&self) -> Duration {
        self.t1.saturating_mul(64)
    }

    /// Timer D: at least 32 s over an unreliable transport, zero over a reliable one.
    pub fn timer_d(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            self.t1x64().max(Duration::from_secs(32))
        }
    }

    /// Timers I and K: T4 over an unreliable transport, zero over a reliable one.
    pub fn t4_or_zero(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            self.t4
        }
    }

    /// Timer J: 64·T1 over an unreliable transport, zero over a reliable one.
    pub fn timer_j(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            self.t1x64()
        }
    }
}

/// `now + d`, saturating at `now` if the sum does not fit an `Instant` (only possible with an
/// absurd configuration; the timer then fires at once instead of panicking).
pub(crate) fn after(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).unwrap_or(now)
}

/// A min-queue of `(deadline, transaction id)` with lazy deletion: entries are never removed
/// when a transaction ends or its deadline moves; the layer checks each popped entry against
/// the transaction's own `scheduled` deadline and skips stale ones.
///
/// The layer keeps one invariant: a live transaction with a deadline `d` has an entry at some
/// time `<= d` that matches its `scheduled` field. A deadline that moves later keeps the old,
/// earlier entry (the wake-up re-arms it), so each transaction has only a few entries.
#[derive(Debug, Default)]
pub(crate) struct TimerQueue {
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
}

impl TimerQueue {
    /// Adds an entry.
    pub(crate) fn push(&mut self, at: Instant, id: u64) {
        self.heap.push(Reverse((at, id)));
    }

    /// The earliest entry, stale or not.
    pub(crate) fn peek(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Removes and returns the earliest entry if it is due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Instant, u64)> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }

    /// The number of entries, stale ones included.
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Gives back spare capacity after a burst.
    pub(crate) fn shrink(&mut self) {
        if let Some(to) = crate::memory::sparse_target(self.heap.len(), self.heap.capacity()) {
            self.heap.shrink_to(to);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_timers() {
        let c = TimerConfig::default();
        assert_eq!(c.t1x64(), Duration::from_secs(32));
        assert_eq!(c.timer_d(false), Duration::from_secs(32));
        assert_eq!(c.timer_d(true), Duration::ZERO);
        assert_eq!(c.t4_or_zero(false), Duration::from_secs(5));
        assert_eq!(c.timer_j(true), Duration::ZERO);
        let fast = TimerConfig {
            t1: Duration::from_millis(100),
            ..c
        };
        assert_eq!(fast.timer_d(false), Duration::from_secs(32));
    }

    #[test]
    fn queue_pops_in_order() {
        let now = Instant::now();
        let mut q = TimerQueue::default();
        q.push(now + Duration::from_secs(2), 1);
        q.push(now + Duration::from_secs(1), 2);
        assert_eq!(q.peek(), Some(now + Duration::from_secs(1)));
        assert_eq!(q.pop_due(now), None);
        assert_eq!(
            q.pop_due(now + Duration::from_secs(5)).map(|e| e.1),
            Some(2)
        );
        assert_eq!(
            q.pop_due(now + Duration::from_secs(5)).map(|e| e.1),
            Some(1)
        );
        assert_eq!(q.len(), 0);
    }
}
