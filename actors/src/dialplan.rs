//! The dialplan in force, and its hot reload.
//!
//! [`Dialplans`] holds the current `Arc<Plan>`; every new call takes a clone of it, so a reload
//! never changes a call in progress (the evaluator keeps the `Arc` it started with). A reload
//! (file change seen by the watcher, or `POST /api/v1/dialplans/reload` behind
//! `switchboard dialplan reload`) parses and validates the file again and swaps the plan only if
//! it is clean: a bad file is refused with its diagnostics and the old plan stays in force.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use switchboard_dialplans::{check_with, parse_str, CheckOptions, Plan};
use switchboard_engine::config::DialplanConfig;

/// The demo plan compiled into the binary (`file = "builtin:demo"`).
pub const DEMO_PLAN: &str = include_str!("../../dialplans/examples/default.yaml");

/// Where the plan comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlanSource {
    /// No dialplan: calls go to the registered user of the Request-URI.
    None,
    /// The demo plan compiled into the binary.
    Builtin,
    /// A file.
    File(PathBuf),
}

/// The outcome of a reload.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ReloadReport {
    /// Whether the new plan is in force.
    pub loaded: bool,
    /// The plan's version (1 at start, +1 per successful reload).
    pub version: u64,
    /// `file:line:col: message` for every problem when refused.
    pub errors: Vec<String>,
}

/// The plan in force (see the module docs). Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Dialplans {
    source: PlanSource,
    prompt_dir: Option<PathBuf>,
    current: RwLock<Option<Arc<Plan>>>,
    version: AtomicU64,
    mtime: Mutex<Option<SystemTime>>,
}

impl Dialplans {
    /// Loads the configured plan. A plan with errors refuses to start (the diagnostics are the
    /// error), like a bad config file.
    pub fn load(cfg: &DialplanConfig) -> Result<Dialplans, Vec<String>> {
        let source = match cfg.file.as_str() {
            "" => PlanSource::None,
            "builtin:demo" => PlanSource::Builtin,
            f => PlanSource::File(PathBuf::from(f)),
        };
        let d = Dialplans {
            source,
            prompt_dir: cfg.prompt_dir.clone(),
            current: RwLock::new(None),
            version: AtomicU64::new(0),
            mtime: Mutex::new(None),
        };
        if d.source == PlanSource::None {
            return Ok(d);
        }
        let report = d.reload();
        if !report.loaded {
            return Err(report.errors);
        }
        Ok(d)
    }

    /// No dialplan at all (tests, pure B2BUA).
    pub fn none() -> Dialplans {
        Dialplans {
            source: PlanSource::None,
            prompt_dir: None,
            current: RwLock::new(None),
            version: AtomicU64::new(0),
            mtime: Mutex::new(None),
        }
    }

    /// The plan new calls start with (`None`: no dialplan configured).
    pub fn current(&self) -> Option<Arc<Plan>> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Where the plan comes from.
    pub fn source(&self) -> &PlanSource {
        &self.source
    }

    /// The version in force (0 without a plan).
    pub fn version(&self) -> u64 {
        self.version.load(Relaxed)
    }

    /// Where prompt files of the plan in force are looked for.
    pub fn prompt_dir(&self) -> PathBuf {
        if let Some(d) = &self.prompt_dir {
            return d.clone();
        }
        let base = match &self.source {
            PlanSource::File(f) => f.parent().unwrap_or(Path::new(".")).to_path_buf(),
            _ => PathBuf::from("."),
        };
        match self
            .current()
            .and_then(|p| p.prompt_dir().map(PathBuf::from))
        {
            Some(d) => base.join(d),
            None => base,
        }
    }

    /// Reads and validates the plan again; swaps it in only when it is clean.
    pub fn reload(&self) -> ReloadReport {
        let parsed = match &self.source {
            PlanSource::None => {
                return ReloadReport {
                    loaded: false,
                    version: 0,
                    errors: vec!["no dialplan is configured (dialplan.file is empty)".into()],
                }
            }
            PlanSource::Builtin => parse_str("builtin:demo", DEMO_PLAN),
            PlanSource::File(f) => {
                *self.mtime.lock().unwrap_or_else(PoisonError::into_inner) = modified(f);
                let options = CheckOptions {
                    prompt_dir: self.prompt_dir.clone(),
                };
                check_with(f, &options)
            }
        };
        match parsed {
            Ok(plan) => {
                *self.current.write().unwrap_or_else(PoisonError::into_inner) =
                    Some(Arc::new(plan));
                let version = self.version.fetch_add(1, Relaxed) + 1;
                tracing::info!(version, source = ?self.source, "dialplan loaded");
                ReloadReport {
                    loaded: true,
                    version,
                    errors: Vec::new(),
                }
            }
            Err(diags) => {
                let errors: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
                tracing::warn!(errors = ?errors, "dialplan refused; the previous plan stays in force");
                ReloadReport {
                    loaded: false,
                    version: self.version(),
                    errors,
                }
            }
        }
    }

    /// Reloads when the file's modification time changed since the last load.
    pub fn reload_if_changed(&self) -> Option<ReloadReport> {
        let PlanSource::File(f) = &self.source else {
            return None;
        };
        let now = modified(f);
        let last = *self.mtime.lock().unwrap_or_else(PoisonError::into_inner);
        (now.is_some() && now != last).then(|| self.reload())
    }

    /// Checks the file every `every` on the current tokio runtime (no-op without a file).
    pub fn watch(self: &Arc<Self>, every: Duration) {
        if every.is_zero() || !matches!(self.source, PlanSource::File(_)) {
            return;
        }
        let me = Arc::downgrade(self);
        actix_rt::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(d) = me.upgrade() else { return };
                // Parsing reads the file: keep it off the async threads.
                let _ = tokio::task::spawn_blocking(move || d.reload_if_changed()).await;
            }
        });
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// `POST /api/v1/dialplans/reload` (reload now; 200 with the report when loaded, 422 with the
/// diagnostics when refused) and `GET /api/v1/dialplans` (source and version in force).
pub fn configure(cfg: &mut actix_web::web::ServiceConfig, plans: Arc<Dialplans>) {
    use actix_web::{web, HttpResponse};
    let status = plans.clone();
    cfg.route(
        "/api/v1/dialplans/reload",
        web::post().to(move || {
            let plans = plans.clone();
            async move {
                let report = web::block(move || plans.reload()).await;
                match report {
                    Ok(r) if r.loaded => HttpResponse::Ok().json(r),
                    Ok(r) => HttpResponse::UnprocessableEntity().json(r),
                    Err(e) => HttpResponse::InternalServerError()
                        .json(serde_json::json!({ "error": e.to_string() })),
                }
            }
        }),
    )
    .route(
        "/api/v1/dialplans/check",
        web::post().to(|body: web::Bytes| async move { check_body(&body) }),
    )
    .route(
        "/api/v1/dialplans",
        web::get().to(move || {
            let plans = status.clone();
            async move {
                let source = match plans.source() {
                    PlanSource::None => "none".to_string(),
                    PlanSource::Builtin => "builtin:demo".to_string(),
                    PlanSource::File(f) => f.display().to_string(),
                };
                HttpResponse::Ok().json(serde_json::json!({
                    "source": source,
                    "version": plans.version(),
                }))
            }
        }),
    );
}

/// Largest plan `POST /api/v1/dialplans/check` reads.
const MAX_CHECK_BODY: usize = 1 << 20;

/// `POST /api/v1/dialplans/check`: parses and validates the plan in the body (YAML, as in a plan
/// file; prompt files are not looked at) without loading it. 200 `{"valid": true}`, else 422
/// with every diagnostic (`line`, `column`, `kind`, `message`).
fn check_body(body: &[u8]) -> actix_web::HttpResponse {
    use actix_web::HttpResponse;
    if body.len() > MAX_CHECK_BODY {
        return HttpResponse::PayloadTooLarge().json(serde_json::json!({
            "error": format!("a plan is at most {MAX_CHECK_BODY} bytes"), "field": "body",
        }));
    }
    let Ok(text) = std::str::from_utf8(body) else {
        return HttpResponse::BadRequest()
            .json(serde_json::json!({ "error": "the plan is not UTF-8", "field": "body" }));
    };
    match switchboard_dialplans::parse_str("body", text) {
        Ok(_) => HttpResponse::Ok().json(serde_json::json!({ "valid": true, "diagnostics": [] })),
        Err(diags) => {
            let list: Vec<serde_json::Value> = diags
                .iter()
                .map(|d| {
                    serde_json::json!({
                        "line": d.pos.map(|p| p.line),
                        "column": d.pos.map(|p| p.col),
                        "kind": format!("{:?}", d.kind).to_lowercase(),
                        "message": d.message,
                    })
                })
                .collect();
            let first = diags
                .first()
                .map_or_else(|| "invalid plan".to_string(), |d| d.to_string());
            HttpResponse::UnprocessableEntity().json(serde_json::json!({
                "valid": false, "error": first, "field": "body", "diagnostics": list,
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_plan_is_allowed() {
        let cfg = DialplanConfig {
            file: String::new(),
            ..DialplanConfig::default()
        };
        let d = Dialplans::load(&cfg).expect("no plan is a valid choice");
        assert!(d.current().is_none());
        assert_eq!(d.version(), 0);
    }

    #[test]
    fn demo_plan_is_valid() {
        let d = Dialplans::load(&DialplanConfig::default()).expect("the demo plan validates");
        assert_eq!(d.version(), 1);
        assert!(d.current().is_some());
    }

    #[test]
    fn bad_reload_keeps_the_old_plan() {
        let dir = tempfile::tempdir().expect("temp dir");
        let f = dir.path().join("plan.yaml");
        std::fs::write(&f, DEMO_PLAN).expect("write");
        let cfg = DialplanConfig {
            file: f.display().to_string(),
            ..DialplanConfig::default()
        };
        let d = Dialplans::load(&cfg).expect("valid");
        let before = d.current().expect("plan");
        std::fs::write(
            &f,
            "contexts:\n  default:\n    rules:\n      - actions: [ frobnicate ]\n",
        )
        .expect("write");
        let r = d.reload();
        assert!(!r.loaded);
        assert!(
            r.errors.iter().any(|e| e.contains("frobnicate")),
            "{:?}",
            r.errors
        );
        assert!(
            Arc::ptr_eq(&before, &d.current().expect("plan")),
            "old plan kept"
        );
        assert_eq!(d.version(), 1);
        std::fs::write(&f, DEMO_PLAN.replace("Switchboard", "Acme")).expect("write");
        assert!(d.reload().loaded);
        assert_eq!(d.version(), 2);
        assert!(!Arc::ptr_eq(&before, &d.current().expect("plan")));
    }
}
