//! Packet loss concealment on PCM: what to play for a frame the jitter buffer reports missing.
//!
//! The simplest method that sounds acceptable for short losses: repeat the last good frame with
//! a gain ramping down, so that a burst of losses fades to silence instead of buzzing. The gain
//! falls linearly across frames (no step inside a frame), from full on the first concealed
//! frame to zero after `fade_frames` of them (default 5: 100 ms at 20 ms frames).

/// Concealment state of one decoded stream.
#[derive(Clone, Debug)]
pub struct Concealer {
    last: Vec<i16>,
    lost_in_row: u32,
    fade_frames: u32,
}

impl Default for Concealer {
    fn default() -> Self {
        Concealer::new(5)
    }
}

impl Concealer {
    /// A concealer that fades to silence over `fade_frames` concealed frames (at least 1).
    pub fn new(fade_frames: u32) -> Concealer {
        Concealer {
            last: Vec::new(),
            lost_in_row: 0,
            fade_frames: fade_frames.max(1),
        }
    }

    /// Records a good (decoded) frame; the next loss repeats it.
    pub fn good(&mut self, frame: &[i16]) {
        self.last.clear();
        self.last.extend_from_slice(frame);
        self.lost_in_row = 0;
    }

    /// Fills `out` with the concealment of one missing frame: the last good frame, repeated
    /// cyclically to `out`'s length, faded; silence if there was none or the fade is over.
    pub fn conceal(&mut self, out: &mut [i16]) {
        let k = self.lost_in_row;
        self.lost_in_row = self.lost_in_row.saturating_add(1);
        if self.last.is_empty() || k >= self.fade_frames {
            out.fill(0);
            return;
        }
        let f = self.fade_frames as f32;
        let (g0, g1) = (1.0 - k as f32 / f, 1.0 - (k + 1) as f32 / f);
        let n = out.len().max(1) as f32;
        for (i, (o, s)) in out.iter_mut().zip(self.last.iter().cycle()).enumerate() {
            let g = g0 + (g1 - g0) * i as f32 / n;
            // |s · g| ≤ |s| since 0 ≤ g ≤ 1: fits in i16.
            *o = (f32::from(*s) * g).round() as i16;
        }
    }

    /// Concealed frames since the last good one.
    pub fn lost_in_row(&self) -> u32 {
        self.lost_in_row
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::{dominant, rms_dbfs, sine};

    #[test]
    fn repeats_then_fades_to_silence() {
        let tone = sine(1000.0, -10.0, 8000, 160);
        let mut c = Concealer::default();
        c.good(&tone);
        let mut frames = Vec::new();
        for _ in 0..7 {
            let mut f = vec![0i16; 160];
            c.conceal(&mut f);
            frames.push(f);
        }
        // The tone goes on (a whole number of 1 kHz periods per frame: repeats are seamless).
        assert_eq!(
            dominant(&frames[0], &[500.0, 1000.0, 2000.0], 8000),
            Some(1000.0)
        );
        // Gain ramping 1 → 0.8 across the first frame: about -0.9 dB.
        assert!(
            (rms_dbfs(&frames[0]) + 10.9).abs() < 0.2,
            "{}",
            rms_dbfs(&frames[0])
        );
        let levels: Vec<f64> = frames.iter().map(|f| rms_dbfs(f)).collect();
        assert!(levels.windows(2).take(4).all(|w| w[1] < w[0]), "{levels:?}");
        assert!(frames[5..].iter().all(|f| f.iter().all(|&s| s == 0)));
        assert_eq!(c.lost_in_row(), 7);
        // No gain step between frames (samples 158 and 2 are peaks of the 1 kHz tone).
        let g_end = f64::from(frames[0][158]) / f64::from(tone[158]);
        let g_start = f64::from(frames[1][2]) / f64::from(tone[2]);
        assert!((g_end - 0.8).abs() < 0.01 && (g_start - 0.8).abs() < 0.01);
        // A good frame resets the fade.
        c.good(&tone);
        let mut f = vec![0i16; 160];
        c.conceal(&mut f);
        assert!(
            (f64::from(f[2]) / f64::from(tone[2]) - 1.0).abs() < 0.01,
            "full gain again"
        );
    }

    #[test]
    fn silence_without_history_and_any_output_length() {
        let mut c = Concealer::new(3);
        let mut f = vec![1i16; 100];
        c.conceal(&mut f);
        assert!(f.iter().all(|&s| s == 0));
        c.good(&[1000, -1000]);
        let mut g = vec![0i16; 5];
        c.conceal(&mut g);
        // Cyclic repeat, gain ramping from 1 towards 2/3 over the 5 samples.
        assert_eq!(g, [1000, -933, 867, -800, 733]);
    }
}
