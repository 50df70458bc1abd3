//! Call-handling actions: hangup, media (play, say, gather, record), dial, queue, transfer.

use super::action::{media_of, push, sip_code, transpose, Builder};
use super::reader::{boolean, dtmf, int, items, name, strings, template, text, uint, MapRead};
use crate::command::{MonitorMode, Strategy};
use crate::diag::{DiagKind, Pos, Sink};
use crate::eval::DEFAULT_RECORD_SESSION_PATH;
use crate::model::{Action, Loc, MediaT, PromptT, RecordSessionT, TargetT};
use crate::node::{Node, NodeKind};
use crate::template::{is_var_name, Template};

/// Longest recording accepted, in seconds.
const MAX_SECS: u32 = 86_400;

impl Builder<'_> {
    pub(super) fn hangup(&mut self, args: Option<&Node>) -> Option<Action> {
        let Some(args) = args else {
            return Some(Action::Hangup {
                code: None,
                cause: None,
                reason: None,
            });
        };
        if let NodeKind::Scalar { .. } = args.kind {
            let code = sip_code(args, self.sink)?;
            return Some(Action::Hangup {
                code: Some(code),
                cause: None,
                reason: None,
            });
        }
        let mut m = MapRead::new(args, "hangup", self.sink)?;
        let code = m.get("code").map(|n| sip_code(n, self.sink));
        let cause = m
            .get("cause")
            .map(|n| template(n, "hangup cause", self.sink));
        let reason = m
            .get("reason")
            .map(|n| template(n, "hangup reason", self.sink));
        m.finish("hangup", self.sink);
        Some(Action::Hangup {
            code: transpose(code)?,
            cause: transpose(cause)?,
            reason: transpose(reason)?,
        })
    }

    pub(super) fn play(&mut self, args: &Node) -> Option<Action> {
        if let NodeKind::Scalar { .. } = args.kind {
            return Some(Action::Play {
                media: media_of(template(args, "play", self.sink)?, args),
                loops: 1,
            });
        }
        let mut m = MapRead::new(args, "play", self.sink)?;
        let file = m.get("file").map(|n| template(n, "play file", self.sink));
        let url = m.get("url").map(|n| template(n, "play url", self.sink));
        let loops = match m.get("loop") {
            Some(n) if n.text() == Some("forever") => Some(0),
            Some(n) => uint(n, "play loop (or `forever`)", 1, 1000, self.sink),
            None => Some(1),
        };
        let pos = m.pos;
        m.finish("play", self.sink);
        let media = match (file, url) {
            (Some(f), None) => MediaT::File(f?),
            (None, Some(u)) => MediaT::Url(u?),
            _ => {
                self.sink.error(
                    pos,
                    DiagKind::MissingKey,
                    "`play` needs exactly one of `file` and `url`",
                );
                return None;
            }
        };
        Some(Action::Play {
            media,
            loops: loops?,
        })
    }

    pub(super) fn say(&mut self, args: Option<&Node>, pos: Option<Pos>) -> Option<Action> {
        let Some(args) = args else {
            return self.missing(pos, "say", "a text");
        };
        if let NodeKind::Scalar { .. } = args.kind {
            return Some(Action::Say {
                text: template(args, "say", self.sink)?,
                voice: None,
            });
        }
        let mut m = MapRead::new(args, "say", self.sink)?;
        let text = m
            .require("text", "`say`", self.sink)
            .map(|n| template(n, "say text", self.sink));
        let voice = m.get("voice").map(|n| template(n, "say voice", self.sink));
        m.finish("say", self.sink);
        Some(Action::Say {
            text: text??,
            voice: transpose(voice)?,
        })
    }

    pub(super) fn prompt(&mut self, node: &Node) -> Option<PromptT> {
        if let NodeKind::Scalar { .. } = node.kind {
            return Some(PromptT::Play(media_of(
                template(node, "prompt", self.sink)?,
                node,
            )));
        }
        let mut m = MapRead::new(node, "prompt", self.sink)?;
        let say = m.get("say").map(|n| template(n, "prompt say", self.sink));
        let voice = m
            .get("voice")
            .map(|n| template(n, "prompt voice", self.sink));
        let file = m.get("file").map(|n| template(n, "prompt file", self.sink));
        let url = m.get("url").map(|n| template(n, "prompt url", self.sink));
        let pos = m.pos;
        m.finish("prompt", self.sink);
        match (say, file, url) {
            (Some(s), None, None) => Some(PromptT::Say(s?, transpose(voice)?)),
            (None, Some(f), None) => Some(PromptT::Play(MediaT::File(f?))),
            (None, None, Some(u)) => Some(PromptT::Play(MediaT::Url(u?))),
            _ => {
                self.sink.error(
                    pos,
                    DiagKind::MissingKey,
                    "a prompt needs exactly one of `say`, `file` and `url`",
                );
                None
            }
        }
    }

    pub(super) fn gather(&mut self, args: Option<&Node>, pos: Option<Pos>) -> Option<Action> {
        let empty = Node {
            kind: NodeKind::Map(Vec::new()),
            pos,
        };
        let mut m = MapRead::new(args.unwrap_or(&empty), "gather", self.sink)?;
        let prompt = m.get("prompt").map(|n| self.prompt(n));
        let min = m
            .get("min")
            .map(|n| uint(n, "gather min", 0, 64, self.sink));
        let max = m
            .get("max")
            .map(|n| uint(n, "gather max", 1, 64, self.sink));
        let timeout = m
            .get("timeout")
            .map(|n| uint(n, "gather timeout", 1, 600, self.sink));
        let terminator = m
            .get("terminator")
            .map(|n| dtmf(n, "gather terminator", self.sink));
        let speech = m.get("speech").map(|n| self.speech(n));
        m.finish("gather", self.sink);
        let (min, max) = (transpose(min)?.unwrap_or(1), transpose(max)?.unwrap_or(1));
        if min > max {
            self.sink.error(
                pos,
                DiagKind::BadValue,
                format!("gather min ({min}) is above max ({max})"),
            );
            return None;
        }
        Some(Action::Gather {
            prompt: transpose(prompt)?,
            min,
            max,
            timeout: transpose(timeout)?.unwrap_or(5),
            terminator: transpose(terminator)?,
            speech: transpose(speech)?,
        })
    }

    pub(super) fn speech(&mut self, node: &Node) -> Option<(Vec<String>, Option<Template>)> {
        match &node.kind {
            NodeKind::Scalar { text, .. } if text == "true" => Some((Vec::new(), None)),
            NodeKind::Map(_) => {
                let mut m = MapRead::new(node, "speech", self.sink)?;
                let grammar = m
                    .get("grammar")
                    .map(|n| strings(n, "speech grammar", self.sink));
                let language = m
                    .get("language")
                    .map(|n| template(n, "speech language", self.sink));
                m.finish("speech", self.sink);
                Some((grammar.unwrap_or_default(), transpose(language)?))
            }
            _ => Some((strings(node, "speech grammar", self.sink), None)),
        }
    }

    pub(super) fn record(&mut self, args: Option<&Node>, pos: Option<Pos>) -> Option<Action> {
        let Some(args) = args else {
            return self.missing(pos, "record", "`to`");
        };
        let mut m = MapRead::new(args, "record", self.sink)?;
        let to = m
            .require("to", "`record`", self.sink)
            .map(|n| template(n, "record to", self.sink));
        let max_secs = m
            .get("max_secs")
            .map(|n| uint(n, "record max_secs", 1, MAX_SECS, self.sink));
        let beep = m.get("beep").map(|n| boolean(n, "record beep", self.sink));
        let terminator = m
            .get("terminator")
            .map(|n| dtmf(n, "record terminator", self.sink));
        m.finish("record", self.sink);
        Some(Action::Record {
            to: to??,
            max_secs: transpose(max_secs)?.unwrap_or(120),
            beep: transpose(beep)?.unwrap_or(true),
            terminator: transpose(terminator)?,
        })
    }

    pub(super) fn target(&mut self, node: &Node) -> Option<TargetT> {
        if let NodeKind::Scalar { .. } = node.kind {
            let t = template(node, "dial target", self.sink)?;
            let is_uri = node
                .text()
                .is_some_and(|s| s.starts_with("sip:") || s.starts_with("sips:"));
            return Some(if is_uri {
                TargetT::Uri(t)
            } else {
                TargetT::User(t)
            });
        }
        let mut m = MapRead::new(node, "dial target", self.sink)?;
        let user = m.get("user").map(|n| template(n, "dial user", self.sink));
        let trunk = m.get("trunk").map(|n| template(n, "dial trunk", self.sink));
        let route = m.get("route").map(|n| template(n, "dial route", self.sink));
        let number = m
            .get("number")
            .map(|n| template(n, "dial number", self.sink));
        let uri = m.get("uri").map(|n| template(n, "dial uri", self.sink));
        let pos = m.pos;
        m.finish("dial target", self.sink);
        match (user, trunk, route, number, uri) {
            (Some(u), None, None, None, None) => Some(TargetT::User(u?)),
            (None, Some(t), None, Some(n), None) => Some(TargetT::Trunk(t?, n?)),
            (None, None, Some(r), Some(n), None) => Some(TargetT::Route(r?, n?)),
            (None, None, None, None, Some(u)) => Some(TargetT::Uri(u?)),
            _ => {
                self.sink.error(
                    pos,
                    DiagKind::MissingKey,
                    "a dial target is one of `user`, `trunk` or `route` with `number`, or `uri`",
                );
                None
            }
        }
    }

    pub(super) fn dial(
        &mut self,
        args: Option<&Node>,
        pos: Option<Pos>,
        here: Loc,
    ) -> Option<Action> {
        let Some(args) = args else {
            return self.missing(pos, "dial", "a target");
        };
        if let NodeKind::Scalar { .. } = args.kind {
            return Some(Action::Dial {
                targets: vec![self.target(args)?],
                strategy: Strategy::Parallel,
                timeout: 30,
                caller_id: None,
                on_failure: None,
                record: None,
            });
        }
        let mut m = MapRead::new(args, "dial", self.sink)?;
        let mut targets = Vec::new();
        let mut ok = true;
        if let Some(n) = m.get("user") {
            ok &= push(
                &mut targets,
                template(n, "dial user", self.sink).map(TargetT::User),
            );
        }
        if let Some(n) = m.get("users") {
            for u in items(n) {
                ok &= push(
                    &mut targets,
                    template(u, "dial users", self.sink).map(TargetT::User),
                );
            }
        }
        let trunk = m.get("trunk");
        let route = m.get("route");
        let number = m.get("number");
        match (trunk, route, number) {
            (Some(t), None, Some(n)) => {
                let t = template(t, "dial trunk", self.sink);
                let n = template(n, "dial number", self.sink);
                ok &= push(&mut targets, t.zip(n).map(|(t, n)| TargetT::Trunk(t, n)));
            }
            (None, Some(r), Some(n)) => {
                let r = template(r, "dial route", self.sink);
                let n = template(n, "dial number", self.sink);
                ok &= push(&mut targets, r.zip(n).map(|(r, n)| TargetT::Route(r, n)));
            }
            (None, None, None) => {}
            (Some(_), Some(_), _) => {
                self.sink.error(
                    pos,
                    DiagKind::BadValue,
                    "`dial` takes `trunk` or `route`, not both",
                );
                ok = false;
            }
            _ => {
                self.sink.error(
                    pos,
                    DiagKind::MissingKey,
                    "`dial` needs `number` with `trunk` or `route`",
                );
                ok = false;
            }
        }
        if let Some(n) = m.get("uri") {
            ok &= push(
                &mut targets,
                template(n, "dial uri", self.sink).map(TargetT::Uri),
            );
        }
        if let Some(n) = m.get("targets") {
            for t in items(n) {
                ok &= push(&mut targets, self.target(t));
            }
        }
        let strategy =
            m.get("strategy")
                .map(|n| match text(n, "dial strategy", self.sink).as_deref() {
                    Some("parallel") => Some(Strategy::Parallel),
                    Some("sequence") => Some(Strategy::Sequence),
                    Some(other) => {
                        self.sink.error(
                            n.pos,
                            DiagKind::BadValue,
                            format!(
                                "dial strategy must be `parallel` or `sequence`, found `{other}`"
                            ),
                        );
                        None
                    }
                    None => None,
                });
        let timeout = m
            .get("timeout")
            .map(|n| uint(n, "dial timeout", 1, 600, self.sink));
        let caller_id = m
            .get("caller_id")
            .map(|n| template(n, "dial caller_id", self.sink));
        let record = m.get("record").map(|n| self.dial_record(n));
        let on_failure = m.get("on_failure");
        m.finish("dial", self.sink);
        let on_failure = self.opt_list(on_failure, here);
        if ok && targets.is_empty() {
            return self.missing(
                pos,
                "dial",
                "a target (`user`, `users`, `trunk`+`number`, `route`+`number`, `uri` or `targets`)",
            );
        }
        Some(Action::Dial {
            targets: ok.then_some(targets)?,
            strategy: transpose(strategy)?.unwrap_or(Strategy::Parallel),
            timeout: transpose(timeout)?.unwrap_or(30),
            caller_id: transpose(caller_id)?,
            on_failure,
            record: transpose(record)?.flatten(),
        })
    }

    /// `dial`'s `record:`: `true` (the default path), `false`, or a path.
    fn dial_record(&mut self, node: &Node) -> Option<Option<Template>> {
        match node.text() {
            Some("true") => Some(Some(default_session_path())),
            Some("false") => Some(None),
            _ => recording_path(node, "dial record", self.sink).map(Some),
        }
    }

    /// `record_session`: `{ to: path }`, `start`, `stop`, `pause`, `resume`, or
    /// `{ action: stop }` (the Jambonz form's natural spelling).
    pub(super) fn record_session(
        &mut self,
        args: Option<&Node>,
        pos: Option<Pos>,
    ) -> Option<Action> {
        const FORMS: &str =
            "`record_session` is `{ to: path }`, `start`, `stop`, `pause` or `resume`";
        let Some(args) = args else {
            return self.missing(
                pos,
                "record_session",
                "`{ to: path }` or `stop`/`pause`/`resume`",
            );
        };
        if let NodeKind::Scalar { .. } = args.kind {
            let op = text(args, "record_session", self.sink)?;
            return match session_op(&op, None) {
                Some(op) => Some(Action::RecordSession(op)),
                None => {
                    self.sink.error(
                        args.pos,
                        DiagKind::BadValue,
                        format!("{FORMS}, found `{op}`"),
                    );
                    None
                }
            };
        }
        let mut m = MapRead::new(args, "record_session", self.sink)?;
        let to = m
            .get("to")
            .map(|n| recording_path(n, "record_session to", self.sink));
        let action = m.get("action");
        let map_pos = m.pos;
        m.finish("record_session", self.sink);
        let to = transpose(to)?;
        let Some(action) = action else {
            return Some(Action::RecordSession(RecordSessionT::Start(
                to.unwrap_or_else(default_session_path),
            )));
        };
        let op = text(action, "record_session action", self.sink)?;
        let has_to = to.is_some();
        match session_op(&op, to) {
            Some(RecordSessionT::Start(t)) => Some(Action::RecordSession(RecordSessionT::Start(t))),
            Some(_) if has_to => {
                self.sink.error(
                    map_pos,
                    DiagKind::BadValue,
                    format!("record_session: `to` only goes with `start`, not with `{op}`"),
                );
                None
            }
            Some(other) => Some(Action::RecordSession(other)),
            None => {
                self.sink.error(
                    action.pos,
                    DiagKind::BadValue,
                    format!(
                        "record_session action must be `start`, `stop`, `pause` or `resume`, found `{op}`"
                    ),
                );
                None
            }
        }
    }

    pub(super) fn queue(&mut self, args: Option<&Node>, pos: Option<Pos>) -> Option<Action> {
        let Some(args) = args else {
            return self.missing(pos, "queue", "a queue name");
        };
        if let NodeKind::Scalar { .. } = args.kind {
            return Some(Action::Queue {
                name: template(args, "queue", self.sink)?,
                priority: 0,
                attributes: Vec::new(),
                callback_digit: None,
            });
        }
        let mut m = MapRead::new(args, "queue", self.sink)?;
        let qname = m
            .require("name", "`queue`", self.sink)
            .map(|n| template(n, "queue name", self.sink));
        let priority = m
            .get("priority")
            .map(|n| int(n, "queue priority", -1000, 1000, self.sink));
        let attributes = m
            .get("attributes")
            .map(|n| self.pairs(n, "queue attributes"));
        let callback = m
            .get("callback_digit")
            .map(|n| dtmf(n, "queue callback_digit", self.sink));
        m.finish("queue", self.sink);
        Some(Action::Queue {
            name: qname??,
            priority: transpose(priority)?.unwrap_or(0),
            attributes: transpose(attributes)?.unwrap_or_default(),
            callback_digit: transpose(callback)?,
        })
    }

    /// `monitor: alice` or `monitor: { agent: "${digits}", mode: whisper }`.
    pub(super) fn monitor(&mut self, args: Option<&Node>, pos: Option<Pos>) -> Option<Action> {
        let Some(args) = args else {
            return self.missing(pos, "monitor", "an agent name");
        };
        if let NodeKind::Scalar { .. } = args.kind {
            return Some(Action::Monitor {
                agent: template(args, "monitor", self.sink)?,
                mode: MonitorMode::Listen,
            });
        }
        let mut m = MapRead::new(args, "monitor", self.sink)?;
        let agent = m
            .require("agent", "`monitor`", self.sink)
            .map(|n| template(n, "monitor agent", self.sink));
        let mode = m.get("mode").map(|n| {
            let t = text(n, "monitor mode", self.sink)?;
            match MonitorMode::parse(&t) {
                Some(mode) if !t.starts_with(|c: char| c.is_ascii_digit()) => Some(mode),
                _ => {
                    self.sink.error(
                        n.pos,
                        DiagKind::BadValue,
                        format!("monitor mode must be `listen`, `whisper` or `barge`, found `{t}`"),
                    );
                    None
                }
            }
        });
        m.finish("monitor", self.sink);
        Some(Action::Monitor {
            agent: agent??,
            mode: transpose(mode)?.unwrap_or(MonitorMode::Listen),
        })
    }

    /// A mapping of names to templates, in order.
    pub(super) fn pairs(&mut self, node: &Node, what: &str) -> Option<Vec<(String, Template)>> {
        let NodeKind::Map(entries) = &node.kind else {
            self.sink.error(
                node.pos,
                DiagKind::BadValue,
                format!("{what} must be a mapping, found {}", node.shape()),
            );
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for (k, v) in entries {
            let key = name(k, what, self.sink);
            if let Some(key) = &key {
                if !is_var_name(key) {
                    self.sink.error(
                        k.pos,
                        DiagKind::BadValue,
                        format!("bad name `{key}` in {what}: use letters, digits, `_`, `.`, `-`"),
                    );
                    ok = false;
                }
            }
            match (key, template(v, what, self.sink)) {
                (Some(k), Some(v)) => out.push((k, v)),
                _ => ok = false,
            }
        }
        ok.then_some(out)
    }

    pub(super) fn transfer(&mut self, args: Option<&Node>, pos: Option<Pos>) -> Option<Action> {
        let Some(args) = args else {
            return self.missing(pos, "transfer", "`blind` or `attended`");
        };
        if let NodeKind::Scalar { .. } = args.kind {
            return Some(Action::Transfer {
                to: template(args, "transfer", self.sink)?,
                attended: false,
            });
        }
        let mut m = MapRead::new(args, "transfer", self.sink)?;
        let blind = m
            .get("blind")
            .map(|n| template(n, "transfer blind", self.sink));
        let attended = m
            .get("attended")
            .map(|n| template(n, "transfer attended", self.sink));
        m.finish("transfer", self.sink);
        match (blind, attended) {
            (Some(to), None) => Some(Action::Transfer {
                to: to?,
                attended: false,
            }),
            (None, Some(to)) => Some(Action::Transfer {
                to: to?,
                attended: true,
            }),
            _ => self.missing(pos, "transfer", "exactly one of `blind` and `attended`"),
        }
    }
}

/// The default path of a whole-call recording.
fn default_session_path() -> Template {
    Template::parse(DEFAULT_RECORD_SESSION_PATH)
        .unwrap_or_else(|_| Template::literal("calls/call.wav"))
}

/// A `record_session` operation by name; `to` is the path of a start.
fn session_op(op: &str, to: Option<Template>) -> Option<RecordSessionT> {
    match op {
        "start" => Some(RecordSessionT::Start(
            to.unwrap_or_else(default_session_path),
        )),
        "stop" => Some(RecordSessionT::Stop),
        "pause" => Some(RecordSessionT::Pause),
        "resume" => Some(RecordSessionT::Resume),
        _ => None,
    }
}

/// A recording path: a template whose text is relative (no leading `/`) and has no `..`
/// component, so that it stays under the recordings folder. The error points at the fault.
pub(super) fn recording_path(node: &Node, what: &str, sink: &mut Sink) -> Option<Template> {
    let t = template(node, what, sink)?;
    let src = node.text().unwrap_or_default();
    let quoted = matches!(node.kind, NodeKind::Scalar { plain: false, .. });
    let at = |offset: usize| {
        node.pos.map(|p| {
            let shift = u32::try_from(offset).unwrap_or(0) + u32::from(quoted);
            Pos::new(p.line, p.col.saturating_add(shift))
        })
    };
    if src.trim().is_empty() {
        sink.error(
            node.pos,
            DiagKind::BadValue,
            format!("{what}: the path is empty"),
        );
        return None;
    }
    if src.starts_with(['/', '\\']) {
        sink.error(
            node.pos,
            DiagKind::BadValue,
            format!("{what}: `{src}` must be relative to the recordings folder, not absolute"),
        );
        return None;
    }
    let mut offset = 0;
    for part in src.split(['/', '\\']) {
        if part == ".." {
            let chars = src[..offset].chars().count();
            sink.error(
                at(chars),
                DiagKind::BadValue,
                format!("{what}: `{src}` must not contain `..` (recordings stay in their folder)"),
            );
            return None;
        }
        offset += part.len() + 1;
    }
    if src.contains('\0') {
        sink.error(
            node.pos,
            DiagKind::BadValue,
            format!("{what}: the path contains a NUL"),
        );
        return None;
    }
    Some(t)
}
