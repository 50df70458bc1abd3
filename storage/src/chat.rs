//! Web chat and API-channel persistence: conversations ([`ChatRow`]), their messages numbered
//! per chat ([`ChatMessageRow`]) and attachment metadata ([`ChatAttachmentRow`]; the bytes are
//! files under the data directory, written by the actors).
//!
//! Live changes go through [`Storage::apply_chat_writes`] in batches (one transaction per
//! batch, in order), so a chat's messages are stored in `seq` order without a round trip per
//! message. Reads serve resumption after the session actor is gone, transcripts and CSAT.

use crate::{Storage, StorageError};
use sqlx::any::AnyRow;
use sqlx::Row;

/// One conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatRow {
    /// Random id (hex).
    pub id: String,
    /// `chat` (web widget) or `messaging` (API channel).
    pub channel: String,
    /// The API channel's name; empty for web chats.
    pub source: String,
    /// The widget's visitor id or the platform's user id.
    pub external_user_id: Option<String>,
    /// SHA-256 (hex) of the resume token.
    pub token_hash: String,
    /// The customer's name.
    pub name: String,
    /// The customer's e-mail, if given.
    pub email: Option<String>,
    /// The customer's phone number, if given.
    pub phone: Option<String>,
    /// The queue asked for, if any.
    pub queue: Option<String>,
    /// Routing attributes (JSON object as text).
    pub attributes: String,
    /// The contact-centre interaction, once routed.
    pub interaction_id: Option<i64>,
    /// The agent who took it.
    pub agent: Option<String>,
    /// `queued`, `active` or `ended`.
    pub state: String,
    /// `customer`, `agent` or `system`, once ended.
    pub ended_by: Option<String>,
    /// The customer's satisfaction score (1–5).
    pub csat: Option<i64>,
    /// Creation (epoch ms).
    pub created_at_ms: i64,
    /// End (epoch ms).
    pub ended_at_ms: Option<i64>,
}

/// One message of a chat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatMessageRow {
    /// The chat.
    pub chat_id: String,
    /// 1, 2, 3… per chat.
    pub seq: i64,
    /// `customer`, `agent` or `system`.
    pub sender: String,
    /// The agent's name or the customer's name.
    pub author: String,
    /// The text.
    pub body: String,
    /// An attachment it carries.
    pub attachment_id: Option<String>,
    /// When (epoch ms).
    pub created_at_ms: i64,
    /// When the other side's client confirmed receipt.
    pub delivered_at_ms: Option<i64>,
    /// When the other side read it.
    pub read_at_ms: Option<i64>,
}

/// An uploaded file's metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatAttachmentRow {
    /// Random id (hex).
    pub id: String,
    /// The chat it was uploaded to.
    pub chat_id: String,
    /// The name the uploader gave (sanitised).
    pub file_name: String,
    /// Its MIME type.
    pub mime_type: String,
    /// Its size.
    pub size_bytes: i64,
    /// The file, relative to the data directory.
    pub path: String,
    /// Upload time (epoch ms).
    pub created_at_ms: i64,
}

/// One change for [`Storage::apply_chat_writes`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChatWrite {
    /// A new conversation.
    Create(ChatRow),
    /// The contact-centre interaction it became.
    Interaction {
        /// The chat.
        chat_id: String,
        /// The interaction.
        interaction_id: i64,
    },
    /// An agent took it (state `active`).
    Assigned {
        /// The chat.
        chat_id: String,
        /// The agent's name.
        agent: String,
    },
    /// It ended.
    Ended {
        /// The chat.
        chat_id: String,
        /// `customer`, `agent` or `system`.
        by: String,
        /// When (epoch ms).
        at_ms: i64,
    },
    /// A message.
    Message(ChatMessageRow),
    /// Messages of `sender` up to `seq` were delivered (`read == false`) or read.
    Receipt {
        /// The chat.
        chat_id: String,
        /// Whose messages: `customer` or `agent`.
        sender: String,
        /// Up to and including.
        seq: i64,
        /// Read (else delivered).
        read: bool,
        /// When (epoch ms).
        at_ms: i64,
    },
    /// An uploaded file.
    Attachment(ChatAttachmentRow),
    /// A message line for the chat's CRM interaction: appended to its text and indexed for
    /// full-text search (`crm_search`), in the batch's transaction.
    CrmText {
        /// The CRM interaction (`crm_interactions.id`).
        interaction_id: i64,
        /// The line (`author: text`).
        line: String,
    },
    /// The customer's score (1–5) of an ended chat.
    Csat {
        /// The chat.
        chat_id: String,
        /// The score.
        score: i64,
    },
}

/// `SELECT <every chat column> FROM chat_sessions <tail>` as a static string.
macro_rules! select_chat {
    ($tail:literal) => {
        concat!(
            "SELECT id, channel, source, external_user_id, token_hash, name, email, phone, ",
            "queue, attributes, interaction_id, agent, state, ended_by, csat, created_at_ms, ",
            "ended_at_ms FROM chat_sessions ",
            $tail
        )
    };
}

fn chat_row(r: &AnyRow) -> Result<ChatRow, sqlx::Error> {
    Ok(ChatRow {
        id: r.try_get("id")?,
        channel: r.try_get("channel")?,
        source: r.try_get("source")?,
        external_user_id: r.try_get("external_user_id")?,
        token_hash: r.try_get("token_hash")?,
        name: r.try_get("name")?,
        email: r.try_get("email")?,
        phone: r.try_get("phone")?,
        queue: r.try_get("queue")?,
        attributes: r.try_get("attributes")?,
        interaction_id: r.try_get("interaction_id")?,
        agent: r.try_get("agent")?,
        state: r.try_get("state")?,
        ended_by: r.try_get("ended_by")?,
        csat: r.try_get("csat")?,
        created_at_ms: r.try_get("created_at_ms")?,
        ended_at_ms: r.try_get("ended_at_ms")?,
    })
}

fn message_row(r: &AnyRow) -> Result<ChatMessageRow, sqlx::Error> {
    Ok(ChatMessageRow {
        chat_id: r.try_get("chat_id")?,
        seq: r.try_get("seq")?,
        sender: r.try_get("sender")?,
        author: r.try_get("author")?,
        body: r.try_get("body")?,
        attachment_id: r.try_get("attachment_id")?,
        created_at_ms: r.try_get("created_at_ms")?,
        delivered_at_ms: r.try_get("delivered_at_ms")?,
        read_at_ms: r.try_get("read_at_ms")?,
    })
}

fn attachment_row(r: &AnyRow) -> Result<ChatAttachmentRow, sqlx::Error> {
    Ok(ChatAttachmentRow {
        id: r.try_get("id")?,
        chat_id: r.try_get("chat_id")?,
        file_name: r.try_get("file_name")?,
        mime_type: r.try_get("mime_type")?,
        size_bytes: r.try_get("size_bytes")?,
        path: r.try_get("path")?,
        created_at_ms: r.try_get("created_at_ms")?,
    })
}

/// Appends `line` to CRM interaction `id`'s text and indexes it (no-op for no such one).
async fn crm_text(conn: &mut sqlx::AnyConnection, id: i64, line: &str) -> Result<(), sqlx::Error> {
    let r = sqlx::query(
        "UPDATE crm_interactions SET text = CASE WHEN text = '' THEN $2 \
         ELSE text || $3 || $2 END WHERE id = $1",
    )
    .bind(id)
    .bind(line)
    .bind("\n")
    .execute(&mut *conn)
    .await?;
    if r.rows_affected() > 0 {
        crate::crm_search::index(conn, "interaction", id, line).await?;
    }
    Ok(())
}

impl Storage {
    /// Applies `writes` in order in one transaction; returns how many were applied.
    pub async fn apply_chat_writes(&self, writes: &[ChatWrite]) -> Result<usize, StorageError> {
        const OP: &str = "apply_chat_writes";
        let mut tx = self.pool().begin().await.map_err(StorageError::at(OP))?;
        for w in writes {
            if let ChatWrite::CrmText {
                interaction_id,
                line,
            } = w
            {
                crm_text(&mut tx, *interaction_id, line)
                    .await
                    .map_err(StorageError::at(OP))?;
                continue;
            }
            let q = match w {
                ChatWrite::Create(c) => sqlx::query(
                    "INSERT INTO chat_sessions (id, channel, source, external_user_id, \
                     token_hash, name, email, phone, queue, attributes, interaction_id, agent, \
                     state, ended_by, csat, created_at_ms, ended_at_ms) VALUES ($1, $2, $3, $4, \
                     $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
                )
                .bind(&c.id)
                .bind(&c.channel)
                .bind(&c.source)
                .bind(&c.external_user_id)
                .bind(&c.token_hash)
                .bind(&c.name)
                .bind(&c.email)
                .bind(&c.phone)
                .bind(&c.queue)
                .bind(&c.attributes)
                .bind(c.interaction_id)
                .bind(&c.agent)
                .bind(&c.state)
                .bind(&c.ended_by)
                .bind(c.csat)
                .bind(c.created_at_ms)
                .bind(c.ended_at_ms),
                ChatWrite::Interaction {
                    chat_id,
                    interaction_id,
                } => sqlx::query("UPDATE chat_sessions SET interaction_id = $1 WHERE id = $2")
                    .bind(*interaction_id)
                    .bind(chat_id),
                ChatWrite::Assigned { chat_id, agent } => sqlx::query(
                    "UPDATE chat_sessions SET agent = $1, state = 'active' \
                     WHERE id = $2 AND state <> 'ended'",
                )
                .bind(agent)
                .bind(chat_id),
                ChatWrite::Ended { chat_id, by, at_ms } => sqlx::query(
                    "UPDATE chat_sessions SET state = 'ended', ended_by = $1, ended_at_ms = $2 \
                     WHERE id = $3 AND state <> 'ended'",
                )
                .bind(by)
                .bind(*at_ms)
                .bind(chat_id),
                ChatWrite::Message(m) => sqlx::query(
                    "INSERT INTO chat_messages (chat_id, seq, sender, author, body, \
                     attachment_id, created_at_ms, delivered_at_ms, read_at_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(&m.chat_id)
                .bind(m.seq)
                .bind(&m.sender)
                .bind(&m.author)
                .bind(&m.body)
                .bind(&m.attachment_id)
                .bind(m.created_at_ms)
                .bind(m.delivered_at_ms)
                .bind(m.read_at_ms),
                ChatWrite::Receipt {
                    chat_id,
                    sender,
                    seq,
                    read,
                    at_ms,
                } => {
                    let sql = if *read {
                        "UPDATE chat_messages SET read_at_ms = $1, \
                         delivered_at_ms = COALESCE(delivered_at_ms, $1) \
                         WHERE chat_id = $2 AND sender = $3 AND seq <= $4 AND read_at_ms IS NULL"
                    } else {
                        "UPDATE chat_messages SET delivered_at_ms = $1 \
                         WHERE chat_id = $2 AND sender = $3 AND seq <= $4 \
                         AND delivered_at_ms IS NULL"
                    };
                    sqlx::query(sql)
                        .bind(*at_ms)
                        .bind(chat_id)
                        .bind(sender)
                        .bind(*seq)
                }
                ChatWrite::Attachment(a) => sqlx::query(
                    "INSERT INTO chat_attachments (id, chat_id, file_name, mime_type, \
                     size_bytes, path, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&a.id)
                .bind(&a.chat_id)
                .bind(&a.file_name)
                .bind(&a.mime_type)
                .bind(a.size_bytes)
                .bind(&a.path)
                .bind(a.created_at_ms),
                ChatWrite::CrmText { .. } => continue,
                ChatWrite::Csat { chat_id, score } => {
                    sqlx::query("UPDATE chat_sessions SET csat = $1 WHERE id = $2")
                        .bind(*score)
                        .bind(chat_id)
                }
            };
            q.execute(&mut *tx).await.map_err(StorageError::at(OP))?;
        }
        tx.commit().await.map_err(StorageError::at(OP))?;
        Ok(writes.len())
    }

    /// One chat by id.
    pub async fn chat(&self, id: &str) -> Result<Option<ChatRow>, StorageError> {
        const OP: &str = "chat";
        let row = sqlx::query(select_chat!("WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(StorageError::at(OP))?;
        row.as_ref()
            .map(chat_row)
            .transpose()
            .map_err(StorageError::at(OP))
    }

    /// The chat whose resume token hashes to `token_hash`.
    pub async fn chat_by_token(&self, token_hash: &str) -> Result<Option<ChatRow>, StorageError> {
        const OP: &str = "chat_by_token";
        let row = sqlx::query(select_chat!("WHERE token_hash = $1"))
            .bind(token_hash)
            .fetch_optional(self.pool())
            .await
            .map_err(StorageError::at(OP))?;
        row.as_ref()
            .map(chat_row)
            .transpose()
            .map_err(StorageError::at(OP))
    }

    /// The newest conversation of `external_user_id` on API channel `source` that has not
    /// ended.
    pub async fn open_chat_of(
        &self,
        source: &str,
        external_user_id: &str,
    ) -> Result<Option<ChatRow>, StorageError> {
        const OP: &str = "open_chat_of";
        let row = sqlx::query(select_chat!(
            "WHERE source = $1 AND external_user_id = $2 AND state <> 'ended' \
             ORDER BY created_at_ms DESC LIMIT 1"
        ))
        .bind(source)
        .bind(external_user_id)
        .fetch_optional(self.pool())
        .await
        .map_err(StorageError::at(OP))?;
        row.as_ref()
            .map(chat_row)
            .transpose()
            .map_err(StorageError::at(OP))
    }

    /// Messages of `chat_id` with `seq > since`, in order, at most `limit`.
    pub async fn chat_messages(
        &self,
        chat_id: &str,
        since: i64,
        limit: i64,
    ) -> Result<Vec<ChatMessageRow>, StorageError> {
        const OP: &str = "chat_messages";
        let rows = sqlx::query(
            "SELECT chat_id, seq, sender, author, body, attachment_id, created_at_ms, \
             delivered_at_ms, read_at_ms FROM chat_messages WHERE chat_id = $1 AND seq > $2 \
             ORDER BY seq LIMIT $3",
        )
        .bind(chat_id)
        .bind(since)
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .map_err(StorageError::at(OP))?;
        rows.iter()
            .map(message_row)
            .collect::<Result<_, _>>()
            .map_err(StorageError::at(OP))
    }

    /// One attachment's metadata.
    pub async fn chat_attachment(
        &self,
        id: &str,
    ) -> Result<Option<ChatAttachmentRow>, StorageError> {
        const OP: &str = "chat_attachment";
        let row = sqlx::query(
            "SELECT id, chat_id, file_name, mime_type, size_bytes, path, created_at_ms \
             FROM chat_attachments WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await
        .map_err(StorageError::at(OP))?;
        row.as_ref()
            .map(attachment_row)
            .transpose()
            .map_err(StorageError::at(OP))
    }

    /// Stores the customer's score on an ended chat (a later score replaces it); false when
    /// no ended chat has that id.
    pub async fn set_chat_csat(&self, chat_id: &str, score: i64) -> Result<bool, StorageError> {
        const OP: &str = "set_chat_csat";
        let r = sqlx::query("UPDATE chat_sessions SET csat = $1 WHERE id = $2 AND state = 'ended'")
            .bind(score)
            .bind(chat_id)
            .execute(self.pool())
            .await
            .map_err(StorageError::at(OP))?;
        Ok(r.rows_affected() > 0)
    }
}
