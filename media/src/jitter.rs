//! An adaptive jitter buffer, sans-IO: packets go in with their arrival time, frames come out
//! when the caller's playout clock asks, one per frame interval.
//!
//! Use: [`JitterBuffer::push`] every received packet of the stream with the caller's clock in
//! milliseconds; every `frame_ms` call [`JitterBuffer::pop`] with the same clock, and
//!
//! * [`Pop::Frame`]: decode and play the packet;
//! * [`Pop::Concealed`]: a frame is missing (lost, or not here in time): conceal it, e.g. with
//!   [`crate::plc::Concealer`];
//! * [`Pop::Empty`]: nothing to play (not started yet, or a silence: DTX or the end of a
//!   talkspurt): play silence or comfort noise.
//!
//! How it works. Packets are ordered by (wrap-extended) sequence number. Playout starts
//! `target` ms after the first packet of a talkspurt arrived and then takes one packet per pop.
//! The target is the spread (95th percentile minus minimum) of the packets' transit times
//! (arrival time minus RTP timestamp) over the last 200 packets, plus half a frame, within
//! `[min_delay_ms, max_delay_ms]`. When a pop finds the buffer empty the buffer stalls (conceals
//! without moving on) so a late packet is still played and the delay grows by one frame; when
//! for half a second the buffer always held a frame more than the target, one frame is dropped
//! so the delay shrinks. A packet arriving after its turn is dropped as late, a repeat as a
//! duplicate. A new SSRC, or a jump of more than 1000 sequence numbers or of the timestamp
//! backwards, flushes the buffer and starts over (a resync); a silence longer than
//! `max_delay_ms` within a stream (DTX, the marker bit's new talkspurt) restarts playout.
//!
//! Assumption: each packet holds one frame of `frame_ms` (the negotiated ptime).
//!
//! Architecture invariant: no clock, no socket, no sleeping; memory is bounded by `capacity`.

use std::collections::{BTreeMap, VecDeque};

/// Settings of a jitter buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JitterConfig {
    /// RTP clock rate of the stream, Hz.
    pub clock_rate: u32,
    /// Audio per packet and per pop, ms (the ptime).
    pub frame_ms: u32,
    /// Lowest playout delay, ms.
    pub min_delay_ms: u32,
    /// Highest playout delay, ms.
    pub max_delay_ms: u32,
    /// Most packets held at once; beyond, the oldest is dropped.
    pub capacity: usize,
}

impl JitterConfig {
    /// 20 ms frames at `clock_rate`, delay between 20 and 300 ms, room for 2× the maximum.
    pub fn new(clock_rate: u32) -> JitterConfig {
        JitterConfig {
            clock_rate,
            frame_ms: 20,
            min_delay_ms: 20,
            max_delay_ms: 300,
            capacity: 32,
        }
    }
}

/// One RTP packet as the buffer needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    /// Synchronisation source.
    pub ssrc: u32,
    /// Sequence number.
    pub seq: u16,
    /// RTP timestamp.
    pub timestamp: u32,
    /// Marker bit (first packet of a talkspurt for audio).
    pub marker: bool,
    /// Payload (still encoded).
    pub payload: Vec<u8>,
}

/// What [`JitterBuffer::push`] did with a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushOutcome {
    /// Queued for playout.
    Queued,
    /// Queued; the buffer was full, so the oldest packet was dropped.
    Overflow,
    /// Queued after flushing the buffer: new SSRC or a jump in sequence or timestamp.
    Resync,
    /// Dropped: its turn to play has passed.
    Late,
    /// Dropped: already held.
    Duplicate,
}

/// What to play now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pop {
    /// The next packet, in order.
    Frame(Packet),
    /// A frame is missing here: conceal it. `timestamp` is the RTP timestamp it would have had.
    Concealed {
        /// Expected RTP timestamp of the missing frame.
        timestamp: u32,
    },
    /// Nothing to play: silence.
    Empty,
}

/// Counters since the buffer was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JitterStats {
    /// Packets pushed.
    pub received: u64,
    /// Frames returned.
    pub played: u64,
    /// Frames concealed because their packet never came before its turn.
    pub lost: u64,
    /// Frames concealed while waiting for a late packet (each grows the delay by a frame).
    pub stalls: u64,
    /// Packets dropped because they came after their turn.
    pub late: u64,
    /// Packets dropped as repeats.
    pub duplicates: u64,
    /// Packets dropped because the buffer was full.
    pub overflows: u64,
    /// Frames dropped to bring the delay down to the target.
    pub shrinks: u64,
    /// Flushes on a new SSRC or a jump.
    pub resyncs: u64,
}

/// Packets of transit history the target delay is computed from.
const TRANSIT_WINDOW: usize = 200;
/// Recompute the target every this many packets.
const ESTIMATE_EVERY: u32 = 4;
/// Pops over which the lowest buffer level is watched before shrinking by a frame.
const SHRINK_WINDOW: u32 = 25;
/// A sequence jump beyond this (either way) is a new stream.
const MAX_SEQ_JUMP: i64 = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Nothing to play until a packet comes.
    Idle,
    /// Holding packets until `since_ms + target`.
    Buffering {
        since_ms: u64,
    },
    Playing,
}

#[derive(Clone, Debug)]
struct Entry {
    ext_ts: i64,
    arrival_ms: u64,
    packet: Packet,
}

/// The adaptive jitter buffer of one RTP stream. See the module documentation.
#[derive(Clone, Debug)]
pub struct JitterBuffer {
    config: JitterConfig,
    frame_ts: i64,
    queue: BTreeMap<i64, Entry>,
    state: State,
    ssrc: Option<u32>,
    /// Highest extended sequence number and its extended timestamp.
    highest: Option<(i64, i64)>,
    /// Extended sequence number and timestamp of the next frame to play.
    next_seq: i64,
    next_ts: i64,
    /// Playout has begun since the last resync: `next_seq` is meaningful.
    started: bool,
    underruns: u32,
    transit: VecDeque<f64>,
    since_estimate: u32,
    target_ms: u32,
    level_min_ms: i64,
    level_pops: u32,
    stats: JitterStats,
}

impl JitterBuffer {
    /// An empty buffer.
    pub fn new(config: JitterConfig) -> JitterBuffer {
        let config = JitterConfig {
            clock_rate: config.clock_rate.max(1),
            frame_ms: config.frame_ms.max(1),
            max_delay_ms: config.max_delay_ms.max(config.min_delay_ms),
            capacity: config.capacity.max(2),
            ..config
        };
        JitterBuffer {
            frame_ts: i64::from(config.clock_rate) * i64::from(config.frame_ms) / 1000,
            config,
            queue: BTreeMap::new(),
            state: State::Idle,
            ssrc: None,
            highest: None,
            next_seq: 0,
            next_ts: 0,
            started: false,
            underruns: 0,
            transit: VecDeque::with_capacity(TRANSIT_WINDOW),
            since_estimate: 0,
            target_ms: config.min_delay_ms,
            level_min_ms: i64::MAX,
            level_pops: 0,
            stats: JitterStats::default(),
        }
    }

    /// Takes in a packet that arrived at `arrival_ms` (the caller's clock).
    pub fn push(&mut self, packet: Packet, arrival_ms: u64) -> PushOutcome {
        self.stats.received += 1;
        let mut outcome = PushOutcome::Queued;
        let (ext_seq, ext_ts) = match (self.ssrc, self.highest) {
            (Some(ssrc), Some((hseq, hts))) if ssrc == packet.ssrc => {
                let s = unwrap(hseq, u64::from(packet.seq), 1 << 16);
                let t = unwrap(hts, u64::from(packet.timestamp), 1 << 32);
                let jump = (s - hseq).abs() > MAX_SEQ_JUMP
                    || (s > hseq && t < hts - self.frame_ts * (s - hseq));
                if jump {
                    self.resync();
                    outcome = PushOutcome::Resync;
                    (i64::from(packet.seq), i64::from(packet.timestamp))
                } else {
                    (s, t)
                }
            }
            (previous, _) => {
                if previous.is_some() {
                    self.resync();
                    outcome = PushOutcome::Resync;
                }
                (i64::from(packet.seq), i64::from(packet.timestamp))
            }
        };
        self.ssrc = Some(packet.ssrc);
        if self.queue.contains_key(&ext_seq) {
            self.stats.duplicates += 1;
            return PushOutcome::Duplicate;
        }
        self.observe_transit(ext_ts, arrival_ms);
        if self.highest.is_none_or(|(h, _)| ext_seq > h) {
            self.highest = Some((ext_seq, ext_ts));
        }
        if self.started && ext_seq < self.next_seq {
            self.stats.late += 1;
            return PushOutcome::Late;
        }
        if self.state == State::Idle {
            self.state = State::Buffering {
                since_ms: arrival_ms,
            };
        }
        if self.queue.len() >= self.config.capacity {
            if let Some((seq, _)) = self.queue.pop_first() {
                self.stats.overflows += 1;
                if self.started {
                    self.next_seq = self.next_seq.max(seq + 1);
                }
                outcome = PushOutcome::Overflow;
            }
        }
        self.queue.insert(
            ext_seq,
            Entry {
                ext_ts,
                arrival_ms,
                packet,
            },
        );
        outcome
    }

    /// What to play for the frame due at `now_ms`. Call once per `frame_ms`.
    pub fn pop(&mut self, now_ms: u64) -> Pop {
        match self.state {
            State::Idle => return Pop::Empty,
            State::Buffering { since_ms } => {
                let ready = now_ms >= since_ms.saturating_add(u64::from(self.target_ms));
                let Some((&seq, head)) = self.queue.first_key_value() else {
                    return Pop::Empty;
                };
                if !ready {
                    return Pop::Empty;
                }
                self.next_seq = seq;
                self.next_ts = head.ext_ts;
                self.state = State::Playing;
                self.started = true;
                self.underruns = 0;
                self.level_min_ms = i64::MAX;
                self.level_pops = 0;
            }
            State::Playing => {}
        }
        self.watch_level();
        let Some((&seq, head)) = self.queue.first_key_value() else {
            // Underrun: wait for the late packet, up to the longest delay allowed.
            self.underruns += 1;
            if self.underruns.saturating_mul(self.config.frame_ms) > self.config.max_delay_ms {
                self.state = State::Idle;
                return Pop::Empty;
            }
            self.stats.stalls += 1;
            return Pop::Concealed {
                timestamp: self.next_ts as u32,
            };
        };
        self.underruns = 0;
        if seq > self.next_seq {
            // The packet for this turn never came: lost.
            self.stats.lost += 1;
            let timestamp = self.next_ts as u32;
            self.next_seq += 1;
            self.next_ts += self.frame_ts;
            return Pop::Concealed { timestamp };
        }
        let gap = head.ext_ts - self.next_ts;
        if gap >= self.frame_ts {
            // Silence in the stream (DTX) before this packet.
            if gap > self.ms_to_ts(self.config.max_delay_ms) {
                self.state = State::Buffering {
                    since_ms: head.arrival_ms,
                };
                return self.pop(now_ms);
            }
            self.next_ts += self.frame_ts;
            return Pop::Empty;
        }
        // `seq` is the first key: the entry exists.
        let Some(entry) = self.queue.remove(&seq) else {
            return Pop::Empty;
        };
        self.stats.played += 1;
        self.next_seq = seq + 1;
        self.next_ts = entry.ext_ts + self.frame_ts;
        Pop::Frame(entry.packet)
    }

    /// The packet the next [`JitterBuffer::pop`] will play, if it is already here: e.g. right
    /// after a [`Pop::Concealed`] for a lost packet, the one that followed it (whose Opus
    /// in-band FEC recovers the lost frame).
    pub fn peek_next(&self) -> Option<&Packet> {
        if self.state != State::Playing {
            return None;
        }
        self.queue
            .first_key_value()
            .filter(|(&seq, _)| seq == self.next_seq)
            .map(|(_, e)| &e.packet)
    }

    /// Whether playout has stopped: nothing arrived for longer than `max_delay_ms` (or nothing
    /// yet). Popping an idle buffer gives [`Pop::Empty`] until a packet comes.
    pub fn is_idle(&self) -> bool {
        self.state == State::Idle
    }

    /// The settings the buffer runs with.
    pub fn config(&self) -> JitterConfig {
        self.config
    }

    /// The playout delay the buffer aims at now, ms.
    pub fn target_delay_ms(&self) -> u32 {
        self.target_ms
    }

    /// Audio held ahead of the playout point, ms (0 when nothing is held).
    pub fn buffered_ms(&self) -> u32 {
        match (self.state, self.highest) {
            (State::Playing, Some((_, hts))) if !self.queue.is_empty() => {
                let span = hts - self.next_ts + self.frame_ts;
                (span.max(0) * 1000 / i64::from(self.config.clock_rate)) as u32
            }
            _ => 0,
        }
    }

    /// Packets held.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether no packet is held.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Counters.
    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    fn resync(&mut self) {
        self.stats.resyncs += 1;
        self.queue.clear();
        self.highest = None;
        self.started = false;
        self.transit.clear();
        self.state = State::Idle;
        self.target_ms = self.config.min_delay_ms;
    }

    fn observe_transit(&mut self, ext_ts: i64, arrival_ms: u64) {
        let transit =
            arrival_ms as f64 - ext_ts as f64 * 1000.0 / f64::from(self.config.clock_rate);
        if self.transit.len() == TRANSIT_WINDOW {
            self.transit.pop_front();
        }
        self.transit.push_back(transit);
        self.since_estimate += 1;
        if self.since_estimate >= ESTIMATE_EVERY || self.transit.len() < 8 {
            self.since_estimate = 0;
            self.estimate_target();
        }
    }

    fn estimate_target(&mut self) {
        let mut t: Vec<f64> = self.transit.iter().copied().collect();
        if t.is_empty() {
            return;
        }
        let min = t.iter().copied().fold(f64::INFINITY, f64::min);
        let k = ((t.len() - 1) as f64 * 0.95).ceil() as usize;
        let (_, p95, _) = t.select_nth_unstable_by(k, f64::total_cmp);
        let spread = *p95 - min + f64::from(self.config.frame_ms) / 2.0;
        let (lo, hi) = (self.config.min_delay_ms, self.config.max_delay_ms);
        // Clamped to [lo, hi] before the conversion, so it fits.
        self.target_ms = spread.ceil().clamp(f64::from(lo), f64::from(hi)) as u32;
    }

    /// Drops a frame when the buffer has held more than the target for a while.
    fn watch_level(&mut self) {
        let level = i64::from(self.buffered_ms());
        self.level_min_ms = self.level_min_ms.min(level);
        self.level_pops += 1;
        if self.level_pops < SHRINK_WINDOW {
            return;
        }
        let excess =
            self.level_min_ms > i64::from(self.target_ms) + 2 * i64::from(self.config.frame_ms);
        self.level_pops = 0;
        self.level_min_ms = i64::MAX;
        if excess {
            if let Some((seq, entry)) = self.queue.pop_first() {
                self.stats.shrinks += 1;
                self.next_seq = seq + 1;
                self.next_ts = entry.ext_ts + self.frame_ts;
            }
        }
    }

    fn ms_to_ts(&self, ms: u32) -> i64 {
        i64::from(ms) * i64::from(self.config.clock_rate) / 1000
    }
}

/// The extension of the `period`-wrapping counter value `raw` closest to `reference`.
fn unwrap(reference: i64, raw: u64, period: i64) -> i64 {
    let mut d = raw as i64 - reference.rem_euclid(period);
    if d > period / 2 {
        d -= period;
    } else if d < -period / 2 {
        d += period;
    }
    reference + d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::Noise;

    fn pkt(ssrc: u32, seq: u16, ts: u32) -> Packet {
        Packet {
            ssrc,
            seq,
            timestamp: ts,
            marker: false,
            payload: seq.to_be_bytes().to_vec(),
        }
    }

    /// A simulated call leg: packet `i` sent at `20·i` ms, seq and ts from a start value.
    struct Sender {
        ssrc: u32,
        seq0: u16,
        ts0: u32,
    }

    impl Sender {
        fn packet(&self, i: u32) -> Packet {
            pkt(
                self.ssrc,
                self.seq0.wrapping_add(i as u16),
                self.ts0.wrapping_add(i * 160),
            )
        }
    }

    /// Runs `n` packets with per-packet arrival times from `arrival(i)` (None = lost), popping
    /// every 20 ms from `pop_phase` ms; returns what each pop gave (as seq, or "C"/"E").
    fn run(
        jb: &mut JitterBuffer,
        sender: &Sender,
        n: u32,
        mut arrival: impl FnMut(u32) -> Option<u64>,
        pop_phase: u64,
    ) -> Vec<String> {
        let mut events: Vec<(u64, u32)> = (0..n).filter_map(|i| Some((arrival(i)?, i))).collect();
        events.sort();
        let end = events.last().map_or(0, |e| e.0) + 400;
        let mut out = Vec::new();
        let mut next = events.into_iter().peekable();
        let mut now = pop_phase;
        while now <= end {
            while let Some(&(at, i)) = next.peek() {
                if at > now {
                    break;
                }
                jb.push(sender.packet(i), at);
                next.next();
            }
            out.push(match jb.pop(now) {
                Pop::Frame(p) => p.seq.to_string(),
                Pop::Concealed { .. } => "C".into(),
                Pop::Empty => "E".into(),
            });
            now += 20;
        }
        out
    }

    fn frames(out: &[String]) -> Vec<u16> {
        out.iter().filter_map(|s| s.parse().ok()).collect()
    }

    #[test]
    fn in_order_stream_plays_every_frame_at_the_minimum_delay() {
        let mut jb = JitterBuffer::new(JitterConfig::new(8000));
        let s = Sender {
            ssrc: 1,
            seq0: 100,
            ts0: 5000,
        };
        let out = run(&mut jb, &s, 50, |i| Some(u64::from(i) * 20 + 7), 10);
        let played = frames(&out);
        assert_eq!(played, (100..150).collect::<Vec<u16>>());
        // Started one pop after the first packet, no concealment in between; after the last
        // packet, concealment for up to max_delay_ms (300), then silence.
        assert_eq!(out[..2], ["E", "100"]);
        assert!(out[2..51].iter().all(|s| s != "C"));
        assert_eq!(out[51..66], vec!["C"; 15]);
        assert!(out[66..].iter().all(|s| s == "E"));
        assert_eq!(jb.target_delay_ms(), 20);
        let st = jb.stats();
        assert_eq!((st.played, st.lost, st.late, st.stalls), (50, 0, 0, 15));
    }

    #[test]
    fn reordered_packets_come_out_in_order() {
        let mut jb = JitterBuffer::new(JitterConfig::new(8000));
        let s = Sender {
            ssrc: 1,
            seq0: 0,
            ts0: 0,
        };
        // Pairs swapped: 1 before 0, 3 before 2, ...; the later one 15 ms late.
        let out = run(
            &mut jb,
            &s,
            60,
            |i| Some(u64::from(i) * 20 + if i % 2 == 0 { 15 } else { 0 }),
            0,
        );
        assert_eq!(frames(&out), (0..60).collect::<Vec<u16>>());
        assert_eq!(jb.stats().lost, 0);
    }

    #[test]
    fn a_lost_packet_is_one_concealed_frame_at_its_place() {
        let mut jb = JitterBuffer::new(JitterConfig::new(8000));
        let s = Sender {
            ssrc: 9,
            seq0: 10,
            ts0: 0,
        };
        let out = run(
            &mut jb,
            &s,
            30,
            |i| (i != 12).then_some(u64::from(i) * 20),
            5,
        );
        let at = out.iter().position(|s| s == "21").unwrap_or(0);
        assert_eq!(out[at..at + 3], ["21", "C", "23"], "{out:?}");
        let last = out.iter().position(|s| s == "39").unwrap_or(0);
        assert_eq!(out[..last].iter().filter(|s| *s == "C").count(), 1);
        assert_eq!(jb.stats().lost, 1);
    }

    #[test]
    fn duplicates_and_late_packets_are_dropped() {
        let mut jb = JitterBuffer::new(JitterConfig::new(8000));
        assert_eq!(jb.push(pkt(1, 1, 160), 0), PushOutcome::Queued);
        assert_eq!(jb.push(pkt(1, 1, 160), 1), PushOutcome::Duplicate);
        assert_eq!(jb.pop(20), Pop::Frame(pkt(1, 1, 160)));
        // 2 never came in time: concealed once 3 is there.
        assert_eq!(jb.push(pkt(1, 3, 480), 30), PushOutcome::Queued);
        assert_eq!(jb.pop(40), Pop::Concealed { timestamp: 320 });
        assert_eq!(jb.push(pkt(1, 2, 320), 45), PushOutcome::Late);
        assert_eq!(jb.push(pkt(1, 1, 160), 46), PushOutcome::Late);
        assert_eq!(jb.pop(60), Pop::Frame(pkt(1, 3, 480)));
        let st = jb.stats();
        assert_eq!((st.duplicates, st.late, st.lost), (1, 2, 1));
    }

    #[test]
    fn sequence_and_timestamp_wrap() {
        let mut jb = JitterBuffer::new(JitterConfig::new(8000));
        let s = Sender {
            ssrc: 3,
            seq0: 65_500,
            ts0: u32::MAX - 160 * 20,
        };
        let out = run(&mut jb, &s, 100, |i| Some(u64::from(i) * 20 + 3), 0);
        let want: Vec<u16> = (0..100u16).map(|i| 65_500u16.wrapping_add(i)).collect();
        assert_eq!(frames(&out), want);
        let st = jb.stats();
        assert_eq!((st.lost, st.resyncs, st.late), (0, 0, 0));
    }

    #[test]
    fn target_follows_the_jitter_within_bounds_and_few_frames_are_late() {
        let mut jb = JitterBuffer::new(JitterConfig::new(8000));
        let s = Sender {
            ssrc: 1,
            seq0: 0,
            ts0: 0,
        };
        let mut rng = Noise::new(5);
        // 10 s with up to 80 ms of jitter, then 10 s with up to 4 ms.
        let mut targets = Vec::new();
        let mut events: Vec<(u64, u32)> = (0..1000u32)
            .map(|i| {
                let j = if i < 500 { 80.0 } else { 4.0 };
                (u64::from(i) * 20 + (rng.uniform() * j) as u64, i)
            })
            .collect();
        events.sort();
        let mut next = events.into_iter().peekable();
        let mut played = 0;
        for tick in 0..1100u64 {
            let now = tick * 20 + 10;
            while let Some(&(at, i)) = next.peek() {
                if at > now {
                    break;
                }
                jb.push(s.packet(i), at);
                next.next();
            }
            if let Pop::Frame(_) = jb.pop(now) {
                played += 1;
            }
            if tick == 490 || tick == 990 {
                targets.push(jb.target_delay_ms());
            }
        }
        println!("targets {targets:?}, stats {:?}", jb.stats());
        assert!((70..=100).contains(&targets[0]), "{targets:?}");
        assert!(targets[1] <= 20, "{targets:?}");
        let st = jb.stats();
        assert!(played >= 980, "played {played}, {st:?}");
        assert!(st.late + st.lost <= 20, "{st:?}");
        assert!(
            st.shrinks >= 1,
            "the delay came down after the jitter did: {st:?}"
        );
    }

    #[test]
    fn target_is_capped_by_max_delay() {
        let mut jb = JitterBuffer::new(JitterConfig {
            max_delay_ms: 120,
            ..JitterConfig::new(8000)
        });
        let s = Sender {
            ssrc: 1,
            seq0: 0,
            ts0: 0,
        };
        let mut rng = Noise::new(6);
        run(
            &mut jb,
            &s,
            300,
            |i| Some(u64::from(i) * 20 + (rng.uniform() * 1000.0) as u64),
            0,
        );
        assert_eq!(jb.target_delay_ms(), 120);
    }

    #[test]
    fn new_ssrc_or_a_big_jump_resyncs() {
        let mut jb = JitterBuffer::new(JitterConfig::new(8000));
        for i in 0..5u16 {
            jb.push(pkt(1, i, u32::from(i) * 160), u64::from(i) * 20);
        }
        assert_eq!(jb.pop(100), Pop::Frame(pkt(1, 0, 0)));
        assert_eq!(jb.push(pkt(2, 40_000, 7), 110), PushOutcome::Resync);
        assert_eq!(jb.len(), 1);
        assert_eq!(jb.pop(120), Pop::Empty, "re-buffering");
        assert_eq!(jb.push(pkt(2, 40_001, 167), 130), PushOutcome::Queued);
        assert_eq!(jb.pop(140), Pop::Frame(pkt(2, 40_000, 7)));
        assert_eq!(jb.pop(160), Pop::Frame(pkt(2, 40_001, 167)));
        // Same SSRC, sequence jumps by 5000: a restarted sender.
        assert_eq!(jb.push(pkt(2, 45_001, 999), 170), PushOutcome::Resync);
        // Timestamp going backwards with a newer sequence number.
        assert_eq!(jb.push(pkt(2, 45_002, 1), 175), PushOutcome::Resync);
        assert_eq!(jb.stats().resyncs, 3);
    }

    #[test]
    fn silence_in_the_stream_plays_as_empty_frames() {
        let mut jb = JitterBuffer::new(JitterConfig::new(8000));
        // 5 packets, 100 ms of DTX (seq contiguous, ts jumps), 5 packets with the marker.
        for i in 0..5u16 {
            jb.push(pkt(1, i, u32::from(i) * 160), u64::from(i) * 20);
        }
        let mut out = Vec::new();
        for tick in 1..20u64 {
            let now = tick * 20;
            if (10..15).contains(&tick) {
                let i = (tick - 5) as u16; // seq 5..9 at ts of frames 10..14
                let mut p = pkt(1, i, (tick as u32) * 160);
                p.marker = tick == 10;
                jb.push(p, now - 1);
            }
            out.push(match jb.pop(now) {
                Pop::Frame(p) => format!("{}@{}", p.seq, p.timestamp / 160),
                Pop::Concealed { .. } => "C".into(),
                Pop::Empty => "E".into(),
            });
        }
        // Frames 0..4, stalls while nothing is there, then the silence's remaining frames
        // as Empty, then 5..9 at their timestamps.
        let played: Vec<&String> = out.iter().filter(|s| s.contains('@')).collect();
        assert_eq!(
            played,
            ["0@0", "1@1", "2@2", "3@3", "4@4", "5@10", "6@11", "7@12", "8@13", "9@14"]
        );
        assert_eq!(jb.stats().lost, 0);
    }

    #[test]
    fn a_long_silence_restarts_playout_and_memory_stays_bounded() {
        let mut jb = JitterBuffer::new(JitterConfig::new(8000));
        jb.push(pkt(1, 0, 0), 0);
        assert_eq!(jb.pop(20), Pop::Frame(pkt(1, 0, 0)));
        // Nothing for 2 s: concealment up to max_delay, then silence.
        let pops: Vec<Pop> = (2..100).map(|t| jb.pop(t * 20)).collect();
        assert!(pops[..15]
            .iter()
            .all(|p| matches!(p, Pop::Concealed { .. })));
        assert!(pops[15..].iter().all(|p| *p == Pop::Empty));
        // A burst far beyond capacity without pops: bounded, newest kept.
        for i in 1..10_000u32 {
            jb.push(pkt(1, i as u16, i * 160), 2000 + u64::from(i));
        }
        assert_eq!(jb.len(), 32);
        assert!(jb.stats().overflows > 9000);
    }

    #[test]
    fn unwrap_picks_the_nearest_extension() {
        assert_eq!(unwrap(65_535, 0, 1 << 16), 65_536);
        assert_eq!(unwrap(65_536, 65_535, 1 << 16), 65_535);
        assert_eq!(unwrap(10, 65_530, 1 << 16), -6);
        assert_eq!(unwrap(i64::from(u32::MAX), 5, 1 << 32), (1 << 32) + 5);
    }
}
