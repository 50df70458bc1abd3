//! PRACK / 100rel (RFC 3262) through the B2BUA, with SIPp on both sides and a raw caller:
//! the callee's reliable 183 is PRACKed by the engine, relayed reliably to a caller that
//! supports or requires 100rel (and PRACKed by it), and its early media (a tone streamed by
//! the callee before it answers) reaches the caller before the 200.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};
use switchboard_engine::sip::{parse_datagram, HeaderName, Message, SipHeaders};
use switchboard_media::codec::g711::ulaw_to_linear;
use switchboard_tests::phone::level_dbfs;
use switchboard_tests::{
    free_port, register, sipp, sipp_scenario, stop_wrapped, wait_cdrs, Engine,
};

const TRUSTED: &str = "[calls]\ntrusted_sources = [\"127.0.0.1\"]\n";

/// A free port `p` with `p + 1..p + 3` free too (SIPp's media and rtp_stream ports).
fn media_port() -> u16 {
    loop {
        let p = free_port();
        if p < 65530 && (1..4).all(|i| UdpSocket::bind(("127.0.0.1", p + i)).is_ok()) {
            return p;
        }
    }
}

/// A SIPp scenario of this crate with `@KEY@` placeholders filled in, written to `dir`.
fn scenario(dir: &Path, name: &str, fill: &[(&str, String)]) -> PathBuf {
    let mut text = std::fs::read_to_string(sipp_scenario(name)).expect("read scenario");
    for (key, value) in fill {
        text = text.replace(key, value);
    }
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write scenario");
    path
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

/// A 440 Hz tone, 8 kHz µ-law WAV (sox), for SIPp's `rtp_stream`.
fn tone(dir: &Path) -> PathBuf {
    let path = dir.join("tone-ulaw.wav");
    let ok = Command::new("sox")
        .args(["-n", "-r", "8000", "-c", "1", "-e", "mu-law", "-b", "8"])
        .arg(&path)
        .args(["synth", "3", "sine", "440", "gain", "-6"])
        .status()
        .expect("run sox (make test installs it)")
        .success();
    assert!(ok, "sox made the tone");
    path
}

/// The SIPp callee of `uas_prack.xml` on a free port, registered as `user`; streams `early`
/// of tone before it answers.
fn prack_callee(engine: &Engine, dir: &Path, user: &str, early: Duration, calls: u32) -> Child {
    let port = free_port();
    let xml = scenario(
        dir,
        "uas_prack.xml",
        &[
            ("@WAV@", tone(dir).display().to_string()),
            ("@EARLY_MS@", early.as_millis().to_string()),
        ],
    );
    let err = dir.join("uas_errors.log");
    let child = sipp(
        &[
            "-sf",
            &xml.display().to_string(),
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-mi",
            "127.0.0.1",
            "-mp",
            &media_port().to_string(),
            "-m",
            &calls.to_string(),
            "-timeout",
            "40s",
            "-recv_timeout",
            "10000",
            "-trace_err",
            "-error_file",
            &err.display().to_string(),
        ],
        60,
    );
    std::thread::sleep(Duration::from_millis(300));
    engine.add_user(user, "callee-secret");
    let contact = SocketAddr::from(([127, 0, 0, 1], port));
    assert_eq!(
        register(engine, user, "callee-secret", contact, 3600),
        200,
        "register {user}"
    );
    child
}

/// SIPp caller (`uac_prack.xml`, with `extra` as one more INVITE header) → engine → SIPp
/// callee sending a reliable 183: both scenarios complete, PRACKs seen on both sides.
fn sipp_through_engine(user: &str, extra: &str) {
    let engine = Engine::start(TRUSTED);
    let work = tempfile::tempdir().expect("temp dir");
    let mut callee = prack_callee(&engine, work.path(), user, Duration::from_millis(300), 2);
    let uac = scenario(
        work.path(),
        "uac_prack.xml",
        &[("@EXTRA@", extra.to_string())],
    );
    let err = work.path().join("uac_errors.log");
    let mut caller = sipp(
        &[
            "-sf",
            &uac.display().to_string(),
            &engine.sip_addr().to_string(),
            "-s",
            user,
            "-i",
            "127.0.0.1",
            "-p",
            &free_port().to_string(),
            "-mi",
            "127.0.0.1",
            "-mp",
            &media_port().to_string(),
            "-m",
            "2",
            "-r",
            "2",
            "-timeout",
            "40s",
            "-recv_timeout",
            "10000",
            "-trace_err",
            "-error_file",
            &err.display().to_string(),
        ],
        60,
    );
    let caller_ok = exited_ok(&mut caller, 55);
    let callee_ok = exited_ok(&mut callee, 20);
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    assert!(
        caller_ok && callee_ok,
        "SIPp caller {caller_ok}, callee {callee_ok}\n--- caller errors:\n{}\n--- callee errors:\n{}\n--- engine log:\n{}",
        read(&err),
        read(&work.path().join("uas_errors.log")),
        engine.log()
    );
    let cdrs = wait_cdrs(&engine, 2);
    assert_eq!(cdrs.len(), 2, "{cdrs:#?}");
    for c in &cdrs {
        assert_eq!(c["cause"], "normal_clearing", "{c}");
        assert_eq!(c["sip_code"], 200, "{c}");
    }
}

/// A caller that supports 100rel gets the callee's 183 reliably and PRACKs it; the engine
/// PRACKs the callee's.
#[test]
fn reliable_183_is_pracked_on_both_legs() {
    sipp_through_engine("prack", "X-Test: supported");
}

/// An INVITE with `Require: 100rel` is accepted (not 420) and gets its 183 reliably.
#[test]
fn invite_requiring_100rel_is_accepted() {
    sipp_through_engine("prackreq", "Require: 100rel");
}

/// What the raw caller saw.
#[derive(Default, Debug)]
struct Seen {
    reliable_183: bool,
    prack_ok: bool,
    early_packets: usize,
    early_pcm: Vec<i16>,
    final_status: Option<u16>,
    bye_ok: bool,
}

/// A caller built from raw UDP: INVITE with `Supported: 100rel`, PRACK to the reliable 183,
/// RTP counted until the 200, then ACK and BYE.
fn raw_caller(engine: SocketAddr, user: &str) -> Seen {
    let sip = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sip.set_read_timeout(Some(Duration::from_millis(5)))
        .expect("timeout");
    let rtp = UdpSocket::bind("127.0.0.1:0").expect("bind rtp");
    rtp.set_read_timeout(Some(Duration::from_millis(5)))
        .expect("timeout");
    let local = sip.local_addr().expect("addr");
    let rtp_port = rtp.local_addr().expect("addr").port();
    let call_id = format!("early-{}@127.0.0.1", local.port());
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio {rtp_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    );
    let from = format!("<sip:early@{local}>;tag=ec1");
    let invite = format!(
        "INVITE sip:{user}@{engine} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKearlyinv\r\n\
From: {from}\r\nTo: <sip:{user}@{engine}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n\
Contact: <sip:early@{local}>\r\nMax-Forwards: 70\r\nSupported: 100rel\r\n\
Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    let in_dialog = |method: &str, cseq: u32, to: &str, extra: &str| {
        format!(
            "{method} sip:{user}@{engine} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKe{method}{cseq}\r\n\
From: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n{extra}\
Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let mut seen = Seen::default();
    let mut sent_invite = Instant::now() - Duration::from_secs(1);
    let mut got_response = false;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = vec![0u8; 65536];
    while Instant::now() < deadline && !seen.bye_ok {
        if !got_response && sent_invite.elapsed() >= Duration::from_millis(500) {
            sip.send_to(invite.as_bytes(), engine).expect("send");
            sent_invite = Instant::now();
        }
        if seen.final_status.is_none() {
            if let Ok((n, _)) = rtp.recv_from(&mut buf) {
                if n > 12 {
                    seen.early_packets += 1;
                    seen.early_pcm
                        .extend(buf[12..n].iter().map(|&b| ulaw_to_linear(b)));
                }
            }
        }
        let Ok((n, _)) = sip.recv_from(&mut buf) else {
            continue;
        };
        let Ok(Message::Response(r)) = parse_datagram(&buf[..n]) else {
            continue;
        };
        got_response = true;
        let method = r
            .cseq()
            .map(|c| c.1.as_str().to_string())
            .unwrap_or_default();
        match (method.as_str(), r.status) {
            ("INVITE", 183) => {
                let rseq = r.headers.get(&HeaderName::RSeq).map(str::to_string);
                let require = r.headers.get(&HeaderName::Require).unwrap_or_default();
                if let Some(rseq) = rseq.filter(|_| require.contains("100rel")) {
                    seen.reliable_183 = !r.body.is_empty();
                    let to = r
                        .headers
                        .get(&HeaderName::To)
                        .unwrap_or_default()
                        .to_string();
                    let prack = in_dialog("PRACK", 2, &to, &format!("RAck: {rseq} 1 INVITE\r\n"));
                    sip.send_to(prack.as_bytes(), engine).expect("send");
                }
            }
            ("PRACK", 200) => seen.prack_ok = true,
            ("INVITE", s) if s >= 200 => {
                if seen.final_status.is_none() {
                    seen.final_status = Some(s);
                }
                let to = r
                    .headers
                    .get(&HeaderName::To)
                    .unwrap_or_default()
                    .to_string();
                sip.send_to(in_dialog("ACK", 1, &to, "").as_bytes(), engine)
                    .expect("send");
                if s == 200 {
                    sip.send_to(in_dialog("BYE", 3, &to, "").as_bytes(), engine)
                        .expect("send");
                } else {
                    break;
                }
            }
            ("BYE", 200) => seen.bye_ok = true,
            _ => {}
        }
    }
    seen
}

/// Early media: the callee streams a tone after its reliable 183 and answers 2 s later; the
/// caller (which PRACKs the relayed 183) hears the tone before the 200 arrives.
#[test]
fn early_media_tone_is_heard_before_answer() {
    let engine = Engine::start(TRUSTED);
    let work = tempfile::tempdir().expect("temp dir");
    let mut callee = prack_callee(&engine, work.path(), "early", Duration::from_secs(2), 1);
    let seen = raw_caller(engine.sip_addr(), "early");
    let callee_ok = exited_ok(&mut callee, 20);
    println!(
        "reliable 183 {}, PRACK answered {}, {} RTP packets before the 200, level {:.1} dBFS",
        seen.reliable_183,
        seen.prack_ok,
        seen.early_packets,
        level_dbfs(&seen.early_pcm)
    );
    assert!(
        seen.reliable_183,
        "no reliable 183 with SDP: {seen:?}\n{}",
        engine.log()
    );
    assert!(seen.prack_ok, "PRACK not answered 200\n{}", engine.log());
    assert_eq!(seen.final_status, Some(200), "{}", engine.log());
    assert!(seen.bye_ok, "BYE not answered");
    // 2 s of 20 ms packets is 100; a loaded box may start the stream late.
    assert!(
        seen.early_packets >= 25,
        "only {} early RTP packets",
        seen.early_packets
    );
    assert!(
        level_dbfs(&seen.early_pcm) > -20.0,
        "the early media is not the tone: {:.1} dBFS",
        level_dbfs(&seen.early_pcm)
    );
    let err = std::fs::read_to_string(work.path().join("uas_errors.log")).unwrap_or_default();
    assert!(callee_ok, "SIPp callee failed:\n{err}\n{}", engine.log());
}
