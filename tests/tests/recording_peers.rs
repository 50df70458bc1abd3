//! A recorded call between two real SIP peers: SIPp calls through switchboard, SIPp answers,
//! and each streams its own sox-generated audio as PCMU RTP (`rtp_stream`): the caller a rising
//! sweep, the callee a falling one over the same band. The dialplan records the call
//! (`record_session`, then `dial`). The stereo WAV the recording index points at must hold the
//! caller's audio in the left channel and the callee's in the right: each channel correlates
//! with its own peer's signal (normalised cross-correlation at the best lag) and not with the
//! other's (not swapped, not mixed).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};
use switchboard_tests::{free_port, sipp, sipp_scenario, stop_wrapped, wait_cdrs, Engine};

const TRUSTED: &str = "[calls]\ntrusted_sources = [\"127.0.0.1\"]\n";
/// Length of each peer's audio file.
const SECONDS: u32 = 3;
/// A channel matches a peer's audio above this correlation (G.711 keeps ≈ 0.99)...
const MATCH: f64 = 0.9;
/// ... and does not contain the other peer's below this.
const NO_MATCH: f64 = 0.4;

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

/// A free port `p` with `p + 1..p + 3` free too (SIPp's media and rtp_stream ports).
fn media_port() -> u16 {
    loop {
        let p = free_port();
        if p < 65530 && (1..4).all(|i| std::net::UdpSocket::bind(("127.0.0.1", p + i)).is_ok()) {
            return p;
        }
    }
}

/// One peer's known audio: a sox sweep as 16-bit PCM (the reference) and the same audio as
/// 8 kHz µ-law WAV for SIPp's `rtp_stream`.
struct Audio {
    reference: Vec<i16>,
    ulaw: PathBuf,
}

fn sox(args: &[&str]) {
    let status = Command::new("sox")
        .args(args)
        .status()
        .expect("run sox (make test installs it)");
    assert!(status.success(), "sox {args:?} failed");
}

/// A linear sweep `from`→`to` Hz, `SECONDS` long, at -6 dBFS.
fn sweep(dir: &Path, name: &str, from: u32, to: u32) -> Audio {
    let pcm = dir.join(format!("{name}-pcm.wav"));
    let ulaw = dir.join(format!("{name}-ulaw.wav"));
    let (pcm_s, ulaw_s) = (pcm.display().to_string(), ulaw.display().to_string());
    let band = format!("{from}-{to}");
    let secs = SECONDS.to_string();
    sox(&[
        "-n", "-r", "8000", "-b", "16", "-c", "1", &pcm_s, "synth", &secs, "sine", &band, "gain",
        "-6",
    ]);
    sox(&[&pcm_s, "-e", "mu-law", "-b", "8", &ulaw_s]);
    let mut r = hound::WavReader::open(&pcm).expect("sox wrote a WAV");
    assert_eq!(r.spec().sample_rate, 8000);
    let reference = r.samples::<i16>().map(|s| s.expect("sample")).collect();
    Audio { reference, ulaw }
}

/// A SIPp scenario of this crate with `@KEY@` placeholders filled in, written to `dir`.
fn scenario(dir: &Path, name: &str, fill: &[(&str, String)]) -> PathBuf {
    let mut text = std::fs::read_to_string(sipp_scenario(name)).expect("read scenario");
    for (key, value) in fill {
        text = text.replace(key, value);
    }
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write scenario");
    path
}

/// Waits up to `secs` for a process started by [`sipp`] to exit; true when it exited 0. Stops
/// it otherwise.
fn exited_ok(child: &mut Child, secs: u64) -> bool {
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

/// The recordings indexed for `call_id`, read from the engine's SQLite database; waits up to
/// 10 s for the index row (the file is complete once it is there).
fn wait_recording(engine: &Engine, call_id: &str) -> Vec<switchboard_storage::Recording> {
    let url = format!(
        "sqlite://{}",
        engine.dir.path().join("data/switchboard.db").display()
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = rt.block_on(async {
            let s = switchboard_storage::Storage::connect(&url)
                .await
                .expect("open the engine's database");
            let r = s.recordings_for_call(call_id).await.expect("recordings");
            s.close().await;
            r
        });
        if !got.is_empty() || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Splits a stereo 16-bit WAV into its channels.
fn channels(path: &Path) -> (u32, Vec<i16>, Vec<i16>) {
    let mut r = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let spec = r.spec();
    assert_eq!((spec.channels, spec.bits_per_sample), (2, 16), "{spec:?}");
    let all: Vec<i16> = r.samples::<i16>().map(|s| s.expect("sample")).collect();
    let left = all.iter().step_by(2).copied().collect();
    let right = all.iter().skip(1).step_by(2).copied().collect();
    (spec.sample_rate, left, right)
}

/// The highest normalised cross-correlation of `chunk` against `signal` over every lag where
/// the chunk fits (1.0: `signal` contains `chunk` exactly, up to a gain).
fn best_correlation(signal: &[i16], chunk: &[i16]) -> f64 {
    let n = chunk.len();
    if signal.len() < n || n == 0 {
        return 0.0;
    }
    let x: Vec<f64> = signal.iter().map(|&s| f64::from(s)).collect();
    let c: Vec<f64> = chunk.iter().map(|&s| f64::from(s)).collect();
    let ec = c.iter().map(|v| v * v).sum::<f64>();
    let mut ex = x[..n].iter().map(|v| v * v).sum::<f64>();
    let mut best = 0f64;
    for lag in 0..=x.len() - n {
        if lag > 0 {
            ex += x[lag + n - 1].powi(2) - x[lag - 1].powi(2);
        }
        let dot: f64 = x[lag..lag + n].iter().zip(&c).map(|(a, b)| a * b).sum();
        let norm = (ex.max(0.0) * ec).sqrt();
        if norm > 0.0 {
            best = best.max(dot / norm);
        }
    }
    best
}

/// SIPp (rising sweep) → switchboard (`record_session`, `dial`) → SIPp (falling sweep): the
/// recording has the caller left and the callee right.
#[test]
fn sipp_to_sipp_recording_has_caller_left_and_callee_right() {
    let work = tempfile::tempdir().expect("temp dir");
    let caller_audio = sweep(work.path(), "caller", 300, 3000);
    let callee_audio = sweep(work.path(), "callee", 3000, 300);

    // The callee: SIPp answering and streaming its sweep in a loop until the BYE.
    let callee_port = free_port();
    let uas_xml = scenario(
        work.path(),
        "uas_rtp_stream.xml",
        &[("@WAV@", callee_audio.ulaw.display().to_string())],
    );
    let mut callee = sipp(
        &[
            "-sf",
            &uas_xml.display().to_string(),
            "-i",
            "127.0.0.1",
            "-p",
            &callee_port.to_string(),
            "-mi",
            "127.0.0.1",
            "-mp",
            &media_port().to_string(),
            "-m",
            "1",
            "-timeout",
            "40s",
        ],
        60,
    );
    std::thread::sleep(Duration::from_millis(300));

    let plan = format!(
        r#"contexts:
  default:
    rules:
      - name: recorded
        called: 740
        actions:
          - record_session: {{ to: "peers/${{call_id}}.wav" }}
          - dial: sip:callee@127.0.0.1:{callee_port}
"#
    );
    let engine = engine_with_plan(&plan);

    // The caller: SIPp streaming its sweep once, then hanging up a second after it ends.
    let uac_xml = scenario(
        work.path(),
        "uac_rtp_stream.xml",
        &[
            ("@WAV@", caller_audio.ulaw.display().to_string()),
            ("@SECONDS@", SECONDS.to_string()),
            ("@PAUSE_MS@", (SECONDS * 1000 + 1000).to_string()),
        ],
    );
    let mut caller = sipp(
        &[
            "-sf",
            &uac_xml.display().to_string(),
            &engine.sip_addr().to_string(),
            "-s",
            "740",
            "-i",
            "127.0.0.1",
            "-p",
            &free_port().to_string(),
            "-mi",
            "127.0.0.1",
            "-mp",
            &media_port().to_string(),
            "-m",
            "1",
            "-timeout",
            "40s",
        ],
        60,
    );
    let caller_ok = exited_ok(&mut caller, 50);
    let callee_ok = exited_ok(&mut callee, 20);
    assert!(
        caller_ok && callee_ok,
        "both SIPp peers completed their scenario (caller {caller_ok}, callee {callee_ok}); \
         log:\n{}",
        engine.log()
    );

    let cdrs = wait_cdrs(&engine, 1);
    let cdr = &cdrs[0];
    println!("CDR: {cdr}");
    assert_eq!(cdr["sip_code"], 200, "{cdr}");
    assert!(
        cdr["packets_a_to_b"].as_i64().unwrap_or(0) >= i64::from(SECONDS * 50) - 5
            && cdr["packets_b_to_a"].as_i64().unwrap_or(0) >= i64::from(SECONDS * 50) - 5,
        "both peers' RTP went through the relay: {cdr}"
    );
    let call_id = cdr["call_id"].as_str().expect("CDR call id").to_string();
    let index = wait_recording(&engine, &call_id);
    assert_eq!(index.len(), 1, "one recording indexed: {index:?}");
    let path = PathBuf::from(&index[0].path);
    assert!(
        path.starts_with(engine.dir.path().join("data/recordings/peers")),
        "{}",
        path.display()
    );
    assert_eq!(cdr["recording"].as_str(), Some(index[0].path.as_str()));
    assert_eq!(
        (index[0].channels, index[0].legs.as_str()),
        (2, "caller,callee")
    );

    let (rate, left, right) = channels(&path);
    assert_eq!(rate, 8000, "recorded at the legs' rate");
    let secs = left.len() as f64 / f64::from(rate);
    assert!(secs >= f64::from(SECONDS), "{secs:.2} s recorded");
    // Half a second from the middle of each peer's sweep, searched for in each channel.
    let mid = |a: &Audio| a.reference[8000..12000].to_vec();
    let (caller_chunk, callee_chunk) = (mid(&caller_audio), mid(&callee_audio));
    let l_caller = best_correlation(&left, &caller_chunk);
    let l_callee = best_correlation(&left, &callee_chunk);
    let r_callee = best_correlation(&right, &callee_chunk);
    let r_caller = best_correlation(&right, &caller_chunk);
    println!(
        "{secs:.2} s recorded; left: caller {l_caller:.4}, callee {l_callee:.4}; \
         right: callee {r_callee:.4}, caller {r_caller:.4}"
    );
    assert!(l_caller > MATCH, "left = caller: {l_caller:.4}");
    assert!(r_callee > MATCH, "right = callee: {r_callee:.4}");
    assert!(l_callee < NO_MATCH, "no callee in the left: {l_callee:.4}");
    assert!(r_caller < NO_MATCH, "no caller in the right: {r_caller:.4}");
}
