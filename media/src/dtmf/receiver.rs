//! RFC 4733 receiver: turns telephone-event packets, with their repeats, redundant end packets,
//! reordering and losses, into exactly one [`DigitEvent`] per key press.
//!
//! An event is identified by its RTP timestamp (all packets of one press carry the press's start
//! timestamp, §2.5.1). The receiver reports a press when it ends: on its first end packet, when a
//! packet of a newer event shows the end packets were all lost, or `end_timeout_ms` after the
//! last packet of it (sans-IO: the caller passes `now_ms` and asks [`EventReceiver::poll_timeout`]
//! when to call [`EventReceiver::handle_timeout`]). Packets of a press already reported are
//! dropped whenever they arrive (up to 2^19 timestamp units back, 65 s at 8 kHz: further back is
//! a restarted sender). Segmented long events (§2.5.1.3) are joined into one press. On a new
//! SSRC, call [`EventReceiver::reset`].
//!
//! Drive it as: `push` each packet of the telephone-event payload type, then `poll_event` until
//! `None`; `handle_timeout` at the instant `poll_timeout` gave.

use std::collections::VecDeque;

use super::event::{EventError, EventPayload};
use super::Digit;

/// One key press received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DigitEvent {
    /// The key.
    pub digit: Digit,
    /// RTP timestamp of the press's start (the first segment's timestamp).
    pub timestamp: u32,
    /// Length of the press in RTP timestamp units (the longest duration seen, all segments).
    pub duration: u32,
    /// Whether an end packet was seen; `false` if all were lost and the press was closed by a
    /// newer event or by the timeout (the duration is then the last one seen).
    pub ended: bool,
}

impl DigitEvent {
    /// Duration in milliseconds at `clock_rate`.
    pub fn duration_ms(&self, clock_rate: u32) -> u64 {
        u64::from(self.duration) * 1000 / u64::from(clock_rate.max(1))
    }
}

/// A press in progress.
#[derive(Clone, Copy, Debug)]
struct Active {
    digit: Digit,
    /// Start timestamp of the press.
    start_ts: u32,
    /// Timestamp of the current segment.
    seg_ts: u32,
    /// Duration of the segments before the current one.
    before: u32,
    /// Longest duration seen in the current segment.
    duration: u16,
    last_ms: u64,
}

/// How many finished presses' timestamps are remembered to drop their late packets.
const REMEMBERED: usize = 16;
/// Longest duration one segment carries.
const SEGMENT: u32 = 0xffff;
/// How far back (timestamp units: 65 s at 8 kHz) a packet is a straggler of an earlier press.
const STRAGGLER_WINDOW: u32 = 0x8_0000;

/// The RFC 4733 receiving state machine of one stream.
#[derive(Clone, Debug)]
pub struct EventReceiver {
    end_timeout_ms: u64,
    active: Option<Active>,
    /// Segment timestamps of recently finished presses (their late or redundant packets).
    finished: VecDeque<u32>,
    /// Timestamp of the latest finished press: anything older is stale.
    newest_finished: Option<u32>,
    out: VecDeque<DigitEvent>,
}

impl Default for EventReceiver {
    fn default() -> Self {
        EventReceiver::new(1000)
    }
}

impl EventReceiver {
    /// A receiver that closes a press whose end packets were all lost `end_timeout_ms` after its
    /// last packet (senders update at least every 50 ms during a press, §2.5.1.2).
    pub fn new(end_timeout_ms: u64) -> EventReceiver {
        EventReceiver {
            end_timeout_ms,
            active: None,
            finished: VecDeque::with_capacity(REMEMBERED),
            newest_finished: None,
            out: VecDeque::new(),
        }
    }

    /// Accounts one telephone-event packet: its RTP timestamp, marker bit and payload, received
    /// at `now_ms`. Events other than the sixteen DTMF keys are ignored. A malformed payload is
    /// an error and changes nothing.
    pub fn push(
        &mut self,
        timestamp: u32,
        marker: bool,
        payload: &[u8],
        now_ms: u64,
    ) -> Result<(), EventError> {
        let p = EventPayload::parse(payload)?;
        let Some(digit) = p.digit() else {
            return Ok(());
        };
        if self.finished.contains(&timestamp) || self.is_stale(timestamp) {
            return Ok(()); // a repeat or late packet of a press already reported
        }
        let step = match self.active {
            Some(a) if a.seg_ts == timestamp && a.digit == digit => Step::Update,
            Some(a)
                if !marker
                    && a.digit == digit
                    && a.duration == u16::MAX
                    && timestamp == a.seg_ts.wrapping_add(SEGMENT) =>
            {
                Step::NextSegment
            }
            Some(a) if recently_before(timestamp, a.seg_ts) => Step::Ignore,
            _ => Step::NewPress,
        };
        match step {
            Step::Ignore => return Ok(()),
            Step::Update => {
                if let Some(a) = &mut self.active {
                    a.duration = a.duration.max(p.duration);
                    a.last_ms = now_ms;
                }
            }
            Step::NextSegment => {
                let mut previous = None;
                if let Some(a) = &mut self.active {
                    previous = Some(a.seg_ts);
                    a.before = a.before.saturating_add(SEGMENT);
                    a.seg_ts = timestamp;
                    a.duration = p.duration;
                    a.last_ms = now_ms;
                }
                if let Some(ts) = previous {
                    self.finished_segment(ts);
                }
            }
            Step::NewPress => {
                // One still open lost all its end packets: it is over.
                self.finish(false);
                self.active = Some(Active {
                    digit,
                    start_ts: timestamp,
                    seg_ts: timestamp,
                    before: 0,
                    duration: p.duration,
                    last_ms: now_ms,
                });
            }
        }
        if p.end {
            self.finish(true);
        }
        Ok(())
    }

    /// Forgets everything but the presses not yet polled: for a new stream (SSRC change).
    pub fn reset(&mut self) {
        self.active = None;
        self.finished.clear();
        self.newest_finished = None;
    }

    /// The next finished press, oldest first.
    pub fn poll_event(&mut self) -> Option<DigitEvent> {
        self.out.pop_front()
    }

    /// The key held down right now (a press started and not yet ended), for barge-in.
    pub fn active(&self) -> Option<Digit> {
        self.active.map(|a| a.digit)
    }

    /// When [`EventReceiver::handle_timeout`] should be called (ms, the caller's clock).
    pub fn poll_timeout(&self) -> Option<u64> {
        self.active
            .map(|a| a.last_ms.saturating_add(self.end_timeout_ms))
    }

    /// Closes a press whose end packets never came, if its timeout has passed at `now_ms`.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        if self.poll_timeout().is_some_and(|t| now_ms >= t) {
            self.finish(false);
        }
    }

    fn finish(&mut self, ended: bool) {
        let Some(a) = self.active.take() else {
            return;
        };
        self.finished_segment(a.seg_ts);
        self.finished_segment(a.start_ts);
        self.newest_finished = Some(a.seg_ts);
        self.out.push_back(DigitEvent {
            digit: a.digit,
            timestamp: a.start_ts,
            duration: a.before.saturating_add(u32::from(a.duration)),
            ended,
        });
    }

    fn finished_segment(&mut self, ts: u32) {
        if self.finished.contains(&ts) {
            return;
        }
        if self.finished.len() == REMEMBERED {
            self.finished.pop_front();
        }
        self.finished.push_back(ts);
    }

    /// Older than the newest finished press: a straggler.
    fn is_stale(&self, ts: u32) -> bool {
        self.newest_finished
            .is_some_and(|newest| recently_before(ts, newest))
    }
}

/// `a` comes shortly before `b` in RTP timestamp order (modulo 2^32): within
/// [`STRAGGLER_WINDOW`]. Further back is not a straggler but a timestamp discontinuity (a
/// restarted sender), and counts as new.
fn recently_before(a: u32, b: u32) -> bool {
    let d = b.wrapping_sub(a);
    d != 0 && d < STRAGGLER_WINDOW
}

/// What a packet does to the press in progress.
enum Step {
    Update,
    NextSegment,
    Ignore,
    NewPress,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtmf::generator::{EventGenerator, EventPacket};
    use crate::signal::Noise;

    /// Feeds packets, arrival time = send offset in ms + `base_ms`.
    fn feed(r: &mut EventReceiver, packets: &[EventPacket], base_ms: u64) -> Vec<DigitEvent> {
        for p in packets {
            let now = base_ms + u64::from(p.send_offset) / 8;
            r.push(p.timestamp, p.marker, &p.payload_bytes(), now)
                .unwrap(); // invariant: 4 bytes
        }
        std::iter::from_fn(|| r.poll_event()).collect()
    }

    fn press(digit: Digit, ts: u32, ms: u32) -> Vec<EventPacket> {
        EventGenerator::default().press(digit, ts, ms)
    }

    #[test]
    fn one_clean_press_is_one_event() {
        let mut r = EventReceiver::default();
        let p = press(Digit::D5, 12_345, 120);
        r.push(p[0].timestamp, true, &p[0].payload_bytes(), 0)
            .unwrap(); // invariant: 4 bytes
        assert_eq!(r.active(), Some(Digit::D5));
        assert_eq!(
            r.poll_event(),
            None,
            "reported when it ends, with its duration"
        );
        let ev = feed(&mut r, &p[1..], 0);
        let want = DigitEvent {
            digit: Digit::D5,
            timestamp: 12_345,
            duration: 960,
            ended: true,
        };
        assert_eq!(ev, [want]);
        assert_eq!(want.duration_ms(8000), 120);
        assert_eq!(r.active(), None);
        assert_eq!(r.poll_timeout(), None);
    }

    #[test]
    fn duplicates_and_reordering_change_nothing() {
        let mut r = EventReceiver::default();
        let mut p = press(Digit::Pound, 1000, 200);
        let copy = p.clone();
        p.extend(copy); // every packet twice
        p.swap(0, 3);
        p.swap(5, 9);
        let ev = feed(&mut r, &p, 0);
        assert_eq!(ev.len(), 1);
        assert_eq!(
            (ev[0].digit, ev[0].duration, ev[0].ended),
            (Digit::Pound, 1600, true)
        );
    }

    #[test]
    fn lost_start_and_updates_still_give_the_press() {
        let mut r = EventReceiver::default();
        let p = press(Digit::D9, 50, 100);
        let kept: Vec<EventPacket> = p.into_iter().skip(3).collect(); // marker and two updates
        let ev = feed(&mut r, &kept, 0);
        assert_eq!(ev.len(), 1);
        assert_eq!(
            (ev[0].digit, ev[0].timestamp, ev[0].duration),
            (Digit::D9, 50, 800)
        );
    }

    #[test]
    fn lost_end_packets_close_the_press_on_the_next_one_or_on_timeout() {
        let mut r = EventReceiver::new(500);
        let first: Vec<EventPacket> = press(Digit::D1, 0, 100)
            .into_iter()
            .filter(|p| !p.payload.end)
            .collect();
        assert!(feed(&mut r, &first, 0).is_empty());
        // The same key again: a new timestamp is a new press.
        let ev = feed(&mut r, &press(Digit::D1, 2400, 60), 300);
        assert_eq!(ev.len(), 2);
        assert_eq!(
            (ev[0].timestamp, ev[0].duration, ev[0].ended),
            (0, 640, false)
        );
        assert_eq!(
            (ev[1].timestamp, ev[1].duration, ev[1].ended),
            (2400, 480, true)
        );

        let third: Vec<EventPacket> = press(Digit::A, 9000, 100)
            .into_iter()
            .filter(|p| !p.payload.end)
            .collect();
        assert!(feed(&mut r, &third, 1000).is_empty());
        let last_ms = 1000 + 640 / 8;
        assert_eq!(r.poll_timeout(), Some(last_ms + 500));
        r.handle_timeout(last_ms + 499);
        assert_eq!(r.poll_event(), None);
        r.handle_timeout(last_ms + 500);
        let ev = r.poll_event();
        assert_eq!(ev.map(|e| (e.digit, e.ended)), Some((Digit::A, false)));
    }

    #[test]
    fn stragglers_of_a_reported_press_are_dropped() {
        let mut r = EventReceiver::default();
        let a = press(Digit::D2, 100, 100);
        let b = press(Digit::D3, 2000, 100);
        let mut all = a.clone();
        all.extend(b[..2].iter().copied());
        all.extend(a.iter().copied()); // the whole first press again, late
        all.extend(b[2..].iter().copied());
        let ev = feed(&mut r, &all, 0);
        let digits: Vec<Digit> = ev.iter().map(|e| e.digit).collect();
        assert_eq!(digits, [Digit::D2, Digit::D3]);
    }

    #[test]
    fn a_long_press_across_segments_is_one_press() {
        let mut r = EventReceiver::default();
        let ev = feed(&mut r, &press(Digit::D0, 77, 10_000), 0);
        assert_eq!(ev.len(), 1);
        assert_eq!(
            (ev[0].timestamp, ev[0].duration, ev[0].ended),
            (77, 80_000, true)
        );
    }

    #[test]
    fn timestamps_wrap() {
        let mut r = EventReceiver::default();
        let mut p = press(Digit::B, u32::MAX - 100, 100);
        p.extend(press(Digit::C, 3000, 100));
        let ev = feed(&mut r, &p, 0);
        let got: Vec<(Digit, u32)> = ev.iter().map(|e| (e.digit, e.timestamp)).collect();
        assert_eq!(got, [(Digit::B, u32::MAX - 100), (Digit::C, 3000)]);
    }

    #[test]
    fn a_restarted_sender_is_heard_and_reset_forgets() {
        let mut r = EventReceiver::default();
        let mut p = press(Digit::D4, 5_000_000, 100);
        p.extend(press(Digit::D6, 100, 100)); // timestamps restarted far behind
        let ev = feed(&mut r, &p, 0);
        assert_eq!(
            ev.iter().map(|e| e.digit).collect::<Vec<_>>(),
            [Digit::D4, Digit::D6]
        );
        // A repeat of the last press is dropped, unless the stream was reset.
        let again = press(Digit::D6, 100, 100);
        assert!(feed(&mut r, &again, 0).is_empty());
        r.reset();
        assert_eq!(feed(&mut r, &again, 0).len(), 1);
    }

    #[test]
    fn malformed_and_non_dtmf_events() {
        let mut r = EventReceiver::default();
        assert_eq!(r.push(0, true, &[1, 2], 0), Err(EventError::TooShort(2)));
        r.push(0, true, &[16, 0x80, 0, 160], 0).unwrap(); // invariant: 4 bytes (flash)
        assert_eq!(r.poll_event(), None);
        assert_eq!(r.active(), None);
    }

    /// 300 presses over a lossy, duplicating, jittery network: every press of which at least
    /// one packet arrives is reported exactly once, in order, with its exact duration whenever
    /// an end packet arrived.
    #[test]
    fn exactly_one_event_per_press_over_a_bad_network() {
        let mut rng = Noise::new(4733);
        let mut r = EventReceiver::new(1000);
        let mut arrivals: Vec<(u64, EventPacket)> = Vec::new();
        let mut expected = Vec::new();
        let mut ts: u32 = u32::MAX - 50_000; // wraps along the way
        let mut t_ms: u64 = 0;
        for i in 0..300u32 {
            let digit = Digit::ALL[(i % 16) as usize];
            let ms = 40 + (rng.next_u64() % 200) as u32;
            let mut any = false;
            let mut end_seen = false;
            for p in press(digit, ts, ms) {
                if rng.uniform() < 0.3 {
                    continue; // lost
                }
                any = true;
                end_seen |= p.payload.end;
                let send = t_ms + u64::from(p.send_offset) / 8;
                let copies = if rng.uniform() < 0.1 { 2 } else { 1 };
                for _ in 0..copies {
                    arrivals.push((send + rng.next_u64() % 40, p));
                }
            }
            if any {
                expected.push((digit, ts, ms * 8, end_seen));
            }
            // Next press after the end packets and a pause longer than the jitter.
            let gap = u64::from(ms) + 60 + 100;
            t_ms += gap;
            ts = ts.wrapping_add((gap * 8) as u32);
        }
        arrivals.sort_by_key(|a| a.0);
        let mut got = Vec::new();
        for (now, p) in arrivals {
            r.handle_timeout(now);
            r.push(p.timestamp, p.marker, &p.payload_bytes(), now)
                .unwrap(); // invariant: 4 bytes
            got.extend(std::iter::from_fn(|| r.poll_event()));
        }
        r.handle_timeout(u64::MAX);
        got.extend(std::iter::from_fn(|| r.poll_event()));
        assert_eq!(got.len(), expected.len());
        for (g, (digit, ts, duration, end_seen)) in got.iter().zip(expected) {
            assert_eq!((g.digit, g.timestamp), (digit, ts));
            assert_eq!(g.ended, end_seen);
            if end_seen {
                assert_eq!(g.duration, duration);
            } else {
                assert!(g.duration < duration);
            }
        }
    }
}
