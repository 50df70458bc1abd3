//! The reports REST API (JSON errors `{"error", "field"}` like the rest of `/api/v1`).
//!
//! | Route | |
//! |---|---|
//! | `GET /api/v1/reports` | the reports, periods and the generated (scheduled) files |
//! | `GET /api/v1/reports/{report}?period=day｜week｜month&from=&to=&sl_secs=&format=json｜csv｜svg` | one report; `Accept: text/csv` or `image/svg+xml` also select the format |
//! | `GET /api/v1/reports/files/{name}` | a generated file |
//!
//! `from` / `to` are epoch milliseconds, dates (`2026-11-24`, UTC; `to` then includes that day)
//! or RFC 3339 instants. Without `to` the report ends now (the router's clock); without `from`
//! it starts 7 days, 4 weeks or 3 months back (whole periods).

use super::period::{date_of, ms_of, parse_bound};
use super::{generate, render, schedule, Names, Period, Query, ReportError, ReportKind};
use crate::contact::{ContactCentre, ContactError, Request};
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use std::collections::HashMap;
use std::path::PathBuf;

/// Where scheduled reports are written (the `reports` folder of the data directory).
#[derive(Clone, Debug)]
pub struct ReportsDir(pub PathBuf);

type Reply = Result<HttpResponse, ContactError>;

/// Registers the routes (full paths, so they sit beside the other `/api/v1` routes). Call it
/// before a `web::scope("/api/v1")` is registered. The app must hold a
/// `web::Data<ContactCentre>`.
pub fn configure(cfg: &mut web::ServiceConfig, dir: ReportsDir) {
    cfg.app_data(web::Data::new(dir))
        .route("/api/v1/reports", web::get().to(index))
        .route("/api/v1/reports/files/{name}", web::get().to(file))
        .route("/api/v1/reports/{report}", web::get().to(report));
}

async fn index(dir: web::Data<ReportsDir>) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({
        "reports": ReportKind::ALL.map(|k| serde_json::json!({
            "name": k.as_str(),
            "title": k.title(),
            "columns": super::compute::columns(k),
        })),
        "periods": ["day", "week", "month"],
        "formats": ["json", "csv", "svg"],
        "files": schedule::list(&dir.0),
    }))
}

async fn file(dir: web::Data<ReportsDir>, name: web::Path<String>) -> Reply {
    let name = name.into_inner();
    let Some((_, _, _, format)) = schedule::parse_name(&name) else {
        return Err(ContactError::not_found(
            "name",
            &format!("report file `{name}`"),
        ));
    };
    let body = std::fs::read(dir.0.join(&name))
        .map_err(|_| ContactError::not_found("name", &format!("report file `{name}`")))?;
    Ok(HttpResponse::Ok()
        .content_type(content_type(format))
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}\""),
        ))
        .body(body))
}

fn content_type(format: &str) -> &'static str {
    match format {
        "csv" => "text/csv; charset=utf-8",
        "svg" => "image/svg+xml",
        _ => "application/json",
    }
}

/// The response format: `format=` wins, then the Accept header, then JSON.
fn format_of(req: &HttpRequest, q: &HashMap<String, String>) -> Result<&'static str, ContactError> {
    if let Some(f) = q.get("format") {
        return match f.as_str() {
            "json" => Ok("json"),
            "csv" => Ok("csv"),
            "svg" => Ok("svg"),
            _ => Err(ContactError::bad("format", "json, csv or svg")),
        };
    }
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    Ok(if accept.contains("text/csv") {
        "csv"
    } else if accept.contains("image/svg+xml") {
        "svg"
    } else {
        "json"
    })
}

/// Parses the query of `GET /api/v1/reports/{report}`; `now` is the router's clock.
pub fn parse_query(
    kind: ReportKind,
    q: &HashMap<String, String>,
    now: u64,
    default_sl_secs: u64,
) -> Result<Query, ContactError> {
    for k in q.keys() {
        if !["period", "from", "to", "sl_secs", "format"].contains(&k.as_str()) {
            return Err(ContactError::bad(k, "unknown parameter"));
        }
    }
    let period = match q.get("period") {
        None => Period::Day,
        Some(p) => {
            Period::parse(p).ok_or_else(|| ContactError::bad("period", "day, week or month"))?
        }
    };
    let bound = |k: &str, end: bool| -> Result<Option<u64>, ContactError> {
        q.get(k)
            .map(|v| {
                parse_bound(v, end).ok_or_else(|| {
                    ContactError::bad(k, "epoch milliseconds, a date (YYYY-MM-DD) or RFC 3339")
                })
            })
            .transpose()
    };
    let to = bound("to", true)?.unwrap_or(now.saturating_add(1));
    let from = match bound("from", false)? {
        Some(f) => f,
        None => {
            let mut start = period.start_of(date_of(to.saturating_sub(1)));
            for _ in 1..period.default_count() {
                start = period.prev(start).unwrap_or(start);
            }
            ms_of(start)
        }
    };
    if from > to {
        return Err(ContactError::bad("from", "must not be after `to`"));
    }
    let sl_secs = match q.get("sl_secs") {
        None => default_sl_secs,
        Some(s) => s
            .parse::<u64>()
            .ok()
            .filter(|s| *s <= 86_400)
            .ok_or_else(|| ContactError::bad("sl_secs", "seconds, 0 to 86400"))?,
    };
    Ok(Query {
        kind,
        period,
        from,
        to,
        service_level_ms: sl_secs * 1000,
    })
}

async fn report(cc: web::Data<ContactCentre>, kind: web::Path<String>, req: HttpRequest) -> Reply {
    let kind = ReportKind::parse(&kind).ok_or_else(|| {
        ContactError::not_found(
            "report",
            &format!("report `{kind}` (agents, queues, volume)"),
        )
    })?;
    let q = web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .map_err(|e| ContactError::bad("query", &e.to_string()))?
        .into_inner();
    let format = format_of(&req, &q)?;
    let names = cc.request(Request::Names).await?;
    let now = names["now"].as_u64().unwrap_or(0);
    let query = parse_query(kind, &q, now, cc.settings().service_level_secs)?;
    cc.flush().await;
    let report = generate(cc.storage(), &Names::from_json(&names), &query)
        .await
        .map_err(|e| match e {
            ReportError::Bad(field, why) => ContactError::bad(field, &why),
            ReportError::Storage(e) => ContactError {
                status: 500,
                error: e.to_string(),
                field: None,
            },
        })?;
    let name = format!(
        "{}-{}-{}",
        kind.as_str(),
        query.period.as_str(),
        report.buckets.first().map_or("empty", |b| b.label.as_str())
    );
    Ok(match format {
        "csv" => HttpResponse::Ok()
            .content_type(content_type("csv"))
            .insert_header((
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}.csv\""),
            ))
            .body(render::csv(&report)),
        "svg" => HttpResponse::Ok().content_type(content_type("svg")).body(
            render::svg(&report).map_err(|e| ContactError {
                status: 500,
                error: e.to_string(),
                field: None,
            })?,
        ),
        _ => HttpResponse::Ok().json(report.to_json()),
    })
}
