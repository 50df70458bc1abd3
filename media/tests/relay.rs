//! The relay over real loopback UDP sockets: two "phones" and a relay session in between.
//! No timed assertions beyond generous upper bounds (the box is slow and shared).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard_media::{Leg, PortAllocator, PortError, RelayConfig, RelayError, RelaySession};
use tokio::net::UdpSocket;
use tokio::runtime::Handle;
use tokio::time::timeout;

const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
const GENEROUS: Duration = Duration::from_secs(20);

/// Each test gets its own port range so that tests can run in parallel.
fn allocator(base: u16, pairs: u16) -> PortAllocator {
    PortAllocator::new(LOCAL, base, base + 2 * pairs - 1).unwrap()
}

async fn phone() -> Arc<UdpSocket> {
    let s = std::net::UdpSocket::bind((LOCAL, 0)).unwrap();
    socket2::SockRef::from(&s)
        .set_recv_buffer_size(1 << 20)
        .unwrap();
    s.set_nonblocking(true).unwrap();
    Arc::new(UdpSocket::from_std(s).unwrap())
}

fn addr(s: &UdpSocket) -> SocketAddr {
    s.local_addr().unwrap()
}

/// An RTP packet: version 2, the payload type, sequence, timestamp, SSRC, and a payload whose
/// bytes depend on the sequence number so that corruption would show.
fn rtp(pt: u8, seq: u16, ssrc: u32, len: usize) -> Vec<u8> {
    let mut p = vec![0u8; 12 + len];
    p[0] = 0x80;
    p[1] = pt;
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    for (i, b) in p[12..].iter_mut().enumerate() {
        *b = (i as u8).wrapping_add(seq as u8);
    }
    p
}

async fn recv(s: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0u8; 2048];
    let (n, from) = timeout(GENEROUS, s.recv_from(&mut buf))
        .await
        .expect("a packet within the generous bound")
        .unwrap();
    buf.truncate(n);
    (buf, from)
}

/// Sends `count` packets from `from` to `to`, never more than `window` ahead of what the far end
/// has received (so no socket buffer can overflow however slow the box is).
async fn send_windowed(
    from: Arc<UdpSocket>,
    to: SocketAddr,
    packets: Vec<Vec<u8>>,
    received: Arc<AtomicU64>,
    window: u64,
) {
    for (i, p) in packets.iter().enumerate() {
        let deadline = Instant::now() + GENEROUS;
        while i as u64 >= received.load(SeqCst) + window {
            assert!(Instant::now() < deadline, "flow stalled at {i}");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        from.send_to(p, to).await.unwrap();
    }
}

/// Receives `expected` packets on `s`, checks each is byte-identical to what was sent, in order,
/// and that it came from `relay`.
async fn receive_all(
    s: Arc<UdpSocket>,
    relay: SocketAddr,
    expected: Vec<Vec<u8>>,
    received: Arc<AtomicU64>,
) {
    for want in expected {
        let (got, from) = recv(&s).await;
        assert_eq!(from, relay, "media comes from the relay's port of this leg");
        assert_eq!(got, want);
        received.fetch_add(1, SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_500_packets_each_way_exactly_with_matching_stats() {
    let ports = allocator(31100, 8);
    let relay = RelaySession::start(&Handle::current(), &ports, RelayConfig::default()).unwrap();
    let (a, b) = (phone().await, phone().await);
    relay.set_remote(Leg::A, Some(addr(&a)));
    relay.set_remote(Leg::B, Some(addr(&b)));
    let (ra, rb) = (relay.local_addr(Leg::A), relay.local_addr(Leg::B));
    assert_ne!(ra, rb);

    // A sends PCMU with RFC 4733 events mixed in; B sends Opus-like variable-size packets.
    let a_pkts: Vec<Vec<u8>> = (0..500u16)
        .map(|i| match i % 50 {
            10..=12 => rtp(101, 1000 + i, 0xaaaa, 4),
            _ => rtp(0, 1000 + i, 0xaaaa, 160),
        })
        .collect();
    let b_pkts: Vec<Vec<u8>> = (0..500u16)
        .map(|i| {
            rtp(
                111,
                65300u16.wrapping_add(i),
                0xbbbb,
                40 + usize::from(i % 80),
            )
        })
        .collect();
    let (got_b, got_a) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let tasks = [
        tokio::spawn(receive_all(b.clone(), rb, a_pkts.clone(), got_b.clone())),
        tokio::spawn(receive_all(a.clone(), ra, b_pkts.clone(), got_a.clone())),
        tokio::spawn(send_windowed(
            a.clone(),
            ra,
            a_pkts.clone(),
            got_b.clone(),
            32,
        )),
        tokio::spawn(send_windowed(
            b.clone(),
            rb,
            b_pkts.clone(),
            got_a.clone(),
            32,
        )),
    ];
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!((got_a.load(SeqCst), got_b.load(SeqCst)), (500, 500));

    let s = relay.stats();
    let bytes = |v: &[Vec<u8>]| v.iter().map(|p| p.len() as u64).sum::<u64>();
    assert_eq!(s.a_to_b.packets, 500);
    assert_eq!(s.a_to_b.forwarded, 500);
    assert_eq!(s.a_to_b.bytes, bytes(&a_pkts));
    assert_eq!(s.b_to_a.packets, 500);
    assert_eq!(s.b_to_a.forwarded, 500);
    assert_eq!(s.b_to_a.bytes, bytes(&b_pkts));
    for d in [s.a_to_b, s.b_to_a] {
        assert_eq!((d.lost, d.dropped, d.foreign, d.rtcp_packets), (0, 0, 0, 0));
        assert!(d.last_packet.is_some());
    }
    assert!(s.idle_for < GENEROUS);
    // A monitor reads the same from another thread.
    let m = relay.monitor();
    let from_thread = std::thread::spawn(move || m.stats().a_to_b.packets)
        .join()
        .unwrap();
    assert_eq!(from_thread, 500);
    relay.stop().await;
    assert_eq!(ports.available(), ports.capacity());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latches_to_the_real_source_and_relatches_after_n_packets() {
    let ports = allocator(31200, 8);
    let config = RelayConfig {
        relatch_after: 5,
        ..RelayConfig::default()
    };
    let relay = RelaySession::start(&Handle::current(), &ports, config).unwrap();
    // The SDP says A is at `decoy`, but A's packets come from `a` (a NAT in between).
    let (decoy, a, b) = (phone().await, phone().await, phone().await);
    relay.set_remote(Leg::A, Some(addr(&decoy)));
    relay.set_remote(Leg::B, Some(addr(&b)));
    let (ra, rb) = (relay.local_addr(Leg::A), relay.local_addr(Leg::B));

    a.send_to(&rtp(0, 1, 1, 160), ra).await.unwrap();
    assert_eq!(recv(&b).await.0, rtp(0, 1, 1, 160));
    assert_eq!(
        relay.remote(Leg::A),
        Some(addr(&a)),
        "latched on the first packet"
    );
    b.send_to(&rtp(0, 7, 2, 160), rb).await.unwrap();
    assert_eq!(
        recv(&a).await.0,
        rtp(0, 7, 2, 160),
        "B's media follows the latch"
    );

    // A stray source: dropped until it has sent 5 in a row, then re-latched.
    let a2 = phone().await;
    for seq in 2..7 {
        a2.send_to(&rtp(0, seq, 1, 160), ra).await.unwrap();
    }
    assert_eq!(
        recv(&b).await.0,
        rtp(0, 6, 1, 160),
        "only the 5th gets through"
    );
    assert_eq!(relay.remote(Leg::A), Some(addr(&a2)));
    b.send_to(&rtp(0, 8, 2, 160), rb).await.unwrap();
    assert_eq!(recv(&a2).await.0, rtp(0, 8, 2, 160));

    // reset_latch (unhold): the next packet latches immediately.
    relay.reset_latch(Leg::A);
    a.send_to(&rtp(0, 7, 1, 160), ra).await.unwrap();
    assert_eq!(recv(&b).await.0, rtp(0, 7, 1, 160));
    assert_eq!(relay.remote(Leg::A), Some(addr(&a)));

    let s = relay.stats();
    assert_eq!(s.a_to_b.foreign, 4);
    assert_eq!(s.a_to_b.packets, 3);
    // The decoy got nothing.
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 64];
    let nothing = socket2::SockRef::from(&*decoy).recv_from(&mut buf);
    assert_eq!(
        nothing.map(|r| r.0).map_err(|e| e.kind()),
        Err(std::io::ErrorKind::WouldBlock)
    );
    drop(relay);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_loss_from_sequence_gaps_and_relays_rtcp() {
    let ports = allocator(31300, 8);
    let relay = RelaySession::start(&Handle::current(), &ports, RelayConfig::default()).unwrap();
    let (a, b, b_rtcp, a_rtcp) = (phone().await, phone().await, phone().await, phone().await);
    relay.set_remote(Leg::A, Some(addr(&a)));
    relay.set_remote(Leg::B, Some(addr(&b)));
    relay.set_remote_rtcp(Leg::B, Some(addr(&b_rtcp)));
    let ra = relay.local_addr(Leg::A);

    // 200 sequence numbers across the 16-bit wrap, every 10th skipped: 20 lost.
    let mut sent = 0;
    for i in 0..200u16 {
        if i % 10 == 5 {
            continue;
        }
        a.send_to(&rtp(8, 65500u16.wrapping_add(i), 9, 160), ra)
            .await
            .unwrap();
        sent += 1;
        recv(&b).await;
    }
    let s = relay.stats();
    assert_eq!(s.a_to_b.packets, sent);
    assert_eq!(s.a_to_b.lost, 20);

    // RTCP goes RTCP socket to RTCP socket (relay port + 1).
    let rtcp_port = SocketAddr::new(ra.ip(), ra.port() + 1);
    let sr = [0x80u8, 200, 0, 6, 0, 0, 0, 9, 1, 2, 3, 4, 5, 6, 7, 8];
    a_rtcp.send_to(&sr, rtcp_port).await.unwrap();
    let (got, from) = recv(&b_rtcp).await;
    assert_eq!(got, sr);
    assert_eq!(from.port(), relay.local_addr(Leg::B).port() + 1);
    assert_eq!(relay.stats().a_to_b.rtcp_packets, 1);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_without_a_remote_are_dropped_and_counted() {
    let ports = allocator(31400, 4);
    let relay = RelaySession::start(&Handle::current(), &ports, RelayConfig::default()).unwrap();
    let a = phone().await;
    a.send_to(&rtp(0, 1, 1, 160), relay.local_addr(Leg::A))
        .await
        .unwrap();
    let deadline = Instant::now() + GENEROUS;
    while relay.stats().a_to_b.dropped == 0 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(relay.stats().a_to_b.forwarded, 0);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ports_are_freed_on_stop_and_on_drop() {
    // 4 pairs = 2 sessions.
    let ports = allocator(31500, 4);
    let h = Handle::current();
    let s1 = RelaySession::start(&h, &ports, RelayConfig::default()).unwrap();
    let s2 = RelaySession::start(&h, &ports, RelayConfig::default()).unwrap();
    assert_eq!(ports.available(), 0);
    assert!(matches!(
        RelaySession::start(&h, &ports, RelayConfig::default()),
        Err(RelayError::Ports(PortError::Exhausted))
    ));

    s1.stop().await;
    assert_eq!(ports.available(), 2, "stop returns once the ports are free");
    let s3 = RelaySession::start(&h, &ports, RelayConfig::default()).unwrap();

    drop(s2);
    let deadline = Instant::now() + GENEROUS;
    while ports.available() < 2 {
        assert!(
            Instant::now() < deadline,
            "dropped session never freed its ports"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let s4 = RelaySession::start(&h, &ports, RelayConfig::default()).unwrap();
    s3.stop().await;
    s4.stop().await;
    assert_eq!(ports.available(), ports.capacity());
    // And every port of the range can be bound again by someone else.
    for p in 31500..31508u16 {
        drop(std::net::UdpSocket::bind((LOCAL, p)).unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_fires_after_the_last_packet() {
    let ports = allocator(31600, 4);
    let relay = RelaySession::start(&Handle::current(), &ports, RelayConfig::default()).unwrap();
    let (a, b) = (phone().await, phone().await);
    relay.set_remote(Leg::B, Some(addr(&b)));
    let limit = Duration::from_millis(300);
    let fired = relay.on_timeout(limit);
    // Media for a while (each packet pushes the deadline back).
    for seq in 0..10 {
        a.send_to(&rtp(0, seq, 1, 160), relay.local_addr(Leg::A))
            .await
            .unwrap();
        recv(&b).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let idle = timeout(GENEROUS, fired).await.unwrap().unwrap();
    let at = Instant::now();
    assert!(idle >= limit);
    let last = relay.stats().a_to_b.last_packet.unwrap();
    assert!(
        at.duration_since(last) >= limit,
        "fired only after {limit:?} of silence"
    );
    assert!(relay.idle_for() >= limit);

    // A session that ends drops its watchdog: the receiver sees an error, not a hang.
    let never = relay.on_timeout(Duration::from_secs(3600));
    relay.stop().await;
    assert!(timeout(GENEROUS, never).await.unwrap().is_err());
}
