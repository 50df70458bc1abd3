//! Chat routes.
//!
//! Customer side (anonymous, outside `/api/v1`; the resume token is the credential):
//!
//! | Route | |
//! |---|---|
//! | `GET /chat/ws[?resume=TOKEN&since=N]` | the customer WebSocket (`customer.rs`) |
//! | `POST /chat/{id}/attachments?token=&name=` | upload (raw body, `Content-Type` = the file's type): 201 metadata, 413 too large, 415 type not allowed |
//! | `GET /chat/{id}/attachments/{att}?token=` | download |
//! | `GET /widget.js`, `GET /chat/demo`, `GET /agent` | the widget, a demo customer page, a minimal agent page |
//!
//! Agent side and the API channel (under `/api/v1`, see `openapi/chat.json`):
//!
//! | Route | |
//! |---|---|
//! | `GET /api/v1/chats/{id}` | the chat and its stored messages (`since`, `limit`) |
//! | `POST /api/v1/chats/{id}/messages` `{"agent", "text", "attachment"}` | the assigned agent writes |
//! | `POST /api/v1/chats/{id}/attachments?agent=&name=` / `GET …/attachments/{att}` | agent files |
//! | `POST /api/v1/channels/{channel}/messages` | inbound platform message, HMAC-signed (`channel.rs`) |

use super::channel::{unix_now, verify_signature, SIGNATURE_HEADER};
use super::customer::CustomerSocket;
use super::session::{self, AgentCmd, Inbound, MayUpload, Spec, Uploaded, View};
use super::{random_hex, service, token_hash, ChatService};
use crate::contact::ContactError;
use crate::files;
use crate::routing::Channel;
use actix::Actor;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use switchboard_storage::{now_ms, ChatAttachmentRow, ChatWrite};

type Reply = Result<HttpResponse, ContactError>;

const WIDGET_JS: &str = include_str!("assets/widget.js");
const DEMO_HTML: &str = include_str!("assets/demo.html");
const AGENT_HTML: &str = include_str!("assets/agent.html");

/// Registers the chat routes when a [`ChatService`] is installed (else none).
pub fn configure(cfg: &mut web::ServiceConfig) {
    if service().is_none() {
        return;
    }
    cfg.route("/chat/ws", web::get().to(customer_ws))
        .route("/chat/demo", web::get().to(demo))
        .route("/chat/{id}/attachments", web::post().to(customer_upload))
        .route(
            "/chat/{id}/attachments/{att}",
            web::get().to(customer_download),
        )
        .route("/widget.js", web::get().to(widget))
        .route("/agent", web::get().to(agent_page))
        .route("/api/v1/chats/{id}", web::get().to(get_chat))
        .route("/api/v1/chats/{id}/messages", web::post().to(agent_message))
        .route(
            "/api/v1/chats/{id}/attachments",
            web::post().to(agent_upload),
        )
        .route(
            "/api/v1/chats/{id}/attachments/{att}",
            web::get().to(agent_download),
        )
        .route(
            "/api/v1/channels/{channel}/messages",
            web::post().to(channel_message),
        );
}

fn svc() -> Result<&'static ChatService, ContactError> {
    service().ok_or_else(ContactError::unavailable)
}

fn unauthorized(field: &str, error: &str) -> ContactError {
    ContactError {
        status: 401,
        error: error.to_string(),
        field: Some(field.to_string()),
    }
}

fn no_chat() -> ContactError {
    ContactError::not_found("id", "chat with that id")
}

async fn widget() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/javascript; charset=utf-8")
        .insert_header(("Cache-Control", "no-cache"))
        .body(WIDGET_JS)
}

async fn demo() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(DEMO_HTML)
}

async fn agent_page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(AGENT_HTML)
}

#[derive(Deserialize)]
struct WsQuery {
    #[serde(default)]
    resume: Option<String>,
    #[serde(default)]
    since: Option<i64>,
}

async fn customer_ws(
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, actix_web::Error> {
    let svc = svc()?;
    let q = web::Query::<WsQuery>::from_query(req.query_string())
        .map_err(|_| ContactError::bad("since", "a number"))?;
    let resume = q.resume.clone().map(|t| (t, q.since.unwrap_or(0)));
    let (res, ws, stream) = actix_ws::handle(&req, body)?;
    CustomerSocket::new(svc.clone(), ws, stream, resume).start();
    Ok(res)
}

/// The metadata of an attachment as messages carry it.
pub(super) fn attachment_meta(a: &ChatAttachmentRow) -> Value {
    if let Some(url) = a.path.strip_prefix("url:") {
        return json!({"id": a.id, "name": a.file_name, "mime": a.mime_type,
                      "size": a.size_bytes, "url": url, "external": true});
    }
    json!({"id": a.id, "name": a.file_name, "mime": a.mime_type, "size": a.size_bytes,
           "url": format!("/chat/{}/attachments/{}", a.chat_id, a.id),
           "agent_url": format!("/api/v1/chats/{}/attachments/{}", a.chat_id, a.id)})
}

#[derive(Deserialize)]
struct UploadQuery {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    agent: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

fn query<T: serde::de::DeserializeOwned>(req: &HttpRequest) -> Result<T, ContactError> {
    web::Query::<T>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|e| ContactError::bad("query", &e.to_string()))
}

/// Checks type and size, stores the file and tells the session.
async fn upload(
    req: HttpRequest,
    chat: String,
    may: MayUpload,
    name: Option<String>,
    payload: web::Payload,
) -> Reply {
    let svc = svc()?;
    let session = svc.session(&chat).ok_or_else(no_chat)?;
    session.send(may).await.unwrap_or_else(|_| Err(no_chat()))?;
    let config = svc.config();
    let limits = files::Limits {
        max_bytes: config.max_attachment_bytes,
        types: &config.attachment_types,
    };
    let (mime, bytes) = files::receive(&req, payload, limits).await?;
    let id = files::random_id();
    let size = bytes.len();
    let rel = format!("chat/{chat}/{id}");
    files::store(svc.data_dir(), &rel, bytes).await?;
    let row = ChatAttachmentRow {
        id: id.clone(),
        chat_id: chat.clone(),
        file_name: files::clean_name(name.as_deref()),
        mime_type: mime,
        size_bytes: i64::try_from(size).unwrap_or(i64::MAX),
        path: rel,
        created_at_ms: now_ms(),
    };
    let meta = attachment_meta(&row);
    svc.writer().push(ChatWrite::Attachment(row));
    session.do_send(Uploaded(meta.clone()));
    Ok(HttpResponse::Created().json(meta))
}

async fn customer_upload(req: HttpRequest, id: web::Path<String>, payload: web::Payload) -> Reply {
    let q: UploadQuery = query(&req)?;
    let token = q
        .token
        .as_deref()
        .ok_or_else(|| unauthorized("token", "the chat's resume token is needed"))?;
    let may = MayUpload {
        token_hash: Some(token_hash(token)),
        agent: None,
    };
    upload(req.clone(), id.into_inner(), may, q.name, payload).await
}

async fn agent_upload(req: HttpRequest, id: web::Path<String>, payload: web::Payload) -> Reply {
    let q: UploadQuery = query(&req)?;
    let agent = q
        .agent
        .clone()
        .ok_or_else(|| ContactError::bad("agent", "the agent's name is needed"))?;
    let may = MayUpload {
        token_hash: None,
        agent: Some(agent),
    };
    upload(req.clone(), id.into_inner(), may, q.name, payload).await
}

/// Serves a stored attachment of `chat`.
async fn download(chat: &str, att: &str) -> Reply {
    let svc = svc()?;
    svc.flush().await;
    let a = svc
        .storage()
        .chat_attachment(att)
        .await
        .map_err(|_| ContactError::unavailable())?
        .filter(|a| a.chat_id == chat && !a.path.starts_with("url:"))
        .ok_or_else(|| ContactError::not_found("att", "attachment of this chat"))?;
    let bytes = files::load(svc.data_dir(), &a.path, "att").await?;
    Ok(files::serve(
        &a.mime_type,
        &a.file_name,
        files::Disposition::Inline,
        bytes,
    ))
}

async fn customer_download(req: HttpRequest, p: web::Path<(String, String)>) -> Reply {
    let svc = svc()?;
    let q: UploadQuery = query(&req)?;
    let token = q
        .token
        .as_deref()
        .ok_or_else(|| unauthorized("token", "the chat's resume token is needed"))?;
    let (chat, att) = p.into_inner();
    svc.flush().await;
    let row = svc
        .storage()
        .chat(&chat)
        .await
        .map_err(|_| ContactError::unavailable())?
        .ok_or_else(no_chat)?;
    if row.token_hash != token_hash(token) {
        return Err(unauthorized("token", "bad token for this chat"));
    }
    download(&chat, &att).await
}

async fn agent_download(p: web::Path<(String, String)>) -> Reply {
    let (chat, att) = p.into_inner();
    download(&chat, &att).await
}

#[derive(Deserialize)]
struct HistoryQuery {
    #[serde(default)]
    since: i64,
    #[serde(default)]
    limit: Option<i64>,
}

/// The chat (live state when its session runs, else the stored row) and its stored messages.
async fn get_chat(req: HttpRequest, id: web::Path<String>) -> Reply {
    let svc = svc()?;
    let q: HistoryQuery = query(&req)?;
    let limit = q.limit.unwrap_or(500);
    if !(1..=10_000).contains(&limit) {
        return Err(ContactError::bad("limit", "1 to 10000"));
    }
    svc.flush().await;
    let row = svc
        .storage()
        .chat(&id)
        .await
        .map_err(|_| ContactError::unavailable())?
        .ok_or_else(no_chat)?;
    let live = match svc.session(&id) {
        Some(s) => s.send(View).await.ok(),
        None => None,
    };
    let rows = svc
        .storage()
        .chat_messages(&id, q.since, limit)
        .await
        .map_err(|_| ContactError::unavailable())?;
    let mut messages = Vec::with_capacity(rows.len());
    for r in &rows {
        let att = match &r.attachment_id {
            Some(a) => svc
                .storage()
                .chat_attachment(a)
                .await
                .ok()
                .flatten()
                .map(|a| attachment_meta(&a)),
            None => None,
        };
        let mut m = session::Msg::from_row(r, att).customer_frame();
        if let Some(o) = m.as_object_mut() {
            o.remove("type");
            o.insert("delivered_at".into(), json!(r.delivered_at_ms));
            o.insert("read_at".into(), json!(r.read_at_ms));
        }
        messages.push(m);
    }
    let attributes: Value = serde_json::from_str(&row.attributes).unwrap_or(json!({}));
    let crm = svc
        .storage()
        .crm_interaction_by_source(&row.id)
        .await
        .map_err(|_| ContactError::unavailable())?
        .filter(|i| i.channel == "chat" || i.channel == "api");
    Ok(HttpResponse::Ok().json(json!({
        "id": row.id, "channel": row.channel, "source": row.source,
        "external_user_id": row.external_user_id, "name": row.name, "email": row.email,
        "phone": row.phone, "queue": row.queue, "attributes": attributes,
        "interaction": row.interaction_id, "agent": row.agent, "state": row.state,
        "ended_by": row.ended_by, "csat": row.csat, "created_at": row.created_at_ms,
        "ended_at": row.ended_at_ms, "live": live, "messages": messages,
        "contact_id": crm.as_ref().map(|i| i.contact_id),
        "crm_interaction": crm.as_ref().map(|i| i.id),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentMessage {
    agent: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    attachment: Option<String>,
}

async fn agent_message(id: web::Path<String>, b: web::Bytes) -> Reply {
    let svc = svc()?;
    let m: AgentMessage = crate::contact::api::body(&b)?;
    let cmd = AgentCmd::ChatMessage {
        chat: id.into_inner(),
        text: m.text,
        attachment: m.attachment,
    };
    let v = svc.agent_command(m.agent, cmd).await?;
    Ok(HttpResponse::Created().json(v))
}

/// An attachment an adapter sends: a link to the platform's file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExtAttachment {
    url: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    mime: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChannelMessage {
    #[serde(default)]
    channel: Option<String>,
    external_user_id: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    attachments: Vec<ExtAttachment>,
    /// The user's display name (first message of a conversation).
    #[serde(default)]
    name: Option<String>,
}

/// An inbound platform message: verified, then added to the user's open conversation (a new
/// one, routed to agents, when none is open).
async fn channel_message(req: HttpRequest, channel: web::Path<String>, b: web::Bytes) -> Reply {
    let svc = svc()?;
    let channel = channel.into_inner();
    let conf = svc
        .channel(&channel)
        .ok_or_else(|| ContactError::not_found("channel", &format!("channel `{channel}`")))?;
    let sig = req
        .headers()
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok());
    verify_signature(&conf.secret, sig, &b, unix_now())
        .map_err(|e| unauthorized(SIGNATURE_HEADER, &e.to_string()))?;
    // event: channel.message_in (channel, external_user_id)
    let m: ChannelMessage = crate::contact::api::body(&b)?;
    if m.channel.as_ref().is_some_and(|c| *c != channel) {
        return Err(ContactError::bad(
            "channel",
            "differs from the URL's channel",
        ));
    }
    let user = m.external_user_id.trim().to_string();
    if user.is_empty() || user.len() > 200 {
        return Err(ContactError::bad("external_user_id", "1 to 200 characters"));
    }
    if m.attachments.len() > 10 {
        return Err(ContactError::bad("attachments", "at most 10"));
    }
    let mut atts = Vec::new();
    for (i, a) in m.attachments.iter().enumerate() {
        let ok =
            (a.url.starts_with("http://") || a.url.starts_with("https://")) && a.url.len() <= 2048;
        if !ok {
            return Err(ContactError::bad(
                &format!("attachments[{i}].url"),
                "an http(s) URL",
            ));
        }
        atts.push(a);
    }
    if let Some(n) = &m.name {
        if n.chars().count() > 100 {
            return Err(ContactError::bad("name", "at most 100 characters"));
        }
    }
    let mut created = false;
    // Twice at most: the open conversation may end between the lookup and the message.
    for _ in 0..2 {
        let session = match svc.session_of_user(&channel, &user) {
            Some(s) => s,
            None => {
                let (id, token) = session::mint();
                let queue = [conf.queue.as_str(), svc.config().default_queue.as_str()]
                    .into_iter()
                    .find(|q| !q.is_empty())
                    .map(str::to_owned);
                let spec = Spec {
                    id,
                    token_hash: token_hash(&token),
                    channel: Channel::Messaging,
                    source: channel.clone(),
                    external_user_id: Some(user.clone()),
                    name: m.name.clone().unwrap_or_else(|| user.clone()),
                    email: None,
                    phone: None,
                    queue,
                    attributes: Map::new(),
                };
                created = true;
                session::start(svc, spec, None).await?.0
            }
        };
        let chat_attachments: Vec<Value> = atts
            .iter()
            .map(|a| {
                let row = ChatAttachmentRow {
                    id: random_hex(12),
                    chat_id: String::new(),
                    file_name: files::clean_name(a.name.as_deref()),
                    mime_type: a
                        .mime
                        .clone()
                        .unwrap_or_else(|| "application/octet-stream".into()),
                    size_bytes: 0,
                    path: format!("url:{}", a.url),
                    created_at_ms: now_ms(),
                };
                (row, a)
            })
            .map(|(row, _)| {
                let meta = attachment_meta(&row);
                json!({"row": [row.id, row.file_name, row.mime_type, row.path], "meta": meta})
            })
            .collect();
        let metas: Vec<Value> = chat_attachments.iter().map(|x| x["meta"].clone()).collect();
        let r = session
            .send(Inbound {
                text: m.text.clone(),
                attachments: metas,
            })
            .await;
        let Ok(r) = r else { continue };
        match r {
            Ok(mut v) => {
                let chat = v["chat"].as_str().unwrap_or_default().to_string();
                for x in &chat_attachments {
                    let f = |i: usize| x["row"][i].as_str().unwrap_or_default().to_string();
                    svc.writer().push(ChatWrite::Attachment(ChatAttachmentRow {
                        id: f(0),
                        chat_id: chat.clone(),
                        file_name: f(1),
                        mime_type: f(2),
                        size_bytes: 0,
                        path: f(3),
                        created_at_ms: now_ms(),
                    }));
                }
                v["created"] = json!(created);
                return Ok(HttpResponse::Accepted().json(v));
            }
            Err(e) if e.status == 409 && !created => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ContactError::unavailable())
}
