//! CRM: contacts recognised across channels, audited merges, a timeline of every interaction,
//! tickets with custom fields, status flow and business-hours SLA timers, CSAT, and search.
//!
//! ```text
//!  HTTP /api/v1/contacts…, /tickets…, /search ──▶ api.rs ──▶ Crm (this file) ──▶ storage (crm*.rs)
//!  CdrSink (calls, contact centre on) ──▶ calls.rs ──┘            │
//!  chat / API channel ──▶ Crm::find_or_create_contact ─────────────┘
//! ```
//!
//! The rules are in plain modules without I/O (`identity.rs`: normalisation, `tickets.rs`:
//! status flow, field validation and SLA, `hours.rs`: business-hours arithmetic) so they are
//! tested with a simulated clock; [`Crm`] applies them to storage with an explicit `now`.

pub mod api;
pub mod attachments;
pub mod calls;
pub mod email;
pub mod hours;
pub mod identity;
pub mod notice;
pub mod notify;
pub mod pop;
pub mod sla;
pub mod tickets;
pub mod voice;

use serde::Serialize;
use switchboard_storage::{Identity, Storage, StorageError};

/// An API error: `{"error", "field"}` with a 4xx status (5xx for storage failures); a 409 for
/// an identity owned by another contact also names that contact (`contact_id`) and the merge
/// that would resolve it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    #[serde(skip)]
    pub status: u16,
    /// What is wrong.
    pub error: String,
    /// The field at fault, if one.
    pub field: Option<String>,
    /// The contact owning a conflicting identity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact_id: Option<i64>,
    /// The suggested resolution (`POST /api/v1/contacts/{id}/merge {"from": …}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merge: Option<serde_json::Value>,
}

impl ApiError {
    fn with(status: u16, field: Option<&str>, error: &str) -> ApiError {
        ApiError {
            status,
            error: error.to_string(),
            field: field.map(str::to_string),
            contact_id: None,
            merge: None,
        }
    }

    /// 400 naming `field`.
    pub fn bad(field: &str, error: &str) -> ApiError {
        ApiError::with(400, Some(field), error)
    }

    /// 404: no such `what`, naming `field`.
    pub fn not_found(field: &str, what: &str) -> ApiError {
        ApiError::with(404, Some(field), &format!("no {what}"))
    }

    /// 409 naming `field`.
    pub fn conflict(field: &str, error: &str) -> ApiError {
        ApiError::with(409, Some(field), error)
    }

    /// 409: `identity` (at `field`) belongs to `owner`; suggests merging it into `into`.
    pub fn identity_taken(
        field: &str,
        identity: &Identity,
        owner: i64,
        into: Option<i64>,
    ) -> ApiError {
        let mut e = ApiError::with(
            409,
            Some(field),
            &format!(
                "{}:{} belongs to contact {owner}; merge the contacts instead",
                identity.kind, identity.value
            ),
        );
        e.contact_id = Some(owner);
        e.merge = Some(match into {
            Some(into) => serde_json::json!({
                "method": "POST",
                "path": format!("/api/v1/contacts/{into}/merge"),
                "body": {"from": owner},
            }),
            None => serde_json::json!({
                "method": "POST",
                "path": format!("/api/v1/contacts/{owner}/identities"),
            }),
        });
        e
    }

    /// 500 for a storage failure (logged; the message is not leaked).
    pub fn storage(e: StorageError) -> ApiError {
        tracing::error!(error = %e, "CRM storage failure");
        ApiError::with(500, None, "storage failure")
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{field}: {}", self.error),
            None => f.write_str(&self.error),
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::IdentityTaken {
                kind,
                value,
                contact_id,
            } => {
                ApiError::identity_taken("identities", &Identity { kind, value }, contact_id, None)
            }
            other => ApiError::storage(other),
        }
    }
}

/// The CRM service: storage plus the rules. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Crm {
    storage: Storage,
    /// Where `contact.*`, `ticket.*`, `csat.*` events go (none in unit tests).
    events: Option<crate::events::Events>,
    /// Where ticket attachments are stored and what they may be.
    files: std::sync::Arc<attachments::FileSettings>,
}

impl Crm {
    /// A CRM over `storage` (the schema is migrated by [`Storage::connect`]).
    pub fn new(storage: Storage) -> Crm {
        Crm {
            storage,
            events: None,
            files: std::sync::Arc::default(),
        }
    }

    /// Stores ticket attachments under `data_dir` with the limits of `[tickets]`.
    pub fn with_files(
        mut self,
        data_dir: std::path::PathBuf,
        config: &switchboard_engine::tickets_config::TicketsConfig,
    ) -> Crm {
        self.files = std::sync::Arc::new(attachments::FileSettings {
            data_dir,
            max_bytes: config.max_attachment_bytes,
            types: config.attachment_types.clone(),
        });
        self
    }

    /// The event bus, when attached.
    pub fn events(&self) -> Option<&crate::events::Events> {
        self.events.as_ref()
    }

    /// Publishes the CRM's events on `events`.
    pub fn with_events(mut self, events: crate::events::Events) -> Crm {
        self.events = Some(events);
        self
    }

    /// Publishes `kind` with `data` when an event bus is attached.
    pub fn publish(&self, kind: &str, data: serde_json::Value) {
        if let Some(events) = &self.events {
            events.publish(kind, data);
        }
    }

    /// The storage handle.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The contact recognised by an identity (`kind` `phone`, `email`, `visitor` or
    /// `ext:<channel>`; the value is normalised first), created when unknown. Returns its id and
    /// whether it was created. For the chat and API channels, and incoming calls.
    pub async fn find_or_create_contact(
        &self,
        kind: &str,
        value: &str,
        now_ms: i64,
    ) -> Result<(i64, bool), ApiError> {
        let identity = identity::normalise(kind, value).map_err(|e| ApiError::bad("value", &e))?;
        let r = self
            .storage
            .find_or_create_contact(&identity, now_ms)
            .await?;
        // event: contact.created (when r.1: contact_id, identity kind and value)
        Ok(r)
    }
}
