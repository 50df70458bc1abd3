//! Registrations: the location service of RFC 3261 §10, one row per (AOR, contact URI).
//!
//! The registrar decides (expiry bounds, Call-ID/CSeq ordering, `*` removal); this module only
//! keeps the result. Expired rows are invisible to readers before [`Storage::purge_expired`]
//! deletes them.

use crate::{Storage, StorageError};
use sqlx::any::AnyRow;
use sqlx::Row;

/// One contact bound to an address of record.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Binding {
    /// The address of record, stored exactly as given (e.g. `sip:alice@switchboard`).
    pub aor: String,
    /// The Contact URI.
    pub contact_uri: String,
    /// When the binding expires, epoch milliseconds.
    pub expires_at_ms: i64,
    /// The Contact's q-value in thousandths (`q=0.5` is 500; 1000 when absent).
    pub q: i64,
    /// Call-ID of the REGISTER that created or last refreshed the binding.
    pub call_id: String,
    /// CSeq number of that REGISTER.
    pub cseq: i64,
    /// The flow the REGISTER came from, e.g. `udp:127.0.0.1:5062#conn`, to reach NATed phones.
    pub source: String,
    /// The User-Agent header, if any.
    pub user_agent: Option<String>,
    /// When the binding was last written, epoch milliseconds.
    pub updated_at_ms: i64,
}

/// The registration columns, as a literal (sqlx only runs `'static` SQL without an audit marker).
macro_rules! binding_columns {
    () => {
        "aor, contact_uri, expires_at_ms, q, call_id, cseq, source, user_agent, updated_at_ms"
    };
}

/// Highest q first, then the most recently refreshed; the contact URI keeps it deterministic.
macro_rules! binding_order {
    () => {
        "q DESC, updated_at_ms DESC, contact_uri"
    };
}

fn binding_from_row(row: &AnyRow) -> Result<Binding, sqlx::Error> {
    Ok(Binding {
        aor: row.try_get("aor")?,
        contact_uri: row.try_get("contact_uri")?,
        expires_at_ms: row.try_get("expires_at_ms")?,
        q: row.try_get("q")?,
        call_id: row.try_get("call_id")?,
        cseq: row.try_get("cseq")?,
        source: row.try_get("source")?,
        user_agent: row.try_get("user_agent")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
    })
}

impl Storage {
    /// Inserts the binding, or replaces every field of the existing `(aor, contact_uri)` row.
    pub async fn upsert_binding(&self, b: &Binding) -> Result<(), StorageError> {
        const OP: &str = "upsert_binding";
        if b.aor.is_empty() || b.contact_uri.is_empty() {
            return Err(StorageError::Invalid {
                op: OP,
                reason: "aor and contact_uri must not be empty".into(),
            });
        }
        sqlx::query(concat!(
            "INSERT INTO registrations (",
            binding_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (aor, contact_uri) DO UPDATE SET \
             expires_at_ms = excluded.expires_at_ms, q = excluded.q, \
             call_id = excluded.call_id, cseq = excluded.cseq, source = excluded.source, \
             user_agent = excluded.user_agent, updated_at_ms = excluded.updated_at_ms"
        ))
        .bind(&b.aor)
        .bind(&b.contact_uri)
        .bind(b.expires_at_ms)
        .bind(b.q)
        .bind(&b.call_id)
        .bind(b.cseq)
        .bind(&b.source)
        .bind(b.user_agent.as_deref())
        .bind(b.updated_at_ms)
        .execute(self.pool())
        .await
        .map_err(StorageError::at(OP))?;
        Ok(())
    }

    /// Removes one binding; `false` when there was none.
    pub async fn remove_binding(&self, aor: &str, contact_uri: &str) -> Result<bool, StorageError> {
        let done = sqlx::query("DELETE FROM registrations WHERE aor = $1 AND contact_uri = $2")
            .bind(aor)
            .bind(contact_uri)
            .execute(self.pool())
            .await
            .map_err(StorageError::at("remove_binding"))?;
        Ok(done.rows_affected() > 0)
    }

    /// Removes every binding of `aor` (`Contact: *`); returns how many there were.
    pub async fn remove_all_bindings(&self, aor: &str) -> Result<u64, StorageError> {
        let done = sqlx::query("DELETE FROM registrations WHERE aor = $1")
            .bind(aor)
            .execute(self.pool())
            .await
            .map_err(StorageError::at("remove_all_bindings"))?;
        Ok(done.rows_affected())
    }

    /// The unexpired bindings of `aor` at `now_ms`, highest q first, then most recent.
    pub async fn bindings(&self, aor: &str, now_ms: i64) -> Result<Vec<Binding>, StorageError> {
        const OP: &str = "bindings";
        let rows = sqlx::query(concat!(
            "SELECT ",
            binding_columns!(),
            " FROM registrations WHERE aor = $1 AND expires_at_ms > $2 ORDER BY ",
            binding_order!()
        ))
        .bind(aor)
        .bind(now_ms)
        .fetch_all(self.pool())
        .await
        .map_err(StorageError::at(OP))?;
        rows.iter()
            .map(binding_from_row)
            .collect::<Result<_, _>>()
            .map_err(StorageError::at(OP))
    }

    /// Every unexpired binding at `now_ms`, grouped by AOR, each group ordered as [`Self::bindings`].
    pub async fn all_bindings(&self, now_ms: i64) -> Result<Vec<Binding>, StorageError> {
        const OP: &str = "all_bindings";
        let rows = sqlx::query(concat!(
            "SELECT ",
            binding_columns!(),
            " FROM registrations WHERE expires_at_ms > $1 ORDER BY aor, ",
            binding_order!()
        ))
        .bind(now_ms)
        .fetch_all(self.pool())
        .await
        .map_err(StorageError::at(OP))?;
        rows.iter()
            .map(binding_from_row)
            .collect::<Result<_, _>>()
            .map_err(StorageError::at(OP))
    }

    /// Deletes the bindings expired at `now_ms`; returns how many.
    pub async fn purge_expired(&self, now_ms: i64) -> Result<u64, StorageError> {
        let done = sqlx::query("DELETE FROM registrations WHERE expires_at_ms <= $1")
            .bind(now_ms)
            .execute(self.pool())
            .await
            .map_err(StorageError::at("purge_expired"))?;
        Ok(done.rows_affected())
    }
}
