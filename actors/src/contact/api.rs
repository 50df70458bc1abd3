//! The contact-centre REST API under `/api/v1` (JSON). Errors are `{"error": …, "field": …}`
//! with a 4xx status. Configuration changes are answered once stored.
//!
//! **No authentication yet**: the control-plane issue adds API tokens; until then bind the HTTP
//! listener to a trusted address only.
//!
//! | Route | |
//! |---|---|
//! | `GET/POST /queues`, `GET/PUT/DELETE /queues/{name}` | queues; `GET` adds live figures and metrics |
//! | `GET/POST /agents`, `GET/PUT/DELETE /agents/{name}` | agents |
//! | `POST /agents/{name}/login`, `POST /agents/{name}/logout` | presence |
//! | `PUT /agents/{name}/state` `{"state": "available"｜"break"｜"offline", "reason"}` | presence |
//! | `PUT /agents/{name}/skills` `{"billing": 4}` | skills |
//! | `GET /agents/{name}/ws` | the agent-desktop WebSocket (`desktop.rs`) |
//! | `GET/PUT /workflow` | the workflow (queues by name) |
//! | `GET/POST /interactions`, `GET /interactions/{id}` | live interactions; POST creates a chat/messaging/e-mail one |
//! | `POST /interactions/{id}/move` `{"queue": …}`, `POST /interactions/{id}/end` | supervisor move; customer side ended |
//! | `PUT /interactions/{id}/supervision` `{"mode": "listen"｜"whisper"｜"barge"}` | switch the mode of every supervisor on the live call |
//! | `GET /metrics/queues[/{name}]`, `GET /metrics/agents[/{name}]` | Amazon Connect metrics; query `from_ms`, `to_ms`, `sl_secs` |

use super::desktop::DesktopSession;
use super::directory::{AgentDef, QueueDef};
use super::requests::{ContactError, NewApiInteraction, Request, StateChange};
use super::ContactCentre;
use crate::routing::metrics::{AgentMetrics, Metrics, MetricsWindow, QueueMetrics};
use crate::routing::{AgentId, QueueId, RoutingEvent};
use actix::Actor;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

impl ResponseError for ContactError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code()).json(self)
    }
}

type Reply = Result<HttpResponse, ContactError>;
type Cc = web::Data<ContactCentre>;

/// Registers the routes under `/api/v1`. The app must hold a `web::Data<ContactCentre>`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/v1")
            .route("/queues", web::get().to(list_queues))
            .route("/queues", web::post().to(create_queue))
            .route("/queues/{name}", web::get().to(get_queue))
            .route("/queues/{name}", web::put().to(update_queue))
            .route("/queues/{name}", web::delete().to(delete_queue))
            .route("/agents", web::get().to(list_agents))
            .route("/agents", web::post().to(create_agent))
            .route("/agents/{name}", web::get().to(get_agent))
            .route("/agents/{name}", web::put().to(update_agent))
            .route("/agents/{name}", web::delete().to(delete_agent))
            .route("/agents/{name}/login", web::post().to(login))
            .route("/agents/{name}/logout", web::post().to(logout))
            .route("/agents/{name}/state", web::put().to(set_state))
            .route("/agents/{name}/skills", web::put().to(set_skills))
            .route("/agents/{name}/ws", web::get().to(desktop_ws))
            .route("/workflow", web::get().to(get_workflow))
            .route("/workflow", web::put().to(set_workflow))
            .route("/interactions", web::get().to(list_interactions))
            .route("/interactions", web::post().to(create_interaction))
            .route("/interactions/{id}", web::get().to(get_interaction))
            .route("/interactions/{id}/move", web::post().to(move_interaction))
            .route("/interactions/{id}/end", web::post().to(end_interaction))
            .route(
                "/interactions/{id}/supervision",
                web::put().to(set_supervision),
            )
            .route("/metrics/queues", web::get().to(queue_metrics))
            .route("/metrics/queues/{name}", web::get().to(queue_metrics_one))
            .route("/metrics/agents", web::get().to(agent_metrics))
            .route("/metrics/agents/{name}", web::get().to(agent_metrics_one)),
    );
}

/// Parses a JSON body; errors name the field.
pub(crate) fn body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ContactError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { "-".to_string() } else { path };
        ContactError::bad(&field, &e.inner().to_string())
    })
}

fn id_param(s: &str) -> Result<u64, ContactError> {
    s.parse()
        .map_err(|_| ContactError::bad("id", "an interaction id (a number)"))
}

async fn ok(cc: &ContactCentre, r: Request) -> Reply {
    Ok(HttpResponse::Ok().json(cc.request(r).await?))
}

/// A configuration change: answered once the journal has stored it.
async fn stored(cc: &ContactCentre, r: Request, status: StatusCode) -> Reply {
    let v = cc.request(r).await?;
    cc.flush().await;
    Ok(HttpResponse::build(status).json(v))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SupervisionBody {
    mode: String,
}

/// Switches every supervisor of a live call to `mode` (they joined by dialling the `monitor`
/// dialplan action).
async fn set_supervision(cc: Cc, id: web::Path<String>, b: web::Bytes) -> Reply {
    let id = id_param(&id)?;
    let sb: SupervisionBody = body(&b)?;
    let mode = switchboard_dialplans::MonitorMode::parse(&sb.mode)
        .filter(|_| !sb.mode.starts_with(|c: char| c.is_ascii_digit()))
        .ok_or_else(|| ContactError::bad("mode", "`listen`, `whisper` or `barge`"))?;
    let gone = |error: String| ContactError {
        status: 404,
        error,
        field: Some("id".into()),
    };
    let target = cc.voice_call_of(id).await.map_err(gone)?;
    let n = target
        .send(crate::call::SuperviseMsg::ModeAll { mode })
        .await
        .map_err(|_| gone("the call ended".into()))?
        .map_err(|e| ContactError::conflict("id", &e))?;
    Ok(HttpResponse::Ok().json(json!({"interaction": id, "mode": mode.name(), "supervisors": n})))
}

async fn list_queues(cc: Cc) -> Reply {
    ok(&cc, Request::ListQueues).await
}

async fn create_queue(cc: Cc, b: web::Bytes) -> Reply {
    let def: QueueDef = body(&b)?;
    stored(&cc, Request::CreateQueue(def), StatusCode::CREATED).await
}

async fn get_queue(cc: Cc, name: web::Path<String>, req: HttpRequest) -> Reply {
    let mut v = cc.request(Request::GetQueue(name.clone())).await?;
    let (m, names, window) = fold(&cc, &req).await?;
    if let Some(id) = lookup(&names["queues"], &name) {
        v["metrics"] = queue_json(&name, &m.queue_metrics(QueueId(id)), &window);
    }
    Ok(HttpResponse::Ok().json(v))
}

async fn update_queue(cc: Cc, name: web::Path<String>, b: web::Bytes) -> Reply {
    let def: QueueDef = body(&b)?;
    stored(
        &cc,
        Request::UpdateQueue(name.into_inner(), def),
        StatusCode::OK,
    )
    .await
}

async fn delete_queue(cc: Cc, name: web::Path<String>) -> Reply {
    stored(&cc, Request::DeleteQueue(name.into_inner()), StatusCode::OK).await
}

async fn list_agents(cc: Cc) -> Reply {
    ok(&cc, Request::ListAgents).await
}

async fn create_agent(cc: Cc, b: web::Bytes) -> Reply {
    let def: AgentDef = body(&b)?;
    stored(&cc, Request::CreateAgent(def), StatusCode::CREATED).await
}

async fn get_agent(cc: Cc, name: web::Path<String>) -> Reply {
    ok(&cc, Request::GetAgent(name.into_inner())).await
}

async fn update_agent(cc: Cc, name: web::Path<String>, b: web::Bytes) -> Reply {
    let def: AgentDef = body(&b)?;
    stored(
        &cc,
        Request::UpdateAgent(name.into_inner(), def),
        StatusCode::OK,
    )
    .await
}

async fn delete_agent(cc: Cc, name: web::Path<String>) -> Reply {
    stored(&cc, Request::DeleteAgent(name.into_inner()), StatusCode::OK).await
}

fn state(s: &str) -> StateChange {
    StateChange {
        state: s.into(),
        reason: None,
    }
}

async fn login(cc: Cc, name: web::Path<String>) -> Reply {
    ok(
        &cc,
        Request::SetState(name.into_inner(), state("available")),
    )
    .await
}

async fn logout(cc: Cc, name: web::Path<String>) -> Reply {
    ok(&cc, Request::SetState(name.into_inner(), state("offline"))).await
}

async fn set_state(cc: Cc, name: web::Path<String>, b: web::Bytes) -> Reply {
    let change: StateChange = body(&b)?;
    ok(&cc, Request::SetState(name.into_inner(), change)).await
}

async fn set_skills(cc: Cc, name: web::Path<String>, b: web::Bytes) -> Reply {
    let skills: BTreeMap<String, u8> = body(&b)?;
    stored(
        &cc,
        Request::SetSkills(name.into_inner(), skills),
        StatusCode::OK,
    )
    .await
}

async fn desktop_ws(
    cc: Cc,
    name: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, actix_web::Error> {
    let name = name.into_inner();
    cc.request(Request::GetAgent(name.clone())).await?;
    let (resp, session, stream) = actix_ws::handle(&req, payload)?;
    DesktopSession::new(name, session, stream, cc.addr().clone()).start();
    Ok(resp)
}

async fn get_workflow(cc: Cc) -> Reply {
    ok(&cc, Request::GetWorkflow).await
}

async fn set_workflow(cc: Cc, b: web::Bytes) -> Reply {
    let doc: Value = body(&b)?;
    stored(&cc, Request::SetWorkflow(doc), StatusCode::OK).await
}

async fn list_interactions(cc: Cc) -> Reply {
    ok(&cc, Request::ListInteractions).await
}

async fn create_interaction(cc: Cc, b: web::Bytes) -> Reply {
    let n: NewApiInteraction = body(&b)?;
    stored(&cc, Request::CreateInteraction(n), StatusCode::CREATED).await
}

async fn get_interaction(cc: Cc, id: web::Path<String>) -> Reply {
    ok(&cc, Request::GetInteraction(id_param(&id)?)).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MoveTo {
    queue: String,
}

async fn move_interaction(cc: Cc, id: web::Path<String>, b: web::Bytes) -> Reply {
    let to: MoveTo = body(&b)?;
    ok(&cc, Request::MoveInteraction(id_param(&id)?, to.queue)).await
}

async fn end_interaction(cc: Cc, id: web::Path<String>) -> Reply {
    ok(&cc, Request::EndInteraction(id_param(&id)?)).await
}

/// Query parameters of the metrics routes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WindowQuery {
    from_ms: Option<u64>,
    to_ms: Option<u64>,
    sl_secs: Option<u64>,
}

/// Folds the stored routing events into metrics for the window the query names (default: the
/// last 24 hours of the router's clock; service level from the settings).
async fn fold(
    cc: &ContactCentre,
    req: &HttpRequest,
) -> Result<(Metrics, Value, MetricsWindow), ContactError> {
    let q = web::Query::<WindowQuery>::from_query(req.query_string())
        .map_err(|e| ContactError::bad("query", &e.to_string()))?;
    let names = cc.request(Request::Names).await?;
    cc.flush().await;
    let now = names["now"].as_u64().unwrap_or(0);
    let to = q.to_ms.unwrap_or(now + 1);
    let from = q.from_ms.unwrap_or(to.saturating_sub(86_400_000));
    if from > to {
        return Err(ContactError::bad("from_ms", "must not be after to_ms"));
    }
    let sl = q.sl_secs.unwrap_or(cc.settings().service_level_secs);
    let window = MetricsWindow {
        from,
        to,
        service_level_ms: sl.saturating_mul(1000),
    };
    let rows = cc
        .storage()
        .contact_events(
            Some(super::journal::STREAM_ROUTING),
            Some(i64::try_from(to).unwrap_or(i64::MAX)),
        )
        .await
        .map_err(|e| ContactError {
            status: 500,
            error: e.to_string(),
            field: None,
        })?;
    let mut m = Metrics::new(window);
    for r in rows {
        match serde_json::from_str::<RoutingEvent>(&r.body) {
            Ok(e) => m.apply(&e),
            Err(e) => tracing::warn!(seq = r.seq, error = %e, "unreadable routing event"),
        }
    }
    Ok((m, names, window))
}

/// The id of `name` in an id → name map.
fn lookup(map: &Value, name: &str) -> Option<u32> {
    map.as_object()?
        .iter()
        .find(|(_, v)| v.as_str() == Some(name))
        .and_then(|(k, _)| k.parse().ok())
}

fn queue_json(name: &str, m: &QueueMetrics, w: &MetricsWindow) -> Value {
    json!({
        "queue": name,
        "from_ms": w.from,
        "to_ms": w.to,
        "service_level_secs": w.service_level_ms / 1000,
        "contacts_queued": m.queued,
        "contacts_answered": m.answered,
        "answered_within_service_level": m.answered_within,
        "contacts_abandoned": m.abandoned,
        "callbacks": m.callbacks,
        "contacts_exited": m.exited,
        "contacts_handled": m.handled,
        "service_level": m.service_level(),
        "average_speed_of_answer_ms": m.asa_ms(),
        "abandon_rate": m.abandon_rate(),
        "average_handle_time_ms": m.aht_ms(),
        "average_hold_ms": m.avg_hold_ms(),
        "average_after_contact_work_ms": m.avg_wrap_ms(),
    })
}

fn agent_json(name: &str, m: &AgentMetrics, w: &MetricsWindow) -> Value {
    json!({
        "agent": name,
        "from_ms": w.from,
        "to_ms": w.to,
        "contacts_handled": m.handled,
        "offers_missed": m.missed,
        "average_handle_time_ms": m.aht_ms(),
        "on_contact_ms": m.on_contact_ms,
        "idle_ms": m.idle_ms,
        "occupancy": m.occupancy(),
    })
}

fn named(map: &Value) -> Vec<(u32, String)> {
    map.as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.parse().ok()?, v.as_str()?.to_owned())))
        .collect()
}

async fn queue_metrics(cc: Cc, req: HttpRequest) -> Reply {
    let (m, names, w) = fold(&cc, &req).await?;
    let mut out: Vec<Value> = named(&names["queues"])
        .into_iter()
        .map(|(id, n)| queue_json(&n, &m.queue_metrics(QueueId(id)), &w))
        .collect();
    out.sort_by(|a, b| a["queue"].as_str().cmp(&b["queue"].as_str()));
    Ok(HttpResponse::Ok().json(out))
}

async fn queue_metrics_one(cc: Cc, name: web::Path<String>, req: HttpRequest) -> Reply {
    let (m, names, w) = fold(&cc, &req).await?;
    let id = lookup(&names["queues"], &name)
        .ok_or_else(|| ContactError::not_found("queue", &format!("queue `{name}`")))?;
    Ok(HttpResponse::Ok().json(queue_json(&name, &m.queue_metrics(QueueId(id)), &w)))
}

async fn agent_metrics(cc: Cc, req: HttpRequest) -> Reply {
    let (m, names, w) = fold(&cc, &req).await?;
    let mut out: Vec<Value> = named(&names["agents"])
        .into_iter()
        .map(|(id, n)| agent_json(&n, &m.agent_metrics(AgentId(id)), &w))
        .collect();
    out.sort_by(|a, b| a["agent"].as_str().cmp(&b["agent"].as_str()));
    Ok(HttpResponse::Ok().json(out))
}

async fn agent_metrics_one(cc: Cc, name: web::Path<String>, req: HttpRequest) -> Reply {
    let (m, names, w) = fold(&cc, &req).await?;
    let id = lookup(&names["agents"], &name)
        .ok_or_else(|| ContactError::not_found("agent", &format!("agent `{name}`")))?;
    Ok(HttpResponse::Ok().json(agent_json(&name, &m.agent_metrics(AgentId(id)), &w)))
}
