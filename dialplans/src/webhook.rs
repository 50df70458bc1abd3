//! Webhook answers: a JSON list of actions (the Jambonz model), in either action form.

use crate::diag::{DiagKind, Diagnostic, Pos, Sink};
use crate::model::{Action, Block, BlockId, Loc, Named, Plan};
use crate::node::{from_json, load_yaml};
use crate::parse::Builder;
use std::collections::HashMap;

/// The `file` of diagnostics about a webhook answer.
pub const WEBHOOK_FILE: &str = "webhook answer";

/// Largest webhook answer accepted, in bytes.
const MAX_JSON: usize = 1 << 20;

/// A parsed webhook answer, ready to run in a [`crate::Session`].
#[derive(Debug)]
pub struct ActionList {
    pub(crate) blocks: Vec<Block>,
    pub(crate) names: HashMap<String, Loc>,
}

impl ActionList {
    /// Number of top-level actions.
    pub fn len(&self) -> usize {
        self.blocks.first().map_or(0, |b| b.steps.len())
    }

    /// True when the answer holds no action.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Parses a webhook's JSON answer: a list of actions (`[{"say": "Hi"}, "hangup"]` or Jambonz's
/// `[{"verb": "say", "text": "Hi"}]`), checked against `plan` (calendars, contexts, labels).
pub fn parse_actions_json(plan: &Plan, json: &str) -> Result<ActionList, Vec<Diagnostic>> {
    let mut sink = Sink::new(WEBHOOK_FILE);
    if json.len() > MAX_JSON {
        sink.error(
            None,
            DiagKind::Syntax,
            format!("the answer is larger than {MAX_JSON} bytes"),
        );
        return Err(sink.diags);
    }
    let value: serde_json::Value = match serde_json::from_str(json) {
        Ok(v) => v,
        Err(e) => {
            let pos = Pos::new(
                u32::try_from(e.line()).unwrap_or(u32::MAX),
                u32::try_from(e.column()).unwrap_or(u32::MAX),
            );
            sink.error(Some(pos), DiagKind::Syntax, format!("JSON syntax: {e}"));
            return Err(sink.diags);
        }
    };
    // Valid JSON is valid YAML 1.2: read it again through the YAML loader to get positions;
    // fall back to position-less nodes if that reader disagrees.
    let mut scratch = Sink::new(WEBHOOK_FILE);
    let node = load_yaml(json, &mut scratch)
        .filter(|_| scratch.is_empty())
        .unwrap_or_else(|| from_json(&value));
    let mut b = Builder {
        sink: &mut sink,
        calendars: plan.calendars.iter().map(|c| c.name.clone()).collect(),
        blocks: Vec::new(),
        dynamic: true,
        context: None,
        labels: Vec::new(),
    };
    b.list(&node, None);
    let blocks = std::mem::take(&mut b.blocks);
    let mut names = HashMap::new();
    for (name, loc, pos) in std::mem::take(&mut b.labels) {
        if names.insert(name.clone(), loc).is_some() {
            sink.error(
                pos,
                DiagKind::Duplicate,
                format!("label `{name}` is used twice"),
            );
        }
    }
    let list = ActionList { blocks, names };
    check_gotos(plan, &list, &mut sink);
    if sink.is_empty() {
        Ok(list)
    } else {
        Err(sink.diags)
    }
}

fn check_gotos(plan: &Plan, list: &ActionList, sink: &mut Sink) {
    for block in &list.blocks {
        for step in &block.steps {
            let Action::Goto { context, name, .. } = &step.action else {
                continue;
            };
            match (context, name) {
                (Some(c), n) => match plan.context_index(c).and_then(|i| plan.contexts.get(i)) {
                    None => sink.error(
                        step.pos,
                        DiagKind::UnknownContext,
                        format!("goto to unknown context `{c}`"),
                    ),
                    Some(ctx) => {
                        if let Some(n) = n.as_ref().filter(|n| !ctx.names.contains_key(*n)) {
                            sink.error(
                                step.pos,
                                DiagKind::UnknownLabel,
                                format!("goto to unknown label or rule `{n}` in context `{c}`"),
                            );
                        }
                    }
                },
                (None, Some(n)) => {
                    let known = list.names.contains_key(n)
                        || plan.contexts.iter().any(|c| c.names.contains_key(n));
                    if !known {
                        sink.error(
                            step.pos,
                            DiagKind::UnknownLabel,
                            format!("goto to unknown label or rule `{n}`"),
                        );
                    }
                }
                (None, None) => {}
            }
        }
    }
}

/// Resolves a name in a webhook answer's own labels.
pub(crate) fn answer_label(list: &ActionList, name: &str) -> Option<Named> {
    list.names.get(name).copied().map(Named::Label)
}

/// The first place of an answer.
pub(crate) fn answer_start() -> Loc {
    Loc {
        block: BlockId::Answer(0),
        index: 0,
    }
}
