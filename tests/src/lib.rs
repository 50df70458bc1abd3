//! switchboard-tests: end-to-end tests over real sockets against a running `switchboard serve`.
//!
//! This library holds what the tests share: finding the binary, starting an engine on free
//! loopback ports with a generated config, waiting until it is healthy, and small SIP/HTTP
//! clients. Nothing here mocks the engine.

pub mod baresip;
pub mod phone;
pub mod smtp;
pub mod webhook_sink;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `switchboard` binary: `$SWITCHBOARD_BIN`, else the newest of target/{release,debug}.
pub fn bin_path() -> PathBuf {
    if let Ok(p) = std::env::var("SWITCHBOARD_BIN") {
        return PathBuf::from(p);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let candidates = ["target/release/switchboard", "target/debug/switchboard"];
    candidates
        .iter()
        .map(|c| root.join(c))
        .filter(|p| p.exists())
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
        .expect("switchboard binary not built: run `cargo build --release --bin switchboard` (make test does)")
}

/// A loopback port free for both UDP and TCP, away from 5060, 5050, 5070 and SIPp's 8888+.
pub fn free_port() -> u16 {
    loop {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral TCP port");
        let port = tcp
            .local_addr()
            .expect("bound socket has an address")
            .port();
        if (5000..5100).contains(&port) || (8888..9000).contains(&port) {
            continue;
        }
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A running engine, killed when dropped.
pub struct Engine {
    child: Child,
    /// SIP port (UDP and TCP) on 127.0.0.1.
    pub sip_port: u16,
    /// HTTP port on 127.0.0.1.
    pub http_port: u16,
    /// The data directory and config live here.
    pub dir: tempfile::TempDir,
}

impl Engine {
    /// Starts `switchboard serve` on free ports; `extra` is TOML appended to the generated
    /// config (sections other than `[sip]`, `[http]`, `[data]`).
    pub fn start(extra: &str) -> Engine {
        let dir = tempfile::tempdir().expect("temp dir");
        let sip_port = free_port();
        let http_port = free_port();
        // Calls go straight to registered users unless a test brings its own dialplan.
        let plan = if extra.contains("[dialplan]") {
            ""
        } else {
            "[dialplan]\nfile = \"\"\n"
        };
        let config = format!(
            "{plan}[sip]\nudp_listen = [\"127.0.0.1:{sip_port}\"]\ntcp_listen = [\"127.0.0.1:{sip_port}\"]\n\
             [http]\nlisten = \"127.0.0.1:{http_port}\"\n[data]\ndir = \"{}\"\n{extra}\n",
            dir.path().join("data").display()
        );
        let cfg = dir.path().join("switchboard.toml");
        std::fs::write(&cfg, config).expect("write config");
        let log = std::fs::File::create(dir.path().join("engine.log")).expect("log file");
        let child = Command::new(bin_path())
            .arg("serve")
            .arg("--config")
            .arg(&cfg)
            .env(
                "RUST_LOG",
                std::env::var("ENGINE_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn switchboard");
        let e = Engine {
            child,
            sip_port,
            http_port,
            dir,
        };
        e.wait_healthy();
        e
    }

    /// Stops the engine (SIGKILL: no graceful shutdown) and starts it again on the same config,
    /// ports and data directory.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let log = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(self.dir.path().join("engine.log"))
            .expect("log file");
        self.child = Command::new(bin_path())
            .arg("serve")
            .arg("--config")
            .arg(self.config_path())
            .env(
                "RUST_LOG",
                std::env::var("ENGINE_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn switchboard");
        self.wait_healthy();
    }

    fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some((200, _)) = http_get(self.http_addr(), "/health") {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("engine not healthy after 30 s; log:\n{}", self.log());
    }

    /// Adds a user through the real CLI (`switchboard user add`), against this engine's database.
    pub fn add_user(&self, name: &str, password: &str) {
        let out = Command::new(bin_path())
            .args(["user", "add", name, "--password", password, "--config"])
            .arg(self.dir.path().join("switchboard.toml"))
            .output()
            .expect("run switchboard user add");
        assert!(
            out.status.success(),
            "user add failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The config file path.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("switchboard.toml")
    }

    /// The SIP address.
    pub fn sip_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.sip_port))
    }

    /// The HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.http_port))
    }

    /// The engine's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("engine.log")).unwrap_or_default()
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The engine's resident set size in kB (from /proc).
    pub fn rss_kb(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.1 GET: `(status, body)`, `None` when nothing answers.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split(' ').nth(1)?.parse().ok()?;
    let body = out
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    Some((status, body))
}

/// A valid OPTIONS request from `local` with the given Call-ID.
pub fn options(local: SocketAddr, target: SocketAddr, call_id: &str) -> String {
    format!(
        "OPTIONS sip:ping@{target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-{call_id};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:probe@{local}>;tag=probe\r\nTo: <sip:ping@{target}>\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
}

/// The status code and Call-ID of a response, read from the raw bytes (an answer to a
/// malformed request copies its malformed headers, so a strict parser would refuse it).
pub fn status_and_call_id(bytes: &[u8]) -> Option<(u16, String)> {
    let line = bytes.split(|&b| b == b'\r').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let status = line.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()?;
    Some((status, raw_call_id(bytes).unwrap_or_default()))
}

/// The value of the first Call-ID (or `i`) header line of a raw message, if any.
pub fn raw_call_id(msg: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(msg);
    text.split("\r\n")
        .take_while(|l| !l.is_empty())
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            let name = name.trim();
            (name.eq_ignore_ascii_case("call-id") || name.eq_ignore_ascii_case("i"))
                .then(|| value.trim().to_string())
        })
}

/// Registers `user` (password `password`) with `contact` (an `ip:port`) over UDP, answering the
/// digest challenge; returns the final status.
pub fn register(
    engine: &Engine,
    user: &str,
    password: &str,
    contact: SocketAddr,
    expires: u32,
) -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let local = s.local_addr().expect("addr");
    let target = engine.sip_addr();
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let call_id = format!("reg-{user}-{}-{}-{n}", std::process::id(), contact.port());
    let mut auth = String::new();
    for cseq in 1..=3u32 {
        let msg = format!(
            "REGISTER sip:{target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-{call_id}-{cseq};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{user}@{target}>;tag=r1\r\nTo: <sip:{user}@{target}>\r\n\
             Call-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{user}@{contact}>\r\nExpires: {expires}\r\n\
             {auth}Content-Length: 0\r\n\r\n"
        );
        s.send_to(msg.as_bytes(), target).expect("send");
        let Some(resp) = final_response(&s) else {
            return 0;
        };
        let (status, _) = status_and_call_id(&resp).unwrap_or((0, String::new()));
        if status != 401 {
            return status;
        }
        let text = String::from_utf8_lossy(&resp).to_string();
        auth = format!(
            "Authorization: {}\r\n",
            digest_answer(
                &text,
                "WWW-Authenticate",
                user,
                password,
                "REGISTER",
                &format!("sip:{target}")
            )
        );
    }
    401
}

fn final_response(s: &UdpSocket) -> Option<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = vec![0u8; 65536];
    while Instant::now() < deadline {
        if let Ok(n) = s.recv(&mut buf) {
            if let Some((status, _)) = status_and_call_id(&buf[..n]) {
                if status >= 200 {
                    return Some(buf[..n].to_vec());
                }
            }
        }
    }
    None
}

/// The credentials answering the first MD5 challenge in `header` of a response.
pub fn digest_answer(
    response: &str,
    header: &str,
    user: &str,
    password: &str,
    method: &str,
    uri: &str,
) -> String {
    use switchboard_engine::auth::{answer, Algorithm, Credentials};
    let challenge = response
        .split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(header))
        .map(|(_, v)| v.trim())
        .find(|v| v.contains("algorithm=MD5"))
        .unwrap_or_default();
    let field = |k: &str| {
        challenge.split(',').find_map(|p| {
            let (n, v) = p.trim().trim_start_matches("Digest ").split_once('=')?;
            (n.trim() == k).then(|| v.trim().trim_matches('"').to_string())
        })
    };
    let c = Credentials {
        username: user.into(),
        realm: field("realm").unwrap_or_default(),
        nonce: field("nonce").unwrap_or_default(),
        uri: uri.into(),
        qop: Some("auth".into()),
        nc: Some("00000001".into()),
        cnonce: Some("0a4f113b".into()),
        algorithm: Some("MD5".into()),
        ..Default::default()
    };
    let resp = answer(&c, Algorithm::Md5, method, password);
    format!(
        "Digest username=\"{user}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", response=\"{resp}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"0a4f113b\"",
        c.realm, c.nonce
    )
}

/// Runs SIPp with `args`, bounded by `secs` (SIGUSR1 then SIGKILL), stdout discarded.
pub fn sipp(args: &[&str], secs: u32) -> std::process::Child {
    Command::new("timeout")
        .args(["-s", "USR1", "-k", "10", &secs.to_string(), "sipp"])
        .args(args)
        .args(["-nostdin", "-buff_size", "4194304"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run sipp (make test installs sip-tester)")
}

/// A SIPp scenario file of this crate (`tests/sipp/NAME`).
pub fn sipp_scenario(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("sipp")
        .join(name)
}

/// The newest `limit` CDRs, newest first, read through the real CLI
/// (`switchboard cdr list --json`).
pub fn cdrs(engine: &Engine, limit: u32) -> Vec<serde_json::Value> {
    let out = Command::new(bin_path())
        .args([
            "cdr",
            "list",
            "--json",
            "--limit",
            &limit.to_string(),
            "--config",
        ])
        .arg(engine.config_path())
        .output()
        .expect("run switchboard cdr list");
    assert!(
        out.status.success(),
        "cdr list failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a CDR line is JSON"))
        .collect()
}

/// Waits (up to 10 s) until at least `n` CDRs are stored; returns the newest ones (at most
/// `n + 10`, so that a test can tell when there are more than it expected).
pub fn wait_cdrs(engine: &Engine, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = cdrs(engine, n as u32 + 10);
        if got.len() >= n || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A SIPp UAS (`-sn uas`) on a loopback port, killed when dropped.
pub struct SippUas {
    child: std::process::Child,
    /// Its SIP port.
    pub port: u16,
}

impl SippUas {
    /// Starts a UAS answering at most `calls` calls on a free port.
    pub fn start(calls: u32) -> SippUas {
        SippUas::on_port(free_port(), calls)
    }

    /// Starts a UAS on `port`.
    pub fn on_port(port: u16, calls: u32) -> SippUas {
        let child = sipp(
            &[
                "-sn",
                "uas",
                "-i",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-m",
                &calls.to_string(),
            ],
            150,
        );
        std::thread::sleep(Duration::from_millis(300));
        SippUas { child, port }
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Registers `user` with this UAS as contact; returns the final status.
    pub fn register(&self, engine: &Engine, user: &str, password: &str) -> u16 {
        register(engine, user, password, self.addr(), 3600)
    }

    /// Waits for SIPp to exit (after its `-m` calls).
    pub fn wait(mut self) {
        let _ = self.child.wait();
    }

    /// Waits up to `secs` for SIPp to finish its `-m` calls; true when it exited 0 (every call
    /// followed the scenario). Stops it otherwise.
    pub fn finished_ok(mut self, secs: u64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for SippUas {
    fn drop(&mut self) {
        stop_wrapped(&mut self.child);
    }
}

/// Stops a process started under `timeout` (as [`sipp`] does): SIGTERM, which `timeout`
/// forwards to its child (a SIGKILL would kill only the wrapper and orphan SIPp), then SIGKILL
/// if it is still there after 3 s.
pub fn stop_wrapped(child: &mut std::process::Child) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// SIPp's built-in UAC calling `user` through the engine: `calls` calls at `rate` per second,
/// at most `limit` at once, each held `hold_ms`. Returns SIPp's process (exit 0 = all succeeded).
pub fn sipp_uac(
    engine: &Engine,
    user: &str,
    calls: u32,
    rate: u32,
    limit: u32,
    hold_ms: u32,
) -> std::process::Child {
    let target = engine.sip_addr().to_string();
    let port = free_port().to_string();
    let (calls, rate, limit, hold) = (
        calls.to_string(),
        rate.to_string(),
        limit.to_string(),
        hold_ms.to_string(),
    );
    sipp(
        &[
            "-sn",
            "uac",
            &target,
            "-s",
            user,
            "-i",
            "127.0.0.1",
            "-p",
            &port,
            "-m",
            &calls,
            "-r",
            &rate,
            "-l",
            &limit,
            "-d",
            &hold,
            "-timeout",
            "90s",
        ],
        110,
    )
}

/// A minimal HTTP/1.1 request with an optional JSON body: `(status, body)`, `None` when nothing
/// answers. For `POST`/`PUT`/`DELETE` against the REST API.
pub fn http_json(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split(' ').nth(1)?.parse().ok()?;
    let body = out
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    Some((status, body))
}

/// A REST call on the engine that must succeed (2xx); returns the JSON answer (`Null` if none).
pub fn api(
    engine: &Engine,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> serde_json::Value {
    let (status, text) = http_json(engine.http_addr(), method, path, body.as_ref())
        .unwrap_or_else(|| panic!("{method} {path}: no answer"));
    assert!(
        (200..300).contains(&status),
        "{method} {path}: {status} {text}"
    );
    serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
}

/// `GET path` on the engine that must answer 200 with JSON.
pub fn api_get(engine: &Engine, path: &str) -> serde_json::Value {
    let (status, text) = http_get(engine.http_addr(), path).expect("answer");
    assert_eq!(status, 200, "GET {path}: {text}");
    serde_json::from_str(&text).expect("JSON")
}
