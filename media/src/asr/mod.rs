//! Speech recognition for IVR input: grammars ([`Grammar`]), the streaming [`Recognizer`] a call
//! pushes audio into, and the engine that starts recognisers ([`AsrEngine`]); the default engine
//! is [`PocketSphinx`] (CMU pocketsphinx, linked from Debian's `libpocketsphinx`).
//!
//! A recogniser takes 16 kHz mono PCM in 20 ms frames as it arrives, decodes incrementally, and
//! reports partial hypotheses while the caller speaks. The end of the utterance is found by an
//! energy VAD ([`vad`]: speech, then ≥ 700 ms of silence), which yields a final result or
//! no-match. Decoding is CPU work on the caller's thread: push from a blocking thread
//! (`spawn_blocking`, a media worker), never from an actor's event loop.
//!
//! The model is 16 kHz (wideband). Narrowband G.711 audio upsampled to 16 kHz loses everything
//! above 4 kHz: see the ASR tests for what that costs with menu grammars.

mod sphinx;
pub mod vad;

pub use sphinx::PocketSphinx;

/// Why recognition could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum AsrError {
    /// The acoustic model or dictionary is not installed (the missing path).
    #[error("ASR model not found: {0}")]
    ModelMissing(String),
    /// The engine could not be initialised (its reason).
    #[error("ASR engine initialisation failed: {0}")]
    Init(String),
    /// The grammar is empty or uses words the dictionary lacks (which).
    #[error("bad grammar: {0}")]
    Grammar(String),
    /// The engine has no model for this language.
    #[error("unsupported language {0:?}")]
    Language(String),
    /// Decoding failed.
    #[error("recognition failed: {0}")]
    Decode(String),
}

/// What the grammar accepts.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Phrases(Vec<String>),
    Digits,
    YesNo,
}

/// A recognition grammar: a list of phrases (menu choices), spoken digits, or yes/no.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Grammar {
    kind: Kind,
}

/// Words for 0–9, as the digits grammar hears them ("oh" is zero too).
const DIGIT_WORDS: [&str; 10] = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
];

/// Lower case, digits spelled out, anything but letters and apostrophes dropped, single spaces.
fn normalise(phrase: &str) -> String {
    let mut out = String::new();
    for c in phrase.chars() {
        let piece = match c {
            '0'..='9' => {
                let d = usize::from(c as u8 - b'0');
                format!(" {} ", DIGIT_WORDS[d])
            }
            c if c.is_alphabetic() || c == '\'' => c.to_lowercase().collect(),
            _ => " ".to_string(),
        };
        out.push_str(&piece);
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Grammar {
    /// Any one of `p` (menu choices such as "billing", "technical support"). Phrases are lower-
    /// cased, digits spelled out and punctuation dropped; empty and repeated phrases are ignored.
    pub fn phrases<I: IntoIterator<Item = S>, S: AsRef<str>>(p: I) -> Self {
        let mut list: Vec<String> = Vec::new();
        for phrase in p {
            let n = normalise(phrase.as_ref());
            if !n.is_empty() && !list.contains(&n) {
                list.push(n);
            }
        }
        Grammar {
            kind: Kind::Phrases(list),
        }
    }

    /// One or more spoken digits ("one two three", "oh" for zero). The final text is the words;
    /// [`spoken_digits`] turns it into "123".
    pub fn digits() -> Self {
        Grammar { kind: Kind::Digits }
    }

    /// Yes or no, with common variants ("yeah", "yep", "correct", "nope").
    pub fn yes_no() -> Self {
        Grammar { kind: Kind::YesNo }
    }

    /// The words the grammar uses (each must be in the engine's dictionary).
    pub fn words(&self) -> Vec<String> {
        let mut words: Vec<String> = Vec::new();
        let all: Vec<String> = match &self.kind {
            Kind::Phrases(list) => list
                .iter()
                .flat_map(|p| p.split(' ').map(str::to_string))
                .collect(),
            Kind::Digits => DIGIT_WORDS
                .iter()
                .chain(&["oh"])
                .map(|w| w.to_string())
                .collect(),
            Kind::YesNo => YES.iter().chain(NO).map(|w| w.to_string()).collect(),
        };
        for w in all {
            if !words.contains(&w) {
                words.push(w);
            }
        }
        words
    }

    /// Whether the grammar can match anything (a phrase list may be empty after normalising).
    pub fn is_empty(&self) -> bool {
        matches!(&self.kind, Kind::Phrases(list) if list.is_empty())
    }

    /// The grammar in JSGF 1.0, one public rule.
    pub fn to_jsgf(&self) -> String {
        let mut s = String::from("#JSGF V1.0;\ngrammar switchboard;\n");
        match &self.kind {
            Kind::Phrases(list) => {
                s.push_str("public <choice> = ");
                if list.is_empty() {
                    s.push_str("<VOID>");
                } else {
                    s.push_str(&list.join(" | "));
                }
                s.push_str(";\n");
            }
            Kind::Digits => {
                s.push_str("public <digits> = <digit>+;\n<digit> = ");
                s.push_str(&DIGIT_WORDS.join(" | "));
                s.push_str(" | oh;\n");
            }
            Kind::YesNo => {
                s.push_str("public <answer> = ");
                s.push_str(
                    &YES.iter()
                        .chain(NO)
                        .copied()
                        .collect::<Vec<_>>()
                        .join(" | "),
                );
                s.push_str(";\n");
            }
        }
        s
    }
}

const YES: &[&str] = &["yes", "yeah", "yep", "correct"];
const NO: &[&str] = &["no", "nope"];

/// Spoken digit words ("one two oh") as a digit string ("120"); `None` if any word is not a digit.
pub fn spoken_digits(text: &str) -> Option<String> {
    text.split_whitespace()
        .map(|w| match w {
            "oh" => Some('0'),
            w => DIGIT_WORDS
                .iter()
                .position(|d| *d == w)
                .and_then(|i| char::from_digit(i as u32, 10)),
        })
        .collect()
}

/// A yes/no answer: `Some(true)` for the yes words, `Some(false)` for the no words.
pub fn yes_or_no(text: &str) -> Option<bool> {
    let t = text.trim();
    if YES.contains(&t) {
        Some(true)
    } else if NO.contains(&t) {
        Some(false)
    } else {
        None
    }
}

/// What a recogniser reports.
#[derive(Clone, Debug, PartialEq)]
pub enum AsrEvent {
    /// The best hypothesis so far, while the caller is still speaking.
    Partial {
        /// The words so far.
        text: String,
    },
    /// The utterance is over and this is what was said.
    Final {
        /// The words recognised.
        text: String,
        /// Posterior probability of the result in `[0, 1]`, when the engine computes one.
        confidence: Option<f32>,
    },
    /// The utterance is over and nothing in the grammar was recognised (or nobody spoke).
    NoMatch,
}

/// One utterance being recognised.
pub trait Recognizer: Send {
    /// Takes the next 16 kHz mono PCM (20 ms frames, or any length) and returns what it
    /// changed: partial hypotheses, then one [`AsrEvent::Final`] or [`AsrEvent::NoMatch`] once the
    /// VAD hears speech followed by ≥ 700 ms of silence. After that, pushes return nothing.
    fn push(&mut self, pcm16k: &[i16]) -> Vec<AsrEvent>;
    /// Ends the utterance now (the caller hung up, the gather timed out): the final result, or
    /// `NoMatch` if nothing was said; `None` if the utterance had already ended.
    fn finish(&mut self) -> Option<AsrEvent>;
}

/// Starts recognisers.
pub trait AsrEngine: Send + Sync {
    /// A recogniser for one utterance under `grammar` (`None`: free speech through the language
    /// model) in `language` (`None`: the engine's default). Blocking (may load a model).
    fn start(
        &self,
        grammar: Option<&Grammar>,
        language: Option<&str>,
    ) -> Result<Box<dyn Recognizer>, AsrError>;
    /// The engine's name, for logs and metrics.
    fn name(&self) -> &str;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammars_in_jsgf() {
        let g = Grammar::phrases(["Billing", "technical  support!", "billing", "", "Press 1"]);
        assert_eq!(
            g.to_jsgf(),
            "#JSGF V1.0;\ngrammar switchboard;\npublic <choice> = billing | technical support | press one;\n"
        );
        assert_eq!(
            g.words(),
            ["billing", "technical", "support", "press", "one"]
        );
        assert!(Grammar::phrases(["?!"]).is_empty());
        assert!(Grammar::digits().to_jsgf().contains("<digit>+"));
        assert!(Grammar::yes_no().to_jsgf().contains("yes | yeah"));
    }

    #[test]
    fn interpreting_results() {
        assert_eq!(spoken_digits("one two oh nine").as_deref(), Some("1209"));
        assert_eq!(spoken_digits("one banana"), None);
        assert_eq!(yes_or_no("yeah"), Some(true));
        assert_eq!(yes_or_no("nope"), Some(false));
        assert_eq!(yes_or_no("maybe"), None);
    }
}
