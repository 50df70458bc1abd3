//! Text to speech for prompts: the [`Tts`] trait and [`FliteTts`], which runs Debian's `flite`
//! as a subprocess (never linked: no C in this process, a crash cannot take calls down).
//!
//! Renders are cached twice: as WAV files in a cache directory, named by a hash of (voice,
//! text), so the same sentence is synthesised once per machine and later renders are a file
//! read; and as decoded clips in a small in-memory cache, so a prompt played to many callers is
//! decoded once.

use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::pcm::Pcm;
use crate::prompt::{decode_file, PromptError};

/// Longest text rendered, in characters (about two minutes of speech).
pub const MAX_TEXT_CHARS: usize = 2000;

/// The voice used when none is asked for. `kal16`: a 16 kHz diphone voice, flat but steady and
/// clearly articulated, the voice the project's test peers already use; through 8 kHz µ-law
/// pocketsphinx recognised its digits a little better than `slt`'s (2/3 against 1/3 in the ASR
/// tests; menus 3/3 both). `slt` (unit selection) sounds more natural and is recognised far
/// better as free speech; pick it with [`FliteTts::with_default_voice`].
pub const DEFAULT_VOICE: &str = "kal16";

/// How long one flite run may take before it is killed.
const RENDER_TIMEOUT: Duration = Duration::from_secs(60);

/// Bytes of decoded clips kept in memory.
const MEMORY_CACHE_BYTES: usize = 16 << 20;

/// Why text could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum TtsError {
    /// The TTS program could not be run (not installed, not executable).
    #[error("TTS unavailable: {0}")]
    Unavailable(String),
    /// Nothing to say once control characters are removed.
    #[error("empty text")]
    Empty,
    /// Longer than [`MAX_TEXT_CHARS`] (its length in characters).
    #[error("text of {0} characters exceeds the {MAX_TEXT_CHARS}-character limit")]
    TooLong(usize),
    /// The voice is not one the engine has.
    #[error("unknown voice {0:?}")]
    UnknownVoice(String),
    /// The program ran but failed (exit status and what it printed).
    #[error("TTS failed: {0}")]
    Failed(String),
    /// The cache directory could not be used: (path, cause).
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    /// The rendered audio could not be decoded or resampled.
    #[error(transparent)]
    Decode(#[from] PromptError),
}

/// Text to speech. Blocking (runs a subprocess or reads a file): async callers use
/// `spawn_blocking`.
pub trait Tts: Send + Sync {
    /// `text` spoken by `voice` (the engine's default when `None`), as mono PCM at `rate`.
    fn render(&self, text: &str, voice: Option<&str>, rate: u32) -> Result<Pcm, TtsError>;
}

/// In-memory clips, oldest evicted first, bounded by bytes.
#[derive(Default)]
struct Clips {
    map: HashMap<(String, u32), Pcm>,
    order: VecDeque<(String, u32)>,
    bytes: usize,
}

/// [`Tts`] through the `flite` program, with a WAV cache directory and an in-memory clip cache.
pub struct FliteTts {
    cache_dir: PathBuf,
    binary: PathBuf,
    default_voice: String,
    voices: OnceLock<Option<Vec<String>>>,
    clips: Mutex<Clips>,
    runs: AtomicU64,
    seq: AtomicU64,
}

impl std::fmt::Debug for FliteTts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FliteTts")
            .field("cache_dir", &self.cache_dir)
            .field("binary", &self.binary)
            .field("default_voice", &self.default_voice)
            .finish()
    }
}

/// 64-bit FNV-1a: stable across Rust versions and machines, so cache file names stay valid.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in part.iter().chain(&[0u8]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

fn valid_voice_name(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 64
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl FliteTts {
    /// flite from `PATH`, voice [`DEFAULT_VOICE`], WAV renders kept in `cache_dir` (created on
    /// first render).
    pub fn new(cache_dir: PathBuf) -> Self {
        FliteTts {
            cache_dir,
            binary: PathBuf::from("flite"),
            default_voice: DEFAULT_VOICE.to_string(),
            voices: OnceLock::new(),
            clips: Mutex::new(Clips::default()),
            runs: AtomicU64::new(0),
            seq: AtomicU64::new(0),
        }
    }

    /// Runs the flite program at `path` instead of the one on `PATH`.
    pub fn with_binary(mut self, path: PathBuf) -> Self {
        self.binary = path;
        self.voices = OnceLock::new();
        self
    }

    /// Uses voice `v` when a render names none.
    pub fn with_default_voice(mut self, v: &str) -> Self {
        self.default_voice = v.to_string();
        self
    }

    /// Whether the flite program runs (it lists its voices).
    pub fn available(&self) -> bool {
        self.voices().is_some()
    }

    /// How many times flite has been run by this instance (cache misses).
    pub fn renders(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }

    /// The voices the program has (`flite -lv`), asked once.
    fn voices(&self) -> Option<&Vec<String>> {
        self.voices
            .get_or_init(|| {
                let out = Command::new(&self.binary)
                    .arg("-lv")
                    .stdin(Stdio::null())
                    .stderr(Stdio::null())
                    .output()
                    .ok()?;
                if !out.status.success() {
                    return None;
                }
                let text = String::from_utf8_lossy(&out.stdout);
                let list = text.split_once(':').map_or(&*text, |(_, l)| l);
                Some(list.split_whitespace().map(str::to_string).collect())
            })
            .as_ref()
    }

    /// The WAV file holding `text` in `voice`.
    fn cache_path(&self, voice: &str, text: &str) -> PathBuf {
        let h = fnv1a(&[voice.as_bytes(), text.as_bytes()]);
        self.cache_dir.join(format!("flite-{voice}-{h:016x}.wav"))
    }

    /// Runs flite: `flite -voice V -o TMP -t TEXT`, argv only, then renames TMP into place.
    fn synthesise(&self, voice: &str, text: &str, dest: &Path) -> Result<(), TtsError> {
        std::fs::create_dir_all(&self.cache_dir)
            .map_err(|e| TtsError::Io(self.cache_dir.display().to_string(), e))?;
        let tmp = dest.with_extension(format!(
            "tmp{}-{}",
            std::process::id(),
            self.seq.fetch_add(1, Ordering::Relaxed)
        ));
        // flite compares each whole argument with its option names: a text that is exactly
        // "-o" or "-voice" would be taken as an option, a leading space never is.
        let text_arg = if text.starts_with('-') {
            format!(" {text}")
        } else {
            text.to_string()
        };
        self.runs.fetch_add(1, Ordering::Relaxed);
        let mut child = Command::new(&self.binary)
            .arg("-voice")
            .arg(voice)
            .arg("-o")
            .arg(&tmp)
            .arg("-t")
            .arg(&text_arg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| TtsError::Unavailable(format!("{}: {e}", self.binary.display())))?;
        let started = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if started.elapsed() > RENDER_TIMEOUT => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let _ = std::fs::remove_file(&tmp);
                    return Err(TtsError::Failed(format!(
                        "flite took longer than {} s",
                        RENDER_TIMEOUT.as_secs()
                    )));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(TtsError::Failed(format!("waiting for flite: {e}")));
                }
            }
        };
        let mut stderr = String::new();
        if let Some(mut s) = child.stderr.take() {
            let _ = s.read_to_string(&mut stderr);
        }
        if !status.success() {
            let _ = std::fs::remove_file(&tmp);
            return Err(TtsError::Failed(format!(
                "flite exited with {status}: {}",
                stderr.trim()
            )));
        }
        std::fs::rename(&tmp, dest).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            TtsError::Io(dest.display().to_string(), e)
        })
    }

    fn remember(&self, key: (String, u32), pcm: &Pcm) {
        let bytes = pcm.samples.len() * 2;
        if bytes > MEMORY_CACHE_BYTES {
            return;
        }
        let mut clips = self.clips.lock().unwrap_or_else(|e| e.into_inner());
        if clips.map.contains_key(&key) {
            return;
        }
        while clips.bytes + bytes > MEMORY_CACHE_BYTES {
            let Some(old) = clips.order.pop_front() else {
                break;
            };
            if let Some(p) = clips.map.remove(&old) {
                clips.bytes -= p.samples.len() * 2;
            }
        }
        clips.bytes += bytes;
        clips.order.push_back(key.clone());
        clips.map.insert(key, pcm.clone());
    }
}

impl Tts for FliteTts {
    fn render(&self, text: &str, voice: Option<&str>, rate: u32) -> Result<Pcm, TtsError> {
        let text: String = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if text.is_empty() {
            return Err(TtsError::Empty);
        }
        let chars = text.chars().count();
        if chars > MAX_TEXT_CHARS {
            return Err(TtsError::TooLong(chars));
        }
        let voice = voice.unwrap_or(&self.default_voice);
        if !valid_voice_name(voice) {
            return Err(TtsError::UnknownVoice(voice.to_string()));
        }
        let path = self.cache_path(voice, &text);
        let key = (path.display().to_string(), rate);
        if let Some(p) = self
            .clips
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map
            .get(&key)
        {
            return Ok(p.clone());
        }
        if path.is_file() {
            match decode_file(&path, rate) {
                Ok(pcm) => {
                    self.remember(key, &pcm);
                    return Ok(pcm);
                }
                // A damaged cache file: render it again below.
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "bad TTS cache file");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        // flite falls back to its default voice on an unknown name: refuse instead.
        match self.voices() {
            None => {
                return Err(TtsError::Unavailable(format!(
                    "{} does not run",
                    self.binary.display()
                )))
            }
            Some(list) if !list.iter().any(|v| v == voice) => {
                return Err(TtsError::UnknownVoice(voice.to_string()))
            }
            Some(_) => {}
        }
        self.synthesise(voice, &text, &path)?;
        let pcm = decode_file(&path, rate)?;
        self.remember(key, &pcm);
        Ok(pcm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_names_are_stable_and_distinct() {
        assert_eq!(fnv1a(&[b"a", b"b"]), fnv1a(&[b"a", b"b"]));
        assert_ne!(fnv1a(&[b"ab", b""]), fnv1a(&[b"a", b"b"]));
        let t = FliteTts::new(PathBuf::from("/tmp/x"));
        assert_ne!(t.cache_path("slt", "hi"), t.cache_path("kal16", "hi"));
        assert!(valid_voice_name("kal16") && !valid_voice_name("../x") && !valid_voice_name(""));
    }

    #[test]
    fn bad_input_is_refused_without_running_anything() {
        let t = FliteTts::new(std::env::temp_dir().join("switchboard-tts-unit"))
            .with_binary(PathBuf::from("/nonexistent/flite"));
        assert!(matches!(
            t.render(" \n\t", None, 8000),
            Err(TtsError::Empty)
        ));
        let long = "a ".repeat(MAX_TEXT_CHARS);
        assert!(matches!(
            t.render(&long, None, 8000),
            Err(TtsError::TooLong(_))
        ));
        assert!(matches!(
            t.render("hi", Some("../../etc"), 8000),
            Err(TtsError::UnknownVoice(_))
        ));
        assert!(!t.available());
        assert!(matches!(
            t.render("hello there unit test", None, 8000),
            Err(TtsError::Unavailable(_))
        ));
        assert_eq!(t.renders(), 0);
    }
}
