//! DTLS-SRTP handshake cost: complete handshakes (ECDHE P-256, ECDSA certificates, use_srtp,
//! key export) between two in-memory [`DtlsSession`]s, client and server on one core.
//!
//! `cargo bench -p switchboard-load --bench dtls` prints the CPU time of one handshake (both
//! ends) and of generating the engine's certificate. A DTLS-SRTP call pays one handshake per
//! DTLS leg at its start, the engine doing one end of it (about half the printed figure).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use switchboard_media::dtls::{DtlsEvent, DtlsIdentity, DtlsRole, DtlsSession};

fn handshake(client_id: &DtlsIdentity, server_id: &DtlsIdentity) -> bool {
    let (ca, sa) = (
        SocketAddr::from(([127, 0, 0, 1], 4000)),
        SocketAddr::from(([127, 0, 0, 1], 5000)),
    );
    let now = Instant::now();
    let t = Duration::from_secs(10);
    let mut c = DtlsSession::new(
        client_id,
        DtlsRole::Client,
        server_id.fingerprint().clone(),
        ca,
        now,
        t,
    )
    .expect("client");
    let mut s = DtlsSession::new(
        server_id,
        DtlsRole::Server,
        client_id.fingerprint().clone(),
        sa,
        now,
        t,
    )
    .expect("server");
    c.connect(now, sa);
    let (mut c_ok, mut s_ok) = (false, false);
    for _ in 0..20 {
        while let Some((_, d)) = c.poll_transmit() {
            s.handle_input(now, ca, &d);
        }
        while let Some((_, d)) = s.poll_transmit() {
            c.handle_input(now, sa, &d);
        }
        c_ok |=
            std::iter::from_fn(|| c.poll_event()).any(|e| matches!(e, DtlsEvent::Connected { .. }));
        s_ok |=
            std::iter::from_fn(|| s.poll_event()).any(|e| matches!(e, DtlsEvent::Connected { .. }));
        if c_ok && s_ok {
            return true;
        }
    }
    false
}

fn main() {
    const N: u32 = 200;
    let t = Instant::now();
    for _ in 0..20 {
        std::hint::black_box(DtlsIdentity::generate().expect("certificate"));
    }
    let cert = t.elapsed().as_secs_f64() * 1000.0 / 20.0;
    let (a, b) = (
        DtlsIdentity::generate().expect("certificate"),
        DtlsIdentity::generate().expect("certificate"),
    );
    assert!(handshake(&a, &b), "warm-up handshake");
    let t = Instant::now();
    let mut ok = 0;
    for _ in 0..N {
        ok += u32::from(handshake(&a, &b));
    }
    let per = t.elapsed().as_secs_f64() * 1000.0 / f64::from(N);
    println!("certificate generation: {cert:.2} ms");
    println!("handshakes: {ok}/{N} completed, {per:.2} ms CPU per handshake (both ends)");
    println!(
        "≈ {:.0} handshakes/s per core (engine end only: ≈ {:.0})",
        1000.0 / per,
        2000.0 / per
    );
}
