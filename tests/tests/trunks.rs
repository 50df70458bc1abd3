//! SIP trunks end to end, against real SIPp peers on loopback: outbound registration with
//! digest auth (refresh before expiry, recovery after the registrar restarts), gateway failover
//! with OPTIONS keep-alive probes, and per-trunk admission control under a call flood.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};
use switchboard_engine::auth::{answer, Algorithm, Credentials};
use switchboard_tests::{free_port, http_get, sipp, sipp_scenario, sipp_uac, stop_wrapped, Engine};

/// A SIPp scenario of this crate copied into `dir` with placeholders replaced.
fn scenario(dir: &Path, name: &str, replace: &[(&str, &str)]) -> PathBuf {
    let mut text = std::fs::read_to_string(sipp_scenario(name)).expect("scenario");
    for (k, v) in replace {
        text = text.replace(k, v);
    }
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write scenario");
    path
}

/// A SIPp server process (registrar or gateway) whose `log` actions go to `log`.
struct SippServer {
    child: Child,
    log: PathBuf,
}

impl SippServer {
    fn start(scenario: &Path, port: u16, log: PathBuf) -> SippServer {
        let _ = std::fs::remove_file(&log);
        let child = sipp(
            &[
                "-sf",
                &scenario.display().to_string(),
                "-i",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-trace_logs",
                "-log_file",
                &log.display().to_string(),
                "-trace_msg",
                "-message_file",
                &log.with_extension("msg").display().to_string(),
            ],
            170,
        );
        std::thread::sleep(Duration::from_millis(300));
        SippServer { child, log }
    }

    /// How many logged lines start with `word`.
    fn count(&self, word: &str) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with(word))
            .count()
    }

    fn lines(&self, word: &str) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with(word))
            .map(str::to_string)
            .collect()
    }

    fn stop(&mut self) {
        stop_wrapped(&mut self.child);
    }
}

impl Drop for SippServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The engine's view of trunk `name` (`GET /api/v1/trunks/{name}`).
fn trunk(engine: &Engine, name: &str) -> serde_json::Value {
    let (status, body) =
        http_get(engine.http_addr(), &format!("/api/v1/trunks/{name}")).expect("API answers");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("JSON")
}

/// Polls `cond` every 100 ms for up to `secs`; true when it held.
fn wait_for(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    cond()
}

/// Starts an engine with `plan` as its dialplan and `extra` TOML.
fn engine_with_plan(plan: &str, extra: &str) -> Engine {
    let dir = tempfile::tempdir().expect("temp dir").keep();
    let file = dir.join("plan.yaml");
    std::fs::write(&file, plan).expect("write plan");
    Engine::start(&format!(
        "[dialplan]\nfile = \"{}\"\nwatch_secs = 0\n{extra}",
        file.display()
    ))
}

/// SIPp sending `calls` calls at `rate`/s to `service` from source address `ip` with the
/// flood scenario (503 refusals are logged as "refused", answered calls as "completed").
fn carrier_uac(
    engine: &Engine,
    dir: &Path,
    ip: &str,
    service: &str,
    calls: u32,
    rate: u32,
    log: &Path,
) -> Child {
    let sf = scenario(dir, "uac_trunk_flood.xml", &[("HOLD_MS", "300")]);
    let _ = std::fs::remove_file(log);
    sipp(
        &[
            &engine.sip_addr().to_string(),
            "-sf",
            &sf.display().to_string(),
            "-s",
            service,
            "-i",
            ip,
            "-p",
            &free_port().to_string(),
            "-m",
            &calls.to_string(),
            "-r",
            &rate.to_string(),
            "-l",
            "200",
            "-timeout",
            "60s",
            "-trace_logs",
            "-log_file",
            &log.display().to_string(),
        ],
        90,
    )
}

fn count(log: &Path, word: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with(word))
        .count()
}

const CARRIER_CONTEXT: &str = r#"contexts:
  carrier:
    trunks: [carrier, flood, calm]
    rules:
      - name: inbound
        actions:
          - answer
          - echo
  default:
    rules:
      - name: out
        called: "_0."
        actions:
          - dial: { trunk: carrier, number: "${called}" }
      - name: lcr
        called: "_1."
        actions:
          - dial: { route: lcr, number: "${called}" }
"#;

/// The engine registers to a SIPp registrar that challenges with digest, refreshes before the
/// binding expires (same Call-ID, the state never leaves `registered`), notices when the
/// registrar is gone, and registers again once it is back. A call from the carrier to the
/// registered Contact is taken as the trunk's inbound call, without a challenge.
#[test]
fn outbound_registration_refresh_and_recovery() {
    let dir = tempfile::tempdir().expect("temp dir");
    let reg_port = free_port();
    let sf = scenario(
        dir.path(),
        "uas_trunk_registrar.xml",
        &[("TRUNK_USER", "acct42"), ("EXPIRES", "10")],
    );
    let mut registrar = SippServer::start(&sf, reg_port, dir.path().join("reg1.log"));
    let extra = format!(
        "[trunks.carrier]\naddress = \"127.0.0.1:{reg_port}\"\n\
         [trunks.carrier.register]\nusername = \"acct42\"\npassword = \"s3cret\"\n\
         expires_secs = 10\ntimeout_ms = 3000\nretry_min_secs = 1\nretry_max_secs = 2\n"
    );
    let engine = engine_with_plan(CARRIER_CONTEXT, &extra);
    let state = |e: &Engine| trunk(e, "carrier")["registration"]["state"].clone();

    assert!(
        wait_for(15, || state(&engine) == "registered"),
        "not registered: {}\nengine log:\n{}",
        trunk(&engine, "carrier"),
        engine.log()
    );
    assert!(
        registrar.count("challenged") >= 1,
        "the registrar challenged"
    );
    // Refreshes: granted 10 s, refreshed every 5 s. While three more go through, the state
    // never leaves `registered` (each refresh lands before the binding expires).
    let before = trunk(&engine, "carrier")["registration"]["registrations"]
        .as_u64()
        .unwrap_or(0);
    let mut states = Vec::new();
    let refreshed = wait_for(30, || {
        let t = trunk(&engine, "carrier");
        states.push(
            t["registration"]["state"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        );
        t["registration"]["registrations"].as_u64().unwrap_or(0) >= before + 3
    });
    assert!(refreshed, "{}", trunk(&engine, "carrier"));
    assert!(
        states.iter().all(|s| s == "registered"),
        "the binding lapsed between refreshes: {states:?}"
    );
    // Every Authorization the registrar got is a right MD5 digest (qop=auth) of the password.
    let trace = std::fs::read_to_string(registrar.log.with_extension("msg")).unwrap_or_default();
    let creds: Vec<Credentials> = trace
        .lines()
        .filter_map(|l| l.strip_prefix("Authorization:"))
        .filter_map(Credentials::parse)
        .collect();
    assert!(creds.len() >= 4, "{trace}");
    for c in &creds {
        assert_eq!(c.username, "acct42");
        assert_eq!(c.qop.as_deref(), Some("auth"));
        assert_eq!(
            c.response,
            answer(c, Algorithm::Md5, "REGISTER", "s3cret"),
            "{c:?}"
        );
    }
    let ncs: Vec<&str> = creds.iter().filter_map(|c| c.nc.as_deref()).collect();
    assert!(
        ncs.windows(2).all(|w| w[0] < w[1]),
        "nonce counts grow: {ncs:?}"
    );
    let regs = registrar.lines("registered");
    assert!(regs.len() >= 4, "{regs:?}");
    assert!(
        regs.iter().all(|l| l == &regs[0]),
        "refreshes reuse the Call-ID: {regs:?}"
    );

    // A call from the carrier to the registered Contact user is the trunk's inbound call.
    let call_log = dir.path().join("inbound.log");
    let mut call = carrier_uac(&engine, dir.path(), "127.0.0.1", "acct42", 1, 1, &call_log);
    assert!(call.wait().expect("sipp").success(), "{}", engine.log());
    assert_eq!(count(&call_log, "completed"), 1);
    assert_eq!(trunk(&engine, "carrier")["inbound_calls"], 1);

    // The registrar dies: the next refresh times out and the state says so.
    registrar.stop();
    assert!(
        wait_for(25, || state(&engine) == "failed"),
        "{}",
        trunk(&engine, "carrier")
    );
    let t = trunk(&engine, "carrier");
    assert!(
        t["registration"]["last_response"]
            .as_str()
            .unwrap_or("")
            .starts_with("408"),
        "{t}"
    );
    // It comes back (a new process: no memory of the old binding): registered again.
    let registrar2 = SippServer::start(&sf, reg_port, dir.path().join("reg2.log"));
    assert!(
        wait_for(15, || state(&engine) == "registered"
            && registrar2.count("registered") >= 1),
        "not registered again: {}",
        trunk(&engine, "carrier")
    );
}

/// Two gateways, the preferred one refusing calls with 503: calls fail over to the other. A
/// gateway that does not answer at all is skipped after the INVITE timeout. OPTIONS probes
/// mark the 503 gateway down when it stops, so calls no longer try it, and up again when it
/// comes back.
#[test]
fn gateway_failover_and_options_probes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let answering = scenario(dir.path(), "uas_trunk_gateway.xml", &[]);
    let sub = dir.path().join("refusing");
    std::fs::create_dir_all(&sub).expect("dir");
    let refusing = scenario(
        &sub,
        "uas_trunk_gateway.xml",
        &[("<!-- REFUSE: the test puts a jump to \"refuse\" here for a gateway that answers 503. -->", "<nop next=\"refuse\"/>")],
    );
    let (bad_port, good_port, dead_port) = (free_port(), free_port(), free_port());
    let mut bad = SippServer::start(&refusing, bad_port, dir.path().join("bad.log"));
    let good = SippServer::start(&answering, good_port, dir.path().join("good.log"));
    let extra = format!(
        "[calls]\ntrusted_sources = [\"127.0.0.1\"]\n\
         [trunks.carrier]\nstrategy = \"priority\"\ninvite_timeout_ms = 3000\n\
         number_format = \"e164\"\ncountry_code = \"33\"\ncaller_id = \"+33100000000\"\ncodecs = [\"PCMU\"]\n\
         gateways = [{{ address = \"127.0.0.1:{bad_port}\", priority = 0 }}, {{ address = \"127.0.0.1:{good_port}\", priority = 1 }}]\n\
         [trunks.carrier.probe]\ninterval_secs = 1\ntimeout_ms = 2000\ndown_after = 2\nup_after = 1\n\
         [trunks.backup]\nstrategy = \"priority\"\ninvite_timeout_ms = 1000\n\
         gateways = [{{ address = \"127.0.0.1:{dead_port}\", priority = 0 }}, {{ address = \"127.0.0.1:{good_port}\", priority = 1 }}]\n\
         [routes.lcr]\n\"1\" = [\"backup\"]\n"
    );
    let engine = engine_with_plan(CARRIER_CONTEXT, &extra);
    let gw = |e: &Engine, i: usize| trunk(e, "carrier")["gateways"][i].clone();
    assert!(
        wait_for(10, || gw(&engine, 0)["last_probe"] == "200 OK"
            && gw(&engine, 1)["last_probe"] == "200 OK"),
        "{}",
        trunk(&engine, "carrier")
    );

    // 503 from the first gateway: every call lands on the second.
    let mut calls = sipp_uac(&engine, "0612345678", 3, 3, 3, 300);
    assert!(
        calls.wait().expect("sipp").success(),
        "log:\n{}",
        engine.log()
    );
    assert!(wait_for(5, || good.count("answered") == 3), "good gateway");
    assert_eq!(bad.count("refused"), 3, "each call tried the first gateway");
    // The trunk's number format and caller ID: 0612345678 in France is +33612345678.
    let trace = std::fs::read_to_string(good.log.with_extension("msg")).unwrap_or_default();
    assert!(
        trace.contains("INVITE sip:+33612345678@127.0.0.1:"),
        "{trace}"
    );
    assert!(
        trace.contains("From: <sip:+33100000000@127.0.0.1>"),
        "{trace}"
    );
    let t = trunk(&engine, "carrier");
    assert_eq!(t["gateways"][0]["failures"], 3, "{t}");
    assert_eq!(
        t["gateways"][0]["last_failure"], "503 Service Unavailable",
        "{t}"
    );

    // A gateway that never answers (no probes on this trunk): skipped after invite_timeout_ms.
    // Reached through the least-cost route table `lcr` ("1…" → backup).
    let mut call = sipp_uac(&engine, "1555000", 1, 1, 1, 300);
    assert!(
        call.wait().expect("sipp").success(),
        "log:\n{}",
        engine.log()
    );
    assert!(wait_for(5, || good.count("answered") == 4));
    let b = trunk(&engine, "backup");
    assert_eq!(
        b["gateways"][0]["last_failure"], "408 Request Timeout (gateway did not answer)",
        "{b}"
    );

    // The 503 gateway stops: probes mark it down, and calls no longer try it.
    bad.stop();
    assert!(
        wait_for(20, || gw(&engine, 0)["up"] == false),
        "{}",
        trunk(&engine, "carrier")
    );
    assert_eq!(gw(&engine, 1)["up"], true);
    let attempts = gw(&engine, 0)["attempts"].clone();
    let mut calls = sipp_uac(&engine, "0612345678", 2, 2, 2, 300);
    assert!(
        calls.wait().expect("sipp").success(),
        "log:\n{}",
        engine.log()
    );
    assert!(wait_for(5, || good.count("answered") == 6));
    assert_eq!(
        gw(&engine, 0)["attempts"],
        attempts,
        "a down gateway is skipped"
    );

    // It returns: up again.
    let back = SippServer::start(&refusing, bad_port, dir.path().join("bad2.log"));
    assert!(
        wait_for(15, || gw(&engine, 0)["up"] == true),
        "{}",
        trunk(&engine, "carrier")
    );
    assert!(back.count("probe") >= 1);
    // Every call's slot on the trunks is free again.
    assert!(wait_for(10, || trunk(&engine, "carrier")["active_calls"]
        == 0
        && trunk(&engine, "backup")["active_calls"] == 0));
    assert_eq!(trunk(&engine, "carrier")["outbound_calls"], 5);
}

/// A flood at five times a trunk's CPS limit: the excess gets 503 with Retry-After, every
/// admitted call completes, and another trunk's calls at the same time are all admitted.
#[test]
fn per_trunk_cps_limit_under_flood() {
    let dir = tempfile::tempdir().expect("temp dir");
    let extra = "[trunks.flood]\ninbound_sources = [\"127.0.0.2/32\"]\nmax_cps = 4\n\
                 [trunks.calm]\ninbound_sources = [\"127.0.0.3\"]\nmax_cps = 4\n";
    let engine = engine_with_plan(CARRIER_CONTEXT, extra);
    let (flood_log, calm_log) = (dir.path().join("flood.log"), dir.path().join("calm.log"));
    // 60 calls at 20/s (5 x 4) from the flood trunk; 8 calls at 2/s from the calm one.
    let mut flood = carrier_uac(&engine, dir.path(), "127.0.0.2", "100", 60, 20, &flood_log);
    let mut calm = carrier_uac(&engine, dir.path(), "127.0.0.3", "200", 8, 2, &calm_log);
    let flood_ok = flood.wait().expect("sipp").success();
    let calm_ok = calm.wait().expect("sipp").success();
    let (completed, refused) = (count(&flood_log, "completed"), count(&flood_log, "refused"));
    println!(
        "flood: {completed} completed, {refused} refused with 503; calm: {} completed",
        count(&calm_log, "completed")
    );
    assert!(
        flood_ok,
        "no flood call failed otherwise; log:\n{}",
        engine.log()
    );
    assert_eq!(completed + refused, 60);
    assert!(
        refused >= 20,
        "the limit held: {refused} refused, {completed} admitted"
    );
    assert!(completed >= 4, "admitted calls complete: {completed}");
    assert!(calm_ok, "calm trunk");
    assert_eq!(
        count(&calm_log, "completed"),
        8,
        "the other trunk is unaffected"
    );
    assert_eq!(count(&calm_log, "refused"), 0);
    let f = trunk(&engine, "flood");
    assert_eq!(f["refused_rate"].as_u64(), Some(refused as u64), "{f}");
    assert_eq!(f["admitted"].as_u64(), Some(completed as u64), "{f}");
    let c = trunk(&engine, "calm");
    assert_eq!(c["refused_rate"], 0, "{c}");
    assert_eq!(c["inbound_calls"], 8, "{c}");
    assert!(wait_for(10, || trunk(&engine, "flood")["active_calls"]
        == 0
        && trunk(&engine, "calm")["active_calls"] == 0));
}

/// Config errors name the trunk key.
#[test]
fn bad_trunk_config_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "[trunks.x]\naddress = \"127.0.0.1:5999\"\ninbound_sources = [\"nonsense\"]\n",
    )
    .expect("write");
    let out = std::process::Command::new(switchboard_tests::bin_path())
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("trunks.x.inbound_sources[0]"), "{err}");
}

/// Three failed REGISTERs from one source ban it: even the right password then gets 403, and
/// the ban shows in `GET /api/v1/bans`.
#[test]
fn repeated_auth_failures_ban_the_source() {
    let engine = Engine::start("[bans]\nmax_auth_failures = 3\nwindow_secs = 60\nban_secs = 300\n");
    engine.add_user("alice", "right");
    let contact: std::net::SocketAddr = "127.0.0.1:5999".parse().expect("addr");
    assert_eq!(
        switchboard_tests::register(&engine, "alice", "right", contact, 60),
        200
    );
    for _ in 0..3 {
        assert_eq!(
            switchboard_tests::register(&engine, "alice", "wrong", contact, 60),
            403
        );
    }
    assert_eq!(
        switchboard_tests::register(&engine, "alice", "right", contact, 60),
        403,
        "banned"
    );
    let (status, body) = http_get(engine.http_addr(), "/api/v1/bans").expect("API");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(v["bans"][0]["source"], "127.0.0.1", "{v}");
    assert_eq!(v["bans"][0]["failures"], 3, "{v}");
}

/// A gateway that challenges calls (407): the engine answers with the trunk's digest
/// credentials (a right MD5 digest, next CSeq, ACKed with that CSeq) and the call completes.
#[test]
fn carrier_challenges_the_invite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let sf = scenario(
        dir.path(),
        "uas_trunk_gateway_auth.xml",
        &[("TRUNK_USER", "out7")],
    );
    let gw = SippServer::start(&sf, port, dir.path().join("auth.log"));
    let plan = "contexts:\n  default:\n    rules:\n      - called: \"_0.\"\n        actions:\n          - dial: { trunk: secure, number: \"${called}\" }\n";
    let extra = format!(
        "[calls]\ntrusted_sources = [\"127.0.0.1\"]\n[trunks.secure]\naddress = \"127.0.0.1:{port}\"\n\
         outbound_username = \"out7\"\noutbound_password = \"pw7\"\n"
    );
    let engine = engine_with_plan(plan, &extra);
    let mut call = sipp_uac(&engine, "0612345678", 1, 1, 1, 300);
    assert!(
        call.wait().expect("sipp").success(),
        "log:\n{}",
        engine.log()
    );
    assert!(
        wait_for(5, || gw.count("answered") == 1),
        "{}",
        engine.log()
    );
    assert_eq!(gw.count("authorized"), 1);
    let trace = std::fs::read_to_string(gw.log.with_extension("msg")).unwrap_or_default();
    let creds: Vec<Credentials> = trace
        .lines()
        .filter_map(|l| l.strip_prefix("Proxy-Authorization:"))
        .filter_map(Credentials::parse)
        .collect();
    assert_eq!(creds.len(), 1, "{trace}");
    assert_eq!(creds[0].username, "out7");
    assert_eq!(
        creds[0].response,
        answer(&creds[0], Algorithm::Md5, "INVITE", "pw7")
    );
    assert!(
        trace.contains("CSeq: 2 ACK"),
        "the ACK carries the INVITE's CSeq:\n{trace}"
    );
}
