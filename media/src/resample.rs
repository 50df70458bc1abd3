//! Sample-rate conversion between the codecs' PCM rates (8, 16, 48 kHz…), streaming in 20 ms
//! frames, through rubato's synchronous FFT resampler (`rubato::Fft`, `FixedSync::Both`) with
//! `audioadapter` buffers.
//!
//! A [`Resampler`] keeps its filter state across calls, so feeding a stream frame by frame gives
//! the same output as resampling it in one piece, delayed by [`Resampler::delay`] output samples
//! (half an FFT block: 10 ms with 20 ms chunks). Each whole 20 ms of input yields exactly 20 ms
//! of output at once; input that is not a whole chunk waits for the rest.
//!
//! Architecture invariant: no I/O, no clock; after construction, no allocation once the scratch
//! buffers have grown to a frame.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler as _};

use crate::codec::FRAME_MS;

/// Scale between i16 samples and rubato's `[-1, 1)` floats.
const SCALE: f32 = 32768.0;

/// Why a resampler could not be made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResampleError {
    /// Rates must be 8 to 48 kHz with a whole number of samples in 20 ms.
    #[error("unsupported resampling rate {0} Hz (8 to 48 kHz, whole samples per 20 ms)")]
    Rate(u32),
    /// rubato refused the configuration (its message).
    #[error("rubato: {0}")]
    Rubato(String),
}

/// Whether `rate` is one this module converts: 8 to 48 kHz, a whole number of samples per frame.
pub fn supported_rate(rate: u32) -> bool {
    (8000..=48000).contains(&rate) && (rate * FRAME_MS).is_multiple_of(1000)
}

/// Streaming mono resampler from one fixed rate to another (a copy when they are equal).
pub struct Resampler {
    from: u32,
    to: u32,
    /// `None` when `from == to`.
    fft: Option<Fft<f32>>,
    chunk_in: usize,
    chunk_out: usize,
    /// Input not yet a whole chunk, as floats.
    pending: Vec<f32>,
    /// One chunk of output.
    output: Vec<f32>,
}

impl std::fmt::Debug for Resampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resampler")
            .field("from", &self.from)
            .field("to", &self.to)
            .field("delay", &self.delay())
            .finish()
    }
}

fn fft(from: u32, to: u32) -> Result<Fft<f32>, ResampleError> {
    let chunk = (from * FRAME_MS / 1000) as usize;
    Fft::<f32>::new(from as usize, to as usize, chunk, 1, FixedSync::Both)
        .map_err(|e| ResampleError::Rubato(e.to_string()))
}

fn to_i16(v: f32) -> i16 {
    // Clamped first, so the cast cannot saturate unexpectedly; NaN maps to 0.
    (v * SCALE).round().clamp(-32768.0, 32767.0) as i16
}

impl Resampler {
    /// A resampler from `from` Hz to `to` Hz (each [`supported_rate`]), in 20 ms chunks.
    pub fn new(from: u32, to: u32) -> Result<Resampler, ResampleError> {
        for rate in [from, to] {
            if !supported_rate(rate) {
                return Err(ResampleError::Rate(rate));
            }
        }
        let fft = (from != to).then(|| fft(from, to)).transpose()?;
        let (chunk_in, chunk_out) = match &fft {
            Some(f) => (f.input_frames_next(), f.output_frames_next()),
            None => (0, 0),
        };
        Ok(Resampler {
            from,
            to,
            fft,
            chunk_in,
            chunk_out,
            pending: Vec::with_capacity(2 * chunk_in),
            output: vec![0.0; chunk_out],
        })
    }

    /// Input sample rate in Hz.
    pub fn from_rate(&self) -> u32 {
        self.from
    }

    /// Output sample rate in Hz.
    pub fn to_rate(&self) -> u32 {
        self.to
    }

    /// Latency in output samples: the output of [`Resampler::process`] lags the input by this
    /// much (0 when the rates are equal).
    pub fn delay(&self) -> usize {
        self.fft.as_ref().map_or(0, |f| f.output_delay())
    }

    /// Input samples waiting for the rest of a chunk.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Resamples `input` (any length, continuing the stream) and appends every whole chunk of
    /// output to `out`: 20 ms out for each 20 ms in.
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        let Some(fft) = self.fft.as_mut() else {
            out.extend_from_slice(input);
            return;
        };
        self.pending
            .extend(input.iter().map(|&s| f32::from(s) / SCALE));
        let mut start = 0;
        while self.pending.len() - start >= self.chunk_in {
            let chunk = &self.pending[start..start + self.chunk_in];
            let done = InterleavedSlice::new(chunk, 1, self.chunk_in)
                .ok()
                .zip(InterleavedSlice::new_mut(&mut self.output, 1, self.chunk_out).ok())
                .and_then(|(i, mut o)| fft.process_into_buffer(&i, &mut o, None).ok());
            match done {
                Some((_, n)) => out.extend(
                    self.output[..n.min(self.chunk_out)]
                        .iter()
                        .map(|&v| to_i16(v)),
                ),
                // Cannot happen: both buffers are sized from the resampler's own chunk sizes.
                // Keep the timing with silence rather than drop the frame.
                None => {
                    tracing::warn!(from = self.from, to = self.to, "resampling failed");
                    out.extend(std::iter::repeat_n(0, self.chunk_out));
                }
            }
            start += self.chunk_in;
        }
        self.pending.drain(..start);
    }

    /// Forgets the stream: clears the filter state and any pending input.
    pub fn reset(&mut self) {
        if let Some(f) = self.fft.as_mut() {
            f.reset();
        }
        self.pending.clear();
    }
}

/// Resamples a whole clip in one go (rubato's `process_all`: same filter as [`Resampler`], its
/// delay trimmed), e.g. a prompt file. The output has `len × to / from` samples, rounded up.
pub fn resample_all(from: u32, to: u32, input: &[i16]) -> Result<Vec<i16>, ResampleError> {
    for rate in [from, to] {
        if !supported_rate(rate) {
            return Err(ResampleError::Rate(rate));
        }
    }
    if from == to {
        return Ok(input.to_vec());
    }
    let mut fft = fft(from, to)?;
    let floats: Vec<f32> = input.iter().map(|&s| f32::from(s) / SCALE).collect();
    let adapter = InterleavedSlice::new(&floats, 1, floats.len())
        .map_err(|e| ResampleError::Rubato(e.to_string()))?;
    let out = fft
        .process_all(&adapter, floats.len(), None)
        .map_err(|e| ResampleError::Rubato(e.to_string()))?;
    Ok(out.take_data().into_iter().map(to_i16).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::{sine, snr_db, tone_dbfs};

    const PAIRS: [(u32, u32); 6] = [
        (8000, 16000),
        (16000, 8000),
        (8000, 48000),
        (48000, 8000),
        (16000, 48000),
        (48000, 16000),
    ];

    fn frame_by_frame(from: u32, to: u32, x: &[i16]) -> Vec<i16> {
        let mut r = Resampler::new(from, to).unwrap();
        let mut out = Vec::new();
        for frame in x.chunks((from * FRAME_MS / 1000) as usize) {
            let before = out.len();
            r.process(frame, &mut out);
            assert_eq!(out.len() - before, (to * FRAME_MS / 1000) as usize);
        }
        out
    }

    /// Stated bounds: 300 Hz to 3 kHz tones at -10 dBFS keep their level within 0.5 dB across
    /// every conversion (measured after the delay), and the output's SNR against an ideal sine
    /// at the new rate is ≥ 40 dB.
    #[test]
    fn tones_keep_frequency_and_level_across_each_conversion() {
        for (from, to) in PAIRS {
            for freq in [300.0, 1000.0, 3000.0] {
                let x = sine(freq, -10.0, from, from as usize);
                let y = frame_by_frame(from, to, &x);
                assert_eq!(y.len(), to as usize);
                let r = Resampler::new(from, to).unwrap();
                let d = r.delay();
                let steady = &y[d + to as usize / 50..];
                let level = tone_dbfs(steady, freq, to);
                let ideal = sine(freq, -10.0, to, to as usize);
                let snr = snr_db(&ideal[to as usize / 50..], steady, 0);
                if freq == 1000.0 {
                    println!(
                        "{from} -> {to}: delay {d} samples, 1 kHz at {level:.3} dBFS, SNR {snr:.1} dB"
                    );
                }
                assert!(
                    (level + 10.0).abs() < 0.5,
                    "{from}->{to} {freq}: {level:.3}"
                );
                assert!(snr > 40.0, "{from}->{to} {freq}: SNR {snr:.1}");
            }
        }
    }

    /// Downsampling filters what the lower rate cannot carry: a 6 kHz tone going 16 or 48 kHz
    /// to 8 kHz must not alias to 2 kHz (≥ 50 dB down).
    #[test]
    fn downsampling_does_not_alias() {
        for from in [16000, 48000] {
            let x = sine(6000.0, -10.0, from, from as usize);
            let y = frame_by_frame(from, 8000, &x);
            let alias = tone_dbfs(&y[800..], 2000.0, 8000);
            println!("{from} -> 8000: 6 kHz aliases at {alias:.1} dBFS");
            assert!(alias < -60.0, "{from}: {alias:.1}");
        }
    }

    #[test]
    fn frame_by_frame_equals_one_shot() {
        for (from, to) in PAIRS {
            let x = sine(1004.0, -6.0, from, from as usize);
            let streamed = frame_by_frame(from, to, &x);
            let whole = resample_all(from, to, &x).unwrap();
            assert_eq!(whole.len(), to as usize);
            let d = Resampler::new(from, to).unwrap().delay();
            let n = streamed.len() - d;
            let max_diff = streamed[d..]
                .iter()
                .zip(&whole[..n])
                .map(|(a, b)| (i32::from(*a) - i32::from(*b)).abs())
                .max()
                .unwrap_or(0);
            assert!(max_diff <= 1, "{from}->{to}: max difference {max_diff}");
        }
    }

    #[test]
    fn odd_sized_input_is_buffered_and_same_rate_is_a_copy() {
        let x = sine(1000.0, -10.0, 8000, 1600);
        let reference = frame_by_frame(8000, 16000, &x);
        let mut r = Resampler::new(8000, 16000).unwrap();
        let mut out = Vec::new();
        for piece in x.chunks(70) {
            r.process(piece, &mut out);
        }
        assert_eq!(r.pending(), 0);
        assert_eq!(out, reference);
        r.process(&x[..100], &mut out);
        assert_eq!((r.pending(), out.len()), (100, 3200));
        r.reset();
        assert_eq!(r.pending(), 0);

        let mut same = Resampler::new(16000, 16000).unwrap();
        let mut out = Vec::new();
        same.process(&x[..123], &mut out);
        assert_eq!((out.as_slice(), same.delay()), (&x[..123], 0));
        assert_eq!(resample_all(8000, 8000, &x).unwrap(), x);
    }

    #[test]
    fn rejects_unsupported_rates() {
        assert_eq!(
            Resampler::new(8000, 11025).err(),
            Some(ResampleError::Rate(11025))
        );
        assert!(Resampler::new(4000, 8000).is_err());
        assert!(resample_all(8000, 96000, &[]).is_err());
        assert!(Resampler::new(8000, 44100).is_ok());
    }
}
