//! The recording index: one row per recording file, so recordings can be found by call and
//! listed without scanning the recordings directory.
//!
//! Only the index lives here: writing, serving and deleting the files is the caller's job
//! ([`Storage::delete_recording`] removes the row, not the file).

use crate::{Storage, StorageError};
use sqlx::any::AnyRow;
use sqlx::Row;

/// One recording of (part of) a call. Times are epoch milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Recording {
    /// Assigned by [`Storage::insert_recording`]; ignored on insert.
    pub id: i64,
    /// The caller-side Call-ID of the recorded call.
    pub call_id: String,
    /// Where the file is (as the recorder named it; absolute or relative to its directory).
    pub path: String,
    /// When recording started.
    pub started_ms: i64,
    /// Length of the recorded audio.
    pub duration_ms: i64,
    /// File size in bytes.
    pub bytes: i64,
    /// Sample rate in Hz.
    pub rate: i64,
    /// Channels in the file (2 for a stereo recording with one leg per channel).
    pub channels: i64,
    /// The legs recorded, in channel order, comma-separated (e.g. `caller,callee`).
    pub legs: String,
    /// File format, e.g. `wav`.
    pub format: String,
    /// When the row was written (the caller sets it, e.g. with [`crate::now_ms`]).
    pub created_ms: i64,
}

/// The recording columns but `id`, as a literal (sqlx only runs `'static` SQL without an audit
/// marker).
macro_rules! recording_fields {
    () => {
        "call_id, path, started_ms, duration_ms, bytes, rate, channels, legs, format, created_ms"
    };
}

fn recording_from_row(row: &AnyRow) -> Result<Recording, sqlx::Error> {
    Ok(Recording {
        id: row.try_get("id")?,
        call_id: row.try_get("call_id")?,
        path: row.try_get("path")?,
        started_ms: row.try_get("started_ms")?,
        duration_ms: row.try_get("duration_ms")?,
        bytes: row.try_get("bytes")?,
        rate: row.try_get("rate")?,
        channels: row.try_get("channels")?,
        legs: row.try_get("legs")?,
        format: row.try_get("format")?,
        created_ms: row.try_get("created_ms")?,
    })
}

fn rows_to_recordings(op: &'static str, rows: &[AnyRow]) -> Result<Vec<Recording>, StorageError> {
    rows.iter()
        .map(recording_from_row)
        .collect::<Result<_, _>>()
        .map_err(StorageError::at(op))
}

impl Storage {
    /// Indexes a recording (its `id` is ignored) and returns the id assigned. Refuses an empty
    /// `call_id` or `path`.
    pub async fn insert_recording(&self, r: &Recording) -> Result<i64, StorageError> {
        const OP: &str = "insert_recording";
        if r.call_id.is_empty() || r.path.is_empty() {
            return Err(StorageError::Invalid {
                op: OP,
                reason: "call_id and path must not be empty".into(),
            });
        }
        let row = sqlx::query(concat!(
            "INSERT INTO recordings (",
            recording_fields!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id"
        ))
        .bind(&r.call_id)
        .bind(&r.path)
        .bind(r.started_ms)
        .bind(r.duration_ms)
        .bind(r.bytes)
        .bind(r.rate)
        .bind(r.channels)
        .bind(&r.legs)
        .bind(&r.format)
        .bind(r.created_ms)
        .fetch_one(self.pool())
        .await
        .map_err(StorageError::at(OP))?;
        row.try_get("id").map_err(StorageError::at(OP))
    }

    /// Every recording of the call with this Call-ID, oldest first.
    pub async fn recordings_for_call(&self, call_id: &str) -> Result<Vec<Recording>, StorageError> {
        const OP: &str = "recordings_for_call";
        let rows = sqlx::query(concat!(
            "SELECT id, ",
            recording_fields!(),
            " FROM recordings WHERE call_id = $1 ORDER BY started_ms, id"
        ))
        .bind(call_id)
        .fetch_all(self.pool())
        .await
        .map_err(StorageError::at(OP))?;
        rows_to_recordings(OP, &rows)
    }

    /// The recording with this id, if any.
    pub async fn recording(&self, id: i64) -> Result<Option<Recording>, StorageError> {
        const OP: &str = "recording";
        let row = sqlx::query(concat!(
            "SELECT id, ",
            recording_fields!(),
            " FROM recordings WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await
        .map_err(StorageError::at(OP))?;
        row.as_ref()
            .map(recording_from_row)
            .transpose()
            .map_err(StorageError::at(OP))
    }

    /// A page of recordings, newest first (by insertion): at most `limit`, after skipping
    /// `offset`.
    pub async fn list_recordings(
        &self,
        limit: u32,
        offset: u32,
    ) -> Result<Vec<Recording>, StorageError> {
        const OP: &str = "list_recordings";
        let rows = sqlx::query(concat!(
            "SELECT id, ",
            recording_fields!(),
            " FROM recordings ORDER BY id DESC LIMIT $1 OFFSET $2"
        ))
        .bind(i64::from(limit))
        .bind(i64::from(offset))
        .fetch_all(self.pool())
        .await
        .map_err(StorageError::at(OP))?;
        rows_to_recordings(OP, &rows)
    }

    /// Removes the recording's row (not its file); `false` if there was none.
    pub async fn delete_recording(&self, id: i64) -> Result<bool, StorageError> {
        const OP: &str = "delete_recording";
        let done = sqlx::query("DELETE FROM recordings WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await
            .map_err(StorageError::at(OP))?;
        Ok(done.rows_affected() > 0)
    }
}
