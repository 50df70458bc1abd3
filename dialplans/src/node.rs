//! A small source tree with positions, built from YAML events or from JSON.
//!
//! Scalars keep their raw text: the converter decides whether `0612` is a string or a number,
//! so YAML 1.1 typing surprises (`no` as false, `0612` as octal) never reach the plan.

use crate::diag::{DiagKind, Pos, Sink};
use saphyr_parser::{Event, Parser, ScalarStyle, Span};
use std::collections::HashMap;

/// Most nodes a file may expand to (aliases included): stops alias bombs.
const MAX_NODES: usize = 200_000;
/// Deepest nesting accepted.
const MAX_DEPTH: usize = 64;

/// One value of the source with its position.
#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub(crate) kind: NodeKind,
    pub(crate) pos: Option<Pos>,
}

/// The shape of a [`Node`].
#[derive(Clone, Debug)]
pub(crate) enum NodeKind {
    /// Raw text; `plain` is false for quoted YAML scalars and JSON strings.
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// The text of a scalar, `None` for a sequence or a map.
    pub(crate) fn text(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// True for a plain empty, `~` or `null` scalar.
    pub(crate) fn is_null(&self) -> bool {
        matches!(&self.kind, NodeKind::Scalar { text, plain: true } if text.is_empty() || text == "~" || text == "null")
    }

    /// Short name of the node's shape, for messages.
    pub(crate) fn shape(&self) -> &'static str {
        match self.kind {
            NodeKind::Scalar { .. } => "a scalar",
            NodeKind::Seq(_) => "a list",
            NodeKind::Map(_) => "a mapping",
        }
    }
}

fn pos_of(span: &Span) -> Pos {
    let line = u32::try_from(span.start.line()).unwrap_or(u32::MAX);
    let col = u32::try_from(span.start.col().saturating_add(1)).unwrap_or(u32::MAX);
    Pos::new(line, col)
}

enum Frame {
    Seq(Vec<Node>, Pos, usize),
    Map(Vec<(Node, Node)>, Option<Node>, Pos, usize),
}

/// Parses one YAML document into a [`Node`]; syntax errors and duplicate keys go to `sink`.
///
/// An empty document gives an empty mapping.
pub(crate) fn load_yaml(src: &str, sink: &mut Sink) -> Option<Node> {
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut root: Option<Node> = None;
    let mut count = 0usize;
    let mut documents = 0usize;
    for item in Parser::new_from_str(src) {
        let (event, span) = match item {
            Ok(ev) => ev,
            Err(e) => {
                let m = e.marker();
                let pos = Pos::new(
                    u32::try_from(m.line()).unwrap_or(u32::MAX),
                    u32::try_from(m.col().saturating_add(1)).unwrap_or(u32::MAX),
                );
                sink.error(
                    Some(pos),
                    DiagKind::Syntax,
                    format!("YAML syntax: {}", e.info()),
                );
                return None;
            }
        };
        let pos = pos_of(&span);
        let finished = match event {
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    sink.error(
                        Some(pos),
                        DiagKind::Syntax,
                        "a plan file holds one YAML document",
                    );
                    return None;
                }
                None
            }
            Event::SequenceStart(anchor, _) => {
                stack.push(Frame::Seq(Vec::new(), pos, anchor));
                None
            }
            Event::MappingStart(anchor, _) => {
                stack.push(Frame::Map(Vec::new(), None, pos, anchor));
                None
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq(items, p, anchor)) => Some((
                    Node {
                        kind: NodeKind::Seq(items),
                        pos: Some(p),
                    },
                    anchor,
                )),
                _ => None,
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map(entries, _, p, anchor)) => {
                    check_duplicates(&entries, sink);
                    Some((
                        Node {
                            kind: NodeKind::Map(entries),
                            pos: Some(p),
                        },
                        anchor,
                    ))
                }
                _ => None,
            },
            Event::Scalar(text, style, anchor, _) => Some((
                Node {
                    kind: NodeKind::Scalar {
                        text: text.into_owned(),
                        plain: style == ScalarStyle::Plain,
                    },
                    pos: Some(pos),
                },
                anchor,
            )),
            Event::Alias(id) => match anchors.get(&id) {
                Some(n) => {
                    count = count.saturating_add(size(n));
                    Some((
                        Node {
                            kind: n.kind.clone(),
                            pos: Some(pos),
                        },
                        0,
                    ))
                }
                None => {
                    sink.error(Some(pos), DiagKind::Syntax, "alias to an unknown anchor");
                    return None;
                }
            },
            _ => None,
        };
        if stack.len() > MAX_DEPTH {
            sink.error(Some(pos), DiagKind::Syntax, "nesting is too deep");
            return None;
        }
        let Some((node, anchor)) = finished else {
            continue;
        };
        count += 1;
        if count > MAX_NODES {
            sink.error(
                Some(pos),
                DiagKind::Syntax,
                "the file is too large once aliases are expanded",
            );
            return None;
        }
        if anchor != 0 {
            anchors.insert(anchor, node.clone());
        }
        match stack.last_mut() {
            Some(Frame::Seq(items, _, _)) => items.push(node),
            Some(Frame::Map(entries, key, _, _)) => match key.take() {
                Some(k) => entries.push((k, node)),
                None => *key = Some(node),
            },
            None => root = Some(node),
        }
    }
    Some(root.unwrap_or(Node {
        kind: NodeKind::Map(Vec::new()),
        pos: Some(Pos::new(1, 1)),
    }))
}

fn size(n: &Node) -> usize {
    match &n.kind {
        NodeKind::Scalar { .. } => 1,
        NodeKind::Seq(items) => items.iter().map(size).fold(1, usize::saturating_add),
        NodeKind::Map(entries) => entries
            .iter()
            .map(|(k, v)| size(k).saturating_add(size(v)))
            .fold(1, usize::saturating_add),
    }
}

fn check_duplicates(entries: &[(Node, Node)], sink: &mut Sink) {
    for (i, (k, _)) in entries.iter().enumerate() {
        let Some(text) = k.text() else { continue };
        if entries[..i]
            .iter()
            .any(|(prev, _)| prev.text() == Some(text))
        {
            sink.error(
                k.pos,
                DiagKind::Duplicate,
                format!("duplicate key `{text}`"),
            );
        }
    }
}

/// Converts a JSON value into a [`Node`] without positions.
pub(crate) fn from_json(value: &serde_json::Value) -> Node {
    use serde_json::Value;
    let scalar = |text: String, plain: bool| NodeKind::Scalar { text, plain };
    let kind = match value {
        Value::Null => scalar("null".into(), true),
        Value::Bool(b) => scalar(b.to_string(), true),
        Value::Number(n) => scalar(n.to_string(), true),
        Value::String(s) => scalar(s.clone(), false),
        Value::Array(items) => NodeKind::Seq(items.iter().map(from_json).collect()),
        Value::Object(map) => NodeKind::Map(
            map.iter()
                .map(|(k, v)| {
                    (
                        Node {
                            kind: scalar(k.clone(), false),
                            pos: None,
                        },
                        from_json(v),
                    )
                })
                .collect(),
        ),
    };
    Node { kind, pos: None }
}
