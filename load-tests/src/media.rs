//! The generator's media: a fixed pool of threads, each with one UDP socket shared by all its
//! calls, sending one G.711 packet per call every 20 ms and receiving the far side's. Streams
//! are told apart by SSRC (learned per remote address on the first packet). Per call: loss,
//! jitter (RFC 3550), one-way delay in echo mode, and an E-model MOS when the call stops.

use crate::agent::MediaEvent;
use std::collections::{HashMap, VecDeque};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_media::codec::g711::{linear_to_alaw, linear_to_ulaw};
use switchboard_media::dtmf::{Digit, EventGenerator, EventReceiver};
use switchboard_media::quality::{CodecImpairment, ReceiverStats};
use switchboard_media::rtp::RtpHeader;

/// The payload type offered for telephone-event (RFC 4733).
const EVENT_PT: u8 = 101;
/// A digit lasts this long, with this gap before the next one, in 20 ms packets.
const DIGIT_PACKETS: u64 = 5;
const GAP_PACKETS: u64 = 3;

/// One packet every 20 ms: 160 samples at 8 kHz.
const PTIME: Duration = Duration::from_millis(20);
const SAMPLES: usize = 160;

/// What the media side does with a call's audio.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaMode {
    /// Send the audio loop and count what comes back.
    Play,
    /// Send every packet received straight back (uas); the caller then measures the round
    /// trip from its own returning packets.
    Echo,
}

/// Media counters summed over the pool, updated as calls stop.
#[derive(Debug, Default)]
pub struct MediaTotals {
    /// Streams ended.
    pub streams: AtomicU64,
    /// RTP packets sent.
    pub sent: AtomicU64,
    /// RTP packets received.
    pub received: AtomicU64,
    /// Packets the far side's sequence numbers say were lost.
    pub lost: AtomicU64,
    /// Sum of per-stream MOS × 1000 (for the mean).
    pub mos_milli_sum: AtomicU64,
    /// Lowest per-stream MOS × 1000 (u64::MAX until a stream ends).
    pub mos_milli_min: AtomicU64,
    /// Sum of per-stream jitter in µs.
    pub jitter_us_sum: AtomicU64,
    /// Streams with any loss.
    pub streams_with_loss: AtomicU64,
    /// Highest per-stream loss in ppm.
    pub worst_loss_ppm: AtomicU64,
    /// RFC 4733 digits sent.
    pub dtmf_sent: AtomicU64,
    /// RFC 4733 digits received, by key (0-9, *, #, A-D in RFC 4733 event order).
    pub dtmf_received: [AtomicU64; 16],
}

impl MediaTotals {
    /// Fresh totals.
    pub fn new() -> MediaTotals {
        MediaTotals {
            mos_milli_min: AtomicU64::new(u64::MAX),
            ..MediaTotals::default()
        }
    }

    /// Streams ended so far and the sum of their MOS × 1000, read together for per-second
    /// means.
    pub fn mos_sum(&self) -> (u64, u64) {
        (self.streams.load(Relaxed), self.mos_milli_sum.load(Relaxed))
    }

    /// The digits received, as (key, count) for the keys seen.
    pub fn digits_received(&self) -> Vec<(char, u64)> {
        self.dtmf_received
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let n = c.load(Relaxed);
                let d = Digit::from_event(i as u8)?;
                (n > 0).then_some((d.as_char(), n))
            })
            .collect()
    }
}

/// The audio every stream plays: one G.711 loop per payload type.
#[derive(Clone, Debug)]
pub struct Audio {
    pcmu: Arc<Vec<u8>>,
    pcma: Arc<Vec<u8>>,
}

impl Audio {
    /// Encodes 8 kHz mono samples (at least one packet's worth; shorter input is repeated).
    pub fn from_samples(samples: &[i16]) -> Audio {
        let mut s: Vec<i16> = if samples.is_empty() {
            vec![0; SAMPLES]
        } else {
            samples.to_vec()
        };
        while s.len() < SAMPLES {
            s.extend_from_within(..);
        }
        s.truncate(s.len() / SAMPLES * SAMPLES);
        Audio {
            pcmu: Arc::new(s.iter().map(|x| linear_to_ulaw(*x)).collect()),
            pcma: Arc::new(s.iter().map(|x| linear_to_alaw(*x)).collect()),
        }
    }

    /// A 2 s test signal: a 440 Hz tone, then 880 Hz, at −12 dBFS.
    pub fn test_tone() -> Audio {
        let mut s = switchboard_media::signal::sine(440.0, -12.0, 8000, 8000);
        s.extend(switchboard_media::signal::sine(880.0, -12.0, 8000, 8000));
        Audio::from_samples(&s)
    }

    /// Reads a WAV file: mono, 8 kHz, 16-bit PCM.
    pub fn from_wav(path: &std::path::Path) -> Result<Audio, String> {
        let mut r = hound::WavReader::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let spec = r.spec();
        if spec.channels != 1 || spec.sample_rate != 8000 || spec.bits_per_sample != 16 {
            return Err(format!(
                "{}: need mono 8 kHz 16-bit PCM (e.g. sox in.wav -r 8000 -c 1 -b 16 out.wav)",
                path.display()
            ));
        }
        let samples: Result<Vec<i16>, _> = r.samples::<i16>().collect();
        let samples = samples.map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Audio::from_samples(&samples))
    }

    fn payload(&self, pt: u8, packet: u64) -> &[u8] {
        let a = if pt == 8 { &self.pcma } else { &self.pcmu };
        let frames = (a.len() / SAMPLES).max(1) as u64;
        let start = (packet % frames) as usize * SAMPLES;
        a.get(start..start + SAMPLES).unwrap_or(&[])
    }
}

/// A stream key: (worker, call number in that worker).
type Key = (usize, u64);

struct Stream {
    remote: SocketAddr,
    payload_type: u8,
    ssrc: u32,
    seq: u16,
    ts: u32,
    packets: u64,
    next_send: Instant,
    started: Instant,
    rx: ReceiverStats,
    received: u64,
    /// Round trips of our own packets coming back (echo), µs.
    rtt_sum_us: u64,
    rtt_count: u64,
    /// Telephone-event packets to send: (packet index, timestamp, marker, payload).
    events: VecDeque<(u64, u32, bool, [u8; 4])>,
    /// Digits detected in what arrives.
    digits: EventReceiver,
}

enum Cmd {
    Event(usize, MediaEvent),
}

/// A handle to one media thread: where its socket is, and how to tell it about calls.
#[derive(Clone, Debug)]
pub struct MediaHandle {
    /// The address offered in SDP.
    pub addr: SocketAddr,
    tx: Sender<Cmd>,
}

impl MediaHandle {
    /// Forwards an agent's media event for worker `worker`.
    pub fn send(&self, worker: usize, ev: MediaEvent) {
        // A closed channel means the thread has ended: the run is over.
        let _ = self.tx.send(Cmd::Event(worker, ev));
    }
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cmd")
    }
}

/// The pool: `n` threads on `ip`.
pub struct MediaPool {
    /// One handle per thread.
    pub handles: Vec<MediaHandle>,
    threads: Vec<std::thread::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    /// Totals, updated as streams end.
    pub totals: Arc<MediaTotals>,
}

impl MediaPool {
    /// Starts `n` media threads with sockets on `ip`.
    pub fn start(
        n: usize,
        ip: std::net::IpAddr,
        mode: MediaMode,
        audio: Audio,
    ) -> Result<MediaPool, String> {
        let stop = Arc::new(AtomicBool::new(false));
        let totals = Arc::new(MediaTotals::new());
        let mut handles = Vec::new();
        let mut threads = Vec::new();
        for i in 0..n.max(1) {
            let socket = UdpSocket::bind(SocketAddr::new(ip, 0))
                .map_err(|e| format!("media socket on {ip}: {e}"))?;
            crate::sockbuf::grow(
                socket2::SockRef::from(&socket),
                crate::sockbuf::BUFFER_BYTES,
            );
            socket
                .set_nonblocking(true)
                .map_err(|e| format!("media socket: {e}"))?;
            let addr = socket
                .local_addr()
                .map_err(|e| format!("media socket: {e}"))?;
            let (tx, rx) = mpsc::channel();
            let (stop2, totals2, audio2) = (Arc::clone(&stop), Arc::clone(&totals), audio.clone());
            let t = std::thread::Builder::new()
                .name(format!("media-{i}"))
                .spawn(move || media_thread(i, socket, rx, mode, audio2, stop2, totals2))
                .map_err(|e| format!("media thread: {e}"))?;
            handles.push(MediaHandle { addr, tx });
            threads.push(t);
        }
        Ok(MediaPool {
            handles,
            threads,
            stop,
            totals,
        })
    }

    /// Stops every thread (streams still live are accounted as they are) and waits.
    pub fn stop(self) {
        self.stop.store(true, Relaxed);
        drop(self.handles);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn now_us(origin: Instant) -> u64 {
    origin.elapsed().as_micros() as u64
}

fn media_thread(
    index: usize,
    socket: UdpSocket,
    rx: Receiver<Cmd>,
    mode: MediaMode,
    audio: Audio,
    stop: Arc<AtomicBool>,
    totals: Arc<MediaTotals>,
) {
    let origin = Instant::now();
    let mut streams: HashMap<Key, Stream> = HashMap::new();
    let mut by_ssrc: HashMap<u32, Key> = HashMap::new();
    let mut own: HashMap<u32, Key> = HashMap::new();
    let mut unbound: HashMap<SocketAddr, VecDeque<Key>> = HashMap::new();
    let mut schedule: VecDeque<Key> = VecDeque::new();
    let mut buf = [0u8; 2048];
    let mut packet = Vec::with_capacity(12 + SAMPLES);
    // SSRCs must differ between threads and processes: streams are told apart by SSRC.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut seed: u32 = (0x9e37_79b9 ^ std::process::id() ^ nanos)
        .wrapping_mul(0x85eb_ca6b)
        .wrapping_add(index as u32 * 0x27d4_eb2f)
        | 1;
    loop {
        // Commands.
        loop {
            match rx.try_recv() {
                Ok(Cmd::Event(
                    w,
                    MediaEvent::Start {
                        call,
                        remote,
                        payload_type,
                    },
                )) => {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    let key = (w, call);
                    let now = Instant::now();
                    let s = Stream {
                        remote,
                        payload_type,
                        ssrc: seed,
                        seq: (seed >> 16) as u16,
                        ts: seed.rotate_left(7),
                        packets: 0,
                        next_send: now,
                        started: now,
                        rx: ReceiverStats::new(8000),
                        received: 0,
                        rtt_sum_us: 0,
                        rtt_count: 0,
                        events: VecDeque::new(),
                        digits: EventReceiver::new(200),
                    };
                    own.insert(s.ssrc, key);
                    unbound.entry(remote).or_default().push_back(key);
                    if mode == MediaMode::Play {
                        schedule.push_back(key);
                    }
                    streams.insert(key, s);
                }
                Ok(Cmd::Event(w, MediaEvent::Dtmf { call, digits })) => {
                    if let Some(s) = streams.get_mut(&(w, call)) {
                        let sent = queue_digits(s, &digits);
                        totals.dtmf_sent.fetch_add(sent, Relaxed);
                    }
                }
                Ok(Cmd::Event(w, MediaEvent::Stop { call })) => {
                    if let Some(s) = streams.remove(&(w, call)) {
                        own.remove(&s.ssrc);
                        if let Some(r) = s.rx.ssrc() {
                            by_ssrc.remove(&r);
                        }
                        if let Some(q) = unbound.get_mut(&s.remote) {
                            q.retain(|k| *k != (w, call));
                            if q.is_empty() {
                                unbound.remove(&s.remote);
                            }
                        }
                        account(&totals, &s);
                    }
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    for s in streams.values() {
                        account(&totals, s);
                    }
                    return;
                }
            }
        }
        if stop.load(Relaxed) {
            for s in streams.values() {
                account(&totals, s);
            }
            return;
        }
        // Receive.
        for _ in 0..4096 {
            let (n, from) = match socket.recv_from(&mut buf) {
                Ok(x) => x,
                Err(_) => break,
            };
            let Some(data) = buf.get(..n) else { break };
            let Some(h) = RtpHeader::parse(data) else {
                continue;
            };
            let arrival = now_us(origin);
            if let Some(key) = own.get(&h.ssrc).copied() {
                // Our own packet back (the far side echoes): a round trip.
                if let Some(s) = streams.get_mut(&key) {
                    let sent_at = u64::from(h.timestamp.wrapping_sub(s.ts_origin())) * 125;
                    let since_start = now_us(origin).saturating_sub(
                        s.started.saturating_duration_since(origin).as_micros() as u64,
                    );
                    s.rtt_sum_us += since_start.saturating_sub(sent_at);
                    s.rtt_count += 1;
                    s.received += 1;
                    s.rx.on_packet(h.ssrc, h.sequence, h.timestamp, arrival);
                }
                continue;
            }
            let key = match by_ssrc.get(&h.ssrc) {
                Some(k) => Some(*k),
                None => {
                    let k = unbound.get_mut(&from).and_then(VecDeque::pop_front);
                    if let Some(k) = k {
                        by_ssrc.insert(h.ssrc, k);
                    }
                    k
                }
            };
            let Some(key) = key else { continue };
            if let Some(s) = streams.get_mut(&key) {
                s.received += 1;
                s.rx.on_packet(h.ssrc, h.sequence, h.timestamp, arrival);
                if h.payload_type == EVENT_PT {
                    let marker = data.get(1).is_some_and(|b| b & 0x80 != 0);
                    let payload = data.get(12..).unwrap_or(&[]);
                    let _ = s.digits.push(h.timestamp, marker, payload, arrival / 1000);
                    while let Some(ev) = s.digits.poll_event() {
                        let slot = usize::from(ev.digit.event());
                        if let Some(c) = totals.dtmf_received.get(slot) {
                            c.fetch_add(1, Relaxed);
                        }
                    }
                }
                if mode == MediaMode::Echo && socket.send_to(data, s.remote).is_ok() {
                    totals.sent.fetch_add(1, Relaxed);
                }
            }
        }
        // Send what is due.
        let now = Instant::now();
        let mut sent = 0u64;
        for _ in 0..schedule.len() {
            let Some(key) = schedule.pop_front() else {
                break;
            };
            let Some(s) = streams.get_mut(&key) else {
                continue;
            };
            while s.next_send <= now {
                let mut evented = false;
                while s.events.front().is_some_and(|e| e.0 <= s.packets) {
                    let Some((_, ts, marker, payload)) = s.events.pop_front() else {
                        break;
                    };
                    packet.clear();
                    packet.push(0x80);
                    packet.push(EVENT_PT | if marker { 0x80 } else { 0 });
                    packet.extend_from_slice(&s.seq.to_be_bytes());
                    packet.extend_from_slice(&ts.to_be_bytes());
                    packet.extend_from_slice(&s.ssrc.to_be_bytes());
                    packet.extend_from_slice(&payload);
                    let _ = socket.send_to(&packet, s.remote);
                    s.seq = s.seq.wrapping_add(1);
                    sent += 1;
                    evented = true;
                }
                if !evented {
                    packet.clear();
                    packet.push(0x80);
                    packet.push(s.payload_type & 0x7f);
                    packet.extend_from_slice(&s.seq.to_be_bytes());
                    packet.extend_from_slice(&s.ts.to_be_bytes());
                    packet.extend_from_slice(&s.ssrc.to_be_bytes());
                    packet.extend_from_slice(audio.payload(s.payload_type, s.packets));
                    let _ = socket.send_to(&packet, s.remote);
                    s.seq = s.seq.wrapping_add(1);
                    sent += 1;
                }
                s.ts = s.ts.wrapping_add(SAMPLES as u32);
                s.packets += 1;
                s.next_send += PTIME;
            }
            schedule.push_back(key);
        }
        totals.sent.fetch_add(sent, Relaxed);
        // Sleep to the next 1 ms boundary or until a packet arrives.
        crate::worker::wait_readable(&socket, Duration::from_millis(1));
    }
}

/// Schedules `digits` as telephone-event packets from the stream's next packet on; returns
/// how many digits were queued.
fn queue_digits(s: &mut Stream, digits: &str) -> u64 {
    let gen = EventGenerator::default();
    let mut at = s.packets + 1 + s.events.back().map_or(0, |e| e.0.saturating_sub(s.packets));
    let mut n = 0;
    for d in digits.chars().filter_map(Digit::from_char) {
        let start_ts =
            s.ts.wrapping_add(((at - s.packets) as u32).wrapping_mul(SAMPLES as u32));
        let ms = (DIGIT_PACKETS * PTIME.as_millis() as u64) as u32;
        for p in gen.press(d, start_ts, ms) {
            let index = at + u64::from(p.send_offset) / SAMPLES as u64;
            s.events
                .push_back((index, p.timestamp, p.marker, p.payload_bytes()));
        }
        at += DIGIT_PACKETS + GAP_PACKETS;
        n += 1;
    }
    n
}

impl Stream {
    /// The RTP timestamp of the stream's first packet.
    fn ts_origin(&self) -> u32 {
        self.ts
            .wrapping_sub((self.packets as u32).wrapping_mul(SAMPLES as u32))
    }
}

fn account(totals: &MediaTotals, s: &Stream) {
    totals.streams.fetch_add(1, Relaxed);
    totals.received.fetch_add(s.received, Relaxed);
    let lost = s.rx.lost().max(0) as u64;
    totals.lost.fetch_add(lost, Relaxed);
    if lost > 0 {
        totals.streams_with_loss.fetch_add(1, Relaxed);
        let ppm = (s.rx.loss_percent() * 10_000.0) as u64;
        totals.worst_loss_ppm.fetch_max(ppm, Relaxed);
    }
    // Without echo there is no round trip to measure: the E-model gets 0 ms of delay.
    let one_way_ms = s
        .rtt_sum_us
        .checked_div(s.rtt_count)
        .map_or(0.0, |rtt| rtt as f64 / 2000.0);
    let q = s.rx.estimate(CodecImpairment::G711_PLC, one_way_ms);
    let mos = (q.mos * 1000.0) as u64;
    totals.mos_milli_sum.fetch_add(mos, Relaxed);
    totals.mos_milli_min.fetch_min(mos, Relaxed);
    totals
        .jitter_us_sum
        .fetch_add((s.rx.jitter_ms() * 1000.0) as u64, Relaxed);
}
