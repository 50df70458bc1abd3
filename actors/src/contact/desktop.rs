//! Agent desktops: one small [`DesktopSession`] actor per WebSocket. It forwards the JSON
//! commands the agent sends to the routing actor and writes what the routing actor pushes
//! (offers, status changes, queue lengths, errors) to the socket, in order.
//!
//! Commands (text frames):
//!
//! ```json
//! {"type": "accept", "reservation": 7}          // chat / messaging / e-mail offers
//! {"type": "reject", "reservation": 7}
//! {"type": "state", "state": "available" | "break" | "offline", "reason": "lunch"}
//! {"type": "wrapup_done", "disposition": "sold", "interaction": 12}   // interaction optional
//! {"type": "end", "interaction": 12}            // the agent ends a chat
//! {"type": "chat_message", "chat": "…", "text": "…", "attachment": "…"}   // see crate::chat
//! {"type": "chat_typing", "chat": "…", "typing": true}
//! {"type": "chat_delivered" | "chat_read", "chat": "…", "seq": 4}
//! ```
//!
//! Pushes: `hello` (on connect: status, work, pending offers), `offer` (with `crm`, the
//! customer's screen pop, or `null`: `pop.rs`), `rescind`, `assigned`,
//! `wrapup`, `completed`, `status`, `queue`, `ack` (a command was applied) and `error` (a
//! command was refused or did not parse; the socket stays open).

use super::requests::ContactError;
use super::routing_actor::RoutingActor;
use super::ReservationId;
use crate::routing::{AgentId, InteractionId};
use actix::prelude::*;
use actix_ws::{Message as WsMessage, MessageStream, ProtocolError, Session};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// A command from an agent desktop.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum DesktopCommand {
    /// Accept a (non-voice) offer.
    Accept {
        /// The offer.
        reservation: ReservationId,
    },
    /// Reject an offer: it goes to the next agent.
    Reject {
        /// The offer.
        reservation: ReservationId,
    },
    /// Change presence.
    State {
        /// `available`, `break` or `offline`.
        state: String,
        /// Break reason code.
        #[serde(default)]
        reason: Option<String>,
    },
    /// End after-contact work.
    WrapupDone {
        /// The disposition code.
        #[serde(default)]
        disposition: Option<String>,
        /// Which interaction (needed only with several in wrap-up).
        #[serde(default)]
        interaction: Option<InteractionId>,
    },
    /// End the conversation of an assigned interaction (chats; calls end by hanging up).
    End {
        /// The interaction.
        interaction: InteractionId,
    },
}

impl DesktopCommand {
    fn name(&self) -> &'static str {
        match self {
            DesktopCommand::Accept { .. } => "accept",
            DesktopCommand::Reject { .. } => "reject",
            DesktopCommand::State { .. } => "state",
            DesktopCommand::WrapupDone { .. } => "wrapup_done",
            DesktopCommand::End { .. } => "end",
        }
    }
}

/// The `type` of a chat command frame (`chat_message`, `chat_typing`, `chat_read`…), if `text`
/// is one.
fn chat_command(text: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Kind {
        #[serde(rename = "type")]
        kind: String,
    }
    let k: Kind = serde_json::from_str(text).ok()?;
    k.kind.starts_with("chat_").then_some(k.kind)
}

/// A JSON text frame for a desktop.
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub struct DesktopPush(pub Arc<str>);

/// Registers a desktop of agent `agent` (by name).
#[derive(Message)]
#[rtype(result = "Result<(AgentId, u64), ContactError>")]
pub(crate) struct AttachDesktop {
    pub agent: String,
    pub recipient: Recipient<DesktopPush>,
}

/// Unregisters a desktop.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct DetachDesktop {
    pub agent: AgentId,
    pub session: u64,
}

/// A desktop command for the routing actor.
#[derive(Message)]
#[rtype(result = "Result<(), ContactError>")]
pub(crate) struct FromDesktop {
    pub agent: AgentId,
    pub cmd: DesktopCommand,
}

/// One agent-desktop WebSocket.
pub struct DesktopSession {
    agent_name: String,
    attached: Option<(AgentId, u64)>,
    ws: Session,
    stream: Option<MessageStream>,
    routing: Addr<RoutingActor>,
}

impl DesktopSession {
    /// A session for agent `agent_name` over an upgraded socket.
    pub fn new(
        agent_name: String,
        ws: Session,
        stream: MessageStream,
        routing: Addr<RoutingActor>,
    ) -> DesktopSession {
        DesktopSession {
            agent_name,
            attached: None,
            ws,
            stream: Some(stream),
            routing,
        }
    }

    fn send(&mut self, ctx: &mut Context<Self>, text: Arc<str>) {
        let mut ws = self.ws.clone();
        ctx.wait(
            async move { ws.text(text.to_string()).await }
                .into_actor(self)
                .map(|r, _act, ctx| {
                    if r.is_err() {
                        ctx.stop();
                    }
                }),
        );
    }

    fn error(&mut self, ctx: &mut Context<Self>, e: &ContactError) {
        let frame = json!({"type": "error", "error": e.error, "field": e.field});
        self.send(ctx, Arc::from(frame.to_string()));
    }
}

impl Actor for DesktopSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some(s) = self.stream.take() {
            ctx.add_stream(s);
        }
        let attach = AttachDesktop {
            agent: self.agent_name.clone(),
            recipient: ctx.address().recipient(),
        };
        // Commands wait until the session is attached.
        ctx.wait(
            self.routing
                .send(attach)
                .into_actor(self)
                .map(|r, act, ctx| match r {
                    Ok(Ok(a)) => {
                        super::desks::add(&act.agent_name, a.1, ctx.address().recipient());
                        act.attached = Some(a);
                    }
                    Ok(Err(e)) => {
                        act.error(ctx, &e);
                        ctx.stop();
                    }
                    Err(_) => {
                        act.error(ctx, &ContactError::unavailable());
                        ctx.stop();
                    }
                }),
        );
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        if let Some((agent, session)) = self.attached.take() {
            super::desks::remove(&self.agent_name, session);
            self.routing.do_send(DetachDesktop { agent, session });
        }
        let ws = self.ws.clone();
        actix_rt::spawn(async move {
            let _ = ws.close(None).await;
        });
    }
}

impl Handler<DesktopPush> for DesktopSession {
    type Result = ();

    fn handle(&mut self, msg: DesktopPush, ctx: &mut Context<Self>) {
        self.send(ctx, msg.0);
    }
}

impl StreamHandler<Result<WsMessage, ProtocolError>> for DesktopSession {
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
                self.error(ctx, &ContactError::bad("-", "send JSON text frames"));
                return;
            }
            Ok(_) => return,
        };
        let Some((agent, _)) = self.attached else {
            return;
        };
        if let Some(kind) = chat_command(&text) {
            // Chat commands go to the chat session (`crate::chat::desktop`).
            let fut = crate::chat::from_desktop(self.agent_name.clone(), text.to_string());
            ctx.wait(fut.into_actor(self).map(move |r, act, ctx| match r {
                Ok(result) => {
                    let ack = json!({"type": "ack", "command": kind, "result": result});
                    act.send(ctx, Arc::from(ack.to_string()));
                }
                Err(e) => act.error(ctx, &e),
            }));
            return;
        }
        let cmd: DesktopCommand = match serde_json::from_str(&text) {
            Ok(c) => c,
            Err(e) => {
                self.error(ctx, &ContactError::bad("type", &e.to_string()));
                return;
            }
        };
        let name = cmd.name();
        ctx.wait(
            self.routing
                .send(FromDesktop { agent, cmd })
                .into_actor(self)
                .map(move |r, act, ctx| match r {
                    Ok(Ok(())) => {
                        let ack = json!({"type": "ack", "command": name});
                        act.send(ctx, Arc::from(ack.to_string()));
                    }
                    Ok(Err(e)) => act.error(ctx, &e),
                    Err(_) => act.error(ctx, &ContactError::unavailable()),
                }),
        );
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
