//! Parsing: the shipped plan, YAML details, action forms, and robustness on hostile input.

use chrono::DateTime;
use switchboard_dialplans::{check, parse_actions_json, parse_str, CallFacts, DiagKind};

const DEFAULT: &str = include_str!("../examples/default.yaml");

#[test]
fn default_plan_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/default.yaml");
    let plan = check(path).unwrap_or_else(|d| panic!("{d:?}"));
    assert_eq!(plan.context_names().collect::<Vec<_>>(), ["default"]);
    assert_eq!(plan.timezone(), chrono_tz::Europe::Paris);
    assert!(plan.calendar("office").is_some());
    let now =
        DateTime::parse_from_rfc3339("2026-03-02T10:00:00+01:00").unwrap_or_else(|e| panic!("{e}"));
    let route = |n: &str| plan.route(&CallFacts::new(n, "1001"), &now).map(|(_, r)| r);
    assert_eq!(route("1001").as_deref(), Some("extensions"));
    assert_eq!(route("1002").as_deref(), Some("extensions"));
    assert_eq!(route("600").as_deref(), Some("echo-test"));
    assert_eq!(route("700").as_deref(), Some("ivr"));
    assert_eq!(route("800").as_deref(), Some("app"));
    assert_eq!(route("1003").as_deref(), Some("users"));
}

#[test]
fn scalars_keep_their_text() {
    // `0612` would be an octal number and `no` a boolean in YAML 1.1: here they stay text.
    let src = "contexts:\n  default:\n    rules:\n      - called: 0612\n        actions: [say: no]\n      - called: 1e3\n        actions: [hangup]\n";
    let plan = parse_str("t.yaml", src).unwrap_or_else(|d| panic!("{d:?}"));
    let now =
        DateTime::parse_from_rfc3339("2026-03-02T10:00:00Z").unwrap_or_else(|e| panic!("{e}"));
    assert!(plan.route(&CallFacts::new("0612", "x"), &now).is_some());
    assert!(plan.route(&CallFacts::new("612", "x"), &now).is_none());
    assert!(plan.route(&CallFacts::new("1e3", "x"), &now).is_some());
}

#[test]
fn anchors_and_aliases_are_expanded() {
    let src = "contexts:\n  default:\n    rules:\n      - called: 1\n        actions: &bye [say: bye, hangup]\n      - called: 2\n        actions: *bye\n";
    assert!(parse_str("t.yaml", src).is_ok());
}

#[test]
fn action_forms() {
    // Bare word, one-key mapping, and Jambonz's `verb` form, in YAML too.
    let src = "contexts:\n  default:\n    rules:\n      - called: 1\n        actions:\n          - answer\n          - say: Hi\n          - verb: say\n            text: Bye\n          - { verb: hangup, code: 486 }\n      - called: 2\n        actions:\n          - dial: sip:bob@example.com\n          - gather: { speech: true }\n          - play: { url: \"https://x/y.wav\", loop: forever }\n          - transfer: sip:desk@example.com\n          - hangup: 404\n";
    if let Err(d) = parse_str("t.yaml", src) {
        panic!("{d:?}");
    }
}

#[test]
fn empty_and_multi_document_files() {
    let d = parse_str("t.yaml", "").unwrap_err();
    assert_eq!(d[0].kind, DiagKind::MissingKey);
    assert!(d[0].message.contains("`contexts`"));
    let d = parse_str("t.yaml", "contexts: {}\n---\ncontexts: {}\n").unwrap_err();
    assert_eq!((d[0].kind, d[0].line()), (DiagKind::Syntax, 2));
    let d = parse_str("t.yaml", "- a\n- b\n").unwrap_err();
    assert_eq!(d[0].kind, DiagKind::BadValue);
}

#[test]
fn alias_bombs_and_deep_nesting_are_refused() {
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 0..8 {
        let prev = if i == 0 {
            "a".to_owned()
        } else {
            format!("l{}", i - 1)
        };
        bomb.push_str(&format!("l{i}: &l{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
    }
    let d = parse_str("t.yaml", &bomb).unwrap_err();
    assert!(d[0].message.contains("too large"), "{}", d[0]);
    let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
    let d = parse_str("t.yaml", &deep).unwrap_err();
    assert!(d[0].message.contains("too deep"), "{}", d[0]);
}

/// A tiny deterministic generator, so the robustness tests need no extra crate.
fn lcg(seed: &mut u64) -> u64 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *seed >> 33
}

#[test]
fn truncated_and_mutated_plans_never_panic() {
    let chars: Vec<char> = DEFAULT.chars().collect();
    for end in (0..chars.len()).step_by(7) {
        let prefix: String = chars[..end].iter().collect();
        let _ = parse_str("t.yaml", &prefix);
    }
    let alphabet: Vec<char> = " \n:-[]{}\"'#&*!|>%@`_X.$~\\,?0123456789abcé"
        .chars()
        .collect();
    let mut seed = 7;
    for _ in 0..400 {
        let mut text = chars.clone();
        for _ in 0..1 + lcg(&mut seed) % 4 {
            let at = (lcg(&mut seed) as usize) % text.len();
            let c = alphabet[(lcg(&mut seed) as usize) % alphabet.len()];
            text[at] = c;
        }
        let _ = parse_str("t.yaml", &text.iter().collect::<String>());
    }
}

#[test]
fn mutated_webhook_answers_never_panic() {
    let plan = check(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/default.yaml"
    ))
    .unwrap_or_else(|d| panic!("{d:?}"));
    let json: Vec<char> =
        r#"[{"verb":"say","text":"Hi ${calling:1}"},{"gather":{"max":2,"prompt":{"say":"x"}}},{"branch":{"on":"gather","cases":{"1":["hangup"]}}},{"goto":"menu"}]"#
            .chars()
            .collect();
    let alphabet: Vec<char> = "{}[]\":,0123456789abc$\\ ".chars().collect();
    let mut seed = 11;
    for _ in 0..400 {
        let mut text = json.clone();
        let at = (lcg(&mut seed) as usize) % text.len();
        text[at] = alphabet[(lcg(&mut seed) as usize) % alphabet.len()];
        let _ = parse_actions_json(&plan, &text.iter().collect::<String>());
    }
}
