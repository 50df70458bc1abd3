//! Checks on a parsed plan: unreachable rules, `goto` targets, loops without exit, prompts.

use crate::diag::{DiagKind, Pos, Sink};
use crate::model::{Action, BlockId, Conditions, Loc, MediaT, Named, Plan, PromptT};
use crate::pattern::PatternSet;
use std::collections::HashMap;
use std::path::Path;

/// Runs every check that needs no file system. When the plan had errors already (`partial`),
/// the loop check is skipped: a dropped action could make it report a loop that is not there.
pub(crate) fn validate(plan: &Plan, partial: bool, sink: &mut Sink) {
    unreachable_rules(plan, sink);
    goto_targets(plan, sink);
    if !partial && sink.is_empty() {
        loops_without_exit(plan, sink);
    }
}

fn unreachable_rules(plan: &Plan, sink: &mut Sink) {
    for ctx in &plan.contexts {
        for (j, later) in ctx.rules.iter().enumerate() {
            let shadow = ctx.rules[..j]
                .iter()
                .find(|r| covers(&r.conds, &later.conds));
            if let Some(earlier) = shadow {
                let who = earlier
                    .name
                    .as_ref()
                    .map(|n| format!("rule `{n}`"))
                    .unwrap_or_else(|| "the rule".into());
                let at = earlier
                    .pos
                    .map(|p| format!(" at line {}", p.line))
                    .unwrap_or_default();
                sink.error(
                    later.pos,
                    DiagKind::UnreachableRule,
                    format!(
                        "unreachable rule: {who}{at} already matches every call this rule matches"
                    ),
                );
            }
        }
    }
}

fn set_covers(a: &Option<PatternSet>, b: &Option<PatternSet>) -> bool {
    match (a, b) {
        (None, _) => true,
        (Some(a), None) => a.is_catch_all(),
        (Some(a), Some(b)) => a.covers(b),
    }
}

fn names_cover(a: &[String], b: &[String]) -> bool {
    a.is_empty() || (!b.is_empty() && b.iter().all(|x| a.contains(x)))
}

/// Every call matching `b` also matches `a` (conservative).
fn covers(a: &Conditions, b: &Conditions) -> bool {
    set_covers(&a.called, &b.called)
        && set_covers(&a.calling, &b.calling)
        && names_cover(&a.trunks, &b.trunks)
        && names_cover(&a.groups, &b.groups)
        && a.headers
            .iter()
            .all(|(h, pa)| b.headers.iter().any(|(hb, pb)| hb == h && pa.covers(pb)))
        && (a.time_src.is_empty() || a.time_src == b.time_src)
        && (a.open.is_none() || a.open == b.open)
        && (a.closed.is_none() || a.closed == b.closed)
}

/// Calls `f` on every action of the plan's file lists with its place.
fn each_action(plan: &Plan, mut f: impl FnMut(Loc, &Action, Option<Pos>)) {
    for (b, block) in plan.blocks.iter().enumerate() {
        for (i, step) in block.steps.iter().enumerate() {
            let loc = Loc {
                block: BlockId::Plan(u32::try_from(b).unwrap_or(u32::MAX)),
                index: i,
            };
            f(loc, &step.action, step.pos);
        }
    }
}

fn goto_targets(plan: &Plan, sink: &mut Sink) {
    each_action(plan, |loc, action, pos| {
        let Action::Goto { context, name, .. } = action else {
            return;
        };
        let here = block_context(plan, loc.block);
        let ctx = match context {
            Some(c) => match plan.context_index(c) {
                Some(i) => i,
                None => {
                    let known: Vec<&str> = plan.context_names().collect();
                    sink.error(
                        pos,
                        DiagKind::UnknownContext,
                        format!(
                            "goto to unknown context `{c}` (contexts: {})",
                            known.join(", ")
                        ),
                    );
                    return;
                }
            },
            None => here,
        };
        let Some(name) = name else { return };
        let Some(c) = plan.contexts.get(ctx) else {
            return;
        };
        if !c.names.contains_key(name) {
            let mut known: Vec<&str> = c.names.keys().map(String::as_str).collect();
            known.sort_unstable();
            sink.error(
                pos,
                DiagKind::UnknownLabel,
                format!(
                    "goto to unknown label or rule `{name}` in context `{}` (known: {})",
                    c.name,
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                ),
            );
        }
    });
}

fn block_context(plan: &Plan, id: BlockId) -> usize {
    match id {
        BlockId::Plan(b) => plan
            .blocks
            .get(b as usize)
            .and_then(|b| b.context)
            .unwrap_or(0),
        BlockId::Answer(_) => 0,
    }
}

/// Where control goes after an instant action (or the end of a list); `None` means it waits or
/// ends there, which is an exit.
fn successors(plan: &Plan, loc: Loc) -> Option<Vec<Loc>> {
    let BlockId::Plan(b) = loc.block else {
        return None;
    };
    let block = plan.blocks.get(b as usize)?;
    let start = |id: BlockId| Loc {
        block: id,
        index: 0,
    };
    let next = Loc {
        block: loc.block,
        index: loc.index + 1,
    };
    let Some(step) = block.steps.get(loc.index) else {
        // End of list: resume after the owner, or the call ends (an exit).
        return block.parent.map(|p| {
            vec![Loc {
                block: p.block,
                index: p.index + 1,
            }]
        });
    };
    match &step.action {
        Action::Set(_) | Action::Label | Action::Answer | Action::RecordSession(_) => {
            Some(vec![next])
        }
        Action::Branch {
            cases,
            no_input,
            default,
            ..
        } => {
            let mut out: Vec<Loc> = cases.iter().map(|(_, b)| start(*b)).collect();
            out.extend(no_input.map(start));
            out.push(default.map_or(next, start));
            Some(out)
        }
        Action::BusinessHours { open, closed, .. } => {
            Some(vec![open.map_or(next, start), closed.map_or(next, start)])
        }
        Action::Goto { max: Some(_), .. } => None,
        Action::Goto { context, name, .. } => {
            let ctx = match context {
                Some(c) => plan.context_index(c)?,
                None => block.context?,
            };
            let c = plan.contexts.get(ctx)?;
            match name {
                None if c.rules.is_empty() => None,
                None => Some(c.rules.iter().map(|r| start(r.body)).collect()),
                Some(n) => match c.names.get(n)? {
                    Named::Label(l) => Some(vec![*l]),
                    Named::Rule(r) => Some(vec![start(c.rules.get(*r)?.body)]),
                },
            }
        }
        _ => None,
    }
}

fn loops_without_exit(plan: &Plan, sink: &mut Sink) {
    // Every place: each action and each list end.
    let mut places = Vec::new();
    for (b, block) in plan.blocks.iter().enumerate() {
        for i in 0..=block.steps.len() {
            places.push(Loc {
                block: BlockId::Plan(u32::try_from(b).unwrap_or(u32::MAX)),
                index: i,
            });
        }
    }
    let succ: Vec<Option<Vec<Loc>>> = places.iter().map(|l| successors(plan, *l)).collect();
    let positions: HashMap<Loc, usize> = places.iter().enumerate().map(|(i, l)| (*l, i)).collect();
    let index = |l: &Loc| positions.get(l).copied();
    let mut can_exit: Vec<bool> = succ.iter().map(Option::is_none).collect();
    let mut changed = true;
    while changed {
        changed = false;
        for (i, s) in succ.iter().enumerate() {
            if can_exit[i] {
                continue;
            }
            let exits = s
                .iter()
                .flatten()
                .any(|l| index(l).is_none_or(|j| can_exit[j]));
            if exits {
                can_exit[i] = true;
                changed = true;
            }
        }
    }
    each_action(plan, |loc, action, pos| {
        if let Action::Goto { context, name, .. } = action {
            if index(&loc).is_some_and(|i| !can_exit[i]) {
                let target = match (context, name) {
                    (Some(c), Some(n)) => format!("{c}/{n}"),
                    (Some(c), None) => format!("{c}/"),
                    (None, Some(n)) => n.clone(),
                    (None, None) => String::new(),
                };
                sink.error(
                    pos,
                    DiagKind::LoopWithoutExit,
                    format!(
                        "loop without exit: `goto {target}` comes back here with no action that waits for the caller or ends the call (add a gather/play/say/hangup, or `max:` on the goto)"
                    ),
                );
            }
        }
    });
}

/// Reports prompt files that do not exist under `dir`.
pub(crate) fn prompts(plan: &Plan, dir: &Path, sink: &mut Sink) {
    each_action(plan, |_, action, pos| {
        let file = match action {
            Action::Play {
                media: MediaT::File(t),
                ..
            }
            | Action::Gather {
                prompt: Some(PromptT::Play(MediaT::File(t))),
                ..
            }
            | Action::Csat {
                prompt: Some(PromptT::Play(MediaT::File(t))),
                ..
            } => t.as_literal(),
            _ => None,
        };
        let Some(file) = file else { return };
        let path = dir.join(&file);
        if !path.is_file() {
            sink.error(
                pos,
                DiagKind::MissingPrompt,
                format!(
                    "missing prompt file `{file}` (looked for {})",
                    path.display()
                ),
            );
        }
    });
}
