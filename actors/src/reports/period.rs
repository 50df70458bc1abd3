//! Report periods: calendar days, ISO weeks (Monday first) and months, in UTC, as buckets of
//! epoch milliseconds.

use chrono::{DateTime, Datelike, Days, Months, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// The length of one report row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    /// A calendar day (UTC).
    Day,
    /// A week from Monday 00:00 UTC.
    Week,
    /// A calendar month (UTC).
    Month,
}

/// One period of a report: `[from, to)` in epoch ms, clipped to the report's range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bucket {
    /// The first day of the calendar period (`2026-11-23`).
    pub label: String,
    /// Start (inclusive, ms).
    pub from: u64,
    /// End (exclusive, ms).
    pub to: u64,
}

/// Most periods in one report.
pub const MAX_BUCKETS: usize = 1000;

impl Period {
    /// Parses `day`, `week` or `month`.
    pub fn parse(s: &str) -> Option<Period> {
        match s {
            "day" | "daily" => Some(Period::Day),
            "week" | "weekly" => Some(Period::Week),
            "month" | "monthly" => Some(Period::Month),
            _ => None,
        }
    }

    /// Its name in URLs and file names.
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
        }
    }

    /// The first day of the period that contains `date`.
    pub fn start_of(self, date: NaiveDate) -> NaiveDate {
        match self {
            Period::Day => date,
            Period::Week => date - Days::new(u64::from(date.weekday().num_days_from_monday())),
            Period::Month => date.with_day(1).unwrap_or(date),
        }
    }

    /// The first day of the next period (`start` is a period start).
    pub fn next(self, start: NaiveDate) -> Option<NaiveDate> {
        match self {
            Period::Day => start.checked_add_days(Days::new(1)),
            Period::Week => start.checked_add_days(Days::new(7)),
            Period::Month => start.checked_add_months(Months::new(1)),
        }
    }

    /// The first day of the previous period (`start` is a period start).
    pub fn prev(self, start: NaiveDate) -> Option<NaiveDate> {
        match self {
            Period::Day => start.checked_sub_days(Days::new(1)),
            Period::Week => start.checked_sub_days(Days::new(7)),
            Period::Month => start.checked_sub_months(Months::new(1)),
        }
    }

    /// How many periods a report shows when its query names no `from`.
    pub fn default_count(self) -> u32 {
        match self {
            Period::Day => 7,
            Period::Week => 4,
            Period::Month => 3,
        }
    }

    /// The buckets covering `[from, to)`, each clipped to it; `None` when there would be more
    /// than [`MAX_BUCKETS`].
    pub fn buckets(self, from: u64, to: u64) -> Option<Vec<Bucket>> {
        let mut out = Vec::new();
        if from >= to {
            return Some(out);
        }
        let mut start = self.start_of(date_of(from));
        while ms_of(start) < to {
            let next = self.next(start)?;
            out.push(Bucket {
                label: start.format("%Y-%m-%d").to_string(),
                from: ms_of(start).max(from),
                to: ms_of(next).min(to),
            });
            if out.len() > MAX_BUCKETS {
                return None;
            }
            start = next;
        }
        Some(out)
    }
}

/// The UTC date of an epoch-ms instant.
pub fn date_of(ms: u64) -> NaiveDate {
    DateTime::<Utc>::from_timestamp_millis(i64::try_from(ms).unwrap_or(i64::MAX))
        .unwrap_or_default()
        .date_naive()
}

/// Midnight UTC of `date` in epoch ms (0 before 1970).
pub fn ms_of(date: NaiveDate) -> u64 {
    let ms = date
        .and_hms_opt(0, 0, 0)
        .map_or(0, |t| t.and_utc().timestamp_millis());
    u64::try_from(ms).unwrap_or(0)
}

/// The hour of day (UTC, 0..24) of an epoch-ms instant.
pub fn hour_of(ms: u64) -> usize {
    usize::try_from((ms / 3_600_000) % 24).unwrap_or(0)
}

/// Parses a query bound: epoch milliseconds (`1764000000000`), a date (`2026-11-24`, midnight
/// UTC; as `to` it means the end of that day) or an RFC 3339 instant.
pub fn parse_bound(s: &str, end_of_day: bool) -> Option<u64> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok();
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let d = if end_of_day {
            d.checked_add_days(Days::new(1))?
        } else {
            d
        };
        return Some(ms_of(d));
    }
    let t = DateTime::parse_from_rfc3339(s).ok()?;
    u64::try_from(t.timestamp_millis()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> u64 {
        parse_bound(s, false).expect("date")
    }

    #[test]
    fn weeks_start_on_monday_and_clip_to_the_range() {
        // 2026-11-24 is a Tuesday.
        let b = Period::Week
            .buckets(d("2026-11-24"), d("2026-12-09"))
            .expect("few");
        let labels: Vec<&str> = b.iter().map(|b| b.label.as_str()).collect();
        assert_eq!(labels, ["2026-11-23", "2026-11-30", "2026-12-07"]);
        assert_eq!(b[0].from, d("2026-11-24"));
        assert_eq!(b[0].to, d("2026-11-30"));
        assert_eq!(b[2].to, d("2026-12-09"));
    }

    #[test]
    fn months_and_days() {
        let b = Period::Month
            .buckets(d("2026-01-31"), d("2026-03-01"))
            .expect("few");
        assert_eq!(b.len(), 2);
        assert_eq!(b[1].label, "2026-02-01");
        assert_eq!(b[1].to - b[1].from, 28 * 86_400_000);
        let b = Period::Day.buckets(d("2026-11-24"), d("2026-11-24") + 1);
        assert_eq!(b.map(|b| b.len()), Some(1));
        assert_eq!(Period::Day.buckets(5, 5).map(|b| b.len()), Some(0));
        assert_eq!(Period::Day.buckets(0, u64::MAX / 4), None, "too many");
    }

    #[test]
    fn bounds() {
        assert_eq!(parse_bound("1000", false), Some(1000));
        assert_eq!(
            parse_bound("2026-11-24", true),
            Some(d("2026-11-24") + 86_400_000)
        );
        assert_eq!(
            parse_bound("2026-11-24T01:00:00Z", false),
            Some(d("2026-11-24") + 3_600_000)
        );
        for bad in [
            "",
            "yesterday",
            "2026-13-01",
            "-5",
            "99999999999999999999999",
        ] {
            assert_eq!(parse_bound(bad, false), None, "{bad}");
        }
        assert_eq!(hour_of(d("2026-11-24") + 5 * 3_600_000 + 1), 5);
    }
}
