//! `record_session` (the whole-call recording) and `dial: { record: … }`: forms, validation
//! with positions, the webhook JSON form, and the evaluator's commands and variables.

use chrono::{DateTime, FixedOffset};
use std::sync::Arc;
use switchboard_dialplans::{
    parse_actions_json, parse_str, CallFacts, Command, Decision, DiagKind, Diagnostic, DialTarget,
    EndReason, Event, Plan, RecordSessionOp, Session, Strategy,
};

fn now() -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339("2026-03-02T10:00:00+01:00").unwrap_or_else(|e| panic!("{e}"))
}

fn plan(src: &str) -> Arc<Plan> {
    match parse_str("test.yaml", src) {
        Ok(p) => Arc::new(p),
        Err(d) => panic!(
            "{}",
            d.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

/// A plan with one rule running `actions` (YAML lines indented under `actions:`).
fn rule(actions: &str) -> String {
    format!("contexts:\n  default:\n    rules:\n      - actions:\n{actions}")
}

fn errors(src: &str) -> Vec<Diagnostic> {
    match parse_str("t.yaml", src) {
        Ok(_) => panic!("should not validate:\n{src}"),
        Err(d) => d,
    }
}

fn session(src: &str) -> Session {
    let mut s = Session::new(plan(src), CallFacts::new("100", "200"));
    s.set_var("call_id", "abc@host");
    s
}

fn rec(op: RecordSessionOp) -> Decision {
    Decision::Execute(Command::RecordSession(op))
}

fn start(to: &str) -> Decision {
    rec(RecordSessionOp::Start { to: to.into() })
}

fn dial(uri: &str) -> Decision {
    Decision::Execute(Command::Dial {
        targets: vec![DialTarget::Uri(uri.into())],
        strategy: Strategy::Parallel,
        timeout_secs: 30,
        caller_id: None,
    })
}

#[test]
fn start_pause_resume_stop_complete_at_once() {
    let mut s = session(&rule(
        "          - record_session: { to: \"calls/${call_id}.wav\" }\n          - dial: sip:bob@10.0.0.1\n          - record_session: pause\n          - record_session: resume\n          - record_session: stop\n          - hangup\n",
    ));
    let t = now();
    assert_eq!(s.handle(&t, Event::Started), start("calls/abc@host.wav"));
    assert_eq!(s.var("session_recording"), Some("calls/abc@host.wav"));
    assert_eq!(s.var("session_recording_status"), Some("recording"));
    // Completes at once, like `answer`: the next action follows `ActionCompleted`.
    assert_eq!(
        s.handle(&t, Event::ActionCompleted),
        dial("sip:bob@10.0.0.1")
    );
    assert_eq!(s.handle(&t, Event::DialAnswered), Decision::Wait);
    // The recording goes on through the bridge; when it ends, the plan pauses it…
    assert_eq!(
        s.handle(&t, Event::ActionCompleted),
        rec(RecordSessionOp::Pause)
    );
    assert_eq!(s.var("session_recording_status"), Some("paused"));
    assert_eq!(
        s.handle(&t, Event::ActionCompleted),
        rec(RecordSessionOp::Resume)
    );
    assert_eq!(s.var("session_recording_status"), Some("recording"));
    assert_eq!(
        s.handle(&t, Event::ActionCompleted),
        rec(RecordSessionOp::Stop)
    );
    assert_eq!(s.var("session_recording_status"), Some("stopped"));
    // The path stays known after the stop (for a webhook or a `say`).
    assert_eq!(s.var("session_recording"), Some("calls/abc@host.wav"));
    assert!(matches!(
        s.handle(&t, Event::ActionCompleted),
        Decision::Execute(Command::Hangup { .. })
    ));
}

#[test]
fn every_form_parses() {
    // Scalar operations, the map form, `start` with the default path, the Jambonz form.
    let mut s = session(&rule(
        "          - record_session: start\n          - record_session: { action: pause }\n          - verb: record_session\n            action: resume\n          - { verb: record_session, to: \"x/${calling}.wav\" }\n          - record_session: { action: start, to: y.wav }\n          - record_session: {}\n",
    ));
    let t = now();
    let mut got = vec![s.handle(&t, Event::Started)];
    for _ in 0..5 {
        got.push(s.handle(&t, Event::ActionCompleted));
    }
    assert_eq!(
        got,
        [
            start("calls/abc@host.wav"),
            rec(RecordSessionOp::Pause),
            rec(RecordSessionOp::Resume),
            start("x/200.wav"),
            start("y.wav"),
            start("calls/abc@host.wav"),
        ]
    );
    assert_eq!(
        s.handle(&t, Event::ActionCompleted),
        Decision::End(EndReason::Completed)
    );
}

#[test]
fn default_path_without_call_id() {
    let mut s = Session::new(
        plan(&rule("          - record_session: start\n")),
        CallFacts::new("1", "2"),
    );
    assert_eq!(s.handle(&now(), Event::Started), start("calls/call.wav"));
}

#[test]
fn variables_cannot_leave_the_recordings_folder() {
    // The literal text is checked when the plan is read; values are made safe when rendered.
    let mut s = session(&rule(
        "          - set: { a: \"/etc/passwd\", b: \"../../x\", c: \"..\" }\n          - record_session: { to: \"${a}\" }\n          - record_session: { to: \"d/${b}/${c}.wav\" }\n          - record_session: { to: \"${c}\" }\n          - record_session: { to: \"./d//e.wav\" }\n",
    ));
    let t = now();
    let mut got = vec![s.handle(&t, Event::Started)];
    for _ in 0..3 {
        got.push(s.handle(&t, Event::ActionCompleted));
    }
    assert_eq!(
        got,
        [
            start("etc/passwd"),
            start("d/_/_/x/...wav"),
            start("_"),
            start("d/e.wav"),
        ]
    );
}

#[test]
fn dial_record_starts_the_recording_first() {
    let mut s = session(&rule(
        "          - dial: { uri: \"sip:bob@10.0.0.1\", record: true, on_failure: [ say: busy ] }\n          - dial: { uri: \"sip:eve@10.0.0.2\", record: true }\n          - record_session: stop\n          - dial: { uri: \"sip:joe@10.0.0.3\", record: \"other/${called}.wav\" }\n          - dial: { uri: \"sip:ann@10.0.0.4\", record: false }\n",
    ));
    let t = now();
    assert_eq!(s.handle(&t, Event::Started), start("calls/abc@host.wav"));
    assert_eq!(
        s.handle(&t, Event::ActionCompleted),
        dial("sip:bob@10.0.0.1")
    );
    // The dial's own outcomes are unchanged: on_failure runs, then the next dial.
    assert_eq!(
        s.handle(&t, Event::DialFailed { code: 486 }),
        Decision::Execute(Command::Say {
            text: "busy".into(),
            voice: None
        })
    );
    // Already recording: no second start.
    assert_eq!(
        s.handle(&t, Event::ActionCompleted),
        dial("sip:eve@10.0.0.2")
    );
    assert_eq!(
        s.handle(&t, Event::DialFailed { code: 480 }),
        rec(RecordSessionOp::Stop)
    );
    assert_eq!(s.handle(&t, Event::ActionCompleted), start("other/100.wav"));
    assert_eq!(
        s.handle(&t, Event::ActionCompleted),
        dial("sip:joe@10.0.0.3")
    );
    assert_eq!(s.handle(&t, Event::DialAnswered), Decision::Wait);
    assert_eq!(
        s.handle(&t, Event::ActionCompleted),
        dial("sip:ann@10.0.0.4")
    );
}

#[test]
fn dial_record_in_a_loop_starts_once() {
    let mut s = session(&rule(
        "          - label: again\n          - dial: { uri: \"sip:bob@10.0.0.1\", record: true }\n          - goto: { label: again, max: 2 }\n",
    ));
    let t = now();
    assert_eq!(s.handle(&t, Event::Started), start("calls/abc@host.wav"));
    assert_eq!(
        s.handle(&t, Event::ActionCompleted),
        dial("sip:bob@10.0.0.1")
    );
    for _ in 0..2 {
        assert_eq!(
            s.handle(&t, Event::DialFailed { code: 408 }),
            dial("sip:bob@10.0.0.1")
        );
    }
    assert_eq!(
        s.handle(&t, Event::DialFailed { code: 408 }),
        Decision::End(EndReason::Completed)
    );
}

#[test]
fn hangup_while_recording_ends_the_session() {
    let mut s = session(&rule(
        "          - record_session: start\n          - echo\n",
    ));
    let t = now();
    s.handle(&t, Event::Started);
    assert_eq!(
        s.handle(&t, Event::ActionCompleted),
        Decision::Execute(Command::Echo)
    );
    assert_eq!(
        s.handle(&t, Event::Hangup),
        Decision::End(EndReason::CallerHungUp)
    );
}

#[test]
fn webhook_answers_use_the_same_forms() {
    let p = plan(&rule("          - webhook: http://127.0.0.1:1/x\n"));
    let ok = parse_actions_json(
        &p,
        r#"[{"record_session": {"to": "calls/${call_id}.wav"}}, {"record_session": "pause"},
            {"verb": "record_session", "action": "stop"},
            {"dial": {"uri": "sip:a@10.0.0.1", "record": true}}]"#,
    );
    assert_eq!(ok.map(|l| l.len()).ok(), Some(4));
    let mut s = Session::new(Arc::clone(&p), CallFacts::new("1", "2"));
    s.set_var("call_id", "c1");
    let t = now();
    s.handle(&t, Event::Started);
    let json = r#"[{"record_session": {"to": "calls/${call_id}.wav"}}, {"verb": "record_session", "action": "stop"}]"#;
    assert_eq!(
        s.handle(&t, Event::WebhookAnswered { json: json.into() }),
        start("calls/c1.wav")
    );
    assert_eq!(
        s.handle(&t, Event::ActionCompleted),
        rec(RecordSessionOp::Stop)
    );
    // A bad path in a webhook answer is refused with its position.
    let d = parse_actions_json(&p, "[\n  {\"record_session\": {\"to\": \"/tmp/x.wav\"}}\n]")
        .unwrap_err();
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(
        d[0].to_string()
            .starts_with("webhook answer:2:29: record_session to: `/tmp/x.wav` must be relative"),
        "{}",
        d[0]
    );
}

/// (kind, line, col) of each diagnostic, in order.
fn summary(diags: &[Diagnostic]) -> Vec<(DiagKind, u32, u32)> {
    diags.iter().map(|d| (d.kind, d.line(), d.col())).collect()
}

#[test]
fn bad_paths_and_operations_are_reported_with_positions() {
    let src = rule(concat!(
        "          - record_session: { to: /var/rec/x.wav }\n",
        "          - record_session: { to: \"calls/../../etc/x.wav\" }\n",
        "          - record_session: { to: \"\" }\n",
        "          - record_session: restart\n",
        "          - record_session: { action: stop, to: a.wav }\n",
        "          - record_session: { action: halt }\n",
        "          - record_session: { too: a.wav }\n",
        "          - record_session\n",
        "          - dial: { uri: \"sip:b@10.0.0.1\", record: ../x.wav }\n",
        "          - record_session: { to: \"a/${x\" }\n",
    ));
    let d = errors(&src);
    assert_eq!(
        summary(&d),
        [
            // The value, or the `..` inside it.
            (DiagKind::BadValue, 5, 35),
            (DiagKind::BadValue, 6, 42),
            (DiagKind::BadValue, 7, 35),
            (DiagKind::BadValue, 8, 29),
            (DiagKind::BadValue, 9, 29),
            (DiagKind::BadValue, 10, 39),
            (DiagKind::UnknownKey, 11, 31),
            (DiagKind::MissingKey, 12, 13),
            (DiagKind::BadValue, 13, 52),
            (DiagKind::BadTemplate, 14, 38),
        ],
        "{}",
        d.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
    let msg = |i: usize| d[i].message.clone();
    assert!(
        msg(0).contains("`/var/rec/x.wav` must be relative to the recordings folder"),
        "{}",
        msg(0)
    );
    assert!(msg(1).contains("must not contain `..`"), "{}", msg(1));
    assert!(msg(2).contains("the path is empty"), "{}", msg(2));
    assert!(
        msg(3).contains("`record_session` is `{ to: path }`, `start`, `stop`, `pause` or `resume`, found `restart`"),
        "{}",
        msg(3)
    );
    assert!(msg(4).contains("`to` only goes with `start`"), "{}", msg(4));
    assert!(msg(5).contains("found `halt`"), "{}", msg(5));
    assert!(msg(6).contains("`too`"), "{}", msg(6));
    assert!(msg(8).starts_with("dial record:"), "{}", msg(8));
}

#[test]
fn a_loop_of_record_session_alone_has_no_exit() {
    // record_session completes at once: it does not wait for the caller.
    let d = errors(&rule(
        "          - label: top\n          - record_session: pause\n          - goto: top\n",
    ));
    assert_eq!(summary(&d), [(DiagKind::LoopWithoutExit, 7, 13)]);
}
