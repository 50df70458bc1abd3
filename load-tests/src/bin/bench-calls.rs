//! SIPp call benchmark: how many calls per second Switchboard connects, and how many concurrent
//! calls with RTP it carries, against SIPp answering SIPp and a stateful Kamailio proxy on the
//! same box.
//!
//! ```text
//! bench-calls [--quick] [--switchboard PATH] [--base-port P] [--sipp-dir DIR]
//!             [--kamailio-cfg FILE] [--out FILE] [--rates R1,R2,..] [--step-seconds S]
//!             [--hold-ms MS] [--concurrency N1,N2,..] [--rtp-hold-seconds S]
//!             [--rtp-ports MIN-MAX] [--targets sipp,kamailio,switchboard] [--phases cps,rtp]
//!             [--keep-pcap] [--rtp-echo] [--kamailio-shm-mb MB] [--idle-seconds S]
//! ```
//!
//! 1. **Call rate** (`cps`): the SIPp UAC (`sipp/calls_uac.xml`: INVITE with an A-law offer, 200,
//!    ACK, `--hold-ms` hold, BYE, 200; the UAS sends no 180) calls the SIPp UAS
//!    (`sipp/calls_uas.xml`) directly (the anchor), then through Kamailio (`kamailio/proxy.cfg`:
//!    `tm` + `sl` + `rr`, record-routing, run as `kamailio -DD -E -n 2 -m MB`: 1024 MB of shared
//!    memory by default, because with 256 MB its transactions (kept 5 s after completion) exhaust
//!    it near 2 000 calls/s; skipped with a note when it is not installed or does not start),
//!    then through `switchboard serve` (a B2BUA with media anchoring: the UAS is
//!    registered as user `uas`). Each target gets rising rates (`--rates`, each for
//!    `--step-seconds`) until a step fails calls, loses any, or answers fewer than 95 % of the
//!    offered rate. Reported per step: answered/s (over the window in which the 200s arrived),
//!    failed and lost calls, calls the UAS saw fail, retransmissions, INVITE→200 p50/p99, CPU per
//!    call of the proxy/engine (utime + stime of its process tree from `/proc/PID/stat`; for the
//!    anchor: the SIPp UAS) and its memory (VmRSS; for Kamailio the Pss sum of its processes,
//!    whose shared memory RSS would count once per process), SIPp's errors (`-trace_err`) and
//!    the warnings and errors of the proxy/engine log, by kind.
//! 2. **Concurrent calls with RTP** (`rtp`): the SIPp UAC (`sipp/calls_uac_rtp.xml`) places N
//!    calls (`--concurrency`) over ~4 s; from the ACK to the BYE (`--rtp-hold-seconds`) each
//!    streams 8 kHz A-law in 20 ms packets (SIPp `rtp_stream`) and so does the SIPp UAS
//!    (`sipp/calls_uas_rtp.xml`; with `--rtp-echo`, `calls_uas.xml` and `-rtp_echo` instead,
//!    whose single unbuffered echo socket drops packets from ~250 calls on), directly (anchor)
//!    and through Switchboard. `dumpcap` on `lo` captures the RTP to and from the two SIPp media
//!    ports, sampled by SSRC (one call in 2^k, about 50 calls, so that the capture stays cheap),
//!    and the pcap is read here: packets sent by the UAC, sent on to the UAS, sent by the UAS and
//!    sent on to the UAC (the capture sees a packet when it is sent, before any receive queue),
//!    and sequence gaps per flow. SIPp 3.6.1 counts none of this itself: its `rtp_stream` never
//!    reads its socket, and its screen counters are gone at exit. The engine's VmRSS is sampled
//!    at baseline, mid-plateau (all N calls up) and after the calls ended; its CPU (and the
//!    UAC's) over the plateau.
//!
//! Ports (P = `--base-port`, 16000): SIPp UAS P, UAC P+1, Switchboard SIP P+10 and HTTP P+11,
//! Kamailio P+20, UAC media P+100, UAS media P+200; Switchboard's RTP ports `--rtp-ports`
//! (40000-59999). Every SIPp, Kamailio, dumpcap and Switchboard runs under `timeout`, so nothing
//! outlives the benchmark by long even if it is killed.
//!
//! Prints tables and writes JSON (default `target/bench/calls.json`); SIPp files, logs and
//! configs stay in `target/bench/calls/`. `--quick` is a smoke run of under 2 minutes (rates 200
//! and 500 for 2 s, 40 concurrent calls for 5 s; `target/bench/calls-quick.json`); the
//! full run takes 7 to 9 minutes. Exit code 0 whatever the figures (this
//! reports, it does not gate), 2 on a usage or set-up error (missing SIPp, busy port, engine that
//! does not start or refuses the registration).

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use switchboard_load::sipp::{self, RtpFlow, StatSummary};

const USAGE: &str = "usage: bench-calls [--quick] [--switchboard PATH] [--base-port P] \
[--sipp-dir DIR] [--kamailio-cfg FILE] [--out FILE] [--rates R1,R2,..] [--step-seconds S] \
[--hold-ms MS] [--concurrency N1,N2,..] [--rtp-hold-seconds S] [--rtp-ports MIN-MAX] \
[--targets sipp,kamailio,switchboard] [--phases cps,rtp] [--keep-pcap] [--rtp-echo] \
[--kamailio-shm-mb MB] [--idle-seconds S]";

/// The SIP user the UAS registers as at Switchboard, and its password.
const UAS_USER: &str = "uas";
const UAS_PASSWORD: &str = "bench-calls-secret";

/// Command-line options.
struct Args {
    quick: bool,
    switchboard: PathBuf,
    base_port: u16,
    sipp_dir: PathBuf,
    kamailio_cfg: PathBuf,
    out: PathBuf,
    rates: Vec<u64>,
    step_seconds: u64,
    hold_ms: u64,
    concurrency: Vec<u64>,
    rtp_hold_s: u64,
    ramp_s: u64,
    rtp_ports: (u16, u16),
    targets: Vec<String>,
    phases: Vec<String>,
    keep_pcap: bool,
    rtp_echo: bool,
    kamailio_shm_mb: u64,
    /// Seconds without traffic after the last rate step before memory is sampled again.
    idle_s: u64,
}

impl Args {
    fn uas_port(&self) -> u16 {
        self.base_port
    }
    fn uac_port(&self) -> u16 {
        self.base_port + 1
    }
    fn sb_sip_port(&self) -> u16 {
        self.base_port + 10
    }
    fn sb_http_port(&self) -> u16 {
        self.base_port + 11
    }
    fn kamailio_port(&self) -> u16 {
        self.base_port + 20
    }
    fn uac_media_port(&self) -> u16 {
        self.base_port + 100
    }
    fn uas_media_port(&self) -> u16 {
        self.base_port + 200
    }
    fn wants(&self, target: &str) -> bool {
        self.targets.iter().any(|t| t == target)
    }
    fn phase(&self, phase: &str) -> bool {
        self.phases.iter().any(|p| p == phase)
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench-calls: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        Err(e) => {
            eprintln!("bench-calls: {e}");
            ExitCode::from(2)
        }
    }
}

fn parse_args() -> Result<Args, String> {
    let all = |s: &[&str]| s.iter().map(|t| t.to_string()).collect::<Vec<_>>();
    let mut args = Args {
        quick: false,
        switchboard: PathBuf::from("target/release/switchboard"),
        base_port: 16000,
        sipp_dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("sipp"),
        kamailio_cfg: Path::new(env!("CARGO_MANIFEST_DIR")).join("kamailio/proxy.cfg"),
        out: PathBuf::from("target/bench/calls.json"),
        rates: vec![500, 1000, 2000, 3000, 4000, 6000],
        step_seconds: 8,
        hold_ms: 1000,
        concurrency: vec![100, 250, 500, 1000],
        rtp_hold_s: 20,
        ramp_s: 4,
        rtp_ports: (40000, 59999),
        targets: all(&["sipp", "kamailio", "switchboard"]),
        phases: all(&["cps", "rtp"]),
        keep_pcap: false,
        rtp_echo: false,
        kamailio_shm_mb: 1024,
        idle_s: 10,
    };
    let raw: Vec<String> = std::env::args().skip(1).collect();
    // --quick first, so that explicit options override its values whatever their order.
    if raw.iter().any(|a| a == "--quick") {
        args.quick = true;
        args.rates = vec![200, 500];
        args.step_seconds = 2;
        args.concurrency = vec![40];
        args.rtp_hold_s = 5;
        args.ramp_s = 2;
        args.idle_s = 2;
        args.out = PathBuf::from("target/bench/calls-quick.json");
    }
    let mut it = raw.into_iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--quick" => {}
            "--switchboard" => args.switchboard = PathBuf::from(value()?),
            "--base-port" => args.base_port = number(&flag, &value()?)?,
            "--sipp-dir" => args.sipp_dir = PathBuf::from(value()?),
            "--kamailio-cfg" => args.kamailio_cfg = PathBuf::from(value()?),
            "--out" => args.out = PathBuf::from(value()?),
            "--rates" => args.rates = list(&flag, &value()?)?,
            "--step-seconds" => args.step_seconds = number(&flag, &value()?)?,
            "--hold-ms" => args.hold_ms = number(&flag, &value()?)?,
            "--concurrency" => args.concurrency = list(&flag, &value()?)?,
            "--rtp-hold-seconds" => args.rtp_hold_s = number(&flag, &value()?)?,
            "--rtp-ports" => {
                let v = value()?;
                let (a, b) = v
                    .split_once('-')
                    .ok_or_else(|| format!("--rtp-ports wants MIN-MAX, not {v:?}"))?;
                args.rtp_ports = (number(&flag, a)?, number(&flag, b)?);
            }
            "--targets" => {
                args.targets = value()?.split(',').map(|s| s.trim().to_string()).collect();
                for t in &args.targets {
                    if !["sipp", "kamailio", "switchboard"].contains(&t.as_str()) {
                        return Err(format!("unknown target {t:?}\n{USAGE}"));
                    }
                }
            }
            "--phases" => {
                args.phases = value()?.split(',').map(|s| s.trim().to_string()).collect();
                for p in &args.phases {
                    if !["cps", "rtp"].contains(&p.as_str()) {
                        return Err(format!("unknown phase {p:?}\n{USAGE}"));
                    }
                }
            }
            "--keep-pcap" => args.keep_pcap = true,
            "--rtp-echo" => args.rtp_echo = true,
            "--kamailio-shm-mb" => args.kamailio_shm_mb = number(&flag, &value()?)?,
            "--idle-seconds" => args.idle_s = number(&flag, &value()?)?,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(format!("unknown option {flag}\n{USAGE}")),
        }
    }
    if args.rates.is_empty() || args.concurrency.is_empty() || args.step_seconds == 0 {
        return Err(format!(
            "empty --rates, --concurrency or --step-seconds\n{USAGE}"
        ));
    }
    if args.rtp_hold_s < args.ramp_s + 3 {
        return Err(format!(
            "--rtp-hold-seconds must be at least {} (ramp {} s + 3 s of plateau)",
            args.ramp_s + 3,
            args.ramp_s
        ));
    }
    if args.base_port < 1024 || args.base_port > 65000 {
        return Err("--base-port must be in 1024..=65000".into());
    }
    Ok(args)
}

fn number<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
    v.trim()
        .parse()
        .map_err(|_| format!("{flag}: not a number: {v:?}"))
}

fn list(flag: &str, v: &str) -> Result<Vec<u64>, String> {
    v.split(',').map(|x| number(flag, x)).collect()
}

// ---------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------

/// A server started under `timeout` (so that it dies even if this process is killed), stopped
/// and reaped when dropped.
struct Server {
    /// The `timeout` wrapper.
    child: Child,
    name: String,
    /// Its stdout and stderr.
    log: PathBuf,
}

impl Server {
    /// Starts `program args` as `timeout -k 10 MAX_S program args`, output to `log`.
    fn spawn(
        name: &str,
        max_s: u64,
        program: &Path,
        args: &[String],
        dir: &Path,
        log: &Path,
    ) -> Result<Server, String> {
        let log_file = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let child = Command::new("timeout")
            .args(["-k", "10", &max_s.to_string()])
            .arg(program)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().map_err(|e| e.to_string())?)
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("cannot start {name} ({}): {e}", program.display()))?;
        Ok(Server {
            child,
            name: name.to_string(),
            log: log.to_path_buf(),
        })
    }

    /// The processes of the server (its whole tree, without the `timeout` wrapper).
    fn pids(&self) -> Vec<u32> {
        sipp::process_tree(self.child.id())
            .into_iter()
            .filter(|&p| sipp::proc_comm(p).as_deref() != Some("timeout"))
            .collect()
    }

    fn check_alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!("{} exited: {status}", self.name)),
            Err(e) => Err(format!("{}: {e}", self.name)),
        }
    }

    /// CPU ticks (utime + stime) of the server's processes.
    fn cpu_ticks(&self) -> u64 {
        self.pids()
            .iter()
            .filter_map(|&p| sipp::proc_cpu_ticks(p).ok())
            .sum()
    }

    fn mem(&self) -> Mem {
        let pids = self.pids();
        Mem {
            rss_kib: pids
                .iter()
                .filter_map(|&p| sipp::proc_status_kib(p, "VmRSS").ok())
                .sum(),
            pss_kib: pids
                .iter()
                .filter_map(|&p| sipp::proc_pss_kib(p).ok())
                .sum(),
            processes: pids.len(),
            fds: pids
                .iter()
                .filter_map(|&p| std::fs::read_dir(format!("/proc/{p}/fd")).ok())
                .map(|d| d.count())
                .sum(),
        }
    }

    /// Sends `signal` to the server's processes (not the wrapper), waits up to 8 s; the drop
    /// kills what is left.
    fn stop(mut self, signal: &str) {
        if let Some(&main) = self.pids().first() {
            kill(signal, main);
        }
        let deadline = Instant::now() + Duration::from_secs(8);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let pids = self.pids();
            // `timeout` passes TERM on to the server.
            kill("-TERM", self.child.id());
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            for p in pids {
                if Path::new(&format!("/proc/{p}")).exists() {
                    kill("-KILL", p);
                }
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn kill(signal: &str, pid: u32) {
    let _ = Command::new("kill")
        .args([signal, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// Memory of a server: VmRSS summed over its processes, Pss summed likewise; and its open file
/// descriptors (sockets: Switchboard binds RTP ports per call).
#[derive(Clone, Copy, Debug, Default)]
struct Mem {
    rss_kib: u64,
    pss_kib: u64,
    processes: usize,
    fds: usize,
}

impl Mem {
    /// What the tables show: VmRSS of a single process, the Pss sum of several (Kamailio).
    fn shown_kib(&self) -> u64 {
        if self.processes > 1 {
            self.pss_kib
        } else {
            self.rss_kib
        }
    }

    fn json(&self) -> String {
        format!(
            "{{\"rss_kib\": {}, \"pss_kib\": {}, \"processes\": {}, \"fds\": {}}}",
            self.rss_kib, self.pss_kib, self.processes, self.fds
        )
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Waits up to `secs` until `ready()` holds, failing early when the server exits.
fn wait_until(
    server: &mut Server,
    secs: u64,
    mut ready: impl FnMut() -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        server.check_alive()?;
        if ready() {
            // Still there a moment later (a process that lost a bind race exits quickly).
            std::thread::sleep(Duration::from_millis(150));
            return server.check_alive();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("{} not ready within {secs} s", server.name))
}

fn tail_of(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The warnings and errors of a server log, by kind (digits replaced by `N`, ANSI colours
/// removed, so that timestamps, pids and durations do not split kinds), most frequent first.
fn log_summary(path: &Path, kinds: usize) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut counts: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    for line in text.lines() {
        let plain = strip_ansi(line);
        if !(plain.contains("ERROR") || plain.contains("WARN") || plain.contains("CRITICAL")) {
            continue;
        }
        let mut kind = String::new();
        let mut in_digits = false;
        for ch in plain.chars() {
            if ch.is_ascii_digit() {
                if !in_digits {
                    kind.push('N');
                }
                in_digits = true;
            } else {
                in_digits = false;
                kind.push(ch);
            }
        }
        // Leading timestamp (`N-N-NTN:N:N.NZ`) or pid (`N(N)`).
        let kind = match kind.trim_start().split_once(' ') {
            Some((first, rest)) if first.starts_with('N') => rest.trim().to_string(),
            _ => kind.trim().to_string(),
        };
        *counts.entry(kind.chars().take(200).collect()).or_default() += 1;
    }
    let mut v: Vec<(String, u64)> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.into_iter()
        .take(kinds)
        .map(|(k, n)| format!("{n}x {k}"))
        .collect()
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-byte
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

/// What went wrong in a SIPp run, from the `*_errors.log` files in `dir` (`-trace_err`): each
/// kind of event (Call-IDs removed) with its count, most frequent first, at most `kinds`.
fn sipp_errors(dir: &Path, kinds: usize) -> Vec<String> {
    let mut counts: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if !e.file_name().to_string_lossy().ends_with("_errors.log") {
                continue;
            }
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            // Event lines: `2026-11-24<TAB>11:26:35.262083<TAB>1795519595.262083: text`; the
            // lines after one are the SIP message it quotes.
            // An event can follow the closing quote of the previous one on the same line.
            for line in text.lines().map(|l| l.trim_start_matches('\'')) {
                let Some((stamp, event)) = line.split_once(": ") else {
                    continue;
                };
                if !stamp.starts_with("20") || !stamp.contains('\t') {
                    continue;
                }
                *counts.entry(normalize_event(event)).or_default() += 1;
            }
        }
    }
    let mut v: Vec<(String, u64)> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.into_iter()
        .take(kinds)
        .map(|(e, n)| format!("{n}x {e}"))
        .collect()
}

/// An event without its Call-ID (`for Call-Id '…'`, `Dead call ID`), cut to 160 characters.
fn normalize_event(event: &str) -> String {
    let mut e = event.trim().to_string();
    for key in ["Call-Id '", "Call-ID '", "call-id '"] {
        if let Some(i) = e.find(key) {
            if let Some(len) = e[i + key.len()..].find('\'') {
                e.replace_range(i..i + key.len() + len + 1, "Call-Id");
            }
        }
    }
    // `Dead call 10080-5922@127.0.0.1 (successful), received …`
    if let Some(rest) = e.strip_prefix("Dead call ") {
        if let Some((_, tail)) = rest.split_once(' ') {
            e = format!("Dead call {tail}");
        }
    }
    e.chars().take(160).collect()
}

// ---------------------------------------------------------------------------------------------
// SIPp
// ---------------------------------------------------------------------------------------------

/// Starts the SIPp UAS (`scenario`, run in `dir`) on the UAS port, its media on the UAS media
/// port.
fn start_uas(
    args: &Args,
    dir: &Path,
    scenario: &str,
    rtp_echo: bool,
    recv_timeout_s: u64,
    max_s: u64,
) -> Result<Server, String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let mut a: Vec<String> = vec!["-sf".into()];
    a.push(args.sipp_dir.join(scenario).display().to_string());
    for s in [
        "-i",
        "127.0.0.1",
        "-p",
        &args.uas_port().to_string(),
        "-mp",
        &args.uas_media_port().to_string(),
        "-buff_size",
        "4194304",
        "-recv_timeout",
        &(recv_timeout_s * 1000).to_string(),
        "-timeout",
        &format!("{max_s}s"),
        "-trace_stat",
        "-stf",
        "uas.csv",
        "-fd",
        "1",
        "-trace_err",
        "-nostdin",
    ] {
        a.push(s.to_string());
    }
    if rtp_echo {
        a.push("-rtp_echo".into());
    }
    let mut uas = Server::spawn(
        "SIPp UAS",
        max_s + 20,
        Path::new("sipp"),
        &a,
        dir,
        &dir.join("uas.log"),
    )?;
    let port = args.uas_port();
    wait_until(&mut uas, 15, || sipp::udp_port_bound(port))
        .map_err(|e| format!("{e}; log: {}", dir.join("uas.log").display()))?;
    Ok(uas)
}

/// Cumulative counters of the UAS so far (its stat file is rewritten every second).
fn uas_stat(dir: &Path) -> StatSummary {
    std::fs::read_to_string(dir.join("uas.csv"))
        .ok()
        .and_then(|t| sipp::parse_stat_csv(&t).ok())
        .unwrap_or_default()
}

/// The SIPp UAC command: `calls` calls at `rate`/s of `hold_ms`, at most `limit` at once, bounded
/// by `bound_s` seconds.
#[allow(clippy::too_many_arguments)]
fn uac_command(
    args: &Args,
    dir: &Path,
    scenario: &str,
    target: SocketAddr,
    rate: u64,
    calls: u64,
    limit: u64,
    hold_ms: u64,
    bound_s: u64,
) -> Result<Command, String> {
    let log = std::fs::File::create(dir.join("uac.log")).map_err(|e| e.to_string())?;
    let mut cmd = Command::new("timeout");
    cmd.args([
        "-s",
        "USR1",
        "-k",
        "10",
        &bound_s.to_string(),
        "sipp",
        "-sf",
    ])
    .arg(args.sipp_dir.join(scenario))
    .arg(target.to_string())
    .args(["-s", UAS_USER, "-i", "127.0.0.1"])
    .args(["-p", &args.uac_port().to_string()])
    .args(["-mp", &args.uac_media_port().to_string()])
    .args(["-r", &rate.to_string(), "-m", &calls.to_string()])
    .args(["-l", &limit.to_string(), "-d", &hold_ms.to_string()])
    .args(["-buff_size", "4194304"])
    .args([
        "-timeout",
        &format!("{}s", bound_s.saturating_sub(10).max(5)),
    ])
    // A call waiting 10 s for a response has failed: do not wait for Timer B (32 s).
    .args(["-recv_timeout", "10000"])
    .args(["-trace_stat", "-stf", "stat.csv", "-fd", "1"])
    // SIPp writes response times in blocks of -rtt_freq and drops the last partial block:
    // blocks of at most 1/20 of the calls.
    .args([
        "-trace_rtt",
        "-rtt_freq",
        &(calls / 20).clamp(1, 1000).to_string(),
    ])
    .args(["-trace_err", "-nostdin"])
    .current_dir(dir)
    .stdin(Stdio::null())
    .stdout(log.try_clone().map_err(|e| e.to_string())?)
    .stderr(log);
    Ok(cmd)
}

/// What a UAC run's files say: cumulative counters and INVITE→200 times.
struct UacFiles {
    stat: StatSummary,
    answered_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn read_uac_files(dir: &Path, rate: u64) -> Result<UacFiles, String> {
    let stat_text = std::fs::read_to_string(dir.join("stat.csv")).map_err(|e| {
        format!(
            "no SIPp stat file ({e}); see {}",
            dir.join("uac.log").display()
        )
    })?;
    let stat = sipp::parse_stat_csv(&stat_text).map_err(|e| format!("stat.csv: {e}"))?;
    let mut rtts = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| e.to_string())?.flatten() {
        if entry.file_name().to_string_lossy().ends_with("_rtt.csv") {
            let text = std::fs::read_to_string(entry.path()).map_err(|e| e.to_string())?;
            rtts.extend(sipp::parse_rtt_csv(&text).map_err(|e| format!("rtt: {e}"))?);
        }
    }
    let answered_per_s = sipp::answered_per_second(&rtts, rate as f64).unwrap_or(0.0);
    let mut v: Vec<f64> = rtts.iter().map(|s| s.rtt_ms).collect();
    v.sort_by(f64::total_cmp);
    Ok(UacFiles {
        stat,
        answered_per_s,
        p50_ms: sipp::percentile(&v, 50.0),
        p99_ms: sipp::percentile(&v, 99.0),
    })
}

// ---------------------------------------------------------------------------------------------
// Switchboard and Kamailio
// ---------------------------------------------------------------------------------------------

/// Starts `switchboard serve` with a generated config in `dir`, adds user `uas` and registers
/// the SIPp UAS as its contact.
fn start_switchboard(args: &Args, dir: &Path, max_s: u64) -> Result<Server, String> {
    let Ok(binary) = std::fs::canonicalize(&args.switchboard) else {
        return Err(format!(
            "{} not found: build it with `cargo build --release --bin switchboard` or pass --switchboard",
            args.switchboard.display()
        ));
    };
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir.join("data")).map_err(|e| e.to_string())?;
    let config = dir.join("switchboard.toml");
    std::fs::write(
        &config,
        format!(
            "[sip]\nudp_listen = [\"127.0.0.1:{sip}\"]\ntcp_listen = [\"127.0.0.1:{sip}\"]\n\
             [http]\nlisten = \"127.0.0.1:{http}\"\n[data]\ndir = \"{data}\"\n\
             [media]\nrtp_ip = \"127.0.0.1\"\nrtp_port_min = {pmin}\nrtp_port_max = {pmax}\n\
             [calls]\ntrusted_sources = [\"127.0.0.1\"]\n[limits]\nmax_transactions = 2000000\n",
            sip = args.sb_sip_port(),
            http = args.sb_http_port(),
            data = dir.join("data").display(),
            pmin = args.rtp_ports.0,
            pmax = args.rtp_ports.1,
        ),
    )
    .map_err(|e| e.to_string())?;
    let out = Command::new(&binary)
        .args([
            "user",
            "add",
            UAS_USER,
            "--password",
            UAS_PASSWORD,
            "--config",
        ])
        .arg(&config)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("cannot run {} user add: {e}", binary.display()))?;
    if !out.status.success() {
        return Err(format!(
            "switchboard user add failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let a: Vec<String> = vec![
        "serve".into(),
        "--config".into(),
        config.display().to_string(),
    ];
    let log = dir.join("switchboard.log");
    let mut server = Server::spawn("switchboard", max_s, &binary, &a, dir, &log)?;
    let http = SocketAddr::from(([127, 0, 0, 1], args.sb_http_port()));
    wait_until(&mut server, 30, || http_health_ok(http))
        .map_err(|e| format!("{e}; log: {}", log.display()))?;
    let sip = SocketAddr::from(([127, 0, 0, 1], args.sb_sip_port()));
    let contact = SocketAddr::from(([127, 0, 0, 1], args.uas_port()));
    register(sip, UAS_USER, UAS_PASSWORD, contact).map_err(|e| {
        format!(
            "REGISTER of {UAS_USER} at switchboard: {e}; log: {}",
            log.display()
        )
    })?;
    Ok(server)
}

/// Starts Kamailio with `--kamailio-cfg`, listening on the Kamailio port and relaying to the
/// SIPp UAS. `Err` is a reason to skip Kamailio, not a set-up error.
fn start_kamailio(args: &Args, dir: &Path, max_s: u64) -> Result<Server, String> {
    let Some(kamailio) = find_program("kamailio") else {
        return Err(
            "kamailio is not installed (Debian package `kamailio`; `make bench-calls` installs it)"
                .into(),
        );
    };
    let _ = std::fs::remove_dir_all(dir);
    let run_dir = dir.join("run");
    std::fs::create_dir_all(&run_dir).map_err(|e| e.to_string())?;
    let cfg = std::fs::canonicalize(&args.kamailio_cfg)
        .map_err(|e| format!("{}: {e}", args.kamailio_cfg.display()))?;
    let define = format!("UAS_URI=\"sip:127.0.0.1:{}\"", args.uas_port());
    let check = Command::new(&kamailio)
        .arg("-c")
        .arg("-f")
        .arg(&cfg)
        .args(["-A", &define])
        .output()
        .map_err(|e| format!("cannot run kamailio -c: {e}"))?;
    if !check.status.success() {
        let text = String::from_utf8_lossy(&check.stderr).to_string();
        return Err(format!(
            "kamailio -c -f {} failed: {}",
            cfg.display(),
            text.lines().rev().take(3).collect::<Vec<_>>().join(" | ")
        ));
    }
    let a: Vec<String> = vec![
        "-f".into(),
        cfg.display().to_string(),
        "-DD".into(),
        "-E".into(),
        "-n".into(),
        "2".into(),
        "-m".into(),
        args.kamailio_shm_mb.to_string(),
        "-Y".into(),
        run_dir.display().to_string(),
        "-P".into(),
        run_dir.join("kamailio.pid").display().to_string(),
        "-l".into(),
        format!("udp:127.0.0.1:{}", args.kamailio_port()),
        "-A".into(),
        define,
    ];
    let log = dir.join("kamailio.log");
    let mut server = Server::spawn("kamailio", max_s, &kamailio, &a, dir, &log)?;
    let port = args.kamailio_port();
    // All its worker processes up: the main one has forked them once the port is bound.
    wait_until(&mut server, 20, || sipp::udp_port_bound(port)).map_err(|e| {
        format!(
            "{e}; log {}: {}",
            log.display(),
            tail_of(&log, 3).replace('\n', " | ")
        )
    })?;
    std::thread::sleep(Duration::from_millis(500));
    Ok(server)
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    found
}

/// True when `GET /health` on `addr` returns a 2xx status.
fn http_health_ok(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let req = format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && head[9] == b'2'
}

/// Binds `user` to `contact` at the registrar `sip` over UDP (Expires 3600), answering one
/// digest challenge (MD5, qop=auth) like tests/src/lib.rs `register()`.
fn register(
    sip: SocketAddr,
    user: &str,
    password: &str,
    contact: SocketAddr,
) -> Result<(), String> {
    let s = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(|e| e.to_string())?;
    let local = s.local_addr().map_err(|e| e.to_string())?;
    let nonce_src = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let call_id = format!("bench-calls-reg-{nonce_src:x}");
    let uri = format!("sip:{sip}");
    let mut auth = String::new();
    for cseq in 1..=3u32 {
        let msg = format!(
            "REGISTER {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-{call_id}-{cseq};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{user}@{sip}>;tag=bc1\r\nTo: <sip:{user}@{sip}>\r\n\
             Call-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{user}@{contact}>\r\n\
             Expires: 3600\r\n{auth}Content-Length: 0\r\n\r\n"
        );
        s.send_to(msg.as_bytes(), sip).map_err(|e| e.to_string())?;
        let resp = final_response(&s)?;
        let status: u16 = resp
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        match status {
            200..=299 => return Ok(()),
            401 | 407 => {
                let header = if status == 401 {
                    "WWW-Authenticate"
                } else {
                    "Proxy-Authenticate"
                };
                let answer = digest_answer(&resp, header, user, password, "REGISTER", &uri)
                    .ok_or_else(|| format!("no usable MD5 challenge in {status}"))?;
                let name = if status == 401 {
                    "Authorization"
                } else {
                    "Proxy-Authorization"
                };
                auth = format!("{name}: {answer}\r\n");
            }
            _ => {
                return Err(format!(
                    "answered {}",
                    resp.lines().next().unwrap_or("").trim()
                ))
            }
        }
    }
    Err("still challenged after answering".into())
}

fn final_response(s: &UdpSocket) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = vec![0u8; 65536];
    while Instant::now() < deadline {
        if let Ok(n) = s.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).to_string();
            let code = text.split_whitespace().nth(1).unwrap_or("");
            if text.starts_with("SIP/2.0 ") && !code.starts_with('1') {
                return Ok(text);
            }
        }
    }
    Err("no final response within 5 s".into())
}

/// The `Authorization` value answering the first MD5 (or algorithm-less) challenge in `header`.
fn digest_answer(
    response: &str,
    header: &str,
    user: &str,
    password: &str,
    method: &str,
    uri: &str,
) -> Option<String> {
    let challenge = response
        .split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(header))
        .map(|(_, v)| v.trim())
        .find(|v| {
            let lower = v.to_ascii_lowercase();
            lower.contains("algorithm=md5") || !lower.contains("algorithm=")
        })?;
    let field = |k: &str| {
        challenge
            .trim_start_matches("Digest")
            .split(',')
            .find_map(|p| {
                let (n, v) = p.trim().split_once('=')?;
                n.trim()
                    .eq_ignore_ascii_case(k)
                    .then(|| v.trim().trim_matches('"').to_string())
            })
    };
    let realm = field("realm")?;
    let nonce = field("nonce")?;
    let ha1 = hex(&md5(format!("{user}:{realm}:{password}").as_bytes()));
    let ha2 = hex(&md5(format!("{method}:{uri}").as_bytes()));
    let qop_auth = field("qop").is_some_and(|q| q.split(',').any(|x| x.trim() == "auth"));
    let mut out = format!(
        "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", algorithm=MD5"
    );
    if qop_auth {
        let (nc, cnonce) = ("00000001", "b3c41a7f");
        let resp = hex(&md5(
            format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}").as_bytes()
        ));
        let _ = write!(
            out,
            ", response=\"{resp}\", qop=auth, nc={nc}, cnonce=\"{cnonce}\""
        );
    } else {
        let resp = hex(&md5(format!("{ha1}:{nonce}:{ha2}").as_bytes()));
        let _ = write!(out, ", response=\"{resp}\"");
    }
    if let Some(opaque) = field("opaque") {
        let _ = write!(out, ", opaque=\"{opaque}\"");
    }
    Some(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// MD5 (RFC 1321), for SIP digest authentication only.
fn md5(input: &[u8]) -> [u8; 16] {
    const S: [u32; 64] = [
        7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5,
        9, 14, 20, 5, 9, 14, 20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10,
        15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
    ];
    let k: Vec<u32> = (0..64)
        .map(|i| ((i as f64 + 1.0).sin().abs() * 4_294_967_296.0) as u32)
        .collect();
    let mut msg = input.to_vec();
    let bit_len = (input.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_le_bytes());
    let (mut a0, mut b0, mut c0, mut d0) = (
        0x6745_2301u32,
        0xefcd_ab89u32,
        0x98ba_dcfeu32,
        0x1032_5476u32,
    );
    for chunk in msg.chunks(64) {
        let m: Vec<u32> = chunk
            .chunks(4)
            .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
            .collect();
        let (mut a, mut b, mut c, mut d) = (a0, b0, c0, d0);
        for i in 0..64 {
            let (f, g) = match i / 16 {
                0 => ((b & c) | (!b & d), i),
                1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
                2 => (b ^ c ^ d, (3 * i + 5) % 16),
                _ => (c ^ (b | !d), (7 * i) % 16),
            };
            let f = f.wrapping_add(a).wrapping_add(k[i]).wrapping_add(m[g]);
            a = d;
            d = c;
            c = b;
            b = b.wrapping_add(f.rotate_left(S[i]));
        }
        a0 = a0.wrapping_add(a);
        b0 = b0.wrapping_add(b);
        c0 = c0.wrapping_add(c);
        d0 = d0.wrapping_add(d);
    }
    let mut out = [0u8; 16];
    for (i, v) in [a0, b0, c0, d0].iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Phase 1: call rate
// ---------------------------------------------------------------------------------------------

/// One rate step of one target.
struct CpsStep {
    rate: u64,
    attempted: u64,
    stat: StatSummary,
    answered_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    cpu_s: f64,
    uas_failed: u64,
    mem_after: Mem,
    sipp_exit: Option<i32>,
    errors: Vec<String>,
}

impl CpsStep {
    /// Calls not completed with a 200 to the BYE (failed, or never finished).
    fn lost(&self) -> u64 {
        self.stat
            .failed
            .max(self.attempted.saturating_sub(self.stat.successful))
    }

    fn clean(&self) -> bool {
        self.lost() == 0
            && self.stat.failed == 0
            && self.uas_failed == 0
            && self.answered_per_s >= 0.95 * self.rate as f64
    }

    fn cpu_ms_per_call(&self) -> f64 {
        if self.stat.successful == 0 {
            0.0
        } else {
            self.cpu_s * 1e3 / self.stat.successful as f64
        }
    }
}

/// The rate steps of one target.
struct CpsTarget {
    target: &'static str,
    /// Why the target was skipped or stopped early (set-up failure).
    note: Option<String>,
    mem_before: Mem,
    /// 1 s after the last step.
    mem_after: Mem,
    /// `--idle` seconds after the last step (allocations given back?).
    mem_idle: Mem,
    /// Warnings and errors of the proxy/engine log, by kind.
    log_summary: Vec<String>,
    steps: Vec<CpsStep>,
}

impl CpsTarget {
    fn skipped(target: &'static str, note: String) -> CpsTarget {
        CpsTarget {
            target,
            note: Some(note),
            mem_before: Mem::default(),
            mem_after: Mem::default(),
            mem_idle: Mem::default(),
            log_summary: Vec::new(),
            steps: Vec::new(),
        }
    }

    /// The highest rate of the leading run of clean steps.
    fn ceiling(&self) -> Option<u64> {
        self.steps
            .iter()
            .take_while(|s| s.clean())
            .map(|s| s.rate)
            .last()
    }

    /// True when every step was clean: the ceiling is above the highest rate tried.
    fn never_failed(&self) -> bool {
        !self.steps.is_empty() && self.steps.iter().all(|s| s.clean())
    }
}

fn run_cps(args: &Args, work: &Path, tck: f64, setup_errors: &mut Vec<String>) -> Vec<CpsTarget> {
    let dir = work.join("cps");
    // Upper bound of a target's run: every step at most its calls, 10 s receive timeouts, gaps.
    let max_s = args
        .rates
        .iter()
        .map(|_| args.step_seconds + args.hold_ms / 1000 + 60)
        .sum::<u64>()
        + 120;
    let uas_addr = SocketAddr::from(([127, 0, 0, 1], args.uas_port()));
    let mut out = Vec::new();

    if args.wants("sipp") {
        out.push(
            cps_target(args, &dir.join("sipp"), "sipp", uas_addr, max_s, tck, None).unwrap_or_else(
                |e| {
                    setup_errors.push(format!("cps sipp: {e}"));
                    CpsTarget::skipped("sipp", e)
                },
            ),
        );
    }
    if args.wants("kamailio") {
        let target = SocketAddr::from(([127, 0, 0, 1], args.kamailio_port()));
        let kdir = dir.join("kamailio");
        let r = match start_kamailio(args, &kdir.join("proxy"), max_s) {
            Ok(k) => cps_target(args, &kdir, "kamailio", target, max_s, tck, Some(k)),
            Err(e) => {
                println!("kamailio: skipped: {e}");
                Ok(CpsTarget::skipped("kamailio", e))
            }
        };
        out.push(r.unwrap_or_else(|e| {
            setup_errors.push(format!("cps kamailio: {e}"));
            CpsTarget::skipped("kamailio", e)
        }));
    }
    if args.wants("switchboard") {
        let target = SocketAddr::from(([127, 0, 0, 1], args.sb_sip_port()));
        let sdir = dir.join("switchboard");
        let r = start_switchboard(args, &sdir.join("engine"), max_s)
            .and_then(|s| cps_target(args, &sdir, "switchboard", target, max_s, tck, Some(s)));
        out.push(r.unwrap_or_else(|e| {
            setup_errors.push(format!("cps switchboard: {e}"));
            CpsTarget::skipped("switchboard", e)
        }));
    }
    out
}

/// Runs the rate steps against `target_addr`. `server` is the proxy/engine in between (measured
/// and stopped afterwards); without one, the UAS is measured (the anchor).
fn cps_target(
    args: &Args,
    dir: &Path,
    target: &'static str,
    target_addr: SocketAddr,
    max_s: u64,
    tck: f64,
    server: Option<Server>,
) -> Result<CpsTarget, String> {
    let uas_dir = dir.join("uas");
    let _ = std::fs::remove_dir_all(&uas_dir);
    let mut uas = start_uas(args, &uas_dir, "calls_uas.xml", false, 30, max_s)?;
    if let Some(s) = &server {
        // Kamailio and Switchboard were started before the UAS (the registration does not
        // need it); make sure they are still there.
        if s.pids().is_empty() {
            return Err(format!("{} is not running", s.name));
        }
    }
    let mut result = CpsTarget {
        target,
        note: None,
        mem_before: measured(&server, &uas).mem(),
        mem_after: Mem::default(),
        mem_idle: Mem::default(),
        log_summary: Vec::new(),
        steps: Vec::new(),
    };
    let mut uas_failed_before = uas_stat(&uas_dir).failed;
    for &rate in &args.rates {
        let sdir = dir.join(format!("rate-{rate}"));
        let _ = std::fs::remove_dir_all(&sdir);
        std::fs::create_dir_all(&sdir).map_err(|e| e.to_string())?;
        let calls = rate * args.step_seconds;
        // Generous, but below SIPp's open-file limit (20 000), which it checks -l against.
        let limit = (rate * (args.hold_ms / 1000 + 2)).clamp(1000, 18_000);
        let bound = args.step_seconds + args.hold_ms / 1000 + 45;
        println!(
            "cps {target}: {rate} calls/s for {} s ({calls} calls of {} ms) to {target_addr}",
            args.step_seconds, args.hold_ms
        );
        let cpu_before = measured(&server, &uas).cpu_ticks();
        let status = uac_command(
            args,
            &sdir,
            "calls_uac.xml",
            target_addr,
            rate,
            calls,
            limit,
            args.hold_ms,
            bound,
        )?
        .status()
        .map_err(|e| format!("cannot run timeout/sipp: {e}"))?;
        let cpu_after = measured(&server, &uas).cpu_ticks();
        // Let the UAS write its counters (every second) and finish its time-waits.
        std::thread::sleep(Duration::from_millis(2500));
        uas.check_alive()?;
        let uas_failed_now = uas_stat(&uas_dir).failed;
        let files = read_uac_files(&sdir, rate).map_err(|e| format!("{target}: {e}"))?;
        let step = CpsStep {
            rate,
            attempted: calls,
            answered_per_s: files.answered_per_s,
            p50_ms: files.p50_ms,
            p99_ms: files.p99_ms,
            stat: files.stat,
            cpu_s: cpu_after.saturating_sub(cpu_before) as f64 / tck,
            uas_failed: uas_failed_now.saturating_sub(uas_failed_before),
            mem_after: measured(&server, &uas).mem(),
            sipp_exit: status.code(),
            errors: sipp_errors(&sdir, 4),
        };
        uas_failed_before = uas_failed_now;
        println!(
            "  {} ok, {} failed, {} lost, {} failed at the UAS, {} retransmissions, {:.0} answered/s, \
             p99 {:.0} ms, {:.3} ms CPU/call{}",
            step.stat.successful,
            step.stat.failed,
            step.lost(),
            step.uas_failed,
            step.stat.retransmissions,
            step.answered_per_s,
            step.p99_ms,
            step.cpu_ms_per_call(),
            if step.clean() { "" } else { "  <- not clean, stop" }
        );
        for e in &step.errors {
            println!("    sipp: {e}");
        }
        let clean = step.clean();
        result.steps.push(step);
        if let Some(s) = &server {
            if s.pids().is_empty() {
                result.note = Some(format!("{} died during the {rate}/s step", s.name));
                break;
            }
        }
        if !clean {
            break;
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    result.mem_after = measured(&server, &uas).mem();
    std::thread::sleep(Duration::from_secs(args.idle_s));
    result.mem_idle = measured(&server, &uas).mem();
    if let Some(s) = server {
        let log = s.log.clone();
        s.stop("-TERM");
        result.log_summary = log_summary(&log, 6);
    }
    uas.stop("-USR1");
    Ok(result)
}

// ---------------------------------------------------------------------------------------------
// Phase 2: concurrent calls with RTP
// ---------------------------------------------------------------------------------------------

/// Packets of the sampled streams, by leg (from the capture).
#[derive(Clone, Debug, Default)]
struct RtpCounts {
    /// Capture available and read.
    captured: bool,
    /// One call in `sample` was captured (by SSRC).
    sample: u64,
    streams_expected: u64,
    streams_sent: u64,
    streams_returned: u64,
    /// From the UAC's media port.
    sent: u64,
    /// To the UAS's media port.
    at_uas: u64,
    /// From the UAS's media port (its own stream, or with `--rtp-echo` its echo).
    uas_sent: u64,
    /// To the UAC's media port.
    returned: u64,
    /// Sequence-number gaps summed over every flow (losses inside streams, on any leg).
    seq_gaps: u64,
    /// Packets dumpcap reports it dropped.
    capture_dropped: u64,
    note: Option<String>,
}

impl RtpCounts {
    /// UAC → UAS: sent by the UAC, not sent on to the UAS, in percent (0 without a relay: the
    /// capture sees one packet).
    fn fwd_loss_pct(&self) -> f64 {
        pct(self.sent.saturating_sub(self.at_uas), self.sent)
    }

    /// UAS → UAC: sent by the UAS, not sent on to the UAC, in percent.
    fn back_loss_pct(&self) -> f64 {
        pct(self.uas_sent.saturating_sub(self.returned), self.uas_sent)
    }

    /// With `--rtp-echo`: arrived at the UAS but not echoed (SIPp's echo thread and its socket
    /// buffer), in percent.
    fn echo_loss_pct(&self) -> f64 {
        pct(self.at_uas.saturating_sub(self.uas_sent), self.at_uas)
    }

    /// Both directions: what the relay lost, in percent of what it got.
    fn relay_loss_pct(&self) -> f64 {
        pct(
            self.sent.saturating_sub(self.at_uas) + self.uas_sent.saturating_sub(self.returned),
            self.sent + self.uas_sent,
        )
    }
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

/// One concurrency step.
struct RtpStep {
    calls: u64,
    rate: u64,
    stat: StatSummary,
    uas_failed: u64,
    counts: RtpCounts,
    mem_peak: Mem,
    mem_after: Mem,
    /// CPU of the engine (or, for the anchor, the SIPp UAS) over the plateau, % of one core.
    server_cpu_pct: f64,
    /// CPU of the SIPp UAC over the plateau, % of one core.
    uac_cpu_pct: f64,
    errors: Vec<String>,
}

struct RtpTarget {
    target: &'static str,
    note: Option<String>,
    mem_baseline: Mem,
    /// 3 s after the last step.
    mem_final: Mem,
    /// `--idle` seconds later.
    mem_idle: Mem,
    log_summary: Vec<String>,
    steps: Vec<RtpStep>,
}

impl RtpTarget {
    fn skipped(target: &'static str, note: String) -> RtpTarget {
        RtpTarget {
            target,
            note: Some(note),
            mem_baseline: Mem::default(),
            mem_final: Mem::default(),
            mem_idle: Mem::default(),
            log_summary: Vec::new(),
            steps: Vec::new(),
        }
    }

    /// (peak − baseline) / calls of the largest step, in KiB per call.
    fn growth_kib_per_call(&self, step: &RtpStep) -> f64 {
        (step.mem_peak.shown_kib() as f64 - self.mem_baseline.shown_kib() as f64)
            / step.calls.max(1) as f64
    }
}

fn run_rtp(args: &Args, work: &Path, tck: f64, setup_errors: &mut Vec<String>) -> Vec<RtpTarget> {
    let dir = work.join("rtp");
    let per_step = args.ramp_s + args.rtp_hold_s + 30;
    let max_s = per_step * args.concurrency.len() as u64 + 120;
    let tone = dir.join("calls-tone.alaw");
    if let Err(e) =
        std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&tone, alaw_tone(440.0, 2.0)))
    {
        setup_errors.push(format!("rtp: {}: {e}", tone.display()));
        return Vec::new();
    }
    let dumpcap = find_program("dumpcap");
    if dumpcap.is_none() {
        println!("rtp: dumpcap not found (Debian package tshark): RTP packets are not counted");
    }
    let mut out = Vec::new();
    let targets: Vec<&'static str> = ["sipp", "switchboard"]
        .into_iter()
        .filter(|t| args.wants(t))
        .collect();
    for target in targets {
        let tdir = dir.join(target);
        let _ = std::fs::remove_dir_all(&tdir);
        let r = rtp_target(args, &tdir, &tone, target, max_s, tck, dumpcap.as_deref());
        out.push(r.unwrap_or_else(|e| {
            setup_errors.push(format!("rtp {target}: {e}"));
            RtpTarget::skipped(target, e)
        }));
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn rtp_target(
    args: &Args,
    dir: &Path,
    tone: &Path,
    target: &'static str,
    max_s: u64,
    tck: f64,
    dumpcap: Option<&Path>,
) -> Result<RtpTarget, String> {
    let uas_dir = dir.join("uas");
    let engine = if target == "switchboard" {
        Some(start_switchboard(args, &dir.join("engine"), max_s)?)
    } else {
        None
    };
    std::fs::create_dir_all(&uas_dir).map_err(|e| e.to_string())?;
    std::fs::copy(tone, uas_dir.join("calls-tone.alaw")).map_err(|e| e.to_string())?;
    let (scenario, echo) = if args.rtp_echo {
        ("calls_uas.xml", true)
    } else {
        ("calls_uas_rtp.xml", false)
    };
    let mut uas = start_uas(args, &uas_dir, scenario, echo, args.rtp_hold_s + 30, max_s)?;
    let target_addr = if engine.is_some() {
        SocketAddr::from(([127, 0, 0, 1], args.sb_sip_port()))
    } else {
        SocketAddr::from(([127, 0, 0, 1], args.uas_port()))
    };
    std::thread::sleep(Duration::from_secs(1));
    let mut result = RtpTarget {
        target,
        note: None,
        mem_baseline: measured(&engine, &uas).mem(),
        mem_final: Mem::default(),
        mem_idle: Mem::default(),
        log_summary: Vec::new(),
        steps: Vec::new(),
    };
    let mut uas_failed_before = uas_stat(&uas_dir).failed;
    for &calls in &args.concurrency {
        let sdir = dir.join(format!("calls-{calls}"));
        let _ = std::fs::remove_dir_all(&sdir);
        std::fs::create_dir_all(&sdir).map_err(|e| e.to_string())?;
        std::fs::copy(tone, sdir.join("calls-tone.alaw")).map_err(|e| e.to_string())?;
        let rate = calls.div_ceil(args.ramp_s).max(5);
        let ramp = Duration::from_secs_f64(calls as f64 / rate as f64);
        let hold = Duration::from_secs(args.rtp_hold_s);
        // One call in `sample` is captured: about 50 streams whatever the number of calls.
        let sample = prev_power_of_two((calls / 50).max(1));
        println!(
            "rtp {target}: {calls} calls at {rate}/s, each {} s of RTP (A-law, 20 ms) both ways ({}); \
             capturing 1 call in {sample}",
            args.rtp_hold_s,
            if args.rtp_echo {
                "UAS echoes"
            } else {
                "UAS streams"
            }
        );
        let capture = match dumpcap {
            Some(d) => Some(Capture::start(d, &sdir, args, sample, max_s)?),
            None => None,
        };
        let bound = args.ramp_s + args.rtp_hold_s + 45;
        let mut uac = uac_command(
            args,
            &sdir,
            "calls_uac_rtp.xml",
            target_addr,
            rate,
            calls,
            calls,
            args.rtp_hold_s * 1000,
            bound,
        )?
        .spawn()
        .map_err(|e| format!("cannot run timeout/sipp: {e}"))?;
        let t0 = Instant::now();
        let uac_pid = || {
            sipp::process_tree(uac.id())
                .into_iter()
                .find(|&p| sipp::proc_comm(p).as_deref() == Some("sipp"))
        };
        // Plateau: every call is up from the end of the ramp until the first call's hold ends.
        let p1 = ramp + Duration::from_millis(700);
        let p_mid = ramp + (hold.saturating_sub(ramp)) / 2;
        let p2 = hold.saturating_sub(Duration::from_millis(700));
        let measured_now = measured(&engine, &uas);
        sleep_until(t0 + p1);
        let (s1, u1, at1) = (
            measured_now.cpu_ticks(),
            uac_pid().and_then(|p| sipp::proc_cpu_ticks(p).ok()),
            Instant::now(),
        );
        sleep_until(t0 + p_mid);
        let mem_peak = measured_now.mem();
        sleep_until(t0 + p2);
        let (s2, u2, at2) = (
            measured_now.cpu_ticks(),
            uac_pid().and_then(|p| sipp::proc_cpu_ticks(p).ok()),
            Instant::now(),
        );
        let status = uac.wait().map_err(|e| e.to_string())?;
        let plateau_s = (at2 - at1).as_secs_f64().max(1e-3);
        let server_cpu_pct = 100.0 * s2.saturating_sub(s1) as f64 / tck / plateau_s;
        let uac_cpu_pct = match (u1, u2) {
            (Some(a), Some(b)) => 100.0 * b.saturating_sub(a) as f64 / tck / plateau_s,
            _ => 0.0,
        };
        // Echoes in flight, the UAS's time-waits and its stat file.
        std::thread::sleep(Duration::from_millis(2500));
        let counts = match capture {
            Some(c) => c.finish(args, sample, calls),
            None => RtpCounts {
                note: Some("no dumpcap".into()),
                ..RtpCounts::default()
            },
        };
        uas.check_alive()?;
        let uas_failed_now = uas_stat(&uas_dir).failed;
        let stat = std::fs::read_to_string(sdir.join("stat.csv"))
            .ok()
            .and_then(|t| sipp::parse_stat_csv(&t).ok())
            .ok_or_else(|| {
                format!(
                    "{target}: no SIPp stat file; see {}",
                    sdir.join("uac.log").display()
                )
            })?;
        let step = RtpStep {
            calls,
            rate,
            stat,
            uas_failed: uas_failed_now.saturating_sub(uas_failed_before),
            counts,
            mem_peak,
            mem_after: measured(&engine, &uas).mem(),
            server_cpu_pct,
            uac_cpu_pct,
            errors: sipp_errors(&sdir, 4),
        };
        uas_failed_before = uas_failed_now;
        let c = &step.counts;
        println!(
            "  {} ok, {} failed ({} at the UAS; sipp exit {:?}); sampled streams sent/returned {}/{} of {}; \
             packets sent {} at-uas {} uas-sent {} returned {} (loss fwd {:.3} % back {:.3} %, seq gaps {}, \
             capture dropped {}); \
             server CPU {:.0} %, UAC CPU {:.0} %; memory peak {:.1} MiB, after {:.1} MiB",
            step.stat.successful,
            step.stat.failed,
            step.uas_failed,
            status.code(),
            c.streams_sent,
            c.streams_returned,
            c.streams_expected,
            c.sent,
            c.at_uas,
            c.uas_sent,
            c.returned,
            c.fwd_loss_pct(),
            c.back_loss_pct(),
            c.seq_gaps,
            c.capture_dropped,
            step.server_cpu_pct,
            step.uac_cpu_pct,
            mib(step.mem_peak.shown_kib()),
            mib(step.mem_after.shown_kib()),
        );
        if let Some(n) = &c.note {
            println!("    capture: {n}");
        }
        for e in &step.errors {
            println!("    sipp: {e}");
        }
        result.steps.push(step);
        let m = measured(&engine, &uas);
        if m.pids().is_empty() {
            result.note = Some(format!("{} died during the {calls}-call step", m.name));
            break;
        }
    }
    std::thread::sleep(Duration::from_secs(3));
    result.mem_final = measured(&engine, &uas).mem();
    std::thread::sleep(Duration::from_secs(args.idle_s));
    result.mem_idle = measured(&engine, &uas).mem();
    if let Some(e) = engine {
        let log = e.log.clone();
        e.stop("-TERM");
        result.log_summary = log_summary(&log, 6);
    }
    uas.stop("-USR1");
    Ok(result)
}

/// The process whose CPU and memory a run reports: the proxy/engine, else the SIPp UAS.
fn measured<'a>(server: &'a Option<Server>, uas: &'a Server) -> &'a Server {
    server.as_ref().unwrap_or(uas)
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

fn prev_power_of_two(n: u64) -> u64 {
    if n <= 1 {
        1
    } else {
        1 << (63 - n.leading_zeros())
    }
}

/// A `dumpcap` capture of the RTP to and from the two SIPp media ports, one SSRC in `sample`.
struct Capture {
    server: Server,
    file: PathBuf,
    log: PathBuf,
}

impl Capture {
    fn start(
        dumpcap: &Path,
        dir: &Path,
        args: &Args,
        sample: u64,
        max_s: u64,
    ) -> Result<Capture, String> {
        let file = dir.join("rtp.pcap");
        let log = dir.join("dumpcap.log");
        // SSRC: bytes 8..12 of the RTP header, 16..20 of the UDP payload with its header.
        // SIPp numbers SSRCs consecutively per call, so the mask picks one call in `sample`.
        let mut filter = format!(
            "udp and (port {} or port {})",
            args.uac_media_port(),
            args.uas_media_port()
        );
        if sample > 1 {
            let _ = write!(filter, " and (udp[16:4] & {}) = 0", sample - 1);
        }
        let a: Vec<String> = vec![
            "-i".into(),
            "lo".into(),
            "-f".into(),
            filter,
            "-s".into(),
            "64".into(),
            "-B".into(),
            "32".into(),
            "-P".into(),
            "-q".into(),
            "-w".into(),
            file.display().to_string(),
        ];
        let mut server = Server::spawn("dumpcap", max_s, dumpcap, &a, dir, &log)?;
        let log2 = log.clone();
        wait_until(&mut server, 10, || {
            std::fs::read_to_string(&log2)
                .map(|t| t.contains("Capturing on"))
                .unwrap_or(false)
        })
        .map_err(|e| format!("{e}: {}", tail_of(&log, 3).replace('\n', " | ")))?;
        // The capture is attached once it says so; a little margin for the filter.
        std::thread::sleep(Duration::from_millis(200));
        Ok(Capture { server, file, log })
    }

    /// Stops the capture and counts the packets by leg.
    fn finish(self, args: &Args, sample: u64, calls: u64) -> RtpCounts {
        // `timeout` passes INT on to dumpcap, which then writes its statistics.
        kill("-INT", self.server.child.id());
        let mut server = self.server;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = server.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(server);
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let capture_dropped = log
            .lines()
            .find(|l| l.starts_with("Packets received/dropped"))
            .and_then(|l| l.rsplit_once(": "))
            .and_then(|(_, v)| v.split_whitespace().next())
            .and_then(|v| v.split_once('/'))
            .and_then(|(_, d)| d.parse().ok())
            .unwrap_or(0);
        let mut counts = RtpCounts {
            sample,
            // SSRCs 0xCA110000 + call index: indexes 0, sample, 2·sample, … are captured.
            streams_expected: calls.div_ceil(sample),
            capture_dropped,
            ..RtpCounts::default()
        };
        let data = match std::fs::read(&self.file) {
            Ok(d) => d,
            Err(e) => {
                counts.note = Some(format!("{}: {e}", self.file.display()));
                return counts;
            }
        };
        let flows = match sipp::parse_pcap_rtp(&data) {
            Ok(f) => f,
            Err(e) => {
                counts.note = Some(format!("{}: {e}", self.file.display()));
                return counts;
            }
        };
        if !args.keep_pcap {
            let _ = std::fs::remove_file(&self.file);
        }
        counts.captured = true;
        tally(
            &mut counts,
            &flows,
            args.uac_media_port(),
            args.uas_media_port(),
        );
        counts
    }
}

/// Adds up captured flows by leg. A packet from the UAC straight to the UAS (no relay) counts
/// as sent and as arrived.
fn tally(counts: &mut RtpCounts, flows: &[RtpFlow], uac_port: u16, uas_port: u16) {
    let mut sent_ssrcs = std::collections::BTreeSet::new();
    let mut returned_ssrcs = std::collections::BTreeSet::new();
    for f in flows {
        if f.src_port == uac_port {
            counts.sent += f.packets;
            sent_ssrcs.insert(f.ssrc);
        }
        if f.dst_port == uas_port {
            counts.at_uas += f.packets;
        }
        if f.src_port == uas_port {
            counts.uas_sent += f.packets;
        }
        if f.dst_port == uac_port {
            counts.returned += f.packets;
            returned_ssrcs.insert(f.ssrc);
        }
        counts.seq_gaps += f.lost();
    }
    counts.streams_sent = sent_ssrcs.len() as u64;
    counts.streams_returned = returned_ssrcs.len() as u64;
}

/// `seconds` of a sine tone at `hz` as raw 8 kHz G.711 A-law (no header: SIPp 3.6.1's
/// `rtp_stream` sends a file's bytes as they are, so a WAV header would go out as audio).
fn alaw_tone(hz: f64, seconds: f64) -> Vec<u8> {
    let n = (8000.0 * seconds) as usize;
    (0..n)
        .map(|i| {
            let x = 0.3 * (2.0 * std::f64::consts::PI * hz * i as f64 / 8000.0).sin();
            linear_to_alaw((x * 32767.0) as i16)
        })
        .collect()
}

/// ITU-T G.711 A-law encoding of a 16-bit linear sample.
fn linear_to_alaw(sample: i16) -> u8 {
    let sign: u8 = if sample >= 0 { 0x80 } else { 0x00 };
    // 13-bit magnitude.
    let mut mag = (i32::from(sample).abs() >> 3).min(0x0fff);
    let code = if mag < 32 {
        (mag >> 1) as u8
    } else {
        let mut exp = 1u8;
        mag >>= 1;
        while mag > 31 && exp < 7 {
            mag >>= 1;
            exp += 1;
        }
        (exp << 4) | ((mag & 0x0f) as u8)
    };
    (sign | code) ^ 0x55
}

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------

fn run(args: &Args) -> Result<bool, String> {
    let started = Instant::now();
    for f in [
        "calls_uac.xml",
        "calls_uac_rtp.xml",
        "calls_uas.xml",
        "calls_uas_rtp.xml",
    ] {
        if !args.sipp_dir.join(f).is_file() {
            return Err(format!(
                "no {}: pass --sipp-dir",
                args.sipp_dir.join(f).display()
            ));
        }
    }
    if find_program("sipp").is_none() {
        return Err(
            "sipp not found (Debian package sip-tester; `make bench-calls` installs it)".into(),
        );
    }
    let mut ports = vec![
        args.uas_port(),
        args.uac_port(),
        args.sb_sip_port(),
        args.kamailio_port(),
        args.uac_media_port(),
        args.uac_media_port() + 2,
        args.uas_media_port(),
        args.uas_media_port() + 2,
    ];
    ports.push(args.sb_http_port());
    for p in ports {
        if sipp::udp_port_bound(p) || TcpStream::connect(("127.0.0.1", p)).is_ok() {
            return Err(format!("port {p} is in use: pass another --base-port"));
        }
    }
    // target/bench/calls.json -> target/bench/calls/
    let work = args.out.with_extension("");
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let work = std::fs::canonicalize(&work).map_err(|e| e.to_string())?;
    let tck = sipp::clock_ticks_per_second() as f64;
    let mut setup_errors = Vec::new();

    let cps = if args.phase("cps") {
        run_cps(args, &work, tck, &mut setup_errors)
    } else {
        Vec::new()
    };
    let rtp = if args.phase("rtp") {
        run_rtp(args, &work, tck, &mut setup_errors)
    } else {
        Vec::new()
    };

    print_report(args, &cps, &rtp);
    let json = to_json(args, &cps, &rtp, &setup_errors, started.elapsed());
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(&args.out, json).map_err(|e| format!("{}: {e}", args.out.display()))?;
    println!(
        "written: {} (SIPp files, logs and configs in {}); {:.0} s in all",
        args.out.display(),
        work.display(),
        started.elapsed().as_secs_f64()
    );
    for e in &setup_errors {
        println!("SET-UP ERROR: {e}");
    }
    Ok(setup_errors.is_empty())
}

fn print_report(args: &Args, cps: &[CpsTarget], rtp: &[RtpTarget]) {
    if !cps.is_empty() {
        println!();
        println!(
            "Call rate: SIPp UAC on 127.0.0.1, calls of {} ms (INVITE/200/ACK, BYE/200), steps of {} s",
            args.hold_ms, args.step_seconds
        );
        println!(
            "{:<12} {:>6} {:>8} {:>8} {:>7} {:>7} {:>8} {:>8} {:>10} {:>7} {:>7} {:>11} {:>8} {:>6}",
            "target",
            "rate",
            "attempt",
            "ok",
            "failed",
            "lost",
            "uas-fail",
            "retrans",
            "answered/s",
            "p50 ms",
            "p99 ms",
            "CPU ms/call",
            "mem MiB",
            "fds"
        );
        for t in cps {
            if t.steps.is_empty() {
                println!(
                    "{:<12} skipped: {}",
                    t.target,
                    t.note.as_deref().unwrap_or("")
                );
                continue;
            }
            for s in &t.steps {
                println!(
                    "{:<12} {:>6} {:>8} {:>8} {:>7} {:>7} {:>8} {:>8} {:>10.0} {:>7.1} {:>7.1} {:>11} {:>8.1} {:>6}{}",
                    t.target,
                    s.rate,
                    s.attempted,
                    s.stat.successful,
                    s.stat.failed,
                    s.lost(),
                    s.uas_failed,
                    s.stat.retransmissions,
                    s.answered_per_s,
                    s.p50_ms,
                    s.p99_ms,
                    if s.stat.successful > 0 {
                        format!("{:.3}", s.cpu_ms_per_call())
                    } else {
                        format!("({:.1} s)", s.cpu_s)
                    },
                    mib(s.mem_after.shown_kib()),
                    s.mem_after.fds,
                    if s.clean() { "" } else { "  x" }
                );
            }
        }
        println!("Highest clean step (0 failed, 0 lost, ≥ 95 % of the rate answered):");
        for t in cps.iter().filter(|t| !t.steps.is_empty()) {
            let ceiling = match t.ceiling() {
                Some(c) if t.never_failed() => format!("≥ {c} calls/s (no step failed)"),
                Some(c) => format!("{c} calls/s"),
                None => format!("below {} calls/s", t.steps[0].rate),
            };
            let cpu = t
                .steps
                .iter()
                .take_while(|s| s.clean())
                .last()
                .map(|s| format!("; {:.3} ms CPU per call there", s.cpu_ms_per_call()))
                .unwrap_or_default();
            println!(
                "  {:<12} {ceiling}{cpu}; memory {:.1} MiB before, {:.1} after, {:.1} after {} s idle \
                 ({} fds before, {} after idle){}",
                t.target,
                mib(t.mem_before.shown_kib()),
                mib(t.mem_after.shown_kib()),
                mib(t.mem_idle.shown_kib()),
                args.idle_s,
                t.mem_before.fds,
                t.mem_idle.fds,
                t.note
                    .as_ref()
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default()
            );
            for l in &t.log_summary {
                println!("      log: {l}");
            }
        }
        println!(
            "(CPU and memory of the proxy/engine; for sipp, of the SIPp UAS. Memory: VmRSS, for kamailio \
             the Pss sum of its processes; fds: its open file descriptors after the step. \
             x: step not clean, ramp stopped)"
        );
    }
    if !rtp.is_empty() {
        println!();
        println!(
            "Concurrent calls with RTP: {} s calls, A-law 20 ms both ways (UAC rtp_stream; UAS {}); \
             packets of the captured calls (1 in `sample`)",
            args.rtp_hold_s,
            if args.rtp_echo {
                "-rtp_echo"
            } else {
                "rtp_stream"
            }
        );
        println!(
            "{:<12} {:>5} {:>5} {:>6} {:>6} {:>9} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7} {:>5} {:>7} {:>7} {:>8} {:>8}",
            "target",
            "calls",
            "ok",
            "failed",
            "sample",
            "streams",
            "sent",
            "at-uas",
            "uas-sent",
            "returned",
            "fwd %",
            "back %",
            "gaps",
            "srv CPU",
            "uac CPU",
            "peak MiB",
            "KiB/call"
        );
        for t in rtp {
            if t.steps.is_empty() {
                println!(
                    "{:<12} skipped: {}",
                    t.target,
                    t.note.as_deref().unwrap_or("")
                );
                continue;
            }
            for s in &t.steps {
                let c = &s.counts;
                println!(
                    "{:<12} {:>5} {:>5} {:>6} {:>6} {:>9} {:>8} {:>8} {:>8} {:>8} {:>7.3} {:>7.3} {:>5} {:>6.0}% {:>6.0}% {:>8.1} {:>8.1}",
                    t.target,
                    s.calls,
                    s.stat.successful,
                    s.stat.failed + s.uas_failed,
                    c.sample,
                    format!(
                        "{}/{}/{}",
                        c.streams_sent, c.streams_returned, c.streams_expected
                    ),
                    c.sent,
                    c.at_uas,
                    c.uas_sent,
                    c.returned,
                    c.fwd_loss_pct(),
                    c.back_loss_pct(),
                    c.seq_gaps,
                    s.server_cpu_pct,
                    s.uac_cpu_pct,
                    mib(s.mem_peak.shown_kib()),
                    t.growth_kib_per_call(s),
                );
                if args.rtp_echo && c.echo_loss_pct() > 0.0 {
                    println!(
                        "{:<12} {:>5} SIPp echo lost {:.3} % (arrived at the UAS, not echoed)",
                        "",
                        "",
                        c.echo_loss_pct()
                    );
                }
                if c.capture_dropped > 0 || c.note.is_some() {
                    println!(
                        "{:<12} {:>5} capture: {} dropped by dumpcap {}",
                        "",
                        "",
                        c.capture_dropped,
                        c.note.as_deref().unwrap_or("")
                    );
                }
            }
            println!(
                "  {:<10} memory: baseline {:.1} MiB, 3 s after the last calls {:.1} MiB, {} s later {:.1} MiB \
                 (fds {} → {} → {}){}",
                t.target,
                mib(t.mem_baseline.shown_kib()),
                mib(t.mem_final.shown_kib()),
                args.idle_s,
                mib(t.mem_idle.shown_kib()),
                t.mem_baseline.fds,
                t.steps.last().map_or(0, |s| s.mem_peak.fds),
                t.mem_idle.fds,
                t.note
                    .as_ref()
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default()
            );
            for l in &t.log_summary {
                println!("      log: {l}");
            }
        }
        println!(
            "(streams: UAC streams sent / UAS streams back at the UAC / UAC streams expected, of the captured calls \
             (the UAS numbers its SSRCs on from earlier steps, so its sample can differ by one); \
             sent: by the UAC; at-uas: sent to the UAS port; uas-sent: by the UAS; returned: sent to the UAC port; \
             fwd/back %: lost by the relay UAC→UAS / UAS→UAC (0 without relay); gaps: sequence gaps on any leg; \
             srv CPU: engine, or SIPp UAS for sipp, % of one core over the plateau; \
             KiB/call: (peak − baseline) / calls)"
        );
    }
}

fn to_json(
    args: &Args,
    cps: &[CpsTarget],
    rtp: &[RtpTarget],
    setup_errors: &[String],
    elapsed: Duration,
) -> String {
    let mut j = String::new();
    let _ = write!(
        j,
        "{{\n  \"benchmark\": \"calls\",\n  \"quick\": {},\n  \"elapsed_s\": {:.1},\n  \"cps\": {{\n    \
         \"step_seconds\": {},\n    \"hold_ms\": {},\n    \"rates\": {:?},\n    \"idle_s\": {},\n    \"targets\": [",
        args.quick,
        elapsed.as_secs_f64(),
        args.step_seconds,
        args.hold_ms,
        args.rates,
        args.idle_s
    );
    for (i, t) in cps.iter().enumerate() {
        let steps: Vec<String> = t
            .steps
            .iter()
            .map(|s| {
                format!(
                    "        {{\"rate\": {}, \"attempted\": {}, \"successful\": {}, \"failed\": {}, \"lost\": {}, \
                     \"uas_failed\": {}, \"retransmissions\": {}, \"answered_per_s\": {:.1}, \"p50_ms\": {:.3}, \
                     \"p99_ms\": {:.3}, \"cpu_s\": {:.3}, \"cpu_ms_per_call\": {:.4}, \"mem_after\": {}, \
                     \"clean\": {}, \"sipp_exit\": {}, \"sipp_errors\": {}}}",
                    s.rate,
                    s.attempted,
                    s.stat.successful,
                    s.stat.failed,
                    s.lost(),
                    s.uas_failed,
                    s.stat.retransmissions,
                    s.answered_per_s,
                    s.p50_ms,
                    s.p99_ms,
                    s.cpu_s,
                    s.cpu_ms_per_call(),
                    s.mem_after.json(),
                    s.clean(),
                    s.sipp_exit.map_or("null".into(), |c| c.to_string()),
                    json_strings(&s.errors)
                )
            })
            .collect();
        let _ = write!(
            j,
            "{}\n      {{\"target\": \"{}\", \"note\": {}, \"ceiling_cps\": {}, \"ceiling_is_lower_bound\": {}, \
             \"mem_before\": {}, \"mem_after\": {}, \"mem_idle\": {}, \"log_summary\": {}, \"steps\": [\n{}\n      ]}}",
            if i == 0 { "" } else { "," },
            t.target,
            t.note.as_deref().map_or("null".into(), json_string),
            t.ceiling().map_or("null".into(), |c| c.to_string()),
            t.never_failed(),
            t.mem_before.json(),
            t.mem_after.json(),
            t.mem_idle.json(),
            json_strings(&t.log_summary),
            steps.join(",\n")
        );
    }
    let _ = write!(
        j,
        "\n    ]\n  }},\n  \"rtp\": {{\n    \"hold_s\": {},\n    \"concurrency\": {:?},\n    \"packet_ms\": 20,\n    \
         \"uas_media\": \"{}\",\n    \"targets\": [",
        args.rtp_hold_s,
        args.concurrency,
        if args.rtp_echo {
            "rtp_echo"
        } else {
            "rtp_stream"
        }
    );
    for (i, t) in rtp.iter().enumerate() {
        let steps: Vec<String> = t
            .steps
            .iter()
            .map(|s| {
                let c = &s.counts;
                format!(
                    "        {{\"calls\": {}, \"rate\": {}, \"successful\": {}, \"failed\": {}, \"uas_failed\": {}, \
                     \"retransmissions\": {}, \"captured\": {}, \"sample\": {}, \"streams_expected\": {}, \
                     \"streams_sent\": {}, \"streams_returned\": {}, \"packets_sent\": {}, \"packets_at_uas\": {}, \
                     \"packets_uas_sent\": {}, \"packets_returned\": {}, \"fwd_loss_pct\": {:.4}, \
                     \"back_loss_pct\": {:.4}, \"relay_loss_pct\": {:.4}, \"echo_loss_pct\": {:.4}, \
                     \"packets_per_stream\": {:.1}, \"seq_gaps\": {}, \"capture_dropped\": {}, \"capture_note\": {}, \
                     \"server_cpu_pct\": {:.1}, \"uac_cpu_pct\": {:.1}, \"mem_peak\": {}, \"mem_after\": {}, \
                     \"growth_kib_per_call\": {:.2}, \"sipp_errors\": {}}}",
                    s.calls,
                    s.rate,
                    s.stat.successful,
                    s.stat.failed,
                    s.uas_failed,
                    s.stat.retransmissions,
                    c.captured,
                    c.sample,
                    c.streams_expected,
                    c.streams_sent,
                    c.streams_returned,
                    c.sent,
                    c.at_uas,
                    c.uas_sent,
                    c.returned,
                    c.fwd_loss_pct(),
                    c.back_loss_pct(),
                    c.relay_loss_pct(),
                    if args.rtp_echo { c.echo_loss_pct() } else { 0.0 },
                    c.sent as f64 / c.streams_sent.max(1) as f64,
                    c.seq_gaps,
                    c.capture_dropped,
                    c.note.as_deref().map_or("null".into(), json_string),
                    s.server_cpu_pct,
                    s.uac_cpu_pct,
                    s.mem_peak.json(),
                    s.mem_after.json(),
                    t.growth_kib_per_call(s),
                    json_strings(&s.errors)
                )
            })
            .collect();
        let _ = write!(
            j,
            "{}\n      {{\"target\": \"{}\", \"note\": {}, \"mem_baseline\": {}, \"mem_final\": {}, \"mem_idle\": {}, \
             \"log_summary\": {}, \"steps\": [\n{}\n      ]}}",
            if i == 0 { "" } else { "," },
            t.target,
            t.note.as_deref().map_or("null".into(), json_string),
            t.mem_baseline.json(),
            t.mem_final.json(),
            t.mem_idle.json(),
            json_strings(&t.log_summary),
            steps.join(",\n")
        );
    }
    let _ = write!(
        j,
        "\n    ]\n  }},\n  \"setup_errors\": {}\n}}\n",
        json_strings(setup_errors)
    );
    j
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_strings(v: &[String]) -> String {
    format!(
        "[{}]",
        v.iter()
            .map(|s| json_string(s))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_vectors() {
        assert_eq!(hex(&md5(b"")), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(hex(&md5(b"abc")), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(
            hex(&md5(
                b"12345678901234567890123456789012345678901234567890123456789012345678901234567890"
            )),
            "57edf4a22be3c955ac49da2e2107b67a"
        );
    }

    #[test]
    fn digest_rfc2617_example() {
        // RFC 2617 section 3.5 (qop=auth), with its cnonce and nc replaced by ours.
        let resp = "SIP/2.0 401 Unauthorized\r\nWWW-Authenticate: Digest realm=\"x\", nonce=\"n\", algorithm=SHA-256, qop=\"auth\"\r\n\
                    WWW-Authenticate: Digest realm=\"switchboard\", nonce=\"abc\", algorithm=MD5, qop=\"auth\"\r\n\r\n";
        let a = digest_answer(resp, "WWW-Authenticate", "uas", "pw", "REGISTER", "sip:h").unwrap();
        assert!(a.contains("realm=\"switchboard\""), "{a}");
        assert!(a.contains("qop=auth"), "{a}");
        let ha1 = hex(&md5(b"uas:switchboard:pw"));
        let ha2 = hex(&md5(b"REGISTER:sip:h"));
        let expect = hex(&md5(
            format!("{ha1}:abc:00000001:b3c41a7f:auth:{ha2}").as_bytes()
        ));
        assert!(a.contains(&expect), "{a}");
        assert!(digest_answer(
            "SIP/2.0 401 x\r\n\r\n",
            "WWW-Authenticate",
            "u",
            "p",
            "R",
            "u"
        )
        .is_none());
    }

    #[test]
    fn alaw_known_values() {
        assert_eq!(linear_to_alaw(0), 0xd5);
        assert_eq!(linear_to_alaw(-1), 0x55);
        assert_eq!(linear_to_alaw(i16::MAX), 0xaa);
        assert_eq!(linear_to_alaw(i16::MIN), 0x2a);
        assert_eq!(alaw_tone(440.0, 0.02).len(), 160);
    }

    #[test]
    fn sampling_and_tally() {
        assert_eq!(prev_power_of_two(1), 1);
        assert_eq!(prev_power_of_two(5), 4);
        assert_eq!(prev_power_of_two(20), 16);
        let flow = |s, d, ssrc, packets| RtpFlow {
            src_port: s,
            dst_port: d,
            ssrc,
            packets,
            first_seq: 0,
            last_seq: packets as i64 - 1,
        };
        // Relayed: UAC 100 -> engine 40000 -> UAS 200 and back.
        let flows = [
            flow(100, 40000, 1, 50),
            flow(40002, 200, 1, 50),
            flow(200, 40002, 1, 50),
            flow(40000, 100, 1, 48),
        ];
        let mut c = RtpCounts::default();
        tally(&mut c, &flows, 100, 200);
        assert_eq!((c.sent, c.at_uas, c.uas_sent, c.returned), (50, 50, 50, 48));
        assert_eq!((c.streams_sent, c.streams_returned), (1, 1));
        assert!((c.back_loss_pct() - 4.0).abs() < 1e-9);
        assert_eq!(c.fwd_loss_pct(), 0.0);
        assert!((c.relay_loss_pct() - 2.0).abs() < 1e-9);
        // Direct: one packet is sent and arrives.
        let mut d = RtpCounts::default();
        tally(
            &mut d,
            &[flow(100, 200, 7, 10), flow(200, 100, 7, 10)],
            100,
            200,
        );
        assert_eq!((d.sent, d.at_uas, d.uas_sent, d.returned), (10, 10, 10, 10));
        assert_eq!(d.echo_loss_pct(), 0.0);
    }

    #[test]
    fn error_and_log_summaries() {
        assert_eq!(
            normalize_event(
                "Aborting call on unexpected message for Call-Id '953-23208@127.0.0.1': while pausing"
            ),
            "Aborting call on unexpected message for Call-Id: while pausing"
        );
        let dir = std::env::temp_dir().join(format!("bench-calls-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("calls_uac_1_errors.log"),
            "The following events occurred:\n\
             2026-11-24\t11:26:35.2\t1795519595.2: Aborting call on unexpected message for Call-Id '1-1@h': x\n\
             SIP/2.0 503 Service Unavailable\n\
             '2026-11-24\t11:26:35.3\t1795519595.3: Aborting call on unexpected message for Call-Id '2-1@h': x\n\
             2026-11-24\t11:26:35.4\t1795519595.4: Dead call 3-1@h (successful), received 'SIP/2.0 200 OK\n",
        )
        .unwrap();
        assert_eq!(
            sipp_errors(&dir, 5),
            vec![
                "2x Aborting call on unexpected message for Call-Id: x".to_string(),
                "1x Dead call (successful), received 'SIP/2.0 200 OK".to_string()
            ]
        );
        let log = dir.join("engine.log");
        std::fs::write(
            &log,
            "\u{1b}[2m2026-11-24T11:27:41.9Z\u{1b}[0m \u{1b}[31mERROR\u{1b}[0m cdr: failed after 7.5 s\n\
             2026-11-24T11:27:42.1Z ERROR cdr: failed after 12.25 s\n\
             2026-11-24T11:27:42.1Z  INFO call ended\n\
             \x20 0(23194) WARNING: <core> x\n",
        )
        .unwrap();
        assert_eq!(
            log_summary(&log, 5),
            vec![
                "2x ERROR cdr: failed after N.N s".to_string(),
                "1x WARNING: <core> x".to_string()
            ]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
