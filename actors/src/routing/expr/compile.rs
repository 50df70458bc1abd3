//! Name resolution: the syntax tree becomes a [`Node`] tree with interned skills and languages.

use super::parser::{Ast, Lit, Op, Operand};
use super::{ExprError, Scope};
use crate::routing::vocab::{LangId, SkillId, Vocabulary};

/// A resolved expression node.
#[derive(Clone, Debug)]
pub(crate) enum Node {
    Const(bool),
    And(Box<[Node]>),
    Or(Box<[Node]>),
    Not(Box<Node>),
    /// `skills.X >= min` (or `>`), the common case, without value boxing.
    SkillAtLeast(SkillId, f64, bool),
    /// `languages HAS "xx"`.
    LangHas(LangId),
    Cmp(Op, Term, Term),
    Truthy(Term),
}

/// A resolved operand.
#[derive(Clone, Debug)]
pub(crate) enum Term {
    Lit(Lit),
    Skill(SkillId),
    Languages,
    AgentId,
    AgentAttr(Box<[String]>),
    TaskAttr(Box<[String]>),
    TaskChannel,
    TaskPriority,
    Available,
    Waiting,
}

impl Term {
    fn uses_task(&self) -> bool {
        matches!(
            self,
            Term::TaskAttr(_) | Term::TaskChannel | Term::TaskPriority
        )
    }
}

impl Node {
    pub(super) fn uses_task(&self) -> bool {
        match self {
            Node::Const(_) | Node::SkillAtLeast(..) | Node::LangHas(_) => false,
            Node::And(v) | Node::Or(v) => v.iter().any(Node::uses_task),
            Node::Not(n) => n.uses_task(),
            Node::Cmp(_, a, b) => a.uses_task() || b.uses_task(),
            Node::Truthy(t) => t.uses_task(),
        }
    }

    pub(super) fn skills(&self, out: &mut Vec<SkillId>) {
        match self {
            Node::SkillAtLeast(s, ..) => out.push(*s),
            Node::And(v) | Node::Or(v) => v.iter().for_each(|n| n.skills(out)),
            Node::Not(n) => n.skills(out),
            Node::Cmp(_, a, b) => {
                for t in [a, b] {
                    if let Term::Skill(s) = t {
                        out.push(*s)
                    }
                }
            }
            Node::Truthy(Term::Skill(s)) => out.push(*s),
            _ => {}
        }
    }
}

/// Resolves every name in `ast` for `scope`.
pub(super) fn resolve(ast: Ast, scope: Scope, vocab: &mut Vocabulary) -> Result<Node, ExprError> {
    Ok(match ast {
        Ast::Or(v) => Node::Or(
            v.into_iter()
                .map(|a| resolve(a, scope, vocab))
                .collect::<Result<Vec<_>, _>>()?
                .into_boxed_slice(),
        ),
        Ast::And(v) => Node::And(
            v.into_iter()
                .map(|a| resolve(a, scope, vocab))
                .collect::<Result<Vec<_>, _>>()?
                .into_boxed_slice(),
        ),
        Ast::Not(a) => Node::Not(Box::new(resolve(*a, scope, vocab)?)),
        Ast::Truthy(o) => Node::Truthy(term(o, scope, vocab)?),
        Ast::Cmp(op, l, r) => {
            let (l, r) = (term(l, scope, vocab)?, term(r, scope, vocab)?);
            specialise(op, l, r, vocab)
        }
    })
}

/// Rewrites the hot shapes into dedicated nodes.
fn specialise(op: Op, l: Term, r: Term, vocab: &mut Vocabulary) -> Node {
    match (op, &l, &r) {
        (Op::Ge, Term::Skill(s), Term::Lit(Lit::Num(n))) => Node::SkillAtLeast(*s, *n, false),
        (Op::Gt, Term::Skill(s), Term::Lit(Lit::Num(n))) => Node::SkillAtLeast(*s, *n, true),
        (Op::Le, Term::Lit(Lit::Num(n)), Term::Skill(s)) => Node::SkillAtLeast(*s, *n, false),
        (Op::Lt, Term::Lit(Lit::Num(n)), Term::Skill(s)) => Node::SkillAtLeast(*s, *n, true),
        (Op::Has | Op::Contains, Term::Languages, Term::Lit(Lit::Str(s)))
        | (Op::In, Term::Lit(Lit::Str(s)), Term::Languages) => Node::LangHas(vocab.lang(s)),
        _ => Node::Cmp(op, l, r),
    }
}

fn term(o: Operand, scope: Scope, vocab: &mut Vocabulary) -> Result<Term, ExprError> {
    let (name, pos) = match o {
        Operand::Lit(l) => return Ok(Term::Lit(l)),
        Operand::Name(n, pos) => (n, pos),
    };
    let segs: Vec<&str> = name.split('.').collect();
    let err = |message: String| ExprError { pos, message };
    let rest =
        |from: usize| -> Box<[String]> { segs[from..].iter().map(|s| (*s).to_owned()).collect() };
    let target = scope == Scope::Target;
    let need_target = |what: &str| {
        err(format!(
            "`{what}` names an agent and can only be used in a step target"
        ))
    };
    Ok(match segs.as_slice() {
        ["skills", skill] if target => Term::Skill(vocab.skill(skill)),
        ["skills", _] => return Err(need_target("skills")),
        ["skills"] | ["skills", ..] => return Err(err("write `skills.NAME`".into())),
        ["languages"] | ["agent", "languages"] if target => Term::Languages,
        ["languages"] | ["agent", "languages"] => return Err(need_target("languages")),
        ["agent", "id"] if target => Term::AgentId,
        ["agent", "attributes", _, ..] if target => Term::AgentAttr(rest(2)),
        ["agent", ..] if !target => return Err(need_target(&name)),
        ["attributes", _, ..] if target => Term::AgentAttr(rest(1)),
        ["attributes", _, ..] => Term::TaskAttr(rest(1)),
        ["task", "channel"] => Term::TaskChannel,
        ["task", "priority"] => Term::TaskPriority,
        ["task", "attributes", _, ..] => Term::TaskAttr(rest(2)),
        ["task", _, ..] => Term::TaskAttr(rest(1)),
        ["channel"] if !target => Term::TaskChannel,
        ["priority"] if !target => Term::TaskPriority,
        ["available"] if scope == Scope::SkipIf => Term::Available,
        ["waiting"] if scope == Scope::SkipIf => Term::Waiting,
        _ => {
            return Err(err(format!(
                "unknown name `{name}` here (see the table in routing::expr)"
            )))
        }
    })
}
