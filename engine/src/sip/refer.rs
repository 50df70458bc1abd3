//! The headers of call transfer: `Refer-To` (RFC 3515 §2.1, with the embedded `?Replaces=`
//! header of RFC 3891 §6 and RFC 5589 attended transfer) and `Replaces` (RFC 3891 §6.1).
//! Sans-IO parsers of untrusted input: every malformed value is an [`ReferError`] (answered
//! with 400 by the call layer), never a panic.

use std::fmt;

/// Longest header value accepted (the whole `Refer-To`, or a `Replaces`).
pub const MAX_LEN: usize = 2048;

/// Why a transfer header was refused (the reason phrase of the 400).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReferError(pub &'static str);

impl fmt::Display for ReferError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for ReferError {}

/// A parsed `Replaces` value: the dialog to replace, as the recipient sees it (`to_tag` is the
/// recipient's own tag, `from_tag` its peer's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replaces {
    /// The Call-ID of the dialog.
    pub call_id: String,
    /// The `to-tag` parameter.
    pub to_tag: String,
    /// The `from-tag` parameter.
    pub from_tag: String,
    /// `early-only`: replace the dialog only while it is early (else 486).
    pub early_only: bool,
}

impl Replaces {
    /// Whether the value names the dialog with this Call-ID and tags. The tags are matched in
    /// either order: phones disagree on whose view `to-tag` takes (RFC 3891 §3 says the
    /// recipient's; a B2BUA is recipient on one side and sender on the other).
    pub fn matches(&self, call_id: &str, local_tag: &str, remote_tag: &str) -> bool {
        self.call_id == call_id
            && ((self.to_tag == local_tag && self.from_tag == remote_tag)
                || (self.to_tag == remote_tag && self.from_tag == local_tag))
    }

    /// The header value (`call-id;to-tag=…;from-tag=…[;early-only]`).
    pub fn to_header(&self) -> String {
        let mut s = format!(
            "{};to-tag={};from-tag={}",
            self.call_id, self.to_tag, self.from_tag
        );
        if self.early_only {
            s.push_str(";early-only");
        }
        s
    }
}

/// A parsed `Refer-To`: the target URI (without its `?headers`), and a `Replaces` carried as
/// one of those headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReferTo {
    /// The target (`sip:`, `sips:` or `tel:` URI, URI parameters kept, headers removed).
    pub uri: String,
    /// The `Replaces` header embedded in the URI (attended transfer).
    pub replaces: Option<Replaces>,
}

/// Characters allowed in a Call-ID (RFC 3261 `word` plus `@`).
fn callid_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-.!%*_+`'~()<>:\\\"/[]?{}@".contains(c)
}

/// Characters allowed in a tag (`token`).
fn token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c)
}

/// Parses a `Replaces` header value (RFC 3891 §6.1).
pub fn parse_replaces(value: &str) -> Result<Replaces, ReferError> {
    if value.len() > MAX_LEN {
        return Err(ReferError("Replaces too long"));
    }
    let mut parts = value.split(';');
    let call_id = parts.next().unwrap_or_default().trim();
    if call_id.is_empty() || !call_id.chars().all(callid_char) {
        return Err(ReferError("Replaces: bad Call-ID"));
    }
    let (mut to_tag, mut from_tag, mut early_only) = (None, None, false);
    for p in parts {
        let (name, val) = match p.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (p.trim(), None),
        };
        let slot = if name.eq_ignore_ascii_case("to-tag") {
            &mut to_tag
        } else if name.eq_ignore_ascii_case("from-tag") {
            &mut from_tag
        } else if name.eq_ignore_ascii_case("early-only") {
            if val.is_some() || early_only {
                return Err(ReferError("Replaces: bad early-only"));
            }
            early_only = true;
            continue;
        } else if !name.is_empty() && name.chars().all(token_char) {
            // generic-param: allowed and ignored, but must be well formed
            if val.is_some_and(|v| v.is_empty() || !v.chars().all(token_char)) {
                return Err(ReferError("Replaces: bad parameter"));
            }
            continue;
        } else {
            return Err(ReferError("Replaces: bad parameter"));
        };
        let Some(v) = val.filter(|v| !v.is_empty() && v.chars().all(token_char)) else {
            return Err(ReferError("Replaces: bad tag"));
        };
        if slot.replace(v.to_string()).is_some() {
            return Err(ReferError("Replaces: duplicate tag"));
        }
    }
    match (to_tag, from_tag) {
        (Some(to_tag), Some(from_tag)) => Ok(Replaces {
            call_id: call_id.to_string(),
            to_tag,
            from_tag,
            early_only,
        }),
        _ => Err(ReferError("Replaces: to-tag and from-tag are required")),
    }
}

/// Decodes `%XX` escapes (RFC 3261 `escaped`); a bad escape or non-UTF-8 result is an error.
fn unescape(s: &str) -> Result<String, ReferError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or(ReferError("Refer-To: bad %-escape"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ReferError("Refer-To: escape is not UTF-8"))
}

/// Parses a `Refer-To` value: `name-addr` (`"x" <sip:…?Replaces=…>;params`) or `addr-spec`.
pub fn parse_refer_to(value: &str) -> Result<ReferTo, ReferError> {
    if value.len() > MAX_LEN {
        return Err(ReferError("Refer-To too long"));
    }
    let v = value.trim();
    let uri = match v.find('<') {
        Some(open) => {
            let rest = &v[open + 1..];
            let close = rest.find('>').ok_or(ReferError("Refer-To: unclosed <"))?;
            &rest[..close]
        }
        // addr-spec: its own `;` parameters would be header parameters, so an addr-spec
        // with `?` or `;` is ambiguous (RFC 3261 §20): take the URI up to the first `;`.
        None => v.split(';').next().unwrap_or_default().trim(),
    };
    if uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ReferError("Refer-To: space in URI"));
    }
    let (scheme, rest) = uri
        .split_once(':')
        .ok_or(ReferError("Refer-To: no URI scheme"))?;
    if !["sip", "sips", "tel"]
        .iter()
        .any(|s| s.eq_ignore_ascii_case(scheme))
    {
        return Err(ReferError("Refer-To: not a SIP or tel URI"));
    }
    let (base, headers) = match rest.split_once('?') {
        Some((b, h)) => (b, Some(h)),
        None => (rest, None),
    };
    let host = base.split(';').next().unwrap_or_default();
    let host = host.rsplit('@').next().unwrap_or_default();
    if host.is_empty() || base.starts_with('@') || base.starts_with(';') {
        return Err(ReferError("Refer-To: no host"));
    }
    let mut replaces = None;
    for h in headers.into_iter().flat_map(|h| h.split('&')) {
        let (name, val) = h
            .split_once('=')
            .ok_or(ReferError("Refer-To: bad URI header"))?;
        if name.eq_ignore_ascii_case("Replaces") {
            if replaces.is_some() {
                return Err(ReferError("Refer-To: two Replaces"));
            }
            replaces = Some(parse_replaces(&unescape(val)?)?);
        }
    }
    Ok(ReferTo {
        uri: format!("{scheme}:{base}"),
        replaces,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blind_refer_to() {
        let r = parse_refer_to("<sip:2002@127.0.0.1:5060;transport=udp>").unwrap();
        assert_eq!(r.uri, "sip:2002@127.0.0.1:5060;transport=udp");
        assert!(r.replaces.is_none());
        let r = parse_refer_to("sip:bob@example.com").unwrap();
        assert_eq!(r.uri, "sip:bob@example.com");
        let r = parse_refer_to("\"Bob\" <tel:+15551234>;x=y").unwrap();
        assert_eq!(r.uri, "tel:+15551234");
    }

    #[test]
    fn attended_refer_to() {
        let r = parse_refer_to(
            "<sip:carol@host?Replaces=abc%40h%3Bto-tag%3Dt1%3Bfrom-tag%3Df1&Other=1>",
        )
        .unwrap();
        assert_eq!(r.uri, "sip:carol@host");
        let rep = r.replaces.unwrap();
        assert_eq!(rep.call_id, "abc@h");
        assert_eq!(rep.to_tag, "t1");
        assert_eq!(rep.from_tag, "f1");
        assert!(!rep.early_only);
        assert!(rep.matches("abc@h", "t1", "f1"));
        assert!(rep.matches("abc@h", "f1", "t1"));
        assert!(!rep.matches("abc@h", "t1", "x"));
        assert_eq!(parse_replaces(&rep.to_header()).unwrap(), rep);
    }

    #[test]
    fn replaces_header() {
        let r = parse_replaces("425928@bobster.example.org;to-tag=7743;from-tag=6472").unwrap();
        assert_eq!(r.call_id, "425928@bobster.example.org");
        let r = parse_replaces("a;from-tag=1;to-tag=2;early-only").unwrap();
        assert!(r.early_only);
        assert_eq!(r.to_tag, "2");
    }

    #[test]
    fn malformed_values_are_errors() {
        for bad in [
            "",
            "<>",
            "<sip:",
            "<sip:a@b",
            "http://x",
            "<sip:@>",
            "<sip:a@b?Replaces>",
            "<sip:a@b?Replaces=%zz>",
            "<sip:a@b?Replaces=%ff%fe;to-tag=1;from-tag=2>",
            "<sip:a@b?Replaces=x%3Bto-tag%3D1>",
            "<sip:a@b?Replaces=x%3Bto-tag%3D1%3Bfrom-tag%3D2&Replaces=y%3Bto-tag%3D1%3Bfrom-tag%3D2>",
            "<sip:a b@c>",
        ] {
            assert!(parse_refer_to(bad).is_err(), "{bad:?} parsed");
        }
        for bad in [
            "",
            ";to-tag=1;from-tag=2",
            "a;to-tag=1",
            "a;to-tag=;from-tag=2",
            "a;to-tag=1;to-tag=1;from-tag=2",
            "a;to-tag=1;from-tag=2;early-only=1",
            "a b;to-tag=1;from-tag=2",
            "a;to-tag=1;from-tag=2;;",
        ] {
            assert!(parse_replaces(bad).is_err(), "{bad:?} parsed");
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,300}") {
            let _ = parse_refer_to(&s);
            let _ = parse_replaces(&s);
        }

        #[test]
        fn never_panics_on_sip_like(s in "<sip:[a-z@%;=?&0-9A-F:<>-]{0,80}>?") {
            if let Ok(r) = parse_refer_to(&s) {
                if let Some(rep) = r.replaces {
                    proptest::prop_assert_eq!(parse_replaces(&rep.to_header()), Ok(rep));
                }
            }
        }
    }
}
