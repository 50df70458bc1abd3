//! The scripted UAS and the multi-process mode, end to end over loopback UDP.
//!
//! * In-process (agents on threads through `worker::run`): the scripted uac of SCENARIOS.md
//!   example 1 (hold/unhold re-INVITEs, INFO, BYE) against the scripted uas of
//!   `scenarios/uas-answer.toml`; the built-in uac against `scenarios/uas-hangup.toml` (the
//!   uas sends the BYE); the scripted uac against `scenarios/uas-reject.toml`; SIPp's uac
//!   (`sipp -sn uac`) against `scenarios/uas-answer.toml`.
//! * The real binary (`SWITCHBOARD_BIN`, else the newest target/{release,debug}/switchboard):
//!   `switchboard load uac --workers 2` against `switchboard load uas --scenario-file
//!   scenarios/uas-answer.toml`, both reports read back; and a controller killed with SIGKILL
//!   takes its workers with it.
//!
//! Every run is small (≤ 40 calls at ≤ 20 CPS) and bounded.

use serde_json::Value;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_load::agent::Agent;
use switchboard_load::script::{Script, ScriptConfig, ScriptUasConfig, ScriptedUac, ScriptedUas};
use switchboard_load::stats::Counters;
use switchboard_load::uac::{Scenario, Uac, UacConfig};
use switchboard_load::worker::{self, Deadlines};
use switchboard_tests::{bin_path, free_port, sipp};

fn scenario_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(name)
}

fn load_script(name: &str) -> Arc<Script> {
    Arc::new(Script::load(&scenario_file(name), None).expect("shipped scenario is valid"))
}

/// The `n`-th ```toml block of SCENARIOS.md.
fn example(n: usize) -> String {
    let doc = include_str!("../SCENARIOS.md");
    doc.split("```toml\n")
        .nth(n + 1)
        .and_then(|rest| rest.split("```").next())
        .expect("SCENARIOS.md has this example")
        .to_string()
}

fn deadlines(secs: u64) -> Deadlines {
    let now = Instant::now();
    Deadlines {
        drain_at: now + Duration::from_secs(secs),
        abandon_at: now + Duration::from_secs(secs + 5),
    }
}

fn bind() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").expect("bind a loopback port")
}

/// A scripted uas for `calls` calls on its own thread; returns its address, counters and
/// script (for the failure labels), and the thread.
fn start_uas(
    script: &Arc<Script>,
    calls: u64,
) -> (
    SocketAddr,
    Arc<Counters>,
    std::thread::JoinHandle<std::io::Result<()>>,
) {
    let socket = bind();
    let addr = socket.local_addr().expect("uas address");
    let counters = Arc::new(Counters::new());
    let mut uas = ScriptedUas::new(
        Arc::clone(script),
        ScriptUasConfig {
            calls_left: Some(Arc::new(AtomicU64::new(calls))),
            service: "answer".into(),
            caller: "load".into(),
            media: "127.0.0.1:40200".parse().expect("addr"),
            with_media: false,
            worker: 0,
        },
        addr,
        100,
        Arc::clone(&counters),
    )
    .expect("the script starts with an expect");
    let h = std::thread::spawn(move || {
        let stop = AtomicBool::new(false);
        worker::run(&socket, &mut uas, &stop, deadlines(60), &mut |_| {})
    });
    (addr, counters, h)
}

/// Runs an agent to its end on this thread.
fn run_agent(agent: &mut dyn Agent, socket: &UdpSocket) {
    let stop = AtomicBool::new(false);
    worker::run(socket, agent, &stop, deadlines(60), &mut |_| {}).expect("agent worker");
}

fn assert_all_completed(side: &str, c: &Counters, script: &Script, calls: u64) {
    assert_eq!(
        script.failure_reasons(),
        Default::default(),
        "{side}: script failures"
    );
    assert_eq!(c.started.load(Relaxed), calls, "{side} started");
    assert_eq!(
        c.completed.load(Relaxed),
        calls,
        "{side} completed: {:?}",
        c.failures()
    );
    assert_eq!(c.failed.load(Relaxed), 0, "{side} failed");
}

#[test]
fn the_uas_example_in_scenarios_md_is_the_shipped_file() {
    let file = std::fs::read_to_string(scenario_file("uas-answer.toml")).expect("read");
    assert_eq!(example(2), file);
}

#[test]
fn scripted_uac_with_reinvites_and_info_against_the_scripted_uas() {
    const CALLS: u64 = 3;
    let uas_script = load_script("uas-answer.toml");
    let (uas_addr, uas_counters, uas_thread) = start_uas(&uas_script, CALLS);

    let uac_script = Arc::new(Script::from_toml(&example(0)).expect("example 1 is valid"));
    let socket = bind();
    let local = socket.local_addr().expect("addr");
    let uac_counters = Arc::new(Counters::new());
    let mut uac = ScriptedUac::new(
        Arc::clone(&uac_script),
        ScriptConfig {
            target: uas_addr,
            service: "service".into(),
            caller: "load".into(),
            rate: 20.0,
            ramp: Duration::ZERO,
            calls: Some(CALLS),
            max_concurrent: 10,
            media: "127.0.0.1:40202".parse().expect("addr"),
            // `play` and the RFC 4733 digits need a media pool; events are dropped here.
            with_media: true,
            worker: 0,
        },
        local,
        Instant::now(),
        100,
        Arc::clone(&uac_counters),
    );
    run_agent(&mut uac, &socket);
    uas_thread.join().expect("uas thread").expect("uas worker");

    assert_all_completed("uac", &uac_counters, &uac_script, CALLS);
    assert_eq!(uac_counters.answered.load(Relaxed), CALLS);
    // The 180 reached the caller.
    assert_eq!(uac_counters.ringing.snapshot().count(), CALLS);
    assert_all_completed("uas", &uas_counters, &uas_script, CALLS);
    assert_eq!(uas_counters.answered.load(Relaxed), CALLS);
}

#[test]
fn the_uas_hangs_up_and_the_builtin_uac_answers_its_bye() {
    const CALLS: u64 = 3;
    let uas_script = load_script("uas-hangup.toml");
    let (uas_addr, uas_counters, uas_thread) = start_uas(&uas_script, CALLS);
    let socket = bind();
    let local = socket.local_addr().expect("addr");
    let uac_counters = Arc::new(Counters::new());
    let mut uac = Uac::new(
        UacConfig {
            target: uas_addr,
            service: "service".into(),
            caller: "load".into(),
            scenario: Scenario::Call,
            rate: 20.0,
            ramp: Duration::ZERO,
            calls: Some(CALLS),
            max_concurrent: 10,
            // Far longer than the uas's 200 ms: the BYE comes from the uas.
            duration: Duration::from_secs(30),
            media: "127.0.0.1:9".parse().expect("addr"),
            payload_type: 0,
            with_media: false,
            worker: 0,
        },
        local,
        Instant::now(),
        100,
        Arc::clone(&uac_counters),
    );
    run_agent(&mut uac, &socket);
    uas_thread.join().expect("uas thread").expect("uas worker");
    assert_eq!(uac_counters.completed.load(Relaxed), CALLS);
    assert_eq!(uac_counters.failed.load(Relaxed), 0);
    assert_all_completed("uas", &uas_counters, &uas_script, CALLS);
}

#[test]
fn the_uas_rejects_and_the_scripted_uac_fails_with_the_code() {
    const CALLS: u64 = 2;
    let uas_script = load_script("uas-reject.toml");
    let (uas_addr, uas_counters, uas_thread) = start_uas(&uas_script, CALLS);
    let uac_script = Arc::new(Script::from_toml(&example(0)).expect("example 1 is valid"));
    let socket = bind();
    let local = socket.local_addr().expect("addr");
    let uac_counters = Arc::new(Counters::new());
    let mut uac = ScriptedUac::new(
        Arc::clone(&uac_script),
        ScriptConfig {
            target: uas_addr,
            service: "service".into(),
            caller: "load".into(),
            rate: 20.0,
            ramp: Duration::ZERO,
            calls: Some(CALLS),
            max_concurrent: 10,
            media: "127.0.0.1:9".parse().expect("addr"),
            with_media: false,
            worker: 0,
        },
        local,
        Instant::now(),
        100,
        Arc::clone(&uac_counters),
    );
    run_agent(&mut uac, &socket);
    uas_thread.join().expect("uas thread").expect("uas worker");
    assert_eq!(uac_counters.failed.load(Relaxed), CALLS);
    assert_eq!(uac_counters.failures().get("486"), Some(&CALLS));
    // The uas ran its script (answer 486) to the end for every call.
    assert_all_completed("uas", &uas_counters, &uas_script, CALLS);
    assert_eq!(uas_counters.answered.load(Relaxed), 0);
}

#[test]
fn a_uas_script_must_start_with_an_expected_request() {
    let script = Arc::new(Script::from_toml("[[step]]\npause = 10\n").expect("valid"));
    let addr: SocketAddr = "127.0.0.1:5999".parse().expect("addr");
    let r = ScriptedUas::new(
        script,
        ScriptUasConfig {
            calls_left: None,
            service: "s".into(),
            caller: "c".into(),
            media: addr,
            with_media: false,
            worker: 0,
        },
        addr,
        500,
        Arc::new(Counters::new()),
    );
    let e = r.expect_err("refused");
    assert!(e.contains("expect"), "{e}");
}

#[test]
fn sipp_uac_against_the_scripted_uas() {
    const CALLS: u64 = 10;
    let uas_script = load_script("uas-answer.toml");
    let (uas_addr, uas_counters, uas_thread) = start_uas(&uas_script, CALLS);
    let mut sipp = sipp(
        &[
            "-sn",
            "uac",
            &uas_addr.to_string(),
            "-i",
            "127.0.0.1",
            "-p",
            &free_port().to_string(),
            "-m",
            &CALLS.to_string(),
            "-r",
            "10",
            "-d",
            "100",
            "-timeout",
            "30s",
        ],
        60,
    );
    let status = sipp.wait().expect("wait for sipp");
    uas_thread.join().expect("uas thread").expect("uas worker");
    // SIPp's uac exits 0 only when every call succeeded.
    assert!(status.success(), "SIPp uac saw failed calls: {status:?}");
    assert_all_completed("uas", &uas_counters, &uas_script, CALLS);
    assert_eq!(uas_counters.answered.load(Relaxed), CALLS);
}

/// A fresh directory for this test's reports.
fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sb-load-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// Starts `switchboard load ARGS --quiet --report FILE` in the background.
fn load(dir: &Path, name: &str, args: &[&str]) -> (Child, PathBuf) {
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

#[test]
fn two_worker_processes_against_the_scripted_uas_binary() {
    const CALLS: u64 = 40;
    let dir = temp_dir("workers");
    let listen = format!("127.0.0.1:{}", free_port());
    let answer = scenario_file("uas-answer.toml");
    let answer = answer.to_str().expect("utf-8 path");
    let (uas, uas_report) = load(
        &dir,
        "uas",
        &[
            "uas",
            "--listen",
            &listen,
            "--calls",
            &CALLS.to_string(),
            "--scenario-file",
            answer,
            "--threads",
            "1",
        ],
    );
    let csv = dir.join("uac.csv");
    let (uac, uac_report) = load(
        &dir,
        "uac",
        &[
            "uac",
            "--workers",
            "2",
            "--threads",
            "2",
            "--target",
            &listen,
            "--rate",
            "20",
            "--calls",
            &CALLS.to_string(),
            "--duration-ms",
            "200",
            "--csv",
            csv.to_str().expect("utf-8 path"),
        ],
    );
    let (code, err, r) = finish(uac, &uac_report);
    let (ucode, uerr, ur) = finish(uas, &uas_report);
    assert_eq!(code, 0, "uac failed: {err}\n{r}");
    assert_eq!(ucode, 0, "uas failed: {uerr}\n{ur}");

    // The merged totals: every call, none failed, and the sum of the two workers' own.
    let t = &r["totals"];
    assert_eq!(t["started"], CALLS, "{r}");
    assert_eq!(t["answered"], CALLS, "{r}");
    assert_eq!(t["completed"], CALLS, "{r}");
    assert_eq!(t["failed"], 0, "{r}");
    assert_eq!(r["passed"], true);
    assert_eq!(r["settings"]["workers"], 2);
    let workers = r["workers"].as_array().expect("per-worker totals");
    assert_eq!(workers.len(), 2, "{r}");
    for key in [
        "started",
        "answered",
        "completed",
        "failed",
        "retransmissions",
    ] {
        let sum: u64 = workers.iter().filter_map(|w| w[key].as_u64()).sum();
        assert_eq!(Some(sum), t[key].as_u64(), "{key}: {r}");
    }
    // Both workers placed calls (the split is 20 + 20).
    assert!(workers.iter().all(|w| w["started"] == 20), "{r}");
    assert_eq!(r["setup"]["count"], CALLS, "{r}");
    let samples = r["samples"].as_array().expect("samples");
    assert!(!samples.is_empty());
    let last = samples.last().expect("a sample");
    assert_eq!(last["started"], CALLS, "{r}");
    let csv = std::fs::read_to_string(&csv).expect("csv written");
    assert_eq!(csv.lines().count(), samples.len() + 1);

    // The scripted uas on the other side saw the same calls, all through to the BYE.
    assert_eq!(ur["totals"]["started"], CALLS, "{ur}");
    assert_eq!(ur["totals"]["completed"], CALLS, "{ur}");
    assert_eq!(ur["totals"]["failed"], 0, "{ur}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Reads `/proc/PID/stat`'s state letter; `None` when the process is gone.
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

#[test]
fn workers_die_with_their_controller() {
    let listen = format!("127.0.0.1:{}", free_port());
    let mut uas = Command::new(bin_path())
        .args([
            "load",
            "uas",
            "--listen",
            &listen,
            "--time-limit",
            "60",
            "--quiet",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the uas");
    let mut controller = Command::new(bin_path())
        .args([
            "load",
            "uac",
            "--workers",
            "2",
            "--threads",
            "2",
            "--target",
            &listen,
            "--rate",
            "2",
            "--time-limit",
            "60",
            "--duration-ms",
            "1000",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the controller");
    // The controller names its workers on stderr.
    let stderr = controller.stderr.take().expect("stderr");
    let mut line = String::new();
    let mut reader = std::io::BufReader::new(stderr);
    let pids: Vec<u32> = loop {
        line.clear();
        let n = std::io::BufRead::read_line(&mut reader, &mut line).expect("read stderr");
        assert!(n > 0, "the controller exited before naming its workers");
        if let Some(rest) = line.split("(pids ").nth(1) {
            break rest
                .trim_end()
                .trim_end_matches(')')
                .split(", ")
                .map(|p| p.parse().expect("a pid"))
                .collect();
        }
    };
    assert_eq!(pids.len(), 2, "{line}");
    assert!(pids.iter().all(|p| proc_state(*p).is_some()));
    controller.kill().expect("SIGKILL the controller");
    let _ = controller.wait();
    // The workers go too (PR_SET_PDEATHSIG, and their stdin pipe closed): wait for it, up to
    // a generous bound, then fail.
    let gone = |p: &u32| matches!(proc_state(*p), None | Some('Z') | Some('X'));
    let until = Instant::now() + Duration::from_secs(20);
    while !pids.iter().all(gone) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    let left: Vec<_> = pids.iter().filter(|p| !gone(p)).collect();
    let _ = uas.kill();
    let _ = uas.wait();
    assert!(left.is_empty(), "orphaned workers: {left:?}");
}
