//! The contact centre end to end with real SIP peers: a dialplan `queue` action puts SIPp
//! callers in a queue configured through the REST API, served by SIPp agents registered to the
//! engine; the metrics read back through the API must match the test's own count. And the
//! contact-centre file (`[contact_centre] config_file`): queues and agents it creates are
//! visible through the API, the demo file is loaded by default, a bad file refuses to start.
//!
//! Every SIPp run is bounded (`timeout`), every wait is for an event (a process exit, a stored
//! CDR), never a timed assertion.

use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use switchboard_tests::{
    api, api_get, bin_path, free_port, register, sipp, sipp_scenario, sipp_uac, stop_wrapped,
    wait_cdrs, Engine,
};

const TRUSTED: &str = "[calls]\ntrusted_sources = [\"127.0.0.1\"]\n";
/// Engines of this file configure their contact centre through the API (no demo file).
const NO_CC_FILE: &str = "[contact_centre]\nconfig_file = \"\"\n";
/// The demo dialplan (`file = ""` refuses to start today: see `Dialplans::load`).
const DEMO_PLAN: &str = "[dialplan]\nfile = \"builtin:demo\"\n";

const AGENTS: usize = 5;
const CALLS: u32 = 20;
/// How long an agent talks before hanging up.
const TALK_MS: u32 = 1000;

/// The dialplan: 600 goes to the `support` queue.
const PLAN: &str = r#"timezone: UTC
contexts:
  default:
    rules:
      - name: support-line
        called: 600
        actions:
          - queue: { name: support }
"#;

/// A port for SIPp's `-mp`: SIPp binds it and the next three, so all four must be free.
fn media_port() -> u16 {
    loop {
        let p = free_port();
        if p < 65530 && (1..4).all(|i| std::net::UdpSocket::bind(("127.0.0.1", p + i)).is_ok()) {
            return p;
        }
    }
}

/// Copies a scenario of `tests/sipp/` into `dir` with text replaced.
fn scenario(dir: &Path, name: &str, replace: &[(&str, &str)]) -> PathBuf {
    let mut text = std::fs::read_to_string(sipp_scenario(name)).expect("scenario");
    for (from, to) in replace {
        assert!(text.contains(from), "{name} has no `{from}`");
        text = text.replace(from, to);
    }
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write scenario");
    path
}

/// One agent's phone: SIPp answering (180, 200), talking `TALK_MS`, then hanging up (BYE);
/// counts its calls in a statistics file.
struct AgentPhone {
    name: String,
    child: Child,
    stats: PathBuf,
    errors: PathBuf,
}

impl AgentPhone {
    fn start(dir: &Path, name: &str, scenario: &Path) -> (AgentPhone, u16) {
        let port = free_port();
        let stats = dir.join(format!("{name}_stats.csv"));
        let errors = dir.join(format!("{name}_errors.log"));
        let (sf, st, er) = (
            scenario.display().to_string(),
            stats.display().to_string(),
            errors.display().to_string(),
        );
        let child = sipp(
            &[
                "-sf",
                &sf,
                "-i",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-mi",
                "127.0.0.1",
                "-mp",
                &media_port().to_string(),
                // More than it will get: the split between agents is the router's choice.
                "-m",
                &CALLS.to_string(),
                "-recv_timeout",
                "30000",
                "-trace_stat",
                "-stf",
                &st,
                "-fd",
                "1",
                "-trace_err",
                "-error_file",
                &er,
            ],
            120,
        );
        let phone = AgentPhone {
            name: name.into(),
            child,
            stats,
            errors,
        };
        (phone, port)
    }

    /// Stops SIPp gracefully (SIGUSR1 to SIPp itself, under its `timeout` wrapper: no new
    /// calls, the current ones finish, final statistics written) and returns (exit code 0,
    /// successful calls, failed calls).
    fn finish(mut self) -> (bool, u64, u64) {
        let wrapper = self.child.id();
        let children = std::fs::read_to_string(format!("/proc/{wrapper}/task/{wrapper}/children"))
            .unwrap_or_default();
        for pid in children.split_whitespace() {
            let _ = Command::new("kill").args(["-USR1", pid]).status();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let ok = loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                break status.success();
            }
            if Instant::now() > deadline {
                stop_wrapped(&mut self.child);
                break false;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let (success, failed) = final_counts(&self.stats);
        (ok, success, failed)
    }
}

impl Drop for AgentPhone {
    fn drop(&mut self) {
        stop_wrapped(&mut self.child);
    }
}

/// `SuccessfulCall(C)` and `FailedCall(C)` of the last line of a SIPp statistics file.
fn final_counts(path: &Path) -> (u64, u64) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let Some(header) = lines.next() else {
        return (0, 0);
    };
    let Some(last) = lines.next_back() else {
        return (0, 0);
    };
    let cols: Vec<&str> = header.split(';').collect();
    let vals: Vec<&str> = last.split(';').collect();
    let col = |name: &str| {
        cols.iter()
            .position(|c| *c == name)
            .and_then(|i| vals.get(i))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    (col("SuccessfulCall(C)"), col("FailedCall(C)"))
}

/// 20 SIPp callers dial 600 at once; the plan queues them in `support`; 5 SIPp agents
/// registered as the agents' SIP users take them (one call at a time each, 15 callers
/// waiting on hold at first), talk 1 s and hang up; each caller gets the BYE. Every call is
/// answered by an agent, none is lost, and the queue and agent metrics read back through the
/// REST API equal the test's own count from the agents' SIPp statistics.
#[test]
fn twenty_callers_five_agents() {
    let dir = tempfile::tempdir().expect("temp dir");
    let plan = dir.path().join("plan.yaml");
    std::fs::write(&plan, PLAN).expect("write plan");
    let engine = Engine::start(&format!(
        "{TRUSTED}{NO_CC_FILE}[dialplan]\nfile = \"{}\"\nwatch_secs = 0\n",
        plan.display()
    ));

    // The queue and the agents, through the REST API. No wrap-up: an agent takes the next
    // call as soon as the last one ends.
    api(
        &engine,
        "POST",
        "/api/v1/queues",
        Some(json!({"name": "support", "wrap_up_secs": 0, "offer_timeout_secs": 10})),
    );
    let agent_sc = scenario(
        dir.path(),
        "uas_bye.xml",
        &[(
            "<pause milliseconds=\"500\"/>",
            &format!("<pause milliseconds=\"{TALK_MS}\"/>"),
        )],
    );
    let mut phones = Vec::new();
    for i in 1..=AGENTS {
        let name = format!("agent{i}");
        let sip_user = format!("cc-agent-{i}");
        api(
            &engine,
            "POST",
            "/api/v1/agents",
            Some(json!({"name": name, "sip_user": sip_user,
                        "queues": [{"queue": "support"}]})),
        );
        engine.add_user(&sip_user, "agent-secret");
        let (phone, port) = AgentPhone::start(dir.path(), &name, &agent_sc);
        let contact = format!("127.0.0.1:{port}").parse().expect("addr");
        assert_eq!(
            register(&engine, &sip_user, "agent-secret", contact, 3600),
            200,
            "register {sip_user}"
        );
        let v = api(
            &engine,
            "PUT",
            &format!("/api/v1/agents/{name}/state"),
            Some(json!({"state": "available"})),
        );
        assert_eq!(v["status"], "available", "{v}");
        phones.push(phone);
    }
    let q = api_get(&engine, "/api/v1/queues/support");
    assert_eq!(q["live"]["agents_available"], AGENTS, "{q}");

    // 20 callers at once; each waits (up to 60 s) for the BYE that ends its call.
    let caller_sc = scenario(
        dir.path(),
        "uac_callee_bye.xml",
        &[(
            "<recv request=\"BYE\" timeout=\"10000\"/>",
            "<recv request=\"BYE\" timeout=\"60000\"/>",
        )],
    );
    let started = Instant::now();
    let (sf, target, port, mp, errors) = (
        caller_sc.display().to_string(),
        engine.sip_addr().to_string(),
        free_port().to_string(),
        media_port().to_string(),
        dir.path().join("callers_errors.log"),
    );
    let er = errors.display().to_string();
    let calls = CALLS.to_string();
    let mut callers = sipp(
        &[
            "-sf",
            &sf,
            &target,
            "-s",
            "600",
            "-i",
            "127.0.0.1",
            "-p",
            &port,
            "-mi",
            "127.0.0.1",
            "-mp",
            &mp,
            "-m",
            &calls,
            "-r",
            "50",
            "-l",
            &calls,
            "-trace_err",
            "-error_file",
            &er,
        ],
        100,
    );
    let callers_ok = callers.wait().expect("wait for sipp").success();
    let elapsed = started.elapsed();
    assert!(
        callers_ok,
        "SIPp callers failed\n--- errors:\n{}\n--- engine log:\n{}",
        std::fs::read_to_string(&errors).unwrap_or_default(),
        engine.log()
    );

    // The agents' own count.
    let mut by_agent: BTreeMap<String, u64> = BTreeMap::new();
    for phone in phones {
        let (name, errors) = (phone.name.clone(), phone.errors.clone());
        let (ok, success, failed) = phone.finish();
        assert!(
            ok && failed == 0,
            "agent {name}: exit ok {ok}, {failed} failed\n--- errors:\n{}",
            std::fs::read_to_string(&errors).unwrap_or_default()
        );
        by_agent.insert(name, success);
    }
    let answered: u64 = by_agent.values().sum();
    assert_eq!(
        answered,
        u64::from(CALLS),
        "calls answered by agents: {by_agent:?}"
    );

    // Every call has its CDR: answered, ended normally.
    let cdrs = wait_cdrs(&engine, CALLS as usize);
    assert_eq!(cdrs.len(), CALLS as usize, "CDRs: {cdrs:#?}");
    for c in &cdrs {
        assert_eq!(c["sip_code"], 200, "CDR {c}");
        assert!(c["answer_ms"].is_i64(), "CDR {c}");
    }

    // The metrics, folded from the stored routing events, against the count above.
    let m = api_get(&engine, "/api/v1/metrics/queues/support");
    eprintln!("queue metrics: {m:#}");
    for (k, want) in [
        ("contacts_queued", CALLS),
        ("contacts_answered", CALLS),
        ("contacts_handled", CALLS),
        ("contacts_abandoned", 0),
        ("contacts_exited", 0),
    ] {
        assert_eq!(m[k], want, "{k}: {m}");
    }
    assert_eq!(m["abandon_rate"], 0.0, "{m}");
    let mut handled_sum = 0;
    for (name, n) in &by_agent {
        let a = api_get(&engine, &format!("/api/v1/metrics/agents/{name}"));
        assert_eq!(a["contacts_handled"], *n, "agent {name}: {a}");
        assert_eq!(a["offers_missed"], 0, "agent {name}: {a}");
        handled_sum += a["contacts_handled"].as_u64().unwrap_or(0);
    }
    assert_eq!(handled_sum, u64::from(CALLS));
    // Nothing left waiting, every agent free again.
    let q = api_get(&engine, "/api/v1/queues/support");
    assert_eq!(q["live"]["waiting"], 0, "{q}");
    assert_eq!(q["live"]["agents_available"], AGENTS, "{q}");
    eprintln!(
        "{CALLS} calls, {AGENTS} agents, {TALK_MS} ms talk: all answered in {:.1} s; per agent {by_agent:?}; \
         ASA {} ms, AHT {} ms",
        elapsed.as_secs_f64(),
        m["average_speed_of_answer_ms"],
        m["average_handle_time_ms"]
    );
}

/// Callers who hang up while on hold are counted as abandoned: 5 SIPp callers (SIPp's built-in
/// UAC, each hanging up 1 s after the engine answered) into the queue while no agent is logged
/// in; the metrics say 5 queued, 5 abandoned, none answered.
#[test]
fn callers_hanging_up_on_hold_are_abandoned() {
    let dir = tempfile::tempdir().expect("temp dir");
    let plan = dir.path().join("plan.yaml");
    std::fs::write(&plan, PLAN).expect("write plan");
    let engine = Engine::start(&format!(
        "{TRUSTED}{NO_CC_FILE}[dialplan]\nfile = \"{}\"\nwatch_secs = 0\n",
        plan.display()
    ));
    api(
        &engine,
        "POST",
        "/api/v1/queues",
        Some(json!({"name": "support", "wrap_up_secs": 0})),
    );
    let mut callers = sipp_uac(&engine, "600", 5, 10, 5, 1000);
    assert!(
        callers.wait().expect("wait for sipp").success(),
        "SIPp callers failed; engine log:\n{}",
        engine.log()
    );
    let cdrs = wait_cdrs(&engine, 5);
    assert_eq!(cdrs.len(), 5, "CDRs: {cdrs:#?}");
    let m = api_get(&engine, "/api/v1/metrics/queues/support");
    for (k, want) in [
        ("contacts_queued", 5),
        ("contacts_abandoned", 5),
        ("contacts_answered", 0),
        ("contacts_handled", 0),
    ] {
        assert_eq!(m[k], want, "{k}: {m}");
    }
    assert_eq!(m["abandon_rate"], 1.0, "{m}");
    let q = api_get(&engine, "/api/v1/queues/support");
    assert_eq!(q["live"]["waiting"], 0, "{q}");
}

/// A contact-centre file of queues and agents.
const CC_FILE: &str = r#"
[[queues]]
name = "sales"
wrap_up_secs = 0

[[queues]]
name = "renewals"
max_wait_secs = 120

[[agents]]
name = "dana"
sip_user = "2001"
skills = { sales = 4 }
queues = [{ queue = "sales" }, { queue = "renewals", priority = 2 }]

[[agents]]
name = "eli"
sip_user = "2002"
queues = [{ queue = "renewals" }]

[workflow]
default_queue = "sales"
filters = [
  { name = "renewal", expression = 'attributes.topic == "renewal"', steps = [{ queue = "renewals" }] },
]
"#;

/// Queues and agents of a `config_file` are visible through the REST API, also after a
/// restart (applied again: no duplicate, no error); the workflow is installed.
#[test]
fn config_file_creates_queues_and_agents() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("cc.toml");
    std::fs::write(&file, CC_FILE).expect("write");
    let mut engine = Engine::start(&format!(
        "{DEMO_PLAN}[contact_centre]\nconfig_file = \"{}\"\n",
        file.display()
    ));
    for round in 0..2 {
        let queues = api_get(&engine, "/api/v1/queues");
        let mut names: Vec<&str> = queues
            .as_array()
            .expect("a list")
            .iter()
            .filter_map(|q| q["config"]["name"].as_str())
            .collect();
        names.sort_unstable();
        assert_eq!(names, ["renewals", "sales"], "round {round}: {queues}");
        let q = api_get(&engine, "/api/v1/queues/renewals");
        assert_eq!(q["config"]["max_wait_secs"], 120, "{q}");
        let a = api_get(&engine, "/api/v1/agents/dana");
        assert_eq!(a["config"]["sip_user"], "2001", "{a}");
        assert_eq!(a["config"]["skills"]["sales"], 4, "{a}");
        assert_eq!(a["config"]["queues"][1]["priority"], 2, "{a}");
        assert_eq!(a["status"], "offline", "{a}");
        let e = api_get(&engine, "/api/v1/agents/eli");
        assert_eq!(e["config"]["sip_user"], "2002", "{e}");
        let w = api_get(&engine, "/api/v1/workflow");
        assert_eq!(w["default_queue"], "sales", "{w}");
        assert_eq!(w["filters"][0]["steps"][0]["queue"], "renewals", "{w}");
        if round == 0 {
            engine.restart();
        }
    }
}

/// `make run`'s defaults load the demo file: the queues of the demo dialplan and agents on the
/// demo users 1001 and 1002.
#[test]
fn demo_file_is_loaded_by_default() {
    let engine = Engine::start(DEMO_PLAN);
    for q in ["billing", "support"] {
        api_get(&engine, &format!("/api/v1/queues/{q}"));
    }
    let agents = api_get(&engine, "/api/v1/agents");
    let mut users: Vec<&str> = agents
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|a| a["config"]["sip_user"].as_str())
        .collect();
    users.sort_unstable();
    assert_eq!(users, ["1001", "1002"], "{agents}");
}

/// Runs `switchboard serve` on a config naming `cc_file`; it must exit (bounded wait) with a
/// non-zero code; returns its stderr.
fn refused_start(cc_file: &str) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("cc.toml");
    std::fs::write(&file, cc_file).expect("write");
    let (sip, http) = (free_port(), free_port());
    let cfg = dir.path().join("switchboard.toml");
    std::fs::write(
        &cfg,
        format!(
            "{DEMO_PLAN}[sip]\nudp_listen = [\"127.0.0.1:{sip}\"]\ntcp_listen = [\"127.0.0.1:{sip}\"]\n\
             [http]\nlisten = \"127.0.0.1:{http}\"\n[data]\ndir = \"{}\"\n\
             [contact_centre]\nconfig_file = \"{}\"\n",
            dir.path().join("data").display(),
            file.display()
        ),
    )
    .expect("write config");
    let err = dir.path().join("stderr.log");
    let mut child = Command::new(bin_path())
        .args(["serve", "--config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err).expect("log"))
        .spawn()
        .expect("spawn switchboard");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("switchboard kept running with a bad contact-centre file");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::fs::read_to_string(&err).unwrap_or_default();
    assert!(!status.success(), "exit {status:?}; stderr:\n{stderr}");
    stderr
}

/// A bad file refuses the start, naming the file and the field: the API's own checks
/// (proficiency, unknown queue) and the file's syntax (unknown key).
#[test]
fn bad_config_file_refuses_start() {
    let e = refused_start(
        "[[queues]]\nname = \"q\"\n[[agents]]\nname = \"a\"\nskills = { billing = 7 }\nqueues = [{ queue = \"q\" }]\n",
    );
    assert!(
        e.contains("cc.toml") && e.contains("agents[0].skills.billing") && e.contains("1 to 5"),
        "{e}"
    );
    let e = refused_start("[[agents]]\nname = \"a\"\nqueues = [{ queue = \"nope\" }]\n");
    assert!(
        e.contains("agents[0].queues[0].queue") && e.contains("unknown queue `nope`"),
        "{e}"
    );
    let e = refused_start(
        "[workflow]\nfilters = [{ name = \"f\", expression = \"attributes.x ==\", steps = [] }]\n",
    );
    assert!(e.contains("workflow.filters[0].expression"), "{e}");
    let e = refused_start("[[queues]]\nname = \"q\"\nwrap_up_sec = 3\n");
    assert!(
        e.contains("queues[0]") && e.contains("unknown field `wrap_up_sec`"),
        "{e}"
    );
}
