//! Ticket attachments (metadata rows; the bytes are files under the data directory, written by
//! the actors) and the SLA sweeper's breach marks.
//!
//! A breach mark is set once per timer with a conditional update (`… IS NULL`), so of several
//! sweepers (or one sweeper racing itself after a restart) exactly one announces a breach.

use crate::crm_tickets::{ticket_row, TICKET_COLUMNS};
use crate::{Storage, StorageError, Ticket};
use sqlx::any::AnyRow;
use sqlx::Row;

/// One attachment of a ticket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TicketAttachment {
    /// Random id (hex).
    pub id: String,
    /// The ticket.
    pub ticket_id: i64,
    /// The name the uploader gave (sanitised).
    pub file_name: String,
    /// Its MIME type.
    pub mime_type: String,
    /// Its size.
    pub size_bytes: i64,
    /// The file, relative to the data directory.
    pub path: String,
    /// Who uploaded it (the API token's name or the `by` parameter), if known.
    pub uploaded_by: Option<String>,
    /// When (epoch ms).
    pub created_at_ms: i64,
}

/// Which SLA timer a breach mark is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlaTimer {
    /// Time to the first public response.
    FirstResponse,
    /// Time to solved.
    Resolution,
}

impl SlaTimer {
    /// `first_response` or `resolution` (the name events and templates use).
    pub fn name(self) -> &'static str {
        match self {
            SlaTimer::FirstResponse => "first_response",
            SlaTimer::Resolution => "resolution",
        }
    }
}

fn attachment_row(r: &AnyRow) -> Result<TicketAttachment, sqlx::Error> {
    Ok(TicketAttachment {
        id: r.try_get("id")?,
        ticket_id: r.try_get("ticket_id")?,
        file_name: r.try_get("file_name")?,
        mime_type: r.try_get("mime_type")?,
        size_bytes: r.try_get("size_bytes")?,
        path: r.try_get("path")?,
        uploaded_by: r.try_get("uploaded_by")?,
        created_at_ms: r.try_get("created_at_ms")?,
    })
}

const ATTACHMENT_COLUMNS: &str =
    "id, ticket_id, file_name, mime_type, size_bytes, path, uploaded_by, created_at_ms";

impl Storage {
    /// Stores an attachment's metadata and touches the ticket's `updated_at_ms`, in one
    /// transaction. Returns false (nothing written) when the ticket does not exist.
    pub async fn add_ticket_attachment(&self, a: &TicketAttachment) -> Result<bool, StorageError> {
        const OP: &str = "add_ticket_attachment";
        let mut tx = self.pool().begin().await.map_err(StorageError::at(OP))?;
        let touched = sqlx::query("UPDATE crm_tickets SET updated_at_ms = $2 WHERE id = $1")
            .bind(a.ticket_id)
            .bind(a.created_at_ms)
            .execute(&mut *tx)
            .await
            .map_err(StorageError::at(OP))?;
        if touched.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO crm_ticket_attachments (id, ticket_id, file_name, mime_type, \
             size_bytes, path, uploaded_by, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&a.id)
        .bind(a.ticket_id)
        .bind(&a.file_name)
        .bind(&a.mime_type)
        .bind(a.size_bytes)
        .bind(&a.path)
        .bind(&a.uploaded_by)
        .bind(a.created_at_ms)
        .execute(&mut *tx)
        .await
        .map_err(StorageError::at(OP))?;
        tx.commit().await.map_err(StorageError::at(OP))?;
        Ok(true)
    }

    /// One attachment of `ticket_id`.
    pub async fn ticket_attachment(
        &self,
        ticket_id: i64,
        id: &str,
    ) -> Result<Option<TicketAttachment>, StorageError> {
        const OP: &str = "ticket_attachment";
        let sql = format!(
            "SELECT {ATTACHMENT_COLUMNS} FROM crm_ticket_attachments \
             WHERE id = $1 AND ticket_id = $2"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(ticket_id)
            .fetch_optional(self.pool())
            .await
            .map_err(StorageError::at(OP))?;
        row.as_ref()
            .map(attachment_row)
            .transpose()
            .map_err(StorageError::at(OP))
    }

    /// A ticket's attachments, oldest first.
    pub async fn ticket_attachments(
        &self,
        ticket_id: i64,
    ) -> Result<Vec<TicketAttachment>, StorageError> {
        const OP: &str = "ticket_attachments";
        let sql = format!(
            "SELECT {ATTACHMENT_COLUMNS} FROM crm_ticket_attachments \
             WHERE ticket_id = $1 ORDER BY created_at_ms, id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(ticket_id)
            .fetch_all(self.pool())
            .await
            .map_err(StorageError::at(OP))?;
        rows.iter()
            .map(attachment_row)
            .collect::<Result<_, _>>()
            .map_err(StorageError::at(OP))
    }

    /// Deletes an attachment's row; returns it (the caller removes the file), or `None` when
    /// there was no such attachment on that ticket.
    pub async fn delete_ticket_attachment(
        &self,
        ticket_id: i64,
        id: &str,
    ) -> Result<Option<TicketAttachment>, StorageError> {
        const OP: &str = "delete_ticket_attachment";
        let sql = format!(
            "DELETE FROM crm_ticket_attachments WHERE id = $1 AND ticket_id = $2 \
             RETURNING {ATTACHMENT_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(ticket_id)
            .fetch_optional(self.pool())
            .await
            .map_err(StorageError::at(OP))?;
        row.as_ref()
            .map(attachment_row)
            .transpose()
            .map_err(StorageError::at(OP))
    }

    /// Tickets that may still breach a timer: not closed, and with a timer neither met nor
    /// already announced. Oldest first, at most `limit`, after id `after` (paging).
    pub async fn tickets_for_sla_sweep(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<Ticket>, StorageError> {
        const OP: &str = "tickets_for_sla_sweep";
        let sql = format!(
            "SELECT {TICKET_COLUMNS} FROM crm_tickets WHERE id > $1 AND status <> 'closed' \
             AND ((first_response_at_ms IS NULL AND breach_first_response_at_ms IS NULL) \
             OR (solved_at_ms IS NULL AND breach_resolution_at_ms IS NULL)) \
             ORDER BY id LIMIT $2"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(after)
            .bind(limit)
            .fetch_all(self.pool())
            .await
            .map_err(StorageError::at(OP))?;
        rows.iter()
            .map(ticket_row)
            .collect::<Result<_, _>>()
            .map_err(StorageError::at(OP))
    }

    /// Marks `timer` of ticket `id` breached at `now_ms` unless it is marked already. Returns
    /// true for the one caller that set the mark.
    pub async fn mark_sla_breach(
        &self,
        id: i64,
        timer: SlaTimer,
        now_ms: i64,
    ) -> Result<bool, StorageError> {
        const OP: &str = "mark_sla_breach";
        let sql = match timer {
            SlaTimer::FirstResponse => {
                "UPDATE crm_tickets SET breach_first_response_at_ms = $2 \
                 WHERE id = $1 AND breach_first_response_at_ms IS NULL"
            }
            SlaTimer::Resolution => {
                "UPDATE crm_tickets SET breach_resolution_at_ms = $2 \
                 WHERE id = $1 AND breach_resolution_at_ms IS NULL"
            }
        };
        let r = sqlx::query(sql)
            .bind(id)
            .bind(now_ms)
            .execute(self.pool())
            .await
            .map_err(StorageError::at(OP))?;
        Ok(r.rows_affected() > 0)
    }
}
