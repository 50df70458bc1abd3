//! Two real softphones through the B2BUA: baresip "alice" and baresip "bob" register to
//! switchboard (digest auth), alice calls bob through it (answering the 407 challenge), bob
//! auto-answers, and each plays a distinctive tone sweep generated with sox. baresip's sndfile
//! module writes the audio each side received; the test checks that it is not silence and that
//! it is the other side's sweep (normalized cross-correlation), in both directions, and that the
//! engine wrote a CDR with media relayed both ways.

use std::path::Path;
use std::time::Duration;
use switchboard_tests::baresip::{
    best_correlation, find_wav, list, read_wav, rms, sweep, tail, wait_cdr, Baresip, MODULE_PATH,
};
use switchboard_tests::Engine;

/// Engine config for this test. baresip 1.0 (libre 1.1, Debian 12) fails the whole digest
/// exchange with ENOSYS ("Function not implemented") when *any* challenge in a 401/407 names an
/// algorithm other than MD5, so the engine challenges with MD5 only here.
const ENGINE_EXTRA: &str = "[registrar]\ndigest_algorithms = [\"MD5\"]\n";

/// alice → switchboard → bob with real audio both ways.
#[test]
fn baresip_calls_baresip_through_switchboard_with_audio_both_ways() {
    assert!(
        Path::new(MODULE_PATH).join("sndfile.so").exists(),
        "baresip is not installed (make test installs it)"
    );
    let engine = Engine::start(ENGINE_EXTRA);
    engine.add_user("alice", "alice-secret");
    engine.add_user("bob", "bob-secret");
    let work = tempfile::tempdir().expect("temp dir");

    // Two distinct sweeps: alice's in the low band, bob's in the high band.
    let alice_tone = sweep(work.path(), "alice", 300, 1200);
    let bob_tone = sweep(work.path(), "bob", 1500, 3000);

    let bob = Baresip::start(
        "bob",
        "bob-secret",
        "",
        &engine,
        &bob_tone.padded,
        work.path(),
    );
    let alice = Baresip::start(
        "alice",
        "alice-secret",
        "",
        &engine,
        &alice_tone.padded,
        work.path(),
    );
    let diag = |what: &str| {
        let hint = if format!("{}{}", bob.output(), alice.output())
            .contains("Function not implemented")
        {
            "\nhint: libre 1.1 refuses a 401/407 that offers any non-MD5 digest challenge \
             (ENOSYS): is `[registrar] digest_algorithms = [\"MD5\"]` honoured for REGISTER and INVITE?"
        } else {
            ""
        };
        format!(
            "{what}{hint}\n--- engine log (tail) ---\n{}\n--- bob ---\n{}\n--- alice ---\n{}",
            tail(&engine.log(), 80),
            tail(&bob.output(), 80),
            tail(&alice.output(), 80)
        )
    };
    for ua in [&bob, &alice] {
        match ua.wait_registered(Duration::from_secs(15)) {
            Some(line) => println!("{}: {}", ua.name, line.trim()),
            None => panic!("{}", diag(&format!("{} did not register", ua.name))),
        }
    }

    let target = format!("sip:bob@{}", engine.sip_addr());
    let reply = alice.command("dial", &target);
    assert!(
        reply.contains("\"ok\":true"),
        "{}",
        diag(&format!("dial refused: {reply}"))
    );

    // The call lasts as long as the files (TONE_SECS + PAD_SECS); the CDR is written at its end.
    let Some(cdr) = wait_cdr(&engine, Duration::from_secs(30)) else {
        panic!("{}", diag("no CDR for alice → bob within 30 s"));
    };
    let cause = cdr["cause"].as_str().unwrap_or_default().to_string();
    let a_to_b = cdr["packets_a_to_b"].as_i64().unwrap_or(0);
    let b_to_a = cdr["packets_b_to_a"].as_i64().unwrap_or(0);
    println!("CDR: {cdr}");
    assert!(
        cause == "normal_clearing" || cause == "callee_hangup",
        "{}",
        diag(&format!("unexpected CDR cause: {cdr}"))
    );
    assert!(
        a_to_b > 0 && b_to_a > 0,
        "{}",
        diag(&format!("no media relayed one way: {cdr}"))
    );

    // Quit both phones cleanly so sndfile finalizes its WAV headers.
    let alice_dir = alice.snd_dir.clone();
    let bob_dir = bob.snd_dir.clone();
    let (alice_out, bob_out) = (alice.quit(), bob.quit());

    let fail = |what: String| {
        format!(
            "{what}\n--- engine log (tail) ---\n{}\n--- bob ---\n{}\n--- alice ---\n{}",
            tail(&engine.log(), 80),
            tail(&bob_out, 80),
            tail(&alice_out, 80)
        )
    };
    for (receiver, dir, sender, from, other) in [
        ("bob", &bob_dir, "alice", &alice_tone, &bob_tone),
        ("alice", &alice_dir, "bob", &bob_tone, &alice_tone),
    ] {
        let dec = match find_wav(dir, "dec") {
            Some(p) => p,
            None => panic!(
                "{}",
                fail(format!(
                    "{receiver}: sndfile wrote no received-audio WAV in {}: {:?}",
                    dir.display(),
                    list(dir)
                ))
            ),
        };
        let (rate, received) = read_wav(&dec);
        assert_eq!(rate, 8000, "{receiver}: {} is not 8 kHz", dec.display());
        let level = rms(&received);
        let (corr, lag) = best_correlation(&from.tone_samples, &received);
        let (wrong, _) = best_correlation(&other.tone_samples, &received);
        println!(
            "{receiver} received {} ({:.2} s): RMS {level:.4} (sent tone RMS {:.4}), \
             correlation with {sender}'s sweep {corr:.4} at lag {lag} samples ({:.0} ms), \
             with its own sweep {wrong:.4}",
            dec.display(),
            received.len() as f64 / 8000.0,
            rms(&from.tone_samples),
            lag as f64 / 8.0
        );
        assert!(
            level > 0.05,
            "{}",
            fail(format!(
                "{receiver}'s received audio is (near) silence: RMS {level:.4}"
            ))
        );
        assert!(
            corr > 0.8,
            "{}",
            fail(format!(
                "{receiver}'s received audio does not match {sender}'s sweep: correlation {corr:.4}"
            ))
        );
        assert!(
            wrong < 0.3,
            "{}",
            fail(format!(
                "{receiver}'s received audio correlates with its own sweep ({wrong:.4}): echo?"
            ))
        );
    }
}
