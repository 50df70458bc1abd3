//! Prompts: audio files decoded to mono [`Pcm`] at the rate a call leg plays, a bounded cache of
//! decoded prompts, and call-progress tones rendered as clips.
//!
//! Formats: WAV (PCM 8/16/24/32-bit, float, µ-law, A-law), FLAC, MP3 and Ogg Vorbis through
//! symphonia; Ogg/Opus through the `ogg` demuxer and libopus (symphonia has no Opus decoder).
//! Channels are averaged to mono; the rate is changed with [`crate::resample`] (rubato), or with
//! a rubato resampler of larger blocks for rates that module does not take (11.025 kHz, 96 kHz…).
//!
//! Decoding is blocking CPU work (a few ms per second of audio): async callers use
//! `spawn_blocking`. Files longer than [`MAX_DURATION`] are refused, so a wrong file (an hour of
//! music) cannot take the memory of thousands of calls.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Cursor, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::{MediaSource, MediaSourceStream};
use symphonia::core::meta::MetadataOptions;

use crate::pcm::Pcm;
use crate::resample::{self, ResampleError};
use crate::tone::{ToneGenerator, ToneSpec, BEEP, BUSY_EU, PRESET_LEVEL_DBFS, RINGBACK_EU};

/// The longest prompt accepted: 10 minutes.
pub const MAX_DURATION: Duration = Duration::from_secs(600);

/// Corrupt packets skipped (as players do) before a file is declared undecodable.
const MAX_BAD_PACKETS: usize = 64;

/// Why a prompt could not be decoded. Every message names the file (`<memory:ext>` for bytes).
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    /// The file could not be opened or read: (file, cause).
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    /// Not a format or codec this module decodes (the message names file and reason).
    #[error("{0}")]
    Unsupported(String),
    /// The data is malformed (the message names file and reason).
    #[error("{0}")]
    Decode(String),
    /// The clip could not be converted to the requested rate: (file, cause).
    #[error("{0}: {1}")]
    Resample(String, #[source] ResampleError),
    /// Longer than [`MAX_DURATION`] (the file).
    #[error("{0}: longer than the {limit} s prompt limit", limit = MAX_DURATION.as_secs())]
    TooLong(String),
}

/// Decodes an audio file to mono PCM at `rate` (8 to 48 kHz): WAV, FLAC, MP3, Ogg Vorbis,
/// Ogg/Opus. Blocking.
pub fn decode_file(path: &Path, rate: u32) -> Result<Pcm, PromptError> {
    let name = path.display().to_string();
    check_rate(rate, &name)?;
    let mut file = File::open(path).map_err(|e| PromptError::Io(name.clone(), e))?;
    let opus = is_ogg_opus(&mut file).map_err(|e| PromptError::Io(name.clone(), e))?;
    let (src_rate, mono) = if opus {
        decode_ogg_opus(std::io::BufReader::new(file), &name)?
    } else {
        let ext = path.extension().and_then(|e| e.to_str());
        decode_symphonia(Box::new(file), ext, &name)?
    };
    finish(src_rate, mono, rate, &name)
}

/// Decodes an audio file held in memory (a prompt fetched from a URL) to mono PCM at `rate`;
/// `ext` is a hint for the format ("wav", "mp3"…), the content decides. Blocking.
pub fn decode_bytes(bytes: Vec<u8>, ext: Option<&str>, rate: u32) -> Result<Pcm, PromptError> {
    let name = format!("<memory:{}>", ext.unwrap_or("?"));
    check_rate(rate, &name)?;
    let mut cursor = Cursor::new(bytes);
    let opus = is_ogg_opus(&mut cursor).map_err(|e| PromptError::Io(name.clone(), e))?;
    let (src_rate, mono) = if opus {
        decode_ogg_opus(cursor, &name)?
    } else {
        decode_symphonia(Box::new(cursor), ext, &name)?
    };
    finish(src_rate, mono, rate, &name)
}

fn check_rate(rate: u32, name: &str) -> Result<(), PromptError> {
    if (8000..=48000).contains(&rate) {
        Ok(())
    } else {
        Err(PromptError::Resample(
            name.to_string(),
            ResampleError::Rate(rate),
        ))
    }
}

fn too_long(samples: usize, rate: u32) -> bool {
    samples as u64 > MAX_DURATION.as_secs() * u64::from(rate)
}

fn finish(src_rate: u32, mono: Vec<i16>, rate: u32, name: &str) -> Result<Pcm, PromptError> {
    if too_long(mono.len(), src_rate) {
        return Err(PromptError::TooLong(name.to_string()));
    }
    let out = convert_rate(src_rate, rate, &mono)
        .map_err(|e| PromptError::Resample(name.to_string(), e))?;
    Ok(Pcm::new(rate, out))
}

/// Whole-clip rate conversion: [`resample::resample_all`] when it takes both rates, else a
/// rubato FFT resampler with 1024-sample blocks (any rates up to 384 kHz).
fn convert_rate(from: u32, to: u32, x: &[i16]) -> Result<Vec<i16>, ResampleError> {
    if from == to {
        return Ok(x.to_vec());
    }
    if resample::supported_rate(from) && resample::supported_rate(to) {
        return resample::resample_all(from, to, x);
    }
    use rubato::audioadapter_buffers::direct::InterleavedSlice;
    use rubato::{Fft, FixedSync, Resampler as _};
    for r in [from, to] {
        if !(1000..=384_000).contains(&r) {
            return Err(ResampleError::Rate(r));
        }
    }
    let mut fft = Fft::<f32>::new(from as usize, to as usize, 1024, 1, FixedSync::Input)
        .map_err(|e| ResampleError::Rubato(e.to_string()))?;
    let floats: Vec<f32> = x.iter().map(|&s| f32::from(s) / 32768.0).collect();
    let adapter = InterleavedSlice::new(&floats, 1, floats.len())
        .map_err(|e| ResampleError::Rubato(e.to_string()))?;
    let out = fft
        .process_all(&adapter, floats.len(), None)
        .map_err(|e| ResampleError::Rubato(e.to_string()))?;
    Ok(out.take_data().into_iter().map(f32_to_i16).collect())
}

fn f32_to_i16(v: f32) -> i16 {
    // Clamped before the cast; NaN becomes 0.
    (v * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

/// Whether the stream starts with an Ogg page whose first packet is an Opus header. Leaves the
/// stream at its start.
fn is_ogg_opus<R: Read + Seek>(r: &mut R) -> std::io::Result<bool> {
    let mut head = [0u8; 27 + 255 + 8];
    let mut n = 0;
    while n < head.len() {
        let got = r.read(&mut head[n..])?;
        if got == 0 {
            break;
        }
        n += got;
    }
    r.seek(SeekFrom::Start(0))?;
    let head = &head[..n];
    if head.len() < 27 || &head[..4] != b"OggS" {
        return Ok(false);
    }
    let segments = usize::from(head[26]);
    Ok(head
        .get(27 + segments..27 + segments + 8)
        .is_some_and(|m| m == b"OpusHead"))
}

/// Decodes with symphonia; returns the source rate and the mono samples.
fn decode_symphonia(
    source: Box<dyn MediaSource>,
    ext: Option<&str>,
    name: &str,
) -> Result<(u32, Vec<i16>), PromptError> {
    let mut hint = Hint::new();
    if let Some(ext) = ext {
        hint.with_extension(ext);
    }
    let mss = MediaSourceStream::new(source, Default::default());
    let mut format = symphonia::default::get_probe()
        .probe(
            &hint,
            mss,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .map_err(|e| symphonia_error(e, name, "not a recognised audio file"))?;
    let track = format
        .default_track(TrackType::Audio)
        .ok_or_else(|| PromptError::Unsupported(format!("{name}: no audio track")))?;
    let track_id = track.id;
    let params = track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .ok_or_else(|| PromptError::Unsupported(format!("{name}: no audio codec parameters")))?
        .clone();
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(&params, &AudioDecoderOptions::default())
        .map_err(|e| symphonia_error(e, name, "unsupported codec"))?;
    let mut src_rate = params.sample_rate.unwrap_or(0);
    let mut mono: Vec<i16> = Vec::new();
    let mut scratch: Vec<f32> = Vec::new();
    let mut bad = 0usize;
    loop {
        let packet = match format.next_packet() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            // A truncated file: keep what was decoded.
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                break
            }
            Err(e) => return Err(symphonia_error(e, name, "demuxing failed")),
        };
        if packet.track_id != track_id {
            continue;
        }
        let buf = match decoder.decode(&packet) {
            Ok(buf) => buf,
            Err(SymphoniaError::DecodeError(what)) => {
                bad += 1;
                if bad > MAX_BAD_PACKETS {
                    return Err(PromptError::Decode(format!("{name}: {what}")));
                }
                continue;
            }
            Err(e) => return Err(symphonia_error(e, name, "decoding failed")),
        };
        let channels = buf.spec().channels().count().max(1);
        src_rate = buf.spec().rate();
        buf.copy_to_vec_interleaved::<f32>(&mut scratch);
        mono.extend(
            scratch
                .chunks(channels)
                .map(|f| f32_to_i16(f.iter().sum::<f32>() / channels as f32)),
        );
        if src_rate > 0 && too_long(mono.len(), src_rate) {
            return Err(PromptError::TooLong(name.to_string()));
        }
    }
    if src_rate == 0 {
        return Err(PromptError::Decode(format!("{name}: no sample rate")));
    }
    if mono.is_empty() && bad > 0 {
        return Err(PromptError::Decode(format!(
            "{name}: no packet could be decoded"
        )));
    }
    Ok((src_rate, mono))
}

fn symphonia_error(e: SymphoniaError, name: &str, context: &str) -> PromptError {
    match e {
        SymphoniaError::IoError(io) if io.kind() != std::io::ErrorKind::UnexpectedEof => {
            PromptError::Io(name.to_string(), io)
        }
        SymphoniaError::Unsupported(what) => {
            PromptError::Unsupported(format!("{name}: {context}: {what}"))
        }
        other => PromptError::Decode(format!("{name}: {context}: {other}")),
    }
}

/// Decodes Ogg/Opus (RFC 7845, mono or stereo, mapping family 0 or 1) at 48 kHz; returns the
/// rate and the mono samples, pre-skip and end trimming applied.
fn decode_ogg_opus<R: Read + Seek>(r: R, name: &str) -> Result<(u32, Vec<i16>), PromptError> {
    let ogg_err = |e: ogg::OggReadError| PromptError::Decode(format!("{name}: Ogg: {e}"));
    let mut reader = ogg::PacketReader::new(r);
    let head = reader
        .read_packet()
        .map_err(ogg_err)?
        .ok_or_else(|| PromptError::Decode(format!("{name}: empty Ogg stream")))?;
    let h = &head.data;
    if h.len() < 19 || &h[..8] != b"OpusHead" {
        return Err(PromptError::Decode(format!("{name}: bad OpusHead")));
    }
    if h[8] >> 4 != 0 {
        return Err(PromptError::Unsupported(format!(
            "{name}: Opus header version {}",
            h[8]
        )));
    }
    let channels = usize::from(h[9]);
    let pre_skip = usize::from(u16::from_le_bytes([h[10], h[11]]));
    let gain_q8 = i16::from_le_bytes([h[16], h[17]]);
    let family = h[18];
    if !(channels == 1 || channels == 2) || family > 1 {
        return Err(PromptError::Unsupported(format!(
            "{name}: Opus with {channels} channels, mapping family {family}"
        )));
    }
    let serial = head.stream_serial();
    let mut decoder = opus::Decoder::new(
        48000,
        if channels == 1 {
            opus::Channels::Mono
        } else {
            opus::Channels::Stereo
        },
    )
    .map_err(|e| PromptError::Decode(format!("{name}: Opus decoder: {e}")))?;
    // 120 ms at 48 kHz: the longest Opus packet.
    let mut frame = vec![0i16; 5760 * channels];
    let mut mono: Vec<i16> = Vec::new();
    let mut end_granule: Option<u64> = None;
    let mut seen_tags = false;
    let gain = 10f32.powf(f32::from(gain_q8) / 256.0 / 20.0);
    while let Some(packet) = reader.read_packet().map_err(ogg_err)? {
        if packet.stream_serial() != serial {
            continue;
        }
        if !seen_tags {
            // The second packet is OpusTags (comments), not audio.
            seen_tags = true;
            continue;
        }
        let n = decoder
            .decode(&packet.data, &mut frame, false)
            .map_err(|e| PromptError::Decode(format!("{name}: Opus: {e}")))?;
        let n = n.min(5760);
        mono.extend(frame[..n * channels].chunks(channels).map(|f| {
            let sum: f32 = f.iter().map(|&s| f32::from(s)).sum();
            (sum / channels as f32 * gain)
                .round()
                .clamp(-32768.0, 32767.0) as i16
        }));
        if packet.last_in_stream() {
            end_granule = Some(packet.absgp_page());
        }
        if too_long(mono.len(), 48000) {
            return Err(PromptError::TooLong(name.to_string()));
        }
    }
    if let Some(end) = end_granule {
        // The last page's granule position counts samples including the pre-skip.
        let keep = usize::try_from(end).unwrap_or(usize::MAX);
        mono.truncate(keep);
    }
    let skip = pre_skip.min(mono.len());
    mono.drain(..skip);
    Ok((48000, mono))
}

/// Cache key: the file, its modification time (so an edited prompt is decoded again), the rate.
type Key = (PathBuf, SystemTime, u32);

struct Entry {
    pcm: Pcm,
    bytes: usize,
    last_used: u64,
}

struct Inner {
    map: HashMap<Key, Entry>,
    bytes: usize,
    tick: u64,
}

/// Thread-safe cache of decoded prompts keyed by (path, file mtime, rate), bounded by the total
/// bytes of samples; the least recently used prompts are evicted first. A hit shares the samples
/// (`Arc`) with every other player of the prompt.
pub struct PromptCache {
    max_bytes: usize,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for PromptCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PromptCache")
            .field("max_bytes", &self.max_bytes)
            .field("len", &self.len())
            .finish()
    }
}

impl PromptCache {
    /// An empty cache holding at most `max_bytes` of samples.
    pub fn new(max_bytes: usize) -> Self {
        PromptCache {
            max_bytes,
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                bytes: 0,
                tick: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The map stays consistent even if a holder panicked: every update is a single step.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The prompt at `path` decoded at `rate`, from the cache when the file is unchanged, else
    /// decoded (outside the lock: two callers missing together both decode) and cached. A clip
    /// bigger than the whole cache is returned but not kept. Blocking.
    pub fn get(&self, path: &Path, rate: u32) -> Result<Pcm, PromptError> {
        let name = path.display().to_string();
        let mtime = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .map_err(|e| PromptError::Io(name, e))?;
        let key = (path.to_path_buf(), mtime, rate);
        {
            let mut inner = self.lock();
            inner.tick += 1;
            let tick = inner.tick;
            if let Some(e) = inner.map.get_mut(&key) {
                e.last_used = tick;
                return Ok(e.pcm.clone());
            }
        }
        let pcm = decode_file(path, rate)?;
        let bytes = pcm.samples.len() * 2;
        if bytes > self.max_bytes {
            return Ok(pcm);
        }
        let mut inner = self.lock();
        // Older versions of the same file at the same rate are dead weight.
        let stale: Vec<Key> = inner
            .map
            .keys()
            .filter(|k| k.0 == key.0 && k.2 == rate && k.1 != mtime)
            .cloned()
            .collect();
        for k in stale {
            if let Some(e) = inner.map.remove(&k) {
                inner.bytes -= e.bytes;
            }
        }
        if let Some(e) = inner.map.get(&key) {
            // Another caller decoded it meanwhile: share theirs.
            return Ok(e.pcm.clone());
        }
        while inner.bytes + bytes > self.max_bytes {
            let Some(oldest) = inner
                .map
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(e) = inner.map.remove(&oldest) {
                inner.bytes -= e.bytes;
            }
        }
        inner.tick += 1;
        let last_used = inner.tick;
        inner.bytes += bytes;
        inner.map.insert(
            key,
            Entry {
                pcm: pcm.clone(),
                bytes,
                last_used,
            },
        );
        Ok(pcm)
    }

    /// How many decoded prompts are cached.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of samples held.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }
}

/// Call-progress tones as clips. The European (CEPT, ETSI ES 201 970) cadences are used: a
/// single 425 Hz frequency is what most of the world outside North America plays, and it is
/// recognisable everywhere; [`crate::tone`] has the US and UK variants for callers that want them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ToneKind {
    /// Ringback: 425 Hz, 1 s on, 4 s off.
    Ringback,
    /// Busy: 425 Hz, 0.5 s on, 0.5 s off.
    Busy,
    /// A beep: 1 kHz for 250 ms, then silence.
    Beep,
    /// Congestion (all circuits busy): 425 Hz, 0.2 s on, 0.2 s off.
    Congestion,
}

/// European congestion: 425 Hz, 0.2 s on, 0.2 s off.
const CONGESTION_EU: ToneSpec = ToneSpec {
    freqs: &[425.0],
    level_dbfs: PRESET_LEVEL_DBFS,
    cadence: &[(200, 200)],
    repeat: true,
};

impl ToneKind {
    /// The tone's definition.
    pub fn spec(self) -> ToneSpec {
        match self {
            ToneKind::Ringback => RINGBACK_EU,
            ToneKind::Busy => BUSY_EU,
            ToneKind::Beep => BEEP,
            ToneKind::Congestion => CONGESTION_EU,
        }
    }
}

/// `duration` of the tone `kind` at `rate`, from the start of its cadence.
pub fn tone(kind: ToneKind, rate: u32, duration: Duration) -> Pcm {
    let n = (u128::from(rate) * duration.as_micros() / 1_000_000) as usize;
    let mut samples = vec![0i16; n];
    ToneGenerator::new(kind.spec(), rate).fill(&mut samples);
    Pcm::new(rate, samples)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::{rms_dbfs, tone_dbfs};

    #[test]
    fn tones_have_their_cadence() {
        let r = tone(ToneKind::Ringback, 8000, Duration::from_secs(5));
        assert_eq!(r.samples.len(), 40000);
        assert!((tone_dbfs(&r.samples[..8000], 425.0, 8000) + 16.0).abs() < 1.0);
        assert!(rms_dbfs(&r.samples[8000..]) < -90.0);
        let c = tone(ToneKind::Congestion, 16000, Duration::from_millis(800));
        let on: Vec<bool> = c
            .samples
            .chunks(1600)
            .map(|w| rms_dbfs(w) > -40.0)
            .collect();
        assert_eq!(on, [true, true, false, false, true, true, false, false]);
        let b = tone(ToneKind::Beep, 8000, Duration::from_secs(1));
        assert!((tone_dbfs(&b.samples[..2000], 1000.0, 8000) + 12.0).abs() < 0.5);
        assert!(b.samples[2000..].iter().all(|&s| s == 0));
        let busy = tone(ToneKind::Busy, 8000, Duration::from_secs(1));
        assert!(rms_dbfs(&busy.samples[4000..]) < -90.0);
    }

    #[test]
    fn odd_rates_go_through_the_fallback_resampler() {
        let x = crate::signal::sine(1000.0, -6.0, 11025, 11025);
        let y = convert_rate(11025, 8000, &x).expect("11.025 → 8 kHz");
        assert!((y.len() as i64 - 8000).abs() < 50, "{}", y.len());
        assert!((tone_dbfs(&y[800..7000], 1000.0, 8000) + 6.0).abs() < 0.5);
        assert!(convert_rate(8000, 500, &x).is_err());
    }
}
