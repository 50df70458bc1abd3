//! Identity at the trust boundary (RFC 3325 / RFC 3323) through the B2BUA: a trusted carrier
//! (SIPp from 127.0.0.2, in `calls.trusted_sources`) calls a registered user (the test phone on
//! 127.0.0.1, not trusted). `P-Asserted-Identity` from the carrier reaches the user unless the
//! carrier asked `Privacy: id`; `Privacy: user` anonymises From; `Privacy`, `Diversion` and
//! `History-Info` pass through.

use std::time::{Duration, Instant};
use switchboard_tests::phone::{Phone, PhoneCodec};
use switchboard_tests::{free_port, register, sipp, sipp_scenario, stop_wrapped, Engine};

/// Runs one SIPp call from 127.0.0.2 to `bob` with `headers` added to its INVITE; returns what
/// bob's phone received: (P-Asserted-Identity, Privacy, Diversion, History-Info, From).
fn call_with(headers: &str) -> [Vec<String>; 5] {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = Engine::start("[calls]\ntrusted_sources = [\"127.0.0.2\"]\n");
    let mut bob = Phone::callee(PhoneCodec::Pcmu, true);
    engine.add_user("bob", "bob-secret");
    assert_eq!(
        register(&engine, "bob", "bob-secret", bob.sip_addr(), 3600),
        200
    );
    let text = std::fs::read_to_string(sipp_scenario("uac_callee_bye.xml")).expect("scenario");
    let anchor = "Max-Forwards: 70\n      Content-Type: application/sdp";
    assert!(text.contains(anchor));
    let text = text.replacen(
        anchor,
        &format!("Max-Forwards: 70\n{headers}      Content-Type: application/sdp"),
        1,
    );
    let sf = dir.path().join("uac_identity.xml");
    std::fs::write(&sf, text).expect("write scenario");
    let (sf, target, port, mp) = (
        sf.display().to_string(),
        engine.sip_addr().to_string(),
        free_port().to_string(),
        free_port().to_string(),
    );
    let mut caller = sipp(
        &[
            "-sf",
            &sf,
            &target,
            "-s",
            "bob",
            "-i",
            "127.0.0.2",
            "-p",
            &port,
            "-mi",
            "127.0.0.2",
            "-mp",
            &mp,
            "-m",
            "1",
        ],
        30,
    );
    assert!(
        bob.wait_answered(Duration::from_secs(15)),
        "bob's phone is called"
    );
    let got = [
        bob.incoming_header("P-Asserted-Identity"),
        bob.incoming_header("Privacy"),
        bob.incoming_header("Diversion"),
        bob.incoming_header("History-Info"),
        bob.incoming_header("From"),
    ];
    std::thread::sleep(Duration::from_millis(300));
    bob.hang_up_incoming();
    let deadline = Instant::now() + Duration::from_secs(15);
    let ok = loop {
        if let Ok(Some(st)) = caller.try_wait() {
            break st.success();
        }
        if Instant::now() > deadline {
            stop_wrapped(&mut caller);
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(ok, "the caller's call completes (BYE from bob's side)");
    got
}

#[test]
fn trusted_identity_and_diversion_pass_through() {
    let [pai, privacy, diversion, history, from] = call_with(
        "      P-Asserted-Identity: <sip:+15551230000@carrier.example>\n\
         \x20     Diversion: <sip:+15559990000@carrier.example>;reason=no-answer\n\
         \x20     History-Info: <sip:+15559990000@carrier.example>;index=1\n",
    );
    assert_eq!(pai, vec!["<sip:+15551230000@carrier.example>"], "PAI");
    assert!(privacy.is_empty(), "{privacy:?}");
    assert_eq!(diversion.len(), 1, "{diversion:?}");
    assert!(diversion[0].contains("reason=no-answer"), "{diversion:?}");
    assert_eq!(history.len(), 1, "{history:?}");
    assert!(from[0].contains("sipp@127.0.0.2"), "From kept: {from:?}");
}

#[test]
fn privacy_id_withholds_the_identity_from_an_untrusted_user() {
    let [pai, privacy, _, _, from] = call_with(
        "      P-Asserted-Identity: <sip:+15551230000@carrier.example>\n\
         \x20     Privacy: id;user\n",
    );
    assert!(pai.is_empty(), "PAI withheld: {pai:?}");
    assert_eq!(privacy, vec!["id;user"]);
    assert!(
        from[0].starts_with("\"Anonymous\" <sip:anonymous@anonymous.invalid>;tag="),
        "From anonymised: {from:?}"
    );
}
