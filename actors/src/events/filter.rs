//! Which event types a consumer wants: `types=call.*,agent.state_changed` (comma-separated;
//! a pattern is an exact type, a prefix ending in `*`, or `*` for all; no patterns: all).

/// A parsed list of type patterns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Exact types and prefixes (the part before `*`).
    patterns: Vec<Pattern>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Pattern {
    Exact(String),
    Prefix(String),
}

/// A pattern that is not `[a-z0-9_.]+` with an optional trailing `*`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("bad type pattern {0:?}: use noun.verb, a prefix ending in *, or *")]
pub struct FilterError(pub String);

impl Filter {
    /// Every event.
    pub fn all() -> Filter {
        Filter::default()
    }

    /// Parses a comma-separated list (empty items are ignored).
    pub fn parse(list: &str) -> Result<Filter, FilterError> {
        Filter::from_patterns(list.split(','))
    }

    /// Parses patterns given one by one (config files).
    pub fn from_patterns<'a>(
        items: impl IntoIterator<Item = &'a str>,
    ) -> Result<Filter, FilterError> {
        let mut patterns = Vec::new();
        for item in items {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            let (body, prefix) = match item.strip_suffix('*') {
                Some(b) => (b, true),
                None => (item, false),
            };
            let valid = body
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.');
            if !valid || (!prefix && body.is_empty()) || item.len() > 100 {
                return Err(FilterError(item.to_string()));
            }
            patterns.push(if prefix {
                Pattern::Prefix(body.to_string())
            } else {
                Pattern::Exact(body.to_string())
            });
        }
        Ok(Filter { patterns })
    }

    /// Whether an event of type `kind` passes.
    pub fn matches(&self, kind: &str) -> bool {
        self.patterns.is_empty()
            || self.patterns.iter().any(|p| match p {
                Pattern::Exact(e) => e == kind,
                Pattern::Prefix(p) => kind.starts_with(p.as_str()),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let f = Filter::parse("call.*, agent.state_changed").expect("valid");
        assert!(f.matches("call.created"));
        assert!(f.matches("agent.state_changed"));
        assert!(!f.matches("agent.logged_in"));
        assert!(!f.matches("interaction.queued"));
        assert!(Filter::parse("").expect("empty").matches("anything.else"));
        assert!(Filter::parse("*").expect("star").matches("x.y"));
        for bad in ["Call.*", "call created", "a*b", "call.*;drop"] {
            assert!(Filter::parse(bad).is_err(), "{bad}");
        }
    }
}
