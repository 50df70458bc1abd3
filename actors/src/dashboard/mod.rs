//! The live dashboard, served at `/`: one HTML page with hand-written JavaScript and CSS
//! embedded in the binary (no build step, nothing fetched from elsewhere). The page reads the
//! REST API and follows the event stream (`/api/v1/events`), polling the API every 2 s while the
//! stream is unavailable; it asks for an API token when auth is on and keeps it in the browser's
//! localStorage. The page itself is public: everything it shows comes from authenticated API
//! calls.

use actix_web::{web, HttpResponse};

const INDEX: &str = include_str!("static/index.html");
const APP_JS: &str = include_str!("static/app.js");
const APP_CSS: &str = include_str!("static/app.css");

/// Registers `/`, `/dashboard/app.js` and `/dashboard/app.css`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/",
        web::get().to(|| page(INDEX, "text/html; charset=utf-8")),
    )
    .route(
        "/dashboard/app.js",
        web::get().to(|| page(APP_JS, "text/javascript; charset=utf-8")),
    )
    .route(
        "/dashboard/app.css",
        web::get().to(|| page(APP_CSS, "text/css; charset=utf-8")),
    );
}

async fn page(body: &'static str, content_type: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header((
            "Content-Security-Policy",
            "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' blob: data:",
        ))
        .body(body)
}
