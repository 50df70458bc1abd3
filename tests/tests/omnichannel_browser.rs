//! The issue's omnichannel must-show, end to end, in Debian's headless Chromium (driven by
//! `tests/browser/omnichannel.js` with playwright-core):
//!
//! 1. A real SIP call from number N (our test phone, From user N) to 600 is queued in `support`,
//!    offered to agent `alice`, answered by her SIP phone (our test phone, registered as her
//!    `sip_user`) and hung up: the CRM records it on the contact owning N (created).
//! 2. A shop page on another origin embeds the widget with one `<script>` tag and calls
//!    `Switchboard.identify({name, phone: N})`; the customer chats with alice's agent page
//!    (`/agent`); the agent page's "Create ticket" button creates a ticket from the chat; the agent
//!    ends the chat; the customer rates it 5 in the widget.
//! 3. The contact timeline, in the agent page and through the API, shows the earlier call, the
//!    chat (with its transcript link and score) and the ticket (with the score), all on the
//!    contact of number N; search finds the chat by a word of its messages; the chat's events
//!    (`chat.started`, `chat.linked`, `chat.assigned`, `chat.message`, `chat.ended`,
//!    `chat.rated`) are on `/api/v1/events`, without message text.
//!
//! Screenshots go to `target/test-artifacts/omnichannel-*.png`. Every wait is bounded and waits
//! for an event (a line from the script, a stored record), never a timed assertion.
//!
//! Needs `chromium` and `tests/browser/node_modules` (`make test` installs both).

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use switchboard_tests::phone::{Phone, PhoneCodec};
use switchboard_tests::{api, api_get, register, Engine};

/// The customer's number (the call's From user and the widget's phone).
const NUMBER: &str = "+15550100042";
/// 600 queues in `support`.
const PLAN: &str = r#"timezone: UTC
contexts:
  default:
    rules:
      - name: support-line
        called: 600
        actions:
          - queue: { name: support }
          - hangup
"#;
/// Longest wait for one step (the box may be loaded).
const STEP: Duration = Duration::from_secs(120);

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser")
}

/// The next line the script prints that starts with `want`; other lines are echoed.
fn expect_line(rx: &mpsc::Receiver<String>, want: &str) -> String {
    loop {
        let line = rx
            .recv_timeout(STEP)
            .unwrap_or_else(|_| panic!("the browser script did not say `{want}` in time"));
        eprintln!("browser: {line}");
        assert!(!line.starts_with("error"), "browser script failed: {line}");
        if line.starts_with(want) {
            return line;
        }
    }
}

/// Polls `f` until it answers `Some` (bounded by [`STEP`]).
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + STEP;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn call_then_chat_ticket_rating_on_one_contact_timeline() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} missing: run `make test` (installs Debian chromium)"
    );
    assert!(
        browser_dir().join("node_modules/playwright-core").exists(),
        "tests/browser/node_modules missing: run `make test` (npm ci in tests/browser)"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let plan = dir.path().join("plan.yaml");
    std::fs::write(&plan, PLAN).expect("write plan");
    let engine = Engine::start(&format!(
        "[calls]\ntrusted_sources = [\"127.0.0.1\"]\n[contact_centre]\nconfig_file = \"\"\n\
         [dialplan]\nfile = \"{}\"\nwatch_secs = 0\n",
        plan.display()
    ));
    for q in ["support", "web"] {
        api(
            &engine,
            "POST",
            "/api/v1/queues",
            Some(json!({"name": q, "wrap_up_secs": 0, "offer_timeout_secs": 30})),
        );
    }
    api(
        &engine,
        "POST",
        "/api/v1/agents",
        Some(json!({"name": "alice", "sip_user": "alice-sip",
                    "capacity": {"voice": 1, "chat": 2},
                    "queues": [{"queue": "support"}, {"queue": "web"}]})),
    );

    // 1. The earlier phone call from NUMBER, answered by alice's SIP phone.
    engine.add_user("alice-sip", "alice-secret");
    let alice_phone = Phone::callee(PhoneCodec::Pcmu, true);
    assert_eq!(
        register(
            &engine,
            "alice-sip",
            "alice-secret",
            alice_phone.sip_addr(),
            3600
        ),
        200,
        "alice's phone registers"
    );
    let v = api(
        &engine,
        "PUT",
        "/api/v1/agents/alice/state",
        Some(json!({"state": "available"})),
    );
    assert_eq!(v["status"], "available", "{v}");
    let mut caller = Phone::call_from(engine.sip_addr(), NUMBER, "600", PhoneCodec::Pcmu);
    assert_eq!(caller.status(), Some(200), "the queue answers the caller");
    assert!(
        alice_phone.wait_answered(STEP),
        "alice's phone got the queued call"
    );
    caller.hang_up();
    alice_phone.wait_bye(Duration::from_secs(10));
    let contact_id = wait_for("the caller's contact with an answered call", || {
        let found = api_get(&engine, "/api/v1/contacts?identity=phone:%2B15550100042");
        let id = found["contacts"][0]["id"].as_i64()?;
        let tl = api_get(&engine, &format!("/api/v1/contacts/{id}/timeline"));
        let answered = tl["items"]
            .as_array()?
            .iter()
            .any(|i| i["channel"] == "voice" && i["call"]["answered"] == true);
        answered.then_some(id)
    });
    // The agent page logs alice in again over its desktop socket; make her free for chats.
    wait_for("alice back to available", || {
        let a = api_get(&engine, "/api/v1/agents/alice");
        (a["status"] == "available").then_some(())
    });

    // 2. The browser: shop page with the widget, agent page.
    let artifacts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts");
    std::fs::create_dir_all(&artifacts).expect("artifacts dir");
    let mut node = Command::new("node")
        .arg(browser_dir().join("omnichannel.js"))
        .arg(format!("http://{}", engine.http_addr()))
        .arg(&artifacts)
        .arg("alice")
        .arg(NUMBER)
        .env("CHROMIUM", &chromium)
        .env("OMNI_WAIT_MS", "90000")
        .stdout(Stdio::piped())
        .spawn()
        .expect("run node");
    let stdout = node.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Kill the browser whatever happens below.
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut node = Reap(node);
    let chat = expect_line(&rx, "chat ")[5..].trim().to_string();
    let ticket: i64 = expect_line(&rx, "ticket ")[7..]
        .trim()
        .parse()
        .expect("ticket id");
    expect_line(&rx, "rated");
    let timeline_line = expect_line(&rx, "timeline ");
    assert!(timeline_line.contains("voice call from"), "{timeline_line}");
    let status = node.0.wait().expect("script exit");
    assert!(status.success(), "browser script: {status}");
    for png in [
        "omnichannel-customer.png",
        "omnichannel-agent.png",
        "omnichannel-customer-rating.png",
    ] {
        let bytes = std::fs::read(artifacts.join(png)).expect("screenshot written");
        assert!(bytes.starts_with(b"\x89PNG"), "{png} is a PNG");
    }

    // 3. Through the API: the chat is on the caller's contact, with the ticket and the score.
    let c = api_get(&engine, &format!("/api/v1/chats/{chat}"));
    assert_eq!(c["contact_id"], contact_id, "{c}");
    assert_eq!(c["csat"], 5, "{c}");
    assert_eq!(c["phone"], NUMBER, "{c}");
    let crm_interaction = c["crm_interaction"].as_i64().expect("CRM interaction");
    let t = api_get(&engine, &format!("/api/v1/tickets/{ticket}"));
    assert_eq!(t["interaction_id"], crm_interaction, "{t}");
    assert_eq!(t["contact_id"], contact_id, "{t}");
    let tl = wait_for("the score on the timeline", || {
        let tl = api_get(&engine, &format!("/api/v1/contacts/{contact_id}/timeline"));
        let rated = tl["items"]
            .as_array()?
            .iter()
            .any(|i| i["type"] == "csat" && i["score"] == 5);
        rated.then_some(tl)
    });
    let items = tl["items"].as_array().expect("items");
    let pos = |pred: &dyn Fn(&Value) -> bool| {
        items
            .iter()
            .position(pred)
            .unwrap_or_else(|| panic!("missing from the timeline: {tl}"))
    };
    let call = pos(&|i| i["channel"] == "voice" && i["call"]["answered"] == true);
    let chat_item = pos(&|i| i["channel"] == "chat" && i["source_ref"] == chat.as_str());
    let ticket_item = pos(&|i| i["type"] == "ticket" && i["ticket_id"] == ticket);
    assert!(call < chat_item && chat_item < ticket_item, "{tl}");
    let ci = &items[chat_item];
    assert_eq!(ci["agent"], "alice", "{ci}");
    assert_eq!(ci["csat"], 5, "{ci}");
    assert_eq!(
        ci["details"]["transcript"],
        format!("/api/v1/chats/{chat}"),
        "{ci}"
    );
    assert!(ci["ended_at_ms"].is_i64(), "{ci}");
    assert!(
        ci["text"].as_str().is_some_and(|t| t.contains("ORD-1234")),
        "{ci}"
    );
    assert_eq!(items[ticket_item]["csat"], 5, "{tl}");
    // Full-text search over the chat's messages finds its CRM interaction.
    let hits = api_get(&engine, "/api/v1/search?q=parcel&channel=chat");
    assert!(
        hits["results"]
            .as_array()
            .is_some_and(|r| r.iter().any(|h| h["id"] == crm_interaction)),
        "{hits}"
    );

    // The chat's events, without the message text.
    let events = wait_for("chat.rated on the event stream", || {
        let (s, body) = switchboard_tests::http_get(
            engine.http_addr(),
            "/api/v1/events?since=0&limit=1000&types=chat.*",
        )?;
        assert_eq!(s, 200, "{body}");
        let v: Value = serde_json::from_str(&body).ok()?;
        let evs: Vec<Value> = v["events"]
            .as_array()?
            .iter()
            .filter(|e| e["data"]["chat"] == chat.as_str())
            .cloned()
            .collect();
        evs.iter().any(|e| e["type"] == "chat.rated").then_some(evs)
    });
    let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    for want in [
        "chat.started",
        "chat.linked",
        "chat.assigned",
        "chat.message",
        "chat.ended",
        "chat.rated",
    ] {
        assert!(types.contains(&want), "{want} missing: {types:?}");
    }
    let msg = events
        .iter()
        .find(|e| e["type"] == "chat.message" && e["data"]["from"] == "customer")
        .expect("a customer chat.message");
    assert_eq!(msg["data"]["length"], 33, "{msg}");
    assert!(msg["data"].get("text").is_none(), "{msg}");
    let linked = events
        .iter()
        .find(|e| e["type"] == "chat.linked")
        .expect("chat.linked");
    assert_eq!(linked["data"]["contact_id"], contact_id, "{linked}");
    assert_eq!(linked["data"]["contact_created"], false, "{linked}");
    let rated = events
        .iter()
        .find(|e| e["type"] == "chat.rated")
        .expect("chat.rated");
    assert_eq!(
        (
            rated["data"]["score"].as_i64(),
            rated["data"]["agent"].as_str()
        ),
        (Some(5), Some("alice")),
        "{rated}"
    );
}
