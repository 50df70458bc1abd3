//! Call detail records: one row per call, written when the call ends, with the call's quality
//! (MOS, jitter, codec per received direction) and its recording when the engine has them.

use crate::{Storage, StorageError};
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, Row};

/// A call detail record. Times are epoch milliseconds; counters cover the relayed RTP.
///
/// Quality fields are per direction *as received by the engine*: `_a` is what came from the
/// caller (A leg), `_b` what came from the callee (B leg). They are `None` when not measured
/// (no media, an unanswered call, or an engine that does not compute them).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Cdr {
    /// Assigned by [`Storage::insert_cdr`]; ignored on insert.
    pub id: i64,
    /// The caller-side Call-ID.
    pub call_id: String,
    /// Who called (AOR or URI).
    pub caller: String,
    /// Who was called (the request URI or resolved AOR).
    pub callee: String,
    /// When the INVITE arrived.
    pub start_ms: i64,
    /// When the call was answered, if it was.
    pub answer_ms: Option<i64>,
    /// When the call ended.
    pub end_ms: i64,
    /// Answered time: `end_ms - answer_ms`, 0 when unanswered.
    pub duration_ms: i64,
    /// Why the call ended: `normal_clearing`, `caller_cancel`, `no_answer`, `busy`, `rejected`,
    /// `rtp_timeout`, `max_duration`, `internal_error`, …
    pub cause: String,
    /// The final SIP status code sent to the caller.
    pub sip_code: i64,
    /// RTP packets relayed from the caller (A) to the callee (B).
    pub packets_a_to_b: i64,
    /// RTP packets relayed from B to A.
    pub packets_b_to_a: i64,
    /// RTP bytes relayed from A to B.
    pub bytes_a_to_b: i64,
    /// RTP bytes relayed from B to A.
    pub bytes_b_to_a: i64,
    /// Packets lost from A to B (sequence gaps).
    pub lost_a_to_b: i64,
    /// Packets lost from B to A.
    pub lost_b_to_a: i64,
    /// Estimated MOS (1.0–4.5, E-model) of the audio received from the caller.
    pub mos_a: Option<f64>,
    /// Estimated MOS of the audio received from the callee.
    pub mos_b: Option<f64>,
    /// RFC 3550 interarrival jitter, in milliseconds, of the caller's stream.
    pub jitter_a_ms: Option<f64>,
    /// Interarrival jitter, in milliseconds, of the callee's stream.
    pub jitter_b_ms: Option<f64>,
    /// Codec the caller sent, as SDP names it (`PCMU`, `opus`, …).
    pub codec_a: Option<String>,
    /// Codec the callee sent.
    pub codec_b: Option<String>,
    /// Path of the call's recording, if it was recorded (see [`crate::Recording`]).
    pub recording: Option<String>,
}

/// The CDR columns but `id`, as a literal (sqlx only runs `'static` SQL without an audit marker).
macro_rules! cdr_fields {
    () => {
        "call_id, caller, callee, start_ms, answer_ms, end_ms, duration_ms, cause, sip_code, \
         packets_a_to_b, packets_b_to_a, bytes_a_to_b, bytes_b_to_a, lost_a_to_b, lost_b_to_a, \
         mos_a, mos_b, jitter_a_ms, jitter_b_ms, codec_a, codec_b, recording"
    };
}

fn cdr_from_row(row: &AnyRow) -> Result<Cdr, sqlx::Error> {
    Ok(Cdr {
        id: row.try_get("id")?,
        call_id: row.try_get("call_id")?,
        caller: row.try_get("caller")?,
        callee: row.try_get("callee")?,
        start_ms: row.try_get("start_ms")?,
        answer_ms: row.try_get("answer_ms")?,
        end_ms: row.try_get("end_ms")?,
        duration_ms: row.try_get("duration_ms")?,
        cause: row.try_get("cause")?,
        sip_code: row.try_get("sip_code")?,
        packets_a_to_b: row.try_get("packets_a_to_b")?,
        packets_b_to_a: row.try_get("packets_b_to_a")?,
        bytes_a_to_b: row.try_get("bytes_a_to_b")?,
        bytes_b_to_a: row.try_get("bytes_b_to_a")?,
        lost_a_to_b: row.try_get("lost_a_to_b")?,
        lost_b_to_a: row.try_get("lost_b_to_a")?,
        mos_a: row.try_get("mos_a")?,
        mos_b: row.try_get("mos_b")?,
        jitter_a_ms: row.try_get("jitter_a_ms")?,
        jitter_b_ms: row.try_get("jitter_b_ms")?,
        codec_a: row.try_get("codec_a")?,
        codec_b: row.try_get("codec_b")?,
        recording: row.try_get("recording")?,
    })
}

impl Storage {
    /// Stores a CDR (its `id` is ignored) and returns the id assigned.
    pub async fn insert_cdr(&self, cdr: &Cdr) -> Result<i64, StorageError> {
        const OP: &str = "insert_cdr";
        let mut conn = self.pool().acquire().await.map_err(StorageError::at(OP))?;
        insert_one(&mut conn, cdr).await
    }

    /// Inserts several CDRs in one transaction (one commit, one fsync) and returns how many
    /// were stored. The engine's CDR writer batches with this under load.
    pub async fn insert_cdrs(&self, cdrs: &[Cdr]) -> Result<usize, StorageError> {
        const OP: &str = "insert_cdrs";
        let mut tx = self.pool().begin().await.map_err(StorageError::at(OP))?;
        for cdr in cdrs {
            insert_one(&mut tx, cdr).await?;
        }
        tx.commit().await.map_err(StorageError::at(OP))?;
        Ok(cdrs.len())
    }
}

/// Binds a nullable `REAL` / `DOUBLE PRECISION` value.
///
/// sqlx 0.9.0's `Any` driver sends a NULL `f64` typed as PostgreSQL `float4` and a NULL `f32` as
/// `float8` (the mapping is swapped: sqlx issue #4284). A statement is prepared, and cached per
/// connection, with the parameter types of its first run: if that run had a NULL `f64`, every
/// later non-NULL value fails with "incorrect binary data format". So a NULL goes as an `f32`
/// NULL, which reaches PostgreSQL as `float8` like the values do. Check this when upgrading sqlx
/// (it is pinned): the backends test inserts NULL qualities first on a fresh connection.
fn bind_real(q: Query<'_, Any, AnyArguments>, v: Option<f64>) -> Query<'_, Any, AnyArguments> {
    match v {
        Some(v) => q.bind(v),
        None => q.bind(None::<f32>),
    }
}

async fn insert_one(conn: &mut sqlx::AnyConnection, cdr: &Cdr) -> Result<i64, StorageError> {
    const OP: &str = "insert_cdr";
    {
        let q = sqlx::query(concat!(
            "INSERT INTO cdrs (",
            cdr_fields!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
             $16, $17, $18, $19, $20, $21, $22) \
             RETURNING id"
        ))
        .bind(&cdr.call_id)
        .bind(&cdr.caller)
        .bind(&cdr.callee)
        .bind(cdr.start_ms)
        .bind(cdr.answer_ms)
        .bind(cdr.end_ms)
        .bind(cdr.duration_ms)
        .bind(&cdr.cause)
        .bind(cdr.sip_code)
        .bind(cdr.packets_a_to_b)
        .bind(cdr.packets_b_to_a)
        .bind(cdr.bytes_a_to_b)
        .bind(cdr.bytes_b_to_a)
        .bind(cdr.lost_a_to_b)
        .bind(cdr.lost_b_to_a);
        let q = bind_real(q, cdr.mos_a);
        let q = bind_real(q, cdr.mos_b);
        let q = bind_real(q, cdr.jitter_a_ms);
        let q = bind_real(q, cdr.jitter_b_ms);
        let row = q
            .bind(&cdr.codec_a)
            .bind(&cdr.codec_b)
            .bind(&cdr.recording)
            .fetch_one(&mut *conn)
            .await
            .map_err(StorageError::at(OP))?;
        row.try_get("id").map_err(StorageError::at(OP))
    }
}

impl Storage {
    /// The newest `limit` CDRs (by insertion), newest first.
    pub async fn list_cdrs(&self, limit: u32) -> Result<Vec<Cdr>, StorageError> {
        const OP: &str = "list_cdrs";
        let rows = sqlx::query(concat!(
            "SELECT id, ",
            cdr_fields!(),
            " FROM cdrs ORDER BY id DESC LIMIT $1"
        ))
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .map_err(StorageError::at(OP))?;
        rows.iter()
            .map(cdr_from_row)
            .collect::<Result<_, _>>()
            .map_err(StorageError::at(OP))
    }

    /// The newest CDR with this Call-ID, if any.
    pub async fn cdr_by_call_id(&self, call_id: &str) -> Result<Option<Cdr>, StorageError> {
        const OP: &str = "cdr_by_call_id";
        let row = sqlx::query(concat!(
            "SELECT id, ",
            cdr_fields!(),
            " FROM cdrs WHERE call_id = $1 ORDER BY id DESC LIMIT 1"
        ))
        .bind(call_id)
        .fetch_optional(self.pool())
        .await
        .map_err(StorageError::at(OP))?;
        row.as_ref()
            .map(cdr_from_row)
            .transpose()
            .map_err(StorageError::at(OP))
    }
}

/// Which CDRs [`Storage::search_cdrs`] returns. Empty strings and `None` filter nothing.
#[derive(Clone, Debug, Default)]
pub struct CdrFilter {
    /// Calls that started at or after this time (epoch ms).
    pub from_ms: Option<i64>,
    /// Calls that started before this time (epoch ms).
    pub to_ms: Option<i64>,
    /// Exactly this caller.
    pub caller: String,
    /// Exactly this callee.
    pub callee: String,
    /// At most this many rows.
    pub limit: u32,
    /// After skipping this many.
    pub offset: u32,
}

impl Storage {
    /// The CDRs matching `f`, newest first (by insertion).
    pub async fn search_cdrs(&self, f: &CdrFilter) -> Result<Vec<Cdr>, StorageError> {
        const OP: &str = "search_cdrs";
        // Fixed SQL on both backends: absent filters become bounds that match everything.
        let rows = sqlx::query(concat!(
            "SELECT id, ",
            cdr_fields!(),
            " FROM cdrs WHERE start_ms >= $1 AND start_ms < $2 \
             AND ($3 = '' OR caller = $3) AND ($4 = '' OR callee = $4) \
             ORDER BY id DESC LIMIT $5 OFFSET $6"
        ))
        .bind(f.from_ms.unwrap_or(i64::MIN))
        .bind(f.to_ms.unwrap_or(i64::MAX))
        .bind(&f.caller)
        .bind(&f.callee)
        .bind(i64::from(f.limit))
        .bind(i64::from(f.offset))
        .fetch_all(self.pool())
        .await
        .map_err(StorageError::at(OP))?;
        rows.iter()
            .map(cdr_from_row)
            .collect::<Result<_, _>>()
            .map_err(StorageError::at(OP))
    }

    /// The CDR with this id, if any.
    pub async fn cdr(&self, id: i64) -> Result<Option<Cdr>, StorageError> {
        const OP: &str = "cdr";
        let row = sqlx::query(concat!(
            "SELECT id, ",
            cdr_fields!(),
            " FROM cdrs WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await
        .map_err(StorageError::at(OP))?;
        row.as_ref()
            .map(cdr_from_row)
            .transpose()
            .map_err(StorageError::at(OP))
    }
}
