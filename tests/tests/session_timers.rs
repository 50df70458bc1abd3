//! Session timers (RFC 4028) on the caller's leg, with SIPp peers through the engine
//! (`[calls] session_expires = 4`, `min_se = 2`, short enough for a test): a caller that
//! refreshes keeps its call past the interval; one that stops refreshing gets a BYE (both legs,
//! CDR cause `session_timer_expired`); a caller without the extension is refreshed by the
//! engine with UPDATE; too short an interval gets 422 with Min-SE.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};
use switchboard_engine::sip::{parse_datagram, HeaderName, Message};
use switchboard_tests::{
    free_port, register, sipp, sipp_scenario, stop_wrapped, wait_cdrs, Engine,
};

const CONFIG: &str =
    "[calls]\ntrusted_sources = [\"127.0.0.1\"]\nsession_expires = 4\nmin_se = 2\n";

/// A free port `p` with `p + 1..p + 3` free too (SIPp's media ports).
fn media_port() -> u16 {
    loop {
        let p = free_port();
        if p < 65530 && (1..4).all(|i| UdpSocket::bind(("127.0.0.1", p + i)).is_ok()) {
            return p;
        }
    }
}

/// SIPp with `args` plus bounded waits and an error log `dir/name.log`.
fn peer(dir: &Path, name: &str, args: &[&str]) -> Child {
    let err = dir.join(format!("{name}.log"));
    let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    for a in ["-i", "127.0.0.1", "-mi", "127.0.0.1", "-timeout", "40s"] {
        all.push(a.into());
    }
    for a in ["-recv_timeout", "12000", "-trace_err", "-error_file"] {
        all.push(a.into());
    }
    all.push(err.display().to_string());
    all.push("-mp".into());
    all.push(media_port().to_string());
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    sipp(&refs, 60)
}

/// Waits up to `secs` for a SIPp process to exit; true when it exited 0. Stops it otherwise.
fn exited_ok(child: &mut Child, secs: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return status.success();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    stop_wrapped(child);
    false
}

/// One call from SIPp running `uac` to a registered SIPp callee running `uas` (a scenario
/// file, or `None` for SIPp's built-in UAS); both must complete. Returns the CDR's cause.
fn session_call(user: &str, uac: &str, uas: Option<&str>) -> String {
    let engine = Engine::start(CONFIG);
    let work = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let port_s = port.to_string();
    let uas_path = uas.map(|u| sipp_scenario(u).display().to_string());
    let mut callee_args = match &uas_path {
        Some(p) => vec!["-sf", p.as_str()],
        None => vec!["-sn", "uas"],
    };
    callee_args.extend(["-p", &port_s, "-m", "1"]);
    let mut callee = peer(work.path(), "callee", &callee_args);
    std::thread::sleep(Duration::from_millis(300));
    engine.add_user(user, "callee-secret");
    let contact = SocketAddr::from(([127, 0, 0, 1], port));
    assert_eq!(register(&engine, user, "callee-secret", contact, 3600), 200);
    let uac_path = sipp_scenario(uac).display().to_string();
    let target = engine.sip_addr().to_string();
    let caller_port = free_port().to_string();
    let mut caller = peer(
        work.path(),
        "caller",
        &[
            "-sf",
            &uac_path,
            &target,
            "-s",
            user,
            "-p",
            &caller_port,
            "-m",
            "1",
        ],
    );
    let caller_ok = exited_ok(&mut caller, 55);
    let callee_ok = exited_ok(&mut callee, 20);
    let read = |n: &str| std::fs::read_to_string(work.path().join(n)).unwrap_or_default();
    assert!(
        caller_ok && callee_ok,
        "SIPp caller {caller_ok}, callee {callee_ok}\n--- caller:\n{}\n--- callee:\n{}\n--- engine:\n{}",
        read("caller.log"),
        read("callee.log"),
        engine.log()
    );
    let cdrs = wait_cdrs(&engine, 1);
    assert_eq!(cdrs.len(), 1, "{cdrs:#?}");
    assert_eq!(cdrs[0]["sip_code"], 200, "{}", cdrs[0]);
    cdrs[0]["cause"].as_str().unwrap_or_default().to_string()
}

/// The caller refreshes with UPDATE every 1.5 s for 6 s (the interval is 4 s): each refresh
/// crosses to the callee and back, and the call lasts until the caller's BYE.
#[test]
fn a_refreshing_caller_keeps_its_call() {
    let cause = session_call(
        "refresher",
        "uac_session_refresh.xml",
        Some("uas_session_refresh.xml"),
    );
    assert_eq!(cause, "normal_clearing");
}

/// The caller is the refresher of a 3 s session and never refreshes: the engine sends BYE to
/// both legs (both SIPp scenarios expect it) and writes `session_timer_expired`.
#[test]
fn a_silent_refresher_gets_bye_on_both_legs() {
    let cause = session_call("silent", "uac_session_silent.xml", None);
    assert_eq!(cause, "session_timer_expired");
}

/// A caller without the extension (but allowing UPDATE) gets `refresher=uas`: the engine
/// refreshes it with UPDATE at half the interval, twice, until the caller hangs up.
#[test]
fn the_engine_refreshes_a_caller_without_the_extension() {
    let cause = session_call("refreshed", "uac_session_uas.xml", None);
    assert_eq!(cause, "normal_clearing");
}

/// `Session-Expires: 1` is below `min_se = 2`: 422 with `Min-SE: 2`.
#[test]
fn too_short_an_interval_gets_422_with_min_se() {
    let engine = Engine::start(CONFIG);
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let local = sock.local_addr().expect("addr");
    let target = engine.sip_addr();
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    let invite = format!(
        "INVITE sip:nobody@{target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKse422\r\n\
From: <sip:t@{local}>;tag=s1\r\nTo: <sip:nobody@{target}>\r\nCall-ID: se422@127.0.0.1\r\n\
CSeq: 1 INVITE\r\nContact: <sip:t@{local}>\r\nMax-Forwards: 70\r\nSupported: timer\r\n\
Session-Expires: 1\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = vec![0u8; 65536];
    let mut last_send = Instant::now() - Duration::from_secs(1);
    let answer = loop {
        assert!(Instant::now() < deadline, "no final answer");
        if last_send.elapsed() >= Duration::from_millis(500) {
            sock.send_to(invite.as_bytes(), target).expect("send");
            last_send = Instant::now();
        }
        let Ok((n, _)) = sock.recv_from(&mut buf) else {
            continue;
        };
        if let Ok(Message::Response(r)) = parse_datagram(&buf[..n]) {
            if r.status >= 200 {
                break r;
            }
        }
    };
    assert_eq!(answer.status, 422, "{answer:?}");
    assert_eq!(answer.headers.get(&HeaderName::MinSe), Some("2"));
}
