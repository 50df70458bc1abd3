//! Reading SIPp's output and per-process CPU time.
//!
//! SIPp 3.6 writes `-trace_stat` files as `;`-separated CSV with one header line and one line
//! per `-fd` period; the last line carries the cumulative `(C)` counters of the whole run.
//! `-trace_rtt` writes `<scenario>_<pid>_rtt.csv` with one `Date_ms;response_time_ms;rtd_no`
//! line per measured response (1 ms resolution).

use std::fmt;

/// The cumulative counters of one SIPp run, from the last line of its `-trace_stat` file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StatSummary {
    /// `SuccessfulCall(C)`.
    pub successful: u64,
    /// `FailedCall(C)`.
    pub failed: u64,
    /// `Retransmissions(C)`.
    pub retransmissions: u64,
    /// Seconds from `StartTime` to `CurrentTime` of the last line (µs precision, unlike
    /// `ElapsedTime(C)`, which SIPp rounds to the second).
    pub elapsed_s: f64,
}

/// Why a SIPp file could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FormatError(pub String);

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FormatError {}

/// Parses a `-trace_stat` CSV and returns the cumulative counters of its last line.
pub fn parse_stat_csv(text: &str) -> Result<StatSummary, FormatError> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines
        .next()
        .ok_or_else(|| err("empty stat file"))?
        .split(';')
        .collect();
    let last = lines
        .next_back()
        .ok_or_else(|| err("stat file has no data line"))?;
    let values: Vec<&str> = last.split(';').collect();
    let field = |name: &str| -> Result<&str, FormatError> {
        let i = header
            .iter()
            .position(|h| h.trim() == name)
            .ok_or_else(|| err(format!("no column {name}")))?;
        values
            .get(i)
            .map(|v| v.trim())
            .ok_or_else(|| err(format!("short data line: no {name}")))
    };
    let count = |name: &str| -> Result<u64, FormatError> {
        let v = field(name)?;
        v.parse()
            .map_err(|_| err(format!("{name} is not a count: {v:?}")))
    };
    let start = epoch_of(field("StartTime")?)?;
    let now = epoch_of(field("CurrentTime")?)?;
    Ok(StatSummary {
        successful: count("SuccessfulCall(C)")?,
        failed: count("FailedCall(C)")?,
        retransmissions: count("Retransmissions(C)")?,
        elapsed_s: (now - start).max(0.0),
    })
}

/// SIPp time fields read `2026-11-24<TAB>10:25:33.633301<TAB>1795515933.633301`: the last
/// whitespace-separated token is the Unix time in seconds.
fn epoch_of(field: &str) -> Result<f64, FormatError> {
    field
        .split_whitespace()
        .next_back()
        .and_then(|t| t.parse::<f64>().ok())
        .ok_or_else(|| err(format!("not a SIPp time: {field:?}")))
}

/// One line of a `-trace_rtt` file.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RttSample {
    /// When the response arrived, in ms since SIPp started (`Date_ms`).
    pub at_ms: f64,
    /// The response time in ms (`response_time_ms`).
    pub rtt_ms: f64,
}

/// Parses a `-trace_rtt` CSV (header line skipped).
pub fn parse_rtt_csv(text: &str) -> Result<Vec<RttSample>, FormatError> {
    let mut out = Vec::new();
    for line in text.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let mut cols = line.split(';').map(str::trim);
        let (Some(at), Some(rtt)) = (cols.next(), cols.next()) else {
            return Err(err(format!("short rtt line: {line:?}")));
        };
        let num = |v: &str| {
            v.parse::<f64>()
                .map_err(|_| err(format!("bad rtt line: {line:?}")))
        };
        out.push(RttSample {
            at_ms: num(at)?,
            rtt_ms: num(rtt)?,
        });
    }
    Ok(out)
}

/// Answers per second over the window in which responses arrived (first to last response,
/// plus one interval of the offered `rate`), which leaves out SIPp's start-up and shutdown.
/// `None` with fewer than two samples.
pub fn answered_per_second(samples: &[RttSample], rate: f64) -> Option<f64> {
    if samples.len() < 2 {
        return None;
    }
    let first = samples
        .iter()
        .map(|s| s.at_ms)
        .fold(f64::INFINITY, f64::min);
    let last = samples
        .iter()
        .map(|s| s.at_ms)
        .fold(f64::NEG_INFINITY, f64::max);
    let window_s = (last - first) / 1000.0 + 1.0 / rate.max(1.0);
    Some(samples.len() as f64 / window_s)
}

/// The `p`-th percentile (0–100, nearest rank) of an ascending slice; 0 when it is empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// CPU time (user + system, all threads) that process `pid` has used so far, in clock ticks,
/// from `/proc/PID/stat`. In this VM `/proc/stat` misses timer-driven CPU; per-process
/// counters do not.
pub fn proc_cpu_ticks(pid: u32) -> std::io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_proc_stat_ticks(&stat)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "bad /proc/PID/stat"))
}

/// utime + stime (fields 14 and 15) of a `/proc/PID/stat` line. The command name (field 2) is
/// in parentheses and may hold spaces, so fields are counted after the last `)`.
pub fn parse_proc_stat_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state): utime (14) is fields[11], stime (15) fields[12].
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second (`getconf CLK_TCK`), 100 when it cannot be asked.
pub fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

fn err(msg: impl Into<String>) -> FormatError {
    FormatError(msg.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_csv_last_line_counts() {
        let text = "StartTime;CurrentTime;ElapsedTime(C);SuccessfulCall(C);FailedCall(C);Retransmissions(C);\n\
            2026-11-24\t10:25:50.051121\t1795515950.051121;2026-11-24\t10:25:51.0\t1795515951.0;00:00:01;100;0;0;\n\
            2026-11-24\t10:25:50.051121\t1795515950.051121;2026-11-24\t10:26:00.192669\t1795515960.192669;00:00:10;200000;3;7;\n";
        let s = parse_stat_csv(text).unwrap();
        assert_eq!((s.successful, s.failed, s.retransmissions), (200000, 3, 7));
        assert!((s.elapsed_s - 10.141548).abs() < 1e-3, "{}", s.elapsed_s);
    }

    #[test]
    fn stat_csv_errors() {
        assert!(parse_stat_csv("").is_err());
        assert!(parse_stat_csv("SuccessfulCall(C)\n").is_err());
        assert!(parse_stat_csv("StartTime;CurrentTime\n1;2\n").is_err());
    }

    #[test]
    fn rtt_csv_and_percentiles() {
        let text = "Date_ms;response_time_ms;rtd_no\n4.001;0;1\n504.001;4;1\n1004.001;1.5;1\n";
        let samples = parse_rtt_csv(text).unwrap();
        assert_eq!(
            samples[1],
            RttSample {
                at_ms: 504.001,
                rtt_ms: 4.0
            }
        );
        let mut v: Vec<f64> = samples.iter().map(|s| s.rtt_ms).collect();
        v.sort_by(f64::total_cmp);
        assert_eq!(v, vec![0.0, 1.5, 4.0]);
        assert_eq!(percentile(&v, 50.0), 1.5);
        assert_eq!(percentile(&v, 99.0), 4.0);
        assert_eq!(percentile(&v, 0.0), 0.0);
        assert_eq!(percentile(&[], 99.0), 0.0);
        // Three answers over 1 s plus one 2 Hz interval.
        assert_eq!(answered_per_second(&samples, 2.0), Some(2.0));
        assert_eq!(answered_per_second(&samples[..1], 2.0), None);
        assert!(parse_rtt_csv("h\n1;x;1\n").is_err());
        assert!(parse_rtt_csv("h\n1\n").is_err());
    }

    #[test]
    fn proc_stat_fields() {
        let line =
            "7203 (sipp (uas) x) S 1 7203 7203 0 -1 4194560 1000 0 0 0 120 34 0 0 20 0 1 0 1 2 3";
        assert_eq!(parse_proc_stat_ticks(line), Some(154));
        assert_eq!(parse_proc_stat_ticks("garbage"), None);
        let me = proc_cpu_ticks(std::process::id()).unwrap();
        assert!(me < u64::MAX);
    }
}
