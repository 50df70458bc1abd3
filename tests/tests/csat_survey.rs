//! The post-call CSAT survey and the CRM screen pop, end to end with real SIP and RTP against
//! the release binary: our test phone calls into a queue from a phone number, a second test
//! phone registered as the agent's SIP user answers and hangs up, and the caller answers the
//! survey with RFC 4733 digits.
//!
//! * `queue_survey_scores_four_with_screen_pop`: the queue has `csat_survey = true`. The caller's
//!   contact exists with a name, a tag, an earlier call and an open ticket: the agent's desktop
//!   WebSocket offer carries them (`crm`). A ticket is opened on the live call's interaction;
//!   after the agent hangs up the caller presses 4; the score is read back from the contact
//!   timeline, the ticket, the `csat.recorded` event and the agents and queues reports.
//! * `plan_csat_invalid_then_valid_and_no_input`: the dialplan's `csat` action after `queue`:
//!   one caller presses 9 (invalid: asked again) then 2 (stored); another presses nothing (asked
//!   again, then the survey gives up with `no_input`, nothing stored) and the call still ends.
//!
//! Waits are for events (a prompt heard, a BYE, a stored row), each bounded; nothing asserts a
//! duration.

use serde_json::{json, Value};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use switchboard_tests::phone::{level_dbfs, Phone, PhoneCodec};
use switchboard_tests::{api, api_get, http_get, register, wait_cdrs, Engine};
use tungstenite::{Message, WebSocket};

const GUARD: Duration = Duration::from_secs(30);

const PLAN: &str = r#"timezone: UTC
contexts:
  default:
    rules:
      - name: queue-survey
        called: 600
        actions:
          - queue: { name: support }
          - hangup
      - name: plan-survey
        called: 601
        actions:
          - queue: { name: sales }
          - csat:
              prompt: { say: "Please rate our service. Press a number from one to five." }
              invalid: { say: "That is not a valid answer. Please press a number from one to five." }
              no_input: { say: "We did not hear you. Please press a number from one to five." }
              timeout: 2
              tries: 2
"#;

/// A desktop WebSocket.
struct Ws {
    ws: WebSocket<TcpStream>,
}

impl Ws {
    fn connect(addr: SocketAddr, path: &str) -> Ws {
        let stream = TcpStream::connect(addr).expect("tcp");
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let (ws, _) = tungstenite::client(format!("ws://{addr}{path}"), stream).expect("handshake");
        Ws { ws }
    }

    /// The next frame of type `kind` that `pred` accepts (others are skipped).
    fn next_where(&mut self, kind: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + GUARD;
        let mut seen = Vec::new();
        loop {
            assert!(Instant::now() < deadline, "no `{kind}` frame; saw {seen:?}");
            match self.ws.read() {
                Ok(Message::Text(t)) => {
                    let v: Value = serde_json::from_str(t.as_str()).expect("JSON frame");
                    if v["type"] == kind && pred(&v) {
                        return v;
                    }
                    seen.push(v);
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("desktop socket closed waiting for `{kind}`: {e}"),
            }
        }
    }
}

/// An engine running [`PLAN`], queues `support` (with the survey) and `sales` (without), and
/// agent `alice` whose SIP user is a test phone that answers at once.
fn setup() -> (Engine, Phone, tempfile::TempDir) {
    setup_with("")
}

/// [`setup`] with more `[contact_centre]` settings.
fn setup_with(contact_centre: &str) -> (Engine, Phone, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let plan = dir.path().join("plan.yaml");
    std::fs::write(&plan, PLAN).expect("write plan");
    let engine = Engine::start(&format!(
        "[calls]\ntrusted_sources = [\"127.0.0.1\"]\n[contact_centre]\nconfig_file = \"\"\n\
         {contact_centre}[dialplan]\nfile = \"{}\"\nwatch_secs = 0\n",
        plan.display()
    ));
    api(
        &engine,
        "POST",
        "/api/v1/queues",
        Some(json!({"name": "support", "wrap_up_secs": 0, "csat_survey": true})),
    );
    api(
        &engine,
        "POST",
        "/api/v1/queues",
        Some(json!({"name": "sales", "wrap_up_secs": 0})),
    );
    api(
        &engine,
        "POST",
        "/api/v1/agents",
        Some(json!({"name": "alice", "sip_user": "alice",
                    "queues": [{"queue": "support"}, {"queue": "sales"}]})),
    );
    engine.add_user("alice", "agent-secret");
    let agent = Phone::callee(PhoneCodec::Pcmu, true);
    assert_eq!(
        register(&engine, "alice", "agent-secret", agent.sip_addr(), 3600),
        200
    );
    (engine, agent, dir)
}

fn available(engine: &Engine) {
    let v = api(
        engine,
        "PUT",
        "/api/v1/agents/alice/state",
        Some(json!({"state": "available"})),
    );
    assert_eq!(v["status"], "available", "{v}");
}

/// Reads the caller's audio until a prompt is heard (a 200 ms window above −50 dBFS).
fn wait_prompt(caller: &Phone, what: &str) {
    let deadline = Instant::now() + GUARD;
    while Instant::now() < deadline {
        if level_dbfs(&caller.listen(Duration::from_millis(200))) > -50.0 {
            return;
        }
    }
    panic!("the caller never heard the {what}");
}

/// Polls `f` (every 100 ms, up to 30 s) until it returns `Some`.
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + GUARD;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The contact owning phone `number`.
fn contact_of(engine: &Engine, number: &str) -> Option<i64> {
    let path = format!(
        "/api/v1/contacts?identity=phone:{}",
        number.replace('+', "%2B")
    );
    let v = api_get(engine, &path);
    v["contacts"].as_array()?.first()?["id"].as_i64()
}

fn timeline(engine: &Engine, contact: i64) -> Vec<Value> {
    let v = api_get(engine, &format!("/api/v1/contacts/{contact}/timeline"));
    v["items"].as_array().cloned().unwrap_or_default()
}

/// The voice interaction of the call with `call_id` on the contact's timeline.
fn call_item(engine: &Engine, contact: i64, call_id: &str) -> Option<Value> {
    timeline(engine, contact)
        .into_iter()
        .find(|i| i["type"] == "interaction" && i["source_ref"] == call_id)
}

/// The report row of `name` (column `key`) for today.
fn report_row(engine: &Engine, report: &str, key: &str, name: &str) -> Value {
    let v = api_get(engine, &format!("/api/v1/reports/{report}?period=day"));
    v["rows"]
        .as_array()
        .and_then(|rows| rows.iter().rev().find(|r| r[key] == name).cloned())
        .unwrap_or_else(|| panic!("no {report} row for {name}: {v}"))
}

#[test]
fn queue_survey_scores_four_with_screen_pop() {
    let (engine, mut agent, _dir) = setup();
    const NUMBER: &str = "+15550100001";

    // The caller is known: a name, a tag, an earlier call, an open ticket.
    let c = api(
        &engine,
        "POST",
        "/api/v1/contacts",
        Some(json!({"name": "Ann Example", "tags": ["vip"],
                    "attributes": {"plan": "gold"},
                    "identities": [{"kind": "phone", "value": NUMBER}]})),
    );
    let contact = c["id"].as_i64().expect("contact id");
    let earlier = api(
        &engine,
        "POST",
        &format!("/api/v1/contacts/{contact}/interactions"),
        Some(
            json!({"channel": "voice", "source_ref": "earlier-call-1", "agent": "bob",
                    "queue": "support", "text": "asked about a lost parcel",
                    "started_at_ms": 1_700_000_000_000i64, "ended_at_ms": 1_700_000_060_000i64}),
        ),
    );
    let earlier_id = earlier["id"].as_i64().expect("interaction id");
    let t = api(
        &engine,
        "POST",
        "/api/v1/tickets",
        Some(json!({"interaction_id": earlier_id, "subject": "Parcel lost"})),
    );
    let earlier_ticket = t["id"].as_i64().expect("ticket id");

    // Alice's desktop, then alice available.
    let mut desk = Ws::connect(engine.http_addr(), "/api/v1/agents/alice/ws");
    desk.next_where("hello", |_| true);
    available(&engine);

    let mut caller = Phone::call_from(engine.sip_addr(), NUMBER, "600", PhoneCodec::Pcmu);
    assert_eq!(caller.status(), Some(200), "the queue answers");
    assert!(
        agent.wait_answered(GUARD),
        "alice's phone rang and answered"
    );

    // The screen pop: the offer carries the contact, its open ticket and its history.
    let offer = desk.next_where("offer", |f| f["channel"] == "voice");
    let pop = &offer["crm"];
    assert_eq!(pop["contact"]["id"], contact, "{offer}");
    assert_eq!(pop["contact"]["name"], "Ann Example");
    assert_eq!(pop["contact"]["tags"], json!(["vip"]));
    assert_eq!(pop["contact"]["attributes"]["plan"], "gold");
    assert!(
        pop["open_tickets"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["ticket_id"] == earlier_ticket)),
        "{pop}"
    );
    let history = pop["history"].as_array().expect("history");
    assert!(
        history
            .iter()
            .any(|h| h["type"] == "interaction" && h["source_ref"] == "earlier-call-1"),
        "{pop}"
    );
    assert!(
        history
            .iter()
            .any(|h| h["type"] == "ticket" && h["ticket_id"] == earlier_ticket),
        "{pop}"
    );
    let live = pop["interaction_id"]
        .as_i64()
        .expect("the live call's interaction");

    // A ticket on the live call's interaction: the score must reach it too.
    let t = api(
        &engine,
        "POST",
        "/api/v1/tickets",
        Some(json!({"interaction_id": live, "subject": "Call back about the refund"})),
    );
    let ticket = t["id"].as_i64().expect("ticket id");

    // Drain what the caller heard so far (hold music), then the agent hangs up.
    caller.listen(Duration::from_millis(500));
    agent.hang_up_incoming();
    wait_prompt(&caller, "survey question");
    caller.press('4');
    assert!(
        caller.wait_bye(GUARD),
        "the engine hangs up after the thanks"
    );

    // The score on the interaction, the contact's timeline, the ticket.
    let item = eventually("the score on the call's interaction", || {
        timeline(&engine, contact)
            .into_iter()
            .find(|i| i["type"] == "csat" && i["interaction_id"] == live)
    });
    assert_eq!(item["score"], 4);
    let call = api_get(&engine, &format!("/api/v1/tickets/{ticket}"));
    assert_eq!(call["csat"], 4, "{call}");
    let row = eventually("the call's interaction with its agent", || {
        timeline(&engine, contact)
            .into_iter()
            .find(|i| i["type"] == "interaction" && i["id"] == live)
    });
    assert_eq!(row["agent"], "alice", "{row}");
    assert_eq!(row["queue"], "support", "{row}");
    assert_eq!(row["csat"], 4);

    // The event.
    let (status, body) = http_get(
        engine.http_addr(),
        "/api/v1/events?since=0&types=csat.recorded",
    )
    .expect("events");
    assert_eq!(status, 200, "{body}");
    let events: Value = serde_json::from_str(&body).expect("JSON");
    let e = events["events"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["data"]["interaction_id"] == live))
        .unwrap_or_else(|| panic!("no csat.recorded: {events}"));
    assert_eq!(e["data"]["score"], 4);
    assert_eq!(e["data"]["ticket_ids"], json!([ticket]));
    assert_eq!(e["data"]["agent"], "alice");

    // The reports' CSAT columns.
    let a = report_row(&engine, "agents", "agent", "alice");
    assert_eq!(a["csat"], json!(4.0), "{a}");
    let q = report_row(&engine, "queues", "queue", "support");
    assert_eq!(q["csat"], json!(4.0), "{q}");

    // When the CDR is in, the same interaction is completed (not a second one).
    let cdrs = wait_cdrs(&engine, 1);
    let call_id = cdrs
        .iter()
        .find_map(|c| {
            c["caller"]
                .as_str()
                .filter(|s| s.contains(NUMBER))
                .and(c["call_id"].as_str())
        })
        .expect("the caller's CDR")
        .to_string();
    let done = eventually("the interaction completed from the CDR", || {
        call_item(&engine, contact, &call_id).filter(|i| !i["ended_at_ms"].is_null())
    });
    assert_eq!(done["id"], live);
    let calls = timeline(&engine, contact)
        .into_iter()
        .filter(|i| i["type"] == "interaction" && i["source_ref"] == call_id.as_str())
        .count();
    assert_eq!(calls, 1, "one interaction per call");
}

#[test]
fn plan_csat_invalid_then_valid_and_no_input() {
    let (engine, mut agent, _dir) = setup();
    available(&engine);

    // Invalid (9), asked again, then 2.
    const FIRST: &str = "+15550100002";
    let mut caller = Phone::call_from(engine.sip_addr(), FIRST, "601", PhoneCodec::Pcmu);
    assert_eq!(caller.status(), Some(200));
    assert!(agent.wait_answered(GUARD));
    caller.listen(Duration::from_millis(500));
    agent.hang_up_incoming();
    wait_prompt(&caller, "survey question");
    caller.press('9');
    // The question stops at the digit; the re-prompt follows.
    caller.listen(Duration::from_millis(800));
    wait_prompt(&caller, "re-prompt");
    caller.press('2');
    assert!(caller.wait_bye(GUARD), "the call ends after the survey");
    let contact = eventually("the first caller's contact", || contact_of(&engine, FIRST));
    let item = eventually("the score 2", || {
        timeline(&engine, contact)
            .into_iter()
            .find(|i| i["type"] == "csat")
    });
    assert_eq!(item["score"], 2, "{item}");
    let log = engine.log();
    assert!(
        log.contains("survey: asking again (question 2)"),
        "the 9 was refused and the question asked again"
    );

    // No input: asked twice, then the plan goes on (and ends): nothing stored.
    const SECOND: &str = "+15550100003";
    // A fresh phone for alice (a test phone takes one call): the old binding goes first.
    assert_eq!(
        register(&engine, "alice", "agent-secret", agent.sip_addr(), 0),
        200
    );
    drop(agent);
    let mut agent2 = Phone::callee(PhoneCodec::Pcmu, true);
    assert_eq!(
        register(&engine, "alice", "agent-secret", agent2.sip_addr(), 3600),
        200
    );
    available(&engine);
    let caller = Phone::call_from(engine.sip_addr(), SECOND, "601", PhoneCodec::Pcmu);
    assert_eq!(caller.status(), Some(200));
    assert!(agent2.wait_answered(GUARD));
    caller.listen(Duration::from_millis(500));
    agent2.hang_up_incoming();
    wait_prompt(&caller, "survey question");
    assert!(
        caller.wait_bye(GUARD),
        "the survey gives up and the call ends"
    );
    let contact = eventually("the second caller's contact", || {
        contact_of(&engine, SECOND)
    });
    wait_cdrs(&engine, 2);
    let items = timeline(&engine, contact);
    assert!(
        items.iter().any(|i| i["type"] == "interaction"),
        "the call is on the timeline: {items:?}"
    );
    assert!(
        !items.iter().any(|i| i["type"] == "csat"),
        "no score without input: {items:?}"
    );
    assert!(
        engine.log().contains("no_input"),
        "the survey ended with no_input"
    );
}

/// A screen pop slower than `screen_pop_timeout_ms` (an injected delay) does not hold the
/// offer back: the desktop gets it without `crm`, the agent's phone rings, the log says why.
#[test]
fn slow_screen_pop_offers_without_it() {
    let (engine, agent, _dir) =
        setup_with("screen_pop_timeout_ms = 200\ndebug_screen_pop_delay_ms = 5000\n");
    let mut desk = Ws::connect(engine.http_addr(), "/api/v1/agents/alice/ws");
    desk.next_where("hello", |_| true);
    available(&engine);
    let mut caller = Phone::call_from(engine.sip_addr(), "+15550100009", "601", PhoneCodec::Pcmu);
    assert_eq!(caller.status(), Some(200));
    let offer = desk.next_where("offer", |f| f["channel"] == "voice");
    assert_eq!(offer["crm"], json!(null), "{offer}");
    assert!(agent.wait_answered(GUARD), "the agent's phone still rings");
    assert!(engine.log().contains("screen pop timed out"));
    caller.hang_up();
}
