//! CRM interactions (what the CRM saw of a call, chat or API conversation), CSAT scores, and
//! search by time, channel, agent, tag and full text over interaction and ticket text.
//!
//! Full text is one index table, `crm_search (kind, ref_id, body)`: an FTS5 virtual table on
//! SQLite, a table with a generated `tsvector` column and a GIN index on PostgreSQL. Rows are
//! only ever added (every text appended to an interaction or ticket adds one), in the same
//! transaction as the text itself. The query text is matched as plain words, all required, on
//! both backends, so the API behaves the same on either.

use crate::{Backend, Storage, StorageError};
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

/// What the CRM keeps of one interaction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Interaction {
    /// Its id (ignored on insert).
    pub id: i64,
    /// The contact.
    pub contact_id: i64,
    /// `voice`, `chat`, `api` or `email`.
    pub channel: String,
    /// The Call-ID, chat id or external conversation id.
    pub source_ref: Option<String>,
    /// The agent who handled it.
    pub agent: Option<String>,
    /// The queue it went through.
    pub queue: Option<String>,
    /// Start (epoch ms).
    pub started_at_ms: i64,
    /// End (epoch ms).
    pub ended_at_ms: Option<i64>,
    /// Messages or transcript, newline-separated (searchable).
    pub text: String,
    /// Channel details (JSON object).
    pub details: String,
    /// Customer satisfaction 1–5.
    pub csat: Option<i64>,
    /// When it was given.
    pub csat_at_ms: Option<i64>,
}

/// Search filters; empty strings and `None` mean "any".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SearchQuery {
    /// Words that must all occur in the text.
    pub text: String,
    /// From (epoch ms, inclusive).
    pub from_ms: Option<i64>,
    /// To (epoch ms, exclusive).
    pub to_ms: Option<i64>,
    /// Channel of the interaction (of a ticket: of its interaction).
    pub channel: String,
    /// Agent (of a ticket: its assignee).
    pub agent: String,
    /// A tag of the contact.
    pub tag: String,
    /// At most this many, newest first.
    pub limit: i64,
}

/// One search result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchHit {
    /// `interaction` or `ticket`.
    pub kind: String,
    /// Its id.
    pub id: i64,
    /// Its contact.
    pub contact_id: i64,
    /// Start of the interaction, creation of the ticket (epoch ms).
    pub at_ms: i64,
    /// Channel (empty for a ticket without interaction).
    pub channel: String,
    /// Agent or assignee.
    pub agent: Option<String>,
    /// Interaction text or ticket subject.
    pub text: String,
}

/// One stored CSAT score with who and where, for reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsatScore {
    /// The interaction.
    pub interaction_id: i64,
    /// Its agent.
    pub agent: Option<String>,
    /// Its queue.
    pub queue: Option<String>,
    /// 1–5.
    pub score: i64,
    /// When it was given (epoch ms).
    pub at_ms: i64,
}

const INTERACTION_COLUMNS: &str = "id, contact_id, channel, source_ref, agent, queue, \
     started_at_ms, ended_at_ms, text, details, csat, csat_at_ms";

fn interaction_row(r: &AnyRow) -> Result<Interaction, sqlx::Error> {
    Ok(Interaction {
        id: r.try_get("id")?,
        contact_id: r.try_get("contact_id")?,
        channel: r.try_get("channel")?,
        source_ref: r.try_get("source_ref")?,
        agent: r.try_get("agent")?,
        queue: r.try_get("queue")?,
        started_at_ms: r.try_get("started_at_ms")?,
        ended_at_ms: r.try_get("ended_at_ms")?,
        text: r.try_get("text")?,
        details: r.try_get("details")?,
        csat: r.try_get("csat")?,
        csat_at_ms: r.try_get("csat_at_ms")?,
    })
}

/// Adds `text` to the full-text index for `(kind, ref_id)`; blank text adds nothing.
pub(crate) async fn index(
    conn: &mut sqlx::AnyConnection,
    kind: &str,
    ref_id: i64,
    text: &str,
) -> Result<(), sqlx::Error> {
    if text.trim().is_empty() {
        return Ok(());
    }
    sqlx::query("INSERT INTO crm_search (kind, ref_id, body) VALUES ($1, $2, $3)")
        .bind(kind)
        .bind(ref_id)
        .bind(text)
        .execute(conn)
        .await?;
    Ok(())
}

/// The words of a query (letters and digits), as an FTS5 query requiring each one.
fn fts5_query(text: &str) -> String {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| format!("\"{w}\""))
        .collect::<Vec<_>>()
        .join(" ")
}

impl Storage {
    /// Stores an interaction and indexes its text, in one transaction. Returns its id.
    pub async fn record_interaction(&self, i: &Interaction) -> Result<i64, StorageError> {
        const OP: &str = "record_interaction";
        let mut tx = self.pool().begin().await.map_err(StorageError::at(OP))?;
        let row = sqlx::query(
            "INSERT INTO crm_interactions (contact_id, channel, source_ref, agent, queue, \
             started_at_ms, ended_at_ms, text, details, csat, csat_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
        )
        .bind(i.contact_id)
        .bind(&i.channel)
        .bind(&i.source_ref)
        .bind(&i.agent)
        .bind(&i.queue)
        .bind(i.started_at_ms)
        .bind(i.ended_at_ms)
        .bind(&i.text)
        .bind(&i.details)
        .bind(i.csat)
        .bind(i.csat_at_ms)
        .fetch_one(&mut *tx)
        .await
        .map_err(StorageError::at(OP))?;
        let id: i64 = row.try_get("id").map_err(StorageError::at(OP))?;
        index(&mut tx, "interaction", id, &i.text)
            .await
            .map_err(StorageError::at(OP))?;
        tx.commit().await.map_err(StorageError::at(OP))?;
        Ok(id)
    }

    /// Appends a line (a message, a transcript segment) to an interaction's text and indexes
    /// it. Returns false for no such interaction.
    pub async fn append_interaction_text(&self, id: i64, line: &str) -> Result<bool, StorageError> {
        const OP: &str = "append_interaction_text";
        let mut tx = self.pool().begin().await.map_err(StorageError::at(OP))?;
        let r = sqlx::query(
            "UPDATE crm_interactions SET text = CASE WHEN text = '' THEN $2 \
             ELSE text || $3 || $2 END WHERE id = $1",
        )
        .bind(id)
        .bind(line)
        .bind("\n")
        .execute(&mut *tx)
        .await
        .map_err(StorageError::at(OP))?;
        if r.rows_affected() == 0 {
            return Ok(false);
        }
        index(&mut tx, "interaction", id, line)
            .await
            .map_err(StorageError::at(OP))?;
        tx.commit().await.map_err(StorageError::at(OP))?;
        Ok(true)
    }

    /// One interaction.
    pub async fn crm_interaction(&self, id: i64) -> Result<Option<Interaction>, StorageError> {
        const OP: &str = "crm_interaction";
        let sql = format!("SELECT {INTERACTION_COLUMNS} FROM crm_interactions WHERE id = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(StorageError::at(OP))?;
        row.as_ref()
            .map(interaction_row)
            .transpose()
            .map_err(StorageError::at(OP))
    }

    /// The newest interaction with this source reference (Call-ID, chat id).
    pub async fn crm_interaction_by_source(
        &self,
        source_ref: &str,
    ) -> Result<Option<Interaction>, StorageError> {
        const OP: &str = "crm_interaction_by_source";
        let sql = format!(
            "SELECT {INTERACTION_COLUMNS} FROM crm_interactions WHERE source_ref = $1 \
             ORDER BY id DESC LIMIT 1"
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(source_ref)
            .fetch_optional(self.pool())
            .await
            .map_err(StorageError::at(OP))?;
        row.as_ref()
            .map(interaction_row)
            .transpose()
            .map_err(StorageError::at(OP))
    }

    /// A contact's interactions, oldest first (the newest `limit` when given).
    pub async fn crm_interactions_of(
        &self,
        contact_id: i64,
        limit: Option<i64>,
    ) -> Result<Vec<Interaction>, StorageError> {
        const OP: &str = "crm_interactions_of";
        let sql = format!(
            "SELECT {INTERACTION_COLUMNS} FROM crm_interactions WHERE contact_id = $1 \
             ORDER BY started_at_ms DESC, id DESC LIMIT $2"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(contact_id)
            .bind(limit.unwrap_or(i64::MAX))
            .fetch_all(self.pool())
            .await
            .map_err(StorageError::at(OP))?;
        let mut v = rows
            .iter()
            .map(interaction_row)
            .collect::<Result<Vec<_>, _>>()
            .map_err(StorageError::at(OP))?;
        v.reverse();
        Ok(v)
    }

    /// Sets agent, queue and end of an interaction (each when given). False: no such one.
    pub async fn finish_interaction(
        &self,
        id: i64,
        agent: Option<&str>,
        queue: Option<&str>,
        ended_at_ms: Option<i64>,
    ) -> Result<bool, StorageError> {
        const OP: &str = "finish_interaction";
        let r = sqlx::query(
            "UPDATE crm_interactions SET agent = COALESCE($2, agent), \
             queue = COALESCE($3, queue), ended_at_ms = COALESCE($4, ended_at_ms) WHERE id = $1",
        )
        .bind(id)
        .bind(agent)
        .bind(queue)
        .bind(ended_at_ms)
        .execute(self.pool())
        .await
        .map_err(StorageError::at(OP))?;
        Ok(r.rows_affected() > 0)
    }

    /// Sets the end and the channel details (a JSON object) of an interaction recorded
    /// while it was live (a queue call's screen pop or survey). False: no such one.
    pub async fn complete_interaction(
        &self,
        id: i64,
        ended_at_ms: i64,
        details: &str,
    ) -> Result<bool, StorageError> {
        const OP: &str = "complete_interaction";
        let r =
            sqlx::query("UPDATE crm_interactions SET ended_at_ms = $2, details = $3 WHERE id = $1")
                .bind(id)
                .bind(ended_at_ms)
                .bind(details)
                .execute(self.pool())
                .await
                .map_err(StorageError::at(OP))?;
        Ok(r.rows_affected() > 0)
    }

    /// Stores a CSAT score on an interaction and on every ticket created from it, in one
    /// transaction. Returns the ticket ids, or `None` for no such interaction.
    pub async fn set_csat(
        &self,
        interaction_id: i64,
        score: i64,
        now_ms: i64,
    ) -> Result<Option<Vec<i64>>, StorageError> {
        const OP: &str = "set_csat";
        let mut tx = self.pool().begin().await.map_err(StorageError::at(OP))?;
        let r = sqlx::query("UPDATE crm_interactions SET csat = $2, csat_at_ms = $3 WHERE id = $1")
            .bind(interaction_id)
            .bind(score)
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(StorageError::at(OP))?;
        if r.rows_affected() == 0 {
            return Ok(None);
        }
        sqlx::query("UPDATE crm_tickets SET csat = $2, csat_at_ms = $3 WHERE interaction_id = $1")
            .bind(interaction_id)
            .bind(score)
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(StorageError::at(OP))?;
        let rows = sqlx::query("SELECT id FROM crm_tickets WHERE interaction_id = $1 ORDER BY id")
            .bind(interaction_id)
            .fetch_all(&mut *tx)
            .await
            .map_err(StorageError::at(OP))?;
        let ids = rows
            .iter()
            .map(|r| r.try_get("id"))
            .collect::<Result<Vec<i64>, _>>()
            .map_err(StorageError::at(OP))?;
        tx.commit().await.map_err(StorageError::at(OP))?;
        Ok(Some(ids))
    }

    /// CSAT scores given in `[from_ms, to_ms)`, oldest first.
    pub async fn csat_scores(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<CsatScore>, StorageError> {
        const OP: &str = "csat_scores";
        let rows = sqlx::query(
            "SELECT id, agent, queue, csat, csat_at_ms FROM crm_interactions \
             WHERE csat IS NOT NULL AND csat_at_ms >= $1 AND csat_at_ms < $2 ORDER BY csat_at_ms",
        )
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(self.pool())
        .await
        .map_err(StorageError::at(OP))?;
        rows.iter()
            .map(|r| {
                Ok(CsatScore {
                    interaction_id: r.try_get("id")?,
                    agent: r.try_get("agent")?,
                    queue: r.try_get("queue")?,
                    score: r.try_get("csat")?,
                    at_ms: r.try_get("csat_at_ms")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StorageError::at(OP))
    }

    /// Interactions and tickets matching every filter, newest first.
    pub async fn search(&self, q: &SearchQuery) -> Result<Vec<SearchHit>, StorageError> {
        const OP: &str = "search";
        let (text, matches) = match self.backend() {
            Backend::Sqlite => {
                let t = fts5_query(&q.text);
                if t.is_empty() && !q.text.trim().is_empty() {
                    return Ok(Vec::new());
                }
                (
                    t,
                    "SELECT CAST(ref_id AS INTEGER) FROM crm_search WHERE crm_search MATCH $1 AND kind = ",
                )
            }
            Backend::Postgres => (
                q.text.trim().to_string(),
                "SELECT ref_id FROM crm_search WHERE tsv @@ plainto_tsquery('simple', $1) AND kind = ",
            ),
        };
        let words = |kind: &str| {
            if text.is_empty() {
                "$1 = ''".to_string()
            } else {
                format!("x.id IN ({matches}'{kind}')")
            }
        };
        let (wi, wt) = (words("interaction"), words("ticket"));
        let tag = "($6 = '' OR EXISTS (SELECT 1 FROM crm_tags g WHERE g.contact_id = x.contact_id AND g.tag = $6))";
        let sql = format!(
            "SELECT * FROM ( \
             SELECT 'interaction' AS kind, x.id AS id, x.contact_id AS contact_id, \
             x.started_at_ms AS at_ms, x.channel AS channel, x.agent AS agent, x.text AS text \
             FROM crm_interactions x WHERE x.started_at_ms >= $2 AND x.started_at_ms < $3 \
             AND ($4 = '' OR x.channel = $4) AND ($5 = '' OR x.agent = $5) AND {tag} \
             AND {wi} \
             UNION ALL \
             SELECT 'ticket' AS kind, x.id AS id, x.contact_id AS contact_id, \
             x.created_at_ms AS at_ms, COALESCE(i.channel, '') AS channel, x.assignee AS agent, \
             x.subject AS text \
             FROM crm_tickets x LEFT JOIN crm_interactions i ON i.id = x.interaction_id \
             WHERE x.created_at_ms >= $2 AND x.created_at_ms < $3 \
             AND ($4 = '' OR i.channel = $4) AND ($5 = '' OR x.assignee = $5) AND {tag} \
             AND {wt} \
             ) hits ORDER BY at_ms DESC, kind, id DESC LIMIT $7"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(text)
            .bind(q.from_ms.unwrap_or(i64::MIN))
            .bind(q.to_ms.unwrap_or(i64::MAX))
            .bind(&q.channel)
            .bind(&q.agent)
            .bind(&q.tag)
            .bind(q.limit.clamp(1, 1000))
            .fetch_all(self.pool())
            .await
            .map_err(StorageError::at(OP))?;
        rows.iter()
            .map(|r| {
                Ok(SearchHit {
                    kind: r.try_get("kind")?,
                    id: r.try_get("id")?,
                    contact_id: r.try_get("contact_id")?,
                    at_ms: r.try_get("at_ms")?,
                    channel: r.try_get("channel")?,
                    agent: r.try_get("agent")?,
                    text: r.try_get("text")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StorageError::at(OP))
    }
}

#[cfg(test)]
mod tests {
    use super::fts5_query;

    #[test]
    fn fts5_query_keeps_only_words() {
        assert_eq!(
            fts5_query("refund \"order\" 42!"),
            "\"refund\" \"order\" \"42\""
        );
        assert_eq!(fts5_query("  *:() "), "");
    }
}
