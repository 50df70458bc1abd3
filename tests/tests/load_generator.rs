//! `switchboard load` end to end over loopback: our uac against our uas (with RTP echoed and
//! scored), against SIPp's uas, SIPp's uac against our uas, our uas rejecting a share of calls,
//! and our uac through `switchboard serve` (B2BUA with anchored media) to our uas. Every run is
//! bounded; each side's JSON report is read back.

use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use switchboard_tests::{bin_path, free_port, register, sipp, stop_wrapped, Engine};

/// Starts `switchboard load ARGS --quiet --report FILE` in the background.
fn load(dir: &Path, name: &str, args: &[&str]) -> (Child, std::path::PathBuf) {
    let report = dir.join(format!("{name}.json"));
    let child = Command::new(bin_path())
        .arg("load")
        .args(args)
        .args(["--quiet", "--report"])
        .arg(&report)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start switchboard load");
    (child, report)
}

/// Waits for a load run and returns its exit code, stderr and JSON report.
fn finish(child: Child, report: &Path) -> (i32, String, Value) {
    let out = child.wait_with_output().expect("wait for switchboard load");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let json = std::fs::read_to_string(report)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), stderr, json)
}

fn uas_listen(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

#[test]
fn uac_to_uas_with_echoed_rtp() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let listen = uas_listen(port);
    let (uas, uas_report) = load(
        dir.path(),
        "uas",
        &[
            "uas", "--listen", &listen, "--calls", "200", "--media", "echo",
        ],
    );
    std::thread::sleep(Duration::from_millis(300));
    let (uac, uac_report) = load(
        dir.path(),
        "uac",
        &[
            "uac",
            "--target",
            &listen,
            "--rate",
            "100",
            "--calls",
            "200",
            "--duration-ms",
            "2000",
            "--media",
            "play",
        ],
    );
    let (code, err, r) = finish(uac, &uac_report);
    assert_eq!(code, 0, "uac failed: {err}");
    let (ucode, uerr, ur) = finish(uas, &uas_report);
    assert_eq!(ucode, 0, "uas failed: {uerr}");
    assert_eq!(r["totals"]["completed"], 200, "{r}");
    assert_eq!(r["totals"]["failed"], 0, "{r}");
    assert_eq!(ur["totals"]["completed"], 200, "{ur}");
    let m = &r["media"];
    assert_eq!(m["streams"], 200, "{m}");
    // 2 s of 20 ms packets per call, echoed back: nearly all come back, none lost.
    let sent = m["packets_sent"].as_u64().unwrap_or(0);
    let received = m["packets_received"].as_u64().unwrap_or(0);
    assert!(sent >= 200 * 95, "sent {sent}");
    assert!(received * 100 >= sent * 90, "received {received} of {sent}");
    assert_eq!(m["packets_lost"], 0, "{m}");
    let mos = m["mean_mos"].as_f64().unwrap_or(0.0);
    assert!(mos > 4.3, "MOS {mos}");
    assert!(r["setup"]["p99_ms"].as_f64().is_some(), "{r}");
}

#[test]
fn uac_against_sipp_uas() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let p = port.to_string();
    let mut sipp_uas = sipp(
        &["-sn", "uas", "-i", "127.0.0.1", "-p", &p, "-m", "500"],
        60,
    );
    std::thread::sleep(Duration::from_millis(300));
    let (uac, report) = load(
        dir.path(),
        "uac",
        &[
            "uac",
            "--target",
            &uas_listen(port),
            "--rate",
            "250",
            "--calls",
            "500",
            "--duration-ms",
            "100",
        ],
    );
    let (code, err, r) = finish(uac, &report);
    let status = sipp_uas.wait().expect("wait for sipp");
    assert_eq!(code, 0, "uac failed: {err}");
    assert_eq!(r["totals"]["completed"], 500, "{r}");
    assert!(status.success(), "SIPp uas saw failed calls: {status:?}");
}

#[test]
fn sipp_uac_against_our_uas_with_rejections() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let listen = uas_listen(port);
    // All calls answered: SIPp's uac exits 0 only when every call succeeded.
    let (uas, report) = load(
        dir.path(),
        "uas",
        &["uas", "--listen", &listen, "--calls", "500"],
    );
    std::thread::sleep(Duration::from_millis(300));
    let mut uac = sipp(
        &[
            "-sn",
            "uac",
            &listen,
            "-i",
            "127.0.0.1",
            "-p",
            &free_port().to_string(),
            "-m",
            "500",
            "-r",
            "250",
            "-d",
            "100",
            "-timeout",
            "30s",
        ],
        60,
    );
    let status = uac.wait().expect("wait for sipp");
    let (code, err, r) = finish(uas, &report);
    assert!(status.success(), "SIPp uac saw failed calls: {status:?}");
    assert_eq!(code, 0, "uas failed: {err}");
    assert_eq!(r["totals"]["completed"], 500, "{r}");

    // 20 % rejected with 486: our uac counts them as failed by status.
    let port = free_port();
    let listen = uas_listen(port);
    let (uas, _) = load(
        dir.path(),
        "uas_reject",
        &[
            "uas",
            "--listen",
            &listen,
            "--calls",
            "100",
            "--reject-percent",
            "20",
            "--reject-code",
            "486",
        ],
    );
    std::thread::sleep(Duration::from_millis(300));
    let (uac, report) = load(
        dir.path(),
        "uac_reject",
        &[
            "uac",
            "--target",
            &listen,
            "--rate",
            "100",
            "--calls",
            "100",
            "--max-failed",
            "20",
        ],
    );
    let (code, err, r) = finish(uac, &report);
    let mut uas = uas;
    stop_wrapped(&mut uas);
    assert_eq!(code, 0, "uac failed: {err}");
    assert_eq!(r["totals"]["failures"]["486"], 20, "{r}");
    assert_eq!(r["totals"]["completed"], 80, "{r}");
}

#[test]
fn bounds_and_loopback_are_enforced() {
    let out = Command::new(bin_path())
        .args(["load", "uac", "--target", "127.0.0.1:5060"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bound"));
    let out = Command::new(bin_path())
        .args(["load", "uac", "--target", "192.0.2.7:5060", "--calls", "1"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
}

#[test]
fn uac_through_the_b2bua_with_anchored_rtp() {
    let engine = Engine::start("[calls]\ntrusted_sources = [\"127.0.0.1\"]\n");
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let listen = uas_listen(port);
    engine.add_user("loaduas", "secret-1");
    let (uas, uas_report) = load(
        dir.path(),
        "uas",
        &[
            "uas", "--listen", &listen, "--calls", "100", "--media", "echo",
        ],
    );
    std::thread::sleep(Duration::from_millis(300));
    let contact = listen.parse().expect("addr");
    assert_eq!(register(&engine, "loaduas", "secret-1", contact, 3600), 200);
    let (uac, report) = load(
        dir.path(),
        "uac",
        &[
            "uac",
            "--target",
            &engine.sip_addr().to_string(),
            "--service",
            "loaduas",
            "--rate",
            "50",
            "--calls",
            "100",
            "--duration-ms",
            "2000",
            "--media",
            "play",
        ],
    );
    let (code, err, r) = finish(uac, &report);
    let (ucode, uerr, _) = finish(uas, &uas_report);
    assert_eq!(code, 0, "uac failed: {err}\n{}", engine.log());
    assert_eq!(ucode, 0, "uas failed: {uerr}");
    assert_eq!(r["totals"]["completed"], 100, "{r}");
    let m = &r["media"];
    assert_eq!(m["packets_lost"], 0, "{m}");
    let received = m["packets_received"].as_u64().unwrap_or(0);
    assert!(received >= 100 * 80, "received {received}: {m}");
}

#[test]
fn built_in_scenarios_against_our_uas() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let listen = uas_listen(port);
    let (uas, uas_report) = load(
        dir.path(),
        "uas",
        &[
            "uas",
            "--listen",
            &listen,
            "--time-limit",
            "20",
            "--ring-ms",
            "200",
            "--media",
            "play",
        ],
    );
    std::thread::sleep(Duration::from_millis(300));
    let run = |name: &str, extra: &[&str]| {
        let mut args = vec![
            "uac",
            "--target",
            &listen,
            "--rate",
            "50",
            "--calls",
            "40",
            "--duration-ms",
            "1200",
        ];
        args.extend_from_slice(extra);
        let (child, report) = load(dir.path(), name, &args);
        let (code, err, r) = finish(child, &report);
        assert_eq!(code, 0, "{name} failed: {err}");
        assert_eq!(r["totals"]["completed"], 40, "{name}: {r}");
        r
    };
    let r = run("options", &["--scenario", "options"]);
    assert_eq!(r["totals"]["answered"], 40, "{r}");
    // CANCEL on the 180: every call ends with 487, none is answered.
    let r = run("cancel", &["--scenario", "cancel"]);
    assert_eq!(r["totals"]["answered"], 0, "{r}");
    run("hold", &["--scenario", "hold"]);
    let r = run(
        "dtmf",
        &["--scenario", "dtmf", "--media", "play", "--digits", "19*#"],
    );
    assert_eq!(r["media"]["dtmf_sent"], 160, "{r}");
    let (mut uas, uas_report) = (uas, uas_report);
    let status = uas.wait().expect("wait for the uas");
    assert!(status.success(), "uas failed");
    let ur: Value =
        serde_json::from_str(&std::fs::read_to_string(&uas_report).expect("report")).expect("json");
    // Every digit of every call detected by the uas from the RFC 4733 events.
    for d in ["1", "9", "*", "#"] {
        assert_eq!(ur["media"]["dtmf_received"][d], 40, "{d}: {}", ur["media"]);
    }
}

#[test]
fn register_scenario_with_digest_against_the_registrar() {
    let engine = Engine::start("");
    engine.add_user("loadreg", "right-pw");
    let dir = tempfile::tempdir().expect("temp dir");
    let target = engine.sip_addr().to_string();
    let (ok, report) = load(
        dir.path(),
        "register",
        &[
            "uac",
            "--target",
            &target,
            "--scenario",
            "register",
            "--auth-user",
            "loadreg",
            "--auth-password",
            "right-pw",
            "--rate",
            "100",
            "--calls",
            "300",
            "--duration-ms",
            "300",
        ],
    );
    let (code, err, r) = finish(ok, &report);
    assert_eq!(code, 0, "register failed: {err}\n{}", engine.log());
    assert_eq!(r["totals"]["completed"], 300, "{r}");
    let (bad, report) = load(
        dir.path(),
        "register_wrong",
        &[
            "uac",
            "--target",
            &target,
            "--scenario",
            "register",
            "--auth-user",
            "loadreg",
            "--auth-password",
            "wrong-pw",
            "--rate",
            "20",
            "--calls",
            "5",
            "--max-failed",
            "5",
        ],
    );
    let (code, err, r) = finish(bad, &report);
    assert_eq!(code, 0, "{err}");
    assert_eq!(r["totals"]["failures"]["403"], 5, "{r}");
}
