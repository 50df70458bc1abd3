//! The grammar, by precedence (lowest first), into an untyped syntax tree:
//!
//! ```text
//! expr    := and ( (OR | "||") and )*
//! and     := not ( (AND | "&&") not )*
//! not     := (NOT | "!") not | cmp
//! cmp     := operand ( ("==" | "!=" | "<" | "<=" | ">" | ">=" | HAS | IN | CONTAINS) operand )?
//! operand := NAME | STRING | NUMBER | true | false | null | "[" literal ("," literal)* "]" | "(" expr ")"
//! ```

use super::lexer::{lex, Tok};
use super::ExprError;

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// `collection HAS item`.
    Has,
    /// `item IN collection`.
    In,
    /// `string CONTAINS substring` (or a collection containing an item).
    Contains,
}

/// A literal value.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Lit {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    List(Vec<Lit>),
}

/// An operand before names are resolved.
#[derive(Clone, Debug)]
pub(super) enum Operand {
    /// A dotted name with its position.
    Name(String, usize),
    Lit(Lit),
}

/// The syntax tree.
#[derive(Clone, Debug)]
pub(super) enum Ast {
    Or(Vec<Ast>),
    And(Vec<Ast>),
    Not(Box<Ast>),
    Cmp(Op, Operand, Operand),
    /// A lone operand, true when truthy.
    Truthy(Operand),
}

/// Parses a whole expression.
pub(super) fn parse(src: &str) -> Result<Ast, ExprError> {
    let toks = lex(src)?;
    let mut p = Parser { toks, at: 0 };
    let ast = p.or()?;
    match p.peek() {
        (Tok::Eof, _) => Ok(ast),
        (t, pos) => Err(ExprError {
            pos,
            message: format!(
                "unexpected {} after the end of the expression",
                describe(&t)
            ),
        }),
    }
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> (Tok, usize) {
        // The lexer always ends the list with Eof and `at` never moves past it.
        self.toks
            .get(self.at)
            .cloned()
            .unwrap_or((Tok::Eof, usize::MAX))
    }

    fn bump(&mut self) -> (Tok, usize) {
        let t = self.peek();
        if self.at + 1 < self.toks.len() {
            self.at += 1;
        }
        t
    }

    fn or(&mut self) -> Result<Ast, ExprError> {
        let mut items = vec![self.and()?];
        while self.peek().0 == Tok::Or {
            self.bump();
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Ast::Or(items)
        })
    }

    fn and(&mut self) -> Result<Ast, ExprError> {
        let mut items = vec![self.not()?];
        while self.peek().0 == Tok::And {
            self.bump();
            items.push(self.not()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Ast::And(items)
        })
    }

    fn not(&mut self) -> Result<Ast, ExprError> {
        if self.peek().0 == Tok::Not {
            self.bump();
            return Ok(Ast::Not(Box::new(self.not()?)));
        }
        self.cmp()
    }

    fn cmp(&mut self) -> Result<Ast, ExprError> {
        if self.peek().0 == Tok::LParen {
            self.bump();
            let inner = self.or()?;
            self.expect(Tok::RParen, "`)`")?;
            return Ok(inner);
        }
        let lhs = self.operand()?;
        let op = match self.peek().0 {
            Tok::Eq => Op::Eq,
            Tok::Ne => Op::Ne,
            Tok::Lt => Op::Lt,
            Tok::Le => Op::Le,
            Tok::Gt => Op::Gt,
            Tok::Ge => Op::Ge,
            Tok::Has => Op::Has,
            Tok::In => Op::In,
            Tok::Contains => Op::Contains,
            _ => return Ok(Ast::Truthy(lhs)),
        };
        self.bump();
        let rhs = self.operand()?;
        Ok(Ast::Cmp(op, lhs, rhs))
    }

    fn operand(&mut self) -> Result<Operand, ExprError> {
        let (t, pos) = self.bump();
        Ok(match t {
            Tok::Name(n) => Operand::Name(n, pos),
            Tok::LBrack => Operand::Lit(self.list()?),
            t => Operand::Lit(self.literal(t, pos)?),
        })
    }

    fn literal(&mut self, t: Tok, pos: usize) -> Result<Lit, ExprError> {
        Ok(match t {
            Tok::Str(s) => Lit::Str(s),
            Tok::Num(n) => Lit::Num(n),
            Tok::True => Lit::Bool(true),
            Tok::False => Lit::Bool(false),
            Tok::Null => Lit::Null,
            Tok::LBrack => self.list()?,
            t => {
                return Err(ExprError {
                    pos,
                    message: format!("expected a value, found {}", describe(&t)),
                })
            }
        })
    }

    /// The rest of a list after `[`.
    fn list(&mut self) -> Result<Lit, ExprError> {
        let mut items = Vec::new();
        if self.peek().0 == Tok::RBrack {
            self.bump();
            return Ok(Lit::List(items));
        }
        loop {
            let (t, pos) = self.bump();
            items.push(self.literal(t, pos)?);
            match self.bump() {
                (Tok::Comma, _) => continue,
                (Tok::RBrack, _) => return Ok(Lit::List(items)),
                (t, pos) => {
                    return Err(ExprError {
                        pos,
                        message: format!("expected `,` or `]`, found {}", describe(&t)),
                    })
                }
            }
        }
    }

    fn expect(&mut self, want: Tok, what: &str) -> Result<(), ExprError> {
        let (t, pos) = self.bump();
        if t == want {
            Ok(())
        } else {
            Err(ExprError {
                pos,
                message: format!("expected {what}, found {}", describe(&t)),
            })
        }
    }
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Name(n) => format!("name `{n}`"),
        Tok::Str(s) => format!("string \"{s}\""),
        Tok::Num(n) => format!("number {n}"),
        Tok::Eof => "the end of the expression".into(),
        other => format!("`{}`", symbol(other)),
    }
}

fn symbol(t: &Tok) -> &'static str {
    match t {
        Tok::True => "true",
        Tok::False => "false",
        Tok::Null => "null",
        Tok::LParen => "(",
        Tok::RParen => ")",
        Tok::LBrack => "[",
        Tok::RBrack => "]",
        Tok::Comma => ",",
        Tok::Eq => "==",
        Tok::Ne => "!=",
        Tok::Lt => "<",
        Tok::Le => "<=",
        Tok::Gt => ">",
        Tok::Ge => ">=",
        Tok::And => "AND",
        Tok::Or => "OR",
        Tok::Not => "NOT",
        Tok::Has => "HAS",
        Tok::In => "IN",
        Tok::Contains => "CONTAINS",
        Tok::Name(_) | Tok::Str(_) | Tok::Num(_) | Tok::Eof => "?",
    }
}
