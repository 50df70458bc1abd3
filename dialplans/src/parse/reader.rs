//! Typed reads from [`Node`]s that report every problem to a [`Sink`] and carry on.

use crate::diag::{DiagKind, Pos, Sink};
use crate::node::{Node, NodeKind};
use crate::template::Template;

/// Reads the keys of one mapping and reports the keys nobody asked for.
pub(crate) struct MapRead<'n> {
    entries: &'n [(Node, Node)],
    used: Vec<bool>,
    known: Vec<&'static str>,
    pub(crate) pos: Option<Pos>,
}

impl<'n> MapRead<'n> {
    /// Starts reading `node`, which must be a mapping (`what` names it in messages).
    pub(crate) fn new(node: &'n Node, what: &str, sink: &mut Sink) -> Option<MapRead<'n>> {
        match &node.kind {
            NodeKind::Map(entries) => Some(MapRead {
                entries,
                used: vec![false; entries.len()],
                known: Vec::new(),
                pos: node.pos,
            }),
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

    /// The value of `key`, if present.
    pub(crate) fn get(&mut self, key: &'static str) -> Option<&'n Node> {
        self.known.push(key);
        let i = self
            .entries
            .iter()
            .position(|(k, _)| k.text() == Some(key))?;
        self.used[i] = true;
        Some(&self.entries[i].1)
    }

    /// The value of `key`, reporting it when absent.
    pub(crate) fn require(
        &mut self,
        key: &'static str,
        what: &str,
        sink: &mut Sink,
    ) -> Option<&'n Node> {
        let v = self.get(key);
        if v.is_none() {
            sink.error(
                self.pos,
                DiagKind::MissingKey,
                format!("{what} needs `{key}`"),
            );
        }
        v
    }

    /// Reports every key that was not read.
    pub(crate) fn finish(self, what: &str, sink: &mut Sink) {
        for ((k, _), used) in self.entries.iter().zip(&self.used) {
            if !used {
                let name = k.text().unwrap_or("?");
                sink.error(
                    k.pos,
                    DiagKind::UnknownKey,
                    format!(
                        "unknown key `{name}` in {what}{} (expected one of: {})",
                        suggest(name, &self.known),
                        self.known.join(", ")
                    ),
                );
            }
        }
    }
}

/// `" (did you mean `x`?)"` when a known word is close to `word`, else empty.
pub(crate) fn suggest(word: &str, known: &[&str]) -> String {
    known
        .iter()
        .map(|k| (distance(word, k), k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| format!(" (did you mean `{k}`?)"))
        .unwrap_or_default()
}

fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// The text of a scalar.
pub(crate) fn text(node: &Node, what: &str, sink: &mut Sink) -> Option<String> {
    match &node.kind {
        NodeKind::Scalar { text, .. } => Some(text.clone()),
        _ => {
            sink.error(
                node.pos,
                DiagKind::BadValue,
                format!("{what} must be a single value, found {}", node.shape()),
            );
            None
        }
    }
}

/// A non-empty name.
pub(crate) fn name(node: &Node, what: &str, sink: &mut Sink) -> Option<String> {
    let t = text(node, what, sink)?;
    if t.trim().is_empty() {
        sink.error(
            node.pos,
            DiagKind::BadValue,
            format!("{what} must not be empty"),
        );
        return None;
    }
    Some(t)
}

/// An integer within `lo..=hi`.
pub(crate) fn int(node: &Node, what: &str, lo: i64, hi: i64, sink: &mut Sink) -> Option<i64> {
    let t = text(node, what, sink)?;
    match t.trim().parse::<i64>() {
        Ok(v) if (lo..=hi).contains(&v) => Some(v),
        _ => {
            sink.error(
                node.pos,
                DiagKind::BadValue,
                format!("{what} must be a whole number from {lo} to {hi}, found `{t}`"),
            );
            None
        }
    }
}

/// An unsigned integer within `lo..=hi`.
pub(crate) fn uint(node: &Node, what: &str, lo: u32, hi: u32, sink: &mut Sink) -> Option<u32> {
    int(node, what, i64::from(lo), i64::from(hi), sink).and_then(|v| u32::try_from(v).ok())
}

/// `true` or `false`.
pub(crate) fn boolean(node: &Node, what: &str, sink: &mut Sink) -> Option<bool> {
    match text(node, what, sink)?.as_str() {
        "true" => Some(true),
        "false" => Some(false),
        other => {
            sink.error(
                node.pos,
                DiagKind::BadValue,
                format!("{what} must be true or false, found `{other}`"),
            );
            None
        }
    }
}

/// A DTMF key: `0`-`9`, `*`, `#`, `A`-`D`.
pub(crate) fn dtmf(node: &Node, what: &str, sink: &mut Sink) -> Option<char> {
    let t = text(node, what, sink)?;
    let mut chars = t.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D') => Some(c),
        _ => {
            sink.error(
                node.pos,
                DiagKind::BadValue,
                format!("{what} must be one DTMF key (0-9, *, #, A-D), found `{t}`"),
            );
            None
        }
    }
}

/// A string with `${…}` interpolation.
pub(crate) fn template(node: &Node, what: &str, sink: &mut Sink) -> Option<Template> {
    let t = text(node, what, sink)?;
    match Template::parse(&t) {
        Ok(tpl) => Some(tpl),
        Err(e) => {
            let quoted = matches!(node.kind, NodeKind::Scalar { plain: false, .. });
            let pos = node.pos.map(|p| {
                let shift = u32::try_from(e.offset).unwrap_or(0) + u32::from(quoted);
                Pos::new(p.line, p.col.saturating_add(shift))
            });
            sink.error(pos, DiagKind::BadTemplate, format!("{what}: {}", e.message));
            None
        }
    }
}

/// A value or a list of values, as strings.
pub(crate) fn strings(node: &Node, what: &str, sink: &mut Sink) -> Vec<String> {
    match &node.kind {
        NodeKind::Seq(items) => items.iter().filter_map(|n| name(n, what, sink)).collect(),
        _ => name(node, what, sink).into_iter().collect(),
    }
}

/// A value or a list of values, as nodes.
pub(crate) fn items(node: &Node) -> Vec<&Node> {
    match &node.kind {
        NodeKind::Seq(items) => items.iter().collect(),
        _ => vec![node],
    }
}
