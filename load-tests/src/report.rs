//! The end-of-run report: totals, setup-time percentiles, per-second samples, the pass
//! verdict; written as JSON and CSV.

use crate::cli::{LoadArgs, Role};
use crate::stats::HistSnapshot;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

/// Counters summed over the workers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Calls started (uac) or received (uas).
    pub started: u64,
    /// Calls answered with 2xx.
    pub answered: u64,
    /// Calls that ran their whole scenario.
    pub completed: u64,
    /// Calls rejected on purpose (uas).
    pub rejected: u64,
    /// Calls that failed.
    pub failed: u64,
    /// Failures by reason (SIP status, timeout, no_ack, unfinished, send_error).
    pub failures: BTreeMap<String, u64>,
    /// Messages sent again by a retransmission timer.
    pub retransmissions: u64,
    /// Datagrams that did not parse as SIP.
    pub bad_messages: u64,
    /// When the first 2xx arrived (µs since the Unix epoch; 0: none).
    #[serde(default)]
    pub first_answer_unix_us: u64,
    /// When the last 2xx arrived (µs since the Unix epoch; 0: none).
    #[serde(default)]
    pub last_answer_unix_us: u64,
}

impl Totals {
    /// Adds another process's counters (multi-process mode).
    pub fn add(&mut self, o: &Totals) {
        self.started += o.started;
        self.answered += o.answered;
        self.completed += o.completed;
        self.rejected += o.rejected;
        self.failed += o.failed;
        self.retransmissions += o.retransmissions;
        self.bad_messages += o.bad_messages;
        if o.first_answer_unix_us != 0
            && (self.first_answer_unix_us == 0
                || o.first_answer_unix_us < self.first_answer_unix_us)
        {
            self.first_answer_unix_us = o.first_answer_unix_us;
        }
        self.last_answer_unix_us = self.last_answer_unix_us.max(o.last_answer_unix_us);
        for (k, v) in &o.failures {
            *self.failures.entry(k.clone()).or_default() += v;
        }
    }

    /// Calls started and not yet ended.
    pub fn live(&self) -> u64 {
        self.started
            .saturating_sub(self.completed + self.failed + self.rejected)
    }
}

/// One second of the run.
#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    /// Seconds since the start.
    pub t: f64,
    /// Calls started in this second.
    pub cps: f64,
    /// Calls up at the end of the second.
    pub concurrent: u64,
    /// Calls started so far.
    pub started: u64,
    /// Calls answered so far.
    pub answered: u64,
    /// Calls failed so far.
    pub failed: u64,
    /// Retransmissions so far.
    pub retransmissions: u64,
    /// Setup time percentiles of the calls answered in this second (ms).
    pub setup_p50_ms: Option<f64>,
    /// 90th percentile.
    pub setup_p90_ms: Option<f64>,
    /// 99th percentile.
    pub setup_p99_ms: Option<f64>,
    /// Mean E-model MOS of the RTP streams that ended in this second.
    pub mos: Option<f64>,
}

impl Sample {
    /// The live progress line.
    pub fn progress_line(&self) -> String {
        let p99 = self
            .setup_p99_ms
            .map_or_else(|| "-".to_string(), |v| format!("{v:.1} ms"));
        format!(
            "cps {:.0} | up {} | answered {} | failed {} | retrans {} | setup p99 {p99}",
            self.cps, self.concurrent, self.answered, self.failed, self.retransmissions
        )
    }
}

/// Percentiles of a latency distribution, in milliseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Percentiles {
    /// Values recorded.
    pub count: u64,
    /// Median.
    pub p50_ms: Option<f64>,
    /// 90th percentile.
    pub p90_ms: Option<f64>,
    /// 99th percentile.
    pub p99_ms: Option<f64>,
    /// Largest (bucket floor).
    pub max_ms: Option<f64>,
}

impl Percentiles {
    fn of(h: &HistSnapshot) -> Percentiles {
        let ms = |q: f64| h.quantile(q).map(|us| us as f64 / 1000.0);
        Percentiles {
            count: h.count(),
            p50_ms: ms(0.5),
            p90_ms: ms(0.9),
            p99_ms: ms(0.99),
            max_ms: ms(1.0),
        }
    }
}

/// What makes a run pass.
#[derive(Clone, Debug, Serialize)]
pub struct Criteria {
    /// Most failed calls allowed.
    pub max_failed: u64,
    /// Most RTP loss allowed, percent of packets expected.
    pub max_loss_percent: f64,
}

/// RTP quality over every stream of the run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct MediaSummary {
    /// Streams that ended.
    pub streams: u64,
    /// Packets sent.
    pub packets_sent: u64,
    /// Packets received.
    pub packets_received: u64,
    /// Packets lost (by the far side's sequence numbers).
    pub packets_lost: u64,
    /// Lost / (received + lost), percent.
    pub loss_percent: f64,
    /// Streams that lost any packet.
    pub streams_with_loss: u64,
    /// The worst stream's loss, percent.
    pub worst_stream_loss_percent: f64,
    /// Mean interarrival jitter (RFC 3550), ms.
    pub mean_jitter_ms: f64,
    /// Mean E-model MOS of the streams.
    pub mean_mos: Option<f64>,
    /// Lowest stream MOS.
    pub min_mos: Option<f64>,
    /// RFC 4733 digits sent.
    pub dtmf_sent: u64,
    /// RFC 4733 digits received, by key.
    pub dtmf_received: BTreeMap<String, u64>,
}

impl MediaSummary {
    /// Adds another process's streams (multi-process mode): sums, stream-weighted means,
    /// worst and lowest values.
    pub fn merge(&mut self, o: &MediaSummary) {
        let (a, b) = (self.streams as f64, o.streams as f64);
        let weighted = |x: f64, y: f64| {
            if a + b > 0.0 {
                (x * a + y * b) / (a + b)
            } else {
                0.0
            }
        };
        self.mean_jitter_ms = weighted(self.mean_jitter_ms, o.mean_jitter_ms);
        self.mean_mos = match (self.mean_mos, o.mean_mos) {
            (Some(x), Some(y)) => Some(weighted(x, y)),
            (x, y) => x.or(y),
        };
        self.min_mos = match (self.min_mos, o.min_mos) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        };
        self.streams += o.streams;
        self.packets_sent += o.packets_sent;
        self.packets_received += o.packets_received;
        self.packets_lost += o.packets_lost;
        let expected = self.packets_received + self.packets_lost;
        self.loss_percent = if expected == 0 {
            0.0
        } else {
            self.packets_lost as f64 * 100.0 / expected as f64
        };
        self.streams_with_loss += o.streams_with_loss;
        self.worst_stream_loss_percent = self
            .worst_stream_loss_percent
            .max(o.worst_stream_loss_percent);
        self.dtmf_sent += o.dtmf_sent;
        for (k, v) in &o.dtmf_received {
            *self.dtmf_received.entry(k.clone()).or_default() += v;
        }
    }

    /// Reads the pool's totals.
    pub fn of(t: &crate::media::MediaTotals) -> MediaSummary {
        use std::sync::atomic::Ordering::Relaxed;
        let streams = t.streams.load(Relaxed);
        let received = t.received.load(Relaxed);
        let lost = t.lost.load(Relaxed);
        let expected = received + lost;
        let min = t.mos_milli_min.load(Relaxed);
        MediaSummary {
            streams,
            packets_sent: t.sent.load(Relaxed),
            packets_received: received,
            packets_lost: lost,
            loss_percent: if expected == 0 {
                0.0
            } else {
                lost as f64 * 100.0 / expected as f64
            },
            streams_with_loss: t.streams_with_loss.load(Relaxed),
            worst_stream_loss_percent: t.worst_loss_ppm.load(Relaxed) as f64 / 10_000.0,
            mean_jitter_ms: if streams == 0 {
                0.0
            } else {
                t.jitter_us_sum.load(Relaxed) as f64 / 1000.0 / streams as f64
            },
            mean_mos: (streams > 0)
                .then(|| t.mos_milli_sum.load(Relaxed) as f64 / 1000.0 / streams as f64),
            min_mos: (min != u64::MAX).then(|| min as f64 / 1000.0),
            dtmf_sent: t.dtmf_sent.load(Relaxed),
            dtmf_received: t
                .digits_received()
                .into_iter()
                .map(|(c, n)| (c.to_string(), n))
                .collect(),
        }
    }
}

/// The settings the run used, as given.
#[derive(Clone, Debug, Serialize)]
pub struct Settings {
    /// uac or uas.
    pub role: String,
    /// Target (uac).
    pub target: Option<String>,
    /// Rate asked for.
    pub rate: f64,
    /// Ramp in seconds.
    pub ramp: f64,
    /// Call bound.
    pub calls: Option<u64>,
    /// Time bound.
    pub time_limit: Option<f64>,
    /// Call duration after the answer.
    pub duration_ms: u64,
    /// Concurrency cap.
    pub max_concurrent: u64,
    /// Worker processes (`--workers`), when the run used several.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workers: Option<usize>,
}

/// What a run measured, before it is judged.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Wall-clock length of the run.
    pub elapsed: Duration,
    /// Counters over every worker.
    pub totals: Totals,
    /// INVITE → 2xx distribution.
    pub setup: HistSnapshot,
    /// INVITE → 180 distribution.
    pub ringing: HistSnapshot,
    /// Per-second samples.
    pub samples: Vec<Sample>,
    /// RTP quality, when the run had media.
    pub media: Option<MediaSummary>,
    /// Each worker process's own totals (multi-process mode; empty otherwise).
    pub workers: Vec<Totals>,
}

/// Seconds between the first and the last 2xx, when there were at least two.
fn answer_window(t: &Totals) -> Option<f64> {
    (t.answered >= 2
        && t.first_answer_unix_us != 0
        && t.last_answer_unix_us > t.first_answer_unix_us)
        .then(|| (t.last_answer_unix_us - t.first_answer_unix_us) as f64 / 1e6)
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The settings.
    pub settings: Settings,
    /// Wall-clock length of the run in seconds.
    pub elapsed_s: f64,
    /// Totals.
    pub totals: Totals,
    /// Calls answered per second of the run, on average.
    pub answered_per_s: f64,
    /// Seconds from the first 2xx to the last (absent with fewer than two answers).
    pub answer_window_s: Option<f64>,
    /// Calls answered per second over the window in which the 2xx arrived, as SIPp's
    /// statistics count it: answered / (window + 1 / rate). Absent without a window.
    pub answered_per_s_in_window: Option<f64>,
    /// INVITE → 2xx.
    pub setup: Percentiles,
    /// INVITE → 180.
    pub ringing: Percentiles,
    /// RTP quality, when the run had media.
    pub media: Option<MediaSummary>,
    /// Per-second samples.
    pub samples: Vec<Sample>,
    /// Each worker process's totals, in worker order (multi-process mode only); `totals` is
    /// their sum.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub workers: Vec<Totals>,
    /// The pass criteria.
    pub criteria: Criteria,
    /// Whether the run met them.
    pub passed: bool,
}

impl Report {
    /// Assembles the report and decides the verdict.
    pub fn new(args: &LoadArgs, outcome: Outcome, criteria: Criteria) -> Report {
        let Outcome {
            elapsed,
            totals,
            setup,
            ringing,
            samples,
            media,
            workers,
        } = outcome;
        let passed = totals.failed <= criteria.max_failed
            && media
                .as_ref()
                .is_none_or(|m| m.loss_percent <= criteria.max_loss_percent);
        let secs = elapsed.as_secs_f64().max(1e-9);
        Report {
            settings: Settings {
                role: match args.role {
                    Role::Uac => "uac".into(),
                    Role::Uas => "uas".into(),
                },
                target: args.target.map(|t| t.to_string()),
                rate: args.rate,
                ramp: args.ramp,
                calls: args.calls,
                time_limit: args.time_limit,
                duration_ms: args.duration_ms,
                max_concurrent: args.max_concurrent,
                workers: args.workers,
            },
            elapsed_s: secs,
            answered_per_s: totals.answered as f64 / secs,
            answer_window_s: answer_window(&totals),
            answered_per_s_in_window: answer_window(&totals)
                .map(|w| totals.answered as f64 / (w + 1.0 / args.rate.max(1.0))),
            totals,
            setup: Percentiles::of(&setup),
            ringing: Percentiles::of(&ringing),
            samples,
            workers,
            media,
            criteria,
            passed,
        }
    }

    /// Writes the JSON report and the CSV samples where asked.
    pub fn write(&self, json: Option<&Path>, csv: Option<&Path>) -> std::io::Result<()> {
        if let Some(p) = json {
            let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
            std::fs::write(p, text)?;
        }
        if let Some(p) = csv {
            std::fs::write(p, self.csv())?;
        }
        Ok(())
    }

    /// The samples as CSV, one line per second.
    pub fn csv(&self) -> String {
        let mut out = String::from(
            "t,cps,concurrent,started,answered,failed,retransmissions,setup_p50_ms,setup_p90_ms,setup_p99_ms,mos\n",
        );
        let opt = |v: Option<f64>| v.map_or_else(String::new, |v| format!("{v:.3}"));
        for s in &self.samples {
            let _ = writeln!(
                out,
                "{:.1},{:.0},{},{},{},{},{},{},{},{},{}",
                s.t,
                s.cps,
                s.concurrent,
                s.started,
                s.answered,
                s.failed,
                s.retransmissions,
                opt(s.setup_p50_ms),
                opt(s.setup_p90_ms),
                opt(s.setup_p99_ms),
                opt(s.mos)
            );
        }
        out
    }

    /// A few lines for the terminal.
    pub fn summary(&self) -> String {
        let t = &self.totals;
        let p = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.2} ms"));
        let mut s = format!(
            "{} in {:.1} s: started {}, answered {} ({:.0}/s), completed {}, rejected {}, failed {}, retransmissions {}\n",
            self.settings.role,
            self.elapsed_s,
            t.started,
            t.answered,
            self.answered_per_s,
            t.completed,
            t.rejected,
            t.failed,
            t.retransmissions
        );
        if !t.failures.is_empty() {
            let _ = writeln!(s, "failures: {:?}", t.failures);
        }
        let _ = writeln!(
            s,
            "setup p50 {} p90 {} p99 {} max {}",
            p(self.setup.p50_ms),
            p(self.setup.p90_ms),
            p(self.setup.p99_ms),
            p(self.setup.max_ms)
        );
        if let Some(m) = &self.media {
            let mos = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.2}"));
            let _ = writeln!(
                s,
                "rtp: {} streams, sent {}, received {}, lost {} ({:.4} %, worst stream {:.3} %), jitter {:.2} ms, MOS mean {} min {}",
                m.streams,
                m.packets_sent,
                m.packets_received,
                m.packets_lost,
                m.loss_percent,
                m.worst_stream_loss_percent,
                m.mean_jitter_ms,
                mos(m.mean_mos),
                mos(m.min_mos)
            );
            if m.dtmf_sent > 0 || !m.dtmf_received.is_empty() {
                let _ = writeln!(
                    s,
                    "dtmf: sent {} digits, received {:?}",
                    m.dtmf_sent, m.dtmf_received
                );
            }
        }
        let _ = write!(
            s,
            "{} (failed {} ≤ {})",
            if self.passed { "PASS" } else { "FAIL" },
            t.failed,
            self.criteria.max_failed
        );
        s
    }
}
