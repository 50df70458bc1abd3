//! Ticket attachments: upload, list, download and delete, stored like chat attachments (the
//! shared [`crate::files`] store: random file ids under `<data>/tickets/<ticket>/`, type and
//! size limits from `[tickets]`) with their metadata rows in the database.
//!
//! | Route | Role | |
//! |---|---|---|
//! | `POST /api/v1/tickets/{id}/attachments?name=&by=` | agent | raw body, `Content-Type` = the file's type: 201 metadata, 413, 415 |
//! | `GET /api/v1/tickets/{id}/attachments` | read_only | the list, oldest first |
//! | `GET /api/v1/tickets/{id}/attachments/{aid}` | read_only | the file (stored type, `Content-Disposition: attachment`) |
//! | `DELETE /api/v1/tickets/{id}/attachments/{aid}` | supervisor | 204 |

use super::{ApiError, Crm};
use crate::files;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};
use std::path::PathBuf;
use switchboard_storage::{now_ms, TicketAttachment};

/// Where ticket attachments go and what they may be.
#[derive(Clone, Debug)]
pub struct FileSettings {
    /// The data directory (files go to `tickets/<ticket>/<id>` under it).
    pub data_dir: PathBuf,
    /// Largest accepted file, bytes.
    pub max_bytes: usize,
    /// Accepted MIME types.
    pub types: Vec<String>,
}

impl Default for FileSettings {
    fn default() -> Self {
        let c = switchboard_engine::tickets_config::TicketsConfig::default();
        FileSettings {
            data_dir: PathBuf::from("data"),
            max_bytes: c.max_attachment_bytes,
            types: c.attachment_types,
        }
    }
}

type Reply = Result<HttpResponse, ApiError>;
type C = web::Data<Crm>;

/// Registers the attachment routes (the CRM's app data must be registered already).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/tickets/{id}/attachments", web::post().to(upload))
        .route("/api/v1/tickets/{id}/attachments", web::get().to(list))
        .route(
            "/api/v1/tickets/{id}/attachments/{aid}",
            web::get().to(download),
        )
        .route(
            "/api/v1/tickets/{id}/attachments/{aid}",
            web::delete().to(delete),
        );
}

/// The metadata of an attachment as the API shows it.
pub fn attachment_json(a: &TicketAttachment) -> Value {
    json!({
        "id": a.id,
        "ticket_id": a.ticket_id,
        "name": a.file_name,
        "mime": a.mime_type,
        "size": a.size_bytes,
        "uploaded_by": a.uploaded_by,
        "created_at_ms": a.created_at_ms,
        "url": format!("/api/v1/tickets/{}/attachments/{}", a.ticket_id, a.id),
    })
}

fn ticket_id(s: &str) -> Result<i64, ApiError> {
    s.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::bad("id", "an id (a positive number)"))
}

/// An attachment id as stored: 24 lower-case hex digits.
fn attachment_id(s: &str) -> Result<&str, ApiError> {
    if s.len() == 24
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(s)
    } else {
        Err(ApiError::not_found("aid", "such attachment"))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UploadQuery {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    by: Option<String>,
}

async fn upload(crm: C, id: web::Path<String>, req: HttpRequest, payload: web::Payload) -> Reply {
    let id = ticket_id(&id)?;
    let q = web::Query::<UploadQuery>::from_query(req.query_string())
        .map_err(|e| ApiError::bad("query", &e.to_string()))?
        .into_inner();
    if let Some(by) = &q.by {
        if by.trim().is_empty() || by.chars().count() > 200 || by.chars().any(char::is_control) {
            return Err(ApiError::bad(
                "by",
                "1–200 characters, no control characters",
            ));
        }
    }
    let t = crm
        .storage()
        .ticket(id)
        .await?
        .ok_or_else(|| ApiError::not_found("id", "such ticket"))?;
    if t.status == "closed" {
        return Err(ApiError::conflict(
            "status",
            "a closed ticket cannot change",
        ));
    }
    let settings = crm.files.clone();
    let limits = files::Limits {
        max_bytes: settings.max_bytes,
        types: &settings.types,
    };
    let (mime, bytes) = files::receive(&req, payload, limits).await?;
    let aid = files::random_id();
    let rel = format!("tickets/{id}/{aid}");
    let size = bytes.len();
    files::store(&settings.data_dir, &rel, bytes).await?;
    let a = TicketAttachment {
        id: aid,
        ticket_id: id,
        file_name: files::clean_name(q.name.as_deref()),
        mime_type: mime,
        size_bytes: i64::try_from(size).unwrap_or(i64::MAX),
        path: rel,
        uploaded_by: q.by,
        created_at_ms: now_ms(),
    };
    let stored = match crm.storage().add_ticket_attachment(&a).await {
        Ok(stored) => stored,
        Err(e) => {
            files::remove(&settings.data_dir, &a.path).await;
            return Err(e.into());
        }
    };
    if !stored {
        // Deleted meanwhile: nothing half-written stays behind.
        files::remove(&settings.data_dir, &a.path).await;
        return Err(ApiError::not_found("id", "such ticket"));
    }
    crm.publish(
        "ticket.attachment_added",
        json!({
            "ticket_id": id, "attachment_id": a.id, "name": a.file_name, "mime": a.mime_type,
            "size": a.size_bytes, "by": a.uploaded_by,
        }),
    );
    Ok(HttpResponse::Created().json(attachment_json(&a)))
}

async fn list(crm: C, id: web::Path<String>) -> Reply {
    let id = ticket_id(&id)?;
    crm.storage()
        .ticket(id)
        .await?
        .ok_or_else(|| ApiError::not_found("id", "such ticket"))?;
    let v: Vec<Value> = crm
        .storage()
        .ticket_attachments(id)
        .await?
        .iter()
        .map(attachment_json)
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "attachments": v })))
}

async fn download(crm: C, p: web::Path<(String, String)>) -> Reply {
    let (id, aid) = p.into_inner();
    let id = ticket_id(&id)?;
    let aid = attachment_id(&aid)?;
    let a = crm
        .storage()
        .ticket_attachment(id, aid)
        .await?
        .ok_or_else(|| ApiError::not_found("aid", "such attachment on this ticket"))?;
    let bytes = files::load(&crm.files.data_dir, &a.path, "aid").await?;
    Ok(files::serve(
        &a.mime_type,
        &a.file_name,
        files::Disposition::Attachment,
        bytes,
    ))
}

async fn delete(crm: C, p: web::Path<(String, String)>) -> Reply {
    let (id, aid) = p.into_inner();
    let id = ticket_id(&id)?;
    let aid = attachment_id(&aid)?;
    let a = crm
        .storage()
        .delete_ticket_attachment(id, aid)
        .await?
        .ok_or_else(|| ApiError::not_found("aid", "such attachment on this ticket"))?;
    files::remove(&crm.files.data_dir, &a.path).await;
    crm.publish(
        "ticket.attachment_deleted",
        json!({"ticket_id": id, "attachment_id": a.id, "name": a.file_name}),
    );
    Ok(HttpResponse::NoContent().finish())
}
