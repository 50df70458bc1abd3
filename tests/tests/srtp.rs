//! SDES-SRTP (RFC 4568) through `switchboard serve`: the engine terminates SRTP on secured legs
//! (its own key toward each), decrypts and re-encrypts, and bridges them to plain RTP legs.
//!
//! * our raw test phone offering `RTP/SAVP` calls a plain phone (`[calls] srtp = "off"`): tones
//!   both ways arrive at the right frequency, the caller's answer carries the engine's own key;
//! * a plain caller to an SRTP callee (`srtp = "sdes"`, callee accepting `_32`), and an
//!   AEAD_AES_128_GCM caller to an SRTP callee (`mirror`);
//! * `RTP/SAVP` without usable crypto → 488 with a reason;
//! * tampered and replayed SRTP packets are dropped and counted, never forwarded;
//! * a real peer: baresip with `mediaenc=srtp-mand` ↔ plain baresip, sweeps both ways.

use std::path::Path;
use std::time::Duration;

use switchboard_engine::sdp::{MediaSecurity, Sdp};
use switchboard_media::signal::{dominant, sine};
use switchboard_media::srtp::SrtpSuite;
use switchboard_tests::baresip::{
    best_correlation, find_wav, read_wav, rms, strip_ansi, sweep, tail, wait_cdr, Baresip,
    MODULE_PATH,
};
use switchboard_tests::phone::{level_dbfs, Phone, PhoneCodec};
use switchboard_tests::{http_get, register, wait_cdrs, Engine};

const TRUSTED: &str = "[calls]\ntrusted_sources = [\"127.0.0.1\"]\n";
const CALLER_HZ: f64 = 500.0;
const CALLEE_HZ: f64 = 1400.0;
const CANDIDATES: [f64; 4] = [CALLER_HZ, CALLEE_HZ, 800.0, 2000.0];

fn engine(srtp: &str) -> Engine {
    Engine::start(&format!("{TRUSTED}srtp = \"{srtp}\"\n"))
}

/// Registers `callee` as user `bob`.
fn register_bob(engine: &Engine, callee: &Phone) {
    engine.add_user("bob", "bob-secret");
    assert_eq!(
        register(engine, "bob", "bob-secret", callee.sip_addr(), 300),
        200,
        "REGISTER bob; log:\n{}",
        engine.log()
    );
}

fn tone(hz: f64, secs: f64) -> Vec<i16> {
    sine(hz, -10.0, 8000, (8000.0 * secs) as usize)
}

fn audio_section(sdp: &str) -> switchboard_engine::sdp::MediaSection {
    let sdp = Sdp::parse(sdp).expect("valid SDP");
    let i = sdp.audio_index().expect("an audio stream");
    sdp.media[i].clone()
}

/// The callee answers and listens, then speaks; the caller speaks, then listens. Returns what
/// each heard (callee, caller).
fn talk(engine: &Engine, caller: &mut Phone, mut callee: Phone) -> (Vec<i16>, Vec<i16>, Phone) {
    let callee_side = std::thread::spawn(move || {
        assert!(callee.wait_answered(Duration::from_secs(20)), "no call");
        let heard = callee.listen(Duration::from_secs(3));
        callee.speak(&tone(CALLEE_HZ, 2.0));
        (heard, callee)
    });
    assert_eq!(
        caller.status(),
        Some(200),
        "call failed ({:?}); log:\n{}",
        caller.reason(),
        engine.log()
    );
    caller.speak(&tone(CALLER_HZ, 2.0));
    let caller_heard = caller.listen(Duration::from_secs(4));
    caller.hang_up();
    let (callee_heard, callee) = callee_side.join().expect("callee thread");
    (callee_heard, caller_heard, callee)
}

fn assert_tone(heard: &[i16], hz: f64, who: &str, engine: &Engine) {
    let level = level_dbfs(heard);
    let top = dominant(heard, &CANDIDATES, 8000);
    println!(
        "{who} heard {:.2} s at {level:.1} dBFS, dominant {top:?} Hz",
        heard.len() as f64 / 8000.0
    );
    assert!(
        heard.len() >= 8000 && level > -30.0,
        "{who} heard (near) nothing: {} samples at {level:.1} dBFS; log:\n{}",
        heard.len(),
        engine.log()
    );
    assert_eq!(top, Some(hz), "{who} heard the wrong tone");
}

#[test]
fn sdes_caller_to_plain_callee_audio_both_ways() {
    let engine = engine("off");
    let callee = Phone::callee(PhoneCodec::Pcmu, true);
    register_bob(&engine, &callee);
    let mut caller = Phone::call_srtp(
        engine.sip_addr(),
        "bob",
        PhoneCodec::Pcmu,
        SrtpSuite::AesCm128HmacSha1_80,
    );
    let (callee_heard, caller_heard, callee) = talk(&engine, &mut caller, callee);

    // The caller's answer: RTP/SAVP, its tag and suite, the engine's own key.
    let answer = caller.remote_sdp().expect("an answer");
    let m = audio_section(&answer);
    assert_eq!(m.proto, "RTP/SAVP", "{answer}");
    let lines = m.crypto();
    assert_eq!(lines.len(), 1, "{answer}");
    assert_eq!(
        (lines[0].tag, lines[0].suite.as_str()),
        (1, "AES_CM_128_HMAC_SHA1_80")
    );
    assert_ne!(
        caller.remote_srtp_key(),
        caller.srtp_key(),
        "the engine answers with a key of its own"
    );
    // The callee's offer: plain RTP, no key anywhere.
    let offer = callee.remote_sdp().expect("the offer");
    let m = audio_section(&offer);
    assert_eq!(m.security(), MediaSecurity::Plain, "{offer}");
    assert!(!offer.contains("crypto"), "{offer}");

    assert_tone(&callee_heard, CALLER_HZ, "the plain callee", &engine);
    assert_tone(&caller_heard, CALLEE_HZ, "the SRTP caller", &engine);
    assert_eq!(
        caller.srtp_failures(),
        0,
        "every packet to the caller authenticated"
    );
}

#[test]
fn plain_caller_to_sdes_callee_with_the_32_bit_tag() {
    let engine = engine("sdes");
    let callee = Phone::callee_srtp(PhoneCodec::Pcmu, SrtpSuite::AesCm128HmacSha1_32);
    register_bob(&engine, &callee);
    let mut caller = Phone::call(engine.sip_addr(), "bob", PhoneCodec::Pcmu);
    let (callee_heard, caller_heard, callee) = talk(&engine, &mut caller, callee);

    let offer = callee.remote_sdp().expect("the offer");
    let m = audio_section(&offer);
    assert_eq!(m.proto, "RTP/SAVP", "{offer}");
    let suites: Vec<String> = m.crypto().into_iter().map(|c| c.suite).collect();
    assert_eq!(
        suites,
        vec!["AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32"],
        "{offer}"
    );
    let answer = caller.remote_sdp().expect("an answer");
    assert_eq!(
        audio_section(&answer).security(),
        MediaSecurity::Plain,
        "{answer}"
    );

    assert_tone(&callee_heard, CALLER_HZ, "the SRTP callee", &engine);
    assert_tone(&caller_heard, CALLEE_HZ, "the plain caller", &engine);
    assert_eq!(callee.srtp_failures(), 0);
}

#[test]
fn gcm_caller_mirrored_to_an_sdes_callee() {
    let engine = engine("mirror");
    let callee = Phone::callee_srtp(PhoneCodec::Pcmu, SrtpSuite::AeadAes128Gcm);
    register_bob(&engine, &callee);
    let mut caller = Phone::call_srtp(
        engine.sip_addr(),
        "bob",
        PhoneCodec::Pcmu,
        SrtpSuite::AeadAes128Gcm,
    );
    let (callee_heard, caller_heard, callee) = talk(&engine, &mut caller, callee);
    let offer = callee.remote_sdp().expect("the offer");
    let first = audio_section(&offer).crypto().into_iter().next();
    assert_eq!(
        first.map(|c| c.suite),
        Some("AEAD_AES_128_GCM".to_string()),
        "the caller's suite is offered first: {offer}"
    );
    assert_ne!(
        callee.remote_srtp_key(),
        caller.srtp_key(),
        "keys are per leg"
    );
    assert_tone(&callee_heard, CALLER_HZ, "the GCM callee", &engine);
    assert_tone(&caller_heard, CALLEE_HZ, "the GCM caller", &engine);
    assert_eq!(caller.srtp_failures() + callee.srtp_failures(), 0);
}

#[test]
fn savp_without_usable_crypto_is_refused_with_488() {
    let engine = engine("mirror");
    let head = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio {port} RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    for (what, extra) in [
        ("no a=crypto", ""),
        (
            "an unsupported suite",
            "a=crypto:1 F8_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR\r\n",
        ),
        (
            "a key of the wrong length",
            "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPyw=\r\n",
        ),
        (
            "a malformed line",
            "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:***\r\n",
        ),
        (
            "an MKI",
            "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4\r\n",
        ),
    ] {
        let phone = Phone::call_with_sdp(engine.sip_addr(), "bob", &format!("{head}{extra}"));
        let reason = phone.reason().unwrap_or_default();
        println!("{what}: {:?} {reason}", phone.status());
        assert_eq!(phone.status(), Some(488), "{what}: {reason}");
        assert!(reason.contains("crypto"), "{what}: reason names the fault: {reason}");
    }
    // Best-effort SRTP (RTP/AVP with an unusable line) falls back to plain RTP: no 488, the
    // call goes on (to a user that does not exist here: 404).
    let phone = Phone::call_with_sdp(
        engine.sip_addr(),
        "nobody",
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio {port} RTP/AVP 0\r\na=crypto:1 F8_128_HMAC_SHA1_80 inline:AAAA\r\n",
    );
    assert_ne!(phone.status(), Some(488), "{:?}", phone.reason());
}

#[test]
fn tampered_and_replayed_srtp_is_dropped_and_counted() {
    const PACKETS: u16 = 30;
    let engine = engine("off");
    let callee = Phone::callee(PhoneCodec::Pcmu, true);
    register_bob(&engine, &callee);
    let listener = std::thread::spawn(move || {
        assert!(callee.wait_answered(Duration::from_secs(20)), "no call");
        let got = callee.listen_packets(Duration::from_secs(4));
        (got, callee)
    });
    let mut caller = Phone::call_srtp(
        engine.sip_addr(),
        "bob",
        PhoneCodec::Pcmu,
        SrtpSuite::AesCm128HmacSha1_80,
    );
    assert_eq!(caller.status(), Some(200), "log:\n{}", engine.log());
    std::thread::sleep(Duration::from_millis(300));
    let mut sent_ok = Vec::new();
    let mut rejected = 0u64;
    let mut first_good: Option<Vec<u8>> = None;
    for i in 0..PACKETS {
        let payload = [0x55u8 ^ i as u8; 160];
        let mut p = caller.next_packet(&payload);
        if i % 3 == 2 {
            // Tampered: one payload bit flipped; the tag no longer matches.
            p[40] ^= 0x08;
            rejected += 1;
        } else {
            sent_ok.push(payload[0]);
            first_good.get_or_insert_with(|| p.clone());
        }
        caller.send_raw(&p);
        std::thread::sleep(Duration::from_millis(20));
    }
    // A replay of an authentic packet.
    caller.send_raw(&first_good.expect("a good packet"));
    rejected += 1;
    let (got, _callee) = listener.join().expect("listener");
    caller.hang_up();
    let got: Vec<u8> = got
        .iter()
        .filter(|p| p.len() == 12 + 160)
        .map(|p| p[12])
        .collect();
    assert_eq!(
        got, sent_ok,
        "only authentic packets reach the plain leg, once each"
    );

    wait_cdrs(&engine, 1);
    let metric = http_get(engine.http_addr(), "/metrics")
        .and_then(|(_, body)| {
            body.lines()
                .find_map(|l| l.strip_prefix("srtp_packets_rejected_total "))
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
        .expect("srtp_packets_rejected_total in /metrics");
    assert_eq!(
        metric as u64, rejected,
        "every tampered or replayed packet counted"
    );
}

// ---------------------------------------------------------------------------------------------
// A real peer: baresip with SDES-SRTP (module srtp.so, `mediaenc=srtp-mand`) ↔ plain baresip.

#[test]
fn baresip_sdes_srtp_to_plain_baresip_audio_both_ways() {
    assert!(
        Path::new(MODULE_PATH).join("srtp.so").exists(),
        "baresip's srtp module is not installed (make test installs baresip)"
    );
    let engine =
        Engine::start("[registrar]\ndigest_algorithms = [\"MD5\"]\n[calls]\nsrtp = \"off\"\n");
    engine.add_user("alice", "alice-secret");
    engine.add_user("bob", "bob-secret");
    let work = tempfile::tempdir().expect("temp dir");
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
        ";mediaenc=srtp-mand",
        &engine,
        &alice_tone.padded,
        work.path(),
    );
    let diag = |what: &str| {
        format!(
            "{what}\n--- engine log (tail) ---\n{}\n--- bob ---\n{}\n--- alice ---\n{}",
            tail(&engine.log(), 60),
            tail(&bob.output(), 60),
            tail(&alice.output(), 60)
        )
    };
    for ua in [&bob, &alice] {
        if ua.wait_registered(Duration::from_secs(15)).is_none() {
            panic!("{}", diag(&format!("{} did not register", ua.name)));
        }
    }
    let reply = alice.command("dial", &format!("sip:bob@{}", engine.sip_addr()));
    assert!(
        reply.contains("\"ok\":true"),
        "{}",
        diag(&format!("dial: {reply}"))
    );
    let cdr = wait_cdr(&engine, Duration::from_secs(30))
        .unwrap_or_else(|| panic!("{}", diag("no CDR within 30 s")));
    println!("CDR: {cdr}");
    let (a_to_b, b_to_a) = (
        cdr["packets_a_to_b"].as_i64().unwrap_or(0),
        cdr["packets_b_to_a"].as_i64().unwrap_or(0),
    );
    assert!(
        a_to_b > 50 && b_to_a > 50,
        "{}",
        diag(&format!("media: {cdr}"))
    );
    // The engine secured alice's leg (and only hers: srtp = "off" toward bob).
    let log = strip_ansi(&engine.log());
    let secured: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("SRTP: leg secured"))
        .collect();
    assert!(
        secured.len() == 1 && secured[0].contains("leg=A"),
        "{}",
        diag(&format!("expected leg A alone secured: {secured:?}"))
    );
    println!("engine: {}", secured[0]);
    let (alice_dir, bob_dir) = (alice.snd_dir.clone(), bob.snd_dir.clone());
    let (alice_out, bob_out) = (alice.quit(), bob.quit());
    // baresip logs the secured stream; bob's side never saw a key.
    println!(
        "alice srtp lines: {:?}",
        alice_out
            .lines()
            .filter(|l| l.to_ascii_lowercase().contains("srtp"))
            .take(5)
            .collect::<Vec<_>>()
    );
    for (receiver, dir, from, other) in [
        ("bob (plain)", &bob_dir, &alice_tone, &bob_tone),
        ("alice (SRTP)", &alice_dir, &bob_tone, &alice_tone),
    ] {
        let dec = find_wav(dir, "dec").unwrap_or_else(|| {
            panic!(
                "{receiver}: no received-audio WAV\n{}\n{}",
                tail(&alice_out, 40),
                tail(&bob_out, 40)
            )
        });
        let (rate, received) = read_wav(&dec);
        assert_eq!(rate, 8000);
        let (corr, lag) = best_correlation(&from.tone_samples, &received);
        let (wrong, _) = best_correlation(&other.tone_samples, &received);
        println!(
            "{receiver}: RMS {:.4}, correlation with the far sweep {corr:.4} at lag {lag}, \
             with its own {wrong:.4}",
            rms(&received)
        );
        assert!(
            corr > 0.8,
            "{receiver}: received audio does not match the far sweep ({corr:.4})\n{}\n{}\n{}",
            tail(&engine.log(), 40),
            tail(&alice_out, 40),
            tail(&bob_out, 40)
        );
        assert!(wrong < 0.3, "{receiver}: hears its own sweep ({wrong:.4})");
    }
}
