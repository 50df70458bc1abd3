//! Contact centre persistence: configuration rows (queues, agents, workflow versions) and the
//! append-only journal of routing facts ([`ContactEvent`]).
//!
//! This module stores what it is given: configuration and event bodies are JSON text that the
//! contact-centre actors produce and validate. Writes go through [`Storage::apply_contact_writes`]
//! in batches (one transaction per batch), like CDRs.

use crate::{Storage, StorageError};
use sqlx::any::AnyRow;
use sqlx::Row;

/// A configured queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContactQueueRow {
    /// The queue id the router uses.
    pub id: i64,
    /// Its unique name.
    pub name: String,
    /// Its settings (JSON).
    pub config: String,
    /// Last change (epoch ms).
    pub updated_at_ms: i64,
}

/// A configured agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContactAgentRow {
    /// The agent id the router uses.
    pub id: i64,
    /// Its unique name.
    pub name: String,
    /// The registered SIP user its voice offers ring.
    pub sip_user: Option<String>,
    /// Skills, capacity, queues… (JSON).
    pub config: String,
    /// Last change (epoch ms).
    pub updated_at_ms: i64,
}

/// One immutable journal entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContactEvent {
    /// Assigned by the database on insert (ignored when writing).
    pub seq: i64,
    /// When it happened (router clock, ms).
    pub at_ms: i64,
    /// `interaction` (a new interaction), `routing` (a routing event) or `queue` (a queue event).
    pub stream: String,
    /// The queue it concerns, if one.
    pub queue_id: Option<i64>,
    /// The interaction it concerns, if one.
    pub interaction_id: Option<i64>,
    /// The fact (JSON).
    pub body: String,
}

/// One change for [`Storage::apply_contact_writes`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContactWrite {
    /// Creates or replaces a queue row (by id).
    PutQueue(ContactQueueRow),
    /// Deletes a queue row.
    DeleteQueue(i64),
    /// Creates or replaces an agent row (by id).
    PutAgent(ContactAgentRow),
    /// Deletes an agent row.
    DeleteAgent(i64),
    /// Stores a new workflow version (the newest is current).
    PutWorkflow {
        /// The workflow (JSON).
        spec: String,
        /// When (epoch ms).
        at_ms: i64,
    },
    /// Appends a journal entry.
    Event(ContactEvent),
}

fn queue_row(r: &AnyRow) -> Result<ContactQueueRow, sqlx::Error> {
    Ok(ContactQueueRow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        config: r.try_get("config")?,
        updated_at_ms: r.try_get("updated_at_ms")?,
    })
}

fn agent_row(r: &AnyRow) -> Result<ContactAgentRow, sqlx::Error> {
    Ok(ContactAgentRow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        sip_user: r.try_get("sip_user")?,
        config: r.try_get("config")?,
        updated_at_ms: r.try_get("updated_at_ms")?,
    })
}

fn event_row(r: &AnyRow) -> Result<ContactEvent, sqlx::Error> {
    Ok(ContactEvent {
        seq: r.try_get("seq")?,
        at_ms: r.try_get("at_ms")?,
        stream: r.try_get("stream")?,
        queue_id: r.try_get("queue_id")?,
        interaction_id: r.try_get("interaction_id")?,
        body: r.try_get("body")?,
    })
}

impl Storage {
    /// Applies `writes` in order in one transaction and returns how many were applied.
    pub async fn apply_contact_writes(
        &self,
        writes: &[ContactWrite],
    ) -> Result<usize, StorageError> {
        const OP: &str = "apply_contact_writes";
        let mut tx = self.pool().begin().await.map_err(StorageError::at(OP))?;
        for w in writes {
            let q = match w {
                ContactWrite::PutQueue(r) => sqlx::query(
                    "INSERT INTO contact_queues (id, name, config, updated_at_ms) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO UPDATE SET \
                     name = excluded.name, config = excluded.config, \
                     updated_at_ms = excluded.updated_at_ms",
                )
                .bind(r.id)
                .bind(&r.name)
                .bind(&r.config)
                .bind(r.updated_at_ms),
                ContactWrite::DeleteQueue(id) => {
                    sqlx::query("DELETE FROM contact_queues WHERE id = $1").bind(*id)
                }
                ContactWrite::PutAgent(r) => sqlx::query(
                    "INSERT INTO contact_agents (id, name, sip_user, config, updated_at_ms) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO UPDATE SET \
                     name = excluded.name, sip_user = excluded.sip_user, \
                     config = excluded.config, updated_at_ms = excluded.updated_at_ms",
                )
                .bind(r.id)
                .bind(&r.name)
                .bind(&r.sip_user)
                .bind(&r.config)
                .bind(r.updated_at_ms),
                ContactWrite::DeleteAgent(id) => {
                    sqlx::query("DELETE FROM contact_agents WHERE id = $1").bind(*id)
                }
                ContactWrite::PutWorkflow { spec, at_ms } => sqlx::query(
                    "INSERT INTO contact_workflows (spec, created_at_ms) VALUES ($1, $2)",
                )
                .bind(spec)
                .bind(*at_ms),
                ContactWrite::Event(e) => sqlx::query(
                    "INSERT INTO contact_events (at_ms, stream, queue_id, interaction_id, body) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(e.at_ms)
                .bind(&e.stream)
                .bind(e.queue_id)
                .bind(e.interaction_id)
                .bind(&e.body),
            };
            q.execute(&mut *tx).await.map_err(StorageError::at(OP))?;
        }
        tx.commit().await.map_err(StorageError::at(OP))?;
        Ok(writes.len())
    }

    /// Every configured queue, by id.
    pub async fn contact_queues(&self) -> Result<Vec<ContactQueueRow>, StorageError> {
        const OP: &str = "contact_queues";
        let rows =
            sqlx::query("SELECT id, name, config, updated_at_ms FROM contact_queues ORDER BY id")
                .fetch_all(self.pool())
                .await
                .map_err(StorageError::at(OP))?;
        rows.iter()
            .map(queue_row)
            .collect::<Result<_, _>>()
            .map_err(StorageError::at(OP))
    }

    /// Every configured agent, by id.
    pub async fn contact_agents(&self) -> Result<Vec<ContactAgentRow>, StorageError> {
        const OP: &str = "contact_agents";
        let rows = sqlx::query(
            "SELECT id, name, sip_user, config, updated_at_ms FROM contact_agents ORDER BY id",
        )
        .fetch_all(self.pool())
        .await
        .map_err(StorageError::at(OP))?;
        rows.iter()
            .map(agent_row)
            .collect::<Result<_, _>>()
            .map_err(StorageError::at(OP))
    }

    /// The newest workflow version (JSON), if any was stored.
    pub async fn contact_workflow(&self) -> Result<Option<String>, StorageError> {
        const OP: &str = "contact_workflow";
        let row = sqlx::query("SELECT spec FROM contact_workflows ORDER BY version DESC LIMIT 1")
            .fetch_optional(self.pool())
            .await
            .map_err(StorageError::at(OP))?;
        row.map(|r| r.try_get("spec"))
            .transpose()
            .map_err(StorageError::at(OP))
    }

    /// Journal entries in append order, of one stream (`None`: all), with `at_ms < before_ms`
    /// when given.
    pub async fn contact_events(
        &self,
        stream: Option<&str>,
        before_ms: Option<i64>,
    ) -> Result<Vec<ContactEvent>, StorageError> {
        const OP: &str = "contact_events";
        let rows = sqlx::query(
            "SELECT seq, at_ms, stream, queue_id, interaction_id, body FROM contact_events \
             WHERE ($1 = '' OR stream = $1) AND at_ms < $2 ORDER BY seq",
        )
        .bind(stream.unwrap_or(""))
        .bind(before_ms.unwrap_or(i64::MAX))
        .fetch_all(self.pool())
        .await
        .map_err(StorageError::at(OP))?;
        rows.iter()
            .map(event_row)
            .collect::<Result<_, _>>()
            .map_err(StorageError::at(OP))
    }

    /// The largest interaction id in the journal (0 when empty), so that new ids never reuse one.
    pub async fn max_contact_interaction_id(&self) -> Result<i64, StorageError> {
        const OP: &str = "max_contact_interaction_id";
        let row = sqlx::query("SELECT COALESCE(MAX(interaction_id), 0) AS m FROM contact_events")
            .fetch_one(self.pool())
            .await
            .map_err(StorageError::at(OP))?;
        row.try_get::<i64, _>("m").map_err(StorageError::at(OP))
    }
}
