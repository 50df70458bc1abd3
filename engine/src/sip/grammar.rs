//! Lexical pieces of the RFC 3261 §25 grammar shared by the header parsers: tokens, quoted
//! strings, comma-separated lists, generic parameters and name-addr / addr-spec values.
//!
//! Every function here works on `&str` and only slices at ASCII delimiters, which are always
//! UTF-8 character boundaries, so no input can make them panic.

/// Which bytes are `token` characters (a table: the parsers test every byte of every header).
const TOKEN_CHARS: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            );
        i += 1;
    }
    t
};

/// True for the characters of an RFC 3261 `token`.
#[inline]
pub fn is_token_char(b: u8) -> bool {
    TOKEN_CHARS[usize::from(b)]
}

/// Which bytes may appear in an unquoted parameter value: `token` characters and `:`.
const VALUE_CHARS: [bool; 256] = {
    let mut t = TOKEN_CHARS;
    t[b':' as usize] = true;
    t
};

/// The ASCII white space `str::trim` removes (`char::is_whitespace` below U+0080).
#[inline]
fn is_trim_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Exactly `s.trim()`, cheaper on the usual values (ASCII at both ends).
#[inline]
pub fn trim(s: &str) -> &str {
    let b = s.as_bytes();
    let start = b.iter().position(|&c| !is_trim_ws(c)).unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|&c| !is_trim_ws(c))
        .map_or(start, |i| i + 1);
    // Both ends are now ASCII non-space bytes, unless the value starts or ends with a
    // non-ASCII character, which may be Unicode white space: `str::trim` decides those.
    match s.get(start..end) {
        Some(v)
            if v.as_bytes().first().is_none_or(u8::is_ascii)
                && v.as_bytes().last().is_none_or(u8::is_ascii) =>
        {
            v
        }
        Some(v) => v.trim(),
        None => s.trim(),
    }
}

/// The length of the run of bytes at the start of `b` for which `table` is true.
#[inline]
fn run_of(b: &[u8], table: &[bool; 256]) -> usize {
    // Eight bytes at a time while they all belong (no branch per byte), then byte by byte.
    let mut i = 0;
    while let Some(chunk) = b.get(i..i + 8) {
        if !chunk
            .iter()
            .fold(true, |all, &c| all & table[usize::from(c)])
        {
            break;
        }
        i += 8;
    }
    let rest = &b[i..];
    i + rest
        .iter()
        .position(|&c| !table[usize::from(c)])
        .unwrap_or(rest.len())
}

/// The length of the `token` at the start of `b` (0 when none).
#[inline]
pub fn token_len(b: &[u8]) -> usize {
    run_of(b, &TOKEN_CHARS)
}

/// True when `s` is a non-empty `token`.
#[inline]
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_char)
}

/// True for linear white space inside an unfolded header value.
#[inline]
pub fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// The end (exclusive) of the quoted string that starts at `start` (which must index a `"`),
/// honouring quoted-pairs; `None` when the quote is never closed.
#[inline]
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
    list_elems(value).collect()
}

/// The elements of a comma-separated header value, as [`split_list`] finds them, without
/// collecting them: each is `Ok(element)` until the first fault, which is yielded once and
/// ends the iteration.
pub fn list_elems(value: &str) -> ListElems<'_> {
    ListElems {
        value,
        pos: 0,
        done: false,
    }
}

/// Checks a comma-separated header value as [`split_list`] does, without allocating.
pub fn check_list(value: &str) -> Result<(), &'static str> {
    if let Some(sole) = sole_elem(value) {
        return sole.map(|_| ());
    }
    list_elems(value).try_for_each(|e| e.map(|_| ()))
}

/// What [`list_elems`] yields for a value without `"` or `,` (two searches): its only
/// element, the trimmed value, or its fault (unterminated `<`, empty element). `None` for any
/// other value.
#[inline]
pub fn sole_elem(value: &str) -> Option<Result<&str, &'static str>> {
    let b = value.as_bytes();
    if memchr::memchr2(b'"', b',', b).is_some() {
        return None;
    }
    // Without quotes, `<` opens and `>` closes: the value ends inside <…> exactly when its
    // last `<` comes after its last `>`.
    if memchr::memrchr(b'<', b) > memchr::memrchr(b'>', b) {
        return Some(Err("unterminated <"));
    }
    let item = value.trim();
    Some(if item.is_empty() {
        Err("empty list element")
    } else {
        Ok(item)
    })
}

/// The iterator of [`list_elems`].
#[derive(Clone, Debug)]
pub struct ListElems<'a> {
    value: &'a str,
    pos: usize,
    done: bool,
}

impl<'a> Iterator for ListElems<'a> {
    type Item = Result<&'a str, &'static str>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let value = self.value;
        let b = value.as_bytes();
        let start = self.pos;
        let mut i = start;
        let mut in_angle = false;
        while i < b.len() {
            // Skip to the next byte that matters: `"`, `<` or `,` outside <…>; `"` or `>`
            // inside.
            let next = match b.get(i..) {
                Some(rest) if in_angle => memchr::memchr2(b'"', b'>', rest),
                Some(rest) => memchr::memchr3(b'"', b'<', b',', rest),
                None => None,
            };
            let Some(skip) = next else {
                break;
            };
            i += skip;
            match b[i] {
                b'"' => {
                    let Some(end) = quoted_end(b, i) else {
                        self.done = true;
                        return Some(Err("unterminated quoted string"));
                    };
                    i = end;
                    continue;
                }
                b'<' => in_angle = true,
                b'>' => in_angle = false,
                b',' if !in_angle => {
                    let item = value[start..i].trim();
                    if item.is_empty() {
                        self.done = true;
                        return Some(Err("empty list element"));
                    }
                    self.pos = i + 1;
                    return Some(Ok(item));
                }
                _ => {}
            }
            i += 1;
        }
        self.done = true;
        if in_angle {
            return Some(Err("unterminated <"));
        }
        let item = value[start..].trim();
        if item.is_empty() {
            return Some(Err("empty list element"));
        }
        Some(Ok(item))
    }
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
    param_iter(s)
        .map(|p| {
            p.map(|(name, value)| Param {
                name: name.to_string(),
                value: value.map(str::to_string),
            })
        })
        .collect()
}

/// Checks `;a=b;c` as [`parse_params`] does, without allocating.
pub fn check_params(s: &str) -> Result<(), &'static str> {
    param_iter(s).try_for_each(|p| p.map(|_| ()))
}

/// [`check_params`] and, in the same pass, what [`find_param_in`] says about `name`.
pub fn check_params_finding<'a>(
    s: &'a str,
    name: &str,
) -> Result<Option<Option<&'a str>>, &'static str> {
    let mut found = None;
    for p in param_iter(s) {
        let (n, v) = p?;
        if found.is_none() && n.eq_ignore_ascii_case(name) {
            found = Some(v);
        }
    }
    Ok(found)
}

/// The first parameter called `name` (case-insensitive) of a parameter string that
/// [`check_params`] accepts: `Some(value)` when present (`value` is `None` when it has none).
/// Stops at the first fault of an unchecked string.
pub fn find_param_in<'a>(s: &'a str, name: &str) -> Option<Option<&'a str>> {
    param_iter(s)
        .map_while(Result::ok)
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// The parameters of `;a=b;c` as `(name, value)` slices, as [`parse_params`] reads them: each
/// is `Ok` until the first fault, which is yielded once and ends the iteration.
pub fn param_iter(s: &str) -> ParamIter<'_> {
    ParamIter {
        s,
        i: skip_ws(s.as_bytes(), 0),
        done: false,
    }
}

/// The iterator of [`param_iter`].
#[derive(Clone, Debug)]
pub struct ParamIter<'a> {
    s: &'a str,
    i: usize,
    done: bool,
}

impl<'a> ParamIter<'a> {
    fn fail(&mut self, why: &'static str) -> Option<<Self as Iterator>::Item> {
        self.done = true;
        Some(Err(why))
    }
}

impl<'a> Iterator for ParamIter<'a> {
    type Item = Result<(&'a str, Option<&'a str>), &'static str>;

    fn next(&mut self) -> Option<Self::Item> {
        let s = self.s;
        let b = s.as_bytes();
        let mut i = self.i;
        if self.done || i >= b.len() {
            return None;
        }
        if b[i] != b';' {
            return self.fail("junk where a parameter was expected");
        }
        i = skip_ws(b, i + 1);
        let name_start = i;
        i += token_len(&b[i..]);
        if i == name_start {
            return self.fail("empty parameter");
        }
        let name = &s[name_start..i];
        i = skip_ws(b, i);
        let mut value = None;
        if i < b.len() && b[i] == b'=' {
            i = skip_ws(b, i + 1);
            let v_start = i;
            if i < b.len() && b[i] == b'"' {
                match quoted_end(b, i) {
                    Some(end) => i = end,
                    None => return self.fail("unterminated quoted parameter"),
                }
            } else if i < b.len() && b[i] == b'[' {
                while i < b.len() && b[i] != b']' {
                    i += 1;
                }
                if i == b.len() {
                    return self.fail("unterminated IPv6 reference");
                }
                i += 1;
            } else {
                i += run_of(&b[i..], &VALUE_CHARS);
            }
            if i == v_start {
                return self.fail("empty parameter value");
            }
            value = Some(&s[v_start..i]);
            i = skip_ws(b, i);
        }
        self.i = i;
        Some(Ok((name, value)))
    }
}

#[inline]
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

/// A `name-addr` or `addr-spec` read in place (see [`parse_name_addr_ref`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NameAddrRef<'a> {
    /// The display name, as received (quotes included when quoted).
    pub display: Option<&'a str>,
    /// The URI, without the angle brackets.
    pub uri: &'a str,
    /// Whether the URI was enclosed in `<>`.
    pub bracketed: bool,
    /// The header parameters after the URI, unparsed but checked (`;tag=…;expires=…`).
    pub params: &'a str,
    /// The first `tag` parameter, found while checking `params`: `Some(None)` when it has no
    /// value.
    tag_param: Option<Option<&'a str>>,
}

impl<'a> NameAddrRef<'a> {
    /// The value of the `tag` parameter, if any.
    pub fn tag(&self) -> Option<&'a str> {
        self.tag_param.flatten()
    }

    /// True when a `tag` parameter is present without a value.
    pub fn has_valueless_tag(&self) -> bool {
        self.tag_param.is_some_and(|v| v.is_none())
    }

    /// The owned form.
    pub fn to_name_addr(&self) -> Result<NameAddr, &'static str> {
        Ok(NameAddr {
            display: self.display.map(str::to_string),
            uri: self.uri.to_string(),
            bracketed: self.bracketed,
            params: parse_params(self.params)?,
        })
    }
}

/// Parses one `name-addr` / `addr-spec` element.
///
/// Rejects what RFC 4475 calls malformed: an unterminated quote in the display name (§3.1.2.6),
/// whitespace inside `<addr-spec>` (§3.1.2.14), non-token characters in an unquoted display name
/// (§3.1.2.15), and an unbracketed URI that contains `?` or `,` (§3.1.2.13).
pub fn parse_name_addr(s: &str) -> Result<NameAddr, &'static str> {
    parse_name_addr_ref(s)?.to_name_addr()
}

/// [`parse_name_addr`] without copying: the same checks, the parts as slices of `s`.
pub fn parse_name_addr_ref(s: &str) -> Result<NameAddrRef<'_>, &'static str> {
    let s = trim(s);
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
        (Some(&s[..end]), rest)
    } else if let Some(lt) = memchr::memchr(b'<', b) {
        let name = trim(&s[..lt]);
        // Words of token characters separated by white space.
        if !name
            .bytes()
            .all(|c| is_token_char(c) || c == b' ' || c == b'\t')
        {
            return Err("display name has characters that need quoting");
        }
        ((!name.is_empty()).then_some(name), lt)
    } else {
        // addr-spec: the URI runs to the first ';', which starts the header parameters.
        let end = memchr::memchr(b';', b).unwrap_or(b.len());
        let uri = trim(&s[..end]);
        check_uri_chars(uri)?;
        if uri.bytes().any(|c| c == b'?' || c == b',') {
            return Err("URI with ? or , must be enclosed in <>");
        }
        let params = &s[end..];
        let tag_param = check_params_finding(params, "tag")?;
        return Ok(NameAddrRef {
            display: None,
            uri,
            bracketed: false,
            params,
            tag_param,
        });
    };
    // b[after_display] == '<'
    let gt = memchr::memchr(b'>', &b[after_display..])
        .map(|i| i + after_display)
        .ok_or("unterminated <URI>")?;
    let uri = &s[after_display + 1..gt];
    check_uri_chars(uri)?;
    let params = &s[gt + 1..];
    let tag_param = check_params_finding(params, "tag")?;
    Ok(NameAddrRef {
        display,
        uri,
        bracketed: true,
        params,
        tag_param,
    })
}

/// The bytes a URI may not hold: controls, space, DEL, `<`, `>` and `"`.
const URI_FORBIDDEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i <= b' ' as usize {
        t[i] = true;
        i += 1;
    }
    t[b'<' as usize] = true;
    t[b'>' as usize] = true;
    t[b'"' as usize] = true;
    t[0x7f] = true;
    t
};

/// Checks that a URI has a scheme and no whitespace, quotes or angle brackets; the scheme's kind.
pub fn check_uri_chars(uri: &str) -> Result<crate::sip::uri::SchemeKind, &'static str> {
    if uri.is_empty() {
        return Err("empty URI");
    }
    if uri.bytes().any(|c| URI_FORBIDDEN[usize::from(c)]) {
        return Err("URI contains whitespace or a forbidden character");
    }
    crate::sip::uri::scheme(uri)
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

    /// `sole_elem` says what `list_elems` yields, for every short string over the list
    /// grammar's delimiters.
    #[test]
    fn sole_elem_agrees_with_list_elems() {
        let alphabet = ['a', ',', '"', '<', '>', ' ', '\\'];
        let mut stack = vec![String::new()];
        let mut checked = 0;
        while let Some(v) = stack.pop() {
            if let Some(sole) = sole_elem(&v) {
                checked += 1;
                let all: Vec<_> = list_elems(&v).collect();
                assert_eq!(all, vec![sole], "{v:?}");
                assert_eq!(check_list(&v), sole.map(|_| ()), "{v:?}");
            }
            if v.len() < 6 {
                for c in alphabet {
                    stack.push(format!("{v}{c}"));
                }
            }
        }
        assert!(checked > 1000, "{checked}");
    }

    #[test]
    fn params_found_while_checking() {
        for s in [
            "",
            ";tag=1",
            ";a;TAG=2;tag=3",
            ";tag",
            ";x=1;tag",
            ";;tag=1",
            ";tag=\"q\"",
        ] {
            let checked = check_params(s);
            let found = check_params_finding(s, "tag");
            assert_eq!(checked.is_ok(), found.is_ok(), "{s}");
            if checked.is_ok() {
                assert_eq!(found, Ok(find_param_in(s, "tag")), "{s}");
            }
        }
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
