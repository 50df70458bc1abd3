//! DTMF tones as a sans-IO sample source: for in-band signalling (SIP INFO or RFC 4733 digits
//! towards a leg that has neither) and for tests of the detector.

use std::f64::consts::PI;

use super::Digit;
use crate::signal::amplitude;

/// Level of each of the two tones by default, in dBFS (about -10 dBm0 in G.711 terms).
pub const DEFAULT_LEVEL_DBFS: f64 = -13.0;

/// A DTMF tone pair, rendered sample by sample with continuous phase.
#[derive(Clone, Debug)]
pub struct DtmfTone {
    low: Oscillator,
    high: Oscillator,
}

impl DtmfTone {
    /// The tone of `digit` at `rate`, with the low tone at `low_dbfs` and the high tone
    /// `twist_db` louder (negative: quieter; telephones send about +2 dB).
    pub fn new(digit: Digit, rate: u32, low_dbfs: f64, twist_db: f64) -> DtmfTone {
        let (lo, hi) = digit.frequencies();
        DtmfTone {
            low: Oscillator::new(lo, low_dbfs, rate),
            high: Oscillator::new(hi, low_dbfs + twist_db, rate),
        }
    }

    /// The tone of `digit` at `rate` with both tones at [`DEFAULT_LEVEL_DBFS`].
    pub fn standard(digit: Digit, rate: u32) -> DtmfTone {
        DtmfTone::new(digit, rate, DEFAULT_LEVEL_DBFS, 0.0)
    }

    /// Fills `out` with the next samples.
    pub fn fill(&mut self, out: &mut [i16]) {
        for s in out {
            // Two tones at most 0 dBFS each could reach 2× full scale: `as` saturates.
            *s = (self.low.next() + self.high.next()).round() as i16;
        }
    }

    /// The next `n` samples.
    pub fn samples(&mut self, n: usize) -> Vec<i16> {
        let mut v = vec![0; n];
        self.fill(&mut v);
        v
    }
}

/// A key sequence as audio: each key `on_ms` long, followed by `off_ms` of silence, standard
/// levels. Characters that are not keys are skipped.
pub fn render_sequence(keys: &str, rate: u32, on_ms: u32, off_ms: u32) -> Vec<i16> {
    let on = (u64::from(rate) * u64::from(on_ms) / 1000) as usize;
    let off = (u64::from(rate) * u64::from(off_ms) / 1000) as usize;
    let mut out = Vec::new();
    for d in keys.chars().filter_map(Digit::from_char) {
        out.extend(DtmfTone::standard(d, rate).samples(on));
        out.resize(out.len() + off, 0);
    }
    out
}

/// A sine with a running phase.
#[derive(Clone, Debug)]
struct Oscillator {
    phase: f64,
    step: f64,
    amp: f64,
}

impl Oscillator {
    fn new(freq_hz: f64, dbfs: f64, rate: u32) -> Oscillator {
        Oscillator {
            phase: 0.0,
            step: 2.0 * PI * freq_hz / f64::from(rate.max(1)),
            amp: amplitude(dbfs),
        }
    }

    fn next(&mut self) -> f64 {
        let v = self.amp * self.phase.sin();
        self.phase = (self.phase + self.step) % (2.0 * PI);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtmf::{COL_HZ, ROW_HZ};
    use crate::signal::tone_dbfs;

    #[test]
    fn each_key_has_its_two_tones_at_the_set_levels() {
        for d in Digit::ALL {
            let x = DtmfTone::new(d, 8000, -10.0, -3.0).samples(800);
            let (lo, hi) = d.frequencies();
            assert!((tone_dbfs(&x, lo, 8000) + 10.0).abs() < 0.3, "{d}");
            assert!((tone_dbfs(&x, hi, 8000) + 13.0).abs() < 0.3, "{d}");
            for &f in ROW_HZ.iter().chain(&COL_HZ) {
                if f != lo && f != hi {
                    assert!(tone_dbfs(&x, f, 8000) < -30.0, "{d} leaks at {f} Hz");
                }
            }
        }
    }

    #[test]
    fn phase_is_continuous_across_fills() {
        let whole = DtmfTone::standard(Digit::D8, 16000).samples(640);
        let mut t = DtmfTone::standard(Digit::D8, 16000);
        let mut parts = t.samples(123);
        parts.extend(t.samples(517));
        assert_eq!(whole, parts);
        let seq = render_sequence("1x2", 8000, 50, 30);
        assert_eq!(seq.len(), 2 * (400 + 240));
    }
}
