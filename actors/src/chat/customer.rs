//! [`CustomerSocket`]: one actor per customer WebSocket (`GET /chat/ws`).
//!
//! Customer → server (JSON text frames):
//!
//! ```json
//! {"type": "start", "name": "Ann", "email": "…", "phone": "…", "queue": "web",
//!  "skills": {"billing": 3}, "attributes": {…}, "visitor_id": "v-123"}
//! {"type": "message", "text": "hello", "attachment": "ATTACHMENT_ID", "cid": 7}
//! {"type": "typing", "typing": true}
//! {"type": "delivered", "seq": 4}     {"type": "read", "seq": 4}
//! {"type": "end"}                     {"type": "csat", "score": 5}
//! ```
//!
//! Server → customer: `started` (chat id and resume token), `resumed`, `message` (every
//! message of the chat, numbered by `seq`), `ack` (a command applied; for a message its
//! `seq`), `agent_joined`, `typing`, `receipt`, `ended`, `error`.
//! Reconnecting with `/chat/ws?resume=TOKEN&since=N` replays every message with `seq > N`.

use super::session::{
    self, Attach, Attached, ChatSession, CustomerCmd, Detach, FromCustomer, Msg, Spec,
};
use super::{token_hash, ChatService};
use crate::contact::ContactError;
use crate::routing::Channel;
use actix::prelude::*;
use actix_ws::{Message as WsMessage, MessageStream, ProtocolError, Session};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use switchboard_storage::ChatWrite;

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// A frame for the customer's socket (`close`: then close it).
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub struct CustomerPush {
    text: Arc<str>,
    close: bool,
}

impl CustomerPush {
    /// A JSON frame.
    pub fn text(v: &Value) -> CustomerPush {
        CustomerPush {
            text: Arc::from(v.to_string()),
            close: false,
        }
    }

    /// A last JSON frame, then the socket closes.
    pub fn close(v: &Value) -> CustomerPush {
        CustomerPush {
            text: Arc::from(v.to_string()),
            close: true,
        }
    }
}

/// The `start` frame.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Start {
    /// Always `start`.
    #[serde(rename = "type")]
    _type: String,
    name: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    phone: Option<String>,
    #[serde(default)]
    queue: Option<String>,
    #[serde(default)]
    skills: BTreeMap<String, i64>,
    #[serde(default)]
    attributes: Map<String, Value>,
    #[serde(default)]
    visitor_id: Option<String>,
}

/// Checks a `start` frame; the error names the field.
fn check_start(s: &Start) -> Result<(), ContactError> {
    let name = s.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ContactError::bad("name", "1 to 100 characters"));
    }
    if let Some(e) = &s.email {
        let ok = e.len() <= 254
            && e.split_once('@')
                .is_some_and(|(a, b)| !a.is_empty() && b.contains('.'))
            && !e.contains(char::is_whitespace);
        if !ok {
            return Err(ContactError::bad("email", "an e-mail address"));
        }
    }
    if let Some(p) = &s.phone {
        let ok = (3..=32).contains(&p.len())
            && p.chars()
                .all(|c| c.is_ascii_digit() || " +-().".contains(c));
        if !ok {
            return Err(ContactError::bad("phone", "a phone number"));
        }
    }
    if let Some(q) = &s.queue {
        if q.is_empty() || q.len() > 64 {
            return Err(ContactError::bad("queue", "a queue name"));
        }
    }
    if let Some((k, _)) = s
        .skills
        .iter()
        .find(|(k, v)| k.is_empty() || k.len() > 64 || !(0..=100).contains(*v))
    {
        return Err(ContactError::bad(
            &format!("skills.{k}"),
            "a level from 0 to 100",
        ));
    }
    if s.attributes.len() > 32 || Value::Object(s.attributes.clone()).to_string().len() > 4096 {
        return Err(ContactError::bad("attributes", "at most 32 keys and 4 KiB"));
    }
    if let Some(v) = &s.visitor_id {
        if v.is_empty() || v.len() > 128 {
            return Err(ContactError::bad("visitor_id", "1 to 128 characters"));
        }
    }
    Ok(())
}

/// One customer WebSocket.
pub(super) struct CustomerSocket {
    svc: ChatService,
    conn: u64,
    ws: Session,
    stream: Option<MessageStream>,
    resume: Option<(String, i64)>,
    session: Option<Addr<ChatSession>>,
    /// An ended chat with no live session, resumed from the database (for its CSAT).
    stored: Option<String>,
    starting: bool,
}

impl CustomerSocket {
    /// A socket; `resume`: the token and last seq seen from the query string.
    pub fn new(
        svc: ChatService,
        ws: Session,
        stream: MessageStream,
        resume: Option<(String, i64)>,
    ) -> CustomerSocket {
        CustomerSocket {
            svc,
            conn: NEXT_CONN.fetch_add(1, Ordering::Relaxed),
            ws,
            stream: Some(stream),
            resume,
            session: None,
            stored: None,
            starting: false,
        }
    }

    fn send(&mut self, ctx: &mut Context<Self>, text: Arc<str>, close: bool) {
        self.send_all(ctx, vec![text], close);
    }

    /// Writes frames in order. (Several `ctx.wait`s queued by one handler run last-first, so
    /// frames that belong together go out from one future.)
    fn send_all(&mut self, ctx: &mut Context<Self>, texts: Vec<Arc<str>>, close: bool) {
        let mut ws = self.ws.clone();
        ctx.wait(
            async move {
                for t in texts {
                    ws.text(t.to_string()).await?;
                }
                Ok::<(), actix_ws::Closed>(())
            }
            .into_actor(self)
            .map(move |r, _act, ctx| {
                if r.is_err() || close {
                    ctx.stop();
                }
            }),
        );
    }

    fn frame(&mut self, ctx: &mut Context<Self>, v: &Value) {
        self.send(ctx, Arc::from(v.to_string()), false);
    }

    fn error(&mut self, ctx: &mut Context<Self>, e: &ContactError, close: bool) {
        let f = json!({"type": "error", "error": e.error, "field": e.field, "status": e.status});
        self.send(ctx, Arc::from(f.to_string()), close);
    }

    fn resume(&mut self, ctx: &mut Context<Self>, token: String, since: i64) {
        let hash = token_hash(&token);
        let svc = self.svc.clone();
        if let Some((_, addr)) = svc.session_by_token(&hash) {
            let attach = Attach {
                conn: self.conn,
                to: ctx.address().recipient(),
                since,
                token_hash: hash,
            };
            let a2 = addr.clone();
            ctx.wait(
                async move {
                    let att: Attached = a2.send(attach).await.unwrap_or_else(|_| Err(gone()))?;
                    let older = match att.from_db {
                        Some((from, to)) => {
                            svc.flush().await;
                            stored_frames(&svc, att.view["chat"].as_str().unwrap_or(""), from, to)
                                .await
                        }
                        None => Vec::new(),
                    };
                    Ok::<_, ContactError>((att, older))
                }
                .into_actor(self)
                .map(move |r, act, ctx| match r {
                    Ok((att, older)) => {
                        act.session = Some(addr);
                        let mut hello = att.view;
                        hello["type"] = json!("resumed");
                        let all = std::iter::once(&hello)
                            .chain(older.iter())
                            .chain(att.frames.iter())
                            .chain(att.ended.iter())
                            .map(|f| Arc::from(f.to_string()))
                            .collect();
                        act.send_all(ctx, all, false);
                    }
                    Err(e) => act.error(ctx, &e, true),
                }),
            );
            return;
        }
        // No live session: an ended chat (or one from before a restart) from the database.
        ctx.wait(
            async move {
                svc.flush().await;
                let row = svc
                    .storage()
                    .chat_by_token(&hash)
                    .await
                    .map_err(|_| ContactError::unavailable())?
                    .ok_or_else(|| ContactError {
                        status: 401,
                        error: "unknown resume token".into(),
                        field: Some("resume".into()),
                    })?;
                if row.state != "ended" {
                    // Its session did not survive a restart: it ends now.
                    svc.writer().push(ChatWrite::Ended {
                        chat_id: row.id.clone(),
                        by: "system".into(),
                        at_ms: switchboard_storage::now_ms(),
                    });
                }
                let frames = stored_frames(&svc, &row.id, since, i64::MAX).await;
                Ok::<_, ContactError>((row, frames))
            }
            .into_actor(self)
            .map(|r, act, ctx| match r {
                Ok((row, frames)) => {
                    act.stored = Some(row.id.clone());
                    let hello = json!({"type": "resumed", "chat": row.id, "state": "ended",
                        "agent": row.agent, "interaction": row.interaction_id,
                        "csat": row.csat, "ended_by": row.ended_by});
                    act.frame(ctx, &hello);
                    for f in &frames {
                        act.frame(ctx, f);
                    }
                    let by = row.ended_by.unwrap_or_else(|| "system".into());
                    act.frame(
                        ctx,
                        &json!({"type": "ended", "by": by, "reason": "ended",
                                           "csat": row.csat}),
                    );
                }
                Err(e) => act.error(ctx, &e, true),
            }),
        );
    }

    fn start(&mut self, ctx: &mut Context<Self>, s: Start) {
        if let Err(e) = check_start(&s) {
            self.error(ctx, &e, false);
            return;
        }
        self.starting = true;
        let (id, token) = session::mint();
        let mut attributes = s.attributes;
        if !s.skills.is_empty() {
            attributes.insert("skills".into(), json!(s.skills));
        }
        let queue = s.queue.or_else(|| {
            let d = &self.svc.config().default_queue;
            (!d.is_empty()).then(|| d.clone())
        });
        let spec = Spec {
            id,
            token_hash: token_hash(&token),
            channel: Channel::Chat,
            source: String::new(),
            external_user_id: s.visitor_id,
            name: s.name.trim().to_string(),
            email: s.email,
            phone: s.phone,
            queue,
            attributes,
        };
        let svc = self.svc.clone();
        let chat = spec.id.clone();
        let me = (self.conn, ctx.address().recipient());
        ctx.wait(
            async move { session::start(&svc, spec, Some(me)).await }
                .into_actor(self)
                .map(move |r, act, ctx| {
                    act.starting = false;
                    match r {
                        Ok((addr, interaction)) => {
                            act.session = Some(addr);
                            let f = json!({"type": "started", "chat": chat, "token": token,
                                           "interaction": interaction.0, "state": "queued"});
                            act.frame(ctx, &f);
                        }
                        Err(e) => act.error(ctx, &e, false),
                    }
                }),
        );
    }
}

fn gone() -> ContactError {
    ContactError {
        status: 410,
        error: "the chat session is gone".into(),
        field: Some("chat".into()),
    }
}

/// Customer frames of stored messages `from < seq <= to`.
async fn stored_frames(svc: &ChatService, chat: &str, from: i64, to: i64) -> Vec<Value> {
    let limit = (to - from).clamp(0, 100_000);
    let rows = match svc.storage().chat_messages(chat, from, limit).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(%chat, error = %e, "chat messages unavailable");
            return Vec::new();
        }
    };
    let mut out = Vec::with_capacity(rows.len());
    for r in rows.iter().filter(|r| r.seq <= to) {
        let att = match &r.attachment_id {
            Some(id) => svc
                .storage()
                .chat_attachment(id)
                .await
                .ok()
                .flatten()
                .map(|a| super::api::attachment_meta(&a)),
            None => None,
        };
        out.push(Msg::from_row(r, att).customer_frame());
    }
    out
}

impl Actor for CustomerSocket {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some(s) = self.stream.take() {
            ctx.add_stream(s.max_frame_size(64 * 1024));
        }
        if let Some((token, since)) = self.resume.take() {
            self.resume(ctx, token, since);
        }
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        if let Some(s) = self.session.take() {
            s.do_send(Detach { conn: self.conn });
        }
        let ws = self.ws.clone();
        actix_rt::spawn(async move {
            let _ = ws.close(None).await;
        });
    }
}

impl Handler<CustomerPush> for CustomerSocket {
    type Result = ();

    fn handle(&mut self, msg: CustomerPush, ctx: &mut Context<Self>) {
        if msg.close {
            // Replaced by another socket: do not detach the new one.
            self.session = None;
        }
        self.send(ctx, msg.text, msg.close);
    }
}

#[derive(Deserialize)]
struct Kind {
    #[serde(rename = "type")]
    kind: String,
}

impl StreamHandler<Result<WsMessage, ProtocolError>> for CustomerSocket {
    fn handle(&mut self, msg: Result<WsMessage, ProtocolError>, ctx: &mut Context<Self>) {
        let text = match msg {
            Ok(WsMessage::Text(t)) => t,
            Ok(WsMessage::Ping(p)) => {
                let mut ws = self.ws.clone();
                ctx.wait(
                    async move {
                        let _ = ws.pong(&p).await;
                    }
                    .into_actor(self),
                );
                return;
            }
            Ok(WsMessage::Close(_)) | Err(_) => {
                ctx.stop();
                return;
            }
            Ok(WsMessage::Binary(_)) => {
                self.error(ctx, &ContactError::bad("-", "send JSON text frames"), false);
                return;
            }
            Ok(_) => return,
        };
        let kind = match serde_json::from_str::<Kind>(&text) {
            Ok(k) => k.kind,
            Err(e) => {
                self.error(ctx, &ContactError::bad("type", &e.to_string()), false);
                return;
            }
        };
        if kind == "start" {
            if self.session.is_some() || self.starting || self.stored.is_some() {
                self.error(
                    ctx,
                    &ContactError::conflict("type", "this socket has a chat"),
                    false,
                );
                return;
            }
            match serde_json::from_str::<Start>(&text) {
                Ok(s) => self.start(ctx, s),
                Err(e) => self.error(ctx, &ContactError::bad("start", &e.to_string()), false),
            }
            return;
        }
        let cmd: CustomerCmd = match serde_json::from_str(&text) {
            Ok(c) => c,
            Err(e) => {
                self.error(ctx, &ContactError::bad("type", &e.to_string()), false);
                return;
            }
        };
        let Some(session) = self.session.clone() else {
            // An ended chat read from the database still takes its score.
            if let (Some(chat), CustomerCmd::Csat { score }) = (&self.stored, &cmd) {
                if (1..=5).contains(score) {
                    self.svc.writer().push(ChatWrite::Csat {
                        chat_id: chat.clone(),
                        score: *score,
                    });
                    super::crm_link::rate_stored(&self.svc, chat, *score);
                    self.frame(
                        ctx,
                        &json!({"type": "ack", "command": "csat", "score": score}),
                    );
                } else {
                    self.error(
                        ctx,
                        &ContactError::bad("score", "a score from 1 to 5"),
                        false,
                    );
                }
                return;
            }
            self.error(
                ctx,
                &ContactError::conflict("type", "start or resume a chat first"),
                false,
            );
            return;
        };
        let conn = self.conn;
        ctx.wait(
            async move {
                session
                    .send(FromCustomer { conn, cmd })
                    .await
                    .unwrap_or_else(|_| Err(gone()))
            }
            .into_actor(self)
            .map(move |r, act, ctx| match r {
                Ok(mut v) => {
                    v["type"] = json!("ack");
                    v["command"] = json!(kind);
                    act.frame(ctx, &v);
                }
                Err(e) => act.error(ctx, &e, false),
            }),
        );
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
