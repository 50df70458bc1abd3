//! Contact-centre reports: agent performance, queue service quality and interaction volume by
//! channel and hour of day, per day, week or month (UTC), as JSON, CSV or an SVG chart, on
//! request (`GET /api/v1/reports/{report}`, [`api`]) or written on a schedule under the data
//! directory ([`schedule`]).
//!
//! Figures come from the stored contact-centre journal, never from live counters: the routing
//! events are folded by [`crate::routing::metrics::Metrics`], the fold the live metrics use, so
//! a report and `/api/v1/metrics/...` over the same window agree.

pub mod api;
pub mod compute;
pub mod period;
pub mod render;
pub mod schedule;

pub use compute::Table;
pub use period::{Bucket, Period};

use crate::routing::{AgentId, Channel, NewInteraction, QueueId, RoutingEvent};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use switchboard_storage::{Storage, StorageError};

/// Which report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportKind {
    /// Agent performance: handled, AHT, occupancy, missed offers, CSAT.
    Agents,
    /// Queue service quality: offered, answered, abandoned, service level, ASA, AHT, CSAT.
    Queues,
    /// Interaction volume by channel and hour of day.
    Volume,
}

impl ReportKind {
    /// Every report.
    pub const ALL: [ReportKind; 3] = [ReportKind::Agents, ReportKind::Queues, ReportKind::Volume];

    /// Parses `agents`, `queues` or `volume`.
    pub fn parse(s: &str) -> Option<ReportKind> {
        ReportKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Its name in URLs and file names.
    pub fn as_str(self) -> &'static str {
        match self {
            ReportKind::Agents => "agents",
            ReportKind::Queues => "queues",
            ReportKind::Volume => "volume",
        }
    }

    /// A human title.
    pub fn title(self) -> &'static str {
        match self {
            ReportKind::Agents => "Agent performance",
            ReportKind::Queues => "Queue service quality",
            ReportKind::Volume => "Interaction volume by channel and hour (UTC)",
        }
    }
}

/// Queue and agent names by id (the rows of a report, in this order).
#[derive(Clone, Debug, Default)]
pub struct Names {
    /// Queues.
    pub queues: Vec<(QueueId, String)>,
    /// Agents.
    pub agents: Vec<(AgentId, String)>,
}

impl Names {
    /// From the routing actor's `Names` answer (`{"queues": {"1": "billing"}, "agents": …}`),
    /// sorted by name.
    pub fn from_json(v: &Value) -> Names {
        fn pairs(v: &Value) -> Vec<(u32, String)> {
            let mut out: Vec<(u32, String)> = v
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(k, v)| Some((k.parse().ok()?, v.as_str()?.to_owned())))
                .collect();
            out.sort_by(|a, b| a.1.cmp(&b.1));
            out
        }
        Names {
            queues: pairs(&v["queues"])
                .into_iter()
                .map(|(i, n)| (QueueId(i), n))
                .collect(),
            agents: pairs(&v["agents"])
                .into_iter()
                .map(|(i, n)| (AgentId(i), n))
                .collect(),
        }
    }
}

/// What to compute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    /// The report.
    pub kind: ReportKind,
    /// Row length.
    pub period: Period,
    /// Start (inclusive, epoch ms).
    pub from: u64,
    /// End (exclusive, epoch ms).
    pub to: u64,
    /// The X of service level X (ms).
    pub service_level_ms: u64,
}

/// A computed report.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// What was asked.
    pub query: Query,
    /// The periods, in order.
    pub buckets: Vec<Bucket>,
    /// The figures.
    pub table: Table,
}

/// Why a report could not be made.
#[derive(Debug)]
pub enum ReportError {
    /// A query field is wrong (the field, the reason).
    Bad(&'static str, String),
    /// The database failed.
    Storage(StorageError),
}

impl std::fmt::Display for ReportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReportError::Bad(field, why) => write!(f, "{field}: {why}"),
            ReportError::Storage(e) => write!(f, "{e}"),
        }
    }
}

/// Reads the journal and computes `q`.
pub async fn generate(storage: &Storage, names: &Names, q: &Query) -> Result<Report, ReportError> {
    if q.from > q.to {
        return Err(ReportError::Bad("from", "must not be after `to`".into()));
    }
    let buckets = q.period.buckets(q.from, q.to).ok_or_else(|| {
        ReportError::Bad("from", format!("more than {} periods", period::MAX_BUCKETS))
    })?;
    let before = Some(i64::try_from(q.to).unwrap_or(i64::MAX));
    let mut routing = Vec::new();
    let mut created = Vec::new();
    match q.kind {
        ReportKind::Agents | ReportKind::Queues => {
            let rows = storage
                .contact_events(Some(crate::contact::journal::STREAM_ROUTING), before)
                .await
                .map_err(ReportError::Storage)?;
            for r in rows {
                match serde_json::from_str::<RoutingEvent>(&r.body) {
                    Ok(e) => routing.push(e),
                    Err(e) => tracing::warn!(seq = r.seq, error = %e, "unreadable routing event"),
                }
            }
        }
        ReportKind::Volume => {
            let rows = storage
                .contact_events(Some(crate::contact::journal::STREAM_INTERACTION), before)
                .await
                .map_err(ReportError::Storage)?;
            for r in rows {
                let Ok(at) = u64::try_from(r.at_ms) else {
                    continue;
                };
                match serde_json::from_str::<NewInteraction>(&r.body) {
                    Ok(n) if at >= q.from => created.push((at, n.channel)),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(seq = r.seq, error = %e, "unreadable interaction"),
                }
            }
        }
    }
    let mut csat = Vec::new();
    if matches!(q.kind, ReportKind::Agents | ReportKind::Queues) {
        let from = i64::try_from(q.from).unwrap_or(i64::MAX);
        let to = i64::try_from(q.to).unwrap_or(i64::MAX);
        for c in storage
            .csat_scores(from, to)
            .await
            .map_err(ReportError::Storage)?
        {
            if let Ok(at) = u64::try_from(c.at_ms) {
                csat.push(compute::CsatPoint {
                    at,
                    agent: c.agent,
                    queue: c.queue,
                    score: c.score,
                });
            }
        }
    }
    // The fold needs time order; the journal is in append order, which is the router's order.
    let inputs = compute::Inputs {
        routing: &routing,
        created: &created,
        csat: &csat,
    };
    let table = compute::table(q.kind, &buckets, q.service_level_ms, names, &inputs);
    Ok(Report {
        query: q.clone(),
        buckets,
        table,
    })
}

impl Report {
    /// The JSON document: the query, then `rows` as objects keyed by column.
    pub fn to_json(&self) -> Value {
        let rows: Vec<Value> = self
            .table
            .rows
            .iter()
            .map(|r| {
                let m: Map<String, Value> = self
                    .table
                    .columns
                    .iter()
                    .zip(r)
                    .map(|(c, v)| ((*c).to_string(), v.clone()))
                    .collect();
                Value::Object(m)
            })
            .collect();
        serde_json::json!({
            "report": self.query.kind.as_str(),
            "period": self.query.period.as_str(),
            "from_ms": self.query.from,
            "to_ms": self.query.to,
            "service_level_secs": self.query.service_level_ms / 1000,
            "columns": self.table.columns,
            "rows": rows,
        })
    }
}

/// Channel names in the volume report's column order.
pub fn channel_names() -> [&'static str; 4] {
    Channel::ALL.map(Channel::as_str)
}
