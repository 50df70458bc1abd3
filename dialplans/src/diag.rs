//! Diagnostics: what is wrong with a plan, and where.

use std::fmt;

/// A position in a source file: 1-based line and 1-based column (counted in characters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pos {
    /// Line, starting at 1.
    pub line: u32,
    /// Column, starting at 1, in characters.
    pub col: u32,
}

impl Pos {
    /// Builds a position from a 1-based line and column.
    pub fn new(line: u32, col: u32) -> Self {
        Pos { line, col }
    }
}

/// The class of a [`Diagnostic`], for programs and tests that match on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DiagKind {
    /// The file cannot be read.
    Io,
    /// The file is not well-formed YAML (or JSON for a webhook answer).
    Syntax,
    /// A key that this place does not accept.
    UnknownKey,
    /// A key that this place requires is absent.
    MissingKey,
    /// The same key or name is given twice.
    Duplicate,
    /// A value of the wrong type or out of range.
    BadValue,
    /// An action name that does not exist.
    UnknownAction,
    /// A number pattern (`_NXX.`, `~regex`) that does not compile.
    BadPattern,
    /// A `${…}` interpolation that does not parse.
    BadTemplate,
    /// A rule that an earlier rule of the same context always shadows.
    UnreachableRule,
    /// A prompt file that does not exist in the prompt directory.
    MissingPrompt,
    /// A `goto` to a label or rule that does not exist.
    UnknownLabel,
    /// A `goto` to a context that does not exist.
    UnknownContext,
    /// A `goto` cycle in which no action waits for the caller or ends the call.
    LoopWithoutExit,
    /// A day, hour, date or time zone that does not parse.
    BadTimeSpec,
    /// A reference to a calendar that is not defined.
    UnknownCalendar,
}

/// One problem found in a plan: file, optional position, class and a human message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file name as given to the parser (or `webhook answer`).
    pub file: String,
    /// Where the problem is; `None` when the source has no positions (JSON webhook answers).
    pub pos: Option<Pos>,
    /// The class of the problem.
    pub kind: DiagKind,
    /// What is wrong, in words.
    pub message: String,
}

impl Diagnostic {
    /// Line of the problem, 0 when unknown.
    pub fn line(&self) -> u32 {
        self.pos.map_or(0, |p| p.line)
    }

    /// Column of the problem, 0 when unknown.
    pub fn col(&self) -> u32 {
        self.pos.map_or(0, |p| p.col)
    }
}

impl fmt::Display for Diagnostic {
    /// `file:line:col: message`, or `file: message` when there is no position.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pos {
            Some(p) => write!(f, "{}:{}:{}: {}", self.file, p.line, p.col, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for Diagnostic {}

/// Collects diagnostics for one source file.
#[derive(Debug)]
pub(crate) struct Sink {
    file: String,
    pub(crate) diags: Vec<Diagnostic>,
}

impl Sink {
    pub(crate) fn new(file: impl Into<String>) -> Self {
        Sink {
            file: file.into(),
            diags: Vec::new(),
        }
    }

    pub(crate) fn error(&mut self, pos: Option<Pos>, kind: DiagKind, message: impl Into<String>) {
        self.diags.push(Diagnostic {
            file: self.file.clone(),
            pos,
            kind,
            message: message.into(),
        });
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.diags.is_empty()
    }
}
