//! SRTP cost per packet: protect and unprotect of a 20 ms G.711 packet (12-byte header,
//! 160-byte payload) for each suite, on one core.
//!
//! `cargo bench -p switchboard-load --bench srtp` prints ns per packet; a relayed call between
//! a secured and a plain leg pays one unprotect and one protect per 20 ms and direction pair.

use std::hint::black_box;
use std::time::Instant;

use switchboard_media::srtp::{SrtpContext, SrtpKey, SrtpSuite};

fn packet(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 0];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&0x5eed_u32.to_be_bytes());
    p.extend(std::iter::repeat_n(0xd5u8, 160));
    p
}

fn main() {
    const N: u32 = 200_000;
    println!("suite                      protect ns/pkt  unprotect ns/pkt");
    for suite in SrtpSuite::ALL {
        let key = SrtpKey::generate(suite).expect("key");
        let mut tx = SrtpContext::sender(&key).expect("sender");
        let mut rx = SrtpContext::receiver(&key).expect("receiver");
        let plain: Vec<Vec<u8>> = (0..1024u16).map(packet).collect();
        // Sequence numbers must keep moving for the replay window: wrap through 65536.
        let mut wire = Vec::with_capacity(N as usize);
        let t = Instant::now();
        for i in 0..N {
            let mut p = plain[(i % 1024) as usize].clone();
            p[2..4].copy_from_slice(&(i as u16).to_be_bytes());
            wire.push(black_box(tx.protect_rtp(&p).expect("protect")));
        }
        let protect = t.elapsed().as_nanos() as f64 / f64::from(N);
        let t = Instant::now();
        let mut ok = 0u32;
        for w in &wire {
            ok += u32::from(black_box(rx.unprotect_rtp(w)).is_ok());
        }
        let unprotect = t.elapsed().as_nanos() as f64 / f64::from(N);
        assert_eq!(ok, N, "{suite}: every packet authenticates");
        println!(
            "{:<26} {protect:>14.0}  {unprotect:>16.0}",
            suite.sdes_name()
        );
    }
}
