//! The contact centre (issue 8) as actors around the sans-IO [`crate::routing::Router`].
//!
//! ```text
//!  call actors ──ContactCentre──┐                      ┌──▶ VoiceUpdate ──▶ call actors
//!  REST (api.rs) ──────────────┼─▶ RoutingActor ──────┼──▶ DesktopPush ──▶ DesktopSession (1/socket)
//!  DesktopSession ─────────────┘   (owns the Router)   └──▶ Journal ──▶ storage (batched)
//! ```
//!
//! * [`RoutingActor`] (`routing_actor.rs`, `outputs.rs`, `requests.rs`) is the single writer:
//!   it owns the router, the name directory and every live interaction's channel-specific
//!   state, drives the router's timers with `run_later`, and fans each output out.
//! * [`ContactCentre`] is the handle cloned into call actors and the HTTP server: the seam to
//!   voice calls ([`VoiceEnqueue`], [`VoiceUpdate`]) and the requests of the REST API.
//! * `desktop.rs`: one small actor per agent-desktop WebSocket.
//! * `journal.rs`: the batched writer of configuration rows and immutable routing facts;
//!   `restore.rs` rebuilds configuration and waiting queues from them at start.
//! * `directory.rs`: names ↔ router ids, and the API's configuration documents.
//! * `api.rs`: the REST API under `/api/v1` (no authentication yet: the control-plane issue
//!   adds tokens).

pub mod api;
mod bus;
mod chat_link;
mod prom;
pub use prom::ContactMetrics;
pub mod config_file;
mod desks;
mod desktop;
pub mod directory;
pub(crate) mod journal;
mod outputs;
mod pop;
mod requests;
mod restore;
mod routing_actor;

pub use crate::routing::{AgentId, InteractionId, QueueId};
pub use chat_link::ChatLink;
pub use desktop::{DesktopCommand, DesktopPush, DesktopSession};
pub use directory::{AgentDef, ChannelCaps, QueueDef, QueueMembership};
pub use journal::Journal;
pub use requests::{ContactError, NewApiInteraction, Request};
pub use routing_actor::RoutingActor;

use actix::prelude::*;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use switchboard_storage::{Storage, StorageError};

/// One offer of one interaction to one agent (a reservation in TaskRouter's words). Unique for
/// the life of the routing actor.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct ReservationId(pub u64);

impl fmt::Display for ReservationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}", self.0)
    }
}

/// The router's clock: wall-clock epoch milliseconds in production, a hand-moved counter in
/// tests (then the routing actor arms no timer: the test advances the clock and calls
/// [`ContactCentre::tick`]).
#[derive(Clone, Debug)]
pub enum Clock {
    /// Epoch milliseconds.
    System,
    /// Simulated milliseconds.
    Manual(Arc<AtomicU64>),
}

impl Clock {
    /// A simulated clock starting at `start` ms.
    pub fn manual(start: u64) -> Clock {
        Clock::Manual(Arc::new(AtomicU64::new(start)))
    }

    /// Now, in ms.
    pub fn now_ms(&self) -> u64 {
        match self {
            Clock::System => u64::try_from(switchboard_storage::now_ms()).unwrap_or(0),
            Clock::Manual(t) => t.load(Ordering::SeqCst),
        }
    }

    /// Moves a simulated clock forward (no effect on the system clock).
    pub fn advance(&self, ms: u64) {
        if let Clock::Manual(t) = self {
            t.fetch_add(ms, Ordering::SeqCst);
        }
    }

    fn is_manual(&self) -> bool {
        matches!(self, Clock::Manual(_))
    }
}

/// Contact-centre settings (the `[contact_centre]` config section).
#[derive(Clone, Debug)]
pub struct Settings {
    /// The X of service level X, when a metrics request names none (seconds).
    pub service_level_secs: u64,
    /// Least time between two position announcements to one caller (ms).
    pub position_update_ms: u64,
    /// The router's settings.
    pub router: crate::routing::RouterConfig,
    /// The contact-centre file applied at start (`config_file.rs`): a path, `builtin:demo`, or
    /// empty for none.
    pub config_file: String,
    /// The event bus for `interaction.*` and `agent.*` events (none: not published).
    pub events: Option<crate::events::Events>,
    /// Prometheus figures (queues, agents by state, service level, ASA, abandon rate).
    pub metrics: Option<ContactMetrics>,
    /// The CRM screen pop on offers (`pop.rs`); `None`: offers carry none.
    pub screen_pop: Option<ScreenPopSettings>,
}

/// How offers get their CRM screen pop.
#[derive(Clone, Debug)]
pub struct ScreenPopSettings {
    /// The CRM the contact is looked up in.
    pub crm: crate::crm::Crm,
    /// Longest wait: past it the offer goes out without the pop (logged).
    pub timeout: std::time::Duration,
    /// Timeline entries in the pop, newest first.
    pub entries: usize,
    /// Tests only: a delay before every lookup (zero in production).
    pub debug_delay: std::time::Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            service_level_secs: 20,
            position_update_ms: 10_000,
            router: crate::routing::RouterConfig {
                // Decisions are explained in the logs at debug level only.
                explain_skipped: 0,
                ..crate::routing::RouterConfig::default()
            },
            config_file: String::new(),
            events: None,
            metrics: None,
            screen_pop: None,
        }
    }
}

/// Handle cloned into every call actor (and the HTTP server).
#[derive(Clone)]
pub struct ContactCentre {
    addr: Addr<RoutingActor>,
    /// How callbacks reach the SIP side (set once the SIP server runs).
    callback_env: Arc<std::sync::OnceLock<crate::call::CallbackEnv>>,
    journal: Journal,
    storage: Storage,
    settings: Arc<Settings>,
}

/// A voice call to put in a queue.
pub struct VoiceEnqueue {
    /// The queue's name (empty: route through the workflow).
    pub queue: String,
    /// Higher first; negative values count as 0.
    pub priority: i64,
    /// Attributes the workflow and agent targets read.
    pub attributes: serde_json::Map<String, serde_json::Value>,
    /// Who calls (URI or number).
    pub caller: String,
    /// The caller leg's Call-ID.
    pub call_id: String,
    /// Where offers and queue updates for this call go.
    pub call: Recipient<VoiceUpdate>,
    /// Where supervisors ask to join the call once an agent answered it.
    pub supervise: Recipient<crate::call::SuperviseMsg>,
}

/// What the contact centre tells a queued voice call.
#[derive(Message, Clone, Debug, PartialEq, Eq)]
#[rtype(result = "()")]
pub enum VoiceUpdate {
    /// Ring this agent: dial the registered SIP user `sip_user`; report with
    /// [`ContactCentre::offer_answered`] / [`ContactCentre::offer_failed`].
    Offer {
        /// The interaction.
        interaction: InteractionId,
        /// The offer.
        reservation: ReservationId,
        /// The agent's name.
        agent: String,
        /// The registered SIP user to ring.
        sip_user: String,
        /// How long to ring before the offer lapses (the router also withdraws it then).
        timeout_secs: u32,
        /// The queue the interaction waited in.
        queue: Option<String>,
        /// The queue asks for the post-call survey (`csat_survey`).
        csat_survey: bool,
    },
    /// Stop ringing (reservation timed out or was withdrawn).
    Withdraw {
        /// The offer.
        reservation: ReservationId,
    },
    /// Position / estimated wait, for announcements (sent on enqueue and whenever it changes,
    /// at most once per `position_update_ms`).
    Position {
        /// 1-based place in line.
        position: u32,
        /// Estimated wait, once the queue has handle-time samples.
        estimated_wait_secs: Option<u32>,
    },
    /// The queue gave up on the call (max wait, no agents with leave-when-empty…): the dialplan
    /// continues.
    Left {
        /// `max_wait` or `queue_empty`.
        reason: String,
    },
}

/// Why a call could not be queued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnqueueError {
    /// No queue of that name.
    UnknownQueue(String),
    /// The queue holds `max_length` interactions.
    QueueFull,
    /// No agent of the queue is logged in and it refuses to take calls then.
    NoAgents,
    /// No workflow filter matched and there is no default queue.
    NoRoute,
    /// The routing actor is gone (shutting down).
    Unavailable,
}

impl fmt::Display for EnqueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnqueueError::UnknownQueue(q) => write!(f, "unknown queue `{q}`"),
            EnqueueError::QueueFull => f.write_str("queue full"),
            EnqueueError::NoAgents => f.write_str("no agent logged in"),
            EnqueueError::NoRoute => f.write_str("no workflow filter matched"),
            EnqueueError::Unavailable => f.write_str("contact centre unavailable"),
        }
    }
}

impl std::error::Error for EnqueueError {}

/// Why the contact centre did not start.
#[derive(Debug)]
pub enum StartError {
    /// Reading the stored configuration failed.
    Storage(StorageError),
    /// The contact-centre file is wrong (file, key, reason).
    Config(switchboard_engine::config::ConfigError),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Storage(e) => write!(f, "{e}"),
            StartError::Config(e) => write!(f, "config error: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

impl From<StorageError> for StartError {
    fn from(e: StorageError) -> Self {
        StartError::Storage(e)
    }
}

/// The voice-call signals [`ContactCentre`] posts to the routing actor.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub(crate) enum VoiceSignal {
    Answered(InteractionId, ReservationId),
    Failed(InteractionId, ReservationId, u16),
    Ended(InteractionId),
    /// The waiting caller asked to be called back at this number (their call ends).
    Callback(InteractionId, String),
    Tick,
}

/// Which live voice call a supervisor wants.
#[derive(Message, Debug)]
#[rtype(result = "Result<Recipient<crate::call::SuperviseMsg>, String>")]
pub(crate) enum FindVoiceCall {
    /// The call the agent is on.
    Agent(String),
    /// The call of this interaction.
    Interaction(u64),
}

/// Enqueues a voice call.
#[derive(Message)]
#[rtype(result = "Result<InteractionId, EnqueueError>")]
pub(crate) struct EnqueueVoice(pub VoiceEnqueue);

impl ContactCentre {
    /// Loads configuration and rebuilds the waiting queues from `storage`, then starts the
    /// routing actor on an arbiter (thread) of its own and its journal writer on the current
    /// arbiter, then applies the contact-centre file of the settings, if any (parsed before
    /// anything starts; an error in it is [`StartError::Config`]).
    pub async fn start(
        storage: Storage,
        settings: Settings,
        clock: Clock,
    ) -> Result<ContactCentre, StartError> {
        let file = config_file::read(&settings.config_file).map_err(StartError::Config)?;
        let journal = Journal::start(storage.clone());
        let settings = Arc::new(settings);
        let actor = restore::load(&storage, journal.clone(), settings.clone(), clock).await?;
        let callback_env = actor.callback_env.clone();
        // Its own thread: routing decisions never wait behind transport readers or HTTP.
        let arbiter = actix_rt::Arbiter::new();
        let addr = RoutingActor::start_in_arbiter(&arbiter.handle(), move |_| actor);
        let cc = ContactCentre {
            addr,
            callback_env,
            journal,
            storage,
            settings,
        };
        if let Some((name, doc)) = file {
            config_file::apply(&cc, &name, doc)
                .await
                .map_err(StartError::Config)?;
        }
        Ok(cc)
    }

    /// Puts a voice call in a queue. `call` receives offers and queue updates for it.
    pub async fn enqueue_voice(&self, req: VoiceEnqueue) -> Result<InteractionId, EnqueueError> {
        self.addr
            .send(EnqueueVoice(req))
            .await
            .unwrap_or(Err(EnqueueError::Unavailable))
    }

    /// The agent answered the voice offer: bridge the call.
    pub fn offer_answered(&self, interaction: InteractionId, reservation: ReservationId) {
        self.addr
            .do_send(VoiceSignal::Answered(interaction, reservation));
    }

    /// The agent's phone did not answer (`sip_code`: the final status, 408 for no answer).
    /// Busy, unreachable and unanswered count as missed offers for auto-pause; 603 Decline
    /// counts as a reject.
    pub fn offer_failed(
        &self,
        interaction: InteractionId,
        reservation: ReservationId,
        sip_code: u16,
    ) {
        self.addr
            .do_send(VoiceSignal::Failed(interaction, reservation, sip_code));
    }

    /// Lets callback interactions place calls: the SIP server's first shard and the engine's
    /// services (called by the router factory; later calls are ignored).
    pub fn set_callback_env(&self, env: crate::call::CallbackEnv) {
        let _ = self.callback_env.set(env);
    }

    /// The waiting caller chose to be called back at `number`: the interaction keeps its place
    /// in line (state `callback`) and no longer has a call of its own; when an agent takes it
    /// the engine calls the agent, then the customer.
    pub fn request_callback(&self, interaction: InteractionId, number: String) {
        self.addr
            .do_send(VoiceSignal::Callback(interaction, number));
    }

    /// Where to send a supervisor's requests for the live call `agent` is on.
    pub async fn voice_call_of_agent(
        &self,
        agent: &str,
    ) -> Result<Recipient<crate::call::SuperviseMsg>, String> {
        self.addr
            .send(FindVoiceCall::Agent(agent.to_string()))
            .await
            .map_err(|_| "the contact centre is stopping".to_string())?
    }

    /// Where to send supervision requests for interaction `id`'s live call.
    pub async fn voice_call_of(
        &self,
        id: u64,
    ) -> Result<Recipient<crate::call::SuperviseMsg>, String> {
        self.addr
            .send(FindVoiceCall::Interaction(id))
            .await
            .map_err(|_| "the contact centre is stopping".to_string())?
    }

    /// The voice call ended (caller hung up while queued = abandoned; after answer = completed
    /// → agent wrap-up).
    pub fn call_ended(&self, interaction: InteractionId) {
        self.addr.do_send(VoiceSignal::Ended(interaction));
    }

    /// Fires the router timers due now (tests with a [`Clock::Manual`] call it after
    /// advancing the clock; with the system clock the actor arms its own timers).
    pub fn tick(&self) {
        self.addr.do_send(VoiceSignal::Tick);
    }

    /// Runs an API request.
    pub async fn request(&self, r: Request) -> Result<serde_json::Value, ContactError> {
        self.addr
            .send(r)
            .await
            .unwrap_or_else(|_| Err(ContactError::unavailable()))
    }

    /// Routes a chat or messaging interaction; `link` hears when an agent takes it, ends it
    /// or the queue gives up (`chat_link.rs`).
    pub async fn enqueue_chat(
        &self,
        new: NewApiInteraction,
        link: Recipient<ChatLink>,
    ) -> Result<InteractionId, ContactError> {
        self.addr
            .send(chat_link::EnqueueChat { new, link })
            .await
            .unwrap_or_else(|_| Err(ContactError::unavailable()))
    }

    /// Sends a JSON frame to every desktop of agent `agent` (no-op when none is connected),
    /// straight to the desktop sockets (`desks.rs`), not through the routing actor.
    pub fn push_to_agent(&self, agent: &str, frame: Arc<str>) {
        desks::push(agent, frame);
    }

    /// Waits until everything journaled so far is in the database.
    pub async fn flush(&self) {
        self.journal.flush().await;
    }

    /// The routing actor (desktop sessions talk to it directly).
    pub fn addr(&self) -> &Addr<RoutingActor> {
        &self.addr
    }

    /// The database.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }
}
