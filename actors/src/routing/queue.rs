//! Queues: priority first, then effective age; limits; position and estimated wait; callbacks
//! that keep their place; state that is rebuilt from its own event log.
//!
//! Every change goes through [`Queue::apply`] of a [`QueueEvent`]; the command methods
//! (`join`, `reserve`, …) validate, build the event, apply it and return it for the caller to
//! persist. [`Queue::replay`] applies a stored log to a fresh queue, so a restarted queue actor
//! is in exactly the state it had.
//!
//! Waiting interactions are kept in *lanes*, one ordered map per lane id. The router uses one lane
//! per (agent target, channel) so an agent looks only at the heads of the lanes it can serve; a
//! queue only partitions by the opaque id. The queue's order is the merge of its lanes.

use crate::routing::ids::{InteractionId, QueueId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;

/// Queue settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct QueueConfig {
    /// A display name.
    pub name: String,
    /// Most interactions held (waiting or offered); a full queue refuses joins.
    pub max_length: Option<usize>,
    /// Longest wait in this queue before the interaction leaves routing (to a fallback).
    pub max_wait_ms: Option<u64>,
    /// Whether an interaction may join while no agent of the queue is logged in.
    pub join_when_empty: bool,
    /// Whether waiting interactions leave when the last agent logs out.
    pub leave_when_empty: bool,
    /// How long an offer rings before it goes to the next agent.
    pub offer_timeout_ms: u64,
    /// After-contact work length: `None` lasts until the agent ends it, `Some(0)` skips it.
    pub wrap_up_ms: Option<u64>,
    /// Allowed disposition codes (empty: any, or none).
    pub dispositions: Vec<String>,
    /// How many recent handle times feed the estimated wait.
    pub handle_time_samples: usize,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            name: String::new(),
            max_length: None,
            max_wait_ms: None,
            join_when_empty: true,
            leave_when_empty: false,
            offer_timeout_ms: 15_000,
            wrap_up_ms: None,
            dispositions: Vec::new(),
            handle_time_samples: 50,
        }
    }
}

/// The sort key: priority (higher first), then effective arrival (older first), then join order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct QueueKey {
    /// `u32::MAX - priority`, so that ascending order puts high priority first.
    pub rank: u32,
    /// Arrival minus boost (may be negative).
    pub arrival: i64,
    /// Join order in this queue, unique.
    pub seq: u64,
}

impl QueueKey {
    fn new(priority: u32, arrival: u64, boost_ms: u64, seq: u64) -> QueueKey {
        QueueKey {
            rank: u32::MAX - priority,
            arrival: arrival as i64 - boost_ms as i64,
            seq,
        }
    }

    /// The priority this key sorts by.
    pub fn priority(&self) -> u32 {
        u32::MAX - self.rank
    }
}

/// Why an interaction left a queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    /// An agent accepted it.
    Assigned,
    /// The customer left.
    Abandoned,
    /// Its workflow step timed out and it moved on.
    Overflow,
    /// It waited `max_wait_ms`.
    MaxWait,
    /// The last agent logged out of a `leave_when_empty` queue.
    Empty,
    /// A supervisor moved it.
    Moved,
}

/// Everything that changes a queue. Persist these; [`Queue::replay`] rebuilds from them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum QueueEvent {
    /// Joined the line.
    Joined {
        /// The interaction.
        id: InteractionId,
        /// Its priority.
        priority: u32,
        /// When it entered routing (its age counts from here).
        arrival: u64,
        /// Age boost.
        boost_ms: u64,
        /// Lane (the router's target × channel class).
        lane: u32,
        /// When.
        at: u64,
    },
    /// Taken out of line while offered; keeps its key.
    Reserved {
        /// The interaction.
        id: InteractionId,
        /// When.
        at: u64,
    },
    /// Back in line after a reject or a missed offer, at its old place.
    Returned {
        /// The interaction.
        id: InteractionId,
        /// When.
        at: u64,
    },
    /// The customer asked to be called back; the place is kept.
    CallbackRequested {
        /// The interaction.
        id: InteractionId,
        /// When.
        at: u64,
    },
    /// New priority or boost.
    Reprioritised {
        /// The interaction.
        id: InteractionId,
        /// New priority.
        priority: u32,
        /// New boost.
        boost_ms: u64,
        /// When.
        at: u64,
    },
    /// Left the queue for good.
    Left {
        /// The interaction.
        id: InteractionId,
        /// Why.
        reason: LeaveReason,
        /// When.
        at: u64,
    },
    /// A handle time (accept → end of wrap-up) for the wait estimate.
    HandleTime {
        /// Milliseconds.
        ms: u64,
        /// When.
        at: u64,
    },
}

/// A refused join.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinError {
    /// `max_length` reached.
    Full,
    /// Already in this queue.
    Duplicate,
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JoinError::Full => "queue full",
            JoinError::Duplicate => "already queued",
        })
    }
}

/// A refused queue command (unknown interaction or wrong state).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotQueued(pub InteractionId);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    key: QueueKey,
    arrival: u64,
    lane: u32,
    joined_at: u64,
    callback: bool,
    reserved: bool,
}

/// One lane: waiting interactions in queue order.
#[derive(Clone, Debug, Default)]
pub(crate) struct Lane {
    pub id: u32,
    pub items: BTreeMap<QueueKey, InteractionId>,
}

/// One waiting (or offered) interaction, as [`Queue::entries`] lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueEntry {
    /// The interaction.
    pub id: InteractionId,
    /// Its sort key.
    pub key: QueueKey,
    /// Its lane.
    pub lane: u32,
    /// When it joined this queue.
    pub joined_at: u64,
    /// Whether it waits for a call back.
    pub callback: bool,
    /// Whether it is out of line being offered.
    pub reserved: bool,
}

/// A queue.
#[derive(Clone, Debug)]
pub struct Queue {
    /// Its id.
    pub id: QueueId,
    /// Its settings.
    pub config: QueueConfig,
    entries: HashMap<InteractionId, Entry>,
    lanes: Vec<Lane>,
    lane_index: HashMap<u32, usize>,
    waiting: usize,
    next_seq: u64,
    handle_times: VecDeque<u64>,
    handle_sum: u64,
}

impl Queue {
    /// An empty queue.
    pub fn new(id: QueueId, config: QueueConfig) -> Queue {
        Queue {
            id,
            config,
            entries: HashMap::new(),
            lanes: Vec::new(),
            lane_index: HashMap::new(),
            waiting: 0,
            next_seq: 0,
            handle_times: VecDeque::new(),
            handle_sum: 0,
        }
    }

    /// A queue rebuilt from its event log.
    pub fn replay<'a>(
        id: QueueId,
        config: QueueConfig,
        events: impl IntoIterator<Item = &'a QueueEvent>,
    ) -> Queue {
        let mut q = Queue::new(id, config);
        for e in events {
            q.apply(e);
        }
        q
    }

    /// Applies one event. Events that do not fit the state (unknown id, double join) are
    /// ignored, so a log with a torn tail still replays.
    pub fn apply(&mut self, ev: &QueueEvent) {
        match *ev {
            QueueEvent::Joined {
                id,
                priority,
                arrival,
                boost_ms,
                lane,
                at,
            } => {
                if self.entries.contains_key(&id) {
                    return;
                }
                let key = QueueKey::new(priority, arrival, boost_ms, self.next_seq);
                self.next_seq += 1;
                let e = Entry {
                    key,
                    arrival,
                    lane,
                    joined_at: at,
                    callback: false,
                    reserved: false,
                };
                self.entries.insert(id, e);
                self.insert_lane(lane, key, id);
            }
            QueueEvent::Reserved { id, .. } => {
                if let Some(e) = self.entries.get_mut(&id).filter(|e| !e.reserved) {
                    e.reserved = true;
                    let (lane, key) = (e.lane, e.key);
                    self.remove_lane(lane, key);
                }
            }
            QueueEvent::Returned { id, .. } => {
                if let Some(e) = self.entries.get_mut(&id).filter(|e| e.reserved) {
                    e.reserved = false;
                    let (lane, key) = (e.lane, e.key);
                    self.insert_lane(lane, key, id);
                }
            }
            QueueEvent::CallbackRequested { id, .. } => {
                if let Some(e) = self.entries.get_mut(&id) {
                    e.callback = true;
                }
            }
            QueueEvent::Reprioritised {
                id,
                priority,
                boost_ms,
                ..
            } => {
                let Some(e) = self.entries.get(&id).copied() else {
                    return;
                };
                let new_key = QueueKey::new(priority, e.arrival, boost_ms, e.key.seq);
                if !e.reserved {
                    self.remove_lane(e.lane, e.key);
                    self.insert_lane(e.lane, new_key, id);
                }
                if let Some(m) = self.entries.get_mut(&id) {
                    m.key = new_key;
                }
            }
            QueueEvent::Left { id, .. } => {
                if let Some(e) = self.entries.remove(&id) {
                    if !e.reserved {
                        self.remove_lane(e.lane, e.key);
                    }
                }
            }
            QueueEvent::HandleTime { ms, .. } => {
                self.handle_times.push_back(ms);
                self.handle_sum += ms;
                while self.handle_times.len() > self.config.handle_time_samples.max(1) {
                    if let Some(old) = self.handle_times.pop_front() {
                        self.handle_sum -= old;
                    }
                }
            }
        }
    }

    fn insert_lane(&mut self, lane: u32, key: QueueKey, id: InteractionId) {
        let i = match self.lane_index.get(&lane) {
            Some(&i) => i,
            None => {
                self.lanes.push(Lane {
                    id: lane,
                    items: BTreeMap::new(),
                });
                self.lane_index.insert(lane, self.lanes.len() - 1);
                self.lanes.len() - 1
            }
        };
        if self.lanes[i].items.insert(key, id).is_none() {
            self.waiting += 1;
        }
    }

    fn remove_lane(&mut self, lane: u32, key: QueueKey) {
        if let Some(&i) = self.lane_index.get(&lane) {
            if self.lanes[i].items.remove(&key).is_some() {
                self.waiting -= 1;
            }
        }
    }

    fn emit(&mut self, ev: QueueEvent) -> QueueEvent {
        self.apply(&ev);
        ev
    }

    /// Joins the line (checks `max_length`; the router checks `join_when_empty`).
    pub fn join(
        &mut self,
        id: InteractionId,
        priority: u32,
        arrival: u64,
        boost_ms: u64,
        lane: u32,
        at: u64,
    ) -> Result<QueueEvent, JoinError> {
        if self.entries.contains_key(&id) {
            return Err(JoinError::Duplicate);
        }
        if self
            .config
            .max_length
            .is_some_and(|m| self.entries.len() >= m)
        {
            return Err(JoinError::Full);
        }
        Ok(self.emit(QueueEvent::Joined {
            id,
            priority,
            arrival,
            boost_ms,
            lane,
            at,
        }))
    }

    /// Takes a waiting interaction out of line for an offer.
    pub fn reserve(&mut self, id: InteractionId, at: u64) -> Result<QueueEvent, NotQueued> {
        match self.entries.get(&id) {
            Some(e) if !e.reserved => Ok(self.emit(QueueEvent::Reserved { id, at })),
            _ => Err(NotQueued(id)),
        }
    }

    /// Puts an offered interaction back at its old place.
    pub fn put_back(&mut self, id: InteractionId, at: u64) -> Result<QueueEvent, NotQueued> {
        match self.entries.get(&id) {
            Some(e) if e.reserved => Ok(self.emit(QueueEvent::Returned { id, at })),
            _ => Err(NotQueued(id)),
        }
    }

    /// Marks a callback; the place in line is kept.
    pub fn request_callback(
        &mut self,
        id: InteractionId,
        at: u64,
    ) -> Result<QueueEvent, NotQueued> {
        match self.entries.get(&id) {
            Some(_) => Ok(self.emit(QueueEvent::CallbackRequested { id, at })),
            None => Err(NotQueued(id)),
        }
    }

    /// Changes priority and age boost.
    pub fn reprioritise(
        &mut self,
        id: InteractionId,
        priority: u32,
        boost_ms: u64,
        at: u64,
    ) -> Result<QueueEvent, NotQueued> {
        match self.entries.get(&id) {
            Some(_) => Ok(self.emit(QueueEvent::Reprioritised {
                id,
                priority,
                boost_ms,
                at,
            })),
            None => Err(NotQueued(id)),
        }
    }

    /// Removes an interaction for good.
    pub fn leave(
        &mut self,
        id: InteractionId,
        reason: LeaveReason,
        at: u64,
    ) -> Result<QueueEvent, NotQueued> {
        match self.entries.get(&id) {
            Some(_) => Ok(self.emit(QueueEvent::Left { id, reason, at })),
            None => Err(NotQueued(id)),
        }
    }

    /// Records a handle time for the wait estimate.
    pub fn record_handle_time(&mut self, ms: u64, at: u64) -> QueueEvent {
        self.emit(QueueEvent::HandleTime { ms, at })
    }

    /// Interactions waiting in line (offered ones excluded).
    pub fn len(&self) -> usize {
        self.waiting
    }

    /// Whether nobody waits in line.
    pub fn is_empty(&self) -> bool {
        self.waiting == 0
    }

    /// Interactions held, waiting or offered (what `max_length` limits).
    pub fn held(&self) -> usize {
        self.entries.len()
    }

    /// Whether `id` is held.
    pub fn contains(&self, id: InteractionId) -> bool {
        self.entries.contains_key(&id)
    }

    /// When `id` joined this queue.
    pub fn joined_at(&self, id: InteractionId) -> Option<u64> {
        self.entries.get(&id).map(|e| e.joined_at)
    }

    /// 1-based place in line (`None` if not waiting). Costs O(interactions ahead).
    pub fn position(&self, id: InteractionId) -> Option<usize> {
        let e = self.entries.get(&id).filter(|e| !e.reserved)?;
        let ahead: usize = self
            .lanes
            .iter()
            .map(|l| l.items.range(..e.key).count())
            .sum();
        Some(ahead + 1)
    }

    /// Mean of the recent handle times.
    pub fn average_handle_ms(&self) -> Option<u64> {
        let n = self.handle_times.len() as u64;
        (n > 0).then(|| self.handle_sum / n)
    }

    /// Estimated wait for `id` with `agents` serving the queue: place × average handle time ÷
    /// agents (`None` without a handle-time sample or if `id` is not waiting).
    pub fn estimated_wait_ms(&self, id: InteractionId, agents: u32) -> Option<u64> {
        let pos = self.position(id)? as u64;
        let aht = self.average_handle_ms()?;
        Some(pos * aht / u64::from(agents.max(1)))
    }

    /// Everything held, in queue order (offered ones after the waiting ones, by key).
    pub fn entries(&self) -> Vec<QueueEntry> {
        let mut v: Vec<QueueEntry> = self
            .entries
            .iter()
            .map(|(&id, e)| QueueEntry {
                id,
                key: e.key,
                lane: e.lane,
                joined_at: e.joined_at,
                callback: e.callback,
                reserved: e.reserved,
            })
            .collect();
        v.sort_by_key(|e| (e.reserved, e.key));
        v
    }

    /// Waiting interactions in queue order.
    pub fn waiting_ids(&self) -> Vec<InteractionId> {
        self.entries()
            .into_iter()
            .filter(|e| !e.reserved)
            .map(|e| e.id)
            .collect()
    }

    /// The recent handle times, oldest first.
    pub fn handle_times(&self) -> impl Iterator<Item = u64> + '_ {
        self.handle_times.iter().copied()
    }

    pub(crate) fn lanes(&self) -> &[Lane] {
        &self.lanes
    }
}
