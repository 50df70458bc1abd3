//! The desktops of each agent by name, readable without the routing actor: chat sessions push
//! their agent-bound frames (messages, typing, receipts) straight to the agent's desktop
//! sockets, so chat traffic never queues behind routing work in the one routing actor.
//!
//! A [`DesktopSession`](super::desktop::DesktopSession) adds itself once the routing actor
//! accepted it and removes itself when it stops; the routing actor keeps its own list for
//! offers and state pushes.

use super::desktop::DesktopPush;
use actix::Recipient;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

type Desks = RwLock<HashMap<String, Vec<(u64, Recipient<DesktopPush>)>>>;

fn desks() -> &'static Desks {
    static DESKS: OnceLock<Desks> = OnceLock::new();
    DESKS.get_or_init(Desks::default)
}

/// Desktop `session` of agent `agent` receives pushes.
pub(crate) fn add(agent: &str, session: u64, to: Recipient<DesktopPush>) {
    // A poisoned lock only means a thread panicked while holding it; the map stays usable.
    let mut d = desks().write().unwrap_or_else(|e| e.into_inner());
    d.entry(agent.to_string()).or_default().push((session, to));
}

/// Desktop `session` of agent `agent` is gone.
pub(crate) fn remove(agent: &str, session: u64) {
    let mut d = desks().write().unwrap_or_else(|e| e.into_inner());
    if let Some(v) = d.get_mut(agent) {
        v.retain(|(s, _)| *s != session);
        if v.is_empty() {
            d.remove(agent);
        }
    }
}

/// Sends `frame` to every desktop of `agent` (none connected: dropped).
pub(crate) fn push(agent: &str, frame: Arc<str>) {
    let d = desks().read().unwrap_or_else(|e| e.into_inner());
    if let Some(v) = d.get(agent) {
        for (_, s) in v {
            s.do_send(DesktopPush(frame.clone()));
        }
    }
}
