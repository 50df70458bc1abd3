//! [`PocketSphinx`]: the default [`AsrEngine`], CMU pocketsphinx linked from Debian's
//! `libpocketsphinx` (0.8+5prealpha) with the `pocketsphinx-en-us` model.
//!
//! The FFI is declared here against Debian's headers rather than taken from the
//! `pocketsphinx` 0.6 crate: that crate's bindings (`pocketsphinx-sys` 0.5) declare the older API
//! (`ps_start_utt` and `ps_get_hyp` with an utterance id) which does not match the library Debian
//! ships, and its wrapper panics (`assert!`) when a model fails to load. Only the dozen calls
//! used are declared; every one is wrapped in [`Decoder`], which owns one `ps_decoder_t`.
//!
//! Loading a decoder takes a few hundred ms and ~10 MB, so decoders are pooled: a recogniser
//! takes one from the engine's pool and gives it back when dropped. Each JSGF grammar is compiled
//! once per decoder and kept as a named search.

use std::collections::HashSet;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, Once};

use super::vad::{Vad, VadEvent};
use super::{AsrEngine, AsrError, AsrEvent, Grammar, Recognizer};

#[repr(C)]
struct PsDecoderT {
    _private: [u8; 0],
}
#[repr(C)]
struct CmdLnT {
    _private: [u8; 0],
}
#[repr(C)]
struct LogMathT {
    _private: [u8; 0],
}

#[link(name = "pocketsphinx")]
extern "C" {
    fn ps_args() -> *const c_void;
    fn ps_init(config: *mut CmdLnT) -> *mut PsDecoderT;
    fn ps_free(ps: *mut PsDecoderT) -> c_int;
    fn ps_start_utt(ps: *mut PsDecoderT) -> c_int;
    fn ps_process_raw(
        ps: *mut PsDecoderT,
        data: *const i16,
        n_samples: usize,
        no_search: c_int,
        full_utt: c_int,
    ) -> c_int;
    fn ps_end_utt(ps: *mut PsDecoderT) -> c_int;
    fn ps_get_hyp(ps: *mut PsDecoderT, out_best_score: *mut i32) -> *const c_char;
    fn ps_get_prob(ps: *mut PsDecoderT) -> i32;
    fn ps_get_logmath(ps: *mut PsDecoderT) -> *mut LogMathT;
    fn ps_set_jsgf_string(ps: *mut PsDecoderT, name: *const c_char, jsgf: *const c_char) -> c_int;
    fn ps_set_lm_file(ps: *mut PsDecoderT, name: *const c_char, path: *const c_char) -> c_int;
    fn ps_set_search(ps: *mut PsDecoderT, name: *const c_char) -> c_int;
    fn ps_lookup_word(ps: *mut PsDecoderT, word: *const c_char) -> *mut c_char;
}

#[link(name = "sphinxbase")]
extern "C" {
    fn cmd_ln_parse_r(
        inout: *mut CmdLnT,
        defn: *const c_void,
        argc: i32,
        argv: *const *const c_char,
        strict: i32,
    ) -> *mut CmdLnT;
    fn cmd_ln_free_r(cmdln: *mut CmdLnT) -> c_int;
    fn err_set_logfp(stream: *mut c_void);
    fn ckd_free(ptr: *mut c_void);
    fn logmath_exp(lmath: *mut LogMathT, logb_p: c_int) -> f64;
}

/// Where Debian's `pocketsphinx-en-us` puts the US English model.
pub const DEBIAN_MODEL_DIR: &str = "/usr/share/pocketsphinx/model/en-us";

/// Idle decoders kept for reuse.
const POOL_MAX: usize = 8;
/// Grammars compiled into one decoder before it is replaced by a fresh one.
const SEARCHES_MAX: usize = 64;
/// Partial hypotheses are asked for every this many frames (200 ms).
const PARTIAL_EVERY: u32 = 10;
/// Audio kept from before the VAD fires, so the first phoneme is not cut (300 ms at 16 kHz).
const PREROLL_SAMPLES: usize = 4800;
/// The longest utterance: it is ended after 30 s even if the VAD still hears speech.
const MAX_UTTERANCE_SAMPLES: usize = 30 * 16000;
/// Quiet frames fed to the decoder after speech (300 ms); the rest of a pause is skipped.
const MAX_PAUSE_FRAMES: u32 = 15;
/// Samples in a 20 ms frame at 16 kHz.
const FRAME: usize = 320;

/// sphinxbase logging is global: silence it once, before any decoder exists (a `-logfn` per
/// decoder would reopen the global log file under other threads' feet).
static QUIET: Once = Once::new();
/// `ps_init` touches sphinxbase globals (logging, debug level): one at a time.
static INIT: Mutex<()> = Mutex::new(());

/// The model files a decoder needs, checked to exist.
#[derive(Clone, Debug)]
struct Model {
    hmm: CString,
    dict: CString,
    lm: Option<CString>,
}

fn cpath(p: &Path) -> Result<CString, AsrError> {
    let s = p
        .to_str()
        .ok_or_else(|| AsrError::Init(format!("{}: path is not UTF-8", p.display())))?;
    CString::new(s).map_err(|_| AsrError::Init(format!("{}: path contains NUL", p.display())))
}

impl Model {
    /// Debian layout: `DIR/en-us/` (acoustic model), `DIR/cmudict-en-us.dict`, `DIR/en-us.lm.bin`.
    fn find(dir: &Path) -> Result<Model, AsrError> {
        let hmm = dir.join("en-us");
        let dict = dir.join("cmudict-en-us.dict");
        for p in [hmm.join("mdef"), dict.clone()] {
            if !p.is_file() {
                return Err(AsrError::ModelMissing(p.display().to_string()));
            }
        }
        let lm = dir.join("en-us.lm.bin");
        Ok(Model {
            hmm: cpath(&hmm)?,
            dict: cpath(&dict)?,
            lm: if lm.is_file() {
                Some(cpath(&lm)?)
            } else {
                None
            },
        })
    }
}

/// One pocketsphinx decoder, owned exclusively.
struct Decoder {
    ps: NonNull<PsDecoderT>,
    /// Named searches already compiled (grammar hashes, and "lm").
    searches: HashSet<String>,
    in_utterance: bool,
}

// SAFETY: a `ps_decoder_t` has no thread affinity; it is only unsafe to use from two threads at
// once, which exclusive ownership (`&mut self` for every call) rules out.
unsafe impl Send for Decoder {}

impl Drop for Decoder {
    fn drop(&mut self) {
        // SAFETY: `ps` came from `ps_init` and is freed once, here.
        unsafe {
            if self.in_utterance {
                ps_end_utt(self.ps.as_ptr());
            }
            ps_free(self.ps.as_ptr());
        }
    }
}

impl Decoder {
    fn new(model: &Model) -> Result<Decoder, AsrError> {
        QUIET.call_once(|| {
            // SAFETY: NULL is the documented way to turn logging off.
            unsafe { err_set_logfp(std::ptr::null_mut()) }
        });
        let args: Vec<&CStr> = vec![
            c"-hmm",
            &model.hmm,
            c"-dict",
            &model.dict,
            c"-samprate",
            c"16000",
            // A posterior probability for the final hypothesis (the confidence).
            c"-bestpath",
            c"yes",
            // Digital silence (zeros from a codec or TTS) has no spectrum: a little dither keeps
            // the features finite; a fixed seed keeps results reproducible.
            c"-dither",
            c"yes",
            c"-seed",
            c"1",
            // Word insertion penalty 0.01 (default 0.65): the digits grammar otherwise adds a
            // word after the last one ("one two three" → "one two three eight" with kal16).
            c"-wip",
            c"0.01",
        ];
        let argv: Vec<*const c_char> = args.iter().map(|a| a.as_ptr()).collect();
        let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: argv holds `argv.len()` valid NUL-terminated strings that outlive the call
        // (cmd_ln_parse_r copies them); `ps_args()` is the library's static definition table.
        let config = unsafe {
            cmd_ln_parse_r(
                std::ptr::null_mut(),
                ps_args(),
                argv.len() as i32,
                argv.as_ptr(),
                1,
            )
        };
        if config.is_null() {
            return Err(AsrError::Init("pocketsphinx refused its arguments".into()));
        }
        // SAFETY: `config` is a valid configuration; ps_init retains it, so ours is released.
        let ps = unsafe {
            let ps = ps_init(config);
            cmd_ln_free_r(config);
            ps
        };
        let ps = NonNull::new(ps).ok_or_else(|| {
            AsrError::Init("pocketsphinx could not load the model (ps_init failed)".into())
        })?;
        Ok(Decoder {
            ps,
            searches: HashSet::new(),
            in_utterance: false,
        })
    }

    fn has_word(&mut self, word: &str) -> bool {
        let Ok(w) = CString::new(word) else {
            return false;
        };
        // SAFETY: valid decoder and string; the result is ours to free with ckd_free.
        unsafe {
            let p = ps_lookup_word(self.ps.as_ptr(), w.as_ptr());
            if p.is_null() {
                false
            } else {
                ckd_free(p.cast());
                true
            }
        }
    }

    /// Selects the search for `grammar` (compiling it the first time) or the language model.
    fn select(&mut self, grammar: Option<&Grammar>, model: &Model) -> Result<(), AsrError> {
        let name = match grammar {
            Some(g) => format!("g{:016x}", hash(&g.to_jsgf())),
            None => "lm".to_string(),
        };
        let cname = CString::new(name.as_str()).map_err(|_| AsrError::Grammar(name.clone()))?;
        if !self.searches.contains(&name) {
            let rc = match grammar {
                Some(g) => {
                    if g.is_empty() {
                        return Err(AsrError::Grammar("no phrases".into()));
                    }
                    let missing: Vec<String> = g
                        .words()
                        .into_iter()
                        .filter(|w| !self.has_word(w))
                        .collect();
                    if !missing.is_empty() {
                        return Err(AsrError::Grammar(format!(
                            "not in the dictionary: {}",
                            missing.join(", ")
                        )));
                    }
                    let jsgf = CString::new(g.to_jsgf())
                        .map_err(|_| AsrError::Grammar("NUL in grammar".into()))?;
                    // SAFETY: valid decoder and strings; the library copies the grammar.
                    unsafe { ps_set_jsgf_string(self.ps.as_ptr(), cname.as_ptr(), jsgf.as_ptr()) }
                }
                None => {
                    let lm = model
                        .lm
                        .as_ref()
                        .ok_or_else(|| AsrError::ModelMissing("en-us.lm.bin".into()))?;
                    // SAFETY: valid decoder and strings.
                    unsafe { ps_set_lm_file(self.ps.as_ptr(), cname.as_ptr(), lm.as_ptr()) }
                }
            };
            if rc < 0 {
                return Err(match grammar {
                    Some(_) => AsrError::Grammar("pocketsphinx rejected the grammar".into()),
                    None => AsrError::Init("pocketsphinx could not load the language model".into()),
                });
            }
            self.searches.insert(name);
        }
        // SAFETY: valid decoder; the search exists.
        if unsafe { ps_set_search(self.ps.as_ptr(), cname.as_ptr()) } < 0 {
            return Err(AsrError::Init(
                "pocketsphinx could not select the search".into(),
            ));
        }
        Ok(())
    }

    fn start(&mut self) -> Result<(), AsrError> {
        // SAFETY: valid decoder with a search selected.
        if unsafe { ps_start_utt(self.ps.as_ptr()) } < 0 {
            return Err(AsrError::Decode("ps_start_utt failed".into()));
        }
        self.in_utterance = true;
        Ok(())
    }

    fn process(&mut self, pcm: &[i16]) -> Result<(), AsrError> {
        if pcm.is_empty() {
            return Ok(());
        }
        // SAFETY: valid decoder in an utterance; `pcm` is a live slice of `len` samples.
        let rc = unsafe { ps_process_raw(self.ps.as_ptr(), pcm.as_ptr(), pcm.len(), 0, 0) };
        if rc < 0 {
            return Err(AsrError::Decode("ps_process_raw failed".into()));
        }
        Ok(())
    }

    fn hyp(&mut self) -> Option<String> {
        let mut score = 0i32;
        // SAFETY: valid decoder; the string belongs to the decoder and is copied at once.
        let text = unsafe {
            let p = ps_get_hyp(self.ps.as_ptr(), &mut score);
            if p.is_null() {
                return None;
            }
            CStr::from_ptr(p).to_string_lossy().into_owned()
        };
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        (!text.is_empty()).then_some(text)
    }

    /// Ends the utterance; returns the final hypothesis and its posterior probability.
    fn end(&mut self) -> Result<Option<(String, Option<f32>)>, AsrError> {
        self.in_utterance = false;
        // SAFETY: valid decoder in an utterance.
        if unsafe { ps_end_utt(self.ps.as_ptr()) } < 0 {
            return Err(AsrError::Decode("ps_end_utt failed".into()));
        }
        let Some(text) = self.hyp() else {
            return Ok(None);
        };
        // SAFETY: valid decoder; the logmath object belongs to it.
        let confidence = unsafe {
            let prob = ps_get_prob(self.ps.as_ptr());
            let lmath = ps_get_logmath(self.ps.as_ptr());
            if lmath.is_null() || prob >= 0 {
                None
            } else {
                let p = logmath_exp(lmath, prob);
                (p.is_finite() && p > 0.0).then_some(p.min(1.0) as f32)
            }
        };
        Ok(Some((text, confidence)))
    }
}

/// FNV-1a of a string: names a compiled grammar.
fn hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The pocketsphinx engine with the Debian US English model; JSGF grammars for menus, digits and
/// yes/no, the trigram language model for free speech. Languages: English only (`None`, "en",
/// "en-US" and other "en-…" tags).
pub struct PocketSphinx {
    dir: PathBuf,
    model: Model,
    pool: Arc<Mutex<Vec<Decoder>>>,
}

impl std::fmt::Debug for PocketSphinx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PocketSphinx")
            .field("model_dir", &self.dir)
            .finish()
    }
}

impl PocketSphinx {
    /// The engine with the model at [`DEBIAN_MODEL_DIR`] (package `pocketsphinx-en-us`). Loads
    /// one decoder to check the model works.
    pub fn new() -> Result<Self, AsrError> {
        Self::with_model_dir(PathBuf::from(DEBIAN_MODEL_DIR))
    }

    /// The engine with a model laid out as Debian's (`dir/en-us/`, `dir/cmudict-en-us.dict`,
    /// `dir/en-us.lm.bin` for free speech). Loads one decoder to check the model works.
    pub fn with_model_dir(dir: PathBuf) -> Result<Self, AsrError> {
        let model = Model::find(&dir)?;
        let first = Decoder::new(&model)?;
        Ok(PocketSphinx {
            dir,
            model,
            pool: Arc::new(Mutex::new(vec![first])),
        })
    }

    fn take(&self) -> Result<Decoder, AsrError> {
        let pooled = self.pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match pooled {
            Some(d) => Ok(d),
            None => Decoder::new(&self.model),
        }
    }
}

impl AsrEngine for PocketSphinx {
    fn start(
        &self,
        grammar: Option<&Grammar>,
        language: Option<&str>,
    ) -> Result<Box<dyn Recognizer>, AsrError> {
        if let Some(lang) = language {
            let l = lang.to_ascii_lowercase();
            if !(l == "en" || l.starts_with("en-") || l.starts_with("en_")) {
                return Err(AsrError::Language(lang.to_string()));
            }
        }
        let mut decoder = self.take()?;
        if decoder.searches.len() >= SEARCHES_MAX {
            decoder = Decoder::new(&self.model)?;
        }
        // On error the decoder is dropped, not pooled: its state is unknown.
        decoder.select(grammar, &self.model)?;
        Ok(Box::new(SphinxRecognizer {
            decoder: Some(decoder),
            pool: Arc::clone(&self.pool),
            vad: Vad::new(),
            state: State::Waiting,
            preroll: Vec::with_capacity(PREROLL_SAMPLES + FRAME),
            pending: Vec::with_capacity(FRAME),
            frames: 0,
            fed: 0,
            last_partial: None,
        }))
    }

    fn name(&self) -> &str {
        "pocketsphinx"
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// No speech yet: audio goes to the preroll.
    Waiting,
    /// Speech: audio goes to the decoder.
    Speaking,
    /// The result was given.
    Done,
}

/// A pocketsphinx utterance driven by the energy VAD.
struct SphinxRecognizer {
    decoder: Option<Decoder>,
    pool: Arc<Mutex<Vec<Decoder>>>,
    vad: Vad,
    state: State,
    preroll: Vec<i16>,
    /// Less than a frame, waiting for the rest.
    pending: Vec<i16>,
    frames: u32,
    fed: usize,
    last_partial: Option<String>,
}

impl Drop for SphinxRecognizer {
    fn drop(&mut self) {
        if let Some(mut d) = self.decoder.take() {
            if d.in_utterance {
                // The result is not wanted: just close the utterance.
                let _ = d.end();
            }
            let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
            if pool.len() < POOL_MAX {
                pool.push(d);
            }
        }
    }
}

impl SphinxRecognizer {
    fn frame(&mut self, frame: &[i16], events: &mut Vec<AsrEvent>) {
        let vad = self.vad.frame(frame);
        match self.state {
            State::Done => {}
            State::Waiting => {
                self.preroll.extend_from_slice(frame);
                if self.preroll.len() > PREROLL_SAMPLES {
                    let excess = self.preroll.len() - PREROLL_SAMPLES;
                    self.preroll.drain(..excess);
                }
                if vad == Some(VadEvent::SpeechStart) {
                    let preroll = std::mem::take(&mut self.preroll);
                    let started = self.decoder.as_mut().map(|d| {
                        d.start()?;
                        d.process(&preroll)
                    });
                    match started {
                        Some(Ok(())) => {
                            self.state = State::Speaking;
                            self.fed = preroll.len();
                        }
                        _ => self.end(events),
                    }
                }
            }
            State::Speaking => {
                // Long pauses are not decoded: the grammar search fills silence with words.
                let feed = self.vad.quiet_run() <= MAX_PAUSE_FRAMES;
                let ok = !feed
                    || self
                        .decoder
                        .as_mut()
                        .is_some_and(|d| d.process(frame).is_ok());
                self.fed += frame.len();
                self.frames += 1;
                if !ok || vad == Some(VadEvent::SpeechEnd) || self.fed >= MAX_UTTERANCE_SAMPLES {
                    self.end(events);
                } else if self.frames.is_multiple_of(PARTIAL_EVERY) {
                    let hyp = self.decoder.as_mut().and_then(|d| d.hyp());
                    if let Some(text) = hyp {
                        if self.last_partial.as_deref() != Some(text.as_str()) {
                            self.last_partial = Some(text.clone());
                            events.push(AsrEvent::Partial { text });
                        }
                    }
                }
            }
        }
    }

    fn end(&mut self, events: &mut Vec<AsrEvent>) {
        let was = self.state;
        self.state = State::Done;
        let result = match (was, self.decoder.as_mut()) {
            (State::Speaking, Some(d)) => d.end().ok().flatten(),
            _ => None,
        };
        events.push(match result {
            Some((text, confidence)) => AsrEvent::Final { text, confidence },
            None => AsrEvent::NoMatch,
        });
    }
}

impl Recognizer for SphinxRecognizer {
    fn push(&mut self, pcm16k: &[i16]) -> Vec<AsrEvent> {
        let mut events = Vec::new();
        if self.state == State::Done {
            return events;
        }
        let mut input = pcm16k;
        if !self.pending.is_empty() {
            let need = FRAME - self.pending.len();
            let take = need.min(input.len());
            self.pending.extend_from_slice(&input[..take]);
            input = &input[take..];
            if self.pending.len() < FRAME {
                return events;
            }
            let frame = std::mem::take(&mut self.pending);
            self.frame(&frame, &mut events);
            self.pending = frame;
            self.pending.clear();
        }
        let mut chunks = input.chunks_exact(FRAME);
        for frame in &mut chunks {
            if self.state == State::Done {
                return events;
            }
            self.frame(frame, &mut events);
        }
        if self.state != State::Done {
            self.pending.extend_from_slice(chunks.remainder());
        }
        events
    }

    fn finish(&mut self) -> Option<AsrEvent> {
        if self.state == State::Done {
            return None;
        }
        if self.state == State::Speaking && !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            if let Some(d) = self.decoder.as_mut() {
                let _ = d.process(&rest);
            }
        }
        let mut events = Vec::new();
        self.end(&mut events);
        events.pop()
    }
}
