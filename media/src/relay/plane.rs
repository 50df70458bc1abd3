//! The media-plane state a session shares between its tasks: per-leg configuration (format,
//! route, detection, taps) published with a generation counter, the engine's own outgoing RTP
//! stream per leg, the event channel; and the per-socket packet logic of the RTP pumps
//! ([`PumpMedia`]): DTMF detection, transcoding, echo, taps.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use socket2::{SockAddr, SockRef};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::secure::{Egress, Ingress, LegSrtp};
use super::tap::TapPacket;
use super::{DtmfSource, Leg, LegFormat, MediaEvent, Route};
use crate::codec::{Codec, CodecKind};
use crate::dtmf::{EventReceiver, InbandDetector};
use crate::jitter::Packet;
use crate::quality::ReceiverStats;
use crate::rtp::RtpHeader;
use crate::transcode::{JitterTranscoder, Transcoded, Transcoder};

/// Capacity of the event channel.
pub(super) const EVENTS: usize = 256;

/// A gap in an outgoing stream longer than this moves its timestamp on by the wall time.
const TS_RESYNC: Duration = Duration::from_millis(200);

/// Per-leg configuration, as set through the session's methods.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct LegCfg {
    pub format: Option<LegFormat>,
    pub route: Route,
    pub inband: bool,
    /// Packets received on the leg go to the tap task (recording, subscribers).
    pub tap: bool,
}

/// The configuration both pumps read when the generation changes.
#[derive(Clone, Debug, Default)]
pub(super) struct PlaneConfig {
    pub legs: [LegCfg; 2],
    pub tap: Option<mpsc::Sender<TapPacket>>,
    /// Per leg: its SRTP keys, when the leg is secured.
    pub srtp: [Option<std::sync::Arc<LegSrtp>>; 2],
}

/// The engine's own RTP stream into a leg (players, DTMF, transcoded media): one SSRC,
/// sequence numbers and timestamps that continue across plays.
#[derive(Debug)]
pub(super) struct OutStream {
    pub ssrc: u32,
    seq: u16,
    next_ts: u32,
    /// When the packet carrying `next_ts` is nominally due.
    next_at: Option<Instant>,
}

impl OutStream {
    fn new() -> OutStream {
        let r = random_u64();
        OutStream {
            ssrc: r as u32,
            seq: (r >> 32) as u16,
            next_ts: (r >> 48) as u32 * 7919,
            next_at: None,
        }
    }

    /// Moves the timestamp on by the wall time of a long pause (a silence between plays), so
    /// the far end's jitter buffer sees time pass; returns the timestamp of a packet sent now.
    pub fn sync(&mut self, now: Instant, clock: u32) -> u32 {
        if let Some(at) = self.next_at {
            let gap = now.saturating_duration_since(at);
            if gap > TS_RESYNC {
                let units = gap.as_micros() * u128::from(clock) / 1_000_000;
                // Modulo 2^32, as RTP timestamps are.
                self.next_ts = self.next_ts.wrapping_add(units as u32);
                self.next_at = Some(now);
            }
        }
        self.next_ts
    }

    /// Sequence number and timestamp of an audio packet of `step` timestamp units sent now.
    pub fn audio(&mut self, now: Instant, clock: u32, step: u32) -> (u16, u32) {
        let ts = self.sync(now, clock);
        let seq = self.next_seq();
        self.next_ts = ts.wrapping_add(step);
        let frame = Duration::from_micros(u64::from(step) * 1_000_000 / u64::from(clock.max(1)));
        self.next_at = Some(now + frame);
        (seq, ts)
    }

    /// The next sequence number (for a telephone-event packet, whose timestamp is the event's).
    pub fn next_seq(&mut self) -> u16 {
        let s = self.seq;
        self.seq = self.seq.wrapping_add(1);
        s
    }

    /// After a telephone event that started at `start_ts`/`start` and lasted `units`/`d`.
    pub fn after_event(&mut self, start_ts: u32, units: u32, start: Instant, d: Duration) {
        self.next_ts = start_ts.wrapping_add(units);
        self.next_at = Some(start + d);
    }
}

/// Per-leg shared media state.
#[derive(Debug)]
pub(super) struct LegPlane {
    /// Tasks injecting the engine's media into this leg (players, DTMF senders): while non-zero,
    /// bridged and echoed media toward the leg is not sent.
    pub injecting: AtomicU32,
    /// DTMF senders running on the leg: a player skips its frames meanwhile.
    pub dtmf_busy: AtomicU32,
    pub out: Mutex<OutStream>,
    /// Interarrival jitter of the RTP received on the leg, ms, as `f64` bits.
    pub jitter_ms: AtomicU64,
    /// SRTP protection of what is sent into the leg.
    pub egress: Egress,
}

impl Default for LegPlane {
    fn default() -> Self {
        LegPlane {
            injecting: AtomicU32::new(0),
            dtmf_busy: AtomicU32::new(0),
            out: Mutex::new(OutStream::new()),
            jitter_ms: AtomicU64::new(0),
            egress: Egress::default(),
        }
    }
}

/// The media plane of a session.
#[derive(Debug)]
pub(super) struct Plane {
    pub gen: AtomicU64,
    pub config: Mutex<PlaneConfig>,
    pub events: mpsc::Sender<MediaEvent>,
    pub events_dropped: AtomicU64,
    pub legs: [LegPlane; 2],
}

impl Plane {
    pub fn new(events: mpsc::Sender<MediaEvent>) -> Plane {
        Plane {
            gen: AtomicU64::new(0),
            config: Mutex::new(PlaneConfig::default()),
            events,
            events_dropped: AtomicU64::new(0),
            legs: Default::default(),
        }
    }

    pub fn config(&self) -> MutexGuard<'_, PlaneConfig> {
        // Every update is a plain field store: a poisoned lock still holds a consistent value.
        self.config.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes the configuration and tells the pumps.
    pub fn update(&self, f: impl FnOnce(&mut PlaneConfig)) {
        let mut c = self.config();
        f(&mut c);
        self.gen.fetch_add(1, Ordering::Release);
    }

    pub fn format(&self, leg: Leg) -> Option<LegFormat> {
        self.config().legs[leg.idx()].format
    }

    pub fn out(&self, leg: Leg) -> MutexGuard<'_, OutStream> {
        // Counters only: consistent even if a holder panicked.
        self.legs[leg.idx()]
            .out
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues an event for the call actor; never blocks (a full channel drops and counts).
    pub fn emit(&self, event: MediaEvent) {
        if let Err(mpsc::error::TrySendError::Full(e)) = self.events.try_send(event) {
            self.events_dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(event = ?e, "media event channel full: event dropped");
        }
    }
}

/// Holds a count up while a task injects media into a leg; releases it when the task ends,
/// including when it is aborted (the future is dropped).
pub(super) struct CountGuard<'a>(&'a AtomicU32);

impl<'a> CountGuard<'a> {
    pub fn new(count: &'a AtomicU32) -> CountGuard<'a> {
        count.fetch_add(1, Ordering::AcqRel);
        CountGuard(count)
    }
}

impl Drop for CountGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A random 64-bit value (std's randomly keyed hasher; good enough for SSRCs).
pub(super) fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.finish()
}

/// Appends an RTP packet (no CSRC, no extension) to `out`.
pub(super) fn write_rtp(
    out: &mut Vec<u8>,
    marker: bool,
    pt: u8,
    seq: u16,
    ts: u32,
    ssrc: u32,
    payload: &[u8],
) {
    out.push(0x80);
    out.push(if marker { 0x80 } else { 0 } | (pt & 0x7f));
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&ts.to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.extend_from_slice(payload);
}

/// Where the payload of an RTP packet lies (after CSRCs and the header extension, before
/// padding); `None` if the lengths do not add up.
pub(super) fn payload_range(p: &[u8]) -> Option<std::ops::Range<usize>> {
    let first = *p.first()?;
    let mut start = 12 + 4 * usize::from(first & 0x0f);
    if first & 0x10 != 0 {
        let ext = p.get(start + 2..start + 4)?;
        start += 4 + 4 * usize::from(u16::from_be_bytes([ext[0], ext[1]]));
    }
    let mut end = p.len();
    if first & 0x20 != 0 {
        end = end.checked_sub(usize::from(*p.last()?))?;
    }
    (start <= end).then_some(start..end)
}

/// Sends a datagram directly on the socket (no readiness wait: a full buffer drops it).
pub(super) fn send(sock: &UdpSocket, dst: Option<SocketAddr>, packet: &[u8]) -> bool {
    match dst {
        Some(dst) => SockRef::from(sock)
            .send_to(packet, &SockAddr::from(dst))
            .is_ok(),
        None => false,
    }
}

/// Sends a datagram into leg `to`: as is on a plain leg, through the leg's SRTP context on a
/// secured one (a packet that cannot be protected is not sent).
pub(super) fn send_leg(
    plane: &Plane,
    to: Leg,
    sock: &UdpSocket,
    dst: Option<SocketAddr>,
    packet: &[u8],
) -> bool {
    let egress = &plane.legs[to.idx()].egress;
    if !egress.is_on() {
        return send(sock, dst, packet);
    }
    if dst.is_none() {
        return false;
    }
    egress.protect(packet).is_some_and(|p| send(sock, dst, &p))
}

/// How audio received on a leg goes out to the other leg in `Bridge`.
enum AudioOut {
    /// Untouched (formats equal or unknown).
    PassThrough,
    /// Same payload format, another payload type: the PT byte is rewritten.
    RewritePt(u8),
    /// Decode → encode into the other leg's format, on the engine's own stream to that leg,
    /// through a jitter buffer played out on the pump's timer.
    Transcode(Box<Transcode>),
}

struct Transcode {
    jt: JitterTranscoder,
    to: LegFormat,
    out: Vec<Transcoded>,
    /// Input event timestamp → output event timestamp, for forwarded telephone-events.
    event_map: Option<(u32, u32)>,
}

/// In-band DTMF detection on the audio received from a leg.
struct Inband {
    kind: CodecKind,
    decoder: Box<dyn Codec>,
    detector: InbandDetector,
    pcm: Vec<i16>,
}

/// What a pump needs to send: its sockets and how to reach both legs.
pub(super) struct Sends<'a> {
    /// The socket the packet came in on (echo goes back out of it).
    pub rx: &'a UdpSocket,
    /// The other leg's socket of the same kind.
    pub tx: &'a UdpSocket,
    pub remote: &'a (dyn Fn(Leg) -> Option<SocketAddr> + Sync),
}

/// What happened to one received packet, for the counters.
#[derive(Default)]
pub(super) struct Sent {
    pub forwarded: u64,
    pub dropped: u64,
}

impl Sent {
    fn add(&mut self, ok: bool) {
        if ok {
            self.forwarded += 1;
        } else {
            self.dropped += 1;
        }
    }
}

/// The per-socket media state of an RTP pump: its copy of the configuration and whatever the
/// configuration asks of it (detectors, a transcoder). Everything here is touched by one task.
pub(super) struct PumpMedia {
    leg: Leg,
    /// An RTP pump (an RTCP pump only needs the route).
    rtp: bool,
    gen: u64,
    mine: LegCfg,
    theirs: LegCfg,
    audio: AudioOut,
    tap: Option<mpsc::Sender<TapPacket>>,
    events: EventReceiver,
    event_ssrc: Option<u32>,
    inband: Option<Inband>,
    stats: ReceiverStats,
    stats_clock: u32,
    buf: Vec<u8>,
    /// SRTP unprotection of what the leg sends, when it is secured.
    pub srtp: Ingress,
}

impl PumpMedia {
    pub fn new(leg: Leg, rtp: bool) -> PumpMedia {
        PumpMedia {
            leg,
            rtp,
            gen: 0,
            mine: LegCfg::default(),
            theirs: LegCfg::default(),
            audio: AudioOut::PassThrough,
            tap: None,
            events: EventReceiver::new(1000),
            event_ssrc: None,
            inband: None,
            stats: ReceiverStats::new(8000),
            stats_clock: 8000,
            buf: Vec::new(),
            srtp: Ingress::default(),
        }
    }

    /// The route of this leg's packets (after [`PumpMedia::refresh`]).
    pub fn route(&self) -> Route {
        self.mine.route
    }

    /// Picks up a configuration change: one atomic load when nothing changed.
    pub fn refresh(&mut self, plane: &Plane) {
        let gen = plane.gen.load(Ordering::Acquire);
        if gen == self.gen {
            return;
        }
        let (mine, theirs, tap) = {
            let c = plane.config();
            self.srtp.refresh(c.srtp[self.leg.idx()].as_ref());
            (
                c.legs[self.leg.idx()],
                c.legs[self.leg.other().idx()],
                c.tap.clone(),
            )
        };
        self.gen = gen;
        if !self.rtp {
            self.mine.route = mine.route;
            return;
        }
        if mine.format != self.mine.format || theirs.format != self.theirs.format {
            self.audio = audio_out(mine.format, theirs.format);
        }
        if mine.format != self.mine.format || mine.inband != self.mine.inband {
            self.inband = mine
                .format
                .filter(|_| mine.inband)
                .and_then(|f| inband(f.codec));
        }
        let clock = mine.format.map_or(8000, |f| f.codec.clock_rate());
        if clock != self.stats_clock {
            self.stats = ReceiverStats::new(clock);
            self.stats_clock = clock;
        }
        self.mine = mine;
        self.theirs = theirs;
        self.tap = tap.filter(|_| mine.tap);
    }

    /// Everything for one RTP packet received on the leg: quality, DTMF, taps, then the route.
    pub fn on_rtp(
        &mut self,
        plane: &Plane,
        h: &RtpHeader,
        packet: &mut [u8],
        arrival_ns: u64,
        io: &Sends<'_>,
    ) -> Sent {
        let leg = self.leg;
        let mut sent = Sent::default();
        self.stats
            .on_packet(h.ssrc, h.sequence, h.timestamp, arrival_ns / 1000);
        plane.legs[leg.idx()]
            .jitter_ms
            .store(self.stats.jitter_ms().to_bits(), Ordering::Relaxed);
        let marker = packet.get(1).is_some_and(|b| b & 0x80 != 0);
        let range = payload_range(packet);
        let is_event = self
            .mine
            .format
            .is_some_and(|f| f.dtmf_payload_type == Some(h.payload_type));
        if is_event {
            if let Some(r) = range.clone() {
                self.on_event(plane, h, marker, &packet[r], arrival_ns);
            }
        } else if let Some(r) = range.clone() {
            if self.inband.is_some() || self.tap.is_some() {
                self.on_audio(plane, h, marker, &packet[r], arrival_ns);
            }
        }
        match self.mine.route {
            Route::Local => {}
            Route::Echo => {
                if plane.legs[leg.idx()].injecting.load(Ordering::Acquire) == 0 {
                    sent.add(send_leg(plane, leg, io.rx, (io.remote)(leg), packet));
                }
            }
            Route::Bridge => {
                let to = leg.other();
                if plane.legs[to.idx()].injecting.load(Ordering::Acquire) != 0 {
                    return sent;
                }
                let dst = (io.remote)(to);
                if is_event {
                    self.bridge_event(plane, h, marker, packet, range, dst, io, &mut sent);
                } else {
                    let at = arrival_ns;
                    self.bridge_audio(plane, h, marker, packet, range, dst, io, &mut sent, at);
                }
            }
        }
        sent
    }

    fn on_event(
        &mut self,
        plane: &Plane,
        h: &RtpHeader,
        marker: bool,
        payload: &[u8],
        arrival_ns: u64,
    ) {
        let now_ms = arrival_ns / 1_000_000;
        if self.event_ssrc != Some(h.ssrc) {
            self.events.reset();
            self.event_ssrc = Some(h.ssrc);
        }
        // A malformed payload changes nothing.
        let _ = self.events.push(h.timestamp, marker, payload, now_ms);
        self.drain_events(plane, now_ms);
    }

    /// Reports finished presses (and closes one whose end packets were all lost).
    fn drain_events(&mut self, plane: &Plane, now_ms: u64) {
        self.events.handle_timeout(now_ms);
        let clock = self.stats_clock;
        while let Some(e) = self.events.poll_event() {
            plane.emit(MediaEvent::Dtmf {
                leg: self.leg,
                digit: e.digit,
                duration_ms: u32::try_from(e.duration_ms(clock)).unwrap_or(u32::MAX),
                source: DtmfSource::Rfc4733,
                at: Instant::now(),
            });
        }
    }

    fn on_audio(
        &mut self,
        plane: &Plane,
        h: &RtpHeader,
        marker: bool,
        payload: &[u8],
        arrival_ns: u64,
    ) {
        if self.events.active().is_some() {
            self.drain_events(plane, arrival_ns / 1_000_000);
        }
        let kind = match self.mine.format {
            Some(f) if f.payload_type == h.payload_type => Some(f.codec),
            Some(_) => None,
            None => CodecKind::from_static_payload_type(h.payload_type),
        };
        let Some(kind) = kind else { return };
        if let Some(d) = self.inband.as_mut().filter(|d| d.kind == kind) {
            d.pcm.clear();
            if d.decoder.decode(payload, &mut d.pcm).is_ok() {
                d.detector.push(&d.pcm);
            }
            let rate = u64::from(kind.sample_rate().max(1));
            while let Some(e) = d.detector.poll_event() {
                plane.emit(MediaEvent::Dtmf {
                    leg: self.leg,
                    digit: e.digit,
                    duration_ms: u32::try_from(e.duration * 1000 / rate).unwrap_or(u32::MAX),
                    source: DtmfSource::Inband,
                    at: Instant::now(),
                });
            }
        }
        if let Some(tap) = &self.tap {
            let p = TapPacket {
                leg: self.leg,
                kind,
                ssrc: h.ssrc,
                seq: h.sequence,
                timestamp: h.timestamp,
                marker,
                payload: payload.to_vec(),
                arrival_ms: arrival_ns / 1_000_000,
            };
            // A full tap queue loses the packet (the recording conceals it), never blocks.
            let _ = tap.try_send(p);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn bridge_audio(
        &mut self,
        plane: &Plane,
        h: &RtpHeader,
        marker: bool,
        packet: &mut [u8],
        range: Option<std::ops::Range<usize>>,
        dst: Option<SocketAddr>,
        io: &Sends<'_>,
        sent: &mut Sent,
        arrival_ns: u64,
    ) {
        let from_pt = self.mine.format.map(|f| f.payload_type);
        let now_ms = arrival_ns / 1_000_000;
        let to = self.leg.other();
        let due = match &mut self.audio {
            AudioOut::PassThrough => {
                sent.add(send_leg(plane, to, io.tx, dst, packet));
                false
            }
            AudioOut::RewritePt(pt) => {
                if Some(h.payload_type) == from_pt {
                    if let Some(b) = packet.get_mut(1) {
                        *b = (*b & 0x80) | *pt;
                    }
                }
                sent.add(send_leg(plane, to, io.tx, dst, packet));
                false
            }
            AudioOut::Transcode(t) => {
                let Some(r) = range.filter(|_| Some(h.payload_type) == from_pt) else {
                    return; // comfort noise or another codec: nothing to transcode it into
                };
                let packet = Packet {
                    ssrc: h.ssrc,
                    seq: h.sequence,
                    timestamp: h.timestamp,
                    marker,
                    payload: packet[r].to_vec(),
                };
                // Reordering, duplicates and losses are the jitter buffer's; frames leave on
                // the playout timer (`PumpMedia::on_playout`), or now if one is already due.
                t.jt.push(packet, now_ms);
                t.jt.poll_timeout().is_some_and(|at| at <= now_ms)
            }
        };
        if due {
            self.playout(plane, now_ms, dst, io, sent);
        }
    }

    /// When the transcoding playout wants [`PumpMedia::on_playout`] called, ms on the session's
    /// clock; `None` when not transcoding or while no audio comes (the pump then only waits
    /// for packets, as in pass-through).
    pub fn playout_at(&self) -> Option<u64> {
        match &self.audio {
            AudioOut::Transcode(t) => t.jt.poll_timeout(),
            _ => None,
        }
    }

    /// The playout timer fired at `now_ms`: plays the transcoded frames due into the other leg.
    pub fn on_playout(&mut self, plane: &Plane, now_ms: u64, io: &Sends<'_>) -> Sent {
        let mut sent = Sent::default();
        self.refresh(plane);
        let dst = (io.remote)(self.leg.other());
        self.playout(plane, now_ms, dst, io, &mut sent);
        sent
    }

    /// Runs the transcoding playout up to `now_ms` and sends what it gives, unless the route
    /// changed or a player holds the other leg (the frames are then dropped: time moves on).
    fn playout(
        &mut self,
        plane: &Plane,
        now_ms: u64,
        dst: Option<SocketAddr>,
        io: &Sends<'_>,
        sent: &mut Sent,
    ) {
        let AudioOut::Transcode(t) = &mut self.audio else {
            return;
        };
        t.out.clear();
        t.jt.handle_timeout(now_ms, &mut t.out);
        let to_leg = self.leg.other();
        let blocked = self.mine.route != Route::Bridge
            || plane.legs[to_leg.idx()].injecting.load(Ordering::Acquire) != 0;
        if t.out.is_empty() || blocked {
            return;
        }
        let to = t.to;
        let (clock, step) = (to.codec.clock_rate(), to.codec.timestamp_per_frame());
        let now = Instant::now();
        for frame in &t.out {
            let (seq, ts, ssrc) = {
                let mut o = plane.out(to_leg);
                let (seq, ts) = o.audio(now, clock, step);
                (seq, ts, o.ssrc)
            };
            self.buf.clear();
            let (m, pt) = (frame.marker, to.payload_type);
            write_rtp(&mut self.buf, m, pt, seq, ts, ssrc, &frame.payload);
            sent.add(send_leg(plane, to_leg, io.tx, dst, &self.buf));
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn bridge_event(
        &mut self,
        plane: &Plane,
        h: &RtpHeader,
        marker: bool,
        packet: &mut [u8],
        range: Option<std::ops::Range<usize>>,
        dst: Option<SocketAddr>,
        io: &Sends<'_>,
        sent: &mut Sent,
    ) {
        let to = self.leg.other();
        let Some(theirs) = self.theirs.format else {
            // The other leg's format is unknown: as is.
            sent.add(send_leg(plane, to, io.tx, dst, packet));
            return;
        };
        let Some(pt) = theirs.dtmf_payload_type else {
            return; // no telephone-event there: the call actor sends SIP INFO from our event
        };
        match &mut self.audio {
            AudioOut::Transcode(t) => {
                let Some(r) = range else { return };
                let mut payload = [0u8; 4];
                let Some(src) = packet.get(r).and_then(|p| p.first_chunk::<4>()) else {
                    return;
                };
                payload.copy_from_slice(src);
                // Durations are in the RTP clock, which differs between, e.g., Opus and PCMU.
                let (from_clock, to_clock) = (self.stats_clock, theirs.codec.clock_rate());
                if from_clock != to_clock {
                    let d = u64::from(u16::from_be_bytes([payload[2], payload[3]]));
                    let d = (d * u64::from(to_clock) / u64::from(from_clock.max(1))).min(0xffff);
                    payload[2..4].copy_from_slice(&(d as u16).to_be_bytes());
                }
                let now = Instant::now();
                let (seq, ts, ssrc) = {
                    let mut o = plane.out(self.leg.other());
                    let ts = match t.event_map {
                        Some((i, o)) if i == h.timestamp => o,
                        _ => {
                            let ts = o.sync(now, to_clock);
                            t.event_map = Some((h.timestamp, ts));
                            ts
                        }
                    };
                    (o.next_seq(), ts, o.ssrc)
                };
                self.buf.clear();
                write_rtp(&mut self.buf, marker, pt, seq, ts, ssrc, &payload);
                sent.add(send_leg(plane, to, io.tx, dst, &self.buf));
            }
            _ => {
                if h.payload_type != pt {
                    if let Some(b) = packet.get_mut(1) {
                        *b = (*b & 0x80) | pt;
                    }
                }
                sent.add(send_leg(plane, to, io.tx, dst, packet));
            }
        }
    }
}

fn audio_out(mine: Option<LegFormat>, theirs: Option<LegFormat>) -> AudioOut {
    let (Some(a), Some(b)) = (mine, theirs) else {
        return AudioOut::PassThrough;
    };
    if a.codec.same_payload_format(b.codec) {
        return if a.payload_type == b.payload_type {
            AudioOut::PassThrough
        } else {
            AudioOut::RewritePt(b.payload_type & 0x7f)
        };
    }
    match Transcoder::new(a.codec, b.codec) {
        Ok(t) => AudioOut::Transcode(Box::new(Transcode {
            jt: JitterTranscoder::new(t),
            to: b,
            out: Vec::with_capacity(2),
            event_map: None,
        })),
        Err(e) => {
            tracing::warn!(from = ?a.codec, to = ?b.codec, error = %e, "no transcoder: passing through");
            AudioOut::PassThrough
        }
    }
}

fn inband(kind: CodecKind) -> Option<Inband> {
    let decoder = match kind.try_codec() {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(codec = ?kind, error = %e, "no decoder for in-band DTMF detection");
            return None;
        }
    };
    Some(Inband {
        kind,
        decoder,
        detector: InbandDetector::new(kind.sample_rate()),
        pcm: Vec::with_capacity(kind.samples_per_frame()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_range_skips_csrcs_extension_and_padding() {
        let mut p = vec![0x80, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 9, 9];
        assert_eq!(payload_range(&p), Some(12..14));
        p[0] = 0x81; // one CSRC: 4 more header bytes
        p.extend_from_slice(&[7, 7]);
        assert_eq!(payload_range(&p), Some(16..16));
        p[0] = 0xa0; // padding: last byte counts it
        let n = p.len() as u8 - 12;
        *p.last_mut().unwrap() = n; // invariant: p is not empty
        assert_eq!(payload_range(&p), Some(12..12));
        p[0] = 0x90; // extension header says 100 words: too long
        p[14] = 0;
        p[15] = 100;
        assert_eq!(payload_range(&p), None);
        assert_eq!(payload_range(&[]), None);
    }

    #[test]
    fn out_stream_continues_and_jumps_after_a_pause() {
        let mut o = OutStream::new();
        let t0 = Instant::now();
        let (s0, ts0) = o.audio(t0, 8000, 160);
        let (s1, ts1) = o.audio(t0 + Duration::from_millis(20), 8000, 160);
        assert_eq!((s1, ts1), (s0.wrapping_add(1), ts0.wrapping_add(160)));
        let (_, ts2) = o.audio(t0 + Duration::from_millis(1040), 8000, 160);
        assert_eq!(
            ts2.wrapping_sub(ts1),
            8160,
            "1 s of silence moves the clock on"
        );
    }
}
