//! DTLS-SRTP (RFC 5763/5764) on SIP legs through `switchboard serve`: the engine is the DTLS
//! endpoint of a leg (its own certificate and fingerprint, `a=setup` negotiation, the handshake
//! on the leg's RTP socket), decrypts and re-encrypts, and bridges the leg to plain RTP or SDES.
//!
//! * baresip with `mediaenc=dtls_srtp` calls a plain baresip through the engine, and the
//!   reverse (the engine offers DTLS to the callee, `srtp_users = { bob = "dtls" }`): sox
//!   sweeps both ways, checked by cross-correlation of what each baresip recorded; tshark on
//!   loopback shows DTLS records on the DTLS leg and only SRTP-sized RTP there;
//! * DTLS ↔ SDES: baresip `dtls_srtp` → engine → baresip `srtp-mand`;
//! * a fingerprint mismatch: our own DTLS client (media::dtls) offers a fingerprint that is not
//!   its certificate's: the engine refuses the handshake and hangs up (BYE), logs and counts it.

use std::collections::HashSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use switchboard_engine::sdp::{MediaSecurity, Sdp, Setup};
use switchboard_media::dtls::{DtlsEvent, DtlsIdentity, DtlsRole, DtlsSession, Fingerprint};
use switchboard_tests::baresip::{
    best_correlation, find_wav, read_wav, rms, strip_ansi, sweep, tail, wait_cdr, Baresip, Tone,
    MODULE_PATH,
};
use switchboard_tests::phone::Phone;
use switchboard_tests::{http_get, register, Engine};

/// PCMU: 12-byte header + 160 bytes of payload; SRTP adds a 10-byte tag (HMAC-SHA1-80).
const PLAIN_RTP_LEN: usize = 172;

fn metric(engine: &Engine, line_prefix: &str) -> f64 {
    http_get(engine.http_addr(), "/metrics")
        .and_then(|(_, body)| {
            body.lines()
                .find_map(|l| l.strip_prefix(line_prefix))
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
        .unwrap_or(0.0)
}

/// tshark on loopback, UDP only, to a file; stopped (and the file flushed) on drop.
struct Capture {
    child: Option<Child>,
    file: std::path::PathBuf,
}

impl Capture {
    fn start(dir: &Path) -> Capture {
        let file = dir.join("lo.pcap");
        let child = Command::new("tshark")
            .args(["-i", "lo", "-f", "udp", "-q", "-w"])
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run tshark (make test installs it)");
        // tshark needs a moment before it captures.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !file.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(500));
        Capture {
            child: Some(child),
            file,
        }
    }

    /// Stops the capture; (src port, dst port, UDP payload) of every datagram.
    fn stop(mut self) -> Vec<(u16, u16, Vec<u8>)> {
        if let Some(mut c) = self.child.take() {
            // SIGINT: tshark closes the file properly.
            let _ = Command::new("kill")
                .args(["-INT", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        let out = Command::new("tshark")
            .arg("-r")
            .arg(&self.file)
            .args([
                "-T",
                "fields",
                "-e",
                "udp.srcport",
                "-e",
                "udp.dstport",
                "-e",
                "udp.payload",
            ])
            .output()
            .expect("tshark -r");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let mut f = l.split('\t');
                let s = f.next()?.parse().ok()?;
                let d = f.next()?.parse().ok()?;
                let hex = f.next()?.replace(':', "");
                let bytes = (0..hex.len() / 2)
                    .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
                    .collect::<Option<Vec<u8>>>()?;
                Some((s, d, bytes))
            })
            .collect()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The DTLS legs in a capture: the port pairs that carried DTLS records (RFC 7983 first byte
/// 20–63), and on them the RTP packets (first byte 128–191, not RTCP) by length.
fn dtls_legs(packets: &[(u16, u16, Vec<u8>)]) -> (HashSet<(u16, u16)>, Vec<usize>, usize) {
    let mut pairs = HashSet::new();
    let mut records = 0;
    for (s, d, p) in packets {
        if p.first().is_some_and(|b| (20..=63).contains(b)) && p.len() > 13 && p[1] == 0xfe {
            pairs.insert((*s, *d));
            pairs.insert((*d, *s));
            records += 1;
        }
    }
    let rtp_lens = packets
        .iter()
        .filter(|(s, d, p)| {
            pairs.contains(&(*s, *d))
                && p.first().is_some_and(|b| (128..=191).contains(b))
                && p.get(1).is_some_and(|pt| !(192..=223).contains(pt))
        })
        .map(|(_, _, p)| p.len())
        .collect();
    (pairs, rtp_lens, records)
}

/// The sweep with 1.5 s of silence before it: a DTLS leg hears nothing until its handshake is
/// done (and baresip records from then on), while the plain side starts sending at once.
fn lead_in(tone: Tone, dir: &Path, name: &str) -> Tone {
    let src = dir.join(format!("{name}-tone.wav"));
    let out = dir.join(format!("{name}-lead.wav"));
    let ok = Command::new("sox")
        .arg(&src)
        .arg(&out)
        .args(["pad", "1.5", "2"])
        .status()
        .expect("run sox");
    assert!(ok.success(), "sox pad");
    Tone {
        padded: out,
        tone_samples: tone.tone_samples,
    }
}

struct Outcome {
    engine_log: String,
    packets: Vec<(u16, u16, Vec<u8>)>,
}

/// alice (`alice_params`) calls bob (`bob_params`) through an engine with `config`; sweeps
/// both ways must arrive (correlation > 0.8 with the far sweep, < 0.3 with its own).
fn call_through(config: &str, alice_params: &str, bob_params: &str) -> Outcome {
    for m in ["dtls_srtp.so", "srtp.so"] {
        assert!(
            Path::new(MODULE_PATH).join(m).exists(),
            "baresip's {m} is not installed (make test installs baresip)"
        );
    }
    let engine = Engine::start(&format!(
        "[registrar]\ndigest_algorithms = [\"MD5\"]\n[calls]\n{config}"
    ));
    engine.add_user("alice", "alice-secret");
    engine.add_user("bob", "bob-secret");
    let work = tempfile::tempdir().expect("temp dir");
    let alice_tone = lead_in(sweep(work.path(), "alice", 300, 1200), work.path(), "alice");
    let bob_tone = lead_in(sweep(work.path(), "bob", 1500, 3000), work.path(), "bob");
    let registrar = engine.sip_addr().to_string();
    let modules = "module\tdtls_srtp.so\n";
    let capture = Capture::start(work.path());
    let bob = Baresip::start_via(
        "bob",
        "bob-secret",
        bob_params,
        &registrar,
        modules,
        &bob_tone.padded,
        work.path(),
    );
    let alice = Baresip::start_via(
        "alice",
        "alice-secret",
        alice_params,
        &registrar,
        modules,
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
    let cdr = wait_cdr(&engine, Duration::from_secs(40))
        .unwrap_or_else(|| panic!("{}", diag("no CDR within 40 s")));
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
    let ok = metric(&engine, "dtls_handshakes_total{result=\"ok\"} ");
    let failed = metric(&engine, "dtls_handshakes_total{result=\"failed\"} ");
    println!("dtls_handshakes_total ok={ok} failed={failed}");
    assert!(ok >= 1.0 && failed == 0.0, "{}", diag("handshake counters"));
    let engine_log = strip_ansi(&engine.log());
    let (alice_dir, bob_dir) = (alice.snd_dir.clone(), bob.snd_dir.clone());
    let (alice_out, bob_out) = (alice.quit(), bob.quit());
    for (name, out) in [("alice", &alice_out), ("bob", &bob_out)] {
        println!(
            "{name}: {:?}",
            out.lines()
                .filter(|l| {
                    let l = l.to_ascii_lowercase();
                    l.contains("dtls") || l.contains("srtp")
                })
                .take(6)
                .collect::<Vec<_>>()
        );
    }
    let mut results = Vec::new();
    for (receiver, dir, from, other) in [
        ("bob", &bob_dir, &alice_tone, &bob_tone),
        ("alice", &alice_dir, &bob_tone, &alice_tone),
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
        let profile: Vec<String> = received
            .chunks(2000)
            .map(|c| format!("{:.2}", rms(c)))
            .collect();
        println!("{receiver}: RMS per 250 ms: {}", profile.join(" "));
        println!(
            "{receiver}: RMS {:.4}, correlation with the far sweep {corr:.4} at lag {lag}, \
             with its own {wrong:.4}",
            rms(&received)
        );
        results.push((receiver, corr, wrong));
    }
    for (receiver, corr, wrong) in results {
        assert!(
            corr > 0.8,
            "{receiver}: received audio does not match the far sweep ({corr:.4})\n{}\n{}\n{}",
            tail(&engine_log, 40),
            tail(&alice_out, 40),
            tail(&bob_out, 40)
        );
        assert!(wrong < 0.3, "{receiver}: hears its own sweep ({wrong:.4})");
    }
    Outcome {
        engine_log,
        packets: capture.stop(),
    }
}

/// The DTLS leg carried DTLS records and, as RTP, only SRTP (every packet 10 bytes longer
/// than plain PCMU); the plain leg carried plain PCMU.
fn assert_no_plain_rtp_on_dtls_leg(out: &Outcome) {
    let (pairs, rtp_lens, records) = dtls_legs(&out.packets);
    println!(
        "tshark: {} datagrams, {records} DTLS records on {} port pairs, {} RTP packets there",
        out.packets.len(),
        pairs.len() / 2,
        rtp_lens.len()
    );
    assert!(records >= 4, "a DTLS handshake on the wire ({records})");
    assert!(rtp_lens.len() > 100, "SRTP on the DTLS leg");
    let plain = rtp_lens.iter().filter(|&&l| l == PLAIN_RTP_LEN).count();
    assert_eq!(plain, 0, "no plain-RTP-sized packet on the DTLS leg");
    assert!(
        rtp_lens.iter().all(|&l| l == PLAIN_RTP_LEN + 10),
        "every RTP packet on the DTLS leg carries an 80-bit tag: {:?}",
        rtp_lens.iter().collect::<HashSet<_>>()
    );
    let plain_elsewhere = out
        .packets
        .iter()
        .filter(|(s, d, p)| {
            !pairs.contains(&(*s, *d)) && p.len() == PLAIN_RTP_LEN && p.first() == Some(&0x80)
        })
        .count();
    assert!(plain_elsewhere > 100, "plain PCMU on the plain leg");
}

#[test]
fn baresip_dtls_srtp_caller_to_plain_callee() {
    let out = call_through("srtp = \"off\"\n", ";mediaenc=dtls_srtp", "");
    let secured: Vec<&str> = out
        .engine_log
        .lines()
        .filter(|l| l.contains("DTLS-SRTP: leg secured"))
        .collect();
    assert!(
        secured.len() == 1 && secured[0].contains("leg=A"),
        "leg A alone secured: {secured:?}"
    );
    println!("engine: {}", secured[0]);
    assert_no_plain_rtp_on_dtls_leg(&out);
}

#[test]
fn plain_caller_to_baresip_dtls_srtp_callee() {
    let out = call_through(
        "srtp = \"off\"\nsrtp_users = { \"bob\" = \"dtls\" }\n",
        "",
        ";mediaenc=dtls_srtp",
    );
    let secured: Vec<&str> = out
        .engine_log
        .lines()
        .filter(|l| l.contains("DTLS-SRTP: leg secured"))
        .collect();
    assert!(
        secured.len() == 1 && secured[0].contains("leg=B"),
        "leg B alone secured: {secured:?}"
    );
    println!("engine: {}", secured[0]);
    assert_no_plain_rtp_on_dtls_leg(&out);
}

#[test]
fn baresip_dtls_srtp_caller_to_sdes_callee() {
    let out = call_through(
        "srtp = \"off\"\nsrtp_users = { \"bob\" = \"sdes\" }\n",
        ";mediaenc=dtls_srtp",
        ";mediaenc=srtp-mand",
    );
    let log = &out.engine_log;
    assert!(
        log.lines()
            .any(|l| l.contains("DTLS-SRTP: leg secured") && l.contains("leg=A")),
        "leg A on DTLS-SRTP"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("SRTP: leg secured") && l.contains("leg=B")),
        "leg B on SDES-SRTP"
    );
}

/// Our own DTLS client offers `a=setup:active` with a fingerprint that is not its
/// certificate's: the engine (server) refuses the handshake and ends the call with BYE.
#[test]
fn fingerprint_mismatch_fails_the_leg_with_bye() {
    let engine = Engine::start("[calls]\ntrusted_sources = [\"127.0.0.1\"]\nsrtp = \"off\"\n");
    let callee = Phone::callee(switchboard_tests::phone::PhoneCodec::Pcmu, false);
    engine.add_user("bob", "bob-secret");
    assert_eq!(
        register(&engine, "bob", "bob-secret", callee.sip_addr(), 300),
        200,
        "REGISTER bob"
    );
    let ours = DtlsIdentity::generate().expect("our certificate");
    let stranger = DtlsIdentity::generate().expect("another certificate");
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {{port}} UDP/TLS/RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\n\
         a=fingerprint:{}\r\na=setup:active\r\na=rtcp-mux\r\na=sendrecv\r\n",
        stranger.fingerprint()
    );
    let caller = Phone::call_with_sdp(engine.sip_addr(), "bob", &sdp);
    assert_eq!(caller.status(), Some(200), "log:\n{}", engine.log());
    let answer = caller.remote_sdp().expect("answer SDP");
    let parsed = Sdp::parse(&answer).expect("valid answer");
    let i = parsed.audio_index().expect("audio");
    assert_eq!(parsed.media[i].security(), MediaSecurity::Dtls, "{answer}");
    assert_eq!(parsed.setup(i), Some(Setup::Passive), "{answer}");
    let engine_fp = parsed
        .fingerprint(i)
        .and_then(Fingerprint::parse)
        .expect("the engine's sha-256 fingerprint");
    assert!(parsed.media[i].has_attribute("rtcp-mux"), "{answer}");
    assert!(!answer.contains(&stranger.fingerprint().to_string()));
    println!("engine answer: fingerprint {engine_fp}");

    // The handshake from the phone's RTP socket, as DTLS client.
    let sock = caller.rtp_socket();
    let local = sock.local_addr().expect("addr");
    let remote = caller.remote_rtp().expect("engine RTP address");
    let start = Instant::now();
    let mut dtls = DtlsSession::new(
        &ours,
        DtlsRole::Client,
        engine_fp,
        local,
        start,
        Duration::from_secs(10),
    )
    .expect("client session");
    dtls.connect(start, remote);
    let mut events = Vec::new();
    let mut buf = [0u8; 2048];
    while start.elapsed() < Duration::from_secs(12) && !caller.got_bye() && !dtls.is_done() {
        while let Some((to, d)) = dtls.poll_transmit() {
            sock.send_to(&d, to).expect("send DTLS");
        }
        if let Ok((n, src)) = sock.recv_from(&mut buf) {
            if switchboard_media::dtls::is_dtls(&buf[..n]) {
                dtls.handle_input(Instant::now(), src, &buf[..n]);
            }
        }
        dtls.handle_timeout(Instant::now());
        events.extend(std::iter::from_fn(|| dtls.poll_event()));
    }
    println!("our client: {events:?}");
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, DtlsEvent::Connected { .. })),
        "the engine must not complete a handshake with a certificate its SDP did not announce"
    );
    assert!(
        caller.wait_bye(Duration::from_secs(15)),
        "the engine hangs up the caller; log:\n{}",
        tail(&engine.log(), 40)
    );
    assert!(
        callee.wait_bye(Duration::from_secs(15)),
        "and the callee; log:\n{}",
        tail(&engine.log(), 40)
    );
    let log = strip_ansi(&engine.log());
    let line = log
        .lines()
        .find(|l| l.contains("does not match the SDP fingerprint"))
        .unwrap_or_else(|| panic!("logged; log:\n{}", tail(&log, 40)));
    println!("engine: {line}");
    let failed = metric(&engine, "dtls_handshakes_total{result=\"failed\"} ");
    assert_eq!(failed, 1.0, "counted");
    let cdr = wait_cdr_by(&engine);
    println!("CDR: {cdr}");
}

fn wait_cdr_by(engine: &Engine) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Some(c) = switchboard_tests::cdrs(engine, 5).into_iter().next() {
            return c;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("no CDR; log:\n{}", tail(&engine.log(), 40));
}
