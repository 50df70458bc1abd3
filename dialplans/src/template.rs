//! Strings with `${…}` interpolation.
//!
//! * `${name}`: the variable's value, empty when unset;
//! * `${name:-fallback}`: `fallback` when the variable is unset or empty;
//! * `${name:2}`, `${name:2:3}`, `${name:-4}`… : a substring as in Asterisk (`offset[:length]`,
//!   a negative offset counts from the end); `${called:1}` drops the first digit;
//! * `$$` is a literal `$`.
//!
//! Names are letters, digits, `_`, `.` and `-` (`${1}`, `${header.x-tenant}`).

use std::fmt;

/// A parsed interpolated string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Lit(String),
    Var { name: String, op: Op },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Op {
    Plain,
    Default(String),
    Substr(i64, Option<i64>),
}

/// Why a template does not parse: message and character offset in the source string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateError {
    /// What is wrong.
    pub message: String,
    /// Offset in characters from the start of the string.
    pub offset: usize,
}

impl Template {
    /// Parses `src`.
    pub fn parse(src: &str) -> Result<Template, TemplateError> {
        let chars: Vec<char> = src.chars().collect();
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut i = 0;
        while i < chars.len() {
            match (chars[i], chars.get(i + 1)) {
                ('$', Some('$')) => {
                    lit.push('$');
                    i += 2;
                }
                ('$', Some('{')) => {
                    // `chars[i + 1]` exists, so `i + 2 <= chars.len()`.
                    let close = chars[i + 2..]
                        .iter()
                        .position(|&c| c == '}')
                        .ok_or_else(|| TemplateError {
                            message: "`${` without a closing `}`".into(),
                            offset: i,
                        })?;
                    let inner: String = chars[i + 2..i + 2 + close].iter().collect();
                    let var = parse_var(&inner)
                        .map_err(|message| TemplateError { message, offset: i })?;
                    if !lit.is_empty() {
                        parts.push(Part::Lit(std::mem::take(&mut lit)));
                    }
                    parts.push(var);
                    i += close + 3;
                }
                (c, _) => {
                    lit.push(c);
                    i += 1;
                }
            }
        }
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Ok(Template { parts })
    }

    /// A template that is only this text.
    pub fn literal(text: &str) -> Template {
        Template {
            parts: vec![Part::Lit(text.to_owned())],
        }
    }

    /// The text when the template has no variables.
    pub fn as_literal(&self) -> Option<String> {
        self.parts
            .iter()
            .try_fold(String::new(), |mut acc, p| match p {
                Part::Lit(s) => {
                    acc.push_str(s);
                    Some(acc)
                }
                Part::Var { .. } => None,
            })
    }

    /// Renders with `lookup` giving the variables' values.
    pub fn render(&self, lookup: impl Fn(&str) -> Option<String>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Lit(s) => out.push_str(s),
                Part::Var { name, op } => {
                    let value = lookup(name);
                    match op {
                        Op::Plain => out.push_str(value.as_deref().unwrap_or("")),
                        Op::Default(d) => match value {
                            Some(v) if !v.is_empty() => out.push_str(&v),
                            _ => out.push_str(d),
                        },
                        Op::Substr(off, len) => {
                            out.push_str(&substr(value.as_deref().unwrap_or(""), *off, *len))
                        }
                    }
                }
            }
        }
        out
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in &self.parts {
            match part {
                Part::Lit(s) => write!(f, "{}", s.replace('$', "$$"))?,
                Part::Var {
                    name,
                    op: Op::Plain,
                } => write!(f, "${{{name}}}")?,
                Part::Var {
                    name,
                    op: Op::Default(d),
                } => write!(f, "${{{name}:-{d}}}")?,
                Part::Var {
                    name,
                    op: Op::Substr(o, None),
                } => write!(f, "${{{name}:{o}}}")?,
                Part::Var {
                    name,
                    op: Op::Substr(o, Some(l)),
                } => write!(f, "${{{name}:{o}:{l}}}")?,
            }
        }
        Ok(())
    }
}

/// True for a valid variable name.
pub(crate) fn is_var_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn parse_var(inner: &str) -> Result<Part, String> {
    let (name, rest) = match inner.find(':') {
        Some(i) => (&inner[..i], Some(&inner[i + 1..])),
        None => (inner, None),
    };
    if !is_var_name(name) {
        return Err(format!("bad variable name `{name}` in `${{{inner}}}`"));
    }
    let op = match rest {
        None => Op::Plain,
        Some(r) if r.starts_with('-') && r[1..].parse::<i64>().is_err() => {
            Op::Default(r[1..].to_owned())
        }
        Some(r) => {
            let mut it = r.splitn(2, ':');
            let bad = || format!("bad substring `${{{inner}}}`: expected `offset[:length]`");
            let off = it
                .next()
                .and_then(|s| s.parse::<i64>().ok())
                .ok_or_else(bad)?;
            let len = match it.next() {
                Some(l) => Some(l.parse::<i64>().map_err(|_| bad())?),
                None => None,
            };
            Op::Substr(off, len)
        }
    };
    Ok(Part::Var {
        name: name.to_owned(),
        op,
    })
}

fn substr(value: &str, off: i64, len: Option<i64>) -> String {
    let chars: Vec<char> = value.chars().collect();
    let n = i64::try_from(chars.len()).unwrap_or(i64::MAX);
    let start = if off < 0 {
        (n + off).max(0)
    } else {
        off.min(n)
    };
    let end = match len {
        None => n,
        Some(l) if l < 0 => (n + l).max(start),
        Some(l) => start.saturating_add(l).min(n),
    };
    let (s, e) = (
        usize::try_from(start).unwrap_or(0),
        usize::try_from(end).unwrap_or(0),
    );
    chars
        .get(s..e)
        .map(|c| c.iter().collect())
        .unwrap_or_default()
}
