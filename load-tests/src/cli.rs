//! `switchboard load`: the command line, the safety checks, the workers and the live progress
//! line; the report is written by [`crate::report`].

use crate::agent::Agent;
use crate::media::{Audio, MediaMode, MediaPool, MediaTotals};
use crate::report::{Criteria, MediaSummary, Outcome, Report, Sample};
use crate::script::uac::{ScriptConfig, ScriptedUac};
use crate::script::uas::{ScriptUasConfig, ScriptedUas};
use crate::script::Script;
use crate::stats::{Counters, HistSnapshot};
use crate::uac::{Scenario, Uac, UacConfig};
use crate::uas::{Uas, UasConfig};
use crate::worker::{self, Deadlines};
use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Which side of the calls this run plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
pub enum Role {
    /// Places calls towards `--target`.
    Uac,
    /// Answers calls on `--listen`.
    Uas,
}

/// The built-in scenarios (`--scenario`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
pub enum ScenarioArg {
    /// INVITE, ACK, the call's duration, BYE.
    Call,
    /// A call put on hold and taken back by re-INVITEs (a=sendonly, a=sendrecv).
    Hold,
    /// A call with media that sends `--digits` as RFC 4733 events once answered.
    Dtmf,
    /// INVITE, CANCEL on the 180: success is the 487.
    Cancel,
    /// One OPTIONS ping per "call".
    Options,
    /// One REGISTER per "call" with digest auth (`--auth-user`, `--auth-password`).
    Register,
}

/// What each call does with audio.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
pub enum MediaArg {
    /// No RTP.
    None,
    /// Stream the audio (a test tone, or `--wav`) and measure what comes back.
    Play,
    /// Send back every packet received (uas); the uac measures the round trip.
    Echo,
}

/// `switchboard load`: floods a SIP target with calls (uac) or answers them (uas).
#[derive(Args, Clone, Debug, Serialize, Deserialize)]
pub struct LoadArgs {
    /// uac (place calls) or uas (answer calls).
    #[arg(value_enum)]
    pub role: Role,
    /// Where calls go (uac): host:port.
    #[arg(long)]
    pub target: Option<SocketAddr>,
    /// The local SIP address: the uas listens there (default 127.0.0.1:5080); the uac binds
    /// its workers to consecutive ports from it (default 127.0.0.1, any port).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// What each call does (uac).
    #[arg(long, value_enum, default_value = "call")]
    pub scenario: ScenarioArg,
    /// A TOML scenario (load-tests/SCENARIOS.md) run instead of the built-in one: by the uac
    /// for each call it places, by the uas for each call it receives.
    #[arg(long, value_name = "FILE")]
    pub scenario_file: Option<PathBuf>,
    /// CSV injection for `--scenario-file`, as SIPp's `-inf` (`[field0]`, `[field1]`, …).
    #[arg(long, value_name = "FILE", requires = "scenario_file")]
    pub inf: Option<PathBuf>,
    /// The digits of `--scenario dtmf`.
    #[arg(long, default_value = "123#")]
    pub digits: String,
    /// Digest user of `--scenario register` (also the AOR user).
    #[arg(long)]
    pub auth_user: Option<String>,
    /// Digest password of `--scenario register`.
    #[arg(long)]
    pub auth_password: Option<String>,
    /// Expires of `--scenario register`, in seconds.
    #[arg(long, default_value_t = 60)]
    pub expires: u32,
    /// The called user (Request-URI and To user part).
    #[arg(long, default_value = "service")]
    pub service: String,
    /// The caller's user part (From).
    #[arg(long, default_value = "load")]
    pub caller: String,
    /// Calls per second to reach (uac).
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// Linear ramp-up to `--rate`, in seconds.
    #[arg(long, default_value_t = 0.0)]
    pub ramp: f64,
    /// Most calls up at once (uac).
    #[arg(long, default_value_t = 10_000)]
    pub max_concurrent: u64,
    /// Total calls: the uac stops starting calls, the uas stops after answering this many.
    #[arg(long)]
    pub calls: Option<u64>,
    /// How long each call stays up after the answer, in milliseconds (uac).
    #[arg(long, default_value_t = 0)]
    pub duration_ms: u64,
    /// Stop starting calls after this many seconds; live calls are then hung up and get
    /// `--grace` seconds to end.
    #[arg(long)]
    pub time_limit: Option<f64>,
    /// Seconds live calls get to end after the time limit or the last call.
    #[arg(long, default_value_t = 10.0)]
    pub grace: f64,
    /// Worker threads (each its own SIP socket); default: every core.
    #[arg(long)]
    pub threads: Option<usize>,
    /// SIP timer T1 in milliseconds.
    #[arg(long, default_value_t = 500)]
    pub t1_ms: u64,
    /// Share of calls the uas rejects, in percent.
    #[arg(long, default_value_t = 0)]
    pub reject_percent: u8,
    /// The status of rejected calls.
    #[arg(long, default_value_t = 486)]
    pub reject_code: u16,
    /// Ring time of the uas between 180 and 200, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub ring_ms: u64,
    /// RTP for each call: none, play (G.711 at 20 ms) or echo (uas).
    #[arg(long, value_enum, default_value = "none")]
    pub media: MediaArg,
    /// The audio to play: a mono 8 kHz 16-bit WAV; default a 440/880 Hz test tone.
    #[arg(long)]
    pub wav: Option<PathBuf>,
    /// Offer PCMA (8) instead of PCMU (0).
    #[arg(long)]
    pub pcma: bool,
    /// Media threads (each one socket for all its calls); default: every core.
    #[arg(long)]
    pub media_threads: Option<usize>,
    /// Pass criterion: most RTP loss allowed, in percent of the packets expected.
    #[arg(long, default_value_t = 0.0)]
    pub max_loss: f64,
    /// Write the JSON report here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Write the per-second samples as CSV here.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Write an SVG chart of the run here (CPS, concurrent calls, setup percentiles, MOS).
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// Pass criterion: most failed calls allowed.
    #[arg(long, default_value_t = 0)]
    pub max_failed: u64,
    /// Allow a target or listen address outside 127.0.0.0/8 and ::1.
    #[arg(long)]
    pub allow_remote: bool,
    /// No live progress line.
    #[arg(long)]
    pub quiet: bool,
    /// Multi-process mode (uac): this process becomes the controller and runs the load in N
    /// worker processes of the same binary, each from its own loopback source address
    /// (127.0.0.2, .3, … for an IPv4 loopback target; with `--listen IP:PORT`, consecutive
    /// port ranges), with the rate, call count and concurrency split between them; their
    /// per-second statistics are merged into one progress line, report and exit code.
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Internal (worker processes): the controller's control socket.
    #[arg(long, hide = true, requires = "worker_index")]
    pub control: Option<SocketAddr>,
    /// Internal (worker processes): this worker's number.
    #[arg(long, hide = true, requires = "control")]
    pub worker_index: Option<usize>,
}

/// A checked plan for the run.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub(crate) args: LoadArgs,
    /// The scenario file, loaded and validated.
    script: Option<Arc<Script>>,
    threads: usize,
    /// Stop starting calls at this offset.
    drain_after: Duration,
    /// Give up on live calls at this offset.
    pub(crate) abandon_after: Duration,
}

/// Checks the arguments: a bound on count or time, loopback only unless allowed, sane values.
pub(crate) fn plan(args: LoadArgs) -> Result<Plan, String> {
    if args.calls.is_none() && args.time_limit.is_none() {
        return Err(
            "refusing to start without a bound: give --calls N or --time-limit SECS".into(),
        );
    }
    if !(args.rate.is_finite() && args.rate >= 0.0) {
        return Err("--rate must be a number ≥ 0".into());
    }
    if !(args.ramp.is_finite() && args.ramp >= 0.0) {
        return Err("--ramp must be a number ≥ 0".into());
    }
    if !(args.grace.is_finite() && args.grace >= 0.0) {
        return Err("--grace must be a number ≥ 0".into());
    }
    if !(args.max_loss.is_finite() && args.max_loss >= 0.0) {
        return Err("--max-loss must be a percentage ≥ 0".into());
    }
    if args.role == Role::Uac && args.media == MediaArg::Echo {
        return Err("--media echo is for the uas; the uac plays (--media play)".into());
    }
    if args.scenario == ScenarioArg::Dtmf && args.media != MediaArg::Play {
        return Err("--scenario dtmf sends its digits in the RTP stream: add --media play".into());
    }
    if args.scenario == ScenarioArg::Register
        && (args.auth_user.is_none() || args.auth_password.is_none())
    {
        return Err("--scenario register needs --auth-user and --auth-password".into());
    }
    let script = match &args.scenario_file {
        None => None,
        Some(_) if args.scenario != ScenarioArg::Call => {
            return Err("give either --scenario or --scenario-file, not both".into());
        }
        Some(path) => {
            let script = Script::load(path, args.inf.as_deref()).map_err(|e| e.to_string())?;
            if args.role == Role::Uas {
                crate::script::uac::answering_method(&script)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
            Some(Arc::new(script))
        }
    };
    if let Some(n) = args.workers {
        if args.role != Role::Uac {
            return Err("--workers is for the uac (the uas already answers on every core)".into());
        }
        if !(1..=64).contains(&n) {
            return Err("--workers must be 1-64".into());
        }
    }
    if args.reject_percent > 100 {
        return Err("--reject-percent must be 0–100".into());
    }
    if !(300..=699).contains(&args.reject_code) {
        return Err("--reject-code must be 300–699".into());
    }
    let loopback = |ip: IpAddr| ip.is_loopback();
    match args.role {
        Role::Uac => {
            let Some(t) = args.target else {
                return Err("the uac needs --target HOST:PORT".into());
            };
            if !loopback(t.ip()) && !args.allow_remote {
                return Err(format!(
                    "target {t} is not loopback: load tests target 127.0.0.0/8 or ::1 unless --allow-remote is given"
                ));
            }
            if args.rate <= 0.0 {
                return Err("the uac needs --rate > 0".into());
            }
        }
        Role::Uas => {}
    }
    if let Some(l) = args.listen {
        if !loopback(l.ip()) && !args.allow_remote {
            return Err(format!(
                "listen address {l} is not loopback (give --allow-remote to use it)"
            ));
        }
    }
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, 64);
    // Without a time limit, the count bounds the run: all calls started by calls/rate (+ the
    // ramp), each then lasts its duration; with a margin for slow answers.
    let time_limit = match args.time_limit {
        Some(t) if t.is_finite() && t > 0.0 => t,
        Some(_) => return Err("--time-limit must be a number > 0".into()),
        None => {
            let calls = args.calls.unwrap_or(0) as f64;
            match args.role {
                Role::Uac => calls / args.rate + args.ramp + 60.0,
                // A uas waits for its callers: an hour at most.
                Role::Uas => 3600.0,
            }
        }
    };
    let drain_after = Duration::from_secs_f64(time_limit);
    // Scripted calls still running when the run drains finish their script.
    let script_time = script
        .as_ref()
        .map_or(Duration::ZERO, |s| s.nominal_duration());
    let abandon_after = drain_after
        + Duration::from_secs_f64(args.grace)
        + Duration::from_millis(args.duration_ms)
        + script_time;
    Ok(Plan {
        args,
        script,
        threads,
        drain_after,
        abandon_after,
    })
}

/// The UAC scenario the arguments ask for (checked by `plan`).
fn scenario_of(args: &LoadArgs) -> Scenario {
    match args.scenario {
        ScenarioArg::Call => Scenario::Call,
        ScenarioArg::Hold => Scenario::Hold,
        ScenarioArg::Dtmf => Scenario::Dtmf(args.digits.clone()),
        ScenarioArg::Cancel => Scenario::Cancel,
        ScenarioArg::Options => Scenario::Options,
        ScenarioArg::Register => Scenario::Register {
            user: args.auth_user.clone().unwrap_or_default(),
            password: args.auth_password.clone().unwrap_or_default(),
            expires: args.expires,
        },
    }
}

/// Splits `total` over `n` parts as evenly as possible.
pub(crate) fn share(total: u64, n: usize, i: usize) -> u64 {
    let n = n as u64;
    total / n + u64::from((i as u64) < total % n)
}

/// Runs `switchboard load`. Exit code 0 when the run met its pass criteria, 1 when not, 2 on
/// bad arguments or setup errors.
pub fn run(args: LoadArgs) -> ExitCode {
    if let (Some(control), Some(index)) = (args.control, args.worker_index) {
        return crate::multi::worker_main(control, index);
    }
    let plan = match plan(args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("switchboard load: {e}");
            return ExitCode::from(2);
        }
    };
    let outcome = match plan.args.workers {
        Some(n) => crate::multi::control(&plan.args, n, plan.abandon_after),
        None => execute(&plan, &mut |_, _| {}),
    };
    let criteria = Criteria {
        max_failed: plan.args.max_failed,
        max_loss_percent: plan.args.max_loss,
    };
    match outcome.map(|o| Report::new(&plan.args, o, criteria)) {
        Ok(report) => {
            if let Err(e) = report.write(plan.args.report.as_deref(), plan.args.csv.as_deref()) {
                eprintln!("switchboard load: writing the report: {e}");
                return ExitCode::from(2);
            }
            if let Some(svg) = &plan.args.svg {
                if let Err(e) = crate::chart::write_svg(&report, svg) {
                    eprintln!("switchboard load: writing {}: {e}", svg.display());
                    return ExitCode::from(2);
                }
            }
            eprintln!("{}", report.summary());
            if report.passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("switchboard load: {e}");
            ExitCode::from(2)
        }
    }
}

/// Binds one socket per worker: the uas all on the listen address (SO_REUSEPORT, a caller's
/// source port picking the worker, see [`spread_by_source_port`]), the uac on consecutive
/// ports (from the given one, or from the first port the system picks), so that its workers'
/// flows land on different uas workers.
fn bind_sockets(plan: &Plan) -> Result<Vec<UdpSocket>, String> {
    let mut out: Vec<UdpSocket> = Vec::with_capacity(plan.threads);
    for i in 0..plan.threads {
        let first_port = out
            .first()
            .and_then(|s| s.local_addr().ok())
            .map(|a| a.port());
        let addr = match (plan.args.role, plan.args.listen) {
            (Role::Uas, l) => l.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 5080))),
            (Role::Uac, Some(l)) if l.port() != 0 => {
                SocketAddr::new(l.ip(), l.port().saturating_add(i as u16))
            }
            (Role::Uac, l) => {
                let ip = l.map_or(IpAddr::from([127, 0, 0, 1]), |l| l.ip());
                let port = first_port.map_or(0, |p| p.saturating_add(i as u16));
                SocketAddr::new(ip, port)
            }
        };
        let bind = |addr: SocketAddr| -> Result<UdpSocket, String> {
            let s = socket2::Socket::new(
                socket2::Domain::for_address(addr),
                socket2::Type::DGRAM,
                Some(socket2::Protocol::UDP),
            )
            .map_err(|e| format!("socket: {e}"))?;
            if plan.args.role == Role::Uas {
                s.set_reuse_port(true)
                    .map_err(|e| format!("SO_REUSEPORT: {e}"))?;
            }
            // Large buffers: bursts of thousands of messages must not be dropped by the kernel.
            crate::sockbuf::grow(socket2::SockRef::from(&s), crate::sockbuf::BUFFER_BYTES);
            s.bind(&addr.into())
                .map_err(|e| format!("bind {addr}: {e}"))?;
            Ok(s.into())
        };
        let socket = match bind(addr) {
            // The next port up was taken: any port will do.
            Err(_) if plan.args.role == Role::Uac && first_port.is_some() && addr.port() != 0 => {
                bind(SocketAddr::new(addr.ip(), 0))?
            }
            r => r?,
        };
        out.push(socket);
    }
    if plan.args.role == Role::Uas && out.len() > 1 {
        if let Some(first) = out.first() {
            spread_by_source_port(first, out.len());
        }
    }
    Ok(out)
}

/// Makes the SO_REUSEPORT group of `socket` (IPv4) pick the worker of a datagram by its
/// source port modulo `workers`, instead of the kernel's flow hash: with a few callers (a uac
/// has one socket per worker) the hash often put every flow on one worker, which then did all
/// the work (seen in 2 of 3 runs) while the others idled. Consecutive caller ports (as our uac
/// binds them) spread evenly. Best effort: on failure, or for IPv6 (the program reads an IPv4
/// header; an index out of range makes the kernel fall back to the hash), the hash stays.
fn spread_by_source_port(socket: &UdpSocket, workers: usize) {
    if !socket.local_addr().is_ok_and(|a| a.is_ipv4()) {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        /// `SO_ATTACH_REUSEPORT_CBPF` (asm-generic/socket.h).
        const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 51;
        /// `SKF_NET_OFF`: offsets from the network (IP) header.
        const SKF_NET_OFF: u32 = (-0x10_0000i32) as u32;
        let op = |code: u16, k: u32| libc::sock_filter {
            code,
            jt: 0,
            jf: 0,
            k,
        };
        let mut program = [
            // X = 4 * (ip[0] & 0xf): the IPv4 header length (BPF_LDX | BPF_B | BPF_MSH).
            op(0x01 | 0x10 | 0xa0, SKF_NET_OFF),
            // A = the UDP source port, the first half-word after it (BPF_LD | BPF_H | BPF_IND).
            op(0x48, SKF_NET_OFF),
            // A %= workers (BPF_ALU | BPF_MOD | BPF_K).
            op(0x04 | 0x90, workers as u32),
            // Return A (BPF_RET | BPF_A).
            op(0x06 | 0x10, 0),
        ];
        let prog = libc::sock_fprog {
            len: program.len() as u16,
            filter: program.as_mut_ptr(),
        };
        // SAFETY: `prog` points at `program`, which outlives the call (the kernel copies it);
        // the option length is that of `sock_fprog`.
        let _ = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_ATTACH_REUSEPORT_CBPF,
                std::ptr::addr_of!(prog).cast(),
                std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
            )
        };
    }
}

/// A media reading: streams ended and the sum of their MOS × 1000.
pub(crate) type MosSum = Option<(u64, u64)>;
/// Sees each per-second reading.
pub(crate) type OnSample<'a> = dyn FnMut(&Totals, MosSum) + 'a;
/// Takes a reading.
pub(crate) type Reading<'a> = dyn FnMut() -> (Totals, MosSum) + 'a;

/// Runs the load in this process. `on_sample` sees the totals and the media's (streams, MOS
/// sum) once per second (a worker process sends them to its controller).
pub(crate) fn execute(plan: &Plan, on_sample: &mut OnSample<'_>) -> Result<Outcome, String> {
    let args = &plan.args;
    let sockets = bind_sockets(plan)?;
    let counters: Vec<Arc<Counters>> = (0..plan.threads)
        .map(|_| Arc::new(Counters::new()))
        .collect();
    let media = match args.media {
        MediaArg::None => None,
        mode => {
            let audio = match &args.wav {
                Some(p) => Audio::from_wav(p)?,
                None => Audio::test_tone(),
            };
            let ip = sockets
                .first()
                .and_then(|s| s.local_addr().ok())
                .map_or(IpAddr::from([127, 0, 0, 1]), |a| a.ip());
            let mode = if mode == MediaArg::Echo {
                MediaMode::Echo
            } else {
                MediaMode::Play
            };
            let n = args.media_threads.unwrap_or(plan.threads).clamp(1, 64);
            Some(MediaPool::start(n, ip, mode, audio)?)
        }
    };
    let uas_quota = args
        .calls
        .map(|c| Arc::new(std::sync::atomic::AtomicU64::new(c)));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let deadlines = Deadlines {
        drain_at: start + plan.drain_after,
        abandon_at: start + plan.abandon_after,
    };
    let mut handles = Vec::new();
    for (i, socket) in sockets.into_iter().enumerate() {
        let local = socket
            .local_addr()
            .map_err(|e| format!("local address: {e}"))?;
        let counters = Arc::clone(&counters[i]);
        let stop = Arc::clone(&stop);
        let media_handle = media
            .as_ref()
            .and_then(|m| m.handles.get(i % m.handles.len().max(1)))
            .cloned();
        let media_addr = media_handle
            .as_ref()
            .map_or(SocketAddr::new(local.ip(), 9), |h| h.addr);
        let with_media = media_handle.is_some();
        let t1 = args.t1_ms;
        let mut agent: Box<dyn Agent> = match (args.role, &plan.script) {
            (Role::Uac, Some(script)) => Box::new(ScriptedUac::new(
                Arc::clone(script),
                ScriptConfig {
                    target: args.target.unwrap_or(local),
                    service: args.service.clone(),
                    caller: args.caller.clone(),
                    rate: args.rate / plan.threads as f64,
                    ramp: Duration::from_secs_f64(args.ramp),
                    calls: args.calls.map(|c| share(c, plan.threads, i)),
                    max_concurrent: share(args.max_concurrent, plan.threads, i).max(1),
                    media: media_addr,
                    with_media,
                    worker: i,
                },
                local,
                start,
                t1,
                counters,
            )),
            (Role::Uac, None) => Box::new(Uac::new(
                UacConfig {
                    target: args.target.unwrap_or(local),
                    service: args.service.clone(),
                    caller: args.caller.clone(),
                    scenario: scenario_of(args),
                    rate: args.rate / plan.threads as f64,
                    ramp: Duration::from_secs_f64(args.ramp),
                    calls: args.calls.map(|c| share(c, plan.threads, i)),
                    max_concurrent: share(args.max_concurrent, plan.threads, i).max(1),
                    duration: Duration::from_millis(args.duration_ms),
                    media: media_addr,
                    payload_type: if args.pcma { 8 } else { 0 },
                    with_media,
                    worker: i,
                },
                local,
                start,
                t1,
                counters,
            )),
            (Role::Uas, Some(script)) => Box::new(ScriptedUas::new(
                Arc::clone(script),
                ScriptUasConfig {
                    calls_left: uas_quota.clone(),
                    service: args.service.clone(),
                    caller: args.caller.clone(),
                    media: media_addr,
                    with_media,
                    worker: i,
                },
                local,
                t1,
                counters,
            )?),
            (Role::Uas, None) => Box::new(Uas::new(
                UasConfig {
                    calls_left: uas_quota.clone(),
                    reject_percent: args.reject_percent,
                    reject_code: args.reject_code,
                    ring: Duration::from_millis(args.ring_ms),
                    media: media_addr,
                    with_media,
                },
                local,
                t1,
                counters,
            )),
        };
        let h = std::thread::Builder::new()
            .name(format!("load-{i}"))
            .spawn(move || {
                let mut on_media = |ev| {
                    if let Some(h) = &media_handle {
                        h.send(i, ev);
                    }
                };
                worker::run(&socket, agent.as_mut(), &stop, deadlines, &mut on_media)
            })
            .map_err(|e| format!("spawning a worker: {e}"))?;
        handles.push(h);
    }
    let media_totals = media.as_ref().map(|m| Arc::clone(&m.totals));
    let samples = watch(
        &plan.args,
        start,
        &mut || {
            (
                Totals::of(&counters),
                media_totals.as_deref().map(MediaTotals::mos_sum),
            )
        },
        &mut || handles.iter().all(|h| h.is_finished()),
        on_sample,
    );
    for h in handles {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("worker: {e}")),
            Err(_) => return Err("a worker thread panicked".into()),
        }
    }
    stop.store(true, Relaxed);
    let media_totals = media.map(|m| {
        let t = Arc::clone(&m.totals);
        m.stop();
        t
    });
    let mut total = Totals::of(&counters);
    if let Some(script) = &plan.script {
        // The script's own reasons ("step 4: expected 200, got 486"), beside the counters'.
        for (reason, n) in script.failure_reasons() {
            total
                .counters
                .failures
                .entry(format!("script: {reason}"))
                .or_insert(n);
        }
    }
    Ok(Outcome {
        elapsed: start.elapsed(),
        totals: total.counters,
        setup: total.setup,
        ringing: total.ringing,
        samples,
        media: media_totals.as_deref().map(MediaSummary::of),
        workers: Vec::new(),
    })
}

/// The sum of every worker's counters.
#[derive(Clone, Debug, Default)]
pub(crate) struct Totals {
    /// The counters.
    pub(crate) counters: crate::report::Totals,
    /// INVITE → 2xx.
    pub(crate) setup: HistSnapshot,
    /// INVITE → 180.
    pub(crate) ringing: HistSnapshot,
}

impl Totals {
    fn of(counters: &[Arc<Counters>]) -> Totals {
        let mut t = crate::report::Totals::default();
        let mut setup = HistSnapshot::default();
        let mut ringing = HistSnapshot::default();
        for c in counters {
            t.started += c.started.load(Relaxed);
            t.answered += c.answered.load(Relaxed);
            t.completed += c.completed.load(Relaxed);
            t.rejected += c.rejected.load(Relaxed);
            t.failed += c.failed.load(Relaxed);
            t.retransmissions += c.retransmissions.load(Relaxed);
            t.bad_messages += c.bad_messages.load(Relaxed);
            t.add(&crate::report::Totals {
                first_answer_unix_us: c.first_answer_unix_us.load(Relaxed),
                last_answer_unix_us: c.last_answer_unix_us.load(Relaxed),
                ..Default::default()
            });
            for (k, v) in c.failures() {
                *t.failures.entry(k).or_default() += v;
            }
            setup.add(&c.setup.snapshot());
            ringing.add(&c.ringing.snapshot());
        }
        Totals {
            counters: t,
            setup,
            ringing,
        }
    }
}

/// Samples the totals (`read`: the counters, and the media's streams ended and MOS sum) once
/// per second until `finished`, drawing the progress line and handing each reading to
/// `on_sample`; returns the samples.
pub(crate) fn watch(
    args: &LoadArgs,
    start: Instant,
    read: &mut Reading<'_>,
    finished: &mut dyn FnMut() -> bool,
    on_sample: &mut OnSample<'_>,
) -> Vec<Sample> {
    let bar = if args.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        let b = match args.calls {
            Some(n) => indicatif::ProgressBar::new(n),
            None => indicatif::ProgressBar::new_spinner(),
        };
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        b
    };
    let mut samples = Vec::new();
    let (mut prev, mos) = read();
    let mut prev_mos = mos.unwrap_or((0, 0));
    let mut next = start + Duration::from_secs(1);
    loop {
        let finished = finished();
        let now = Instant::now();
        if now >= next || finished {
            let (cur, mos) = read();
            on_sample(&cur, mos);
            let mut s = Sample::between(now.duration_since(start), &prev, &cur);
            if let Some((streams, sum)) = mos {
                // The mean MOS of the streams that ended during this second.
                let ended = streams.saturating_sub(prev_mos.0);
                s.mos = (ended > 0)
                    .then(|| sum.saturating_sub(prev_mos.1) as f64 / 1000.0 / ended as f64);
                prev_mos = (streams, sum);
            }
            bar.set_position(cur.counters.started);
            bar.set_message(s.progress_line());
            samples.push(s);
            prev = cur;
            next += Duration::from_secs(1);
        }
        if finished {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bar.finish_and_clear();
    samples
}

impl Sample {
    fn between(at: Duration, prev: &Totals, cur: &Totals) -> Sample {
        let secs = 1.0;
        let setup = cur.setup.since(&prev.setup);
        let ms = |q: f64| setup.quantile(q).map(|us| us as f64 / 1000.0);
        Sample {
            t: at.as_secs_f64(),
            cps: (cur.counters.started - prev.counters.started) as f64 / secs,
            concurrent: cur.counters.live(),
            started: cur.counters.started,
            answered: cur.counters.answered,
            failed: cur.counters.failed,
            retransmissions: cur.counters.retransmissions,
            setup_p50_ms: ms(0.5),
            setup_p90_ms: ms(0.9),
            setup_p99_ms: ms(0.99),
            mos: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        load: LoadArgs,
    }

    fn parse(args: &[&str]) -> Result<Plan, String> {
        let mut all = vec!["load"];
        all.extend_from_slice(args);
        let cli = Cli::try_parse_from(all).map_err(|e| e.to_string())?;
        plan(cli.load)
    }

    #[test]
    fn a_run_needs_a_bound() {
        let e = parse(&["uac", "--target", "127.0.0.1:5060"]).expect_err("no bound");
        assert!(e.contains("bound"), "{e}");
        assert!(parse(&["uac", "--target", "127.0.0.1:5060", "--calls", "10"]).is_ok());
        assert!(parse(&["uas", "--time-limit", "5"]).is_ok());
    }

    #[test]
    fn only_loopback_unless_allowed() {
        let e = parse(&["uac", "--target", "192.0.2.1:5060", "--calls", "1"]).expect_err("remote");
        assert!(e.contains("loopback"), "{e}");
        assert!(parse(&[
            "uac",
            "--target",
            "192.0.2.1:5060",
            "--calls",
            "1",
            "--allow-remote"
        ])
        .is_ok());
        assert!(parse(&["uac", "--target", "[::1]:5060", "--calls", "1"]).is_ok());
        let e = parse(&["uas", "--listen", "0.0.0.0:5080", "--calls", "1"]).expect_err("any");
        assert!(e.contains("loopback"), "{e}");
    }

    #[test]
    fn bad_values_are_refused() {
        for bad in [
            vec!["uac", "--calls", "1"],
            vec![
                "uac",
                "--target",
                "127.0.0.1:5060",
                "--calls",
                "1",
                "--rate",
                "0",
            ],
            vec![
                "uac",
                "--target",
                "127.0.0.1:5060",
                "--calls",
                "1",
                "--rate",
                "NaN",
            ],
            vec!["uas", "--calls", "1", "--reject-percent", "101"],
            vec!["uas", "--calls", "1", "--reject-code", "200"],
            vec!["uas", "--time-limit", "-1"],
            vec![
                "uac",
                "--target",
                "127.0.0.1:5060",
                "--calls",
                "1",
                "--scenario",
                "dtmf",
            ],
            vec![
                "uac",
                "--target",
                "127.0.0.1:5060",
                "--calls",
                "1",
                "--scenario",
                "register",
            ],
            vec![
                "uac",
                "--target",
                "127.0.0.1:5060",
                "--calls",
                "1",
                "--media",
                "echo",
            ],
        ] {
            assert!(parse(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn shares_add_up() {
        for total in [0u64, 1, 7, 1000, 1001] {
            for n in 1..5 {
                let sum: u64 = (0..n).map(|i| share(total, n, i)).sum();
                assert_eq!(sum, total);
            }
        }
    }
}
