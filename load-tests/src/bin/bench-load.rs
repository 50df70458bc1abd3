//! Load-generator benchmark: `switchboard load` against SIPp, each tool calling itself on this
//! box, for the highest clean call rate and the most concurrent calls with loss-free RTP.
//!
//! ```text
//! bench-load [--quick] [--switchboard PATH] [--base-port P] [--sipp-dir DIR] [--out FILE]
//!            [--rates R1,R2,..] [--step-seconds S] [--p99-ms MS]
//!            [--concurrency N1,N2,..] [--hold-seconds S] [--ramp-seconds S] [--min-rate CPS]
//!            [--sipp-media echo|stream] [--phases cps,media] [--tools sipp,switchboard]
//!            [--max-minutes M] [--keep-pcap] [--sb-threads N]
//! ```
//!
//! 1. **Call rate** (`cps`): `sipp -sn uac` → `sipp -sn uas`, and `switchboard load uac` →
//!    `switchboard load uas`, with the same settings: 0 ms calls (INVITE, 200, ACK, BYE, 200),
//!    no media, 8 MB socket buffers, at most 18 000 calls up, rising rates (`--rates`, each for
//!    `--step-seconds`; a fresh UAS per step). The tools alternate step by step, so that other
//!    load on the box hits both alike. A step is clean when no call failed on either side,
//!    every call was answered, the p99 setup time (INVITE → 200) is below `--p99-ms` and the
//!    achieved rate is ≥ 95 % of the asked one. A tool's ramp stops at its first step that is
//!    not clean; its ceiling is its highest clean rate.
//!    SIPp figures come from its `-trace_stat` and `-trace_rtt` files (achieved rate over the
//!    window in which the 200s arrived, 1 ms resolution); ours from the uac's JSON report,
//!    over the same window (`answered_per_s_in_window`: answered / (first-to-last 2xx + 1/rate)).
//! 2. **Concurrent calls with RTP** (`media`): N calls (`--concurrency`) started at
//!    max(`--min-rate`, N / `--ramp-seconds`) calls/s, each up for `--hold-seconds` with
//!    8 kHz A-law in 20 ms packets both ways. SIPp: the UAC streams with `rtp_stream`
//!    (`sipp/calls_uac_rtp.xml`) and the UAS echoes (`sipp/calls_uas.xml -rtp_echo`), or with
//!    `--sipp-media stream` streams its own (`sipp/calls_uas_rtp.xml`). SIPp counts none of it
//!    (its `rtp_stream` never reads its socket), so `dumpcap` on `lo` captures the RTP of one
//!    call in 2^k (about 50 calls) and the pcap is read here: lost = packets sent by the UAC
//!    but not echoed back + sequence gaps in what the UAC sent (in stream mode: sequence gaps
//!    in either direction), and a sampled call that sent no RTP at all also fails the step.
//!    Ours: `switchboard load uac --media play` → `switchboard load uas --media echo`, lost =
//!    `media.packets_lost` of the uac's report (gaps in the echoed sequence numbers, i.e. loss
//!    on either leg, measured where the packets are received). A step is clean when no call
//!    failed, every call was answered and nothing was lost. Same stopping rule as above.
//!
//! Every process runs under `timeout` (and SIPp with `-timeout`, ours with `--time-limit`), and
//! the whole run keeps within `--max-minutes` (default 15): a step that would not fit is
//! skipped. CPU per step is the user + system time of the step's processes, from the
//! children's counters of this process (`/proc/self/stat`; the SIPp media rows include dumpcap).
//! The 1-minute load average before each step shows contention from other work on the box.
//!
//! Ports (P = `--base-port`, 17000): SIPp UAS P, SIPp UAC P+1, our uas P+10, SIPp media P+100
//! (UAC) and P+200 (UAS); our uac and media sockets take any free port.
//!
//! Prints a table and both ceilings with their ratio (ours / SIPp), and writes JSON (default
//! `target/bench/load.json`; files and logs in `target/bench/load/`). `--quick` is a smoke run
//! of under 3 minutes (rates 2 000–20 000 for 2 s, 100–500 calls of 6 s). Exit code 0 whatever
//! the figures (this reports, it does not gate), 2 on a usage or set-up error.

use serde_json::{json, Value};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use switchboard_load::sipp::{self, RtpFlow};

const USAGE: &str = "usage: bench-load [--quick] [--switchboard PATH] [--base-port P] \
[--sipp-dir DIR] [--out FILE] [--rates R1,R2,..] [--step-seconds S] [--p99-ms MS] \
[--concurrency N1,N2,..] [--hold-seconds S] [--ramp-seconds S] [--min-rate CPS] \
[--sipp-media echo|stream] [--phases cps,media] [--tools sipp,switchboard] [--max-minutes M] \
[--keep-pcap] [--sb-threads N]";

/// Most calls up at once in the rate steps, for both tools (below SIPp's open-file limit,
/// which it checks `-l` against).
const MAX_CONCURRENT: u64 = 18_000;
/// Socket buffers of both tools.
const BUFF_SIZE: &str = "8388608";
/// The audio SIPp's `rtp_stream` plays (raw A-law, made here in its working directory).
const TONE: &str = "calls-tone.alaw";

/// Command-line options.
#[derive(Clone, Debug)]
struct Args {
    quick: bool,
    switchboard: PathBuf,
    base_port: u16,
    sipp_dir: PathBuf,
    out: PathBuf,
    rates: Vec<u64>,
    step_s: u64,
    p99_ms: f64,
    concurrency: Vec<u64>,
    hold_s: u64,
    ramp_s: u64,
    min_rate: u64,
    sipp_echo: bool,
    phases: Vec<String>,
    tools: Vec<Tool>,
    max_minutes: f64,
    keep_pcap: bool,
    /// Clock ticks per second, for CPU times.
    tck: f64,
    /// `--threads` (and `--media-threads`) for both of our sides; default: theirs (every core).
    sb_threads: Option<u64>,
}

impl Args {
    fn sipp_uas_port(&self) -> u16 {
        self.base_port
    }
    fn sipp_uac_port(&self) -> u16 {
        self.base_port + 1
    }
    fn ours_uas_port(&self) -> u16 {
        self.base_port + 10
    }
    fn sipp_uac_media_port(&self) -> u16 {
        self.base_port + 100
    }
    fn sipp_uas_media_port(&self) -> u16 {
        self.base_port + 200
    }
    fn phase(&self, p: &str) -> bool {
        self.phases.iter().any(|x| x == p)
    }
}

/// The two load generators compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tool {
    Sipp,
    Switchboard,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Sipp => "sipp",
            Tool::Switchboard => "switchboard",
        }
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench-load: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-load: {e}");
            ExitCode::from(2)
        }
    }
}

fn parse_args() -> Result<Args, String> {
    parse(std::env::args().skip(1).collect())
}

/// The options from `raw` (the arguments without the program name): `--quick` first sets its
/// values, which explicit options then override whatever their order.
fn parse(raw: Vec<String>) -> Result<Args, String> {
    let quick = raw.iter().any(|a| a == "--quick");
    let mut args = Args {
        quick,
        switchboard: PathBuf::from("target/release/switchboard"),
        base_port: 17000,
        sipp_dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("sipp"),
        out: PathBuf::from(if quick {
            "target/bench/load-quick.json"
        } else {
            "target/bench/load.json"
        }),
        rates: if quick {
            vec![2000, 5000, 10_000, 20_000]
        } else {
            vec![
                1000, 2000, 3000, 5000, 7500, 10_000, 15_000, 20_000, 25_000, 30_000, 40_000,
                50_000,
            ]
        },
        step_s: if quick { 2 } else { 5 },
        p99_ms: 200.0,
        concurrency: if quick {
            vec![100, 250, 500]
        } else {
            vec![50, 100, 250, 500, 1000, 1500, 2000, 3000, 4000]
        },
        hold_s: if quick { 6 } else { 15 },
        ramp_s: if quick { 2 } else { 5 },
        min_rate: 200,
        sipp_echo: true,
        phases: vec!["cps".into(), "media".into()],
        tools: vec![Tool::Sipp, Tool::Switchboard],
        max_minutes: if quick { 3.0 } else { 15.0 },
        keep_pcap: false,
        tck: 100.0,
        sb_threads: None,
    };
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
            "--out" => args.out = PathBuf::from(value()?),
            "--rates" => args.rates = list(&flag, &value()?)?,
            "--step-seconds" => args.step_s = number(&flag, &value()?)?,
            "--p99-ms" => args.p99_ms = number(&flag, &value()?)?,
            "--concurrency" => args.concurrency = list(&flag, &value()?)?,
            "--hold-seconds" => args.hold_s = number(&flag, &value()?)?,
            "--ramp-seconds" => args.ramp_s = number(&flag, &value()?)?,
            "--min-rate" => args.min_rate = number(&flag, &value()?)?,
            "--sipp-media" => {
                args.sipp_echo = match value()?.as_str() {
                    "echo" => true,
                    "stream" => false,
                    v => return Err(format!("--sipp-media: echo or stream, not {v:?}")),
                }
            }
            "--phases" => {
                args.phases = names(&value()?, &["cps", "media"], &flag)?;
            }
            "--tools" => {
                args.tools = names(&value()?, &["sipp", "switchboard"], &flag)?
                    .iter()
                    .map(|t| {
                        if t == "sipp" {
                            Tool::Sipp
                        } else {
                            Tool::Switchboard
                        }
                    })
                    .collect();
            }
            "--max-minutes" => args.max_minutes = number(&flag, &value()?)?,
            "--keep-pcap" => args.keep_pcap = true,
            "--sb-threads" => args.sb_threads = Some(number(&flag, &value()?)?),
            "-h" | "--help" => return Err(USAGE.to_string()),
            _ => return Err(format!("unknown argument {flag}\n{USAGE}")),
        }
    }
    if args.step_s == 0 || args.hold_s == 0 || args.ramp_s == 0 || args.min_rate == 0 {
        return Err(
            "--step-seconds, --hold-seconds, --ramp-seconds and --min-rate must be > 0".into(),
        );
    }
    if !(args.p99_ms.is_finite() && args.p99_ms > 0.0) {
        return Err("--p99-ms must be a number > 0".into());
    }
    if !(args.max_minutes.is_finite() && args.max_minutes > 0.0) {
        return Err("--max-minutes must be a number > 0".into());
    }
    if args.sb_threads == Some(0) {
        return Err("--sb-threads must be > 0".into());
    }
    if args.rates.contains(&0) || args.concurrency.contains(&0) {
        return Err("--rates and --concurrency take numbers > 0".into());
    }
    // Ports used: P..=P+10 and P+100..=P+202.
    let span = args.base_port..=args.base_port.saturating_add(202);
    if args.base_port < 1024 || args.base_port > 65000 || span.contains(&5060) {
        return Err("--base-port must be in 1024..65000, and P..P+202 must avoid 5060".into());
    }
    if (8888..8988).any(|p| span.contains(&p)) {
        return Err("--base-port: 8888 and up are SIPp's control sockets".into());
    }
    Ok(args)
}

fn number<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("{flag}: not a number: {v:?}"))
}

fn list(flag: &str, v: &str) -> Result<Vec<u64>, String> {
    let out: Result<Vec<u64>, String> = v
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| number(flag, s))
        .collect();
    let out = out?;
    if out.is_empty() {
        return Err(format!("{flag}: empty list"));
    }
    Ok(out)
}

fn names(v: &str, allowed: &[&str], flag: &str) -> Result<Vec<String>, String> {
    let out: Vec<String> = v
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if out.is_empty() {
        return Err(format!("{flag}: empty list"));
    }
    if let Some(bad) = out.iter().find(|n| !allowed.contains(&n.as_str())) {
        return Err(format!("{flag}: unknown {bad:?} (one of {allowed:?})"));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------

/// A process started under `timeout -k 5 MAX_S` (so that it ends even if this one is killed),
/// stopped and reaped when dropped.
struct Proc {
    /// The `timeout` wrapper.
    child: Child,
    name: String,
}

impl Proc {
    /// Starts `program args` in `dir` as `timeout -s SIGNAL -k 5 MAX_S program args`, its
    /// output to `log`.
    fn spawn(
        name: &str,
        signal: &str,
        max_s: u64,
        program: &Path,
        args: &[String],
        dir: &Path,
        log: &Path,
    ) -> Result<Proc, String> {
        let log_file = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let child = Command::new("timeout")
            .args(["-s", signal, "-k", "5", &max_s.to_string()])
            .arg(program)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().map_err(|e| e.to_string())?)
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("cannot start {name} ({}): {e}", program.display()))?;
        Ok(Proc {
            child,
            name: name.to_string(),
        })
    }

    /// The process itself and its children, without the `timeout` wrapper.
    fn pids(&self) -> Vec<u32> {
        sipp::process_tree(self.child.id())
            .into_iter()
            .filter(|&p| sipp::proc_comm(p).as_deref() != Some("timeout"))
            .collect()
    }

    /// `Some` with a note when the process has already ended.
    fn ended_early(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!("{} ended before the UAC ({status})", self.name)),
            _ => None,
        }
    }

    fn check_alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!("{} exited: {status}", self.name)),
            Err(e) => Err(format!("{}: {e}", self.name)),
        }
    }

    /// Waits up to `secs` for the process to end by itself.
    fn wait_for(&mut self, secs: f64) -> Option<ExitStatus> {
        let deadline = Instant::now() + Duration::from_secs_f64(secs);
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the process ends (its `timeout` wrapper bounds it), reading the CPU time of
    /// `other` meanwhile (it may end first); returns the exit status and the last CPU time read.
    fn wait_reading(&mut self, other: &Proc, tck: f64) -> Result<(ExitStatus, f64), String> {
        let pids = other.pids();
        let read = || {
            pids.iter()
                .filter_map(|&p| sipp::proc_cpu_ticks(p).ok())
                .sum::<u64>() as f64
                / tck
        };
        let mut cpu = 0.0_f64;
        loop {
            cpu = cpu.max(read());
            match self.child.try_wait() {
                Ok(Some(status)) => return Ok((status, cpu.max(read()))),
                Ok(None) => std::thread::sleep(Duration::from_millis(100)),
                Err(e) => return Err(format!("{}: {e}", self.name)),
            }
        }
    }

    /// Sends `signal` to the process (not the wrapper) and waits up to `secs`; the drop kills
    /// what is left.
    fn stop(mut self, signal: &str, secs: f64) {
        if let Some(&main) = self.pids().first() {
            kill(signal, main);
        }
        let _ = self.wait_for(secs);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let pids = self.pids();
            // `timeout` passes TERM on to its command.
            kill("-TERM", self.child.id());
            if self.wait_for(3.0).is_none() {
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
}

fn kill(signal: &str, pid: u32) {
    let _ = Command::new("kill")
        .args([signal, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// Waits up to 10 s until `port` is bound, failing early when the process exits.
fn wait_bound(p: &mut Proc, port: u16, log: &Path) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        p.check_alive()
            .map_err(|e| format!("{e}; log: {}", tail_of(log, 3)))?;
        if sipp::udp_port_bound(port) {
            // Still there a moment later (a process that lost a bind race exits at once).
            std::thread::sleep(Duration::from_millis(150));
            return p
                .check_alive()
                .map_err(|e| format!("{e}; log: {}", tail_of(log, 3)));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("{} did not bind port {port} within 10 s", p.name))
}

fn tail_of(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join(" | ")
}

/// CPU ticks (user + system) of the children this process has reaped (`cutime` + `cstime`,
/// fields 16 and 17 of `/proc/self/stat`), which include their own reaped children.
fn children_cpu_ticks() -> u64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.get(s.rfind(')')? + 1..)?;
            let f: Vec<&str> = rest.split_whitespace().collect();
            // fields[0] is field 3: cutime (16) is fields[13], cstime (17) fields[14].
            Some(f.get(13)?.parse::<u64>().ok()? + f.get(14)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0)
}

/// The 1-minute load average.
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

fn fresh_dir(dir: &Path) -> Result<(), String> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))
}

/// A number at `path` in a JSON report.
fn at(v: &Value, path: &[&str]) -> Option<f64> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_f64()
}

fn read_json(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The largest divisor of `n` that is at most `max` (SIPp writes response times in blocks of
/// `-rtt_freq` and drops the last partial block).
fn divisor_at_most(n: u64, max: u64) -> u64 {
    (1..=max.min(n).max(1))
        .rev()
        .find(|d| n.is_multiple_of(*d))
        .unwrap_or(1)
}

// ---------------------------------------------------------------------------------------------
// Phase 1: call rate
// ---------------------------------------------------------------------------------------------

/// One rate step of one tool.
#[derive(Clone, Debug, Default)]
struct CpsStep {
    rate: u64,
    calls: u64,
    answered: u64,
    failed: u64,
    uas_failed: u64,
    retransmissions: u64,
    achieved: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Both sides.
    cpu_s: f64,
    /// The UAS alone (read when the UAC has ended).
    uas_cpu_s: f64,
    load: f64,
    note: Option<String>,
}

impl CpsStep {
    fn clean(&self, p99_limit: f64) -> bool {
        self.note.is_none()
            && self.failed == 0
            && self.uas_failed == 0
            && self.answered >= self.calls
            && self.p99_ms < p99_limit
            && self.achieved >= 0.95 * self.rate as f64
    }

    fn json(&self, p99_limit: f64) -> Value {
        json!({
            "rate": self.rate, "calls": self.calls, "answered": self.answered,
            "failed": self.failed, "uas_failed": self.uas_failed,
            "retransmissions": self.retransmissions, "achieved_per_s": round(self.achieved, 1),
            "setup_p50_ms": round(self.p50_ms, 3), "setup_p99_ms": round(self.p99_ms, 3),
            "cpu_s": round(self.cpu_s, 2), "uas_cpu_s": round(self.uas_cpu_s, 2), "load_average": self.load,
            "clean": self.clean(p99_limit), "note": self.note,
        })
    }
}

/// SIPp UAC → SIPp UAS at `rate` for `--step-seconds`.
fn sipp_cps_step(args: &Args, dir: &Path, rate: u64) -> Result<CpsStep, String> {
    let calls = rate * args.step_s;
    let bound = args.step_s + 40;
    let uas_log = dir.join("uas.log");
    let uas_args = strings(&[
        "-sn",
        "uas",
        "-i",
        "127.0.0.1",
        "-p",
        &args.sipp_uas_port().to_string(),
        "-buff_size",
        BUFF_SIZE,
        "-timeout",
        &format!("{bound}s"),
        "-trace_stat",
        "-stf",
        "uas.csv",
        "-fd",
        "1",
        "-nostdin",
    ]);
    let mut uas = Proc::spawn(
        "SIPp UAS",
        "USR1",
        bound + 10,
        Path::new("sipp"),
        &uas_args,
        dir,
        &uas_log,
    )?;
    wait_bound(&mut uas, args.sipp_uas_port(), &uas_log)?;
    let uac_args = strings(&[
        "-sn",
        "uac",
        &format!("127.0.0.1:{}", args.sipp_uas_port()),
        "-i",
        "127.0.0.1",
        "-p",
        &args.sipp_uac_port().to_string(),
        "-r",
        &rate.to_string(),
        "-m",
        &calls.to_string(),
        "-l",
        &MAX_CONCURRENT.to_string(),
        "-d",
        "0",
        "-buff_size",
        BUFF_SIZE,
        "-recv_timeout",
        "10000",
        "-timeout",
        &format!("{}s", bound - 5),
        "-trace_stat",
        "-stf",
        "stat.csv",
        "-fd",
        "1",
        "-trace_rtt",
        "-rtt_freq",
        &divisor_at_most(calls, 1000).to_string(),
        "-nostdin",
    ]);
    let (status, uas_cpu_s) = run_sipp_uac(args, &uac_args, bound, dir, &uas)?;
    let note = uas.ended_early();
    // The UAS writes its counters every second.
    std::thread::sleep(Duration::from_millis(1300));
    let (uas_stat, stat) = sipp_stats(dir, uas, status)?;
    let rtts = read_rtts(dir)?;
    let achieved = sipp::answered_per_second(&rtts, rate as f64).unwrap_or(0.0);
    let mut v: Vec<f64> = rtts.iter().map(|s| s.rtt_ms).collect();
    v.sort_by(f64::total_cmp);
    Ok(CpsStep {
        rate,
        calls,
        answered: stat.successful,
        failed: stat.failed.max(calls.saturating_sub(stat.successful)),
        uas_failed: uas_stat.failed,
        retransmissions: stat.retransmissions,
        achieved,
        p50_ms: sipp::percentile(&v, 50.0),
        p99_ms: sipp::percentile(&v, 99.0),
        uas_cpu_s,
        note,
        ..CpsStep::default()
    })
}

fn read_rtts(dir: &Path) -> Result<Vec<sipp::RttSample>, String> {
    let mut rtts = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| e.to_string())?.flatten() {
        if entry.file_name().to_string_lossy().ends_with("_rtt.csv") {
            let text = std::fs::read_to_string(entry.path()).map_err(|e| e.to_string())?;
            rtts.extend(sipp::parse_rtt_csv(&text).map_err(|e| format!("rtt: {e}"))?);
        }
    }
    Ok(rtts)
}

/// Starts `switchboard load uas` for `calls` calls on our UAS port.
fn start_ours_uas(
    args: &Args,
    dir: &Path,
    calls: u64,
    bound: u64,
    media: bool,
) -> Result<Proc, String> {
    let log = dir.join("uas.log");
    let mut a = strings(&[
        "load",
        "uas",
        "--listen",
        &format!("127.0.0.1:{}", args.ours_uas_port()),
        "--calls",
        &calls.to_string(),
        "--time-limit",
        &bound.to_string(),
        "--grace",
        "5",
        "--quiet",
        "--report",
        "uas.json",
    ]);
    if media {
        a.extend(strings(&["--media", "echo"]));
    }
    a.extend(our_threads(args));
    let mut uas = Proc::spawn(
        "switchboard load uas",
        "INT",
        bound + 30,
        &args.switchboard,
        &a,
        dir,
        &log,
    )?;
    wait_bound(&mut uas, args.ours_uas_port(), &log)?;
    Ok(uas)
}

/// `--threads N --media-threads N` when `--sb-threads N` was given.
/// Runs our uac with `uac_args` (bounded by `bound` s) while `uas` runs; returns the uas's CPU
/// seconds, its failed calls and the uac's JSON report.
fn run_our_uac(
    args: &Args,
    uac_args: &[String],
    bound: u64,
    dir: &Path,
    uas: Proc,
) -> Result<(f64, u64, Value), String> {
    let mut uac = Proc::spawn(
        "switchboard load uac",
        "INT",
        bound,
        &args.switchboard,
        uac_args,
        dir,
        &dir.join("uac.log"),
    )?;
    let (status, uas_cpu_s) = uac.wait_reading(&uas, args.tck)?;
    drop(uac);
    let (uas_failed, _) = finish_ours_uas(uas, dir);
    let r = read_json(&dir.join("uac.json")).map_err(|e| {
        format!(
            "uac report: {e} (exit {status}); log: {}",
            tail_of(&dir.join("uac.log"), 3)
        )
    })?;
    Ok((uas_cpu_s, uas_failed, r))
}

/// Runs SIPp's uac with `uac_args` (bounded by `bound` s) while `uas` runs; returns its exit
/// status and the uas's CPU seconds.
fn run_sipp_uac(
    args: &Args,
    uac_args: &[String],
    bound: u64,
    dir: &Path,
    uas: &Proc,
) -> Result<(ExitStatus, f64), String> {
    let mut uac = Proc::spawn(
        "SIPp UAC",
        "USR1",
        bound,
        Path::new("sipp"),
        uac_args,
        dir,
        &dir.join("uac.log"),
    )?;
    let r = uac.wait_reading(uas, args.tck);
    drop(uac);
    r
}

/// Stops SIPp's uas and reads both sides' `-trace_stat` files: (uas, uac).
fn sipp_stats(
    dir: &Path,
    uas: Proc,
    status: ExitStatus,
) -> Result<(sipp::StatSummary, sipp::StatSummary), String> {
    let uas_stat = std::fs::read_to_string(dir.join("uas.csv"))
        .ok()
        .and_then(|t| sipp::parse_stat_csv(&t).ok())
        .unwrap_or_default();
    uas.stop("-USR1", 2.0);
    let stat = std::fs::read_to_string(dir.join("stat.csv"))
        .map_err(|e| e.to_string())
        .and_then(|t| sipp::parse_stat_csv(&t).map_err(|e| e.to_string()))
        .map_err(|e| {
            format!(
                "SIPp UAC stat file: {e} (exit {status}); log: {}",
                tail_of(&dir.join("uac.log"), 3)
            )
        })?;
    Ok((uas_stat, stat))
}

fn our_threads(args: &Args) -> Vec<String> {
    args.sb_threads.map_or_else(Vec::new, |n| {
        strings(&[
            "--threads",
            &n.to_string(),
            "--media-threads",
            &n.to_string(),
        ])
    })
}

/// Waits for our uas to end by itself (it does once it has answered and ended its calls) and
/// returns its failed calls and its report.
fn finish_ours_uas(mut uas: Proc, dir: &Path) -> (u64, Option<Value>) {
    if uas.wait_for(10.0).is_none() {
        uas.stop("-INT", 5.0);
    } else {
        drop(uas);
    }
    match read_json(&dir.join("uas.json")) {
        Ok(v) => (at(&v, &["totals", "failed"]).unwrap_or(0.0) as u64, Some(v)),
        Err(_) => (0, None),
    }
}

/// `switchboard load uac` → `switchboard load uas` at `rate` for `--step-seconds`.
fn ours_cps_step(args: &Args, dir: &Path, rate: u64) -> Result<CpsStep, String> {
    let calls = rate * args.step_s;
    let bound = args.step_s + 40;
    let uas = start_ours_uas(args, dir, calls, bound, false)?;
    let mut uac_args = strings(&[
        "load",
        "uac",
        "--target",
        &format!("127.0.0.1:{}", args.ours_uas_port()),
        "--rate",
        &rate.to_string(),
        "--calls",
        &calls.to_string(),
        "--duration-ms",
        "0",
        "--max-concurrent",
        &MAX_CONCURRENT.to_string(),
        "--time-limit",
        &(args.step_s + 15).to_string(),
        "--grace",
        "10",
        "--quiet",
        "--report",
        "uac.json",
    ]);
    uac_args.extend(our_threads(args));
    let (uas_cpu_s, uas_failed, r) = run_our_uac(args, &uac_args, bound, dir, uas)?;
    let n = |p: &[&str]| at(&r, p).unwrap_or(0.0);
    let answered = n(&["totals", "answered"]) as u64;
    let elapsed = n(&["elapsed_s"]);
    Ok(CpsStep {
        rate,
        calls,
        answered,
        failed: (n(&["totals", "failed"]) as u64).max(calls.saturating_sub(answered)),
        uas_failed,
        retransmissions: n(&["totals", "retransmissions"]) as u64,
        // Over the window in which the 2xx arrived, as SIPp's figure is taken; the whole run
        // time (process start to the last BYE) for reports from before that field existed.
        achieved: match at(&r, &["answered_per_s_in_window"]) {
            Some(w) => w,
            None if elapsed > 0.0 => answered as f64 / elapsed,
            None => 0.0,
        },
        p50_ms: n(&["setup", "p50_ms"]),
        p99_ms: n(&["setup", "p99_ms"]),
        uas_cpu_s,
        ..CpsStep::default()
    })
}

// ---------------------------------------------------------------------------------------------
// Phase 2: concurrent calls with RTP
// ---------------------------------------------------------------------------------------------

/// One concurrency step of one tool.
#[derive(Clone, Debug, Default)]
struct MediaStep {
    calls: u64,
    rate: u64,
    answered: u64,
    failed: u64,
    uas_failed: u64,
    /// Streams counted (ours: every stream; SIPp: the sampled calls).
    streams: u64,
    streams_expected: u64,
    /// Packets counted (ours: sent by the uac; SIPp: sent by the UAC in the sampled calls).
    sent: u64,
    lost: u64,
    loss_pct: f64,
    /// Mean MOS (ours only).
    mos: Option<f64>,
    /// SIPp: one call in `sample` captured.
    sample: u64,
    /// Both sides (SIPp: with dumpcap).
    cpu_s: f64,
    /// The UAS alone (read when the UAC has ended).
    uas_cpu_s: f64,
    load: f64,
    note: Option<String>,
}

impl MediaStep {
    fn clean(&self) -> bool {
        self.note.is_none()
            && self.failed == 0
            && self.uas_failed == 0
            && self.answered >= self.calls
            && self.lost == 0
            && self.streams >= self.streams_expected
    }

    fn json(&self) -> Value {
        json!({
            "calls": self.calls, "rate": self.rate, "answered": self.answered,
            "failed": self.failed, "uas_failed": self.uas_failed, "streams": self.streams,
            "streams_expected": self.streams_expected, "sample": self.sample,
            "packets_sent": self.sent, "packets_lost": self.lost,
            "loss_percent": round(self.loss_pct, 4), "mean_mos": self.mos.map(|m| round(m, 3)),
            "cpu_s": round(self.cpu_s, 2), "uas_cpu_s": round(self.uas_cpu_s, 2), "load_average": self.load,
            "clean": self.clean(), "note": self.note,
        })
    }
}

/// Calls per second for a step of `calls` calls.
fn media_rate(args: &Args, calls: u64) -> u64 {
    calls.div_ceil(args.ramp_s).max(args.min_rate)
}

/// SIPp UAC (`rtp_stream`) → SIPp UAS (`-rtp_echo`, or `rtp_stream` with `--sipp-media
/// stream`), RTP counted in a sampled capture.
fn sipp_media_step(args: &Args, dir: &Path, calls: u64) -> Result<MediaStep, String> {
    let rate = media_rate(args, calls);
    let ramp_s = calls.div_ceil(rate);
    let bound = ramp_s + args.hold_s + 45;
    std::fs::write(dir.join(TONE), alaw_tone()).map_err(|e| e.to_string())?;
    let (scenario, echo) = if args.sipp_echo {
        ("calls_uas.xml", true)
    } else {
        ("calls_uas_rtp.xml", false)
    };
    let mut uas_args = vec!["-sf".to_string(), path_str(&args.sipp_dir.join(scenario))];
    uas_args.extend(strings(&[
        "-i",
        "127.0.0.1",
        "-p",
        &args.sipp_uas_port().to_string(),
        "-mp",
        &args.sipp_uas_media_port().to_string(),
        "-buff_size",
        BUFF_SIZE,
        "-recv_timeout",
        &((args.hold_s + 30) * 1000).to_string(),
        "-timeout",
        &format!("{bound}s"),
        "-trace_stat",
        "-stf",
        "uas.csv",
        "-fd",
        "1",
        "-nostdin",
    ]));
    if echo {
        uas_args.push("-rtp_echo".into());
    }
    let uas_log = dir.join("uas.log");
    let mut uas = Proc::spawn(
        "SIPp UAS",
        "USR1",
        bound + 10,
        Path::new("sipp"),
        &uas_args,
        dir,
        &uas_log,
    )?;
    wait_bound(&mut uas, args.sipp_uas_port(), &uas_log)?;
    // One call in `sample` is captured: about 50 streams whatever the number of calls.
    let sample = prev_power_of_two((calls / 50).max(1));
    let capture = Capture::start(args, dir, sample, bound + 20)?;
    let mut uac_args = vec![
        "-sf".to_string(),
        path_str(&args.sipp_dir.join("calls_uac_rtp.xml")),
    ];
    uac_args.extend(strings(&[
        &format!("127.0.0.1:{}", args.sipp_uas_port()),
        "-i",
        "127.0.0.1",
        "-p",
        &args.sipp_uac_port().to_string(),
        "-mp",
        &args.sipp_uac_media_port().to_string(),
        "-r",
        &rate.to_string(),
        "-m",
        &calls.to_string(),
        "-l",
        &calls.to_string(),
        "-d",
        &(args.hold_s * 1000).to_string(),
        "-buff_size",
        BUFF_SIZE,
        "-recv_timeout",
        "10000",
        "-timeout",
        &format!("{}s", bound - 5),
        "-trace_stat",
        "-stf",
        "stat.csv",
        "-fd",
        "1",
        "-nostdin",
    ]));
    let (status, uas_cpu_s) = run_sipp_uac(args, &uac_args, bound, dir, &uas)?;
    let early = uas.ended_early();
    // Echoes in flight, and the UAS's counters (written every second).
    std::thread::sleep(Duration::from_millis(1500));
    let counts = capture.finish(args);
    let (uas_stat, stat) = sipp_stats(dir, uas, status)?;
    let (counts, note) = match counts {
        Ok(c) => (c, early),
        Err(e) => (RtpCounts::default(), Some(format!("capture: {e}"))),
    };
    let lost = counts.lost(echo);
    Ok(MediaStep {
        calls,
        rate,
        answered: stat.successful,
        failed: stat.failed.max(calls.saturating_sub(stat.successful)),
        uas_failed: uas_stat.failed,
        streams: counts.streams_sent,
        streams_expected: calls.div_ceil(sample),
        sent: counts.sent,
        lost,
        loss_pct: pct(lost, counts.sent + counts.sent_gaps),
        mos: None,
        sample,
        note,
        uas_cpu_s,
        ..MediaStep::default()
    })
}

/// `switchboard load uac --media play` → `switchboard load uas --media echo`.
fn ours_media_step(args: &Args, dir: &Path, calls: u64) -> Result<MediaStep, String> {
    let rate = media_rate(args, calls);
    let ramp_s = calls.div_ceil(rate);
    let bound = ramp_s + args.hold_s + 45;
    let uas = start_ours_uas(args, dir, calls, bound, true)?;
    let mut uac_args = strings(&[
        "load",
        "uac",
        "--target",
        &format!("127.0.0.1:{}", args.ours_uas_port()),
        "--rate",
        &rate.to_string(),
        "--calls",
        &calls.to_string(),
        "--max-concurrent",
        &calls.to_string(),
        "--duration-ms",
        &(args.hold_s * 1000).to_string(),
        "--media",
        "play",
        "--pcma",
        "--time-limit",
        &(ramp_s + args.hold_s + 15).to_string(),
        "--grace",
        "10",
        "--quiet",
        "--report",
        "uac.json",
    ]);
    uac_args.extend(our_threads(args));
    let (uas_cpu_s, uas_failed, r) = run_our_uac(args, &uac_args, bound, dir, uas)?;
    let n = |p: &[&str]| at(&r, p).unwrap_or(0.0);
    let answered = n(&["totals", "answered"]) as u64;
    Ok(MediaStep {
        calls,
        rate,
        answered,
        failed: (n(&["totals", "failed"]) as u64).max(calls.saturating_sub(answered)),
        uas_failed,
        streams: n(&["media", "streams"]) as u64,
        streams_expected: calls,
        sent: n(&["media", "packets_sent"]) as u64,
        lost: n(&["media", "packets_lost"]) as u64,
        loss_pct: n(&["media", "loss_percent"]),
        mos: at(&r, &["media", "mean_mos"]),
        sample: 1,
        uas_cpu_s,
        note: r
            .get("media")
            .is_none_or(Value::is_null)
            .then(|| "no media in the uac report".to_string()),
        ..MediaStep::default()
    })
}

fn prev_power_of_two(n: u64) -> u64 {
    if n <= 1 {
        1
    } else {
        1 << (63 - n.leading_zeros())
    }
}

/// 2 s of a 440 Hz tone at −12 dBFS as raw 8 kHz A-law (SIPp 3.6.1's `rtp_stream` sends a
/// file's bytes as they are).
fn alaw_tone() -> Vec<u8> {
    switchboard_media::signal::sine(440.0, -12.0, 8000, 16_000)
        .into_iter()
        .map(switchboard_media::codec::g711::linear_to_alaw)
        .collect()
}

/// RTP packets of the sampled SIPp calls, by direction.
#[derive(Clone, Debug, Default)]
struct RtpCounts {
    /// Sent by the UAC.
    sent: u64,
    /// Sent by the UAS (its echo, or its own stream).
    uas_sent: u64,
    /// Sequence gaps in what the UAC sent.
    sent_gaps: u64,
    /// Sequence gaps in what the UAS sent.
    uas_gaps: u64,
    /// Distinct SSRCs the UAC sent.
    streams_sent: u64,
}

impl RtpCounts {
    /// Echo: sent but not echoed, plus what the UAC skipped. Stream: what either side skipped.
    fn lost(&self, echo: bool) -> u64 {
        if echo {
            self.sent.saturating_sub(self.uas_sent) + self.sent_gaps
        } else {
            self.sent_gaps + self.uas_gaps
        }
    }

    fn tally(flows: &[RtpFlow], uac_port: u16, uas_port: u16) -> RtpCounts {
        let mut c = RtpCounts::default();
        let mut ssrcs = std::collections::BTreeSet::new();
        for f in flows {
            if f.src_port == uac_port {
                c.sent += f.packets;
                c.sent_gaps += f.lost();
                ssrcs.insert(f.ssrc);
            } else if f.src_port == uas_port {
                c.uas_sent += f.packets;
                c.uas_gaps += f.lost();
            }
        }
        c.streams_sent = ssrcs.len() as u64;
        c
    }
}

/// A `dumpcap` capture of the RTP from and to the two SIPp media ports, one SSRC in `sample`.
struct Capture {
    proc_: Proc,
    file: PathBuf,
}

impl Capture {
    fn start(args: &Args, dir: &Path, sample: u64, max_s: u64) -> Result<Capture, String> {
        let file = dir.join("rtp.pcap");
        let log = dir.join("dumpcap.log");
        // SSRC: bytes 8..12 of the RTP header, 16..20 of the UDP payload with its header. SIPp
        // numbers SSRCs consecutively per call, so the mask picks one call in `sample`.
        let mut filter = format!(
            "udp and (src port {} or src port {})",
            args.sipp_uac_media_port(),
            args.sipp_uas_media_port()
        );
        if sample > 1 {
            let _ = write!(filter, " and (udp[16:4] & {}) = 0", sample - 1);
        }
        let a = strings(&[
            "-i",
            "lo",
            "-f",
            &filter,
            "-s",
            "64",
            "-B",
            "32",
            "-P",
            "-q",
            "-w",
            &path_str(&file),
        ]);
        let mut proc_ = Proc::spawn("dumpcap", "INT", max_s, Path::new("dumpcap"), &a, dir, &log)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            proc_
                .check_alive()
                .map_err(|e| format!("{e}: {}", tail_of(&log, 3)))?;
            if std::fs::read_to_string(&log)
                .map(|t| t.contains("Capturing on"))
                .unwrap_or(false)
            {
                break;
            }
            if Instant::now() >= deadline {
                return Err(format!("dumpcap not capturing: {}", tail_of(&log, 3)));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // The filter is attached once it says so; a little margin.
        std::thread::sleep(Duration::from_millis(200));
        Ok(Capture { proc_, file })
    }

    /// Stops the capture and counts the packets.
    fn finish(self, args: &Args) -> Result<RtpCounts, String> {
        // `timeout` passes INT on to dumpcap, which then closes its file.
        kill("-INT", self.proc_.child.id());
        let mut p = self.proc_;
        let _ = p.wait_for(10.0);
        drop(p);
        let data =
            std::fs::read(&self.file).map_err(|e| format!("{}: {e}", self.file.display()))?;
        let flows = sipp::parse_pcap_rtp(&data).map_err(|e| e.to_string())?;
        if !args.keep_pcap {
            let _ = std::fs::remove_file(&self.file);
        }
        Ok(RtpCounts::tally(
            &flows,
            args.sipp_uac_media_port(),
            args.sipp_uas_media_port(),
        ))
    }
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

fn round(v: f64, decimals: i32) -> f64 {
    let m = 10f64.powi(decimals);
    (v * m).round() / m
}

// ---------------------------------------------------------------------------------------------
// Ramps and the report
// ---------------------------------------------------------------------------------------------

/// The steps of one tool in one phase, and why its ramp stopped.
struct Ramp<S> {
    tool: Tool,
    steps: Vec<S>,
    /// Stopped: at a step that was not clean, on an error, or for the time budget.
    stopped: Option<String>,
    /// Whether a step that was not clean (or failed to run) ended the ramp.
    failed: bool,
}

impl<S> Ramp<S> {
    fn new(tool: Tool) -> Ramp<S> {
        Ramp {
            tool,
            steps: Vec::new(),
            stopped: None,
            failed: false,
        }
    }
}

/// The highest step of the leading run of clean steps, and whether the ramp stopped at a
/// failing one (else the ceiling is only a lower bound).
fn ceiling<S: Step>(args: &Args, r: &Ramp<S>) -> (u64, bool) {
    let c = r
        .steps
        .iter()
        .take_while(|s| s.clean(args))
        .map(Step::level)
        .last()
        .unwrap_or(0);
    (c, r.failed)
}

/// What the phases' steps have in common.
trait Step: Sized {
    /// The rate or number of calls of the step.
    fn level(&self) -> u64;
    fn clean(&self, args: &Args) -> bool;
    /// One line for the progress output.
    fn describe(&self) -> String;
    /// A step that could not run.
    fn broken(args: &Args, level: u64, why: String) -> Self;
    /// Records the CPU time and load average measured around the step.
    fn measured(&mut self, cpu_s: f64, load: f64);
    /// CPU seconds of the UAS.
    fn uas_cpu(&self) -> f64;
}

impl Step for CpsStep {
    fn level(&self) -> u64 {
        self.rate
    }
    fn clean(&self, args: &Args) -> bool {
        CpsStep::clean(self, args.p99_ms)
    }
    fn describe(&self) -> String {
        format!(
            "{} answered, {} failed ({} at the UAS), {} retrans, {:.0}/s, setup p50 {:.1} p99 {:.1} ms{}",
            self.answered,
            self.failed,
            self.uas_failed,
            self.retransmissions,
            self.achieved,
            self.p50_ms,
            self.p99_ms,
            self.note.as_deref().map_or(String::new(), |n| format!(" [{n}]"))
        )
    }
    fn broken(args: &Args, rate: u64, why: String) -> CpsStep {
        CpsStep {
            rate,
            calls: rate * args.step_s,
            note: Some(why),
            ..CpsStep::default()
        }
    }
    fn measured(&mut self, cpu_s: f64, load: f64) {
        self.cpu_s = cpu_s;
        self.load = load;
    }
    fn uas_cpu(&self) -> f64 {
        self.uas_cpu_s
    }
}

impl Step for MediaStep {
    fn level(&self) -> u64 {
        self.calls
    }
    fn clean(&self, _args: &Args) -> bool {
        MediaStep::clean(self)
    }
    fn describe(&self) -> String {
        format!(
            "{} answered, {} failed ({} at the UAS), streams {}/{}{}, packets sent {} lost {} ({:.4} %){}{}",
            self.answered,
            self.failed,
            self.uas_failed,
            self.streams,
            self.streams_expected,
            if self.sample > 1 {
                format!(" (1 call in {} captured)", self.sample)
            } else {
                String::new()
            },
            self.sent,
            self.lost,
            self.loss_pct,
            self.mos.map_or(String::new(), |m| format!(", MOS {m:.2}")),
            self.note.as_deref().map_or(String::new(), |n| format!(" [{n}]"))
        )
    }
    fn broken(args: &Args, calls: u64, why: String) -> MediaStep {
        MediaStep {
            calls,
            rate: media_rate(args, calls),
            note: Some(why),
            ..MediaStep::default()
        }
    }
    fn measured(&mut self, cpu_s: f64, load: f64) {
        self.cpu_s = cpu_s;
        self.load = load;
    }
    fn uas_cpu(&self) -> f64 {
        self.uas_cpu_s
    }
}

/// Runs the levels of one phase for every tool, alternating the tools step by step; a tool's
/// ramp stops at its first step that is not clean, or when the step (expected to take
/// `estimate(level)` seconds) would end past `deadline`.
fn run_phase<S: Step>(
    args: &Args,
    phase: &str,
    levels: &[u64],
    deadline: Instant,
    estimate: impl Fn(u64) -> f64,
    step: impl Fn(Tool, &Path, u64) -> Result<S, String>,
    work: &Path,
) -> Vec<Ramp<S>> {
    let mut ramps: Vec<Ramp<S>> = args.tools.iter().map(|&t| Ramp::new(t)).collect();
    for &level in levels {
        for ramp in ramps.iter_mut().filter(|r| r.stopped.is_none()) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.as_secs_f64() < estimate(level) {
                ramp.stopped = Some(format!(
                    "time budget: {:.0} s left, the {level} step needs ~{:.0} s",
                    left.as_secs_f64(),
                    estimate(level)
                ));
                continue;
            }
            let tool = ramp.tool.name();
            let dir = work.join(phase).join(tool).join(level.to_string());
            let load = load_average();
            let cpu0 = children_cpu_ticks();
            let t0 = Instant::now();
            let mut s = fresh_dir(&dir)
                .and_then(|_| step(ramp.tool, &dir, level))
                .unwrap_or_else(|e| S::broken(args, level, e));
            let cpu_s = children_cpu_ticks().saturating_sub(cpu0) as f64 / args.tck;
            s.measured(cpu_s, load);
            let ok = s.clean(args);
            println!(
                "{phase} {tool:<11} {level:>6}: {} | CPU {cpu_s:.1} s (uas {:.1}), load {load:.1}, {:.0} s{}",
                s.describe(),
                s.uas_cpu(),
                t0.elapsed().as_secs_f64(),
                if ok { "" } else { "  <- not clean, ramp stops" }
            );
            ramp.steps.push(s);
            if !ok {
                ramp.stopped = Some(format!("not clean at {level}"));
                ramp.failed = true;
            }
        }
    }
    ramps
}

fn run(args: &Args) -> Result<(), String> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.max_minutes * 60.0);
    let wants_sipp = args.tools.contains(&Tool::Sipp);
    if wants_sipp {
        for f in ["calls_uac_rtp.xml", "calls_uas.xml", "calls_uas_rtp.xml"] {
            if !args.sipp_dir.join(f).is_file() {
                return Err(format!(
                    "no {}: pass --sipp-dir",
                    args.sipp_dir.join(f).display()
                ));
            }
        }
        let sipp_ok = Command::new("sipp")
            .arg("-v")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !sipp_ok {
            return Err("sipp not found (Debian package sip-tester)".into());
        }
        if args.phase("media")
            && Command::new("dumpcap")
                .arg("-v")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_err()
        {
            return Err(
                "dumpcap not found (Debian package tshark): SIPp's RTP is counted from a capture"
                    .into(),
            );
        }
    }
    let switchboard = std::fs::canonicalize(&args.switchboard).map_err(|_| {
        format!(
            "{} not found: build it with `cargo build --release --bin switchboard` or pass --switchboard",
            args.switchboard.display()
        )
    })?;
    // Absolute paths: the tools run in their step's directory.
    let mut resolved = args.clone();
    resolved.switchboard = switchboard;
    if let Ok(d) = std::fs::canonicalize(&args.sipp_dir) {
        resolved.sipp_dir = d;
    }
    resolved.tck = sipp::clock_ticks_per_second() as f64;
    let args = &resolved;
    for p in [
        args.sipp_uas_port(),
        args.sipp_uac_port(),
        args.ours_uas_port(),
        args.sipp_uac_media_port(),
        args.sipp_uas_media_port(),
    ] {
        if sipp::udp_port_bound(p) {
            return Err(format!("UDP port {p} is in use: pass another --base-port"));
        }
    }
    // target/bench/load.json -> target/bench/load/
    let work = args.out.with_extension("");
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let work = std::fs::canonicalize(&work).map_err(|e| e.to_string())?;
    println!(
        "bench-load{}: {} cores, load average {:.1} at the start; budget {:.0} min",
        if args.quick { " --quick" } else { "" },
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        load_average(),
        args.max_minutes
    );

    let cps = if args.phase("cps") {
        run_phase(
            args,
            "cps",
            &args.rates,
            deadline,
            |_| (args.step_s + 8) as f64,
            |tool, dir, rate| match tool {
                Tool::Sipp => sipp_cps_step(args, dir, rate),
                Tool::Switchboard => ours_cps_step(args, dir, rate),
            },
            &work,
        )
    } else {
        Vec::new()
    };
    let media = if args.phase("media") {
        run_phase(
            args,
            "media",
            &args.concurrency,
            deadline,
            |calls| (calls.div_ceil(media_rate(args, calls)) + args.hold_s + 6) as f64,
            |tool, dir, calls| match tool {
                Tool::Sipp => sipp_media_step(args, dir, calls),
                Tool::Switchboard => ours_media_step(args, dir, calls),
            },
            &work,
        )
    } else {
        Vec::new()
    };

    let summary = print_report(args, &cps, &media, started.elapsed());
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(&to_json(args, &cps, &media, summary, started))
        .map_err(|e| e.to_string())?;
    std::fs::write(&args.out, text).map_err(|e| format!("{}: {e}", args.out.display()))?;
    println!(
        "written: {} (files and logs in {})",
        args.out.display(),
        work.display()
    );
    Ok(())
}

/// The ceilings of both tools in one phase and their ratio (ours / SIPp).
#[derive(Clone, Copy, Debug, Default)]
struct Ceilings {
    sipp: Option<(u64, bool)>,
    ours: Option<(u64, bool)>,
}

impl Ceilings {
    fn ratio(&self) -> Option<f64> {
        match (self.sipp, self.ours) {
            (Some((s, _)), Some((o, _))) if s > 0 => Some(o as f64 / s as f64),
            _ => None,
        }
    }

    /// "1000" when a failing step bounds it, "≥ 1000" when the ramp ended clean.
    fn show(c: Option<(u64, bool)>) -> String {
        match c {
            None => "-".into(),
            Some((v, true)) => v.to_string(),
            Some((v, false)) => format!("≥ {v}"),
        }
    }

    fn line(&self, what: &str, target: f64) -> String {
        let ratio = self.ratio().map_or_else(
            || "n/a".to_string(),
            |r| {
                let lower = matches!(self.ours, Some((_, false)));
                let upper = matches!(self.sipp, Some((_, false)));
                let prefix = match (lower, upper) {
                    (true, false) => "≥ ",
                    (false, true) => "≤ ",
                    (true, true) => "~",
                    _ => "",
                };
                format!("{prefix}{r:.2}")
            },
        );
        format!(
            "{what} ceiling: SIPp {}, switchboard {}; ratio switchboard/SIPp {ratio} (target ≥ {target})",
            Ceilings::show(self.sipp),
            Ceilings::show(self.ours)
        )
    }
}

fn ceilings<S: Step>(args: &Args, ramps: &[Ramp<S>]) -> Ceilings {
    let mut c = Ceilings::default();
    for r in ramps {
        let v = Some(ceiling(args, r));
        match r.tool {
            Tool::Sipp => c.sipp = v,
            Tool::Switchboard => c.ours = v,
        }
    }
    c
}

fn print_report(
    args: &Args,
    cps: &[Ramp<CpsStep>],
    media: &[Ramp<MediaStep>],
    took: Duration,
) -> (Ceilings, Ceilings) {
    let mut out = String::new();
    let cps_c = ceilings(args, cps);
    let media_c = ceilings(args, media);
    if !cps.is_empty() {
        let _ = writeln!(
            out,
            "\nCall rate: 0 ms calls, no media, {} s per step; clean = 0 failed, setup p99 < {} ms, \
             achieved ≥ 95 % of the rate",
            args.step_s, args.p99_ms
        );
        let _ = writeln!(
            out,
            "{:<12} {:>7} {:>9} {:>7} {:>7} {:>8} {:>7} {:>7} {:>6} {:>6} {:>9} {:>5} {:>5}",
            "tool",
            "rate",
            "achieved",
            "failed",
            "uas-f",
            "retrans",
            "p50 ms",
            "p99 ms",
            "CPU s",
            "uas s",
            "µs/call",
            "load",
            "clean"
        );
        for r in cps {
            for s in &r.steps {
                let _ = writeln!(
                    out,
                    "{:<12} {:>7} {:>9.0} {:>7} {:>7} {:>8} {:>7.1} {:>7.1} {:>6.1} {:>6.1} {:>9.0} {:>5.1} {:>5} {}",
                    r.tool.name(),
                    s.rate,
                    s.achieved,
                    s.failed,
                    s.uas_failed,
                    s.retransmissions,
                    s.p50_ms,
                    s.p99_ms,
                    s.cpu_s,
                    s.uas_cpu_s,
                    s.cpu_s * 1e6 / s.answered.max(1) as f64,
                    s.load,
                    if s.clean(args.p99_ms) { "yes" } else { "no" },
                    s.note.as_deref().unwrap_or("")
                );
            }
            if let Some(why) = &r.stopped {
                let _ = writeln!(out, "{:<12} stopped: {why}", r.tool.name());
            }
        }
        let _ = writeln!(out, "{}", cps_c.line("CPS", 1.5));
        let _ = writeln!(
            out,
            "(SIPp setup times from -trace_rtt: 1 ms resolution. CPU s: both sides of the step; \
             uas s: the UAS alone; µs/call: both sides per answered call.)"
        );
    }
    if !media.is_empty() {
        let _ = writeln!(
            out,
            "\nConcurrent calls with RTP: {} s calls, A-law 20 ms both ways (SIPp: UAC rtp_stream, \
             UAS {}; ours: uac play, uas echo); clean = 0 failed, 0 packets lost",
            args.hold_s,
            if args.sipp_echo {
                "-rtp_echo"
            } else {
                "rtp_stream"
            }
        );
        let _ = writeln!(
            out,
            "{:<12} {:>6} {:>5} {:>8} {:>7} {:>6} {:>11} {:>10} {:>8} {:>9} {:>5} {:>6} {:>6} {:>5} {:>5}",
            "tool",
            "calls",
            "cps",
            "answered",
            "failed",
            "uas-f",
            "streams",
            "sent",
            "lost",
            "loss %",
            "MOS",
            "CPU s",
            "uas s",
            "load",
            "clean"
        );
        for r in media {
            for s in &r.steps {
                let _ = writeln!(
                    out,
                    "{:<12} {:>6} {:>5} {:>8} {:>7} {:>6} {:>11} {:>10} {:>8} {:>9.4} {:>5} {:>6.1} {:>6.1} {:>5.1} {:>5} {}",
                    r.tool.name(),
                    s.calls,
                    s.rate,
                    s.answered,
                    s.failed,
                    s.uas_failed,
                    format!("{}/{}", s.streams, s.streams_expected),
                    s.sent,
                    s.lost,
                    s.loss_pct,
                    s.mos.map_or_else(|| "-".to_string(), |m| format!("{m:.2}")),
                    s.cpu_s,
                    s.uas_cpu_s,
                    s.load,
                    if s.clean() { "yes" } else { "no" },
                    s.note.as_deref().unwrap_or("")
                );
            }
            if let Some(why) = &r.stopped {
                let _ = writeln!(out, "{:<12} stopped: {why}", r.tool.name());
            }
        }
        let _ = writeln!(out, "{}", media_c.line("Loss-free media streams", 2.0));
        let _ = writeln!(
            out,
            "(SIPp streams and packets are those of the sampled calls in a capture on lo, SIPp \
             never reading its RTP; ours are every stream's, counted by the receiving uac. \
             CPU: both sides of a step{}.)",
            if media.iter().any(|r| r.tool == Tool::Sipp) {
                ", for SIPp with dumpcap"
            } else {
                ""
            }
        );
    }
    let _ = writeln!(
        out,
        "bench-load took {:.0} s; load average now {:.1}",
        took.as_secs_f64(),
        load_average()
    );
    print!("{out}");
    (cps_c, media_c)
}

fn ceiling_json(c: Option<(u64, bool)>) -> Value {
    match c {
        None => Value::Null,
        Some((v, bounded)) => json!({ "value": v, "bounded_by_a_failing_step": bounded }),
    }
}

fn to_json(
    args: &Args,
    cps: &[Ramp<CpsStep>],
    media: &[Ramp<MediaStep>],
    (cps_c, media_c): (Ceilings, Ceilings),
    started: Instant,
) -> Value {
    let ramps_cps: Vec<Value> = cps
        .iter()
        .map(|r| {
            json!({
                "tool": r.tool.name(), "stopped": r.stopped,
                "steps": r.steps.iter().map(|s| s.json(args.p99_ms)).collect::<Vec<_>>(),
            })
        })
        .collect();
    let ramps_media: Vec<Value> = media
        .iter()
        .map(|r| {
            json!({
                "tool": r.tool.name(), "stopped": r.stopped,
                "steps": r.steps.iter().map(MediaStep::json).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "benchmark": "load",
        "quick": args.quick,
        "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "seconds": round(started.elapsed().as_secs_f64(), 1),
        "cps": {
            "step_seconds": args.step_s, "p99_limit_ms": args.p99_ms,
            "ceiling_sipp": ceiling_json(cps_c.sipp),
            "ceiling_switchboard": ceiling_json(cps_c.ours),
            "ratio_switchboard_over_sipp": cps_c.ratio().map(|r| round(r, 3)),
            "ramps": ramps_cps,
        },
        "media": {
            "hold_seconds": args.hold_s,
            "sipp_uas": if args.sipp_echo { "rtp_echo" } else { "rtp_stream" },
            "ceiling_sipp": ceiling_json(media_c.sipp),
            "ceiling_switchboard": ceiling_json(media_c.ours),
            "ratio_switchboard_over_sipp": media_c.ratio().map(|r| round(r, 3)),
            "ramps": ramps_media,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_strs(v: &[&str]) -> Result<Args, String> {
        parse(v.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn options() {
        let a =
            parse_strs(&["--rates", "10,20", "--quick", "--tools", "switchboard"]).expect("valid");
        assert!(a.quick);
        assert_eq!(a.rates, vec![10, 20]);
        assert_eq!(a.concurrency, vec![100, 250, 500]);
        assert_eq!(a.tools, vec![Tool::Switchboard]);
        assert_eq!(a.out, PathBuf::from("target/bench/load-quick.json"));
        for bad in [
            &["--rates", "0"][..],
            &["--rates", "x"],
            &["--phases", "cps,nope"],
            &["--base-port", "4900"],
            &["--base-port", "8800"],
            &["--sipp-media", "both"],
            &["--p99-ms", "NaN"],
            &["--hold-seconds"],
            &["--what"],
        ] {
            assert!(parse_strs(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn divisors_and_powers() {
        assert_eq!(divisor_at_most(50_000, 1000), 1000);
        assert_eq!(divisor_at_most(7, 1000), 7);
        assert_eq!(divisor_at_most(15_000, 1000), 1000);
        assert_eq!(divisor_at_most(1009 * 2, 1000), 2);
        assert_eq!(prev_power_of_two(0), 1);
        assert_eq!(prev_power_of_two(20), 16);
    }

    #[test]
    fn ceilings_take_the_leading_clean_run() {
        let mut r = Ramp::new(Tool::Sipp);
        for (rate, failed) in [(1000, 0), (2000, 0), (3000, 5)] {
            r.steps.push(CpsStep {
                rate,
                calls: rate,
                answered: rate - failed,
                failed,
                achieved: rate as f64,
                ..CpsStep::default()
            });
        }
        r.failed = true;
        let args = parse(Vec::new()).expect("defaults");
        assert_eq!(ceiling(&args, &r), (2000, true));
        let c = Ceilings {
            sipp: Some((2000, true)),
            ours: Some((5000, false)),
        };
        assert_eq!(c.ratio(), Some(2.5));
        assert!(c.line("CPS", 1.5).contains("≥ 2.50"));
    }

    #[test]
    fn sipp_loss_by_direction() {
        let flow = |src_port, ssrc, packets, first_seq, last_seq| RtpFlow {
            src_port,
            dst_port: 1,
            ssrc,
            packets,
            first_seq,
            last_seq,
        };
        let flows = [
            flow(100, 1, 50, 0, 49),
            flow(100, 2, 49, 0, 49),
            flow(200, 1, 48, 0, 49),
            flow(200, 2, 49, 0, 48),
        ];
        let c = RtpCounts::tally(&flows, 100, 200);
        assert_eq!((c.sent, c.uas_sent, c.streams_sent), (99, 97, 2));
        assert_eq!((c.sent_gaps, c.uas_gaps), (1, 2));
        assert_eq!(c.lost(true), 2 + 1);
        assert_eq!(c.lost(false), 3);
    }
}
