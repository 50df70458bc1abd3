//! The call-control REST routes (JSON). Errors are `{"error": …, "field": …}`: 400 for a body
//! that does not parse (the field named when there is one), 422 for a value that is wrong,
//! 404 for an unknown call, 409 when the call's state does not allow the request.
//!
//! | Route | |
//! |---|---|
//! | `GET /api/v1/calls` | live calls |
//! | `POST /api/v1/calls` | originate: ring `from`, then call `to` and bridge |
//! | `GET /api/v1/calls/{id}` | one call |
//! | `DELETE /api/v1/calls/{id}` | hang up (CDR cause `api`) |
//! | `POST /api/v1/calls/{id}/transfer` | blind transfer of a leg (REFER) |
//! | `POST /api/v1/calls/{id}/recording` | start / stop the whole-call recording |
//! | `POST /api/v1/calls/{id}/play` | prompt file, URL or TTS into a leg |
//! | `POST /api/v1/calls/{id}/dtmf` | digits into a leg |

use super::control::{ApiLeg, Control, ControlError};
use super::CallDirectory;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse, ResponseError};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::time::Duration;
use switchboard_dialplans::{Media, Prompt};

/// How long a request waits for the call's answer.
const CALL_ANSWER_TIMEOUT: Duration = Duration::from_secs(20);

impl std::fmt::Display for ControlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.error)
    }
}

impl ResponseError for ControlError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code()).json(self)
    }
}

type Reply = Result<HttpResponse, ControlError>;
type Dir = web::Data<CallDirectory>;

/// Adds the call routes (full paths, no `/api/v1` scope).
pub fn configure(cfg: &mut web::ServiceConfig, calls: CallDirectory) {
    cfg.app_data(web::Data::new(calls))
        .route("/api/v1/calls", web::get().to(list))
        .route("/api/v1/calls", web::post().to(originate))
        .route("/api/v1/calls/{id}", web::get().to(one))
        .route("/api/v1/calls/{id}", web::delete().to(hang_up))
        .route("/api/v1/calls/{id}/transfer", web::post().to(transfer))
        .route("/api/v1/calls/{id}/recording", web::post().to(recording))
        .route("/api/v1/calls/{id}/play", web::post().to(play))
        .route("/api/v1/calls/{id}/dtmf", web::post().to(dtmf));
}

/// Parses a JSON body; errors name the field (a missing or unknown one too).
fn body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ControlError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let msg = e.inner().to_string();
        let named = ["missing field `", "unknown field `"]
            .iter()
            .find_map(|p| msg.split_once(p))
            .and_then(|(_, rest)| rest.split_once('`'))
            .map(|(f, _)| f.to_string());
        let field = if path == "." { named } else { Some(path) };
        ControlError {
            status: 400,
            error: msg,
            field,
        }
    })
}

fn id_param(s: &str) -> Result<u64, ControlError> {
    s.parse().map_err(|_| ControlError::not_found())
}

fn leg_param(leg: Option<&str>, default: ApiLeg) -> Result<ApiLeg, ControlError> {
    match leg {
        None => Ok(default),
        Some(l) => ApiLeg::parse(l).ok_or_else(|| ControlError::field(422, "leg", "`a` or `b`")),
    }
}

/// Sends `msg` to call `id` and turns its answer into a response.
async fn ask(dir: &CallDirectory, id: &str, msg: Control) -> Reply {
    let id = id_param(id)?;
    let (_, control) = dir.get(id).ok_or_else(ControlError::not_found)?;
    match tokio::time::timeout(CALL_ANSWER_TIMEOUT, control.send(msg)).await {
        Ok(Ok(Ok(mut v))) => {
            if let Some(o) = v.as_object_mut() {
                o.insert("id".into(), id.into());
            }
            Ok(HttpResponse::Ok().json(v))
        }
        Ok(Ok(Err(e))) => Err(e),
        // The actor stopped meanwhile: the call is over.
        Ok(Err(_)) => Err(ControlError::not_found()),
        Err(_) => Err(ControlError {
            status: 504,
            error: "the call did not answer in time".into(),
            field: None,
        }),
    }
}

async fn list(dir: Dir) -> HttpResponse {
    let calls = dir.snapshot();
    HttpResponse::Ok().json(serde_json::json!({ "count": calls.len(), "calls": calls }))
}

async fn one(dir: Dir, id: web::Path<String>) -> Reply {
    let id = id_param(&id)?;
    let (info, _) = dir.get(id).ok_or_else(ControlError::not_found)?;
    Ok(HttpResponse::Ok().json(info))
}

async fn hang_up(dir: Dir, id: web::Path<String>) -> Reply {
    ask(&dir, &id, Control::Hangup).await
}

/// `POST /api/v1/calls`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OriginateBody {
    from: String,
    to: String,
    /// Ring time of each endpoint (default `calls.no_answer_timeout_secs`).
    timeout_secs: Option<u64>,
    /// The caller ID both endpoints see (a SIP URI; default `sip:switchboard@<engine>`).
    caller_id: Option<String>,
}

async fn originate(dir: Dir, b: web::Bytes) -> Reply {
    let b: OriginateBody = body(&b)?;
    let from = super::originate::endpoint("from", &b.from)?;
    let to = super::originate::endpoint("to", &b.to)?;
    if let Some(t) = b.timeout_secs {
        if !(1..=600).contains(&t) {
            return Err(ControlError::field(
                422,
                "timeout_secs",
                "between 1 and 600 seconds",
            ));
        }
    }
    if let Some(c) = &b.caller_id {
        super::originate::caller_id(c)?;
    }
    let origin = dir.origin().cloned().ok_or_else(|| ControlError {
        status: 503,
        error: "SIP is not running yet".into(),
        field: None,
    })?;
    // A user must be registered now: say so here rather than in a call that fails at once.
    for (field, e) in [("from", &from), ("to", &to)] {
        super::originate::check_reachable(&origin, field, e).await?;
    }
    let info = super::originate::start(
        &dir,
        origin,
        super::originate::Request {
            from,
            to,
            ring: b.timeout_secs.map(Duration::from_secs),
            caller_id: b.caller_id,
        },
    )
    .await?;
    Ok(HttpResponse::Created().json(info))
}

/// `POST /api/v1/calls/{id}/transfer`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferBody {
    to: String,
    leg: Option<String>,
}

async fn transfer(dir: Dir, id: web::Path<String>, b: web::Bytes) -> Reply {
    let b: TransferBody = body(&b)?;
    let leg = leg_param(b.leg.as_deref(), ApiLeg::A)?;
    let to = b.to.trim();
    if to.is_empty()
        || to.len() > 256
        || to.contains(|c: char| c.is_whitespace() || "<>\"".contains(c))
    {
        return Err(ControlError::field(
            422,
            "to",
            "a SIP URI or a user name (no spaces, quotes or angle brackets)",
        ));
    }
    ask(
        &dir,
        &id,
        Control::Transfer {
            leg,
            to: to.to_string(),
        },
    )
    .await
}

/// `POST /api/v1/calls/{id}/recording`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordingBody {
    action: String,
}

async fn recording(dir: Dir, id: web::Path<String>, b: web::Bytes) -> Reply {
    let b: RecordingBody = body(&b)?;
    let start = match b.action.as_str() {
        "start" => true,
        "stop" => false,
        _ => return Err(ControlError::field(422, "action", "`start` or `stop`")),
    };
    ask(&dir, &id, Control::Recording { start }).await
}

/// `POST /api/v1/calls/{id}/play`: exactly one of `prompt`, `url`, `say`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlayBody {
    prompt: Option<String>,
    url: Option<String>,
    say: Option<String>,
    voice: Option<String>,
    leg: Option<String>,
}

async fn play(dir: Dir, id: web::Path<String>, b: web::Bytes) -> Reply {
    let b: PlayBody = body(&b)?;
    let leg = leg_param(b.leg.as_deref(), ApiLeg::A)?;
    let given = [b.prompt.is_some(), b.url.is_some(), b.say.is_some()]
        .iter()
        .filter(|x| **x)
        .count();
    if given != 1 {
        return Err(ControlError::field(
            422,
            "prompt",
            "exactly one of `prompt`, `url` or `say`",
        ));
    }
    if b.voice.is_some() && b.say.is_none() {
        return Err(ControlError::field(422, "voice", "only with `say`"));
    }
    let prompt = if let Some(p) = b.prompt {
        let safe = !p.is_empty()
            && std::path::Path::new(&p)
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !safe {
            return Err(ControlError::field(
                422,
                "prompt",
                "a file relative to the prompt folder (no `..`, not absolute)",
            ));
        }
        Prompt::Play(Media::File(p))
    } else if let Some(u) = b.url {
        if !u.starts_with("http://") || u.len() > 2048 {
            return Err(ControlError::field(422, "url", "an http:// URL"));
        }
        Prompt::Play(Media::Url(u))
    } else {
        let text = b.say.unwrap_or_default();
        if text.trim().is_empty() || text.len() > 4096 {
            return Err(ControlError::field(422, "say", "1 to 4096 bytes of text"));
        }
        if let Some(v) = &b.voice {
            if v.is_empty()
                || !v
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c))
            {
                return Err(ControlError::field(422, "voice", "a voice name"));
            }
        }
        Prompt::Say {
            text,
            voice: b.voice,
        }
    };
    ask(&dir, &id, Control::Play { leg, prompt }).await
}

/// `POST /api/v1/calls/{id}/dtmf`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DtmfBody {
    digits: String,
    leg: Option<String>,
    duration_ms: Option<u32>,
}

async fn dtmf(dir: Dir, id: web::Path<String>, b: web::Bytes) -> Reply {
    let b: DtmfBody = body(&b)?;
    let leg = leg_param(b.leg.as_deref(), ApiLeg::B)?;
    let ok = !b.digits.is_empty()
        && b.digits.len() <= 64
        && b.digits
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D' | 'a'..='d'));
    if !ok {
        return Err(ControlError::field(422, "digits", "1 to 64 of 0-9 * # A-D"));
    }
    let duration_ms = b.duration_ms.unwrap_or(100);
    if !(40..=2000).contains(&duration_ms) {
        return Err(ControlError::field(
            422,
            "duration_ms",
            "between 40 and 2000",
        ));
    }
    ask(
        &dir,
        &id,
        Control::Dtmf {
            leg,
            digits: b.digits.to_ascii_uppercase(),
            duration_ms,
        },
    )
    .await
}
