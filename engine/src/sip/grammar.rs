//! Lexical pieces of the RFC 3261 §25 grammar shared by the header parsers: tokens, quoted
//! strings, comma-separated lists, generic parameters and name-addr / addr-spec values.
//!
//! Every function here works on `&str` and only slices at ASCII delimiters, which are always
//! UTF-8 character boundaries, so no input can make them panic.

/// True for the characters of an RFC 3261 `token`.
pub fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}

/// True when `s` is a non-empty `token`.
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_char)
}

/// True for linear white space inside an unfolded header value.
pub fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// The end (exclusive) of the quoted string that starts at `start` (which must index a `"`),
/// honouring quoted-pairs; `None` when the quote is never closed.
pub fn quoted_end(s: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < s.len() {
        match s[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// Splits a header value into its comma-separated elements, ignoring commas inside quoted
/// strings and `<...>`. Elements are trimmed. Fails on an unterminated quote or bracket, or on an
/// empty element (`a,,b`), which RFC 4475 §3.1.2.1 treats as malformed.
pub fn split_list(value: &str) -> Result<Vec<&str>, &'static str> {
    let b = value.as_bytes();
    let mut items = Vec::new();
    let mut start = 0;
    let mut i = 0;
    let mut in_angle = false;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i = quoted_end(b, i).ok_or("unterminated quoted string")?;
                continue;
            }
            b'<' => in_angle = true,
            b'>' => in_angle = false,
            b',' if !in_angle => {
                let item = value[start..i].trim();
                if item.is_empty() {
                    return Err("empty list element");
                }
                items.push(item);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if in_angle {
        return Err("unterminated <");
    }
    let item = value[start..].trim();
    if item.is_empty() {
        return Err("empty list element");
    }
    items.push(item);
    Ok(items)
}

/// A generic parameter `;name[=value]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param {
    /// The parameter name, as received.
    pub name: String,
    /// The value, with quotes kept when it was a quoted string.
    pub value: Option<String>,
}

/// Finds a parameter by name (case-insensitive).
pub fn find_param<'a>(params: &'a [Param], name: &str) -> Option<&'a Param> {
    params.iter().find(|p| p.name.eq_ignore_ascii_case(name))
}

/// Parses `;a=b;c` (the leading `;` included, or an empty string) into parameters.
/// Values are tokens, quoted strings or hosts (IPv6 references allowed).
pub fn parse_params(s: &str) -> Result<Vec<Param>, &'static str> {
    let b = s.as_bytes();
    let mut params = Vec::new();
    let mut i = skip_ws(b, 0);
    while i < b.len() {
        if b[i] != b';' {
            return Err("junk where a parameter was expected");
        }
        i = skip_ws(b, i + 1);
        let name_start = i;
        while i < b.len() && is_token_char(b[i]) {
            i += 1;
        }
        if i == name_start {
            return Err("empty parameter");
        }
        let name = s[name_start..i].to_string();
        i = skip_ws(b, i);
        let mut value = None;
        if i < b.len() && b[i] == b'=' {
            i = skip_ws(b, i + 1);
            let v_start = i;
            if i < b.len() && b[i] == b'"' {
                i = quoted_end(b, i).ok_or("unterminated quoted parameter")?;
            } else if i < b.len() && b[i] == b'[' {
                while i < b.len() && b[i] != b']' {
                    i += 1;
                }
                if i == b.len() {
                    return Err("unterminated IPv6 reference");
                }
                i += 1;
            } else {
                while i < b.len() && (is_token_char(b[i]) || b[i] == b':') {
                    i += 1;
                }
            }
            if i == v_start {
                return Err("empty parameter value");
            }
            value = Some(s[v_start..i].to_string());
            i = skip_ws(b, i);
        }
        params.push(Param { name, value });
    }
    Ok(params)
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && is_ws(b[i]) {
        i += 1;
    }
    i
}

/// A `name-addr` or `addr-spec` with its header parameters (From, To, Contact, Route).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameAddr {
    /// The display name, unquoted form kept as received (quotes included when quoted).
    pub display: Option<String>,
    /// The URI, without the angle brackets.
    pub uri: String,
    /// Whether the URI was enclosed in `<>`.
    pub bracketed: bool,
    /// Header parameters after the URI (`;tag=…`, `;expires=…`).
    pub params: Vec<Param>,
}

impl NameAddr {
    /// The value of the `tag` parameter, if any.
    pub fn tag(&self) -> Option<&str> {
        find_param(&self.params, "tag").and_then(|p| p.value.as_deref())
    }
}

/// Parses one `name-addr` / `addr-spec` element.
///
/// Rejects what RFC 4475 calls malformed: an unterminated quote in the display name (§3.1.2.6),
/// whitespace inside `<addr-spec>` (§3.1.2.14), non-token characters in an unquoted display name
/// (§3.1.2.15), and an unbracketed URI that contains `?` or `,` (§3.1.2.13).
pub fn parse_name_addr(s: &str) -> Result<NameAddr, &'static str> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.is_empty() {
        return Err("empty address");
    }
    let (display, after_display) = if b[0] == b'"' {
        let end = quoted_end(b, 0).ok_or("unterminated quoted display name")?;
        let rest = skip_ws(b, end);
        if rest >= b.len() || b[rest] != b'<' {
            return Err("quoted display name without <URI>");
        }
        (Some(s[..end].to_string()), rest)
    } else if let Some(lt) = memchr::memchr(b'<', b) {
        let name = s[..lt].trim();
        if !name.is_empty()
            && !name
                .split([' ', '\t'])
                .filter(|w| !w.is_empty())
                .all(is_token)
        {
            return Err("display name has characters that need quoting");
        }
        ((!name.is_empty()).then(|| name.to_string()), lt)
    } else {
        // addr-spec: the URI runs to the first ';', which starts the header parameters.
        let end = memchr::memchr(b';', b).unwrap_or(b.len());
        let uri = s[..end].trim();
        check_uri_chars(uri)?;
        if uri.contains(['?', ',']) {
            return Err("URI with ? or , must be enclosed in <>");
        }
        let params = parse_params(&s[end..])?;
        return Ok(NameAddr {
            display: None,
            uri: uri.to_string(),
            bracketed: false,
            params,
        });
    };
    // b[after_display] == '<'
    let gt = memchr::memchr(b'>', &b[after_display..])
        .map(|i| i + after_display)
        .ok_or("unterminated <URI>")?;
    let uri = &s[after_display + 1..gt];
    check_uri_chars(uri)?;
    let params = parse_params(&s[gt + 1..])?;
    Ok(NameAddr {
        display,
        uri: uri.to_string(),
        bracketed: true,
        params,
    })
}

/// Checks that a URI has a scheme and no whitespace, quotes or angle brackets.
pub fn check_uri_chars(uri: &str) -> Result<(), &'static str> {
    if uri.is_empty() {
        return Err("empty URI");
    }
    if uri
        .bytes()
        .any(|c| c <= b' ' || matches!(c, b'<' | b'>' | b'"' | 0x7f))
    {
        return Err("URI contains whitespace or a forbidden character");
    }
    crate::sip::uri::scheme(uri).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_respect_quotes_and_brackets() {
        let v = split_list(r#""a,b" <sip:x@y>;q=1, <sip:z,w@y>"#).unwrap();
        assert_eq!(v.len(), 2);
        assert!(split_list("a,,b").is_err());
        assert!(split_list(r#""open"#).is_err());
    }

    #[test]
    fn name_addr_forms() {
        let n = parse_name_addr(r#""caller"<sip:caller@example.com>;tag=323"#).unwrap();
        assert_eq!(n.tag(), Some("323"));
        let n = parse_name_addr("sip:+1972@gw1.example.net;unknownparam").unwrap();
        assert_eq!(n.uri, "sip:+1972@gw1.example.net");
        assert_eq!(n.params[0].name, "unknownparam");
        assert!(parse_name_addr(r#""Mr. J. User <sip:j.user@example.com>"#).is_err());
        assert!(parse_name_addr("<sip:user@example.com; lr>").is_err());
        assert!(parse_name_addr("Bell, Alexander <sip:a.g.bell@example.com>").is_err());
        assert!(parse_name_addr("sip:user@example.com?Route=%3Csip:x%3E").is_err());
        assert!(parse_name_addr("Joe Smith <sip:joe@example.com>;;").is_err());
    }
}
