//! Browser ↔ browser video through the engine's SFU room, end to end: two Debian headless
//! Chromiums (fake camera and microphone; `tests/browser/webrtc_video.js` with playwright-core)
//! open the room page (`/webrtc/room`) as agent and customer. Checked: each browser's
//! `getStats()` inbound camera `framesReceived` rises (VP8 forwarded by the engine without
//! transcoding, keyframes requested on join); the agent asks for the customer's screen, the
//! customer's page gets the request and consents, and the screen track (a separate track, swapped
//! in by `replaceTrack`) reaches the agent (its frames rise); a message on the customer's
//! `chat` data channel reaches the agent's.
//!
//! Needs `chromium` and `tests/browser/node_modules` (`make test` installs both).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use switchboard_tests::Engine;

const STEP: Duration = Duration::from_secs(150);

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser")
}

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

fn figures(line: &str) -> Vec<u64> {
    line.split(' ')
        .skip(1)
        .filter_map(|n| n.parse().ok())
        .collect()
}

fn run_room() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} missing: run `make test` (installs Debian chromium)"
    );
    assert!(
        browser_dir().join("node_modules/playwright-core").exists(),
        "tests/browser/node_modules missing: run `make test` (npm ci in tests/browser)"
    );
    let engine = Engine::start("");
    let node = Command::new("node")
        .arg(browser_dir().join("webrtc_video.js"))
        .arg(format!("http://{}/webrtc/room", engine.http_addr()))
        .arg("room-test-0123456789")
        .env("CHROMIUM", &chromium)
        .env("WEBRTC_WAIT_MS", "90000")
        .stdin(Stdio::null())
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
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let camera = figures(&expect_line(&rx, "camera", &engine));
    assert!(
        camera.len() == 2 && camera.iter().all(|&f| f >= 30),
        "{camera:?}"
    );
    expect_line(&rx, "screen-request", &engine);
    let screen = figures(&expect_line(&rx, "screen", &engine));
    assert!(screen.first().is_some_and(|&f| f >= 10), "{screen:?}");
    let chat = expect_line(&rx, "chat", &engine);
    assert_eq!(chat, "chat hello agent");
    expect_line(&rx, "done", &engine);
}

#[test]
fn agent_and_customer_see_each_other_and_the_shared_screen() {
    run_room();
}
