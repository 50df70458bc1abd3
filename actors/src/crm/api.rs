//! The CRM REST API (JSON, all under `/api/v1`, registered with full paths so other modules'
//! routes are never shadowed). Errors are `{"error", "field"}` with a 4xx status; a 409 for an
//! identity that belongs to another contact adds `contact_id` and the suggested `merge`.
//!
//! | Route | Role | |
//! |---|---|---|
//! | `POST /contacts` | agent | create `{name, attributes, identities: [{kind, value}], tags}` |
//! | `GET /contacts?tag=&attr=key:value&identity=kind:value&limit=` | read_only | segment / lookup |
//! | `GET /contacts/{id}`, `PATCH /contacts/{id}` | read_only / agent | `{name, attributes, add_tags, remove_tags}` |
//! | `POST /contacts/{id}/identities` | agent | `{kind, value}`; 409 when another contact owns it |
//! | `POST /contacts/{id}/merge` | supervisor | `{from, by}`: moves everything of `from` here, audited |
//! | `GET /contacts/{id}/merges` | read_only | the audit records |
//! | `GET /contacts/{id}/timeline?limit=` | read_only | every interaction, ticket, CSAT and merge, oldest first |
//! | `POST /contacts/{id}/interactions` | agent | record an interaction `{channel, source_ref, agent, queue, text, details}` |
//! | `POST /crm/interactions/{id}/messages` | agent | append `{text}` (a message or transcript line) |
//! | `POST /interactions/{id}/csat` | agent | `{score: 1..5}` on the interaction and its tickets |
//! | `POST /tickets` | agent | `{interaction_id｜contact_id, type, subject, description, fields, group, assignee}` |
//! | `GET /tickets/{id}`, `PATCH /tickets/{id}` | read_only / agent | `{status, group, assignee, subject, description, fields}` |
//! | `POST /tickets/{id}/notes` | agent | `{author, body, internal}` |
//! | `POST/GET /tickets/{id}/attachments`, `GET/DELETE …/{aid}` | agent / read_only / supervisor | files (`attachments.rs`) |
//! | `GET /ticket-types`, `GET/PUT /ticket-types/{name}` | read_only / supervisor | custom fields |
//! | `GET /ticket-groups`, `GET/PUT /ticket-groups/{name}` | read_only / supervisor | hours, holidays, SLA targets |
//! | `GET /search?q=&from=&to=&channel=&agent=&tag=&limit=` | read_only | interactions and tickets |
//! | `GET /metrics/csat?from=&to=` | read_only | CSAT per agent and per queue |

use super::tickets::{self, GroupSpec, TicketTypeSpec};
use super::{identity, ApiError, Crm};
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse, ResponseError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use switchboard_storage::{
    now_ms, ConfigKind, Contact, Identity, Interaction, NewContact, SearchQuery, Segment, Ticket,
};

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code()).json(self)
    }
}

type Reply = Result<HttpResponse, ApiError>;
type C = web::Data<Crm>;

/// Longest subject, name, tag or note author accepted.
const MAX_SHORT: usize = 200;
/// Longest description, note or message accepted.
const MAX_TEXT: usize = 100_000;
/// Most identities or tags in one request.
const MAX_ITEMS: usize = 100;

/// Registers the CRM routes (full `/api/v1/...` paths) with `crm` as app data.
pub fn configure(cfg: &mut web::ServiceConfig, crm: Crm) {
    cfg.app_data(web::Data::new(crm))
        .route("/api/v1/contacts", web::post().to(create_contact))
        .route("/api/v1/contacts", web::get().to(list_contacts))
        .route("/api/v1/contacts/{id}", web::get().to(get_contact))
        .route("/api/v1/contacts/{id}", web::patch().to(update_contact))
        .route(
            "/api/v1/contacts/{id}/identities",
            web::post().to(add_identity),
        )
        .route("/api/v1/contacts/{id}/merge", web::post().to(merge))
        .route("/api/v1/contacts/{id}/merges", web::get().to(merges))
        .route("/api/v1/contacts/{id}/timeline", web::get().to(timeline))
        .route(
            "/api/v1/contacts/{id}/interactions",
            web::post().to(record_interaction),
        )
        .route(
            "/api/v1/crm/interactions/{id}/messages",
            web::post().to(append_message),
        )
        .route("/api/v1/interactions/{id}/csat", web::post().to(csat))
        .route("/api/v1/tickets", web::post().to(create_ticket))
        .route("/api/v1/tickets/{id}", web::get().to(get_ticket))
        .route("/api/v1/tickets/{id}", web::patch().to(update_ticket))
        .route("/api/v1/tickets/{id}/notes", web::post().to(add_note))
        .configure(super::attachments::routes)
        .route("/api/v1/ticket-types", web::get().to(list_types))
        .route("/api/v1/ticket-types/{name}", web::get().to(get_type))
        .route("/api/v1/ticket-types/{name}", web::put().to(put_type))
        .route("/api/v1/ticket-groups", web::get().to(list_groups))
        .route("/api/v1/ticket-groups/{name}", web::get().to(get_group))
        .route("/api/v1/ticket-groups/{name}", web::put().to(put_group))
        .route("/api/v1/search", web::get().to(search))
        .route("/api/v1/metrics/csat", web::get().to(csat_report));
}

/// Parses a JSON body; errors name the field.
fn body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { "-".to_string() } else { path };
        ApiError::bad(&field, &e.inner().to_string())
    })
}

fn id_param(s: &str, field: &str) -> Result<i64, ApiError> {
    s.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::bad(field, "an id (a positive number)"))
}

/// `Some(None)` for an explicit `null`, `None` when absent (with `#[serde(default)]`).
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

fn short(field: &str, s: &str) -> Result<(), ApiError> {
    if s.trim().is_empty() || s.chars().count() > MAX_SHORT || s.chars().any(char::is_control) {
        return Err(ApiError::bad(
            field,
            "1–200 characters, no control characters",
        ));
    }
    Ok(())
}

fn long(field: &str, s: &str) -> Result<(), ApiError> {
    if s.len() > MAX_TEXT {
        return Err(ApiError::bad(field, "too long (100 000 bytes at most)"));
    }
    Ok(())
}

fn tags(field: &str, v: &[String]) -> Result<(), ApiError> {
    if v.len() > MAX_ITEMS {
        return Err(ApiError::bad(field, "too many"));
    }
    for (n, t) in v.iter().enumerate() {
        if t.is_empty() || t.len() > 64 || t.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ApiError::bad(
                &format!("{field}[{n}]"),
                "a tag: 1–64 characters without spaces",
            ));
        }
    }
    Ok(())
}

fn attributes(field: &str, v: &Map<String, Value>) -> Result<String, ApiError> {
    let s = Value::Object(v.clone()).to_string();
    if s.len() > 64 * 1024 {
        return Err(ApiError::bad(field, "too large (64 KiB at most)"));
    }
    Ok(s)
}

fn contact_json(c: &Contact) -> Value {
    json!({
        "id": c.id,
        "name": c.name,
        "attributes": serde_json::from_str::<Value>(&c.attributes).unwrap_or(json!({})),
        "identities": c.identities,
        "tags": c.tags,
        "created_at_ms": c.created_at_ms,
        "updated_at_ms": c.updated_at_ms,
        "merged_into": c.merged_into,
    })
}

async fn load_contact(crm: &Crm, id: i64) -> Result<Contact, ApiError> {
    crm.storage()
        .contact(id)
        .await?
        .ok_or_else(|| ApiError::not_found("id", "such contact"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityBody {
    kind: String,
    value: String,
}

fn normalise_all(field: &str, v: &[IdentityBody]) -> Result<Vec<Identity>, ApiError> {
    if v.len() > MAX_ITEMS {
        return Err(ApiError::bad(field, "too many"));
    }
    v.iter()
        .enumerate()
        .map(|(n, i)| {
            identity::normalise(&i.kind, &i.value)
                .map_err(|e| ApiError::bad(&format!("{field}[{n}].value"), &e))
        })
        .collect()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewContactBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    attributes: Map<String, Value>,
    #[serde(default)]
    identities: Vec<IdentityBody>,
    #[serde(default)]
    tags: Vec<String>,
}

async fn create_contact(crm: C, b: web::Bytes) -> Reply {
    let b: NewContactBody = body(&b)?;
    if let Some(n) = &b.name {
        short("name", n)?;
    }
    tags("tags", &b.tags)?;
    let identities = normalise_all("identities", &b.identities)?;
    let new = NewContact {
        name: b.name,
        attributes: attributes("attributes", &b.attributes)?,
        identities: identities.clone(),
        tags: b.tags,
    };
    let id = match crm.storage().create_contact(&new, now_ms()).await {
        Ok(id) => id,
        Err(switchboard_storage::StorageError::IdentityTaken {
            kind,
            value,
            contact_id,
        }) => {
            let n = identities
                .iter()
                .position(|i| i.kind == kind && i.value == value)
                .unwrap_or(0);
            return Err(ApiError::identity_taken(
                &format!("identities[{n}]"),
                &Identity { kind, value },
                contact_id,
                None,
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let c = load_contact(&crm, id).await?;
    crm.publish("contact.created", json!({"contact_id": id}));
    Ok(HttpResponse::Created().json(contact_json(&c)))
}

async fn list_contacts(crm: C, q: web::Query<HashMap<String, String>>) -> Reply {
    let limit = match q.get("limit") {
        Some(l) => l
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| ApiError::bad("limit", "1 to 1000"))?,
        None => 100,
    };
    let ids = if let Some(ident) = q.get("identity") {
        let (kind, value) = ident
            .split_once(':')
            .map(|(k, v)| {
                // `ext:<channel>:<value>` keeps its channel in the kind.
                if k == "ext" {
                    v.split_once(':')
                        .map_or((ident.as_str(), ""), |(c, v)| (&ident[..4 + c.len()], v))
                } else {
                    (k, v)
                }
            })
            .ok_or_else(|| ApiError::bad("identity", "kind:value"))?;
        let i = identity::normalise(kind, value).map_err(|e| ApiError::bad("identity", &e))?;
        crm.storage()
            .contact_by_identity(&i.kind, &i.value)
            .await?
            .into_iter()
            .collect()
    } else {
        let attribute = match q.get("attr") {
            Some(a) => Some(
                a.split_once(':')
                    .filter(|(k, _)| {
                        !k.is_empty()
                            && k.len() <= 64
                            && k.bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                    })
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .ok_or_else(|| {
                        ApiError::bad("attr", "key:value (key: letters, digits, _ or -)")
                    })?,
            ),
            None => None,
        };
        crm.storage()
            .segment(&Segment {
                tag: q.get("tag").cloned().filter(|t| !t.is_empty()),
                attribute,
                limit,
            })
            .await?
    };
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(c) = crm.storage().contact(id).await? {
            out.push(contact_json(&c));
        }
    }
    Ok(HttpResponse::Ok().json(json!({ "contacts": out })))
}

async fn get_contact(crm: C, id: web::Path<String>) -> Reply {
    let c = load_contact(&crm, id_param(&id, "id")?).await?;
    Ok(HttpResponse::Ok().json(contact_json(&c)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ContactPatch {
    #[serde(default, deserialize_with = "nullable")]
    name: Option<Option<String>>,
    /// Merged into the stored attributes; a `null` value removes the key.
    #[serde(default)]
    attributes: Option<Map<String, Value>>,
    #[serde(default)]
    add_tags: Vec<String>,
    #[serde(default)]
    remove_tags: Vec<String>,
}

async fn update_contact(crm: C, id: web::Path<String>, b: web::Bytes) -> Reply {
    let id = id_param(&id, "id")?;
    let p: ContactPatch = body(&b)?;
    if let Some(Some(n)) = &p.name {
        short("name", n)?;
    }
    tags("add_tags", &p.add_tags)?;
    tags("remove_tags", &p.remove_tags)?;
    let c = load_contact(&crm, id).await?;
    if let Some(m) = c.merged_into {
        return Err(ApiError::conflict(
            "id",
            &format!("this contact was merged into {m}"),
        ));
    }
    let attrs = match p.attributes {
        Some(changes) => {
            let mut a = match serde_json::from_str::<Value>(&c.attributes) {
                Ok(Value::Object(m)) => m,
                _ => Map::new(),
            };
            for (k, v) in changes {
                if v.is_null() {
                    a.remove(&k);
                } else {
                    a.insert(k, v);
                }
            }
            Some(attributes("attributes", &a)?)
        }
        None => None,
    };
    crm.storage()
        .update_contact(id, p.name, attrs, now_ms())
        .await?;
    if !p.add_tags.is_empty() || !p.remove_tags.is_empty() {
        crm.storage()
            .change_tags(id, &p.add_tags, &p.remove_tags)
            .await?;
    }
    let c = load_contact(&crm, id).await?;
    crm.publish("contact.updated", json!({"contact_id": id}));
    Ok(HttpResponse::Ok().json(contact_json(&c)))
}

async fn add_identity(crm: C, id: web::Path<String>, b: web::Bytes) -> Reply {
    let id = id_param(&id, "id")?;
    let b: IdentityBody = body(&b)?;
    let i = identity::normalise(&b.kind, &b.value).map_err(|e| ApiError::bad("value", &e))?;
    let c = load_contact(&crm, id).await?;
    if let Some(m) = c.merged_into {
        return Err(ApiError::conflict(
            "id",
            &format!("this contact was merged into {m}"),
        ));
    }
    match crm.storage().add_identity(id, &i, now_ms()).await {
        Ok(()) => {}
        Err(switchboard_storage::StorageError::IdentityTaken { contact_id, .. }) => {
            return Err(ApiError::identity_taken("value", &i, contact_id, Some(id)))
        }
        Err(e) => return Err(e.into()),
    }
    let c = load_contact(&crm, id).await?;
    Ok(HttpResponse::Ok().json(contact_json(&c)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MergeBody {
    from: i64,
    /// Who merges (the lead wires the authenticated token name here).
    #[serde(default)]
    by: Option<String>,
}

async fn merge(crm: C, id: web::Path<String>, b: web::Bytes) -> Reply {
    let into = id_param(&id, "id")?;
    let b: MergeBody = body(&b)?;
    if b.from == into {
        return Err(ApiError::bad(
            "from",
            "a contact cannot be merged into itself",
        ));
    }
    let by = b.by.unwrap_or_else(|| "api".into());
    short("by", &by)?;
    for (field, cid) in [("id", into), ("from", b.from)] {
        let c = crm
            .storage()
            .contact(cid)
            .await?
            .ok_or_else(|| ApiError::not_found(field, "such contact"))?;
        if let Some(m) = c.merged_into {
            return Err(ApiError::conflict(
                field,
                &format!("contact {cid} was already merged into {m}"),
            ));
        }
    }
    let m = crm
        .storage()
        .merge_contacts(into, b.from, &by, now_ms())
        .await
        .map_err(|e| match e {
            // A concurrent merge got there first.
            switchboard_storage::StorageError::Invalid { reason, .. } => {
                ApiError::conflict("from", &reason)
            }
            e => e.into(),
        })?;
    crm.publish(
        "contact.merged",
        json!({"into_id": into, "from_id": b.from, "by": by}),
    );
    let c = load_contact(&crm, into).await?;
    Ok(HttpResponse::Ok().json(json!({
        "contact": contact_json(&c),
        "merge": merge_json(&m),
    })))
}

fn merge_json(m: &switchboard_storage::MergeRecord) -> Value {
    json!({
        "id": m.id,
        "into_id": m.into_id,
        "from_id": m.from_id,
        "by": m.actor,
        "at_ms": m.at_ms,
        "moved": serde_json::from_str::<Value>(&m.moved).unwrap_or(Value::Null),
    })
}

async fn merges(crm: C, id: web::Path<String>) -> Reply {
    let id = id_param(&id, "id")?;
    load_contact(&crm, id).await?;
    let v: Vec<Value> = crm
        .storage()
        .merges_of(id)
        .await?
        .iter()
        .map(merge_json)
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "merges": v })))
}

fn interaction_json(i: &Interaction) -> Value {
    json!({
        "id": i.id,
        "contact_id": i.contact_id,
        "channel": i.channel,
        "source_ref": i.source_ref,
        "agent": i.agent,
        "queue": i.queue,
        "started_at_ms": i.started_at_ms,
        "ended_at_ms": i.ended_at_ms,
        "text": i.text,
        "details": serde_json::from_str::<Value>(&i.details).unwrap_or(json!({})),
        "csat": i.csat,
        "csat_at_ms": i.csat_at_ms,
    })
}

async fn timeline(crm: C, id: web::Path<String>, q: web::Query<HashMap<String, String>>) -> Reply {
    let id = id_param(&id, "id")?;
    let limit = match q.get("limit") {
        Some(l) => l
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| ApiError::bad("limit", "1 to 1000"))?,
        None => 200,
    };
    let contact = load_contact(&crm, id).await?;
    let s = crm.storage();
    let mut items: Vec<(i64, Value)> = Vec::new();
    for i in s.crm_interactions_of(id, Some(limit)).await? {
        let mut v = interaction_json(&i);
        v["type"] = json!("interaction");
        v["at_ms"] = json!(i.started_at_ms);
        if i.channel == "voice" {
            if let Some(call_id) = &i.source_ref {
                if let Some(cdr) = s.cdr_by_call_id(call_id).await? {
                    v["call"] = json!({
                        "call_id": cdr.call_id,
                        "caller": cdr.caller,
                        "callee": cdr.callee,
                        "answered": cdr.answer_ms.is_some(),
                        "duration_ms": cdr.duration_ms,
                        "cause": cdr.cause,
                        "mos": [cdr.mos_a, cdr.mos_b],
                    });
                }
                let recs: Vec<Value> = s
                    .recordings_for_call(call_id)
                    .await?
                    .iter()
                    .map(|r| {
                        json!({
                            "id": r.id, "path": r.path, "duration_ms": r.duration_ms,
                            "format": r.format, "legs": r.legs,
                        })
                    })
                    .collect();
                v["recordings"] = json!(recs);
                // Transcripts of calls are appended to the interaction text (`text`).
            }
        }
        if let (Some(score), Some(at)) = (i.csat, i.csat_at_ms) {
            items.push((
                at,
                json!({"type": "csat", "at_ms": at, "interaction_id": i.id, "score": score}),
            ));
        }
        items.push((i.started_at_ms, v));
    }
    for t in s.tickets_of(id).await? {
        items.push((
            t.created_at_ms,
            json!({
                "type": "ticket", "at_ms": t.created_at_ms, "ticket_id": t.id,
                "interaction_id": t.interaction_id, "subject": t.subject, "status": t.status,
                "ticket_type": t.ticket_type, "assignee": t.assignee, "csat": t.csat,
            }),
        ));
        for a in s.ticket_attachments(t.id).await? {
            let mut v = super::attachments::attachment_json(&a);
            v["type"] = json!("attachment");
            v["at_ms"] = json!(a.created_at_ms);
            items.push((a.created_at_ms, v));
        }
    }
    for m in s.merges_of(id).await? {
        items.push((m.at_ms, {
            let mut v = merge_json(&m);
            v["type"] = json!("merge");
            v
        }));
    }
    items.sort_by_key(|(at, _)| *at);
    let items: Vec<Value> = items.into_iter().map(|(_, v)| v).collect();
    Ok(HttpResponse::Ok().json(json!({ "contact": contact_json(&contact), "items": items })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InteractionBody {
    channel: String,
    #[serde(default)]
    source_ref: Option<String>,
    #[serde(default)]
    agent: Option<String>,
    #[serde(default)]
    queue: Option<String>,
    #[serde(default)]
    started_at_ms: Option<i64>,
    #[serde(default)]
    ended_at_ms: Option<i64>,
    #[serde(default)]
    text: String,
    #[serde(default)]
    details: Map<String, Value>,
}

const CHANNELS: [&str; 4] = ["voice", "chat", "api", "email"];

async fn record_interaction(crm: C, id: web::Path<String>, b: web::Bytes) -> Reply {
    let contact_id = id_param(&id, "id")?;
    let b: InteractionBody = body(&b)?;
    if !CHANNELS.contains(&b.channel.as_str()) {
        return Err(ApiError::bad("channel", "voice, chat, api or email"));
    }
    for (field, v) in [
        ("source_ref", &b.source_ref),
        ("agent", &b.agent),
        ("queue", &b.queue),
    ] {
        if let Some(v) = v {
            short(field, v)?;
        }
    }
    long("text", &b.text)?;
    let c = load_contact(&crm, contact_id).await?;
    let contact_id = c.merged_into.unwrap_or(contact_id);
    let now = now_ms();
    let started = b.started_at_ms.unwrap_or(now);
    if b.ended_at_ms.is_some_and(|e| e < started) {
        return Err(ApiError::bad("ended_at_ms", "before started_at_ms"));
    }
    let i = Interaction {
        contact_id,
        channel: b.channel,
        source_ref: b.source_ref,
        agent: b.agent,
        queue: b.queue,
        started_at_ms: started,
        ended_at_ms: b.ended_at_ms,
        text: b.text,
        details: attributes("details", &b.details)?,
        ..Interaction::default()
    };
    let id = crm.storage().record_interaction(&i).await?;
    // event: interaction.recorded (interaction_id, contact_id, channel)
    let i = crm
        .storage()
        .crm_interaction(id)
        .await?
        .ok_or_else(|| ApiError::not_found("id", "such interaction"))?;
    Ok(HttpResponse::Created().json(interaction_json(&i)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageBody {
    text: String,
}

async fn append_message(crm: C, id: web::Path<String>, b: web::Bytes) -> Reply {
    let id = id_param(&id, "id")?;
    let b: MessageBody = body(&b)?;
    if b.text.trim().is_empty() {
        return Err(ApiError::bad("text", "must not be empty"));
    }
    long("text", &b.text)?;
    if !crm.storage().append_interaction_text(id, &b.text).await? {
        return Err(ApiError::not_found("id", "such interaction"));
    }
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CsatBody {
    score: i64,
}

async fn csat(crm: C, id: web::Path<String>, b: web::Bytes) -> Reply {
    let id = id_param(&id, "id")?;
    let b: CsatBody = body(&b)?;
    if !(1..=5).contains(&b.score) {
        return Err(ApiError::bad("score", "1 to 5"));
    }
    let tickets = crm
        .storage()
        .set_csat(id, b.score, now_ms())
        .await?
        .ok_or_else(|| ApiError::not_found("id", "such interaction"))?;
    crm.publish(
        "csat.recorded",
        json!({"interaction_id": id, "score": b.score, "ticket_ids": tickets}),
    );
    Ok(HttpResponse::Ok().json(json!({
        "interaction_id": id, "score": b.score, "tickets": tickets,
    })))
}

async fn group_of(crm: &Crm, name: Option<&str>) -> Result<GroupSpec, ApiError> {
    let Some(name) = name else {
        return Ok(GroupSpec::default());
    };
    match crm.storage().crm_config(ConfigKind::Group, name).await? {
        Some(row) => serde_json::from_str(&row.config)
            .map_err(|_| ApiError::bad("group", "the stored group does not parse")),
        None => Err(ApiError::bad("group", "no such ticket group")),
    }
}

async fn ticket_json(crm: &Crm, t: &Ticket, notes: bool) -> Result<Value, ApiError> {
    let g = group_of(crm, t.group_name.as_deref())
        .await
        .unwrap_or_default();
    let hours = g
        .hours()
        .unwrap_or_else(|_| super::hours::BusinessHours::always());
    let sla = tickets::sla(t, &g, &hours, now_ms());
    let mut v = json!({
        "id": t.id,
        "contact_id": t.contact_id,
        "interaction_id": t.interaction_id,
        "type": t.ticket_type,
        "subject": t.subject,
        "description": t.description,
        "fields": serde_json::from_str::<Value>(&t.fields).unwrap_or(json!({})),
        "status": t.status,
        "group": t.group_name,
        "assignee": t.assignee,
        "created_at_ms": t.created_at_ms,
        "updated_at_ms": t.updated_at_ms,
        "first_response_at_ms": t.first_response_at_ms,
        "solved_at_ms": t.solved_at_ms,
        "csat": t.csat,
        "sla": sla,
    });
    if notes {
        let n: Vec<Value> = crm
            .storage()
            .ticket_notes(t.id)
            .await?
            .iter()
            .map(|n| {
                json!({"id": n.id, "author": n.author, "body": n.body,
                       "internal": n.internal, "at_ms": n.at_ms})
            })
            .collect();
        v["notes"] = json!(n);
        let a: Vec<Value> = crm
            .storage()
            .ticket_attachments(t.id)
            .await?
            .iter()
            .map(super::attachments::attachment_json)
            .collect();
        v["attachments"] = json!(a);
    }
    Ok(v)
}

async fn validate_fields(
    crm: &Crm,
    ticket_type: Option<&str>,
    fields: &Map<String, Value>,
) -> Result<(), ApiError> {
    let spec = match ticket_type {
        Some(name) => {
            let row = crm
                .storage()
                .crm_config(ConfigKind::TicketType, name)
                .await?
                .ok_or_else(|| ApiError::bad("type", "no such ticket type"))?;
            serde_json::from_str::<TicketTypeSpec>(&row.config)
                .map_err(|_| ApiError::bad("type", "the stored ticket type does not parse"))?
        }
        None => TicketTypeSpec::default(),
    };
    spec.validate(fields)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTicketBody {
    #[serde(default)]
    interaction_id: Option<i64>,
    #[serde(default)]
    contact_id: Option<i64>,
    #[serde(default, rename = "type")]
    ticket_type: Option<String>,
    subject: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    fields: Map<String, Value>,
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    assignee: Option<String>,
}

async fn create_ticket(crm: C, b: web::Bytes) -> Reply {
    let b: NewTicketBody = body(&b)?;
    short("subject", &b.subject)?;
    long("description", &b.description)?;
    if let Some(a) = &b.assignee {
        short("assignee", a)?;
    }
    let contact_id = match (b.interaction_id, b.contact_id) {
        (Some(iid), c) => {
            let i = crm
                .storage()
                .crm_interaction(iid)
                .await?
                .ok_or_else(|| ApiError::bad("interaction_id", "no such interaction"))?;
            if c.is_some_and(|c| c != i.contact_id) {
                return Err(ApiError::bad(
                    "contact_id",
                    "not the contact of the interaction",
                ));
            }
            i.contact_id
        }
        (None, Some(c)) => {
            let contact = crm
                .storage()
                .contact(c)
                .await?
                .ok_or_else(|| ApiError::bad("contact_id", "no such contact"))?;
            contact.merged_into.unwrap_or(c)
        }
        (None, None) => {
            return Err(ApiError::bad(
                "interaction_id",
                "interaction_id or contact_id is required",
            ))
        }
    };
    validate_fields(&crm, b.ticket_type.as_deref(), &b.fields).await?;
    group_of(&crm, b.group.as_deref()).await?;
    let now = now_ms();
    let t = Ticket {
        contact_id,
        interaction_id: b.interaction_id,
        ticket_type: b.ticket_type,
        subject: b.subject,
        description: b.description,
        fields: Value::Object(b.fields).to_string(),
        status: "new".into(),
        group_name: b.group,
        assignee: b.assignee,
        created_at_ms: now,
        updated_at_ms: now,
        ..Ticket::default()
    };
    let id = crm.storage().create_ticket(&t).await?;
    let t = load_ticket(&crm, id).await?;
    crm.publish(
        "ticket.created",
        json!({
            "ticket_id": id, "contact_id": t.contact_id, "interaction_id": t.interaction_id,
            "group": t.group_name, "assignee": t.assignee, "status": t.status,
        }),
    );
    Ok(HttpResponse::Created().json(ticket_json(&crm, &t, true).await?))
}

async fn load_ticket(crm: &Crm, id: i64) -> Result<Ticket, ApiError> {
    crm.storage()
        .ticket(id)
        .await?
        .ok_or_else(|| ApiError::not_found("id", "such ticket"))
}

async fn get_ticket(crm: C, id: web::Path<String>) -> Reply {
    let t = load_ticket(&crm, id_param(&id, "id")?).await?;
    Ok(HttpResponse::Ok().json(ticket_json(&crm, &t, true).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TicketPatch {
    #[serde(default)]
    status: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    group: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    assignee: Option<Option<String>>,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    description: Option<String>,
    /// Merged into the stored values; `null` removes one.
    #[serde(default)]
    fields: Option<Map<String, Value>>,
}

async fn update_ticket(crm: C, id: web::Path<String>, b: web::Bytes) -> Reply {
    let id = id_param(&id, "id")?;
    let p: TicketPatch = body(&b)?;
    if let Some(s) = &p.subject {
        short("subject", s)?;
    }
    if let Some(d) = &p.description {
        long("description", d)?;
    }
    if let Some(Some(a)) = &p.assignee {
        short("assignee", a)?;
    }
    let mut t = load_ticket(&crm, id).await?;
    let before = t.clone();
    if t.status == "closed" {
        return Err(ApiError::conflict(
            "status",
            "a closed ticket cannot change",
        ));
    }
    if let Some(g) = p.group {
        group_of(&crm, g.as_deref()).await?;
        t.group_name = g;
    }
    if let Some(a) = p.assignee {
        t.assignee = a;
    }
    if let Some(s) = p.subject {
        t.subject = s;
    }
    if let Some(d) = p.description {
        t.description = d;
    }
    if let Some(changes) = p.fields {
        let mut f = match serde_json::from_str::<Value>(&t.fields) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        };
        for (k, v) in changes {
            if v.is_null() {
                f.remove(&k);
            } else {
                f.insert(k, v);
            }
        }
        validate_fields(&crm, t.ticket_type.as_deref(), &f).await?;
        t.fields = Value::Object(f).to_string();
    }
    let now = now_ms();
    if let Some(to) = &p.status {
        // The pause is measured on the calendar of the group the ticket was in.
        let g = group_of(&crm, before.group_name.as_deref())
            .await
            .unwrap_or_default();
        let hours = g.hours()?;
        tickets::change_status(&mut t, to, &hours, now)?;
    }
    t.updated_at_ms = now;
    if !crm.storage().update_ticket(&t, &before.status).await? {
        return Err(ApiError::conflict(
            "status",
            "the ticket changed meanwhile; read it again",
        ));
    }
    crm.publish(
        "ticket.updated",
        json!({
            "ticket_id": t.id, "status_from": before.status, "status_to": t.status,
            "group": t.group_name, "assignee": t.assignee,
            "group_from": before.group_name, "assignee_from": before.assignee,
        }),
    );
    Ok(HttpResponse::Ok().json(ticket_json(&crm, &t, false).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoteBody {
    author: String,
    body: String,
    #[serde(default = "yes")]
    internal: bool,
}

fn yes() -> bool {
    true
}

async fn add_note(crm: C, id: web::Path<String>, b: web::Bytes) -> Reply {
    let id = id_param(&id, "id")?;
    let b: NoteBody = body(&b)?;
    short("author", &b.author)?;
    if b.body.trim().is_empty() {
        return Err(ApiError::bad("body", "must not be empty"));
    }
    long("body", &b.body)?;
    let note = crm
        .storage()
        .add_ticket_note(id, &b.author, &b.body, b.internal, now_ms())
        .await?
        .ok_or_else(|| ApiError::not_found("id", "such ticket"))?;
    crm.publish(
        "ticket.updated",
        json!({"ticket_id": id, "note_id": note, "internal": b.internal, "author": b.author}),
    );
    Ok(HttpResponse::Created().json(json!({"id": note, "ticket_id": id})))
}

fn name_param(s: &str) -> Result<String, ApiError> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(s.to_string())
    } else {
        Err(ApiError::bad("name", "1–64 letters, digits, _ or -"))
    }
}

async fn list_configs(crm: &Crm, kind: ConfigKind, key: &str) -> Reply {
    let v: Vec<Value> = crm
        .storage()
        .crm_configs(kind)
        .await?
        .iter()
        .map(|r| {
            let mut v = serde_json::from_str::<Value>(&r.config).unwrap_or(json!({}));
            v["name"] = json!(r.name);
            v
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ key: v })))
}

async fn get_config(crm: &Crm, kind: ConfigKind, name: &str, what: &str) -> Reply {
    let name = name_param(name)?;
    let r = crm
        .storage()
        .crm_config(kind, &name)
        .await?
        .ok_or_else(|| ApiError::not_found("name", what))?;
    let mut v = serde_json::from_str::<Value>(&r.config).unwrap_or(json!({}));
    v["name"] = json!(r.name);
    Ok(HttpResponse::Ok().json(v))
}

async fn list_types(crm: C) -> Reply {
    list_configs(&crm, ConfigKind::TicketType, "ticket_types").await
}

async fn get_type(crm: C, name: web::Path<String>) -> Reply {
    get_config(&crm, ConfigKind::TicketType, &name, "such ticket type").await
}

async fn put_type(crm: C, name: web::Path<String>, b: web::Bytes) -> Reply {
    let name = name_param(&name)?;
    let spec: TicketTypeSpec = body(&b)?;
    spec.check()?;
    let text = serde_json::to_string(&spec).map_err(|_| ApiError::bad("-", "unserialisable"))?;
    crm.storage()
        .put_crm_config(ConfigKind::TicketType, &name, &text, now_ms())
        .await?;
    get_config(&crm, ConfigKind::TicketType, &name, "such ticket type").await
}

async fn list_groups(crm: C) -> Reply {
    list_configs(&crm, ConfigKind::Group, "ticket_groups").await
}

async fn get_group(crm: C, name: web::Path<String>) -> Reply {
    get_config(&crm, ConfigKind::Group, &name, "such ticket group").await
}

async fn put_group(crm: C, name: web::Path<String>, b: web::Bytes) -> Reply {
    let name = name_param(&name)?;
    let spec: GroupSpec = body(&b)?;
    spec.hours()?;
    for (field, v) in [
        ("first_response_mins", spec.first_response_mins),
        ("resolution_mins", spec.resolution_mins),
    ] {
        if v.is_some_and(|m| m == 0 || m > 525_600) {
            return Err(ApiError::bad(field, "1 to 525600 minutes"));
        }
    }
    let text = serde_json::to_string(&spec).map_err(|_| ApiError::bad("-", "unserialisable"))?;
    crm.storage()
        .put_crm_config(ConfigKind::Group, &name, &text, now_ms())
        .await?;
    get_config(&crm, ConfigKind::Group, &name, "such ticket group").await
}

/// Epoch ms or RFC 3339.
fn time_param(field: &str, s: &str) -> Result<i64, ApiError> {
    if let Ok(n) = s.parse::<i64>() {
        return Ok(n);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|_| ApiError::bad(field, "epoch milliseconds or an RFC 3339 time"))
}

async fn search(crm: C, q: web::Query<HashMap<String, String>>) -> Reply {
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    let text = get("q");
    if text.len() > 1000 {
        return Err(ApiError::bad("q", "too long (1000 bytes at most)"));
    }
    let from_ms = q.get("from").map(|s| time_param("from", s)).transpose()?;
    let to_ms = q.get("to").map(|s| time_param("to", s)).transpose()?;
    let channel = get("channel");
    if !channel.is_empty() && !CHANNELS.contains(&channel.as_str()) {
        return Err(ApiError::bad("channel", "voice, chat, api or email"));
    }
    let limit = match q.get("limit") {
        Some(l) => l
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| ApiError::bad("limit", "1 to 1000"))?,
        None => 100,
    };
    let hits = crm
        .storage()
        .search(&SearchQuery {
            text,
            from_ms,
            to_ms,
            channel,
            agent: get("agent"),
            tag: get("tag"),
            limit,
        })
        .await?;
    let v: Vec<Value> = hits
        .iter()
        .map(|h| {
            json!({
                "kind": h.kind, "id": h.id, "contact_id": h.contact_id, "at_ms": h.at_ms,
                "channel": h.channel, "agent": h.agent, "text": h.text,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "results": v })))
}

/// Aggregates of CSAT scores: how many, the mean, and the CSAT percentage (share of 4 and 5).
fn csat_summary(scores: &[i64]) -> Value {
    let n = scores.len();
    if n == 0 {
        return json!({"responses": 0, "average": null, "csat_percent": null});
    }
    let sum: i64 = scores.iter().sum();
    let happy = scores.iter().filter(|s| **s >= 4).count();
    json!({
        "responses": n,
        "average": sum as f64 / n as f64,
        "csat_percent": 100.0 * happy as f64 / n as f64,
    })
}

async fn csat_report(crm: C, q: web::Query<HashMap<String, String>>) -> Reply {
    let from = q.get("from").map(|s| time_param("from", s)).transpose()?;
    let to = q.get("to").map(|s| time_param("to", s)).transpose()?;
    let scores = crm
        .storage()
        .csat_scores(from.unwrap_or(0), to.unwrap_or(i64::MAX))
        .await?;
    let mut agents: std::collections::BTreeMap<String, Vec<i64>> = Default::default();
    let mut queues: std::collections::BTreeMap<String, Vec<i64>> = Default::default();
    for s in &scores {
        if let Some(a) = &s.agent {
            agents.entry(a.clone()).or_default().push(s.score);
        }
        if let Some(q) = &s.queue {
            queues.entry(q.clone()).or_default().push(s.score);
        }
    }
    let all: Vec<i64> = scores.iter().map(|s| s.score).collect();
    let per = |m: std::collections::BTreeMap<String, Vec<i64>>| -> Map<String, Value> {
        m.into_iter().map(|(k, v)| (k, csat_summary(&v))).collect()
    };
    Ok(HttpResponse::Ok().json(json!({
        "total": csat_summary(&all),
        "agents": per(agents),
        "queues": per(queues),
    })))
}
