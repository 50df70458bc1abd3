//! A report as CSV (RFC 4180, header row first) or as an SVG chart.

use super::{channel_names, Report, ReportKind};
use serde_json::Value;
use switchboard_chart::{panel, stacked, Axes, PALETTE};

/// Chart width (px).
const WIDTH: u32 = 1000;
/// Height of one chart panel (px).
const PANEL_HEIGHT: u32 = 320;

/// The report as CSV text: a header row of column names, then one line per row; `null` is an
/// empty field.
pub fn csv(report: &Report) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    // Writing to a Vec cannot fail.
    let _ = w.write_record(&report.table.columns);
    for row in &report.table.rows {
        let _ = w.write_record(row.iter().map(field));
    }
    let bytes = w.into_inner().unwrap_or_default();
    String::from_utf8(bytes).unwrap_or_default()
}

fn field(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The value of `column` in `row` as a number (`NaN` when null).
fn num(report: &Report, row: &[Value], column: &str) -> f64 {
    report
        .table
        .columns
        .iter()
        .position(|c| *c == column)
        .and_then(|i| row.get(i))
        .and_then(Value::as_f64)
        .unwrap_or(f64::NAN)
}

fn text<'a>(report: &Report, row: &'a [Value], column: &str) -> &'a str {
    report
        .table
        .columns
        .iter()
        .position(|c| *c == column)
        .and_then(|i| row.get(i))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// One line per entity (`key` column), x = period index, y = `column`.
fn per_entity(report: &Report, key: &str, column: &str) -> Vec<(String, Vec<(f64, f64)>)> {
    let mut out: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    let periods: Vec<&str> = report.buckets.iter().map(|b| b.label.as_str()).collect();
    for row in &report.table.rows {
        let name = text(report, row, key);
        let p = text(report, row, "period");
        let x = periods.iter().position(|l| *l == p).unwrap_or(0) as f64;
        let y = num(report, row, column);
        match out.iter_mut().find(|(n, _)| n == name) {
            Some((_, pts)) => pts.push((x, y)),
            None => out.push((name.to_string(), vec![(x, y)])),
        }
    }
    out
}

/// Sums `columns` per hour of day over every period.
fn by_hour(report: &Report) -> Vec<(String, Vec<(f64, f64)>)> {
    channel_names()
        .iter()
        .map(|ch| {
            let mut sums = [0.0f64; 24];
            for row in &report.table.rows {
                let h = num(report, row, "hour");
                let v = num(report, row, ch);
                if h.is_finite() && v.is_finite() && (0.0..24.0).contains(&h) {
                    sums[h as usize] += v;
                }
            }
            let pts = sums
                .iter()
                .enumerate()
                .map(|(h, v)| (h as f64, *v))
                .collect();
            (ch.to_string(), pts)
        })
        .collect()
}

/// Sums `columns` per period over the hours.
fn by_period(report: &Report) -> Vec<(String, Vec<(f64, f64)>)> {
    let n = report.buckets.len();
    channel_names()
        .iter()
        .map(|ch| {
            let mut sums = vec![0.0f64; n];
            for row in &report.table.rows {
                let p = text(report, row, "period");
                if let Some(i) = report.buckets.iter().position(|b| b.label == p) {
                    let v = num(report, row, ch);
                    if v.is_finite() {
                        sums[i] += v;
                    }
                }
            }
            let pts = sums
                .iter()
                .enumerate()
                .map(|(i, v)| (i as f64, *v))
                .collect();
            (ch.to_string(), pts)
        })
        .collect()
}

/// The report as an SVG chart: two panels over the periods (or, for volume, over the hours of
/// the day and over the periods).
pub fn svg(report: &Report) -> std::io::Result<String> {
    let q = &report.query;
    let labels: Vec<String> = report.buckets.iter().map(|b| b.label.clone()).collect();
    let title = format!(
        "{} per {}, {} to {}",
        q.kind.title(),
        q.period.as_str(),
        labels.first().map_or("-", String::as_str),
        labels.last().map_or("-", String::as_str),
    );
    let period_label = move |v: &f64| {
        let i = v.round();
        if (v - i).abs() > 1e-6 || i < 0.0 {
            return String::new();
        }
        labels.get(i as usize).cloned().unwrap_or_default()
    };
    let x_periods = -0.25..(report.buckets.len().max(1) as f64 - 0.75);
    let (first, second): ((&str, &str, Vec<_>), (&str, &str, Vec<_>)) = match q.kind {
        ReportKind::Agents => (
            (
                "Contacts handled",
                "contacts",
                per_entity(report, "agent", "contacts_handled"),
            ),
            (
                "Occupancy (%)",
                "%",
                per_entity(report, "agent", "occupancy_pct"),
            ),
        ),
        ReportKind::Queues => (
            (
                "Contacts offered",
                "contacts",
                per_entity(report, "queue", "offered"),
            ),
            (
                "Service level (%)",
                "%",
                per_entity(report, "queue", "service_level_pct"),
            ),
        ),
        ReportKind::Volume => (
            (
                "Interactions by hour of day (UTC)",
                "interactions",
                by_hour(report),
            ),
            ("Interactions per period", "interactions", by_period(report)),
        ),
    };
    let hour_label = |v: &f64| format!("{v:.0}");
    stacked(WIDTH, PANEL_HEIGHT, 2, &title, |panels| {
        for (i, (caption, unit, lines)) in [first, second].into_iter().enumerate() {
            let Some(area) = panels.get(i) else { break };
            let series: Vec<_> = lines
                .iter()
                .enumerate()
                .map(|(k, (name, pts))| (name.as_str(), PALETTE[k % PALETTE.len()], pts))
                .collect();
            let hours = q.kind == ReportKind::Volume && i == 0;
            let pct = unit == "%";
            let axes = Axes {
                caption,
                x_desc: if hours {
                    "hour (UTC)"
                } else {
                    q.period.as_str()
                },
                y_desc: unit,
                x: if hours { 0.0..23.0 } else { x_periods.clone() },
                y: pct.then_some(0.0..100.0),
                x_label: if hours { &hour_label } else { &period_label },
            };
            panel(area, &axes, &series)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reports::{compute, Names, Period, Query};
    use crate::routing::{Channel, QueueId};

    #[test]
    fn csv_quotes_and_chart_has_every_series() {
        let names = Names {
            queues: vec![(QueueId(1), "bill,ing \"x\"".into())],
            agents: vec![],
        };
        let q = Query {
            kind: ReportKind::Queues,
            period: Period::Day,
            from: 0,
            to: 2 * 86_400_000,
            service_level_ms: 20_000,
        };
        let buckets = q.period.buckets(q.from, q.to).expect("two");
        let inputs = compute::Inputs {
            routing: &[],
            created: &[(3_600_000, Channel::Chat)],
            csat: &[],
        };
        let table = compute::table(q.kind, &buckets, 20_000, &names, &inputs);
        let r = Report {
            query: q,
            buckets,
            table,
        };
        let text = csv(&r);
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some("period,from_ms,to_ms,queue,offered,answered,abandoned,answered_within_service_level,service_level_pct,average_speed_of_answer_ms,average_handle_time_ms,abandon_rate_pct,csat")
        );
        assert_eq!(
            lines.next(),
            Some("1970-01-01,0,86400000,\"bill,ing \"\"x\"\"\",0,0,0,0,,,,,")
        );
        let svg = svg(&r).expect("svg");
        let t = switchboard_chart::texts(&svg);
        assert!(t.contains(&"Contacts offered"), "{t:?}");
        assert!(t.contains(&"Service level (%)"), "{t:?}");
        assert!(t.contains(&"1970-01-02"), "period labels: {t:?}");
    }
}
