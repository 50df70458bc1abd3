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

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use switchboard_engine::sdp::{MediaSecurity, Sdp};
use switchboard_media::signal::{dominant, sine};
use switchboard_media::srtp::SrtpSuite;
use switchboard_tests::phone::{level_dbfs, Phone, PhoneCodec};
use switchboard_tests::{free_port, http_get, register, wait_cdrs, Engine};

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

/// Where Debian's baresip packages put their modules.
const MODULE_PATH: &str = "/usr/lib/baresip/modules";
const TONE_SECS: f64 = 3.0;
const PAD_SECS: f64 = 2.0;

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

struct Tone {
    padded: PathBuf,
    tone_samples: Vec<f32>,
}

/// An 8 kHz mono sweep `from`→`to` Hz at -6 dBFS made with sox, padded with silence.
fn sweep(dir: &Path, name: &str, from: u32, to: u32) -> Tone {
    let tone = dir.join(format!("{name}-tone.wav"));
    let padded = dir.join(format!("{name}-padded.wav"));
    let run = |args: Vec<String>| {
        let out = Command::new("sox")
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .expect("run sox (make test installs sox)");
        assert!(
            out.status.success(),
            "sox {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let t = tone.display().to_string();
    run(vec![
        "-n".into(),
        "-r".into(),
        "8000".into(),
        "-c".into(),
        "1".into(),
        "-b".into(),
        "16".into(),
        "-e".into(),
        "signed-integer".into(),
        t.clone(),
        "synth".into(),
        TONE_SECS.to_string(),
        "sine".into(),
        format!("{from}:{to}"),
        "gain".into(),
        "-6".into(),
    ]);
    run(vec![
        t,
        padded.display().to_string(),
        "pad".into(),
        "0".into(),
        PAD_SECS.to_string(),
    ]);
    let (_, tone_samples) = read_wav(&tone);
    Tone {
        padded,
        tone_samples,
    }
}

/// A headless baresip with one account registering to the engine, killed when dropped.
struct Baresip {
    name: String,
    child: Option<Child>,
    out: PathBuf,
    snd_dir: PathBuf,
    ctrl: SocketAddr,
}

impl Baresip {
    fn start(
        name: &str,
        password: &str,
        account_params: &str,
        engine: &Engine,
        source: &Path,
        work: &Path,
    ) -> Baresip {
        let dir = work.join(name);
        let snd_dir = dir.join("snd");
        std::fs::create_dir_all(&snd_dir).expect("baresip dirs");
        let sip_port = free_port_pair();
        let ctrl = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let config = format!(
            "poll_method\tepoll\nsip_listen\t127.0.0.1:{sip_port}\nnet_interface\t127.0.0.1\n\
             audio_player\talsa,null\naudio_alert\talsa,null\naudio_source\taufile,{source}\n\
             module_path\t{MODULE_PATH}\nmodule\tg711.so\nmodule\taufile.so\nmodule\talsa.so\n\
             module\tsndfile.so\nmodule\tsrtp.so\nmodule_app\taccount.so\nmodule_app\tmenu.so\n\
             module_app\tctrl_tcp.so\nctrl_tcp_listen\t{ctrl}\nsnd_path\t{snd}\n",
            source = source.display(),
            snd = snd_dir.display(),
        );
        std::fs::write(dir.join("config"), config).expect("write baresip config");
        std::fs::write(
            dir.join("accounts"),
            format!(
                "<sip:{name}@{engine_addr}>;auth_pass={password};regint=60;answermode=auto;\
                 audio_codecs=PCMU{account_params}\n",
                engine_addr = engine.sip_addr()
            ),
        )
        .expect("write baresip accounts");
        let out = dir.join("baresip.out");
        let log = std::fs::File::create(&out).expect("baresip output file");
        let child = Command::new("baresip")
            .arg("-f")
            .arg(&dir)
            .args(["-v", "-t", "60"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup output file"))
            .stderr(log)
            .spawn()
            .expect("run baresip (make test installs it)");
        Baresip {
            name: name.to_string(),
            child: Some(child),
            out,
            snd_dir,
            ctrl,
        }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn wait_registered(&self, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(line) = self
                .output()
                .lines()
                .find(|l| l.contains("200 OK") && l.contains("binding"))
            {
                return Some(line.to_string());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    /// One ctrl_tcp command (a JSON netstring); the response text.
    fn command(&self, command: &str, params: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut s = loop {
            match TcpStream::connect_timeout(&self.ctrl, Duration::from_millis(500)) {
                Ok(s) => break s,
                Err(e) if Instant::now() > deadline => {
                    panic!("{}: ctrl_tcp at {} refused: {e}", self.name, self.ctrl)
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        };
        let json =
            serde_json::json!({"command": command, "params": params, "token": "t1"}).to_string();
        write!(s, "{}:{json},", json.len()).expect("write ctrl_tcp command");
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("read timeout");
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while Instant::now() < deadline {
            match s.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(_) => {}
            }
            let text = String::from_utf8_lossy(&buf);
            if let Some(r) = netstrings(&text)
                .into_iter()
                .find(|m| m.contains("\"response\""))
            {
                return r;
            }
        }
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// Quits baresip (so its WAV files are closed) and returns its output.
    fn quit(mut self) -> String {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.command("quit", "");
        }));
        if let Some(mut child) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.output()
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn netstrings(mut text: &str) -> Vec<String> {
    let mut out = Vec::new();
    while let Some((len, rest)) = text.split_once(':') {
        let Ok(len) = len.trim().parse::<usize>() else {
            break;
        };
        if rest.len() < len + 1 {
            break;
        }
        out.push(rest[..len].to_string());
        text = &rest[len + 1..];
    }
    out
}

/// A loopback port free (UDP and TCP) with the next one (baresip's TLS is on PORT+1).
fn free_port_pair() -> u16 {
    loop {
        let p = free_port();
        if p == u16::MAX {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok()
            && UdpSocket::bind(("127.0.0.1", p + 1)).is_ok()
        {
            return p;
        }
    }
}

fn wait_cdr(engine: &Engine, timeout: Duration) -> Option<serde_json::Value> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let found = switchboard_tests::cdrs(engine, 20).into_iter().find(|c| {
            c["caller"].as_str().unwrap_or_default().contains("alice")
                && c["callee"].as_str().unwrap_or_default().contains("bob")
        });
        if found.is_some() {
            return found;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

fn find_wav(dir: &Path, kind: &str) -> Option<PathBuf> {
    let suffix = format!("-{kind}.wav");
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(&suffix))
        })
}

fn read_wav(path: &Path) -> (u32, Vec<f32>) {
    let mut r = hound::WavReader::open(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let spec = r.spec();
    let samples = r
        .samples::<i16>()
        .map(|s| s.map(|v| v as f32 / 32768.0))
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_else(|e| panic!("cannot decode {}: {e}", path.display()));
    (spec.sample_rate, samples)
}

fn rms(x: &[f32]) -> f64 {
    if x.is_empty() {
        return 0.0;
    }
    (x.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>() / x.len() as f64).sqrt()
}

/// The highest normalized cross-correlation of `signal` in `received` and its lag.
fn best_correlation(signal: &[f32], received: &[f32]) -> (f64, usize) {
    if received.len() < signal.len() || signal.is_empty() {
        return (0.0, 0);
    }
    let energy_s: f64 = signal.iter().map(|&v| (v as f64) * (v as f64)).sum();
    let mut energy_r: f64 = received[..signal.len()]
        .iter()
        .map(|&v| (v as f64) * (v as f64))
        .sum();
    let mut best = (0.0, 0);
    for lag in 0..=received.len() - signal.len() {
        if lag > 0 {
            let out = received[lag - 1] as f64;
            let inn = received[lag + signal.len() - 1] as f64;
            energy_r += inn * inn - out * out;
        }
        if energy_r <= 1e-9 {
            continue;
        }
        let dot: f32 = signal
            .iter()
            .zip(&received[lag..lag + signal.len()])
            .map(|(a, b)| a * b)
            .sum();
        let c = dot as f64 / (energy_s * energy_r.max(0.0)).sqrt();
        if c > best.0 {
            best = (c, lag);
        }
    }
    best
}

/// The text without ANSI colour sequences (the engine's log may carry them).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
