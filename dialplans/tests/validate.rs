//! Every validation error, with its position, from the broken plans under `tests/bad/`.

use switchboard_dialplans::{check, check_with, parse_str, CheckOptions, DiagKind, Diagnostic};

fn bad(name: &str) -> Vec<Diagnostic> {
    let path = format!("{}/tests/bad/{name}", env!("CARGO_MANIFEST_DIR"));
    match check(&path) {
        Ok(_) => panic!("{name} should not validate"),
        Err(d) => d,
    }
}

/// (kind, line, col) of each diagnostic, in order.
fn summary(diags: &[Diagnostic]) -> Vec<(DiagKind, u32, u32)> {
    diags.iter().map(|d| (d.kind, d.line(), d.col())).collect()
}

#[test]
fn unknown_action() {
    let d = bad("unknown_action.yaml");
    assert_eq!(summary(&d), [(DiagKind::UnknownAction, 7, 13)]);
    assert!(
        d[0].message
            .contains("unknown action `sya` (did you mean `say`?)"),
        "{}",
        d[0]
    );
}

#[test]
fn bad_patterns() {
    let d = bad("bad_pattern.yaml");
    assert_eq!(
        summary(&d),
        [
            (DiagKind::BadPattern, 4, 17),
            (DiagKind::BadPattern, 6, 18),
            (DiagKind::BadPattern, 8, 17),
        ]
    );
    assert!(d[0].message.contains("unfinished range"), "{}", d[0]);
    assert!(d[1].message.contains("unclosed group"), "{}", d[1]);
    assert!(
        d[2].message.contains("must be the last character"),
        "{}",
        d[2]
    );
}

#[test]
fn unreachable_rule() {
    let d = bad("unreachable.yaml");
    assert_eq!(summary(&d), [(DiagKind::UnreachableRule, 7, 9)]);
    assert!(
        d[0].message.contains("rule `everything` at line 4"),
        "{}",
        d[0]
    );
}

#[test]
fn missing_prompt_files() {
    let d = bad("missing_prompt.yaml");
    assert_eq!(
        summary(&d),
        [
            (DiagKind::MissingPrompt, 8, 13),
            (DiagKind::MissingPrompt, 9, 13)
        ]
    );
    assert!(d[0].message.contains("`absent.wav`"), "{}", d[0]);
    assert!(d[1].message.contains("`absent-menu.wav`"), "{}", d[1]);
}

#[test]
fn prompt_dir_option_overrides_the_plan() {
    let dir = format!("{}/tests/bad/prompts", env!("CARGO_MANIFEST_DIR"));
    let path = format!(
        "{}/tests/bad/missing_prompt.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let options = CheckOptions {
        prompt_dir: Some(format!("{dir}/nowhere").into()),
    };
    let Err(d) = check_with(&path, &options) else {
        panic!("should not validate")
    };
    // present.wav is missing too when looked for elsewhere; the URL is never checked.
    assert_eq!(d.len(), 3);
}

#[test]
fn goto_to_unknown_label_or_context() {
    let d = bad("unknown_label.yaml");
    assert_eq!(
        summary(&d),
        [
            (DiagKind::UnknownLabel, 8, 13),
            (DiagKind::UnknownContext, 11, 13)
        ]
    );
    assert!(
        d[0].message.contains("`menu2`") && d[0].message.contains("known: menu"),
        "{}",
        d[0]
    );
}

#[test]
fn loop_without_exit() {
    // The second rule loops through a gather: it waits for the caller, so it is fine.
    let d = bad("loop.yaml");
    assert_eq!(summary(&d), [(DiagKind::LoopWithoutExit, 8, 13)]);
    assert!(d[0].message.contains("`goto top`"), "{}", d[0]);
}

#[test]
fn bad_time_specs() {
    let d = bad("bad_time.yaml");
    assert_eq!(
        summary(&d),
        [
            (DiagKind::BadTimeSpec, 1, 11),
            (DiagKind::BadTimeSpec, 5, 7),
            (DiagKind::BadTimeSpec, 6, 12),
            (DiagKind::BadTimeSpec, 8, 9),
            (DiagKind::BadTimeSpec, 12, 15),
        ]
    );
    assert!(d[0].message.contains("Europe/Pariss"));
    assert!(d[1].message.contains("unknown day `fry`"));
    assert!(d[2].message.contains("25:00"));
    assert!(d[3].message.contains("2026-13-01"));
    assert!(d[4].message.contains("the end is not after the start"));
}

#[test]
fn unknown_calendar() {
    let d = bad("unknown_calendar.yaml");
    assert_eq!(
        summary(&d),
        [
            (DiagKind::UnknownCalendar, 7, 15),
            (DiagKind::UnknownCalendar, 11, 25)
        ]
    );
    assert!(d[1].message.contains("did you mean `office`?"), "{}", d[1]);
}

#[test]
fn yaml_syntax_error() {
    let d = bad("syntax.yaml");
    assert_eq!(summary(&d), [(DiagKind::Syntax, 6, 1)]);
}

#[test]
fn all_errors_are_collected_in_file_order() {
    let d = bad("many.yaml");
    assert_eq!(
        summary(&d),
        [
            (DiagKind::UnknownAction, 6, 13),
            (DiagKind::UnknownLabel, 7, 13),
            (DiagKind::UnreachableRule, 8, 9),
            (DiagKind::BadValue, 10, 43),
            (DiagKind::UnknownKey, 11, 9),
        ]
    );
}

#[test]
fn display_is_file_line_col_message() {
    let d = parse_str(
        "plan.yaml",
        "contexts:\n  default:\n    rules:\n      - actions: [sya]\n",
    )
    .unwrap_err();
    assert_eq!(d.len(), 1);
    assert!(
        d[0].to_string()
            .starts_with("plan.yaml:4:19: unknown action `sya`"),
        "{}",
        d[0]
    );
}

#[test]
fn unreadable_file_is_an_io_diagnostic() {
    let d = check("/nonexistent/plan.yaml").unwrap_err();
    assert_eq!(summary(&d), [(DiagKind::Io, 0, 0)]);
    assert!(d[0]
        .to_string()
        .starts_with("/nonexistent/plan.yaml: cannot read"));
}

/// Small inline plans for the remaining structural errors.
#[test]
fn structural_errors() {
    let cases: &[(&str, DiagKind, u32, u32)] = &[
        // An action with two keys: the options were not indented under it.
        (
            "contexts:\n  default:\n    rules:\n      - actions:\n          - dial: bob\n            on_failure: [hangup]\n",
            DiagKind::BadValue,
            5,
            13,
        ),
        // A required key is missing.
        ("contexts:\n  default:\n    rules:\n      - called: 1\n", DiagKind::MissingKey, 4, 9),
        // Duplicate keys.
        (
            "contexts:\n  default:\n    rules: []\n  default:\n    rules: []\n",
            DiagKind::Duplicate,
            4,
            3,
        ),
        // Duplicate label in one context.
        (
            "contexts:\n  default:\n    rules:\n      - actions: [label: a, say: x, label: a, say: y]\n",
            DiagKind::Duplicate,
            4,
            44,
        ),
        // Bad `${…}`: the column points at the `${`.
        (
            "contexts:\n  default:\n    rules:\n      - actions: [say: \"Hi ${name\"]\n",
            DiagKind::BadTemplate,
            4,
            28,
        ),
        // A trunk that selects two contexts.
        (
            "contexts:\n  a:\n    trunks: [t]\n    rules: []\n  b:\n    trunks: [t]\n    rules: []\n",
            DiagKind::Duplicate,
            2,
            3,
        ),
        // Unknown key in an action, with a suggestion.
        (
            "contexts:\n  default:\n    rules:\n      - actions:\n          - gather: { maxx: 3 }\n",
            DiagKind::UnknownKey,
            5,
            23,
        ),
    ];
    for (src, kind, line, col) in cases {
        let d = parse_str("t.yaml", src).unwrap_err();
        assert_eq!(summary(&d), [(*kind, *line, *col)], "{src}\n{d:?}");
    }
}
