//! Read (and for SIP users, write) access to what the engine stores:
//!
//! | Route | |
//! |---|---|
//! | `GET /api/v1/registrations?aor=` | live registrations (the registrar's stored bindings) |
//! | `GET /api/v1/cdrs?from_ms=&to_ms=&caller=&callee=&limit=&offset=` | call detail records, newest first |
//! | `GET /api/v1/cdrs/{id}` | one CDR |
//! | `GET /api/v1/recordings?call_id=&limit=&offset=` | the recording index |
//! | `GET /api/v1/recordings/{id}` | the file, with HTTP Range support (206, 416) |
//! | `GET/POST /api/v1/users`, `DELETE /api/v1/users/{name}?realm=` | SIP users (digest credentials; HA1 never shown) |

use super::{ApiContext, ApiError};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use switchboard_storage::{CdrFilter, StorageError};

type Ctx = web::Data<ApiContext>;
type Reply = Result<HttpResponse, ApiError>;

/// Most rows one list request returns.
const MAX_LIMIT: u32 = 1000;
/// Rows a list request returns without `limit`.
const DEFAULT_LIMIT: u32 = 100;

/// Registers the routes (full paths).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/registrations", web::get().to(registrations))
        .route("/api/v1/cdrs", web::get().to(cdrs))
        .route("/api/v1/cdrs/{id}", web::get().to(cdr))
        .route("/api/v1/recordings", web::get().to(recordings))
        .route("/api/v1/recordings/{id}", web::get().to(recording_file))
        .route("/api/v1/users", web::get().to(users))
        .route("/api/v1/users", web::post().to(add_user))
        .route("/api/v1/users/{name}", web::delete().to(remove_user));
}

/// The query parameters of a request, refusing any not in `allowed` (named in the error).
fn query(req: &HttpRequest, allowed: &[&str]) -> Result<HashMap<String, String>, ApiError> {
    let q = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map_err(|e| ApiError::bad("query", e.to_string()))?;
    let mut out = HashMap::new();
    for (k, v) in q.into_inner() {
        if !allowed.contains(&k.as_str()) {
            return Err(ApiError::bad(
                &k,
                format!(
                    "unknown query parameter (expected one of {})",
                    allowed.join(", ")
                ),
            ));
        }
        if out.insert(k.clone(), v).is_some() {
            return Err(ApiError::bad(&k, "given more than once"));
        }
    }
    Ok(out)
}

/// A numeric query parameter within `lo..=hi`, naming it when invalid.
fn num<T>(q: &HashMap<String, String>, key: &str, lo: T, hi: T) -> Result<Option<T>, ApiError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let Some(v) = q.get(key) else { return Ok(None) };
    match v.parse::<T>() {
        Ok(n) if n >= lo && n <= hi => Ok(Some(n)),
        _ => Err(ApiError::bad(
            key,
            format!("must be an integer from {lo} to {hi}"),
        )),
    }
}

/// `limit` (1..=1000, default 100) and `offset` (default 0).
fn page(q: &HashMap<String, String>) -> Result<(u32, u32), ApiError> {
    let limit = num(q, "limit", 1, MAX_LIMIT)?.unwrap_or(DEFAULT_LIMIT);
    let offset = num(q, "offset", 0, u32::MAX)?.unwrap_or(0);
    Ok((limit, offset))
}

/// A positive id in the path.
fn id_param(s: &str) -> Result<i64, ApiError> {
    s.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::bad("id", "must be a positive integer"))
}

async fn registrations(ctx: Ctx, req: HttpRequest) -> Reply {
    let q = query(&req, &["aor"])?;
    let now = switchboard_storage::now_ms();
    let rows = match q.get("aor") {
        Some(aor) if aor.is_empty() => return Err(ApiError::bad("aor", "must not be empty")),
        Some(aor) => ctx.storage.bindings(aor, now).await,
        None => ctx.storage.all_bindings(now).await,
    }
    .map_err(ApiError::internal)?;
    let out: Vec<_> = rows
        .into_iter()
        .map(|b| {
            json!({
                "aor": b.aor,
                "contact": b.contact_uri,
                "expires_at_ms": b.expires_at_ms,
                "expires_in_secs": (b.expires_at_ms - now).max(0) / 1000,
                "q": b.q as f64 / 1000.0,
                "call_id": b.call_id,
                "cseq": b.cseq,
                "source": b.source,
                "user_agent": b.user_agent,
                "updated_at_ms": b.updated_at_ms,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(out))
}

async fn cdrs(ctx: Ctx, req: HttpRequest) -> Reply {
    let q = query(
        &req,
        &["from_ms", "to_ms", "caller", "callee", "limit", "offset"],
    )?;
    let (limit, offset) = page(&q)?;
    let from_ms = num(&q, "from_ms", 0, i64::MAX)?;
    let to_ms = num(&q, "to_ms", 0, i64::MAX)?;
    if let (Some(f), Some(t)) = (from_ms, to_ms) {
        if f > t {
            return Err(ApiError::bad("from_ms", "must not be after to_ms"));
        }
    }
    let filter = CdrFilter {
        from_ms,
        to_ms,
        caller: q.get("caller").cloned().unwrap_or_default(),
        callee: q.get("callee").cloned().unwrap_or_default(),
        limit,
        offset,
    };
    let rows = ctx
        .storage
        .search_cdrs(&filter)
        .await
        .map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok().json(rows))
}

async fn cdr(ctx: Ctx, id: web::Path<String>) -> Reply {
    let id = id_param(&id)?;
    match ctx.storage.cdr(id).await.map_err(ApiError::internal)? {
        Some(c) => Ok(HttpResponse::Ok().json(c)),
        None => Err(ApiError::not_found("id", format!("no CDR {id}"))),
    }
}

async fn recordings(ctx: Ctx, req: HttpRequest) -> Reply {
    let q = query(&req, &["call_id", "limit", "offset"])?;
    let (limit, offset) = page(&q)?;
    let rows = match q.get("call_id") {
        Some(c) if c.is_empty() => return Err(ApiError::bad("call_id", "must not be empty")),
        Some(c) => ctx.storage.recordings_for_call(c).await,
        None => ctx.storage.list_recordings(limit, offset).await,
    }
    .map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok().json(rows))
}

/// Serves a recording's file; `actix-files` answers `Range` requests (206 with the bytes asked,
/// 416 when unsatisfiable), `HEAD`, and conditional requests.
async fn recording_file(ctx: Ctx, id: web::Path<String>, req: HttpRequest) -> Reply {
    let id = id_param(&id)?;
    let rec = ctx
        .storage
        .recording(id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("id", format!("no recording {id}")))?;
    let gone = || ApiError::not_found("id", format!("the file of recording {id} is missing"));
    let path = std::path::Path::new(&rec.path);
    let path = if path.is_absolute() {
        path.to_path_buf()
    } else {
        ctx.recordings_dir.join(path)
    };
    // Only files below the recordings directory are served, whatever the index says.
    let root = ctx.recordings_dir.canonicalize().map_err(|_| gone())?;
    let real = path.canonicalize().map_err(|_| gone())?;
    if !real.starts_with(&root) {
        return Err(ApiError {
            status: 403,
            error: format!("recording {id} is outside the recordings directory"),
            field: Some("id".into()),
        });
    }
    let file = actix_files::NamedFile::open_async(&real)
        .await
        .map_err(|_| gone())?
        .use_etag(true)
        .use_last_modified(true);
    Ok(file.into_response(&req))
}

/// A SIP user as the API shows it (no HA1 hashes).
fn user_json(u: &switchboard_storage::UserRecord) -> serde_json::Value {
    json!({
        "username": u.username,
        "realm": u.realm,
        "display_name": u.display_name,
        "created_at_ms": u.created_at_ms,
    })
}

async fn users(ctx: Ctx, req: HttpRequest) -> Reply {
    query(&req, &[])?;
    let all = ctx.storage.list_users().await.map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok().json(all.iter().map(user_json).collect::<Vec<_>>()))
}

/// `POST /api/v1/users`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    username: String,
    password: String,
    #[serde(default)]
    realm: Option<String>,
    #[serde(default)]
    display_name: Option<String>,
}

/// The field a JSON decoding error is about: its path, or for a missing or unknown field at
/// the top the name serde quotes (`missing field \`password\``); `-` for the body as a whole.
fn field_of(path: &str, msg: &str) -> String {
    if path != "." {
        return path.to_string();
    }
    ["missing field `", "unknown field `"]
        .iter()
        .find_map(|p| {
            let rest = &msg[msg.find(p)? + p.len()..];
            Some(rest[..rest.find('`')?].to_string())
        })
        .unwrap_or_else(|| "-".into())
}

/// Refuses a name the digest HA1 cannot hold (empty, `:` or a control character).
fn check_name(field: &str, v: &str) -> Result<(), ApiError> {
    if v.is_empty() || v.len() > 128 {
        return Err(ApiError::bad(field, "must be 1 to 128 bytes"));
    }
    if v.chars()
        .any(|c| c == ':' || c.is_control() || c.is_whitespace())
    {
        return Err(ApiError::bad(
            field,
            "must not contain `:`, spaces or control characters",
        ));
    }
    Ok(())
}

async fn add_user(ctx: Ctx, b: web::Bytes) -> Reply {
    let mut de = serde_json::Deserializer::from_slice(&b);
    let u: NewUser = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        ApiError::bad(
            &field_of(&e.path().to_string(), &e.inner().to_string()),
            e.inner().to_string(),
        )
    })?;
    check_name("username", &u.username)?;
    let realm = u.realm.unwrap_or_else(|| ctx.realm.clone());
    check_name("realm", &realm)?;
    if u.password.is_empty() || u.password.len() > 256 {
        return Err(ApiError::bad("password", "must be 1 to 256 bytes"));
    }
    if u.display_name.as_ref().is_some_and(|d| d.len() > 256) {
        return Err(ApiError::bad("display_name", "must be at most 256 bytes"));
    }
    match ctx
        .storage
        .add_user(&u.username, &realm, &u.password, u.display_name.as_deref())
        .await
    {
        Ok(()) => {}
        Err(StorageError::Conflict { what, .. }) => {
            return Err(ApiError {
                status: 409,
                error: format!("{what} already exists"),
                field: Some("username".into()),
            })
        }
        Err(StorageError::Invalid { reason, .. }) => return Err(ApiError::bad("username", reason)),
        Err(e) => return Err(ApiError::internal(e)),
    }
    // event: user.created {username, realm}
    let stored = ctx
        .storage
        .get_user(&u.username, &realm)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::internal("the user vanished after being added"))?;
    Ok(HttpResponse::Created().json(user_json(&stored)))
}

async fn remove_user(ctx: Ctx, name: web::Path<String>, req: HttpRequest) -> Reply {
    let q = query(&req, &["realm"])?;
    let realm = q.get("realm").cloned().unwrap_or_else(|| ctx.realm.clone());
    if realm.is_empty() {
        return Err(ApiError::bad("realm", "must not be empty"));
    }
    if ctx
        .storage
        .remove_user(&name, &realm)
        .await
        .map_err(ApiError::internal)?
    {
        // event: user.removed {username, realm}
        Ok(HttpResponse::Ok().json(json!({"removed": name.as_str(), "realm": realm})))
    } else {
        Err(ApiError::not_found(
            "name",
            format!("no user {:?} in realm {realm:?}", name.as_str()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::field_of;

    #[test]
    fn decoding_errors_name_the_field() {
        assert_eq!(field_of("username", "invalid type"), "username");
        let m = "missing field `password` at line 1 column 16";
        assert_eq!(field_of(".", m), "password");
        let m = "unknown field `admin`, expected one of `username`";
        assert_eq!(field_of(".", m), "admin");
        assert_eq!(field_of(".", "EOF while parsing"), "-");
    }
}
