//! End-to-end behaviour of the SIP core over real loopback sockets: response routing (rport),
//! overload protection, TCP keep-alive and limits, configuration errors, metrics, and a real
//! SIPp peer.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};
use switchboard_tests::{bin_path, free_port, http_get, options, status_and_call_id, Engine};

fn udp_client() -> UdpSocket {
    let s =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).expect("socket");
    // Room for a burst of answers even when the reader thread is scheduled late.
    s.set_recv_buffer_size(4 << 20).expect("rcvbuf");
    s.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .expect("bind");
    let s: UdpSocket = s.into();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    s
}

/// Collects every response arriving on `s` until `quiet` passes without one.
fn drain(s: &UdpSocket, quiet: Duration) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    let mut last = Instant::now();
    while last.elapsed() < quiet {
        if let Ok(n) = s.recv(&mut buf) {
            out.push(buf[..n].to_vec());
            last = Instant::now();
        }
    }
    out
}

#[test]
fn rport_answers_go_to_the_source_port() {
    let engine = Engine::start("");
    let s = udp_client();
    let local = s.local_addr().expect("addr");
    // sent-by claims another host and port; rport asks for the source instead (RFC 3581).
    let msg = options(local, engine.sip_addr(), "rport-1")
        .replace(&format!("UDP {local}"), "UDP 192.0.2.7:5999");
    s.send_to(msg.as_bytes(), engine.sip_addr()).expect("send");
    let got = drain(&s, Duration::from_millis(500));
    let text = String::from_utf8_lossy(got.first().expect("an answer at the source port"));
    assert!(text.starts_with("SIP/2.0 200"), "{text}");
    assert!(text.contains(";received=127.0.0.1"), "{text}");
    assert!(text.contains(&format!(";rport={}", local.port())), "{text}");
    for h in ["Allow: ", "Accept: application/sdp", "Supported:"] {
        assert!(text.contains(h), "OPTIONS answer lacks {h}: {text}");
    }
}

fn invite(
    local: SocketAddr,
    target: SocketAddr,
    call_id: &str,
    to_tag: Option<&str>,
    method: &str,
) -> String {
    let tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    format!(
        "{method} sip:callee@{target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-{call_id}-{method};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:caller@{local}>;tag=c1\r\nTo: <sip:callee@{target}>{tag}\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 {method}\r\nContact: <sip:caller@{local}>\r\nContent-Length: 0\r\n\r\n"
    )
}

#[test]
fn overload_sheds_new_invites_with_503_but_serves_in_dialog_requests() {
    let engine = Engine::start("[limits]\nmax_invites_per_sec = 50\nretry_after_secs = 7\n");
    let s = udp_client();
    let local = s.local_addr().expect("addr");
    // Read while sending, so the test's own socket buffer never overflows.
    let reader = {
        let r = s.try_clone().expect("clone");
        std::thread::spawn(move || drain(&r, Duration::from_millis(800)))
    };
    for i in 0..400 {
        let inv = invite(
            local,
            engine.sip_addr(),
            &format!("flood-{i}"),
            None,
            "INVITE",
        );
        s.send_to(inv.as_bytes(), engine.sip_addr()).expect("send");
        if i % 4 == 0 {
            // An in-dialog request (To tag) must still be served: no dialog exists, so 481.
            let bye = invite(
                local,
                engine.sip_addr(),
                &format!("dialog-{i}"),
                Some("t1"),
                "BYE",
            );
            s.send_to(bye.as_bytes(), engine.sip_addr()).expect("send");
        }
    }
    let answers = reader.join().expect("reader");
    // Final status per Call-ID (Timer G retransmits the INVITE answers: count each call once).
    let mut finals = std::collections::HashMap::new();
    for a in &answers {
        let text = String::from_utf8_lossy(a);
        if let Some((status, cid)) = status_and_call_id(a) {
            if status == 503 {
                assert!(
                    text.contains("Retry-After: 7"),
                    "503 without Retry-After: {text}"
                );
            }
            if status >= 200 {
                finals.insert(cid, status);
            }
        }
    }
    let count = |prefix: &str, f: &dyn Fn(u16) -> bool| {
        finals
            .iter()
            .filter(|(c, s)| c.starts_with(prefix) && f(**s))
            .count()
    };
    let rejected = count("flood", &|s| s == 503);
    let served_invites = count("flood", &|s| s != 503);
    let byes_481 = count("dialog", &|s| s == 481);
    let byes_503 = count("dialog", &|s| s == 503);
    println!("400 INVITEs at once with a 50/s limit: {served_invites} served, {rejected} got 503; BYEs: {byes_481} answered 481, {byes_503} got 503");
    assert!(
        rejected >= 300,
        "expected most INVITEs shed, got {rejected} 503s"
    );
    assert!(
        served_invites >= 40,
        "the first ~50 INVITEs within the rate are served, got {served_invites}"
    );
    assert_eq!(byes_503, 0, "in-dialog requests must not be shed");
    assert_eq!(byes_481, 100, "every in-dialog BYE answered");
}

#[test]
fn tcp_keepalive_pong_idle_timeout_and_size_limit() {
    let engine = Engine::start("[limits]\ntcp_idle_timeout_secs = 2\nmax_message_bytes = 2048\n");
    // RFC 5626 §3.5.1: a double CRLF ping gets a single CRLF pong.
    let mut c = TcpStream::connect(engine.sip_addr()).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    c.write_all(b"\r\n\r\n").expect("ping");
    let mut pong = [0u8; 2];
    c.read_exact(&mut pong).expect("pong");
    assert_eq!(&pong, b"\r\n");
    // Then silence: the engine closes the idle connection after 2 s.
    let t = Instant::now();
    let mut buf = [0u8; 16];
    let n = c.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "expected EOF from the idle timeout");
    assert!(
        t.elapsed() >= Duration::from_millis(1500) && t.elapsed() < Duration::from_secs(5),
        "closed after {:?}",
        t.elapsed()
    );

    // A message above max_message_bytes: 513 and close.
    let mut c = TcpStream::connect(engine.sip_addr()).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let local = c.local_addr().expect("addr");
    let big = options(local, engine.sip_addr(), "big").replace(
        "Content-Length: 0",
        &format!("X-Pad: {}\r\nContent-Length: 0", "a".repeat(4000)),
    );
    c.write_all(big.as_bytes()).expect("write");
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("SIP/2.0 513"), "{text}");

    // Connection reuse: several requests on one connection, each answered on it.
    let mut c = TcpStream::connect(engine.sip_addr()).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let local = c.local_addr().expect("addr");
    for i in 0..3 {
        let m = options(local, engine.sip_addr(), &format!("reuse-{i}"))
            .replace("SIP/2.0/UDP", "SIP/2.0/TCP");
        c.write_all(m.as_bytes()).expect("write");
    }
    let mut got = String::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.matches("SIP/2.0 200").count() < 3 && Instant::now() < deadline {
        let mut b = [0u8; 4096];
        match c.read(&mut b) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.push_str(&String::from_utf8_lossy(&b[..n])),
        }
    }
    assert_eq!(got.matches("SIP/2.0 200").count(), 3, "{got}");
}

#[test]
fn invalid_config_exits_before_binding_and_names_file_and_key() {
    let dir = tempfile::tempdir().expect("tmp");
    let port = free_port();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        format!("[sip]\nudp_listen = [\"127.0.0.1:{port}\"]\n[media]\nrtp_port_min = 40001\n"),
    )
    .expect("write");
    let out = Command::new(bin_path())
        .arg("serve")
        .arg("--config")
        .arg(&cfg)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("media.rtp_port_min") && err.contains("even"),
        "{err}"
    );

    std::fs::write(&cfg, "[sip]\nudp_listen = [\"not-an-address\"]\n").expect("write");
    let out = Command::new(bin_path())
        .arg("serve")
        .arg("--config")
        .arg(&cfg)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sip.udp_listen[0]"), "{err}");

    std::fs::write(&cfg, "[limits]\nno_such_key = 1\n").expect("write");
    let out = Command::new(bin_path())
        .args(["check-config"])
        .arg(&cfg)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no_such_key"));
    // Nothing was bound: the port is still free.
    assert!(UdpSocket::bind(("127.0.0.1", port)).is_ok());
}

#[test]
fn health_and_metrics() {
    let engine = Engine::start("");
    let s = udp_client();
    let local = s.local_addr().expect("addr");
    s.send_to(
        options(local, engine.sip_addr(), "m-1").as_bytes(),
        engine.sip_addr(),
    )
    .expect("send");
    s.send_to(b"garbage\r\n\r\n", engine.sip_addr())
        .expect("send");
    drain(&s, Duration::from_millis(300));
    let (status, body) = http_get(engine.http_addr(), "/health").expect("health");
    assert_eq!(status, 200);
    assert!(body.contains("\"status\":\"ok\""), "{body}");
    let (status, body) = http_get(engine.http_addr(), "/metrics").expect("metrics");
    assert_eq!(status, 200);
    for needle in [
        "sip_messages_received_total{kind=\"request\",transport=\"UDP\"} 1",
        "sip_responses_sent_total{code=\"200\"} 1",
        "sip_parse_errors_total",
        "sip_transactions",
    ] {
        assert!(body.contains(needle), "metrics lack {needle}:\n{body}");
    }
}

/// A real peer: SIPp sends 2 000 OPTIONS at 500/s; every one must be answered.
#[test]
fn sipp_options_are_all_answered() {
    let engine = Engine::start("");
    let scenario =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../load-tests/sipp/options_uac.xml");
    let status = Command::new("timeout")
        .args(["-s", "USR1", "-k", "10", "60", "sipp", "-sf"])
        .arg(&scenario)
        .arg(engine.sip_addr().to_string())
        .args([
            "-i",
            "127.0.0.1",
            "-p",
            &free_port().to_string(),
            "-m",
            "2000",
            "-r",
            "500",
            "-timeout",
            "40s",
            "-nostdin",
        ])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("sipp");
    assert!(
        status.success(),
        "SIPp reported failed calls (exit {status:?})"
    );
}
