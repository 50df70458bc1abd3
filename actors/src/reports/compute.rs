//! The report tables, computed from the stored journal: the routing events folded by
//! [`crate::routing::metrics::Metrics`] (the same fold as the live metrics, one pass per period)
//! and the new-interaction entries (volume).

use super::period::{hour_of, Bucket};
use super::{Names, ReportKind};
use crate::routing::metrics::{Metrics, MetricsWindow};
use crate::routing::{Channel, RoutingEvent};
use serde_json::{json, Value};

/// A computed table: column names and rows of JSON scalars (numbers, strings, `null` for a
/// ratio with nothing to divide by).
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    /// Column names, in order.
    pub columns: Vec<&'static str>,
    /// Rows, each with one value per column.
    pub rows: Vec<Vec<Value>>,
}

/// What the tables are computed from.
pub struct Inputs<'a> {
    /// Routing events in journal order (at least every one before the report's end).
    pub routing: &'a [RoutingEvent],
    /// New interactions: when, and their channel.
    pub created: &'a [(u64, Channel)],
    /// CSAT scores (the CRM's: `POST /api/v1/interactions/{id}/csat`, the chat widget, the
    /// post-call survey).
    pub csat: &'a [CsatPoint],
}

/// One CSAT score: when it was given, to which agent, through which queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsatPoint {
    /// When (epoch ms).
    pub at: u64,
    /// The agent, if known.
    pub agent: Option<String>,
    /// The queue, if known.
    pub queue: Option<String>,
    /// 1–5.
    pub score: i64,
}

/// The mean of the CSAT scores in `[from, to)` whose agent (or queue) `pick` returns as
/// `name`, `null` without any.
fn mean_csat(
    csat: &[CsatPoint],
    pick: fn(&CsatPoint) -> Option<&str>,
    name: &str,
    from: u64,
    to: u64,
) -> Value {
    let (n, sum) = csat
        .iter()
        .filter(|c| pick(c) == Some(name) && (from..to).contains(&c.at))
        .fold((0u32, 0i64), |(n, sum), c| (n + 1, sum + c.score));
    if n == 0 {
        Value::Null
    } else {
        json!((sum as f64 / f64::from(n) * 100.0).round() / 100.0)
    }
}

/// The columns of each report.
pub fn columns(kind: ReportKind) -> Vec<&'static str> {
    let head = ["period", "from_ms", "to_ms"];
    let rest: &[&'static str] = match kind {
        ReportKind::Agents => &[
            "agent",
            "contacts_handled",
            "average_handle_time_ms",
            "occupancy_pct",
            "on_contact_ms",
            "idle_ms",
            "offers_missed",
            "csat",
        ],
        ReportKind::Queues => &[
            "queue",
            "offered",
            "answered",
            "abandoned",
            "answered_within_service_level",
            "service_level_pct",
            "average_speed_of_answer_ms",
            "average_handle_time_ms",
            "abandon_rate_pct",
            "csat",
        ],
        ReportKind::Volume => &["hour", "voice", "chat", "messaging", "email", "total"],
    };
    head.iter().chain(rest).copied().collect()
}

/// Computes a report's table over `buckets`.
pub fn table(
    kind: ReportKind,
    buckets: &[Bucket],
    service_level_ms: u64,
    names: &Names,
    inputs: &Inputs<'_>,
) -> Table {
    let mut rows = Vec::new();
    for b in buckets {
        let head = [json!(b.label), json!(b.from), json!(b.to)];
        match kind {
            ReportKind::Agents | ReportKind::Queues => {
                let window = MetricsWindow {
                    from: b.from,
                    to: b.to,
                    service_level_ms,
                };
                let m = Metrics::compute(inputs.routing.iter().take_while(|e| e.at < b.to), window);
                if kind == ReportKind::Agents {
                    for (id, name) in &names.agents {
                        let a = m.agent_metrics(*id);
                        let mut r = head.to_vec();
                        r.extend([
                            json!(name),
                            json!(a.handled),
                            json!(a.aht_ms()),
                            json!(a.occupancy().map(pct)),
                            json!(a.on_contact_ms),
                            json!(a.idle_ms),
                            json!(a.missed),
                            mean_csat(inputs.csat, |c| c.agent.as_deref(), name, b.from, b.to),
                        ]);
                        rows.push(r);
                    }
                } else {
                    for (id, name) in &names.queues {
                        let q = m.queue_metrics(*id);
                        let mut r = head.to_vec();
                        r.extend([
                            json!(name),
                            json!(q.queued),
                            json!(q.answered),
                            json!(q.abandoned),
                            json!(q.answered_within),
                            json!(q.service_level().map(pct)),
                            json!(q.asa_ms()),
                            json!(q.aht_ms()),
                            json!(q.abandon_rate().map(pct)),
                            mean_csat(inputs.csat, |c| c.queue.as_deref(), name, b.from, b.to),
                        ]);
                        rows.push(r);
                    }
                }
            }
            ReportKind::Volume => {
                let mut counts = [[0u64; 4]; 24];
                for (at, ch) in inputs.created {
                    if *at >= b.from && *at < b.to {
                        counts[hour_of(*at)][ch.index()] += 1;
                    }
                }
                for (hour, c) in counts.iter().enumerate() {
                    let mut r = head.to_vec();
                    r.push(json!(hour));
                    r.extend(c.iter().map(|n| json!(n)));
                    r.push(json!(c.iter().sum::<u64>()));
                    rows.push(r);
                }
            }
        }
    }
    Table {
        columns: columns(kind),
        rows,
    }
}

/// A ratio as a percentage.
fn pct(r: f64) -> f64 {
    r * 100.0
}
