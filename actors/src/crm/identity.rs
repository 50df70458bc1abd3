//! Identity normalisation: one spelling per identity, so that the same person is recognised
//! on every channel. Phone numbers keep only digits, with a leading `+` for international
//! form (E.164: `00` becomes `+`, at most 15 digits); SIP and tel URIs give their user part;
//! e-mail addresses are lower-cased; chat visitor ids and external ids are kept as given.

use switchboard_storage::Identity;

/// Longest visitor or external id accepted.
const MAX_ID: usize = 256;

/// The normalised identity, or why the value is not one of `kind`.
pub fn normalise(kind: &str, value: &str) -> Result<Identity, String> {
    let value = value.trim();
    let v = match kind {
        "phone" => phone(value).ok_or_else(|| {
            "a phone number: digits with an optional leading + (E.164, at most 15 digits)"
                .to_string()
        })?,
        "email" => email(value).ok_or_else(|| "an e-mail address".to_string())?,
        "visitor" => plain(value).ok_or_else(|| "a visitor id (1–256 characters)".to_string())?,
        k if k.strip_prefix("ext:").is_some_and(channel_name) => {
            plain(value).ok_or_else(|| "an external id (1–256 characters)".to_string())?
        }
        _ => {
            return Err(format!(
                "unknown identity kind {kind:?} (phone, email, visitor or ext:<channel>)"
            ))
        }
    };
    Ok(Identity {
        kind: kind.to_string(),
        value: v,
    })
}

fn channel_name(c: &str) -> bool {
    !c.is_empty()
        && c.len() <= 32
        && c.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// A phone number in canonical form: `+` and digits, or digits alone for a local number.
pub fn phone(s: &str) -> Option<String> {
    let s = s.trim();
    let lower = s.to_ascii_lowercase();
    let s = if lower.starts_with("sip:") || lower.starts_with("sips:") || lower.starts_with("tel:")
    {
        let rest = &s[s.find(':')? + 1..];
        rest.split(['@', ';', '?']).next()?
    } else {
        s
    };
    let (plus, rest) = match s.strip_prefix('+') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let mut digits = String::with_capacity(rest.len());
    for c in rest.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' | '.' | '(' | ')' => {}
            _ => return None,
        }
    }
    let (plus, digits) = match digits.strip_prefix("00") {
        Some(d) if !plus => (true, d.to_string()),
        _ => (plus, digits),
    };
    let ok = if plus {
        (3..=15).contains(&digits.len()) && !digits.starts_with('0')
    } else {
        (2..=15).contains(&digits.len())
    };
    ok.then(|| if plus { format!("+{digits}") } else { digits })
}

fn email(s: &str) -> Option<String> {
    let s = s.to_lowercase();
    let (local, domain) = s.split_once('@')?;
    let ok = !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && s.len() <= 254
        && !s.chars().any(|c| c.is_whitespace() || c.is_control());
    ok.then_some(s)
}

fn plain(s: &str) -> Option<String> {
    let ok = !s.is_empty() && s.len() <= MAX_ID && !s.chars().any(char::is_control);
    ok.then(|| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones() {
        assert_eq!(phone("+1 (555) 010-2000").as_deref(), Some("+15550102000"));
        assert_eq!(phone("0033 1 23 45 67 89").as_deref(), Some("+33123456789"));
        assert_eq!(
            phone("sip:+15550102000@example.com;user=phone").as_deref(),
            Some("+15550102000")
        );
        assert_eq!(
            phone("tel:+44-20-7946-0000").as_deref(),
            Some("+442079460000")
        );
        assert_eq!(phone("1001").as_deref(), Some("1001"));
        assert_eq!(phone("sip:alice@example.com"), None);
        assert_eq!(phone("+1234567890123456"), None);
        assert_eq!(phone("+0123"), None);
        assert_eq!(phone(""), None);
    }

    #[test]
    fn kinds() {
        assert_eq!(
            normalise("email", " Bea@Example.COM ").map(|i| i.value),
            Ok("bea@example.com".into())
        );
        assert!(normalise("email", "nope").is_err());
        assert!(normalise("visitor", "v-1").is_ok());
        assert!(normalise("ext:telegram", "12345").is_ok());
        assert!(normalise("ext:", "1").is_err());
        assert!(normalise("ext:Tele gram", "1").is_err());
        assert!(normalise("fax", "1").is_err());
        assert!(normalise("visitor", "a\u{0}b").is_err());
    }
}
