//! Agents: presence, derived status, skills, languages, routing profile, capacity, statistics.

use crate::routing::capacity::{Capacity, Load};
use crate::routing::expr::AgentView;
use crate::routing::ids::{AgentId, Channel, InteractionId, QueueId};
use crate::routing::vocab::{LangId, Vocabulary};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What the agent (or a supervisor) chose.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Presence {
    /// Logged out.
    Offline,
    /// Ready for work.
    Available,
    /// Paused, with a reason code (lunch, training, `missed-offers`…).
    Break {
        /// The reason code.
        reason: String,
    },
}

/// The status others see: presence, overridden by the work in hand.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentStatus {
    /// Logged out.
    Offline,
    /// Idle and ready.
    Available,
    /// Paused with a reason.
    Break {
        /// The reason code.
        reason: String,
    },
    /// Working on at least one interaction.
    Busy,
    /// Only after-contact work in hand.
    WrapUp,
    /// Only offers pending.
    Reserved,
}

/// One line of an Amazon Connect style routing profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileEntry {
    /// The queue served.
    pub queue: QueueId,
    /// 1 is served first; queues of equal priority share by oldest contact.
    pub priority: u32,
    /// The agent takes an interaction from this queue only once it has waited this long.
    #[serde(default)]
    pub delay_ms: u64,
}

/// What the caller gives the router for an agent.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AgentSpec {
    /// Its id.
    pub id: AgentId,
    /// Skills with proficiency 1–5 (values are clamped to 0..=5; 0 means none).
    #[serde(default)]
    pub skills: Vec<(String, u8)>,
    /// Languages spoken (case-insensitive codes).
    #[serde(default)]
    pub languages: Vec<String>,
    /// Free-form attributes targets can read (`attributes.team == "north"`).
    #[serde(default)]
    pub attributes: Value,
    /// Capacity per channel.
    #[serde(default)]
    pub capacity: Capacity,
    /// The queues served.
    pub profile: Vec<ProfileEntry>,
    /// Missing this many offers in a row puts the agent on break (0: never).
    #[serde(default)]
    pub auto_pause_after: u32,
}

/// Phase of one piece of work an agent holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkPhase {
    /// Offered, not yet accepted.
    Offered,
    /// Accepted, in conversation.
    Active,
    /// After-contact work until the given time.
    WrapUp {
        /// When wrap-up ends on its own.
        until: u64,
    },
}

/// One interaction an agent holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Work {
    /// The interaction.
    pub interaction: InteractionId,
    /// Its channel (for capacity).
    pub channel: Channel,
    /// Where it is.
    pub phase: WorkPhase,
    /// When the agent accepted it.
    pub since: u64,
}

/// Running figures the orderings read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AgentStats {
    /// Interactions handled to the end of wrap-up.
    pub handled: u64,
    /// Total conversation time (accept → end), including hold.
    pub talk_ms: u64,
    /// When the agent last became free (an interaction ended or presence became available).
    pub idle_since: u64,
    /// Offers missed in a row.
    pub missed_in_row: u32,
}

/// An agent as the router holds it.
#[derive(Clone, Debug)]
pub struct Agent {
    /// Its id.
    pub id: AgentId,
    /// Proficiency by skill index (0 = none).
    pub skills: Vec<u8>,
    /// Languages spoken.
    pub languages: Vec<LangId>,
    /// Free-form attributes.
    pub attributes: Value,
    /// Capacity.
    pub capacity: Capacity,
    /// Routing profile, sorted by priority.
    pub profile: Vec<ProfileEntry>,
    /// Auto-pause threshold (0: never).
    pub auto_pause_after: u32,
    /// Chosen presence.
    pub presence: Presence,
    /// Work in hand.
    pub work: Vec<Work>,
    /// Load per channel (mirrors `work`).
    pub load: Load,
    /// Figures for the orderings.
    pub stats: AgentStats,
    /// Last status reported.
    pub(crate) last_status: AgentStatus,
}

impl Agent {
    pub(crate) fn new(spec: AgentSpec, vocab: &mut Vocabulary, now: u64) -> Agent {
        let mut a = Agent {
            id: spec.id,
            skills: Vec::new(),
            languages: Vec::new(),
            attributes: Value::Null,
            capacity: Capacity::default(),
            profile: Vec::new(),
            auto_pause_after: 0,
            presence: Presence::Offline,
            work: Vec::new(),
            load: Load::default(),
            stats: AgentStats {
                idle_since: now,
                ..AgentStats::default()
            },
            last_status: AgentStatus::Offline,
        };
        a.apply_spec(spec, vocab);
        a
    }

    /// Replaces the configuration, keeping presence, work and figures.
    pub(crate) fn apply_spec(&mut self, spec: AgentSpec, vocab: &mut Vocabulary) {
        self.skills.clear();
        for (name, level) in &spec.skills {
            let i = vocab.skill(name).0 as usize;
            if self.skills.len() <= i {
                self.skills.resize(i + 1, 0);
            }
            self.skills[i] = (*level).min(5);
        }
        self.languages = spec.languages.iter().map(|l| vocab.lang(l)).collect();
        self.attributes = spec.attributes;
        self.capacity = spec.capacity;
        let mut profile = spec.profile;
        profile.sort_by_key(|p| p.priority);
        profile.dedup_by_key(|p| p.queue);
        self.profile = profile;
        self.auto_pause_after = spec.auto_pause_after;
    }

    /// The status others see.
    pub fn status(&self) -> AgentStatus {
        let has = |f: fn(&WorkPhase) -> bool| self.work.iter().any(|w| f(&w.phase));
        if has(|p| *p == WorkPhase::Active) {
            AgentStatus::Busy
        } else if has(|p| matches!(p, WorkPhase::WrapUp { .. })) {
            AgentStatus::WrapUp
        } else if has(|p| *p == WorkPhase::Offered) {
            AgentStatus::Reserved
        } else {
            match &self.presence {
                Presence::Offline => AgentStatus::Offline,
                Presence::Available => AgentStatus::Available,
                Presence::Break { reason } => AgentStatus::Break {
                    reason: reason.clone(),
                },
            }
        }
    }

    /// Whether the agent may be offered one more interaction on `ch` now.
    pub fn is_open_for(&self, ch: Channel) -> bool {
        self.presence == Presence::Available && self.capacity.can_start(&self.load, ch)
    }

    /// Proficiency in a skill by index.
    pub fn proficiency(&self, skill: usize) -> u8 {
        self.skills.get(skill).copied().unwrap_or(0)
    }

    /// The agent as expressions see it.
    pub fn view(&self) -> AgentView<'_> {
        AgentView {
            id: self.id.0,
            skills: &self.skills,
            languages: &self.languages,
            attributes: &self.attributes,
        }
    }

    pub(crate) fn work_mut(&mut self, id: InteractionId) -> Option<&mut Work> {
        self.work.iter_mut().find(|w| w.interaction == id)
    }

    /// Drops the work item for `id`, releasing its capacity; returns it.
    pub(crate) fn release(&mut self, id: InteractionId) -> Option<Work> {
        let i = self.work.iter().position(|w| w.interaction == id)?;
        let w = self.work.swap_remove(i);
        self.load.remove(w.channel);
        Some(w)
    }
}
