//! Scheduled report generation: each `[[reports.schedules]]` entry writes its report as CSV and
//! SVG files under the reports directory (`<data dir>/reports/`) at start and then `every`
//! hour, day, week, month (at the boundary, UTC) or fixed interval (`"90s"`, `"15m"`, `"2h"`).
//!
//! Each run writes two periods: the one that ended last (complete) and the current one so far,
//! named `{report}-{period}-{first day}.csv|svg`; a file is replaced atomically (written under a
//! temporary name, then renamed), so a reader never sees half a file and the current period's
//! file grows into the complete one.

use super::period::{date_of, ms_of, Period};
use super::{generate, render, Names, Query, ReportKind};
use crate::contact::{ContactCentre, Request};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often a schedule runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Every {
    /// At each boundary of this period (UTC; `hourly` is [`Every::Interval`] of an hour,
    /// aligned to the hour).
    Boundary(Period),
    /// Every so many milliseconds, aligned to multiples of it since the epoch.
    Interval(u64),
}

impl Every {
    /// Parses `hourly`, `daily`, `weekly`, `monthly`, or `<n>s` / `<n>m` / `<n>h` (n ≥ 1).
    pub fn parse(s: &str) -> Option<Every> {
        if s == "hourly" {
            return Some(Every::Interval(3_600_000));
        }
        if let Some(p) = Period::parse(s).filter(|_| s.ends_with("ly")) {
            return Some(Every::Boundary(p));
        }
        let (n, unit) = s.split_at(s.len().checked_sub(1)?);
        let n: u64 = n.parse().ok().filter(|n| *n > 0)?;
        let ms = match unit {
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => return None,
        };
        n.checked_mul(ms).map(Every::Interval)
    }

    /// The next run strictly after `now` (epoch ms).
    pub fn next_after(self, now: u64) -> u64 {
        match self {
            Every::Interval(ms) => (now / ms + 1).saturating_mul(ms),
            Every::Boundary(p) => {
                let start = p.start_of(date_of(now));
                p.next(start).map_or(u64::MAX, ms_of)
            }
        }
    }
}

/// One validated schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// The report.
    pub report: ReportKind,
    /// Its rows.
    pub period: Period,
    /// How often.
    pub every: Every,
}

impl Schedule {
    /// Validates a configured entry; the error names the key (`reports.schedules[0].every`).
    pub fn from_config(
        i: usize,
        c: &switchboard_engine::config::ReportSchedule,
    ) -> Result<Schedule, String> {
        let key = |k: &str| format!("reports.schedules[{i}].{k}");
        Ok(Schedule {
            report: ReportKind::parse(&c.report).ok_or_else(|| {
                format!("{}: `{}` is not agents, queues or volume", key("report"), c.report)
            })?,
            period: Period::parse(&c.period).ok_or_else(|| {
                format!("{}: `{}` is not day, week or month", key("period"), c.period)
            })?,
            every: Every::parse(&c.every).ok_or_else(|| {
                format!(
                    "{}: `{}` is not hourly, daily, weekly, monthly or a duration like 30s, 15m, 2h",
                    key("every"),
                    c.every
                )
            })?,
        })
    }
}

/// A generated file, as the API lists it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ReportFile {
    /// The file name (`queues-day-2026-11-24.csv`).
    pub name: String,
    /// The report.
    pub report: String,
    /// The period.
    pub period: String,
    /// The first day of the period.
    pub starts: String,
    /// `csv` or `svg`.
    pub format: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Last written (epoch ms).
    pub modified_ms: u64,
}

/// Parses a generated file name into (report, period, first day, format).
pub fn parse_name(name: &str) -> Option<(ReportKind, Period, &str, &str)> {
    let (stem, format) = name.rsplit_once('.')?;
    if format != "csv" && format != "svg" {
        return None;
    }
    let mut parts = stem.splitn(3, '-');
    let report = ReportKind::parse(parts.next()?)?;
    let period = Period::parse(parts.next()?)?;
    let day = parts.next()?;
    chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()?;
    Some((report, period, day, format))
}

/// The generated files in `dir`, by name.
pub fn list(dir: &Path) -> Vec<ReportFile> {
    let mut out: Vec<ReportFile> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let (report, period, starts, format) = parse_name(&name)?;
            let meta = e.metadata().ok()?;
            let modified_ms = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            Some(ReportFile {
                report: report.as_str().into(),
                period: period.as_str().into(),
                starts: starts.into(),
                format: format.into(),
                bytes: meta.len(),
                modified_ms,
                name,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Writes the previous and the current period of `s` as of `now`; returns the files written.
pub async fn run_once(
    cc: &ContactCentre,
    dir: &Path,
    s: &Schedule,
    now: u64,
) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let names = cc
        .request(Request::Names)
        .await
        .map_err(|e| std::io::Error::other(e.error))?;
    let names = Names::from_json(&names);
    cc.flush().await;
    let current = s.period.start_of(date_of(now));
    let previous = s.period.prev(current).unwrap_or(current);
    let mut written = Vec::new();
    // The current period so far, `now` itself included.
    let so_far = now.saturating_add(1).max(ms_of(current));
    for (start, end) in [(previous, ms_of(current)), (current, so_far)] {
        let q = Query {
            kind: s.report,
            period: s.period,
            from: ms_of(start),
            to: end,
            service_level_ms: cc.settings().service_level_secs.saturating_mul(1000),
        };
        let report = generate(cc.storage(), &names, &q)
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let stem = format!(
            "{}-{}-{}",
            s.report.as_str(),
            s.period.as_str(),
            start.format("%Y-%m-%d")
        );
        for (ext, body) in [
            ("csv", render::csv(&report)),
            ("svg", render::svg(&report)?),
        ] {
            let path = dir.join(format!("{stem}.{ext}"));
            let tmp = dir.join(format!(".{stem}.{ext}.tmp"));
            std::fs::write(&tmp, body)?;
            std::fs::rename(&tmp, &path)?;
            written.push(path);
        }
    }
    Ok(written)
}

/// Starts one task per schedule on the current actix system: a run at start, then at each
/// `every`.
pub fn start(cc: ContactCentre, dir: PathBuf, schedules: Vec<Schedule>) {
    for s in schedules {
        let cc = cc.clone();
        let dir = dir.clone();
        actix_rt::spawn(async move {
            loop {
                let now = now_ms();
                match run_once(&cc, &dir, &s, now).await {
                    // event: report.generated {report, period, files}
                    Ok(files) => tracing::info!(
                        report = s.report.as_str(),
                        n = files.len(),
                        "scheduled report written"
                    ),
                    Err(e) => {
                        tracing::warn!(report = s.report.as_str(), error = %e, "scheduled report failed")
                    }
                }
                let next = s.every.next_after(now_ms());
                let wait = next.saturating_sub(now_ms()).max(1000);
                tokio::time::sleep(Duration::from_millis(wait)).await;
            }
        });
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_parses_and_aligns() {
        assert_eq!(Every::parse("daily"), Some(Every::Boundary(Period::Day)));
        assert_eq!(
            Every::parse("monthly"),
            Some(Every::Boundary(Period::Month))
        );
        assert_eq!(Every::parse("hourly"), Some(Every::Interval(3_600_000)));
        assert_eq!(Every::parse("90s"), Some(Every::Interval(90_000)));
        assert_eq!(Every::parse("2h"), Some(Every::Interval(7_200_000)));
        for bad in ["", "day", "0s", "5x", "s", "-1m", "soon"] {
            assert_eq!(Every::parse(bad), None, "{bad}");
        }
        assert_eq!(Every::Interval(1000).next_after(1500), 2000);
        assert_eq!(
            Every::Boundary(Period::Day).next_after(86_400_000),
            2 * 86_400_000
        );
    }

    #[test]
    fn file_names() {
        assert_eq!(
            parse_name("queues-week-2026-11-23.csv"),
            Some((ReportKind::Queues, Period::Week, "2026-11-23", "csv"))
        );
        for bad in [
            "queues-week-2026-11-23.txt",
            "x-day-2026-01-01.csv",
            "agents-day-soon.svg",
            ".queues-day-2026-01-01.csv.tmp",
            "../etc",
        ] {
            assert_eq!(parse_name(bad), None, "{bad}");
        }
    }
}
