//! Web chat and the API channel (issue 9).
//!
//! ```text
//!  widget ──/chat/ws──▶ CustomerSocket ─┐                     ┌─▶ RoutingActor (offers, desktops)
//!  adapter ─/api/v1/channels/…────────────┼─▶ ChatSession (1/chat) ─┼─▶ ChatWriter ─▶ storage
//!  agent desktop (chat_* commands) ─────┘    (chat arbiter)     └─▶ outbound webhook (API channel)
//! ```
//!
//! * [`ChatSession`] (`session.rs`): one actor per conversation on the chat arbiter: numbers
//!   messages, keeps recent ones for resumption, relays typing and receipts, follows its
//!   interaction in the router ([`crate::contact::ChatLink`]). A guard in it tells the service
//!   when it dies, even by a panic: the chat is then ended (by `system`), its interaction ended
//!   and its customer told, as a call's supervisor does for a call.
//! * `customer.rs`: one actor per customer WebSocket (`/chat/ws`); a chat outlives its socket
//!   and is resumed with its token.
//! * `writer.rs`: the batched, ordered database writer.
//! * `channel.rs`: HMAC signatures and the signed outbound webhooks of API channels.
//! * `api.rs`: the routes; `assets/`: the widget, the demo page and the agent page.

mod api;
mod channel;
mod crm_link;
mod customer;
mod session;
mod writer;

pub use api::configure;
pub use channel::{sign, verify_signature, SignatureError};
pub use session::ChatSession;

use crate::contact::{ContactCentre, ContactError};
use actix::prelude::*;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use switchboard_engine::config::{ChannelConfig, ChatConfig};
use switchboard_storage::Storage;
use writer::ChatWriter;

/// The process's chat service, once [`install`]ed.
static SERVICE: OnceLock<ChatService> = OnceLock::new();

/// Makes `svc` the service the routes and agent desktops use (the first call wins).
pub fn install(svc: ChatService) {
    let _ = SERVICE.set(svc);
}

/// The installed service.
pub fn service() -> Option<&'static ChatService> {
    SERVICE.get()
}

/// Everything chat sessions share. Cheap to clone.
#[derive(Clone)]
pub struct ChatService {
    inner: Arc<Inner>,
}

struct Inner {
    storage: Storage,
    cc: ContactCentre,
    /// Chats become CRM interactions of their contacts; chat events go out through its bus.
    crm: crate::crm::Crm,
    config: ChatConfig,
    channels: BTreeMap<String, ChannelConfig>,
    data_dir: PathBuf,
    writer: ChatWriter,
    arbiter: actix_rt::ArbiterHandle,
    /// Live sessions by chat id, resume-token hash and (API channel, external user).
    registry: Mutex<Registry>,
    /// Whether a customer may crash their session on purpose (`calls.debug_panic_injection`).
    panic_injection: bool,
}

#[derive(Default)]
struct Registry {
    by_id: HashMap<String, Addr<ChatSession>>,
    by_token: HashMap<String, String>,
    by_user: HashMap<(String, String), String>,
}

impl ChatService {
    /// Starts the writer and an arbiter (thread) for the chat sessions.
    pub fn start(
        storage: Storage,
        cc: ContactCentre,
        crm: crate::crm::Crm,
        config: ChatConfig,
        channels: BTreeMap<String, ChannelConfig>,
        data_dir: PathBuf,
        panic_injection: bool,
    ) -> ChatService {
        let arbiter = actix_rt::Arbiter::new();
        let handle = arbiter.handle();
        // The arbiter runs for the life of the process.
        std::mem::forget(arbiter);
        let writer = ChatWriter::start(storage.clone(), &handle);
        ChatService {
            inner: Arc::new(Inner {
                storage,
                cc,
                crm,
                config,
                channels,
                data_dir,
                writer,
                arbiter: handle,
                registry: Mutex::default(),
                panic_injection,
            }),
        }
    }

    /// The database.
    pub fn storage(&self) -> &Storage {
        &self.inner.storage
    }

    /// The contact centre.
    pub fn contact(&self) -> &ContactCentre {
        &self.inner.cc
    }

    /// The CRM.
    pub fn crm(&self) -> &crate::crm::Crm {
        &self.inner.crm
    }

    /// Publishes a chat event (`chat.*`) on the event bus.
    pub(crate) fn event(&self, kind: &str, data: Value) {
        self.inner.crm.publish(kind, data);
    }

    /// The `[chat]` settings.
    pub fn config(&self) -> &ChatConfig {
        &self.inner.config
    }

    /// An API channel's settings.
    pub fn channel(&self, name: &str) -> Option<&ChannelConfig> {
        self.inner.channels.get(name)
    }

    fn data_dir(&self) -> &PathBuf {
        &self.inner.data_dir
    }

    fn writer(&self) -> &ChatWriter {
        &self.inner.writer
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        // A poisoned lock only means a thread panicked while holding it; the maps stay usable.
        self.inner
            .registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The live session of chat `id`.
    pub fn session(&self, id: &str) -> Option<Addr<ChatSession>> {
        self.registry().by_id.get(id).cloned()
    }

    fn session_by_token(&self, token_hash: &str) -> Option<(String, Addr<ChatSession>)> {
        let r = self.registry();
        let id = r.by_token.get(token_hash)?;
        Some((id.clone(), r.by_id.get(id)?.clone()))
    }

    fn session_of_user(&self, source: &str, user: &str) -> Option<Addr<ChatSession>> {
        let r = self.registry();
        let id = r.by_user.get(&(source.to_string(), user.to_string()))?;
        r.by_id.get(id).cloned()
    }

    fn register(&self, s: &session::Spec, addr: Addr<ChatSession>) {
        let mut r = self.registry();
        r.by_id.insert(s.id.clone(), addr);
        r.by_token.insert(s.token_hash.clone(), s.id.clone());
        if !s.source.is_empty() {
            if let Some(u) = &s.external_user_id {
                r.by_user
                    .insert((s.source.clone(), u.clone()), s.id.clone());
            }
        }
    }

    /// Forgets a stopped session.
    fn unregister(&self, id: &str, token_hash: &str, user: Option<(String, String)>) {
        let mut r = self.registry();
        r.by_id.remove(id);
        r.by_token.remove(token_hash);
        if let Some(u) = user {
            if r.by_user.get(&u).is_some_and(|v| v == id) {
                r.by_user.remove(&u);
            }
        }
    }

    /// Forgets the (channel, user) → chat entry of an ended conversation, so the user's next
    /// message starts a new one.
    fn forget_user(&self, source: &str, user: &str, id: &str) {
        let mut r = self.registry();
        let k = (source.to_string(), user.to_string());
        if r.by_user.get(&k).is_some_and(|v| v == id) {
            r.by_user.remove(&k);
        }
    }

    /// Live sessions.
    pub fn live_sessions(&self) -> usize {
        self.registry().by_id.len()
    }

    /// Waits until every chat write queued so far is stored.
    pub async fn flush(&self) {
        self.inner.writer.flush().await;
    }
}

/// A random id of `bytes` random bytes, hex.
fn random_hex(bytes: usize) -> String {
    let mut out = String::with_capacity(bytes * 2);
    while out.len() < bytes * 2 {
        out.push_str(&format!("{:016x}", rand::random::<u64>()));
    }
    out.truncate(bytes * 2);
    out
}

/// SHA-256 of a resume token, hex (what the database stores).
fn token_hash(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// Runs a chat command an agent desktop sent (`chat_message`, `chat_typing`,
/// `chat_delivered`, `chat_read`, `chat_history`); answers what the ack carries.
pub async fn from_desktop(agent: String, text: String) -> Result<Value, ContactError> {
    let svc = service().ok_or_else(|| ContactError {
        status: 503,
        error: "chat is not enabled".into(),
        field: None,
    })?;
    let cmd: session::AgentCmd =
        serde_json::from_str(&text).map_err(|e| ContactError::bad("type", &e.to_string()))?;
    svc.agent_command(agent, cmd).await
}

impl ChatService {
    /// Runs an agent's command on the chat it names.
    pub(crate) async fn agent_command(
        &self,
        agent: String,
        cmd: session::AgentCmd,
    ) -> Result<Value, ContactError> {
        let chat = cmd.chat().to_string();
        let s = self
            .session(&chat)
            .ok_or_else(|| ContactError::not_found("chat", "live chat with that id"))?;
        s.send(session::FromAgent { agent, cmd })
            .await
            .unwrap_or_else(|_| Err(ContactError::not_found("chat", "live chat with that id")))
    }
}
