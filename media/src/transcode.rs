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
//! [`JitterTranscoder`] puts a [`Transcoder`] behind an adaptive
//! [`crate::jitter::JitterBuffer`]: packets go in as they arrive (reordered, duplicated, lost),
//! 20 ms payloads come out in order, one frame per playout tick, losses concealed. This is what
//! the relay runs for a transcoding direction (`relay/plane.rs`); pass-through never gets here.
//!
//! Architecture invariant: no I/O, no clock; memory is bounded (at most one frame of PCM waits,
//! the jitter buffer holds at most its capacity).

use crate::codec::{Codec, CodecKind, OpusError};
use crate::jitter::{JitterBuffer, JitterConfig, JitterStats, Packet, Pop, PushOutcome};
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

/// Most frames one [`JitterTranscoder::handle_timeout`] plays to catch up after a late
/// wake-up; time missed beyond that is skipped (the far end conceals it), never sent in a burst.
const MAX_CATCH_UP: u64 = 5;

/// Packet durations (ms) the jitter buffer adapts to when the source's timestamps show them.
const FRAME_SIZES_MS: [u32; 5] = [10, 20, 30, 40, 60];

/// Consecutive packets that must agree on a new packet duration before the buffer follows it
/// (a DTX gap moves one timestamp, not three in a row).
const FRAME_CHANGE_AFTER: u32 = 3;

/// One payload for the target leg, in playout order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transcoded {
    /// The encoded 20 ms frame.
    pub payload: Vec<u8>,
    /// The source packet that produced it started a talkspurt (its RTP marker bit).
    pub marker: bool,
}

/// A transcoding direction behind an adaptive jitter buffer, sans-IO.
///
/// Call order (the quinn/str0m pattern): [`JitterTranscoder::push`] every received audio packet
/// of the source leg with the arrival time; whenever the clock reaches
/// [`JitterTranscoder::poll_timeout`] call [`JitterTranscoder::handle_timeout`], which plays the
/// frames due (one per packet duration, normally one) through the transcoder: a packet in order
/// is decoded, a missing one concealed (Opus from the next packet's FEC when it is here, else the
/// codec's or [`Concealer`]'s PLC), a silence (DTX) gives nothing. `poll_timeout` is `None` while
/// no audio is coming (then nothing needs waking up).
///
/// The buffer is [`JitterBuffer`] with a 10 ms minimum delay (its target adapts to the measured
/// jitter). Its frame duration follows the source's packet duration (10–60 ms, read from the
/// timestamps of consecutive packets); the output is always 20 ms frames.
pub struct JitterTranscoder {
    jitter: JitterBuffer,
    transcoder: Transcoder,
    /// When the next frame is due, ms on the caller's clock (`None`: idle).
    next_pop: Option<u64>,
    /// SSRC, sequence number and timestamp of the previous packet pushed.
    last: Option<(u32, u16, u32)>,
    /// A packet duration (ms) other than the buffer's, seen this many times in a row.
    candidate: Option<(u32, u32)>,
    scratch: Vec<Vec<u8>>,
}

impl std::fmt::Debug for JitterTranscoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JitterTranscoder")
            .field("transcoder", &self.transcoder)
            .field("jitter", &self.jitter.stats())
            .field("next_pop", &self.next_pop)
            .finish()
    }
}

impl JitterTranscoder {
    /// `transcoder` behind a jitter buffer at its source's RTP clock (20 ms frames until the
    /// stream shows otherwise, delay 10–300 ms).
    pub fn new(transcoder: Transcoder) -> JitterTranscoder {
        let config = JitterConfig {
            min_delay_ms: 10,
            ..JitterConfig::new(transcoder.from().clock_rate())
        };
        JitterTranscoder::with_config(transcoder, config)
    }

    /// `transcoder` behind a jitter buffer with these settings.
    pub fn with_config(transcoder: Transcoder, config: JitterConfig) -> JitterTranscoder {
        JitterTranscoder {
            jitter: JitterBuffer::new(config),
            transcoder,
            next_pop: None,
            last: None,
            candidate: None,
            scratch: Vec::with_capacity(2),
        }
    }

    /// The transcoder (its counters, formats).
    pub fn transcoder(&self) -> &Transcoder {
        &self.transcoder
    }

    /// The jitter buffer's counters (late, lost, concealed, …).
    pub fn jitter_stats(&self) -> JitterStats {
        self.jitter.stats()
    }

    /// The jitter buffer's current playout delay target, ms.
    pub fn target_delay_ms(&self) -> u32 {
        self.jitter.target_delay_ms()
    }

    /// The duration of one source packet the buffer plays per tick, ms.
    pub fn frame_ms(&self) -> u32 {
        self.jitter.config().frame_ms
    }

    /// Takes in a packet of the source stream that arrived at `now_ms`.
    pub fn push(&mut self, packet: Packet, now_ms: u64) -> PushOutcome {
        self.follow_frame_size(&packet);
        let outcome = self.jitter.push(packet, now_ms);
        let queued = !matches!(outcome, PushOutcome::Late | PushOutcome::Duplicate);
        if queued && self.next_pop.is_none() {
            self.next_pop = Some(now_ms + u64::from(self.jitter.target_delay_ms()));
        }
        outcome
    }

    /// When [`JitterTranscoder::handle_timeout`] must be called next (`None`: not until a
    /// packet is pushed).
    pub fn poll_timeout(&self) -> Option<u64> {
        self.next_pop
    }

    /// Plays every frame due by `now_ms` (at most a few after a late wake-up) and appends the
    /// target payloads they give to `out`.
    pub fn handle_timeout(&mut self, now_ms: u64, out: &mut Vec<Transcoded>) {
        let frame = u64::from(self.jitter.config().frame_ms);
        if let Some(at) = self.next_pop {
            let behind = now_ms.saturating_sub(at) / frame;
            if behind >= MAX_CATCH_UP {
                // Keep the phase, skip what cannot be sent in time anyway.
                self.next_pop = Some(at + (behind + 1 - MAX_CATCH_UP) * frame);
            }
        }
        while let Some(at) = self.next_pop.filter(|&at| at <= now_ms) {
            self.play(at, out);
            self.next_pop = if self.jitter.is_idle() && self.jitter.is_empty() {
                None
            } else {
                Some(at + frame)
            };
        }
    }

    /// One playout tick at `at`.
    fn play(&mut self, at: u64, out: &mut Vec<Transcoded>) {
        self.scratch.clear();
        let marker = match self.jitter.pop(at) {
            Pop::Frame(p) => {
                self.transcoder.push_into(&p.payload, &mut self.scratch);
                p.marker
            }
            Pop::Concealed { .. } => {
                let next = self.jitter.peek_next().map(|p| p.payload.as_slice());
                self.scratch = self.transcoder.lost(next);
                false
            }
            Pop::Empty => false,
        };
        out.extend(
            self.scratch
                .drain(..)
                .enumerate()
                .map(|(i, payload)| Transcoded {
                    payload,
                    marker: marker && i == 0,
                }),
        );
    }

    /// Follows a change of the source's packet duration (seen on consecutive packets).
    fn follow_frame_size(&mut self, p: &Packet) {
        let previous = self.last.replace((p.ssrc, p.seq, p.timestamp));
        let Some((ssrc, seq, ts)) = previous else {
            return;
        };
        if ssrc != p.ssrc || p.seq != seq.wrapping_add(1) {
            return;
        }
        let config = self.jitter.config();
        let units = u64::from(p.timestamp.wrapping_sub(ts)) * 1000;
        let clock = u64::from(config.clock_rate);
        let ms = FRAME_SIZES_MS
            .into_iter()
            .find(|&ms| units == u64::from(ms) * clock);
        match ms {
            Some(ms) if ms != config.frame_ms => {
                let seen = match self.candidate {
                    Some((c, n)) if c == ms => n + 1,
                    _ => 1,
                };
                self.candidate = Some((ms, seen));
                if seen >= FRAME_CHANGE_AFTER {
                    tracing::debug!(
                        from = config.frame_ms,
                        to = ms,
                        "jitter buffer: packet duration changed"
                    );
                    self.jitter = JitterBuffer::new(JitterConfig {
                        frame_ms: ms,
                        ..config
                    });
                    self.next_pop = None;
                    self.candidate = None;
                }
            }
            _ => self.candidate = None,
        }
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

    /// Arrival plan of a simulated stream: packet `i` is sent at `20·i` ms and arrives at the
    /// returned time (`None`: lost). Returns what the jitter transcoder gave, tick by tick on a
    /// 1 ms simulated clock, and whether it went idle at the end.
    fn run_jittered(
        jt: &mut JitterTranscoder,
        packets: &[Packet],
        arrival: impl Fn(usize) -> Option<u64>,
    ) -> (Vec<Transcoded>, bool) {
        let mut events: Vec<(u64, usize)> = (0..packets.len())
            .filter_map(|i| Some((arrival(i)?, i)))
            .collect();
        events.sort();
        let end = events.last().map_or(0, |e| e.0) + 1000;
        let mut next = events.into_iter().peekable();
        let mut out = Vec::new();
        for now in 0..=end {
            while let Some(&(at, i)) = next.peek() {
                if at > now {
                    break;
                }
                jt.push(packets[i].clone(), now);
                next.next();
            }
            if jt.poll_timeout().is_some_and(|t| t <= now) {
                jt.handle_timeout(now, &mut out);
            }
        }
        (out, jt.poll_timeout().is_none())
    }

    fn packets(kind: CodecKind, payloads: Vec<Vec<u8>>, seq0: u16, ts0: u32) -> Vec<Packet> {
        let step = kind.timestamp_per_frame();
        payloads
            .into_iter()
            .enumerate()
            .map(|(i, payload)| Packet {
                ssrc: 7,
                seq: seq0.wrapping_add(i as u16),
                timestamp: ts0.wrapping_add(step.wrapping_mul(i as u32)),
                marker: i == 0,
                payload,
            })
            .collect()
    }

    /// Normalised correlation of two equal-length frames.
    fn correlation(a: &[i16], b: &[i16]) -> f64 {
        let dot: f64 = a
            .iter()
            .zip(b)
            .map(|(&x, &y)| f64::from(x) * f64::from(y))
            .sum();
        let e = |v: &[i16]| v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>();
        dot / (e(a) * e(b)).sqrt().max(1.0)
    }

    /// PCMU → PCMA (frame for frame, no resampling) behind the jitter buffer, with every other
    /// packet arriving 25 ms late (so after its successor), duplicates, three packets lost and
    /// sequence numbers wrapping: every packet that arrived comes out exactly once, in order,
    /// each loss is one concealed frame at its place, nothing else is inserted or dropped, and
    /// the transcoder goes idle once the stream ends.
    #[test]
    fn jitter_transcoder_reorders_and_conceals() {
        const N: usize = 100;
        let lost = [17, 50, 51];
        let mut noise = Noise::new(11);
        // Each frame its own noise, so any output frame identifies its source frame.
        let source: Vec<Vec<i16>> = (0..N).map(|_| noise.white(-15.0, 160)).collect();
        let payloads = encode(CodecKind::Pcmu, &source.concat());
        let reference: Vec<Vec<i16>> = payloads
            .iter()
            .map(|p| decode(CodecKind::Pcmu, std::slice::from_ref(p)))
            .collect();
        let pk = packets(CodecKind::Pcmu, payloads, 65_500, u32::MAX - 1000);
        let mut jt = JitterTranscoder::new(
            Transcoder::new(CodecKind::Pcmu, CodecKind::Pcma).unwrap(), // invariant: G.711 pair
        );
        let (out, idle) = run_jittered(&mut jt, &pk, |i| {
            let late = if i % 2 == 0 { 25 } else { 0 };
            (!lost.contains(&i)).then_some(i as u64 * 20 + late)
        });
        assert!(idle, "idle after the stream ended");
        // Which source frame each output frame is (correlation > 0.99), or None (concealed).
        let matched: Vec<Option<usize>> = out
            .iter()
            .map(|t| {
                let y = decode(CodecKind::Pcma, std::slice::from_ref(&t.payload));
                reference.iter().position(|r| correlation(r, &y) > 0.99)
            })
            .collect();
        let first = matched.iter().position(Option::is_some).unwrap(); // invariant: frames came
        let last = matched.iter().position(|m| *m == Some(N - 1)).unwrap(); // invariant: as first
        assert_eq!(last - first + 1, N, "one frame per 20 ms: {matched:?}");
        for (i, m) in matched[first..=last].iter().enumerate() {
            if lost.contains(&i) {
                // Concealed: a faded repeat of the last good frame, or silence.
                let good = (0..i).rev().find(|k| !lost.contains(k));
                assert!(m.is_none() || *m == good, "frame {i}: {m:?}");
            } else {
                assert_eq!(*m, Some(i), "frame {i} in order: {matched:?}");
            }
        }
        assert!(out[first].marker && out[first + 1..].iter().all(|t| !t.marker));
        // After the end: concealment up to the buffer's longest delay, then idle.
        assert!(
            out.len() - last - 1 <= 15,
            "{} trailing",
            out.len() - last - 1
        );
        let st = jt.jitter_stats();
        println!("{st:?}, target {} ms", jt.target_delay_ms());
        assert_eq!((st.lost, st.late, st.duplicates), (3, 0, 0));
        assert_eq!(jt.transcoder().stats().concealed, 3 + st.stalls);
        // A packet after its turn is dropped as late and wakes nothing up.
        assert_eq!(jt.push(pk[N - 1].clone(), 10_000), PushOutcome::Late);
        assert_eq!(jt.poll_timeout(), None);
    }

    /// Opus (48 kHz, FEC) → PCMU behind the jitter buffer with reordering, random jitter up to
    /// 30 ms and 5 % loss: the output keeps its 20 ms cadence (one frame per source frame) and the
    /// 1 kHz tone stays at 1 kHz, within 4 dB of its level, in every 100 ms window.
    #[test]
    fn jitter_transcoder_keeps_a_tone_through_reordering_and_loss() {
        let from = CodecKind::Opus { rate: 48000 };
        const N: usize = 150;
        let payloads = encode(from, &sine(1000.0, -10.0, 48000, 960 * N));
        let pk = packets(from, payloads, 1, 0);
        let mut jt = JitterTranscoder::new(Transcoder::new(from, CodecKind::Pcmu).unwrap());
        let mut rng = Noise::new(3);
        let jitter: Vec<u64> = (0..N).map(|_| (rng.uniform() * 30.0) as u64).collect();
        let (out, _) = run_jittered(&mut jt, &pk, |i| {
            (i % 20 != 7).then_some(i as u64 * 20 + jitter[i])
        });
        let st = jt.jitter_stats();
        println!("{st:?}, target {} ms", jt.target_delay_ms());
        assert_eq!(st.late, 0, "{st:?}");
        assert!(st.lost >= 7, "{st:?}");
        let y = decode(
            CodecKind::Pcmu,
            &out.iter().map(|t| t.payload.clone()).collect::<Vec<_>>(),
        );
        assert!(y.len() >= N * 160, "{} samples", y.len());
        let levels: Vec<String> = y[..N * 160]
            .chunks(800)
            .map(|w| format!("{:.1}", tone_dbfs(w, 1000.0, 8000)))
            .collect();
        println!("1 kHz level per 100 ms: {levels:?}");
        for w in y[..N * 160].chunks(800).skip(1) {
            let level = tone_dbfs(w, 1000.0, 8000);
            assert_eq!(peak_hz(w, 8000), 1000.0);
            // A window with a loss whose successor is already here (FEC) barely dips; one whose
            // successor came after it (reordered) is concealed by libopus's PLC: ≈ -3.4 dB.
            assert!((level + 10.0).abs() < 4.0, "{level:.2} dBFS");
        }
    }

    /// 30 ms PCMU packets: the buffer follows the packet duration after three packets, plays a
    /// packet per 30 ms and the output is 20 ms frames of a continuous tone.
    #[test]
    fn jitter_transcoder_follows_30ms_packets() {
        let pcm = sine(1000.0, -10.0, 8000, 240 * 50);
        let mut enc = CodecKind::Pcmu.codec();
        let pk: Vec<Packet> = pcm
            .chunks(240)
            .enumerate()
            .map(|(i, f)| {
                let mut payload = Vec::new();
                enc.encode(f, &mut payload);
                Packet {
                    ssrc: 1,
                    seq: i as u16,
                    timestamp: 240 * i as u32,
                    marker: false,
                    payload,
                }
            })
            .collect();
        let mut jt = JitterTranscoder::new(
            Transcoder::new(CodecKind::Pcmu, CodecKind::Pcma).unwrap(), // invariant: G.711 pair
        );
        let (out, idle) = run_jittered(&mut jt, &pk, |i| Some(i as u64 * 30 + 2));
        assert!(idle);
        assert_eq!(jt.frame_ms(), 30);
        let st = jt.jitter_stats();
        // The packets before the switch are dropped with the old buffer: 47 of 50 played.
        assert_eq!((st.played, st.lost, st.late), (47, 0, 0), "{st:?}");
        let y = decode(
            CodecKind::Pcma,
            &out.iter().map(|t| t.payload.clone()).collect::<Vec<_>>(),
        );
        let tail = &y[..47 * 240];
        assert_eq!(peak_hz(tail, 8000), 1000.0);
        assert!((tone_dbfs(tail, 1000.0, 8000) + 10.0).abs() < 1.0);
    }

    /// A wake-up far too late plays only a few frames (the rest of the missed time is skipped,
    /// not sent in a burst); a pass-through transcoder behind the buffer reorders too.
    #[test]
    fn jitter_transcoder_bounds_catch_up() {
        let payloads: Vec<Vec<u8>> = (0..30u8).map(|i| vec![i; 160]).collect();
        let pk = packets(CodecKind::Pcmu, payloads, 0, 0);
        let mut jt = JitterTranscoder::new(
            Transcoder::new(CodecKind::Pcmu, CodecKind::Pcmu).unwrap(), // invariant: same codec
        );
        for (i, p) in pk.iter().enumerate() {
            // Pairs swapped, all within the first 10 ms.
            let j = i ^ 1;
            jt.push(pk[j].clone(), (i / 10) as u64);
            let _ = p;
        }
        let mut out = Vec::new();
        jt.handle_timeout(1000, &mut out);
        assert_eq!(out.len(), MAX_CATCH_UP as usize);
        let order: Vec<u8> = out.iter().map(|t| t.payload[0]).collect();
        assert!(order.windows(2).all(|w| w[1] == w[0] + 1), "{order:?}");
        assert_eq!(jt.poll_timeout().map(|t| t > 1000), Some(true));
    }
}
