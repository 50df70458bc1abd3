//! Driving baresip (Debian's package) in end-to-end tests: a softphone per test account with
//! `aufile` as its microphone and `sndfile` recording what it hears, controlled over
//! `ctrl_tcp`; sox-made sweeps to play; WAV reading and cross-correlation to check what arrived.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, Engine};

/// Where Debian's baresip packages put their modules.
pub const MODULE_PATH: &str = "/usr/lib/baresip/modules";
/// Length of a test sweep.
pub const TONE_SECS: f64 = 3.0;
/// Silence after it.
pub const PAD_SECS: f64 = 2.0;

/// The files of a directory, for failure messages.
pub fn list(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

pub struct Tone {
    pub padded: PathBuf,
    pub tone_samples: Vec<f32>,
}

/// An 8 kHz mono sweep `from`→`to` Hz at -6 dBFS made with sox, padded with silence.
pub fn sweep(dir: &Path, name: &str, from: u32, to: u32) -> Tone {
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
pub struct Baresip {
    /// Its account name.
    pub name: String,
    child: Option<Child>,
    out: PathBuf,
    /// Where its sndfile module writes what it sent and received.
    pub snd_dir: PathBuf,
    ctrl: SocketAddr,
}

impl Baresip {
    /// Starts baresip for account `name` (`account_params` appended to its account line, e.g.
    /// `;mediaenc=srtp-mand`), playing `source` as its microphone, under `work/name`.
    pub fn start(
        name: &str,
        password: &str,
        account_params: &str,
        engine: &Engine,
        source: &Path,
        work: &Path,
    ) -> Baresip {
        let registrar = engine.sip_addr().to_string();
        Baresip::start_via(name, password, account_params, &registrar, "", source, work)
    }

    /// [`Baresip::start`] registering to `registrar` (the host part of its AOR, with URI
    /// parameters such as `127.0.0.1:5061;transport=tls`), with `extra_config` lines appended
    /// to its config (e.g. `sip_cafile\tca.pem`).
    pub fn start_via(
        name: &str,
        password: &str,
        account_params: &str,
        registrar: &str,
        extra_config: &str,
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
             module_app\tctrl_tcp.so\nctrl_tcp_listen\t{ctrl}\nsnd_path\t{snd}\n{extra_config}",
            source = source.display(),
            snd = snd_dir.display(),
        );
        std::fs::write(dir.join("config"), config).expect("write baresip config");
        std::fs::write(
            dir.join("accounts"),
            format!(
                "<sip:{name}@{registrar}>;auth_pass={password};regint=60;answermode=auto;\
                 audio_codecs=PCMU{account_params}\n"
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

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    pub fn wait_registered(&self, timeout: Duration) -> Option<String> {
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
    pub fn command(&self, command: &str, params: &str) -> String {
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
    pub fn quit(mut self) -> String {
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

pub fn netstrings(mut text: &str) -> Vec<String> {
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
pub fn free_port_pair() -> u16 {
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

pub fn wait_cdr(engine: &Engine, timeout: Duration) -> Option<serde_json::Value> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let found = crate::cdrs(engine, 20).into_iter().find(|c| {
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

pub fn find_wav(dir: &Path, kind: &str) -> Option<PathBuf> {
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

pub fn read_wav(path: &Path) -> (u32, Vec<f32>) {
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

pub fn rms(x: &[f32]) -> f64 {
    if x.is_empty() {
        return 0.0;
    }
    (x.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>() / x.len() as f64).sqrt()
}

/// The highest normalized cross-correlation of `signal` in `received` and its lag.
pub fn best_correlation(signal: &[f32], received: &[f32]) -> (f64, usize) {
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
pub fn strip_ansi(s: &str) -> String {
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

pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
