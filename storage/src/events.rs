//! The event stream's store: every published `noun.verb` event by its sequence number, so a
//! consumer that reconnects gets what it missed. The engine assigns sequence numbers (the
//! database never does) and writes events in batches, in order; they are pruned by age.

use crate::{Storage, StorageError};
use sqlx::Row;

/// One stored event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEvent {
    /// The sequence number (1, 2, 3, … without gaps).
    pub seq: i64,
    /// When it was published (ms since the epoch).
    pub at_ms: i64,
    /// `noun.verb`, e.g. `call.created`.
    pub kind: String,
    /// The event's data: a JSON value as text.
    pub data: String,
}

impl Storage {
    /// Stores events in one transaction. Sequence numbers must be new.
    pub async fn insert_events(&self, events: &[StoredEvent]) -> Result<usize, StorageError> {
        const OP: &str = "insert_events";
        let mut tx = self.pool().begin().await.map_err(StorageError::at(OP))?;
        for e in events {
            sqlx::query("INSERT INTO events (seq, at_ms, kind, data) VALUES ($1, $2, $3, $4)")
                .bind(e.seq)
                .bind(e.at_ms)
                .bind(&e.kind)
                .bind(&e.data)
                .execute(&mut *tx)
                .await
                .map_err(StorageError::at(OP))?;
        }
        tx.commit().await.map_err(StorageError::at(OP))?;
        Ok(events.len())
    }

    /// Up to `limit` events with a sequence number above `since`, in order.
    pub async fn events_after(
        &self,
        since: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StorageError> {
        const OP: &str = "events_after";
        let rows = sqlx::query(
            "SELECT seq, at_ms, kind, data FROM events WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(since)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .map_err(StorageError::at(OP))?;
        rows.iter()
            .map(|r| {
                Ok(StoredEvent {
                    seq: r.try_get("seq")?,
                    at_ms: r.try_get("at_ms")?,
                    kind: r.try_get("kind")?,
                    data: r.try_get("data")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StorageError::at(OP))
    }

    /// The largest stored sequence number (0 when there is none).
    pub async fn max_event_seq(&self) -> Result<i64, StorageError> {
        const OP: &str = "max_event_seq";
        let row = sqlx::query("SELECT MAX(seq) AS m FROM events")
            .fetch_one(self.pool())
            .await
            .map_err(StorageError::at(OP))?;
        let max: Option<i64> = row.try_get("m").map_err(StorageError::at(OP))?;
        Ok(max.unwrap_or(0))
    }

    /// Deletes events published before `before_ms`, but never the newest one (it carries the
    /// sequence number a restart continues after). Returns how many were deleted.
    pub async fn prune_events(&self, before_ms: i64) -> Result<u64, StorageError> {
        const OP: &str = "prune_events";
        let done = sqlx::query(
            "DELETE FROM events WHERE at_ms < $1 AND seq < (SELECT MAX(seq) FROM events)",
        )
        .bind(before_ms)
        .execute(self.pool())
        .await
        .map_err(StorageError::at(OP))?;
        Ok(done.rows_affected())
    }
}
