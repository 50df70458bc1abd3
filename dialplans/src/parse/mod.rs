//! From YAML text to a [`Plan`]: top level, calendars, contexts and rules.

mod action;
mod reader;
mod survey;
mod verbs;

pub(crate) use action::Builder;
use reader::{items, name, strings, text, MapRead};

use crate::diag::{DiagKind, Pos, Sink};
use crate::model::{Conditions, Context, Named, Plan, Rule};
use crate::node::{load_yaml, Node, NodeKind};
use crate::pattern::{Pattern, PatternSet};
use crate::template::is_var_name;
use crate::time::{parse_tz, Calendar, Holiday, WeekSpec};
use std::collections::HashMap;

/// Parses `src` into a plan; validation beyond the structure is left to [`crate::validate`].
/// Returns `None` only when the YAML itself is unreadable: a plan with reported errors is still
/// returned (minus the bad parts) so that later checks can report more.
pub(crate) fn parse_plan(src: &str, sink: &mut Sink) -> Option<Plan> {
    let root = load_yaml(src, sink)?;
    let mut top = MapRead::new(&root, "the plan", sink)?;
    let timezone = top.get("timezone").and_then(|n| {
        let t = text(n, "timezone", sink)?;
        parse_tz(&t)
            .map_err(|e| sink.error(n.pos, DiagKind::BadTimeSpec, e))
            .ok()
    });
    let timezone = timezone.unwrap_or(chrono_tz::UTC);
    let prompt_dir = top
        .get("prompt_dir")
        .and_then(|n| name(n, "prompt_dir", sink).map(|d| (d, n.pos)));
    let vars = top.get("vars");
    let calendars = top
        .get("calendars")
        .map(|n| parse_calendars(n, timezone, sink))
        .unwrap_or_default();
    let contexts_node = top.require("contexts", "the plan", sink);
    top.finish("the plan", sink);

    let mut b = Builder {
        sink,
        calendars: calendars.iter().map(|c| c.name.clone()).collect(),
        blocks: Vec::new(),
        dynamic: false,
        context: None,
        labels: Vec::new(),
    };
    let vars = vars.and_then(|n| plan_vars(n, b.sink)).unwrap_or_default();
    let mut contexts = Vec::new();
    if let Some(n) = contexts_node {
        if let Some(m) = map_entries(n, "contexts", b.sink) {
            for (k, v) in m {
                if let Some(ctx) = parse_context(k, v, contexts.len(), &mut b) {
                    contexts.push(ctx);
                }
            }
        }
    }
    check_selection(&contexts, contexts_node, b.sink);
    let blocks = std::mem::take(&mut b.blocks);
    Some(Plan {
        file: String::new(),
        timezone,
        prompt_dir,
        vars,
        calendars,
        contexts,
        blocks,
    })
}

fn map_entries<'n>(node: &'n Node, what: &str, sink: &mut Sink) -> Option<&'n [(Node, Node)]> {
    match &node.kind {
        NodeKind::Map(entries) => Some(entries),
        _ => {
            sink.error(
                node.pos,
                DiagKind::BadValue,
                format!("{what} must be a mapping, found {}", node.shape()),
            );
            None
        }
    }
}

fn plan_vars(node: &Node, sink: &mut Sink) -> Option<Vec<(String, crate::template::Template)>> {
    let entries = map_entries(node, "vars", sink)?;
    let mut out = Vec::new();
    for (k, v) in entries {
        let (Some(key), Some(value)) = (
            name(k, "a variable name", sink),
            reader::template(v, "a variable", sink),
        ) else {
            continue;
        };
        if !is_var_name(&key) {
            sink.error(
                k.pos,
                DiagKind::BadValue,
                format!("bad variable name `{key}`"),
            );
            continue;
        }
        out.push((key, value));
    }
    Some(out)
}

fn parse_calendars(node: &Node, default_tz: chrono_tz::Tz, sink: &mut Sink) -> Vec<Calendar> {
    let Some(entries) = map_entries(node, "calendars", sink) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, v) in entries {
        let Some(cal_name) = name(k, "a calendar name", sink) else {
            continue;
        };
        let Some(mut m) = MapRead::new(v, "a calendar", sink) else {
            continue;
        };
        let tz = match m.get("timezone") {
            Some(n) => text(n, "timezone", sink).and_then(|t| {
                parse_tz(&t)
                    .map_err(|e| sink.error(n.pos, DiagKind::BadTimeSpec, e))
                    .ok()
            }),
            None => Some(default_tz),
        };
        let hours = m
            .require("hours", "a calendar", sink)
            .map(|n| parse_hours(n, sink))
            .unwrap_or_default();
        let holidays = m
            .get("holidays")
            .map(|n| parse_holidays(n, sink))
            .unwrap_or_default();
        m.finish("a calendar", sink);
        if let Some(tz) = tz {
            out.push(Calendar {
                name: cal_name,
                tz,
                hours,
                holidays,
            });
        }
    }
    out
}

fn parse_hours(node: &Node, sink: &mut Sink) -> Vec<WeekSpec> {
    let mut out = Vec::new();
    let mut add = |n: &Node, r: Result<WeekSpec, String>, sink: &mut Sink| match r {
        Ok(w) => out.push(w),
        Err(e) => sink.error(n.pos, DiagKind::BadTimeSpec, e),
    };
    match &node.kind {
        NodeKind::Map(entries) => {
            for (k, v) in entries {
                let (Some(days), Some(hours)) = (text(k, "days", sink), text(v, "hours", sink))
                else {
                    continue;
                };
                let r = WeekSpec::from_parts(&days, &hours);
                // A bad day points at the key, bad hours at the value.
                let at = if WeekSpec::from_parts(&days, "").is_err() {
                    k
                } else {
                    v
                };
                add(at, r, sink);
            }
        }
        _ => {
            for n in items(node) {
                if let Some(t) = text(n, "hours", sink) {
                    add(n, WeekSpec::parse(&t), sink);
                }
            }
        }
    }
    out
}

fn parse_holidays(node: &Node, sink: &mut Sink) -> Vec<Holiday> {
    let mut out = Vec::new();
    for n in items(node) {
        let (date_node, date) = match &n.kind {
            NodeKind::Map(_) => {
                let Some(mut m) = MapRead::new(n, "a holiday", sink) else {
                    continue;
                };
                let d = m.require("date", "a holiday", sink);
                let _ = m.get("name");
                m.finish("a holiday", sink);
                let Some(d) = d else { continue };
                (d, text(d, "a holiday date", sink))
            }
            _ => (n, text(n, "a holiday date", sink)),
        };
        let Some(date) = date else { continue };
        match Holiday::parse(&date) {
            Ok(h) => out.push(h),
            Err(e) => sink.error(date_node.pos, DiagKind::BadTimeSpec, e),
        }
    }
    out
}

fn parse_context(key: &Node, value: &Node, index: usize, b: &mut Builder<'_>) -> Option<Context> {
    let ctx_name = name(key, "a context name", b.sink)?;
    if ctx_name.contains('/') {
        b.sink.error(
            key.pos,
            DiagKind::BadValue,
            format!("context name `{ctx_name}` must not contain `/`"),
        );
    }
    let mut m = MapRead::new(value, "a context", b.sink)?;
    let trunks = m
        .get("trunks")
        .map(|n| strings(n, "trunks", b.sink))
        .unwrap_or_default();
    let groups = m
        .get("groups")
        .map(|n| strings(n, "groups", b.sink))
        .unwrap_or_default();
    let rules_node = m.require("rules", "a context", b.sink);
    m.finish("a context", b.sink);
    b.context = Some(index);
    b.labels.clear();
    let mut rules = Vec::new();
    if let Some(n) = rules_node {
        match &n.kind {
            NodeKind::Seq(list) => {
                for r in list {
                    if let Some(rule) = parse_rule(r, b) {
                        rules.push(rule);
                    }
                }
            }
            _ => b.sink.error(
                n.pos,
                DiagKind::BadValue,
                format!("rules must be a list, found {}", n.shape()),
            ),
        }
    }
    let mut names: HashMap<String, Named> = HashMap::new();
    let mut seen: HashMap<String, Option<Pos>> = HashMap::new();
    let rule_names = rules
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.name.clone().map(|n| (n, Named::Rule(i), r.pos)));
    let labels = std::mem::take(&mut b.labels)
        .into_iter()
        .map(|(n, loc, pos)| (n, Named::Label(loc), pos));
    for (n, target, pos) in rule_names.chain(labels) {
        if let Some(first) = seen.get(&n) {
            let at = first
                .map(|p| format!(" (first at line {})", p.line))
                .unwrap_or_default();
            b.sink.error(
                pos,
                DiagKind::Duplicate,
                format!("name `{n}` is used twice in context `{ctx_name}`{at}"),
            );
            continue;
        }
        seen.insert(n.clone(), pos);
        names.insert(n, target);
    }
    Some(Context {
        name: ctx_name,
        trunks,
        groups,
        rules,
        names,
    })
}

fn patterns(node: &Node, what: &str, sink: &mut Sink) -> Option<PatternSet> {
    let mut out = Vec::new();
    let mut ok = true;
    for n in items(node) {
        let Some(src) = text(n, what, sink) else {
            ok = false;
            continue;
        };
        match Pattern::parse(&src) {
            Ok(p) => out.push(p),
            Err(e) => {
                sink.error(
                    n.pos,
                    DiagKind::BadPattern,
                    format!("bad {what} pattern: {e}"),
                );
                ok = false;
            }
        }
    }
    ok.then_some(PatternSet(out))
}

fn parse_rule(node: &Node, b: &mut Builder<'_>) -> Option<Rule> {
    let mut m = MapRead::new(node, "a rule", b.sink)?;
    let rule_name = m.get("name").and_then(|n| name(n, "rule name", b.sink));
    let mut conds = Conditions::default();
    let mut ok = true;
    if let Some(n) = m.get("called") {
        conds.called = patterns(n, "called", b.sink);
        ok &= conds.called.is_some();
    }
    if let Some(n) = m.get("calling") {
        conds.calling = patterns(n, "calling", b.sink);
        ok &= conds.calling.is_some();
    }
    if let Some(n) = m.get("trunk") {
        conds.trunks = strings(n, "trunk", b.sink);
    }
    if let Some(n) = m.get("group") {
        conds.groups = strings(n, "group", b.sink);
    }
    if let Some(n) = m.get("headers") {
        if let Some(entries) = map_entries(n, "headers", b.sink) {
            for (k, v) in entries {
                match (
                    name(k, "a header name", b.sink),
                    patterns(v, "header", b.sink),
                ) {
                    (Some(h), Some(p)) => conds.headers.push((h.to_ascii_lowercase(), p)),
                    _ => ok = false,
                }
            }
        }
    }
    if let Some(n) = m.get("time") {
        for t in items(n) {
            let Some(src) = text(t, "time", b.sink) else {
                continue;
            };
            match WeekSpec::parse(&src) {
                Ok(w) => {
                    conds.times.push(w);
                    conds.time_src.push(src);
                }
                Err(e) => {
                    b.sink.error(t.pos, DiagKind::BadTimeSpec, e);
                    ok = false;
                }
            }
        }
    }
    if let Some(n) = m.get("open") {
        conds.open = b.calendar_ref(n);
        ok &= conds.open.is_some();
    }
    if let Some(n) = m.get("closed") {
        conds.closed = b.calendar_ref(n);
        ok &= conds.closed.is_some();
    }
    let actions = m.require("actions", "a rule", b.sink);
    m.finish("a rule", b.sink);
    let body = b.list(actions?, None);
    ok.then_some(Rule {
        name: rule_name,
        pos: node.pos,
        conds,
        body,
    })
}

/// A trunk or group may select only one context.
fn check_selection(contexts: &[Context], node: Option<&Node>, sink: &mut Sink) {
    let pos = node.and_then(|n| n.pos);
    for (i, c) in contexts.iter().enumerate() {
        for earlier in &contexts[..i] {
            for t in c.trunks.iter().filter(|t| earlier.trunks.contains(t)) {
                sink.error(
                    pos,
                    DiagKind::Duplicate,
                    format!(
                        "trunk `{t}` selects both context `{}` and `{}`",
                        earlier.name, c.name
                    ),
                );
            }
            for g in c.groups.iter().filter(|g| earlier.groups.contains(g)) {
                sink.error(
                    pos,
                    DiagKind::Duplicate,
                    format!(
                        "group `{g}` selects both context `{}` and `{}`",
                        earlier.name, c.name
                    ),
                );
            }
        }
    }
}
