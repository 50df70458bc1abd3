//! Energy voice-activity detection on 20 ms frames: where an utterance starts and ends.
//! Sans-IO and deterministic: frames in, transitions out.
//!
//! A frame is loud when its RMS level is 12 dB above the tracked noise floor and above
//! [`MIN_SPEECH_DBFS`]. Speech starts after [`START_FRAMES`] consecutive loud frames; it ends after
//! [`END_FRAMES`] consecutive quiet ones (700 ms: longer than the pause between words, short
//! enough that a caller is not left waiting). The floor follows quiet frames only, slowly, so
//! steady line noise raises the threshold while speech does not.

use crate::signal::rms_dbfs;

/// Frames of 20 ms.
pub const FRAME_MS: u32 = 20;
/// Loud frames in a row that start speech (60 ms: clicks and pops do not).
pub const START_FRAMES: u32 = 3;
/// Quiet frames in a row that end speech (700 ms).
pub const END_FRAMES: u32 = 35;
/// Nothing quieter than this is speech, whatever the noise floor.
pub const MIN_SPEECH_DBFS: f64 = -45.0;
/// How far above the noise floor speech must be, dB.
pub const MARGIN_DB: f64 = 12.0;

/// What a frame changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VadEvent {
    /// Speech began (with the last [`START_FRAMES`] frames).
    SpeechStart,
    /// Speech ended [`END_FRAMES`] frames ago.
    SpeechEnd,
}

/// The detector's state for one stream.
#[derive(Clone, Debug)]
pub struct Vad {
    noise_dbfs: f64,
    in_speech: bool,
    run: u32,
}

impl Default for Vad {
    fn default() -> Self {
        Vad::new()
    }
}

impl Vad {
    /// A detector that has heard nothing yet (noise floor -70 dBFS).
    pub fn new() -> Vad {
        Vad {
            noise_dbfs: -70.0,
            in_speech: false,
            run: 0,
        }
    }

    /// Whether the stream is in speech.
    pub fn in_speech(&self) -> bool {
        self.in_speech
    }

    /// Quiet frames in a row since the last loud one, while in speech (0 otherwise).
    pub fn quiet_run(&self) -> u32 {
        if self.in_speech {
            self.run
        } else {
            0
        }
    }

    /// The current noise floor estimate, dBFS.
    pub fn noise_dbfs(&self) -> f64 {
        self.noise_dbfs
    }

    /// Takes the next frame (normally 20 ms) and says whether speech started or ended.
    pub fn frame(&mut self, frame: &[i16]) -> Option<VadEvent> {
        let level = rms_dbfs(frame).max(-100.0);
        let loud = level > (self.noise_dbfs + MARGIN_DB).max(MIN_SPEECH_DBFS);
        if !loud {
            // Follow the floor: down fast, up slowly.
            let a = if level < self.noise_dbfs { 0.3 } else { 0.02 };
            self.noise_dbfs = (self.noise_dbfs + a * (level - self.noise_dbfs)).clamp(-90.0, -20.0);
        }
        if self.in_speech {
            self.run = if loud { 0 } else { self.run + 1 };
            if self.run >= END_FRAMES {
                self.in_speech = false;
                self.run = 0;
                return Some(VadEvent::SpeechEnd);
            }
        } else {
            self.run = if loud { self.run + 1 } else { 0 };
            if self.run >= START_FRAMES {
                self.in_speech = true;
                self.run = 0;
                return Some(VadEvent::SpeechStart);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::{sine, Noise};

    #[test]
    fn a_burst_in_noise_starts_and_ends_speech() {
        let mut noise = Noise::new(7);
        let mut vad = Vad::new();
        let mut events = Vec::new();
        let quiet = |n: &mut Noise| n.white(-55.0, 320);
        for i in 0..50 {
            if let Some(e) = vad.frame(&quiet(&mut noise)) {
                events.push((i, e));
            }
        }
        let tone = sine(300.0, -20.0, 16000, 320);
        for i in 50..100 {
            if let Some(e) = vad.frame(&tone) {
                events.push((i, e));
            }
        }
        for i in 100..200 {
            if let Some(e) = vad.frame(&quiet(&mut noise)) {
                events.push((i, e));
            }
        }
        assert_eq!(
            events,
            [(52, VadEvent::SpeechStart), (134, VadEvent::SpeechEnd)]
        );
        assert!(vad.noise_dbfs() < -50.0);
    }

    #[test]
    fn a_click_is_not_speech() {
        let mut vad = Vad::new();
        let tone = sine(300.0, -10.0, 16000, 320);
        assert_eq!(vad.frame(&tone), None);
        assert_eq!(vad.frame(&tone), None);
        assert_eq!(vad.frame(&[0; 320]), None);
        assert!(!vad.in_speech());
    }
}
