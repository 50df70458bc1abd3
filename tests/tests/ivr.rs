//! Dialplans and IVR end to end: a running engine with a plan file, real callers (SIPp, or the
//! test's own phone when the test must hear or speak audio), real flite prompts and pocketsphinx
//! recognition, a real HTTP server for the webhook plan, and hot reloads under load.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard_tests::phone::{level_dbfs, Phone, PhoneCodec};
use switchboard_tests::{free_port, sipp, sipp_scenario, wait_cdrs, Engine, SippUas};

const TRUSTED: &str = "[calls]\ntrusted_sources = [\"127.0.0.1\"]\n";

/// The IVR of the demo plan, with the menu targets pointed at test callees.
fn menu_plan(support: u16, billing: u16) -> String {
    format!(
        r#"timezone: UTC
contexts:
  default:
    rules:
      - name: ivr
        called: 700
        actions:
          - answer
          - label: menu
          - gather:
              prompt:
                say: Press 1 or say billing for billing. Press 2 or say support for technical support.
              max: 1
              timeout: 6
              speech: [billing, support]
          - branch:
              on: gather
              cases:
                "1|billing":
                  - dial: sip:billing@127.0.0.1:{billing}
                "2|support":
                  - dial: sip:support@127.0.0.1:{support}
              default:
                - goto: {{ label: menu, max: 1, otherwise: [ hangup ] }}
"#
    )
}

/// Starts an engine with `plan` written to a file (returned for reloads).
fn engine_with_plan(plan: &str, extra: &str) -> (Engine, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir").keep();
    let file = dir.join("plan.yaml");
    std::fs::write(&file, plan).expect("write plan");
    let cfg = format!(
        "{TRUSTED}[dialplan]\nfile = \"{}\"\nwatch_secs = 0\n{extra}",
        file.display()
    );
    (Engine::start(&cfg), file)
}

fn write_scenario(dir: &Path, name: &str, replace: &[(&str, &str)]) -> PathBuf {
    let mut text = std::fs::read_to_string(sipp_scenario(name)).expect("scenario");
    for (k, v) in replace {
        text = text.replace(k, v);
    }
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write scenario");
    path
}

fn run_sipp_caller(engine: &Engine, scenario: &Path, service: &str, secs: u32) -> bool {
    let target = engine.sip_addr().to_string();
    let port = free_port().to_string();
    let media = free_port().to_string();
    let sf = scenario.display().to_string();
    let mut child = sipp(
        &[
            "-sf",
            &sf,
            &target,
            "-s",
            service,
            "-i",
            "127.0.0.1",
            "-p",
            &port,
            "-mp",
            &media,
            "-m",
            "1",
            "-recv_timeout",
            "15000",
        ],
        secs,
    );
    child.wait().expect("sipp").success()
}

/// SIPp calls the IVR, waits for the menu, presses 2 (SIPp's own RFC 4733 pcap): the call
/// lands on the support callee, not on billing.
#[test]
fn rfc4733_digit_routes_to_support() {
    let support = SippUas::start(1);
    let billing_port = free_port();
    let (engine, _) = engine_with_plan(&menu_plan(support.addr().port(), billing_port), "");
    let dir = tempfile::tempdir().expect("temp dir");
    let sf = write_scenario(
        dir.path(),
        "uac_ivr_dtmf.xml",
        &[
            ("@PCAP@", "/usr/share/sip-tester/dtmf_2833_2.pcap"),
            ("@HOLD_MS@", "3000"),
        ],
    );
    assert!(
        run_sipp_caller(&engine, &sf, "700", 40),
        "SIPp caller failed; engine log:\n{}",
        engine.log()
    );
    assert!(
        support.finished_ok(20),
        "the support callee got the call; log:\n{}",
        engine.log()
    );
    let cdrs = wait_cdrs(&engine, 1);
    assert_eq!(cdrs[0]["sip_code"], 200, "{cdrs:?}");
    assert_eq!(cdrs[0]["cause"], "normal_clearing", "{cdrs:?}");
}

/// The test's phone hears the flite menu, says "support" (flite, 16 kHz G.722 leg): the
/// recogniser routes the call to the support callee.
#[test]
fn spoken_support_routes_through_asr() {
    let support = SippUas::start(1);
    let (engine, _) = engine_with_plan(&menu_plan(support.addr().port(), free_port()), "");
    let mut phone = Phone::call(engine.sip_addr(), "700", PhoneCodec::G722);
    assert_eq!(phone.status(), Some(200), "log:\n{}", engine.log());
    let menu = phone.listen(Duration::from_secs(2));
    assert!(
        level_dbfs(&menu) > -45.0,
        "the menu prompt is heard ({:.1} dBFS over {} samples)",
        level_dbfs(&menu),
        menu.len()
    );
    let speech = flite("support", 16000);
    phone.speak(&speech);
    // Silence after the word ends the utterance.
    phone.speak(&vec![0; 16000]);
    // Recognised → dialled → bridged; stay a moment on the bridged call, then hang up.
    let _ = phone.listen(Duration::from_secs(3));
    phone.hang_up();
    assert!(
        support.finished_ok(20),
        "the support callee got the call; log:\n{}",
        engine.log()
    );
    let cdrs = wait_cdrs(&engine, 1);
    assert_eq!(cdrs[0]["sip_code"], 200, "{cdrs:?}");
    assert!(
        engine.log().contains("speech recognised"),
        "{}",
        engine.log()
    );
}

/// Renders `text` with flite (kal16) and returns it at `rate`.
fn flite(text: &str, rate: u32) -> Vec<i16> {
    let dir = tempfile::tempdir().expect("temp dir");
    let tts = switchboard_media::tts::FliteTts::new(dir.path().to_path_buf());
    use switchboard_media::tts::Tts;
    tts.render(text, None, rate)
        .expect("flite renders (make test installs it)")
        .samples
        .to_vec()
}

/// An out-of-hours call gets the closed message (heard and recognised by the test) and is hung
/// up by the engine.
#[test]
fn out_of_hours_call_hears_the_closed_message() {
    // Today is a holiday in this calendar, so the office is closed whatever the hour.
    let today = {
        let out = std::process::Command::new("date")
            .args(["-u", "+%Y-%m-%d"])
            .output()
            .expect("date");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let plan = format!(
        r#"timezone: UTC
calendars:
  office:
    hours:
      mon-sun: 00:00-23:59
    holidays: [ "{today}" ]
contexts:
  default:
    rules:
      - name: ivr
        called: 700
        actions:
          - answer
          - business_hours:
              calendar: office
              open:
                - say: Welcome to the office.
                - hangup
              closed:
                - say: We are closed.
                - hangup
"#
    );
    let (engine, _) = engine_with_plan(&plan, "");
    let phone = Phone::call(engine.sip_addr(), "700", PhoneCodec::Pcmu);
    assert_eq!(phone.status(), Some(200), "log:\n{}", engine.log());
    let heard = phone.listen(Duration::from_secs(8));
    assert!(
        phone.wait_bye(Duration::from_secs(5)),
        "the engine hangs up"
    );
    assert!(level_dbfs(&heard) > -45.0, "a message was played");
    let text = recognise(&heard, 8000, &["we are closed", "welcome to the office"]);
    assert_eq!(text.as_deref(), Some("we are closed"), "heard {text:?}");
    let cdrs = wait_cdrs(&engine, 1);
    assert_eq!(cdrs[0]["sip_code"], 200);
}

/// Runs pocketsphinx on audio at `rate` with a phrase grammar.
fn recognise(pcm: &[i16], rate: u32, phrases: &[&str]) -> Option<String> {
    use switchboard_media::asr::{AsrEngine, AsrEvent, Grammar, PocketSphinx};
    let clip = switchboard_media::Pcm::new(rate, pcm.to_vec())
        .resampled(16000)
        .expect("resample");
    let engine = PocketSphinx::new().expect("pocketsphinx model (make test installs it)");
    let mut rec = engine
        .start(Some(&Grammar::phrases(phrases)), None)
        .expect("recogniser");
    let mut events = Vec::new();
    for frame in clip.samples.chunks(320) {
        events.extend(rec.push(frame));
    }
    events.extend(rec.push(&vec![0; 16000]));
    events.extend(rec.finish());
    events.into_iter().find_map(|e| match e {
        AsrEvent::Final { text, .. } => Some(text),
        _ => None,
    })
}

/// A tiny HTTP server answering every request with `body`; records the requests it got.
fn webhook_server(body: String) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten().take(16) {
            let mut conn = conn;
            conn.set_read_timeout(Some(Duration::from_secs(5))).ok();
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            // Read the head, then Content-Length bytes of body.
            while let Ok(n) = conn.read(&mut buf) {
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&req).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len = text
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if req.len() >= end + 4 + len {
                        break;
                    }
                }
            }
            log.lock()
                .expect("lock")
                .push(String::from_utf8_lossy(&req).into_owned());
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(reply.as_bytes());
        }
    });
    (port, seen)
}

/// A webhook-driven plan: the application answers with JSON actions that dial the callee.
#[test]
fn webhook_plan_routes_with_json_actions() {
    let callee = SippUas::start(1);
    let actions = format!(
        r#"[{{"dial": "sip:agent@127.0.0.1:{}"}}]"#,
        callee.addr().port()
    );
    let (port, seen) = webhook_server(actions);
    let plan = format!(
        r#"contexts:
  default:
    rules:
      - name: app
        called: 800
        actions:
          - webhook: http://127.0.0.1:{port}/dialplan
"#
    );
    let (engine, _) = engine_with_plan(&plan, "");
    let mut caller = switchboard_tests::sipp_uac(&engine, "800", 1, 1, 1, 1000);
    assert!(
        caller.wait().expect("sipp").success(),
        "log:\n{}",
        engine.log()
    );
    assert!(
        callee.finished_ok(20),
        "the callee got the call; log:\n{}",
        engine.log()
    );
    let reqs = seen.lock().expect("lock").clone();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert!(reqs[0].starts_with("POST /dialplan"), "{}", reqs[0]);
    assert!(
        reqs[0].contains("\"800\""),
        "call details sent: {}",
        reqs[0]
    );
}

/// SIPp at 200 calls/s through a plan while the plan file is rewritten and reloaded ten times
/// (and one broken version is refused): no call fails.
#[test]
fn reload_under_load_fails_no_call() {
    let calls = 2000;
    let uas_port = free_port();
    let plan = |greeting: &str| {
        format!(
            r#"vars:
  greeting: {greeting}
contexts:
  default:
    rules:
      - name: through
        called: 900
        actions:
          - set: {{ seen: "${{greeting}}" }}
          - dial: sip:uas@127.0.0.1:{uas_port}
"#
        )
    };
    let (engine, file) = engine_with_plan(&plan("v0"), "");
    let uas = SippUas::on_port(uas_port, calls);
    let mut caller = switchboard_tests::sipp_uac(&engine, "900", calls, 200, 400, 0);
    let cfg = engine.config_path().display().to_string();
    let mut refused = 0;
    for i in 1..=10 {
        std::thread::sleep(Duration::from_millis(800));
        std::fs::write(&file, plan(&format!("v{i}"))).expect("rewrite plan");
        let out = std::process::Command::new(switchboard_tests::bin_path())
            .args(["dialplan", "reload", "--config", &cfg])
            .output()
            .expect("reload");
        assert!(
            out.status.success(),
            "reload {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if i == 5 {
            std::fs::write(&file, "contexts: [ not a plan").expect("break plan");
            let out = std::process::Command::new(switchboard_tests::bin_path())
                .args(["dialplan", "reload", "--config", &cfg])
                .output()
                .expect("reload");
            assert_eq!(out.status.code(), Some(2), "a broken plan is refused");
            refused += 1;
        }
    }
    assert_eq!(refused, 1);
    assert!(
        caller.wait().expect("sipp").success(),
        "some calls failed; log:\n{}",
        engine.log()
    );
    uas.wait();
    let (status, body) =
        switchboard_tests::http_get(engine.http_addr(), "/api/v1/dialplans").expect("status");
    assert_eq!(status, 200);
    assert!(body.contains("\"version\":11"), "{body}");
}

/// A voicemail-style recording: beep, the caller's tone recorded to the recordings folder, the
/// file indexed with the call.
#[test]
fn record_action_writes_the_callers_audio() {
    let plan = r##"contexts:
  default:
    rules:
      - name: voicemail
        called: 500
        actions:
          - answer
          - record: { to: "vm/${call_id}.wav", max_secs: 3, beep: true, terminator: "#" }
          - hangup
"##;
    let (engine, _) = engine_with_plan(plan, "");
    let mut phone = Phone::call(engine.sip_addr(), "500", PhoneCodec::Pcmu);
    assert_eq!(phone.status(), Some(200));
    let beep = phone.listen(Duration::from_millis(500));
    assert!(level_dbfs(&beep) > -40.0, "the beep is heard");
    let tone: Vec<i16> = (0..8000 * 2)
        .map(|i| (8000.0 * (2.0 * std::f64::consts::PI * 1000.0 * i as f64 / 8000.0).sin()) as i16)
        .collect();
    phone.speak(&tone);
    phone.press('#');
    assert!(
        phone.wait_bye(Duration::from_secs(5)),
        "hung up after the recording"
    );
    let cdrs = wait_cdrs(&engine, 1);
    let path = cdrs[0]["recording"]
        .as_str()
        .expect("CDR names the recording")
        .to_string();
    let mut wav = hound::WavReader::open(&path).expect("a WAV file");
    let spec = wav.spec();
    assert_eq!(spec.channels, 2);
    let left: Vec<i16> = wav
        .samples::<i16>()
        .step_by(2)
        .map(|s| s.expect("sample"))
        .collect();
    let secs = left.len() as f64 / f64::from(spec.sample_rate);
    assert!((1.5..3.5).contains(&secs), "{secs} s recorded");
    assert!(
        level_dbfs(&left) > -30.0,
        "the caller's tone is in the left channel"
    );
}

/// Transfers: blind (REFER to the caller, then the engine hangs up) and attended (the engine
/// calls the target with the caller on hold and bridges when it answers; a target that cannot
/// be reached sends the caller back to the plan).
#[test]
fn blind_and_attended_transfers() {
    let agent = SippUas::start(1);
    let plan = format!(
        r#"contexts:
  default:
    rules:
      - name: blind
        called: 310
        actions:
          - answer
          - transfer: sip:sales@127.0.0.1:5999
          - say: The transfer failed.
          - hangup
      - name: attended
        called: 320
        actions:
          - answer
          - transfer: {{ attended: "sip:agent@127.0.0.1:{}" }}
          - hangup
      - name: attended-nobody
        called: 330
        actions:
          - answer
          - transfer: {{ attended: nobody }}
          - say: Nobody is available.
          - hangup
"#,
        agent.addr().port()
    );
    let (engine, _) = engine_with_plan(&plan, "");

    // Blind: the caller gets a REFER naming the target; once accepted the engine hangs up.
    let phone = Phone::call(engine.sip_addr(), "310", PhoneCodec::Pcmu);
    assert_eq!(phone.status(), Some(200));
    assert!(
        phone.wait_bye(Duration::from_secs(5)),
        "hung up after the REFER"
    );
    let reqs = phone.requests();
    let refer = reqs.iter().find(|(m, _)| m == "REFER").expect("a REFER");
    assert_eq!(
        refer.1.as_deref(),
        Some("<sip:sales@127.0.0.1:5999>"),
        "{reqs:?}"
    );

    // Attended: hold music while the agent rings, then the bridge.
    let mut phone = Phone::call(engine.sip_addr(), "320", PhoneCodec::Pcmu);
    assert_eq!(phone.status(), Some(200));
    let _ = phone.listen(Duration::from_secs(2));
    phone.hang_up();
    assert!(
        agent.finished_ok(20),
        "the agent got the transferred call; log:\n{}",
        engine.log()
    );

    // Attended to an unregistered user: back in the plan, which says so and hangs up.
    let phone = Phone::call(engine.sip_addr(), "330", PhoneCodec::Pcmu);
    assert_eq!(phone.status(), Some(200));
    let heard = phone.listen(Duration::from_secs(6));
    assert!(phone.wait_bye(Duration::from_secs(5)), "the plan hung up");
    assert!(
        level_dbfs(&heard) > -45.0,
        "the fallback message was played"
    );
}

/// The plan file is watched: editing it reloads the plan without any command.
#[test]
fn plan_file_change_is_picked_up() {
    let plan = "contexts:\n  default:\n    rules:\n      - actions: [ hangup ]\n";
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("plan.yaml");
    std::fs::write(&file, plan).expect("write");
    let cfg = format!(
        "{TRUSTED}[dialplan]\nfile = \"{}\"\nwatch_secs = 1\n",
        file.display()
    );
    let engine = Engine::start(&cfg);
    let version = || {
        let (_, body) =
            switchboard_tests::http_get(engine.http_addr(), "/api/v1/dialplans").expect("status");
        serde_json::from_str::<serde_json::Value>(&body).expect("JSON")["version"]
            .as_u64()
            .unwrap_or(0)
    };
    assert_eq!(version(), 1);
    // A different size and content: a new modification time whatever the file system's clock
    // granularity.
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(&file, plan.replace("hangup", "answer, hangup")).expect("rewrite");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while version() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(version(), 2, "log:\n{}", engine.log());
    // A broken edit is refused; the plan in force stays at version 2.
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(&file, "contexts: [").expect("break");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(version(), 2);
    assert!(
        engine.log().contains("dialplan refused"),
        "{}",
        engine.log()
    );
}

/// `dial: { trunk, number }` sends the call to the trunk's address with its prefix.
#[test]
fn dial_through_a_trunk() {
    let carrier = SippUas::start(1);
    let plan = r#"contexts:
  default:
    rules:
      - name: out
        called: "_0."
        actions:
          - dial: { trunk: carrier, number: "${called}" }
"#;
    let extra = format!(
        "[trunks.carrier]\naddress = \"127.0.0.1:{}\"\nprefix = \"+33\"\n",
        carrier.addr().port()
    );
    let (engine, _) = engine_with_plan(plan, &extra);
    let mut caller = switchboard_tests::sipp_uac(&engine, "0612345678", 1, 1, 1, 500);
    assert!(
        caller.wait().expect("sipp").success(),
        "log:\n{}",
        engine.log()
    );
    assert!(carrier.finished_ok(20), "the carrier got the call");
    let cdrs = wait_cdrs(&engine, 1);
    assert_eq!(cdrs[0]["sip_code"], 200);
}
