//! Counters and latency histograms shared by the workers (lock-free atomics) and read by the
//! controller once per second.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Linear buckets below this many microseconds.
const LINEAR: u64 = 64;
/// Sub-buckets per power of two above `LINEAR` (≈ 6 % resolution).
const SUB: u64 = 16;
/// Powers of two covered above `LINEAR`: 2^6 µs … 2^36 µs (19 h).
const OCTAVES: u64 = 30;
/// Number of buckets.
pub const BUCKETS: usize = (LINEAR + OCTAVES * SUB) as usize;

/// The bucket holding `us` microseconds.
fn bucket_of(us: u64) -> usize {
    if us < LINEAR {
        return us as usize;
    }
    let octave = 63 - u64::from(us.leading_zeros()); // ≥ 6
    let sub = (us >> (octave - 4)) & (SUB - 1);
    let idx = LINEAR + (octave - 6) * SUB + sub;
    idx.min(BUCKETS as u64 - 1) as usize
}

/// The lowest value (µs) that falls into bucket `idx`.
fn bucket_floor(idx: usize) -> u64 {
    let idx = idx as u64;
    if idx < LINEAR {
        return idx;
    }
    let octave = (idx - LINEAR) / SUB + 6;
    let sub = (idx - LINEAR) % SUB;
    (1u64 << octave) + (sub << (octave - 4))
}

/// A latency histogram in microseconds: log-linear buckets, lock-free recording.
#[derive(Debug)]
pub struct Histogram {
    buckets: Box<[AtomicU64]>,
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl Histogram {
    /// Records one value.
    pub fn record(&self, us: u64) {
        if let Some(b) = self.buckets.get(bucket_of(us)) {
            b.fetch_add(1, Relaxed);
        }
    }

    /// The current counts, to subtract from a later snapshot.
    pub fn snapshot(&self) -> HistSnapshot {
        HistSnapshot(self.buckets.iter().map(|b| b.load(Relaxed)).collect())
    }
}

/// Bucket counts at one instant.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistSnapshot(Vec<u64>);

impl HistSnapshot {
    /// The counts recorded since `earlier`.
    pub fn since(&self, earlier: &HistSnapshot) -> HistSnapshot {
        HistSnapshot(
            self.0
                .iter()
                .enumerate()
                .map(|(i, v)| v.saturating_sub(earlier.0.get(i).copied().unwrap_or(0)))
                .collect(),
        )
    }

    /// Adds another snapshot's counts.
    pub fn add(&mut self, other: &HistSnapshot) {
        if self.0.len() < other.0.len() {
            self.0.resize(other.0.len(), 0);
        }
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a += b;
        }
    }

    /// The non-zero buckets as (index, count), for the control socket of the multi-process
    /// mode.
    pub fn to_sparse(&self) -> Vec<(u32, u64)> {
        self.0
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, c)| (i as u32, *c))
            .collect()
    }

    /// The inverse of [`to_sparse`](Self::to_sparse); indexes out of range are dropped.
    pub fn from_sparse(buckets: &[(u32, u64)]) -> HistSnapshot {
        let mut v = vec![0; BUCKETS];
        for (i, c) in buckets {
            if let Some(slot) = v.get_mut(*i as usize) {
                *slot += c;
            }
        }
        HistSnapshot(v)
    }

    /// Number of values.
    pub fn count(&self) -> u64 {
        self.0.iter().sum()
    }

    /// The `q` quantile (0..=1) in microseconds (the floor of its bucket); `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * n as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.0.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(bucket_floor(i));
            }
        }
        None
    }
}

/// Why a call failed: a final status, or no answer at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Failure {
    /// An unexpected final response (≥ 300 to the INVITE, a non-2xx to the BYE, a 2xx that
    /// crossed a CANCEL).
    Status(u16),
    /// No final response (timer B / F).
    Timeout,
    /// The 2xx was never ACKed (UAS side).
    NoAck,
    /// The run ended before the call did.
    Unfinished,
    /// The request could not be sent (transaction layer refused it).
    SendError,
}

impl Failure {
    /// A short label for reports.
    pub fn label(self) -> String {
        match self {
            Failure::Status(c) => c.to_string(),
            Failure::Timeout => "timeout".into(),
            Failure::NoAck => "no_ack".into(),
            Failure::Unfinished => "unfinished".into(),
            Failure::SendError => "send_error".into(),
        }
    }
}

/// One worker's (or the whole run's) counters.
#[derive(Debug, Default)]
pub struct Counters {
    /// Calls (or transactions, for OPTIONS/REGISTER scenarios) started / received.
    pub started: AtomicU64,
    /// Calls answered with 2xx.
    pub answered: AtomicU64,
    /// Wall-clock time (µs since the Unix epoch) of the first 2xx counted; 0 before any.
    pub first_answer_unix_us: AtomicU64,
    /// Wall-clock time (µs since the Unix epoch) of the last 2xx counted; 0 before any.
    pub last_answer_unix_us: AtomicU64,
    /// Calls that ran their whole scenario.
    pub completed: AtomicU64,
    /// Calls rejected on purpose (UAS `--reject-percent`).
    pub rejected: AtomicU64,
    /// Calls that failed, total.
    pub failed: AtomicU64,
    /// Failures by SIP status 100–699 (index = status − 100; a 2xx is a failure when the
    /// scenario expected none, e.g. an answer crossing a CANCEL).
    failed_status: Box<[AtomicU64]>,
    /// Failures by timeout, missing ACK, unfinished, send error.
    failed_other: [AtomicU64; 4],
    /// Messages sent again by a retransmission timer.
    pub retransmissions: AtomicU64,
    /// SIP messages that did not parse.
    pub bad_messages: AtomicU64,
    /// Call setup time: INVITE sent to 2xx received (UAC) in µs.
    pub setup: Histogram,
    /// Time to the first provisional with a tag or 180 (UAC) in µs.
    pub ringing: Histogram,
}

impl Counters {
    /// Fresh counters.
    pub fn new() -> Counters {
        Counters {
            failed_status: (100..700).map(|_| AtomicU64::new(0)).collect(),
            ..Counters::default()
        }
    }

    /// Counts one answered call and widens the window in which answers arrived.
    pub fn answer(&self) {
        self.answered.fetch_add(1, Relaxed);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| {
                u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
            });
        // 0 means "none yet": the first store wins, later ones only move it earlier.
        let _ = self
            .first_answer_unix_us
            .fetch_update(Relaxed, Relaxed, |f| (f == 0 || now < f).then_some(now));
        self.last_answer_unix_us.fetch_max(now, Relaxed);
    }

    /// Counts one failure.
    pub fn fail(&self, why: Failure) {
        self.failed.fetch_add(1, Relaxed);
        let slot = match why {
            Failure::Status(c) => self.failed_status.get(usize::from(c).wrapping_sub(100)),
            Failure::Timeout => self.failed_other.first(),
            Failure::NoAck => self.failed_other.get(1),
            Failure::Unfinished => self.failed_other.get(2),
            Failure::SendError => self.failed_other.get(3),
        };
        if let Some(s) = slot {
            s.fetch_add(1, Relaxed);
        }
    }

    /// Failures by reason, only the non-zero ones.
    pub fn failures(&self) -> BTreeMap<String, u64> {
        let mut m = BTreeMap::new();
        for (i, c) in self.failed_status.iter().enumerate() {
            let v = c.load(Relaxed);
            if v > 0 {
                m.insert((100 + i).to_string(), v);
            }
        }
        let others = [
            Failure::Timeout,
            Failure::NoAck,
            Failure::Unfinished,
            Failure::SendError,
        ];
        for (f, c) in others.iter().zip(&self.failed_other) {
            let v = c.load(Relaxed);
            if v > 0 {
                m.insert(f.label(), v);
            }
        }
        m
    }

    /// Calls started and not yet completed or failed.
    pub fn live(&self) -> u64 {
        let ended =
            self.completed.load(Relaxed) + self.failed.load(Relaxed) + self.rejected.load(Relaxed);
        self.started.load(Relaxed).saturating_sub(ended)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_tight() {
        let mut last = 0;
        for us in [
            0u64, 1, 63, 64, 65, 100, 1000, 12_345, 1_000_000, 60_000_000,
        ] {
            let b = bucket_of(us);
            assert!(b >= last, "{us}");
            last = b;
            let floor = bucket_floor(b);
            assert!(floor <= us, "{us} floor {floor}");
            assert!(us - floor <= us / 16 + 1, "{us} floor {floor}");
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_of_a_known_distribution() {
        let h = Histogram::default();
        for us in 1..=1000u64 {
            h.record(us * 10);
        }
        let s = h.snapshot();
        assert_eq!(s.count(), 1000);
        let p50 = s.quantile(0.5).expect("values");
        assert!((4700..=5000).contains(&p50), "{p50}");
        let p99 = s.quantile(0.99).expect("values");
        assert!((9300..=9900).contains(&p99), "{p99}");
        let later = h.snapshot().since(&s);
        assert_eq!(later.count(), 0);
        assert_eq!(later.quantile(0.5), None);
    }

    #[test]
    fn failures_by_reason() {
        let c = Counters::new();
        c.started.fetch_add(5, Relaxed);
        c.fail(Failure::Status(486));
        c.fail(Failure::Status(486));
        c.fail(Failure::Timeout);
        c.fail(Failure::Status(99)); // out of range: counted in the total only
        c.completed.fetch_add(1, Relaxed);
        let f = c.failures();
        assert_eq!(f.get("486"), Some(&2));
        assert_eq!(f.get("timeout"), Some(&1));
        assert_eq!(c.failed.load(Relaxed), 4);
        assert_eq!(c.live(), 0);
    }
}
