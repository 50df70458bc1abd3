//! Calls through the B2BUA with real peers: SIPp as caller and as callee.

use switchboard_tests::{sipp_uac, Engine, SippUas};

const TRUSTED: &str = "[calls]\ntrusted_sources = [\"127.0.0.1\"]\n";

/// SIPp uac → switchboard → SIPp uas: 1 000 calls, none failed.
#[test]
fn sipp_uac_through_b2bua_to_sipp_uas_1000_calls() {
    let engine = Engine::start(TRUSTED);
    engine.add_user("uas", "uas-secret");
    let uas = SippUas::start(1000);
    assert_eq!(uas.register(&engine, "uas", "uas-secret"), 200);
    let status = sipp_uac(&engine, "uas", 1000, 200, 300, 200)
        .wait()
        .expect("sipp uac");
    drop(uas);
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
