//! Queue and agent metrics, folded from immutable [`RoutingEvent`]s, with Amazon Connect's
//! definitions:
//!
//! * **Service level X**: contacts answered within X ÷ (contacts answered + contacts abandoned),
//!   counted over answers and abandons that happened in the window. Abandons at any wait are in
//!   the denominator; callbacks are neither (they are answered later, then counted).
//! * **ASA** (average queue answer time): mean wait of answered contacts, from entering routing
//!   (so across overflow steps) to the agent accepting.
//! * **Abandon rate**: contacts abandoned ÷ contacts queued. Callbacks are not abandons.
//! * **AHT** (average handle time): mean of accept → end of after-contact work, so talk, hold and
//!   wrap-up are all in; counted for contacts whose wrap-up ended in the window.
//! * **Occupancy**: time on contact (reserved, busy, wrap-up) ÷ (time on contact + idle time);
//!   break and offline time is in neither.
//!
//! The same fold serves live dashboards (feed events as they come, report with `to = now`) and
//! history (replay stored events), so both give the same figures.

use crate::routing::agent::AgentStatus;
use crate::routing::events::{EventKind, OfferOutcome, RoutingEvent};
use crate::routing::ids::{AgentId, InteractionId, QueueId};
use std::collections::{BTreeMap, HashMap};

/// The window and thresholds of a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricsWindow {
    /// Start (inclusive, ms).
    pub from: u64,
    /// End (exclusive, ms); open status intervals are closed here.
    pub to: u64,
    /// The X of service level X, in ms.
    pub service_level_ms: u64,
}

/// Figures for one queue.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueueMetrics {
    /// Contacts that joined the queue.
    pub queued: u64,
    /// Contacts answered from it.
    pub answered: u64,
    /// Of those, answered within the service-level threshold.
    pub answered_within: u64,
    /// Contacts abandoned in it.
    pub abandoned: u64,
    /// Callbacks requested in it.
    pub callbacks: u64,
    /// Contacts that left it without an agent (max wait, empty queue).
    pub exited: u64,
    /// Contacts whose after-contact work ended.
    pub handled: u64,
    /// Total wait of answered contacts (ms).
    pub answer_wait_ms: u64,
    /// Total handle time (ms).
    pub handle_ms: u64,
    /// Total hold time of handled contacts (ms).
    pub hold_ms: u64,
    /// Total wrap-up time of handled contacts (ms).
    pub wrap_ms: u64,
}

impl QueueMetrics {
    /// Service level X, 0..=1.
    pub fn service_level(&self) -> Option<f64> {
        ratio(self.answered_within, self.answered + self.abandoned)
    }

    /// Average speed of answer (ms).
    pub fn asa_ms(&self) -> Option<f64> {
        ratio(self.answer_wait_ms, self.answered)
    }

    /// Abandon rate, 0..=1.
    pub fn abandon_rate(&self) -> Option<f64> {
        ratio(self.abandoned, self.queued)
    }

    /// Average handle time (ms), hold and wrap-up included.
    pub fn aht_ms(&self) -> Option<f64> {
        ratio(self.handle_ms, self.handled)
    }

    /// Average hold time per handled contact (ms).
    pub fn avg_hold_ms(&self) -> Option<f64> {
        ratio(self.hold_ms, self.handled)
    }

    /// Average after-contact work per handled contact (ms).
    pub fn avg_wrap_ms(&self) -> Option<f64> {
        ratio(self.wrap_ms, self.handled)
    }
}

/// Figures for one agent.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AgentMetrics {
    /// Contacts whose after-contact work ended.
    pub handled: u64,
    /// Offers that timed out.
    pub missed: u64,
    /// Total handle time (ms).
    pub handle_ms: u64,
    /// Time reserved, busy or in wrap-up (ms).
    pub on_contact_ms: u64,
    /// Time available and idle (ms).
    pub idle_ms: u64,
}

impl AgentMetrics {
    /// Occupancy, 0..=1.
    pub fn occupancy(&self) -> Option<f64> {
        ratio(self.on_contact_ms, self.on_contact_ms + self.idle_ms)
    }

    /// Average handle time (ms).
    pub fn aht_ms(&self) -> Option<f64> {
        ratio(self.handle_ms, self.handled)
    }
}

fn ratio(num: u64, den: u64) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

#[derive(Clone, Copy, Debug, Default)]
struct Contact {
    answered_at: Option<u64>,
    hold_since: Option<u64>,
    hold_ms: u64,
    wrap_at: Option<u64>,
}

/// The fold. Feed every event in order (also those before the window: they open the intervals
/// and contacts that end inside it).
#[derive(Clone, Debug)]
pub struct Metrics {
    window: MetricsWindow,
    queues: BTreeMap<QueueId, QueueMetrics>,
    agents: BTreeMap<AgentId, AgentMetrics>,
    contacts: HashMap<InteractionId, Contact>,
    status: HashMap<AgentId, (AgentStatus, u64)>,
}

impl Metrics {
    /// An empty fold for `window`.
    pub fn new(window: MetricsWindow) -> Metrics {
        Metrics {
            window,
            queues: BTreeMap::new(),
            agents: BTreeMap::new(),
            contacts: HashMap::new(),
            status: HashMap::new(),
        }
    }

    /// Folds a whole log.
    pub fn compute<'a>(
        events: impl IntoIterator<Item = &'a RoutingEvent>,
        window: MetricsWindow,
    ) -> Metrics {
        let mut m = Metrics::new(window);
        for e in events {
            m.apply(e);
        }
        m
    }

    fn in_window(&self, at: u64) -> bool {
        at >= self.window.from && at < self.window.to
    }

    /// Folds one event.
    pub fn apply(&mut self, e: &RoutingEvent) {
        let at = e.at;
        let inside = self.in_window(at);
        match &e.kind {
            EventKind::Queued { queue, .. } if inside => self.queue(*queue).queued += 1,
            EventKind::Answered {
                interaction,
                queue,
                waited_ms,
                ..
            } => {
                self.contacts.entry(*interaction).or_default().answered_at = Some(at);
                if inside {
                    let sl = self.window.service_level_ms;
                    let q = self.queue(*queue);
                    q.answered += 1;
                    q.answer_wait_ms += waited_ms;
                    if *waited_ms <= sl {
                        q.answered_within += 1;
                    }
                }
            }
            EventKind::Abandoned {
                interaction, queue, ..
            } => {
                self.contacts.remove(interaction);
                if let (true, Some(q)) = (inside, queue) {
                    self.queue(*q).abandoned += 1;
                }
            }
            EventKind::CallbackRequested { queue, .. } if inside => {
                self.queue(*queue).callbacks += 1
            }
            EventKind::Exited {
                interaction, queue, ..
            } => {
                self.contacts.remove(interaction);
                if let (true, Some(q)) = (inside, queue) {
                    self.queue(*q).exited += 1;
                }
            }
            EventKind::HoldStarted { interaction } => {
                self.contacts.entry(*interaction).or_default().hold_since = Some(at);
            }
            EventKind::HoldEnded { interaction } => {
                let c = self.contacts.entry(*interaction).or_default();
                if let Some(s) = c.hold_since.take() {
                    c.hold_ms += at.saturating_sub(s);
                }
            }
            EventKind::WrapUpStarted { interaction, .. } => {
                self.contacts.entry(*interaction).or_default().wrap_at = Some(at);
            }
            EventKind::Completed {
                interaction,
                agent,
                queue,
                ..
            } => {
                let c = self.contacts.remove(interaction).unwrap_or_default();
                if inside {
                    let handle = c.answered_at.map_or(0, |a| at.saturating_sub(a));
                    let wrap = c.wrap_at.map_or(0, |w| at.saturating_sub(w));
                    if let Some(q) = queue {
                        let q = self.queue(*q);
                        q.handled += 1;
                        q.handle_ms += handle;
                        q.hold_ms += c.hold_ms;
                        q.wrap_ms += wrap;
                    }
                    let a = self.agent(*agent);
                    a.handled += 1;
                    a.handle_ms += handle;
                }
            }
            EventKind::OfferEnded {
                agent,
                outcome: OfferOutcome::TimedOut,
                ..
            } if inside => self.agent(*agent).missed += 1,
            EventKind::AgentStatus { agent, status } => {
                self.close_status(*agent, at);
                self.status.insert(*agent, (status.clone(), at));
            }
            _ => {}
        }
    }

    /// Adds the time since the agent's last status change, clipped to the window.
    fn close_status(&mut self, agent: AgentId, at: u64) {
        let Some((status, since)) = self.status.get(&agent).cloned() else {
            return;
        };
        let from = since.max(self.window.from);
        let to = at.min(self.window.to);
        if to <= from {
            return;
        }
        let d = to - from;
        let m = self.agent(agent);
        match status {
            AgentStatus::Available => m.idle_ms += d,
            AgentStatus::Busy | AgentStatus::WrapUp | AgentStatus::Reserved => m.on_contact_ms += d,
            AgentStatus::Offline | AgentStatus::Break { .. } => {}
        }
    }

    fn queue(&mut self, q: QueueId) -> &mut QueueMetrics {
        self.queues.entry(q).or_default()
    }

    fn agent(&mut self, a: AgentId) -> &mut AgentMetrics {
        self.agents.entry(a).or_default()
    }

    /// Queue figures so far.
    pub fn queue_metrics(&self, q: QueueId) -> QueueMetrics {
        self.queues.get(&q).cloned().unwrap_or_default()
    }

    /// Agent figures, with the current status interval closed at the window's end.
    pub fn agent_metrics(&self, a: AgentId) -> AgentMetrics {
        let mut m = self.agents.get(&a).cloned().unwrap_or_default();
        if let Some((status, since)) = self.status.get(&a) {
            let from = (*since).max(self.window.from);
            let d = self.window.to.saturating_sub(from);
            match status {
                AgentStatus::Available => m.idle_ms += d,
                AgentStatus::Busy | AgentStatus::WrapUp | AgentStatus::Reserved => {
                    m.on_contact_ms += d
                }
                AgentStatus::Offline | AgentStatus::Break { .. } => {}
            }
        }
        m
    }

    /// Every queue seen.
    pub fn queues(&self) -> impl Iterator<Item = (&QueueId, &QueueMetrics)> {
        self.queues.iter()
    }
}
