//! Call flows through the B2BUA with SIPp peers running the scenarios of `tests/sipp/`:
//! CANCEL before answer, callee hang-up, hold/unhold re-INVITEs, parallel forking, digest
//! REGISTER, and RTP through the relay. Every run is bounded, every SIPp must exit 0 (each of
//! its calls followed the scenario), and the CDRs are read back through `switchboard cdr list`.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;
use switchboard_tests::{free_port, register, sipp, sipp_scenario, wait_cdrs, Engine};

/// The CDR of a call the caller hung up after the answer.
const NORMAL: (&str, i64) = ("normal_clearing", 200);

const TRUSTED: &str = "[calls]\ntrusted_sources = [\"127.0.0.1\"]\n";

/// Offer MD5 challenges only (SIPp 3.6.1 reads just the first challenge, and only MD5).
const MD5_ONLY: &str = "[registrar]\ndigest_algorithms = [\"MD5\"]\n";

/// A SIPp process with its error and message logs.
struct Peer {
    name: String,
    child: Child,
    logs: PathBuf,
}

impl Peer {
    /// Starts SIPp with `args`, bounded by `secs`, logging unexpected messages and every
    /// message to files under `logs`.
    fn start(logs: &Path, name: &str, args: &[String], secs: u32) -> Peer {
        let err = logs.join(format!("{name}_errors.log"));
        let msg = logs.join(format!("{name}_messages.log"));
        let mut all: Vec<String> = args.to_vec();
        // A message that never comes fails the call (instead of waiting for the kill).
        for a in ["-recv_timeout", "10000"] {
            all.push(a.into());
        }
        for a in ["-trace_err", "-error_file"] {
            all.push(a.into());
        }
        all.push(err.display().to_string());
        for a in ["-trace_msg", "-message_file"] {
            all.push(a.into());
        }
        all.push(msg.display().to_string());
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        Peer {
            name: name.into(),
            child: sipp(&refs, secs),
            logs: logs.to_path_buf(),
        }
    }

    /// Waits for SIPp to exit and asserts every call succeeded (exit code 0).
    fn expect_success(mut self, engine: &Engine) {
        let status = self.child.wait().expect("wait for sipp");
        if status.success() {
            return;
        }
        let read = |suffix: &str| {
            std::fs::read_to_string(self.logs.join(format!("{}_{suffix}.log", self.name)))
                .unwrap_or_default()
        };
        panic!(
            "SIPp {} failed ({status:?})\n--- errors:\n{}\n--- messages (tail):\n{}\n--- engine log (tail):\n{}",
            self.name,
            tail(&read("errors"), 60),
            tail(&read("messages"), 120),
            tail(&engine.log(), 40)
        );
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        switchboard_tests::stop_wrapped(&mut self.child);
    }
}

/// A port for SIPp's `-mp`: SIPp binds it and the next three (RTCP, video RTP and RTCP), so
/// all four must be free.
fn media_port() -> u16 {
    loop {
        let p = free_port();
        if p < 65530 && (1..4).all(|i| std::net::UdpSocket::bind(("127.0.0.1", p + i)).is_ok()) {
            return p;
        }
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// A SIPp callee running `scenario` on `port` for `calls` calls, listening before it returns.
fn callee(logs: &Path, name: &str, scenario: &str, port: u16, calls: u32, extra: &[&str]) -> Peer {
    let mut a = args(&[
        "-sf",
        &sipp_scenario(scenario).display().to_string(),
        "-i",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-m",
        &calls.to_string(),
        "-mi",
        "127.0.0.1",
        "-mp",
        &media_port().to_string(),
    ]);
    a.extend(args(extra));
    let peer = Peer::start(logs, name, &a, 60);
    std::thread::sleep(Duration::from_millis(300));
    peer
}

/// A SIPp caller running `scenario` (a path) against the engine, calling `user`.
fn caller(
    logs: &Path,
    engine: &Engine,
    name: &str,
    scenario: &Path,
    user: &str,
    calls: u32,
    extra: &[&str],
) -> Peer {
    let mut a = args(&[
        "-sf",
        &scenario.display().to_string(),
        &engine.sip_addr().to_string(),
        "-s",
        user,
        "-i",
        "127.0.0.1",
        "-p",
        &free_port().to_string(),
        "-m",
        &calls.to_string(),
        "-r",
        "10",
        "-l",
        "10",
        "-timeout",
        "40s",
        "-mi",
        "127.0.0.1",
        "-mp",
        &media_port().to_string(),
    ]);
    a.extend(args(extra));
    Peer::start(logs, name, &a, 50)
}

/// Adds `user` and registers one contact per port on 127.0.0.1.
fn register_contacts(engine: &Engine, user: &str, ports: &[u16]) {
    engine.add_user(user, "callee-secret");
    for port in ports {
        let contact = format!("127.0.0.1:{port}").parse().expect("addr");
        assert_eq!(
            register(engine, user, "callee-secret", contact, 3600),
            200,
            "register {user} at {contact}"
        );
    }
}

/// Waits for `n` CDRs and checks each one's cause and final status.
fn expect_cdrs(engine: &Engine, n: usize, cause: &str, sip_code: i64) -> Vec<Value> {
    let cdrs = wait_cdrs(engine, n);
    assert_eq!(cdrs.len(), n, "CDRs: {cdrs:#?}");
    for c in &cdrs {
        assert_eq!(c["cause"], cause, "CDR {c}");
        assert_eq!(c["sip_code"], sip_code, "CDR {c}");
    }
    cdrs
}

/// The caller cancels after a 180: 200 to the CANCEL, 487 to the INVITE, and the ringing
/// callee receives the CANCEL (answering 200 and 487 itself).
#[test]
fn cancel_before_answer_reaches_the_callee() {
    let cdrs = two_party_flow(
        "ringer",
        "uac_cancel.xml",
        "uas_ring_cancel.xml",
        10,
        ("caller_cancel", 487),
    );
    for c in cdrs {
        assert!(
            c["answer_ms"].is_null(),
            "a cancelled call was answered: {c}"
        );
    }
}

/// The callee answers, then hangs up: its BYE reaches the caller, who answers 200.
#[test]
fn callee_hangs_up_first() {
    let cdrs = two_party_flow(
        "hanger",
        "uac_callee_bye.xml",
        "uas_bye.xml",
        10,
        ("callee_hangup", 200),
    );
    for c in cdrs {
        assert!(c["answer_ms"].is_i64(), "no answer time: {c}");
    }
}

/// Runs `calls` calls from a SIPp caller running `uac` to a registered SIPp callee running
/// `uas` through the engine; both must follow their scenario on every call and each call must
/// end with a CDR of the given (cause, final SIP code). Returns the CDRs.
fn two_party_flow(
    user: &str,
    uac: &str,
    uas: &str,
    calls: u32,
    (cause, code): (&str, i64),
) -> Vec<Value> {
    let engine = Engine::start(TRUSTED);
    let logs = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let name = |s: &str| s.trim_end_matches(".xml").to_string();
    let callee_peer = callee(logs.path(), &name(uas), uas, port, calls, &[]);
    register_contacts(&engine, user, &[port]);
    let caller_peer = caller(
        logs.path(),
        &engine,
        &name(uac),
        &sipp_scenario(uac),
        user,
        calls,
        &[],
    );
    caller_peer.expect_success(&engine);
    callee_peer.expect_success(&engine);
    expect_cdrs(&engine, calls as usize, cause, code)
}

/// Hold (a=sendonly) and unhold (a=sendrecv) re-INVITEs from the caller reach the callee, and
/// its answers (a=recvonly, a=sendrecv) come back; then the caller hangs up.
#[test]
fn reinvite_hold_and_unhold_are_forwarded() {
    two_party_flow("holder", "uac_reinvite.xml", "uas_reinvite.xml", 5, NORMAL);
}

/// An UPDATE with an SDP offer (RFC 3311) inside the dialog reaches the callee re-anchored, and
/// its answer comes back.
#[test]
fn update_inside_the_dialog_is_forwarded() {
    two_party_flow("updater", "uac_update.xml", "uas_update.xml", 5, NORMAL);
}

/// re-INVITE glare: the caller's re-INVITE, sent while the callee's is pending, gets 491 from
/// the engine; the caller's 491 to the callee's re-INVITE is relayed; the callee's retry then
/// succeeds.
#[test]
fn reinvite_glare_gets_491_and_the_retry_succeeds() {
    two_party_flow("glare", "uac_glare.xml", "uas_glare.xml", 3, NORMAL);
}

/// Forks each of `CALLS` calls to two contacts of one user: `other` (a scenario that never
/// answers 2xx) and one that answers after 300 ms. Every call is answered, and `other`'s scenario
/// must see what it expects (a CANCEL, or the ACK of its 486).
fn fork_answered_by_one_of_two(other_name: &str, other_scenario: &str) {
    const CALLS: u32 = 5;
    let engine = Engine::start(TRUSTED);
    let logs = tempfile::tempdir().expect("temp dir");
    let (other_port, answer_port) = (free_port(), free_port());
    let other = callee(
        logs.path(),
        other_name,
        other_scenario,
        other_port,
        CALLS,
        &[],
    );
    let answering = callee(
        logs.path(),
        "uas_answer",
        "uas_answer.xml",
        answer_port,
        CALLS,
        &[],
    );
    register_contacts(&engine, "forked", &[other_port, answer_port]);
    let uac = Peer::start(
        logs.path(),
        "uac",
        &args(&[
            "-sn",
            "uac",
            &engine.sip_addr().to_string(),
            "-s",
            "forked",
            "-i",
            "127.0.0.1",
            "-p",
            &free_port().to_string(),
            "-m",
            &CALLS.to_string(),
            "-r",
            "5",
            "-d",
            "300",
            "-timeout",
            "40s",
            "-mp",
            &media_port().to_string(),
        ]),
        50,
    );
    uac.expect_success(&engine);
    answering.expect_success(&engine);
    other.expect_success(&engine);
    expect_cdrs(&engine, CALLS as usize, "normal_clearing", 200);
}

/// Two contacts for one user: one rings forever, the other answers after 300 ms. The call is
/// answered and the ringing contact receives a CANCEL for every call.
#[test]
fn fork_answered_by_one_contact_cancels_the_other() {
    fork_answered_by_one_of_two("uas_ring_cancel", "uas_ring_cancel.xml");
}

/// Two contacts, one busy, one answering: the call is answered.
#[test]
fn fork_with_one_busy_contact_is_answered_by_the_other() {
    fork_answered_by_one_of_two("uas_busy", "uas_busy.xml");
}

/// Two contacts, both busy: the caller gets 486 and the CDR says `busy`.
#[test]
fn fork_with_every_contact_busy_returns_486() {
    const CALLS: u32 = 5;
    let engine = Engine::start(TRUSTED);
    let logs = tempfile::tempdir().expect("temp dir");
    let (p1, p2) = (free_port(), free_port());
    let busy1 = callee(logs.path(), "uas_busy1", "uas_busy.xml", p1, CALLS, &[]);
    let busy2 = callee(logs.path(), "uas_busy2", "uas_busy.xml", p2, CALLS, &[]);
    register_contacts(&engine, "busybody", &[p1, p2]);
    let uac = caller(
        logs.path(),
        &engine,
        "uac_busy",
        &sipp_scenario("uac_busy.xml"),
        "busybody",
        CALLS,
        &[],
    );
    uac.expect_success(&engine);
    busy1.expect_success(&engine);
    busy2.expect_success(&engine);
    expect_cdrs(&engine, CALLS as usize, "busy", 486);
}

/// SIPp registers with digest authentication (401, then 200), and a call to the user reaches
/// the contact it registered.
#[test]
fn sipp_register_with_digest_auth_then_receive_a_call() {
    // SIPp answers only the first challenge and only MD5: offer MD5 alone.
    let engine = Engine::start(&format!("{TRUSTED}{MD5_ONLY}"));
    let logs = tempfile::tempdir().expect("temp dir");
    engine.add_user("alice", "alice-secret");
    let contact_port = free_port();
    let reg = Peer::start(
        logs.path(),
        "uac_register_auth",
        &args(&[
            "-sf",
            &sipp_scenario("uac_register_auth.xml").display().to_string(),
            &engine.sip_addr().to_string(),
            "-s",
            "alice",
            "-au",
            "alice",
            "-ap",
            "alice-secret",
            "-key",
            "contact_port",
            &contact_port.to_string(),
            "-i",
            "127.0.0.1",
            "-p",
            &free_port().to_string(),
            "-m",
            "3",
            "-timeout",
            "20s",
        ]),
        30,
    );
    reg.expect_success(&engine);
    // The binding works: a call to alice reaches the contact SIPp registered.
    let uas = Peer::start(
        logs.path(),
        "uas",
        &args(&[
            "-sn",
            "uas",
            "-i",
            "127.0.0.1",
            "-p",
            &contact_port.to_string(),
            "-m",
            "2",
            "-mp",
            &media_port().to_string(),
        ]),
        40,
    );
    std::thread::sleep(Duration::from_millis(300));
    let uac = Peer::start(
        logs.path(),
        "uac",
        &args(&[
            "-sn",
            "uac",
            &engine.sip_addr().to_string(),
            "-s",
            "alice",
            "-i",
            "127.0.0.1",
            "-p",
            &free_port().to_string(),
            "-m",
            "2",
            "-d",
            "200",
            "-timeout",
            "20s",
            "-mp",
            &media_port().to_string(),
        ]),
        30,
    );
    uac.expect_success(&engine);
    uas.expect_success(&engine);
    expect_cdrs(&engine, 2, "normal_clearing", 200);
}

/// SIPp answers the 401 with a wrong password: 403.
#[test]
fn sipp_register_with_wrong_password_gets_403() {
    let engine = Engine::start(MD5_ONLY);
    let logs = tempfile::tempdir().expect("temp dir");
    engine.add_user("bob", "bob-secret");
    let reg = Peer::start(
        logs.path(),
        "uac_register_wrong_password",
        &args(&[
            "-sf",
            &sipp_scenario("uac_register_wrong_password.xml")
                .display()
                .to_string(),
            &engine.sip_addr().to_string(),
            "-s",
            "bob",
            "-au",
            "bob",
            "-ap",
            "not-bob-secret",
            "-key",
            "contact_port",
            &free_port().to_string(),
            "-i",
            "127.0.0.1",
            "-p",
            &free_port().to_string(),
            "-m",
            "3",
            "-timeout",
            "20s",
        ]),
        30,
    );
    reg.expect_success(&engine);
}

/// Writes an 8 kHz mono mu-law WAV (a 400 Hz tone) of exactly `seconds * 8000` bytes and
/// returns its path. SIPp 3.6.1's `rtp_stream` sends the whole file as payload, header
/// included, 160 bytes per 20 ms packet: this file makes exactly `seconds * 50` packets.
fn write_ulaw_wav(dir: &Path, seconds: u32) -> PathBuf {
    const HEADER: u32 = 44;
    let samples = 8000 * seconds - HEADER;
    let mut wav = Vec::with_capacity((8000 * seconds) as usize);
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + samples).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&7u16.to_le_bytes()); // WAVE_FORMAT_MULAW
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&8000u32.to_le_bytes()); // sample rate
    wav.extend_from_slice(&8000u32.to_le_bytes()); // bytes per second
    wav.extend_from_slice(&1u16.to_le_bytes()); // block align
    wav.extend_from_slice(&8u16.to_le_bytes()); // bits per sample
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&samples.to_le_bytes());
    assert_eq!(wav.len() as u32, HEADER);
    for i in 0..samples {
        let x = (2.0 * std::f64::consts::PI * 400.0 * f64::from(i) / 8000.0).sin();
        wav.push(linear_to_ulaw((x * 8000.0) as i16));
    }
    let path = dir.join("tone-ulaw.wav");
    std::fs::write(&path, wav).expect("write wav");
    path
}

/// G.711 mu-law encoding of one linear sample.
fn linear_to_ulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32635;
    let mut s = i32::from(sample);
    let sign = if s < 0 { 0x80 } else { 0 };
    if s < 0 {
        s = -s;
    }
    s = s.min(CLIP) + BIAS;
    let exponent = (7 - (s.leading_zeros() as i32 - 17)).clamp(0, 7);
    let mantissa = (s >> (exponent + 3)) & 0x0f;
    !(sign | (exponent << 4) as u8 | mantissa as u8)
}

/// RTP through the relay: the caller streams a 2 s PCMU WAV (100 packets of 20 ms), the callee
/// echoes it; the CDR counts 100 packets each way and no loss.
#[test]
fn rtp_is_relayed_both_ways_and_counted() {
    const CALLS: u32 = 3;
    const SECONDS: u32 = 2;
    let engine = Engine::start(TRUSTED);
    let logs = tempfile::tempdir().expect("temp dir");
    let wav = write_ulaw_wav(logs.path(), SECONDS);
    let template =
        std::fs::read_to_string(sipp_scenario("uac_rtp_stream.xml")).expect("read scenario");
    let scenario = logs.path().join("uac_rtp_stream.xml");
    std::fs::write(
        &scenario,
        template
            .replace("@WAV@", &wav.display().to_string())
            .replace("@SECONDS@", &SECONDS.to_string())
            .replace("@PAUSE_MS@", &(SECONDS * 1000 + 1000).to_string()),
    )
    .expect("write scenario");
    let port = free_port();
    let uas = Peer::start(
        logs.path(),
        "uas",
        &args(&[
            "-sn",
            "uas",
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-m",
            &CALLS.to_string(),
            "-rtp_echo",
            "-mi",
            "127.0.0.1",
            "-mp",
            &media_port().to_string(),
        ]),
        60,
    );
    std::thread::sleep(Duration::from_millis(300));
    register_contacts(&engine, "echo", &[port]);
    let uac = caller(
        logs.path(),
        &engine,
        "uac_rtp_stream",
        &scenario,
        "echo",
        CALLS,
        &[],
    );
    uac.expect_success(&engine);
    uas.expect_success(&engine);
    let packets = i64::from(SECONDS * 50);
    for c in expect_cdrs(&engine, CALLS as usize, "normal_clearing", 200) {
        assert_eq!(c["packets_a_to_b"], packets, "CDR {c}");
        assert_eq!(c["packets_b_to_a"], packets, "CDR {c}");
        assert_eq!(c["bytes_a_to_b"], packets * 172, "CDR {c}");
        assert_eq!(c["lost_a_to_b"], 0, "CDR {c}");
        assert_eq!(c["lost_b_to_a"], 0, "CDR {c}");
    }
}

/// Runs `calls` calls from `uac` to a `uas` under a `[calls]` setting; returns their CDRs after
/// checking cause and final status.
fn timer_case(
    setting: &str,
    uas: &str,
    uac: &str,
    user: &str,
    cause: &str,
    code: i64,
) -> Vec<Value> {
    const CALLS: u32 = 3;
    let engine = Engine::start(&format!("{TRUSTED}{setting}\n"));
    let logs = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let callee_peer = callee(logs.path(), "uas", uas, port, CALLS, &[]);
    register_contacts(&engine, user, &[port]);
    let caller_peer = caller(
        logs.path(),
        &engine,
        "uac",
        &sipp_scenario(uac),
        user,
        CALLS,
        &[],
    );
    caller_peer.expect_success(&engine);
    callee_peer.expect_success(&engine);
    expect_cdrs(&engine, CALLS as usize, cause, code)
}

/// Nobody answers within `calls.no_answer_timeout_secs`: the caller gets 480 and the ringing
/// callee a CANCEL.
#[test]
fn no_answer_times_out_with_480_and_cancels_the_callee() {
    timer_case(
        "no_answer_timeout_secs = 2",
        "uas_ring_cancel.xml",
        "uac_no_answer.xml",
        "sleeper",
        "no_answer",
        480,
    );
}

/// An answered call with no RTP for `calls.rtp_timeout_secs` is ended with BYE to both sides.
#[test]
fn rtp_timeout_ends_an_answered_call() {
    timer_case(
        "rtp_timeout_secs = 2",
        "uas_answer.xml",
        "uac_callee_bye.xml",
        "silent",
        "rtp_timeout",
        200,
    );
}

/// A call longer than `calls.max_duration_secs` is ended with BYE to both sides.
#[test]
fn max_duration_ends_a_call() {
    for c in timer_case(
        "max_duration_secs = 2",
        "uas_answer.xml",
        "uac_callee_bye.xml",
        "talker",
        "max_duration",
        200,
    ) {
        let d = c["duration_ms"].as_i64().unwrap_or(0);
        assert!((1500..6000).contains(&d), "duration {d} ms: {c}");
    }
}
