//! The call-control REST API (`/api/v1/calls`) against live calls over real SIP and RTP: the
//! test's own phones ([`Phone`]) call the engine or are called by it, and the test checks what
//! they receive (BYEs, REFERs, audio, RFC 4733 digits) and what the engine stores (CDRs,
//! recordings).
//!
//! A "bridged call" here is a caller phone dialling 730, which the dialplan connects to a
//! callee phone (`dial: sip:callee@…`).

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use switchboard_tests::phone::{level_dbfs, Phone, PhoneCodec};
use switchboard_tests::{api, http_get, http_json, register, wait_cdrs, Engine};

const TRUSTED: &str = "[calls]\ntrusted_sources = [\"127.0.0.1\"]\n";

/// An engine whose plan sends 730 to `callee`; `dir` also holds the prompt files.
fn engine_dialling(callee: &Phone) -> (Engine, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir").keep();
    let plan = format!(
        "contexts:\n  default:\n    rules:\n      - name: bridge\n        called: 730\n        actions:\n          - dial: sip:callee@{}\n",
        callee.sip_addr()
    );
    let file = dir.join("plan.yaml");
    std::fs::write(&file, plan).expect("write plan");
    let cfg = format!(
        "{TRUSTED}[dialplan]\nfile = \"{}\"\nwatch_secs = 0\n",
        file.display()
    );
    (Engine::start(&cfg), dir)
}

/// A caller phone on 730, bridged to `callee`; returns the call's directory view.
fn bridged_call(engine: &Engine, callee: &Phone) -> (Phone, Value) {
    let phone = Phone::call(engine.sip_addr(), "730", PhoneCodec::Pcmu);
    assert_eq!(phone.status(), Some(200), "log:\n{}", engine.log());
    assert!(callee.wait_answered(Duration::from_secs(10)), "callee rung");
    let call = wait_for(engine, |c| c["state"] == "bridged");
    (phone, call)
}

/// Polls `GET /api/v1/calls` (up to 10 s) until one call matches.
fn wait_for(engine: &Engine, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let list = api(engine, "GET", "/api/v1/calls", None);
        if let Some(c) = list["calls"]
            .as_array()
            .and_then(|a| a.iter().find(|c| pred(c)))
        {
            return c.clone();
        }
        assert!(Instant::now() < deadline, "no such call in {list}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls until the directory is empty.
fn wait_empty(engine: &Engine) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let list = api(engine, "GET", "/api/v1/calls", None);
        if list["count"] == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "calls still listed: {list}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A request that must fail with `status`; returns the error body.
fn refused(engine: &Engine, method: &str, path: &str, body: Option<Value>, status: u16) -> Value {
    let (got, text) =
        http_json(engine.http_addr(), method, path, body.as_ref()).expect("an answer");
    assert_eq!(got, status, "{method} {path} {body:?}: {text}");
    let v: Value = serde_json::from_str(&text).expect("JSON error body");
    assert!(v["error"].is_string(), "{v}");
    v
}

fn sine(freq: f64, secs: f64, rate: u32) -> Vec<i16> {
    let n = (secs * f64::from(rate)) as usize;
    (0..n)
        .map(|i| {
            (8000.0 * (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate)).sin()) as i16
        })
        .collect()
}

/// Magnitude of the `freq` component of `pcm`, normalised by the length.
fn tone_power(pcm: &[i16], rate: u32, freq: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / f64::from(rate);
    let (mut re, mut im) = (0.0, 0.0);
    for (i, &s) in pcm.iter().enumerate() {
        let x = f64::from(s);
        re += x * (w * i as f64).cos();
        im += x * (w * i as f64).sin();
    }
    (re * re + im * im).sqrt() / pcm.len().max(1) as f64
}

/// Whether `pcm` holds a clear tone at `freq` (much stronger than at an unrelated frequency).
fn hears(pcm: &[i16], freq: f64) -> bool {
    let p = tone_power(pcm, 8000, freq);
    let other = tone_power(pcm, 8000, 2345.0);
    p > 200.0 && p > 10.0 * other
}

/// Test 1: A bridged call is listed with both legs; `DELETE` hangs it up: both phones get a BYE,
/// the CDR says `api`, and the call leaves the directory (then 404).
#[test]
fn list_shows_a_live_call_and_delete_hangs_up_both_legs() {
    let callee = Phone::callee(PhoneCodec::Pcmu, true);
    let (engine, _dir) = engine_dialling(&callee);
    let (phone, call) = bridged_call(&engine, &callee);
    assert_eq!(call["kind"], "inbound", "{call}");
    let legs = call["legs"].as_array().expect("legs");
    assert_eq!(legs.len(), 2, "{call}");
    assert_eq!(legs[0]["leg"], "a");
    assert_eq!(legs[1]["leg"], "b");
    assert_eq!(legs[1]["state"], "answered", "{call}");
    assert!(call["answer_ms"].is_i64(), "{call}");
    assert_eq!(call["recording"], false);
    let id = call["id"].as_u64().expect("id");
    let one = api(&engine, "GET", &format!("/api/v1/calls/{id}"), None);
    assert_eq!(one["call_id"], call["call_id"]);

    let r = api(&engine, "DELETE", &format!("/api/v1/calls/{id}"), None);
    assert_eq!(r["cause"], "api", "{r}");
    assert!(phone.wait_bye(Duration::from_secs(5)), "caller got BYE");
    assert!(callee.wait_bye(Duration::from_secs(5)), "callee got BYE");
    wait_empty(&engine);
    refused(&engine, "GET", &format!("/api/v1/calls/{id}"), None, 404);
    let cdrs = wait_cdrs(&engine, 1);
    assert_eq!(cdrs[0]["cause"], "api", "{cdrs:?}");
    assert_eq!(cdrs[0]["call_id"], call["call_id"], "{cdrs:?}");
}

/// Test 2: Originate: the engine rings A; once A answers it rings B; A and B then hear each other
/// (a 500 Hz tone from A reaches B, 1400 Hz from B reaches A). `DELETE` ends both.
#[test]
fn originate_rings_a_then_b_and_bridges_audio_both_ways() {
    let engine = Engine::start(TRUSTED);
    let mut a = Phone::callee(PhoneCodec::Pcmu, true);
    let mut b = Phone::callee(PhoneCodec::Pcmu, true);
    let (from, to) = (
        format!("sip:alice@{}", a.sip_addr()),
        format!("sip:bob@{}", b.sip_addr()),
    );
    let created = api(
        &engine,
        "POST",
        "/api/v1/calls",
        Some(json!({ "from": from, "to": to })),
    );
    assert_eq!(created["kind"], "originate", "{created}");
    let id = created["id"].as_u64().expect("id");
    assert!(a.wait_answered(Duration::from_secs(10)), "A rung first");
    assert!(b.wait_answered(Duration::from_secs(10)), "then B");
    // B saw A as the caller.
    let b_from = b.incoming_header("From").join(",");
    assert!(b_from.contains("alice"), "From at B: {b_from}");
    let call = wait_for(&engine, |c| c["id"] == id && c["state"] == "bridged");
    assert_eq!(call["legs"].as_array().map(Vec::len), Some(2), "{call}");

    let b_side = std::thread::spawn(move || {
        let heard = b.talk_and_listen(&sine(1400.0, 1.0, 8000), Duration::from_secs(3));
        (heard, b)
    });
    let heard_a = a.talk_and_listen(&sine(500.0, 1.0, 8000), Duration::from_secs(3));
    let (heard_b, b) = b_side.join().expect("B thread");
    // The last two seconds: after ringback stopped and both streams latched.
    let tail = |v: &[i16]| v[v.len().saturating_sub(16000)..].to_vec();
    assert!(
        hears(&tail(&heard_a), 1400.0),
        "A heard B ({} samples, {:.1} dBFS)",
        heard_a.len(),
        level_dbfs(&heard_a)
    );
    assert!(
        hears(&tail(&heard_b), 500.0),
        "B heard A ({} samples, {:.1} dBFS)",
        heard_b.len(),
        level_dbfs(&heard_b)
    );

    api(&engine, "DELETE", &format!("/api/v1/calls/{id}"), None);
    assert!(a.wait_bye(Duration::from_secs(5)), "A got BYE");
    assert!(b.wait_bye(Duration::from_secs(5)), "B got BYE");
    wait_empty(&engine);
    let cdrs = wait_cdrs(&engine, 1);
    assert_eq!(cdrs[0]["cause"], "api", "{cdrs:?}");
    assert_eq!(cdrs[0]["call_id"], format!("originate-{id}"), "{cdrs:?}");
}

/// Test 2b: Originate from a registered user (by name): the engine rings the user's Contact, then
/// the URI; the second endpoint hanging up ends the first (BYE, CDR `normal_clearing`).
#[test]
fn originate_from_a_registered_user_and_far_hang_up() {
    let engine = Engine::start(TRUSTED);
    engine.add_user("2001", "pw2001");
    let a = Phone::callee(PhoneCodec::Pcmu, true);
    let mut b = Phone::callee(PhoneCodec::Pcmu, true);
    assert_eq!(register(&engine, "2001", "pw2001", a.sip_addr(), 300), 200);
    let created = api(
        &engine,
        "POST",
        "/api/v1/calls",
        Some(
            json!({ "from": "2001", "to": format!("sip:bob@{}", b.sip_addr()), "timeout_secs": 20 }),
        ),
    );
    let id = created["id"].as_u64().expect("id");
    assert!(a.wait_answered(Duration::from_secs(10)), "the user rung");
    assert!(b.wait_answered(Duration::from_secs(10)), "then the URI");
    wait_for(&engine, |c| c["id"] == id && c["state"] == "bridged");
    b.hang_up_incoming();
    assert!(a.wait_bye(Duration::from_secs(5)), "A released");
    wait_empty(&engine);
    let cdrs = wait_cdrs(&engine, 1);
    assert_eq!(cdrs[0]["cause"], "normal_clearing", "{cdrs:?}");
}

/// Test 3: Blind transfer of leg b: the callee gets a REFER to the target; once it accepts, the
/// engine ends the call (both BYEs, CDR `transferred`).
#[test]
fn transfer_refers_the_leg_and_ends_the_call() {
    let callee = Phone::callee(PhoneCodec::Pcmu, true);
    let (engine, _dir) = engine_dialling(&callee);
    let (phone, call) = bridged_call(&engine, &callee);
    let id = call["id"].as_u64().expect("id");
    let r = api(
        &engine,
        "POST",
        &format!("/api/v1/calls/{id}/transfer"),
        Some(json!({ "to": "sip:2000@127.0.0.1:5999", "leg": "b" })),
    );
    assert_eq!(r["state"], "referring", "{r}");
    assert!(callee.wait_bye(Duration::from_secs(5)), "callee released");
    assert!(phone.wait_bye(Duration::from_secs(5)), "caller released");
    let refer = callee
        .requests()
        .into_iter()
        .find(|(m, _)| m == "REFER")
        .and_then(|(_, to)| to);
    assert_eq!(refer.as_deref(), Some("<sip:2000@127.0.0.1:5999>"));
    assert!(
        !phone.requests().iter().any(|(m, _)| m == "REFER"),
        "only leg b was referred"
    );
    let cdrs = wait_cdrs(&engine, 1);
    assert_eq!(cdrs[0]["cause"], "transferred", "{cdrs:?}");
}

/// Test 4: Recording started and stopped through the API: a stereo WAV with the caller's tone on
/// the left; a second start is 409, a stop when not recording is 409.
#[test]
fn recording_start_stop_writes_a_file_with_audio() {
    let callee = Phone::callee(PhoneCodec::Pcmu, true);
    let (engine, _dir) = engine_dialling(&callee);
    let (mut phone, call) = bridged_call(&engine, &callee);
    let id = call["id"].as_u64().expect("id");
    let path = format!("/api/v1/calls/{id}/recording");
    refused(
        &engine,
        "POST",
        &path,
        Some(json!({ "action": "stop" })),
        409,
    );
    let r = api(&engine, "POST", &path, Some(json!({ "action": "start" })));
    assert_eq!(r["recording"], true, "{r}");
    let listed = wait_for(&engine, |c| c["id"] == id);
    assert_eq!(listed["recording"], true, "{listed}");
    refused(
        &engine,
        "POST",
        &path,
        Some(json!({ "action": "start" })),
        409,
    );
    phone.speak(&sine(500.0, 2.0, 8000));
    let r = api(&engine, "POST", &path, Some(json!({ "action": "stop" })));
    let file = PathBuf::from(r["path"].as_str().expect("path"));
    assert!(r["duration_ms"].as_u64().unwrap_or(0) >= 1000, "{r}");
    let (rate, left) = left_channel(&file);
    assert_eq!(rate, 8000);
    assert!(
        hears_at(&left, rate, 500.0),
        "the caller's tone is in the file ({:.1} dBFS)",
        level_dbfs(&left)
    );
    phone.hang_up();
}

fn left_channel(path: &Path) -> (u32, Vec<i16>) {
    let mut r = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let spec = r.spec();
    assert_eq!(spec.channels, 2, "stereo");
    let all: Vec<i16> = r.samples::<i16>().map(|s| s.expect("sample")).collect();
    (spec.sample_rate, all.chunks(2).map(|c| c[0]).collect())
}

fn hears_at(pcm: &[i16], rate: u32, freq: f64) -> bool {
    let p = tone_power(pcm, rate, freq);
    p > 100.0 && p > 10.0 * tone_power(pcm, rate, 2345.0)
}

/// Test 5: Play: a prompt file (a 1000 Hz tone) played into leg a reaches the caller, then TTS
/// text does.
#[test]
fn play_reaches_the_phone() {
    let callee = Phone::callee(PhoneCodec::Pcmu, true);
    let (engine, dir) = engine_dialling(&callee);
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(dir.join("tone.wav"), spec).expect("wav");
    for s in sine(1000.0, 2.0, 8000) {
        w.write_sample(s).expect("sample");
    }
    w.finalize().expect("wav");
    let (mut phone, call) = bridged_call(&engine, &callee);
    let id = call["id"].as_u64().expect("id");
    let r = api(
        &engine,
        "POST",
        &format!("/api/v1/calls/{id}/play"),
        Some(json!({ "prompt": "tone.wav", "leg": "a" })),
    );
    assert_eq!(r["playing"], true, "{r}");
    assert!(r["duration_ms"].as_u64().unwrap_or(0) >= 1900, "{r}");
    let heard = phone.listen(Duration::from_millis(1500));
    assert!(
        hears(&heard, 1000.0),
        "the caller heard the prompt ({} samples, {:.1} dBFS)",
        heard.len(),
        level_dbfs(&heard)
    );
    // TTS (flite): speech reaches the caller.
    let r = api(
        &engine,
        "POST",
        &format!("/api/v1/calls/{id}/play"),
        Some(json!({ "say": "Your call is being transferred." })),
    );
    assert!(r["duration_ms"].as_u64().unwrap_or(0) > 500, "{r}");
    let heard = phone.listen(Duration::from_millis(1500));
    assert!(
        level_dbfs(&heard) > -40.0,
        "the caller heard speech ({:.1} dBFS)",
        level_dbfs(&heard)
    );
    // A prompt that does not exist: 422 naming the field.
    let e = refused(
        &engine,
        "POST",
        &format!("/api/v1/calls/{id}/play"),
        Some(json!({ "prompt": "missing.wav" })),
        422,
    );
    assert_eq!(e["field"], "prompt");
    phone.hang_up();
}

/// Test 6: DTMF: digits sent into leg b arrive at the callee as RFC 4733 events, in order.
#[test]
fn dtmf_digits_arrive_as_rfc4733_events() {
    let callee = Phone::callee(PhoneCodec::Pcmu, true);
    let (engine, _dir) = engine_dialling(&callee);
    let (mut phone, call) = bridged_call(&engine, &callee);
    let id = call["id"].as_u64().expect("id");
    let r = api(
        &engine,
        "POST",
        &format!("/api/v1/calls/{id}/dtmf"),
        Some(json!({ "digits": "12#", "leg": "b" })),
    );
    assert_eq!(r["digits"], "12#", "{r}");
    callee.listen(Duration::from_secs(3));
    assert_eq!(callee.digits(), vec!['1', '2', '#']);
    phone.hang_up();
}

/// Test 7: Bad input: 400/422 naming the field, 404 for unknown calls, 409 for a leg that is not
/// answered yet (an originate whose first endpoint never answers); `DELETE` of that ringing call
/// cancels it.
#[test]
fn bad_inputs_unknown_calls_and_wrong_states() {
    let engine = Engine::start(TRUSTED);
    for path in ["/api/v1/calls/999999", "/api/v1/calls/abc"] {
        let e = refused(&engine, "GET", path, None, 404);
        assert_eq!(e["field"], "id");
        refused(&engine, "DELETE", path, None, 404);
    }
    refused(
        &engine,
        "POST",
        "/api/v1/calls/999999/dtmf",
        Some(json!({ "digits": "1" })),
        404,
    );
    let cases = [
        (json!({}), 400, "from"),
        (json!({ "from": "alice" }), 400, "to"),
        (
            json!({ "from": "a", "to": "b", "colour": 1 }),
            400,
            "colour",
        ),
        (json!({ "from": 5, "to": "b" }), 400, "from"),
        (json!({ "from": "a b", "to": "b" }), 422, "from"),
        (
            json!({ "from": "sip:a@example.com", "to": "b" }),
            422,
            "from",
        ),
        (
            json!({ "from": "sip:a@127.0.0.1:5999", "to": "b", "timeout_secs": 0 }),
            422,
            "timeout_secs",
        ),
        (
            json!({ "from": "sip:a@127.0.0.1:5999", "to": "b", "caller_id": "x" }),
            422,
            "caller_id",
        ),
        (
            json!({ "from": "sip:a@127.0.0.1:5999", "to": "nobody" }),
            422,
            "to",
        ),
        (
            json!({ "from": "nobody", "to": "sip:a@127.0.0.1:5999" }),
            422,
            "from",
        ),
    ];
    for (body, status, field) in cases {
        let e = refused(&engine, "POST", "/api/v1/calls", Some(body.clone()), status);
        assert_eq!(e["field"], field, "{body}: {e}");
    }
    let (status, _) = http_json(engine.http_addr(), "POST", "/api/v1/calls", None).expect("answer");
    assert_eq!(status, 400, "an empty body");

    // A call whose first endpoint never answers (nothing listens there): it rings.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let created = api(
        &engine,
        "POST",
        "/api/v1/calls",
        Some(
            json!({ "from": format!("sip:a@{}", silent.local_addr().expect("addr")), "to": "sip:b@127.0.0.1:5999" }),
        ),
    );
    let id = created["id"].as_u64().expect("id");
    assert_eq!(created["state"], "ringing", "{created}");
    let base = format!("/api/v1/calls/{id}");
    let e = refused(
        &engine,
        "POST",
        &format!("{base}/dtmf"),
        Some(json!({ "digits": "1", "leg": "a" })),
        409,
    );
    assert!(
        e["error"].as_str().unwrap_or("").contains("not answered"),
        "{e}"
    );
    refused(
        &engine,
        "POST",
        &format!("{base}/transfer"),
        Some(json!({ "to": "sip:x@127.0.0.1" })),
        409,
    );
    refused(
        &engine,
        "POST",
        &format!("{base}/play"),
        Some(json!({ "say": "hello" })),
        409,
    );
    let field_cases = [
        ("dtmf", json!({ "digits": "12x" }), 422, "digits"),
        ("dtmf", json!({ "digits": "" }), 422, "digits"),
        ("dtmf", json!({ "digits": "1", "leg": "c" }), 422, "leg"),
        (
            "dtmf",
            json!({ "digits": "1", "duration_ms": 5 }),
            422,
            "duration_ms",
        ),
        ("dtmf", json!({ "leg": "a" }), 400, "digits"),
        ("recording", json!({ "action": "pause" }), 422, "action"),
        ("recording", json!({ "action": 1 }), 400, "action"),
        ("play", json!({}), 422, "prompt"),
        (
            "play",
            json!({ "say": "hi", "url": "http://127.0.0.1/x.wav" }),
            422,
            "prompt",
        ),
        ("play", json!({ "prompt": "../etc/passwd" }), 422, "prompt"),
        ("play", json!({ "url": "ftp://x" }), 422, "url"),
        (
            "play",
            json!({ "prompt": "a.wav", "voice": "kal" }),
            422,
            "voice",
        ),
        ("transfer", json!({ "to": "" }), 422, "to"),
        ("transfer", json!({ "to": "<sip:x@y>" }), 422, "to"),
        (
            "transfer",
            json!({ "to": "sip:x@127.0.0.1", "leg": "z" }),
            422,
            "leg",
        ),
    ];
    for (action, body, status, field) in field_cases {
        let e = refused(
            &engine,
            "POST",
            &format!("{base}/{action}"),
            Some(body.clone()),
            status,
        );
        assert_eq!(e["field"], field, "{action} {body}: {e}");
    }
    api(&engine, "DELETE", &base, None);
    wait_empty(&engine);
    let cdrs = wait_cdrs(&engine, 1);
    assert_eq!(cdrs[0]["cause"], "api", "{cdrs:?}");
    // The health endpoint is untouched by all this.
    assert_eq!(
        http_get(engine.http_addr(), "/health").map(|r| r.0),
        Some(200)
    );
}
