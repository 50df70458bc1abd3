//! Requests to the routing actor from the REST API and agent desktops, and their errors.
//! Answers are JSON views built from the router's live state.

use super::desktop::{AttachDesktop, DesktopCommand, DetachDesktop, FromDesktop};
use super::directory::{check_name, AgentDef, QueueDef};
use super::routing_actor::RoutingActor;
use crate::routing::agent::WorkPhase;
use crate::routing::{
    AgentId, Channel, Customer, Input, InteractionId, InteractionState, NewInteraction, Presence,
    QueueId, RouterError,
};
use actix::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use switchboard_storage::{ContactAgentRow, ContactQueueRow, ContactWrite};

/// A refused request: an HTTP status, a message and the input field at fault.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ContactError {
    /// HTTP status (4xx for input errors, 503 when the actor is gone).
    #[serde(skip)]
    pub status: u16,
    /// What is wrong.
    pub error: String,
    /// The field at fault (`queues[0].queue`), if one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ContactError {
    /// 400 naming `field`.
    pub fn bad(field: &str, error: &str) -> ContactError {
        ContactError {
            status: 400,
            error: error.to_string(),
            field: Some(field.to_string()),
        }
    }

    /// 404: no such `what`.
    pub fn not_found(field: &str, what: &str) -> ContactError {
        ContactError {
            status: 404,
            error: format!("no {what}"),
            field: Some(field.to_string()),
        }
    }

    /// 409 naming `field`.
    pub fn conflict(field: &str, error: &str) -> ContactError {
        ContactError {
            status: 409,
            error: error.to_string(),
            field: Some(field.to_string()),
        }
    }

    /// 503: the routing actor is gone.
    pub fn unavailable() -> ContactError {
        ContactError {
            status: 503,
            error: "contact centre unavailable".into(),
            field: None,
        }
    }

    fn router(e: RouterError, field: &str) -> ContactError {
        let status = match e {
            RouterError::UnknownAgent(_)
            | RouterError::UnknownInteraction(_)
            | RouterError::UnknownQueue(_) => 404,
            RouterError::Disposition(_) => {
                return ContactError::bad("disposition", &e.to_string());
            }
            _ => 409,
        };
        ContactError {
            status,
            error: e.to_string(),
            field: Some(field.to_string()),
        }
    }
}

impl std::fmt::Display for ContactError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{field}: {}", self.error),
            None => f.write_str(&self.error),
        }
    }
}

/// An agent state change.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateChange {
    /// `available`, `break` or `offline`.
    pub state: String,
    /// The break reason code (default `break`).
    #[serde(default)]
    pub reason: Option<String>,
}

/// A non-voice interaction created through the API (voice ones arrive as calls).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewApiInteraction {
    /// `chat`, `messaging` or `email`.
    pub channel: Channel,
    /// The queue's name (none: the workflow decides).
    #[serde(default)]
    pub queue: Option<String>,
    /// Higher first.
    #[serde(default)]
    pub priority: u32,
    /// Attributes the workflow reads.
    #[serde(default)]
    pub attributes: serde_json::Map<String, Value>,
    /// The customer.
    #[serde(default)]
    pub customer: Customer,
}

/// An API request to the routing actor. Answers are JSON.
#[derive(Message, Debug)]
#[rtype(result = "Result<Value, ContactError>")]
pub enum Request {
    /// Creates a queue.
    CreateQueue(QueueDef),
    /// Replaces a queue's settings (the name stays).
    UpdateQueue(String, QueueDef),
    /// Deletes a queue no interaction, agent or workflow uses.
    DeleteQueue(String),
    /// Every queue with live figures.
    ListQueues,
    /// One queue with live figures.
    GetQueue(String),
    /// Creates an agent (logged out).
    CreateAgent(AgentDef),
    /// Replaces an agent's configuration (work and presence stay).
    UpdateAgent(String, AgentDef),
    /// Deletes an agent that holds no work.
    DeleteAgent(String),
    /// Every agent with its status.
    ListAgents,
    /// One agent with its status and work.
    GetAgent(String),
    /// Login (`available`), logout (`offline`) or break.
    SetState(String, StateChange),
    /// Replaces an agent's skills.
    SetSkills(String, BTreeMap<String, u8>),
    /// Installs a workflow (queue names in steps and `default_queue`).
    SetWorkflow(Value),
    /// The current workflow document.
    GetWorkflow,
    /// Creates a chat / messaging / e-mail interaction.
    CreateInteraction(NewApiInteraction),
    /// Every live interaction.
    ListInteractions,
    /// One live interaction.
    GetInteraction(u64),
    /// Moves a waiting interaction to another queue.
    MoveInteraction(u64, String),
    /// The customer side ended: abandoned if waiting, completed (→ wrap-up) if assigned.
    EndInteraction(u64),
    /// The router's clock and the id → name maps (for metrics).
    Names,
}

impl RoutingActor {
    fn queue_ref(&self, name: &str) -> Result<QueueId, ContactError> {
        self.dir
            .queue_id(name)
            .ok_or_else(|| ContactError::not_found("queue", &format!("queue `{name}`")))
    }

    fn agent_ref(&self, name: &str) -> Result<AgentId, ContactError> {
        self.dir
            .agent_id(name)
            .ok_or_else(|| ContactError::not_found("agent", &format!("agent `{name}`")))
    }

    fn queue_view(&self, id: QueueId) -> Value {
        let now = self.now();
        let def = self
            .dir
            .queue_names
            .get(&id)
            .and_then(|n| self.dir.queues.get(n))
            .map(|q| q.def.clone());
        let Some(q) = self.router.queue(id) else {
            return json!({"config": def});
        };
        let entries = q.entries();
        let oldest = entries
            .iter()
            .filter(|e| !e.reserved)
            .map(|e| e.joined_at)
            .min();
        let (mut available, mut staffed) = (0, 0);
        for a in self.dir.agents.values() {
            if let Some(ra) = self.router.agent(a.id) {
                if ra.profile.iter().any(|p| p.queue == id) && ra.presence != Presence::Offline {
                    staffed += 1;
                    if ra.status() == crate::routing::AgentStatus::Available {
                        available += 1;
                    }
                }
            }
        }
        json!({
            "config": def,
            "live": {
                "waiting": q.len(),
                "offered": entries.iter().filter(|e| e.reserved).count(),
                "callbacks": entries.iter().filter(|e| e.callback).count(),
                "oldest_wait_ms": oldest.map(|t| now.saturating_sub(t)),
                "agents_staffed": staffed,
                "agents_available": available,
                "average_handle_ms": q.average_handle_ms(),
            }
        })
    }

    fn agent_view(&self, id: AgentId) -> Value {
        let def = self.dir.agent(id).map(|a| a.def.clone());
        let Some(a) = self.router.agent(id) else {
            return json!({"config": def});
        };
        let work: Vec<Value> = a
            .work
            .iter()
            .map(|w| {
                let phase = match w.phase {
                    WorkPhase::Offered => "offered",
                    WorkPhase::Active => "active",
                    WorkPhase::WrapUp { .. } => "wrapup",
                };
                json!({"interaction": w.interaction.0, "channel": w.channel, "phase": phase,
                       "reservation": self.offer_of.get(&(w.interaction, id))})
            })
            .collect();
        json!({
            "config": def,
            "status": a.status(),
            "presence": a.presence,
            "work": work,
            "handled": a.stats.handled,
            "missed_in_row": a.stats.missed_in_row
                + self.failed_in_row.get(&id).copied().unwrap_or(0),
        })
    }

    fn interaction_view(&self, id: InteractionId) -> Option<Value> {
        let l = self.live.get(&id)?;
        let it = self.router.interaction(id);
        let now = self.now();
        let position = self.router.position(id).map(|p| p.0);
        Some(json!({
            "id": id.0,
            "channel": l.channel,
            "queue": l.queue.map(|q| self.dir.queue_name(q)),
            "state": it.map(|i| i.state),
            "priority": it.map(|i| i.priority),
            "agent": it.and_then(|i| i.agent).map(|a| self.dir.agent_name(a)),
            "customer": l.customer,
            "attributes": l.attributes,
            "call_id": l.voice.as_ref().map(|v| v.call_id.clone()),
            "age_ms": now.saturating_sub(l.created),
            "position": position,
        }))
    }

    fn put_queue_row(&self, id: QueueId, def: &QueueDef) {
        self.journal.write(ContactWrite::PutQueue(ContactQueueRow {
            id: i64::from(id.0),
            name: def.name.clone(),
            config: serde_json::to_string(def).unwrap_or_default(),
            updated_at_ms: switchboard_storage::now_ms(),
        }));
    }

    fn put_agent_row(&self, id: AgentId, def: &AgentDef) {
        self.journal.write(ContactWrite::PutAgent(ContactAgentRow {
            id: i64::from(id.0),
            name: def.name.clone(),
            sip_user: def.sip_user.clone(),
            config: serde_json::to_string(def).unwrap_or_default(),
            updated_at_ms: switchboard_storage::now_ms(),
        }));
    }

    fn set_agent(&mut self, name: &str, def: AgentDef) -> Result<Value, ContactError> {
        let id = self.agent_ref(name)?;
        if def.name != name {
            return Err(ContactError::bad("name", "renaming is not supported"));
        }
        let spec = self.dir.agent_spec(id, &def)?;
        self.feed(Input::UpdateAgent(spec))
            .map_err(|e| ContactError::router(e, "agent"))?;
        self.put_agent_row(id, &def);
        self.dir.insert_agent(id, def);
        Ok(self.agent_view(id))
    }

    fn set_presence(&mut self, id: AgentId, change: &StateChange) -> Result<(), ContactError> {
        let presence = match change.state.as_str() {
            "available" => Presence::Available,
            "offline" => Presence::Offline,
            "break" => {
                let reason = change.reason.clone().unwrap_or_else(|| "break".into());
                if reason.is_empty() || reason.len() > 64 {
                    return Err(ContactError::bad("reason", "1 to 64 characters"));
                }
                Presence::Break { reason }
            }
            _ => {
                return Err(ContactError::bad(
                    "state",
                    "one of available, break, offline",
                ));
            }
        };
        if presence == Presence::Available {
            self.failed_in_row.remove(&id);
        }
        self.feed(Input::SetPresence {
            agent: id,
            presence,
        })
        .map_err(|e| ContactError::router(e, "agent"))
    }

    /// Queue names a workflow document refers to.
    fn workflow_queues(&self) -> Vec<String> {
        let mut out = Vec::new();
        let Some(doc) = &self.dir.workflow else {
            return out;
        };
        if let Some(q) = doc.get("default_queue").and_then(Value::as_str) {
            out.push(q.to_owned());
        }
        for f in doc["filters"].as_array().into_iter().flatten() {
            for s in f["steps"].as_array().into_iter().flatten() {
                if let Some(q) = s["queue"].as_str() {
                    out.push(q.to_owned());
                }
            }
        }
        out
    }

    fn end_interaction(&mut self, id: InteractionId) -> Result<(), ContactError> {
        let state = self
            .router
            .interaction(id)
            .map(|i| i.state)
            .ok_or_else(|| {
                ContactError::not_found("interaction", &format!("interaction {}", id.0))
            })?;
        let input = match state {
            s if s.is_waiting() || s == InteractionState::Offered => {
                Input::Abandon { interaction: id }
            }
            InteractionState::Assigned => Input::Complete { interaction: id },
            s => {
                return Err(ContactError::conflict(
                    "interaction",
                    &format!("interaction is {s}"),
                ));
            }
        };
        self.feed(input)
            .map_err(|e| ContactError::router(e, "interaction"))
    }

    fn request(&mut self, r: Request) -> Result<Value, ContactError> {
        match r {
            Request::CreateQueue(def) => {
                let config = def.to_config()?;
                if self.dir.queues.contains_key(&def.name) {
                    return Err(ContactError::conflict(
                        "name",
                        "a queue of that name exists",
                    ));
                }
                let id = QueueId(self.dir.next_queue);
                self.router
                    .add_queue(id, config)
                    .map_err(|e| ContactError::router(e, "name"))?;
                self.put_queue_row(id, &def);
                self.dir.insert_queue(id, def);
                Ok(self.queue_view(id))
            }
            Request::UpdateQueue(name, def) => {
                let id = self.queue_ref(&name)?;
                if def.name != name {
                    return Err(ContactError::bad("name", "renaming is not supported"));
                }
                let config = def.to_config()?;
                self.router
                    .configure_queue(id, config)
                    .map_err(|e| ContactError::router(e, "queue"))?;
                self.put_queue_row(id, &def);
                self.dir.insert_queue(id, def);
                Ok(self.queue_view(id))
            }
            Request::DeleteQueue(name) => {
                let id = self.queue_ref(&name)?;
                if self.router.queue(id).is_some_and(|q| q.held() > 0) {
                    return Err(ContactError::conflict(
                        "queue",
                        "the queue holds interactions",
                    ));
                }
                let used = self
                    .dir
                    .agents
                    .values()
                    .find(|a| a.def.queues.iter().any(|m| m.queue == name));
                if let Some(a) = used {
                    return Err(ContactError::conflict(
                        "queue",
                        &format!("agent `{}` serves it", a.def.name),
                    ));
                }
                if self.workflow_queues().contains(&name) {
                    return Err(ContactError::conflict("queue", "the workflow uses it"));
                }
                // The router keeps an inert slot: queue ids are never reused.
                self.dir.queues.remove(&name);
                self.dir.queue_names.remove(&id);
                self.journal
                    .write(ContactWrite::DeleteQueue(i64::from(id.0)));
                Ok(json!({"deleted": name}))
            }
            Request::ListQueues => Ok(Value::Array(
                self.dir
                    .queues
                    .values()
                    .map(|q| self.queue_view(q.id))
                    .collect(),
            )),
            Request::GetQueue(name) => Ok(self.queue_view(self.queue_ref(&name)?)),
            Request::CreateAgent(def) => {
                check_name(&def.name, "name")?;
                if self.dir.agents.contains_key(&def.name) {
                    return Err(ContactError::conflict(
                        "name",
                        "an agent of that name exists",
                    ));
                }
                let id = AgentId(self.dir.next_agent);
                let spec = self.dir.agent_spec(id, &def)?;
                self.feed(Input::AddAgent(spec))
                    .map_err(|e| ContactError::router(e, "name"))?;
                self.put_agent_row(id, &def);
                self.dir.insert_agent(id, def);
                Ok(self.agent_view(id))
            }
            Request::UpdateAgent(name, def) => self.set_agent(&name, def),
            Request::DeleteAgent(name) => {
                let id = self.agent_ref(&name)?;
                self.feed(Input::RemoveAgent(id))
                    .map_err(|e| ContactError::router(e, "agent"))?;
                self.dir.agents.remove(&name);
                self.dir.agent_names.remove(&id);
                self.journal
                    .write(ContactWrite::DeleteAgent(i64::from(id.0)));
                Ok(json!({"deleted": name}))
            }
            Request::ListAgents => Ok(Value::Array(
                self.dir
                    .agents
                    .values()
                    .map(|a| self.agent_view(a.id))
                    .collect(),
            )),
            Request::GetAgent(name) => Ok(self.agent_view(self.agent_ref(&name)?)),
            Request::SetState(name, change) => {
                let id = self.agent_ref(&name)?;
                self.set_presence(id, &change)?;
                Ok(self.agent_view(id))
            }
            Request::SetSkills(name, skills) => {
                let mut def = self
                    .dir
                    .agents
                    .get(&name)
                    .map(|a| a.def.clone())
                    .ok_or_else(|| ContactError::not_found("agent", &format!("agent `{name}`")))?;
                def.skills = skills;
                self.set_agent(&name, def)
            }
            Request::SetWorkflow(doc) => {
                let spec = self.dir.workflow_spec(&doc)?;
                self.router.set_workflow(&spec).map_err(|e| {
                    let mut field = format!("filters[{}]", e.filter);
                    if let Some(s) = e.step {
                        field.push_str(&format!(".steps[{s}]"));
                    }
                    field.push('.');
                    field.push_str(e.field);
                    ContactError::bad(&field, &e.to_string())
                })?;
                self.journal.write(ContactWrite::PutWorkflow {
                    spec: doc.to_string(),
                    at_ms: switchboard_storage::now_ms(),
                });
                self.dir.workflow = Some(doc.clone());
                Ok(doc)
            }
            Request::GetWorkflow => Ok(self
                .dir
                .workflow
                .clone()
                .unwrap_or_else(|| json!({"filters": [], "default_queue": null}))),
            Request::CreateInteraction(n) => {
                if n.channel == Channel::Voice {
                    return Err(ContactError::bad(
                        "channel",
                        "voice interactions arrive as calls; use chat, messaging or email",
                    ));
                }
                let queue = n.queue.as_deref().map(|q| self.queue_ref(q)).transpose()?;
                let id = self.mint_interaction();
                let new = NewInteraction {
                    id,
                    channel: n.channel,
                    customer: n.customer,
                    attributes: Value::Object(n.attributes),
                    priority: n.priority,
                    queue,
                };
                self.start_interaction(new, None)
                    .map_err(|e| ContactError::router(e, "queue"))?;
                Ok(self
                    .interaction_view(id)
                    .unwrap_or_else(|| json!({"id": id.0})))
            }
            Request::ListInteractions => {
                let mut ids: Vec<InteractionId> = self.live.keys().copied().collect();
                ids.sort();
                Ok(Value::Array(
                    ids.into_iter()
                        .filter_map(|id| self.interaction_view(id))
                        .collect(),
                ))
            }
            Request::GetInteraction(id) => {
                self.interaction_view(InteractionId(id)).ok_or_else(|| {
                    ContactError::not_found("interaction", &format!("interaction {id}"))
                })
            }
            Request::MoveInteraction(id, queue) => {
                let q = self.queue_ref(&queue)?;
                let id = InteractionId(id);
                if !self.live.contains_key(&id) {
                    return Err(ContactError::not_found(
                        "interaction",
                        &format!("interaction {}", id.0),
                    ));
                }
                self.feed(Input::Move {
                    interaction: id,
                    queue: q,
                })
                .map_err(|e| match e {
                    RouterError::NoRoute(_) => {
                        ContactError::conflict("queue", "the queue is full or nobody staffs it")
                    }
                    e => ContactError::router(e, "interaction"),
                })?;
                Ok(self.interaction_view(id).unwrap_or(Value::Null))
            }
            Request::EndInteraction(id) => {
                self.end_interaction(InteractionId(id))?;
                Ok(json!({"ended": id}))
            }
            Request::Names => Ok(json!({
                "now": self.now(),
                "queues": self.dir.queue_names.iter()
                    .map(|(id, n)| (id.0.to_string(), n.clone())).collect::<BTreeMap<_, _>>(),
                "agents": self.dir.agent_names.iter()
                    .map(|(id, n)| (id.0.to_string(), n.clone())).collect::<BTreeMap<_, _>>(),
            })),
        }
    }

    fn desktop(&mut self, agent: AgentId, cmd: DesktopCommand) -> Result<(), ContactError> {
        match cmd {
            DesktopCommand::Accept { reservation } | DesktopCommand::Reject { reservation } => {
                let accept = matches!(cmd, DesktopCommand::Accept { .. });
                let o = self
                    .offers
                    .get(&reservation)
                    .copied()
                    .filter(|o| o.agent == agent)
                    .ok_or_else(|| ContactError::not_found("reservation", "such offer"))?;
                if accept {
                    if o.channel == Channel::Voice {
                        return Err(ContactError::conflict(
                            "reservation",
                            "voice offers are answered on the phone",
                        ));
                    }
                    self.feed(Input::Accept {
                        interaction: o.interaction,
                        agent,
                    })
                    .map_err(|e| ContactError::router(e, "reservation"))
                } else {
                    self.forget_offer(o.interaction, agent);
                    if let Some(leg) = self.live.get(&o.interaction).and_then(|l| l.voice.as_ref())
                    {
                        leg.call
                            .do_send(super::VoiceUpdate::Withdraw { reservation });
                    }
                    let r = self.feed(Input::Reject {
                        interaction: o.interaction,
                        agent,
                    });
                    self.push_rescind(agent, reservation, o.interaction, "rejected");
                    r.map_err(|e| ContactError::router(e, "reservation"))
                }
            }
            DesktopCommand::State { state, reason } => {
                self.set_presence(agent, &StateChange { state, reason })
            }
            DesktopCommand::WrapupDone {
                disposition,
                interaction,
            } => {
                let interaction = match interaction {
                    Some(i) => i,
                    None => {
                        let wrapping: Vec<InteractionId> = self
                            .router
                            .agent(agent)
                            .map(|a| {
                                a.work
                                    .iter()
                                    .filter(|w| matches!(w.phase, WorkPhase::WrapUp { .. }))
                                    .map(|w| w.interaction)
                                    .collect()
                            })
                            .unwrap_or_default();
                        match wrapping.as_slice() {
                            [one] => *one,
                            [] => {
                                return Err(ContactError::conflict(
                                    "interaction",
                                    "no interaction in wrap-up",
                                ));
                            }
                            _ => {
                                return Err(ContactError::bad(
                                    "interaction",
                                    "several interactions in wrap-up: name one",
                                ));
                            }
                        }
                    }
                };
                self.feed(Input::EndWrapUp {
                    interaction,
                    disposition,
                })
                .map_err(|e| ContactError::router(e, "interaction"))
            }
            DesktopCommand::End { interaction } => {
                let mine = self
                    .router
                    .interaction(interaction)
                    .is_some_and(|i| i.agent == Some(agent));
                if !mine {
                    return Err(ContactError::not_found(
                        "interaction",
                        "such interaction of yours",
                    ));
                }
                self.feed(Input::Complete { interaction })
                    .map_err(|e| ContactError::router(e, "interaction"))
            }
        }
    }
}

impl Handler<Request> for RoutingActor {
    type Result = Result<Value, ContactError>;

    fn handle(&mut self, msg: Request, ctx: &mut Context<Self>) -> Self::Result {
        let r = self.request(msg);
        self.rearm(ctx);
        r
    }
}

impl Handler<FromDesktop> for RoutingActor {
    type Result = Result<(), ContactError>;

    fn handle(&mut self, msg: FromDesktop, ctx: &mut Context<Self>) -> Self::Result {
        let r = self.desktop(msg.agent, msg.cmd);
        self.rearm(ctx);
        r
    }
}

impl Handler<AttachDesktop> for RoutingActor {
    type Result = Result<(AgentId, u64), ContactError>;

    fn handle(&mut self, msg: AttachDesktop, _ctx: &mut Context<Self>) -> Self::Result {
        let id = self.agent_ref(&msg.agent)?;
        let session = self.next_desktop;
        self.next_desktop += 1;
        self.desktops
            .entry(id)
            .or_default()
            .push((session, msg.recipient));
        let offers: Vec<Value> = self
            .offers
            .iter()
            .filter(|(_, o)| o.agent == id)
            .map(|(r, o)| {
                json!({"reservation": r, "interaction": o.interaction.0, "channel": o.channel,
                       "timeout_ms": o.expires_at.saturating_sub(self.now())})
            })
            .collect();
        let mut hello = self.agent_view(id);
        hello["type"] = json!("hello");
        hello["agent"] = json!(msg.agent);
        hello["offers"] = Value::Array(offers);
        self.push(id, hello);
        Ok((id, session))
    }
}

impl Handler<DetachDesktop> for RoutingActor {
    type Result = ();

    fn handle(&mut self, msg: DetachDesktop, _ctx: &mut Context<Self>) {
        if let Some(v) = self.desktops.get_mut(&msg.agent) {
            v.retain(|(s, _)| *s != msg.session);
            if v.is_empty() {
                self.desktops.remove(&msg.agent);
            }
        }
    }
}
