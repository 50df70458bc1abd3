//! The bus: sequence numbers, the ring of recent events, live consumers, the storage writer.
//!
//! One mutex guards the hub. [`Events::publish`] holds it only to take the next sequence
//! number, push the event into the ring, `try_send` it to each matching consumer and queue it
//! for the writer: no I/O and no waiting, so a call actor never stalls on the bus. Because the
//! sequence number is taken and the event fanned out under the same lock, every consumer and
//! the writer see events in sequence order.

use super::filter::Filter;
use prometheus::{IntCounter, IntGauge, Registry};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use switchboard_storage::{Storage, StorageError, StoredEvent};
use tokio::sync::{mpsc, oneshot, Notify};

/// Events kept in memory for consumers that (re)connect close to the head.
const RECENT: usize = 16_384;
/// Events read from storage per page when replaying.
const PAGE: u32 = 1_000;
/// Most events written in one transaction.
const WRITE_BATCH: usize = 2_048;
/// A replay that finds neither storage nor the ring advancing gives up after this long.
const REPLAY_STALL: Duration = Duration::from_secs(30);

/// One published event.
#[derive(Debug)]
pub struct Event {
    /// Its sequence number.
    pub seq: u64,
    /// When it was published (ms since the epoch).
    pub at_ms: i64,
    /// `noun.verb`.
    pub kind: String,
    /// The data object, as JSON text.
    pub data: String,
    /// The wire frame: `{"seq":…,"at":…,"type":…,"data":…}`.
    pub frame: String,
}

impl Event {
    fn new(seq: u64, at_ms: i64, kind: &str, data: String) -> Event {
        // Serializing a `&str` cannot fail.
        let kind_json = serde_json::to_string(kind).unwrap_or_else(|_| "\"\"".into());
        let frame =
            format!("{{\"seq\":{seq},\"at\":{at_ms},\"type\":{kind_json},\"data\":{data}}}");
        Event {
            seq,
            at_ms,
            kind: kind.to_string(),
            data,
            frame,
        }
    }

    fn from_stored(e: StoredEvent) -> Event {
        Event::new(e.seq.max(0) as u64, e.at_ms, &e.kind, e.data)
    }
}

/// Bus settings (from `[events]`).
#[derive(Clone, Debug)]
pub struct Settings {
    /// Stored events older than this are pruned.
    pub retention: Duration,
    /// How often pruning runs.
    pub prune_interval: Duration,
    /// Events a consumer may have queued before it is cut off.
    pub consumer_buffer: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            retention: Duration::from_secs(72 * 3600),
            prune_interval: Duration::from_secs(300),
            consumer_buffer: 8_192,
        }
    }
}

/// The bus handle: cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct Events {
    inner: Arc<Inner>,
}

struct Inner {
    hub: Mutex<Hub>,
    storage: Option<Storage>,
    settings: Settings,
    published: IntCounter,
    cut: IntCounter,
    consumers: IntGauge,
    store_failures: IntCounter,
}

struct Hub {
    next_seq: u64,
    recent: VecDeque<Arc<Event>>,
    consumers: Vec<Consumer>,
    next_id: u64,
    writer: Option<mpsc::UnboundedSender<WriterMsg>>,
}

struct Consumer {
    id: u64,
    filter: Arc<Filter>,
    tx: mpsc::Sender<Arc<Event>>,
    cut: Arc<CutSignal>,
}

/// Set once when the bus cuts a consumer off.
#[derive(Default)]
struct CutSignal {
    cut: AtomicBool,
    notify: Notify,
}

enum WriterMsg {
    Event(Arc<Event>),
    Flush(oneshot::Sender<()>),
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("head", &self.head())
            .finish()
    }
}

impl Events {
    /// Starts the bus over `storage`: sequence numbers continue after the largest stored one;
    /// the writer and the pruner run on the current actix arbiter. Metrics are registered in
    /// `registry`.
    pub async fn start(
        storage: Storage,
        settings: Settings,
        registry: &Registry,
    ) -> Result<Events, StorageError> {
        let last = storage.max_event_seq().await?.max(0) as u64;
        let (tx, rx) = mpsc::unbounded_channel();
        let events = Events::build(Some(storage.clone()), settings.clone(), last, Some(tx));
        events.register(registry);
        actix_rt::spawn(writer(
            storage.clone(),
            rx,
            events.inner.store_failures.clone(),
        ));
        actix_rt::spawn(pruner(storage, settings));
        tracing::info!(last_seq = last, "event bus started");
        Ok(events)
    }

    /// A bus without storage (tests, tools): replay reaches back only as far as the ring.
    pub fn in_memory(settings: Settings) -> Events {
        Events::build(None, settings, 0, None)
    }

    fn build(
        storage: Option<Storage>,
        settings: Settings,
        last: u64,
        writer: Option<mpsc::UnboundedSender<WriterMsg>>,
    ) -> Events {
        // Invariant for the expects: static, valid metric definitions.
        let counter = |name: &str, help: &str| IntCounter::new(name, help).expect("static metric");
        Events {
            inner: Arc::new(Inner {
                hub: Mutex::new(Hub {
                    next_seq: last + 1,
                    recent: VecDeque::with_capacity(RECENT),
                    consumers: Vec::new(),
                    next_id: 0,
                    writer,
                }),
                storage,
                settings,
                published: counter("events_published_total", "Events published on the bus"),
                cut: counter(
                    "events_consumers_cut_total",
                    "Event-stream consumers cut off because their buffer was full",
                ),
                consumers: IntGauge::new("events_consumers", "Live event-stream consumers")
                    .expect("static metric"),
                store_failures: counter(
                    "events_store_failures_total",
                    "Events the writer could not store after its retries",
                ),
            }),
        }
    }

    fn register(&self, registry: &Registry) {
        let i = &self.inner;
        for m in [&i.published, &i.cut, &i.store_failures] {
            if let Err(e) = registry.register(Box::new(m.clone())) {
                tracing::warn!(error = %e, "event metric not registered");
            }
        }
        if let Err(e) = registry.register(Box::new(i.consumers.clone())) {
            tracing::warn!(error = %e, "event metric not registered");
        }
    }

    fn hub(&self) -> MutexGuard<'_, Hub> {
        // A panic while holding the lock leaves the hub consistent (every step is a push or a
        // removal), so a poisoned lock is still usable.
        self.inner.hub.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes an event of type `kind` (`noun.verb`) with `data` (a JSON object). Never
    /// blocks on storage or consumers.
    pub fn publish(&self, kind: &str, data: serde_json::Value) {
        let data = data.to_string();
        let mut hub = self.hub();
        let seq = hub.next_seq;
        hub.next_seq += 1;
        let event = Arc::new(Event::new(seq, now_ms(), kind, data));
        if hub.recent.len() == RECENT {
            hub.recent.pop_front();
        }
        hub.recent.push_back(event.clone());
        let cut = &self.inner.cut;
        let consumers = &self.inner.consumers;
        hub.consumers.retain(|c| {
            if !c.filter.matches(kind) {
                return true;
            }
            match c.tx.try_send(event.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    c.cut.cut.store(true, Ordering::Release);
                    c.cut.notify.notify_one();
                    cut.inc();
                    consumers.dec();
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    consumers.dec();
                    false
                }
            }
        });
        if let Some(w) = &hub.writer {
            if w.send(WriterMsg::Event(event)).is_err() {
                hub.writer = None;
                tracing::error!("event writer gone; events are no longer stored");
            }
        }
        drop(hub);
        self.inner.published.inc();
    }

    /// The sequence number of the newest event (0 before the first).
    pub fn head(&self) -> u64 {
        self.hub().next_seq - 1
    }

    /// The configured per-consumer buffer.
    pub fn consumer_buffer(&self) -> usize {
        self.inner.settings.consumer_buffer
    }

    /// Waits until every event published so far is stored (or the writer gave up on it).
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        let sent = match &self.hub().writer {
            Some(w) => w.send(WriterMsg::Flush(tx)).is_ok(),
            None => false,
        };
        if sent {
            let _ = rx.await;
        }
    }

    /// A subscription to events after `since` that pass `filter`, buffering at most
    /// `buffer` live events before it is cut off.
    pub fn subscribe(&self, since: u64, filter: Filter, buffer: usize) -> Subscription {
        Subscription {
            bus: self.clone(),
            filter: Arc::new(filter),
            last: since,
            buffer: buffer.max(1),
            pending: VecDeque::new(),
            live: None,
            stalled_since: None,
            page_end: 0,
        }
    }

    /// Up to `limit` events after `since` that pass `filter`, and the sequence number to ask
    /// after next time (the last one examined, so filtered pages still move on).
    pub async fn page(
        &self,
        since: u64,
        limit: usize,
        filter: &Filter,
    ) -> Result<(Vec<Arc<Event>>, u64), StorageError> {
        let mut out = Vec::new();
        let mut last = since;
        if !self.ring_covers(last) {
            if let Some(storage) = &self.inner.storage {
                let page = storage
                    .events_after(last.min(i64::MAX as u64) as i64, limit as u32)
                    .await?;
                for e in page {
                    last = last.max(e.seq.max(0) as u64);
                    if filter.matches(&e.kind) {
                        out.push(Arc::new(Event::from_stored(e)));
                    }
                }
            }
        }
        if out.len() < limit {
            let hub = self.hub();
            let first = hub.recent.front().map_or(hub.next_seq, |e| e.seq);
            if last + 1 >= first {
                let from = last;
                for e in hub.recent.iter().filter(|e| e.seq > from) {
                    if out.len() == limit {
                        break;
                    }
                    last = e.seq;
                    if filter.matches(&e.kind) {
                        out.push(e.clone());
                    }
                }
            }
        }
        Ok((out, last))
    }

    /// Whether every event after `last` is still in the ring (or not published yet).
    fn ring_covers(&self, last: u64) -> bool {
        let hub = self.hub();
        let first = hub.recent.front().map_or(hub.next_seq, |e| e.seq);
        last + 1 >= first
    }

    /// Registers a live consumer if the ring still holds every event after `last`; returns the
    /// matching events after `last` from the ring (the backlog) and the live half.
    fn attach(
        &self,
        last: u64,
        filter: &Arc<Filter>,
        buffer: usize,
    ) -> Option<(Vec<Arc<Event>>, Live)> {
        let mut hub = self.hub();
        let first = hub.recent.front().map_or(hub.next_seq, |e| e.seq);
        if last + 1 < first {
            return None;
        }
        let backlog = hub
            .recent
            .iter()
            .filter(|e| e.seq > last && filter.matches(&e.kind))
            .cloned()
            .collect();
        let (tx, rx) = mpsc::channel(buffer);
        let cut = Arc::new(CutSignal::default());
        let id = hub.next_id;
        hub.next_id += 1;
        hub.consumers.push(Consumer {
            id,
            filter: filter.clone(),
            tx,
            cut: cut.clone(),
        });
        self.inner.consumers.inc();
        Some((backlog, Live { id, rx, cut }))
    }

    fn detach(&self, id: u64) {
        let mut hub = self.hub();
        let before = hub.consumers.len();
        hub.consumers.retain(|c| c.id != id);
        if hub.consumers.len() < before {
            self.inner.consumers.dec();
        }
    }
}

/// The live half of a subscription.
struct Live {
    id: u64,
    rx: mpsc::Receiver<Arc<Event>>,
    cut: Arc<CutSignal>,
}

/// What [`Subscription::next`] returns.
#[derive(Debug)]
pub enum Next {
    /// The next event, in sequence order.
    Event(Arc<Event>),
    /// The consumer's buffer overflowed: the bus dropped it. Reconnect after
    /// [`Subscription::last`] (or call [`Subscription::resume`]).
    Cut,
    /// Replay could not read storage (or it stopped advancing) for too long.
    Failed(String),
}

/// A consumer's cursor: replays from storage, then delivers live events, in sequence order.
///
/// [`Subscription::next`] is cancel-safe: it changes state only when it returns.
pub struct Subscription {
    bus: Events,
    filter: Arc<Filter>,
    last: u64,
    buffer: usize,
    pending: VecDeque<Arc<Event>>,
    live: Option<Live>,
    stalled_since: Option<std::time::Instant>,
    /// The last sequence number of the storage page being delivered.
    page_end: u64,
}

impl Subscription {
    /// The sequence number of the last event delivered or passed over.
    pub fn last(&self) -> u64 {
        self.last
    }

    /// Whether the bus has cut this consumer off.
    pub fn is_cut(&self) -> bool {
        self.live
            .as_ref()
            .is_some_and(|l| l.cut.cut.load(Ordering::Acquire))
    }

    /// Completes when the bus cuts this consumer off (never, while it is replaying).
    pub async fn cut_off(&self) {
        match &self.live {
            Some(l) => {
                if !l.cut.cut.load(Ordering::Acquire) {
                    l.cut.notify.notified().await;
                }
            }
            None => std::future::pending().await,
        }
    }

    /// After [`Next::Cut`]: carry on from storage after the last delivered event.
    pub fn resume(&mut self) {
        if let Some(live) = self.live.take() {
            self.bus.detach(live.id);
        }
        self.pending.clear();
        self.page_end = 0;
    }

    /// The next event. See [`Next`].
    pub async fn next(&mut self) -> Next {
        loop {
            if let Some(e) = self.pending.pop_front() {
                self.last = self.last.max(e.seq);
                if self.pending.is_empty() {
                    self.last = self.last.max(self.page_end);
                }
                return Next::Event(e);
            }
            if let Some(live) = &mut self.live {
                if live.cut.cut.load(Ordering::Acquire) {
                    return Next::Cut;
                }
                return match live.rx.recv().await {
                    Some(e) => {
                        self.last = self.last.max(e.seq);
                        Next::Event(e)
                    }
                    None => Next::Cut,
                };
            }
            if let Some((backlog, live)) = self.bus.attach(self.last, &self.filter, self.buffer) {
                self.pending = backlog.into();
                self.page_end = 0;
                self.live = Some(live);
                self.stalled_since = None;
                continue;
            }
            // Behind the ring: read storage.
            let Some(storage) = &self.bus.inner.storage else {
                // Without storage the events before the ring are gone: skip to the ring.
                let hub = self.bus.hub();
                self.last = hub.recent.front().map_or(hub.next_seq, |e| e.seq) - 1;
                continue;
            };
            let since = self.last.min(i64::MAX as u64) as i64;
            match storage.events_after(since, PAGE).await {
                Ok(page) if !page.is_empty() => {
                    self.stalled_since = None;
                    let mut last = self.last;
                    let mut pending = VecDeque::with_capacity(page.len());
                    for e in page {
                        last = last.max(e.seq.max(0) as u64);
                        if self.filter.matches(&e.kind) {
                            pending.push_back(Arc::new(Event::from_stored(e)));
                        }
                    }
                    self.pending = pending;
                    // Filtered-out events at the page's end are passed over with the last match.
                    self.page_end = last;
                    if self.pending.is_empty() {
                        self.last = last;
                    }
                }
                Ok(_) => {
                    // The writer has not stored what the ring already dropped: wait for it.
                    if self.stall(None) {
                        return Next::Failed("events are not reaching storage".into());
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => {
                    if self.stall(Some(&e)) {
                        return Next::Failed(format!("reading stored events: {e}"));
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    /// Notes that replay made no progress; true when that has lasted too long.
    fn stall(&mut self, e: Option<&StorageError>) -> bool {
        if let Some(e) = e {
            tracing::warn!(error = %e, "event replay cannot read storage");
        }
        let since = *self
            .stalled_since
            .get_or_insert_with(std::time::Instant::now);
        since.elapsed() > REPLAY_STALL
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(live) = self.live.take() {
            self.bus.detach(live.id);
        }
    }
}

/// Stores events in batches, in sequence order, retrying a failed batch with back-off.
async fn writer(
    storage: Storage,
    mut rx: mpsc::UnboundedReceiver<WriterMsg>,
    failures: IntCounter,
) {
    let mut msgs = Vec::with_capacity(WRITE_BATCH);
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    while rx.recv_many(&mut msgs, WRITE_BATCH).await > 0 {
        let mut flushes = Vec::new();
        for m in msgs.drain(..) {
            match m {
                WriterMsg::Event(e) => batch.push(StoredEvent {
                    seq: e.seq.min(i64::MAX as u64) as i64,
                    at_ms: e.at_ms,
                    kind: e.kind.clone(),
                    data: e.data.clone(),
                }),
                WriterMsg::Flush(done) => flushes.push(done),
            }
        }
        if !batch.is_empty() {
            let mut delay = Duration::from_millis(100);
            let mut attempt = 0;
            loop {
                match storage.insert_events(&batch).await {
                    Ok(_) => break,
                    Err(e) if attempt < 6 => {
                        tracing::warn!(error = %e, n = batch.len(), attempt, "storing events failed; retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(5));
                        attempt += 1;
                    }
                    Err(e) => {
                        tracing::error!(
                            error = %e,
                            first = batch.first().map_or(0, |e| e.seq),
                            last = batch.last().map_or(0, |e| e.seq),
                            "events not stored"
                        );
                        failures.inc_by(batch.len() as u64);
                        break;
                    }
                }
            }
            batch.clear();
        }
        for f in flushes {
            let _ = f.send(());
        }
    }
}

/// Deletes events older than the retention window, periodically.
async fn pruner(storage: Storage, settings: Settings) {
    loop {
        let before = now_ms() - settings.retention.as_millis().min(i64::MAX as u128) as i64;
        match storage.prune_events(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(pruned = n, "old events pruned"),
            Err(e) => tracing::warn!(error = %e, "pruning events failed"),
        }
        tokio::time::sleep(settings.prune_interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn seq_of(n: Next) -> u64 {
        match n {
            Next::Event(e) => e.seq,
            other => panic!("expected an event, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn replay_then_live_without_gap_or_duplicate() {
        let bus = Events::in_memory(Settings::default());
        for i in 0..10 {
            bus.publish("call.created", json!({ "n": i }));
        }
        let mut sub = bus.subscribe(3, Filter::all(), 100);
        for want in 4..=10 {
            assert_eq!(seq_of(sub.next().await), want);
        }
        bus.publish("call.ended", json!({}));
        assert_eq!(seq_of(sub.next().await), 11);
        let e = match bus.page(10, 5, &Filter::all()).await {
            Ok((events, next)) => {
                assert_eq!(next, 11);
                events
            }
            Err(e) => panic!("{e}"),
        };
        assert_eq!(
            e[0].frame,
            format!(
                "{{\"seq\":11,\"at\":{},\"type\":\"call.ended\",\"data\":{{}}}}",
                e[0].at_ms
            )
        );
    }

    #[tokio::test]
    async fn a_full_consumer_is_cut_and_others_are_not() {
        let bus = Events::in_memory(Settings::default());
        let mut slow = bus.subscribe(0, Filter::all(), 2);
        let mut fast = bus.subscribe(0, Filter::parse("call.*").expect("filter"), 100);
        // Attach both (the first `next` attaches and waits for an event).
        bus.publish("call.created", json!({}));
        assert_eq!(seq_of(slow.next().await), 1);
        assert_eq!(seq_of(fast.next().await), 1);
        for _ in 0..5 {
            bus.publish("call.created", json!({}));
        }
        bus.publish("agent.logged_in", json!({}));
        assert!(slow.is_cut());
        assert!(matches!(slow.next().await, Next::Cut));
        assert_eq!(slow.last(), 1);
        for want in 2..=6 {
            assert_eq!(seq_of(fast.next().await), want);
        }
        assert!(!fast.is_cut());
        // Resumed, the cut one carries on after its last event (from the ring here).
        slow.resume();
        for want in 2..=7 {
            assert_eq!(seq_of(slow.next().await), want);
        }
    }
}
