//! The journal writer: configuration rows and immutable routing facts, handed over by the routing
//! actor without waiting and written by one task in batches (one transaction per batch), in the
//! order they were produced. [`Journal::flush`] waits until everything handed over before it is
//! written (the REST API answers configuration changes after it; metrics read after it).

use crate::routing::{NewInteraction, QueueEvent, QueueId, RoutingEvent};
use switchboard_storage::{ContactEvent, ContactWrite, Storage};
use tokio::sync::{mpsc, oneshot};

/// Most writes in one transaction.
const BATCH: usize = 1024;

enum Entry {
    Write(ContactWrite),
    Flush(oneshot::Sender<()>),
}

/// Where the routing actor hands what must be stored. The channel is unbounded on purpose: a
/// routing fact is never dropped (metrics fold over them), and the actor must never wait on
/// the database.
#[derive(Clone)]
pub struct Journal {
    tx: mpsc::UnboundedSender<Entry>,
}

/// The journal streams (the `stream` column).
pub(crate) const STREAM_INTERACTION: &str = "interaction";
pub(crate) const STREAM_ROUTING: &str = "routing";
pub(crate) const STREAM_QUEUE: &str = "queue";

impl Journal {
    /// Starts the writer task on the current arbiter.
    pub fn start(storage: Storage) -> Journal {
        let (tx, mut rx) = mpsc::unbounded_channel::<Entry>();
        actix_rt::spawn(async move {
            let mut entries = Vec::with_capacity(BATCH);
            let mut batch = Vec::with_capacity(BATCH);
            while rx.recv_many(&mut entries, BATCH).await > 0 {
                for e in entries.drain(..) {
                    match e {
                        Entry::Write(w) => batch.push(w),
                        Entry::Flush(done) => {
                            write(&storage, &mut batch).await;
                            let _ = done.send(());
                        }
                    }
                }
                write(&storage, &mut batch).await;
            }
        });
        Journal { tx }
    }

    /// Hands over one write.
    pub(crate) fn write(&self, w: ContactWrite) {
        if self.tx.send(Entry::Write(w)).is_err() {
            tracing::error!("contact journal writer gone; write lost");
        }
    }

    /// Waits until every write handed over before this call is stored (or failed twice).
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Entry::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }

    /// Journals a new interaction (what a restart needs to route it again).
    pub(crate) fn created(&self, n: &NewInteraction, at: u64) {
        self.event(STREAM_INTERACTION, at, n.queue, Some(n.id.0), json(n));
    }

    /// Journals a routing event.
    pub(crate) fn routing(&self, e: &RoutingEvent, interaction: Option<u64>) {
        self.event(STREAM_ROUTING, e.at, None, interaction, json(e));
    }

    /// Journals a queue event.
    pub(crate) fn queue(&self, q: QueueId, e: &QueueEvent, at: u64) {
        self.event(STREAM_QUEUE, at, Some(q), None, json(e));
    }

    fn event(
        &self,
        stream: &str,
        at: u64,
        queue: Option<QueueId>,
        interaction: Option<u64>,
        body: String,
    ) {
        self.write(ContactWrite::Event(ContactEvent {
            seq: 0,
            at_ms: i64::try_from(at).unwrap_or(i64::MAX),
            stream: stream.to_string(),
            queue_id: queue.map(|q| i64::from(q.0)),
            interaction_id: interaction.and_then(|i| i64::try_from(i).ok()),
            body,
        }));
    }
}

fn json<T: serde::Serialize>(v: &T) -> String {
    // Serializing these plain data types cannot fail (string keys, no custom serializers).
    serde_json::to_string(v).unwrap_or_default()
}

async fn write(storage: &Storage, batch: &mut Vec<ContactWrite>) {
    if batch.is_empty() {
        return;
    }
    if let Err(e) = storage.apply_contact_writes(batch).await {
        tracing::warn!(error = %e, n = batch.len(), "contact journal batch failed; retrying");
        if let Err(e) = storage.apply_contact_writes(batch).await {
            tracing::error!(error = %e, n = batch.len(), "contact journal batch not stored");
        }
    }
    batch.clear();
}
