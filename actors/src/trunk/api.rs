//! `GET /api/v1/trunks` and `GET /api/v1/trunks/{name}`: each trunk's limits and counters, its
//! gateways (up/down from the OPTIONS probes, calls in progress, failures) and its
//! registration (state, last response, time to expiry and to the next attempt).

use super::{lock, Trunk, Trunks};
use actix_web::{web, HttpResponse};
use std::sync::Arc;
use std::time::Instant;

/// Adds the trunk routes.
pub fn configure(cfg: &mut web::ServiceConfig, trunks: Arc<Trunks>) {
    cfg.app_data(web::Data::from(trunks))
        .route("/api/v1/trunks", web::get().to(list))
        .route("/api/v1/trunks/{name}", web::get().to(one))
        .route("/api/v1/bans", web::get().to(bans));
}

async fn bans(trunks: web::Data<Trunks>) -> HttpResponse {
    HttpResponse::Ok().json(trunks.bans_json(Instant::now()))
}

async fn list(trunks: web::Data<Trunks>) -> HttpResponse {
    let now = Instant::now();
    let all: Vec<_> = trunks.iter().map(|t| snapshot(t, now)).collect();
    HttpResponse::Ok().json(serde_json::json!({ "trunks": all }))
}

async fn one(trunks: web::Data<Trunks>, name: web::Path<String>) -> HttpResponse {
    match trunks.get(&name) {
        Some(t) => HttpResponse::Ok().json(snapshot(t, Instant::now())),
        None => HttpResponse::NotFound().json(serde_json::json!({ "error": "no such trunk" })),
    }
}

/// The JSON view of one trunk.
pub fn snapshot(t: &Trunk, now: Instant) -> serde_json::Value {
    let st = lock(&t.state);
    let probing = st.prober.is_some();
    let gateways: Vec<_> = t
        .gateways
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let h = st.prober.as_ref().and_then(|p| p.health(i));
            let c = st.gateways.get(i).cloned().unwrap_or_default();
            serde_json::json!({
                "address": g.address.to_string(),
                "priority": g.priority,
                "weight": g.weight,
                "up": h.is_none_or(|h| h.up),
                "probed": probing,
                "last_probe": h.and_then(|h| h.last.clone()),
                "probe_failures": h.map_or(0, |h| h.failures),
                "active_calls": c.active,
                "attempts": c.attempts,
                "failures": c.failures,
                "last_failure": c.last_failure,
            })
        })
        .collect();
    let a = &st.admission;
    serde_json::json!({
        "name": t.name,
        "strategy": t.config.strategy,
        "max_calls": t.config.max_calls,
        "max_cps": t.config.max_cps,
        "active_calls": a.active,
        "admitted": a.admitted,
        "refused_rate": a.refused_rate,
        "refused_calls": a.refused_calls,
        "inbound_calls": st.inbound_calls,
        "outbound_calls": st.outbound_calls,
        "up": gateways.iter().any(|g| g["up"] == true),
        "gateways": gateways,
        "registration": st.registration.as_ref().map(|r| r.status(now)),
    })
}
