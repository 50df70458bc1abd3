//! Prompt decoding, the prompt cache and flite TTS, on real files: fixtures are generated at test
//! time with sox (and opusenc, and the crate's own Ogg/Opus writer below) into a temp directory.
//!
//! Needs the Debian packages `sox`, `libsox-fmt-all` (MP3 and Vorbis writers), `opus-tools`
//! (opusenc) and `flite`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use switchboard_media::prompt::{decode_bytes, decode_file, PromptCache, PromptError};
use switchboard_media::signal::{dominant, rms_dbfs, sine, tone_dbfs};
use switchboard_media::tts::{FliteTts, Tts};

/// A fresh directory for one test, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "switchboard-media-{name}-{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    fn path(&self, f: &str) -> PathBuf {
        self.0.join(f)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd} could not run ({e}): install the Debian package"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// sox: one second of 1 kHz at -6 dBFS, written with `format` options to `out`.
fn sox_tone(out: &Path, format: &[&str]) {
    let out = out.to_str().unwrap();
    let mut args = format.to_vec();
    args.extend([out, "synth", "1.0", "sine", "1000", "vol", "0.5"]);
    let mut full = vec!["-n"];
    full.extend(args);
    run("sox", &full);
}

/// Checks a decoded 1 s, 1 kHz, -6 dBFS tone.
fn check_tone(label: &str, pcm: &switchboard_media::Pcm, rate: u32, level_tolerance_db: f64) {
    assert_eq!(pcm.rate, rate, "{label}");
    let ms = pcm.duration().as_millis() as i64;
    // sox writes MP3 without a LAME/Xing header, so the encoder delay and the last frame's
    // padding (up to 1 152 + 529 samples) cannot be trimmed by any decoder.
    let tolerance = if label.starts_with("MP3") { 60 } else { 30 };
    assert!((ms - 1000).abs() <= tolerance, "{label} at {rate}: {ms} ms");
    let n = pcm.samples.len();
    let mid = &pcm.samples[n / 10..n * 9 / 10];
    let candidates = [250.0, 500.0, 1000.0, 1500.0, 2000.0, 3000.0];
    assert_eq!(dominant(mid, &candidates, rate), Some(1000.0), "{label}");
    let level = tone_dbfs(mid, 1000.0, rate);
    println!("{label:>26} -> {rate:>5} Hz: {ms} ms, 1 kHz at {level:.2} dBFS");
    assert!(
        (level + 6.0).abs() < level_tolerance_db,
        "{label} at {rate}: {level:.2} dBFS"
    );
}

/// Writes one second of a 1 kHz tone as Ogg/Opus (RFC 7845) with the `ogg` and `opus` crates:
/// a second, independent encoder path besides opusenc.
fn write_ogg_opus(path: &Path, channels: usize) {
    let rate = 48000;
    let mono = sine(1000.0, -6.0, rate, rate as usize);
    let mut enc = opus::Encoder::new(
        rate,
        if channels == 1 {
            opus::Channels::Mono
        } else {
            opus::Channels::Stereo
        },
        opus::Application::Audio,
    )
    .unwrap();
    let pre_skip = enc.get_lookahead().unwrap() as u16;
    let mut out = Vec::new();
    let mut w = ogg::PacketWriter::new(&mut out);
    let serial = 0x5157_4954;
    let mut head = b"OpusHead".to_vec();
    head.push(1);
    head.push(channels as u8);
    head.extend(pre_skip.to_le_bytes());
    head.extend(rate.to_le_bytes());
    head.extend(0i16.to_le_bytes());
    head.push(0);
    w.write_packet(head, serial, ogg::PacketWriteEndInfo::EndPage, 0)
        .unwrap();
    let mut tags = b"OpusTags".to_vec();
    tags.extend(4u32.to_le_bytes());
    tags.extend(b"test");
    tags.extend(0u32.to_le_bytes());
    w.write_packet(tags, serial, ogg::PacketWriteEndInfo::EndPage, 0)
        .unwrap();
    // The encoder's lookahead is compensated by pre-skip: feed one more frame of silence.
    let mut input = mono.clone();
    input.extend(std::iter::repeat_n(0, 960));
    let frames: Vec<&[i16]> = input.chunks(960).collect();
    let total = mono.len() as u64 + u64::from(pre_skip);
    let mut buf = vec![0u8; 4000];
    for (i, f) in frames.iter().enumerate() {
        let mut frame = f.to_vec();
        frame.resize(960, 0);
        let pcm: Vec<i16> = frame
            .iter()
            .flat_map(|&s| std::iter::repeat_n(s, channels))
            .collect();
        let n = enc.encode(&pcm, &mut buf).unwrap();
        let last = i + 1 == frames.len();
        let gp = if last { total } else { (i as u64 + 1) * 960 };
        let end = if last {
            ogg::PacketWriteEndInfo::EndStream
        } else {
            ogg::PacketWriteEndInfo::NormalPacket
        };
        w.write_packet(buf[..n].to_vec(), serial, end, gp).unwrap();
    }
    drop(w);
    std::fs::write(path, out).unwrap();
}

#[test]
fn every_format_decodes_to_8_and_16_khz() {
    let dir = TempDir::new("formats");
    let mut files: Vec<(&str, PathBuf, f64)> = Vec::new();
    let cases: [(&str, &str, &[&str], f64); 9] = [
        (
            "WAV 8 kHz mu-law",
            "ulaw.wav",
            &["-r", "8000", "-c", "1", "-e", "mu-law"],
            0.5,
        ),
        (
            "WAV 8 kHz A-law",
            "alaw.wav",
            &["-r", "8000", "-c", "1", "-e", "a-law"],
            0.5,
        ),
        (
            "WAV 44.1 kHz stereo 16-bit",
            "stereo.wav",
            &["-r", "44100", "-c", "2", "-b", "16"],
            0.3,
        ),
        (
            "WAV 48 kHz 24-bit",
            "s24.wav",
            &["-r", "48000", "-c", "1", "-b", "24"],
            0.3,
        ),
        (
            "WAV 16 kHz float",
            "float.wav",
            &["-r", "16000", "-c", "1", "-e", "floating-point", "-b", "32"],
            0.3,
        ),
        (
            "WAV 11.025 kHz 8-bit",
            "u8.wav",
            &["-r", "11025", "-c", "1", "-b", "8"],
            0.5,
        ),
        ("FLAC 48 kHz", "tone.flac", &["-r", "48000", "-c", "1"], 0.3),
        ("MP3 44.1 kHz", "tone.mp3", &["-r", "44100", "-c", "1"], 1.0),
        (
            "Ogg Vorbis 44.1 kHz stereo",
            "tone.ogg",
            &["-r", "44100", "-c", "2"],
            1.0,
        ),
    ];
    for (label, file, format, tol) in cases {
        let p = dir.path(file);
        sox_tone(&p, format);
        files.push((label, p, tol));
    }
    // Ogg/Opus from opusenc (opus-tools), from a 48 kHz WAV.
    let src = dir.path("opus-src.wav");
    sox_tone(&src, &["-r", "48000", "-c", "1", "-b", "16"]);
    let opusenc = dir.path("opusenc.opus");
    run(
        "opusenc",
        &["--quiet", src.to_str().unwrap(), opusenc.to_str().unwrap()],
    );
    files.push(("Ogg/Opus (opusenc)", opusenc, 1.0));
    for ch in [1, 2] {
        let p = dir.path(&format!("crate-{ch}.opus"));
        write_ogg_opus(&p, ch);
        files.push((
            if ch == 1 {
                "Ogg/Opus mono (ogg+opus)"
            } else {
                "Ogg/Opus stereo (ogg+opus)"
            },
            p,
            1.0,
        ));
    }
    for (label, path, tol) in &files {
        for rate in [8000, 16000] {
            let pcm = decode_file(path, rate).unwrap_or_else(|e| panic!("{label}: {e}"));
            check_tone(label, &pcm, rate, *tol);
        }
        // The same bytes from memory, with and without a hint.
        let bytes = std::fs::read(path).unwrap();
        let ext = path.extension().and_then(|e| e.to_str());
        let a = decode_bytes(bytes.clone(), ext, 8000).unwrap();
        let b = decode_bytes(bytes, None, 8000).unwrap();
        assert_eq!(a, b, "{label}");
        assert_eq!(a, decode_file(path, 8000).unwrap(), "{label}");
    }
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let dir = TempDir::new("errors");
    let missing = dir.path("missing.wav");
    let e = decode_file(&missing, 8000).unwrap_err();
    assert!(matches!(e, PromptError::Io(..)), "{e:?}");
    assert!(e.to_string().contains("missing.wav"), "{e}");

    let garbage = dir.path("garbage.wav");
    let mut noise = 0x1234_5678u32;
    let bytes: Vec<u8> = (0..10_000)
        .map(|_| {
            noise ^= noise << 13;
            noise ^= noise >> 17;
            noise ^= noise << 5;
            noise as u8
        })
        .collect();
    std::fs::write(&garbage, &bytes).unwrap();
    let e = decode_file(&garbage, 8000).unwrap_err();
    println!("garbage: {e}");
    assert!(e.to_string().contains("garbage.wav"), "{e}");

    // Every prefix of real files (truncated downloads), plus odd headers: no panic.
    let wav = dir.path("t.wav");
    sox_tone(&wav, &["-r", "8000", "-c", "1", "-b", "16"]);
    let opus = dir.path("t.opus");
    write_ogg_opus(&opus, 1);
    for f in [&wav, &opus] {
        let whole = std::fs::read(f).unwrap();
        for cut in [0, 3, 4, 12, 27, 28, 40, 44, 45, 100, 1000, whole.len() / 2] {
            let _ = decode_bytes(whole[..cut.min(whole.len())].to_vec(), Some("wav"), 8000);
        }
        let mut broken = whole.clone();
        for i in (60..broken.len()).step_by(7) {
            broken[i] ^= 0x5a;
        }
        let _ = decode_bytes(broken, None, 16000);
    }
    assert!(decode_bytes(Vec::new(), Some("mp3"), 8000).is_err());
    assert!(decode_bytes(bytes, Some("mp3"), 8000).is_err());
    let mut fake = b"OggS".to_vec();
    fake.extend([0u8; 22]);
    fake.push(1);
    fake.push(19);
    fake.extend(b"OpusHead\x01\x09");
    assert!(decode_bytes(fake, None, 8000).is_err());

    // A rate the resampler does not take.
    let e = decode_file(&wav, 4000).unwrap_err();
    assert!(matches!(e, PromptError::Resample(..)), "{e:?}");
}

#[test]
fn overlong_prompts_are_refused() {
    let dir = TempDir::new("long");
    let long = dir.path("long.wav");
    run(
        "sox",
        &[
            "-n",
            "-r",
            "8000",
            "-c",
            "1",
            "-e",
            "mu-law",
            long.to_str().unwrap(),
            "trim",
            "0",
            "601",
        ],
    );
    let e = decode_file(&long, 8000).unwrap_err();
    assert!(matches!(e, PromptError::TooLong(_)), "{e:?}");
    assert!(e.to_string().contains("long.wav"), "{e}");
}

#[test]
fn the_cache_shares_clips_and_notices_edits() {
    let dir = TempDir::new("cache");
    let a = dir.path("a.wav");
    let b = dir.path("b.wav");
    sox_tone(&a, &["-r", "8000", "-c", "1", "-b", "16"]);
    sox_tone(&b, &["-r", "16000", "-c", "1", "-b", "16"]);
    let cache = PromptCache::new(1 << 20);
    let x = cache.get(&a, 8000).unwrap();
    let y = cache.get(&a, 8000).unwrap();
    assert!(Arc::ptr_eq(&x.samples, &y.samples));
    assert_eq!(cache.len(), 1);
    let z = cache.get(&a, 16000).unwrap();
    assert_eq!(z.rate, 16000);
    assert_eq!(cache.len(), 2);

    // The file changes: a new decode, the stale entry goes.
    sox_tone(&a, &["-r", "8000", "-c", "1", "-b", "16", "-D"]);
    let later = SystemTime::now() + Duration::from_secs(5);
    std::fs::File::options()
        .write(true)
        .open(&a)
        .unwrap()
        .set_modified(later)
        .unwrap();
    let w = cache.get(&a, 8000).unwrap();
    assert!(!Arc::ptr_eq(&x.samples, &w.samples));
    assert_eq!(cache.len(), 2);

    // Bounded by bytes: 1 s at 8 kHz is 16 000 bytes; room for one.
    let small = PromptCache::new(20_000);
    small.get(&a, 8000).unwrap();
    small.get(&b, 8000).unwrap();
    assert_eq!(small.len(), 1);
    assert!(small.bytes() <= 20_000);
    // Bigger than the whole cache: returned, not kept.
    let p = small.get(&b, 16000).unwrap();
    assert_eq!(p.samples.len(), 16000);
    assert_eq!(small.len(), 1);
    // Missing file.
    assert!(matches!(
        cache.get(&dir.path("nope.wav"), 8000),
        Err(PromptError::Io(..))
    ));
}

#[test]
fn flite_renders_and_caches_on_disk() {
    let dir = TempDir::new("tts");
    let tts = FliteTts::new(dir.path("cache"));
    assert!(
        tts.available(),
        "flite is not installed (Debian package `flite`)"
    );
    let a = tts.render("hello world", None, 8000).unwrap();
    assert_eq!(a.rate, 8000);
    let ms = a.duration().as_millis();
    let level = rms_dbfs(&a.samples);
    println!("flite kal16 \"hello world\": {ms} ms at 8 kHz, {level:.1} dBFS RMS");
    assert!((400..=3000).contains(&ms), "{ms} ms");
    assert!(level > -35.0, "{level:.1} dBFS");
    assert_eq!(tts.renders(), 1);
    let files: Vec<_> = std::fs::read_dir(dir.path("cache"))
        .unwrap()
        .filter_map(|e| e.ok())
        .collect();
    assert_eq!(files.len(), 1, "one WAV, no temp files left");

    // Same instance: the in-memory clip.
    let b = tts.render("  hello\nworld ", None, 8000).unwrap();
    assert!(Arc::ptr_eq(&a.samples, &b.samples));
    assert_eq!(tts.renders(), 1);
    // Another rate from the same WAV: no new run.
    let c = tts.render("hello world", None, 16000).unwrap();
    assert_eq!(c.rate, 16000);
    assert_eq!(tts.renders(), 1);
    // A new instance that cannot run flite still renders from the cache directory.
    let offline = FliteTts::new(dir.path("cache")).with_binary(PathBuf::from("/nonexistent/flite"));
    let d = offline.render("hello world", None, 8000).unwrap();
    assert_eq!(d, a);
    assert_eq!(offline.renders(), 0);
    // Another voice is another file; an unknown voice is refused (flite would fall back).
    let e = tts.render("hello world", Some("slt"), 8000).unwrap();
    assert_ne!(e, a);
    assert_eq!(tts.renders(), 2);
    assert!(tts.render("hello world", Some("nobody"), 8000).is_err());
    // Text that looks like an option is spoken, not obeyed.
    let f = tts.render("-o", None, 8000).unwrap();
    assert!(!f.samples.is_empty());
}
