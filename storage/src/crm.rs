//! CRM contacts: identities (one owner per `(kind, value)`), tags, custom attributes (JSON
//! text), segments, and audited merges.
//!
//! Identities arrive normalised (the actors lower-case e-mail addresses and put phone numbers in
//! E.164); this module only enforces that an identity belongs to one contact at a time and
//! reports the owner when it does not ([`StorageError::IdentityTaken`]). Every multi-row change
//! runs in one transaction.

use crate::{Storage, StorageError};
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

/// One way to recognise a contact.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    /// `phone`, `email`, `visitor` or `ext:<channel>`.
    pub kind: String,
    /// The normalised value.
    pub value: String,
}

/// A contact with its identities and tags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contact {
    /// Its id.
    pub id: i64,
    /// Display name, if known.
    pub name: Option<String>,
    /// Custom attributes (a JSON object).
    pub attributes: String,
    /// Created (epoch ms).
    pub created_at_ms: i64,
    /// Last change (epoch ms).
    pub updated_at_ms: i64,
    /// Set once this contact was merged into another one.
    pub merged_into: Option<i64>,
    /// Its identities, by kind then value.
    pub identities: Vec<Identity>,
    /// Its tags, sorted.
    pub tags: Vec<String>,
}

/// What [`Storage::create_contact`] needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewContact {
    /// Display name.
    pub name: Option<String>,
    /// Custom attributes (a JSON object as text; `{}` when empty).
    pub attributes: String,
    /// Identities (each must be free).
    pub identities: Vec<Identity>,
    /// Tags.
    pub tags: Vec<String>,
}

/// A segment: contacts carrying a tag and/or whose attribute equals a value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    /// Only contacts with this tag.
    pub tag: Option<String>,
    /// Only contacts whose attribute `.0` (a top-level key) has the text value `.1`.
    pub attribute: Option<(String, String)>,
    /// At most this many (newest first).
    pub limit: i64,
}

/// The audit record of one merge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MergeRecord {
    /// Its id.
    pub id: i64,
    /// The surviving contact.
    pub into_id: i64,
    /// The contact merged away.
    pub from_id: i64,
    /// Who merged (user or token name).
    pub actor: String,
    /// When (epoch ms).
    pub at_ms: i64,
    /// What moved (JSON: counts of identities, tags, interactions, tickets; attribute keys).
    pub moved: String,
}

fn merge_row(r: &AnyRow) -> Result<MergeRecord, sqlx::Error> {
    Ok(MergeRecord {
        id: r.try_get("id")?,
        into_id: r.try_get("into_id")?,
        from_id: r.try_get("from_id")?,
        actor: r.try_get("actor")?,
        at_ms: r.try_get("at_ms")?,
        moved: r.try_get("moved")?,
    })
}

/// Merges JSON object `from` under `into` (keys of `into` win). Non-objects count as empty.
fn merge_attributes(into: &str, from: &str) -> (String, Vec<String>) {
    let mut a = match serde_json::from_str::<serde_json::Value>(into) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    let mut moved = Vec::new();
    if let Ok(serde_json::Value::Object(b)) = serde_json::from_str::<serde_json::Value>(from) {
        for (k, v) in b {
            if !a.contains_key(&k) {
                moved.push(k.clone());
                a.insert(k, v);
            }
        }
    }
    (serde_json::Value::Object(a).to_string(), moved)
}

impl Storage {
    /// Creates a contact with its identities and tags in one transaction. An identity owned by
    /// another contact fails with [`StorageError::IdentityTaken`] and nothing is written.
    pub async fn create_contact(&self, c: &NewContact, now_ms: i64) -> Result<i64, StorageError> {
        const OP: &str = "create_contact";
        let mut tx = self.pool().begin().await.map_err(StorageError::at(OP))?;
        let row = sqlx::query(
            "INSERT INTO crm_contacts (name, attributes, created_at_ms, updated_at_ms) \
             VALUES ($1, $2, $3, $3) RETURNING id",
        )
        .bind(&c.name)
        .bind(&c.attributes)
        .bind(now_ms)
        .fetch_one(&mut *tx)
        .await
        .map_err(StorageError::at(OP))?;
        let id: i64 = row.try_get("id").map_err(StorageError::at(OP))?;
        for i in &c.identities {
            let done = sqlx::query(
                "INSERT INTO crm_identities (kind, value, contact_id, created_at_ms) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (kind, value) DO NOTHING",
            )
            .bind(&i.kind)
            .bind(&i.value)
            .bind(id)
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(StorageError::at(OP))?;
            if done.rows_affected() == 0 {
                drop(tx);
                let owner = self.contact_by_identity(&i.kind, &i.value).await?;
                return Err(StorageError::IdentityTaken {
                    kind: i.kind.clone(),
                    value: i.value.clone(),
                    contact_id: owner.unwrap_or(0),
                });
            }
        }
        for t in &c.tags {
            sqlx::query(
                "INSERT INTO crm_tags (contact_id, tag) VALUES ($1, $2) \
                 ON CONFLICT (contact_id, tag) DO NOTHING",
            )
            .bind(id)
            .bind(t)
            .execute(&mut *tx)
            .await
            .map_err(StorageError::at(OP))?;
        }
        tx.commit().await.map_err(StorageError::at(OP))?;
        Ok(id)
    }

    /// The contact owning an identity.
    pub async fn contact_by_identity(
        &self,
        kind: &str,
        value: &str,
    ) -> Result<Option<i64>, StorageError> {
        const OP: &str = "contact_by_identity";
        let row =
            sqlx::query("SELECT contact_id FROM crm_identities WHERE kind = $1 AND value = $2")
                .bind(kind)
                .bind(value)
                .fetch_optional(self.pool())
                .await
                .map_err(StorageError::at(OP))?;
        row.map(|r| r.try_get("contact_id"))
            .transpose()
            .map_err(StorageError::at(OP))
    }

    /// The contact owning the identity, created (with only that identity) when unknown.
    /// Returns its id and whether it was created. Safe against concurrent callers.
    pub async fn find_or_create_contact(
        &self,
        identity: &Identity,
        now_ms: i64,
    ) -> Result<(i64, bool), StorageError> {
        if let Some(id) = self
            .contact_by_identity(&identity.kind, &identity.value)
            .await?
        {
            return Ok((id, false));
        }
        let new = NewContact {
            name: None,
            attributes: "{}".into(),
            identities: vec![identity.clone()],
            tags: Vec::new(),
        };
        match self.create_contact(&new, now_ms).await {
            Ok(id) => Ok((id, true)),
            Err(StorageError::IdentityTaken { contact_id, .. }) if contact_id != 0 => {
                Ok((contact_id, false))
            }
            Err(e) => Err(e),
        }
    }

    /// One contact with its identities and tags.
    pub async fn contact(&self, id: i64) -> Result<Option<Contact>, StorageError> {
        const OP: &str = "contact";
        let Some(r) = sqlx::query(
            "SELECT id, name, attributes, created_at_ms, updated_at_ms, merged_into \
             FROM crm_contacts WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await
        .map_err(StorageError::at(OP))?
        else {
            return Ok(None);
        };
        let mut c = (|| -> Result<Contact, sqlx::Error> {
            Ok(Contact {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                attributes: r.try_get("attributes")?,
                created_at_ms: r.try_get("created_at_ms")?,
                updated_at_ms: r.try_get("updated_at_ms")?,
                merged_into: r.try_get("merged_into")?,
                identities: Vec::new(),
                tags: Vec::new(),
            })
        })()
        .map_err(StorageError::at(OP))?;
        let ids = sqlx::query(
            "SELECT kind, value FROM crm_identities WHERE contact_id = $1 ORDER BY kind, value",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await
        .map_err(StorageError::at(OP))?;
        for r in ids {
            c.identities.push(Identity {
                kind: r.try_get("kind").map_err(StorageError::at(OP))?,
                value: r.try_get("value").map_err(StorageError::at(OP))?,
            });
        }
        let tags = sqlx::query("SELECT tag FROM crm_tags WHERE contact_id = $1 ORDER BY tag")
            .bind(id)
            .fetch_all(self.pool())
            .await
            .map_err(StorageError::at(OP))?;
        for r in tags {
            c.tags.push(r.try_get("tag").map_err(StorageError::at(OP))?);
        }
        Ok(Some(c))
    }

    /// Changes name and/or attributes (`None`: unchanged). Returns false for no such contact.
    pub async fn update_contact(
        &self,
        id: i64,
        name: Option<Option<String>>,
        attributes: Option<String>,
        now_ms: i64,
    ) -> Result<bool, StorageError> {
        const OP: &str = "update_contact";
        let set_name = name.is_some();
        let r = sqlx::query(
            "UPDATE crm_contacts SET \
             name = CASE WHEN $2 = 1 THEN $3 ELSE name END, \
             attributes = COALESCE($4, attributes), updated_at_ms = $5 WHERE id = $1",
        )
        .bind(id)
        .bind(i64::from(set_name))
        .bind(name.flatten())
        .bind(attributes)
        .bind(now_ms)
        .execute(self.pool())
        .await
        .map_err(StorageError::at(OP))?;
        Ok(r.rows_affected() > 0)
    }

    /// Gives `contact_id` an identity. Idempotent for its own identity; an identity of another
    /// contact fails with [`StorageError::IdentityTaken`].
    pub async fn add_identity(
        &self,
        contact_id: i64,
        identity: &Identity,
        now_ms: i64,
    ) -> Result<(), StorageError> {
        const OP: &str = "add_identity";
        sqlx::query(
            "INSERT INTO crm_identities (kind, value, contact_id, created_at_ms) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (kind, value) DO NOTHING",
        )
        .bind(&identity.kind)
        .bind(&identity.value)
        .bind(contact_id)
        .bind(now_ms)
        .execute(self.pool())
        .await
        .map_err(StorageError::at(OP))?;
        match self
            .contact_by_identity(&identity.kind, &identity.value)
            .await?
        {
            Some(owner) if owner == contact_id => Ok(()),
            owner => Err(StorageError::IdentityTaken {
                kind: identity.kind.clone(),
                value: identity.value.clone(),
                contact_id: owner.unwrap_or(0),
            }),
        }
    }

    /// Adds and removes tags of a contact in one transaction.
    pub async fn change_tags(
        &self,
        contact_id: i64,
        add: &[String],
        remove: &[String],
    ) -> Result<(), StorageError> {
        const OP: &str = "change_tags";
        let mut tx = self.pool().begin().await.map_err(StorageError::at(OP))?;
        for t in add {
            sqlx::query(
                "INSERT INTO crm_tags (contact_id, tag) VALUES ($1, $2) \
                 ON CONFLICT (contact_id, tag) DO NOTHING",
            )
            .bind(contact_id)
            .bind(t)
            .execute(&mut *tx)
            .await
            .map_err(StorageError::at(OP))?;
        }
        for t in remove {
            sqlx::query("DELETE FROM crm_tags WHERE contact_id = $1 AND tag = $2")
                .bind(contact_id)
                .bind(t)
                .execute(&mut *tx)
                .await
                .map_err(StorageError::at(OP))?;
        }
        tx.commit().await.map_err(StorageError::at(OP))
    }

    /// Ids of the live (not merged away) contacts in a segment, newest first.
    pub async fn segment(&self, s: &Segment) -> Result<Vec<i64>, StorageError> {
        const OP: &str = "segment";
        let attr = match self.backend() {
            crate::Backend::Sqlite => {
                "CAST(json_extract(c.attributes, '$.\"' || $2 || '\"') AS TEXT)"
            }
            crate::Backend::Postgres => "(c.attributes::jsonb ->> $2)",
        };
        let sql = format!(
            "SELECT c.id FROM crm_contacts c WHERE c.merged_into IS NULL \
             AND ($1 = '' OR EXISTS (SELECT 1 FROM crm_tags t WHERE t.contact_id = c.id AND t.tag = $1)) \
             AND ($2 = '' OR {attr} = $3) ORDER BY c.id DESC LIMIT $4"
        );
        let (k, v) = s.attribute.clone().unwrap_or_default();
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(s.tag.clone().unwrap_or_default())
            .bind(k)
            .bind(v)
            .bind(s.limit.clamp(1, 10_000))
            .fetch_all(self.pool())
            .await
            .map_err(StorageError::at(OP))?;
        rows.iter()
            .map(|r| r.try_get("id"))
            .collect::<Result<_, _>>()
            .map_err(StorageError::at(OP))
    }

    /// Merges contact `from` into `into` in one transaction: identities, tags, attributes (keys
    /// of `into` win), interactions and tickets move; `from` is marked merged; an audit record
    /// names `actor`. Fails without writing anything when either contact is missing or already
    /// merged, or when any step fails.
    pub async fn merge_contacts(
        &self,
        into: i64,
        from: i64,
        actor: &str,
        now_ms: i64,
    ) -> Result<MergeRecord, StorageError> {
        const OP: &str = "merge_contacts";
        if into == from {
            return Err(StorageError::Invalid {
                op: OP,
                reason: "a contact cannot be merged into itself".into(),
            });
        }
        let mut tx = self.pool().begin().await.map_err(StorageError::at(OP))?;
        let mut attrs = Vec::new();
        for id in [into, from] {
            let row = sqlx::query("SELECT attributes, merged_into FROM crm_contacts WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(StorageError::at(OP))?;
            let Some(row) = row else {
                return Err(StorageError::Invalid {
                    op: OP,
                    reason: format!("no contact {id}"),
                });
            };
            let merged: Option<i64> = row.try_get("merged_into").map_err(StorageError::at(OP))?;
            if let Some(m) = merged {
                return Err(StorageError::Invalid {
                    op: OP,
                    reason: format!("contact {id} was already merged into {m}"),
                });
            }
            attrs.push(
                row.try_get::<String, _>("attributes")
                    .map_err(StorageError::at(OP))?,
            );
        }
        let (merged_attrs, moved_keys) = merge_attributes(&attrs[0], &attrs[1]);
        let step = |sql: &'static str| sqlx::query(sql).bind(into).bind(from);
        let identities = step("UPDATE crm_identities SET contact_id = $1 WHERE contact_id = $2")
            .execute(&mut *tx)
            .await
            .map_err(StorageError::at(OP))?
            .rows_affected();
        let tags = step(
            "INSERT INTO crm_tags (contact_id, tag) SELECT $1, tag FROM crm_tags \
             WHERE contact_id = $2 ON CONFLICT (contact_id, tag) DO NOTHING",
        )
        .execute(&mut *tx)
        .await
        .map_err(StorageError::at(OP))?
        .rows_affected();
        sqlx::query("DELETE FROM crm_tags WHERE contact_id = $1")
            .bind(from)
            .execute(&mut *tx)
            .await
            .map_err(StorageError::at(OP))?;
        let interactions =
            step("UPDATE crm_interactions SET contact_id = $1 WHERE contact_id = $2")
                .execute(&mut *tx)
                .await
                .map_err(StorageError::at(OP))?
                .rows_affected();
        let tickets = step("UPDATE crm_tickets SET contact_id = $1 WHERE contact_id = $2")
            .execute(&mut *tx)
            .await
            .map_err(StorageError::at(OP))?
            .rows_affected();
        sqlx::query("UPDATE crm_contacts SET attributes = $2, updated_at_ms = $3 WHERE id = $1")
            .bind(into)
            .bind(&merged_attrs)
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(StorageError::at(OP))?;
        sqlx::query("UPDATE crm_contacts SET merged_into = $1, updated_at_ms = $3 WHERE id = $2")
            .bind(into)
            .bind(from)
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(StorageError::at(OP))?;
        let moved = serde_json::json!({
            "identities": identities,
            "tags": tags,
            "interactions": interactions,
            "tickets": tickets,
            "attributes": moved_keys,
        })
        .to_string();
        // Last on purpose: the audit row's CHECK (non-empty actor) failing rolls back every
        // step above (the storage test relies on it).
        let row = sqlx::query(
            "INSERT INTO crm_merges (into_id, from_id, actor, at_ms, moved) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(into)
        .bind(from)
        .bind(actor)
        .bind(now_ms)
        .bind(&moved)
        .fetch_one(&mut *tx)
        .await
        .map_err(StorageError::at(OP))?;
        let id: i64 = row.try_get("id").map_err(StorageError::at(OP))?;
        tx.commit().await.map_err(StorageError::at(OP))?;
        Ok(MergeRecord {
            id,
            into_id: into,
            from_id: from,
            actor: actor.to_string(),
            at_ms: now_ms,
            moved,
        })
    }

    /// The merge audit records involving a contact (either side), oldest first.
    pub async fn merges_of(&self, contact_id: i64) -> Result<Vec<MergeRecord>, StorageError> {
        const OP: &str = "merges_of";
        let rows = sqlx::query(
            "SELECT id, into_id, from_id, actor, at_ms, moved FROM crm_merges \
             WHERE into_id = $1 OR from_id = $1 ORDER BY id",
        )
        .bind(contact_id)
        .fetch_all(self.pool())
        .await
        .map_err(StorageError::at(OP))?;
        rows.iter()
            .map(merge_row)
            .collect::<Result<_, _>>()
            .map_err(StorageError::at(OP))
    }
}

#[cfg(test)]
mod tests {
    use super::merge_attributes;

    #[test]
    fn attributes_of_the_survivor_win() {
        let (m, moved) = merge_attributes(r#"{"a":1,"b":2}"#, r#"{"b":3,"c":4}"#);
        assert_eq!(m, r#"{"a":1,"b":2,"c":4}"#);
        assert_eq!(moved, vec!["c".to_string()]);
        let (m, moved) = merge_attributes("not json", r#"{"c":4}"#);
        assert_eq!(m, r#"{"c":4}"#);
        assert_eq!(moved.len(), 1);
    }
}
