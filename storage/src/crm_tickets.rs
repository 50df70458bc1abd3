//! CRM tickets: ticket types (custom field definitions as JSON), groups (business hours and SLA
//! targets as JSON), tickets with their SLA bookkeeping, and notes.
//!
//! The rules (status flow, field validation, SLA arithmetic) live in the actors' CRM module;
//! this module stores rows. A ticket update is optimistic: it applies only when the stored
//! status is still the one the caller read, so two concurrent transitions cannot both win.

use crate::{Storage, StorageError};
use sqlx::any::AnyRow;
use sqlx::Row;

/// A named JSON configuration row (ticket type or group).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedConfig {
    /// Its unique name.
    pub name: String,
    /// Its definition (JSON).
    pub config: String,
    /// Last change (epoch ms).
    pub updated_at_ms: i64,
}

/// One ticket row.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ticket {
    /// Its id (ignored on insert).
    pub id: i64,
    /// The contact it belongs to.
    pub contact_id: i64,
    /// The interaction it was created from, if any.
    pub interaction_id: Option<i64>,
    /// Its ticket type, if any.
    pub ticket_type: Option<String>,
    /// Subject line.
    pub subject: String,
    /// Description.
    pub description: String,
    /// Custom field values (a JSON object).
    pub fields: String,
    /// `new`, `open`, `pending`, `solved` or `closed`.
    pub status: String,
    /// Department / group.
    pub group_name: Option<String>,
    /// Assigned agent.
    pub assignee: Option<String>,
    /// Created (epoch ms).
    pub created_at_ms: i64,
    /// Last change (epoch ms).
    pub updated_at_ms: i64,
    /// First agent response (epoch ms).
    pub first_response_at_ms: Option<i64>,
    /// Solved (epoch ms); cleared when reopened.
    pub solved_at_ms: Option<i64>,
    /// Set while pending: when the SLA clock stopped.
    pub paused_since_ms: Option<i64>,
    /// Business time spent pending so far (ms), added to every SLA target.
    pub paused_business_ms: i64,
    /// Customer satisfaction 1–5.
    pub csat: Option<i64>,
    /// When it was given.
    pub csat_at_ms: Option<i64>,
    /// When the SLA sweeper announced a first-response breach (read only here: written by
    /// [`Storage::mark_sla_breach`], never by [`Storage::update_ticket`]).
    pub breach_first_response_at_ms: Option<i64>,
    /// When the SLA sweeper announced a resolution breach (likewise).
    pub breach_resolution_at_ms: Option<i64>,
}

/// One note on a ticket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TicketNote {
    /// Its id.
    pub id: i64,
    /// The ticket.
    pub ticket_id: i64,
    /// Who wrote it.
    pub author: String,
    /// The text.
    pub body: String,
    /// Internal (agents only) or public (a response to the customer).
    pub internal: bool,
    /// When (epoch ms).
    pub at_ms: i64,
}

pub(crate) const TICKET_COLUMNS: &str =
    "id, contact_id, interaction_id, ticket_type, subject, description, \
     fields, status, group_name, assignee, created_at_ms, updated_at_ms, first_response_at_ms, \
     solved_at_ms, paused_since_ms, paused_business_ms, csat, csat_at_ms, \
     breach_first_response_at_ms, breach_resolution_at_ms";

pub(crate) fn ticket_row(r: &AnyRow) -> Result<Ticket, sqlx::Error> {
    Ok(Ticket {
        id: r.try_get("id")?,
        contact_id: r.try_get("contact_id")?,
        interaction_id: r.try_get("interaction_id")?,
        ticket_type: r.try_get("ticket_type")?,
        subject: r.try_get("subject")?,
        description: r.try_get("description")?,
        fields: r.try_get("fields")?,
        status: r.try_get("status")?,
        group_name: r.try_get("group_name")?,
        assignee: r.try_get("assignee")?,
        created_at_ms: r.try_get("created_at_ms")?,
        updated_at_ms: r.try_get("updated_at_ms")?,
        first_response_at_ms: r.try_get("first_response_at_ms")?,
        solved_at_ms: r.try_get("solved_at_ms")?,
        paused_since_ms: r.try_get("paused_since_ms")?,
        paused_business_ms: r.try_get("paused_business_ms")?,
        csat: r.try_get("csat")?,
        csat_at_ms: r.try_get("csat_at_ms")?,
        breach_first_response_at_ms: r.try_get("breach_first_response_at_ms")?,
        breach_resolution_at_ms: r.try_get("breach_resolution_at_ms")?,
    })
}

fn note_row(r: &AnyRow) -> Result<TicketNote, sqlx::Error> {
    Ok(TicketNote {
        id: r.try_get("id")?,
        ticket_id: r.try_get("ticket_id")?,
        author: r.try_get("author")?,
        body: r.try_get("body")?,
        internal: r.try_get::<i64, _>("internal")? != 0,
        at_ms: r.try_get("at_ms")?,
    })
}

fn config_row(r: &AnyRow) -> Result<NamedConfig, sqlx::Error> {
    Ok(NamedConfig {
        name: r.try_get("name")?,
        config: r.try_get("config")?,
        updated_at_ms: r.try_get("updated_at_ms")?,
    })
}

/// Which configuration table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigKind {
    /// `crm_ticket_types` (column `fields`).
    TicketType,
    /// `crm_groups` (column `config`).
    Group,
}

impl ConfigKind {
    fn select_all(self) -> &'static str {
        match self {
            ConfigKind::TicketType => {
                "SELECT name, fields AS config, updated_at_ms FROM crm_ticket_types ORDER BY name"
            }
            ConfigKind::Group => "SELECT name, config, updated_at_ms FROM crm_groups ORDER BY name",
        }
    }
    fn select_one(self) -> &'static str {
        match self {
            ConfigKind::TicketType => {
                "SELECT name, fields AS config, updated_at_ms FROM crm_ticket_types WHERE name = $1"
            }
            ConfigKind::Group => {
                "SELECT name, config, updated_at_ms FROM crm_groups WHERE name = $1"
            }
        }
    }
    fn upsert(self) -> &'static str {
        match self {
            ConfigKind::TicketType => {
                "INSERT INTO crm_ticket_types (name, fields, updated_at_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET fields = excluded.fields, \
                 updated_at_ms = excluded.updated_at_ms"
            }
            ConfigKind::Group => {
                "INSERT INTO crm_groups (name, config, updated_at_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET config = excluded.config, \
                 updated_at_ms = excluded.updated_at_ms"
            }
        }
    }
}

impl Storage {
    /// Creates or replaces a ticket type or group.
    pub async fn put_crm_config(
        &self,
        kind: ConfigKind,
        name: &str,
        config: &str,
        now_ms: i64,
    ) -> Result<(), StorageError> {
        const OP: &str = "put_crm_config";
        sqlx::query(kind.upsert())
            .bind(name)
            .bind(config)
            .bind(now_ms)
            .execute(self.pool())
            .await
            .map_err(StorageError::at(OP))?;
        Ok(())
    }

    /// One ticket type or group.
    pub async fn crm_config(
        &self,
        kind: ConfigKind,
        name: &str,
    ) -> Result<Option<NamedConfig>, StorageError> {
        const OP: &str = "crm_config";
        let row = sqlx::query(kind.select_one())
            .bind(name)
            .fetch_optional(self.pool())
            .await
            .map_err(StorageError::at(OP))?;
        row.as_ref()
            .map(config_row)
            .transpose()
            .map_err(StorageError::at(OP))
    }

    /// Every ticket type or group, by name.
    pub async fn crm_configs(&self, kind: ConfigKind) -> Result<Vec<NamedConfig>, StorageError> {
        const OP: &str = "crm_configs";
        let rows = sqlx::query(kind.select_all())
            .fetch_all(self.pool())
            .await
            .map_err(StorageError::at(OP))?;
        rows.iter()
            .map(config_row)
            .collect::<Result<_, _>>()
            .map_err(StorageError::at(OP))
    }

    /// Inserts a ticket and indexes its subject, description and field values for search, in
    /// one transaction. Returns its id.
    pub async fn create_ticket(&self, t: &Ticket) -> Result<i64, StorageError> {
        const OP: &str = "create_ticket";
        let mut tx = self.pool().begin().await.map_err(StorageError::at(OP))?;
        let row = sqlx::query(
            "INSERT INTO crm_tickets (contact_id, interaction_id, ticket_type, subject, \
             description, fields, status, group_name, assignee, created_at_ms, updated_at_ms, \
             first_response_at_ms, solved_at_ms, paused_since_ms, paused_business_ms, csat, \
             csat_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
             $15, $16, $17) RETURNING id",
        )
        .bind(t.contact_id)
        .bind(t.interaction_id)
        .bind(&t.ticket_type)
        .bind(&t.subject)
        .bind(&t.description)
        .bind(&t.fields)
        .bind(&t.status)
        .bind(&t.group_name)
        .bind(&t.assignee)
        .bind(t.created_at_ms)
        .bind(t.updated_at_ms)
        .bind(t.first_response_at_ms)
        .bind(t.solved_at_ms)
        .bind(t.paused_since_ms)
        .bind(t.paused_business_ms)
        .bind(t.csat)
        .bind(t.csat_at_ms)
        .fetch_one(&mut *tx)
        .await
        .map_err(StorageError::at(OP))?;
        let id: i64 = row.try_get("id").map_err(StorageError::at(OP))?;
        let text = format!("{}\n{}\n{}", t.subject, t.description, t.fields);
        crate::crm_search::index(&mut tx, "ticket", id, &text)
            .await
            .map_err(StorageError::at(OP))?;
        tx.commit().await.map_err(StorageError::at(OP))?;
        Ok(id)
    }

    /// One ticket.
    pub async fn ticket(&self, id: i64) -> Result<Option<Ticket>, StorageError> {
        const OP: &str = "ticket";
        let sql = format!("SELECT {TICKET_COLUMNS} FROM crm_tickets WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(StorageError::at(OP))?;
        row.as_ref()
            .map(ticket_row)
            .transpose()
            .map_err(StorageError::at(OP))
    }

    /// A contact's tickets, oldest first.
    pub async fn tickets_of(&self, contact_id: i64) -> Result<Vec<Ticket>, StorageError> {
        const OP: &str = "tickets_of";
        let sql = format!(
            "SELECT {TICKET_COLUMNS} FROM crm_tickets WHERE contact_id = $1 ORDER BY created_at_ms, id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(contact_id)
            .fetch_all(self.pool())
            .await
            .map_err(StorageError::at(OP))?;
        rows.iter()
            .map(ticket_row)
            .collect::<Result<_, _>>()
            .map_err(StorageError::at(OP))
    }

    /// Tickets not closed (for SLA sweeps), oldest first, at most `limit`.
    pub async fn open_tickets(&self, limit: i64) -> Result<Vec<Ticket>, StorageError> {
        const OP: &str = "open_tickets";
        let sql = format!(
            "SELECT {TICKET_COLUMNS} FROM crm_tickets WHERE status <> 'closed' \
             ORDER BY created_at_ms, id LIMIT $1"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(limit)
            .fetch_all(self.pool())
            .await
            .map_err(StorageError::at(OP))?;
        rows.iter()
            .map(ticket_row)
            .collect::<Result<_, _>>()
            .map_err(StorageError::at(OP))
    }

    /// Stores every mutable column of `t` if the stored status is still `expected_status`.
    /// Returns false when it changed meanwhile (or the ticket is gone): nothing was written.
    pub async fn update_ticket(
        &self,
        t: &Ticket,
        expected_status: &str,
    ) -> Result<bool, StorageError> {
        const OP: &str = "update_ticket";
        let r = sqlx::query(
            "UPDATE crm_tickets SET ticket_type = $3, subject = $4, description = $5, \
             fields = $6, status = $7, group_name = $8, assignee = $9, updated_at_ms = $10, \
             first_response_at_ms = $11, solved_at_ms = $12, paused_since_ms = $13, \
             paused_business_ms = $14, csat = $15, csat_at_ms = $16 \
             WHERE id = $1 AND status = $2",
        )
        .bind(t.id)
        .bind(expected_status)
        .bind(&t.ticket_type)
        .bind(&t.subject)
        .bind(&t.description)
        .bind(&t.fields)
        .bind(&t.status)
        .bind(&t.group_name)
        .bind(&t.assignee)
        .bind(t.updated_at_ms)
        .bind(t.first_response_at_ms)
        .bind(t.solved_at_ms)
        .bind(t.paused_since_ms)
        .bind(t.paused_business_ms)
        .bind(t.csat)
        .bind(t.csat_at_ms)
        .execute(self.pool())
        .await
        .map_err(StorageError::at(OP))?;
        Ok(r.rows_affected() > 0)
    }

    /// Adds a note (indexed for search); a public note is the ticket's first response when it
    /// has none yet. Returns the note id, or `None` for no such ticket.
    pub async fn add_ticket_note(
        &self,
        ticket_id: i64,
        author: &str,
        body: &str,
        internal: bool,
        now_ms: i64,
    ) -> Result<Option<i64>, StorageError> {
        const OP: &str = "add_ticket_note";
        let mut tx = self.pool().begin().await.map_err(StorageError::at(OP))?;
        let touched = sqlx::query(
            "UPDATE crm_tickets SET updated_at_ms = $2, first_response_at_ms = \
             CASE WHEN $3 = 0 AND first_response_at_ms IS NULL THEN $2 \
             ELSE first_response_at_ms END WHERE id = $1",
        )
        .bind(ticket_id)
        .bind(now_ms)
        .bind(i64::from(internal))
        .execute(&mut *tx)
        .await
        .map_err(StorageError::at(OP))?;
        if touched.rows_affected() == 0 {
            return Ok(None);
        }
        let row = sqlx::query(
            "INSERT INTO crm_ticket_notes (ticket_id, author, body, internal, at_ms) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(ticket_id)
        .bind(author)
        .bind(body)
        .bind(i64::from(internal))
        .bind(now_ms)
        .fetch_one(&mut *tx)
        .await
        .map_err(StorageError::at(OP))?;
        let id: i64 = row.try_get("id").map_err(StorageError::at(OP))?;
        crate::crm_search::index(&mut tx, "ticket", ticket_id, body)
            .await
            .map_err(StorageError::at(OP))?;
        tx.commit().await.map_err(StorageError::at(OP))?;
        Ok(Some(id))
    }

    /// A ticket's notes, oldest first.
    pub async fn ticket_notes(&self, ticket_id: i64) -> Result<Vec<TicketNote>, StorageError> {
        const OP: &str = "ticket_notes";
        let rows = sqlx::query(
            "SELECT id, ticket_id, author, body, internal, at_ms FROM crm_ticket_notes \
             WHERE ticket_id = $1 ORDER BY id",
        )
        .bind(ticket_id)
        .fetch_all(self.pool())
        .await
        .map_err(StorageError::at(OP))?;
        rows.iter()
            .map(note_row)
            .collect::<Result<_, _>>()
            .map_err(StorageError::at(OP))
    }
}
