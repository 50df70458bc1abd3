//! Stereo WAV recording of a call: caller on the left, callee on the right, each placed by its
//! RTP timestamps (not by arrival), 16-bit PCM at 8 or 16 kHz.
//!
//! How audio is placed. A leg's first packet is anchored at the file position of its arrival
//! time (relative to the recording's start); every later packet of the same stream goes where
//! its RTP timestamp says, so network jitter and reordering do not move audio, and missing
//! packets leave silence of exactly their length. A new stream on a leg (new SSRC, a new clock
//! rate after a codec change, or a timestamp jump that disagrees with arrival times by more than
//! two seconds) is anchored again: right where the leg's audio ended if it arrives about then (a
//! seamless switch), else at its arrival time.
//!
//! Samples are held in memory for one second (the reordering window) before they are written;
//! a packet arriving later than that is dropped and counted. [`StereoWavWriter::advance`] writes
//! silence up to `now − 1 s` when no audio comes (both legs on hold), so memory stays bounded.
//!
//! Pause and resume: paused time is recorded as **silence** (not skipped), so the file's timeline
//! stays the call's: offsets in the file match CDR and event times, and the legs stay aligned.
//!
//! Decoded audio at another rate than the file's is converted by an integer factor (16 kHz
//! G.722 into an 8 kHz file: pairs averaged; 8 kHz into a 16 kHz file: linear interpolation).
//! That is a recording-grade shortcut, not a resampler.

use std::fs::File;
use std::io::{BufWriter, Seek, Write};
use std::path::Path;

/// Which side of the call a leg is, and so its channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// The calling party: left channel.
    Caller,
    /// The called party: right channel.
    Callee,
}

/// One packet's worth of decoded audio of a leg.
#[derive(Clone, Copy, Debug)]
pub struct LegAudio<'a> {
    /// The stream's SSRC.
    pub ssrc: u32,
    /// RTP timestamp of the first sample.
    pub timestamp: u32,
    /// RTP clock rate of the payload type (8000 for G.722 too).
    pub clock_rate: u32,
    /// Rate of `samples` (16000 for G.722).
    pub sample_rate: u32,
    /// The decoded samples.
    pub samples: &'a [i16],
}

/// What went wrong while recording.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    /// Writing the file failed.
    #[error("wav: {0}")]
    Wav(#[from] hound::Error),
    /// The file rate is not 8000 or 16000 Hz.
    #[error("recording rate {0} Hz (8000 or 16000 only)")]
    FileRate(u32),
    /// Audio at a rate that is not an integer multiple or divisor of the file's.
    #[error("audio at {from} Hz cannot go into a {to} Hz recording")]
    Rate {
        /// Rate of the audio.
        from: u32,
        /// Rate of the file.
        to: u32,
    },
}

/// What a finished recording holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordingSummary {
    /// Stereo frames written.
    pub frames: u64,
    /// Length in milliseconds.
    pub duration_ms: u64,
    /// Samples dropped because they came after they had been written.
    pub late_samples: u64,
}

/// How far behind `now` audio is still accepted, ms.
const REORDER_MS: u64 = 1000;
/// A timestamp that disagrees with arrival by more than this is a jump, ms.
const JUMP_MS: i64 = 2000;
/// A new stream arriving within this of where the leg's audio ended continues it, ms.
const CONTINUITY_MS: i64 = 250;

/// Where a leg's current stream goes in the file.
#[derive(Clone, Copy, Debug)]
struct Anchor {
    ssrc: u32,
    clock_rate: u32,
    /// Extended timestamp that maps to `pos`.
    base_ts: i64,
    /// Highest extended timestamp seen (for unwrapping).
    last_ts: i64,
    pos: i64,
}

/// A stereo WAV recording in progress. See the module documentation.
pub struct StereoWavWriter<W: Write + Seek> {
    wav: hound::WavWriter<W>,
    rate: u32,
    start_ms: u64,
    /// Frames written to the file.
    written: u64,
    /// Samples from `written` on, per channel, not yet written.
    pending: [Vec<i16>; 2],
    /// End of the audio placed so far, per channel (file position).
    frontier: [u64; 2],
    anchors: [Option<Anchor>; 2],
    /// The stream each leg had before its current one: its stragglers still land right.
    previous: [Option<Anchor>; 2],
    /// Paused spans in file positions; the last may be open.
    muted: Vec<(u64, Option<u64>)>,
    late_samples: u64,
    scratch: Vec<i16>,
}

impl StereoWavWriter<BufWriter<File>> {
    /// Creates the file at `path` for a recording at `rate` Hz whose time zero is `start_ms`
    /// (the caller's clock, the same as the arrival times passed later).
    pub fn create(
        path: impl AsRef<Path>,
        rate: u32,
        start_ms: u64,
    ) -> Result<Self, RecordingError> {
        check_rate(rate)?;
        let wav = hound::WavWriter::create(path, spec(rate))?;
        Ok(StereoWavWriter::with_wav(wav, rate, start_ms))
    }
}

impl<W: Write + Seek> StereoWavWriter<W> {
    /// A recording into any seekable writer (see [`StereoWavWriter::create`]).
    pub fn new(writer: W, rate: u32, start_ms: u64) -> Result<Self, RecordingError> {
        check_rate(rate)?;
        let wav = hound::WavWriter::new(writer, spec(rate))?;
        Ok(StereoWavWriter::with_wav(wav, rate, start_ms))
    }

    fn with_wav(wav: hound::WavWriter<W>, rate: u32, start_ms: u64) -> Self {
        StereoWavWriter {
            wav,
            rate,
            start_ms,
            written: 0,
            pending: [Vec::new(), Vec::new()],
            frontier: [0, 0],
            anchors: [None, None],
            previous: [None, None],
            muted: Vec::new(),
            late_samples: 0,
            scratch: Vec::new(),
        }
    }

    /// Places one packet's decoded audio of `side`, which arrived at `arrival_ms`, then writes
    /// out what is older than the reordering window.
    pub fn push(
        &mut self,
        side: Side,
        audio: LegAudio<'_>,
        arrival_ms: u64,
    ) -> Result<(), RecordingError> {
        self.convert(&audio)?;
        let ch = channel(side);
        let pos = self.place(ch, &audio, arrival_ms);
        let samples = std::mem::take(&mut self.scratch);
        self.put(ch, pos, &samples);
        self.scratch = samples;
        self.advance(arrival_ms)
    }

    /// Writes out everything older than `now_ms − 1 s` (silence where there was no audio).
    /// Call it now and then when no audio comes, e.g. every second.
    pub fn advance(&mut self, now_ms: u64) -> Result<(), RecordingError> {
        let horizon = self.pos_of(now_ms.saturating_sub(REORDER_MS));
        self.write_until(horizon.max(0) as u64)
    }

    /// Pauses at `now_ms`: audio from then on is recorded as silence.
    pub fn pause(&mut self, now_ms: u64) {
        if self.muted.last().is_some_and(|m| m.1.is_none()) {
            return;
        }
        let at = self.pos_of(now_ms).max(0) as u64;
        self.muted.push((at, None));
    }

    /// Resumes at `now_ms` after [`StereoWavWriter::pause`].
    pub fn resume(&mut self, now_ms: u64) {
        let at = self.pos_of(now_ms).max(0) as u64;
        if let Some(m) = self.muted.last_mut() {
            if m.1.is_none() {
                m.1 = Some(at.max(m.0));
            }
        }
    }

    /// Whether the recording is paused.
    pub fn is_paused(&self) -> bool {
        self.muted.last().is_some_and(|m| m.1.is_none())
    }

    /// Writes out all audio placed so far and completes the file.
    pub fn finish(mut self) -> Result<RecordingSummary, RecordingError> {
        let end = self.frontier[0].max(self.frontier[1]);
        self.write_until(end)?;
        self.wav.finalize()?;
        Ok(RecordingSummary {
            frames: self.written,
            duration_ms: self.written * 1000 / u64::from(self.rate),
            late_samples: self.late_samples,
        })
    }

    /// File position (frames) of a time on the caller's clock.
    fn pos_of(&self, ms: u64) -> i64 {
        let ms = i64::try_from(ms).unwrap_or(i64::MAX) - i64::try_from(self.start_ms).unwrap_or(0);
        ms.saturating_mul(i64::from(self.rate)) / 1000
    }

    /// The file position of the packet's first sample, re-anchoring the leg if needed.
    fn place(&mut self, ch: usize, a: &LegAudio<'_>, arrival_ms: u64) -> i64 {
        let arrival_pos = self.pos_of(arrival_ms);
        let rate = i64::from(self.rate);
        let tolerance = JUMP_MS * rate / 1000;
        for anchor in [&mut self.anchors[ch], &mut self.previous[ch]]
            .into_iter()
            .flatten()
        {
            if anchor.ssrc == a.ssrc && anchor.clock_rate == a.clock_rate {
                let ts = unwrap32(anchor.last_ts, a.timestamp);
                let pos = anchor.pos + (ts - anchor.base_ts) * rate / i64::from(a.clock_rate);
                if (pos - arrival_pos).abs() <= tolerance {
                    anchor.last_ts = anchor.last_ts.max(ts);
                    return pos;
                }
            }
        }
        // A new stream on this leg.
        let frontier = self.frontier[ch] as i64;
        let continues = self.anchors[ch].is_some()
            && (arrival_pos - frontier).abs() <= CONTINUITY_MS * rate / 1000;
        let pos = if continues { frontier } else { arrival_pos };
        self.previous[ch] = self.anchors[ch].take();
        self.anchors[ch] = Some(Anchor {
            ssrc: a.ssrc,
            clock_rate: a.clock_rate.max(1),
            base_ts: i64::from(a.timestamp),
            last_ts: i64::from(a.timestamp),
            pos,
        });
        pos
    }

    /// Copies `samples` to channel `ch` from file position `pos`, except what is already
    /// written (late) or paused.
    fn put(&mut self, ch: usize, pos: i64, samples: &[i16]) {
        let end = pos + samples.len() as i64;
        let from = pos.max(self.written as i64);
        self.late_samples += (from - pos).clamp(0, samples.len() as i64) as u64;
        if end <= from {
            return;
        }
        // The window is bounded: audio far ahead (cannot happen after `place` checks arrival,
        // but a caller's clock may jump) first pushes older audio out.
        let limit = u64::from(self.rate) * 60;
        let span = (end as u64).saturating_sub(self.written);
        if span > limit {
            // Errors surface on the next push or finish; the samples are kept either way.
            let _ = self.write_until(end as u64 - limit);
        }
        let from = from.max(self.written as i64) as u64;
        let end = end as u64;
        let buf = &mut self.pending[ch];
        let need = (end - self.written) as usize;
        if buf.len() < need {
            buf.resize(need, 0);
        }
        for p in from..end {
            if self
                .muted
                .iter()
                .any(|&(s, e)| p >= s && e.is_none_or(|e| p < e))
            {
                continue;
            }
            // `p` is in `from..end`, at or after `pos` and `written`: both indexes are in range.
            buf[(p - self.written) as usize] = samples[(p as i64 - pos) as usize];
        }
        self.frontier[ch] = self.frontier[ch].max(end);
    }

    /// Writes frames up to file position `until` (silence where nothing was placed).
    fn write_until(&mut self, until: u64) -> Result<(), RecordingError> {
        if until <= self.written {
            return Ok(());
        }
        let n = (until - self.written) as usize;
        for i in 0..n {
            let l = self.pending[0].get(i).copied().unwrap_or(0);
            let r = self.pending[1].get(i).copied().unwrap_or(0);
            self.wav.write_sample(l)?;
            self.wav.write_sample(r)?;
        }
        for buf in &mut self.pending {
            buf.drain(..n.min(buf.len()));
        }
        self.written = until;
        self.muted.retain(|&(_, e)| e.is_none_or(|e| e > until));
        Ok(())
    }

    /// Converts the packet's samples to the file rate into `scratch`.
    fn convert(&mut self, a: &LegAudio<'_>) -> Result<(), RecordingError> {
        let (from, to) = (a.sample_rate, self.rate);
        let out = &mut self.scratch;
        out.clear();
        if from == to {
            out.extend_from_slice(a.samples);
        } else if from > to && from % to == 0 {
            let k = (from / to) as usize;
            out.extend(a.samples.chunks(k).map(|c| {
                let sum: i32 = c.iter().map(|&s| i32::from(s)).sum();
                // The mean of i16 values is an i16.
                (sum / c.len() as i32) as i16
            }));
        } else if to > from && from > 0 && to % from == 0 {
            let k = (to / from) as usize;
            for (i, &s) in a.samples.iter().enumerate() {
                let next = a.samples.get(i + 1).copied().unwrap_or(s);
                for j in 0..k {
                    let v = i32::from(s) + (i32::from(next) - i32::from(s)) * j as i32 / k as i32;
                    // Between two i16 values: an i16.
                    out.push(v as i16);
                }
            }
        } else {
            return Err(RecordingError::Rate { from, to });
        }
        Ok(())
    }
}

fn channel(side: Side) -> usize {
    match side {
        Side::Caller => 0,
        Side::Callee => 1,
    }
}

fn check_rate(rate: u32) -> Result<(), RecordingError> {
    match rate {
        8000 | 16000 => Ok(()),
        _ => Err(RecordingError::FileRate(rate)),
    }
}

fn spec(rate: u32) -> hound::WavSpec {
    hound::WavSpec {
        channels: 2,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    }
}

/// The extension of the 32-bit timestamp `raw` nearest to `reference`.
fn unwrap32(reference: i64, raw: u32) -> i64 {
    let d = raw.wrapping_sub(reference as u32) as i32;
    reference + i64::from(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::{dominant, rms_dbfs, sine, Noise};
    use std::io::Cursor;

    const TONES: [f64; 3] = [600.0, 1000.0, 1400.0];

    /// A leg sending `tone` in 20 ms packets: packet `i` has timestamp `ts0 + i·20 ms`.
    struct Leg {
        ssrc: u32,
        ts0: u32,
        clock: u32,
        rate: u32,
        tone: f64,
    }

    impl Leg {
        /// Samples of packet `i` (a continuous tone across packets).
        fn samples(&self, i: u32) -> Vec<i16> {
            let n = (self.rate / 50) as usize;
            let all = sine(self.tone, -10.0, self.rate, n * (i as usize + 1));
            all[n * i as usize..].to_vec()
        }

        fn ts(&self, i: u32) -> u32 {
            self.ts0.wrapping_add(i * self.clock / 50)
        }
    }

    fn read(bytes: Vec<u8>) -> (hound::WavSpec, Vec<i16>, Vec<i16>) {
        let mut r = hound::WavReader::new(Cursor::new(bytes)).unwrap(); // invariant: we wrote it
        let spec = r.spec();
        let all: Vec<i16> = r.samples::<i16>().map(|s| s.unwrap_or(0)).collect();
        let left = all.iter().step_by(2).copied().collect();
        let right = all.iter().skip(1).step_by(2).copied().collect();
        (spec, left, right)
    }

    /// What each 20 ms window of a channel holds: the tone's frequency, or 0 for silence.
    fn windows(x: &[i16], rate: u32) -> Vec<u32> {
        x.chunks((rate / 50) as usize)
            .map(|w| {
                if rms_dbfs(w) < -50.0 {
                    0
                } else {
                    dominant(w, &TONES, rate).unwrap_or(0.0) as u32
                }
            })
            .collect()
    }

    fn push(
        rec: &mut StereoWavWriter<&mut Cursor<Vec<u8>>>,
        side: Side,
        leg: &Leg,
        ts_i: u32,
        k: u32,
        at: u64,
    ) {
        let samples = leg.samples(k);
        let audio = LegAudio {
            ssrc: leg.ssrc,
            timestamp: leg.ts(ts_i),
            clock_rate: leg.clock,
            sample_rate: leg.rate,
            samples: &samples,
        };
        rec.push(side, audio, at).unwrap(); // invariant: rates divide the file's
    }

    /// Compares window contents, allowing either value at the `fuzzy` windows.
    fn check(got: &[u32], want: &[u32], fuzzy: &[usize], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: {got:?}");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            if !fuzzy.contains(&i) {
                assert_eq!(g, w, "{what}: window {i} of {got:?}");
            }
        }
    }

    /// The two legs of the module documentation's promise, with every complication at once:
    /// jitter that reorders packets, a timestamp wrap, lost packets, a late answer, a codec and
    /// SSRC change mid-call, a pause.
    #[test]
    fn legs_land_at_their_timestamps_with_gaps_reordering_switches_and_a_pause() {
        let mut bytes = Cursor::new(Vec::new());
        let mut rec = StereoWavWriter::new(&mut bytes, 8000, 100).unwrap(); // 8 kHz is valid
        let caller = Leg {
            ssrc: 0xca11,
            ts0: u32::MAX - 3000,
            clock: 8000,
            rate: 8000,
            tone: 1000.0,
        };
        // The callee answers 500 ms in with G.722 (16 kHz audio, 8 kHz clock), and after 1 s
        // switches to PCMU with a new SSRC and timestamp base.
        let g722 = Leg {
            ssrc: 0xb0b,
            ts0: 123_456,
            clock: 8000,
            rate: 16000,
            tone: 600.0,
        };
        let pcmu = Leg {
            ssrc: 0xb0c,
            ts0: 9_000_000,
            clock: 8000,
            rate: 8000,
            tone: 600.0,
        };
        let mut rng = Noise::new(3);
        // (arrival, side, packet index): packet i is due at 100 + 20·i ms.
        let mut events: Vec<(u64, Side, u32)> = Vec::new();
        for i in 0..150u32 {
            let mut at =
                |first: bool| 100 + u64::from(i) * 20 + if first { 0 } else { rng.next_u64() % 30 };
            if !(50..60).contains(&i) {
                events.push((at(i == 0), Side::Caller, i)); // 50..60 lost
            }
            if i >= 25 {
                events.push((at(i == 25), Side::Callee, i));
            }
        }
        events.sort_by_key(|e| e.0);
        let (mut paused, mut resumed) = (false, false);
        for &(at, side, i) in &events {
            if at >= 2100 && !paused {
                rec.pause(2100);
                paused = true;
                assert!(rec.is_paused());
            }
            if at >= 2300 && !resumed {
                rec.resume(2300);
                resumed = true;
            }
            match side {
                Side::Caller => push(&mut rec, side, &caller, i, i, at),
                Side::Callee if i < 75 => push(&mut rec, side, &g722, i - 25, i - 25, at),
                Side::Callee => push(&mut rec, side, &pcmu, i - 75, i - 25, at),
            }
        }
        let summary = rec.finish().unwrap(); // invariant: in memory
        assert_eq!((summary.late_samples, summary.duration_ms), (0, 3000));
        let (spec, left, right) = read(bytes.into_inner());
        assert_eq!(
            (spec.channels, spec.sample_rate, spec.bits_per_sample),
            (2, 8000, 16)
        );
        // File time 0 is 100 ms on the caller's clock: window w is packet w.
        let mut want_left = vec![1000; 150];
        want_left[50..60].fill(0); // lost
        want_left[100..110].fill(0); // paused
        check(&windows(&left, 8000), &want_left, &[], "left");
        let mut want_right = vec![600; 150];
        want_right[..25].fill(0); // not answered yet
        want_right[100..110].fill(0);
        // The switch may land one packet early if the old stream's last packet was overtaken.
        check(&windows(&right, 8000), &want_right, &[149], "right");
        // Nothing written twice or mixed: every tone window is at its -10 dBFS.
        for (w, x) in left.chunks(160).zip(&want_left) {
            if *x != 0 {
                assert!((rms_dbfs(w) + 10.0).abs() < 0.2, "{}", rms_dbfs(w));
            }
        }
    }

    #[test]
    fn a_timestamp_jump_on_the_same_stream_continues_seamlessly() {
        let mut bytes = Cursor::new(Vec::new());
        let mut rec = StereoWavWriter::new(&mut bytes, 8000, 0).unwrap(); // valid rate
        let a = Leg {
            ssrc: 5,
            ts0: 1000,
            clock: 8000,
            rate: 8000,
            tone: 1400.0,
        };
        let b = Leg {
            ts0: 3_000_000_000,
            ..a
        };
        for i in 0..100u32 {
            let (leg, ts_i) = if i < 50 { (&a, i) } else { (&b, i - 50) };
            let jitter = if i == 0 { 0 } else { 3 };
            push(
                &mut rec,
                Side::Callee,
                leg,
                ts_i,
                i,
                u64::from(i) * 20 + jitter,
            );
        }
        let s = rec.finish().unwrap(); // in memory
        assert_eq!(s.duration_ms, 2000);
        let (_, left, right) = read(bytes.into_inner());
        assert_eq!(windows(&right, 8000), vec![1400; 100]);
        assert_eq!(windows(&left, 8000), vec![0; 100]);
    }

    #[test]
    fn late_audio_is_dropped_and_hold_writes_silence() {
        let mut bytes = Cursor::new(Vec::new());
        let mut rec = StereoWavWriter::new(&mut bytes, 8000, 0).unwrap(); // valid rate
        let a = Leg {
            ssrc: 5,
            ts0: 0,
            clock: 8000,
            rate: 8000,
            tone: 1000.0,
        };
        push(&mut rec, Side::Caller, &a, 0, 0, 0);
        push(&mut rec, Side::Caller, &a, 2, 2, 40);
        rec.advance(1_500).unwrap(); // in memory
        assert_eq!(rec.written, 4_000, "written up to now − 1 s");
        push(&mut rec, Side::Caller, &a, 1, 1, 1_500); // 1.48 s late
                                                       // 10 s of hold: silence written up to now − 1 s, nothing piles up.
        rec.advance(10_000).unwrap(); // in memory
        assert_eq!(rec.written, 72_000);
        assert!(rec.pending.iter().all(|p| p.is_empty()));
        let s = rec.finish().unwrap(); // in memory
        assert_eq!((s.late_samples, s.frames), (160, 72_000));
        let (_, left, _) = read(bytes.into_inner());
        let w = windows(&left, 8000);
        assert_eq!(w[..4], [1000, 0, 1000, 0]);
        assert!(w[3..].iter().all(|&f| f == 0));
    }

    #[test]
    fn a_16khz_file_on_disk_from_8_and_16khz_audio() {
        let path = std::env::temp_dir().join(format!("switchboard-wav-{}.wav", std::process::id()));
        let mut rec = StereoWavWriter::create(&path, 16000, 0).unwrap(); // temp dir is writable
        let pcmu = Leg {
            ssrc: 1,
            ts0: 0,
            clock: 8000,
            rate: 8000,
            tone: 1000.0,
        };
        let g722 = Leg {
            ssrc: 2,
            ts0: 77,
            clock: 8000,
            rate: 16000,
            tone: 1400.0,
        };
        for i in 0..50u32 {
            push_file(&mut rec, Side::Caller, &pcmu, i, u64::from(i) * 20);
            push_file(&mut rec, Side::Callee, &g722, i, u64::from(i) * 20);
        }
        let s = rec.finish().unwrap(); // temp dir is writable
        assert_eq!((s.frames, s.duration_ms), (16_000, 1000));
        let mut r = hound::WavReader::open(&path).unwrap(); // just written
        let spec = r.spec();
        assert_eq!(
            (spec.channels, spec.sample_rate, spec.bits_per_sample),
            (2, 16000, 16)
        );
        let all: Vec<i16> = r.samples::<i16>().map(|x| x.unwrap_or(0)).collect();
        let _ = std::fs::remove_file(&path);
        let left: Vec<i16> = all.iter().step_by(2).copied().collect();
        let right: Vec<i16> = all.iter().skip(1).step_by(2).copied().collect();
        assert_eq!(windows(&left, 16000), vec![1000; 50]);
        assert_eq!(windows(&right, 16000), vec![1400; 50]);
        // Upsampling by interpolation keeps the level.
        // Linear interpolation is a gentle low-pass: 1 kHz loses about 0.3 dB.
        assert!((rms_dbfs(&left) + 10.0).abs() < 0.5, "{}", rms_dbfs(&left));
    }

    fn push_file(
        rec: &mut StereoWavWriter<BufWriter<File>>,
        side: Side,
        leg: &Leg,
        i: u32,
        at: u64,
    ) {
        let samples = leg.samples(i);
        let audio = LegAudio {
            ssrc: leg.ssrc,
            timestamp: leg.ts(i),
            clock_rate: leg.clock,
            sample_rate: leg.rate,
            samples: &samples,
        };
        rec.push(side, audio, at).unwrap(); // invariant: rates divide the file's
    }

    #[test]
    fn rejects_bad_rates() {
        assert!(matches!(
            StereoWavWriter::new(Cursor::new(Vec::new()), 44100, 0),
            Err(RecordingError::FileRate(44100))
        ));
        let mut rec = StereoWavWriter::new(Cursor::new(Vec::new()), 16000, 0).unwrap(); // valid rate
        let audio = LegAudio {
            ssrc: 1,
            timestamp: 0,
            clock_rate: 48000,
            sample_rate: 48000 / 5,
            samples: &[0; 192],
        };
        assert!(matches!(
            rec.push(Side::Caller, audio, 0),
            Err(RecordingError::Rate {
                from: 9600,
                to: 16000
            })
        ));
    }

    #[test]
    fn unwrap32_nearest() {
        assert_eq!(unwrap32(i64::from(u32::MAX), 3), (1 << 32) + 3);
        assert_eq!(unwrap32(1 << 32, u32::MAX), (1 << 32) - 1);
        assert_eq!(unwrap32(100, 50), 50);
    }
}
