//! Two real softphones through the B2BUA: baresip "alice" and baresip "bob" register to
//! switchboard (digest auth), alice calls bob through it (answering the 407 challenge), bob
//! auto-answers, and each plays a distinctive tone sweep generated with sox. baresip's sndfile
//! module writes the audio each side received; the test checks that it is not silence and that
//! it is the other side's sweep (normalized cross-correlation), in both directions, and that the
//! engine wrote a CDR with media relayed both ways.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use switchboard_tests::{free_port, Engine};

/// Where Debian's baresip packages put their modules.
const MODULE_PATH: &str = "/usr/lib/baresip/modules";
/// Length of each tone sweep; the files are padded with silence after it.
const TONE_SECS: f64 = 3.0;
/// Silence after the sweep: the call ends when the first file ends, after both sweeps.
const PAD_SECS: f64 = 2.0;
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

    let bob = Baresip::start("bob", "bob-secret", &engine, &bob_tone.padded, work.path());
    let alice = Baresip::start(
        "alice",
        "alice-secret",
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

/// A generated test signal: the padded WAV baresip plays and the sweep's samples.
struct Tone {
    padded: PathBuf,
    tone_samples: Vec<f32>,
}

/// Generates an 8 kHz mono 16-bit linear sweep `from`→`to` Hz at -6 dBFS with sox, padded
/// with PAD_SECS of silence.
fn sweep(dir: &Path, name: &str, from: u32, to: u32) -> Tone {
    let tone = dir.join(format!("{name}-tone.wav"));
    let padded = dir.join(format!("{name}-padded.wav"));
    sox(&[
        "-n".as_ref(),
        "-r".as_ref(),
        "8000".as_ref(),
        "-c".as_ref(),
        "1".as_ref(),
        "-b".as_ref(),
        "16".as_ref(),
        "-e".as_ref(),
        "signed-integer".as_ref(),
        tone.as_os_str(),
        "synth".as_ref(),
        TONE_SECS.to_string().as_ref(),
        "sine".as_ref(),
        format!("{from}:{to}").as_ref(),
        "gain".as_ref(),
        "-6".as_ref(),
    ]);
    sox(&[
        tone.as_os_str(),
        padded.as_os_str(),
        "pad".as_ref(),
        "0".as_ref(),
        PAD_SECS.to_string().as_ref(),
    ]);
    let (rate, tone_samples) = read_wav(&tone);
    assert_eq!(rate, 8000);
    Tone {
        padded,
        tone_samples,
    }
}

fn sox(args: &[&std::ffi::OsStr]) {
    let out = Command::new("sox")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run sox (make test installs sox)");
    assert!(
        out.status.success(),
        "sox {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
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
    fn start(name: &str, password: &str, engine: &Engine, source: &Path, work: &Path) -> Baresip {
        let dir = work.join(name);
        let snd_dir = dir.join("snd");
        std::fs::create_dir_all(&snd_dir).expect("baresip dirs");
        let sip_port = free_port_pair();
        let ctrl = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let config = format!(
            "poll_method\tepoll\n\
             sip_listen\t127.0.0.1:{sip_port}\n\
             net_interface\t127.0.0.1\n\
             audio_player\talsa,null\n\
             audio_alert\talsa,null\n\
             audio_source\taufile,{source}\n\
             module_path\t{MODULE_PATH}\n\
             module\tg711.so\n\
             module\taufile.so\n\
             module\talsa.so\n\
             module\tsndfile.so\n\
             module_app\taccount.so\n\
             module_app\tmenu.so\n\
             module_app\tctrl_tcp.so\n\
             ctrl_tcp_listen\t{ctrl}\n\
             snd_path\t{snd}\n",
            source = source.display(),
            snd = snd_dir.display(),
        );
        std::fs::write(dir.join("config"), config).expect("write baresip config");
        let engine_addr = engine.sip_addr();
        std::fs::write(
            dir.join("accounts"),
            format!(
                "<sip:{name}@{engine_addr}>;auth_pass={password};regint=60;answermode=auto;\
                 audio_codecs=PCMU\n"
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

    /// What baresip printed so far.
    fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// Waits until baresip reports a successful registration ("… 200 OK (…) [1 binding]") and
    /// returns that line.
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

    /// Sends one ctrl_tcp command (a JSON netstring) and returns the response text.
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
        // Read netstrings until the response to our token arrives (events may come first).
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

    /// Asks baresip to quit, waits for it (so its WAV files are closed) and returns its output.
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

/// The payloads of the complete netstrings (`LEN:DATA,`) at the start of `text`.
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

/// A loopback port free (UDP and TCP) together with the next one: baresip listens on UDP and
/// TCP at PORT and TLS at PORT+1.
fn free_port_pair() -> u16 {
    loop {
        let p = free_port();
        if p == u16::MAX {
            continue;
        }
        let next = p + 1;
        if std::net::TcpListener::bind(("127.0.0.1", next)).is_ok()
            && UdpSocket::bind(("127.0.0.1", next)).is_ok()
        {
            return p;
        }
    }
}

/// Polls the CDRs until one for alice → bob appears.
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

/// The WAV sndfile wrote in `dir` whose name ends in `-{kind}.wav` (`dec` = received audio,
/// `enc` = sent audio).
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

fn list(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A mono 16-bit WAV as samples in [-1, 1), with its sample rate.
fn read_wav(path: &Path) -> (u32, Vec<f32>) {
    let mut r = hound::WavReader::open(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let spec = r.spec();
    assert_eq!(spec.channels, 1, "{} is not mono", path.display());
    assert_eq!(spec.bits_per_sample, 16, "{} is not 16-bit", path.display());
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

/// The highest normalized cross-correlation of `signal` against `received` over every lag at
/// which `signal` fits inside `received` (1.0 = identical shape), and that lag in samples.
fn best_correlation(signal: &[f32], received: &[f32]) -> (f64, usize) {
    if received.len() < signal.len() || signal.is_empty() {
        return (0.0, 0);
    }
    let energy_s: f64 = signal.iter().map(|&v| (v as f64) * (v as f64)).sum();
    // Running energy of the received window.
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

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
