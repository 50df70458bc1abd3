//! Start-up: configuration rows → router, then the waiting queues rebuilt from the journal.
//!
//! Each queue's held interactions come from [`Queue::replay`] of its `queue` events; each is
//! routed again (straight to that queue, with its priority) at its original creation time, so
//! order and age survive. Outputs of the replay are not journaled again. Voice interactions that
//! were waiting cannot be re-attached to a call (the call actors did not survive), so they are
//! recorded as abandoned; chats, messaging, e-mail and callbacks wait on.
//!
//! Not restored (documented limits): agents' presence (everyone starts logged out), work that
//! was assigned at the time of the stop, callback numbers, workflow step progress (a rebuilt
//! interaction stays in the queue it was in) and the queues' handle-time samples.

use super::directory::{AgentDef, Directory, QueueDef};
use super::journal::{Journal, STREAM_INTERACTION, STREAM_QUEUE};
use super::routing_actor::{Live, RoutingActor};
use super::{Clock, Settings};
use crate::routing::{
    AgentId, Channel, Input, InteractionId, NewInteraction, Queue, QueueEvent, QueueId, Router,
};
use std::collections::HashMap;
use std::sync::Arc;
use switchboard_storage::{Storage, StorageError};

/// Builds the routing actor from what `storage` holds.
pub(super) async fn load(
    storage: &Storage,
    journal: Journal,
    settings: Arc<Settings>,
    clock: Clock,
) -> Result<RoutingActor, StorageError> {
    let mut router = Router::new(settings.router.clone());
    let mut dir = Directory::default();
    for row in storage.contact_queues().await? {
        let parsed = serde_json::from_str::<QueueDef>(&row.config)
            .map_err(|e| e.to_string())
            .and_then(|d| d.to_config().map(|c| (d, c)).map_err(|e| e.to_string()));
        let (Ok((def, config)), Ok(id)) = (parsed, u32::try_from(row.id)) else {
            tracing::error!(queue = %row.name, "stored queue unreadable; skipped");
            continue;
        };
        if router.add_queue(QueueId(id), config).is_ok() {
            dir.insert_queue(QueueId(id), def);
        }
    }
    for row in storage.contact_agents().await? {
        let def = serde_json::from_str::<AgentDef>(&row.config);
        let (Ok(def), Ok(id)) = (def, u32::try_from(row.id)) else {
            tracing::error!(agent = %row.name, "stored agent unreadable; skipped");
            continue;
        };
        let id = AgentId(id);
        match dir.agent_spec(id, &def) {
            Ok(spec) => {
                if router.handle(0, Input::AddAgent(spec)).is_ok() {
                    dir.insert_agent(id, def);
                }
            }
            Err(e) => tracing::error!(agent = %row.name, error = %e, "stored agent refused"),
        }
    }
    if let Some(text) = storage.contact_workflow().await? {
        match serde_json::from_str(&text) {
            Ok(doc) => match dir.workflow_spec(&doc).map(|s| router.set_workflow(&s)) {
                Ok(Ok(())) => dir.workflow = Some(doc),
                Ok(Err(e)) => tracing::error!(error = %e, "stored workflow refused"),
                Err(e) => tracing::error!(error = %e, "stored workflow refused"),
            },
            Err(e) => tracing::error!(error = %e, "stored workflow unreadable"),
        }
    }
    // Drop the outputs of configuration (agent status events were journaled when they happened).
    while router.poll_output().is_some() {}

    let mut queue_logs: HashMap<QueueId, Vec<QueueEvent>> = HashMap::new();
    for e in storage.contact_events(Some(STREAM_QUEUE), None).await? {
        let q = e.queue_id.and_then(|q| u32::try_from(q).ok()).map(QueueId);
        if let (Some(q), Ok(ev)) = (q, serde_json::from_str::<QueueEvent>(&e.body)) {
            queue_logs.entry(q).or_default().push(ev);
        }
    }
    let mut created: HashMap<InteractionId, (NewInteraction, u64)> = HashMap::new();
    for e in storage
        .contact_events(Some(STREAM_INTERACTION), None)
        .await?
    {
        if let Ok(n) = serde_json::from_str::<NewInteraction>(&e.body) {
            created.insert(n.id, (n, u64::try_from(e.at_ms).unwrap_or(0)));
        }
    }
    // What each queue held, to be routed again in creation order.
    let mut held: Vec<(u64, NewInteraction)> = Vec::new();
    for (q, log) in &queue_logs {
        let Some(config) = router.queue(*q).map(|rq| rq.config.clone()) else {
            continue;
        };
        let replayed = Queue::replay(*q, config, log.iter());
        for entry in replayed.entries() {
            let Some((mut n, at)) = created.remove(&entry.id) else {
                continue;
            };
            n.queue = Some(*q);
            n.priority = entry.key.priority();
            held.push((at, n));
        }
    }
    held.sort_by_key(|(at, n)| (*at, n.id));

    let next_interaction =
        u64::try_from(storage.max_contact_interaction_id().await?).unwrap_or(0) + 1;
    let mut actor = RoutingActor::new(router, dir, clock, journal, settings);
    actor.next_interaction = next_interaction;
    actor.replaying = true;
    let mut stale_calls = Vec::new();
    for (at, n) in held {
        let id = n.id;
        actor.live.insert(
            id,
            Live {
                channel: n.channel,
                queue: n.queue,
                created: at,
                customer: n.customer.clone(),
                attributes: n.attributes.clone(),
                voice: None,
            },
        );
        let voice = n.channel == Channel::Voice;
        match actor.router.handle(at, Input::Enqueue(n)) {
            Ok(()) if voice => stale_calls.push(id),
            Ok(()) => {}
            Err(e) => {
                tracing::warn!(interaction = %id, error = %e, "waiting interaction not restored");
                actor.live.remove(&id);
            }
        }
        actor.drain();
    }
    actor.replaying = false;
    let _ = actor.feed(Input::Tick);
    for id in stale_calls {
        let callback = actor
            .router
            .interaction(id)
            .is_some_and(|i| i.is_callback());
        if !callback {
            let _ = actor.feed(Input::Abandon { interaction: id });
        }
    }
    tracing::info!(
        queues = actor.dir.queues.len(),
        agents = actor.dir.agents.len(),
        waiting = actor.live.len(),
        "contact centre restored"
    );
    Ok(actor)
}
