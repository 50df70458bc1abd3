//! [`RoutingActor`]: the single writer around the sans-IO router. Every input goes through
//! [`RoutingActor::feed`] (handle, then drain every output: `outputs.rs`), after which the
//! router's next deadline is armed with `run_later`. Voice-call signals are handled here;
//! API and desktop requests in `requests.rs`.

use super::desktop::DesktopPush;
use super::directory::Directory;
use super::journal::Journal;
use super::{Clock, EnqueueError, EnqueueVoice, ReservationId, Settings, VoiceSignal, VoiceUpdate};
use crate::routing::{
    AgentId, Channel, Customer, Input, InteractionId, InteractionState, NewInteraction, Presence,
    QueueId, Router, RouterError,
};
use actix::prelude::*;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// The voice call behind a queued voice interaction.
pub(super) struct VoiceLeg {
    pub call: Recipient<VoiceUpdate>,
    pub supervise: Recipient<crate::call::SuperviseMsg>,
    pub call_id: String,
    /// Last position / estimate sent, and when.
    pub last_position: Option<(u32, Option<u32>)>,
    pub last_sent: Option<u64>,
}

/// What the actor keeps about a live interaction besides the router's state.
pub(super) struct Live {
    pub channel: Channel,
    pub queue: Option<QueueId>,
    pub created: u64,
    pub customer: Customer,
    pub attributes: Value,
    pub voice: Option<VoiceLeg>,
}

/// One pending offer.
#[derive(Clone, Copy, Debug)]
pub(super) struct OfferRef {
    pub interaction: InteractionId,
    pub agent: AgentId,
    pub channel: Channel,
    pub expires_at: u64,
}

/// The contact centre's routing actor: owns the router and fans its outputs out to call actors,
/// agent desktops and the journal.
pub struct RoutingActor {
    pub(super) router: Router,
    pub(super) dir: Directory,
    pub(super) clock: Clock,
    pub(super) journal: Journal,
    pub(super) settings: Arc<Settings>,
    /// While rebuilding from the journal: outputs are not journaled again.
    pub(super) replaying: bool,
    pub(super) live: HashMap<InteractionId, Live>,
    pub(super) offers: HashMap<ReservationId, OfferRef>,
    pub(super) offer_of: HashMap<(InteractionId, AgentId), ReservationId>,
    pub(super) next_reservation: u64,
    pub(super) next_interaction: u64,
    pub(super) desktops: HashMap<AgentId, Vec<(u64, Recipient<DesktopPush>)>>,
    pub(super) next_desktop: u64,
    /// Voice offers that failed in a row per agent (the router counts timeouts itself).
    pub(super) failed_in_row: HashMap<AgentId, u32>,
    /// Queues whose line changed since positions were last announced.
    pub(super) dirty: BTreeSet<QueueId>,
    /// Inputs produced while draining, applied once the drain is over.
    pub(super) deferred: Vec<Input>,
    timer: Option<(u64, SpawnHandle)>,
    /// Lets callback interactions place calls (set once the SIP server runs).
    pub(super) callback_env: Arc<std::sync::OnceLock<crate::call::CallbackEnv>>,
    /// Chat sessions of live chat / messaging interactions (`chat_link.rs`).
    pub(super) chat_links: HashMap<InteractionId, Recipient<super::ChatLink>>,
    /// `interaction.*` / `agent.*` events on the bus.
    pub(super) bus: super::bus::ContactBus,
    /// This actor's address (set when it starts): screen-pop lookups report back to it.
    pub(super) me: Option<Addr<RoutingActor>>,
}

impl Actor for RoutingActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Big configurations and bursts of offers: do not let senders block on a full mailbox.
        ctx.set_mailbox_capacity(65_536);
        self.me = Some(ctx.address());
        self.rearm(ctx);
        if let Some(m) = self.settings.metrics.clone() {
            ctx.run_interval(std::time::Duration::from_secs(1), move |act, _| {
                act.refresh_gauges(&m)
            });
        }
    }
}

impl RoutingActor {
    pub(super) fn new(
        router: Router,
        dir: Directory,
        clock: Clock,
        journal: Journal,
        settings: Arc<Settings>,
    ) -> RoutingActor {
        RoutingActor {
            router,
            dir,
            clock,
            journal,
            settings: settings.clone(),
            replaying: false,
            live: HashMap::new(),
            offers: HashMap::new(),
            offer_of: HashMap::new(),
            next_reservation: 1,
            next_interaction: 1,
            desktops: HashMap::new(),
            next_desktop: 1,
            failed_in_row: HashMap::new(),
            dirty: BTreeSet::new(),
            deferred: Vec::new(),
            timer: None,
            callback_env: Arc::default(),
            chat_links: HashMap::new(),
            bus: super::bus::ContactBus::new(settings.events.clone()),
            me: None,
        }
    }

    pub(super) fn now(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Feeds one input at the clock's now and carries out every output.
    pub(super) fn feed(&mut self, input: Input) -> Result<(), RouterError> {
        let now = self.now();
        let r = self.router.handle(now, input);
        self.drain();
        r
    }

    pub(super) fn mint_interaction(&mut self) -> InteractionId {
        let id = InteractionId(self.next_interaction);
        self.next_interaction += 1;
        id
    }

    pub(super) fn mint_reservation(&mut self) -> ReservationId {
        let id = ReservationId(self.next_reservation);
        self.next_reservation += 1;
        id
    }

    /// Arms a timer for the router's next deadline (system clock only).
    pub(super) fn rearm(&mut self, ctx: &mut Context<Self>) {
        if self.clock.is_manual() {
            return;
        }
        let Some(at) = self.router.poll_timeout() else {
            if let Some((_, h)) = self.timer.take() {
                ctx.cancel_future(h);
            }
            return;
        };
        if let Some((armed, h)) = self.timer {
            if armed <= at {
                return;
            }
            ctx.cancel_future(h);
        }
        let wait = at.saturating_sub(self.now());
        let h = ctx.run_later(std::time::Duration::from_millis(wait), |act, ctx| {
            act.timer = None;
            let _ = act.feed(Input::Tick);
            act.rearm(ctx);
        });
        self.timer = Some((at, h));
    }

    /// Logged-in agents serving queue `q`.
    pub(super) fn staffed(&self, q: QueueId) -> u32 {
        self.dir
            .agents
            .values()
            .filter(|a| {
                self.router
                    .agent(a.id)
                    .is_some_and(|r| r.presence != Presence::Offline)
                    && r_profile_has(&self.router, a.id, q)
            })
            .count() as u32
    }

    fn enqueue_voice(&mut self, req: super::VoiceEnqueue) -> Result<InteractionId, EnqueueError> {
        let queue = if req.queue.is_empty() {
            None
        } else {
            let q = self
                .dir
                .queue_id(&req.queue)
                .ok_or_else(|| EnqueueError::UnknownQueue(req.queue.clone()))?;
            let Some(rq) = self.router.queue(q) else {
                return Err(EnqueueError::UnknownQueue(req.queue.clone()));
            };
            if rq.config.max_length.is_some_and(|m| rq.held() >= m) {
                return Err(EnqueueError::QueueFull);
            }
            if !rq.config.join_when_empty && self.staffed(q) == 0 {
                return Err(EnqueueError::NoAgents);
            }
            Some(q)
        };
        let id = self.mint_interaction();
        let n = NewInteraction {
            id,
            channel: Channel::Voice,
            customer: Customer {
                id: None,
                address: Some(req.caller.clone()),
            },
            attributes: Value::Object(req.attributes),
            priority: u32::try_from(req.priority.max(0)).unwrap_or(u32::MAX),
            queue,
        };
        let leg = VoiceLeg {
            call: req.call,
            supervise: req.supervise,
            call_id: req.call_id,
            last_position: None,
            last_sent: None,
        };
        self.start_interaction(n, Some(leg))
            .map_err(|e| match (e, queue) {
                (RouterError::UnknownQueue(_), _) => EnqueueError::UnknownQueue(req.queue),
                (RouterError::NoRoute(_), Some(_)) => EnqueueError::NoAgents,
                _ => EnqueueError::NoRoute,
            })
    }

    /// Starts routing a new interaction: remembers it, journals it, feeds it to the router.
    pub(super) fn start_interaction(
        &mut self,
        n: NewInteraction,
        voice: Option<VoiceLeg>,
    ) -> Result<InteractionId, RouterError> {
        let id = n.id;
        let now = self.now();
        self.live.insert(
            id,
            Live {
                channel: n.channel,
                queue: None,
                created: now,
                customer: n.customer.clone(),
                attributes: n.attributes.clone(),
                voice,
            },
        );
        let r = self.router.handle(now, Input::Enqueue(n.clone()));
        if r.is_ok() && !self.replaying {
            // Before the router's events for it, so a restart finds it first.
            self.journal.created(&n, now);
            self.bus.created(&n);
        }
        if r.is_err() {
            self.live.remove(&id);
        }
        self.drain();
        r.map(|()| id)
    }

    /// Counts a failed voice offer towards auto-pause and pauses the agent at the threshold.
    fn count_failed(&mut self, agent: AgentId) {
        let n = {
            let n = self.failed_in_row.entry(agent).or_default();
            *n += 1;
            *n
        };
        let Some(a) = self.router.agent(agent) else {
            return;
        };
        let threshold = a.auto_pause_after;
        if threshold > 0
            && a.stats.missed_in_row + n >= threshold
            && a.presence == Presence::Available
        {
            self.failed_in_row.remove(&agent);
            let reason = self.settings.router.auto_pause_reason.clone();
            tracing::info!(agent = %self.dir.agent_name(agent), "auto-pause after missed offers");
            let _ = self.feed(Input::SetPresence {
                agent,
                presence: Presence::Break { reason },
            });
        }
    }

    fn voice_signal(&mut self, s: VoiceSignal) {
        match s {
            VoiceSignal::Answered(interaction, reservation) => {
                let offer = self
                    .offers
                    .get(&reservation)
                    .copied()
                    .filter(|o| o.interaction == interaction);
                let accepted = offer.is_some_and(|o| {
                    self.feed(Input::Accept {
                        interaction,
                        agent: o.agent,
                    })
                    .is_ok()
                });
                if !accepted {
                    // The offer lapsed as the agent picked up: the call drops the agent leg.
                    tracing::info!(%interaction, %reservation, "late answer refused");
                    if let Some(leg) = self.live.get(&interaction).and_then(|l| l.voice.as_ref()) {
                        leg.call.do_send(VoiceUpdate::Withdraw { reservation });
                    }
                }
            }
            VoiceSignal::Failed(interaction, reservation, code) => {
                let Some(o) = self
                    .offers
                    .get(&reservation)
                    .copied()
                    .filter(|o| o.interaction == interaction)
                else {
                    return;
                };
                self.forget_offer(interaction, o.agent);
                let _ = self.feed(Input::Reject {
                    interaction,
                    agent: o.agent,
                });
                self.push_rescind(o.agent, reservation, interaction, "failed");
                if code != 603 {
                    self.count_failed(o.agent);
                }
            }
            VoiceSignal::Ended(interaction) => {
                if let Some(l) = self.live.get_mut(&interaction) {
                    l.voice = None;
                }
                let state = self.router.interaction(interaction).map(|i| i.state);
                let input = match state {
                    Some(s) if s.is_waiting() || s == InteractionState::Offered => {
                        Input::Abandon { interaction }
                    }
                    Some(InteractionState::Assigned) => Input::Complete { interaction },
                    _ => return,
                };
                if let Err(e) = self.feed(input) {
                    tracing::warn!(%interaction, error = %e, "call end not applied");
                }
            }
            VoiceSignal::Callback(interaction, number) => {
                if let Some(l) = self.live.get_mut(&interaction) {
                    l.voice = None;
                }
                if let Err(e) = self.feed(Input::RequestCallback {
                    interaction,
                    number,
                }) {
                    tracing::warn!(%interaction, error = %e, "callback refused; abandoned");
                    let _ = self.feed(Input::Abandon { interaction });
                }
            }
            VoiceSignal::Tick => {
                let _ = self.feed(Input::Tick);
            }
        }
    }

    /// Drops the bookkeeping of an offer the router no longer holds.
    pub(super) fn forget_offer(
        &mut self,
        interaction: InteractionId,
        agent: AgentId,
    ) -> Option<ReservationId> {
        let r = self.offer_of.remove(&(interaction, agent))?;
        self.offers.remove(&r);
        Some(r)
    }
}

fn r_profile_has(router: &Router, agent: AgentId, q: QueueId) -> bool {
    router
        .agent(agent)
        .is_some_and(|a| a.profile.iter().any(|p| p.queue == q))
}

impl Handler<EnqueueVoice> for RoutingActor {
    type Result = Result<InteractionId, EnqueueError>;

    fn handle(&mut self, msg: EnqueueVoice, ctx: &mut Context<Self>) -> Self::Result {
        let r = self.enqueue_voice(msg.0);
        self.rearm(ctx);
        r
    }
}

impl Handler<super::FindVoiceCall> for RoutingActor {
    type Result = Result<Recipient<crate::call::SuperviseMsg>, String>;

    fn handle(&mut self, msg: super::FindVoiceCall, _ctx: &mut Context<Self>) -> Self::Result {
        let interaction = match msg {
            super::FindVoiceCall::Interaction(id) => InteractionId(id),
            super::FindVoiceCall::Agent(name) => {
                let agent = self
                    .dir
                    .agent_id(&name)
                    .ok_or_else(|| format!("no agent `{name}`"))?;
                self.router
                    .agent(agent)
                    .and_then(|a| {
                        a.work
                            .iter()
                            .find(|w| {
                                w.channel == Channel::Voice
                                    && self
                                        .router
                                        .interaction(w.interaction)
                                        .is_some_and(|i| i.state == InteractionState::Assigned)
                            })
                            .map(|w| w.interaction)
                    })
                    .ok_or_else(|| format!("agent `{name}` is on no call"))?
            }
        };
        self.live
            .get(&interaction)
            .and_then(|l| l.voice.as_ref())
            .map(|v| v.supervise.clone())
            .ok_or_else(|| format!("interaction {} has no live call", interaction.0))
    }
}

impl Handler<VoiceSignal> for RoutingActor {
    type Result = ();

    fn handle(&mut self, msg: VoiceSignal, ctx: &mut Context<Self>) {
        self.voice_signal(msg);
        self.rearm(ctx);
    }
}
