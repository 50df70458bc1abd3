//! The HTTP server: `/health`, `/metrics` (Prometheus text format) and, when the contact
//! centre runs, its REST API and agent-desktop WebSockets under `/api/v1`
//! ([`crate::contact::api`]), the dialplan's status and reload (`/api/v1/dialplans`,
//! [`crate::dialplan::configure`]), the records and the OpenAPI document ([`crate::api`]),
//! call control (`/api/v1/calls`, [`crate::calls_api::configure`]), the live dashboard at `/`
//! ([`crate::dashboard`]), the reports (`/api/v1/reports`, [`crate::reports::api`]), web chat
//! ([`crate::chat`]), the CRM ([`crate::crm::api`]) and the event stream (`/api/v1/events`,
//! [`crate::events::api`]).
//! Every `/api/v1` request passes the token check of [`crate::api::auth`].
//!
//! It runs on its own actix-web system thread so that HTTP load never competes with the SIP
//! shards' runtime.

use actix_web::{web, App, HttpResponse, HttpServer};
use std::net::{SocketAddr, TcpListener};
use std::time::Instant;
use switchboard_engine::metrics::Metrics;

use crate::contact::ContactCentre;

/// What the handlers read.
struct State {
    metrics: Metrics,
    started: Instant,
}

/// What the HTTP routes serve: one handle per area.
pub struct HttpServices {
    /// The contact centre, when it runs.
    pub contact: Option<ContactCentre>,
    /// The dialplans (status and reload).
    pub dialplans: std::sync::Arc<crate::dialplan::Dialplans>,
    /// Trunks and bans.
    pub trunks: std::sync::Arc<crate::trunk::Trunks>,
    /// Authentication and the records.
    pub api: crate::api::Api,
    /// Live calls.
    pub calls: crate::calls_api::CallDirectory,
    /// Where scheduled reports are written.
    pub reports: crate::reports::api::ReportsDir,
    /// Contacts, tickets, CSAT and search.
    pub crm: crate::crm::Crm,
    /// The event stream.
    pub events: crate::events::Events,
}

/// Binds `listen` now (so a bind error is reported before start-up continues) and serves on a
/// dedicated thread.
pub fn spawn(
    listen: SocketAddr,
    metrics: Metrics,
    services: HttpServices,
) -> std::io::Result<SocketAddr> {
    let HttpServices {
        contact,
        dialplans,
        trunks,
        api,
        calls,
        reports,
        crm,
        events,
    } = services;
    let listener = TcpListener::bind(listen)
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot bind HTTP {listen}: {e}")))?;
    let bound = listener.local_addr()?;
    let state = web::Data::new(State {
        metrics,
        started: Instant::now(),
    });
    std::thread::Builder::new()
        .name("http".into())
        .spawn(move || {
            let sys = actix_web::rt::System::new();
            let server = HttpServer::new(move || {
                let contact = contact.clone();
                let dialplans = dialplans.clone();
                let trunks = trunks.clone();
                let api = api.clone();
                let calls = calls.clone();
                let reports = reports.clone();
                let crm = crm.clone();
                let events = events.clone();
                App::new()
                    .wrap(actix_web::middleware::from_fn(crate::api::auth::middleware))
                    .app_data(api.auth.clone())
                    .app_data(state.clone())
                    .route("/health", web::get().to(health))
                    .route("/metrics", web::get().to(metrics_text))
                    // Before any `/api/v1` scope, which would shadow these routes.
                    .configure(move |cfg| crate::calls_api::configure(cfg, calls))
                    .configure(crate::dashboard::configure)
                    .configure(move |cfg| crate::dialplan::configure(cfg, dialplans))
                    .configure(move |cfg| crate::trunk::api::configure(cfg, trunks))
                    // Before the contact centre's `/api/v1` scope, which would shadow it.
                    .configure(move |cfg| crate::api::configure(cfg, api.records))
                    .configure(crate::chat::configure)
                    .configure(crate::webrtc::configure)
                    .configure(move |cfg| crate::crm::api::configure(cfg, crm))
                    .configure(move |cfg| crate::events::api::configure(cfg, events))
                    .configure(move |cfg| {
                        if let Some(cc) = contact {
                            cfg.app_data(web::Data::new(cc));
                            crate::reports::api::configure(cfg, reports);
                            crate::contact::api::configure(cfg);
                        }
                    })
            })
            .on_connect(crate::events::api::record_socket)
            .workers(1)
            .disable_signals()
            .listen(listener);
            match server {
                Ok(s) => {
                    if let Err(e) = sys.block_on(s.run()) {
                        tracing::error!(error = %e, "HTTP server stopped");
                    }
                }
                Err(e) => tracing::error!(error = %e, "HTTP server failed to start"),
            }
        })?;
    Ok(bound)
}

async fn health(state: web::Data<State>) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": state.started.elapsed().as_secs(),
    }))
}

async fn metrics_text(state: web::Data<State>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.encode())
}
