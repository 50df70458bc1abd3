//! The `csat` action: `- csat` (the default survey) or
//! `- csat: { prompt: { say: "…" }, invalid: …, no_input: …, thanks: none, timeout: 5, tries: 3 }`.

use super::action::{transpose, Builder};
use super::reader::{uint, MapRead};
use crate::diag::Pos;
use crate::model::{Action, PromptT};
use crate::node::{Node, NodeKind};

impl Builder<'_> {
    pub(super) fn csat(&mut self, args: Option<&Node>, pos: Option<Pos>) -> Option<Action> {
        let empty = Node {
            kind: NodeKind::Map(Vec::new()),
            pos,
        };
        let args = match args {
            Some(Node {
                kind: NodeKind::Scalar { text, .. },
                ..
            }) if text == "true" => &empty,
            Some(a) => a,
            None => &empty,
        };
        let mut m = MapRead::new(args, "csat", self.sink)?;
        let prompt = m.get("prompt").map(|n| self.prompt(n));
        let invalid = m.get("invalid").map(|n| self.prompt(n));
        let no_input = m.get("no_input").map(|n| self.prompt(n));
        let thanks = m.get("thanks").map(|n| match n.text() {
            Some("none") | Some("false") => Some(None::<PromptT>),
            _ => self.prompt(n).map(Some),
        });
        let timeout = m
            .get("timeout")
            .map(|n| uint(n, "csat timeout", 1, 60, self.sink));
        let tries = m
            .get("tries")
            .map(|n| uint(n, "csat tries", 1, 10, self.sink));
        m.finish("csat", self.sink);
        Some(Action::Csat {
            prompt: transpose(prompt)?,
            invalid: transpose(invalid)?,
            no_input: transpose(no_input)?,
            thanks: transpose(thanks)?,
            timeout: transpose(timeout)?.unwrap_or(5),
            tries: transpose(tries)?.unwrap_or(3),
        })
    }
}
