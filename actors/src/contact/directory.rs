//! Names ↔ router ids, and the configuration documents the REST API and storage carry
//! ([`QueueDef`], [`AgentDef`], the workflow with queue names). The router works on dense numeric
//! ids; people and call actors use names.

use super::requests::ContactError;
use crate::routing::{
    AgentId, AgentSpec, Capacity, Channel, ProfileEntry, QueueConfig, QueueId, WorkflowSpec,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// A queue as configured.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueDef {
    /// Unique name (letters, digits, `_`, `-`, `.`; at most 64).
    pub name: String,
    /// Most interactions held (waiting or ringing); more are refused.
    #[serde(default)]
    pub max_length: Option<usize>,
    /// Longest wait before the interaction leaves the queue (the dialplan continues).
    #[serde(default)]
    pub max_wait_secs: Option<u64>,
    /// Accept interactions while no agent is logged in.
    #[serde(default = "yes")]
    pub join_when_empty: bool,
    /// Send waiting interactions away when the last agent logs out.
    #[serde(default)]
    pub leave_when_empty: bool,
    /// How long an offer rings before it goes to the next agent.
    #[serde(default = "fifteen")]
    pub offer_timeout_secs: u64,
    /// After-contact work: `null` until the agent ends it, 0 none.
    #[serde(default)]
    pub wrap_up_secs: Option<u64>,
    /// Allowed disposition codes (empty: any).
    #[serde(default)]
    pub dispositions: Vec<String>,
    /// Voice: when the agent hangs up, the caller stays for the post-call survey (press 1–5)
    /// before the dialplan goes on.
    #[serde(default)]
    pub csat_survey: bool,
}

fn yes() -> bool {
    true
}

fn fifteen() -> u64 {
    15
}

fn one() -> u32 {
    1
}

/// Most interactions of each channel an agent takes at once (0: not that channel; unset: the
/// default, voice 1, chat 3, messaging 3, e-mail 1). Voice and e-mail take the whole budget.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelCaps {
    /// Voice calls.
    #[serde(default)]
    pub voice: Option<u32>,
    /// Web chats.
    #[serde(default)]
    pub chat: Option<u32>,
    /// Messaging conversations.
    #[serde(default)]
    pub messaging: Option<u32>,
    /// E-mails.
    #[serde(default)]
    pub email: Option<u32>,
}

/// One queue an agent serves (an Amazon Connect routing-profile line).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueMembership {
    /// The queue's name.
    pub queue: String,
    /// 1 is served first.
    #[serde(default = "one")]
    pub priority: u32,
    /// Take an interaction from this queue only once it waited this long.
    #[serde(default)]
    pub delay_secs: u64,
}

/// An agent as configured.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentDef {
    /// Unique name (letters, digits, `_`, `-`, `.`; at most 64).
    pub name: String,
    /// The registered SIP user voice offers ring (none: no voice offers can be placed).
    #[serde(default)]
    pub sip_user: Option<String>,
    /// Skills with proficiency 1–5.
    #[serde(default)]
    pub skills: BTreeMap<String, u8>,
    /// Languages spoken.
    #[serde(default)]
    pub languages: Vec<String>,
    /// Free-form attributes agent targets read.
    #[serde(default)]
    pub attributes: serde_json::Map<String, Value>,
    /// Interactions per channel.
    #[serde(default)]
    pub capacity: ChannelCaps,
    /// The queues served.
    #[serde(default)]
    pub queues: Vec<QueueMembership>,
    /// Missing this many offers in a row puts the agent on break (0: never).
    #[serde(default)]
    pub auto_pause_after: u32,
}

/// Checks a name: 1–64 of letters, digits, `_`, `-`, `.`.
pub(crate) fn check_name(name: &str, field: &str) -> Result<(), ContactError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(ContactError::bad(
            field,
            "1 to 64 letters, digits, `_`, `-` or `.`",
        ))
    }
}

impl QueueDef {
    /// Validates and converts to the router's settings.
    pub(crate) fn to_config(&self) -> Result<QueueConfig, ContactError> {
        check_name(&self.name, "name")?;
        if self.max_length == Some(0) {
            return Err(ContactError::bad("max_length", "must be > 0"));
        }
        if !(1..=600).contains(&self.offer_timeout_secs) {
            return Err(ContactError::bad("offer_timeout_secs", "must be 1 to 600"));
        }
        if self.max_wait_secs == Some(0) {
            return Err(ContactError::bad("max_wait_secs", "must be > 0"));
        }
        for (i, d) in self.dispositions.iter().enumerate() {
            if d.is_empty() || d.len() > 64 {
                return Err(ContactError::bad(
                    &format!("dispositions[{i}]"),
                    "1 to 64 characters",
                ));
            }
        }
        Ok(QueueConfig {
            name: self.name.clone(),
            max_length: self.max_length,
            max_wait_ms: self.max_wait_secs.map(|s| s.saturating_mul(1000)),
            join_when_empty: self.join_when_empty,
            leave_when_empty: self.leave_when_empty,
            offer_timeout_ms: self.offer_timeout_secs * 1000,
            wrap_up_ms: self.wrap_up_secs.map(|s| s.saturating_mul(1000)),
            dispositions: self.dispositions.clone(),
            ..QueueConfig::default()
        })
    }
}

impl ChannelCaps {
    fn to_capacity(&self) -> Result<Capacity, ContactError> {
        let mut c = Capacity::default();
        for (ch, n, field) in [
            (Channel::Voice, self.voice, "capacity.voice"),
            (Channel::Chat, self.chat, "capacity.chat"),
            (Channel::Messaging, self.messaging, "capacity.messaging"),
            (Channel::Email, self.email, "capacity.email"),
        ] {
            let Some(n) = n else { continue };
            if n > c.budget {
                return Err(ContactError::bad(
                    field,
                    &format!("at most {} at once", c.budget),
                ));
            }
            let i = ch.index();
            c.max[i] = n;
            if let Some(cost) = c.budget.checked_div(n) {
                c.cost[i] = cost;
            }
        }
        Ok(c)
    }
}

/// A queue known by name.
#[derive(Clone, Debug)]
pub(crate) struct QueueEntry {
    pub id: QueueId,
    pub def: QueueDef,
}

/// An agent known by name.
#[derive(Clone, Debug)]
pub(crate) struct AgentEntry {
    pub id: AgentId,
    pub def: AgentDef,
}

/// Every configured queue and agent, by name and by id, and the workflow as configured.
#[derive(Debug, Default)]
pub(crate) struct Directory {
    pub queues: BTreeMap<String, QueueEntry>,
    pub queue_names: HashMap<QueueId, String>,
    pub agents: BTreeMap<String, AgentEntry>,
    pub agent_names: HashMap<AgentId, String>,
    pub next_queue: u32,
    pub next_agent: u32,
    /// The workflow as configured (queue names), if one was set.
    pub workflow: Option<Value>,
}

impl Directory {
    pub fn queue_id(&self, name: &str) -> Option<QueueId> {
        self.queues.get(name).map(|q| q.id)
    }

    pub fn queue_name(&self, id: QueueId) -> String {
        self.queue_names
            .get(&id)
            .cloned()
            .unwrap_or_else(|| id.to_string())
    }

    pub fn agent_id(&self, name: &str) -> Option<AgentId> {
        self.agents.get(name).map(|a| a.id)
    }

    pub fn agent_name(&self, id: AgentId) -> String {
        self.agent_names
            .get(&id)
            .cloned()
            .unwrap_or_else(|| id.to_string())
    }

    pub fn agent(&self, id: AgentId) -> Option<&AgentEntry> {
        self.agents.get(self.agent_names.get(&id)?)
    }

    pub fn insert_queue(&mut self, id: QueueId, def: QueueDef) {
        self.next_queue = self.next_queue.max(id.0 + 1);
        self.queue_names.insert(id, def.name.clone());
        self.queues.insert(def.name.clone(), QueueEntry { id, def });
    }

    pub fn insert_agent(&mut self, id: AgentId, def: AgentDef) {
        self.next_agent = self.next_agent.max(id.0 + 1);
        self.agent_names.insert(id, def.name.clone());
        self.agents.insert(def.name.clone(), AgentEntry { id, def });
    }

    /// Validates an agent document against the known queues and builds the router's spec.
    pub fn agent_spec(&self, id: AgentId, def: &AgentDef) -> Result<AgentSpec, ContactError> {
        check_name(&def.name, "name")?;
        if let Some(u) = &def.sip_user {
            if u.is_empty() || u.len() > 128 || u.contains(|c: char| c.is_whitespace()) {
                return Err(ContactError::bad(
                    "sip_user",
                    "a SIP user name (1 to 128 characters, no spaces)",
                ));
            }
        }
        let mut skills = Vec::with_capacity(def.skills.len());
        for (name, &level) in &def.skills {
            let ident = !name.is_empty()
                && name.len() <= 64
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !ident {
                return Err(ContactError::bad(
                    &format!("skills.{name}"),
                    "skill names are letters, digits and `_`",
                ));
            }
            if !(1..=5).contains(&level) {
                return Err(ContactError::bad(
                    &format!("skills.{name}"),
                    "proficiency must be 1 to 5",
                ));
            }
            skills.push((name.clone(), level));
        }
        let mut profile = Vec::with_capacity(def.queues.len());
        for (i, m) in def.queues.iter().enumerate() {
            let queue = self.queue_id(&m.queue).ok_or_else(|| {
                ContactError::bad(
                    &format!("queues[{i}].queue"),
                    &format!("unknown queue `{}`", m.queue),
                )
            })?;
            profile.push(ProfileEntry {
                queue,
                priority: m.priority,
                delay_ms: m.delay_secs.saturating_mul(1000),
            });
        }
        Ok(AgentSpec {
            id,
            skills,
            languages: def.languages.clone(),
            attributes: Value::Object(def.attributes.clone()),
            capacity: def.capacity.to_capacity()?,
            profile,
            auto_pause_after: def.auto_pause_after,
        })
    }

    /// Translates a workflow document naming queues into the router's spec. Errors name the
    /// field (`filters[0].steps[1].queue`).
    pub fn workflow_spec(&self, doc: &Value) -> Result<WorkflowSpec, ContactError> {
        let mut v = doc.clone();
        let resolve = |v: &mut Value, field: String| -> Result<(), ContactError> {
            match v {
                Value::String(name) => {
                    let id = self.queue_id(name).ok_or_else(|| {
                        ContactError::bad(&field, &format!("unknown queue `{name}`"))
                    })?;
                    *v = Value::from(id.0);
                    Ok(())
                }
                Value::Null => Ok(()),
                _ => Err(ContactError::bad(&field, "a queue name")),
            }
        };
        if let Some(q) = v.get_mut("default_queue") {
            resolve(q, "default_queue".into())?;
        }
        if let Some(Value::Array(filters)) = v.get_mut("filters") {
            for (fi, f) in filters.iter_mut().enumerate() {
                if let Some(Value::Array(steps)) = f.get_mut("steps") {
                    for (si, s) in steps.iter_mut().enumerate() {
                        if let Some(q) = s.get_mut("queue") {
                            resolve(q, format!("filters[{fi}].steps[{si}].queue"))?;
                        }
                    }
                }
            }
        }
        serde_path_to_error::deserialize(v)
            .map_err(|e| ContactError::bad(&e.path().to_string(), &e.inner().to_string()))
    }
}
