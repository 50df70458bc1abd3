//! A WebRTC browser leg bridged to SIP, end to end: Debian's headless Chromium (driven by
//! `tests/browser/webrtc_sip.js` with playwright-core; fake microphone playing a 1 kHz tone
//! from a WAV file) opens the engine's phone page (`/webrtc`) and calls 740; the dialplan
//! answers and dials our SIP test phone (PCMU only, with RFC 4733), so the engine terminates
//! ICE + DTLS-SRTP + Opus on one side and plain RTP + PCMU on the other, transcoding between.
//!
//! Checked: the SIP phone decodes the browser's tone (audio browser → SIP); the browser's
//! `getStats()` inbound-rtp audio `packetsReceived` rises while the phone speaks (audio SIP →
//! browser); a digit pressed in the browser (RTCDTMFSender) arrives at the phone as RFC 4733;
//! hanging up in the browser sends BYE to the phone; the CDR's Call-ID is the browser leg's id.
//! The engine does not list 127.0.0.1 as trusted: the browser leg is trusted as itself.
//!
//! Needs `chromium` and `tests/browser/node_modules` (`make test` installs both).

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use switchboard_tests::phone::{level_dbfs, Phone, PhoneCodec};
use switchboard_tests::{wait_cdrs, Engine};

/// Longest wait for one step of the script (the box may be loaded).
const STEP: Duration = Duration::from_secs(120);
const TONE_HZ: f64 = 1000.0;

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser")
}

/// The next line the script prints that starts with `want`; other lines are echoed.
fn expect_line(rx: &mpsc::Receiver<String>, want: &str, engine: &Engine) -> String {
    loop {
        let line = rx.recv_timeout(STEP).unwrap_or_else(|_| {
            panic!(
                "the browser script did not say `{want}` in time; engine log:\n{}",
                engine.log()
            )
        });
        eprintln!("browser: {line}");
        assert!(
            !line.starts_with("error"),
            "browser script failed: {line}\nengine log:\n{}",
            engine.log()
        );
        if line.starts_with(want) {
            return line;
        }
    }
}

/// A mono 16-bit 48 kHz WAV of a continuous `hz` tone at −12 dBFS (Chromium loops it).
fn write_tone_wav(path: &std::path::Path, hz: f64, secs: u32) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 48000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("create wav");
    for i in 0..48000 * secs {
        let t = f64::from(i) / 48000.0;
        let s = 8000.0 * (2.0 * std::f64::consts::PI * hz * t).sin();
        w.write_sample(s as i16).expect("write sample");
    }
    w.finalize().expect("finalize wav");
}

fn sine(freq: f64, secs: f64, rate: u32) -> Vec<i16> {
    (0..(secs * f64::from(rate)) as usize)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            (8000.0 * (2.0 * std::f64::consts::PI * freq * t).sin()) as i16
        })
        .collect()
}

/// Goertzel-style power of `freq` in `pcm`.
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

#[test]
fn browser_calls_a_sip_phone_through_the_engine() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} missing: run `make test` (installs Debian chromium)"
    );
    assert!(
        browser_dir().join("node_modules/playwright-core").exists(),
        "tests/browser/node_modules missing: run `make test` (npm ci in tests/browser)"
    );
    let callee = Phone::callee(PhoneCodec::Pcmu, true);
    let dir = tempfile::tempdir().expect("temp dir");
    let plan = dir.path().join("plan.yaml");
    std::fs::write(
        &plan,
        format!(
            "contexts:\n  default:\n    rules:\n      - name: to-phone\n        called: 740\n        \
             actions:\n          - answer\n          - dial: sip:callee@{}\n",
            callee.sip_addr()
        ),
    )
    .expect("write plan");
    let tone = dir.path().join("tone.wav");
    write_tone_wav(&tone, TONE_HZ, 4);
    let engine = Engine::start(&format!(
        "[dialplan]\nfile = \"{}\"\nwatch_secs = 0\n[webrtc]\nallowed_destinations = [\"740\"]\n",
        plan.display()
    ));

    let callee_side = std::thread::spawn(move || {
        let mut callee = callee;
        if !callee.wait_answered(STEP) {
            return (false, Vec::new(), callee);
        }
        // Speaks 440 Hz for 8 s and keeps what it hears.
        let heard = callee.talk_and_listen(&sine(440.0, 1.0, 8000), Duration::from_secs(8));
        (true, heard, callee)
    });

    let node = Command::new("node")
        .arg(browser_dir().join("webrtc_sip.js"))
        .arg(format!("http://{}/webrtc", engine.http_addr()))
        .arg("740")
        .arg(&tone)
        .env("CHROMIUM", &chromium)
        .env("WEBRTC_WAIT_MS", "90000")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run node");
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut node = Reap(node);
    let stdout = node.0.stdout.take().expect("piped stdout");
    let mut stdin = node.0.stdin.take().expect("piped stdin");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    let answered = expect_line(&rx, "answered", &engine);
    let leg_id = answered
        .split(' ')
        .nth(1)
        .expect("leg id")
        .trim()
        .to_string();
    assert!(leg_id.starts_with("wrtc-"), "{answered}");

    // SIP → browser: the browser's inbound audio packet count rose (the script waits for 50).
    let stats = expect_line(&rx, "stats", &engine);
    let figures: Vec<u64> = stats
        .split(' ')
        .skip(1)
        .filter_map(|n| n.parse().ok())
        .collect();
    assert!(figures.len() == 2 && figures[0] >= 50, "{stats}");

    // Browser → SIP: the phone decoded the browser's 1 kHz tone.
    let (ok, heard, callee) = callee_side.join().expect("callee thread");
    assert!(ok, "the engine called the phone; log:\n{}", engine.log());
    let level = level_dbfs(&heard);
    let tone = tone_power(&heard, 8000, TONE_HZ);
    let off = tone_power(&heard, 8000, 1700.0);
    eprintln!(
        "phone heard {} samples, {level:.1} dBFS, 1 kHz {tone:.0} vs 1.7 kHz {off:.0}",
        heard.len()
    );
    assert!(heard.len() > 8000, "audio arrived at the SIP phone");
    assert!(level > -40.0, "audible: {level:.1} dBFS");
    assert!(
        tone > 10.0 * off,
        "the browser's tone: {tone:.0} vs {off:.0}"
    );

    // DTMF: RTCDTMFSender → telephone-event → RFC 4733 at the phone.
    writeln!(stdin, "dtmf 5").expect("to script");
    expect_line(&rx, "dtmf-sent", &engine);
    let _ = callee.listen(Duration::from_secs(3));
    let digits = callee.digits();
    assert!(
        digits.contains(&'5'),
        "digit 5 at the phone, heard {digits:?}"
    );

    // Browser hangs up: BYE at the phone.
    writeln!(stdin, "hangup").expect("to script");
    expect_line(&rx, "ended", &engine);
    assert!(
        callee.wait_bye(Duration::from_secs(20)),
        "BYE reached the phone; log:\n{}",
        engine.log()
    );
    let cdrs = wait_cdrs(&engine, 1);
    assert_eq!(
        cdrs[0]["call_id"].as_str(),
        Some(leg_id.as_str()),
        "{cdrs:?}"
    );
}
