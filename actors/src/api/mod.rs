//! The control plane's cross-cutting parts of the REST API: token authentication with roles
//! ([`auth`]), the OpenAPI document ([`openapi`]) and the record endpoints over storage
//! ([`records`]: registrations, CDRs, recordings, SIP users).

pub mod auth;
pub mod openapi;
pub mod records;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse, ResponseError};
use std::path::PathBuf;
use switchboard_storage::Storage;

/// What the record endpoints need.
#[derive(Clone)]
pub struct ApiContext {
    /// The database.
    pub storage: Storage,
    /// Where recordings are written (downloads are served from below it only).
    pub recordings_dir: PathBuf,
    /// The default digest realm for SIP users.
    pub realm: String,
}

/// What `crate::http` needs from this module: the record endpoints' context and the token
/// table (shared by the HTTP workers).
#[derive(Clone)]
pub struct Api {
    /// The record endpoints' context.
    pub records: ApiContext,
    /// The token table the middleware checks.
    pub auth: web::Data<auth::Auth>,
}

/// A 4xx/5xx answer `{"error": …, "field": …}`.
#[derive(Debug, serde::Serialize)]
pub struct ApiError {
    /// The HTTP status.
    #[serde(skip)]
    pub status: u16,
    /// What is wrong.
    pub error: String,
    /// The input field at fault, if one is.
    pub field: Option<String>,
}

impl ApiError {
    /// 400 naming `field`.
    pub fn bad(field: &str, error: impl Into<String>) -> ApiError {
        ApiError {
            status: 400,
            error: error.into(),
            field: Some(field.into()),
        }
    }

    /// 404 naming `field`.
    pub fn not_found(field: &str, error: impl Into<String>) -> ApiError {
        ApiError {
            status: 404,
            error: error.into(),
            field: Some(field.into()),
        }
    }

    /// 500 (a storage failure).
    pub fn internal(e: impl std::fmt::Display) -> ApiError {
        ApiError {
            status: 500,
            error: e.to_string(),
            field: None,
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.error)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code()).json(self)
    }
}

/// Registers the OpenAPI document and the record routes (full `/api/v1/…` paths). Call it
/// before any `web::scope("/api/v1")`, which would otherwise answer 404 for these paths.
pub fn configure(cfg: &mut web::ServiceConfig, ctx: ApiContext) {
    cfg.app_data(web::Data::new(ctx))
        .route("/api/v1/openapi.json", web::get().to(openapi::serve));
    records::configure(cfg);
}

/// Builds the token table from the configuration (inline, `tokens_file`, the environment) and
/// logs the mode; an unreadable tokens file is an error.
pub fn auth_from_config(
    c: &switchboard_engine::api_config::ApiConfig,
) -> Result<auth::Auth, String> {
    let env = std::env::var(switchboard_engine::api_config::TOKEN_ENV).ok();
    let tokens = c.all_tokens(env.as_deref())?;
    if tokens.is_empty() {
        tracing::warn!("no API token configured: /api/v1 is open to anyone who reaches the HTTP listener (development mode)");
    } else {
        tracing::info!(tokens = tokens.len(), "API token authentication on");
    }
    Ok(auth::Auth::new(tokens, c.public_paths.clone()))
}
