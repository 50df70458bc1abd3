//! Choosing a context for a call and the first rule of it that matches.

use crate::model::{Conditions, Plan};
use crate::pattern::Captures;
use chrono::{DateTime, FixedOffset};

/// Where a call comes from: selects the context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// From a trunk, by name.
    Trunk(String),
    /// From a registered user and the groups the user is in.
    User {
        /// The user's name.
        name: String,
        /// The user's groups.
        groups: Vec<String>,
    },
    /// Neither (a test call, an API call).
    Unknown,
}

/// What is known about a call when it arrives.
#[derive(Clone, Debug)]
pub struct CallFacts {
    /// The called number or user part (request URI).
    pub called: String,
    /// The calling number or user part (From).
    pub calling: String,
    /// Where the call comes from.
    pub source: Source,
    /// SIP headers of the INVITE (name, value); names compare without case.
    pub headers: Vec<(String, String)>,
}

impl CallFacts {
    /// Facts for a call from `calling` to `called` with an unknown source and no headers.
    pub fn new(called: impl Into<String>, calling: impl Into<String>) -> Self {
        CallFacts {
            called: called.into(),
            calling: calling.into(),
            source: Source::Unknown,
            headers: Vec::new(),
        }
    }

    /// Sets the source.
    pub fn from_source(mut self, source: Source) -> Self {
        self.source = source;
        self
    }

    /// Adds a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    fn header(&self, lower_name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(lower_name))
            .map(|(_, v)| v.as_str())
    }
}

/// The context and rule a call lands on, with the captures of its patterns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Context index.
    pub(crate) context: usize,
    /// Rule index in the context.
    pub(crate) rule: usize,
    /// `0`, `1`…, named groups.
    pub captures: Captures,
}

impl Plan {
    /// The context for a call from `source`: the first listing its trunk or one of its
    /// groups, else the context named `default`.
    pub fn select_context(&self, source: &Source) -> Option<&str> {
        self.context_for(source)
            .and_then(|i| self.contexts.get(i))
            .map(|c| c.name.as_str())
    }

    pub(crate) fn context_for(&self, source: &Source) -> Option<usize> {
        let chosen = match source {
            Source::Trunk(t) => self.contexts.iter().position(|c| c.trunks.contains(t)),
            Source::User { groups, .. } => self
                .contexts
                .iter()
                .position(|c| c.groups.iter().any(|g| groups.contains(g))),
            Source::Unknown => None,
        };
        chosen.or_else(|| self.context_index("default"))
    }

    /// The first rule of context `ctx` whose conditions hold.
    pub(crate) fn match_rule(
        &self,
        ctx: usize,
        facts: &CallFacts,
        now: &DateTime<FixedOffset>,
    ) -> Option<Route> {
        let c = self.contexts.get(ctx)?;
        c.rules.iter().enumerate().find_map(|(i, r)| {
            self.conditions_hold(&r.conds, facts, now)
                .map(|captures| Route {
                    context: ctx,
                    rule: i,
                    captures,
                })
        })
    }

    /// Context name and rule name (or `#index`) a call would take; for tests and tooling.
    pub fn route(
        &self,
        facts: &CallFacts,
        now: &DateTime<FixedOffset>,
    ) -> Option<(String, String)> {
        let ctx = self.context_for(&facts.source)?;
        let r = self.match_rule(ctx, facts, now)?;
        let c = self.contexts.get(ctx)?;
        let rule = c.rules.get(r.rule)?;
        Some((
            c.name.clone(),
            rule.name.clone().unwrap_or_else(|| format!("#{}", r.rule)),
        ))
    }

    fn conditions_hold(
        &self,
        c: &Conditions,
        facts: &CallFacts,
        now: &DateTime<FixedOffset>,
    ) -> Option<Captures> {
        let mut caps = Captures::new();
        if let Some(p) = &c.called {
            caps = p.matches(&facts.called)?;
        }
        if let Some(p) = &c.calling {
            let got = p.matches(&facts.calling)?;
            // Numbered groups come from `called` when it is set; named ones from anywhere.
            let numbered = c.called.is_none();
            caps.extend(
                got.into_iter()
                    .filter(|(k, _)| numbered || !k.starts_with(|d: char| d.is_ascii_digit())),
            );
        }
        match &facts.source {
            Source::Trunk(t) if !c.trunks.is_empty() && !c.trunks.contains(t) => return None,
            Source::User { groups, .. }
                if !c.groups.is_empty() && !c.groups.iter().any(|g| groups.contains(g)) =>
            {
                return None
            }
            Source::Trunk(_) if !c.groups.is_empty() => return None,
            Source::User { .. } if !c.trunks.is_empty() => return None,
            Source::Unknown if !c.trunks.is_empty() || !c.groups.is_empty() => return None,
            _ => {}
        }
        for (name, p) in &c.headers {
            let got = p.matches(facts.header(name)?)?;
            caps.extend(
                got.into_iter()
                    .filter(|(k, _)| !k.starts_with(|d: char| d.is_ascii_digit())),
            );
        }
        if !c.times.is_empty() {
            let local = now.with_timezone(&self.timezone);
            if !c.times.iter().any(|w| w.contains(&local)) {
                return None;
            }
        }
        if let Some(cal) = c.open.and_then(|i| self.calendars.get(i)) {
            if !cal.is_open(now) {
                return None;
            }
        }
        if let Some(cal) = c.closed.and_then(|i| self.calendars.get(i)) {
            if cal.is_open(now) {
                return None;
            }
        }
        Some(caps)
    }
}
