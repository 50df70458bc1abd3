//! SRTP at the relay's edges over real loopback sockets: leg A secured (SDES-style keys), leg B
//! plain. What A sends encrypted arrives decrypted at B, what B sends plain arrives encrypted at
//! A (under the engine's own key, not A's), SRTCP both ways, and tampered, replayed or unkeyed
//! packets are dropped and counted, never forwarded.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use switchboard_media::srtp::{SrtpContext, SrtpKey, SrtpSuite};
use switchboard_media::{Leg, LegSrtp, PortAllocator, RelayConfig, RelaySession};
use tokio::net::UdpSocket;
use tokio::runtime::Handle;
use tokio::time::timeout;

const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

fn rtp(seq: u16, len: usize) -> Vec<u8> {
    let mut p = vec![0u8; 12 + len];
    p[0] = 0x80;
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p[8..12].copy_from_slice(&0xa11ce_u32.to_be_bytes());
    for (i, b) in p[12..].iter_mut().enumerate() {
        *b = (i as u8).wrapping_add(seq as u8);
    }
    p
}

fn rtcp_rr(ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 201, 0, 1];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p
}

async fn sock() -> UdpSocket {
    UdpSocket::bind((LOCAL, 0)).await.expect("bind")
}

async fn recv(s: &UdpSocket, wait: Duration) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 2048];
    let (n, _) = timeout(wait, s.recv_from(&mut buf)).await.ok()?.ok()?;
    buf.truncate(n);
    Some(buf)
}

async fn stats_settle(relay: &RelaySession, f: impl Fn(&RelaySession) -> bool) {
    for _ in 0..200 {
        if f(relay) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secured_leg_is_decrypted_and_reencrypted() {
    let ports = PortAllocator::new(LOCAL, 38100, 38115).expect("ports");
    let relay =
        RelaySession::start(&Handle::current(), &ports, RelayConfig::default()).expect("relay");
    let suite = SrtpSuite::AesCm128HmacSha1_80;
    let phone_key = SrtpKey::generate(suite).expect("key");
    let engine_key = SrtpKey::generate(suite).expect("key");
    let (a_rtp, a_rtcp, b_rtp, b_rtcp) = (sock().await, sock().await, sock().await, sock().await);
    relay.set_remote(Leg::A, Some(a_rtp.local_addr().expect("addr")));
    relay.set_remote_rtcp(Leg::A, Some(a_rtcp.local_addr().expect("addr")));
    relay.set_remote(Leg::B, Some(b_rtp.local_addr().expect("addr")));
    relay.set_remote_rtcp(Leg::B, Some(b_rtcp.local_addr().expect("addr")));
    relay
        .set_srtp(
            Leg::A,
            Some(LegSrtp {
                send: engine_key.clone(),
                recv: Some(phone_key.clone()),
            }),
        )
        .expect("keys");
    let relay_a = relay.local_addr(Leg::A);
    let relay_b = relay.local_addr(Leg::B);
    let rtcp_of = |a: SocketAddr| SocketAddr::new(a.ip(), a.port() + 1);
    let mut phone_tx = SrtpContext::sender(&phone_key).expect("ctx");
    let mut phone_rx = SrtpContext::receiver(&engine_key).expect("ctx");

    // A → B: encrypted in, plain out, byte for byte.
    for seq in 1..=10u16 {
        let plain = rtp(seq, 160);
        let wire = phone_tx.protect(&plain).expect("protect");
        a_rtp.send_to(&wire, relay_a).await.expect("send");
        let got = recv(&b_rtp, Duration::from_secs(10))
            .await
            .expect("B hears A");
        assert_eq!(got, plain, "B receives the plain packet");
    }
    // B → A: plain in, SRTP out under the engine's key (A's own key does not open it).
    for seq in 100..110u16 {
        let plain = rtp(seq, 160);
        b_rtp.send_to(&plain, relay_b).await.expect("send");
        let got = recv(&a_rtp, Duration::from_secs(10))
            .await
            .expect("A hears B");
        assert_eq!(got.len(), plain.len() + 10, "80-bit tag appended");
        assert_ne!(got[12..], plain[12..plain.len()], "payload encrypted");
        let mut wrong = SrtpContext::receiver(&phone_key).expect("ctx");
        assert!(wrong.unprotect_rtp(&got).is_err(), "not under A's key");
        assert_eq!(phone_rx.unprotect_rtp(&got).expect("engine key"), plain);
    }
    // SRTCP both ways.
    let rr = rtcp_rr(0xa11ce);
    a_rtcp
        .send_to(
            &phone_tx.protect_rtcp(&rr).expect("protect"),
            rtcp_of(relay_a),
        )
        .await
        .expect("send");
    assert_eq!(
        recv(&b_rtcp, Duration::from_secs(10)).await,
        Some(rr.clone())
    );
    let rr_b = rtcp_rr(0xb0b);
    b_rtcp.send_to(&rr_b, rtcp_of(relay_b)).await.expect("send");
    let got = recv(&a_rtcp, Duration::from_secs(10))
        .await
        .expect("SRTCP to A");
    assert_eq!(phone_rx.unprotect_rtcp(&got).expect("SRTCP"), rr_b);

    // Tampered and replayed packets: dropped, counted, not forwarded.
    let before = relay.stats().a_to_b;
    let good = phone_tx.protect(&rtp(11, 160)).expect("protect");
    let mut tampered = good.clone();
    tampered[30] ^= 0x40;
    a_rtp.send_to(&tampered, relay_a).await.expect("send");
    a_rtp.send_to(&good, relay_a).await.expect("send");
    a_rtp.send_to(&good, relay_a).await.expect("send"); // replay
    let got = recv(&b_rtp, Duration::from_secs(10))
        .await
        .expect("the good one");
    assert_eq!(got, rtp(11, 160));
    assert_eq!(
        recv(&b_rtp, Duration::from_millis(300)).await,
        None,
        "nothing else"
    );
    stats_settle(&relay, |r| {
        r.stats().a_to_b.srtp_rejected >= before.srtp_rejected + 2
    })
    .await;
    let after = relay.stats().a_to_b;
    assert_eq!(after.srtp_rejected - before.srtp_rejected, 2, "{after:?}");
    assert_eq!(after.packets - before.packets, 1, "{after:?}");

    // Plain RTP sent to a secured leg is rejected too.
    a_rtp.send_to(&rtp(12, 160), relay_a).await.expect("send");
    assert_eq!(recv(&b_rtp, Duration::from_millis(300)).await, None);

    // Back to plain: A's packets pass untouched again.
    relay.set_srtp(Leg::A, None).expect("unkey");
    a_rtp.send_to(&rtp(13, 160), relay_a).await.expect("send");
    assert_eq!(
        recv(&b_rtp, Duration::from_secs(10)).await,
        Some(rtp(13, 160))
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unkeyed_secured_leg_drops_until_its_key_arrives() {
    let ports = PortAllocator::new(LOCAL, 38120, 38135).expect("ports");
    let relay =
        RelaySession::start(&Handle::current(), &ports, RelayConfig::default()).expect("relay");
    let suite = SrtpSuite::AeadAes128Gcm;
    let callee_key = SrtpKey::generate(suite).expect("key");
    let engine_key = SrtpKey::generate(suite).expect("key");
    let (a, b) = (sock().await, sock().await);
    relay.set_remote(Leg::A, Some(a.local_addr().expect("addr")));
    relay.set_remote(Leg::B, Some(b.local_addr().expect("addr")));
    relay
        .set_srtp(
            Leg::B,
            Some(LegSrtp {
                send: engine_key.clone(),
                recv: None,
            }),
        )
        .expect("keys");
    let mut callee_tx = SrtpContext::sender(&callee_key).expect("ctx");
    let early = callee_tx.protect(&rtp(1, 160)).expect("protect");
    b.send_to(&early, relay.local_addr(Leg::B))
        .await
        .expect("send");
    assert_eq!(recv(&a, Duration::from_millis(300)).await, None);
    relay
        .set_srtp(
            Leg::B,
            Some(LegSrtp {
                send: engine_key,
                recv: Some(callee_key),
            }),
        )
        .expect("keys");
    let next = callee_tx.protect(&rtp(2, 160)).expect("protect");
    b.send_to(&next, relay.local_addr(Leg::B))
        .await
        .expect("send");
    assert_eq!(recv(&a, Duration::from_secs(10)).await, Some(rtp(2, 160)));
    assert_eq!(relay.stats().b_to_a.srtp_rejected, 1);
    relay.stop().await;
}
