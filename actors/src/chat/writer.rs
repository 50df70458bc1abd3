//! The chat writer: one task that stores chat writes in order, in batches (one transaction per
//! batch), so sessions never wait on the database and a chat's messages land in `seq` order.

use switchboard_storage::{ChatWrite, Storage};
use tokio::sync::{mpsc, oneshot};

/// Most writes per transaction.
const BATCH: usize = 512;

enum Job {
    Write(Box<ChatWrite>),
    Flush(oneshot::Sender<()>),
}

/// Handle on the writer task. Cheap to clone.
#[derive(Clone)]
pub(super) struct ChatWriter {
    tx: mpsc::UnboundedSender<Job>,
}

impl ChatWriter {
    /// Starts the writer task on `arbiter`.
    pub fn start(storage: Storage, arbiter: &actix_rt::ArbiterHandle) -> ChatWriter {
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        arbiter.spawn(async move {
            let mut jobs = Vec::with_capacity(BATCH);
            while rx.recv_many(&mut jobs, BATCH).await > 0 {
                let mut writes = Vec::with_capacity(jobs.len());
                let mut waiters = Vec::new();
                for j in jobs.drain(..) {
                    match j {
                        Job::Write(w) => writes.push(*w),
                        Job::Flush(w) => waiters.push(w),
                    }
                }
                if !writes.is_empty() {
                    if let Err(e) = storage.apply_chat_writes(&writes).await {
                        // One retry, then one at a time so a bad row does not lose the others.
                        tracing::warn!(error = %e, n = writes.len(), "chat writes failed; retrying one by one");
                        for w in &writes {
                            if let Err(e) = storage.apply_chat_writes(std::slice::from_ref(w)).await {
                                tracing::error!(error = %e, write = ?w, "chat write lost");
                            }
                        }
                    }
                }
                for w in waiters {
                    let _ = w.send(());
                }
            }
        });
        ChatWriter { tx }
    }

    /// Queues a write.
    pub fn push(&self, w: ChatWrite) {
        if self.tx.send(Job::Write(Box::new(w))).is_err() {
            tracing::error!("chat writer is gone; write lost");
        }
    }

    /// Waits until everything queued so far is stored.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Job::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}
