//! G.711 (ITU-T, 1972/1988): µ-law (PCMU) and A-law (PCMA) companding, 8 bits per sample.
//!
//! The four tables are computed at compile time from the segment/quantisation rules of G.711
//! (the same rules as the ITU reference code): decoding is one lookup per byte, encoding one
//! lookup per sample (µ-law on the 14 significant bits, A-law on the 13).

use super::{Codec, CodecKind, DecodeError};

/// G.711 µ-law (PCMU, payload type 0).
#[derive(Clone, Copy, Debug, Default)]
pub struct Pcmu;

/// G.711 A-law (PCMA, payload type 8).
#[derive(Clone, Copy, Debug, Default)]
pub struct Pcma;

impl Codec for Pcmu {
    fn kind(&self) -> CodecKind {
        CodecKind::Pcmu
    }

    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) {
        out.extend(pcm.iter().map(|&s| linear_to_ulaw(s)));
    }

    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), DecodeError> {
        out.extend(payload.iter().map(|&b| ulaw_to_linear(b)));
        Ok(())
    }
}

impl Codec for Pcma {
    fn kind(&self) -> CodecKind {
        CodecKind::Pcma
    }

    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) {
        out.extend(pcm.iter().map(|&s| linear_to_alaw(s)));
    }

    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), DecodeError> {
        out.extend(payload.iter().map(|&b| alaw_to_linear(b)));
        Ok(())
    }
}

/// µ-law code of a 16-bit sample.
#[inline]
pub fn linear_to_ulaw(sample: i16) -> u8 {
    // The index is the sample's top 14 bits, offset to 0..16384: always in range.
    ULAW_ENCODE[((sample >> 2) as i32 + 8192) as usize]
}

/// 16-bit sample of a µ-law code.
#[inline]
pub fn ulaw_to_linear(code: u8) -> i16 {
    ULAW_DECODE[code as usize]
}

/// A-law code of a 16-bit sample.
#[inline]
pub fn linear_to_alaw(sample: i16) -> u8 {
    // The index is the sample's top 13 bits, offset to 0..8192: always in range.
    ALAW_ENCODE[((sample >> 3) as i32 + 4096) as usize]
}

/// 16-bit sample of an A-law code.
#[inline]
pub fn alaw_to_linear(code: u8) -> i16 {
    ALAW_DECODE[code as usize]
}

/// µ-law per G.711 (as the ITU-T G.191 reference code does it): on the 14-bit value `v`,
/// magnitudes (one's complement for negatives) are biased by 33 so that segment `s` covers
/// `[2^(s+5), 2^(s+6))`; 4 mantissa bits; all bits inverted on the line, so the sign bit is set
/// for positive values and silence is 0xff.
const fn ulaw_encode_14(v: i32) -> u8 {
    let (sign, mag) = if v < 0 { (0x00, !v) } else { (0x80, v) };
    let mut m = mag + 33;
    if m > 0x1fff {
        m = 0x1fff;
    }
    // m is in 33..=0x1fff: its highest set bit is bit 5..=12.
    let seg = (31 - m.leading_zeros() as i32) - 5;
    let mantissa = (m >> (seg + 1)) & 0x0f;
    (sign | ((7 - seg) << 4) | (0x0f - mantissa)) as u8
}

/// µ-law decoding: reconstruction levels at the midpoints of the decision intervals, in 16-bit
/// units (bias 33 × 4).
const ULAW_BIAS: i32 = 0x84;

const fn ulaw_decode_code(code: u8) -> i16 {
    let c = !code;
    let exponent = ((c >> 4) & 0x07) as i32;
    let mantissa = (c & 0x0f) as i32;
    let mag = (((mantissa << 3) + ULAW_BIAS) << exponent) - ULAW_BIAS;
    if c & 0x80 != 0 {
        -mag as i16
    } else {
        mag as i16
    }
}

/// A-law: 13-bit magnitudes, segment 0 and 1 linear with step 2, segments 2..7 doubling; even
/// bits inverted on the line (XOR 0x55), sign bit set for positive values.
const fn alaw_encode_16(sample: i32) -> u8 {
    let mut v = sample >> 3;
    let mask = if v >= 0 {
        0xd5
    } else {
        v = -v - 1;
        0x55
    };
    // Segment ends (inclusive) for 13-bit magnitudes.
    let ends = [0x1f, 0x3f, 0x7f, 0xff, 0x1ff, 0x3ff, 0x7ff, 0xfff];
    let mut seg = 0;
    while seg < 8 && v > ends[seg] {
        seg += 1;
    }
    if seg >= 8 {
        return 0x7f ^ mask;
    }
    let shift = if seg < 2 { 1 } else { seg as i32 };
    let aval = ((seg as i32) << 4) | ((v >> shift) & 0x0f);
    (aval as u8) ^ mask
}

const fn alaw_decode_code(code: u8) -> i16 {
    let a = code ^ 0x55;
    let mut t = ((a & 0x0f) as i32) << 4;
    let seg = ((a & 0x70) >> 4) as i32;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    if a & 0x80 != 0 {
        t as i16
    } else {
        -t as i16
    }
}

static ULAW_ENCODE: [u8; 16384] = {
    let mut t = [0u8; 16384];
    let mut i = 0;
    while i < 16384 {
        t[i] = ulaw_encode_14((i as i32) - 8192);
        i += 1;
    }
    t
};

static ALAW_ENCODE: [u8; 8192] = {
    let mut t = [0u8; 8192];
    let mut i = 0;
    while i < 8192 {
        t[i] = alaw_encode_16(((i as i32) - 4096) << 3);
        i += 1;
    }
    t
};

static ULAW_DECODE: [i16; 256] = {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = ulaw_decode_code(i as u8);
        i += 1;
    }
    t
};

static ALAW_DECODE: [i16; 256] = {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = alaw_decode_code(i as u8);
        i += 1;
    }
    t
};

#[cfg(test)]
mod tests {
    use super::*;

    /// Every 16-bit sample decodes back to within half a quantisation step (the wider of the
    /// two gaps around its reconstruction level, which differ at segment boundaries), plus the
    /// one-unit offset of G.711's one's-complement negatives scaled to 16 bits.
    #[test]
    fn every_sample_is_within_half_a_step() {
        fn check(levels_of: fn(u8) -> i16, code_of: fn(i16) -> u8, slack: i32) {
            let mut levels: Vec<i32> = (0..=255).map(|c| i32::from(levels_of(c))).collect();
            levels.sort_unstable();
            levels.dedup();
            for s in i16::MIN..=i16::MAX {
                let y = i32::from(levels_of(code_of(s)));
                let i = levels.binary_search(&y).unwrap_or(0); // invariant: y is a level
                let below = i.checked_sub(1).map_or(0, |j| y - levels[j]);
                let above = levels.get(i + 1).map_or(0, |l| l - y);
                let half = below.max(above) / 2;
                // Beyond the outermost level the quantiser clips.
                let x = i32::from(s).clamp(levels[0], levels[levels.len() - 1]);
                assert!(
                    (y - x).abs() <= half + slack,
                    "{s} → {y} (half step {half})"
                );
            }
        }
        check(ulaw_to_linear, linear_to_ulaw, 4);
        check(alaw_to_linear, linear_to_alaw, 8);
    }

    #[test]
    fn known_code_points() {
        // Silence, and the extremes of each law (G.711 tables 1a/2a).
        assert_eq!(linear_to_ulaw(0), 0xff);
        assert_eq!(ulaw_to_linear(0xff), 0);
        assert_eq!(ulaw_to_linear(0x7f), 0, "µ-law has a negative zero");
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
        assert_eq!(linear_to_alaw(0), 0xd5);
        assert_eq!(alaw_to_linear(0xd5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xaa), 32256);
        assert_eq!(alaw_to_linear(0x2a), -32256);
        assert_eq!(linear_to_alaw(i16::MAX), 0xaa);
        assert_eq!(linear_to_alaw(i16::MIN), 0x2a);
    }

    #[test]
    fn every_code_survives_decode_then_encode() {
        for c in 0..=255u8 {
            if c != 0x7f {
                assert_eq!(linear_to_ulaw(ulaw_to_linear(c)), c, "µ-law {c:#04x}");
            }
            assert_eq!(linear_to_alaw(alaw_to_linear(c)), c, "A-law {c:#04x}");
        }
    }

    #[test]
    fn decoding_is_monotonic_and_odd_symmetric() {
        let mut ulaw: Vec<i16> = (0..=255).map(ulaw_to_linear).collect();
        let mut alaw: Vec<i16> = (0..=255).map(alaw_to_linear).collect();
        for (c, &v) in ulaw.iter().enumerate() {
            assert_eq!(ulaw_to_linear(c as u8 ^ 0x80), -v);
        }
        for (c, &v) in alaw.iter().enumerate() {
            assert_eq!(alaw_to_linear(c as u8 ^ 0x80), -v);
        }
        ulaw.sort_unstable();
        ulaw.dedup();
        alaw.sort_unstable();
        alaw.dedup();
        assert_eq!(ulaw.len(), 255, "256 codes, one shared zero");
        assert_eq!(alaw.len(), 256);
    }
}
