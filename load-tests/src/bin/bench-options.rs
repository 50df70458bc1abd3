//! SIPp OPTIONS benchmark: how many OPTIONS per second Switchboard answers, against SIPp
//! answering SIPp on the same box as the anchor.
//!
//! ```text
//! bench-options [--rate N] [--seconds S] [--switchboard PATH] [--anchor-only]
//!               [--base-port P] [--sipp-dir DIR] [--out FILE]
//! ```
//!
//! 1. Anchor: a SIPp UAS (`sipp/options_uas.xml`) on 127.0.0.1:P, flooded by the SIPp UAC
//!    (`sipp/options_uac.xml`) at N requests/s for S seconds.
//! 2. The same UAC against `switchboard serve --config FILE`, started here with UDP and TCP on
//!    127.0.0.1:P+10 and HTTP on P+11, and stopped afterwards.
//!
//! From SIPp's `-trace_stat` and `-trace_rtt` files it reports answered/s (over the window in
//! which the 200s arrived), failures, retransmissions and p50/p99 response time; from `/proc/PID/stat` the CPU time the answering
//! process (SIPp UAS or Switchboard) spent during the flood. The table is printed and written as
//! JSON (default `target/bench/options.json`); the SIPp files stay in `target/bench/options/`.
//!
//! Exits 1 when the Switchboard run (or, with `--anchor-only`, the anchor) lost any request or
//! answered fewer than 95 % of the requested rate; 2 on a usage or set-up error.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use switchboard_load::sipp::{self, StatSummary};

/// Command-line options.
struct Args {
    rate: u64,
    seconds: u64,
    switchboard: PathBuf,
    anchor_only: bool,
    base_port: u16,
    sipp_dir: PathBuf,
    out: PathBuf,
}

/// What one run measured.
struct RunResult {
    target: &'static str,
    requested: u64,
    stat: StatSummary,
    answered_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    mean_ms: f64,
    cpu_s: f64,
    sipp_exit: Option<i32>,
}

impl RunResult {
    /// Requests sent but not answered with a 200 (failed or never finished).
    fn lost(&self) -> u64 {
        self.stat
            .failed
            .max(self.requested.saturating_sub(self.stat.successful))
    }

    fn cpu_us_per_request(&self) -> f64 {
        if self.stat.successful == 0 {
            0.0
        } else {
            self.cpu_s * 1e6 / self.stat.successful as f64
        }
    }
}

/// A child process killed (and reaped) when dropped, so no server outlives the benchmark.
struct Guard {
    child: Child,
    name: &'static str,
}

impl Guard {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails when the process has already exited (it could not bind its port, say).
    fn check_alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!("{} exited early: {status}", self.name)),
            Err(e) => Err(format!("{}: {e}", self.name)),
        }
    }

    /// Asks the process to quit with `signal`, then kills it if it is still there after 5 s.
    fn stop(mut self, signal: &str) {
        let _ = Command::new("kill")
            .args([signal, &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Drop kills what is left.
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench-options: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("bench-options: {e}");
            ExitCode::from(2)
        }
    }
}

const USAGE: &str =
    "usage: bench-options [--rate N] [--seconds S] [--switchboard PATH] [--anchor-only] \
[--base-port P] [--sipp-dir DIR] [--out FILE]";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        rate: 20_000,
        seconds: 10,
        switchboard: PathBuf::from("target/release/switchboard"),
        anchor_only: false,
        base_port: 15070,
        sipp_dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("sipp"),
        out: PathBuf::from("target/bench/options.json"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--rate" => args.rate = number(&flag, &value()?)?,
            "--seconds" => args.seconds = number(&flag, &value()?)?,
            "--switchboard" => args.switchboard = PathBuf::from(value()?),
            "--anchor-only" => args.anchor_only = true,
            "--base-port" => args.base_port = number(&flag, &value()?)?,
            "--sipp-dir" => args.sipp_dir = PathBuf::from(value()?),
            "--out" => args.out = PathBuf::from(value()?),
            "-h" | "--help" => return Err(USAGE.to_string()),
            _ => return Err(format!("unknown argument {flag}\n{USAGE}")),
        }
    }
    if args.rate == 0 || args.seconds == 0 {
        return Err("--rate and --seconds must be positive".into());
    }
    // The ports used are base..=base+12.
    let span = args.base_port..=args.base_port.saturating_add(12);
    if args.base_port < 1024 || args.base_port > 65000 || span.contains(&5060) {
        return Err(
            "--base-port must be in 1024..65000, and the 13 ports from it avoid 5060".into(),
        );
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

/// Runs the anchor and (unless `--anchor-only`) Switchboard; returns whether the checked run
/// passed.
fn run(args: &Args) -> Result<bool, String> {
    for f in ["options_uac.xml", "options_uas.xml"] {
        if !args.sipp_dir.join(f).is_file() {
            return Err(format!(
                "{} not found (use --sipp-dir)",
                args.sipp_dir.join(f).display()
            ));
        }
    }
    let work = args.out.parent().unwrap_or(Path::new(".")).join("options");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let work = std::fs::canonicalize(&work).map_err(|e| e.to_string())?;
    let tck = sipp::clock_ticks_per_second() as f64;

    let mut results = vec![run_anchor(args, &work.join("anchor"), tck)?];
    if !args.anchor_only {
        match run_switchboard(args, &work.join("switchboard"), tck) {
            Ok(r) => results.push(r),
            Err(e) => {
                print_table(args, &results);
                return Err(e);
            }
        }
    }

    print_table(args, &results);
    let json = to_json(args, &results);
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(&args.out, json).map_err(|e| format!("{}: {e}", args.out.display()))?;
    println!(
        "written: {} (SIPp files in {})",
        args.out.display(),
        work.display()
    );

    let checked = results.last().expect("at least the anchor ran");
    let mut ok = true;
    if checked.lost() > 0 {
        println!(
            "FAIL: {} lost {} of {} requests",
            checked.target,
            checked.lost(),
            checked.requested
        );
        ok = false;
    }
    if checked.answered_per_s < 0.95 * args.rate as f64 {
        println!(
            "FAIL: {} answered {:.0}/s, below 95 % of the requested {}/s",
            checked.target, checked.answered_per_s, args.rate
        );
        ok = false;
    }
    if ok {
        println!(
            "PASS: {} answered every request at ≥ 95 % of the requested rate",
            checked.target
        );
    }
    Ok(ok)
}

/// SIPp UAS answering SIPp UAC: the anchor.
fn run_anchor(args: &Args, dir: &Path, tck: f64) -> Result<RunResult, String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let port = args.base_port;
    let log = log_file(dir, "uas.log")?;
    let child = Command::new("sipp")
        .args(["-sf"])
        .arg(args.sipp_dir.join("options_uas.xml"))
        .args([
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-buff_size",
            "4194304",
            "-nostdin",
        ])
        // Bounded even if this process dies without stopping it.
        .args(["-timeout", &format!("{}s", args.seconds + 120)])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start sipp (apt package sip-tester): {e}"))?;
    let mut uas = Guard {
        child,
        name: "SIPp UAS",
    };
    wait_ready(&mut uas, SocketAddr::from(([127, 0, 0, 1], port)), None)?;
    let result = flood(args, dir, port, port + 1, "sipp", &uas, tck);
    uas.stop("-USR1");
    result
}

/// `switchboard serve` answering SIPp UAC.
fn run_switchboard(args: &Args, dir: &Path, tck: f64) -> Result<RunResult, String> {
    // Absolute: the server runs in `dir`.
    let Ok(binary) = std::fs::canonicalize(&args.switchboard) else {
        return Err(format!(
            "{} not found: build it with `cargo build --release --bin switchboard` or pass --switchboard",
            args.switchboard.display()
        ));
    };
    std::fs::create_dir_all(dir.join("data")).map_err(|e| e.to_string())?;
    let sip_port = args.base_port + 10;
    let http_port = args.base_port + 11;
    let config = dir.join("bench.toml");
    std::fs::write(
        &config,
        format!(
            "[sip]\nudp_listen = [\"127.0.0.1:{sip_port}\"]\ntcp_listen = [\"127.0.0.1:{sip_port}\"]\n\
             [http]\nlisten = \"127.0.0.1:{http_port}\"\n[data]\ndir = \"{}\"\n",
            dir.join("data").display()
        ),
    )
    .map_err(|e| e.to_string())?;
    let log = log_file(dir, "switchboard.log")?;
    let child = Command::new(&binary)
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    let mut server = Guard {
        child,
        name: "switchboard",
    };
    let ready = wait_ready(
        &mut server,
        SocketAddr::from(([127, 0, 0, 1], sip_port)),
        Some(SocketAddr::from(([127, 0, 0, 1], http_port))),
    );
    if let Err(e) = ready {
        return Err(format!(
            "{e} (log: {})",
            dir.join("switchboard.log").display()
        ));
    }
    let result = flood(
        args,
        dir,
        sip_port,
        sip_port + 2,
        "switchboard",
        &server,
        tck,
    );
    server.stop("-TERM");
    result
}

/// Runs the SIPp UAC against `port` and reads its files; `server` is the answering process,
/// whose CPU time during the flood is measured.
fn flood(
    args: &Args,
    dir: &Path,
    port: u16,
    local_port: u16,
    target: &'static str,
    server: &Guard,
    tck: f64,
) -> Result<RunResult, String> {
    let requested = args.rate * args.seconds;
    let cpu_before = sipp::proc_cpu_ticks(server.pid()).map_err(|e| format!("{target}: {e}"))?;
    let log = log_file(dir, "uac.log")?;
    println!(
        "{target}: {} OPTIONS/s for {} s ({requested} requests) to 127.0.0.1:{port}",
        args.rate, args.seconds
    );
    let status = Command::new("timeout")
        .args([
            "-s",
            "USR1",
            "-k",
            "10",
            &(args.seconds + 60).to_string(),
            "sipp",
            "-sf",
        ])
        .arg(args.sipp_dir.join("options_uac.xml"))
        .arg(format!("127.0.0.1:{port}"))
        .args(["-i", "127.0.0.1", "-p", &local_port.to_string()])
        .args(["-r", &args.rate.to_string(), "-m", &requested.to_string()])
        .args([
            "-buff_size",
            "4194304",
            "-timeout",
            &format!("{}s", args.seconds + 40),
        ])
        .args(["-trace_stat", "-stf", "stat.csv", "-fd", "1"])
        .args(["-trace_rtt", "-rtt_freq", "1000", "-nostdin"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .status()
        .map_err(|e| format!("cannot run timeout/sipp: {e}"))?;
    let cpu_after = sipp::proc_cpu_ticks(server.pid())
        .map_err(|e| format!("{target} died during the run: {e}"))?;

    let stat_text = std::fs::read_to_string(dir.join("stat.csv")).map_err(|e| {
        format!(
            "{target}: no SIPp stat file ({e}); see {}",
            dir.join("uac.log").display()
        )
    })?;
    let stat = sipp::parse_stat_csv(&stat_text).map_err(|e| format!("{target}: stat.csv: {e}"))?;
    let mut rtts = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| e.to_string())?.flatten() {
        if entry.file_name().to_string_lossy().ends_with("_rtt.csv") {
            let text = std::fs::read_to_string(entry.path()).map_err(|e| e.to_string())?;
            rtts.extend(sipp::parse_rtt_csv(&text).map_err(|e| format!("{target}: rtt: {e}"))?);
        }
    }
    let by_stat = if stat.elapsed_s > 0.0 {
        stat.successful as f64 / stat.elapsed_s
    } else {
        0.0
    };
    // Over the window in which the 200s arrived, without SIPp's start-up; the whole run as a
    // fallback.
    let answered_per_s = sipp::answered_per_second(&rtts, args.rate as f64).unwrap_or(by_stat);
    let mut rtts: Vec<f64> = rtts.iter().map(|s| s.rtt_ms).collect();
    rtts.sort_by(f64::total_cmp);
    let mean_ms = if rtts.is_empty() {
        0.0
    } else {
        rtts.iter().sum::<f64>() / rtts.len() as f64
    };
    Ok(RunResult {
        target,
        requested,
        answered_per_s,
        p50_ms: sipp::percentile(&rtts, 50.0),
        p99_ms: sipp::percentile(&rtts, 99.0),
        mean_ms,
        cpu_s: cpu_after.saturating_sub(cpu_before) as f64 / tck,
        sipp_exit: status.code(),
        stat,
    })
}

/// Waits up to 30 s until `sip` answers an OPTIONS over UDP or `http` answers `GET /health`
/// with 200, failing early when the process exits.
fn wait_ready(proc_: &mut Guard, sip: SocketAddr, http: Option<SocketAddr>) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let udp = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    udp.set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(|e| e.to_string())?;
    let local = udp.local_addr().map_err(|e| e.to_string())?;
    let mut n = 0u32;
    while Instant::now() < deadline {
        proc_.check_alive()?;
        if let Some(addr) = http {
            if http_health_ok(addr) {
                return Ok(());
            }
        }
        n += 1;
        let nonce = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let probe = format!(
            "OPTIONS sip:probe@{sip} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};rport;branch=z9hG4bK-ready-{nonce:x}-{n}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:bench@{local}>;tag=ready{n}\r\n\
             To: <sip:probe@{sip}>\r\n\
             Call-ID: ready-{nonce:x}-{n}@127.0.0.1\r\n\
             CSeq: {n} OPTIONS\r\n\
             Content-Length: 0\r\n\r\n"
        );
        if udp.send_to(probe.as_bytes(), sip).is_ok() {
            let mut buf = [0u8; 4096];
            if let Ok((len, _)) = udp.recv_from(&mut buf) {
                if buf[..len].starts_with(b"SIP/2.0 ") {
                    return Ok(());
                }
            }
        } else {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    Err(format!(
        "{} did not answer on {sip} within 30 s",
        proc_.name
    ))
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

fn log_file(dir: &Path, name: &str) -> Result<std::fs::File, String> {
    std::fs::File::create(dir.join(name)).map_err(|e| format!("{}: {e}", dir.join(name).display()))
}

fn print_table(args: &Args, results: &[RunResult]) {
    println!();
    println!(
        "OPTIONS benchmark: {} requests/s for {} s, SIPp UAC on 127.0.0.1",
        args.rate, args.seconds
    );
    println!(
        "{:<12} {:>11} {:>8} {:>8} {:>8} {:>8} {:>8} {:>10} {:>11}",
        "target",
        "answered/s",
        "failed",
        "lost",
        "retrans",
        "p50 ms",
        "p99 ms",
        "CPU s",
        "CPU µs/req"
    );
    for r in results {
        println!(
            "{:<12} {:>11.0} {:>8} {:>8} {:>8} {:>8.1} {:>8.1} {:>10.2} {:>11.1}",
            r.target,
            r.answered_per_s,
            r.stat.failed,
            r.lost(),
            r.stat.retransmissions,
            r.p50_ms,
            r.p99_ms,
            r.cpu_s,
            r.cpu_us_per_request()
        );
    }
    if let [anchor, sb] = results {
        println!(
            "ratio switchboard/sipp: answered/s {:.2}, CPU per request {:.2}",
            ratio(sb.answered_per_s, anchor.answered_per_s),
            ratio(sb.cpu_us_per_request(), anchor.cpu_us_per_request())
        );
    }
    println!("(response times from SIPp's -trace_rtt, 1 ms resolution; CPU from /proc/PID/stat of the answering process)");
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

/// The results as JSON (hand-written: the values are numbers and fixed names).
fn to_json(args: &Args, results: &[RunResult]) -> String {
    let runs: Vec<String> = results
        .iter()
        .map(|r| {
            format!(
                "    {{\"target\": \"{}\", \"requested\": {}, \"successful\": {}, \"failed\": {}, \"lost\": {}, \
                 \"retransmissions\": {}, \"elapsed_s\": {:.3}, \"answered_per_s\": {:.1}, \"p50_ms\": {:.3}, \
                 \"p99_ms\": {:.3}, \"mean_ms\": {:.3}, \"cpu_s\": {:.3}, \"cpu_us_per_request\": {:.2}, \
                 \"sipp_exit\": {}}}",
                r.target,
                r.requested,
                r.stat.successful,
                r.stat.failed,
                r.lost(),
                r.stat.retransmissions,
                r.stat.elapsed_s,
                r.answered_per_s,
                r.p50_ms,
                r.p99_ms,
                r.mean_ms,
                r.cpu_s,
                r.cpu_us_per_request(),
                r.sipp_exit.map_or("null".to_string(), |c| c.to_string())
            )
        })
        .collect();
    let ratios = match results {
        [anchor, sb] => format!(
            "{{\"answered_per_s\": {:.3}, \"cpu_us_per_request\": {:.3}}}",
            ratio(sb.answered_per_s, anchor.answered_per_s),
            ratio(sb.cpu_us_per_request(), anchor.cpu_us_per_request())
        ),
        _ => "null".to_string(),
    };
    format!(
        "{{\n  \"benchmark\": \"options\",\n  \"rate\": {},\n  \"seconds\": {},\n  \"runs\": [\n{}\n  ],\n  \
         \"ratio_switchboard_over_sipp\": {}\n}}\n",
        args.rate,
        args.seconds,
        runs.join(",\n"),
        ratios
    )
}
