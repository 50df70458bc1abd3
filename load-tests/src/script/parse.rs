//! Reading a scenario file: TOML into [`Scenario`], with every error placed at a line and
//! column, and the checks that need the whole file (variables assigned somewhere, labels
//! that exist, one kind per step).

use super::template::{is_ident, MessageTemplate, StartLine, Template, TemplateError, Var};
use super::ScriptError;
use regex::Regex;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::time::Duration;
use switchboard_engine::sip::{HeaderName, Method};
use toml::Spanned;

/// The longest pause, play or timeout a scenario may ask for: 24 h, in ms.
pub const MAX_MS: u64 = 86_400_000;

/// How long an `expect` waits when neither it nor the scenario says.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A checked scenario.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Its `name` (or empty).
    pub name: String,
    /// The steps, in file order.
    pub steps: Vec<Step>,
    /// The default `expect` timeout.
    pub timeout: Duration,
    /// The highest `[fieldN]` used, and where (line, column).
    pub fields_used: Option<(usize, usize, usize)>,
    /// Number of `goto` steps (each keeps a per-call counter).
    pub gotos: usize,
    /// True when some step sends an INVITE (a call, not a registration or ping).
    pub sends_invite: bool,
}

/// One step.
#[derive(Clone, Debug)]
pub enum Step {
    /// Send a message.
    Send(Send),
    /// Wait for a message.
    Expect(Expect),
    /// Wait this long.
    Pause(Duration),
    /// Stream RTP to the far side's last SDP for this long (does not wait).
    Play(Duration),
    /// Send DTMF digits: RFC 4733 events in the call's RTP stream, or SIP INFO.
    Dtmf(Dtmf),
    /// A jump target; does nothing.
    Label(String),
    /// Jump back (or forward) to a label, at most `times` times per call.
    Goto(Goto),
    /// Assign user variables (all values are rendered before any is assigned).
    Set(Vec<(String, Template)>),
}

/// A `send` step.
#[derive(Clone, Debug)]
pub struct Send {
    /// The message.
    pub message: MessageTemplate,
    /// Credentials to answer a 401/407 with, once.
    pub auth: Option<Auth>,
}

/// Digest credentials of a `send`.
#[derive(Clone, Debug)]
pub struct Auth {
    /// The user name.
    pub user: Template,
    /// The password.
    pub password: Template,
}

/// An `expect` step.
#[derive(Clone, Debug)]
pub struct Expect {
    /// What matches.
    pub matcher: Matcher,
    /// Skipped when another message (one a later step expects) or its timeout comes first.
    pub optional: bool,
    /// How long to wait; the scenario's default when `None`.
    pub timeout: Option<Duration>,
    /// Variables to take from the matched message.
    pub captures: Vec<Capture>,
    /// Where the script goes on when this step takes a message (the index of a label step;
    /// SIPp's `next`); `None`: the next step.
    pub next: Option<usize>,
}

/// What an `expect` accepts: a response (by code, and optionally the CSeq method) or a
/// request (by method).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Matcher {
    /// The response status or class; `None` for a request.
    pub code: Option<Code>,
    /// The request method, or the CSeq method of the response.
    pub method: Option<Method>,
}

/// A response status to match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// Exactly this status.
    Exact(u16),
    /// Any status of this class (`2xx` is `Class(2)`).
    Class(u16),
}

impl Code {
    /// True when `status` matches.
    pub fn matches(self, status: u16) -> bool {
        match self {
            Code::Exact(c) => c == status,
            Code::Class(c) => status / 100 == c,
        }
    }
}

impl std::fmt::Display for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.code, &self.method) {
            (Some(Code::Exact(c)), None) => write!(f, "{c}"),
            (Some(Code::Class(c)), None) => write!(f, "{c}xx"),
            (Some(Code::Exact(c)), Some(m)) => write!(f, "{c} {m}"),
            (Some(Code::Class(c)), Some(m)) => write!(f, "{c}xx {m}"),
            (None, Some(m)) => write!(f, "{m}"),
            (None, None) => write!(f, "anything"),
        }
    }
}

/// Where a capture looks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// Each value of this header, in order.
    Header(HeaderName),
    /// The body.
    Body,
    /// The whole message as text.
    Message,
}

/// A regex capture into a user variable (SIPp's `ereg`): the first group, or the whole match
/// when the regex has no group.
#[derive(Clone, Debug)]
pub struct Capture {
    /// The variable (without `$`).
    pub var: String,
    /// Where to search.
    pub source: Source,
    /// The pattern.
    pub regex: Regex,
    /// Fail the call when nothing matches (otherwise the variable keeps its value).
    pub required: bool,
}

/// A `dtmf` step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dtmf {
    /// Digits among `0-9 * # A-D`.
    pub digits: String,
    /// How they are sent.
    pub mode: DtmfMode,
}

/// How a `dtmf` step sends its digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DtmfMode {
    /// RFC 4733 telephone-events in the call's RTP stream (the media pool sends them: 100 ms
    /// per digit, 60 ms apart); the step lasts as long as the digits.
    Rfc4733,
    /// One SIP INFO per digit (`application/dtmf-relay`) with this `Duration=` in ms, each
    /// waiting for its 2xx.
    Info {
        /// The `Duration=` of each digit.
        duration_ms: u32,
    },
}

/// A `goto` step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Goto {
    /// The index of the label step.
    pub target: usize,
    /// Jumps allowed per call; then the step falls through.
    pub times: u32,
    /// This goto's counter slot.
    pub counter: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: Option<String>,
    timeout_ms: Option<u64>,
    #[serde(default)]
    step: Vec<Spanned<RawStep>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    send: Option<Spanned<String>>,
    auth: Option<Spanned<RawAuth>>,
    expect: Option<Spanned<toml::Value>>,
    optional: Option<Spanned<bool>>,
    next: Option<Spanned<String>>,
    timeout_ms: Option<Spanned<u64>>,
    capture: Option<Spanned<Vec<Spanned<RawCapture>>>>,
    pause: Option<Spanned<u64>>,
    play: Option<Spanned<u64>>,
    dtmf: Option<Spanned<String>>,
    mode: Option<Spanned<String>>,
    duration_ms: Option<Spanned<u32>>,
    label: Option<Spanned<String>>,
    goto: Option<Spanned<String>>,
    times: Option<Spanned<u32>>,
    set: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    user: Spanned<String>,
    password: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCapture {
    var: Spanned<String>,
    header: Option<Spanned<String>>,
    #[serde(default)]
    body: bool,
    regex: Spanned<String>,
    #[serde(default)]
    required: bool,
}

/// The 1-based line and column (in characters) of byte `offset` in `src`.
pub fn position(src: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(src.len());
    let before = src.get(..offset).unwrap_or(src);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Builds errors placed in the source.
struct Src<'a>(&'a str);

impl Src<'_> {
    fn at(&self, offset: usize, message: impl Into<String>) -> ScriptError {
        let (line, column) = position(self.0, offset);
        ScriptError {
            file: None,
            line,
            column,
            message: message.into(),
        }
    }

    fn span(&self, span: Range<usize>, message: impl Into<String>) -> ScriptError {
        self.at(span.start, message)
    }

    /// Places a template error: at its text inside the string's span when found there.
    fn template(&self, span: Range<usize>, e: TemplateError) -> ScriptError {
        let found = self
            .0
            .get(span.clone())
            .and_then(|s| (!e.needle.is_empty()).then(|| s.find(&e.needle)).flatten());
        self.at(span.start + found.unwrap_or(0), e.message)
    }

    /// Where `needle` first occurs inside `span` (or its start).
    fn find(&self, span: &Range<usize>, needle: &str) -> usize {
        span.start
            + self
                .0
                .get(span.clone())
                .and_then(|s| s.find(needle))
                .unwrap_or(0)
    }
}

/// A template and the span it came from, for the variable checks.
struct Used {
    template: Template,
    span: Range<usize>,
}

/// Parses and checks a scenario.
pub fn parse(src: &str) -> Result<Scenario, ScriptError> {
    let s = Src(src);
    let raw: RawScenario = toml::from_str(src).map_err(|e| {
        let offset = e.span().map_or(0, |r| r.start);
        s.at(offset, e.message().trim().to_string())
    })?;
    let timeout = match raw.timeout_ms {
        Some(ms) if ms == 0 || ms > MAX_MS => {
            return Err(s.at(
                find_key(src, "timeout_ms"),
                format!("timeout_ms must be 1-{MAX_MS}"),
            ))
        }
        Some(ms) => Duration::from_millis(ms),
        None => DEFAULT_TIMEOUT,
    };
    if raw.step.is_empty() {
        return Err(s.at(
            0,
            "a scenario needs at least one [[step]] (send, expect, pause, play, dtmf, label, goto or set)",
        ));
    }
    let mut labels: HashMap<String, usize> = HashMap::new();
    for (i, st) in raw.step.iter().enumerate() {
        if let Some(l) = &st.get_ref().label {
            if !is_ident(l.get_ref()) {
                return Err(s.span(
                    l.span(),
                    format!(
                        "label `{}`: letters, digits and `_`, a letter first",
                        l.get_ref()
                    ),
                ));
            }
            if labels.insert(l.get_ref().clone(), i).is_some() {
                return Err(s.span(
                    l.span(),
                    format!("label `{}` is defined twice", l.get_ref()),
                ));
            }
        }
    }
    let mut steps = Vec::with_capacity(raw.step.len());
    let mut used: Vec<Used> = Vec::new();
    let mut assigned: HashSet<String> = HashSet::new();
    let mut gotos = 0;
    let mut sends_invite = false;
    for st in &raw.step {
        let span = st.span();
        let st = st.get_ref();
        let step = build_step(&s, span, st, &labels, &mut used, &mut assigned, &mut gotos)?;
        if let Step::Send(send) = &step {
            sends_invite |= send.message.start == StartLine::Request(Method::Invite);
        }
        steps.push(step);
    }
    let mut fields_used: Option<(usize, usize, usize)> = None;
    for u in &used {
        for v in u.template.vars() {
            match v {
                Var::User(name) if !assigned.contains(name) => {
                    let at = s.find(&u.span, &format!("[${name}]"));
                    return Err(s.at(
                        at,
                        format!(
                            "variable `[${name}]` is never assigned (by a `set` step or a capture's `var`)"
                        ),
                    ));
                }
                Var::Field(n) if fields_used.is_none_or(|(m, _, _)| *n > m) => {
                    let (line, col) = position(src, s.find(&u.span, &format!("[field{n}]")));
                    fields_used = Some((*n, line, col));
                }
                _ => {}
            }
        }
    }
    Ok(Scenario {
        name: raw.name.unwrap_or_default(),
        steps,
        timeout,
        fields_used,
        gotos,
        sends_invite,
    })
}

/// The offset of a top-level `key =` line, for errors serde gives no span for.
fn find_key(src: &str, key: &str) -> usize {
    let mut offset = 0;
    for line in src.split_inclusive('\n') {
        if line.trim_start().starts_with(key) {
            return offset + (line.len() - line.trim_start().len());
        }
        offset += line.len();
    }
    0
}

/// An option of a step: its name, where it is (when present) and the kinds it applies to.
type OptionUse<'a> = (&'a str, Option<Range<usize>>, &'a [&'a str]);

const KINDS: &str = "send, expect, pause, play, dtmf, label, goto or set";

#[allow(clippy::too_many_arguments)]
fn build_step(
    s: &Src<'_>,
    span: Range<usize>,
    st: &RawStep,
    labels: &HashMap<String, usize>,
    used: &mut Vec<Used>,
    assigned: &mut HashSet<String>,
    gotos: &mut usize,
) -> Result<Step, ScriptError> {
    let kinds: Vec<(&str, Range<usize>)> = [
        ("send", st.send.as_ref().map(Spanned::span)),
        ("expect", st.expect.as_ref().map(Spanned::span)),
        ("pause", st.pause.as_ref().map(Spanned::span)),
        ("play", st.play.as_ref().map(Spanned::span)),
        ("dtmf", st.dtmf.as_ref().map(Spanned::span)),
        ("label", st.label.as_ref().map(Spanned::span)),
        ("goto", st.goto.as_ref().map(Spanned::span)),
        ("set", st.set.as_ref().map(Spanned::span)),
    ]
    .into_iter()
    .filter_map(|(k, sp)| sp.map(|sp| (k, sp)))
    .collect();
    let kind = match kinds.as_slice() {
        [] => return Err(s.span(span, format!("a step needs one of {KINDS}"))),
        [(k, _)] => *k,
        [(a, _), (b, sp), ..] => {
            return Err(s.span(
                sp.clone(),
                format!("a step has one kind; this one has both `{a}` and `{b}`"),
            ))
        }
    };
    // Options that only some kinds take.
    let options: [OptionUse<'_>; 8] = [
        ("next", st.next.as_ref().map(Spanned::span), &["expect"]),
        ("auth", st.auth.as_ref().map(Spanned::span), &["send"]),
        (
            "optional",
            st.optional.as_ref().map(Spanned::span),
            &["expect"],
        ),
        (
            "timeout_ms",
            st.timeout_ms.as_ref().map(Spanned::span),
            &["expect"],
        ),
        (
            "capture",
            st.capture.as_ref().map(Spanned::span),
            &["expect"],
        ),
        ("mode", st.mode.as_ref().map(Spanned::span), &["dtmf"]),
        (
            "duration_ms",
            st.duration_ms.as_ref().map(Spanned::span),
            &["dtmf"],
        ),
        ("times", st.times.as_ref().map(Spanned::span), &["goto"]),
    ];
    for (name, sp, kinds) in options {
        if let Some(sp) = sp {
            if !kinds.contains(&kind) {
                return Err(s.span(
                    sp,
                    format!("`{name}` only applies to `{}` steps", kinds.join("`, `")),
                ));
            }
        }
    }
    Ok(match kind {
        "send" => {
            let Some(text) = &st.send else {
                return Err(s.span(span, "internal: send without text"));
            };
            let message =
                MessageTemplate::parse(text.get_ref()).map_err(|e| s.template(text.span(), e))?;
            for t in message.templates() {
                used.push(Used {
                    template: t.clone(),
                    span: text.span(),
                });
            }
            let auth = match &st.auth {
                None => None,
                Some(a) => {
                    if !matches!(message.start, StartLine::Request(ref m) if *m != Method::Ack && *m != Method::Cancel)
                    {
                        return Err(s.span(
                            a.span(),
                            "`auth` answers a 401/407 to a request; ACK, CANCEL and responses cannot take it",
                        ));
                    }
                    let a = a.get_ref();
                    let user = Template::parse(a.user.get_ref())
                        .map_err(|e| s.template(a.user.span(), e))?;
                    let password = Template::parse(a.password.get_ref())
                        .map_err(|e| s.template(a.password.span(), e))?;
                    for (t, sp) in [(&user, a.user.span()), (&password, a.password.span())] {
                        no_len(s, t, &sp)?;
                        used.push(Used {
                            template: t.clone(),
                            span: sp,
                        });
                    }
                    Some(Auth { user, password })
                }
            };
            Step::Send(Send { message, auth })
        }
        "expect" => {
            let Some(v) = &st.expect else {
                return Err(s.span(span, "internal: expect without value"));
            };
            let matcher = matcher(s, v)?;
            let timeout = match &st.timeout_ms {
                Some(t) if *t.get_ref() == 0 || *t.get_ref() > MAX_MS => {
                    return Err(s.span(t.span(), format!("timeout_ms must be 1-{MAX_MS}")))
                }
                Some(t) => Some(Duration::from_millis(*t.get_ref())),
                None => None,
            };
            let mut captures = Vec::new();
            for c in st.capture.iter().flat_map(|c| c.get_ref()) {
                let c = c.get_ref();
                let var = c.var.get_ref().strip_prefix('$').unwrap_or(c.var.get_ref());
                if !is_ident(var) {
                    return Err(s.span(
                        c.var.span(),
                        format!("capture var `{var}`: letters, digits and `_`, a letter first"),
                    ));
                }
                let source = match (&c.header, c.body) {
                    (Some(h), false) => {
                        if !switchboard_engine::sip::grammar::is_token(h.get_ref()) {
                            return Err(s.span(
                                h.span(),
                                format!("`{}` is not a header name", h.get_ref()),
                            ));
                        }
                        Source::Header(HeaderName::from_token(h.get_ref()))
                    }
                    (None, true) => Source::Body,
                    (None, false) => Source::Message,
                    (Some(h), true) => {
                        return Err(s.span(
                            h.span(),
                            "a capture searches a `header` or the `body`, not both",
                        ))
                    }
                };
                let regex = Regex::new(c.regex.get_ref())
                    .map_err(|e| s.span(c.regex.span(), format!("capture regex: {e}")))?;
                assigned.insert(var.to_string());
                captures.push(Capture {
                    var: var.to_string(),
                    source,
                    regex,
                    required: c.required,
                });
            }
            let next = match &st.next {
                None => None,
                Some(n) => match labels.get(n.get_ref()) {
                    Some(&i) => Some(i),
                    None => {
                        return Err(
                            s.span(n.span(), format!("next `{}`: no such label", n.get_ref()))
                        )
                    }
                },
            };
            Step::Expect(Expect {
                matcher,
                optional: st.optional.as_ref().is_some_and(|o| *o.get_ref()),
                timeout,
                captures,
                next,
            })
        }
        "pause" => {
            let ms = st.pause.as_ref().map_or(0, |p| *p.get_ref());
            if ms > MAX_MS {
                return Err(s.span(span, format!("pause is at most {MAX_MS} ms")));
            }
            Step::Pause(Duration::from_millis(ms))
        }
        "play" => {
            let ms = st.play.as_ref().map_or(0, |p| *p.get_ref());
            if ms == 0 || ms > MAX_MS {
                return Err(s.span(span, format!("play needs a duration of 1-{MAX_MS} ms")));
            }
            Step::Play(Duration::from_millis(ms))
        }
        "dtmf" => {
            let Some(d) = &st.dtmf else {
                return Err(s.span(span, "internal: dtmf without digits"));
            };
            let digits = d.get_ref().to_ascii_uppercase();
            if digits.is_empty()
                || !digits
                    .bytes()
                    .all(|b| b.is_ascii_digit() || matches!(b, b'*' | b'#' | b'A'..=b'D'))
            {
                return Err(s.span(
                    d.span(),
                    format!("dtmf `{}`: digits are 0-9, *, # and A-D", d.get_ref()),
                ));
            }
            let mode = match st.mode.as_ref().map(|m| (m.get_ref().as_str(), m.span())) {
                None | Some(("rfc4733", _)) => {
                    if let Some(d) = &st.duration_ms {
                        return Err(s.span(
                            d.span(),
                            "duration_ms is for mode = \"info\" (RFC 4733 digits last 100 ms)",
                        ));
                    }
                    DtmfMode::Rfc4733
                }
                Some(("info", _)) => {
                    let duration_ms = st.duration_ms.as_ref().map_or(160, |d| *d.get_ref());
                    if duration_ms == 0 {
                        return Err(s.span(span, "duration_ms must be > 0"));
                    }
                    DtmfMode::Info { duration_ms }
                }
                Some((other, sp)) => {
                    return Err(s.span(
                        sp,
                        format!(
                            "dtmf mode `{other}`: \"rfc4733\" (RTP events) or \"info\" (SIP INFO)"
                        ),
                    ))
                }
            };
            Step::Dtmf(Dtmf { digits, mode })
        }
        "label" => Step::Label(
            st.label
                .as_ref()
                .map_or(String::new(), |l| l.get_ref().clone()),
        ),
        "goto" => {
            let Some(g) = &st.goto else {
                return Err(s.span(span, "internal: goto without label"));
            };
            let Some(&target) = labels.get(g.get_ref()) else {
                return Err(s.span(g.span(), format!("goto `{}`: no such label", g.get_ref())));
            };
            let times = match &st.times {
                None => {
                    return Err(s.span(
                        g.span(),
                        "goto needs `times = N`: how often it may jump per call (the loop bound)",
                    ))
                }
                Some(t) if *t.get_ref() == 0 => return Err(s.span(t.span(), "times must be ≥ 1")),
                Some(t) => *t.get_ref(),
            };
            let counter = *gotos;
            *gotos += 1;
            Step::Goto(Goto {
                target,
                times,
                counter,
            })
        }
        _ => {
            let Some(set) = &st.set else {
                return Err(s.span(span, "internal: unknown step kind"));
            };
            if set.get_ref().is_empty() {
                return Err(s.span(set.span(), "set needs at least one `name = \"value\"`"));
            }
            let mut out = Vec::new();
            for (name, value) in set.get_ref() {
                let name = name.strip_prefix('$').unwrap_or(name);
                if !is_ident(name) {
                    return Err(s.span(
                        set.span(),
                        format!("set `{name}`: letters, digits and `_`, a letter first"),
                    ));
                }
                let t =
                    Template::parse(value.get_ref()).map_err(|e| s.template(value.span(), e))?;
                no_len(s, &t, &value.span())?;
                used.push(Used {
                    template: t.clone(),
                    span: value.span(),
                });
                assigned.insert(name.to_string());
                out.push((name.to_string(), t));
            }
            Step::Set(out)
        }
    })
}

fn no_len(s: &Src<'_>, t: &Template, span: &Range<usize>) -> Result<(), ScriptError> {
    if t.vars().any(|v| *v == Var::Len) {
        return Err(s.at(
            s.find(span, "[len]"),
            "`[len]` belongs in a message's header lines",
        ));
    }
    Ok(())
}

/// Reads `expect = 200`, `expect = "2xx"`, `expect = "BYE"` or
/// `expect = { code = 200, method = "INVITE" }`.
fn matcher(s: &Src<'_>, v: &Spanned<toml::Value>) -> Result<Matcher, ScriptError> {
    let span = v.span();
    let code_of = |value: &toml::Value| -> Result<Code, ScriptError> {
        match value {
            toml::Value::Integer(c) if (100..=699).contains(c) => Ok(Code::Exact(*c as u16)),
            toml::Value::String(t) => code_text(t).ok_or_else(|| {
                s.span(
                    span.clone(),
                    format!("`{t}` is not a status code (200) or class (2xx)"),
                )
            }),
            other => Err(s.span(
                span.clone(),
                format!("a status code is 100-699, not {other}"),
            )),
        }
    };
    let method_of = |t: &str| -> Result<Method, ScriptError> {
        if !t.is_empty() && t.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(Method::from_token(t))
        } else {
            Err(s.span(
                span.clone(),
                format!("`{t}` is not a method (upper-case, like INVITE or BYE)"),
            ))
        }
    };
    match v.get_ref() {
        toml::Value::Integer(_) => Ok(Matcher {
            code: Some(code_of(v.get_ref())?),
            method: None,
        }),
        toml::Value::String(t) => match code_text(t) {
            Some(c) => Ok(Matcher {
                code: Some(c),
                method: None,
            }),
            None => Ok(Matcher {
                code: None,
                method: Some(method_of(t)?),
            }),
        },
        toml::Value::Table(t) => {
            if let Some(k) = t.keys().find(|k| *k != "code" && *k != "method") {
                return Err(s.span(
                    span,
                    format!("unknown key `{k}` in expect (it takes `code` and `method`)"),
                ));
            }
            let code = t.get("code").map(code_of).transpose()?;
            let method = match t.get("method") {
                None => None,
                Some(toml::Value::String(m)) => Some(method_of(m)?),
                Some(other) => {
                    return Err(s.span(span, format!("method must be a string, not {other}")))
                }
            };
            if code.is_none() && method.is_none() {
                return Err(s.span(
                    span,
                    "expect needs a code (a response) or a method (a request), or both",
                ));
            }
            Ok(Matcher { code, method })
        }
        other => Err(s.span(
            span,
            format!("expect takes a status code, a method or {{ code, method }}, not {other}"),
        )),
    }
}

/// `"200"` or `"2xx"`.
fn code_text(t: &str) -> Option<Code> {
    let b = t.as_bytes();
    match b {
        [c @ b'1'..=b'6', b'x' | b'X', b'x' | b'X'] => Some(Code::Class(u16::from(c - b'0'))),
        [b'1'..=b'6', b'0'..=b'9', b'0'..=b'9'] => t.parse().ok().map(Code::Exact),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::{Injection, Script};

    const CALL: &str = r#"
name = "call"
timeout_ms = 2000

[[step]]
send = """
INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/UDP [local_ip]:[local_port];branch=[branch]
From: <sip:[field0]@[local_ip]>;tag=[tag]
To: <sip:[service]@[remote_ip]>
Call-ID: [call_id]
CSeq: [cseq] INVITE
Content-Length: [len]

v=0
"""

[[step]]
expect = "1xx"
optional = true

[[step]]
expect = { code = 200, method = "INVITE" }
timeout_ms = 500
capture = [
  { var = "to_tag", header = "To", regex = ';tag=([^;>]+)', required = true },
  { var = "port", body = true, regex = 'm=audio (\d+)' },
]

[[step]]
label = "again"

[[step]]
set = { greeting = "hi [$to_tag]" }

[[step]]
dtmf = "12#"
mode = "info"
duration_ms = 100

[[step]]
goto = "again"
times = 2

[[step]]
pause = 10

[[step]]
play = 100

[[step]]
expect = "BYE"
"#;

    fn err(src: &str) -> ScriptError {
        parse(src).expect_err("must fail")
    }

    #[test]
    fn a_full_scenario_parses() {
        let sc = parse(CALL).expect("parses");
        assert_eq!(sc.name, "call");
        assert_eq!(sc.timeout, Duration::from_millis(2000));
        assert_eq!(sc.steps.len(), 10);
        assert!(sc.sends_invite);
        assert_eq!(sc.gotos, 1);
        assert_eq!(sc.fields_used, Some((0, 9, 12)));
        let rtp = parse("[[step]]\ndtmf = \"5\"\n").expect("parses");
        assert!(matches!(
            &rtp.steps[0],
            Step::Dtmf(Dtmf {
                mode: DtmfMode::Rfc4733,
                ..
            })
        ));
        let Step::Expect(e) = &sc.steps[2] else {
            panic!("step 3 is an expect")
        };
        assert_eq!(
            e.matcher,
            Matcher {
                code: Some(Code::Exact(200)),
                method: Some(Method::Invite)
            }
        );
        assert_eq!(e.timeout, Some(Duration::from_millis(500)));
        assert_eq!(e.captures.len(), 2);
        assert_eq!(e.captures[0].source, Source::Header(HeaderName::To));
        assert!(e.captures[0].required);
        assert_eq!(e.captures[1].source, Source::Body);
        let Step::Expect(e) = &sc.steps[1] else {
            panic!("step 2 is an expect")
        };
        assert!(e.optional);
        assert_eq!(e.matcher.code, Some(Code::Class(1)));
        assert!(matches!(
            &sc.steps[6],
            Step::Goto(Goto {
                target: 3,
                times: 2,
                counter: 0
            })
        ));
        assert!(matches!(
            &sc.steps[5],
            Step::Dtmf(Dtmf {
                mode: DtmfMode::Info { duration_ms: 100 },
                ..
            })
        ));
        let Step::Expect(e) = &sc.steps[9] else {
            panic!("last step is an expect")
        };
        assert_eq!(e.matcher.method, Some(Method::Bye));
        assert_eq!(e.matcher.code, None);
    }

    #[test]
    fn injection_fields_are_checked_against_the_file() {
        let sc = parse(CALL).expect("parses");
        let e = Script::new(sc.clone(), None).expect_err("no inf");
        assert_eq!((e.line, e.column), (9, 12));
        assert!(e.message.contains("--inf"), "{e}");
        let short = Injection::parse("SEQUENTIAL\nalice\n\n;\n").expect("inf");
        assert!(Script::new(sc.clone(), Some(short)).is_ok());
        let none = Injection::parse("SEQUENTIAL\nalice;x\n").expect("inf");
        assert!(Script::new(sc, Some(none)).is_ok());
        let two = parse(&CALL.replace("[field0]", "[field2]")).expect("parses");
        let inf = Injection::parse("SEQUENTIAL\na;b;c\nd;e\n").expect("inf");
        let e = Script::new(two, Some(inf)).expect_err("short line");
        assert!(e.message.contains("line 3"), "{e}");
    }

    #[test]
    fn toml_syntax_errors_have_a_position() {
        let e = err("[[step]]\npause = 10\n\n[[step]]\nsend = \"unterminated\n");
        assert_eq!(e.line, 5, "{e}");
        assert!(e.column >= 1);
        let e = err("[[step]]\npause = -1\n");
        assert_eq!(e.line, 2, "{e}");
        let e = err("[[step]]\npause = 10\nspeed = 3\n");
        assert_eq!(e.line, 3, "{e}");
        assert!(e.message.contains("speed"), "{e}");
        let e = err("name = \"x\"\n");
        assert!(e.message.contains("at least one"), "{e}");
        let e = err("timeout_ms = 0\n[[step]]\npause = 1\n");
        assert_eq!(e.line, 1, "{e}");
    }

    #[test]
    fn unknown_and_unassigned_variables() {
        let src = "[[step]]\nsend = \"\"\"\nOPTIONS sip:x SIP/2.0\nVia: [local-ip]\n\"\"\"\n";
        let e = err(src);
        assert_eq!((e.line, e.column), (4, 6), "{e}");
        assert!(e.message.contains("unknown variable `[local-ip]`"), "{e}");
        let src = "[[step]]\npause = 1\n[[step]]\nsend = \"\"\"\nOPTIONS sip:x SIP/2.0\nX: [$nope]\n\"\"\"\n";
        let e = err(src);
        assert_eq!((e.line, e.column), (6, 4), "{e}");
        assert!(e.message.contains("never assigned"), "{e}");
        // Assigned later in the file is fine (a loop may come back).
        let ok =
            "[[step]]\nsend = \"OPTIONS sip:x SIP/2.0\\nX: [$v]\"\n[[step]]\nset = { v = \"1\" }\n";
        assert!(parse(ok).is_ok());
        let e = err("[[step]]\nset = { v = \"[len]\" }\n");
        assert!(e.message.contains("[len]"), "{e}");
    }

    #[test]
    fn labels_and_gotos() {
        let e = err("[[step]]\ngoto = \"nowhere\"\ntimes = 1\n");
        assert_eq!(e.line, 2, "{e}");
        assert!(e.message.contains("no such label"), "{e}");
        let e = err("[[step]]\nlabel = \"a\"\n[[step]]\ngoto = \"a\"\n");
        assert!(e.message.contains("times"), "{e}");
        let e = err("[[step]]\nlabel = \"a\"\n[[step]]\ngoto = \"a\"\ntimes = 0\n");
        assert_eq!(e.line, 5, "{e}");
        let e = err("[[step]]\nlabel = \"a\"\n[[step]]\nlabel = \"a\"\n");
        assert_eq!(e.line, 4, "{e}");
        assert!(e.message.contains("twice"), "{e}");
    }

    #[test]
    fn expect_forms() {
        let e = err("[[step]]\nexpect = {}\n");
        assert!(
            e.message.contains("neither") || e.message.contains("needs a code"),
            "{e}"
        );
        assert_eq!(e.line, 2);
        assert!(err("[[step]]\nexpect = 99\n").message.contains("100-699"));
        assert!(err("[[step]]\nexpect = \"bye\"\n")
            .message
            .contains("not a method"));
        assert!(err("[[step]]\nexpect = { code = 200, cseq = 1 }\n")
            .message
            .contains("cseq"));
        assert!(err("[[step]]\nexpect = true\n")
            .message
            .contains("expect takes"));
        let e = err("[[step]]\nexpect = 200\ncapture = [{ var = \"x\", regex = \"(\" }]\n");
        assert_eq!(e.line, 3, "{e}");
        assert!(e.message.contains("regex"), "{e}");
        let e = err("[[step]]\nexpect = 200\ncapture = [{ var = \"x\", header = \"To\", body = true, regex = \"a\" }]\n");
        assert!(e.message.contains("not both"), "{e}");
        let sc = parse("[[step]]\nexpect = { method = \"INFO\" }\n[[step]]\nexpect = \"486\"\n")
            .expect("parses");
        let Step::Expect(e) = &sc.steps[1] else {
            panic!("expect")
        };
        assert_eq!(e.matcher.code, Some(Code::Exact(486)));
    }

    #[test]
    fn one_kind_per_step_and_options_in_place() {
        let e = err("[[step]]\nsend = \"BYE x SIP/2.0\"\nexpect = 200\n");
        assert_eq!(e.line, 3, "{e}");
        assert!(e.message.contains("both `send` and `expect`"), "{e}");
        let e = err("[[step]]\noptional = true\n");
        assert!(e.message.contains("needs one of"), "{e}");
        let e = err("[[step]]\nsend = \"BYE x SIP/2.0\"\noptional = true\n");
        assert_eq!(e.line, 3, "{e}");
        assert!(
            e.message.contains("`optional` only applies to `expect`"),
            "{e}"
        );
        let e =
            err("[[step]]\nsend = \"ACK x SIP/2.0\"\nauth = { user = \"a\", password = \"b\" }\n");
        assert!(e.message.contains("ACK"), "{e}");
        let e = err("[[step]]\nsend = \"hello\"\n");
        assert!(e.message.contains("METHOD uri SIP/2.0"), "{e}");
        assert!(err("[[step]]\ndtmf = \"12x\"\n").message.contains("0-9"));
        assert!(err("[[step]]\ndtmf = \"1\"\nmode = \"sms\"\n")
            .message
            .contains("info"));
        assert!(err("[[step]]\ndtmf = \"1\"\nduration_ms = 90\n")
            .message
            .contains("mode = \"info\""));
        assert!(err("[[step]]\nplay = 0\n").message.contains("1-"));
        assert!(err("[[step]]\npause = 86400001\n")
            .message
            .contains("at most"));
        assert!(err("timeout_ms = 86400001\n[[step]]\npause = 1\n")
            .message
            .contains("1-"));
        assert!(parse("[[step]]\nsend = \"REGISTER sip:x SIP/2.0\"\nauth = { user = \"[field0]\", password = \"[field1]\" }\n").is_ok());
        let e = err("[[step]]\nexpect = \"BYE\"\nnext = \"nowhere\"\n");
        assert_eq!(e.line, 3, "{e}");
        assert!(e.message.contains("no such label"), "{e}");
        assert!(err("[[step]]\npause = 1\nnext = \"x\"\n")
            .message
            .contains("`next` only applies to `expect`"));
        let sc = parse("[[step]]\nlabel = \"x\"\n[[step]]\nexpect = \"INFO\"\nnext = \"x\"\n")
            .expect("parses");
        assert!(matches!(&sc.steps[1], Step::Expect(e) if e.next == Some(0)));
    }

    #[test]
    fn positions_count_characters() {
        assert_eq!(position("ab\ncdé\nf", 0), (1, 1));
        assert_eq!(position("ab\ncdé\nf", 3), (2, 1));
        assert_eq!(position("ab\ncdé\nf", 8), (3, 1));
        assert_eq!(position("ab\ncdé\nf", 9), (3, 2));
        assert_eq!(position("ab\ncdé\nf", 100), (3, 2));
    }
}
