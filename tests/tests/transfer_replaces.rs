//! Transfers the phones ask for, end to end over loopback with the test's own phones
//! ([`Phone`], real SIP and RTP): blind REFER from either party, attended transfer (REFER with
//! `Replaces` naming the consultation call), INVITE with `Replaces`, and the refusals (481 for an
//! unknown dialog, 403 when `allow_refer = false`, 400 for malformed headers).
//!
//! Users 2001 (B), 2003 (C) are phones registered with the engine; the caller A calls 2001
//! from a trusted source. After each transfer both remaining parties talk at once with
//! different tones and each must hear the other's (and hear RTP at all: counted in samples).

use std::time::{Duration, Instant};
use switchboard_tests::phone::{Phone, PhoneCodec};
use switchboard_tests::{register, wait_cdrs, Engine};

const TRUSTED: &str = "[calls]\ntrusted_sources = [\"127.0.0.1\"]\n";

/// An engine with users 2001..2004 registered at the given phones.
fn engine_with(extra: &str, phones: &[(&str, &Phone)]) -> Engine {
    let engine = Engine::start(extra);
    for (user, phone) in phones {
        engine.add_user(user, "pw");
        assert_eq!(
            register(&engine, user, "pw", phone.sip_addr(), 300),
            200,
            "register {user}"
        );
    }
    engine
}

/// A caller phone calling `user`, answered.
fn call(engine: &Engine, user: &str) -> Phone {
    let a = Phone::call(engine.sip_addr(), user, PhoneCodec::Pcmu);
    assert_eq!(
        a.status(),
        Some(200),
        "call to {user}; log:\n{}",
        engine.log()
    );
    a
}

fn sine(freq: f64, secs: f64) -> Vec<i16> {
    let n = (secs * 8000.0) as usize;
    (0..n)
        .map(|i| (8000.0 * (2.0 * std::f64::consts::PI * freq * i as f64 / 8000.0).sin()) as i16)
        .collect()
}

fn tone_power(pcm: &[i16], freq: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / 8000.0;
    let (mut re, mut im) = (0.0, 0.0);
    for (i, &s) in pcm.iter().enumerate() {
        let x = f64::from(s);
        re += x * (w * i as f64).cos();
        im += x * (w * i as f64).sin();
    }
    (re * re + im * im).sqrt() / pcm.len().max(1) as f64
}

fn hears(pcm: &[i16], freq: f64) -> bool {
    let p = tone_power(pcm, freq);
    p > 200.0 && p > 10.0 * tone_power(pcm, 2345.0)
}

/// Both phones talk for 3 s (x at 500 Hz, y at 1400 Hz); each must hear the other's tone in
/// the last 2 s, and at least 1.5 s of audio (75 RTP packets of 20 ms).
fn assert_talking(x: Phone, y: Phone) -> (Phone, Phone) {
    let mut y = y;
    let mut x = x;
    let t = std::thread::spawn(move || {
        let heard = y.talk_and_listen(&sine(1400.0, 1.0), Duration::from_secs(3));
        (heard, y)
    });
    let heard_x = x.talk_and_listen(&sine(500.0, 1.0), Duration::from_secs(3));
    let (heard_y, y) = t.join().expect("talker thread");
    assert!(heard_x.len() >= 12_000, "x heard {} samples", heard_x.len());
    assert!(heard_y.len() >= 12_000, "y heard {} samples", heard_y.len());
    let tail = |v: &[i16]| v[v.len().saturating_sub(16000)..].to_vec();
    assert!(hears(&tail(&heard_x), 1400.0), "x hears y");
    assert!(hears(&tail(&heard_y), 500.0), "y hears x");
    (x, y)
}

fn wait_until(what: &str, timeout: Duration, f: impl Fn() -> bool) {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for {what}");
}

/// Blind REFER by the callee: A talks to C afterwards; B gets 202, NOTIFY 100 then 200, and a
/// BYE; C's INVITE carries B's Referred-By.
#[test]
fn blind_refer_from_the_callee_bridges_caller_to_target() {
    let mut b = Phone::callee(PhoneCodec::Pcmu, true);
    let c = Phone::callee(PhoneCodec::Pcmu, true);
    let engine = engine_with(TRUSTED, &[("2001", &b), ("2003", &c)]);
    let a = call(&engine, "2001");
    assert!(b.wait_answered(Duration::from_secs(5)));

    let target = format!("<sip:2003@{}>", engine.sip_addr());
    let status = b.refer_incoming(&target, "Referred-By: <sip:2001@example.com>\r\n");
    assert_eq!(status, Some(202), "log:\n{}", engine.log());
    assert!(c.wait_answered(Duration::from_secs(10)), "target rung");
    assert!(
        b.wait_notify("SIP/2.0 200", Duration::from_secs(10)),
        "NOTIFY 200: {:?}",
        b.notifies()
    );
    assert!(
        b.notifies()[0].contains("SIP/2.0 100 Trying"),
        "{:?}",
        b.notifies()
    );
    assert!(b.wait_bye(Duration::from_secs(5)), "transferor released");
    assert_eq!(
        c.incoming_header("Referred-By"),
        vec!["<sip:2001@example.com>".to_string()]
    );
    assert!(!a.got_bye(), "the transferee stays");

    let (mut a, c) = assert_talking(a, c);
    a.hang_up();
    assert!(
        c.wait_bye(Duration::from_secs(5)),
        "target released at the end"
    );
    let cdrs = wait_cdrs(&engine, 1);
    assert_eq!(cdrs[0]["cause"], "normal_clearing", "{cdrs:?}");
}

/// Blind REFER by the caller: the callee (transferee) talks to C; A is released.
#[test]
fn blind_refer_from_the_caller_bridges_callee_to_target() {
    let b = Phone::callee(PhoneCodec::Pcmu, true);
    let c = Phone::callee(PhoneCodec::Pcmu, true);
    let engine = engine_with(TRUSTED, &[("2001", &b), ("2003", &c)]);
    let mut a = call(&engine, "2001");
    assert!(b.wait_answered(Duration::from_secs(5)));

    let status = a.refer(&format!("<sip:2003@{}>", engine.sip_addr()), "");
    assert_eq!(status, Some(202), "log:\n{}", engine.log());
    assert!(c.wait_answered(Duration::from_secs(10)), "target rung");
    assert!(a.wait_notify("SIP/2.0 200", Duration::from_secs(10)));
    assert!(a.wait_bye(Duration::from_secs(5)), "transferor released");
    assert!(!b.got_bye());
    let (mut b, c) = assert_talking(b, c);
    b.hang_up_incoming();
    assert!(
        c.wait_bye(Duration::from_secs(5)),
        "C released when B hangs up"
    );
    drop(b);
}

/// A blind REFER to nobody: NOTIFY carries the failure, the call goes on.
#[test]
fn blind_refer_to_an_unknown_user_fails_and_the_call_goes_on() {
    let mut b = Phone::callee(PhoneCodec::Pcmu, true);
    let engine = engine_with(TRUSTED, &[("2001", &b)]);
    let a = call(&engine, "2001");
    assert!(b.wait_answered(Duration::from_secs(5)));
    let status = b.refer_incoming(&format!("<sip:2999@{}>", engine.sip_addr()), "");
    assert_eq!(status, Some(202));
    assert!(
        b.wait_notify("SIP/2.0 404", Duration::from_secs(10)),
        "{:?}",
        b.notifies()
    );
    assert!(!b.got_bye() && !a.got_bye(), "the call goes on");
    assert_talking(a, b);
}

/// Attended transfer: A↔B (call 1), B calls C (call 2, B's second line), B REFERs A to C with
/// Replaces naming call 2: A and C talk; both of B's legs are hung up; call 2 ends
/// `transferred`.
#[test]
fn attended_transfer_with_replaces_joins_the_far_ends() {
    let mut b = Phone::callee(PhoneCodec::Pcmu, true);
    let c = Phone::callee(PhoneCodec::Pcmu, true);
    // More shards than cores: the two calls likely live on different shards.
    let cfg = format!("{TRUSTED}[runtime]\nshards = 4\n");
    let engine = engine_with(&cfg, &[("2001", &b), ("2003", &c)]);
    let a = call(&engine, "2001");
    assert!(b.wait_answered(Duration::from_secs(5)));
    // B's consultation call to C.
    let b2 = call(&engine, "2003");
    assert!(c.wait_answered(Duration::from_secs(5)));

    let (cid, ours, theirs) = b2.dialog_ids();
    let replaces = format!("{cid}%3Bto-tag%3D{theirs}%3Bfrom-tag%3D{ours}").replace('@', "%40");
    let target = format!("<sip:2003@{}?Replaces={replaces}>", engine.sip_addr());
    assert_eq!(
        b.refer_incoming(&target, ""),
        Some(202),
        "log:\n{}",
        engine.log()
    );
    assert!(
        b.wait_notify("SIP/2.0 200", Duration::from_secs(10)),
        "NOTIFY: {:?}\nlog:\n{}",
        b.notifies(),
        engine.log()
    );
    assert!(
        b.wait_bye(Duration::from_secs(5)),
        "transferor's first leg released"
    );
    assert!(
        b2.wait_bye(Duration::from_secs(5)),
        "transferor's consultation leg released"
    );
    wait_until("C re-INVITEd", Duration::from_secs(5), || c.reinvites() > 0);
    assert!(!a.got_bye() && !c.got_bye());

    let (mut a, c) = assert_talking(a, c);
    a.hang_up();
    assert!(c.wait_bye(Duration::from_secs(5)), "C released at the end");
    let cdrs = wait_cdrs(&engine, 2);
    let causes: Vec<&str> = cdrs.iter().filter_map(|c| c["cause"].as_str()).collect();
    assert!(causes.contains(&"transferred"), "{causes:?}");
    assert!(causes.contains(&"normal_clearing"), "{causes:?}");
}

/// INVITE with Replaces naming B's leg of call A↔B: the new caller N talks to A; B gets a BYE.
#[test]
fn invite_with_replaces_takes_over_a_leg() {
    let b = Phone::callee(PhoneCodec::Pcmu, true);
    let engine = engine_with(
        &format!("{TRUSTED}[runtime]\nshards = 4\n"),
        &[("2001", &b)],
    );
    let a = call(&engine, "2001");
    assert!(b.wait_answered(Duration::from_secs(5)));
    let (cid, ours, theirs) = b.incoming_dialog_ids().expect("B's dialog");
    let n = Phone::call_with_headers(
        engine.sip_addr(),
        "2001",
        PhoneCodec::Pcmu,
        &format!("Replaces: {cid};to-tag={theirs};from-tag={ours}\r\n"),
    );
    assert_eq!(n.status(), Some(200), "log:\n{}", engine.log());
    assert!(b.wait_bye(Duration::from_secs(5)), "replaced leg released");
    wait_until("A re-INVITEd", Duration::from_secs(5), || a.reinvites() > 0);
    let (a, mut n) = assert_talking(a, n);
    n.hang_up();
    assert!(
        a.wait_bye(Duration::from_secs(5)),
        "A released when N hangs up"
    );
    let cdrs = wait_cdrs(&engine, 2);
    let causes: Vec<&str> = cdrs.iter().filter_map(|c| c["cause"].as_str()).collect();
    assert!(causes.contains(&"replaced"), "{causes:?}");
}

/// INVITE with Replaces naming no dialog: 481; malformed Replaces: 400.
#[test]
fn invite_with_replaces_for_an_unknown_dialog_gets_481() {
    let b = Phone::callee(PhoneCodec::Pcmu, true);
    let engine = engine_with(TRUSTED, &[("2001", &b)]);
    let n = Phone::call_with_headers(
        engine.sip_addr(),
        "2001",
        PhoneCodec::Pcmu,
        "Replaces: nosuchcall@x;to-tag=1;from-tag=2\r\n",
    );
    assert_eq!(n.status(), Some(481), "log:\n{}", engine.log());
    assert!(!b.wait_answered(Duration::from_millis(300)), "B not rung");
    let bad = Phone::call_with_headers(
        engine.sip_addr(),
        "2001",
        PhoneCodec::Pcmu,
        "Replaces: x;to-tag=1\r\n",
    );
    assert_eq!(bad.status(), Some(400));
}

/// `allow_refer = false`: REFER gets 403 and the call goes on; malformed Refer-To: 400.
#[test]
fn refer_refused_by_policy_and_malformed_refer_to() {
    let mut b = Phone::callee(PhoneCodec::Pcmu, true);
    let c = Phone::callee(PhoneCodec::Pcmu, true);
    let cfg = "[calls]\ntrusted_sources = [\"127.0.0.1\"]\nallow_refer = false\n";
    let engine = engine_with(cfg, &[("2001", &b), ("2003", &c)]);
    let mut a = call(&engine, "2001");
    assert!(b.wait_answered(Duration::from_secs(5)));
    let target = format!("<sip:2003@{}>", engine.sip_addr());
    assert_eq!(b.refer_incoming(&target, ""), Some(403));
    assert_eq!(a.refer(&target, ""), Some(403));
    assert!(
        !c.wait_answered(Duration::from_millis(500)),
        "target not rung"
    );
    assert!(!a.got_bye() && !b.got_bye());
    drop(c);

    let b2 = Phone::callee(PhoneCodec::Pcmu, true);
    let engine2 = engine_with(TRUSTED, &[("2001", &b2)]);
    let mut a2 = call(&engine2, "2001");
    assert!(b2.wait_answered(Duration::from_secs(5)));
    assert_eq!(a2.refer("<http://example.com>", ""), Some(400));
    assert_eq!(
        a2.refer("<sip:2003@127.0.0.1?Replaces=x%3Bto-tag%3D1>", ""),
        Some(400)
    );
    assert!(!a2.got_bye(), "the call goes on");
}
