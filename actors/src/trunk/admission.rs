//! Per-trunk admission control (sans-IO): a concurrency limit and a token bucket of new calls per
//! second. A refused call is answered 503 with Retry-After by the caller of [`Admission::admit`].

use std::time::Instant;

/// Why a call was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Over `max_cps`.
    Rate,
    /// Over `max_calls`.
    Calls,
}

impl Refusal {
    /// The reason phrase of the 503.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Rate => "Service Unavailable (trunk call rate limit)",
            Refusal::Calls => "Service Unavailable (trunk call limit)",
        }
    }
}

/// Calls in progress and the call-rate bucket of one trunk.
#[derive(Debug)]
pub struct Admission {
    max_calls: u32,
    max_cps: f64,
    tokens: f64,
    last: Option<Instant>,
    /// Calls in progress (admitted and not yet released).
    pub active: u32,
    /// Calls admitted since start.
    pub admitted: u64,
    /// Calls refused for the rate since start.
    pub refused_rate: u64,
    /// Calls refused for the concurrency limit since start.
    pub refused_calls: u64,
}

impl Admission {
    /// Limits: 0 means none. The bucket holds one second's worth of calls (at least one).
    pub fn new(max_calls: u32, max_cps: f64) -> Admission {
        Admission {
            max_calls,
            max_cps,
            tokens: max_cps.max(1.0),
            last: None,
            active: 0,
            admitted: 0,
            refused_rate: 0,
            refused_calls: 0,
        }
    }

    /// Admits one new call at `now`, or says why not. An admitted call must be
    /// [`released`](Admission::release) once.
    pub fn admit(&mut self, now: Instant) -> Result<(), Refusal> {
        if self.max_calls > 0 && self.active >= self.max_calls {
            self.refused_calls += 1;
            return Err(Refusal::Calls);
        }
        if self.max_cps > 0.0 {
            let cap = self.max_cps.max(1.0);
            if let Some(last) = self.last {
                let dt = now.saturating_duration_since(last).as_secs_f64();
                self.tokens = (self.tokens + dt * self.max_cps).min(cap);
            }
            self.last = Some(now);
            if self.tokens < 1.0 {
                self.refused_rate += 1;
                return Err(Refusal::Rate);
            }
            self.tokens -= 1.0;
        }
        self.active += 1;
        self.admitted += 1;
        Ok(())
    }

    /// A call admitted earlier has ended.
    pub fn release(&mut self) {
        self.active = self.active.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rate_refills_over_time() {
        let t0 = Instant::now();
        let mut a = Admission::new(0, 5.0);
        let ok = (0..25).filter(|_| a.admit(t0).is_ok()).count();
        assert_eq!(ok, 5, "a full bucket holds one second of calls");
        assert_eq!(a.admit(t0), Err(Refusal::Rate));
        assert!(a.admit(t0 + Duration::from_millis(200)).is_ok());
        assert_eq!(a.admit(t0 + Duration::from_millis(200)), Err(Refusal::Rate));
        // Five seconds at 25 calls per second: about five per second get in.
        let mut a = Admission::new(0, 5.0);
        let mut ok = 0;
        for i in 0..125u64 {
            if a.admit(t0 + Duration::from_millis(i * 40)).is_ok() {
                ok += 1;
            }
        }
        assert!((25..=31).contains(&ok), "{ok}");
        assert_eq!(a.refused_rate, 125 - ok);
    }

    #[test]
    fn concurrency_limit() {
        let t0 = Instant::now();
        let mut a = Admission::new(2, 0.0);
        assert!(a.admit(t0).is_ok());
        assert!(a.admit(t0).is_ok());
        assert_eq!(a.admit(t0), Err(Refusal::Calls));
        a.release();
        assert!(a.admit(t0).is_ok());
        assert_eq!(a.active, 2);
    }
}
