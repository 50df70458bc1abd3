//! RFC 4733 sender: the packets that carry one key press.
//!
//! [`EventGenerator::press`] returns every packet of a press at once, each with the offset (in
//! RTP timestamp units from the press's start) at which to send it; the caller's media loop
//! sends each when its time comes, giving each the next RTP sequence number of the stream (the
//! same sequence space as the audio, RFC 4733 §2.1) and pausing audio packets meanwhile.
//!
//! What goes out (§2.5.1): an update every packet interval with the duration so far, the marker
//! bit on the first packet only, all packets of one event with the event's start timestamp, then
//! the final duration with the E bit three times (or more). An event longer than 0xffff timestamp
//! units is split into segments (§2.5.1.3): each continuation segment starts at the previous
//! segment's timestamp + 0xffff, without the marker bit.

use super::event::EventPayload;
use super::Digit;

/// One telephone-event packet to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventPacket {
    /// When to send it: timestamp units after the press's start timestamp.
    pub send_offset: u32,
    /// The RTP timestamp to put in the header.
    pub timestamp: u32,
    /// The RTP marker bit.
    pub marker: bool,
    /// The payload.
    pub payload: EventPayload,
}

impl EventPacket {
    /// The payload bytes.
    pub fn payload_bytes(&self) -> [u8; 4] {
        self.payload.to_bytes()
    }
}

/// Settings of a telephone-event sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventGenerator {
    /// RTP clock rate of the telephone-event payload type (8000 unless SDP says otherwise).
    pub clock_rate: u32,
    /// Milliseconds between updates (RFC 4733 suggests 50; most stacks use the audio ptime).
    pub interval_ms: u32,
    /// How many times to send the final packet (at least 3, §2.5.1.4).
    pub end_packets: u32,
    /// Volume in -dBm0 put in every packet.
    pub volume: u8,
}

impl Default for EventGenerator {
    fn default() -> Self {
        EventGenerator {
            clock_rate: 8000,
            interval_ms: 20,
            end_packets: 3,
            volume: 10,
        }
    }
}

/// The longest duration one segment can carry.
const SEGMENT: u32 = 0xffff;

impl EventGenerator {
    /// The packets of a press of `digit` lasting `duration_ms`, starting at RTP timestamp
    /// `start_ts` (the timestamp the next audio packet would have had), in sending order.
    ///
    /// A zero duration still yields the end packets (duration 0), so the press is reported.
    pub fn press(&self, digit: Digit, start_ts: u32, duration_ms: u32) -> Vec<EventPacket> {
        let rate = u64::from(self.clock_rate.max(1));
        let total = u64::from(duration_ms) * rate / 1000;
        let step = (u64::from(self.interval_ms.max(1)) * rate / 1000).max(1);
        let mut packets = Vec::new();
        let mut first = true;
        let mut packet = |offset: u64, seg_start: u64, duration: u64, end: bool| {
            packets.push(EventPacket {
                // Offsets and timestamps are modulo 2^32 by RTP's definition.
                send_offset: offset as u32,
                timestamp: start_ts.wrapping_add(seg_start as u32),
                marker: std::mem::take(&mut first),
                payload: EventPayload {
                    event: digit.event(),
                    end,
                    volume: self.volume,
                    duration: duration.min(u64::from(SEGMENT)) as u16,
                },
            });
        };
        // Updates while the key is down. Segment k covers durations (k·0xffff, (k+1)·0xffff].
        let seg_len = u64::from(SEGMENT);
        let mut t = step;
        while t < total {
            let seg_start = (t - 1) / seg_len * seg_len;
            packet(t, seg_start, t - seg_start, false);
            // Before the next update crosses into a new segment, close this one at 0xffff.
            let seg_end = seg_start + seg_len;
            if t < seg_end && t + step > seg_end && seg_end < total {
                packet(seg_end, seg_start, seg_len, false);
            }
            t += step;
        }
        // The final duration with the E bit, repeated one interval apart.
        let seg_start = total.saturating_sub(1) / seg_len * seg_len;
        for i in 0..u64::from(self.end_packets.max(3)) {
            packet(total + i * step, seg_start, total - seg_start, true);
        }
        packets
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_100ms_press_at_20ms_intervals() {
        let g = EventGenerator::default();
        let p = g.press(Digit::D7, 4000, 100);
        // Updates at 20, 40, 60, 80 ms, then three ends at 100, 120, 140 ms.
        let offsets: Vec<u32> = p.iter().map(|p| p.send_offset).collect();
        assert_eq!(offsets, [160, 320, 480, 640, 800, 960, 1120]);
        let durations: Vec<u16> = p.iter().map(|p| p.payload.duration).collect();
        assert_eq!(durations, [160, 320, 480, 640, 800, 800, 800]);
        assert!(p
            .iter()
            .all(|p| p.timestamp == 4000 && p.payload.event == 7));
        assert_eq!(p.iter().filter(|p| p.marker).count(), 1);
        assert!(p[0].marker);
        assert_eq!(p.iter().filter(|p| p.payload.end).count(), 3);
        assert!(p[4..].iter().all(|p| p.payload.end));
        assert_eq!(p[4].payload_bytes(), [7, 0x80 | 10, 0x03, 0x20]);
    }

    #[test]
    fn short_press_zero_duration_and_more_end_packets() {
        let g = EventGenerator {
            end_packets: 5,
            ..EventGenerator::default()
        };
        let p = g.press(Digit::Star, u32::MAX - 10, 10);
        assert_eq!(p.len(), 5);
        assert!(p[0].marker && p.iter().all(|p| p.payload.end && p.payload.duration == 80));
        assert!(p.iter().all(|p| p.timestamp == u32::MAX - 10));
        let z = EventGenerator::default().press(Digit::D1, 0, 0);
        assert_eq!(z.len(), 3);
        assert!(z.iter().all(|p| p.payload.end && p.payload.duration == 0));
        // Fewer than three end packets is never sent.
        let g = EventGenerator {
            end_packets: 1,
            ..EventGenerator::default()
        };
        assert_eq!(
            g.press(Digit::D1, 0, 40)
                .iter()
                .filter(|p| p.payload.end)
                .count(),
            3
        );
    }

    #[test]
    fn long_press_is_segmented() {
        // 10 s at 8 kHz = 80000 units: one full segment (0xffff) and one of 14465.
        let p = EventGenerator::default().press(Digit::D0, 1000, 10_000);
        let first: Vec<&EventPacket> = p.iter().filter(|p| p.timestamp == 1000).collect();
        let second: Vec<&EventPacket> = p.iter().filter(|p| p.timestamp == 1000 + 0xffff).collect();
        assert_eq!(first.len() + second.len(), p.len());
        assert_eq!(first.last().map(|p| p.payload.duration), Some(0xffff));
        assert!(first.iter().all(|p| !p.payload.end));
        assert!(second.iter().all(|p| !p.marker));
        let ends: Vec<_> = second.iter().filter(|p| p.payload.end).collect();
        assert_eq!(ends.len(), 3);
        assert!(ends
            .iter()
            .all(|p| p.payload.duration == (80_000 - 0xffff) as u16));
        // Durations within each segment never decrease, and offsets never go back.
        assert!(p.windows(2).all(|w| w[0].send_offset <= w[1].send_offset));
        assert!(first
            .windows(2)
            .all(|w| w[0].payload.duration <= w[1].payload.duration));
    }
}
