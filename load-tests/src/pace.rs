//! When to start the next call: a target rate in calls per second reached by a linear ramp.

use std::time::{Duration, Instant};

/// Starts calls at `rate` per second, ramping linearly from 0 over `ramp`. Pure arithmetic on
/// the instants it is given.
#[derive(Clone, Debug)]
pub struct Pacer {
    start: Instant,
    rate: f64,
    ramp: f64,
    issued: u64,
}

impl Pacer {
    /// A pacer starting at `start`. A rate ≤ 0 starts nothing.
    pub fn new(start: Instant, rate: f64, ramp: Duration) -> Pacer {
        Pacer {
            start,
            rate: rate.max(0.0),
            ramp: ramp.as_secs_f64(),
            issued: 0,
        }
    }

    /// How many calls are due by `now` in total (started or not).
    pub fn due_by(&self, now: Instant) -> u64 {
        let t = now.saturating_duration_since(self.start).as_secs_f64();
        let n = if self.ramp > 0.0 && t < self.ramp {
            self.rate * t * t / (2.0 * self.ramp)
        } else {
            self.rate * (t - self.ramp / 2.0)
        };
        n.max(0.0).floor() as u64
    }

    /// How many more calls to start now; counts them as issued.
    pub fn take(&mut self, now: Instant) -> u64 {
        let due = self.due_by(now);
        let n = due.saturating_sub(self.issued);
        self.issued = due.max(self.issued);
        n
    }

    /// Gives back `n` calls taken but not started (a concurrency cap was hit): they are due
    /// again at once.
    pub fn give_back(&mut self, n: u64) {
        self.issued = self.issued.saturating_sub(n);
    }

    /// How many calls to start now: those due, capped by the room left under `max_live` live
    /// calls and by the calls left of `limit` (`started` so far); what is capped stays due.
    pub fn admit(
        &mut self,
        now: Instant,
        live: u64,
        max_live: u64,
        started: u64,
        limit: Option<u64>,
    ) -> u64 {
        let due = self.take(now);
        let room = max_live.saturating_sub(live);
        let left = limit.map_or(u64::MAX, |m| m.saturating_sub(started));
        let n = due.min(room).min(left);
        self.give_back(due - n);
        n
    }

    /// When the next call is due; `None` at rate 0.
    pub fn next_due(&self) -> Option<Instant> {
        if self.rate <= 0.0 {
            return None;
        }
        let n = (self.issued + 1) as f64;
        let ramp_calls = self.rate * self.ramp / 2.0;
        let t = if self.ramp > 0.0 && n <= ramp_calls {
            (2.0 * self.ramp * n / self.rate).sqrt()
        } else {
            n / self.rate + self.ramp / 2.0
        };
        Some(self.start + Duration::from_secs_f64(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_rate_without_ramp() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0, 100.0, Duration::ZERO);
        assert_eq!(p.take(t0 + Duration::from_millis(1000)), 100);
        assert_eq!(p.take(t0 + Duration::from_millis(1000)), 0);
        assert_eq!(p.take(t0 + Duration::from_millis(1500)), 50);
        let next = p.next_due().expect("rate > 0");
        assert!(next > t0 + Duration::from_millis(1500));
        assert!(next <= t0 + Duration::from_millis(1511));
    }

    #[test]
    fn ramp_issues_half_the_calls_during_the_ramp() {
        let t0 = Instant::now();
        let p = Pacer::new(t0, 1000.0, Duration::from_secs(10));
        // ∫0..10 of 100·t dt = 5 000 calls over the ramp, then 1 000/s.
        assert_eq!(p.due_by(t0 + Duration::from_secs(10)), 5000);
        assert_eq!(p.due_by(t0 + Duration::from_secs(11)), 6000);
        assert_eq!(p.due_by(t0 + Duration::from_secs(5)), 1250);
    }

    #[test]
    fn next_due_matches_due_by() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0, 300.0, Duration::from_secs(2));
        for _ in 0..2000 {
            let at = p.next_due().expect("rate > 0") + Duration::from_micros(1);
            assert_eq!(p.take(at), 1);
        }
    }

    #[test]
    fn admit_caps_by_room_and_limit() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0, 100.0, Duration::ZERO);
        let at = t0 + Duration::from_secs(1);
        assert_eq!(p.admit(at, 95, 100, 0, None), 5);
        assert_eq!(p.admit(at, 0, 100, 98, Some(100)), 2);
        assert_eq!(p.admit(at, 0, 1000, 0, None), 93);
    }

    #[test]
    fn give_back_makes_calls_due_again() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0, 10.0, Duration::ZERO);
        let at = t0 + Duration::from_secs(1);
        assert_eq!(p.take(at), 10);
        p.give_back(4);
        assert_eq!(p.take(at), 4);
    }
}
