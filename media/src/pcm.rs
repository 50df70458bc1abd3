//! [`Pcm`]: a mono 16-bit audio clip at a known sample rate, the currency between prompt
//! decoding, TTS, tones and the players that stream audio into a call leg.

use std::sync::Arc;
use std::time::Duration;

/// Mono signed 16-bit PCM at `rate` samples per second. Cloning shares the samples.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pcm {
    /// Samples per second (8 000, 16 000, 48 000…).
    pub rate: u32,
    /// The samples, shared between every player of the clip.
    pub samples: Arc<[i16]>,
}

impl Pcm {
    /// A clip from samples at `rate`.
    pub fn new(rate: u32, samples: Vec<i16>) -> Pcm {
        Pcm {
            rate,
            samples: samples.into(),
        }
    }

    /// `duration` of silence at `rate`.
    pub fn silence(rate: u32, duration: Duration) -> Pcm {
        let n = (u128::from(rate) * duration.as_millis() / 1000) as usize;
        Pcm::new(rate, vec![0; n])
    }

    /// How long the clip plays.
    pub fn duration(&self) -> Duration {
        if self.rate == 0 {
            return Duration::ZERO;
        }
        Duration::from_micros(self.samples.len() as u64 * 1_000_000 / u64::from(self.rate))
    }

    /// The clip at another rate (the same clip when the rate is already `rate`).
    pub fn resampled(&self, rate: u32) -> Result<Pcm, crate::resample::ResampleError> {
        if rate == self.rate {
            return Ok(self.clone());
        }
        let out = crate::resample::resample_all(self.rate, rate, &self.samples)?;
        Ok(Pcm::new(rate, out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_and_resampling() {
        let p = Pcm::silence(8000, Duration::from_millis(500));
        assert_eq!(p.samples.len(), 4000);
        assert_eq!(p.duration(), Duration::from_millis(500));
        let q = p.resampled(16000).expect("8 → 16 kHz is supported");
        assert_eq!(q.rate, 16000);
        assert!(
            (q.samples.len() as i64 - 8000).abs() < 200,
            "{}",
            q.samples.len()
        );
    }
}
