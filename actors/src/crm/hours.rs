//! Business hours: weekly opening intervals in a time zone, minus holidays, and the arithmetic
//! SLA timers need: business time between two instants, and the instant a given amount of
//! business time after a start. Pure functions of their inputs (no clock): tests pass `now`.

use chrono::{Datelike, NaiveDate, NaiveTime, TimeZone, Timelike};
use chrono_tz::Tz;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

/// Days searched at most when adding business time (ten years): a calendar with no opening
/// hours at all gives up instead of looping.
const MAX_DAYS: i64 = 3_660;
const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// A group's calendar. `always()` (24×7) when no hours are configured.
#[derive(Clone, Debug, PartialEq)]
pub struct BusinessHours {
    tz: Tz,
    /// Per weekday (Monday first): opening intervals as seconds from local midnight.
    week: Option<[Vec<(u32, u32)>; 7]>,
    holidays: BTreeSet<NaiveDate>,
}

/// The JSON shape of business hours in a group's configuration.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoursSpec {
    /// IANA time zone, e.g. `Europe/Paris` (default UTC).
    #[serde(default)]
    pub time_zone: Option<String>,
    /// `{"mon": [["09:00", "17:00"]], …}`; absent: open 24×7. Days not listed are closed.
    #[serde(default)]
    pub hours: Option<BTreeMap<String, Vec<[String; 2]>>>,
    /// Closed days, `YYYY-MM-DD` (local dates).
    #[serde(default)]
    pub holidays: Vec<String>,
}

fn parse_time(s: &str) -> Option<u32> {
    if s == "24:00" {
        return Some(86_400);
    }
    NaiveTime::parse_from_str(s, "%H:%M")
        .ok()
        .map(|t| t.num_seconds_from_midnight())
}

impl BusinessHours {
    /// Open around the clock, every day, in UTC.
    pub fn always() -> BusinessHours {
        BusinessHours {
            tz: Tz::UTC,
            week: None,
            holidays: BTreeSet::new(),
        }
    }

    /// Builds a calendar; errors name the field (`time_zone`, `hours.mon[0]`, `holidays[2]`).
    pub fn from_spec(spec: &HoursSpec) -> Result<BusinessHours, (String, String)> {
        let tz = match &spec.time_zone {
            None => Tz::UTC,
            Some(name) => name.parse::<Tz>().map_err(|_| {
                (
                    "time_zone".to_string(),
                    format!("unknown time zone {name:?}"),
                )
            })?,
        };
        let week = match &spec.hours {
            None => None,
            Some(days) => {
                let mut week: [Vec<(u32, u32)>; 7] = Default::default();
                for (day, intervals) in days {
                    let Some(i) = WEEKDAYS.iter().position(|d| d == day) else {
                        return Err((
                            format!("hours.{day}"),
                            "a weekday: mon, tue, wed, thu, fri, sat or sun".into(),
                        ));
                    };
                    for (n, [from, to]) in intervals.iter().enumerate() {
                        let field = format!("hours.{day}[{n}]");
                        let (Some(a), Some(b)) = (parse_time(from), parse_time(to)) else {
                            return Err((field, "times as HH:MM (24:00 allowed as an end)".into()));
                        };
                        if a >= b {
                            return Err((field, "the end must be after the start".into()));
                        }
                        week[i].push((a, b));
                    }
                    week[i].sort_unstable();
                    if week[i].windows(2).any(|w| w[0].1 > w[1].0) {
                        return Err((format!("hours.{day}"), "intervals overlap".into()));
                    }
                }
                Some(week)
            }
        };
        let mut holidays = BTreeSet::new();
        for (n, h) in spec.holidays.iter().enumerate() {
            let d = NaiveDate::parse_from_str(h, "%Y-%m-%d")
                .map_err(|_| (format!("holidays[{n}]"), "a date as YYYY-MM-DD".to_string()))?;
            holidays.insert(d);
        }
        Ok(BusinessHours { tz, week, holidays })
    }

    /// The local date of an instant.
    fn local_date(&self, ms: i64) -> Option<NaiveDate> {
        Some(self.tz.timestamp_millis_opt(ms).single()?.date_naive())
    }

    /// Epoch ms of `secs` after local midnight of `day` (a DST gap moves to its end).
    fn instant(&self, day: NaiveDate, secs: u32) -> Option<i64> {
        let (day, secs) = if secs >= 86_400 {
            (day.succ_opt()?, secs - 86_400)
        } else {
            (day, secs)
        };
        let local = day.and_time(NaiveTime::from_num_seconds_from_midnight_opt(secs, 0)?);
        let mut r = self.tz.from_local_datetime(&local);
        let mut shift = 0;
        while r.earliest().is_none() && shift < 4 {
            shift += 1;
            r = self
                .tz
                .from_local_datetime(&(local + chrono::Duration::minutes(30 * shift)));
        }
        r.earliest().map(|t| t.timestamp_millis())
    }

    /// The open intervals (epoch ms) of one local day.
    fn day_intervals(&self, day: NaiveDate) -> Vec<(i64, i64)> {
        if self.holidays.contains(&day) {
            return Vec::new();
        }
        let Some(week) = &self.week else {
            return match (self.instant(day, 0), self.instant(day, 86_400)) {
                (Some(a), Some(b)) => vec![(a, b)],
                _ => Vec::new(),
            };
        };
        let idx = day.weekday().num_days_from_monday() as usize;
        week.get(idx)
            .map(|v| {
                v.iter()
                    .filter_map(|&(a, b)| Some((self.instant(day, a)?, self.instant(day, b)?)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Business time (ms) within `[from_ms, to_ms)`.
    pub fn between(&self, from_ms: i64, to_ms: i64) -> i64 {
        if to_ms <= from_ms {
            return 0;
        }
        if self.week.is_none() && self.holidays.is_empty() {
            return to_ms - from_ms;
        }
        let (Some(first), Some(last)) = (self.local_date(from_ms), self.local_date(to_ms)) else {
            return 0;
        };
        let mut total = 0;
        let mut day = first.pred_opt().unwrap_or(first);
        let mut n = 0;
        while day <= last && n <= MAX_DAYS + 2 {
            for (a, b) in self.day_intervals(day) {
                let (a, b) = (a.max(from_ms), b.min(to_ms));
                if b > a {
                    total += b - a;
                }
            }
            let Some(next) = day.succ_opt() else { break };
            day = next;
            n += 1;
        }
        total
    }

    /// The instant at which `amount_ms` of business time has elapsed since `from_ms`; `None`
    /// when the calendar has not that much open time within ten years.
    pub fn add(&self, from_ms: i64, amount_ms: i64) -> Option<i64> {
        if self.week.is_none() && self.holidays.is_empty() {
            return from_ms.checked_add(amount_ms.max(0));
        }
        let mut left = amount_ms.max(0);
        let start = self.local_date(from_ms)?;
        let mut day = start.pred_opt().unwrap_or(start);
        for _ in 0..MAX_DAYS {
            for (a, b) in self.day_intervals(day) {
                let a = a.max(from_ms);
                if b <= a {
                    continue;
                }
                if b - a >= left {
                    return Some(a + left);
                }
                left -= b - a;
            }
            day = day.succ_opt()?;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s)
            .expect("test instant")
            .timestamp_millis()
    }

    fn paris_office() -> BusinessHours {
        let spec: HoursSpec = serde_json::from_value(serde_json::json!({
            "time_zone": "Europe/Paris",
            "hours": {
                "mon": [["09:00", "12:00"], ["13:00", "17:00"]],
                "tue": [["09:00", "17:00"]], "wed": [["09:00", "17:00"]],
                "thu": [["09:00", "17:00"]], "fri": [["09:00", "17:00"]]
            },
            "holidays": ["2026-12-25"]
        }))
        .expect("spec");
        BusinessHours::from_spec(&spec).expect("valid")
    }

    #[test]
    fn always_open_is_plain_arithmetic() {
        let h = BusinessHours::always();
        assert_eq!(h.add(1_000, 500), Some(1_500));
        assert_eq!(h.between(1_000, 1_500), 500);
        assert_eq!(h.between(1_500, 1_000), 0);
    }

    #[test]
    fn adds_across_lunch_night_weekend_and_holiday() {
        let h = paris_office();
        // Monday 2026-11-23 11:30 Paris (UTC+1): 30 min before lunch, 4 h after.
        let mon = ms("2026-11-23T11:30:00+01:00");
        assert_eq!(
            h.add(mon, 60 * 60_000),
            Some(ms("2026-11-23T13:30:00+01:00"))
        );
        // 5 h from Monday 11:30: 0.5 + 4 on Monday, 0.5 on Tuesday.
        assert_eq!(
            h.add(mon, 5 * 3_600_000),
            Some(ms("2026-11-24T09:30:00+01:00"))
        );
        // Friday 16:00 + 2 h: 1 h Friday, 1 h Monday.
        let fri = ms("2026-11-27T16:00:00+01:00");
        assert_eq!(
            h.add(fri, 2 * 3_600_000),
            Some(ms("2026-11-30T10:00:00+01:00"))
        );
        // Thursday 24 Dec 16:00 + 2 h: Christmas is closed, Saturday/Sunday too.
        let eve = ms("2026-12-24T16:00:00+01:00");
        assert_eq!(
            h.add(eve, 2 * 3_600_000),
            Some(ms("2026-12-28T10:00:00+01:00"))
        );
        // Started at night: the clock runs from opening.
        let night = ms("2026-11-24T02:00:00+01:00");
        assert_eq!(h.add(night, 0), Some(ms("2026-11-24T09:00:00+01:00")));
        assert_eq!(
            h.between(
                ms("2026-11-27T16:00:00+01:00"),
                ms("2026-11-30T10:00:00+01:00")
            ),
            2 * 3_600_000
        );
    }

    #[test]
    fn follows_daylight_saving_time() {
        let h = paris_office();
        // Friday 2026-03-27 16:00 CET + 2 h: Monday 30 March 10:00 CEST (UTC+2).
        let fri = ms("2026-03-27T16:00:00+01:00");
        assert_eq!(
            h.add(fri, 2 * 3_600_000),
            Some(ms("2026-03-30T10:00:00+02:00"))
        );
    }

    #[test]
    fn refuses_bad_specs_naming_the_field() {
        let bad = |v: serde_json::Value| {
            let spec: HoursSpec = serde_json::from_value(v).expect("shape");
            BusinessHours::from_spec(&spec).expect_err("invalid").0
        };
        assert_eq!(
            bad(serde_json::json!({"time_zone": "Mars/Base"})),
            "time_zone"
        );
        assert_eq!(
            bad(serde_json::json!({"hours": {"mon": [["17:00", "09:00"]]}})),
            "hours.mon[0]"
        );
        assert_eq!(bad(serde_json::json!({"hours": {"xyz": []}})), "hours.xyz");
        assert_eq!(
            bad(serde_json::json!({"holidays": ["2026-02-30"]})),
            "holidays[0]"
        );
        let closed = BusinessHours::from_spec(
            &serde_json::from_value(serde_json::json!({"hours": {}})).expect("shape"),
        )
        .expect("valid");
        assert_eq!(closed.add(0, 1), None);
    }
}
