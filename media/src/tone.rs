//! Call-progress tones as sans-IO sample sources: ringback, busy, a beep. The caller pulls
//! samples at its own pace ([`ToneGenerator::fill`]), so the same generator serves a 20 ms
//! packet loop, a prompt player or a test.

use std::f64::consts::PI;

use crate::signal::amplitude;

/// A tone: one or two frequencies played together, switched on and off by a cadence.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ToneSpec {
    /// Frequencies in Hz, mixed.
    pub freqs: &'static [f64],
    /// Level of each frequency, dBFS.
    pub level_dbfs: f64,
    /// (on, off) periods in ms, played in order.
    pub cadence: &'static [(u32, u32)],
    /// Whether the cadence repeats forever (or plays once).
    pub repeat: bool,
}

/// Level of each frequency of the presets, dBFS (about -13 dBm0 in G.711).
pub const PRESET_LEVEL_DBFS: f64 = -16.0;

/// North American ringback: 440 + 480 Hz, 2 s on, 4 s off.
pub const RINGBACK_US: ToneSpec = ToneSpec {
    freqs: &[440.0, 480.0],
    level_dbfs: PRESET_LEVEL_DBFS,
    cadence: &[(2000, 4000)],
    repeat: true,
};

/// European (CEPT) ringback: 425 Hz, 1 s on, 4 s off.
pub const RINGBACK_EU: ToneSpec = ToneSpec {
    freqs: &[425.0],
    level_dbfs: PRESET_LEVEL_DBFS,
    cadence: &[(1000, 4000)],
    repeat: true,
};

/// UK ringback: 400 + 450 Hz, double ring (0.4 s on, 0.2 off, 0.4 on, 2 off).
pub const RINGBACK_UK: ToneSpec = ToneSpec {
    freqs: &[400.0, 450.0],
    level_dbfs: PRESET_LEVEL_DBFS,
    cadence: &[(400, 200), (400, 2000)],
    repeat: true,
};

/// North American busy: 480 + 620 Hz, 0.5 s on, 0.5 s off.
pub const BUSY_US: ToneSpec = ToneSpec {
    freqs: &[480.0, 620.0],
    level_dbfs: PRESET_LEVEL_DBFS,
    cadence: &[(500, 500)],
    repeat: true,
};

/// European busy: 425 Hz, 0.5 s on, 0.5 s off.
pub const BUSY_EU: ToneSpec = ToneSpec {
    freqs: &[425.0],
    level_dbfs: PRESET_LEVEL_DBFS,
    cadence: &[(500, 500)],
    repeat: true,
};

/// A beep (recording start, agent whisper): 1 kHz for 250 ms, once.
pub const BEEP: ToneSpec = ToneSpec {
    freqs: &[1000.0],
    level_dbfs: -12.0,
    cadence: &[(250, 0)],
    repeat: false,
};

/// A running tone.
#[derive(Clone, Debug)]
pub struct ToneGenerator {
    spec: ToneSpec,
    steps: Vec<f64>,
    phases: Vec<f64>,
    amp: f64,
    /// Cadence as (on, off) sample counts.
    periods: Vec<(u64, u64)>,
    /// Position within the whole cadence, samples.
    pos: u64,
    cycle: u64,
    finished: bool,
}

impl ToneGenerator {
    /// A generator for `spec` at `rate` Hz, starting at the beginning of the cadence.
    pub fn new(spec: ToneSpec, rate: u32) -> ToneGenerator {
        let rate = rate.max(1);
        let samples = |ms: u32| u64::from(ms) * u64::from(rate) / 1000;
        let periods: Vec<(u64, u64)> = spec
            .cadence
            .iter()
            .map(|&(on, off)| (samples(on), samples(off)))
            .collect();
        let cycle = periods.iter().map(|(a, b)| a + b).sum();
        ToneGenerator {
            steps: spec
                .freqs
                .iter()
                .map(|f| 2.0 * PI * f / f64::from(rate))
                .collect(),
            phases: vec![0.0; spec.freqs.len()],
            amp: amplitude(spec.level_dbfs),
            periods,
            pos: 0,
            cycle,
            finished: cycle == 0,
            spec,
        }
    }

    /// The tone being played.
    pub fn spec(&self) -> ToneSpec {
        self.spec
    }

    /// Fills `out` with the next samples; silence once a non-repeating tone is over. Returns
    /// how many samples were before the end (all of them for a repeating tone).
    pub fn fill(&mut self, out: &mut [i16]) -> usize {
        let mut produced = 0;
        for s in out.iter_mut() {
            if self.finished {
                *s = 0;
                continue;
            }
            let on = self.is_on();
            let mut v = 0.0;
            for (phase, step) in self.phases.iter_mut().zip(&self.steps) {
                if on {
                    v += self.amp * phase.sin();
                }
                *phase = (*phase + step) % (2.0 * PI);
            }
            // The sum of at most a few sines at preset levels: `as` saturates anyway.
            *s = v.round() as i16;
            produced += 1;
            self.pos += 1;
            if self.pos >= self.cycle {
                if self.spec.repeat {
                    self.pos = 0;
                } else {
                    self.finished = true;
                }
            }
        }
        produced
    }

    /// Whether a non-repeating tone has played to its end.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    fn is_on(&self) -> bool {
        let mut t = self.pos;
        for &(on, off) in &self.periods {
            if t < on {
                return true;
            }
            if t < on + off {
                return false;
            }
            t -= on + off;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::{rms_dbfs, tone_dbfs};

    fn render(spec: ToneSpec, rate: u32, ms: u32) -> Vec<i16> {
        let mut g = ToneGenerator::new(spec, rate);
        let mut out = vec![0; (u64::from(rate) * u64::from(ms) / 1000) as usize];
        for chunk in out.chunks_mut(160) {
            g.fill(chunk);
        }
        out
    }

    /// Whether each 100 ms slice is on, with the frequencies and levels checked when it is.
    fn cadence(x: &[i16], rate: u32, freqs: &[f64], level: f64) -> Vec<bool> {
        x.chunks(rate as usize / 10)
            .map(|w| {
                if rms_dbfs(w) < -60.0 {
                    return false;
                }
                for &f in freqs {
                    assert!((tone_dbfs(w, f, rate) - level).abs() < 1.0, "{f} Hz");
                }
                true
            })
            .collect()
    }

    #[test]
    fn ringback_and_busy_cadences() {
        let us = cadence(
            &render(RINGBACK_US, 8000, 12_000),
            8000,
            &[440.0, 480.0],
            -16.0,
        );
        let period: Vec<bool> = (0..60).map(|i| i < 20).collect();
        assert_eq!(us, [period.clone(), period].concat());
        let eu = cadence(&render(RINGBACK_EU, 16000, 5000), 16000, &[425.0], -16.0);
        assert_eq!(eu, (0..50).map(|i| i < 10).collect::<Vec<_>>());
        let uk = cadence(
            &render(RINGBACK_UK, 8000, 3000),
            8000,
            &[400.0, 450.0],
            -16.0,
        );
        let want: Vec<bool> = (0..30).map(|i| i < 4 || (6..10).contains(&i)).collect();
        assert_eq!(uk, want);
        let busy = cadence(&render(BUSY_US, 8000, 2000), 8000, &[480.0, 620.0], -16.0);
        assert_eq!(busy, (0..20).map(|i| i % 10 < 5).collect::<Vec<_>>());
        let busy_eu = cadence(&render(BUSY_EU, 8000, 1000), 8000, &[425.0], -16.0);
        assert_eq!(busy_eu, (0..10).map(|i| i < 5).collect::<Vec<_>>());
    }

    #[test]
    fn a_beep_plays_once() {
        let mut g = ToneGenerator::new(BEEP, 8000);
        let mut out = vec![0i16; 8000];
        assert_eq!(g.fill(&mut out), 2000);
        assert!(g.is_finished());
        assert!((tone_dbfs(&out[..2000], 1000.0, 8000) + 12.0).abs() < 0.5);
        assert!(out[2000..].iter().all(|&s| s == 0));
        assert_eq!(g.fill(&mut out[..10]), 0);
    }

    #[test]
    fn output_does_not_depend_on_chunking() {
        let mut a = ToneGenerator::new(RINGBACK_UK, 8000);
        let mut b = ToneGenerator::new(RINGBACK_UK, 8000);
        let mut x = vec![0i16; 9000];
        let mut y = vec![0i16; 9000];
        a.fill(&mut x);
        for chunk in y.chunks_mut(77) {
            b.fill(chunk);
        }
        assert_eq!(x, y);
        assert_eq!(a.spec(), RINGBACK_UK);
    }
}
