//! Time conditions: week specs (`mon-fri 09:00-12:30,13:30-18:00`) and calendars with holidays.

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Timelike};
use chrono_tz::Tz;

/// Days of the week and time ranges inside them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WeekSpec {
    /// Monday first.
    days: [bool; 7],
    /// Minutes since midnight, `[start, end)`; empty means the whole day.
    ranges: Vec<(u32, u32)>,
}

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl WeekSpec {
    /// Parses `"[days] [hh:mm-hh:mm[,hh:mm-hh:mm…]]"`; days default to every day, hours to
    /// the whole day. Days: `mon`…`sun`, ranges `mon-fri` (may wrap: `fri-mon`), lists
    /// `mon,wed`, or `daily`.
    pub fn parse(spec: &str) -> Result<WeekSpec, String> {
        let spec = spec.trim();
        let (days, hours) = if spec.starts_with(|c: char| c.is_ascii_digit()) {
            ("daily", spec)
        } else {
            match spec.split_once(char::is_whitespace) {
                Some((d, h)) => (d, h.trim()),
                None => (spec, ""),
            }
        };
        Ok(WeekSpec {
            days: parse_days(days)?,
            ranges: parse_hours(hours)?,
        })
    }

    /// Parses separate day and hour specs (a calendar's `hours` entry).
    pub fn from_parts(days: &str, hours: &str) -> Result<WeekSpec, String> {
        Ok(WeekSpec {
            days: parse_days(days)?,
            ranges: parse_hours(hours)?,
        })
    }

    /// True when the local weekday and time fall inside the spec.
    pub fn contains<T: Datelike + Timelike>(&self, local: &T) -> bool {
        let day = local.weekday().num_days_from_monday() as usize;
        let minute = local.hour() * 60 + local.minute();
        self.days.get(day).copied().unwrap_or(false)
            && (self.ranges.is_empty()
                || self.ranges.iter().any(|&(s, e)| minute >= s && minute < e))
    }
}

fn parse_days(spec: &str) -> Result<[bool; 7], String> {
    let mut days = [false; 7];
    if matches!(spec, "daily" | "*" | "all") {
        return Ok([true; 7]);
    }
    let day = |s: &str| {
        let lower = s.trim().to_ascii_lowercase();
        DAY_NAMES
            .iter()
            .position(|d| lower == *d || lower == full_name(d))
            .ok_or_else(|| {
                format!("unknown day `{s}` (expected mon, tue, wed, thu, fri, sat, sun)")
            })
    };
    for item in spec.split(',').filter(|s| !s.trim().is_empty()) {
        match item.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (day(a)?, day(b)?);
                let mut d = a;
                loop {
                    days[d] = true;
                    if d == b {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => days[day(item)?] = true,
        }
    }
    if days.iter().all(|d| !d) {
        return Err(format!("no day in `{spec}`"));
    }
    Ok(days)
}

fn full_name(short: &str) -> &'static str {
    match short {
        "mon" => "monday",
        "tue" => "tuesday",
        "wed" => "wednesday",
        "thu" => "thursday",
        "fri" => "friday",
        "sat" => "saturday",
        _ => "sunday",
    }
}

fn parse_hours(spec: &str) -> Result<Vec<(u32, u32)>, String> {
    let mut out = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (a, b) = item
            .split_once('-')
            .ok_or_else(|| format!("bad hours `{item}`: expected `hh:mm-hh:mm`"))?;
        let (s, e) = (clock(a.trim())?, clock(b.trim())?);
        if e <= s {
            return Err(format!(
                "bad hours `{item}`: the end is not after the start (split ranges across midnight)"
            ));
        }
        out.push((s, e));
    }
    Ok(out)
}

fn clock(s: &str) -> Result<u32, String> {
    let bad = || format!("bad time `{s}`: expected `hh:mm` from 00:00 to 24:00");
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if m >= 60 || h > 24 || (h == 24 && m != 0) || s.len() > 5 {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// A day off in a calendar.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Holiday {
    /// One date.
    Date(NaiveDate),
    /// The same month and day every year (`12-25`).
    Yearly {
        /// 1-12.
        month: u32,
        /// 1-31.
        day: u32,
    },
    /// Inclusive range of dates (`2026-12-24..2026-12-26`).
    Range(NaiveDate, NaiveDate),
}

impl Holiday {
    /// Parses `YYYY-MM-DD`, `MM-DD` or `YYYY-MM-DD..YYYY-MM-DD`.
    pub fn parse(s: &str) -> Result<Holiday, String> {
        let s = s.trim();
        let date = |d: &str| {
            NaiveDate::parse_from_str(d.trim(), "%Y-%m-%d")
                .map_err(|_| format!("bad date `{d}`: expected YYYY-MM-DD"))
        };
        if let Some((a, b)) = s.split_once("..") {
            let (a, b) = (date(a)?, date(b)?);
            if b < a {
                return Err(format!("bad date range `{s}`: the end is before the start"));
            }
            return Ok(Holiday::Range(a, b));
        }
        if s.len() == 5 {
            let (m, d) = s
                .split_once('-')
                .ok_or_else(|| format!("bad date `{s}`: expected MM-DD"))?;
            let (month, day) = (
                m.parse().map_err(|_| format!("bad month in `{s}`"))?,
                d.parse().map_err(|_| format!("bad day in `{s}`"))?,
            );
            // 2024 is a leap year, so 02-29 is accepted.
            NaiveDate::from_ymd_opt(2024, month, day)
                .ok_or_else(|| format!("no such day `{s}`"))?;
            return Ok(Holiday::Yearly { month, day });
        }
        Ok(Holiday::Date(date(s)?))
    }

    fn contains(&self, d: NaiveDate) -> bool {
        match *self {
            Holiday::Date(x) => x == d,
            Holiday::Yearly { month, day } => d.month() == month && d.day() == day,
            Holiday::Range(a, b) => a <= d && d <= b,
        }
    }
}

/// Opening hours in a time zone, with holidays.
#[derive(Clone, Debug)]
pub struct Calendar {
    /// The name used by rules and `business_hours` actions.
    pub name: String,
    pub(crate) tz: Tz,
    pub(crate) hours: Vec<WeekSpec>,
    pub(crate) holidays: Vec<Holiday>,
}

impl Calendar {
    /// True when `now` (any offset) is inside opening hours and not on a holiday.
    pub fn is_open<Z: TimeZone>(&self, now: &DateTime<Z>) -> bool {
        let local = now.with_timezone(&self.tz);
        let date = local.date_naive();
        !self.holidays.iter().any(|h| h.contains(date))
            && self.hours.iter().any(|w| w.contains(&local))
    }

    /// True when `now` falls on a holiday of this calendar.
    pub fn is_holiday<Z: TimeZone>(&self, now: &DateTime<Z>) -> bool {
        let date = now.with_timezone(&self.tz).date_naive();
        self.holidays.iter().any(|h| h.contains(date))
    }
}

/// Parses an IANA time zone name (`Europe/Paris`, `UTC`).
pub fn parse_tz(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>().map_err(|_| {
        format!("unknown time zone `{name}` (expected an IANA name like Europe/Paris)")
    })
}
