//! The pure evaluator: a [`Session`] per call turns events into [`Decision`]s.
//!
//! Drive it like a sans-IO state machine: call [`Session::handle`] with `Event::Started`, carry
//! out the returned command, then call `handle` again with the event that command produced
//! (`ActionCompleted`, `DigitsGathered`…), until it returns [`Decision::End`]. No clock is read:
//! the caller passes `now` with every event.

mod render;

use crate::command::{Command, RecordSessionOp};
use crate::model::{Action, Block, BlockId, Loc, Named, Plan};
use crate::route::{CallFacts, Source};
use crate::template::Template;
use crate::webhook::{answer_label, answer_start, parse_actions_json, ActionList};
use chrono::{DateTime, FixedOffset};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Instant steps (set, branch, goto…) allowed while handling one event.
pub const DEFAULT_STEP_LIMIT: u32 = 1000;

/// Where `record_session: start` and `dial: { record: true }` write when no path is given
/// (relative to the recordings folder).
pub const DEFAULT_RECORD_SESSION_PATH: &str = "calls/${call_id:-call}.wav";

/// Longest value a variable or an interpolated string can take, in bytes.
pub const MAX_VALUE: usize = 8192;

/// What happened to the call since the last decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The call arrived; the first event of every session.
    Started,
    /// The last command finished (prompt played, bridge ended, queue left…).
    ActionCompleted,
    /// A gather ended with these digits.
    DigitsGathered {
        /// The digits, without the terminator.
        digits: String,
    },
    /// A gather ended with no input.
    GatherTimeout,
    /// A gather recognised speech.
    SpeechRecognised {
        /// The recognised text.
        text: String,
    },
    /// A dial failed with this SIP status (486 busy, 408/480 no answer…).
    DialFailed {
        /// SIP status code.
        code: u16,
    },
    /// A dial was answered and bridged; `ActionCompleted` follows when the bridge ends.
    DialAnswered,
    /// A recording was saved.
    RecordingDone {
        /// Where it was written.
        path: String,
    },
    /// A webhook answered with a JSON list of actions.
    WebhookAnswered {
        /// The body.
        json: String,
    },
    /// The caller hung up.
    Hangup,
}

/// Why a session ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// The actions ran out; the actor hangs up normally.
    Completed,
    /// The plan hung up (after the `Hangup` command).
    HungUp,
    /// The caller hung up.
    CallerHungUp,
    /// No context or rule matched the call.
    NoRoute,
    /// More instant steps than the limit while handling one event: a runaway loop.
    StepLimit,
    /// The plan could not go on (a `goto` whose target vanished).
    Error(String),
}

/// The evaluator's answer to an event.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Carry out this command, then report its outcome as an event.
    Execute(Command),
    /// Nothing new: keep doing what you are doing (after `DialAnswered`).
    Wait,
    /// The dialplan is finished with this call.
    End(EndReason),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    Fresh,
    Running,
    Ended(EndReason),
}

enum Jump {
    To(Loc, usize),
    Rematch(usize),
}

/// One call's walk through a plan: program counter, variables and loop counters.
#[derive(Debug)]
pub struct Session {
    plan: Arc<Plan>,
    facts: CallFacts,
    vars: BTreeMap<String, String>,
    context: usize,
    pc: Option<Loc>,
    awaiting: Option<Loc>,
    answer: Option<Arc<ActionList>>,
    goto_counts: HashMap<Loc, u32>,
    step_limit: u32,
    state: State,
    /// A session recording was started and not stopped since.
    recording_session: bool,
    /// The `dial` (with `record:`) whose recording start was sent: the dial itself is next.
    pre_dial: Option<Loc>,
}

fn start(id: BlockId) -> Loc {
    Loc {
        block: id,
        index: 0,
    }
}

fn next(loc: Loc) -> Loc {
    Loc {
        block: loc.block,
        index: loc.index + 1,
    }
}

impl Session {
    /// A session for one call; nothing happens until `handle(now, Event::Started)`.
    pub fn new(plan: Arc<Plan>, facts: CallFacts) -> Self {
        Session {
            plan,
            facts,
            vars: BTreeMap::new(),
            context: 0,
            pc: None,
            awaiting: None,
            answer: None,
            goto_counts: HashMap::new(),
            step_limit: DEFAULT_STEP_LIMIT,
            state: State::Fresh,
            recording_session: false,
            pre_dial: None,
        }
    }

    /// Sets the instant-step limit per event (default [`DEFAULT_STEP_LIMIT`]).
    pub fn with_step_limit(mut self, limit: u32) -> Self {
        self.step_limit = limit.max(1);
        self
    }

    /// Sets a variable. Set before `Started`, it takes precedence over the plan's `vars`
    /// defaults (the built-in `called`, `calling`, `trunk`, `user` are always the call's own).
    pub fn set_var(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.vars.insert(name.into(), value.into());
    }

    /// The call's variables.
    pub fn vars(&self) -> &BTreeMap<String, String> {
        &self.vars
    }

    /// One variable.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// The plan this call runs (kept for the whole call, whatever reloads happen).
    pub fn plan(&self) -> &Arc<Plan> {
        &self.plan
    }

    /// True once the session returned [`Decision::End`] or a hangup command.
    pub fn is_ended(&self) -> bool {
        matches!(self.state, State::Ended(_))
    }

    /// Feeds one event; returns what to do next.
    pub fn handle(&mut self, now: &DateTime<FixedOffset>, event: Event) -> Decision {
        if let State::Ended(r) = &self.state {
            return Decision::End(r.clone());
        }
        if event == Event::Hangup {
            return self.end(EndReason::CallerHungUp);
        }
        match (&self.state, event) {
            (State::Fresh, Event::Started) => {
                if let Err(d) = self.begin(now) {
                    return d;
                }
            }
            (State::Fresh, _) | (State::Running, Event::Started) => return Decision::Wait,
            (_, event) => {
                let Some(loc) = self.awaiting.take() else {
                    return Decision::Wait;
                };
                match self.resume(loc, event) {
                    Some(pc) => self.pc = Some(pc),
                    None => {
                        self.awaiting = Some(loc);
                        return Decision::Wait;
                    }
                }
            }
        }
        self.run(now)
    }

    fn end(&mut self, reason: EndReason) -> Decision {
        self.state = State::Ended(reason.clone());
        self.pc = None;
        self.awaiting = None;
        Decision::End(reason)
    }

    // The `Err` is the decision itself (once per call, moved straight to the caller): boxing
    // it would only add an allocation.
    #[allow(clippy::result_large_err)]
    fn begin(&mut self, now: &DateTime<FixedOffset>) -> Result<(), Decision> {
        self.state = State::Running;
        let plan = Arc::clone(&self.plan);
        let builtins = [
            ("called", self.facts.called.clone()),
            ("calling", self.facts.calling.clone()),
        ];
        for (k, v) in builtins {
            self.vars.insert(k.to_owned(), v);
        }
        match &self.facts.source {
            Source::Trunk(t) => {
                self.vars.insert("trunk".into(), t.clone());
            }
            Source::User { name, .. } => {
                self.vars.insert("user".into(), name.clone());
            }
            Source::Unknown => {}
        }
        let Some(ctx) = plan.context_for(&self.facts.source) else {
            return Err(self.end(EndReason::NoRoute));
        };
        if !self.enter_context(ctx, now) {
            return Err(self.end(EndReason::NoRoute));
        }
        for (k, t) in &plan.vars {
            if !self.vars.contains_key(k) {
                let v = self.render(t);
                self.vars.insert(k.clone(), v);
            }
        }
        Ok(())
    }

    /// Matches the rules of `ctx` and points the program counter at the winner's actions.
    fn enter_context(&mut self, ctx: usize, now: &DateTime<FixedOffset>) -> bool {
        let plan = Arc::clone(&self.plan);
        let Some(route) = plan.match_rule(ctx, &self.facts, now) else {
            return false;
        };
        let (Some(c), Some(rule)) = (
            plan.contexts.get(ctx),
            plan.contexts.get(ctx).and_then(|c| c.rules.get(route.rule)),
        ) else {
            return false;
        };
        self.context = ctx;
        self.vars.insert("context".into(), c.name.clone());
        self.vars.insert(
            "rule".into(),
            rule.name
                .clone()
                .unwrap_or_else(|| format!("#{}", route.rule)),
        );
        for (k, v) in route.captures {
            self.vars.insert(k, v);
        }
        self.pc = Some(start(rule.body));
        true
    }

    fn lookup(&self, name: &str) -> Option<String> {
        if let Some(h) = name.strip_prefix("header.") {
            return self
                .facts
                .headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(h))
                .map(|(_, v)| v.clone());
        }
        self.vars.get(name).cloned()
    }

    /// Renders a template, cut to [`MAX_VALUE`] bytes so that self-doubling variables in a
    /// loop cannot grow without bound.
    fn render(&self, t: &Template) -> String {
        let mut s = t.render(|n| self.lookup(n));
        if s.len() > MAX_VALUE {
            let mut end = MAX_VALUE;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s.truncate(end);
        }
        s
    }

    fn render_opt(&self, t: &Option<Template>) -> Option<String> {
        t.as_ref().map(|t| self.render(t))
    }

    fn block<'a>(plan: &'a Plan, answer: Option<&'a ActionList>, id: BlockId) -> Option<&'a Block> {
        match id {
            BlockId::Plan(i) => plan.blocks.get(i as usize),
            BlockId::Answer(i) => answer.and_then(|a| a.blocks.get(i as usize)),
        }
    }

    /// Updates variables from `event`; returns where to go on, or `None` to keep waiting.
    fn resume(&mut self, loc: Loc, event: Event) -> Option<Loc> {
        if self.pre_dial == Some(loc) {
            // The recording of a `dial: { record: … }` started: now the dial itself.
            return Some(loc);
        }
        let plan = Arc::clone(&self.plan);
        let answer = self.answer.clone();
        let action = Self::block(&plan, answer.as_deref(), loc.block)
            .and_then(|b| b.steps.get(loc.index))
            .map(|s| &s.action);
        let mut set = |k: &str, v: String| {
            self.vars.insert(k.to_owned(), v);
        };
        match event {
            Event::DigitsGathered { digits } => {
                set("digits", digits.clone());
                set("gather", digits);
                set("gather_status", "digits".into());
            }
            Event::SpeechRecognised { text } => {
                set("speech", text.clone());
                set("gather", text);
                set("gather_status", "speech".into());
            }
            Event::GatherTimeout => {
                set("digits", String::new());
                set("gather", String::new());
                set("gather_status", "timeout".into());
            }
            Event::ActionCompleted if matches!(action, Some(Action::Gather { .. })) => {
                set("digits", String::new());
                set("gather", String::new());
                set("gather_status", "timeout".into());
            }
            Event::RecordingDone { path } => set("recording", path),
            Event::DialAnswered => {
                set("dial_status", "answered".into());
                return None;
            }
            Event::DialFailed { code } => {
                set("dial_status", code.to_string());
                if let Some(Action::Dial {
                    on_failure: Some(b),
                    ..
                }) = action
                {
                    return Some(start(*b));
                }
            }
            Event::WebhookAnswered { json } => {
                if let Some(Action::Webhook { on_error, .. }) = action {
                    match parse_actions_json(&plan, &json) {
                        Ok(list) => {
                            self.goto_counts
                                .retain(|l, _| matches!(l.block, BlockId::Plan(_)));
                            self.answer = Some(Arc::new(list));
                            self.vars.remove("webhook_error");
                            return Some(answer_start());
                        }
                        Err(diags) => {
                            let msg = diags.first().map(ToString::to_string).unwrap_or_default();
                            self.vars.insert("webhook_error".into(), msg);
                            return Some(on_error.map_or(next(loc), start));
                        }
                    }
                }
            }
            Event::ActionCompleted => {
                if let Some(Action::Webhook {
                    on_error: Some(b), ..
                }) = action
                {
                    self.vars
                        .insert("webhook_error".into(), "the webhook did not answer".into());
                    return Some(start(*b));
                }
            }
            Event::Started | Event::Hangup => {}
        }
        Some(next(loc))
    }

    fn resolve(
        &self,
        context: &Option<String>,
        name: &Option<String>,
        from: Loc,
    ) -> Result<Jump, String> {
        let plan = &self.plan;
        let ctx = match context {
            Some(c) => plan
                .context_index(c)
                .ok_or_else(|| format!("goto: no context `{c}`"))?,
            None => self.context,
        };
        let Some(name) = name else {
            return Ok(Jump::Rematch(ctx));
        };
        let in_answer = matches!(from.block, BlockId::Answer(_)) && context.is_none();
        let local = if in_answer {
            self.answer.as_deref().and_then(|a| answer_label(a, name))
        } else {
            None
        };
        let named = local
            .or_else(|| {
                plan.contexts
                    .get(ctx)
                    .and_then(|c| c.names.get(name).copied())
            })
            .ok_or_else(|| format!("goto: no label or rule `{name}`"))?;
        match named {
            Named::Label(l) => Ok(Jump::To(l, ctx)),
            Named::Rule(r) => plan
                .contexts
                .get(ctx)
                .and_then(|c| c.rules.get(r))
                .map(|rule| Jump::To(start(rule.body), ctx))
                .ok_or_else(|| format!("goto: no rule `{name}`")),
        }
    }

    fn run(&mut self, now: &DateTime<FixedOffset>) -> Decision {
        let plan = Arc::clone(&self.plan);
        let answer = self.answer.clone();
        let mut steps = 0u32;
        loop {
            let Some(loc) = self.pc else {
                return self.end(EndReason::Completed);
            };
            steps += 1;
            if steps > self.step_limit {
                return self.end(EndReason::StepLimit);
            }
            let Some(block) = Self::block(&plan, answer.as_deref(), loc.block) else {
                return self.end(EndReason::Error("internal: unknown action list".into()));
            };
            let Some(step) = block.steps.get(loc.index) else {
                self.pc = block.parent.map(next);
                continue;
            };
            let goto_next = Some(next(loc));
            match &step.action {
                Action::Label => self.pc = goto_next,
                Action::Set(pairs) => {
                    for (k, t) in pairs {
                        let v = self.render(t);
                        self.vars.insert(k.clone(), v);
                    }
                    self.pc = goto_next;
                }
                Action::Branch {
                    on,
                    cases,
                    no_input,
                    default,
                } => {
                    let value = self.render(on).trim().to_lowercase();
                    let case = cases
                        .iter()
                        .find(|(alts, _)| alts.contains(&value))
                        .map(|(_, b)| *b);
                    let chosen = match (value.is_empty(), no_input) {
                        (true, Some(b)) => Some(*b),
                        _ => case.or(*default),
                    };
                    self.pc = Some(chosen.map_or(next(loc), start));
                }
                Action::BusinessHours {
                    calendar,
                    open,
                    closed,
                } => {
                    let is_open = plan
                        .calendars
                        .get(*calendar)
                        .is_some_and(|c| c.is_open(now));
                    self.vars.insert(
                        "business_hours".into(),
                        if is_open { "open" } else { "closed" }.into(),
                    );
                    let chosen = if is_open { open } else { closed };
                    self.pc = Some(chosen.map_or(next(loc), start));
                }
                Action::Goto {
                    context,
                    name,
                    max,
                    otherwise,
                } => {
                    if let Some(max) = max {
                        let count = self.goto_counts.entry(loc).or_insert(0);
                        *count = count.saturating_add(1);
                        if *count > *max {
                            self.pc = Some(otherwise.map_or(next(loc), start));
                            continue;
                        }
                    }
                    match self.resolve(context, name, loc) {
                        Ok(Jump::To(l, ctx)) => {
                            self.context = ctx;
                            self.pc = Some(l);
                        }
                        Ok(Jump::Rematch(ctx)) => {
                            if !self.enter_context(ctx, now) {
                                return self.end(EndReason::NoRoute);
                            }
                        }
                        Err(e) => return self.end(EndReason::Error(e)),
                    }
                }
                Action::Dial {
                    record: Some(to), ..
                } if self.pre_dial != Some(loc) && !self.recording_session => {
                    let command = Command::RecordSession(RecordSessionOp::Start {
                        to: self.recording_path(to),
                    });
                    self.note_record_session(&command);
                    self.pre_dial = Some(loc);
                    self.awaiting = Some(loc);
                    self.pc = None;
                    return Decision::Execute(command);
                }
                action => {
                    self.pre_dial = None;
                    let command = self.command(action);
                    self.note_record_session(&command);
                    if matches!(command, Command::Hangup { .. }) {
                        self.state = State::Ended(EndReason::HungUp);
                        self.pc = None;
                    } else {
                        self.awaiting = Some(loc);
                        self.pc = None;
                    }
                    return Decision::Execute(command);
                }
            }
        }
    }
}

impl Session {
    /// Renders a recording path and keeps it under the recordings folder whatever the
    /// variables held: no leading `/`, `.` and empty components dropped, `..` replaced by `_`.
    fn recording_path(&self, t: &Template) -> String {
        let rendered = self.render(t);
        let parts: Vec<String> = rendered
            .split(['/', '\\'])
            .filter(|c| !c.is_empty() && *c != ".")
            .map(|c| {
                if c == ".." {
                    "_".to_owned()
                } else {
                    c.replace('\0', "_")
                }
            })
            .collect();
        if parts.is_empty() {
            "recording.wav".to_owned()
        } else {
            parts.join("/")
        }
    }

    /// Keeps the `session_recording` variables and the running flag in step with a
    /// `record_session` command about to be carried out.
    fn note_record_session(&mut self, command: &Command) {
        let Command::RecordSession(op) = command else {
            return;
        };
        let status = match op {
            RecordSessionOp::Start { to } => {
                self.recording_session = true;
                self.vars.insert("session_recording".into(), to.clone());
                "recording"
            }
            RecordSessionOp::Stop => {
                self.recording_session = false;
                "stopped"
            }
            RecordSessionOp::Pause if self.recording_session => "paused",
            RecordSessionOp::Resume if self.recording_session => "recording",
            RecordSessionOp::Pause | RecordSessionOp::Resume => return,
        };
        self.vars
            .insert("session_recording_status".into(), status.to_owned());
    }
}
