//! Number patterns: exact strings, Asterisk-style `_` patterns and `~` regexes.
//!
//! * `1001` matches exactly `1001`.
//! * `_NXXNXXXXXX`: after `_`, `X` is any digit, `Z` is 1-9, `N` is 2-9, `[1-5a]` is a class with
//!   ranges, a final `.` is one or more characters, a final `!` is zero or more; `-` is ignored
//!   (readability, as in Asterisk); any other character stands for itself.
//! * `~^9(\d+)$`: a regular expression (`regex` crate syntax), always matched against the whole
//!   number; numbered groups become `${1}`, `${2}`…, named groups `${name}`.

use regex::Regex;

/// Largest compiled regex accepted, in bytes (keeps hostile plans cheap).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A compiled number pattern.
#[derive(Clone, Debug)]
pub struct Pattern {
    source: String,
    kind: Kind,
}

#[derive(Clone, Debug)]
enum Kind {
    Exact(String),
    Dial(Dial),
    Regex(Regex),
}

/// An Asterisk-style pattern: one class per character, then an optional wildcard tail.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Dial {
    classes: Vec<Class>,
    tail: Tail,
}

/// A set of ASCII characters, one bit each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Class(u128);

impl Class {
    fn single(c: u8) -> Class {
        Class(1u128 << c)
    }
    fn range(lo: u8, hi: u8) -> Class {
        (lo..=hi).fold(Class(0), |acc, c| Class(acc.0 | 1u128 << c))
    }
    fn contains(self, c: char) -> bool {
        c.is_ascii() && self.0 & (1u128 << (c as u32)) != 0
    }
    fn within(self, other: Class) -> bool {
        self.0 & !other.0 == 0
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tail {
    None,
    OneOrMore,
    ZeroOrMore,
}

/// The captures of a successful match: `0` is the whole number, then numbered and named groups.
pub type Captures = Vec<(String, String)>;

impl Pattern {
    /// Compiles a pattern; the error says what is wrong.
    pub fn parse(source: &str) -> Result<Pattern, String> {
        let kind = if let Some(rest) = source.strip_prefix('_') {
            Kind::Dial(parse_dial(rest)?)
        } else if let Some(rest) = source.strip_prefix('~') {
            let re = regex::RegexBuilder::new(&format!("^(?:{rest})$"))
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map_err(|e| {
                    let text = e.to_string();
                    let why = text
                        .lines()
                        .last()
                        .unwrap_or("")
                        .trim_start_matches("error: ")
                        .to_owned();
                    format!("bad regular expression `{rest}`: {why}")
                })?;
            Kind::Regex(re)
        } else if source.is_empty() {
            return Err("empty pattern".into());
        } else {
            Kind::Exact(source.to_owned())
        };
        Ok(Pattern {
            source: source.to_owned(),
            kind,
        })
    }

    /// The pattern as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Matches the whole of `number`; returns the captures on success.
    pub fn matches(&self, number: &str) -> Option<Captures> {
        let whole = || vec![("0".to_owned(), number.to_owned())];
        match &self.kind {
            Kind::Exact(s) => (s == number).then(whole),
            Kind::Dial(d) => d.matches(number).then(whole),
            Kind::Regex(re) => {
                let caps = re.captures(number)?;
                let mut out = whole();
                for (i, name) in re.capture_names().enumerate().skip(1) {
                    let value = caps.get(i).map_or("", |m| m.as_str()).to_owned();
                    out.push((i.to_string(), value.clone()));
                    if let Some(name) = name {
                        out.push((name.to_owned(), value));
                    }
                }
                Some(out)
            }
        }
    }

    /// True when this pattern matches every number (`_!`, `~.*`).
    pub fn is_catch_all(&self) -> bool {
        match &self.kind {
            Kind::Dial(d) => d.classes.is_empty() && d.tail == Tail::ZeroOrMore,
            Kind::Regex(_) => matches!(self.source.strip_prefix('~'), Some(".*" | "^.*$" | "(.*)")),
            Kind::Exact(_) => false,
        }
    }

    /// True when every number `other` matches is also matched by `self` (conservative: may
    /// answer false for some covering pairs, never true for a non-covering one).
    pub fn covers(&self, other: &Pattern) -> bool {
        if self.is_catch_all() || self.source == other.source {
            return true;
        }
        match (&self.kind, &other.kind) {
            (_, Kind::Exact(s)) => self.matches(s).is_some(),
            (Kind::Dial(a), Kind::Dial(b)) => a.covers(b),
            _ => false,
        }
    }
}

fn parse_dial(rest: &str) -> Result<Dial, String> {
    let mut classes = Vec::new();
    let mut tail = Tail::None;
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        if tail != Tail::None {
            return Err(format!("`{rest}`: `.` and `!` must be the last character"));
        }
        let class = match c {
            'X' | 'x' => Class::range(b'0', b'9'),
            'Z' | 'z' => Class::range(b'1', b'9'),
            'N' | 'n' => Class::range(b'2', b'9'),
            '.' => {
                tail = Tail::OneOrMore;
                continue;
            }
            '!' => {
                tail = Tail::ZeroOrMore;
                continue;
            }
            '-' => continue,
            '[' => parse_class(&mut chars, rest)?,
            c if c.is_ascii_graphic() => Class::single(c as u8),
            c => {
                return Err(format!(
                    "`{rest}`: character `{c}` is not allowed in a `_` pattern"
                ))
            }
        };
        classes.push(class);
    }
    if classes.is_empty() && tail == Tail::None {
        return Err("empty `_` pattern".into());
    }
    Ok(Dial { classes, tail })
}

fn parse_class(chars: &mut std::str::Chars<'_>, rest: &str) -> Result<Class, String> {
    let mut set = Class(0);
    let mut prev: Option<u8> = None;
    loop {
        let c = chars
            .next()
            .ok_or_else(|| format!("`{rest}`: `[` without `]`"))?;
        if !c.is_ascii_graphic() {
            return Err(format!(
                "`{rest}`: character `{c}` is not allowed in a class"
            ));
        }
        match c {
            ']' if set.0 == 0 => return Err(format!("`{rest}`: empty class `[]`")),
            ']' => return Ok(set),
            '-' if prev.is_some() => {
                let hi = chars
                    .next()
                    .filter(|h| h.is_ascii_graphic() && *h != ']')
                    .ok_or_else(|| format!("`{rest}`: unfinished range in class"))?;
                let lo = prev.take().unwrap_or(b'0'); // invariant: guarded by `prev.is_some()`
                if (hi as u8) < lo {
                    return Err(format!(
                        "`{rest}`: range `{}-{hi}` is backwards",
                        lo as char
                    ));
                }
                set = Class(set.0 | Class::range(lo, hi as u8).0);
            }
            c => {
                set = Class(set.0 | Class::single(c as u8).0);
                prev = Some(c as u8);
            }
        }
    }
}

impl Dial {
    fn matches(&self, number: &str) -> bool {
        let mut chars = number.chars();
        for class in &self.classes {
            match chars.next() {
                Some(c) if class.contains(c) => {}
                _ => return false,
            }
        }
        let left = chars.count();
        match self.tail {
            Tail::None => left == 0,
            Tail::OneOrMore => left >= 1,
            Tail::ZeroOrMore => true,
        }
    }

    /// Every string of `other` is a string of `self`.
    fn covers(&self, other: &Dial) -> bool {
        let (a, b) = (self.classes.len(), other.classes.len());
        let length_ok = match (self.tail, other.tail) {
            (Tail::None, Tail::None) => a == b,
            (Tail::None, _) => false,
            (Tail::OneOrMore, Tail::OneOrMore) => b >= a,
            (Tail::OneOrMore, _) => b > a,
            (Tail::ZeroOrMore, _) => b >= a,
        };
        length_ok
            && self
                .classes
                .iter()
                .zip(&other.classes)
                .all(|(ca, cb)| cb.within(*ca))
    }
}

/// A list of patterns: matches when any of them does.
#[derive(Clone, Debug)]
pub struct PatternSet(pub(crate) Vec<Pattern>);

impl PatternSet {
    /// The captures of the first pattern that matches `number`.
    pub fn matches(&self, number: &str) -> Option<Captures> {
        self.0.iter().find_map(|p| p.matches(number))
    }

    /// True when some pattern matches everything.
    pub fn is_catch_all(&self) -> bool {
        self.0.iter().any(Pattern::is_catch_all)
    }

    /// Every pattern of `other` is covered by some pattern of `self` (conservative).
    pub fn covers(&self, other: &PatternSet) -> bool {
        other.0.iter().all(|b| self.0.iter().any(|a| a.covers(b)))
    }
}
