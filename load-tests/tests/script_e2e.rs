//! Scenarios from a file, end to end over loopback UDP: the examples of `SCENARIOS.md` run by
//! `ScriptedUac` through `worker::run`, against the built-in `Uas` agent in another thread
//! (a call with hold/unhold re-INVITEs, DTMF and BYE) and against a real `switchboard serve`
//! (REGISTER with digest, users and passwords from a CSV injection file).

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard_load::agent::{Agent, MediaEvent};
use switchboard_load::script::{Injection, Script, ScriptConfig, ScriptedUac};
use switchboard_load::stats::Counters;
use switchboard_load::uas::{Uas, UasConfig};
use switchboard_load::worker::{self, Deadlines};

/// The `n`-th ```toml block of SCENARIOS.md.
fn example(n: usize) -> String {
    let doc = include_str!("../SCENARIOS.md");
    let block = doc
        .split("```toml\n")
        .nth(n + 1)
        .and_then(|rest| rest.split("```").next())
        .expect("SCENARIOS.md has this example");
    block.to_string()
}

fn deadlines(secs: u64) -> Deadlines {
    let now = Instant::now();
    Deadlines {
        drain_at: now + Duration::from_secs(secs),
        abandon_at: now + Duration::from_secs(secs + 5),
    }
}

fn bind() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").expect("bind a loopback port")
}

fn config(target: SocketAddr, calls: u64, media: SocketAddr) -> ScriptConfig {
    ScriptConfig {
        target,
        service: "service".into(),
        caller: "load".into(),
        rate: 20.0,
        ramp: Duration::ZERO,
        calls: Some(calls),
        max_concurrent: 10,
        media,
        with_media: true,
        worker: 0,
    }
}

/// Runs the scripted UAC to its end on its own thread; returns its counters and media events.
fn run_uac(
    script: Arc<Script>,
    cfg: ScriptConfig,
    socket: UdpSocket,
) -> (Arc<Counters>, Vec<MediaEvent>) {
    let counters = Arc::new(Counters::new());
    let local = socket.local_addr().expect("local address");
    let mut uac = ScriptedUac::new(
        script,
        cfg,
        local,
        Instant::now(),
        100,
        Arc::clone(&counters),
    );
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    let stop = AtomicBool::new(false);
    let h = std::thread::spawn(move || {
        let mut on_media = |ev| sink.lock().expect("media events").push(ev);
        worker::run(&socket, &mut uac, &stop, deadlines(30), &mut on_media)
    });
    h.join().expect("uac thread").expect("uac worker");
    let events = events.lock().expect("media events").clone();
    (counters, events)
}

#[test]
fn call_with_hold_unhold_dtmf_and_bye_against_the_uas() {
    const CALLS: u64 = 3;
    let uas_socket = bind();
    let uas_addr = uas_socket.local_addr().expect("uas address");
    let uas_media: SocketAddr = "127.0.0.1:40100".parse().expect("addr");
    let uas_counters = Arc::new(Counters::new());
    let mut uas = Uas::new(
        UasConfig {
            calls_left: Some(Arc::new(AtomicU64::new(CALLS))),
            reject_percent: 0,
            reject_code: 486,
            ring: Duration::from_millis(20),
            media: uas_media,
            with_media: false,
        },
        uas_addr,
        100,
        Arc::clone(&uas_counters),
    );
    let uas_thread = std::thread::spawn(move || {
        let stop = AtomicBool::new(false);
        worker::run(&uas_socket, &mut uas, &stop, deadlines(30), &mut |_| {})
    });

    let script = Arc::new(Script::from_toml(&example(0)).expect("example 1 is valid"));
    let our_media: SocketAddr = "127.0.0.1:40102".parse().expect("addr");
    let (c, events) = run_uac(
        Arc::clone(&script),
        config(uas_addr, CALLS, our_media),
        bind(),
    );
    uas_thread.join().expect("uas thread").expect("uas worker");

    assert_eq!(script.failure_reasons(), Default::default());
    assert_eq!(c.started.load(Relaxed), CALLS);
    assert_eq!(c.completed.load(Relaxed), CALLS, "{:?}", c.failures());
    assert_eq!(c.failed.load(Relaxed), 0);
    assert_eq!(c.answered.load(Relaxed), CALLS);
    assert_eq!(c.ringing.snapshot().count(), CALLS);
    assert_eq!(c.setup.snapshot().count(), CALLS);
    // The far side saw every call through to its BYE.
    assert_eq!(uas_counters.started.load(Relaxed), CALLS);
    assert_eq!(uas_counters.completed.load(Relaxed), CALLS);
    assert_eq!(uas_counters.failed.load(Relaxed), 0);
    // `play` streamed to the answer's address and stopped, once per call (the INFO digit was
    // answered by the uas, or the call would have failed).
    let starts: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            MediaEvent::Start {
                call,
                remote,
                payload_type,
            } => Some((*call, *remote, *payload_type)),
            _ => None,
        })
        .collect();
    assert_eq!(starts.len() as u64, CALLS, "{events:?}");
    assert!(starts.iter().all(|(_, r, pt)| *r == uas_media && *pt == 0));
    for (call, _, _) in &starts {
        assert!(
            events.contains(&MediaEvent::Stop { call: *call }),
            "{events:?}"
        );
        // The RFC 4733 digits went to the media pool, in the call's stream.
        assert!(
            events.contains(&MediaEvent::Dtmf {
                call: *call,
                digits: "1#".into()
            }),
            "{events:?}"
        );
    }
}

#[test]
fn a_rejected_call_fails_with_a_reason() {
    let uas_socket = bind();
    let uas_addr = uas_socket.local_addr().expect("uas address");
    let mut uas = Uas::new(
        UasConfig {
            calls_left: Some(Arc::new(AtomicU64::new(2))),
            reject_percent: 100,
            reject_code: 486,
            ring: Duration::ZERO,
            media: "127.0.0.1:40104".parse().expect("addr"),
            with_media: false,
        },
        uas_addr,
        100,
        Arc::new(Counters::new()),
    );
    let uas_thread = std::thread::spawn(move || {
        let stop = AtomicBool::new(false);
        worker::run(&uas_socket, &mut uas, &stop, deadlines(30), &mut |_| {})
    });
    let script = Arc::new(Script::from_toml(&example(0)).expect("example 1 is valid"));
    let (c, events) = run_uac(
        Arc::clone(&script),
        config(uas_addr, 2, "127.0.0.1:40106".parse().expect("addr")),
        bind(),
    );
    uas_thread.join().expect("uas thread").expect("uas worker");
    assert_eq!(c.completed.load(Relaxed), 0);
    assert_eq!(c.failed.load(Relaxed), 2);
    assert_eq!(c.failures().get("486"), Some(&2));
    let reasons = script.failure_reasons();
    assert_eq!(
        reasons.get("step 2: expected 100, 180 or 200 INVITE, got 486 (INVITE)"),
        Some(&2),
        "{reasons:?}"
    );
    assert!(events.is_empty());
}

/// A real engine: `switchboard serve` with users added by `switchboard user add`.
#[test]
fn register_with_digest_against_switchboard_serve() {
    let engine = switchboard_tests::Engine::start("");
    engine.add_user("alice", "alice-secret");
    engine.add_user("bob", "bob-secret");
    let target = engine.sip_addr();
    let media: SocketAddr = "127.0.0.1:9".parse().expect("addr");

    let good =
        Injection::parse("SEQUENTIAL\n# user;password\nalice;alice-secret\nbob;bob-secret\n")
            .expect("injection");
    let scenario = switchboard_load::script::parse::parse(&example(1)).expect("example 2");
    let script = Arc::new(Script::new(scenario.clone(), Some(good)).expect("fields exist"));
    let mut cfg = config(target, 4, media);
    cfg.with_media = false;
    let (c, _) = run_uac(Arc::clone(&script), cfg.clone(), bind());
    assert_eq!(script.failure_reasons(), Default::default());
    assert_eq!(c.completed.load(Relaxed), 4, "{:?}", c.failures());
    assert_eq!(c.answered.load(Relaxed), 4);
    assert_eq!(c.failed.load(Relaxed), 0);

    // The same scenario with wrong passwords: the engine refuses, so the digest above was
    // really checked.
    let bad = Injection::parse("SEQUENTIAL\nalice;guess\nbob;guess\n").expect("injection");
    let script = Arc::new(Script::new(scenario, Some(bad)).expect("fields exist"));
    cfg.calls = Some(2);
    let (c, _) = run_uac(Arc::clone(&script), cfg, bind());
    assert_eq!(c.completed.load(Relaxed), 0);
    assert_eq!(c.failed.load(Relaxed), 2);
    let reasons = script.failure_reasons();
    assert_eq!(reasons.values().sum::<u64>(), 2, "{reasons:?}");
    assert!(
        reasons
            .keys()
            .all(|k| k.starts_with("step 2: expected 200 REGISTER, got 40")),
        "{reasons:?}"
    );
}

/// `Agent` is object safe for the scripted UAC, as cli.rs boxes it.
#[test]
fn scripted_uac_is_an_agent() {
    let script = Arc::new(Script::from_toml("[[step]]\npause = 1\n").expect("valid"));
    let sock = bind();
    let local = sock.local_addr().expect("addr");
    let agent: Box<dyn Agent> = Box::new(ScriptedUac::new(
        script,
        config(local, 1, local),
        local,
        Instant::now(),
        500,
        Arc::new(Counters::new()),
    ));
    assert!(!agent.finished());
}
