//! Media through real calls: in-band DTMF (sox-generated tone pairs) detected by the engine,
//! SIP INFO ↔ RFC 4733 conversion between two legs, and a whole-call recording
//! (`record_session`) whose stereo channels hold the caller (left) and the callee (right).
//!
//! Peers: the test's own [`Phone`] (caller, or callee waiting for the engine's INVITE) where
//! audio or RFC 4733 events must be checked, SIPp where SIP INFO must be sent and checked.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use switchboard_tests::phone::{level_dbfs, Phone, PhoneCodec};
use switchboard_tests::{free_port, sipp, sipp_scenario, stop_wrapped, wait_cdrs, Engine, SippUas};

const TRUSTED: &str = "[calls]\ntrusted_sources = [\"127.0.0.1\"]\n";

/// Starts an engine with `plan` as its dialplan file.
fn engine_with_plan(plan: &str) -> Engine {
    let dir = tempfile::tempdir().expect("temp dir").keep();
    let file = dir.join("plan.yaml");
    std::fs::write(&file, plan).expect("write plan");
    let cfg = format!(
        "{TRUSTED}[dialplan]\nfile = \"{}\"\nwatch_secs = 0\n",
        file.display()
    );
    Engine::start(&cfg)
}

/// Waits up to `secs` for a process started by [`sipp`] to exit; true when it exited 0. Stops
/// it otherwise.
fn exited_ok(child: &mut std::process::Child, secs: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return status.success();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    stop_wrapped(child);
    false
}

/// Reads a mono 16-bit WAV.
fn read_wav(path: &Path) -> (u32, Vec<i16>) {
    let mut r = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let rate = r.spec().sample_rate;
    let samples = r.samples::<i16>().map(|s| s.expect("sample")).collect();
    (rate, samples)
}

/// Magnitude of the `freq` component of `pcm` (a single DFT bin, phase-independent),
/// normalised by the length.
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

/// A DTMF key press as a sox-generated WAV (the two sines of the key mixed, 250 ms, peak
/// −8 dBFS, 8 kHz), returned as samples.
fn sox_dtmf(key: char, dir: &Path) -> Vec<i16> {
    let (low, high) = match key {
        '1' => (697, 1209),
        '2' => (697, 1336),
        '3' => (697, 1477),
        '4' => (770, 1209),
        '5' => (770, 1336),
        '6' => (770, 1477),
        '7' => (852, 1209),
        '8' => (852, 1336),
        '9' => (852, 1477),
        '0' => (941, 1336),
        _ => panic!("no tone pair for {key}"),
    };
    let path = dir.join(format!("dtmf-{key}.wav"));
    let status = Command::new("sox")
        .args(["-n", "-r", "8000", "-b", "16", "-c", "1"])
        .arg(&path)
        .args(["synth", "0.25", "sine", &low.to_string()])
        .args(["synth", "0.25", "sine", "mix", &high.to_string()])
        .args(["gain", "-n", "-8"])
        .status()
        .expect("run sox (make test installs it)");
    assert!(status.success(), "sox failed");
    let (rate, pcm) = read_wav(&path);
    assert_eq!(rate, 8000);
    // The file holds the key's two tones and not the neighbouring ones.
    let p = |f: f64| tone_power(&pcm, rate, f);
    let (lo, hi) = (p(f64::from(low)), p(f64::from(high)));
    for other in [697, 770, 852, 941, 1209, 1336, 1477] {
        if other != low && other != high {
            assert!(
                p(f64::from(other)) * 10.0 < lo.min(hi),
                "sox made a clean pair"
            );
        }
    }
    pcm
}

/// A sine at `freq` Hz, `secs` long, at `rate`, amplitude 8000.
fn sine(freq: f64, secs: f64, rate: u32) -> Vec<i16> {
    let n = (secs * f64::from(rate)) as usize;
    (0..n)
        .map(|i| {
            (8000.0 * (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate)).sin()) as i16
        })
        .collect()
}

/// a. A phone that offers PCMU without telephone-event keys 5 as a sox-generated tone pair in
/// its audio: the engine's Goertzel detector hears it and the menu routes the call to the
/// target of 5.
#[test]
fn inband_digit_routes_the_call() {
    let five = SippUas::start(1);
    let plan = format!(
        r#"timezone: UTC
contexts:
  default:
    rules:
      - name: menu
        called: 700
        actions:
          - answer
          - gather: {{ max: 1, timeout: 10 }}
          - branch:
              on: gather
              cases:
                "5":
                  - dial: sip:five@127.0.0.1:{}
              default:
                - hangup
"#,
        five.addr().port()
    );
    let engine = engine_with_plan(&plan);
    let dir = tempfile::tempdir().expect("temp dir");
    let key = sox_dtmf('5', dir.path());
    let mut phone = Phone::call_with(engine.sip_addr(), "700", PhoneCodec::Pcmu, false);
    assert_eq!(phone.status(), Some(200), "log:\n{}", engine.log());
    let answer = phone.remote_sdp().unwrap_or_default();
    assert!(
        !answer.contains("telephone-event"),
        "no telephone-event was offered, none answered:\n{answer}"
    );
    // Silence, the key, silence: the digit can only be heard in the audio.
    phone.speak(&vec![0; 4000]);
    phone.speak(&key);
    phone.speak(&vec![0; 4000]);
    // Dialled and bridged; stay a moment, then hang up.
    let _ = phone.listen(Duration::from_secs(2));
    phone.hang_up();
    assert!(
        five.finished_ok(20),
        "the target of 5 got the call; log:\n{}",
        engine.log()
    );
    let cdrs = wait_cdrs(&engine, 1);
    assert_eq!(cdrs[0]["sip_code"], 200, "{cdrs:?}");
}

/// b. Caller with telephone-event (the test's phone), callee without it that speaks SIP INFO
/// (SIPp, `uas_info_dtmf.xml`), bridged by the engine: the callee's INFO `Signal=7` reaches the
/// caller as RFC 4733 events for 7 (not as an INFO), and the caller's RFC 4733 press of 3
/// reaches the callee as an INFO `Signal=3` (the scenario fails otherwise).
#[test]
fn info_and_rfc4733_are_converted_between_legs() {
    let port = free_port();
    let sf = sipp_scenario("uas_info_dtmf.xml").display().to_string();
    let (port_s, media) = (port.to_string(), free_port().to_string());
    let mut callee = sipp(
        &[
            "-sf",
            &sf,
            "-i",
            "127.0.0.1",
            "-p",
            &port_s,
            "-mp",
            &media,
            "-m",
            "1",
        ],
        90,
    );
    std::thread::sleep(Duration::from_millis(300));
    let plan = format!(
        r#"contexts:
  default:
    rules:
      - name: bridge
        called: 720
        actions:
          - answer
          - dial: sip:callee@127.0.0.1:{port}
"#
    );
    let engine = engine_with_plan(&plan);
    let mut phone = Phone::call(engine.sip_addr(), "720", PhoneCodec::Pcmu);
    assert_eq!(phone.status(), Some(200), "log:\n{}", engine.log());
    // The callee answers, waits 1 s and sends its INFO: listen until the digit arrives,
    // sending silence meanwhile as a real phone does (its RTP latches the relay).
    for _ in 0..30 {
        let _ = phone.listen(Duration::from_millis(500));
        if !phone.digits().is_empty() || phone.got_bye() {
            break;
        }
    }
    assert_eq!(
        phone.digits(),
        ['7'],
        "the INFO became RFC 4733 events for 7 (INFOs received instead: {:?}); log:\n{}",
        phone.infos(),
        engine.log()
    );
    assert!(phone.infos().is_empty(), "{:?}", phone.infos());
    phone.press('3');
    let _ = phone.listen(Duration::from_secs(1));
    phone.hang_up();
    assert!(
        exited_ok(&mut callee, 30),
        "the callee got an INFO with Signal=3 and the BYE; log:\n{}",
        engine.log()
    );
    let cdrs = wait_cdrs(&engine, 1);
    assert_eq!(cdrs[0]["sip_code"], 200, "{cdrs:?}");
}

/// The recordings indexed for `call_id`, read from the engine's SQLite database.
fn recordings(engine: &Engine, call_id: &str) -> Vec<switchboard_storage::Recording> {
    let url = format!(
        "sqlite://{}",
        engine.dir.path().join("data/switchboard.db").display()
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let s = switchboard_storage::Storage::connect(&url)
            .await
            .expect("open the engine's database");
        let r = s.recordings_for_call(call_id).await.expect("recordings");
        s.close().await;
        r
    })
}

/// Waits (up to 10 s) for the call's recording to be indexed (its file is complete then).
fn wait_recording(engine: &Engine, call_id: &str) -> Vec<switchboard_storage::Recording> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = recordings(engine, call_id);
        if !got.is_empty() || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Splits a stereo WAV into its channels.
fn channels(path: &Path) -> (u32, Vec<i16>, Vec<i16>) {
    let mut r = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let spec = r.spec();
    assert_eq!(spec.channels, 2, "a stereo file");
    let all: Vec<i16> = r.samples::<i16>().map(|s| s.expect("sample")).collect();
    let left = all.iter().step_by(2).copied().collect();
    let right = all.iter().skip(1).step_by(2).copied().collect();
    (spec.sample_rate, left, right)
}

/// c. `record_session` then `dial`: the caller (test phone) speaks a 500 Hz tone while the
/// callee (a second test phone, called by the engine) speaks a 1400 Hz tone. The call's stereo
/// recording, named in the CDR and indexed in `recordings`, has the caller's tone on the left
/// only and the callee's on the right only.
#[test]
fn recorded_call_has_caller_left_and_callee_right() {
    const CALLER_HZ: f64 = 500.0;
    const CALLEE_HZ: f64 = 1400.0;
    let mut callee = Phone::callee(PhoneCodec::Pcmu, true);
    let plan = format!(
        r#"contexts:
  default:
    rules:
      - name: recorded
        called: 730
        actions:
          - record_session: {{ to: "calls/${{call_id}}.wav" }}
          - dial: sip:callee@{}
"#,
        callee.sip_addr()
    );
    let engine = engine_with_plan(&plan);
    let callee_side = std::thread::spawn(move || {
        let answered = callee.wait_answered(Duration::from_secs(20));
        if answered {
            callee.speak(&sine(CALLEE_HZ, 3.0, 8000));
        }
        (answered, callee)
    });
    let mut phone = Phone::call(engine.sip_addr(), "730", PhoneCodec::Pcmu);
    assert_eq!(phone.status(), Some(200), "log:\n{}", engine.log());
    phone.speak(&sine(CALLER_HZ, 3.0, 8000));
    let (answered, callee) = callee_side.join().expect("callee thread");
    assert!(
        answered,
        "the engine called the callee; log:\n{}",
        engine.log()
    );
    phone.hang_up();
    assert!(
        callee.wait_bye(Duration::from_secs(5)),
        "the engine hung up the callee"
    );

    let cdrs = wait_cdrs(&engine, 1);
    let call_id = cdrs[0]["call_id"]
        .as_str()
        .expect("CDR call id")
        .to_string();
    let path = PathBuf::from(
        cdrs[0]["recording"]
            .as_str()
            .unwrap_or_else(|| panic!("the CDR names the recording: {cdrs:?}")),
    );
    assert!(
        path.starts_with(engine.dir.path().join("data/recordings/calls")),
        "{}",
        path.display()
    );
    let index = wait_recording(&engine, &call_id);
    assert_eq!(index.len(), 1, "one recording indexed: {index:?}");
    assert_eq!(PathBuf::from(&index[0].path), path);
    assert_eq!(index[0].channels, 2);
    assert_eq!(index[0].legs, "caller,callee");

    let (rate, left, right) = channels(&path);
    let secs = left.len() as f64 / f64::from(rate);
    assert!(secs > 2.0, "{secs} s recorded");
    assert!(
        level_dbfs(&left) > -35.0,
        "the caller is in the left channel"
    );
    assert!(
        level_dbfs(&right) > -35.0,
        "the callee is in the right channel"
    );
    let (l_caller, l_callee) = (
        tone_power(&left, rate, CALLER_HZ),
        tone_power(&left, rate, CALLEE_HZ),
    );
    let (r_caller, r_callee) = (
        tone_power(&right, rate, CALLER_HZ),
        tone_power(&right, rate, CALLEE_HZ),
    );
    assert!(
        l_caller > 10.0 * l_callee,
        "left = caller: {CALLER_HZ} Hz {l_caller:.1} vs {CALLEE_HZ} Hz {l_callee:.1}"
    );
    assert!(
        r_callee > 10.0 * r_caller,
        "right = callee: {CALLEE_HZ} Hz {r_callee:.1} vs {CALLER_HZ} Hz {r_caller:.1}"
    );
}
