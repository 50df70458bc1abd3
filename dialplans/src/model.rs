//! The parsed plan: contexts, rules, conditions and action trees.
//!
//! Action lists are stored in an arena of [`Block`]s; a nested list (a branch case, a dial
//! fallback) knows the action that owns it, so when it ends execution resumes after its owner.

use crate::command::{Method, Strategy};
use crate::diag::Pos;
use crate::pattern::PatternSet;
use crate::template::Template;
use crate::time::{Calendar, WeekSpec};
use chrono_tz::Tz;
use std::collections::HashMap;

/// A validated dialplan, ready for [`crate::Session`]s. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Plan {
    pub(crate) file: String,
    pub(crate) timezone: Tz,
    pub(crate) prompt_dir: Option<(String, Option<Pos>)>,
    pub(crate) vars: Vec<(String, Template)>,
    pub(crate) calendars: Vec<Calendar>,
    pub(crate) contexts: Vec<Context>,
    pub(crate) blocks: Vec<Block>,
}

impl Plan {
    /// The file the plan was read from.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The plan's `prompt_dir` as written (relative to the plan file), if it has one.
    pub fn prompt_dir(&self) -> Option<&str> {
        self.prompt_dir.as_ref().map(|(d, _)| d.as_str())
    }

    /// The plan's default time zone (rule `time` conditions use it).
    pub fn timezone(&self) -> Tz {
        self.timezone
    }

    /// Names of the contexts, in file order.
    pub fn context_names(&self) -> impl Iterator<Item = &str> {
        self.contexts.iter().map(|c| c.name.as_str())
    }

    /// A calendar by name.
    pub fn calendar(&self, name: &str) -> Option<&Calendar> {
        self.calendars.iter().find(|c| c.name == name)
    }

    pub(crate) fn context_index(&self, name: &str) -> Option<usize> {
        self.contexts.iter().position(|c| c.name == name)
    }
}

/// A named set of rules, chosen by the call's source.
#[derive(Debug)]
pub(crate) struct Context {
    pub(crate) name: String,
    pub(crate) trunks: Vec<String>,
    pub(crate) groups: Vec<String>,
    pub(crate) rules: Vec<Rule>,
    /// Labels and rule names, targets of `goto`.
    pub(crate) names: HashMap<String, Named>,
}

/// What a name in a context designates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Named {
    Label(Loc),
    Rule(usize),
}

/// One rule: conditions and the actions run when they all hold.
#[derive(Debug)]
pub(crate) struct Rule {
    pub(crate) name: Option<String>,
    pub(crate) pos: Option<Pos>,
    pub(crate) conds: Conditions,
    pub(crate) body: BlockId,
}

/// The conditions of a rule; an absent condition always holds.
#[derive(Debug, Default)]
pub(crate) struct Conditions {
    pub(crate) called: Option<PatternSet>,
    pub(crate) calling: Option<PatternSet>,
    pub(crate) trunks: Vec<String>,
    pub(crate) groups: Vec<String>,
    /// Lower-case header name and the patterns its value must match.
    pub(crate) headers: Vec<(String, PatternSet)>,
    /// Any of these, in the plan's time zone.
    pub(crate) times: Vec<WeekSpec>,
    pub(crate) open: Option<usize>,
    pub(crate) closed: Option<usize>,
    /// Source text of the time specs, for comparisons.
    pub(crate) time_src: Vec<String>,
}

/// An action list in the arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum BlockId {
    /// A list of the plan file.
    Plan(u32),
    /// A list of the last webhook answer (owned by the session).
    Answer(u32),
}

/// A place in an action list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Loc {
    pub(crate) block: BlockId,
    pub(crate) index: usize,
}

/// An action list.
#[derive(Debug, Default)]
pub(crate) struct Block {
    pub(crate) steps: Vec<Step>,
    /// The action owning this list; `None` for a rule body or a webhook answer.
    pub(crate) parent: Option<Loc>,
    /// Index of the context the list belongs to (`None` in webhook answers).
    pub(crate) context: Option<usize>,
}

/// An action and where it was written.
#[derive(Debug)]
pub(crate) struct Step {
    pub(crate) action: Action,
    pub(crate) pos: Option<Pos>,
}

/// Source of a `play`.
#[derive(Clone, Debug)]
pub(crate) enum MediaT {
    File(Template),
    Url(Template),
}

/// Prompt of a `gather`.
#[derive(Clone, Debug)]
pub(crate) enum PromptT {
    Play(MediaT),
    Say(Template, Option<Template>),
}

/// One dial destination.
#[derive(Clone, Debug)]
pub(crate) enum TargetT {
    User(Template),
    Trunk(Template, Template),
    Route(Template, Template),
    Uri(Template),
}

/// A `record_session` operation as written.
#[derive(Clone, Debug)]
pub(crate) enum RecordSessionT {
    Start(Template),
    Stop,
    Pause,
    Resume,
}

/// One action as written, before interpolation.
#[derive(Debug)]
pub(crate) enum Action {
    Answer,
    Echo,
    Hangup {
        code: Option<u16>,
        cause: Option<Template>,
        reason: Option<Template>,
    },
    Play {
        media: MediaT,
        loops: u32,
    },
    Say {
        text: Template,
        voice: Option<Template>,
    },
    Gather {
        prompt: Option<PromptT>,
        min: u32,
        max: u32,
        timeout: u32,
        terminator: Option<char>,
        speech: Option<(Vec<String>, Option<Template>)>,
    },
    Record {
        to: Template,
        max_secs: u32,
        beep: bool,
        terminator: Option<char>,
    },
    Dial {
        targets: Vec<TargetT>,
        strategy: Strategy,
        timeout: u32,
        caller_id: Option<Template>,
        on_failure: Option<BlockId>,
        /// `record:` starts the whole-call recording to this path before dialing.
        record: Option<Template>,
    },
    Queue {
        name: Template,
        priority: i64,
        attributes: Vec<(String, Template)>,
        callback_digit: Option<char>,
    },
    Monitor {
        agent: Template,
        mode: crate::command::MonitorMode,
    },
    Transfer {
        to: Template,
        attended: bool,
    },
    /// The post-call survey: question, re-prompts, thanks (`None`: the defaults).
    Csat {
        prompt: Option<PromptT>,
        invalid: Option<PromptT>,
        no_input: Option<PromptT>,
        /// `Some(None)`: `thanks: none`, no thank-you.
        thanks: Option<Option<PromptT>>,
        timeout: u32,
        tries: u32,
    },
    RecordSession(RecordSessionT),
    Set(Vec<(String, Template)>),
    Branch {
        on: Template,
        cases: Vec<(Vec<String>, BlockId)>,
        no_input: Option<BlockId>,
        default: Option<BlockId>,
    },
    Goto {
        context: Option<String>,
        name: Option<String>,
        max: Option<u32>,
        otherwise: Option<BlockId>,
    },
    Webhook {
        url: Template,
        method: Method,
        on_error: Option<BlockId>,
    },
    BusinessHours {
        calendar: usize,
        open: Option<BlockId>,
        closed: Option<BlockId>,
    },
    /// A `goto` target; does nothing when run.
    Label,
}
