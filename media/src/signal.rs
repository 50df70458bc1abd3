//! Synthetic audio and the measurements the media tests and benchmarks make on it: sines, sweeps,
//! deterministic noise, SNR, level and single-frequency power.
//!
//! Everything here is deterministic (the noise comes from a seeded xorshift generator), so tests
//! built on it never flake. Levels are in dBFS where 0 dBFS is a full-scale sine (peak 32767).

use std::f64::consts::PI;

/// Peak amplitude of a full-scale (0 dBFS) sine.
pub const FULL_SCALE: f64 = 32767.0;

/// Peak amplitude of a sine at `dbfs` (0 dBFS = full scale).
pub fn amplitude(dbfs: f64) -> f64 {
    FULL_SCALE * 10f64.powf(dbfs / 20.0)
}

/// `n` samples of a sine at `freq_hz` and `dbfs`, sampled at `rate`, starting at phase 0.
pub fn sine(freq_hz: f64, dbfs: f64, rate: u32, n: usize) -> Vec<i16> {
    let a = amplitude(dbfs);
    let w = 2.0 * PI * freq_hz / f64::from(rate);
    (0..n).map(|i| to_i16(a * (w * i as f64).sin())).collect()
}

/// `n` samples of a sum of sines, each `(freq_hz, dbfs)`, all starting at phase 0.
pub fn sines(parts: &[(f64, f64)], rate: u32, n: usize) -> Vec<i16> {
    let mut acc = vec![0f64; n];
    for &(f, dbfs) in parts {
        let a = amplitude(dbfs);
        let w = 2.0 * PI * f / f64::from(rate);
        for (i, s) in acc.iter_mut().enumerate() {
            *s += a * (w * i as f64).sin();
        }
    }
    acc.into_iter().map(to_i16).collect()
}

/// `n` samples of a linear sweep from `from_hz` to `to_hz` at `dbfs`.
pub fn sweep(from_hz: f64, to_hz: f64, dbfs: f64, rate: u32, n: usize) -> Vec<i16> {
    let a = amplitude(dbfs);
    let rate = f64::from(rate);
    let span = n.max(1) as f64 / rate;
    let k = (to_hz - from_hz) / span; // Hz per second
    (0..n)
        .map(|i| {
            let t = i as f64 / rate;
            to_i16(a * (2.0 * PI * (from_hz * t + 0.5 * k * t * t)).sin())
        })
        .collect()
}

/// Deterministic pseudo-random numbers (xorshift64*): test noise and simulated network jitter.
#[derive(Clone, Debug)]
pub struct Noise {
    state: u64,
}

impl Noise {
    /// A generator from `seed` (0 is replaced by a fixed non-zero seed).
    pub fn new(seed: u64) -> Noise {
        Noise {
            state: if seed == 0 {
                0x9e37_79b9_7f4a_7c15
            } else {
                seed
            },
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    pub fn gaussian(&mut self) -> f64 {
        let u1 = self.uniform().max(f64::MIN_POSITIVE);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * PI * u2).cos()
    }

    /// `n` samples of white Gaussian noise whose RMS is that of a sine at `dbfs`.
    pub fn white(&mut self, dbfs: f64, n: usize) -> Vec<i16> {
        let rms = amplitude(dbfs) / 2f64.sqrt();
        (0..n).map(|_| to_i16(rms * self.gaussian())).collect()
    }
}

/// Sample-wise saturating sum of two signals (the shorter is padded with silence).
pub fn mix(a: &[i16], b: &[i16]) -> Vec<i16> {
    let n = a.len().max(b.len());
    (0..n)
        .map(|i| {
            let x = i32::from(a.get(i).copied().unwrap_or(0));
            let y = i32::from(b.get(i).copied().unwrap_or(0));
            to_i16(f64::from(x + y))
        })
        .collect()
}

/// RMS level in dBFS (a full-scale sine is 0 dBFS); `-inf` for silence or an empty slice.
pub fn rms_dbfs(x: &[i16]) -> f64 {
    if x.is_empty() {
        return f64::NEG_INFINITY;
    }
    let p = x.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / x.len() as f64;
    10.0 * (p / (FULL_SCALE * FULL_SCALE / 2.0)).log10()
}

/// Signal-to-noise ratio in dB of `decoded` against `reference`, sample by sample, after shifting
/// `decoded` by the delay in `0..=max_delay` samples that fits best (codecs with filter banks,
/// such as G.722, delay their output). Compares the overlap only.
pub fn snr_db(reference: &[i16], decoded: &[i16], max_delay: usize) -> f64 {
    let mut best = f64::NEG_INFINITY;
    for d in 0..=max_delay {
        let Some(shifted) = decoded.get(d..) else {
            break;
        };
        let n = reference.len().min(shifted.len());
        if n == 0 {
            break;
        }
        let (mut sig, mut err) = (0f64, 0f64);
        for (r, y) in reference[..n].iter().zip(&shifted[..n]) {
            let r = f64::from(*r);
            sig += r * r;
            err += (r - f64::from(*y)).powi(2);
        }
        let snr = if err == 0.0 {
            f64::INFINITY
        } else {
            10.0 * (sig / err).log10()
        };
        best = best.max(snr);
    }
    best
}

/// Power of `x` at `freq_hz` (Goertzel), normalised so that a sine at that frequency gives its
/// mean power (`amplitude² / 2`) whatever the length of `x`.
pub fn tone_power(x: &[i16], freq_hz: f64, rate: u32) -> f64 {
    if x.is_empty() {
        return 0.0;
    }
    let coeff = 2.0 * (2.0 * PI * freq_hz / f64::from(rate)).cos();
    let (mut s1, mut s2) = (0f64, 0f64);
    for &v in x {
        let s = f64::from(v) + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    let p = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    let n = x.len() as f64;
    2.0 * p / (n * n)
}

/// Level in dBFS of the component of `x` at `freq_hz` (see [`tone_power`]).
pub fn tone_dbfs(x: &[i16], freq_hz: f64, rate: u32) -> f64 {
    10.0 * (tone_power(x, freq_hz, rate) / (FULL_SCALE * FULL_SCALE / 2.0)).log10()
}

/// The frequency among `candidates` with the most power in `x` (`None` if `candidates` is empty).
pub fn dominant(x: &[i16], candidates: &[f64], rate: u32) -> Option<f64> {
    candidates
        .iter()
        .copied()
        .map(|f| (f, tone_power(x, f, rate)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(f, _)| f)
}

fn to_i16(v: f64) -> i16 {
    // `as` saturates (and maps NaN to 0): clipping is the intended behaviour.
    v.round() as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_tone_power_agree_with_the_definitions() {
        let x = sine(1000.0, -10.0, 8000, 8000);
        assert!((rms_dbfs(&x) + 10.0).abs() < 0.05, "{}", rms_dbfs(&x));
        assert!((tone_dbfs(&x, 1000.0, 8000) + 10.0).abs() < 0.1);
        assert!(tone_dbfs(&x, 1500.0, 8000) < -60.0);
        assert_eq!(dominant(&x, &[500.0, 1000.0, 2000.0], 8000), Some(1000.0));
        assert_eq!(rms_dbfs(&[]), f64::NEG_INFINITY);
    }

    #[test]
    fn noise_is_deterministic_and_at_the_requested_level() {
        let a = Noise::new(7).white(-20.0, 16000);
        let b = Noise::new(7).white(-20.0, 16000);
        assert_eq!(a, b);
        assert!((rms_dbfs(&a) + 20.0).abs() < 0.3, "{}", rms_dbfs(&a));
    }

    #[test]
    fn snr_finds_the_delay() {
        let x = sine(700.0, -6.0, 8000, 800);
        let mut delayed = vec![0i16; 5];
        delayed.extend_from_slice(&x);
        assert_eq!(snr_db(&x, &delayed, 10), f64::INFINITY);
        assert!(snr_db(&x, &delayed, 2) < 10.0);
    }

    #[test]
    fn sweep_covers_its_band() {
        let x = sweep(300.0, 3000.0, -10.0, 8000, 8000);
        let first = &x[..800]; // 300..570 Hz
        let last = &x[7200..]; // 2730..3000 Hz
        assert!(tone_power(first, 400.0, 8000) > 10.0 * tone_power(first, 2900.0, 8000));
        assert!(tone_power(last, 2900.0, 8000) > 10.0 * tone_power(last, 400.0, 8000));
        assert_eq!(mix(&[30000], &[30000, 1]), vec![32767, 1]);
    }
}
