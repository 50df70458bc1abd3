//! The evaluator walked through whole calls, with simulated time.

use chrono::{DateTime, FixedOffset};
use std::sync::Arc;
use switchboard_dialplans::{
    check, parse_actions_json, parse_str, CallFacts, Command, Decision, DialTarget, EndReason,
    Event, Gather, Media, Method, MonitorMode, Plan, Prompt, Session, Source, Strategy,
};

fn at(s: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// A Monday, 10:00 in Paris: the office is open.
fn monday_open() -> DateTime<FixedOffset> {
    at("2026-03-02T10:00:00+01:00")
}

fn default_plan() -> Arc<Plan> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/default.yaml");
    match check(path) {
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

/// A session plus the time of the call, to keep the scenarios short.
struct Call {
    session: Session,
    now: DateTime<FixedOffset>,
}

impl Call {
    fn new(plan: Arc<Plan>, facts: CallFacts, now: DateTime<FixedOffset>) -> Self {
        Call {
            session: Session::new(plan, facts),
            now,
        }
    }

    fn to(called: &str, now: DateTime<FixedOffset>) -> Self {
        Call::new(default_plan(), CallFacts::new(called, "1002"), now)
    }

    fn send(&mut self, event: Event) -> Decision {
        self.session.handle(&self.now, event)
    }

    fn start(&mut self) -> Decision {
        self.send(Event::Started)
    }

    fn done(&mut self) -> Decision {
        self.send(Event::ActionCompleted)
    }

    fn digits(&mut self, d: &str) -> Decision {
        self.send(Event::DigitsGathered { digits: d.into() })
    }
}

fn say(text: &str) -> Decision {
    Decision::Execute(Command::Say {
        text: text.into(),
        voice: None,
    })
}

fn hangup() -> Decision {
    Decision::Execute(Command::Hangup {
        code: None,
        cause: None,
        reason: None,
    })
}

fn is_menu(d: &Decision) -> bool {
    matches!(d, Decision::Execute(Command::Gather(Gather { prompt: Some(Prompt::Say { text, .. }), max_digits: 1, .. }))
        if text.starts_with("Welcome to Switchboard. Press 1"))
}

fn queue(name: &str) -> Decision {
    let attributes = if name == "support" {
        vec![("skill".to_owned(), "technical".to_owned())]
    } else {
        Vec::new()
    };
    Decision::Execute(Command::Queue {
        name: name.into(),
        priority: 5,
        attributes,
        callback_digit: None,
    })
}

#[test]
fn ivr_invalid_digit_then_valid() {
    let mut call = Call::to("700", monday_open());
    assert_eq!(call.start(), Decision::Execute(Command::Answer));
    let menu = call.done();
    assert!(is_menu(&menu), "{menu:?}");
    let Decision::Execute(Command::Gather(g)) = &menu else {
        unreachable!()
    };
    assert_eq!(
        g.speech.as_ref().map(|s| s.grammar.clone()),
        Some(vec!["billing".into(), "support".into()])
    );
    assert_eq!(call.digits("7"), say("Sorry, I did not get that."));
    assert!(is_menu(&call.done()));
    assert_eq!(call.digits("2"), queue("support"));
    assert_eq!(call.session.var("gather"), Some("2"));
    // Leaving the queue ends the menu; the plan hangs up.
    assert_eq!(call.done(), hangup());
    assert!(call.session.is_ended());
    assert_eq!(call.done(), Decision::End(EndReason::HungUp));
}

#[test]
fn ivr_three_tries_then_goodbye() {
    let mut call = Call::to("700", monday_open());
    call.start();
    for _ in 0..3 {
        assert!(is_menu(&call.done()));
        assert_eq!(
            call.send(Event::GatherTimeout),
            say("Sorry, I did not get that.")
        );
    }
    assert_eq!(call.done(), say("Goodbye."));
    assert_eq!(call.done(), hangup());
}

#[test]
fn ivr_speech_and_case_insensitive_cases() {
    let mut call = Call::to("700", monday_open());
    call.start();
    call.done();
    let d = call.send(Event::SpeechRecognised {
        text: " Billing ".into(),
    });
    assert_eq!(d, queue("billing"));
    assert_eq!(call.session.var("speech"), Some(" Billing "));
}

#[test]
fn business_hours_open_closed_and_holidays() {
    let closed = say("Switchboard is closed. We are open Monday to Friday from 9 AM to 6 PM, and Saturday morning.");
    let cases = [
        ("2026-03-02T10:00:00+01:00", true),  // Monday morning
        ("2026-03-02T19:00:00+01:00", false), // Monday evening
        ("2026-03-07T11:00:00+01:00", true),  // Saturday morning
        ("2026-03-07T15:00:00+01:00", false), // Saturday afternoon
        ("2026-03-08T11:00:00+01:00", false), // Sunday
        ("2026-12-25T10:00:00+01:00", false), // Friday, yearly holiday
        ("2026-12-29T10:00:00+01:00", false), // Tuesday, in the year-end closure range
        ("2027-01-04T10:00:00+01:00", true),  // Monday after it
        ("2026-03-02T08:30:00Z", true),       // 09:30 in Paris, given in UTC
    ];
    for (when, open) in cases {
        let mut call = Call::to("700", at(when));
        call.start();
        let d = call.done();
        if open {
            assert!(is_menu(&d), "{when}: {d:?}");
            assert_eq!(call.session.var("business_hours"), Some("open"));
        } else {
            assert_eq!(d, closed, "{when}");
            assert_eq!(call.done(), hangup());
        }
    }
}

#[test]
fn dial_failure_falls_back_to_voicemail() {
    let mut call = Call::to("1001", monday_open());
    assert_eq!(
        call.start(),
        Decision::Execute(Command::Dial {
            targets: vec![DialTarget::User("1001".into())],
            strategy: Strategy::Parallel,
            timeout_secs: 20,
            caller_id: None,
        })
    );
    assert_eq!(
        call.send(Event::DialFailed { code: 486 }),
        Decision::Execute(Command::Answer)
    );
    assert_eq!(call.session.var("dial_status"), Some("486"));
    assert_eq!(
        call.done(),
        say("Extension 1001 is not available. Leave a message after the beep.")
    );
    assert_eq!(
        call.done(),
        Decision::Execute(Command::Record {
            to: "voicemail/1001/1002.wav".into(),
            max_secs: 120,
            beep: true,
            terminator: None,
        })
    );
    assert_eq!(
        call.send(Event::RecordingDone {
            path: "/var/rec/x.wav".into()
        }),
        say("Thank you. Goodbye.")
    );
    assert_eq!(call.session.var("recording"), Some("/var/rec/x.wav"));
    assert_eq!(call.done(), hangup());
}

#[test]
fn dial_answered_waits_then_completes() {
    let mut call = Call::to("1002", monday_open());
    call.start();
    assert_eq!(call.send(Event::DialAnswered), Decision::Wait);
    assert_eq!(call.session.var("dial_status"), Some("answered"));
    assert_eq!(call.done(), Decision::End(EndReason::Completed));
}

#[test]
fn echo_test_and_not_found() {
    let mut call = Call::to("600", monday_open());
    assert_eq!(call.start(), Decision::Execute(Command::Answer));
    assert_eq!(
        call.done(),
        say("Echo test. Speak and you will hear yourself.")
    );
    assert_eq!(call.done(), Decision::Execute(Command::Echo));
    assert_eq!(
        call.send(Event::Hangup),
        Decision::End(EndReason::CallerHungUp)
    );

    // Any other number is a user: dialled; a user that is not registered fails the dial
    // (404) and the plan ends there.
    let mut call = Call::to("5555", monday_open());
    assert_eq!(
        call.start(),
        Decision::Execute(Command::Dial {
            targets: vec![DialTarget::User("5555".into())],
            strategy: Strategy::Parallel,
            timeout_secs: 30,
            caller_id: None,
        })
    );
    assert_eq!(call.session.var("rule"), Some("users"));
    assert_eq!(
        call.send(Event::DialFailed { code: 404 }),
        Decision::End(EndReason::Completed)
    );
}

#[test]
fn webhook_returns_actions() {
    let mut call = Call::to("800", monday_open());
    let Decision::Execute(Command::Webhook { url, method, body }) = call.start() else {
        panic!("expected a webhook")
    };
    assert_eq!(
        (url.as_str(), method),
        ("http://127.0.0.1:8089/dialplan", Method::Post)
    );
    assert_eq!(body["called"], "800");
    assert_eq!(body["vars"]["rule"], "app");
    // Both action forms: Jambonz's `verb` and the plan's one-key form.
    let json = r#"[{"verb": "say", "text": "Hello ${calling}"},
                   {"dial": {"users": ["alice", "bob"], "strategy": "sequence", "timeout": 15}},
                   "hangup"]"#;
    assert_eq!(
        call.send(Event::WebhookAnswered { json: json.into() }),
        say("Hello 1002")
    );
    assert_eq!(
        call.done(),
        Decision::Execute(Command::Dial {
            targets: vec![
                DialTarget::User("alice".into()),
                DialTarget::User("bob".into())
            ],
            strategy: Strategy::Sequence,
            timeout_secs: 15,
            caller_id: None,
        })
    );
    assert_eq!(call.send(Event::DialFailed { code: 480 }), hangup());
}

#[test]
fn webhook_bad_answer_or_no_answer_runs_on_error() {
    for event in [
        Event::WebhookAnswered {
            json: "[{\"sya\": 1}]".into(),
        },
        Event::WebhookAnswered {
            json: "not json".into(),
        },
        Event::ActionCompleted,
    ] {
        let mut call = Call::to("800", monday_open());
        call.start();
        assert_eq!(
            call.send(event.clone()),
            say("The application is not available."),
            "{event:?}"
        );
        assert!(call
            .session
            .var("webhook_error")
            .is_some_and(|e| !e.is_empty()));
        assert_eq!(call.done(), hangup());
    }
}

#[test]
fn parse_actions_json_reports_positions() {
    let p = default_plan();
    let d = parse_actions_json(&p, "[\n  {\"say\": \"hi\"},\n  {\"sya\": \"hi\"}\n]").unwrap_err();
    assert_eq!(d.len(), 1);
    assert_eq!(
        d[0].to_string().split(": unknown").next(),
        Some("webhook answer:3:4")
    );
    let d = parse_actions_json(&p, "[{\"goto\": \"nowhere\"}]").unwrap_err();
    assert!(d[0].message.contains("unknown label"), "{}", d[0]);
    let d = parse_actions_json(&p, "[1,").unwrap_err();
    assert!(d[0].message.starts_with("JSON syntax"), "{}", d[0]);
    let ok = parse_actions_json(
        &p,
        r##"[{"verb":"answer"},{"verb":"gather","max":4,"terminator":"#"},{"goto":"menu"}]"##,
    );
    assert_eq!(ok.map(|l| l.len()).ok(), Some(3));
}

#[test]
fn webhook_answer_can_jump_into_the_plan() {
    let mut call = Call::to("800", monday_open());
    call.start();
    let d = call.send(Event::WebhookAnswered {
        json: r#"[{"goto": "menu"}]"#.into(),
    });
    // The label is in the default context's IVR rule.
    assert!(is_menu(&d), "{d:?}");
}

#[test]
fn step_limit_stops_runaway_loops() {
    // The validator accepts this (the `stop` case exits), but `x` never becomes `stop`.
    let p = plan(
        "contexts:\n  default:\n    rules:\n      - actions:\n          - label: spin\n          - branch: { on: x, cases: { stop: [hangup] }, default: [ goto: spin ] }\n",
    );
    let mut s = Session::new(Arc::clone(&p), CallFacts::new("1", "2")).with_step_limit(50);
    assert_eq!(
        s.handle(&monday_open(), Event::Started),
        Decision::End(EndReason::StepLimit)
    );
    // A webhook answer that loops is stopped the same way.
    let mut call = Call::to("800", monday_open());
    call.start();
    let json = r#"[{"label": "a"}, {"set": {"n": "1"}}, {"goto": "a"}]"#;
    assert_eq!(
        call.send(Event::WebhookAnswered { json: json.into() }),
        Decision::End(EndReason::StepLimit)
    );
}

const ROUTING: &str = r#"
timezone: Europe/Paris
calendars:
  office:
    hours: { mon-fri: "09:00-18:00" }
contexts:
  carrier:
    trunks: [ovh]
    rules:
      - name: did-office-hours
        called: "~^\\+33(?P<ndi>1\\d{8})$"
        open: office
        actions:
          - transfer: { blind: "sip:${ndi}@pbx.example.com" }
      - name: did-closed
        called: "~^\\+33(1\\d{8})$"
        closed: office
        actions:
          - play: { url: "https://cdn.example.com/closed-${1}.wav", loop: forever }
  staff:
    groups: [agents]
    rules:
      - name: vip
        headers: { X-Tenant: "~acme|globex" }
        calling: "~(?P<ext>2\\d\\d)"
        actions:
          - set: { who: "${ext}@${header.x-tenant}", greeting: "Hi ${who}" }
          - say: { text: "${greeting}", voice: en-GB }
          - transfer: { attended: "${called:1}" }
      - name: night
        time: "mon-fri 20:00-24:00"
        actions:
          - goto: default/
      - name: other
        actions:
          - goto: { rule: night-desk, context: default }
  default:
    rules:
      - name: night-desk
        actions:
          - queue: { name: night, priority: -1 }
"#;

#[test]
fn context_selection_and_conditions() {
    let p = plan(ROUTING);
    let trunk =
        |n: &str| CallFacts::new(n, "+33611111111").from_source(Source::Trunk("ovh".into()));
    let agent = || Source::User {
        name: "ann".into(),
        groups: vec!["agents".into()],
    };
    let open = monday_open();
    let closed = at("2026-03-02T20:00:00+01:00");
    assert_eq!(
        p.select_context(&Source::Trunk("ovh".into())),
        Some("carrier")
    );
    assert_eq!(p.select_context(&agent()), Some("staff"));
    assert_eq!(
        p.select_context(&Source::Trunk("other".into())),
        Some("default")
    );
    assert_eq!(
        p.route(&trunk("+33123456789"), &open),
        Some(("carrier".into(), "did-office-hours".into()))
    );
    assert_eq!(
        p.route(&trunk("+33123456789"), &closed),
        Some(("carrier".into(), "did-closed".into()))
    );
    assert_eq!(p.route(&trunk("+33623456789"), &open), None);

    // Named capture and open calendar.
    let mut s = Session::new(Arc::clone(&p), trunk("+33123456789"));
    assert_eq!(
        s.handle(&open, Event::Started),
        Decision::Execute(Command::Transfer {
            to: "sip:123456789@pbx.example.com".into(),
            attended: false,
        })
    );
    // Numbered capture, closed calendar, endless play.
    let mut s = Session::new(Arc::clone(&p), trunk("+33123456789"));
    assert_eq!(
        s.handle(&closed, Event::Started),
        Decision::Execute(Command::Play {
            media: Media::Url("https://cdn.example.com/closed-123456789.wav".into()),
            loops: 0,
        })
    );
    // Header and calling-number conditions, set with interpolation, substrings.
    let facts = CallFacts::new("91002", "201")
        .from_source(agent())
        .with_header("x-tenant", "acme");
    let mut s = Session::new(Arc::clone(&p), facts);
    assert_eq!(
        s.handle(&open, Event::Started),
        Decision::Execute(Command::Say {
            text: "Hi 201@acme".into(),
            voice: Some("en-GB".into()),
        })
    );
    assert_eq!(
        s.handle(&open, Event::ActionCompleted),
        Decision::Execute(Command::Transfer {
            to: "1002".into(),
            attended: true,
        })
    );
    // Time condition, then goto to another context (rules matched again there).
    let night = Decision::Execute(Command::Queue {
        name: "night".into(),
        priority: -1,
        attributes: Vec::new(),
        callback_digit: None,
    });
    let facts = || CallFacts::new("5", "300").from_source(agent());
    let mut s = Session::new(Arc::clone(&p), facts());
    assert_eq!(
        s.handle(&at("2026-03-02T21:00:00+01:00"), Event::Started),
        night
    );
    assert_eq!(s.var("context"), Some("default"));
    // Goto to a named rule of another context.
    let mut s = Session::new(Arc::clone(&p), facts());
    assert_eq!(s.handle(&open, Event::Started), night);
    assert_eq!(s.var("rule"), Some("other"));
}

#[test]
fn no_route_and_events_out_of_order() {
    let p = plan("contexts:\n  internal:\n    rules:\n      - actions: [answer]\n");
    let mut s = Session::new(Arc::clone(&p), CallFacts::new("1", "2"));
    // Events before `Started` are ignored.
    assert_eq!(
        s.handle(&monday_open(), Event::ActionCompleted),
        Decision::Wait
    );
    assert_eq!(
        s.handle(&monday_open(), Event::Started),
        Decision::End(EndReason::NoRoute)
    );
    assert_eq!(
        s.handle(&monday_open(), Event::Started),
        Decision::End(EndReason::NoRoute)
    );
}

#[test]
fn remaining_actions_render() {
    let p = plan(
        r##"
vars: { lang: fr-FR, dir: "/srv/rec" }
contexts:
  default:
    rules:
      - actions:
          - play: welcome.wav
          - gather:
              prompt: { file: "menu-${lang}.wav" }
              min: 4
              max: 6
              timeout: 8
              terminator: "#"
              speech: { grammar: [yes, no], language: "${lang}" }
          - branch:
              on: "${digits:0:2}"
              no_input: [ say: nothing ]
              cases: { "12": [ say: twelve ] }
          - record: { to: "${dir}/${calling}.wav", max_secs: 30, beep: false, terminator: "*" }
          - dial:
              targets: [ { trunk: carrier, number: "+33${called}" }, "sip:bob@example.com", { uri: "sips:eve@example.com" } ]
              caller_id: "+33100000000"
          - hangup: { code: 486, cause: busy }
"##,
    );
    let now = monday_open();
    let mut s = Session::new(p, CallFacts::new("612345678", "42"));
    assert_eq!(
        s.handle(&now, Event::Started),
        Decision::Execute(Command::Play {
            media: Media::File("welcome.wav".into()),
            loops: 1,
        })
    );
    let Decision::Execute(Command::Gather(g)) = s.handle(&now, Event::ActionCompleted) else {
        panic!("expected a gather")
    };
    assert_eq!(
        g.prompt,
        Some(Prompt::Play(Media::File("menu-fr-FR.wav".into())))
    );
    assert_eq!(
        (g.min_digits, g.max_digits, g.timeout_secs, g.terminator),
        (4, 6, 8, Some('#'))
    );
    assert_eq!(
        g.speech.map(|sp| (sp.grammar, sp.language)),
        Some((vec!["yes".into(), "no".into()], Some("fr-FR".into())))
    );
    assert_eq!(
        s.handle(
            &now,
            Event::DigitsGathered {
                digits: "1234".into()
            }
        ),
        say("twelve")
    );
    assert_eq!(
        s.handle(&now, Event::ActionCompleted),
        Decision::Execute(Command::Record {
            to: "/srv/rec/42.wav".into(),
            max_secs: 30,
            beep: false,
            terminator: Some('*'),
        })
    );
    assert_eq!(
        s.handle(&now, Event::ActionCompleted),
        Decision::Execute(Command::Dial {
            targets: vec![
                DialTarget::Trunk {
                    trunk: "carrier".into(),
                    number: "+33612345678".into(),
                },
                DialTarget::Uri("sip:bob@example.com".into()),
                DialTarget::Uri("sips:eve@example.com".into()),
            ],
            strategy: Strategy::Parallel,
            timeout_secs: 30,
            caller_id: Some("+33100000000".into()),
        })
    );
    // No on_failure: a failed dial goes on with the next action.
    assert_eq!(
        s.handle(&now, Event::DialFailed { code: 503 }),
        Decision::Execute(Command::Hangup {
            code: Some(486),
            cause: Some("busy".into()),
            reason: None,
        })
    );
}

#[test]
fn gather_no_input_branch() {
    let p = plan(
        "contexts:\n  default:\n    rules:\n      - actions:\n          - gather: { max: 1 }\n          - branch: { on: gather, no_input: [ say: silence ], cases: { \"1\": [ say: one ] }, default: [ say: other ] }\n",
    );
    let now = monday_open();
    let mut s = Session::new(Arc::clone(&p), CallFacts::new("1", "2"));
    s.handle(&now, Event::Started);
    assert_eq!(s.handle(&now, Event::GatherTimeout), say("silence"));
    // After a nested list ends, execution resumes after its owner: here the rule ends.
    assert_eq!(
        s.handle(&now, Event::ActionCompleted),
        Decision::End(EndReason::Completed)
    );
}

#[test]
fn sessions_keep_their_plan_across_reloads() {
    let old = plan("contexts:\n  default:\n    rules:\n      - actions: [answer, say: old]\n");
    let mut s = Session::new(Arc::clone(&old), CallFacts::new("1", "2"));
    let now = monday_open();
    s.handle(&now, Event::Started);
    // A reload builds a new plan; the running session still holds the old one.
    let _new = plan("contexts:\n  default:\n    rules:\n      - actions: [answer, say: new]\n");
    drop(old);
    assert_eq!(s.handle(&now, Event::ActionCompleted), say("old"));
}

#[test]
fn preset_variables_and_value_cap() {
    let p = plan(
        "vars: { greeting: Hello }\ncontexts:\n  default:\n    rules:\n      - actions:\n          - label: grow\n          - set: { a: \"${a:-ab}${a:-ab}\" }\n          - say: \"${greeting} ${a:0:4}\"\n          - goto: grow\n",
    );
    let now = monday_open();
    let mut s = Session::new(p, CallFacts::new("1", "2"));
    s.set_var("greeting", "Hi");
    assert_eq!(s.handle(&now, Event::Started), say("Hi abab"));
    for _ in 0..40 {
        s.handle(&now, Event::ActionCompleted);
    }
    // The doubling variable stopped growing at the cap.
    assert_eq!(
        s.var("a").map(str::len),
        Some(switchboard_dialplans::MAX_VALUE)
    );
}

#[test]
fn monitor_and_queue_callback() {
    let p = plan(
        r#"timezone: UTC
contexts:
  default:
    rules:
      - called: "~^77(.+)$"
        actions:
          - monitor: { agent: "${1}", mode: whisper }
          - say: "${monitor_status}"
      - called: "~^78(.+)$"
        actions:
          - monitor: "${1}"
      - called: 600
        actions:
          - queue: { name: sales, callback_digit: "9" }
"#,
    );
    let mut call = Call::new(p.clone(), CallFacts::new("77alice", "1002"), monday_open());
    assert_eq!(
        call.start(),
        Decision::Execute(Command::Monitor {
            agent: "alice".into(),
            mode: MonitorMode::Whisper,
        })
    );
    call.session.set_var("monitor_status", "ended");
    assert_eq!(call.done(), say("ended"));
    let mut call = Call::new(p.clone(), CallFacts::new("78bob", "1002"), monday_open());
    assert_eq!(
        call.start(),
        Decision::Execute(Command::Monitor {
            agent: "bob".into(),
            mode: MonitorMode::Listen,
        })
    );
    let mut call = Call::new(p, CallFacts::new("600", "1002"), monday_open());
    assert_eq!(
        call.start(),
        Decision::Execute(Command::Queue {
            name: "sales".into(),
            priority: 0,
            attributes: Vec::new(),
            callback_digit: Some('9'),
        })
    );
}

#[test]
fn monitor_and_callback_errors_name_the_value() {
    for (src, needle) in [
        ("monitor: { agent: a, mode: shout }", "monitor mode must be"),
        ("monitor: { mode: listen }", "agent"),
        ("queue: { name: q, callback_digit: x }", "callback_digit"),
    ] {
        let text = format!(
            "timezone: UTC\ncontexts:\n  default:\n    rules:\n      - called: 1\n        actions:\n          - {src}\n"
        );
        let diags = parse_str("t.yaml", &text).expect_err(src);
        let all: Vec<String> = diags.iter().map(ToString::to_string).collect();
        assert!(all.iter().any(|d| d.contains(needle)), "{src}: {all:?}");
    }
}

/// `dial: { route, number }` names a least-cost routing table; as a target in `targets` too.
#[test]
fn dial_through_a_route_table() {
    let p = plan(
        r#"contexts:
  default:
    rules:
      - actions:
          - dial: { route: lcr, number: "+${called}", caller_id: "+33100000000" }
          - dial:
              targets: [ { route: cheap, number: "${called}" }, { trunk: t1, number: "1" } ]
"#,
    );
    let now = monday_open();
    let mut s = Session::new(p, CallFacts::new("44207", "42"));
    assert_eq!(
        s.handle(&now, Event::Started),
        Decision::Execute(Command::Dial {
            targets: vec![DialTarget::Route {
                table: "lcr".into(),
                number: "+44207".into(),
            }],
            strategy: Strategy::Parallel,
            timeout_secs: 30,
            caller_id: Some("+33100000000".into()),
        })
    );
    let Decision::Execute(Command::Dial { targets, .. }) =
        s.handle(&now, Event::DialFailed { code: 503 })
    else {
        panic!("expected the second dial")
    };
    assert_eq!(
        targets,
        [
            DialTarget::Route {
                table: "cheap".into(),
                number: "44207".into()
            },
            DialTarget::Trunk {
                trunk: "t1".into(),
                number: "1".into()
            }
        ]
    );
    // `trunk` and `route` together, or either without `number`, is refused.
    for bad in [
        "dial: { trunk: a, route: b, number: \"1\" }",
        "dial: { route: b }",
    ] {
        let src =
            format!("contexts:\n  default:\n    rules:\n      - actions:\n          - {bad}\n");
        assert!(parse_str("t.yaml", &src).is_err(), "{bad}");
    }
}

/// `csat` after `queue`: the survey comes out as one command with the plan's prompts
/// interpolated and defaults for the rest; `- csat` alone is the default survey.
#[test]
fn csat_after_queue_is_one_command() {
    use switchboard_dialplans::CsatSurvey;
    let p = plan(
        r#"timezone: UTC
contexts:
  default:
    rules:
      - called: 600
        actions:
          - queue: support
          - csat:
              prompt: { say: "Rate ${queue_name:-us}, 1 to 5" }
              thanks: none
              timeout: 3
              tries: 2
      - called: 601
        actions:
          - csat
"#,
    );
    let mut c = Call::new(p.clone(), CallFacts::new("600", "1002"), monday_open());
    assert!(matches!(
        c.start(),
        Decision::Execute(Command::Queue { .. })
    ));
    let d = c.done();
    let Decision::Execute(Command::Csat(s)) = d else {
        panic!("{d:?}")
    };
    assert_eq!(
        s.prompt,
        Prompt::Say {
            text: "Rate us, 1 to 5".into(),
            voice: None
        }
    );
    assert_eq!(s.thanks, None);
    assert_eq!((s.timeout_secs, s.tries), (3, 2));
    assert_eq!(s.invalid, CsatSurvey::default().invalid);
    assert_eq!(c.done(), Decision::End(EndReason::Completed));

    let mut c = Call::new(p, CallFacts::new("601", "1002"), monday_open());
    assert_eq!(
        c.start(),
        Decision::Execute(Command::Csat(CsatSurvey::default()))
    );
}

#[test]
fn csat_bad_values_are_diagnosed() {
    let src = r#"timezone: UTC
contexts:
  default:
    rules:
      - called: 600
        actions:
          - csat: { tries: 0, colour: blue }
"#;
    let Err(d) = parse_str("test.yaml", src) else {
        panic!("accepted")
    };
    let text = d
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(text.contains("csat tries"), "{text}");
    assert!(text.contains("colour"), "{text}");
}
