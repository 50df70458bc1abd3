//! Scenarios from a file, as SIPp's XML scenarios and `-inf` CSV injection, in TOML
//! (`switchboard load uac|uas --scenario-file FILE [--inf FILE]`; the format is described in
//! `load-tests/SCENARIOS.md`).
//!
//! Code map:
//! * [`template`]: message templates with SIPp-style `[variables]`;
//! * [`parse`]: the TOML file into a checked [`Scenario`], errors with line and column;
//! * [`inf`]: the CSV injection file ([`Injection`]);
//! * [`digest`]: answering 401/407 challenges (hashing with `switchboard_engine::auth`);
//! * [`uac`]: [`ScriptedUac`], the [`Agent`](crate::agent::Agent) running one script
//!   instance per call over the engine's transaction layer;
//! * [`uas`]: [`ScriptedUas`], the same engine in the answering role (`switchboard load uas
//!   --scenario-file FILE`): a call opens on the request the first step expects.
//!
//! [`Script`] ties a scenario to its injection file and collects failure reasons for the
//! report.

pub mod digest;
pub mod inf;
pub mod parse;
pub mod template;
pub mod uac;
pub mod uas;

pub use inf::{Injection, Order};
pub use parse::{Scenario, Step};
pub use uac::{ScriptConfig, ScriptedUac};
pub use uas::{ScriptUasConfig, ScriptedUas};

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// An error in a scenario or injection file, placed at a line and column (1-based; 0 when
/// the file could not be read at all).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptError {
    /// The file, when known.
    pub file: Option<PathBuf>,
    /// Line number.
    pub line: usize,
    /// Column number, in characters.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl ScriptError {
    /// The same error, naming `file`.
    pub fn in_file(mut self, file: &Path) -> ScriptError {
        self.file = Some(file.to_path_buf());
        self
    }
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self
            .file
            .as_ref()
            .map_or_else(|| "scenario".to_string(), |p| p.display().to_string());
        if self.line == 0 {
            write!(f, "{file}: {}", self.message)
        } else {
            write!(f, "{file}:{}:{}: {}", self.line, self.column, self.message)
        }
    }
}

impl std::error::Error for ScriptError {}

/// A scenario with its injection file, shared by every worker; it also counts why calls
/// failed, by reason label.
#[derive(Debug)]
pub struct Script {
    scenario: Scenario,
    injection: Option<Injection>,
    failures: Mutex<BTreeMap<String, u64>>,
}

impl Script {
    /// Reads and checks a scenario file and, if given, an injection file.
    pub fn load(scenario: &Path, inf: Option<&Path>) -> Result<Script, ScriptError> {
        let text = std::fs::read_to_string(scenario).map_err(|e| ScriptError {
            file: Some(scenario.to_path_buf()),
            line: 0,
            column: 0,
            message: format!("reading the scenario: {e}"),
        })?;
        let sc = parse::parse(&text).map_err(|e| e.in_file(scenario))?;
        let injection = inf.map(Injection::load).transpose()?;
        Script::new(sc, injection).map_err(|e| match e.file {
            Some(_) => e,
            None => e.in_file(scenario),
        })
    }

    /// Checks that every `[fieldN]` the scenario uses exists on every injection line.
    pub fn new(scenario: Scenario, injection: Option<Injection>) -> Result<Script, ScriptError> {
        if let Some((n, line, column)) = scenario.fields_used {
            match &injection {
                None => {
                    return Err(ScriptError {
                        file: None,
                        line,
                        column,
                        message: format!("`[field{n}]` needs an injection file (--inf FILE)"),
                    })
                }
                Some(inf) => {
                    if let Some((l, count)) = inf.short_line(n + 1) {
                        return Err(ScriptError {
                            file: None,
                            line,
                            column,
                            message: format!(
                                "`[field{n}]` is used but line {l} of the injection file has {count} field(s)"
                            ),
                        });
                    }
                }
            }
        }
        Ok(Script {
            scenario,
            injection,
            failures: Mutex::new(BTreeMap::new()),
        })
    }

    /// Parses scenario text (no injection file).
    pub fn from_toml(text: &str) -> Result<Script, ScriptError> {
        Script::new(parse::parse(text)?, None)
    }

    /// The scenario.
    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    /// The injection file, if any.
    pub fn injection(&self) -> Option<&Injection> {
        self.injection.as_ref()
    }

    /// How long one call takes at least: its pauses (a bound for the run's grace time).
    pub fn nominal_duration(&self) -> Duration {
        self.scenario
            .steps
            .iter()
            .map(|s| match s {
                Step::Pause(d) => *d,
                _ => Duration::ZERO,
            })
            .sum()
    }

    /// Failed calls by reason label (`step 4: expected 200, got 486`, `transaction
    /// timeout`…), summed over every worker.
    pub fn failure_reasons(&self) -> BTreeMap<String, u64> {
        self.failures.lock().map(|m| m.clone()).unwrap_or_default()
    }

    fn note_failure(&self, label: &str) {
        if let Ok(mut m) = self.failures.lock() {
            *m.entry(label.to_string()).or_default() += 1;
        }
    }
}
