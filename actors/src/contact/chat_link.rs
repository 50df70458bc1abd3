//! The seam between the routing actor and chat sessions (`crate::chat`): a chat enqueues its
//! interaction with a [`ChatLink`] recipient and hears when an agent takes it, when the agent
//! ends it and when the queue gives up. Chat sessions push frames to agent desktops directly
//! (`desks.rs`), not through the routing actor.

use super::requests::{ContactError, NewApiInteraction};
use super::routing_actor::RoutingActor;
use crate::routing::{Channel, InteractionId, NewInteraction};
use actix::prelude::*;
use serde_json::Value;

/// What the routing actor tells a chat session about its interaction.
#[derive(Message, Clone, Debug, PartialEq, Eq)]
#[rtype(result = "()")]
pub enum ChatLink {
    /// An agent accepted the offer.
    Assigned {
        /// The interaction.
        interaction: InteractionId,
        /// The agent's name.
        agent: String,
    },
    /// The agent ended the conversation (the interaction is in wrap-up or completed).
    EndedByAgent {
        /// The interaction.
        interaction: InteractionId,
    },
    /// The queue gave up on it (max wait, no agents…) or it was abandoned.
    Left {
        /// The interaction.
        interaction: InteractionId,
        /// Why (`max_wait`, `queue_empty`, …).
        reason: String,
    },
}

/// Enqueues a chat or messaging interaction whose routing news goes to `link`.
#[derive(Message)]
#[rtype(result = "Result<InteractionId, ContactError>")]
pub(crate) struct EnqueueChat {
    pub new: NewApiInteraction,
    pub link: Recipient<ChatLink>,
}

impl Handler<EnqueueChat> for RoutingActor {
    type Result = Result<InteractionId, ContactError>;

    fn handle(&mut self, msg: EnqueueChat, ctx: &mut Context<Self>) -> Self::Result {
        let n = msg.new;
        if !matches!(n.channel, Channel::Chat | Channel::Messaging) {
            return Err(ContactError::bad("channel", "chat or messaging"));
        }
        let queue = match n.queue.as_deref() {
            Some(q) => Some(
                self.dir
                    .queue_id(q)
                    .ok_or_else(|| ContactError::not_found("queue", &format!("queue `{q}`")))?,
            ),
            None => None,
        };
        let id = self.mint_interaction();
        // Known before the router's first outputs, which may already assign it.
        self.chat_links.insert(id, msg.link);
        let new = NewInteraction {
            id,
            channel: n.channel,
            customer: n.customer,
            attributes: Value::Object(n.attributes),
            priority: n.priority,
            queue,
        };
        let r = self.start_interaction(new, None);
        self.rearm(ctx);
        match r {
            Ok(id) => Ok(id),
            Err(e) => {
                self.chat_links.remove(&id);
                Err(ContactError {
                    status: 409,
                    error: e.to_string(),
                    field: Some("queue".into()),
                })
            }
        }
    }
}

impl RoutingActor {
    /// Tells the chat session of `interaction`, if any, about a routing output.
    pub(super) fn chat_news(&mut self, interaction: InteractionId, news: ChatLink) {
        let last = matches!(news, ChatLink::Left { .. } | ChatLink::EndedByAgent { .. });
        let link = if last {
            self.chat_links.remove(&interaction)
        } else {
            self.chat_links.get(&interaction).cloned()
        };
        if let Some(l) = link {
            l.do_send(news);
        }
    }
}
