//! The relay as the call's media plane, over real loopback UDP sockets: players, DTMF both ways,
//! transcoding, echo, recording, PCM forks and quality. Peers are plain sockets playing phones.
//! No timed assertions: waits have generous upper bounds only (the box is slow and shared).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use switchboard_media::codec::CodecKind;
use switchboard_media::dtmf::{Digit, DtmfTone, EventGenerator, EventReceiver, InbandDetector};
use switchboard_media::signal::{dominant, rms_dbfs, sine};
use switchboard_media::{
    DtmfSource, Leg, LegFormat, MediaEvent, Pcm, PortAllocator, RelayConfig, RelaySession, Route,
};
use tokio::net::UdpSocket;
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::time::timeout;

const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
const GENEROUS: Duration = Duration::from_secs(20);

const PCMU: LegFormat = LegFormat {
    codec: CodecKind::Pcmu,
    payload_type: 0,
    dtmf_payload_type: None,
};

fn with_te(f: LegFormat, pt: u8) -> LegFormat {
    LegFormat {
        dtmf_payload_type: Some(pt),
        ..f
    }
}

/// A session on its own port range (tests run in parallel) with both peers' remotes set.
async fn call(base: u16) -> (RelaySession, Arc<UdpSocket>, Arc<UdpSocket>) {
    let ports = PortAllocator::new(LOCAL, base, base + 3).unwrap();
    let relay = RelaySession::start(&Handle::current(), &ports, RelayConfig::default()).unwrap();
    let (a, b) = (phone().await, phone().await);
    relay.set_remote(Leg::A, Some(a.local_addr().unwrap()));
    relay.set_remote(Leg::B, Some(b.local_addr().unwrap()));
    (relay, a, b)
}

async fn phone() -> Arc<UdpSocket> {
    let s = std::net::UdpSocket::bind((LOCAL, 0)).unwrap();
    socket2::SockRef::from(&s)
        .set_recv_buffer_size(1 << 20)
        .unwrap();
    s.set_nonblocking(true).unwrap();
    Arc::new(UdpSocket::from_std(s).unwrap())
}

#[derive(Clone, Debug, PartialEq)]
struct Rtp {
    marker: bool,
    pt: u8,
    seq: u16,
    ts: u32,
    ssrc: u32,
    payload: Vec<u8>,
}

impl Rtp {
    fn new(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: Vec<u8>) -> Rtp {
        Rtp {
            marker: false,
            pt,
            seq,
            ts,
            ssrc,
            payload,
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut p = vec![0x80, (u8::from(self.marker) << 7) | self.pt];
        p.extend_from_slice(&self.seq.to_be_bytes());
        p.extend_from_slice(&self.ts.to_be_bytes());
        p.extend_from_slice(&self.ssrc.to_be_bytes());
        p.extend_from_slice(&self.payload);
        p
    }

    fn parse(p: &[u8]) -> Rtp {
        Rtp {
            marker: p[1] & 0x80 != 0,
            pt: p[1] & 0x7f,
            seq: u16::from_be_bytes([p[2], p[3]]),
            ts: u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
            ssrc: u32::from_be_bytes([p[8], p[9], p[10], p[11]]),
            payload: p[12..].to_vec(),
        }
    }
}

async fn recv(s: &UdpSocket) -> Rtp {
    let mut buf = vec![0u8; 2048];
    let n = timeout(GENEROUS, s.recv(&mut buf))
        .await
        .expect("a packet within the generous bound")
        .unwrap();
    Rtp::parse(&buf[..n])
}

/// Whatever arrives within `wait` (for "nothing more comes" checks).
async fn drain(s: &UdpSocket, wait: Duration) -> Vec<Rtp> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 2048];
    while let Ok(Ok(n)) = timeout(wait, s.recv(&mut buf)).await {
        out.push(Rtp::parse(&buf[..n]));
    }
    out
}

async fn next_event(rx: &mut mpsc::Receiver<MediaEvent>) -> MediaEvent {
    timeout(GENEROUS, rx.recv())
        .await
        .expect("an event within the generous bound")
        .expect("the session is alive")
}

/// 20 ms payloads of `pcm` in `kind`.
fn encode(kind: CodecKind, pcm: &[i16]) -> Vec<Vec<u8>> {
    let mut enc = kind.codec();
    pcm.chunks(kind.samples_per_frame())
        .map(|f| {
            let mut p = Vec::new();
            enc.encode(f, &mut p);
            p
        })
        .collect()
}

fn decode(kind: CodecKind, payloads: &[Vec<u8>]) -> Vec<i16> {
    let mut dec = kind.codec();
    let mut out = Vec::new();
    for p in payloads {
        dec.decode(p, &mut out).unwrap(); // invariant: the engine's encoder made it
    }
    out
}

/// The strongest frequency on a 10 Hz grid from 100 Hz to just under Nyquist.
fn peak_hz(x: &[i16], rate: u32) -> f64 {
    let grid: Vec<f64> = (10..(rate / 20)).map(|k| f64::from(k) * 10.0).collect();
    dominant(x, &grid, rate).unwrap() // invariant: the grid is not empty
}

/// One RTP stream a peer sends: payload type, SSRC, first sequence number and timestamp
/// increment per packet (the first timestamp is 0).
#[derive(Clone, Copy)]
struct Stream {
    pt: u8,
    ssrc: u32,
    seq0: u16,
    step: u32,
}

/// Sends `payloads` as one RTP stream, one packet per 20 ms (real time: the tap's jitter buffer
/// plays out in real time).
async fn send_paced(s: &UdpSocket, to: SocketAddr, st: Stream, payloads: &[Vec<u8>]) {
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for (i, p) in payloads.iter().enumerate() {
        tick.tick().await;
        let r = Rtp::new(
            st.pt,
            st.seq0.wrapping_add(i as u16),
            st.step.wrapping_mul(i as u32),
            st.ssrc,
            p.clone(),
        );
        s.send_to(&r.bytes(), to).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plays_a_tone_into_a_leg_and_reports_play_done() {
    let (relay, a, b) = call(32100).await;
    let mut events = relay.take_events().unwrap();
    assert!(
        relay.take_events().is_none(),
        "the receiver is handed out once"
    );
    relay.set_format(Leg::A, Some(PCMU));
    relay.set_format(Leg::B, Some(PCMU));

    // One second of 1 kHz: 50 packets of 20 ms PCMU.
    let clip = Pcm::new(8000, sine(1000.0, -10.0, 8000, 8000));
    relay.play(Leg::A, clip, 1, 7);
    let mut got = Vec::new();
    for _ in 0..50 {
        got.push(recv(&a).await);
    }
    assert_eq!(
        next_event(&mut events).await,
        MediaEvent::PlayDone { leg: Leg::A, id: 7 }
    );
    assert!(got.iter().all(|p| p.pt == 0 && p.payload.len() == 160));
    assert!(got.iter().all(|p| p.ssrc == got[0].ssrc));
    assert!(got[0].marker && got[1..].iter().all(|p| !p.marker));
    for w in got.windows(2) {
        assert_eq!(w[1].seq, w[0].seq.wrapping_add(1));
        assert_eq!(w[1].ts, w[0].ts.wrapping_add(160));
    }
    let pcm = decode(
        CodecKind::Pcmu,
        &got.iter().map(|p| p.payload.clone()).collect::<Vec<_>>(),
    );
    assert_eq!(peak_hz(&pcm, 8000), 1000.0);

    // A 16 kHz clip is resampled to the leg's 8 kHz; loops = 0 plays until stopped, and
    // bridged media from B toward A is held back meanwhile (the player wins).
    let clip = Pcm::new(16000, sine(1000.0, -10.0, 16000, 1600)); // 100 ms
    relay.play(Leg::A, clip, 0, 8);
    let first = recv(&a).await;
    let last = got.last().unwrap();
    assert!(first.marker, "marker on the first packet of each play");
    assert_eq!(first.ssrc, last.ssrc, "one outgoing SSRC per leg");
    assert_eq!(
        first.seq,
        last.seq.wrapping_add(1),
        "seq continues across plays"
    );
    let rb = relay.local_addr(Leg::B);
    for i in 0..10u16 {
        let r = Rtp::new(0, i, u32::from(i) * 160, 0xbbbb, vec![0xff; 160]);
        b.send_to(&r.bytes(), rb).await.unwrap();
    }
    let mut more = Vec::new();
    for _ in 0..30 {
        more.push(recv(&a).await); // 30 × 20 ms = 6 loops of the clip: still playing
    }
    assert!(
        more.iter().all(|p| p.ssrc == first.ssrc),
        "B is not heard over the player"
    );
    let pcm = decode(
        CodecKind::Pcmu,
        &more.iter().map(|p| p.payload.clone()).collect::<Vec<_>>(),
    );
    assert_eq!(peak_hz(&pcm, 8000), 1000.0);
    relay.stop_play(Leg::A);
    drain(&a, Duration::from_millis(300)).await;
    // Stopped: no PlayDone, and B's media reaches A again.
    let r = Rtp::new(0, 50, 50 * 160, 0xbbbb, vec![0xff; 160]);
    b.send_to(&r.bytes(), rb).await.unwrap();
    assert_eq!(recv(&a).await, r);
    assert!(events.try_recv().is_err(), "no PlayDone for a stopped play");

    // No format: PlayDone at once.
    relay.set_format(Leg::B, None);
    relay.play(Leg::B, Pcm::new(8000, vec![0; 800]), 1, 9);
    assert_eq!(
        next_event(&mut events).await,
        MediaEvent::PlayDone { leg: Leg::B, id: 9 }
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc4733_digits_are_reported_once_and_forwarded_only_where_negotiated() {
    let (relay, a, b) = call(32110).await;
    let mut events = relay.take_events().unwrap();
    relay.set_format(Leg::A, Some(with_te(PCMU, 101)));
    relay.set_format(Leg::B, Some(PCMU)); // B has no telephone-event
    let ra = relay.local_addr(Leg::A);
    let mut seq = 100u16;
    let mut ts = 8000u32;
    let mut send_press = |digit: Digit, ts0: u32| {
        let packets: Vec<Vec<u8>> = EventGenerator::default()
            .press(digit, ts0, 100)
            .iter()
            .map(|p| {
                seq = seq.wrapping_add(1);
                let mut r = Rtp::new(101, seq, p.timestamp, 0xa1, p.payload_bytes().to_vec());
                r.marker = p.marker;
                r.bytes()
            })
            .collect();
        packets
    };
    let presses = [(Digit::D5, ts), (Digit::Pound, ts + 4000)];
    ts += 8000;
    let mut all = Vec::new();
    for (d, t) in presses {
        all.extend(send_press(d, t));
    }
    for p in &all {
        a.send_to(p, ra).await.unwrap();
    }
    // An audio packet after them: B gets it, but none of the events.
    a.send_to(&Rtp::new(0, 1000, ts, 0xa1, vec![0xff; 160]).bytes(), ra)
        .await
        .unwrap();
    for want in [Digit::D5, Digit::Pound] {
        match next_event(&mut events).await {
            MediaEvent::Dtmf {
                leg,
                digit,
                source,
                duration_ms,
                ..
            } => {
                assert_eq!((leg, digit, source), (Leg::A, want, DtmfSource::Rfc4733));
                assert_eq!(duration_ms, 100);
            }
            e => panic!("unexpected {e:?}"),
        }
    }
    let got = recv(&b).await;
    assert_eq!(
        got.pt, 0,
        "events are not forwarded to a leg without telephone-event"
    );

    // B negotiates telephone-event with another PT: forwarded, PT rewritten; reported once.
    relay.set_format(Leg::B, Some(with_te(PCMU, 96)));
    let press = send_press(Digit::D1, ts);
    for p in &press {
        a.send_to(p, ra).await.unwrap();
    }
    for p in &press {
        let got = recv(&b).await;
        let sent = Rtp::parse(p);
        assert_eq!((got.pt, got.seq, got.payload), (96, sent.seq, sent.payload));
    }
    match next_event(&mut events).await {
        MediaEvent::Dtmf { digit, source, .. } => {
            assert_eq!((digit, source), (Digit::D1, DtmfSource::Rfc4733))
        }
        e => panic!("unexpected {e:?}"),
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(events.try_recv().is_err(), "exactly one event per press");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inband_digits_are_detected_when_asked() {
    let (relay, _a, b) = call(32120).await;
    let mut events = relay.take_events().unwrap();
    relay.set_format(Leg::B, Some(PCMU));
    relay.set_route(Leg::B, Route::Local);
    relay.detect_inband(Leg::B, true);
    let mut pcm = DtmfTone::standard(Digit::D7, 8000).samples(800); // 100 ms
    pcm.resize(2400, 0); // then 200 ms of silence
    let payloads = encode(CodecKind::Pcmu, &pcm);
    for (i, p) in payloads.iter().enumerate() {
        let r = Rtp::new(0, i as u16, i as u32 * 160, 0xb1, p.clone());
        b.send_to(&r.bytes(), relay.local_addr(Leg::B))
            .await
            .unwrap();
    }
    match next_event(&mut events).await {
        MediaEvent::Dtmf {
            leg,
            digit,
            source,
            duration_ms,
            ..
        } => {
            assert_eq!(
                (leg, digit, source),
                (Leg::B, Digit::D7, DtmfSource::Inband)
            );
            assert!((60..=140).contains(&duration_ms), "{duration_ms}");
        }
        e => panic!("unexpected {e:?}"),
    }
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_dtmf_uses_rfc4733_where_negotiated_else_inband() {
    let (relay, a, b) = call(32130).await;
    relay.set_format(Leg::A, Some(with_te(PCMU, 101)));
    relay.set_format(Leg::B, Some(PCMU));

    relay.send_dtmf(Leg::A, Digit::D9, 120);
    let mut rx = EventReceiver::default();
    let mut ends = 0;
    let mut seqs = Vec::new();
    while ends < 3 {
        let p = recv(&a).await;
        assert_eq!(p.pt, 101);
        seqs.push(p.seq);
        ends += usize::from(p.payload.get(1).is_some_and(|f| f & 0x80 != 0));
        rx.push(p.ts, p.marker, &p.payload, 0).unwrap();
    }
    let e = rx.poll_event().expect("the press");
    assert_eq!((e.digit, e.duration, e.ended), (Digit::D9, 960, true));
    assert!(rx.poll_event().is_none());
    assert!(seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)));
    assert!(
        drain(&a, Duration::from_millis(200)).await.is_empty(),
        "3 end packets"
    );

    relay.send_dtmf(Leg::B, Digit::D3, 100);
    let mut det = InbandDetector::new(8000);
    let mut pcm = Vec::new();
    for _ in 0..8 {
        // 100 ms of tone + 60 ms of silence
        let p = recv(&b).await;
        assert_eq!(p.pt, 0);
        CodecKind::Pcmu
            .codec()
            .decode(&p.payload, &mut pcm)
            .unwrap();
    }
    det.push(&pcm);
    det.flush();
    assert_eq!(det.poll_event().map(|d| d.digit), Some(Digit::D3));
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transcodes_between_opus_and_pcmu_both_ways() {
    let (relay, a, b) = call(32140).await;
    let opus = CodecKind::Opus { rate: 48000 };
    relay.set_format(
        Leg::A,
        Some(LegFormat {
            codec: opus,
            payload_type: 111,
            dtmf_payload_type: None,
        }),
    );
    relay.set_format(Leg::B, Some(PCMU));
    let (ra, rb) = (relay.local_addr(Leg::A), relay.local_addr(Leg::B));

    // A → B: Opus at 48 kHz in, PCMU out.
    let payloads = encode(opus, &sine(1000.0, -10.0, 48000, 48000));
    let sender = {
        let a = a.clone();
        tokio::spawn(async move {
            send_paced(
                &a,
                ra,
                Stream {
                    pt: 111,
                    ssrc: 0xa0,
                    seq0: 1,
                    step: 960,
                },
                &payloads,
            )
            .await
        })
    };
    let mut got = Vec::new();
    for _ in 0..50 {
        got.push(recv(&b).await);
    }
    sender.await.unwrap();
    assert!(got.iter().all(|p| p.pt == 0 && p.payload.len() == 160));
    assert!(got.windows(2).all(|w| w[1].seq == w[0].seq.wrapping_add(1)));
    let pcm = decode(
        CodecKind::Pcmu,
        &got.iter().map(|p| p.payload.clone()).collect::<Vec<_>>(),
    );
    assert_eq!(peak_hz(&pcm[1600..], 8000), 1000.0);

    // B → A: PCMU in, Opus (PT 111) out.
    let payloads = encode(CodecKind::Pcmu, &sine(1000.0, -10.0, 8000, 8000));
    let sender = {
        let b = b.clone();
        tokio::spawn(async move {
            send_paced(
                &b,
                rb,
                Stream {
                    pt: 0,
                    ssrc: 0xb0,
                    seq0: 1,
                    step: 160,
                },
                &payloads,
            )
            .await
        })
    };
    let mut got = Vec::new();
    for _ in 0..50 {
        got.push(recv(&a).await);
    }
    sender.await.unwrap();
    assert!(got.iter().all(|p| p.pt == 111));
    assert!(got.windows(2).all(|w| w[1].ts == w[0].ts.wrapping_add(960)));
    let pcm = decode(
        opus,
        &got.iter().map(|p| p.payload.clone()).collect::<Vec<_>>(),
    );
    assert_eq!(peak_hz(&pcm[9600..], 48000), 1000.0);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_returns_a_legs_packets_to_it() {
    let (relay, a, b) = call(32150).await;
    relay.set_route(Leg::A, Route::Echo);
    let ra = relay.local_addr(Leg::A);
    for i in 0..5u16 {
        let r = Rtp::new(0, i, u32::from(i) * 160, 0xe0, vec![i as u8; 160]);
        a.send_to(&r.bytes(), ra).await.unwrap();
        assert_eq!(recv(&a).await, r);
    }
    assert!(drain(&b, Duration::from_millis(100)).await.is_empty());
    relay.stop().await;
}

/// A 3 s call: A sends 500 Hz and B 1500 Hz; after 1 s the recording pauses, after 2 s it
/// resumes and A switches from PCMU to PCMA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_both_legs_in_stereo_with_pause_and_a_codec_change() {
    let (relay, a, b) = call(32160).await;
    relay.set_format(Leg::A, Some(PCMU));
    relay.set_format(Leg::B, Some(PCMU));
    let dir = std::env::temp_dir().join(format!("sb-rec-{}", std::process::id()));
    let path = dir.join("nested/call.wav");
    relay.start_recording(&path).unwrap();
    assert!(matches!(
        relay.start_recording(&path),
        Err(switchboard_media::RecordError::AlreadyRecording)
    ));
    let (ra, rb) = (relay.local_addr(Leg::A), relay.local_addr(Leg::B));
    let tone_a = sine(500.0, -10.0, 8000, 24000);
    let tone_b = sine(1500.0, -10.0, 8000, 24000);
    let (pcmu_a, pcma_a) = (
        encode(CodecKind::Pcmu, &tone_a),
        encode(CodecKind::Pcma, &tone_a),
    );
    let pcmu_b = encode(CodecKind::Pcmu, &tone_b);
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for i in 0..150usize {
        tick.tick().await;
        match i {
            50 => relay.pause_recording(),
            100 => {
                relay.resume_recording();
                relay.set_format(
                    Leg::A,
                    Some(LegFormat {
                        codec: CodecKind::Pcma,
                        payload_type: 8,
                        dtmf_payload_type: None,
                    }),
                );
            }
            _ => {}
        }
        let (pt, pa) = if i < 100 {
            (0, &pcmu_a[i])
        } else {
            (8, &pcma_a[i])
        };
        let ts = i as u32 * 160;
        a.send_to(&Rtp::new(pt, i as u16, ts, 0xaa, pa.clone()).bytes(), ra)
            .await
            .unwrap();
        b.send_to(
            &Rtp::new(0, i as u16, ts, 0xbb, pcmu_b[i].clone()).bytes(),
            rb,
        )
        .await
        .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await; // the jitter buffers play out
    let info = relay.stop_recording().await.expect("recording");
    assert!(relay.stop_recording().await.is_none());
    assert_eq!((info.rate, info.legs, &info.path), (8000, 2, &path));
    assert_eq!(info.bytes, std::fs::metadata(&path).unwrap().len());
    // Stated tolerance: 3 s sent; the file may start late by the first packet's delay and end
    // late by the jitter buffer's delay: 2.9 to 3.5 s.
    assert!(
        (2900..=3500).contains(&info.duration_ms),
        "{}",
        info.duration_ms
    );

    let mut wav = hound::WavReader::open(&path).unwrap();
    let spec = wav.spec();
    assert_eq!((spec.channels, spec.sample_rate), (2, 8000));
    let samples: Vec<i16> = wav.samples::<i16>().map(|s| s.unwrap()).collect();
    assert_eq!(samples.len() as u64 / 2 * 1000 / 8000, info.duration_ms);
    let (left, right): (Vec<i16>, Vec<i16>) = samples.chunks(2).map(|f| (f[0], f[1])).unzip();
    let span = |x: &[i16], from_ms: usize, to_ms: usize| x[from_ms * 8..to_ms * 8].to_vec();
    // Before the pause, and after the resume with A in PCMA.
    for (from, to) in [(200, 800), (2300, 2800)] {
        let (l, r) = (span(&left, from, to), span(&right, from, to));
        assert_eq!(peak_hz(&l, 8000), 500.0, "left {from}..{to} ms");
        assert_eq!(peak_hz(&r, 8000), 1500.0, "right {from}..{to} ms");
        assert!(rms_dbfs(&l) > -14.0 && rms_dbfs(&r) > -14.0);
    }
    // Paused: silence (the timeline is kept).
    let (l, r) = (span(&left, 1300, 1800), span(&right, 1300, 1800));
    assert!(
        rms_dbfs(&l) < -60.0 && rms_dbfs(&r) < -60.0,
        "paused span is silent"
    );
    let _ = std::fs::remove_dir_all(&dir);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_get_20ms_frames_at_their_rate() {
    let (relay, _a, b) = call(32170).await;
    relay.set_format(Leg::B, Some(PCMU));
    let mut asr = relay.subscribe(Leg::B, 16000);
    let eavesdrop = relay.subscribe(Leg::B, 8000);
    drop(eavesdrop); // unsubscribes; the other goes on
    assert!(
        relay.subscribe(Leg::B, 11025).recv().await.is_none(),
        "unsupported rate"
    );
    let payloads = encode(CodecKind::Pcmu, &sine(1000.0, -10.0, 8000, 8000));
    let rb = relay.local_addr(Leg::B);
    let sender = {
        let b = b.clone();
        tokio::spawn(async move {
            send_paced(
                &b,
                rb,
                Stream {
                    pt: 0,
                    ssrc: 0xb5,
                    seq0: 7,
                    step: 160,
                },
                &payloads,
            )
            .await
        })
    };
    let mut pcm = Vec::new();
    for _ in 0..40 {
        let frame = timeout(GENEROUS, asr.recv()).await.unwrap().unwrap();
        assert_eq!(frame.len(), 320);
        pcm.extend(frame);
    }
    sender.await.unwrap();
    assert_eq!(peak_hz(&pcm[3200..], 16000), 1000.0);
    assert!(rms_dbfs(&pcm[3200..]) > -13.0);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quality_counts_loss_and_lowers_mos() {
    let (relay, a, b) = call(32180).await;
    relay.set_format(Leg::A, Some(PCMU));
    relay.set_format(Leg::B, Some(PCMU));
    let (ra, rb) = (relay.local_addr(Leg::A), relay.local_addr(Leg::B));
    // 100 sequence numbers each; A skips every 10th.
    for i in 0..100u16 {
        let ts = u32::from(i) * 160;
        if i % 10 != 5 {
            a.send_to(&Rtp::new(0, i, ts, 1, vec![0xff; 160]).bytes(), ra)
                .await
                .unwrap();
            recv(&b).await;
        }
        b.send_to(&Rtp::new(0, i, ts, 2, vec![0xff; 160]).bytes(), rb)
            .await
            .unwrap();
        recv(&a).await;
    }
    let (qa, qb) = (relay.quality(Leg::A), relay.quality(Leg::B));
    assert_eq!((qa.packets, qa.lost), (90, 10));
    assert!((qa.loss_percent - 10.0).abs() < 1e-9, "{}", qa.loss_percent);
    assert_eq!((qb.packets, qb.lost, qb.loss_percent), (100, 0, 0.0));
    assert!(qa.jitter_ms >= 0.0 && qb.jitter_ms >= 0.0);
    assert!(qa.mos < qb.mos, "{qa:?} vs {qb:?}");
    assert!(qb.mos > 3.5 && qa.mos >= 1.0);
    relay.stop().await;
}
