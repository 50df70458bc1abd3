//! The HTTP server: `/health` and `/metrics` (Prometheus text format).
//!
//! It runs on its own actix-web system thread so that HTTP load never competes with the SIP
//! shards' runtime.

use actix_web::{web, App, HttpResponse, HttpServer};
use std::net::{SocketAddr, TcpListener};
use std::time::Instant;
use switchboard_engine::metrics::Metrics;

/// What the handlers read.
struct State {
    metrics: Metrics,
    started: Instant,
}

/// Binds `listen` now (so a bind error is reported before start-up continues) and serves on a
/// dedicated thread.
pub fn spawn(listen: SocketAddr, metrics: Metrics) -> std::io::Result<SocketAddr> {
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
                App::new()
                    .app_data(state.clone())
                    .route("/health", web::get().to(health))
                    .route("/metrics", web::get().to(metrics_text))
            })
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
