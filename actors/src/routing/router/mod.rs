//! The router: a sans-IO state machine that owns agents, queues and waiting interactions and
//! decides who gets what.
//!
//! # Driving it
//!
//! ```text
//! loop {
//!     router.handle(now, input)?;              // 1. feed an input (or Input::Tick)
//!     while let Some(out) = router.poll_output() {
//!         carry_out(out);                      // 2. drain every output, in order
//!     }
//!     sleep_until(router.poll_timeout());      // 3. wake at the next deadline, send Input::Tick
//! }
//! ```
//!
//! * `now` is milliseconds on any monotonic clock the caller chooses; the router never reads a
//!   clock. A `now` smaller than a previous one is taken as the previous one.
//! * Every `handle` first fires the timers due at `now` (step timeouts, offer expiries, wrap-up
//!   ends, queue delays and max waits), oldest first and at most `RouterConfig::timer_batch` of
//!   them, then applies the input. `Input::Tick` does only the first. When more were due,
//!   `poll_timeout` returns a time not after `now`: tick again at once.
//! * Outputs are produced in causal order and must be drained before the next `handle` if the
//!   caller cares about interleaving; they are never dropped.
//! * `poll_timeout` may return a deadline whose timer has gone stale; ticking then is harmless.
//!
//! Errors from `handle` concern the input only (unknown ids, illegal transitions, a full queue);
//! the router's state is unchanged by a refused input.

mod classes;
mod lifecycle;
mod select;
mod steps;
mod timers;

use crate::routing::agent::{Agent, AgentSpec, Presence};
use crate::routing::bitset::Bitset;
use crate::routing::events::{Explanation, RoutingEvent};
use crate::routing::ids::{AgentId, Channel, InteractionId, QueueId};
use crate::routing::interaction::{Interaction, NewInteraction, TransitionError};
use crate::routing::queue::{Queue, QueueConfig, QueueEvent};
use crate::routing::rng::Rng;
use crate::routing::vocab::Vocabulary;
use crate::routing::workflow::{Step, Workflow, WorkflowError, WorkflowSpec};
use classes::Classes;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use timers::Timers;

pub use crate::routing::agent::AgentStatus;

/// Router settings.
#[derive(Clone, Debug)]
pub struct RouterConfig {
    /// Seed of the `random` ordering.
    pub seed: u64,
    /// How many passed-over agents a decision lists (0: none, cheaper).
    pub explain_skipped: usize,
    /// How far into a lane an agent looks past interactions it cannot take (rejected by it,
    /// delay not reached, target reading the interaction false).
    pub scan_limit: usize,
    /// Most agents a voice ring-all step rings at once.
    pub ring_all_limit: usize,
    /// Whether to emit [`Output::Explain`].
    pub explanations: bool,
    /// The break reason set by auto-pause.
    pub auto_pause_reason: String,
    /// Live interactions to reserve room for (avoids rehashing a large table mid-run).
    pub expected_interactions: usize,
    /// Most timers one `handle` fires, so a burst of simultaneous deadlines is spread over
    /// several calls instead of stalling one; `poll_timeout` then returns a time already past.
    pub timer_batch: usize,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            seed: 0x5eed,
            explain_skipped: 8,
            scan_limit: 64,
            ring_all_limit: 32,
            explanations: true,
            auto_pause_reason: "missed-offers".into(),
            expected_interactions: 0,
            timer_batch: 256,
        }
    }
}

/// What the router is told.
#[derive(Clone, Debug)]
pub enum Input {
    /// A new agent (starts offline).
    AddAgent(AgentSpec),
    /// New skills, languages, capacity or profile for a known agent; work and figures are kept.
    UpdateAgent(AgentSpec),
    /// Forget an agent that holds no work.
    RemoveAgent(AgentId),
    /// Log in, log out, go on or come back from break (agent or supervisor).
    SetPresence {
        /// The agent.
        agent: AgentId,
        /// The new presence.
        presence: Presence,
    },
    /// A new interaction to route.
    Enqueue(NewInteraction),
    /// The agent accepts an offer.
    Accept {
        /// The interaction.
        interaction: InteractionId,
        /// The agent.
        agent: AgentId,
    },
    /// The agent rejects an offer; it goes to the next agent.
    Reject {
        /// The interaction.
        interaction: InteractionId,
        /// The agent.
        agent: AgentId,
    },
    /// Hold on or off during the conversation.
    Hold {
        /// The interaction.
        interaction: InteractionId,
        /// On hold?
        on: bool,
    },
    /// The conversation ended (either side hung up / closed); after-contact work starts.
    Complete {
        /// The interaction.
        interaction: InteractionId,
    },
    /// The agent ends after-contact work, with a disposition code.
    EndWrapUp {
        /// The interaction.
        interaction: InteractionId,
        /// The disposition code (checked against the queue's list when it has one).
        disposition: Option<String>,
    },
    /// The customer left before being served.
    Abandon {
        /// The interaction.
        interaction: InteractionId,
    },
    /// The customer asks to be called back at `number`; the place in line is kept.
    RequestCallback {
        /// The interaction.
        interaction: InteractionId,
        /// Where to call back.
        number: String,
    },
    /// The agent transfers an assigned interaction to a queue; it continues as `new_id`.
    Transfer {
        /// The interaction.
        interaction: InteractionId,
        /// The id of the continuation.
        new_id: InteractionId,
        /// The queue it goes to.
        queue: QueueId,
    },
    /// A supervisor moves a waiting interaction to another queue.
    Move {
        /// The interaction.
        interaction: InteractionId,
        /// The queue.
        queue: QueueId,
    },
    /// New priority and age boost for a waiting interaction.
    Reprioritise {
        /// The interaction.
        interaction: InteractionId,
        /// Priority (higher first).
        priority: u32,
        /// Age boost in ms.
        boost_ms: u64,
    },
    /// Only fire due timers.
    Tick,
}

/// Why an offer was withdrawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RescindReason {
    /// Another agent accepted it (ring-all).
    Taken,
    /// The customer left.
    Abandoned,
    /// The offer timed out.
    Expired,
    /// The agent logged out or went on break.
    AgentUnavailable,
}

/// What the router asks its shell to do, or reports.
#[derive(Clone, Debug)]
pub enum Output {
    /// Ring or show the interaction on the agent's desktop until `expires_at`.
    Offer {
        /// The interaction.
        interaction: InteractionId,
        /// The agent.
        agent: AgentId,
        /// The channel (voice: ring the agent's SIP contact).
        channel: Channel,
        /// When the offer lapses.
        expires_at: u64,
    },
    /// Stop ringing / hide the offer.
    Rescind {
        /// The interaction.
        interaction: InteractionId,
        /// The agent.
        agent: AgentId,
        /// Why.
        reason: RescindReason,
    },
    /// Connect the interaction to the agent (bridge the call, join the chat).
    Assigned {
        /// The interaction.
        interaction: InteractionId,
        /// The agent.
        agent: AgentId,
    },
    /// After-contact work started; it ends at `ends_at` unless the agent ends it first.
    WrapUp {
        /// The interaction.
        interaction: InteractionId,
        /// The agent.
        agent: AgentId,
        /// `None`: until the agent ends it.
        ends_at: Option<u64>,
    },
    /// The agent is done with the interaction.
    Completed {
        /// The interaction.
        interaction: InteractionId,
        /// The agent.
        agent: AgentId,
        /// The disposition code.
        disposition: Option<String>,
    },
    /// The interaction left routing without an agent; send it to its fallback.
    Exited {
        /// The interaction.
        interaction: InteractionId,
        /// Why.
        reason: crate::routing::events::ExitReason,
    },
    /// An agent's visible status changed (including auto-pause).
    AgentStatus {
        /// The agent.
        agent: AgentId,
        /// The status.
        status: AgentStatus,
    },
    /// An immutable routing fact (persist it; metrics fold over these).
    Event(RoutingEvent),
    /// A queue changed (persist it; [`Queue::replay`] rebuilds from these).
    Queue {
        /// The queue.
        queue: QueueId,
        /// The change.
        event: QueueEvent,
    },
    /// Why the router did what it did.
    Explain(Explanation),
}

/// A refused input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouterError {
    /// No such agent.
    UnknownAgent(AgentId),
    /// No such live interaction.
    UnknownInteraction(InteractionId),
    /// No such queue.
    UnknownQueue(QueueId),
    /// The agent id is taken.
    DuplicateAgent(AgentId),
    /// The interaction id is taken by a live interaction.
    DuplicateInteraction(InteractionId),
    /// The queue already exists.
    DuplicateQueue(QueueId),
    /// The state machine forbids it.
    Transition(TransitionError),
    /// The interaction is not offered to this agent.
    NotOffered(InteractionId, AgentId),
    /// The agent still holds work.
    AgentBusy(AgentId),
    /// The disposition code is not in the queue's list.
    Disposition(String),
    /// No filter matched, there is no default queue, or every step refused it (full / empty).
    NoRoute(InteractionId),
}

impl fmt::Display for RouterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouterError::UnknownAgent(a) => write!(f, "unknown agent {a}"),
            RouterError::UnknownInteraction(i) => write!(f, "unknown interaction {i}"),
            RouterError::UnknownQueue(q) => write!(f, "unknown queue {q}"),
            RouterError::DuplicateAgent(a) => write!(f, "agent {a} exists"),
            RouterError::DuplicateInteraction(i) => write!(f, "interaction {i} exists"),
            RouterError::DuplicateQueue(q) => write!(f, "queue {q} exists"),
            RouterError::Transition(t) => t.fmt(f),
            RouterError::NotOffered(i, a) => write!(f, "{i} is not offered to {a}"),
            RouterError::AgentBusy(a) => write!(f, "agent {a} holds work"),
            RouterError::Disposition(d) => write!(f, "unknown disposition code `{d}`"),
            RouterError::NoRoute(i) => write!(f, "no queue would take {i}"),
        }
    }
}

impl std::error::Error for RouterError {}

impl From<TransitionError> for RouterError {
    fn from(t: TransitionError) -> Self {
        RouterError::Transition(t)
    }
}

/// A queue with the router's indices.
#[derive(Debug)]
struct QueueSlot {
    queue: Queue,
    /// Agents with this queue in their profile, one set per distinct delay, ascending delay.
    members: Vec<(u64, Bitset)>,
    /// Profile members not offline.
    staffed: u32,
    /// Last agent slot chosen by round-robin.
    rr_cursor: usize,
    /// The implicit step used when an interaction names this queue.
    direct: Step,
}

/// The routing core. See the module documentation for the call order.
pub struct Router {
    cfg: RouterConfig,
    now: u64,
    vocab: Vocabulary,
    /// Every workflow ever set; the last is current. Interactions keep the version they started.
    workflows: Vec<Workflow>,
    classes: Classes,
    agents: Vec<Agent>,
    agent_slots: HashMap<AgentId, u32>,
    /// Slots of agents not removed.
    live: Bitset,
    /// Per channel: agents that may be offered one more interaction on it now.
    open: [Bitset; 4],
    /// Per agent slot, the ordering figures (idle since, talk ms, handled), mirrored from
    /// `Agent::stats` by `refresh_agent` so candidate ordering reads contiguous memory.
    figures: Vec<[u64; 3]>,
    queues: Vec<QueueSlot>,
    queue_slots: HashMap<QueueId, u32>,
    interactions: HashMap<InteractionId, Interaction>,
    timers: Timers,
    out: VecDeque<Output>,
    rng: Rng,
    decisions: u64,
}

impl Router {
    /// An empty router.
    pub fn new(cfg: RouterConfig) -> Router {
        Router {
            rng: Rng::new(cfg.seed),
            now: 0,
            vocab: Vocabulary::default(),
            workflows: vec![Workflow::default()],
            classes: Classes::new(),
            agents: Vec::new(),
            agent_slots: HashMap::new(),
            live: Bitset::new(),
            open: Default::default(),
            figures: Vec::new(),
            queues: Vec::new(),
            queue_slots: HashMap::new(),
            interactions: HashMap::with_capacity(cfg.expected_interactions),
            timers: Timers::default(),
            out: VecDeque::new(),
            decisions: 0,
            cfg,
        }
    }

    /// Adds a queue. Queues are never removed (interactions and workflows refer to them).
    pub fn add_queue(&mut self, id: QueueId, config: QueueConfig) -> Result<(), RouterError> {
        if self.queue_slots.contains_key(&id) {
            return Err(RouterError::DuplicateQueue(id));
        }
        let slot = self.queues.len() as u32;
        self.queues.push(QueueSlot {
            queue: Queue::new(id, config),
            members: Vec::new(),
            staffed: 0,
            rr_cursor: usize::MAX,
            direct: Step::direct(slot),
        });
        self.queue_slots.insert(id, slot);
        // Agents added before the queue may already list it.
        for s in self.live.iter().collect::<Vec<_>>() {
            if self.agents[s].profile.iter().any(|p| p.queue == id) {
                self.index_profile_queue(s, slot);
            }
        }
        Ok(())
    }

    /// Changes a queue's settings (limits apply to later joins).
    pub fn configure_queue(&mut self, id: QueueId, config: QueueConfig) -> Result<(), RouterError> {
        let slot = *self
            .queue_slots
            .get(&id)
            .ok_or(RouterError::UnknownQueue(id))?;
        self.queues[slot as usize].queue.config = config;
        Ok(())
    }

    /// Compiles and installs a workflow. Interactions already routed finish under the workflow
    /// they started with; new ones use this one.
    pub fn set_workflow(&mut self, spec: &WorkflowSpec) -> Result<(), WorkflowError> {
        let wf = steps::compile_workflow(self, spec)?;
        self.workflows.push(wf);
        Ok(())
    }

    /// Feeds one input at time `now` (ms). See the module docs for the call order.
    pub fn handle(&mut self, now: u64, input: Input) -> Result<(), RouterError> {
        self.now = self.now.max(now);
        self.fire_timers();
        lifecycle::dispatch(self, input)
    }

    /// The next output, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When to call `handle(…, Input::Tick)` next.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.timers.next()
    }

    /// The router's current time (the largest `now` seen).
    pub fn now(&self) -> u64 {
        self.now
    }

    /// A live interaction (terminal ones are dropped once no agent works on them).
    pub fn interaction(&self, id: InteractionId) -> Option<&Interaction> {
        self.interactions.get(&id)
    }

    /// An agent.
    pub fn agent(&self, id: AgentId) -> Option<&Agent> {
        self.agent_slots.get(&id).map(|&s| &self.agents[s as usize])
    }

    /// A queue.
    pub fn queue(&self, id: QueueId) -> Option<&Queue> {
        self.queue_slots
            .get(&id)
            .map(|&s| &self.queues[s as usize].queue)
    }

    /// Place in line (1-based) and estimated wait of a waiting interaction.
    pub fn position(&self, id: InteractionId) -> Option<(usize, Option<u64>)> {
        let slot = self.interactions.get(&id)?.route.queue_slot? as usize;
        let qs = &self.queues[slot];
        let pos = qs.queue.position(id)?;
        Some((pos, qs.queue.estimated_wait_ms(id, qs.staffed)))
    }

    /// Live interactions held.
    pub fn interaction_count(&self) -> usize {
        self.interactions.len()
    }

    /// Routing decisions made so far (offers and "no agent, wait" verdicts): a gauge.
    pub fn decisions(&self) -> u64 {
        self.decisions
    }

    /// Pending timers (stale ones included): for tests and gauges.
    pub fn timer_count(&self) -> usize {
        self.timers.len()
    }

    /// The skill and language names known.
    pub fn vocabulary(&self) -> &Vocabulary {
        &self.vocab
    }

    fn push(&mut self, o: Output) {
        self.out.push_back(o);
    }

    fn event(&mut self, kind: crate::routing::events::EventKind) {
        let at = self.now;
        self.out.push_back(Output::Event(RoutingEvent { at, kind }));
    }

    fn explain(&mut self, e: Explanation) {
        if self.cfg.explanations {
            self.out.push_back(Output::Explain(e));
        }
    }

    fn queue_event(&mut self, slot: u32, event: QueueEvent) {
        let queue = self.queues[slot as usize].queue.id;
        self.out.push_back(Output::Queue { queue, event });
    }

    fn agent_slot(&self, id: AgentId) -> Result<u32, RouterError> {
        self.agent_slots
            .get(&id)
            .copied()
            .ok_or(RouterError::UnknownAgent(id))
    }

    fn queue_slot(&self, id: QueueId) -> Result<u32, RouterError> {
        self.queue_slots
            .get(&id)
            .copied()
            .ok_or(RouterError::UnknownQueue(id))
    }

    /// Recomputes an agent's open bits and reports a status change.
    fn refresh_agent(&mut self, slot: u32) {
        let s = slot as usize;
        let a = &self.agents[s];
        if self.figures.len() <= s {
            self.figures.resize(s + 1, [0; 3]);
        }
        self.figures[s] = [a.stats.idle_since, a.stats.talk_ms, a.stats.handled];
        for ch in Channel::ALL {
            let on = self.live.contains(s) && a.is_open_for(ch);
            self.open[ch.index()].set(s, on);
        }
        let status = a.status();
        if status != a.last_status {
            let agent = a.id;
            self.agents[s].last_status = status.clone();
            self.push(Output::AgentStatus {
                agent,
                status: status.clone(),
            });
            self.event(crate::routing::events::EventKind::AgentStatus { agent, status });
        }
    }

    /// Adds (`on`) or removes the agent from the member sets of every queue in its profile,
    /// keeping the staffed counts.
    fn index_profile(&mut self, slot: usize, on: bool) {
        let qslots: Vec<u32> = self.agents[slot]
            .profile
            .iter()
            .filter_map(|p| self.queue_slots.get(&p.queue).copied())
            .collect();
        for q in qslots {
            if on {
                self.index_profile_queue(slot, q);
            } else {
                self.unindex_profile_queue(slot, q);
            }
        }
    }

    fn index_profile_queue(&mut self, slot: usize, q: u32) {
        let a = &self.agents[slot];
        let qid = self.queues[q as usize].queue.id;
        let Some(entry) = a.profile.iter().find(|p| p.queue == qid) else {
            return;
        };
        let staffed = a.presence != Presence::Offline;
        let qs = &mut self.queues[q as usize];
        let i = match qs.members.binary_search_by_key(&entry.delay_ms, |m| m.0) {
            Ok(i) => i,
            Err(i) => {
                qs.members.insert(i, (entry.delay_ms, Bitset::new()));
                i
            }
        };
        if !qs.members[i].1.contains(slot) {
            qs.members[i].1.insert(slot);
            if staffed {
                qs.staffed += 1;
            }
        }
    }

    fn unindex_profile_queue(&mut self, slot: usize, q: u32) {
        let staffed = self.agents[slot].presence != Presence::Offline;
        let qs = &mut self.queues[q as usize];
        for (_, set) in &mut qs.members {
            if set.contains(slot) {
                set.remove(slot);
                if staffed {
                    qs.staffed = qs.staffed.saturating_sub(1);
                }
            }
        }
    }
}

#[cfg(test)]
impl Router {
    /// Panics if the indices disagree with the state they mirror (for randomised tests).
    pub(crate) fn check_invariants(&self) {
        use crate::routing::agent::WorkPhase;
        use crate::routing::interaction::InteractionState as S;
        for (s, a) in self.agents.iter().enumerate() {
            for ch in Channel::ALL {
                let n = a.work.iter().filter(|w| w.channel == ch).count() as u32;
                assert_eq!(a.load.count[ch.index()], n, "{} load on {ch}", a.id);
                let open = self.live.contains(s) && a.is_open_for(ch);
                assert_eq!(
                    self.open[ch.index()].contains(s),
                    open,
                    "{} open for {ch}",
                    a.id
                );
            }
            assert_eq!(self.figures[s][0], a.stats.idle_since, "{} figures", a.id);
            for w in &a.work {
                let it = self.interactions.get(&w.interaction);
                match w.phase {
                    WorkPhase::Offered => {
                        let it = it
                            .unwrap_or_else(|| panic!("{} offered a dead {}", a.id, w.interaction));
                        assert_eq!(it.state, S::Offered);
                        assert!(it.route.offered_to.contains(&(s as u32)));
                    }
                    WorkPhase::Active => {
                        let it =
                            it.unwrap_or_else(|| panic!("{} works a dead {}", a.id, w.interaction));
                        assert_eq!(it.state, S::Assigned);
                        assert_eq!(it.agent, Some(a.id));
                    }
                    WorkPhase::WrapUp { .. } => {
                        if let Some(it) = it {
                            assert!(matches!(it.state, S::Wrapping | S::Transferred));
                        }
                    }
                }
            }
        }
        let mut held = vec![0usize; self.queues.len()];
        for (id, it) in &self.interactions {
            match it.state {
                S::Queued | S::Callback | S::Offered => {
                    let q = it
                        .route
                        .queue_slot
                        .unwrap_or_else(|| panic!("{id} has no queue"));
                    held[q as usize] += 1;
                    let queue = &self.queues[q as usize].queue;
                    assert!(queue.contains(*id), "{id} not in its queue");
                    assert_eq!(
                        queue.position(*id).is_some(),
                        it.state != S::Offered,
                        "{id} in line"
                    );
                    if it.state == S::Offered {
                        assert!(!it.route.offered_to.is_empty());
                        for &s in &it.route.offered_to {
                            let w = self.agents[s as usize]
                                .work
                                .iter()
                                .find(|w| w.interaction == *id);
                            assert_eq!(w.map(|w| w.phase), Some(WorkPhase::Offered), "{id} offer");
                        }
                    }
                }
                S::Assigned | S::Wrapping | S::Transferred => {}
                S::Completed | S::Abandoned => panic!("{id} terminal but kept"),
            }
        }
        for (q, qs) in self.queues.iter().enumerate() {
            assert_eq!(qs.queue.held(), held[q], "queue {} held", qs.queue.id);
            let staffed = self
                .live
                .iter()
                .filter(|&s| {
                    let a = &self.agents[s];
                    a.presence != Presence::Offline
                        && a.profile.iter().any(|p| p.queue == qs.queue.id)
                })
                .count() as u32;
            assert_eq!(qs.staffed, staffed, "queue {} staffed", qs.queue.id);
        }
    }
}
