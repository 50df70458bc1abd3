//! Live streams into a leg and conference rooms, over real loopback UDP sockets. Peers are
//! plain sockets playing phones, each sending its own tone (caller 500 Hz, agent 1100 Hz,
//! supervisor 1900 Hz); what a peer hears is read with Goertzel filters on what it receives.
//! No timed assertions: waits have generous upper bounds only, and measurements skip a fixed
//! number of packets (more than the bounded queues can hold) after each change.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use switchboard_media::codec::CodecKind;
use switchboard_media::conference::{Room, RoomError};
use switchboard_media::mix::MixMode;
use switchboard_media::signal::{rms_dbfs, sine, tone_dbfs};
use switchboard_media::{Leg, LegFormat, Pcm, PortAllocator, RelayConfig, RelaySession, Route};
use tokio::net::UdpSocket;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tokio::time::timeout;

const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
const GENEROUS: Duration = Duration::from_secs(20);

const PCMU: LegFormat = LegFormat {
    codec: CodecKind::Pcmu,
    payload_type: 0,
    dtmf_payload_type: None,
};
const OPUS: LegFormat = LegFormat {
    codec: CodecKind::Opus { rate: 48000 },
    payload_type: 111,
    dtmf_payload_type: None,
};

const CALLER_HZ: f64 = 500.0;
const AGENT_HZ: f64 = 1100.0;
const SUPERVISOR_HZ: f64 = 1900.0;
const TONES: [f64; 3] = [CALLER_HZ, AGENT_HZ, SUPERVISOR_HZ];

/// A tone the peer hears: the tones are sent at -12 dBFS.
const HEARD_DBFS: f64 = -24.0;
/// A tone the peer does not hear: G.711 intermodulation of the tones it does hear measured up to
/// -55 dBFS at the third frequency, so 28 dB below a heard tone is the line.
const SILENT_DBFS: f64 = -40.0;

/// Packets skipped after a change before measuring: more than the room's backlog, the live
/// queue and the jitter buffer hold together.
const SETTLE: usize = 25;
/// Packets measured: 1 s.
const MEASURE: usize = 50;

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

/// (payload type, SSRC, payload) of a received packet.
fn parse(p: &[u8]) -> (u8, u32, Vec<u8>) {
    (
        p[1] & 0x7f,
        u32::from_be_bytes([p[8], p[9], p[10], p[11]]),
        p[12..].to_vec(),
    )
}

async fn recv(s: &UdpSocket) -> (u8, u32, Vec<u8>) {
    let mut buf = vec![0u8; 2048];
    let n = timeout(GENEROUS, s.recv(&mut buf))
        .await
        .expect("a packet within the generous bound")
        .unwrap();
    parse(&buf[..n])
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

/// A phone on one leg: its socket, its format, and the task sending its tone.
struct Peer {
    sock: Arc<UdpSocket>,
    format: LegFormat,
    talker: JoinHandle<()>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.talker.abort();
    }
}

/// Puts a phone on `leg` of `relay` sending `hz` (-12 dBFS, 1 s of tone looped: whole cycles,
/// so the loop is seamless) in `format`, one packet per 20 ms, for as long as the peer lives.
async fn peer(relay: &RelaySession, leg: Leg, format: LegFormat, hz: f64, ssrc: u32) -> Peer {
    let sock = phone().await;
    relay.set_remote(leg, Some(sock.local_addr().unwrap()));
    relay.set_format(leg, Some(format));
    let kind = format.codec;
    let rate = kind.sample_rate();
    let payloads = encode(kind, &sine(hz, -12.0, rate, rate as usize));
    let to: SocketAddr = relay.local_addr(leg);
    let (s, pt, step) = (
        sock.clone(),
        format.payload_type,
        kind.timestamp_per_frame(),
    );
    let talker = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        for i in 0u32.. {
            tick.tick().await;
            let p = &payloads[i as usize % payloads.len()];
            let _ = s
                .send_to(&rtp(pt, i as u16, i.wrapping_mul(step), ssrc, p), to)
                .await;
        }
    });
    Peer {
        sock,
        format,
        talker,
    }
}

impl Peer {
    /// What the peer hears from now on: drops what is already queued on its socket, skips
    /// [`SETTLE`] packets, then decodes [`MEASURE`] packets.
    async fn hears(&self) -> Heard {
        let mut buf = vec![0u8; 2048];
        while self.sock.try_recv(&mut buf).is_ok() {}
        for _ in 0..SETTLE {
            recv(&self.sock).await;
        }
        let mut dec = self.format.codec.codec();
        let mut pcm = Vec::new();
        for _ in 0..MEASURE {
            let (pt, _, payload) = recv(&self.sock).await;
            assert_eq!(pt, self.format.payload_type, "the leg's own format");
            dec.decode(&payload, &mut pcm).unwrap(); // invariant: the engine encoded it
        }
        let rate = self.format.codec.sample_rate();
        Heard {
            levels: TONES.map(|hz| tone_dbfs(&pcm, hz, rate)),
        }
    }

    /// Asserts that the peer hears exactly the tones in `want` (among the three).
    async fn assert_hears(&self, who: &str, want: &[f64]) {
        let h = self.hears().await;
        println!("{who} wants {want:?}: {h:?}");
        for (hz, level) in TONES.iter().zip(h.levels) {
            if want.contains(hz) {
                assert!(level > HEARD_DBFS, "{who} should hear {hz} Hz: {h:?}");
            } else {
                assert!(level < SILENT_DBFS, "{who} should not hear {hz} Hz: {h:?}");
            }
        }
    }
}

/// Levels in dBFS of the three tones, in [`TONES`] order.
#[derive(Debug)]
struct Heard {
    levels: [f64; 3],
}

/// A live agent call (caller on leg A, agent on leg B, bridged) and a supervisor's call (its
/// leg A), each peer talking.
struct Supervision {
    call: Arc<RelaySession>,
    sup: Arc<RelaySession>,
    caller: Peer,
    agent: Peer,
    supervisor: Peer,
}

async fn supervision(base: u16, supervisor_format: LegFormat) -> Supervision {
    let ports = PortAllocator::new(LOCAL, base, base + 7).unwrap();
    let call =
        Arc::new(RelaySession::start(&Handle::current(), &ports, RelayConfig::default()).unwrap());
    let sup =
        Arc::new(RelaySession::start(&Handle::current(), &ports, RelayConfig::default()).unwrap());
    let caller = peer(&call, Leg::A, PCMU, CALLER_HZ, 0xca).await;
    let agent = peer(&call, Leg::B, PCMU, AGENT_HZ, 0xa6).await;
    let supervisor = peer(&sup, Leg::A, supervisor_format, SUPERVISOR_HZ, 0x50).await;
    sup.set_route(Leg::A, Route::Local);
    Supervision {
        call,
        sup,
        caller,
        agent,
        supervisor,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_stream_feeds_a_leg_until_a_play_replaces_it_or_the_handle_drops() {
    let ports = PortAllocator::new(LOCAL, 32600, 32603).unwrap();
    let relay = RelaySession::start(&Handle::current(), &ports, RelayConfig::default()).unwrap();
    let (a, b) = (phone().await, phone().await);
    relay.set_remote(Leg::A, Some(a.local_addr().unwrap()));
    relay.set_remote(Leg::B, Some(b.local_addr().unwrap()));
    relay.set_format(Leg::A, Some(PCMU));
    relay.set_format(Leg::B, Some(PCMU));
    let rb = relay.local_addr(Leg::B);

    assert!(
        !relay.stream(Leg::A, 11025).push(vec![0; 220]),
        "unsupported rate: ended at once"
    );

    // 1 s of 1 kHz at 16 kHz, pushed ahead in one go: the queue keeps the last LIVE_QUEUE
    // frames, the rest are dropped oldest first.
    let live = relay.stream(Leg::A, 16000);
    let tone = sine(1000.0, -10.0, 16000, 16000);
    for f in tone.chunks(320) {
        assert!(live.push(f.to_vec()));
    }
    assert_eq!(
        live.dropped(),
        50 - switchboard_media::relay::LIVE_QUEUE as u64
    );
    // Meanwhile B talks: nothing of it reaches A while the stream runs.
    for i in 0..20u16 {
        let p = rtp(0, i, u32::from(i) * 160, 0xbb, &[0xff; 160]);
        b.send_to(&p, rb).await.unwrap();
    }
    let mut payloads = Vec::new();
    let mut ssrcs = Vec::new();
    for _ in 0..switchboard_media::relay::LIVE_QUEUE {
        let (pt, ssrc, payload) = recv(&a).await;
        assert_eq!((pt, payload.len()), (0, 160), "PCMU, 20 ms");
        ssrcs.push(ssrc);
        payloads.push(payload);
    }
    assert!(
        ssrcs.iter().all(|&s| s == ssrcs[0] && s != 0xbb),
        "the engine's stream only"
    );
    let mut dec = CodecKind::Pcmu.codec();
    let mut pcm = Vec::new();
    for p in &payloads {
        dec.decode(p, &mut pcm).unwrap();
    }
    // Past the resampler's delay (10 ms), a 1 kHz tone at about the level sent.
    let tail = &pcm[160..];
    assert!(
        tone_dbfs(tail, 1000.0, 8000) > -13.0,
        "{}",
        tone_dbfs(tail, 1000.0, 8000)
    );

    // An empty queue: comfort silence, on the same stream.
    let mut quiet = Vec::new();
    while quiet.len() < 10 {
        let (_, ssrc, payload) = recv(&a).await;
        assert_eq!(ssrc, ssrcs[0]);
        let mut pcm = Vec::new();
        CodecKind::Pcmu.codec().decode(&payload, &mut pcm).unwrap();
        if rms_dbfs(&pcm) < -60.0 {
            quiet.push(pcm);
        }
    }
    assert!(live.underruns() > 0);
    assert!(live.is_live());

    // A play on the leg replaces the stream: its pushes are refused from then on.
    relay.play(Leg::A, Pcm::new(8000, vec![0; 8000]), 0, 1);
    timeout(GENEROUS, async {
        while live.push(vec![0; 320]) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the stream ends");
    assert!(!live.is_live());
    relay.stop_play(Leg::A);

    // A new stream, then its handle dropped: bridged media from B reaches A again.
    let live = relay.stream(Leg::A, 8000);
    assert!(live.push(vec![0; 160]));
    drop(live);
    let sent = rtp(0, 100, 16000, 0xbb, &[0x7f; 160]);
    timeout(GENEROUS, async {
        let mut buf = vec![0u8; 2048];
        loop {
            b.send_to(&sent, rb).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            while let Ok(n) = a.try_recv(&mut buf) {
                if buf[..n] == sent[..] {
                    return;
                }
            }
        }
    })
    .await
    .expect("B is bridged to A again");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_parties_hear_each_other_not_themselves_with_mute_and_leave() {
    let s = supervision(32610, PCMU).await;
    // Before the room: the call is bridged, the caller hears the agent's own packets.
    let (_, ssrc, _) = recv(&s.caller.sock).await;
    assert_eq!(ssrc, 0xa6, "bridged before the room");

    let room = Room::start(&Handle::current());
    assert_eq!(room.rate(), 16000);
    let caller = room.join(s.call.clone(), Leg::A, MixMode::Normal).unwrap();
    let agent = room.join(s.call.clone(), Leg::B, MixMode::Normal).unwrap();
    let sup = room.join(s.sup.clone(), Leg::A, MixMode::Normal).unwrap();
    assert_eq!(
        room.join(s.call.clone(), Leg::A, MixMode::Listen),
        Err(RoomError::AlreadyJoined)
    );
    let parts = room.participants();
    assert_eq!(
        parts
            .iter()
            .map(|p| (p.id, p.leg, p.live))
            .collect::<Vec<_>>(),
        vec![
            (caller, Leg::A, true),
            (agent, Leg::B, true),
            (sup, Leg::A, true)
        ]
    );

    s.caller
        .assert_hears("caller", &[AGENT_HZ, SUPERVISOR_HZ])
        .await;
    s.agent
        .assert_hears("agent", &[CALLER_HZ, SUPERVISOR_HZ])
        .await;
    s.supervisor
        .assert_hears("supervisor", &[CALLER_HZ, AGENT_HZ])
        .await;

    // Mute: nobody hears the agent; the agent still hears everyone.
    room.set_muted(agent, true).unwrap();
    s.caller.assert_hears("caller", &[SUPERVISOR_HZ]).await;
    s.supervisor.assert_hears("supervisor", &[CALLER_HZ]).await;
    s.agent
        .assert_hears("agent", &[CALLER_HZ, SUPERVISOR_HZ])
        .await;
    room.set_muted(agent, false).unwrap();
    assert!(room.participants().iter().all(|p| !p.muted));

    // The supervisor leaves: the other two hear only each other.
    room.leave(sup).unwrap();
    assert_eq!(room.leave(sup), Err(RoomError::NotFound));
    assert_eq!(
        room.set_mode(sup, MixMode::Listen),
        Err(RoomError::NotFound)
    );
    assert_eq!(room.participants().len(), 2);
    s.caller.assert_hears("caller", &[AGENT_HZ]).await;
    s.agent.assert_hears("agent", &[CALLER_HZ]).await;

    // The room ends; the legs are bridged again by the caller of the room.
    let stats = room.stats();
    assert!(stats.ticks > 0 && stats.participant_ticks >= 2 * stats.ticks);
    println!(
        "room (debug build): {} ticks, {:.2} µs per participant per tick in the room task, \
         {} missing, {} trimmed",
        stats.ticks,
        stats.busy.as_secs_f64() * 1e6 / stats.participant_ticks as f64,
        stats.missing,
        stats.trimmed
    );
    drop(room);
    s.call.set_route(Leg::A, Route::Bridge);
    s.call.set_route(Leg::B, Route::Bridge);
    timeout(GENEROUS, async {
        while recv(&s.caller.sock).await.1 != 0xa6 {}
    })
    .await
    .expect("the agent's own packets reach the caller again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervisor_listens_then_whispers_to_the_agent_then_barges() {
    let s = supervision(32620, PCMU).await;
    let room = Room::start(&Handle::current());
    let _caller = room.join(s.call.clone(), Leg::A, MixMode::Normal).unwrap();
    let agent = room.join(s.call.clone(), Leg::B, MixMode::Normal).unwrap();
    let sup = room.join(s.sup.clone(), Leg::A, MixMode::Listen).unwrap();

    // Listen: hears both, heard by none.
    s.supervisor
        .assert_hears("supervisor", &[CALLER_HZ, AGENT_HZ])
        .await;
    s.caller.assert_hears("caller", &[AGENT_HZ]).await;
    s.agent.assert_hears("agent", &[CALLER_HZ]).await;

    // Whisper to the agent: the agent hears the supervisor, the caller does not.
    room.set_mode(sup, MixMode::Whisper { to: agent }).unwrap();
    s.agent
        .assert_hears("agent", &[CALLER_HZ, SUPERVISOR_HZ])
        .await;
    s.caller.assert_hears("caller", &[AGENT_HZ]).await;
    s.supervisor
        .assert_hears("supervisor", &[CALLER_HZ, AGENT_HZ])
        .await;

    // Barge: all three.
    room.set_mode(sup, MixMode::Barge).unwrap();
    assert_eq!(
        room.participants()
            .iter()
            .find(|p| p.id == sup)
            .map(|p| p.mode),
        Some(MixMode::Barge)
    );
    s.caller
        .assert_hears("caller", &[AGENT_HZ, SUPERVISOR_HZ])
        .await;
    s.agent
        .assert_hears("agent", &[CALLER_HZ, SUPERVISOR_HZ])
        .await;
    s.supervisor
        .assert_hears("supervisor", &[CALLER_HZ, AGENT_HZ])
        .await;

    // A prompt played into the supervisor's leg ends the room's stream there; rejoin reopens it.
    s.sup.play(Leg::A, Pcm::new(8000, vec![0; 800]), 1, 5);
    timeout(GENEROUS, async {
        while room.participants().iter().any(|p| p.id == sup && p.live) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the play ends the room's stream");
    room.rejoin(sup).unwrap();
    s.supervisor
        .assert_hears("supervisor", &[CALLER_HZ, AGENT_HZ])
        .await;

    room.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opus_participant_mixes_with_pcmu_ones() {
    let s = supervision(32630, OPUS).await;
    let room = Room::start(&Handle::current());
    room.join(s.call.clone(), Leg::A, MixMode::Normal).unwrap();
    room.join(s.call.clone(), Leg::B, MixMode::Normal).unwrap();
    room.join(s.sup.clone(), Leg::A, MixMode::Barge).unwrap();
    s.supervisor
        .assert_hears("opus supervisor", &[CALLER_HZ, AGENT_HZ])
        .await;
    s.caller
        .assert_hears("caller", &[AGENT_HZ, SUPERVISOR_HZ])
        .await;
    s.agent
        .assert_hears("agent", &[CALLER_HZ, SUPERVISOR_HZ])
        .await;
    drop(room);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_narrowband_room_runs_at_8khz() {
    assert_eq!(
        Room::start_with_rate(&Handle::current(), 11025).err(),
        Some(RoomError::Rate(11025))
    );
    let s = supervision(32640, PCMU).await;
    let room = Room::start_with_rate(&Handle::current(), 8000).unwrap();
    assert_eq!(room.rate(), 8000);
    room.join(s.call.clone(), Leg::A, MixMode::Normal).unwrap();
    room.join(s.call.clone(), Leg::B, MixMode::Normal).unwrap();
    room.join(s.sup.clone(), Leg::A, MixMode::Listen).unwrap();
    s.supervisor
        .assert_hears("supervisor", &[CALLER_HZ, AGENT_HZ])
        .await;
    s.caller.assert_hears("caller", &[AGENT_HZ]).await;
    s.agent.assert_hears("agent", &[CALLER_HZ]).await;
}
