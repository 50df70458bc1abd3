//! The RFC 4733 §2.3 telephone-event payload: event code, end bit, volume, duration.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! |     event     |E|R| volume    |          duration             |
//! ```

use super::Digit;

/// SDP encoding name of the payload format (`a=rtpmap:<pt> telephone-event/8000`).
pub const SDP_NAME: &str = "telephone-event";

/// One telephone-event payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventPayload {
    /// Event code (0-15 are the DTMF keys, see [`Digit`]).
    pub event: u8,
    /// The E bit: this packet ends the event.
    pub end: bool,
    /// Power level in -dBm0 (0..=63; larger is quieter). Ignored by receivers of digits.
    pub volume: u8,
    /// Duration of the event so far, in RTP timestamp units from the packet's timestamp.
    pub duration: u16,
}

/// Why a payload is not a telephone-event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// Fewer than the 4 bytes of one event.
    #[error("telephone-event payload of {0} bytes (needs 4)")]
    TooShort(usize),
}

impl EventPayload {
    /// Reads the first event of a payload (RFC 4733 packets carry one; any bytes after the
    /// first four are ignored). The reserved bit is ignored, as §2.3 asks of receivers.
    pub fn parse(payload: &[u8]) -> Result<EventPayload, EventError> {
        let Some(&[event, flags, d0, d1]) = payload.first_chunk::<4>() else {
            return Err(EventError::TooShort(payload.len()));
        };
        Ok(EventPayload {
            event,
            end: flags & 0x80 != 0,
            volume: flags & 0x3f,
            duration: u16::from_be_bytes([d0, d1]),
        })
    }

    /// The four bytes on the wire (volume is clamped to 63, the reserved bit is zero).
    pub fn to_bytes(&self) -> [u8; 4] {
        let [d0, d1] = self.duration.to_be_bytes();
        let flags = if self.end { 0x80 } else { 0 } | self.volume.min(63);
        [self.event, flags, d0, d1]
    }

    /// The DTMF key this event is, if it is one.
    pub fn digit(&self) -> Option<Digit> {
        Digit::from_event(self.event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_matches_the_rfc_layout() {
        let p = EventPayload {
            event: 11,
            end: true,
            volume: 10,
            duration: 1280,
        };
        assert_eq!(p.to_bytes(), [11, 0x8a, 0x05, 0x00]);
        assert_eq!(EventPayload::parse(&p.to_bytes()), Ok(p));
        assert_eq!(p.digit(), Some(Digit::Pound));
        // Reserved bit set by a sloppy sender: ignored.
        let q = EventPayload::parse(&[5, 0x40 | 7, 0, 160]).unwrap(); // invariant: 4 bytes
        assert_eq!((q.event, q.end, q.volume, q.duration), (5, false, 7, 160));
        assert_eq!(
            EventPayload::parse(&[1, 2, 3]),
            Err(EventError::TooShort(3))
        );
        assert_eq!(EventPayload::parse(&[]), Err(EventError::TooShort(0)));
        let loud = EventPayload { volume: 200, ..p };
        assert_eq!(loud.to_bytes()[1], 0x80 | 63);
    }
}
