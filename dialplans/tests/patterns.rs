//! Table tests: number patterns, pattern covering, templates, week specs and holidays.

use chrono::{DateTime, NaiveDate};
use switchboard_dialplans::{Holiday, Pattern, Template, WeekSpec};

#[test]
fn pattern_matching() {
    // (pattern, number, matches)
    let table: &[(&str, &str, bool)] = &[
        ("1001", "1001", true),
        ("1001", "10011", false),
        ("alice", "alice", true),
        ("_X", "7", true),
        ("_X", "a", false),
        ("_X", "", false),
        ("_XXXX", "1234", true),
        ("_XXXX", "123", false),
        ("_XXXX", "12345", false),
        ("_1XXX", "1999", true),
        ("_1XXX", "2999", false),
        ("_NXX", "200", true),
        ("_NXX", "100", false),
        ("_ZXX", "100", true),
        ("_ZXX", "000", false),
        ("_NXXNXXXXXX", "2125551234", true),
        ("_NXXNXXXXXX", "2121551234", false),
        ("_1-800-NXX-XXXX", "18002345678", true),
        ("_[1-5]", "3", true),
        ("_[1-5]", "6", false),
        ("_[15-7]X", "61", true),
        ("_[15-7]X", "21", false),
        ("_[*#]", "#", true),
        ("_9.", "9", false),
        ("_9.", "901", true),
        ("_9!", "9", true),
        ("_X.", "+33123", false),
        ("_+X.", "+33123", true),
        ("_!", "", true),
        ("_!", "anything", true),
        ("_x.", "12", true),
        ("~^9(\\d+)$", "9123", true),
        ("~9(\\d+)", "9123", true),
        ("~9(\\d+)", "09123", false),
        ("~[a-z]+", "bob", true),
        ("~[a-z]+", "bob1", false),
    ];
    for (pat, number, expected) in table {
        let p = Pattern::parse(pat).unwrap_or_else(|e| panic!("{pat}: {e}"));
        assert_eq!(p.matches(number).is_some(), *expected, "{pat} vs {number}");
    }
}

#[test]
fn bad_patterns_are_rejected() {
    for pat in [
        "", "_", "_[", "_[]", "_[5-1]", "_1.2", "_1!2", "_1[2-", "_é", "~(", "~[z-a]",
    ] {
        assert!(Pattern::parse(pat).is_err(), "{pat} should be rejected");
    }
}

#[test]
fn captures() {
    let p = Pattern::parse("~^(?P<prefix>0|\\+33)(\\d{9})$").unwrap_or_else(|e| panic!("{e}"));
    let caps = p.matches("+33123456789").unwrap_or_default();
    let get = |k: &str| caps.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("0"), Some("+33123456789"));
    assert_eq!(get("1"), Some("+33"));
    assert_eq!(get("prefix"), Some("+33"));
    assert_eq!(get("2"), Some("123456789"));
    let exact = Pattern::parse("_1XXX").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        exact.matches("1234"),
        Some(vec![("0".into(), "1234".into())])
    );
}

#[test]
fn covering() {
    // (earlier, later, earlier covers later)
    let table: &[(&str, &str, bool)] = &[
        ("_X.", "_1XXX", true),
        ("_X.", "1001", true),
        ("_X.", "_X", false),
        ("_X!", "_X", true),
        ("_1XXX", "_X.", false),
        ("_1XXX", "1234", true),
        ("_1XXX", "_12XX", true),
        ("_12XX", "_1XXX", false),
        ("_NXX", "_ZXX", false),
        ("_ZXX", "_NXX", true),
        ("_[1-5]", "_[2-3]", true),
        ("_[2-3]", "_[1-5]", false),
        ("_9.", "_9X.", true),
        ("_9X.", "_9.", false),
        ("_!", "~anything", true),
        ("~.*", "_X.", true),
        ("~9\\d+", "9123", true),
        ("~9\\d+", "_9X.", false),
        ("1001", "1001", true),
        ("1001", "_1001", false),
    ];
    for (a, b, expected) in table {
        let (pa, pb) = (
            Pattern::parse(a).unwrap_or_else(|e| panic!("{e}")),
            Pattern::parse(b).unwrap_or_else(|e| panic!("{e}")),
        );
        assert_eq!(pa.covers(&pb), *expected, "{a} covers {b}");
    }
}

#[test]
fn templates() {
    let vars = |n: &str| match n {
        "called" => Some("0612345678".to_owned()),
        "name" => Some("Ada".to_owned()),
        "empty" => Some(String::new()),
        "header.x-tenant" => Some("acme".to_owned()),
        _ => None,
    };
    let table: &[(&str, &str)] = &[
        ("plain", "plain"),
        ("Hello ${name}!", "Hello Ada!"),
        ("${missing}", ""),
        ("${missing:-guest}", "guest"),
        ("${empty:-guest}", "guest"),
        ("${name:-guest}", "Ada"),
        ("${called:1}", "612345678"),
        ("${called:0:2}", "06"),
        ("${called:-4}", "5678"),
        ("${called:2:-2}", "123456"),
        ("${called:99}", ""),
        ("${header.x-tenant}", "acme"),
        ("$$5 and ${name}", "$5 and Ada"),
        ("a $ b", "a $ b"),
    ];
    for (src, expected) in table {
        let t = Template::parse(src).unwrap_or_else(|e| panic!("{src}: {e:?}"));
        assert_eq!(t.render(vars), *expected, "{src}");
    }
    for bad in ["${", "${name", "${}", "${a b}", "${x:y}", "${x:1:z}"] {
        assert!(Template::parse(bad).is_err(), "{bad} should be rejected");
    }
    assert_eq!(
        Template::parse("x ${y} $${z}").map(|t| t.to_string()),
        Ok("x ${y} $${z}".into())
    );
}

#[test]
fn week_specs() {
    let at = |s: &str| {
        DateTime::parse_from_rfc3339(s)
            .unwrap_or_else(|e| panic!("{s}: {e}"))
            .naive_utc()
    };
    // 2026-03-02 is a Monday.
    let table: &[(&str, &str, bool)] = &[
        ("mon-fri 09:00-18:00", "2026-03-02T09:00:00Z", true),
        ("mon-fri 09:00-18:00", "2026-03-02T08:59:00Z", false),
        ("mon-fri 09:00-18:00", "2026-03-02T18:00:00Z", false),
        ("mon-fri 09:00-18:00", "2026-03-07T10:00:00Z", false),
        ("sat,sun", "2026-03-07T03:00:00Z", true),
        ("fri-mon", "2026-03-08T12:00:00Z", true),
        ("fri-mon", "2026-03-04T12:00:00Z", false),
        ("09:00-12:00, 14:00-24:00", "2026-03-04T23:59:00Z", true),
        ("09:00-12:00, 14:00-24:00", "2026-03-04T13:00:00Z", false),
        ("daily", "2026-03-04T13:00:00Z", true),
        ("Monday 00:00-01:00", "2026-03-02T00:30:00Z", true),
    ];
    for (spec, when, expected) in table {
        let w = WeekSpec::parse(spec).unwrap_or_else(|e| panic!("{spec}: {e}"));
        assert_eq!(w.contains(&at(when)), *expected, "{spec} at {when}");
    }
    for bad in [
        "mon-fry",
        "mon 9-18",
        "mon 18:00-09:00",
        "mon 24:30-25:00",
        "mon 09:60-10:00",
        "09:00",
    ] {
        assert!(WeekSpec::parse(bad).is_err(), "{bad} should be rejected");
    }
}

#[test]
fn holidays() {
    let d = |y, m, day| NaiveDate::from_ymd_opt(y, m, day).unwrap_or_default();
    assert_eq!(
        Holiday::parse("2026-12-25"),
        Ok(Holiday::Date(d(2026, 12, 25)))
    );
    assert_eq!(
        Holiday::parse("12-25"),
        Ok(Holiday::Yearly { month: 12, day: 25 })
    );
    assert_eq!(
        Holiday::parse("02-29"),
        Ok(Holiday::Yearly { month: 2, day: 29 })
    );
    assert_eq!(
        Holiday::parse("2026-12-24..2026-12-31"),
        Ok(Holiday::Range(d(2026, 12, 24), d(2026, 12, 31)))
    );
    for bad in [
        "2026-13-01",
        "13-01",
        "02-30",
        "2026-12-31..2026-12-01",
        "christmas",
    ] {
        assert!(Holiday::parse(bad).is_err(), "{bad} should be rejected");
    }
}
