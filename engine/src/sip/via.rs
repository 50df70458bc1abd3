//! The Via header (RFC 3261 §20.42, RFC 3581 rport): parsing, and the RFC 3261 magic cookie.

use super::grammar::{
    check_list, check_params_finding, find_param, find_param_in, is_ws, list_elems, parse_params,
    sole_elem, split_list, token_len, trim, Param,
};
use std::fmt;

/// The branch prefix that marks an RFC 3261 transaction identifier.
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// One Via element (`SIP/2.0/UDP host:port;params`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Via {
    /// The protocol name and version, normally `SIP` and `2.0`.
    pub protocol: (String, String),
    /// The transport token (`UDP`, `TCP`, `TLS`, `WS`, … or an extension), upper-cased.
    pub transport: String,
    /// The sent-by host (name, IPv4 or `[IPv6]`).
    pub host: String,
    /// The sent-by port, if given.
    pub port: Option<u16>,
    /// The via parameters in order.
    pub params: Vec<Param>,
}

impl Via {
    /// Parses every Via element of one header value.
    pub fn parse_list(value: &str) -> Result<Vec<Via>, &'static str> {
        split_list(value)?.into_iter().map(Via::parse).collect()
    }

    /// Parses one Via element. Whitespace around the `/` of the sent-protocol is allowed.
    pub fn parse(elem: &str) -> Result<Via, &'static str> {
        ViaRef::parse(elem)?.to_via()
    }

    /// The branch parameter.
    pub fn branch(&self) -> Option<&str> {
        self.param("branch")
    }

    /// True when the branch starts with the RFC 3261 magic cookie and has an identifier after it.
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch()
            .is_some_and(|b| b.len() > MAGIC_COOKIE.len() && b.starts_with(MAGIC_COOKIE))
    }

    /// The value of a parameter (`None` when absent or valueless).
    pub fn param(&self, name: &str) -> Option<&str> {
        find_param(&self.params, name).and_then(|p| p.value.as_deref())
    }

    /// True when the parameter is present, with or without value.
    pub fn has_param(&self, name: &str) -> bool {
        find_param(&self.params, name).is_some()
    }

    /// Sets (or adds) a parameter.
    pub fn set_param(&mut self, name: &str, value: Option<String>) {
        match self
            .params
            .iter_mut()
            .find(|p| p.name.eq_ignore_ascii_case(name))
        {
            Some(p) => p.value = value,
            None => self.params.push(Param {
                name: name.to_string(),
                value,
            }),
        }
    }
}

/// One Via element read in place: the same checks as [`Via::parse`], the parts as slices of
/// the header value (the parameters checked but not split).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ViaRef<'a> {
    /// The protocol name and version, normally `SIP` and `2.0`.
    pub protocol: (&'a str, &'a str),
    /// The transport token as received (not upper-cased).
    pub transport: &'a str,
    /// The sent-by host (name, IPv4 or `[IPv6]`).
    pub host: &'a str,
    /// The sent-by port, if given.
    pub port: Option<u16>,
    /// The parameters (`;branch=…;rport`), checked.
    pub params: &'a str,
    /// The first `branch` parameter, found while checking `params`.
    branch_param: Option<Option<&'a str>>,
}

impl<'a> ViaRef<'a> {
    /// Parses one Via element. Whitespace around the `/` of the sent-protocol is allowed.
    pub fn parse(elem: &'a str) -> Result<ViaRef<'a>, &'static str> {
        let b = elem.as_bytes();
        let mut i = 0;
        let mut parts: [&str; 3] = [""; 3];
        for (n, part) in parts.iter_mut().enumerate() {
            i = skip_ws(b, i);
            let start = i;
            i += token_len(&b[i..]);
            // The part runs to white space or `/`; anything else in it is not a token.
            if i == start || b.get(i).is_some_and(|&c| !is_ws(c) && c != b'/') {
                return Err("malformed Via sent-protocol");
            }
            *part = &elem[start..i];
            i = skip_ws(b, i);
            if n < 2 {
                if i >= b.len() || b[i] != b'/' {
                    return Err("malformed Via sent-protocol");
                }
                i += 1;
            }
        }
        if i == b.len() || i == 0 || !is_ws(b[i - 1]) {
            return Err("Via without sent-by");
        }
        let rest = &elem[i..];
        let semi = memchr::memchr(b';', rest.as_bytes()).unwrap_or(rest.len());
        let sent_by = trim(&rest[..semi]);
        let (host, port) = split_sent_by(sent_by)?;
        let params = &rest[semi..];
        let branch_param = check_params_finding(params, "branch")?;
        Ok(ViaRef {
            protocol: (parts[0], parts[1]),
            transport: parts[2],
            host,
            port,
            params,
            branch_param,
        })
    }

    /// The first Via element of a header value, provided every element of the value parses
    /// (as [`Via::parse_list`] requires).
    ///
    /// The last value found valid on this thread is remembered (by content), so the same Via
    /// checked by the parser and then read by the transaction layer is parsed once.
    pub fn first_of_list(value: &'a str) -> Result<ViaRef<'a>, &'static str> {
        if let Some(v) = memo::recall(value) {
            return Ok(v);
        }
        let v = Self::first_of_list_uncached(value)?;
        memo::remember(value, &v);
        Ok(v)
    }

    fn first_of_list_uncached(value: &'a str) -> Result<ViaRef<'a>, &'static str> {
        if let Some(sole) = sole_elem(value) {
            return ViaRef::parse(sole?);
        }
        check_list(value)?;
        let mut first = None;
        for elem in list_elems(value) {
            let v = ViaRef::parse(elem?)?;
            first.get_or_insert(v);
        }
        first.ok_or("empty list element")
    }

    /// The branch parameter.
    pub fn branch(&self) -> Option<&'a str> {
        self.branch_param.flatten()
    }

    /// True when the branch starts with the RFC 3261 magic cookie and has an identifier after it.
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch()
            .is_some_and(|b| b.len() > MAGIC_COOKIE.len() && b.starts_with(MAGIC_COOKIE))
    }

    /// The value of a parameter (`None` when absent or valueless).
    pub fn param(&self, name: &str) -> Option<&'a str> {
        find_param_in(self.params, name).flatten()
    }

    /// The owned form.
    pub fn to_via(&self) -> Result<Via, &'static str> {
        Ok(Via {
            protocol: (self.protocol.0.to_string(), self.protocol.1.to_string()),
            transport: self.transport.to_ascii_uppercase(),
            host: self.host.to_string(),
            port: self.port,
            params: parse_params(self.params)?,
        })
    }
}

/// The per-thread memory of [`ViaRef::first_of_list`]: the last valid Via value and where
/// its parts lie in it. A hit compares the whole text, so it returns exactly what parsing the
/// value again would.
mod memo {
    use super::ViaRef;
    use std::cell::RefCell;

    /// Longer values are not remembered.
    const MAX_LEN: usize = 512;

    /// A part of the value: (start, length).
    type Span = (u32, u32);

    #[derive(Default)]
    struct Memo {
        text: String,
        valid: bool,
        protocol: (Span, Span),
        transport: Span,
        host: Span,
        port: Option<u16>,
        params: Span,
        branch: Option<Option<Span>>,
    }

    thread_local! {
        static LAST: RefCell<Memo> = RefCell::new(Memo::default());
    }

    fn span(value: &str, part: &str) -> Option<Span> {
        let start = (part.as_ptr() as usize).checked_sub(value.as_ptr() as usize)?;
        (start + part.len() <= value.len()).then_some((start as u32, part.len() as u32))
    }

    fn part(value: &str, (start, len): Span) -> Option<&str> {
        value.get(start as usize..start as usize + len as usize)
    }

    /// The parse of `value` when it is the value last remembered.
    pub(super) fn recall(value: &str) -> Option<ViaRef<'_>> {
        LAST.with(|m| {
            let m = m.try_borrow().ok()?;
            if !m.valid || m.text != value {
                return None;
            }
            Some(ViaRef {
                protocol: (part(value, m.protocol.0)?, part(value, m.protocol.1)?),
                transport: part(value, m.transport)?,
                host: part(value, m.host)?,
                port: m.port,
                params: part(value, m.params)?,
                branch_param: match m.branch {
                    None => None,
                    Some(None) => Some(None),
                    Some(Some(b)) => Some(Some(part(value, b)?)),
                },
            })
        })
    }

    /// Remembers that `value` parses to `v` (whose parts all lie inside `value`).
    pub(super) fn remember(value: &str, v: &ViaRef<'_>) {
        if value.len() > MAX_LEN {
            return;
        }
        let spans = (|| {
            Some((
                (span(value, v.protocol.0)?, span(value, v.protocol.1)?),
                span(value, v.transport)?,
                span(value, v.host)?,
                span(value, v.params)?,
                match v.branch_param {
                    None => None,
                    Some(None) => Some(None),
                    Some(Some(b)) => Some(Some(span(value, b)?)),
                },
            ))
        })();
        LAST.with(|m| {
            let Ok(mut m) = m.try_borrow_mut() else {
                return;
            };
            let Some((protocol, transport, host, params, branch)) = spans else {
                m.valid = false;
                return;
            };
            m.text.clear();
            m.text.push_str(value);
            m.valid = true;
            m.protocol = protocol;
            m.transport = transport;
            m.host = host;
            m.port = v.port;
            m.params = params;
            m.branch = branch;
        });
    }
}

fn split_sent_by(s: &str) -> Result<(&str, Option<u16>), &'static str> {
    let (host, port) = if s.starts_with('[') {
        let end = pos(s, b']').ok_or("unterminated IPv6 sent-by")?;
        (&s[..=end], &s[end + 1..])
    } else {
        match pos(s, b':') {
            Some(c) => (&s[..c], &s[c..]),
            None => (s, ""),
        }
    };
    let host = trim(host);
    if host.is_empty()
        || !host
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'[' | b']' | b':'))
    {
        return Err("invalid Via sent-by host");
    }
    let port = match trim(port) {
        "" => None,
        p => {
            let digits = trim(p.strip_prefix(':').ok_or("junk after Via host")?);
            Some(digits.parse::<u16>().map_err(|_| "invalid Via port")?)
        }
    };
    Ok((host, port))
}

/// Where the ASCII byte `c` first occurs in `s` (a character boundary).
#[inline]
fn pos(s: &str, c: u8) -> Option<usize> {
    s.bytes().position(|b| b == c)
}

#[inline]
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && is_ws(b[i]) {
        i += 1;
    }
    i
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{} {}",
            self.protocol.0, self.protocol.1, self.transport, self.host
        )?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        for p in &self.params {
            match &p.value {
                Some(v) => write!(f, ";{}={}", p.name, v)?,
                None => write!(f, ";{}", p.name)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_values_read_as_parsed() {
        let values = [
            "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1;rport",
            "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1;rport, SIP/2.0/TCP [::1]:5061",
            "SIP / 2.0 / TCP h;BRANCH=x;branch=y",
            "SIP/2.0/UDP h;branch",
            "SIP/2.0/UDP h",
            "SIP/2.0/UDP 192.0.2.15;;,;,,",
        ];
        for round in 0..3 {
            for v in values.iter().chain(values.iter().rev()) {
                // A copy at another address: the memory is by content.
                let copy = v.to_string();
                for value in [*v, copy.as_str()] {
                    let got = ViaRef::first_of_list(value);
                    assert_eq!(
                        got,
                        ViaRef::first_of_list_uncached(value),
                        "{round} {value}"
                    );
                    if let Ok(r) = got {
                        assert_eq!(r.branch(), r.param("branch"), "{value}");
                    }
                }
            }
        }
    }

    #[test]
    fn folded_sent_protocol() {
        let v = Via::parse("SIP  /   2.0 /  UDP  192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.host, "192.0.2.2");
        assert!(!v.has_rfc3261_branch());
    }

    #[test]
    fn list_and_params() {
        let v = Via::parse_list(
            "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1;rport, SIP/2.0/TCP [::1]:5061",
        )
        .unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].port, Some(5070));
        assert!(v[0].has_param("rport"));
        assert_eq!(v[1].host, "[::1]");
        assert!(Via::parse_list("SIP/2.0/UDP 192.0.2.15;;,;,,").is_err());
        assert!(!Via::parse("SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK")
            .unwrap()
            .has_rfc3261_branch());
    }
}
