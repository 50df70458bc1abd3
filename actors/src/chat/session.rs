//! [`ChatSession`]: one actor per conversation (web chat or API-channel conversation).
//!
//! It numbers messages (`seq` 1, 2, 3… per chat, customer and agent alike), queues them for the
//! database, keeps the newest in memory so a resuming customer gets what they missed without a
//! query, relays typing and receipts between the customer and the agent, and follows its
//! interaction in the router: offered like any interaction of channel `chat` (or `messaging`),
//! then assigned to the agent who accepted, ended by either side. A [`Guard`] tells the service
//! when the actor dies, even by a panic (actix does not catch those).

use super::channel::Outbound;
use super::crm_link::{self, Linked};
use super::customer::CustomerPush;
use super::{random_hex, ChatService};
use crate::contact::{ChatLink, ContactError, InteractionId, NewApiInteraction, Request};
use crate::routing::{Channel, Customer};
use actix::prelude::*;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use switchboard_storage::{now_ms, ChatMessageRow, ChatRow, ChatWrite};

/// Messages kept in memory per chat for resumption (older ones are read from the database).
pub(super) const HISTORY: usize = 200;

/// What a new conversation is.
#[derive(Clone, Debug)]
pub(super) struct Spec {
    pub id: String,
    pub token_hash: String,
    pub channel: Channel,
    /// The API channel's name; empty for web chats.
    pub source: String,
    pub external_user_id: Option<String>,
    pub name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub queue: Option<String>,
    pub attributes: Map<String, Value>,
}

/// One message.
#[derive(Clone, Debug)]
pub(super) struct Msg {
    pub seq: i64,
    pub from: &'static str,
    pub author: String,
    pub text: String,
    pub attachment: Option<Value>,
    pub at: i64,
}

impl Msg {
    /// The customer-side frame.
    pub fn customer_frame(&self) -> Value {
        json!({"type": "message", "seq": self.seq, "from": self.from, "author": self.author,
               "text": self.text, "attachment": self.attachment, "at": self.at})
    }

    fn agent_frame(&self, chat: &str, interaction: Option<InteractionId>) -> Value {
        json!({"type": "chat_message", "chat": chat, "interaction": interaction.map(|i| i.0),
               "seq": self.seq, "from": self.from, "author": self.author, "text": self.text,
               "attachment": self.attachment, "at": self.at})
    }

    /// From a stored row (`attachment`: its metadata, if any).
    pub fn from_row(r: &ChatMessageRow, attachment: Option<Value>) -> Msg {
        let from = match r.sender.as_str() {
            "customer" => "customer",
            "agent" => "agent",
            _ => "system",
        };
        Msg {
            seq: r.seq,
            from,
            author: r.author.clone(),
            text: r.body.clone(),
            attachment,
            at: r.created_at_ms,
        }
    }
}

/// Where a chat is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Queued,
    Active,
    Ended,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Queued => "queued",
            Phase::Active => "active",
            Phase::Ended => "ended",
        }
    }
}

/// Tells the service when the session stops; when it dies without ending its chat (a panic),
/// ends the chat by `system`, ends its interaction and tells the customer and the agent.
struct Guard {
    svc: ChatService,
    id: String,
    token_hash: String,
    user: Option<(String, String)>,
    ended: bool,
    interaction: Option<InteractionId>,
    agent: Option<String>,
    customer: Option<(u64, Recipient<CustomerPush>)>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.svc
            .unregister(&self.id, &self.token_hash, self.user.take());
        if self.ended {
            return;
        }
        tracing::error!(chat = %self.id, "chat session died; chat ended by system");
        self.svc.event(
            "chat.ended",
            json!({"chat": self.id, "interaction": self.interaction.map(|i| i.0),
                   "agent": self.agent, "by": "system", "reason": "error"}),
        );
        self.svc.writer().push(ChatWrite::Ended {
            chat_id: self.id.clone(),
            by: "system".into(),
            at_ms: now_ms(),
        });
        let frame = json!({"type": "ended", "by": "system", "reason": "error"});
        if let Some((_, c)) = &self.customer {
            c.do_send(CustomerPush::text(&frame));
        }
        if let Some(agent) = &self.agent {
            let f = json!({"type": "chat_ended", "chat": self.id,
                           "interaction": self.interaction.map(|i| i.0), "by": "system"});
            self.svc
                .contact()
                .push_to_agent(agent, Arc::from(f.to_string()));
        }
        if let Some(i) = self.interaction {
            self.svc
                .contact()
                .addr()
                .do_send(Request::EndInteraction(i.0));
        }
    }
}

/// One conversation.
pub struct ChatSession {
    svc: ChatService,
    spec: Spec,
    phase: Phase,
    next_seq: i64,
    history: VecDeque<Msg>,
    attachments: HashMap<String, Value>,
    gone_timer: Option<SpawnHandle>,
    outbound: Option<Outbound>,
    ended_by: Option<String>,
    csat: Option<i64>,
    /// Its CRM contact and interaction, once recognised.
    crm: Option<Linked>,
    g: Guard,
}

impl ChatSession {
    fn new(
        svc: ChatService,
        spec: Spec,
        customer: Option<(u64, Recipient<CustomerPush>)>,
    ) -> ChatSession {
        let user = (!spec.source.is_empty())
            .then(|| {
                spec.external_user_id
                    .clone()
                    .map(|u| (spec.source.clone(), u))
            })
            .flatten();
        let g = Guard {
            svc: svc.clone(),
            id: spec.id.clone(),
            token_hash: spec.token_hash.clone(),
            user,
            ended: false,
            interaction: None,
            agent: None,
            customer,
        };
        ChatSession {
            svc,
            spec,
            phase: Phase::Queued,
            next_seq: 1,
            history: VecDeque::new(),
            attachments: HashMap::new(),
            gone_timer: None,
            outbound: None,
            ended_by: None,
            csat: None,
            crm: None,
            g,
        }
    }

    fn to_customer(&self, frame: &Value) {
        if let Some((_, c)) = &self.g.customer {
            c.do_send(CustomerPush::text(frame));
        }
    }

    fn to_agent(&self, frame: &Value) {
        if let Some(a) = &self.g.agent {
            self.svc
                .contact()
                .push_to_agent(a, Arc::from(frame.to_string()));
        }
    }

    /// Numbers, stores and remembers a message.
    fn append(
        &mut self,
        from: &'static str,
        author: String,
        text: String,
        attachment: Option<Value>,
    ) -> Msg {
        let m = Msg {
            seq: self.next_seq,
            from,
            author,
            text,
            attachment,
            at: now_ms(),
        };
        self.next_seq += 1;
        self.svc.writer().push(ChatWrite::Message(ChatMessageRow {
            chat_id: self.spec.id.clone(),
            seq: m.seq,
            sender: from.to_string(),
            author: m.author.clone(),
            body: m.text.clone(),
            attachment_id: m
                .attachment
                .as_ref()
                .and_then(|a| a["id"].as_str().map(str::to_owned)),
            created_at_ms: m.at,
            delivered_at_ms: None,
            read_at_ms: None,
        }));
        if from != "system" {
            if let Some(l) = self.crm {
                self.svc.writer().push(ChatWrite::CrmText {
                    interaction_id: l.interaction_id,
                    line: crm_line(&m),
                });
            }
            let mut e = json!({"chat": self.spec.id,
                "interaction": self.g.interaction.map(|i| i.0), "seq": m.seq, "from": from,
                "length": m.text.chars().count(), "attachment": m.attachment.is_some(),
                "contact_id": self.crm.map(|l| l.contact_id)});
            if from == "agent" {
                e["agent"] = json!(m.author);
            }
            if self.svc.config().events_include_text {
                e["text"] = json!(m.text);
            }
            self.svc.event("chat.message", e);
        }
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(m.clone());
        m
    }

    fn check_text(&self, text: &str, attachment: bool) -> Result<(), ContactError> {
        if text.trim().is_empty() && !attachment {
            return Err(ContactError::bad("text", "empty message"));
        }
        if text.chars().count() > self.svc.config().max_message_chars {
            return Err(ContactError::bad(
                "text",
                &format!(
                    "longer than {} characters",
                    self.svc.config().max_message_chars
                ),
            ));
        }
        Ok(())
    }

    fn attachment(&self, id: Option<&str>) -> Result<Option<Value>, ContactError> {
        match id {
            None => Ok(None),
            Some(id) => self
                .attachments
                .get(id)
                .cloned()
                .map(Some)
                .ok_or_else(|| ContactError::not_found("attachment", "attachment of this chat")),
        }
    }

    fn not_ended(&self) -> Result<(), ContactError> {
        if self.phase == Phase::Ended {
            return Err(ContactError::conflict("chat", "the chat has ended"));
        }
        Ok(())
    }

    /// A message from the customer (widget or API channel).
    fn customer_message(
        &mut self,
        text: String,
        attachment: Option<Value>,
    ) -> Result<Value, ContactError> {
        self.not_ended()?;
        let m = self.append("customer", self.spec.name.clone(), text, attachment);
        self.to_agent(&m.agent_frame(&self.spec.id, self.g.interaction));
        Ok(json!({"chat": self.spec.id, "seq": m.seq, "at": m.at,
                  "interaction": self.g.interaction.map(|i| i.0)}))
    }

    fn system_message(&mut self, text: String) {
        let m = self.append("system", String::new(), text, None);
        self.to_customer(&m.customer_frame());
        self.to_agent(&m.agent_frame(&self.spec.id, self.g.interaction));
    }

    /// Ends the chat once: stores it, tells both sides, ends the interaction when the customer
    /// ended it, and lingers for the CSAT prompt.
    fn end(&mut self, ctx: &mut Context<Self>, by: &str, reason: &str) {
        if self.phase == Phase::Ended {
            return;
        }
        self.system_message(format!("Chat ended by {by}"));
        self.phase = Phase::Ended;
        self.g.ended = true;
        self.ended_by = Some(by.to_string());
        let at = now_ms();
        self.svc.writer().push(ChatWrite::Ended {
            chat_id: self.spec.id.clone(),
            by: by.to_string(),
            at_ms: at,
        });
        self.svc.event(
            "chat.ended",
            json!({"chat": self.spec.id, "interaction": self.g.interaction.map(|i| i.0),
                   "agent": self.g.agent, "by": by, "reason": reason,
                   "messages": self.next_seq - 1, "contact_id": self.crm.map(|l| l.contact_id)}),
        );
        self.crm_update(None, Some(at));
        self.to_customer(&json!({"type": "ended", "by": by, "reason": reason}));
        self.to_agent(&json!({"type": "chat_ended", "chat": self.spec.id,
                              "interaction": self.g.interaction.map(|i| i.0), "by": by}));
        if by == "customer" {
            if let Some(i) = self.g.interaction {
                self.svc
                    .contact()
                    .addr()
                    .do_send(Request::EndInteraction(i.0));
            }
        }
        if let Some(o) = &self.outbound {
            o.send(json!({"type": "ended", "by": by, "reason": reason}));
        }
        if let Some(u) = &self.spec.external_user_id {
            if !self.spec.source.is_empty() {
                self.svc.forget_user(&self.spec.source, u, &self.spec.id);
            }
        }
        if let Some(h) = self.gone_timer.take() {
            ctx.cancel_future(h);
        }
        let linger = Duration::from_secs(self.svc.config().linger_secs);
        ctx.run_later(linger, |_, ctx| ctx.stop());
    }

    fn state_view(&self) -> Value {
        json!({"chat": self.spec.id, "state": self.phase.name(), "agent": self.g.agent,
               "interaction": self.g.interaction.map(|i| i.0), "last_seq": self.next_seq - 1,
               "ended_by": self.ended_by, "csat": self.csat, "channel": self.spec.channel,
               "source": self.spec.source, "external_user_id": self.spec.external_user_id,
               "name": self.spec.name, "email": self.spec.email, "phone": self.spec.phone,
               "contact_id": self.crm.map(|l| l.contact_id),
               "crm_interaction": self.crm.map(|l| l.interaction_id)})
    }

    /// The chat was recognised as a CRM contact's interaction (or could not be).
    fn linked(&mut self, r: Result<Linked, crate::crm::ApiError>) {
        let l = match r {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(chat = %self.spec.id, error = %e, "chat not linked to a CRM contact");
                return;
            }
        };
        self.crm = Some(l);
        for m in self.history.iter().filter(|m| m.from != "system") {
            self.svc.writer().push(ChatWrite::CrmText {
                interaction_id: l.interaction_id,
                line: crm_line(m),
            });
        }
        self.svc.event(
            "chat.linked",
            json!({"chat": self.spec.id, "interaction": self.g.interaction.map(|i| i.0),
                   "contact_id": l.contact_id, "crm_interaction": l.interaction_id,
                   "contact_created": l.created}),
        );
        self.to_agent(&json!({"type": "chat_contact", "chat": self.spec.id,
            "interaction": self.g.interaction.map(|i| i.0), "contact_id": l.contact_id,
            "crm_interaction": l.interaction_id}));
        let ended = (self.phase == Phase::Ended).then(now_ms);
        if self.g.agent.is_some() || ended.is_some() {
            self.crm_update(self.g.agent.clone(), ended);
        }
        if let Some(score) = self.csat {
            self.crm_rate(score);
        }
    }

    /// Sets the agent and/or the end on the chat's CRM interaction (in the background).
    fn crm_update(&self, agent: Option<String>, ended_at_ms: Option<i64>) {
        let Some(l) = self.crm else { return };
        let storage = self.svc.storage().clone();
        actix_rt::spawn(async move {
            if let Err(e) = storage
                .finish_interaction(l.interaction_id, agent.as_deref(), None, ended_at_ms)
                .await
            {
                tracing::warn!(error = %e, "chat's CRM interaction not updated");
            }
        });
    }

    /// Stores the score on the chat's CRM interaction and its tickets (in the background).
    fn crm_rate(&self, score: i64) {
        let Some(l) = self.crm else { return };
        let storage = self.svc.storage().clone();
        actix_rt::spawn(async move {
            if let Err(e) = storage.set_csat(l.interaction_id, score, now_ms()).await {
                tracing::warn!(error = %e, "chat CSAT not stored on its CRM interaction");
            }
        });
    }
}

/// A message as a line of its CRM interaction's text (searchable).
fn crm_line(m: &Msg) -> String {
    match &m.attachment {
        Some(a) => format!(
            "{}: {} [{}]",
            m.author,
            m.text,
            a["name"].as_str().unwrap_or("attachment")
        ),
        None => format!("{}: {}", m.author, m.text),
    }
}

impl Actor for ChatSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
        let (crm, spec) = (self.svc.crm().clone(), self.spec.clone());
        ctx.spawn(
            async move { crm_link::link(&crm, &spec, now_ms()).await }
                .into_actor(self)
                .map(|r, act, _ctx| act.linked(r)),
        );
        if !self.spec.source.is_empty() {
            if let Some(c) = self.svc.channel(&self.spec.source) {
                if !c.webhook_url.is_empty() {
                    self.outbound = Some(Outbound::start(
                        c.webhook_url.clone(),
                        c.secret.clone(),
                        self.spec.source.clone(),
                        self.spec.external_user_id.clone().unwrap_or_default(),
                        self.spec.id.clone(),
                    ));
                }
            }
        }
    }
}

/// Starts a conversation: the session actor, its row, its interaction.
pub(super) async fn start(
    svc: &ChatService,
    spec: Spec,
    customer: Option<(u64, Recipient<CustomerPush>)>,
) -> Result<(Addr<ChatSession>, InteractionId), ContactError> {
    let row = ChatRow {
        id: spec.id.clone(),
        channel: if spec.channel == Channel::Messaging {
            "messaging".into()
        } else {
            "chat".into()
        },
        source: spec.source.clone(),
        external_user_id: spec.external_user_id.clone(),
        token_hash: spec.token_hash.clone(),
        name: spec.name.clone(),
        email: spec.email.clone(),
        phone: spec.phone.clone(),
        queue: spec.queue.clone(),
        attributes: Value::Object(spec.attributes.clone()).to_string(),
        interaction_id: None,
        agent: None,
        state: "queued".into(),
        ended_by: None,
        csat: None,
        created_at_ms: now_ms(),
        ended_at_ms: None,
    };
    let (s2, svc2) = (spec.clone(), svc.clone());
    let addr = ChatSession::start_in_arbiter(&svc.inner.arbiter, move |_| {
        ChatSession::new(svc2, s2, customer)
    });
    svc.register(&spec, addr.clone());
    svc.writer().push(ChatWrite::Create(row));
    let mut attributes = spec.attributes.clone();
    attributes.insert("chat".into(), json!(spec.id));
    attributes.insert("customer_name".into(), json!(spec.name));
    if let Some(e) = &spec.email {
        attributes.insert("email".into(), json!(e));
    }
    if let Some(p) = &spec.phone {
        attributes.insert("phone".into(), json!(p));
    }
    if !spec.source.is_empty() {
        attributes.insert("source".into(), json!(spec.source));
    }
    let new = NewApiInteraction {
        channel: spec.channel,
        queue: spec.queue.clone(),
        priority: 0,
        attributes,
        customer: Customer {
            id: spec.external_user_id.clone(),
            address: Some(format!("chat:{}", spec.id)),
        },
    };
    match svc
        .contact()
        .enqueue_chat(new, addr.clone().recipient())
        .await
    {
        Ok(i) => {
            svc.event(
                "chat.started",
                json!({"chat": spec.id, "interaction": i.0, "channel": spec.channel,
                       "source": spec.source, "queue": spec.queue}),
            );
            addr.do_send(Routed(i));
            svc.writer().push(ChatWrite::Interaction {
                chat_id: spec.id.clone(),
                interaction_id: i64::try_from(i.0).unwrap_or(i64::MAX),
            });
            Ok((addr, i))
        }
        Err(e) => {
            addr.do_send(Abort(e.error.clone()));
            Err(e)
        }
    }
}

/// A new spec's id and resume token (returned once, never stored).
pub(super) fn mint() -> (String, String) {
    (random_hex(12), random_hex(24))
}

/// The interaction the chat became.
#[derive(Message)]
#[rtype(result = "()")]
struct Routed(InteractionId);

/// Routing refused the chat: it ends at once.
#[derive(Message)]
#[rtype(result = "()")]
struct Abort(String);

impl Handler<Routed> for ChatSession {
    type Result = ();

    fn handle(&mut self, msg: Routed, _ctx: &mut Context<Self>) {
        self.g.interaction.get_or_insert(msg.0);
    }
}

impl Handler<Abort> for ChatSession {
    type Result = ();

    fn handle(&mut self, msg: Abort, ctx: &mut Context<Self>) {
        self.end(ctx, "system", &msg.0);
        ctx.stop();
    }
}

impl Handler<ChatLink> for ChatSession {
    type Result = ();

    fn handle(&mut self, msg: ChatLink, ctx: &mut Context<Self>) {
        match msg {
            ChatLink::Assigned { interaction, agent } => {
                self.g.interaction = Some(interaction);
                if self.phase == Phase::Ended {
                    return;
                }
                self.phase = Phase::Active;
                self.g.agent = Some(agent.clone());
                self.svc.event(
                    "chat.assigned",
                    json!({"chat": self.spec.id, "interaction": interaction.0, "agent": agent,
                           "contact_id": self.crm.map(|l| l.contact_id)}),
                );
                self.crm_update(Some(agent.clone()), None);
                self.svc.writer().push(ChatWrite::Assigned {
                    chat_id: self.spec.id.clone(),
                    agent: agent.clone(),
                });
                let messages: Vec<Value> = self
                    .history
                    .iter()
                    .map(|m| m.agent_frame(&self.spec.id, Some(interaction)))
                    .collect();
                self.to_agent(&json!({"type": "chat_history", "chat": self.spec.id,
                    "interaction": interaction.0, "customer": self.state_view(),
                    "messages": messages}));
                self.to_customer(&json!({"type": "agent_joined", "agent": agent}));
                self.system_message(format!("{agent} joined the chat"));
            }
            ChatLink::EndedByAgent { .. } => self.end(ctx, "agent", "ended"),
            ChatLink::Left { reason, .. } => self.end(ctx, "system", &reason),
        }
    }
}

/// A customer socket takes the chat (new or resumed): answers the `resumed` view, the frames
/// the customer missed (seq > `since`) that are still in memory, and the range to read from
/// the database first if older ones are missing from memory.
#[derive(Message)]
#[rtype(result = "Result<Attached, ContactError>")]
pub(super) struct Attach {
    pub conn: u64,
    pub to: Recipient<CustomerPush>,
    pub since: i64,
    pub token_hash: String,
}

/// What [`Attach`] answers.
pub(super) struct Attached {
    pub view: Value,
    /// Missed messages from the database: `(since, up_to)` exclusive/inclusive.
    pub from_db: Option<(i64, i64)>,
    pub frames: Vec<Value>,
    /// The chat's ended frame, to send after the replay.
    pub ended: Option<Value>,
}

impl Handler<Attach> for ChatSession {
    type Result = Result<Attached, ContactError>;

    fn handle(&mut self, msg: Attach, ctx: &mut Context<Self>) -> Self::Result {
        if msg.token_hash != self.spec.token_hash {
            return Err(ContactError {
                status: 401,
                error: "bad resume token".into(),
                field: Some("resume".into()),
            });
        }
        if let Some((conn, old)) = self.g.customer.take() {
            if conn != msg.conn {
                old.do_send(CustomerPush::close(
                    &json!({"type": "error", "error": "the chat was resumed elsewhere", "field": null}),
                ));
            }
        }
        if let Some(h) = self.gone_timer.take() {
            ctx.cancel_future(h);
        }
        self.g.customer = Some((msg.conn, msg.to));
        let first = self.history.front().map_or(self.next_seq, |m| m.seq);
        let since = msg.since.max(0);
        let from_db = (since + 1 < first).then_some((since, first - 1));
        let frames: Vec<Value> = self
            .history
            .iter()
            .filter(|m| m.seq > since)
            .map(Msg::customer_frame)
            .collect();
        let ended = (self.phase == Phase::Ended).then(
            || json!({"type": "ended", "by": self.ended_by, "reason": "ended", "csat": self.csat}),
        );
        self.svc.event(
            "chat.resumed",
            json!({"chat": self.spec.id, "interaction": self.g.interaction.map(|i| i.0),
                   "since": since, "replayed": frames.len()}),
        );
        Ok(Attached {
            view: self.state_view(),
            from_db,
            frames,
            ended,
        })
    }
}

/// The customer socket `conn` closed.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Detach {
    pub conn: u64,
}

impl Handler<Detach> for ChatSession {
    type Result = ();

    fn handle(&mut self, msg: Detach, ctx: &mut Context<Self>) {
        if self
            .g
            .customer
            .as_ref()
            .is_some_and(|(c, _)| *c == msg.conn)
        {
            self.g.customer = None;
            if self.phase != Phase::Ended && self.spec.source.is_empty() {
                let wait = Duration::from_secs(self.svc.config().resume_window_secs);
                self.gone_timer = Some(ctx.run_later(wait, |act, ctx| {
                    act.gone_timer = None;
                    act.end(ctx, "customer", "left");
                }));
            }
        }
    }
}

/// A command from the customer's socket.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum CustomerCmd {
    /// A message (`cid`: the client's id for the ack).
    Message {
        #[serde(default)]
        text: String,
        #[serde(default)]
        attachment: Option<String>,
        #[serde(default)]
        cid: Option<Value>,
    },
    /// Typing indicator.
    Typing { typing: bool },
    /// Agent messages up to `seq` reached the widget.
    Delivered { seq: i64 },
    /// Agent messages up to `seq` were seen.
    Read { seq: i64 },
    /// The customer ends the chat.
    End {},
    /// The score after the end (1–5).
    Csat { score: i64 },
    /// Crashes the session (only with `calls.debug_panic_injection`, for the supervision test).
    DebugPanic {},
}

/// A customer command for the session.
#[derive(Message)]
#[rtype(result = "Result<Value, ContactError>")]
pub(super) struct FromCustomer {
    pub conn: u64,
    pub cmd: CustomerCmd,
}

impl ChatSession {
    fn receipt(
        &mut self,
        from_customer: bool,
        seq: i64,
        read: bool,
    ) -> Result<Value, ContactError> {
        if seq < 1 || seq >= self.next_seq {
            return Err(ContactError::bad("seq", "no message with that seq"));
        }
        let status = if read { "read" } else { "delivered" };
        self.svc.writer().push(ChatWrite::Receipt {
            chat_id: self.spec.id.clone(),
            sender: if from_customer { "agent" } else { "customer" }.into(),
            seq,
            read,
            at_ms: now_ms(),
        });
        // Receipts are not events: they would double the event volume of every chat.
        if from_customer {
            self.to_agent(
                &json!({"type": "chat_receipt", "chat": self.spec.id, "seq": seq,
                                  "status": status}),
            );
        } else {
            self.to_customer(&json!({"type": "receipt", "seq": seq, "status": status}));
        }
        Ok(json!({"seq": seq, "status": status}))
    }
}

impl Handler<FromCustomer> for ChatSession {
    type Result = Result<Value, ContactError>;

    fn handle(&mut self, msg: FromCustomer, ctx: &mut Context<Self>) -> Self::Result {
        if self.g.customer.as_ref().is_none_or(|(c, _)| *c != msg.conn) {
            return Err(ContactError::conflict(
                "chat",
                "the chat was resumed elsewhere",
            ));
        }
        match msg.cmd {
            CustomerCmd::Message {
                text,
                attachment,
                cid,
            } => {
                let att = self.attachment(attachment.as_deref())?;
                self.check_text(&text, att.is_some())?;
                let mut r = self.customer_message(text, att)?;
                r["cid"] = cid.unwrap_or(Value::Null);
                Ok(r)
            }
            CustomerCmd::Typing { typing } => {
                if self.phase == Phase::Active {
                    self.to_agent(&json!({"type": "chat_typing", "chat": self.spec.id,
                                          "from": "customer", "typing": typing}));
                }
                Ok(json!({"typing": typing}))
            }
            CustomerCmd::Delivered { seq } => self.receipt(true, seq, false),
            CustomerCmd::Read { seq } => self.receipt(true, seq, true),
            CustomerCmd::End {} => {
                self.not_ended()?;
                self.end(ctx, "customer", "ended");
                Ok(json!({"ended": true}))
            }
            CustomerCmd::Csat { score } => {
                if self.phase != Phase::Ended {
                    return Err(ContactError::conflict(
                        "score",
                        "rate the chat once it ended",
                    ));
                }
                if !(1..=5).contains(&score) {
                    return Err(ContactError::bad("score", "a score from 1 to 5"));
                }
                self.csat = Some(score);
                self.svc.event(
                    "chat.rated",
                    json!({"chat": self.spec.id, "interaction": self.g.interaction.map(|i| i.0),
                           "agent": self.g.agent, "score": score,
                           "contact_id": self.crm.map(|l| l.contact_id),
                           "crm_interaction": self.crm.map(|l| l.interaction_id)}),
                );
                self.crm_rate(score);
                self.svc.writer().push(ChatWrite::Csat {
                    chat_id: self.spec.id.clone(),
                    score,
                });
                self.to_agent(&json!({"type": "chat_csat", "chat": self.spec.id,
                    "interaction": self.g.interaction.map(|i| i.0), "score": score}));
                Ok(json!({"score": score}))
            }
            CustomerCmd::DebugPanic {} => {
                if !self.svc.inner.panic_injection {
                    return Err(ContactError::bad("type", "unknown command `debug_panic`"));
                }
                panic!("injected chat session panic (calls.debug_panic_injection)");
            }
        }
    }
}

/// A chat command from an agent (desktop WebSocket or REST).
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[allow(clippy::enum_variant_names)] // the wire names are chat_message, chat_typing…
pub(crate) enum AgentCmd {
    /// A message.
    ChatMessage {
        chat: String,
        #[serde(default)]
        text: String,
        #[serde(default)]
        attachment: Option<String>,
    },
    /// Typing indicator.
    ChatTyping { chat: String, typing: bool },
    /// Customer messages up to `seq` reached the desktop.
    ChatDelivered { chat: String, seq: i64 },
    /// Customer messages up to `seq` were seen.
    ChatRead { chat: String, seq: i64 },
    /// The chat's state and the messages in memory after `since`.
    ChatHistory {
        chat: String,
        #[serde(default)]
        since: i64,
    },
}

impl AgentCmd {
    /// The chat it names.
    pub fn chat(&self) -> &str {
        match self {
            AgentCmd::ChatMessage { chat, .. }
            | AgentCmd::ChatTyping { chat, .. }
            | AgentCmd::ChatDelivered { chat, .. }
            | AgentCmd::ChatRead { chat, .. }
            | AgentCmd::ChatHistory { chat, .. } => chat,
        }
    }
}

/// An agent's command for the session.
#[derive(Message)]
#[rtype(result = "Result<Value, ContactError>")]
pub(crate) struct FromAgent {
    pub agent: String,
    pub cmd: AgentCmd,
}

impl Handler<FromAgent> for ChatSession {
    type Result = Result<Value, ContactError>;

    fn handle(&mut self, msg: FromAgent, _ctx: &mut Context<Self>) -> Self::Result {
        if self.g.agent.as_deref() != Some(msg.agent.as_str()) {
            return Err(ContactError {
                status: 403,
                error: "the chat is not assigned to you".into(),
                field: Some("chat".into()),
            });
        }
        match msg.cmd {
            AgentCmd::ChatMessage {
                text, attachment, ..
            } => {
                self.not_ended()?;
                let att = self.attachment(attachment.as_deref())?;
                self.check_text(&text, att.is_some())?;
                let m = self.append("agent", msg.agent, text, att);
                self.to_customer(&m.customer_frame());
                self.to_agent(&m.agent_frame(&self.spec.id, self.g.interaction));
                if let Some(o) = &self.outbound {
                    o.send(json!({"type": "message", "seq": m.seq, "text": m.text,
                                  "attachment": m.attachment, "agent": m.author, "at": m.at}));
                }
                Ok(json!({"chat": self.spec.id, "seq": m.seq, "at": m.at}))
            }
            AgentCmd::ChatTyping { typing, .. } => {
                self.to_customer(&json!({"type": "typing", "from": "agent", "typing": typing}));
                Ok(json!({"typing": typing}))
            }
            AgentCmd::ChatDelivered { seq, .. } => self.receipt(false, seq, false),
            AgentCmd::ChatRead { seq, .. } => self.receipt(false, seq, true),
            AgentCmd::ChatHistory { since, .. } => {
                let messages: Vec<Value> = self
                    .history
                    .iter()
                    .filter(|m| m.seq > since)
                    .map(|m| m.agent_frame(&self.spec.id, self.g.interaction))
                    .collect();
                Ok(json!({"chat": self.state_view(), "messages": messages}))
            }
        }
    }
}

/// A message from an API channel's platform user.
#[derive(Message)]
#[rtype(result = "Result<Value, ContactError>")]
pub(super) struct Inbound {
    pub text: String,
    pub attachments: Vec<Value>,
}

impl Handler<Inbound> for ChatSession {
    type Result = Result<Value, ContactError>;

    fn handle(&mut self, msg: Inbound, _ctx: &mut Context<Self>) -> Self::Result {
        self.not_ended()?;
        self.check_text(&msg.text, !msg.attachments.is_empty())?;
        let mut seqs = Vec::new();
        let mut last = Value::Null;
        if !msg.text.trim().is_empty() || msg.attachments.is_empty() {
            last = self.customer_message(msg.text, None)?;
            seqs.push(last["seq"].clone());
        }
        for a in msg.attachments {
            let id = a["id"].as_str().unwrap_or_default().to_string();
            self.attachments.insert(id, a.clone());
            last = self.customer_message(String::new(), Some(a))?;
            seqs.push(last["seq"].clone());
        }
        last["seqs"] = Value::Array(seqs);
        Ok(last)
    }
}

/// May this party upload to the chat? (`token_hash` for the customer, `agent` for an agent.)
#[derive(Message)]
#[rtype(result = "Result<(), ContactError>")]
pub(super) struct MayUpload {
    pub token_hash: Option<String>,
    pub agent: Option<String>,
}

impl Handler<MayUpload> for ChatSession {
    type Result = Result<(), ContactError>;

    fn handle(&mut self, msg: MayUpload, _ctx: &mut Context<Self>) -> Self::Result {
        let ok = match (&msg.token_hash, &msg.agent) {
            (Some(t), _) => *t == self.spec.token_hash,
            (None, Some(a)) => self.g.agent.as_deref() == Some(a.as_str()),
            (None, None) => false,
        };
        if !ok {
            return Err(ContactError {
                status: 401,
                error: "not a party of this chat".into(),
                field: Some("token".into()),
            });
        }
        self.not_ended()
    }
}

/// An upload was stored: messages may now reference it.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Uploaded(pub Value);

impl Handler<Uploaded> for ChatSession {
    type Result = ();

    fn handle(&mut self, msg: Uploaded, _ctx: &mut Context<Self>) {
        if let Some(id) = msg.0["id"].as_str() {
            self.attachments.insert(id.to_string(), msg.0.clone());
        }
    }
}

/// The chat's state (REST `GET /api/v1/chats/{id}`).
#[derive(Message)]
#[rtype(result = "Value")]
pub(super) struct View;

impl Handler<View> for ChatSession {
    type Result = MessageResult<View>;

    fn handle(&mut self, _msg: View, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.state_view())
    }
}
