//! DTMF in its three forms: RFC 4733 telephone-events ([`event`], [`generator`], [`receiver`]),
//! in-band tones ([`tone`] to make them, [`detector`] with [`goertzel`] to find them), and the
//! [`Digit`] they share. SIP INFO (application/dtmf-relay) is text and lives with SIP; converting
//! between forms is: receiver or detector → [`Digit`] → generator or tone.
//!
//! Architecture invariant: no clock and no socket. Time comes in as RTP timestamps, sample
//! counts or caller-supplied milliseconds, and output is polled.

pub mod detector;
pub mod event;
pub mod generator;
pub mod goertzel;
pub mod receiver;
pub mod tone;

pub use detector::{InbandDetector, InbandDigit};
pub use event::{EventError, EventPayload};
pub use generator::{EventGenerator, EventPacket};
pub use receiver::{DigitEvent, EventReceiver};
pub use tone::DtmfTone;

/// Low-group (row) frequencies in Hz, top to bottom of the keypad.
pub const ROW_HZ: [f64; 4] = [697.0, 770.0, 852.0, 941.0];
/// High-group (column) frequencies in Hz, left to right.
pub const COL_HZ: [f64; 4] = [1209.0, 1336.0, 1477.0, 1633.0];

/// A DTMF key: 0-9, `*`, `#`, A-D. Its discriminant is its RFC 4733 event code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
#[allow(missing_docs)] // the variant names are the keys
pub enum Digit {
    D0 = 0,
    D1,
    D2,
    D3,
    D4,
    D5,
    D6,
    D7,
    D8,
    D9,
    Star,
    Pound,
    A,
    B,
    C,
    D,
}

/// The keypad, row by row (the order of [`ROW_HZ`] × [`COL_HZ`]).
const KEYPAD: [[Digit; 4]; 4] = [
    [Digit::D1, Digit::D2, Digit::D3, Digit::A],
    [Digit::D4, Digit::D5, Digit::D6, Digit::B],
    [Digit::D7, Digit::D8, Digit::D9, Digit::C],
    [Digit::Star, Digit::D0, Digit::Pound, Digit::D],
];

impl Digit {
    /// All sixteen keys, in event-code order.
    pub const ALL: [Digit; 16] = [
        Digit::D0,
        Digit::D1,
        Digit::D2,
        Digit::D3,
        Digit::D4,
        Digit::D5,
        Digit::D6,
        Digit::D7,
        Digit::D8,
        Digit::D9,
        Digit::Star,
        Digit::Pound,
        Digit::A,
        Digit::B,
        Digit::C,
        Digit::D,
    ];

    /// The key for an RFC 4733 event code (0-15); `None` for other events (flash, fax tones…).
    pub fn from_event(code: u8) -> Option<Digit> {
        Digit::ALL.get(usize::from(code)).copied()
    }

    /// The RFC 4733 event code.
    pub fn event(self) -> u8 {
        self as u8
    }

    /// The key for a character: `0-9 * # A-D` (letters in either case).
    pub fn from_char(c: char) -> Option<Digit> {
        let code = match c.to_ascii_uppercase() {
            d @ '0'..='9' => d as u8 - b'0',
            '*' => 10,
            '#' => 11,
            l @ 'A'..='D' => l as u8 - b'A' + 12,
            _ => return None,
        };
        Digit::from_event(code)
    }

    /// The key as a character (`0-9 * # A-D`).
    pub fn as_char(self) -> char {
        // The code is 0..=15, so the index is in range.
        "0123456789*#ABCD".as_bytes()[usize::from(self.event())] as char
    }

    /// The key at `row`, `col` of the keypad (each 0..4).
    pub fn from_position(row: usize, col: usize) -> Option<Digit> {
        KEYPAD.get(row)?.get(col).copied()
    }

    /// Row and column on the keypad (indexes into [`ROW_HZ`] and [`COL_HZ`]).
    pub fn position(self) -> (usize, usize) {
        // Indexed by event code (0..=15, always in range); the test checks it against KEYPAD.
        const POSITION: [(usize, usize); 16] = [
            (3, 1),
            (0, 0),
            (0, 1),
            (0, 2),
            (1, 0),
            (1, 1),
            (1, 2),
            (2, 0),
            (2, 1),
            (2, 2),
            (3, 0),
            (3, 2),
            (0, 3),
            (1, 3),
            (2, 3),
            (3, 3),
        ];
        POSITION[usize::from(self.event())]
    }

    /// The (low, high) tone pair in Hz.
    pub fn frequencies(self) -> (f64, f64) {
        let (r, c) = self.position();
        (ROW_HZ[r], COL_HZ[c])
    }
}

impl std::fmt::Display for Digit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.as_char())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_chars_and_keypad_agree() {
        for (i, d) in Digit::ALL.into_iter().enumerate() {
            assert_eq!(usize::from(d.event()), i);
            assert_eq!(Digit::from_event(d.event()), Some(d));
            assert_eq!(Digit::from_char(d.as_char()), Some(d));
            let (r, c) = d.position();
            assert_eq!(Digit::from_position(r, c), Some(d));
        }
        assert_eq!(Digit::from_char('b'), Some(Digit::B));
        assert_eq!(Digit::from_char('E'), None);
        assert_eq!(Digit::from_event(16), None, "16 is flash, not a key");
        assert_eq!(Digit::Pound.frequencies(), (941.0, 1477.0));
        assert_eq!(Digit::D5.to_string(), "5");
    }
}
