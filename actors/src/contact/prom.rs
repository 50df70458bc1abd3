//! The contact centre's Prometheus figures, from the router's live state and its events.
//!
//! Gauges, refreshed every second by the routing actor: `contact_queue_waiting{queue}`,
//! `contact_queue_oldest_wait_seconds{queue}`, `contact_agents{state}`. Counters, per queue,
//! counted as routing events happen (since the engine started): queued, answered, answered
//! within the service-level threshold, abandoned, and the total answer wait; and the figures
//! derived from them: `contact_service_level_ratio`, `contact_asa_seconds`,
//! `contact_abandon_rate` (use the counters with `rate()` for windows of your own).

use super::directory::Directory;
use super::routing_actor::RoutingActor;
use crate::routing::{AgentStatus, EventKind, RoutingEvent};
use prometheus::{CounterVec, GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry};

/// The registered metrics.
#[derive(Clone)]
pub struct ContactMetrics {
    waiting: IntGaugeVec,
    oldest: GaugeVec,
    agents: IntGaugeVec,
    queued: IntCounterVec,
    answered: IntCounterVec,
    within: IntCounterVec,
    abandoned: IntCounterVec,
    wait: CounterVec,
    service_level: GaugeVec,
    asa: GaugeVec,
    abandon_rate: GaugeVec,
    /// The service-level threshold (ms).
    sl_ms: u64,
}

impl std::fmt::Debug for ContactMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContactMetrics").finish_non_exhaustive()
    }
}

impl ContactMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry, service_level_secs: u64) -> ContactMetrics {
        // Invariant for the expects: static, valid definitions, registered once per registry.
        let q = &["queue"];
        let igv = |n: &str, h: &str, l: &[&str]| {
            IntGaugeVec::new(Opts::new(n, h), l).expect("static metric")
        };
        let gv = |n: &str, h: &str| GaugeVec::new(Opts::new(n, h), q).expect("static metric");
        let icv = |n: &str, h: &str| IntCounterVec::new(Opts::new(n, h), q).expect("static metric");
        let m = ContactMetrics {
            waiting: igv(
                "contact_queue_waiting",
                "Interactions waiting in the queue",
                q,
            ),
            oldest: gv(
                "contact_queue_oldest_wait_seconds",
                "How long the oldest waiting interaction has waited",
            ),
            agents: igv("contact_agents", "Agents by status", &["state"]),
            queued: icv(
                "contact_interactions_queued_total",
                "Interactions that joined the queue",
            ),
            answered: icv(
                "contact_interactions_answered_total",
                "Interactions an agent accepted",
            ),
            within: icv(
                "contact_interactions_answered_within_sl_total",
                "Interactions accepted within the service-level threshold",
            ),
            abandoned: icv(
                "contact_interactions_abandoned_total",
                "Interactions whose customer left before an agent took them",
            ),
            wait: CounterVec::new(
                Opts::new(
                    "contact_answer_wait_seconds_total",
                    "Total wait of answered interactions",
                ),
                q,
            )
            .expect("static metric"),
            service_level: gv(
                "contact_service_level_ratio",
                "Answered within the threshold / (answered + abandoned), since start",
            ),
            asa: gv(
                "contact_asa_seconds",
                "Average speed of answer, since start",
            ),
            abandon_rate: gv(
                "contact_abandon_rate",
                "Abandoned / (answered + abandoned), since start",
            ),
            sl_ms: service_level_secs.saturating_mul(1000),
        };
        let all: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(m.waiting.clone()),
            Box::new(m.oldest.clone()),
            Box::new(m.agents.clone()),
            Box::new(m.queued.clone()),
            Box::new(m.answered.clone()),
            Box::new(m.within.clone()),
            Box::new(m.abandoned.clone()),
            Box::new(m.wait.clone()),
            Box::new(m.service_level.clone()),
            Box::new(m.asa.clone()),
            Box::new(m.abandon_rate.clone()),
        ];
        for c in all {
            if let Err(e) = registry.register(c) {
                tracing::warn!(error = %e, "contact metric not registered");
            }
        }
        m
    }

    /// Counts one routing event (not replayed ones).
    pub(crate) fn count(&self, e: &RoutingEvent, dir: &Directory) {
        let (queue, answered) = match &e.kind {
            EventKind::Queued { queue, .. } => {
                self.queued
                    .with_label_values(&[&dir.queue_name(*queue)])
                    .inc();
                return;
            }
            EventKind::Answered {
                queue, waited_ms, ..
            } => (dir.queue_name(*queue), Some(*waited_ms)),
            EventKind::Abandoned {
                queue: Some(queue), ..
            } => (dir.queue_name(*queue), None),
            _ => return,
        };
        let l = [queue.as_str()];
        match answered {
            Some(waited) => {
                self.answered.with_label_values(&l).inc();
                if waited <= self.sl_ms {
                    self.within.with_label_values(&l).inc();
                }
                self.wait
                    .with_label_values(&l)
                    .inc_by(waited as f64 / 1000.0);
            }
            None => self.abandoned.with_label_values(&l).inc(),
        }
        let answered = self.answered.with_label_values(&l).get() as f64;
        let abandoned = self.abandoned.with_label_values(&l).get() as f64;
        let within = self.within.with_label_values(&l).get() as f64;
        let offered = answered + abandoned;
        if offered > 0.0 {
            self.service_level
                .with_label_values(&l)
                .set(within / offered);
            self.abandon_rate
                .with_label_values(&l)
                .set(abandoned / offered);
        }
        if answered > 0.0 {
            let wait = self.wait.with_label_values(&l).get();
            self.asa.with_label_values(&l).set(wait / answered);
        }
    }
}

impl RoutingActor {
    /// Sets the live gauges from the router's state.
    pub(super) fn refresh_gauges(&self, m: &ContactMetrics) {
        let now = self.now();
        for (name, q) in &self.dir.queues {
            let Some(rq) = self.router.queue(q.id) else {
                continue;
            };
            let entries = rq.entries();
            let oldest = entries
                .iter()
                .filter(|e| !e.reserved)
                .map(|e| e.joined_at)
                .min()
                .map_or(0.0, |t| now.saturating_sub(t) as f64 / 1000.0);
            m.waiting
                .with_label_values(&[name.as_str()])
                .set(rq.len() as i64);
            m.oldest.with_label_values(&[name.as_str()]).set(oldest);
        }
        let mut by_state = [0i64; 6];
        for a in self.dir.agents.values() {
            if let Some(ra) = self.router.agent(a.id) {
                let i = match ra.status() {
                    AgentStatus::Offline => 0,
                    AgentStatus::Available => 1,
                    AgentStatus::Break { .. } => 2,
                    AgentStatus::Busy => 3,
                    AgentStatus::WrapUp => 4,
                    AgentStatus::Reserved => 5,
                };
                by_state[i] += 1;
            }
        }
        for (i, state) in [
            "offline",
            "available",
            "break",
            "busy",
            "wrapup",
            "reserved",
        ]
        .iter()
        .enumerate()
        {
            m.agents.with_label_values(&[state]).set(by_state[i]);
        }
    }
}
