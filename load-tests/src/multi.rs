//! Multi-process mode (`switchboard load uac --workers N`): one controller and N worker
//! processes of the same binary, coordinated over a loopback TCP control socket carrying JSON
//! lines.
//!
//! * The controller binds `127.0.0.1:0`, spawns `<this binary> load <role> --control ADDR
//!   --worker-index I` N times (stdin a pipe, stdout discarded, stderr shared), and answers
//!   each worker's `hello` with its share of the run: the whole [`LoadArgs`] as JSON with the
//!   rate, call count, concurrency, threads and media threads split, its own source address
//!   (127.0.0.2 + I for an IPv4 loopback target, else a port range from `--listen`), no
//!   report files and no progress line.
//! * Each worker runs the load in-process as a single run would, sends its cumulative totals
//!   once per second (`tick`: counters, sparse setup/ringing histograms, MOS sum) and at the
//!   end its final totals with the script's failure labels and its media summary (`done`).
//! * The controller merges the latest tick of every worker into the same per-second samples
//!   and progress line as a single-process run, and the `done` records into the report's
//!   totals (and `workers`, each process's own totals); the verdict and exit code follow.
//!
//! Workers never outlive the controller: they ask the kernel for SIGKILL when their parent
//! dies (`PR_SET_PDEATHSIG`, set by the main thread, which spawned them and lives until the
//! end), exit when their stdin (the controller's pipe) reaches end of file or the control
//! socket breaks, and the controller kills the ones still running at its own hard deadline
//! (the run's abandon time plus [`MARGIN`]).

use crate::cli::{self, LoadArgs, Totals};
use crate::report::{MediaSummary, Outcome};
use crate::stats::HistSnapshot;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Time added to the run's own bound for the workers to start, report and exit.
pub const MARGIN: Duration = Duration::from_secs(30);
/// Longest control line accepted (a tick is a few kB).
const MAX_LINE: u64 = 1 << 20;

/// A worker's cumulative totals at one instant.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Tick {
    /// The counters.
    pub totals: crate::report::Totals,
    /// Setup-time histogram, non-zero buckets.
    pub setup: Vec<(u32, u64)>,
    /// Ringing-time histogram, non-zero buckets.
    pub ringing: Vec<(u32, u64)>,
    /// Media streams ended and the sum of their MOS × 1000, when the worker has media.
    pub mos: Option<(u64, u64)>,
}

impl Tick {
    fn of(t: &Totals, mos: Option<(u64, u64)>) -> Tick {
        Tick {
            totals: t.counters.clone(),
            setup: t.setup.to_sparse(),
            ringing: t.ringing.to_sparse(),
            mos,
        }
    }
}

/// What a worker tells its controller, one JSON object per line.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ControlMsg {
    /// The first line: which worker this is.
    Hello {
        /// Its `--worker-index`.
        index: usize,
    },
    /// Cumulative totals, once per second.
    Tick(Tick),
    /// The run is over: final totals (with the script's failure labels) and media.
    Done {
        /// Final totals.
        tick: Tick,
        /// RTP quality of this worker's streams.
        media: Option<MediaSummary>,
    },
    /// The worker could not run (bad share, bind error…).
    Error {
        /// Why.
        message: String,
    },
}

/// What the controller knows of one worker.
#[derive(Debug, Default)]
struct Seen {
    last: Option<Tick>,
    done: Option<(Tick, Option<MediaSummary>)>,
    error: Option<String>,
    /// The connection is closed (after `done`, or the worker died).
    ended: bool,
}

/// The share of the run worker `i` of `n` gets.
pub fn share_of(args: &LoadArgs, n: usize, i: usize) -> LoadArgs {
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let mut a = args.clone();
    a.workers = None;
    a.control = None;
    a.worker_index = None;
    a.report = None;
    a.csv = None;
    a.svg = None;
    a.quiet = true;
    a.rate = args.rate / n as f64;
    a.calls = args.calls.map(|c| cli::share(c, n, i));
    a.max_concurrent = cli::share(args.max_concurrent, n, i).max(1);
    let threads = (args.threads.unwrap_or(cores) / n).max(1);
    a.threads = Some(threads);
    a.media_threads = Some((args.media_threads.unwrap_or(cores) / n).max(1));
    a.listen = match args.listen {
        Some(l) if l.port() != 0 => Some(SocketAddr::new(
            l.ip(),
            l.port().saturating_add((i * threads) as u16),
        )),
        Some(l) => Some(l),
        None => match args.target {
            Some(SocketAddr::V4(t)) if t.ip().is_loopback() => Some(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + i as u8)),
                0,
            )),
            _ => None,
        },
    };
    a
}

/// Reads one line of at most [`MAX_LINE`] bytes; `None` at end of file or on error.
fn read_line(r: &mut impl BufRead) -> Option<String> {
    let mut s = String::new();
    match r.take(MAX_LINE).read_line(&mut s) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(s),
    }
}

/// Serves one worker's connection: its hello, its share, then its reports until it closes.
fn serve(stream: TcpStream, shares: &[String], seen: &Mutex<Vec<Seen>>) {
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::new(stream);
    let index = match read_line(&mut reader).map(|l| serde_json::from_str::<ControlMsg>(&l)) {
        Some(Ok(ControlMsg::Hello { index })) if index < shares.len() => index,
        _ => return,
    };
    let mark = |f: &dyn Fn(&mut Seen)| {
        if let Ok(mut s) = seen.lock() {
            if let Some(w) = s.get_mut(index) {
                f(w);
            }
        }
    };
    let share = shares.get(index).cloned().unwrap_or_default();
    if writer
        .write_all(share.as_bytes())
        .and_then(|()| writer.write_all(b"\n"))
        .is_err()
    {
        mark(&|w| w.ended = true);
        return;
    }
    while let Some(line) = read_line(&mut reader) {
        match serde_json::from_str::<ControlMsg>(&line) {
            Ok(ControlMsg::Tick(t)) => mark(&|w| w.last = Some(t.clone())),
            Ok(ControlMsg::Done { tick, media }) => {
                mark(&|w| {
                    w.last = Some(tick.clone());
                    w.done = Some((tick.clone(), media.clone()));
                });
            }
            Ok(ControlMsg::Error { message }) => mark(&|w| w.error = Some(message.clone())),
            Ok(ControlMsg::Hello { .. }) => {}
            Err(e) => {
                let m = format!("bad control line: {e}");
                mark(&|w| w.error = Some(m.clone()));
            }
        }
    }
    mark(&|w| w.ended = true);
}

/// Sums the workers' latest ticks.
fn merged(seen: &Mutex<Vec<Seen>>) -> (Totals, Option<(u64, u64)>) {
    let mut t = Totals::default();
    let mut mos: Option<(u64, u64)> = None;
    if let Ok(s) = seen.lock() {
        for w in s.iter() {
            if let Some(tick) = &w.last {
                t.counters.add(&tick.totals);
                t.setup.add(&HistSnapshot::from_sparse(&tick.setup));
                t.ringing.add(&HistSnapshot::from_sparse(&tick.ringing));
                if let Some((n, sum)) = tick.mos {
                    let m = mos.get_or_insert((0, 0));
                    *m = (m.0 + n, m.1 + sum);
                }
            }
        }
    }
    (t, mos)
}

/// Kills and reaps the children still running.
fn reap(children: &mut [Child], kill: bool) {
    for c in children.iter_mut() {
        if kill && matches!(c.try_wait(), Ok(None)) {
            let _ = c.kill();
        }
        let _ = c.wait();
    }
}

/// The controller: runs `args` in `n` worker processes and merges what they report. The run
/// is bounded by `abandon_after` (the single-process bound) plus [`MARGIN`].
pub fn control(args: &LoadArgs, n: usize, abandon_after: Duration) -> Result<Outcome, String> {
    let exe = std::env::current_exe().map_err(|e| format!("finding this binary: {e}"))?;
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("control socket: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("control socket: {e}"))?;
    let shares: Vec<String> = (0..n)
        .map(|i| serde_json::to_string(&share_of(args, n, i)))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("encoding a worker's share: {e}"))?;
    let shares = Arc::new(shares);
    let seen = Arc::new(Mutex::new(
        (0..n).map(|_| Seen::default()).collect::<Vec<_>>(),
    ));
    let role = match args.role {
        cli::Role::Uac => "uac",
        cli::Role::Uas => "uas",
    };
    let start = Instant::now();
    let hard_deadline = start + abandon_after + MARGIN;
    let mut children = Vec::with_capacity(n);
    for i in 0..n {
        let child = Command::new(&exe)
            .args(["load", role, "--control"])
            .arg(addr.to_string())
            .arg("--worker-index")
            .arg(i.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn();
        match child {
            Ok(c) => children.push(c),
            Err(e) => {
                reap(&mut children, true);
                return Err(format!("starting worker {i} ({}): {e}", exe.display()));
            }
        }
    }
    if !args.quiet {
        let pids: Vec<String> = children.iter().map(|c| c.id().to_string()).collect();
        eprintln!(
            "switchboard load: controller on {addr}, {n} workers (pids {})",
            pids.join(", ")
        );
    }
    // Accept the workers' connections; each is served on its own thread.
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("control socket: {e}"))?;
    let mut readers = Vec::with_capacity(n);
    while readers.len() < n {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = stream.set_nonblocking(false);
                let (shares, seen) = (Arc::clone(&shares), Arc::clone(&seen));
                readers.push(std::thread::spawn(move || serve(stream, &shares, &seen)));
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => {
                reap(&mut children, true);
                return Err(format!("control socket: {e}"));
            }
        }
        let exited = children
            .iter_mut()
            .position(|c| matches!(c.try_wait(), Ok(Some(_))));
        if let Some(i) = exited {
            reap(&mut children, true);
            return Err(format!("worker {i} exited before connecting"));
        }
        if Instant::now() >= start + MARGIN {
            reap(&mut children, true);
            return Err("the workers did not connect".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut past_deadline = false;
    let samples = cli::watch(
        args,
        start,
        &mut || merged(&seen),
        &mut || {
            if Instant::now() >= hard_deadline {
                past_deadline = true;
                return true;
            }
            // Done when every worker has ended, or at the first error.
            seen.lock().map_or(true, |s| {
                s.iter().any(|w| w.error.is_some()) || s.iter().all(|w| w.ended)
            })
        },
        &mut |_, _| {},
    );
    // Past the deadline or after an error, kill what is left; else the workers exit by
    // themselves after their `done`.
    let failed = seen
        .lock()
        .map_or(true, |s| s.iter().any(|w| w.error.is_some()));
    reap(&mut children, past_deadline || failed);
    for r in readers {
        let _ = r.join();
    }
    let seen = seen
        .lock()
        .map_err(|_| "a control thread panicked".to_string())?;
    if let Some((i, e)) = seen
        .iter()
        .enumerate()
        .find_map(|(i, w)| w.error.as_ref().map(|e| (i, e)))
    {
        return Err(format!("worker {i}: {e}"));
    }
    if past_deadline {
        return Err(format!(
            "the workers did not finish within the run's bound plus {} s: killed",
            MARGIN.as_secs()
        ));
    }
    let mut total = Totals::default();
    let mut media: Option<MediaSummary> = None;
    let mut workers = Vec::with_capacity(n);
    for (i, w) in seen.iter().enumerate() {
        let Some((tick, m)) = &w.done else {
            return Err(format!("worker {i} ended without its final report"));
        };
        total.counters.add(&tick.totals);
        total.setup.add(&HistSnapshot::from_sparse(&tick.setup));
        total.ringing.add(&HistSnapshot::from_sparse(&tick.ringing));
        if let Some(m) = m {
            match media.as_mut() {
                Some(all) => all.merge(m),
                None => media = Some(m.clone()),
            }
        }
        workers.push(tick.totals.clone());
    }
    Ok(Outcome {
        elapsed: start.elapsed(),
        totals: total.counters,
        setup: total.setup,
        ringing: total.ringing,
        samples,
        media,
        workers,
    })
}

/// Makes this process die with its parent: SIGKILL when the parent exits, and exit when
/// stdin (the controller's pipe) reaches end of file.
fn die_with_parent() {
    // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number and no pointers.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
    }
    let _ = std::thread::Builder::new()
        .name("stdin-watch".into())
        .spawn(|| {
            let mut buf = [0u8; 64];
            let mut stdin = std::io::stdin();
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => std::process::exit(3),
                    Ok(_) => {}
                }
            }
        });
}

/// Sends one report line; a broken control socket means the controller is gone: exit.
fn send(w: &mut TcpStream, r: &ControlMsg) {
    let ok = serde_json::to_string(r)
        .map_err(std::io::Error::other)
        .and_then(|line| {
            w.write_all(line.as_bytes())?;
            w.write_all(b"\n")
        })
        .is_ok();
    if !ok {
        std::process::exit(3);
    }
}

/// A worker process (`--control ADDR --worker-index I`): gets its share from the controller,
/// runs it, reports once per second and at the end. Exit code 0 when it could report, 2 when
/// it could not run, 3 when the controller went away.
pub fn worker_main(control: SocketAddr, index: usize) -> ExitCode {
    die_with_parent();
    if !control.ip().is_loopback() {
        eprintln!("switchboard load: worker {index}: the control socket must be on loopback");
        return ExitCode::from(2);
    }
    let mut stream = match TcpStream::connect_timeout(&control, Duration::from_secs(10)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("switchboard load: worker {index}: connecting to {control}: {e}");
            return ExitCode::from(2);
        }
    };
    send(&mut stream, &ControlMsg::Hello { index });
    let _ = stream.set_read_timeout(Some(MARGIN));
    let share = stream
        .try_clone()
        .ok()
        .and_then(|s| read_line(&mut BufReader::new(s)))
        .and_then(|l| serde_json::from_str::<LoadArgs>(&l).ok());
    let Some(args) = share else {
        eprintln!("switchboard load: worker {index}: no share from the controller");
        return ExitCode::from(2);
    };
    let fail = |stream: &mut TcpStream, message: String| {
        eprintln!("switchboard load: worker {index}: {message}");
        send(stream, &ControlMsg::Error { message });
        ExitCode::from(2)
    };
    let plan = match cli::plan(args) {
        Ok(p) if p.args.workers.is_none() && p.args.control.is_none() => p,
        Ok(_) => return fail(&mut stream, "a worker's share cannot have workers".into()),
        Err(e) => return fail(&mut stream, e),
    };
    let mut ticker = match stream.try_clone() {
        Ok(s) => s,
        Err(e) => return fail(&mut stream, format!("control socket: {e}")),
    };
    let outcome = cli::execute(&plan, &mut |t, mos| {
        send(&mut ticker, &ControlMsg::Tick(Tick::of(t, mos)));
    });
    match outcome {
        Ok(o) => {
            let tick = Tick {
                totals: o.totals,
                setup: o.setup.to_sparse(),
                ringing: o.ringing.to_sparse(),
                mos: None,
            };
            send(
                &mut stream,
                &ControlMsg::Done {
                    tick,
                    media: o.media,
                },
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(&mut stream, e),
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

    fn args(a: &[&str]) -> LoadArgs {
        let mut all = vec!["load"];
        all.extend_from_slice(a);
        Cli::try_parse_from(all).expect("valid arguments").load
    }

    #[test]
    fn shares_split_the_run_and_add_up() {
        let a = args(&[
            "uac",
            "--target",
            "127.0.0.1:5080",
            "--calls",
            "1001",
            "--rate",
            "300",
            "--max-concurrent",
            "10",
            "--workers",
            "3",
            "--threads",
            "6",
            "--report",
            "r.json",
        ]);
        let shares: Vec<LoadArgs> = (0..3).map(|i| share_of(&a, 3, i)).collect();
        assert_eq!(shares.iter().filter_map(|s| s.calls).sum::<u64>(), 1001);
        assert_eq!(shares.iter().map(|s| s.max_concurrent).sum::<u64>(), 10);
        let rate: f64 = shares.iter().map(|s| s.rate).sum();
        assert!((rate - 300.0).abs() < 1e-9);
        for (i, s) in shares.iter().enumerate() {
            assert_eq!(s.workers, None);
            assert_eq!(s.report, None);
            assert!(s.quiet);
            assert_eq!(s.threads, Some(2));
            let want: SocketAddr = format!("127.0.0.{}:0", 2 + i).parse().expect("addr");
            assert_eq!(s.listen, Some(want));
            // What goes over the control socket comes back the same.
            let back: LoadArgs =
                serde_json::from_str(&serde_json::to_string(s).expect("encodes")).expect("decodes");
            assert_eq!(back.listen, s.listen);
            assert_eq!(back.calls, s.calls);
        }
        // With --listen IP:PORT: consecutive port ranges, one port per thread.
        let b = args(&[
            "uac",
            "--target",
            "127.0.0.1:5080",
            "--calls",
            "4",
            "--listen",
            "127.0.0.1:7000",
            "--threads",
            "4",
        ]);
        let ports: Vec<u16> = (0..2)
            .filter_map(|i| share_of(&b, 2, i).listen.map(|l| l.port()))
            .collect();
        assert_eq!(ports, vec![7000, 7002]);
    }

    #[test]
    fn reports_round_trip_and_merge() {
        let mut totals = crate::report::Totals {
            started: 5,
            completed: 4,
            failed: 1,
            ..Default::default()
        };
        totals.failures.insert("486".into(), 1);
        let h = crate::stats::Histogram::default();
        h.record(1500);
        h.record(2500);
        let tick = Tick {
            totals,
            setup: h.snapshot().to_sparse(),
            ringing: Vec::new(),
            mos: Some((2, 8800)),
        };
        let line = serde_json::to_string(&ControlMsg::Tick(tick.clone())).expect("encodes");
        assert!(line.starts_with("{\"type\":\"tick\""), "{line}");
        let Ok(ControlMsg::Tick(back)) = serde_json::from_str::<ControlMsg>(&line) else {
            panic!("decodes: {line}")
        };
        assert_eq!(back.totals, tick.totals);
        assert_eq!(HistSnapshot::from_sparse(&back.setup), h.snapshot());
        let seen = Mutex::new(vec![
            Seen {
                last: Some(tick.clone()),
                ..Seen::default()
            },
            Seen {
                last: Some(back),
                ..Seen::default()
            },
            Seen::default(),
        ]);
        let (t, mos) = merged(&seen);
        assert_eq!(t.counters.started, 10);
        assert_eq!(t.counters.failures.get("486"), Some(&2));
        assert_eq!(t.setup.count(), 4);
        assert_eq!(mos, Some((4, 17600)));
    }
}
