use super::*;
use serde_json::json;

fn agent_cx<'a>(
    vocab: &'a Vocabulary,
    skills: &'a [u8],
    langs: &'a [LangId],
    attrs: &'a Value,
    task: Option<TaskView<'a>>,
) -> Ctx<'a> {
    Ctx {
        agent: Some(AgentView {
            id: 7,
            skills,
            languages: langs,
            attributes: attrs,
        }),
        task,
        stats: None,
        vocab,
    }
}

#[test]
fn skills_and_languages() {
    let mut v = Vocabulary::default();
    let e = Expr::compile(
        r#"skills.billing >= 3 AND languages HAS "fr""#,
        Scope::Target,
        &mut v,
    )
    .unwrap();
    let billing = v.find_skill("billing").unwrap().0 as usize;
    let fr = v.lang("fr");
    let en = v.lang("en");
    let mut skills = vec![0u8; billing + 1];
    skills[billing] = 3;
    let attrs = json!({});
    assert!(e.eval(&agent_cx(&v, &skills, &[en, fr], &attrs, None)));
    assert!(!e.eval(&agent_cx(&v, &skills, &[en], &attrs, None)));
    skills[billing] = 2;
    assert!(!e.eval(&agent_cx(&v, &skills, &[fr], &attrs, None)));
    assert!(!e.uses_task());
    assert_eq!(e.skills().len(), 1);
}

#[test]
fn filters_over_attributes() {
    let mut v = Vocabulary::default();
    let attrs = json!({"vip": true, "tier": "gold", "tags": ["a", "b"], "n": 4, "c": {"d": "x"}});
    let task = TaskView {
        channel: crate::routing::ids::Channel::Chat,
        priority: 2,
        attributes: &attrs,
    };
    for (src, want) in [
        ("attributes.vip == true", true),
        ("attributes.vip", true),
        ("NOT attributes.vip", false),
        (r#"attributes.tier IN ["gold", "platinum"]"#, true),
        (r#"attributes.tags HAS "b""#, true),
        (r#"attributes.tags HAS "z""#, false),
        ("attributes.n > 3 && attributes.n <= 4", true),
        ("attributes.missing == null", true),
        ("attributes.missing > 1", false),
        (r#"attributes.c.d == "x""#, true),
        (r#"attributes.tier CONTAINS "ol""#, true),
        (r#"channel == "chat" AND priority >= 2"#, true),
        (r#"attributes.tier == 3"#, false),
        (r#"attributes.tier != 3"#, true),
        ("(attributes.n == 1 OR attributes.n == 4) AND true", true),
        ("attributes.tags.1 == 'b'", true),
    ] {
        let e = Expr::compile(src, Scope::Filter, &mut v).unwrap();
        let cx = Ctx {
            agent: None,
            task: Some(task),
            stats: None,
            vocab: &v,
        };
        assert_eq!(e.eval(&cx), want, "{src}");
    }
}

#[test]
fn errors_carry_positions() {
    let mut v = Vocabulary::default();
    let cases = [
        ("skills.billing >= AND x", Scope::Target, 18),
        ("attributes.a == \"open", Scope::Filter, 16),
        ("(attributes.a == 1", Scope::Filter, 18),
        ("attributes.a == 1 )", Scope::Filter, 18),
        ("skills.x >= 1", Scope::Filter, 0),
        ("a == 1 AND bogus.name", Scope::Filter, 0),
        ("attributes.a # 1", Scope::Filter, 13),
        ("available > 1", Scope::Target, 0),
    ];
    for (src, scope, pos) in cases {
        let err = Expr::compile(src, scope, &mut v).unwrap_err();
        assert_eq!(err.pos, pos, "{src}: {err}");
    }
}

#[test]
fn split_separates_agent_and_task_parts() {
    let mut v = Vocabulary::default();
    let e = Expr::compile(
        "skills.a >= 2 AND skills.b >= task.attributes.level",
        Scope::Target,
        &mut v,
    )
    .unwrap();
    assert!(e.uses_task());
    let (agent_part, task_part) = e.split_by_task();
    assert!(!agent_part.uses_task());
    assert!(task_part.is_some_and(|t| t.uses_task()));
    assert_eq!(agent_part.skills().len(), 2);
}

#[test]
fn never_panics_on_junk() {
    let mut v = Vocabulary::default();
    for src in [
        "",
        "(",
        ")",
        "[",
        "\"",
        "'",
        "-",
        ".",
        "1e",
        "a.",
        "a..b",
        "[1,",
        "[1 2]",
        "NOT",
        "==",
        "skills",
        "skills.a.b",
        "é",
        "attributes.x HAS",
        "((((((",
        "1 == 1 == 1",
    ] {
        let _ = Expr::compile(src, Scope::Target, &mut v);
        let _ = Expr::compile(src, Scope::Filter, &mut v);
    }
}
