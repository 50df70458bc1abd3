//! Tokens of the expression language, each with its byte position in the source.

use super::ExprError;

/// A token.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Tok {
    /// A dotted name: `skills.billing`, `attributes.customer.tier`.
    Name(String),
    /// A double-quoted string (escapes: `\"`, `\\`, `\n`, `\t`).
    Str(String),
    /// A number.
    Num(f64),
    True,
    False,
    Null,
    LParen,
    RParen,
    LBrack,
    RBrack,
    Comma,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
    Not,
    Has,
    In,
    Contains,
    Eof,
}

/// Splits `src` into tokens; every token carries the byte offset where it starts.
pub(super) fn lex(src: &str) -> Result<Vec<(Tok, usize)>, ExprError> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let two = |n: u8| b.get(i + 1) == Some(&n);
        let tok = match c {
            b'(' => Tok::LParen,
            b')' => Tok::RParen,
            b'[' => Tok::LBrack,
            b']' => Tok::RBrack,
            b',' => Tok::Comma,
            b'=' if two(b'=') => {
                i += 1;
                Tok::Eq
            }
            b'=' => Tok::Eq,
            b'!' if two(b'=') => {
                i += 1;
                Tok::Ne
            }
            b'!' => Tok::Not,
            b'<' if two(b'=') => {
                i += 1;
                Tok::Le
            }
            b'<' if two(b'>') => {
                i += 1;
                Tok::Ne
            }
            b'<' => Tok::Lt,
            b'>' if two(b'=') => {
                i += 1;
                Tok::Ge
            }
            b'>' => Tok::Gt,
            b'&' if two(b'&') => {
                i += 1;
                Tok::And
            }
            b'|' if two(b'|') => {
                i += 1;
                Tok::Or
            }
            b'"' | b'\'' => {
                let (s, end) = string(src, i)?;
                out.push((Tok::Str(s), start));
                i = end;
                continue;
            }
            b'0'..=b'9' | b'-' | b'.' => {
                let mut j = i + 1;
                while j < b.len()
                    && (b[j].is_ascii_digit()
                        || b[j] == b'.'
                        || b[j] == b'e'
                        || b[j] == b'E'
                        || ((b[j] == b'-' || b[j] == b'+') && matches!(b[j - 1], b'e' | b'E')))
                {
                    j += 1;
                }
                let text = &src[i..j];
                let n: f64 = text.parse().map_err(|_| ExprError {
                    pos: start,
                    message: format!("`{text}` is not a number"),
                })?;
                out.push((Tok::Num(n), start));
                i = j;
                continue;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let mut j = i + 1;
                while j < b.len()
                    && (b[j].is_ascii_alphanumeric() || matches!(b[j], b'_' | b'.' | b'-'))
                {
                    j += 1;
                }
                let word = &src[i..j];
                let tok = match word.to_ascii_lowercase().as_str() {
                    "and" => Tok::And,
                    "or" => Tok::Or,
                    "not" => Tok::Not,
                    "has" => Tok::Has,
                    "in" => Tok::In,
                    "contains" => Tok::Contains,
                    "true" => Tok::True,
                    "false" => Tok::False,
                    "null" => Tok::Null,
                    _ => {
                        if word.ends_with('.') || word.contains("..") {
                            return Err(ExprError {
                                pos: start,
                                message: format!("`{word}` has an empty name segment"),
                            });
                        }
                        Tok::Name(word.to_owned())
                    }
                };
                out.push((tok, start));
                i = j;
                continue;
            }
            _ => {
                let ch = src[i..].chars().next().unwrap_or('?');
                return Err(ExprError {
                    pos: start,
                    message: format!("unexpected character `{ch}`"),
                });
            }
        };
        out.push((tok, start));
        i += 1;
    }
    out.push((Tok::Eof, src.len()));
    Ok(out)
}

/// Reads a quoted string starting at `start`; returns it and the offset after the closing quote.
fn string(src: &str, start: usize) -> Result<(String, usize), ExprError> {
    let quote = src.as_bytes()[start] as char;
    let mut s = String::new();
    let mut chars = src[start + 1..].char_indices();
    while let Some((k, c)) = chars.next() {
        match c {
            c if c == quote => return Ok((s, start + 1 + k + 1)),
            '\\' => match chars.next() {
                Some((_, 'n')) => s.push('\n'),
                Some((_, 't')) => s.push('\t'),
                Some((_, c)) => s.push(c),
                None => break,
            },
            c => s.push(c),
        }
    }
    Err(ExprError {
        pos: start,
        message: "unterminated string".into(),
    })
}
