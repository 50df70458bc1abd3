//! Transcoding between two legs whose codecs differ (e.g. an Opus WebRTC-style leg and a PCMU
//! carrier leg), sans-IO: RTP payloads in, RTP payloads out.
//!
//! A [`Transcoder`] is one direction of one call: decode → resample if the PCM rates differ
//! ([`crate::resample`]) → re-frame to 20 ms → encode. When both legs carry the same payload
//! format ([`CodecKind::same_payload_format`]) it passes payloads through untouched: no decode
//! on the hot path.
//!
//! Opus runs at the other leg's PCM rate when libopus can (8, 12, 16, 24, 48 kHz): Opus's PCM
//! rate is a local choice that is not negotiated and does not change the payloads' format
//! (RFC 7587), so Opus ↔ PCMU decodes and encodes Opus at 8 kHz, needs no resampler, and
//! costs about a third of running Opus at 48 kHz (see `load-tests/benches/transcode.rs`).
//! [`Transcoder::exact`] keeps the rates as given.
//!
//! Use: feed it in playout order, e.g. from a [`crate::jitter::JitterBuffer`]:
//! [`Transcoder::push`] for every [`crate::jitter::Pop::Frame`], [`Transcoder::lost`] for every
//! [`crate::jitter::Pop::Concealed`] (a signalled gap). Each output payload is 20 ms of the
//! target codec: stamp them with consecutive RTP timestamps
//! [`CodecKind::timestamp_per_frame`] apart. A lost frame is concealed by the source codec
//! itself where it can (Opus: in-band FEC from the next packet, else libopus concealment) and by
//! [`crate::plc::Concealer`] otherwise; an undecodable payload counts as lost.
//!
//! Architecture invariant: no I/O, no clock; memory is bounded (at most one frame of PCM waits).

use crate::codec::{Codec, CodecKind, OpusError};
use crate::plc::Concealer;
use crate::resample::{ResampleError, Resampler};

/// Why a transcoder could not be made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TranscodeError {
    /// A codec instance could not be made (an Opus rate libopus refuses).
    #[error("codec: {0}")]
    Codec(#[from] OpusError),
    /// No resampler between the two PCM rates.
    #[error("resampler: {0}")]
    Resample(#[from] ResampleError),
}

/// Counters since the transcoder was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TranscodeStats {
    /// Payloads pushed (including pass-through and undecodable ones).
    pub payloads_in: u64,
    /// Payloads produced.
    pub payloads_out: u64,
    /// Frames concealed: signalled losses plus undecodable payloads.
    pub concealed: u64,
    /// Of those, payloads the source codec could not decode.
    pub decode_errors: u64,
}

/// The decode/resample/encode chain of a transcoding direction.
struct Chain {
    decoder: Box<dyn Codec>,
    encoder: Box<dyn Codec>,
    resampler: Option<Resampler>,
    concealer: Concealer,
    /// Decoded PCM of the current payload, at the source rate.
    decoded: Vec<i16>,
    /// PCM at the target rate not yet a whole 20 ms frame.
    fifo: Vec<i16>,
    /// Samples of the last good decoded payload: how much one lost frame conceals.
    last_len: usize,
    /// Samples in one output frame.
    frame_out: usize,
}

impl Chain {
    fn new(from: CodecKind, to: CodecKind) -> Result<Chain, TranscodeError> {
        let (rate_in, rate_out) = (from.sample_rate(), to.sample_rate());
        let resampler = (rate_in != rate_out)
            .then(|| Resampler::new(rate_in, rate_out))
            .transpose()?;
        Ok(Chain {
            decoder: from.try_codec()?,
            encoder: to.try_codec()?,
            resampler,
            concealer: Concealer::default(),
            decoded: Vec::with_capacity(from.samples_per_frame() * 6),
            fifo: Vec::with_capacity(to.samples_per_frame() * 2),
            last_len: from.samples_per_frame(),
            frame_out: to.samples_per_frame(),
        })
    }

    /// Resamples what is in `decoded`, then encodes every whole output frame.
    fn forward(&mut self, out: &mut Vec<Vec<u8>>) {
        match self.resampler.as_mut() {
            Some(r) => r.process(&self.decoded, &mut self.fifo),
            None => self.fifo.extend_from_slice(&self.decoded),
        }
        let mut start = 0;
        while self.fifo.len() - start >= self.frame_out {
            let mut payload = Vec::new();
            self.encoder
                .encode(&self.fifo[start..start + self.frame_out], &mut payload);
            out.push(payload);
            start += self.frame_out;
        }
        self.fifo.drain(..start);
    }

    /// Puts one concealed frame in `decoded`.
    fn conceal(&mut self, next: Option<&[u8]>) {
        self.decoded.clear();
        if !self.decoder.conceal(next, self.last_len, &mut self.decoded) {
            self.decoded.resize(self.last_len, 0);
            self.concealer.conceal(&mut self.decoded);
        }
    }
}

enum Mode {
    PassThrough,
    Transcode(Box<Chain>),
}

/// One direction of transcoding, from a leg's codec to the other leg's (see the module docs).
pub struct Transcoder {
    from: CodecKind,
    to: CodecKind,
    mode: Mode,
    stats: TranscodeStats,
}

impl std::fmt::Debug for Transcoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transcoder")
            .field("from", &self.from)
            .field("to", &self.to)
            .field("pass_through", &self.is_pass_through())
            .field("stats", &self.stats)
            .finish()
    }
}

impl Transcoder {
    /// A transcoder from payloads of `from` to payloads of `to`; pass-through when they are the
    /// same payload format. An Opus side runs at the other side's PCM rate when libopus
    /// supports it (see the module docs).
    pub fn new(from: CodecKind, to: CodecKind) -> Result<Transcoder, TranscodeError> {
        let adapt = |kind: CodecKind, other: CodecKind| match kind {
            CodecKind::Opus { .. } => CodecKind::opus(other.sample_rate()).unwrap_or(kind),
            _ => kind,
        };
        Transcoder::build(from, to, adapt(from, to), adapt(to, from))
    }

    /// A transcoder that runs both codecs at exactly the PCM rates of `from` and `to`
    /// (resampling between them if they differ), e.g. Opus at 48 kHz against PCMU.
    pub fn exact(from: CodecKind, to: CodecKind) -> Result<Transcoder, TranscodeError> {
        Transcoder::build(from, to, from, to)
    }

    fn build(
        from: CodecKind,
        to: CodecKind,
        decode_as: CodecKind,
        encode_as: CodecKind,
    ) -> Result<Transcoder, TranscodeError> {
        let mode = if from.same_payload_format(to) {
            Mode::PassThrough
        } else {
            Mode::Transcode(Box::new(Chain::new(decode_as, encode_as)?))
        };
        Ok(Transcoder {
            from,
            to,
            mode,
            stats: TranscodeStats::default(),
        })
    }

    /// The source codec.
    pub fn from(&self) -> CodecKind {
        self.from
    }

    /// The target codec.
    pub fn to(&self) -> CodecKind {
        self.to
    }

    /// Whether payloads go through unchanged (no decoding).
    pub fn is_pass_through(&self) -> bool {
        matches!(self.mode, Mode::PassThrough)
    }

    /// The PCM rates the decoder and the encoder run at (`None` when passing through).
    pub fn pcm_rates(&self) -> Option<(u32, u32)> {
        match &self.mode {
            Mode::Transcode(c) => Some((c.decoder.sample_rate(), c.encoder.sample_rate())),
            Mode::PassThrough => None,
        }
    }

    /// Sets the target encoder's complexity (0 fastest to 10 best) where it has one (Opus,
    /// default 9): trades encoding quality for CPU, e.g. for density on a busy media server
    /// (`load-tests/benches/transcode.rs` measures 5 against 9). Returns `false` when passing
    /// through or when the target codec has no such setting.
    pub fn set_encoder_complexity(&mut self, complexity: i32) -> bool {
        match &mut self.mode {
            Mode::Transcode(c) => c.encoder.set_complexity(complexity),
            Mode::PassThrough => false,
        }
    }

    /// Counters since the transcoder was made.
    pub fn stats(&self) -> TranscodeStats {
        self.stats
    }

    /// Delay the chain adds, in ms: the resampler's (the re-framing FIFO adds none when input
    /// frames are 20 ms; codec look-ahead is not counted).
    pub fn delay_ms(&self) -> f64 {
        match &self.mode {
            Mode::Transcode(c) => c
                .resampler
                .as_ref()
                .map_or(0.0, |r| r.delay() as f64 * 1000.0 / f64::from(r.to_rate())),
            Mode::PassThrough => 0.0,
        }
    }

    /// The next payload of the source stream, in order: the target payloads it completes
    /// (usually one per 20 ms; none while a partial frame waits). The payload itself when
    /// passing through. An undecodable payload is concealed as a lost frame.
    pub fn push(&mut self, payload: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::with_capacity(1);
        self.push_into(payload, &mut out);
        out
    }

    /// [`Transcoder::push`], appending to `out` (lets a caller reuse the outer vector).
    pub fn push_into(&mut self, payload: &[u8], out: &mut Vec<Vec<u8>>) {
        self.stats.payloads_in += 1;
        let before = out.len();
        match &mut self.mode {
            Mode::PassThrough => out.push(payload.to_vec()),
            Mode::Transcode(c) => {
                c.decoded.clear();
                match c.decoder.decode(payload, &mut c.decoded) {
                    Ok(()) if !c.decoded.is_empty() => {
                        c.last_len = c.decoded.len();
                        c.concealer.good(&c.decoded);
                    }
                    Ok(()) => {}
                    Err(_) => {
                        self.stats.decode_errors += 1;
                        self.stats.concealed += 1;
                        c.conceal(None);
                    }
                }
                c.forward(out);
            }
        }
        self.stats.payloads_out += (out.len() - before) as u64;
    }

    /// One source frame is missing here (a gap signalled by the jitter buffer): conceals it and
    /// returns the target payloads that completes. `next` is the payload after the gap if the
    /// caller already has it (Opus recovers the lost frame from its in-band FEC); push `next`
    /// itself afterwards as usual. Passing through, returns nothing: the far end conceals.
    pub fn lost(&mut self, next: Option<&[u8]>) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        if let Mode::Transcode(c) = &mut self.mode {
            self.stats.concealed += 1;
            c.conceal(next);
            c.forward(&mut out);
            self.stats.payloads_out += out.len() as u64;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::{dominant, rms_dbfs, sine, tone_dbfs, Noise};

    /// Encodes `pcm` (at `kind`'s rate) into 20 ms payloads.
    fn encode(kind: CodecKind, pcm: &[i16]) -> Vec<Vec<u8>> {
        let mut enc = kind.codec();
        pcm.chunks(kind.samples_per_frame())
            .map(|f| {
                let mut p = Vec::new();
                enc.encode(f, &mut p);
                p
            })
            .collect()
    }

    fn decode(kind: CodecKind, payloads: &[Vec<u8>]) -> Vec<i16> {
        let mut dec = kind.codec();
        let mut out = Vec::new();
        for p in payloads {
            dec.decode(p, &mut out).unwrap(); // invariant: our own encoder's output
        }
        out
    }

    /// One second of a -10 dBFS 1 kHz tone from `from` through a transcoder to `to` (`exact`:
    /// [`Transcoder::exact`]), decoded.
    fn transcode_tone(from: CodecKind, to: CodecKind, exact: bool) -> Vec<i16> {
        let rate = from.sample_rate();
        let input = encode(from, &sine(1000.0, -10.0, rate, rate as usize));
        let mut t = if exact {
            Transcoder::exact(from, to).unwrap()
        } else {
            Transcoder::new(from, to).unwrap()
        };
        assert!(!t.is_pass_through());
        let out: Vec<Vec<u8>> = input.iter().flat_map(|p| t.push(p)).collect();
        assert_eq!(
            out.len(),
            input.len(),
            "{from:?} -> {to:?}: 20 ms out per 20 ms in"
        );
        assert_eq!(t.stats().payloads_out, out.len() as u64);
        decode(to, &out)
    }

    /// The frequency with the most power, on a 10 Hz grid from 100 Hz to just under Nyquist
    /// (a DFT peak search by Goertzel).
    fn peak_hz(x: &[i16], rate: u32) -> f64 {
        let grid: Vec<f64> = (10..(rate / 20)).map(|k| f64::from(k) * 10.0).collect();
        dominant(x, &grid, rate).unwrap_or(0.0) // invariant: the grid is not empty
    }

    /// Stated bounds: the 1 kHz tone comes out with its spectral peak at 1000 Hz (10 Hz grid)
    /// and its level within 2 dB of -10 dBFS, both directions between Opus and PCMU (Opus at
    /// 8 kHz as `new` picks, and at 48 or 16 kHz through the resampler with `exact`), and
    /// PCMA → G.722 → PCMA.
    #[test]
    fn a_1khz_tone_stays_at_1khz() {
        let opus48 = CodecKind::Opus { rate: 48000 };
        let cases = [
            (opus48, CodecKind::Pcmu, false),
            (CodecKind::Pcmu, opus48, false),
            (opus48, CodecKind::Pcmu, true),
            (CodecKind::Pcmu, opus48, true),
            (CodecKind::Opus { rate: 16000 }, CodecKind::Pcmu, true),
            (CodecKind::Pcma, CodecKind::G722, false),
            (CodecKind::G722, CodecKind::Pcma, false),
        ];
        for (from, to, exact) in cases {
            let y = transcode_tone(from, to, exact);
            let rate = to.sample_rate();
            let tail = &y[rate as usize / 5..];
            let (peak, level) = (peak_hz(tail, rate), tone_dbfs(tail, 1000.0, rate));
            let how = if exact { "exact" } else { "new" };
            println!("{from:?} -> {to:?} ({how}): peak {peak} Hz, 1 kHz at {level:.2} dBFS");
            assert_eq!(peak, 1000.0, "{from:?} -> {to:?}");
            assert!((level + 10.0).abs() < 2.0, "{from:?} -> {to:?}: {level:.2}");
        }
    }

    #[test]
    fn pcma_to_g722_and_back() {
        let x = sine(1000.0, -10.0, 8000, 8000);
        let pcma = encode(CodecKind::Pcma, &x);
        let mut there = Transcoder::new(CodecKind::Pcma, CodecKind::G722).unwrap();
        let mut back = Transcoder::new(CodecKind::G722, CodecKind::Pcma).unwrap();
        let g722: Vec<Vec<u8>> = pcma.iter().flat_map(|p| there.push(p)).collect();
        assert!(
            g722.iter().all(|p| p.len() == 160),
            "G.722: 160 bytes per 20 ms"
        );
        let round: Vec<Vec<u8>> = g722.iter().flat_map(|p| back.push(p)).collect();
        assert_eq!(round.len(), pcma.len());
        let y = decode(CodecKind::Pcma, &round);
        let tail = &y[1600..];
        assert_eq!(peak_hz(tail, 8000), 1000.0);
        let level = tone_dbfs(tail, 1000.0, 8000);
        println!("PCMA -> G722 -> PCMA: 1 kHz at {level:.2} dBFS");
        assert!((level + 10.0).abs() < 1.0, "{level:.2}");
    }

    #[test]
    fn same_payload_format_passes_through_unchanged() {
        let payloads = encode(CodecKind::Pcmu, &Noise::new(1).white(-20.0, 1600));
        for (from, to) in [
            (CodecKind::Pcmu, CodecKind::Pcmu),
            (
                CodecKind::Opus { rate: 8000 },
                CodecKind::Opus { rate: 48000 },
            ),
        ] {
            let mut t = Transcoder::new(from, to).unwrap();
            assert!(t.is_pass_through());
            for p in &payloads {
                assert_eq!(t.push(p), vec![p.clone()]);
            }
            assert!(t.lost(None).is_empty());
            assert_eq!(t.delay_ms(), 0.0);
        }
        // Garbage passes through too: a relay does not look inside.
        let mut t = Transcoder::new(CodecKind::G722, CodecKind::G722).unwrap();
        assert_eq!(t.push(&[1, 2, 3]), vec![vec![1, 2, 3]]);
    }

    /// A signalled gap yields a concealed frame: the output keeps its 20 ms cadence, the first
    /// lost frame still carries the tone (faded repeat), and a burst fades out.
    #[test]
    fn gaps_are_concealed_with_plc() {
        let x = sine(1000.0, -10.0, 8000, 8000);
        let payloads = encode(CodecKind::Pcmu, &x);
        let mut t = Transcoder::new(CodecKind::Pcmu, CodecKind::L16 { rate: 16000 }).unwrap();
        let mut out = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            if (20..23).contains(&i) {
                out.extend(t.lost(None));
            } else {
                out.extend(t.push(p));
            }
        }
        assert_eq!(out.len(), payloads.len());
        assert_eq!(t.stats().concealed, 3);
        let y = decode(CodecKind::L16 { rate: 16000 }, &out);
        // Frame 20 at 16 kHz, shifted by the resampler's 10 ms delay: samples 6560..6880.
        let d = 160;
        let first_lost = &y[20 * 320 + d..21 * 320 + d];
        let third_lost = &y[22 * 320 + d..23 * 320 + d];
        assert_eq!(peak_hz(first_lost, 16000), 1000.0);
        assert!(rms_dbfs(first_lost) > -12.0, "{}", rms_dbfs(first_lost));
        assert!(rms_dbfs(third_lost) < rms_dbfs(first_lost) - 3.0);
        // Back to full level once packets return.
        assert!((rms_dbfs(&y[30 * 320..]) + 10.0).abs() < 0.5);
    }

    /// Opus → PCMU over 10 % loss: with the next packet in hand the lost frame comes from
    /// FEC and the tone barely dips; garbage payloads count as decode errors.
    #[test]
    fn opus_loss_uses_fec_and_garbage_is_concealed() {
        let from = CodecKind::Opus { rate: 48000 };
        let payloads = encode(from, &sine(1000.0, -10.0, 48000, 48000));
        let mut t = Transcoder::new(from, CodecKind::Pcmu).unwrap();
        let mut out = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            if i % 10 == 5 {
                out.extend(t.lost(payloads.get(i + 1).map(Vec::as_slice)));
            } else {
                out.extend(t.push(p));
            }
        }
        out.extend(t.push(&[0xff; 3]));
        out.extend(t.push(&[]));
        assert_eq!(out.len(), payloads.len() + 2);
        let stats = t.stats();
        assert_eq!((stats.concealed, stats.decode_errors), (7, 2));
        let y = decode(CodecKind::Pcmu, &out);
        let tail = &y[1600..8000];
        let level = tone_dbfs(tail, 1000.0, 8000);
        println!("Opus -> PCMU, 10 % loss with FEC: 1 kHz at {level:.2} dBFS");
        assert_eq!(peak_hz(tail, 8000), 1000.0);
        assert!((level + 10.0).abs() < 1.5, "{level:.2}");
    }

    #[test]
    fn odd_packet_sizes_are_reframed_to_20ms() {
        // 30 ms PCMU packets in, 20 ms PCMA packets out: 3 in make 2 out (after the first).
        let x = sine(1000.0, -10.0, 8000, 2400);
        let mut enc = CodecKind::Pcmu.codec();
        let mut t = Transcoder::new(CodecKind::Pcmu, CodecKind::Pcma).unwrap();
        assert_eq!(t.delay_ms(), 0.0);
        let mut out = Vec::new();
        for f in x.chunks(240) {
            let mut p = Vec::new();
            enc.encode(f, &mut p);
            out.extend(t.push(&p));
        }
        assert_eq!(out.len(), 15);
        assert!(out.iter().all(|p| p.len() == 160));
        // A loss conceals one source packet's worth (30 ms).
        assert_eq!(t.lost(None).len() + t.lost(None).len(), 3);
        let opus48 = CodecKind::Opus { rate: 48000 };
        let t = Transcoder::exact(CodecKind::Pcmu, opus48).unwrap();
        assert!((t.delay_ms() - 10.0).abs() < 1e-9, "{}", t.delay_ms());
        assert_eq!(t.pcm_rates(), Some((8000, 48000)));
        // `new` runs Opus at the PCMU side's rate: no resampler, no delay.
        let t = Transcoder::new(CodecKind::Pcmu, opus48).unwrap();
        assert_eq!((t.pcm_rates(), t.delay_ms()), (Some((8000, 8000)), 0.0));
        let t = Transcoder::new(opus48, CodecKind::G722).unwrap();
        assert_eq!(t.pcm_rates(), Some((16000, 16000)));
        // No Opus at 44.1 kHz: Opus stays at 48 kHz and the chain resamples.
        let t = Transcoder::new(CodecKind::L16 { rate: 44100 }, opus48).unwrap();
        assert_eq!(t.pcm_rates(), Some((44100, 48000)));
        assert!(Transcoder::exact(CodecKind::Pcmu, CodecKind::Opus { rate: 44100 }).is_err());
        let mut t = Transcoder::new(CodecKind::Pcmu, opus48).unwrap();
        assert!(t.set_encoder_complexity(5));
        assert!(!Transcoder::new(opus48, CodecKind::Pcmu)
            .unwrap()
            .set_encoder_complexity(5));
    }
}
