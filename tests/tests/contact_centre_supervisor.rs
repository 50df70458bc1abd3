//! Contact-centre voice features around a live call, end to end with real SIP and RTP:
//! supervisor monitoring (listen, whisper, barge: dial-in like Asterisk's ChanSpy, mode from
//! DTMF and from the REST API) and caller-chosen callbacks that keep the place in line.
//!
//! Every party is the test's own SIP phone (`tests/src/phone.rs`): each talks a tone of its own
//! frequency and the test checks, from the audio each one receives, exactly who hears whom.

use serde_json::{json, Value};
use std::f64::consts::PI;
use std::time::{Duration, Instant};
use switchboard_tests::phone::{Phone, PhoneCodec};
use switchboard_tests::{api, api_get, http_json, register, Engine};

const TRUSTED: &str = "[calls]\ntrusted_sources = [\"127.0.0.1\"]\n";
const NO_CC_FILE: &str = "[contact_centre]\nconfig_file = \"\"\n";

/// 600 queues in `support` (9 asks for a callback); `77<agent>` supervises that agent's call.
const PLAN: &str = r#"timezone: UTC
contexts:
  default:
    rules:
      - name: support-line
        called: 600
        actions:
          - queue: { name: support, callback_digit: "9" }
          - hangup
      - name: supervise
        called: "~^77(.+)$"
        actions:
          - monitor: { agent: "${1}", mode: listen }
          - hangup
"#;

/// The tones: caller, agent, supervisor.
const F_CALLER: f64 = 500.0;
const F_AGENT: f64 = 1100.0;
const F_SUPERVISOR: f64 = 1700.0;

fn sine(freq: f64, secs: f64) -> Vec<i16> {
    let n = (8000.0 * secs) as usize;
    (0..n)
        .map(|i| (8000.0 * (2.0 * PI * freq * i as f64 / 8000.0).sin()) as i16)
        .collect()
}

/// Amplitude of `freq` in `pcm` (8 kHz), by Goertzel over the whole signal.
fn amplitude(pcm: &[i16], freq: f64) -> f64 {
    if pcm.is_empty() {
        return 0.0;
    }
    let w = 2.0 * PI * freq / 8000.0;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in pcm {
        let s0 = f64::from(x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    2.0 * power.max(0.0).sqrt() / pcm.len() as f64
}

/// Heard clearly / not at all (the tones are sent at amplitude 8000).
const HEARD: f64 = 1500.0;
const SILENT: f64 = 300.0;

fn engine_with_plan(dir: &std::path::Path) -> Engine {
    let plan = dir.join("plan.yaml");
    std::fs::write(&plan, PLAN).expect("write plan");
    Engine::start(&format!(
        "{TRUSTED}{NO_CC_FILE}[dialplan]\nfile = \"{}\"\nwatch_secs = 0\n",
        plan.display()
    ))
}

/// Creates queue `support` and agent `alice` whose SIP user is registered at `phone`.
fn queue_and_agent(engine: &Engine, phone: &Phone, available: bool) {
    api(
        engine,
        "POST",
        "/api/v1/queues",
        Some(json!({"name": "support", "wrap_up_secs": 0, "offer_timeout_secs": 15})),
    );
    api(
        engine,
        "POST",
        "/api/v1/agents",
        Some(json!({"name": "alice", "sip_user": "cc-alice", "queues": [{"queue": "support"}]})),
    );
    engine.add_user("cc-alice", "alice-secret");
    assert_eq!(
        register(engine, "cc-alice", "alice-secret", phone.sip_addr(), 3600),
        200
    );
    if available {
        set_available(engine);
    }
}

fn set_available(engine: &Engine) {
    let v = api(
        engine,
        "PUT",
        "/api/v1/agents/alice/state",
        Some(json!({"state": "available"})),
    );
    assert_eq!(v["presence"], "available", "{v}");
}

/// Every phone talks its tone for `dur` while listening; returns what each heard, without the
/// first 600 ms (mode changes and jitter buffers settle).
fn talk(phones: &mut [(&mut Phone, f64)], dur: Duration) -> Vec<Vec<i16>> {
    std::thread::scope(|s| {
        let handles: Vec<_> = phones
            .iter_mut()
            .map(|(p, f)| {
                let tone = sine(*f, 1.0);
                s.spawn(move || p.talk_and_listen(&tone, dur))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                let heard = h.join().expect("phone thread");
                heard.get(4800..).map(<[i16]>::to_vec).unwrap_or_default()
            })
            .collect()
    })
}

fn levels(heard: &[i16]) -> [f64; 3] {
    [
        amplitude(heard, F_CALLER),
        amplitude(heard, F_AGENT),
        amplitude(heard, F_SUPERVISOR),
    ]
}

/// Caller, agent and supervisor talk for 3 s; what each heard, as [`levels`] (printed under
/// `phase`).
fn three_way(
    caller: &mut Phone,
    agent: &mut Phone,
    sup: &mut Phone,
    phase: &str,
) -> ([f64; 3], [f64; 3], [f64; 3]) {
    let heard = talk(
        &mut [(caller, F_CALLER), (agent, F_AGENT), (sup, F_SUPERVISOR)],
        Duration::from_secs(3),
    );
    let (c, a, s) = (levels(&heard[0]), levels(&heard[1]), levels(&heard[2]));
    eprintln!("{phase}: caller {c:?} agent {a:?} supervisor {s:?}");
    (c, a, s)
}

/// The interaction id of the only live interaction.
fn only_interaction(engine: &Engine) -> (u64, Value) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = api_get(engine, "/api/v1/interactions");
        let list = v
            .as_array()
            .cloned()
            .or_else(|| v["interactions"].as_array().cloned())
            .unwrap_or_default();
        if let Some(i) = list.first() {
            let id = i["id"].as_u64().expect("id");
            return (id, i.clone());
        }
        assert!(Instant::now() < deadline, "no interaction: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A caller queued for `support` is answered by agent alice; the supervisor dials 77alice:
/// in listen mode the supervisor hears both and nobody hears the supervisor; DTMF 2 →
/// whisper: the agent hears the supervisor, the caller does not; the API switches to barge:
/// both hear the supervisor. When the supervisor hangs up, caller and agent still hear each
/// other (the bridge is back on the relay).
#[test]
fn supervisor_listens_whispers_and_barges() {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = engine_with_plan(dir.path());
    let mut agent = Phone::callee(PhoneCodec::Pcmu, true);
    queue_and_agent(&engine, &agent, true);

    let mut caller = Phone::call(engine.sip_addr(), "600", PhoneCodec::Pcmu);
    assert_eq!(caller.status(), Some(200), "the queue answers the caller");
    assert!(
        agent.wait_answered(Duration::from_secs(15)),
        "the agent's phone rings and answers"
    );
    // Caller and agent talk.
    let heard = talk(
        &mut [(&mut caller, F_CALLER), (&mut agent, F_AGENT)],
        Duration::from_secs(2),
    );
    let (c, a) = (levels(&heard[0]), levels(&heard[1]));
    assert!(c[1] > HEARD, "caller hears the agent: {c:?}");
    assert!(a[0] > HEARD, "agent hears the caller: {a:?}");

    // The supervisor dials in (listen).
    let mut sup = Phone::call(engine.sip_addr(), "77alice", PhoneCodec::Pcmu);
    assert_eq!(sup.status(), Some(200), "the monitor action answers");
    std::thread::sleep(Duration::from_millis(500));
    let (c, a, s) = three_way(&mut caller, &mut agent, &mut sup, "listen");
    assert!(
        s[0] > HEARD && s[1] > HEARD,
        "listen: the supervisor hears both: {s:?}"
    );
    assert!(c[1] > HEARD && a[0] > HEARD, "listen: the call goes on");
    assert!(
        c[2] < SILENT && a[2] < SILENT,
        "listen: nobody hears the supervisor: caller {c:?} agent {a:?}"
    );

    // DTMF 2: whisper to the agent.
    sup.press('2');
    let (c, a, s) = three_way(&mut caller, &mut agent, &mut sup, "whisper");
    assert!(
        a[2] > HEARD,
        "whisper: the agent hears the supervisor: {a:?}"
    );
    assert!(c[2] < SILENT, "whisper: the caller does not: {c:?}");
    assert!(
        s[0] > HEARD && s[1] > HEARD,
        "whisper: supervisor hears both"
    );

    // The API: barge (every supervisor of the interaction).
    let (id, _) = only_interaction(&engine);
    let (status, text) = http_json(
        engine.http_addr(),
        "PUT",
        &format!("/api/v1/interactions/{id}/supervision"),
        Some(&json!({"mode": "yodel"})),
    )
    .expect("answer");
    assert_eq!(status, 400, "a bad mode is refused: {text}");
    assert!(text.contains("\"field\":\"mode\""), "{text}");
    let v = api(
        &engine,
        "PUT",
        &format!("/api/v1/interactions/{id}/supervision"),
        Some(json!({"mode": "barge"})),
    );
    assert_eq!(v["supervisors"], 1, "{v}");
    let (c, a, s) = three_way(&mut caller, &mut agent, &mut sup, "barge");
    assert!(
        c[2] > HEARD && a[2] > HEARD,
        "barge: both hear the supervisor"
    );
    assert!(c[1] > HEARD && a[0] > HEARD && s[0] > HEARD && s[1] > HEARD);

    // The supervisor leaves: the call is a plain bridge again.
    sup.hang_up();
    std::thread::sleep(Duration::from_millis(300));
    let heard = talk(
        &mut [(&mut caller, F_CALLER), (&mut agent, F_AGENT)],
        Duration::from_secs(2),
    );
    let (c, a) = (levels(&heard[0]), levels(&heard[1]));
    assert!(
        c[1] > HEARD && a[0] > HEARD,
        "after supervision: caller {c:?} agent {a:?}"
    );
    let (status, _) = http_json(
        engine.http_addr(),
        "PUT",
        &format!("/api/v1/interactions/{id}/supervision"),
        Some(&json!({"mode": "listen"})),
    )
    .expect("answer");
    assert_eq!(status, 409, "no supervisor is left");

    // Supervising an agent on no call ends the action at once (the plan hangs up).
    caller.hang_up();
    assert!(agent.wait_bye(Duration::from_secs(5)), "agent gets the BYE");
    let idle = Phone::call(engine.sip_addr(), "77alice", PhoneCodec::Pcmu);
    assert_eq!(idle.status(), Some(200));
    assert!(
        idle.wait_bye(Duration::from_secs(5)),
        "nothing to supervise: the plan goes on and hangs up"
    );
}

/// No agent is available: the caller waits, presses 9 and is hung up, keeping the place in
/// line (`callback`). When alice becomes available the engine rings her first, then calls the
/// caller back; they hear each other, and when she hangs up the caller gets the BYE.
#[test]
fn callback_keeps_the_place_and_calls_back() {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = engine_with_plan(dir.path());
    let mut agent = Phone::callee(PhoneCodec::Pcmu, true);
    queue_and_agent(&engine, &agent, false);

    let mut caller = Phone::call(engine.sip_addr(), "600", PhoneCodec::Pcmu);
    assert_eq!(caller.status(), Some(200), "the queue answers the caller");
    let _ = caller.listen(Duration::from_millis(500));
    caller.press('9');
    assert!(
        caller.wait_bye(Duration::from_secs(10)),
        "the caller is hung up after asking for a callback"
    );
    let (id, it) = only_interaction(&engine);
    assert_eq!(it["state"], "callback", "{it}");

    set_available(&engine);
    assert!(
        agent.wait_answered(Duration::from_secs(15)),
        "the agent is rung first"
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while !caller.wait_answered(Duration::from_millis(100)) {
        assert!(Instant::now() < deadline, "the caller is called back");
    }
    std::thread::sleep(Duration::from_millis(300));
    let heard = talk(
        &mut [(&mut caller, F_CALLER), (&mut agent, F_AGENT)],
        Duration::from_secs(3),
    );
    let (c, a) = (levels(&heard[0]), levels(&heard[1]));
    eprintln!("callback: caller {c:?} agent {a:?}");
    assert!(c[1] > HEARD, "the customer hears the agent: {c:?}");
    assert!(a[0] > HEARD, "the agent hears the customer: {a:?}");

    let v = api_get(&engine, &format!("/api/v1/interactions/{id}"));
    assert_eq!(v["state"], "assigned", "{v}");
    agent.hang_up_incoming();
    assert!(
        caller.wait_bye(Duration::from_secs(5)),
        "the customer gets the BYE when the agent hangs up"
    );
    let m = api_get(&engine, "/api/v1/metrics/queues/support");
    let text = m.to_string();
    assert!(text.contains("\"callbacks\":1"), "{text}");
}
