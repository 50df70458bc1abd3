//! Number normalisation towards a carrier: visual separators removed, then E.164 or national
//! format, then a prefix stripped and one added.

use switchboard_engine::config::{NumberFormat, TrunkConfig};

/// Keeps the characters a dialled number can hold (digits, `+` at the start, `*`, `#`).
pub fn clean(number: &str) -> String {
    let mut out = String::with_capacity(number.len());
    for c in number.chars() {
        if c.is_ascii_digit() || c == '*' || c == '#' || (c == '+' && out.is_empty()) {
            out.push(c);
        }
    }
    out
}

/// Writes `number` (already [`clean`]) in `format` for country `cc`.
pub fn format(number: &str, format: NumberFormat, cc: &str) -> String {
    let intl = if let Some(rest) = number.strip_prefix('+') {
        Some(rest)
    } else {
        number.strip_prefix("00")
    };
    match format {
        NumberFormat::Asis => number.to_string(),
        NumberFormat::E164 => match intl {
            Some(rest) => format!("+{rest}"),
            None => match number.strip_prefix('0') {
                Some(national) => format!("+{cc}{national}"),
                None if number.starts_with(['*', '#']) || number.is_empty() => number.to_string(),
                None => format!("+{number}"),
            },
        },
        NumberFormat::National => match intl {
            Some(rest) => match rest.strip_prefix(cc).filter(|_| !cc.is_empty()) {
                Some(national) => format!("0{national}"),
                None => format!("00{rest}"),
            },
            None => number.to_string(),
        },
    }
}

/// The Request-URI user for `number` through trunk `t`: cleaned, formatted, `strip_prefix`
/// removed, `prefix` added.
pub fn outbound_number(t: &TrunkConfig, number: &str) -> String {
    let n = format(&clean(number), t.number_format, &t.country_code);
    let n = if t.strip_prefix.is_empty() {
        n.as_str()
    } else {
        n.strip_prefix(t.strip_prefix.as_str()).unwrap_or(&n)
    };
    format!("{}{n}", t.prefix)
}

/// The caller ID (From user) sent through trunk `t`: `explicit` (the dialplan's), else the
/// trunk's `caller_id`, else the caller's number in the trunk's format.
pub fn caller_id(t: &TrunkConfig, explicit: Option<&str>, caller: &str) -> String {
    if let Some(c) = explicit.filter(|c| !c.is_empty()) {
        return clean(c);
    }
    if let Some(c) = &t.caller_id {
        return c.clone();
    }
    let c = clean(caller);
    if c.is_empty()
        || !c
            .trim_start_matches('+')
            .bytes()
            .all(|b| b.is_ascii_digit())
    {
        // A name, not a number: passed as it is, limited to URI-safe characters.
        return caller
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+'))
            .collect();
    }
    format(&c, t.number_format, &t.country_code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(clean("+33 (1) 23-45"), "+3312345");
        assert_eq!(clean("1+2"), "12");
        let e = NumberFormat::E164;
        assert_eq!(format("0123456789", e, "33"), "+33123456789");
        assert_eq!(format("0044207", e, "33"), "+44207");
        assert_eq!(format("+44207", e, "33"), "+44207");
        assert_eq!(format("44207", e, "33"), "+44207");
        assert_eq!(format("*97", e, "33"), "*97");
        let n = NumberFormat::National;
        assert_eq!(format("+33123456789", n, "33"), "0123456789");
        assert_eq!(format("0033123456789", n, "33"), "0123456789");
        assert_eq!(format("+44207", n, "33"), "0044207");
        assert_eq!(format("0123", n, "33"), "0123");
    }

    #[test]
    fn outbound_pipeline() {
        let t = TrunkConfig {
            number_format: NumberFormat::E164,
            country_code: "33".into(),
            strip_prefix: "+".into(),
            prefix: "9#".into(),
            ..TrunkConfig::default()
        };
        assert_eq!(outbound_number(&t, "01 23 45"), "9#3312345");
        assert_eq!(caller_id(&t, None, "0612"), "+33612");
        assert_eq!(caller_id(&t, Some("+1555"), "0612"), "+1555");
        assert_eq!(caller_id(&t, None, "alice"), "alice");
        let legacy = TrunkConfig {
            prefix: "+33".into(),
            ..TrunkConfig::default()
        };
        assert_eq!(outbound_number(&legacy, "612"), "+33612");
    }
}
