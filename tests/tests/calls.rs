//! Calls through the B2BUA with real peers: SIPp as caller and as callee.

use std::time::Duration;
use switchboard_tests::{free_port, register, sipp, Engine};

const TRUSTED: &str = "[calls]\ntrusted_sources = [\"127.0.0.1\"]\n";

/// SIPp uac → switchboard → SIPp uas: 1 000 calls, none failed.
#[test]
fn sipp_uac_through_b2bua_to_sipp_uas_1000_calls() {
    let engine = Engine::start(TRUSTED);
    let uas_port = free_port();
    let mut uas = sipp(
        &[
            "-sn",
            "uas",
            "-i",
            "127.0.0.1",
            "-p",
            &uas_port.to_string(),
            "-m",
            "1000",
        ],
        120,
    );
    std::thread::sleep(Duration::from_millis(300));
    engine.add_user("uas", "uas-secret");
    assert_eq!(
        register(
            &engine,
            "uas",
            "uas-secret",
            format!("127.0.0.1:{uas_port}").parse().expect("addr"),
            3600
        ),
        200
    );
    let target = engine.sip_addr().to_string();
    let uac_port = free_port().to_string();
    let status = sipp(
        &[
            "-sn",
            "uac",
            &target,
            "-s",
            "uas",
            "-i",
            "127.0.0.1",
            "-p",
            &uac_port,
            "-m",
            "1000",
            "-r",
            "200",
            "-l",
            "300",
            "-d",
            "200",
            "-timeout",
            "90s",
        ],
        110,
    )
    .wait()
    .expect("sipp uac");
    let _ = uas.kill();
    assert!(
        status.success(),
        "SIPp uac reported failed calls ({status:?}); engine log:\n{}",
        tail(&engine.log())
    );
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
