//! The Goertzel filter: the power of one frequency over a block of samples, in O(N) with one
//! multiply per sample, which is what DTMF detection needs (8 frequencies, not a whole FFT).

use std::f32::consts::PI;

/// A Goertzel filter tuned to one frequency (any frequency: the bin need not be an integer).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Goertzel {
    coeff: f32,
}

impl Goertzel {
    /// A filter for `freq_hz` at sample rate `rate`.
    pub fn new(freq_hz: f64, rate: u32) -> Goertzel {
        let w = 2.0 * PI * (freq_hz / f64::from(rate.max(1))) as f32;
        Goertzel {
            coeff: 2.0 * w.cos(),
        }
    }

    /// Mean power of the block at the filter's frequency, normalised so that a sine of
    /// amplitude `a` at that frequency gives `a² / 2` (the block's total mean power is
    /// `Σx² / N`, so the two compare directly). 0 for an empty block.
    pub fn power(&self, block: &[f32]) -> f32 {
        if block.is_empty() {
            return 0.0;
        }
        let (mut s1, mut s2) = (0f32, 0f32);
        for &x in block {
            let s = x + self.coeff * s1 - s2;
            s2 = s1;
            s1 = s;
        }
        let n = block.len() as f32;
        2.0 * (s1 * s1 + s2 * s2 - self.coeff * s1 * s2) / (n * n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::sine;

    fn block(freq: f64) -> Vec<f32> {
        sine(freq, -10.0, 8000, 205)
            .into_iter()
            .map(f32::from)
            .collect()
    }

    #[test]
    fn peaks_at_its_frequency() {
        let g = Goertzel::new(770.0, 8000);
        let a2 = (crate::signal::amplitude(-10.0).powi(2) / 2.0) as f32;
        let on = g.power(&block(770.0));
        assert!((on / a2 - 1.0).abs() < 0.05, "{on} vs {a2}");
        // 852 Hz is 82 Hz away: with 205 samples (39 Hz resolution) it is far down.
        assert!(g.power(&block(852.0)) < on / 100.0);
        assert_eq!(g.power(&[]), 0.0);
    }
}
