//! The Switchboard dialplan language: a YAML file of contexts and rules, a validator with
//! `file:line:col` diagnostics, and a pure evaluator.
//!
//! * [`check`] reads and validates a plan file (the only I/O here: the file itself and the
//!   existence of the prompt files it names);
//! * [`parse_str`] does the same from memory, without file-system checks;
//! * [`Session`] walks one call through a [`Plan`]: feed it [`Event`]s, carry out the
//!   [`Decision`]s it returns;
//! * [`parse_actions_json`] reads a webhook's answer, a JSON list of the same actions.
//!
//! The format is described in `dialplans/FORMAT.md`.

#![warn(missing_docs)]

mod command;
mod diag;
mod eval;
mod model;
mod node;
mod parse;
mod pattern;
mod route;
mod survey;
mod template;
mod time;
mod validate;
mod webhook;

pub use command::{
    Command, DialTarget, Gather, Media, Method, MonitorMode, Prompt, RecordSessionOp, Speech,
    Strategy,
};
pub use diag::{DiagKind, Diagnostic, Pos};
pub use eval::{
    Decision, EndReason, Event, Session, DEFAULT_RECORD_SESSION_PATH, DEFAULT_STEP_LIMIT, MAX_VALUE,
};
pub use model::Plan;
pub use pattern::{Captures, Pattern};
pub use route::{CallFacts, Source};
pub use survey::{CsatSurvey, Outcome as SurveyOutcome, Survey, SurveyStep};
pub use template::{Template, TemplateError};
pub use time::{Calendar, Holiday, WeekSpec};
pub use webhook::{parse_actions_json, ActionList, WEBHOOK_FILE};

use diag::Sink;
use std::path::{Path, PathBuf};

/// Largest plan file accepted, in bytes.
const MAX_FILE: u64 = 16 << 20;

/// Options of [`check_with`].
#[derive(Clone, Debug, Default)]
pub struct CheckOptions {
    /// Where prompt files are looked for. When `None`: the plan's `prompt_dir` (relative to the
    /// plan file), else the plan file's own directory.
    pub prompt_dir: Option<PathBuf>,
}

/// Reads, parses and validates the plan at `path`, prompt files included; every problem found is
/// returned, not just the first.
pub fn check(path: impl AsRef<Path>) -> Result<Plan, Vec<Diagnostic>> {
    check_with(path, &CheckOptions::default())
}

/// [`check`] with options.
pub fn check_with(path: impl AsRef<Path>, options: &CheckOptions) -> Result<Plan, Vec<Diagnostic>> {
    let path = path.as_ref();
    let file = path.display().to_string();
    let mut sink = Sink::new(file.clone());
    let too_big = std::fs::metadata(path)
        .map(|m| m.len() > MAX_FILE)
        .unwrap_or(false);
    if too_big {
        sink.error(
            None,
            DiagKind::Io,
            format!("the file is larger than {MAX_FILE} bytes"),
        );
        return Err(sink.diags);
    }
    let src = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) => {
            sink.error(None, DiagKind::Io, format!("cannot read the file: {e}"));
            return Err(sink.diags);
        }
    };
    let plan = parse_str(&file, &src)?;
    let base = path.parent().unwrap_or(Path::new("."));
    let dir = match (&options.prompt_dir, &plan.prompt_dir) {
        (Some(d), _) => d.clone(),
        (None, Some((d, _))) => base.join(d),
        (None, None) => base.to_path_buf(),
    };
    validate::prompts(&plan, &dir, &mut sink);
    finish(plan, sink)
}

/// Parses and validates a plan held in memory; `file` names it in diagnostics. Prompt files are
/// not checked.
pub fn parse_str(file: &str, src: &str) -> Result<Plan, Vec<Diagnostic>> {
    let mut sink = Sink::new(file);
    let Some(mut plan) = parse::parse_plan(src, &mut sink) else {
        return Err(sink.diags);
    };
    plan.file = file.to_owned();
    let partial = !sink.is_empty();
    validate::validate(&plan, partial, &mut sink);
    finish(plan, sink)
}

/// The plan when nothing was reported, else the diagnostics in file order.
fn finish(plan: Plan, mut sink: Sink) -> Result<Plan, Vec<Diagnostic>> {
    if sink.is_empty() {
        return Ok(plan);
    }
    sink.diags.sort_by_key(|d| d.pos);
    Err(sink.diags)
}
