//! Evaluation of resolved nodes. Values borrow from the context: nothing is allocated.

use super::compile::{Node, Term};
use super::parser::{Lit, Op};
use super::Ctx;
use crate::routing::vocab::LangId;
use serde_json::Value;

/// A value during evaluation.
#[derive(Clone, Copy, Debug)]
enum Val<'a> {
    Null,
    Bool(bool),
    Num(f64),
    Str(&'a str),
    Lits(&'a [Lit]),
    Json(&'a [Value]),
    Langs(&'a [LangId]),
    /// A JSON object: only truthy.
    Object,
}

impl Node {
    pub(crate) fn eval(&self, cx: &Ctx<'_>) -> bool {
        match self {
            Node::Const(b) => *b,
            Node::And(v) => v.iter().all(|n| n.eval(cx)),
            Node::Or(v) => v.iter().any(|n| n.eval(cx)),
            Node::Not(n) => !n.eval(cx),
            Node::SkillAtLeast(s, min, strict) => {
                let p = cx
                    .agent
                    .and_then(|a| a.skills.get(s.0 as usize).copied())
                    .unwrap_or(0) as f64;
                if *strict {
                    p > *min
                } else {
                    p >= *min
                }
            }
            Node::LangHas(l) => cx.agent.is_some_and(|a| a.languages.contains(l)),
            Node::Cmp(op, l, r) => compare(*op, value(l, cx), value(r, cx), cx),
            Node::Truthy(t) => truthy(value(t, cx)),
        }
    }
}

fn value<'a>(t: &'a Term, cx: &Ctx<'a>) -> Val<'a> {
    match t {
        Term::Lit(l) => lit(l),
        Term::Skill(s) => Val::Num(
            cx.agent
                .and_then(|a| a.skills.get(s.0 as usize).copied())
                .unwrap_or(0) as f64,
        ),
        Term::Languages => cx.agent.map_or(Val::Null, |a| Val::Langs(a.languages)),
        Term::AgentId => cx.agent.map_or(Val::Null, |a| Val::Num(a.id as f64)),
        Term::AgentAttr(path) => cx.agent.map_or(Val::Null, |a| walk(a.attributes, path)),
        Term::TaskAttr(path) => cx.task.map_or(Val::Null, |t| walk(t.attributes, path)),
        Term::TaskChannel => cx.task.map_or(Val::Null, |t| Val::Str(t.channel.as_str())),
        Term::TaskPriority => cx.task.map_or(Val::Null, |t| Val::Num(t.priority as f64)),
        Term::Available => cx.stats.map_or(Val::Null, |s| Val::Num(s.available as f64)),
        Term::Waiting => cx.stats.map_or(Val::Null, |s| Val::Num(s.waiting as f64)),
    }
}

fn lit(l: &Lit) -> Val<'_> {
    match l {
        Lit::Null => Val::Null,
        Lit::Bool(b) => Val::Bool(*b),
        Lit::Num(n) => Val::Num(*n),
        Lit::Str(s) => Val::Str(s),
        Lit::List(v) => Val::Lits(v),
    }
}

fn json(v: &Value) -> Val<'_> {
    match v {
        Value::Null => Val::Null,
        Value::Bool(b) => Val::Bool(*b),
        Value::Number(n) => n.as_f64().map_or(Val::Null, Val::Num),
        Value::String(s) => Val::Str(s),
        Value::Array(a) => Val::Json(a),
        Value::Object(_) => Val::Object,
    }
}

fn walk<'a>(mut v: &'a Value, path: &[String]) -> Val<'a> {
    for seg in path {
        v = match v {
            Value::Object(m) => match m.get(seg.as_str()) {
                Some(x) => x,
                None => return Val::Null,
            },
            Value::Array(a) => match seg.parse::<usize>().ok().and_then(|i| a.get(i)) {
                Some(x) => x,
                None => return Val::Null,
            },
            _ => return Val::Null,
        };
    }
    json(v)
}

fn truthy(v: Val<'_>) -> bool {
    match v {
        Val::Null => false,
        Val::Bool(b) => b,
        Val::Num(n) => n != 0.0,
        Val::Str(s) => !s.is_empty(),
        Val::Lits(l) => !l.is_empty(),
        Val::Json(j) => !j.is_empty(),
        Val::Langs(l) => !l.is_empty(),
        Val::Object => true,
    }
}

/// Scalar equality; lists and objects are never equal to anything.
fn equal(a: Val<'_>, b: Val<'_>) -> bool {
    match (a, b) {
        (Val::Null, Val::Null) => true,
        (Val::Bool(x), Val::Bool(y)) => x == y,
        (Val::Num(x), Val::Num(y)) => x == y,
        (Val::Str(x), Val::Str(y)) => x == y,
        _ => false,
    }
}

/// Whether the collection `coll` holds `item` (a string holds its substrings).
fn holds(coll: Val<'_>, item: Val<'_>, cx: &Ctx<'_>) -> bool {
    match coll {
        Val::Lits(l) => l.iter().any(|x| equal(lit(x), item)),
        Val::Json(j) => j.iter().any(|x| equal(json(x), item)),
        Val::Langs(langs) => match item {
            Val::Str(s) => cx.vocab.find_lang(s).is_some_and(|id| langs.contains(&id)),
            _ => false,
        },
        Val::Str(s) => match item {
            Val::Str(sub) => s.contains(sub),
            _ => false,
        },
        _ => false,
    }
}

fn compare(op: Op, a: Val<'_>, b: Val<'_>, cx: &Ctx<'_>) -> bool {
    let order = |f: fn(std::cmp::Ordering) -> bool| match (a, b) {
        (Val::Num(x), Val::Num(y)) => x.partial_cmp(&y).is_some_and(f),
        (Val::Str(x), Val::Str(y)) => f(x.cmp(y)),
        _ => false,
    };
    match op {
        Op::Eq => equal(a, b),
        Op::Ne => !equal(a, b),
        Op::Lt => order(|o| o.is_lt()),
        Op::Le => order(|o| o.is_le()),
        Op::Gt => order(|o| o.is_gt()),
        Op::Ge => order(|o| o.is_ge()),
        Op::Has | Op::Contains => holds(a, b, cx),
        Op::In => holds(b, a, cx),
    }
}
