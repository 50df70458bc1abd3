//! The live dashboard in Debian's headless Chromium (driven by `tests/browser/dashboard.js`
//! with playwright-core): the engine runs the demo contact centre (queues `billing` and
//! `support`, agents `alice` and `bob`, logged out); while the page is open, two test phones
//! call a queue and a chat waits in it: the page's active-call and waiting counters rise; when
//! they hang up and the chat ends, the counters fall back to 0; the page forces agent `bob`
//! available and the REST API confirms it. Screenshots go to `target/test-artifacts/`.
//!
//! The page follows the event stream when the engine serves it and otherwise polls the REST API
//! every 2 s; either way every wait here is for a line from the script (bounded), never a sleep.
//!
//! Needs `chromium` and `tests/browser/node_modules` (`make test` installs both).

use serde_json::json;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use switchboard_tests::phone::{Phone, PhoneCodec};
use switchboard_tests::{api, api_get, Engine};

const TRUSTED: &str = "[calls]\ntrusted_sources = [\"127.0.0.1\"]\n";
/// 600 queues in `support`.
const PLAN: &str = r#"timezone: UTC
contexts:
  default:
    rules:
      - name: support-line
        called: 600
        actions:
          - queue: { name: support }
          - hangup
"#;
/// Longest wait for one step of the script (the box may be loaded).
const STEP: Duration = Duration::from_secs(120);

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser")
}

/// The next line the script prints that starts with `want`; other lines are echoed.
fn expect_line(rx: &mpsc::Receiver<String>, want: &str) -> String {
    loop {
        let line = rx
            .recv_timeout(STEP)
            .unwrap_or_else(|_| panic!("the browser script did not say `{want}` in time"));
        eprintln!("browser: {line}");
        assert!(!line.starts_with("error"), "browser script failed: {line}");
        if line.starts_with(want) {
            return line;
        }
    }
}

#[test]
fn dashboard_follows_calls_and_forces_agent_state() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} missing: run `make test` (installs Debian chromium)"
    );
    assert!(
        browser_dir().join("node_modules/playwright-core").exists(),
        "tests/browser/node_modules missing: run `make test` (npm ci in tests/browser)"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let plan = dir.path().join("plan.yaml");
    std::fs::write(&plan, PLAN).expect("write plan");
    let engine = Engine::start(&format!(
        "{TRUSTED}[dialplan]\nfile = \"{}\"\nwatch_secs = 0\n",
        plan.display()
    ));
    let artifacts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts");
    std::fs::create_dir_all(&artifacts).expect("artifacts dir");
    let shot = artifacts.join("dashboard.png");

    let mut node = Command::new("node")
        .arg(browser_dir().join("dashboard.js"))
        .arg(format!("http://{}/", engine.http_addr()))
        .arg(&shot)
        .arg("bob")
        .env("CHROMIUM", &chromium)
        .env("DASHBOARD_WAIT_MS", "90000")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run node");
    let stdout = node.stdout.take().expect("piped stdout");
    let mut stdin = node.stdin.take().expect("piped stdin");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Kill the browser whatever happens below.
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut node = Reap(node);

    expect_line(&rx, "ready");
    // Two callers wait in `support` (nobody is logged in) and a chat joins them.
    let mut callers: Vec<Phone> = (0..2)
        .map(|_| Phone::call(engine.sip_addr(), "600", PhoneCodec::Pcmu))
        .collect();
    for c in &callers {
        assert_eq!(c.status(), Some(200), "the queue answers the caller");
    }
    let chat = api(
        &engine,
        "POST",
        "/api/v1/interactions",
        Some(json!({"channel": "chat", "queue": "support"})),
    );
    let chat_id = chat["id"].as_u64().expect("chat id");
    let rose = expect_line(&rx, "rose");
    let figures: Vec<u64> = rose
        .split(' ')
        .skip(1)
        .filter_map(|n| n.parse().ok())
        .collect();
    assert!(
        figures.len() == 2 && figures[0] >= 1 && figures[1] >= 1,
        "{rose}"
    );

    for c in &mut callers {
        c.hang_up();
    }
    api(
        &engine,
        "POST",
        &format!("/api/v1/interactions/{chat_id}/end"),
        None,
    );
    writeln!(stdin, "end").expect("tell the script");
    expect_line(&rx, "fell");
    expect_line(&rx, "forced bob available");
    expect_line(&rx, "screenshot");

    // The force-state from the page reached the engine.
    let bob = api_get(&engine, "/api/v1/agents/bob");
    assert_eq!(bob["presence"], "available", "{bob}");
    assert_eq!(bob["status"], "available", "{bob}");

    let status = node.0.wait().expect("script exit");
    assert!(status.success(), "browser script: {status}");
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    eprintln!("screenshot: {}", shot.display());
}
