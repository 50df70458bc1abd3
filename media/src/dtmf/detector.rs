//! In-band DTMF detection over PCM (Goertzel), for legs that send keys as tones.
//!
//! Audio is cut into blocks of 12.75 ms (102 samples at 8 kHz, scaled for other rates); each
//! block is classified as one key or none by the tests of ITU-T Q.24 receivers:
//!
//! * **level**: each of the two tones at least `min_level_dbfs`;
//! * **twist**: the high tone at most `normal_twist_db` below the low one and at most
//!   `reverse_twist_db` above it;
//! * **relative peak**: in each group, the strongest frequency `relative_peak_db` above the
//!   second strongest;
//! * **purity**: the two tones hold at least `min_tone_ratio` of the block's power (speech and
//!   music spread their power over many frequencies; this is what rejects them).
//!
//! A key starts after two consecutive blocks agree on it, and ends after three blocks without it
//! (or when two blocks agree on another key). A block counts only if the tone fills at least
//! about 80% of it (the purity test), so whatever the alignment of tones and blocks: a tone of
//! 40 ms or more is always detected and one of 20 ms or less never is (Q.24 leaves what lies
//! between to the receiver); a pause of 40 ms or more always separates two presses and a
//! dropout of 10 ms or less never splits one. Frequencies within ±1.5% are accepted; larger
//! deviations are not checked beyond what the relative-peak test implies (the filters are about
//! 80 Hz wide).
//! Start and duration are known to within a block.
//!
//! Sans-IO: feed samples with [`InbandDetector::push`] (any chunking), poll finished presses
//! with [`InbandDetector::poll_event`]; times are sample counts since the first sample pushed.

use std::collections::VecDeque;

use super::goertzel::Goertzel;
use super::{Digit, COL_HZ, ROW_HZ};
use crate::signal::amplitude;

/// One key press found in the audio.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InbandDigit {
    /// The key.
    pub digit: Digit,
    /// First sample of the press (samples since the first one pushed), to within a block.
    pub start: u64,
    /// Length of the press in samples, to within a block.
    pub duration: u64,
}

/// Thresholds of the block classifier (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DetectorConfig {
    /// Minimum level of each tone, dBFS.
    pub min_level_dbfs: f64,
    /// How much weaker the high tone may be than the low one, dB.
    pub normal_twist_db: f64,
    /// How much stronger the high tone may be than the low one, dB.
    pub reverse_twist_db: f64,
    /// How far the strongest frequency of a group must stand above the next, dB.
    pub relative_peak_db: f64,
    /// Minimum share of the block's power in the two tones (0..1).
    pub min_tone_ratio: f64,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            min_level_dbfs: -36.0,
            normal_twist_db: 8.0,
            reverse_twist_db: 6.0,
            relative_peak_db: 8.0,
            min_tone_ratio: 0.8,
        }
    }
}

/// Consecutive agreeing blocks that start a key; consecutive other blocks that end it.
const BLOCKS_TO_START: u32 = 2;
const BLOCKS_TO_END: u32 = 3;

/// The key being held.
#[derive(Clone, Copy, Debug)]
struct Held {
    digit: Digit,
    start: u64,
    end: u64,
    misses: u32,
}

/// An in-band DTMF detector for one stream of PCM.
#[derive(Clone, Debug)]
pub struct InbandDetector {
    block_len: usize,
    rows: [Goertzel; 4],
    cols: [Goertzel; 4],
    /// Thresholds in linear power.
    min_tone_power: f32,
    normal_twist: f32,
    reverse_twist: f32,
    relative_peak: f32,
    min_tone_ratio: f32,
    /// The block being filled.
    block: Vec<f32>,
    /// Samples pushed so far.
    pushed: u64,
    /// The key the last blocks agreed on, for how many blocks, since which sample.
    candidate: Option<(Digit, u32, u64)>,
    held: Option<Held>,
    out: VecDeque<InbandDigit>,
}

impl InbandDetector {
    /// A detector for PCM at `rate` Hz (8000 or 16000 in practice) with default thresholds.
    pub fn new(rate: u32) -> InbandDetector {
        InbandDetector::with_config(rate, DetectorConfig::default())
    }

    /// A detector with explicit thresholds.
    pub fn with_config(rate: u32, config: DetectorConfig) -> InbandDetector {
        let rate = rate.max(8000);
        let db = |d: f64| 10f64.powf(d / 10.0) as f32;
        InbandDetector {
            block_len: (u64::from(rate) * 102 / 8000) as usize,
            rows: ROW_HZ.map(|f| Goertzel::new(f, rate)),
            cols: COL_HZ.map(|f| Goertzel::new(f, rate)),
            min_tone_power: (amplitude(config.min_level_dbfs).powi(2) / 2.0) as f32,
            normal_twist: db(config.normal_twist_db),
            reverse_twist: db(config.reverse_twist_db),
            relative_peak: db(config.relative_peak_db),
            min_tone_ratio: config.min_tone_ratio as f32,
            block: Vec::with_capacity(rate as usize / 50),
            pushed: 0,
            candidate: None,
            held: None,
            out: VecDeque::new(),
        }
    }

    /// Feeds PCM samples.
    pub fn push(&mut self, pcm: &[i16]) {
        for &s in pcm {
            self.block.push(f32::from(s));
            self.pushed += 1;
            if self.block.len() == self.block_len {
                let start = self.pushed - self.block_len as u64;
                let hit = self.classify();
                self.block.clear();
                self.on_block(hit, start);
            }
        }
    }

    /// The next finished press, oldest first.
    pub fn poll_event(&mut self) -> Option<InbandDigit> {
        self.out.pop_front()
    }

    /// The key held down right now, if any (for barge-in).
    pub fn active(&self) -> Option<Digit> {
        self.held.map(|h| h.digit)
    }

    /// Ends the press in progress, if any (end of stream).
    pub fn flush(&mut self) {
        self.end_held();
    }

    /// The key one full block holds, if it passes every test.
    fn classify(&self) -> Option<Digit> {
        let n = self.block.len() as f32;
        let total = self.block.iter().map(|x| x * x).sum::<f32>() / n;
        if total < 2.0 * self.min_tone_power {
            return None;
        }
        let (r, row, row2) = strongest(&self.rows, &self.block);
        let (c, col, col2) = strongest(&self.cols, &self.block);
        let level = row >= self.min_tone_power && col >= self.min_tone_power;
        let twist = if col < row {
            row <= col * self.normal_twist
        } else {
            col <= row * self.reverse_twist
        };
        let peaks = row >= row2 * self.relative_peak && col >= col2 * self.relative_peak;
        let pure = row + col >= self.min_tone_ratio * total;
        if level && twist && peaks && pure {
            Digit::from_position(r, c)
        } else {
            None
        }
    }

    fn on_block(&mut self, hit: Option<Digit>, start: u64) {
        let end = start + self.block_len as u64;
        self.candidate = match (hit, self.candidate) {
            (Some(d), Some((c, n, since))) if c == d => Some((d, n + 1, since)),
            (Some(d), _) => Some((d, 1, start)),
            (None, _) => None,
        };
        if let Some(h) = &mut self.held {
            if hit == Some(h.digit) {
                h.end = end;
                h.misses = 0;
                return;
            }
            h.misses += 1;
            if h.misses >= BLOCKS_TO_END {
                self.end_held();
            }
        }
        if let Some((d, n, since)) = self.candidate {
            if n >= BLOCKS_TO_START && self.held.map(|h| h.digit) != Some(d) {
                self.end_held();
                self.held = Some(Held {
                    digit: d,
                    start: since,
                    end,
                    misses: 0,
                });
            }
        }
    }

    fn end_held(&mut self) {
        if let Some(h) = self.held.take() {
            self.out.push_back(InbandDigit {
                digit: h.digit,
                start: h.start,
                duration: h.end - h.start,
            });
        }
    }
}

/// Index and power of the strongest filter of a group, and the power of the second strongest.
fn strongest(group: &[Goertzel; 4], block: &[f32]) -> (usize, f32, f32) {
    let p = group.map(|g| g.power(block));
    let mut best = 0;
    for i in 1..4 {
        if p[i] > p[best] {
            best = i;
        }
    }
    let second = (0..4)
        .filter(|&i| i != best)
        .map(|i| p[i])
        .fold(0f32, f32::max);
    (best, p[best], second)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtmf::tone::{render_sequence, DtmfTone};
    use crate::signal::{mix, sines, sweep, Noise};

    fn detect(rate: u32, pcm: &[i16]) -> Vec<InbandDigit> {
        let mut d = InbandDetector::new(rate);
        // Odd chunk sizes: the result must not depend on them.
        for chunk in pcm.chunks(37) {
            d.push(chunk);
        }
        d.flush();
        std::iter::from_fn(|| d.poll_event()).collect()
    }

    fn keys(found: &[InbandDigit]) -> String {
        found.iter().map(|f| f.digit.as_char()).collect()
    }

    #[test]
    fn every_key_in_noise_at_8_and_16_khz() {
        for rate in [8000, 16000] {
            let clean = render_sequence("0123456789*#ABCD", rate, 60, 60);
            // Noise 20 dB below each tone.
            let noisy = mix(
                &clean,
                &Noise::new(u64::from(rate)).white(-33.0, clean.len()),
            );
            let found = detect(rate, &noisy);
            assert_eq!(keys(&found), "0123456789*#ABCD", "{rate} Hz");
            let per_key = u64::from(rate) * 120 / 1000;
            let on = u64::from(rate) * 60 / 1000;
            let block = u64::from(rate) * 102 / 8000;
            for (i, f) in found.iter().enumerate() {
                let start = i as u64 * per_key;
                assert!(f.start.abs_diff(start) <= block, "{f:?}");
                assert!(f.duration.abs_diff(on) <= 2 * block, "{f:?}");
            }
        }
    }

    #[test]
    fn twist_and_level_limits() {
        let press = |low_dbfs: f64, twist: f64| {
            let mut x = DtmfTone::new(Digit::D5, 8000, low_dbfs, twist).samples(800);
            x.extend(vec![0; 400]);
            keys(&detect(8000, &x))
        };
        assert_eq!(
            press(-10.0, 2.0),
            "5",
            "telephones send the high tone ~2 dB up"
        );
        assert_eq!(press(-10.0, -6.0), "5");
        assert_eq!(press(-10.0, 5.0), "5");
        assert_eq!(press(-10.0, -11.0), "", "beyond normal twist");
        assert_eq!(press(-20.0, 9.0), "", "beyond reverse twist");
        assert_eq!(press(-30.0, 0.0), "5");
        assert_eq!(press(-42.0, 0.0), "", "below the minimum level");
    }

    #[test]
    fn frequencies_off_by_1_5_percent_are_accepted() {
        for d in Digit::ALL {
            let (lo, hi) = d.frequencies();
            for k in [0.985, 1.015] {
                let mut x = sines(&[(lo * k, -10.0), (hi * k, -10.0)], 8000, 640);
                x.extend(vec![0; 400]);
                assert_eq!(keys(&detect(8000, &x)), d.to_string(), "{d} × {k}");
            }
        }
    }

    #[test]
    fn minimum_duration_and_pause_at_every_alignment() {
        for offset in (0..102).step_by(7) {
            let lead = vec![0i16; offset];
            let with = |on_ms, off_ms| {
                let mut x = lead.clone();
                x.extend(render_sequence("77", 8000, on_ms, off_ms));
                keys(&detect(8000, &x))
            };
            assert_eq!(with(40, 40), "77", "offset {offset}");
            assert_eq!(with(20, 100), "", "offset {offset}: 20 ms is too short");
        }
    }

    #[test]
    fn a_10ms_dropout_never_splits_a_press() {
        for at in (300..420).step_by(5) {
            let mut x = DtmfTone::standard(Digit::D3, 8000).samples(800);
            for s in &mut x[at..at + 80] {
                *s = 0;
            }
            x.extend(vec![0; 400]);
            assert_eq!(keys(&detect(8000, &x)), "3", "dropout at {at}");
        }
        // One key then another without a pause: two presses.
        let mut y = DtmfTone::standard(Digit::D1, 8000).samples(480);
        y.extend(DtmfTone::standard(Digit::D2, 8000).samples(480));
        assert_eq!(keys(&detect(8000, &y)), "12");
    }

    #[test]
    fn no_false_keys_on_silence_noise_or_speech_like_audio() {
        let rate = 8000;
        let secs = |s: usize| s * rate as usize;
        let mut signals: Vec<(&str, Vec<i16>)> = vec![
            ("silence", vec![0; secs(2)]),
            ("noise", Noise::new(1).white(-10.0, secs(2))),
            ("sweep", sweep(200.0, 3400.0, -10.0, rate, secs(3))),
            ("fast sweep", sweep(3400.0, 300.0, -6.0, rate, secs(1))),
        ];
        // Voiced speech: harmonics of a pitch with a formant envelope, the pitch gliding.
        for (i, f0) in [95.0, 120.0, 140.0, 180.0, 210.0, 240.0]
            .into_iter()
            .enumerate()
        {
            let harmonics: Vec<(f64, f64)> = (1..=(3400.0 / f0) as usize)
                .map(|k| {
                    let f = f0 * k as f64;
                    let formant = [(700.0, 120.0), (1220.0, 150.0), (2600.0, 250.0)]
                        .iter()
                        .map(|&(c, bw): &(f64, f64)| (-((f - c) / bw).powi(2)).exp())
                        .fold(0.0, f64::max);
                    (f, -40.0 + 28.0 * formant)
                })
                .collect();
            signals.push(("vowel", sines(&harmonics, rate, secs(1))));
            // Two strong partials sitting right on a row and a column frequency, but with
            // their neighbours (as any voiced sound has): not pure enough.
            let f1 = ROW_HZ[i % 4];
            let f2 = COL_HZ[(i + 1) % 4];
            let parts = [
                (f1, -12.0),
                (f2, -12.0),
                (f1 - f0, -14.0),
                (f2 + f0, -14.0),
                (f0 * 3.0, -14.0),
                (f1 + f0, -16.0),
            ];
            signals.push(("near-dtmf chord", sines(&parts, rate, secs(1))));
        }
        // Random vowels: pitch 80-250 Hz, three random formants, 250 ms each, 20 s in all.
        let mut rng = Noise::new(99);
        let mut babble = Vec::new();
        for _ in 0..80 {
            let f0 = 80.0 + 170.0 * rng.uniform();
            let formants = [
                300.0 + 600.0 * rng.uniform(),
                900.0 + 1400.0 * rng.uniform(),
                2200.0 + 1000.0 * rng.uniform(),
            ];
            let harmonics: Vec<(f64, f64)> = (1..=(3400.0 / f0) as usize)
                .map(|k| {
                    let f = f0 * k as f64;
                    let env = formants
                        .iter()
                        .map(|c| (-((f - c) / 130.0).powi(2)).exp())
                        .fold(0.0, f64::max);
                    (f, -42.0 + 30.0 * env)
                })
                .collect();
            babble.extend(sines(&harmonics, rate, secs(1) / 4));
        }
        signals.push(("babble", babble));
        for (name, x) in &signals {
            assert_eq!(keys(&detect(rate, x)), "", "{name}");
        }
    }
}
