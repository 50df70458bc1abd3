//! Action lists: `- say: Hello`, `- dial: { user: alice }`, or the Jambonz form
//! `{"verb": "say", "text": "Hello"}`.

use super::reader::{int, items, name, suggest, template, text, uint, MapRead};
use crate::command::Method;
use crate::diag::{DiagKind, Pos, Sink};
use crate::model::{Action, Block, BlockId, Loc, MediaT, Step};
use crate::node::{Node, NodeKind};
use crate::template::{is_var_name, Template};

/// Every action name, for messages.
pub(crate) const VERBS: &[&str] = &[
    "answer",
    "hangup",
    "play",
    "say",
    "gather",
    "record",
    "record_session",
    "dial",
    "queue",
    "transfer",
    "set",
    "branch",
    "goto",
    "webhook",
    "business_hours",
    "label",
    "echo",
    "monitor",
    "csat",
];

/// Converts action lists into [`Block`]s, collecting labels and diagnostics.
pub(crate) struct Builder<'s> {
    pub(crate) sink: &'s mut Sink,
    /// Calendar names, in plan order.
    pub(crate) calendars: Vec<String>,
    pub(crate) blocks: Vec<Block>,
    /// Lists go to [`BlockId::Answer`] (a webhook answer) rather than [`BlockId::Plan`].
    pub(crate) dynamic: bool,
    /// Context the lists being built belong to.
    pub(crate) context: Option<usize>,
    /// Labels met in the current context (or webhook answer).
    pub(crate) labels: Vec<(String, Loc, Option<Pos>)>,
}

impl Builder<'_> {
    /// Converts a list of actions (or a single action) owned by `parent`.
    pub(crate) fn list(&mut self, node: &Node, parent: Option<Loc>) -> BlockId {
        let n = u32::try_from(self.blocks.len()).unwrap_or(u32::MAX); // node count is capped far below
        let id = if self.dynamic {
            BlockId::Answer(n)
        } else {
            BlockId::Plan(n)
        };
        self.blocks.push(Block {
            steps: Vec::new(),
            parent,
            context: self.context,
        });
        let mut steps = Vec::new();
        for item in items(node) {
            let here = Loc {
                block: id,
                index: steps.len(),
            };
            if let Some(step) = self.action(item, here) {
                steps.push(step);
            }
        }
        if let Some(b) = self.blocks.get_mut(n as usize) {
            b.steps = steps;
        }
        id
    }

    pub(super) fn opt_list(&mut self, node: Option<&Node>, parent: Loc) -> Option<BlockId> {
        node.map(|n| self.list(n, Some(parent)))
    }

    /// Converts one action at `here`.
    fn action(&mut self, node: &Node, here: Loc) -> Option<Step> {
        let (verb_node, args, jambonz) = match &node.kind {
            NodeKind::Scalar { .. } => (node, None, None),
            NodeKind::Map(entries) => {
                if let Some((k, v)) = entries.iter().find(|(k, _)| k.text() == Some("verb")) {
                    let rest: Vec<(Node, Node)> = entries
                        .iter()
                        .filter(|(kk, _)| kk.text() != Some("verb"))
                        .cloned()
                        .collect();
                    let args = Node {
                        kind: NodeKind::Map(rest),
                        pos: k.pos,
                    };
                    (v, None, Some(args))
                } else if entries.len() == 1 {
                    (&entries[0].0, Some(&entries[0].1), None)
                } else {
                    let keys: Vec<&str> = entries.iter().filter_map(|(k, _)| k.text()).collect();
                    self.sink.error(
                        node.pos,
                        DiagKind::BadValue,
                        format!(
                            "an action has exactly one key (`say: …`), found {}: indent the options under the action",
                            keys.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
                        ),
                    );
                    return None;
                }
            }
            NodeKind::Seq(_) => {
                self.sink.error(
                    node.pos,
                    DiagKind::BadValue,
                    "an action must be a name or a mapping, found a list",
                );
                return None;
            }
        };
        let verb = text(verb_node, "an action name", self.sink)?;
        let args = jambonz.as_ref().or(args).filter(|a| !a.is_null());
        let pos = verb_node.pos;
        let action = match verb.as_str() {
            "answer" => self.no_args(args, "answer").map(|()| Action::Answer),
            "echo" => self.no_args(args, "echo").map(|()| Action::Echo),
            "hangup" => self.hangup(args),
            "play" => match args {
                Some(a) => self.play(a),
                None => self.missing(pos, "play", "a file or a url"),
            },
            "say" => self.say(args, pos),
            "gather" => self.gather(args, pos),
            "record" => self.record(args, pos),
            "record_session" => self.record_session(args, pos),
            "dial" => self.dial(args, pos, here),
            "queue" => self.queue(args, pos),
            "monitor" => self.monitor(args, pos),
            "csat" => self.csat(args, pos),
            "transfer" => self.transfer(args, pos),
            "set" => self.set(args, pos),
            "branch" => self.branch(args, pos, here),
            "goto" => self.goto(args, pos, here),
            "webhook" => self.webhook(args, pos, here),
            "business_hours" => self.business_hours(args, pos, here),
            "label" => self.label(args, pos, here),
            other => {
                self.sink.error(
                    pos,
                    DiagKind::UnknownAction,
                    format!(
                        "unknown action `{other}`{} (actions: {})",
                        suggest(other, VERBS),
                        VERBS.join(", ")
                    ),
                );
                None
            }
        }?;
        Some(Step { action, pos })
    }

    pub(super) fn missing(&mut self, pos: Option<Pos>, verb: &str, what: &str) -> Option<Action> {
        self.sink
            .error(pos, DiagKind::MissingKey, format!("`{verb}` needs {what}"));
        None
    }

    fn no_args(&mut self, args: Option<&Node>, verb: &str) -> Option<()> {
        match args {
            None => Some(()),
            Some(n) if matches!(&n.kind, NodeKind::Map(e) if e.is_empty()) => Some(()),
            Some(n) => {
                self.sink.error(
                    n.pos,
                    DiagKind::BadValue,
                    format!("`{verb}` takes no options"),
                );
                None
            }
        }
    }

    fn set(&mut self, args: Option<&Node>, pos: Option<Pos>) -> Option<Action> {
        let Some(args) = args else {
            return self.missing(pos, "set", "variables (`set: { name: value }`)");
        };
        Some(Action::Set(self.pairs(args, "set")?))
    }

    fn branch(&mut self, args: Option<&Node>, pos: Option<Pos>, here: Loc) -> Option<Action> {
        let Some(args) = args else {
            return self.missing(pos, "branch", "`on` and `cases`");
        };
        let mut m = MapRead::new(args, "branch", self.sink)?;
        let on = m.require("on", "`branch`", self.sink).and_then(|n| {
            let t = text(n, "branch on", self.sink)?;
            if is_var_name(&t) {
                Some(
                    Template::parse(&format!("${{{t}}}")).unwrap_or_else(|_| Template::literal(&t)),
                )
            } else {
                template(n, "branch on", self.sink)
            }
        });
        let cases_node = m.require("cases", "`branch`", self.sink);
        let no_input = m.get("no_input");
        let default = m.get("default");
        m.finish("branch", self.sink);
        let mut cases = Vec::new();
        if let Some(n) = cases_node {
            match &n.kind {
                NodeKind::Map(entries) => {
                    for (k, v) in entries {
                        let Some(key) = text(k, "a branch case", self.sink) else {
                            continue;
                        };
                        let alts = key.split('|').map(|s| s.trim().to_lowercase()).collect();
                        let block = self.list(v, Some(here));
                        cases.push((alts, block));
                    }
                }
                _ => self.sink.error(
                    n.pos,
                    DiagKind::BadValue,
                    format!(
                        "branch cases must be a mapping (`\"1\": [actions]`), found {}",
                        n.shape()
                    ),
                ),
            }
        }
        let no_input = self.opt_list(no_input, here);
        let default = self.opt_list(default, here);
        Some(Action::Branch {
            on: on?,
            cases,
            no_input,
            default,
        })
    }

    fn goto(&mut self, args: Option<&Node>, pos: Option<Pos>, here: Loc) -> Option<Action> {
        let Some(args) = args else {
            return self.missing(pos, "goto", "a label, a rule or a context");
        };
        if let NodeKind::Scalar { .. } = args.kind {
            let target = name(args, "goto", self.sink)?;
            let (context, name) = match target.split_once('/') {
                Some((c, "")) => (Some(c.to_owned()), None),
                Some((c, n)) => (Some(c.to_owned()), Some(n.to_owned())),
                None => (None, Some(target)),
            };
            return Some(Action::Goto {
                context,
                name,
                max: None,
                otherwise: None,
            });
        }
        let mut m = MapRead::new(args, "goto", self.sink)?;
        let context = m.get("context").map(|n| name(n, "goto context", self.sink));
        let label = m.get("label").map(|n| name(n, "goto label", self.sink));
        let rule = m.get("rule").map(|n| name(n, "goto rule", self.sink));
        let max = m
            .get("max")
            .map(|n| uint(n, "goto max", 1, 1000, self.sink));
        let otherwise = m.get("otherwise");
        m.finish("goto", self.sink);
        let otherwise = self.opt_list(otherwise, here);
        let name = match (label, rule) {
            (Some(_), Some(_)) => {
                return self.missing(pos, "goto", "either `label` or `rule`, not both")
            }
            (l, r) => transpose(l.or(r))?,
        };
        let context = transpose(context)?;
        if context.is_none() && name.is_none() {
            return self.missing(pos, "goto", "a `label`, a `rule` or a `context`");
        }
        Some(Action::Goto {
            context,
            name,
            max: transpose(max)?,
            otherwise,
        })
    }

    fn webhook(&mut self, args: Option<&Node>, pos: Option<Pos>, here: Loc) -> Option<Action> {
        let Some(args) = args else {
            return self.missing(pos, "webhook", "a `url`");
        };
        if let NodeKind::Scalar { .. } = args.kind {
            return Some(Action::Webhook {
                url: url(args, self.sink)?,
                method: Method::Post,
                on_error: None,
            });
        }
        let mut m = MapRead::new(args, "webhook", self.sink)?;
        let u = m
            .require("url", "`webhook`", self.sink)
            .map(|n| url(n, self.sink));
        let method = m.get("method").map(|n| {
            match text(n, "webhook method", self.sink)?
                .to_ascii_uppercase()
                .as_str()
            {
                "GET" => Some(Method::Get),
                "POST" => Some(Method::Post),
                other => {
                    self.sink.error(
                        n.pos,
                        DiagKind::BadValue,
                        format!("webhook method must be GET or POST, found `{other}`"),
                    );
                    None
                }
            }
        });
        let on_error = m.get("on_error");
        m.finish("webhook", self.sink);
        let on_error = self.opt_list(on_error, here);
        Some(Action::Webhook {
            url: u??,
            method: transpose(method)?.unwrap_or(Method::Post),
            on_error,
        })
    }

    fn business_hours(
        &mut self,
        args: Option<&Node>,
        pos: Option<Pos>,
        here: Loc,
    ) -> Option<Action> {
        let Some(args) = args else {
            return self.missing(pos, "business_hours", "a `calendar`");
        };
        let mut m = MapRead::new(args, "business_hours", self.sink)?;
        let calendar = m
            .require("calendar", "`business_hours`", self.sink)
            .and_then(|n| self.calendar_ref(n));
        let open = m.get("open");
        let closed = m.get("closed");
        m.finish("business_hours", self.sink);
        let open = self.opt_list(open, here);
        let closed = self.opt_list(closed, here);
        Some(Action::BusinessHours {
            calendar: calendar?,
            open,
            closed,
        })
    }

    /// Index of the calendar `node` names.
    pub(crate) fn calendar_ref(&mut self, node: &Node) -> Option<usize> {
        let cal = name(node, "calendar", self.sink)?;
        let found = self.calendars.iter().position(|c| *c == cal);
        if found.is_none() {
            let known: Vec<&str> = self.calendars.iter().map(String::as_str).collect();
            self.sink.error(
                node.pos,
                DiagKind::UnknownCalendar,
                format!(
                    "unknown calendar `{cal}`{} (calendars: {})",
                    suggest(&cal, &known),
                    if known.is_empty() {
                        "none defined".to_owned()
                    } else {
                        known.join(", ")
                    }
                ),
            );
        }
        found
    }

    fn label(&mut self, args: Option<&Node>, pos: Option<Pos>, here: Loc) -> Option<Action> {
        let Some(args) = args else {
            return self.missing(pos, "label", "a name");
        };
        let l = name(args, "label", self.sink)?;
        if l.contains('/') {
            self.sink.error(
                args.pos,
                DiagKind::BadValue,
                format!("label `{l}` must not contain `/`"),
            );
            return None;
        }
        self.labels.push((l.clone(), here, args.pos));
        Some(Action::Label)
    }
}

pub(super) fn push<T>(v: &mut Vec<T>, item: Option<T>) -> bool {
    item.map(|i| v.push(i)).is_some()
}

/// `Some(None)` for an absent optional value, `None` when a present one was bad.
pub(super) fn transpose<T>(v: Option<Option<T>>) -> Option<Option<T>> {
    match v {
        None => Some(None),
        Some(Some(x)) => Some(Some(x)),
        Some(None) => None,
    }
}

pub(super) fn media_of(t: Template, node: &Node) -> MediaT {
    let is_url = node
        .text()
        .is_some_and(|s| s.starts_with("http://") || s.starts_with("https://"));
    if is_url {
        MediaT::Url(t)
    } else {
        MediaT::File(t)
    }
}

fn url(node: &Node, sink: &mut Sink) -> Option<Template> {
    let t = template(node, "webhook url", sink)?;
    let ok = node.text().is_some_and(|s| {
        s.starts_with("http://") || s.starts_with("https://") || s.starts_with("${")
    });
    if !ok {
        sink.error(
            node.pos,
            DiagKind::BadValue,
            "webhook url must start with http:// or https://",
        );
        return None;
    }
    Some(t)
}

pub(super) fn sip_code(node: &Node, sink: &mut Sink) -> Option<u16> {
    int(node, "hangup code (a SIP status)", 400, 699, sink).and_then(|v| u16::try_from(v).ok())
}
