//! The RFC 4475 corpus through both codecs, message by message: which one tells a valid message
//! from an invalid one the way the manifest says. This is the measurement behind "our own
//! parser" in ARCHITECTURE.md (run with `--nocapture` to see the table).

use serde_json::Value;
use std::path::PathBuf;

#[test]
fn rfc4475_corpus_rsipstack_vs_switchboard() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/conformance/rfc4475");
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("manifest.json")).expect("manifest"),
    )
    .expect("json");
    let (mut ours_ok, mut theirs_ok, mut n) = (0, 0, 0);
    println!(
        "{:<12} {:<6} {:<14} {:<12} {:<12}",
        "message", "valid", "expect", "rsipstack", "switchboard"
    );
    for m in manifest["messages"].as_array().expect("messages") {
        let name = m["name"].as_str().unwrap_or_default();
        let bytes = std::fs::read(dir.join(m["file"].as_str().unwrap_or_default())).expect("file");
        let valid = m["valid"].as_bool().unwrap_or(false);
        let expect = m["expect"].as_str().unwrap_or_default();
        // What a parser should say: accept the valid ones, refuse the ones the manifest rejects
        // or drops as malformed; where a 400 is an acceptable answer either is fine.
        let allows_400 = m["preferred_status"]
            .as_array()
            .is_some_and(|a| a.iter().any(|v| v == 400));
        let want_accept = match expect {
            "answer_or_400" => None,
            "status" if allows_400 => None,
            _ => Some(valid),
        };
        let owned = bytes.clone();
        let theirs = std::panic::catch_unwind(move || {
            rsipstack::sip::SipMessage::try_from(owned.as_slice()).is_ok()
        })
        .unwrap_or(false);
        let ours = switchboard_engine::sip::parse_datagram(&bytes).is_ok();
        let judge = |accepted: bool| want_accept.is_none_or(|w| w == accepted);
        n += 1;
        ours_ok += usize::from(judge(ours));
        theirs_ok += usize::from(judge(theirs));
        let show = |a: bool| if a { "accept" } else { "refuse" };
        println!(
            "{name:<12} {valid:<6} {expect:<14} {:<12} {:<12}",
            show(theirs),
            show(ours)
        );
    }
    println!("parse-level agreement with the manifest: rsipstack {theirs_ok}/{n}, switchboard {ours_ok}/{n}");
    assert_eq!(n, 50);
    assert_eq!(
        ours_ok, 50,
        "the switchboard parser must classify every torture message as the manifest does"
    );
}
