//! Two baresip softphones register to switchboard over TLS (`;transport=tls`, the engine's
//! test certificate as their CA) and call each other through it; each plays a distinct sox
//! sweep and the test checks, from what baresip's sndfile module recorded, that each side heard
//! the other's sweep. The signalling of both legs stays on the phones' own TLS connections
//! (the flows their REGISTERs came on).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use switchboard_tests::baresip::{
    best_correlation, find_wav, list, read_wav, rms, sweep, tail, wait_cdr, Baresip, MODULE_PATH,
};
use switchboard_tests::{free_port, Engine};

/// baresip 1.0 (libre 1.1) accepts only MD5 digest challenges.
const ENGINE_EXTRA: &str = "[registrar]\ndigest_algorithms = [\"MD5\"]\n";

#[test]
fn baresip_over_tls_calls_baresip_with_audio_both_ways() {
    assert!(
        Path::new(MODULE_PATH).join("sndfile.so").exists(),
        "baresip is not installed (make test installs it)"
    );
    let mut engine = Engine::start(ENGINE_EXTRA);
    let dir = engine.dir.path().to_path_buf();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("engine certificate");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).expect("write cert");
    std::fs::write(&key, ck.signing_key.serialize_pem()).expect("write key");
    // baresip's own TLS listener wants a certificate too (cert and key in one PEM).
    let phone = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).expect("cert");
    let phone_pem = dir.join("phone.pem");
    std::fs::write(
        &phone_pem,
        format!("{}{}", phone.cert.pem(), phone.signing_key.serialize_pem()),
    )
    .expect("write phone pem");
    let tls = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let config = std::fs::read_to_string(engine.config_path()).expect("read config");
    let config = config.replacen(
        "[sip]\n",
        &format!(
            "[sip]\ntls_listen = [\"{tls}\"]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
            cert.display(),
            key.display()
        ),
        1,
    );
    std::fs::write(engine.config_path(), config).expect("write config");
    engine.restart();
    engine.add_user("alice", "alice-secret");
    engine.add_user("bob", "bob-secret");

    let work = tempfile::tempdir().expect("temp dir");
    let alice_tone = sweep(work.path(), "alice", 300, 1200);
    let bob_tone = sweep(work.path(), "bob", 1500, 3000);
    let registrar = format!("{tls};transport=tls");
    let extra = format!(
        "sip_cafile\t{}\nsip_certificate\t{}\n",
        cert.display(),
        phone_pem.display()
    );
    let start = |name: &str, pass: &str, tone: &Path| {
        Baresip::start_via(name, pass, "", &registrar, &extra, tone, work.path())
    };
    let bob = start("bob", "bob-secret", &bob_tone.padded);
    let alice = start("alice", "alice-secret", &alice_tone.padded);
    let diag = |what: &str| {
        format!(
            "{what}\n--- engine log (tail) ---\n{}\n--- bob ---\n{}\n--- alice ---\n{}",
            tail(&engine.log(), 80),
            tail(&bob.output(), 80),
            tail(&alice.output(), 80)
        )
    };
    for ua in [&bob, &alice] {
        match ua.wait_registered(Duration::from_secs(20)) {
            Some(line) => println!("{}: {}", ua.name, line.trim()),
            None => panic!(
                "{}",
                diag(&format!("{} did not register over TLS", ua.name))
            ),
        }
    }

    let reply = alice.command("dial", &format!("sip:bob@{tls};transport=tls"));
    assert!(
        reply.contains("\"ok\":true"),
        "{}",
        diag(&format!("dial refused: {reply}"))
    );
    let Some(cdr) = wait_cdr(&engine, Duration::from_secs(30)) else {
        let all = switchboard_tests::cdrs(&engine, 20);
        panic!(
            "{}",
            diag(&format!(
                "no CDR for alice → bob within 30 s; CDRs: {all:?}"
            ))
        );
    };
    println!("CDR: {cdr}");
    assert!(
        cdr["packets_a_to_b"].as_i64().unwrap_or(0) > 0
            && cdr["packets_b_to_a"].as_i64().unwrap_or(0) > 0,
        "{}",
        diag(&format!("no media relayed one way: {cdr}"))
    );
    let (alice_dir, bob_dir) = (alice.snd_dir.clone(), bob.snd_dir.clone());
    let (alice_out, bob_out) = (alice.quit(), bob.quit());
    // Both phones used TLS: their REGISTERs and the INVITEs came over TLS connections.
    for (name, out) in [("alice", &alice_out), ("bob", &bob_out)] {
        assert!(
            out.contains("SIP/2.0/TLS") || out.contains("transport=tls"),
            "{name} did not use TLS:\n{}",
            tail(out, 60)
        );
    }
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
        let Some(dec) = find_wav(dir, "dec") else {
            panic!(
                "{}",
                fail(format!(
                    "{receiver}: no received-audio WAV: {:?}",
                    list(dir)
                ))
            );
        };
        let (rate, received) = read_wav(&dec);
        assert_eq!(rate, 8000);
        let level = rms(&received);
        let (corr, lag) = best_correlation(&from.tone_samples, &received);
        let (wrong, _) = best_correlation(&other.tone_samples, &received);
        println!(
            "{receiver} received {:.2} s: RMS {level:.4}, correlation with {sender}'s sweep \
             {corr:.4} at lag {lag}, with its own {wrong:.4}",
            received.len() as f64 / 8000.0
        );
        assert!(
            level > 0.05,
            "{}",
            fail(format!("{receiver}: silence ({level:.4})"))
        );
        assert!(
            corr > 0.8,
            "{}",
            fail(format!("{receiver}: not {sender}'s sweep ({corr:.4})"))
        );
        assert!(
            wrong < 0.3,
            "{}",
            fail(format!("{receiver}: echo ({wrong:.4})"))
        );
    }
}
