//! Supervision: a panic in one call actor, during 100 concurrent calls, tears that call down
//! cleanly (BYE to its answered legs, ports freed, CDR with cause `internal_error`) and the
//! other 99 calls complete normally.

use std::net::UdpSocket;
use std::time::{Duration, Instant};
use switchboard_tests::{http_get, sipp_uac, Engine, SippUas};

fn metric(engine: &Engine, name: &str) -> Option<f64> {
    let (_, body) = http_get(engine.http_addr(), "/metrics")?;
    body.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))?
        .rsplit(' ')
        .next()?
        .parse()
        .ok()
}

#[test]
fn a_panicking_call_is_torn_down_and_99_others_complete() {
    let engine =
        Engine::start("[calls]\ntrusted_sources = [\"127.0.0.1\"]\ndebug_panic_injection = true\n");
    engine.add_user("uas", "pw");
    let uas = SippUas::start(100);
    assert_eq!(uas.register(&engine, "uas", "pw"), 200);

    // 99 calls held 4 s each, all in flight together.
    let target = engine.sip_addr().to_string();
    let mut uac = sipp_uac(&engine, "uas", 99, 100, 100, 4000);
    std::thread::sleep(Duration::from_millis(1500));
    let active = metric(&engine, "calls_active").unwrap_or(0.0);

    // The 100th call: answered, then its actor panics.
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let local = s.local_addr().expect("addr");
    let sdp = format!("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n", local.port() + 2);
    let invite = format!(
        "INVITE sip:uas@{target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-panic;rport\r\nMax-Forwards: 70\r\n\
         From: <sip:panic@{local}>;tag=p1\r\nTo: <sip:uas@{target}>\r\nCall-ID: panic-call\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:panic@{local}>\r\nX-Switchboard-Panic: answer\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    s.send_to(invite.as_bytes(), engine.sip_addr())
        .expect("send");
    let (mut got_200, mut got_bye) = (false, false);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = vec![0u8; 65536];
    while Instant::now() < deadline && !(got_200 && got_bye) {
        let Ok((n, from)) = s.recv_from(&mut buf) else {
            continue;
        };
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        if text.starts_with("SIP/2.0 200") && text.contains("INVITE") {
            got_200 = true;
        }
        if text.starts_with("BYE ") {
            got_bye = true;
            // Answer the BYE (copy Via/From/To/Call-ID/CSeq).
            let head: Vec<&str> = text
                .split("\r\n")
                .filter(|l| {
                    ["Via:", "From:", "To:", "Call-ID:", "CSeq:"]
                        .iter()
                        .any(|h| l.starts_with(h))
                })
                .collect();
            let ok = format!(
                "SIP/2.0 200 OK\r\n{}\r\nContent-Length: 0\r\n\r\n",
                head.join("\r\n")
            );
            let _ = s.send_to(ok.as_bytes(), from);
        }
    }
    assert!(
        got_200,
        "the panicking call was answered before its actor died"
    );
    assert!(
        got_bye,
        "the caller of the dead call got a BYE from the teardown guard"
    );

    let status = uac.wait().expect("sipp uac");
    uas.wait();
    assert!(
        status.success(),
        "the 99 other calls must all complete ({status:?}); log:\n{}",
        engine.log()
    );
    assert!(
        active >= 50.0,
        "calls were concurrent ({active} active when the panic was injected)"
    );

    // The dead call's CDR carries the cause; every port is back.
    let cdrs = switchboard_tests::wait_cdrs(&engine, 100);
    let panic_cdr = cdrs
        .iter()
        .find(|c| c["call_id"] == "panic-call")
        .unwrap_or_else(|| panic!("no CDR for the panicking call: {cdrs:#?}"));
    assert_eq!(panic_cdr["cause"], "internal_error", "{panic_cdr}");
    assert_eq!(
        cdrs.iter()
            .filter(|c| c["cause"] == "normal_clearing")
            .count(),
        99,
        "{cdrs:#?}"
    );
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(metric(&engine, "calls_active"), Some(0.0));
    assert_eq!(metric(&engine, "rtp_port_pairs_in_use"), Some(0.0));
}
