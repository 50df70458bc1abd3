//! The relay's transcoding path over real loopback sockets: packets sent into a transcoding leg
//! out of order and with losses come out of the other leg in order, as one continuous stream
//! (consecutive sequence numbers and timestamps), every loss filled by a concealed frame.
//! No timed assertions: the checks allow for a slow, shared box (a stall may add a concealed
//! frame; the adaptive buffer may later drop one to bring its delay down).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use switchboard_media::codec::CodecKind;
use switchboard_media::signal::Noise;
use switchboard_media::{Leg, LegFormat, PortAllocator, RelayConfig, RelaySession};
use tokio::net::UdpSocket;
use tokio::runtime::Handle;
use tokio::time::timeout;

const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

async fn phone() -> Arc<UdpSocket> {
    let s = std::net::UdpSocket::bind((LOCAL, 0)).unwrap();
    socket2::SockRef::from(&s)
        .set_recv_buffer_size(1 << 20)
        .unwrap();
    s.set_nonblocking(true).unwrap();
    Arc::new(UdpSocket::from_std(s).unwrap())
}

fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

fn decode(kind: CodecKind, payload: &[u8]) -> Vec<i16> {
    let mut out = Vec::new();
    kind.codec().decode(payload, &mut out).unwrap(); // invariant: G.711 decodes any bytes
    out
}

fn correlation(a: &[i16], b: &[i16]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| f64::from(x) * f64::from(y))
        .sum();
    let e = |v: &[i16]| v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>();
    dot / (e(a) * e(b)).sqrt().max(1.0)
}

/// PCMU in on leg A, PCMA out on leg B. Every pair of packets is sent swapped (the later one
/// first), and three packets are never sent. Out of B: one stream with consecutive sequence
/// numbers and 160-sample timestamp steps; the frames that can be identified are the source's
/// in increasing order (none dropped for arriving "late", as arrival-order transcoding did);
/// the losses are concealed in place, so the stream between the first and the last source frame
/// keeps one frame per 20 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reordered_and_lost_packets_come_out_in_order_and_continuous() {
    const N: usize = 100;
    let lost = [17usize, 50, 51];
    let ports = PortAllocator::new(LOCAL, 32400, 32403).unwrap();
    let relay = RelaySession::start(&Handle::current(), &ports, RelayConfig::default()).unwrap();
    let (a, b) = (phone().await, phone().await);
    relay.set_remote(Leg::A, Some(a.local_addr().unwrap()));
    relay.set_remote(Leg::B, Some(b.local_addr().unwrap()));
    let format = |codec, payload_type| LegFormat {
        codec,
        payload_type,
        dtmf_payload_type: None,
    };
    relay.set_format(Leg::A, Some(format(CodecKind::Pcmu, 0)));
    relay.set_format(Leg::B, Some(format(CodecKind::Pcma, 8)));
    let to: SocketAddr = relay.local_addr(Leg::A);

    // Each frame its own noise, so every output frame names its source frame.
    let mut noise = Noise::new(21);
    let mut enc = CodecKind::Pcmu.codec();
    let payloads: Vec<Vec<u8>> = (0..N)
        .map(|_| {
            let mut p = Vec::new();
            enc.encode(&noise.white(-15.0, 160), &mut p);
            p
        })
        .collect();
    let reference: Vec<Vec<i16>> = payloads
        .iter()
        .map(|p| decode(CodecKind::Pcmu, p))
        .collect();

    let sender = {
        let a = a.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(40));
            for pair in (0..N).collect::<Vec<_>>().chunks(2) {
                tick.tick().await;
                for &i in pair.iter().rev() {
                    if lost.contains(&i) {
                        continue;
                    }
                    let p = rtp(0, 1000 + i as u16, 160 * i as u32, 0x5eed, &payloads[i]);
                    a.send_to(&p, to).await.unwrap();
                }
            }
        })
    };

    let mut got = Vec::new();
    let mut buf = vec![0u8; 2048];
    // Generous first wait, then until the concealment after the end has died down.
    let mut wait = Duration::from_secs(20);
    while let Ok(Ok(n)) = timeout(wait, b.recv(&mut buf)).await {
        got.push(buf[..n].to_vec());
        wait = Duration::from_secs(2);
    }
    sender.await.unwrap();
    relay.stop().await;

    assert!(got.len() >= N - 5, "{} packets out", got.len());
    let seq = |p: &[u8]| u16::from_be_bytes([p[2], p[3]]);
    let ts = |p: &[u8]| u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
    assert!(got.iter().all(|p| p[1] & 0x7f == 8 && p.len() == 12 + 160));
    for w in got.windows(2) {
        assert_eq!(seq(&w[1]), seq(&w[0]).wrapping_add(1), "consecutive seq");
        // 160 per frame; a stall of the box longer than 200 ms moves the clock on by wall time.
        let step = ts(&w[1]).wrapping_sub(ts(&w[0]));
        assert!(step == 160 || step > 1600, "timestamp step {step}");
    }
    let matched: Vec<Option<usize>> = got
        .iter()
        .map(|p| {
            let y = decode(CodecKind::Pcma, &p[12..]);
            reference.iter().position(|r| correlation(r, &y) > 0.99)
        })
        .collect();
    // A concealed frame is a faded repeat of the one before it: keep each source frame's
    // first appearance only.
    let mut order: Vec<(usize, usize)> = Vec::new();
    for (pos, m) in matched.iter().enumerate() {
        if let Some(i) = *m {
            if order.last().is_none_or(|&(_, last)| last != i) {
                order.push((pos, i));
            }
        }
    }
    let indices: Vec<usize> = order.iter().map(|&(_, i)| i).collect();
    println!(
        "{} packets out; source frames in output order: {indices:?}",
        got.len()
    );
    assert!(
        indices.windows(2).all(|w| w[1] > w[0]),
        "source frames in increasing order: {indices:?}"
    );
    assert!(
        indices.iter().all(|i| !lost.contains(i)),
        "a lost frame cannot appear: {indices:?}"
    );
    let missing = (0..N)
        .filter(|i| !lost.contains(i) && !indices.contains(i))
        .count();
    assert!(missing <= 3, "{missing} sent frames missing: {indices:?}");
    // The lost frames were filled: between the first and last source frame, at least one
    // output frame per 20 ms of source (the buffer only drops a frame after a stall added one).
    let (first, last) = (order[0], order[order.len() - 1]);
    assert!(
        last.0 - first.0 + 3 >= last.1 - first.1,
        "continuous: {} frames out for {} of source",
        last.0 - first.0 + 1,
        last.1 - first.1 + 1
    );
}
