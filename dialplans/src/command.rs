//! What the evaluator asks the call actor to do: actions with every `${…}` already resolved.

/// An audio source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Media {
    /// A file, relative to the prompt directory unless absolute.
    File(String),
    /// An `http(s)://` URL.
    Url(String),
}

/// What to play while gathering input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Prompt {
    /// Play a file or URL.
    Play(Media),
    /// Speak a text through TTS.
    Say {
        /// The text.
        text: String,
        /// TTS voice, engine default when `None`.
        voice: Option<String>,
    },
}

/// Collect DTMF digits and, optionally, speech.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gather {
    /// Played first; barge-in stops it.
    pub prompt: Option<Prompt>,
    /// Fewest digits that count as an answer.
    pub min_digits: u32,
    /// Stop when this many digits have been entered.
    pub max_digits: u32,
    /// Seconds to wait for the first or next input.
    pub timeout_secs: u32,
    /// Digit that ends input early (not included in the digits).
    pub terminator: Option<char>,
    /// Also listen for speech when present.
    pub speech: Option<Speech>,
}

/// Speech recognition settings for a gather.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Speech {
    /// Phrases to recognise; empty means free speech.
    pub grammar: Vec<String>,
    /// BCP 47 language tag, engine default when `None`.
    pub language: Option<String>,
}

/// One destination of a dial.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DialTarget {
    /// A registered user (all its registered contacts).
    User(String),
    /// A number through a trunk.
    Trunk {
        /// The trunk's name.
        trunk: String,
        /// The number to call.
        number: String,
    },
    /// A number through a least-cost routing table: the trunks for its longest matching
    /// prefix, in cost order (`[routes.NAME]` in the engine's config).
    Route {
        /// The table's name.
        table: String,
        /// The number to call.
        number: String,
    },
    /// A SIP URI.
    Uri(String),
}

/// How several dial targets are tried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Ring all at once; the first to answer wins.
    Parallel,
    /// One after the other, each for the whole timeout.
    Sequence,
}

/// HTTP method of a webhook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// `GET`, call details in the query string.
    Get,
    /// `POST`, call details as a JSON body.
    Post,
}

/// What a `record_session` action does to the whole-call recording.
///
/// The recording is one stereo file for the whole call (caller left, callee right, the
/// Asterisk MixMonitor / FreeSWITCH `record_session` model): it goes on through later bridges
/// until the call ends or a `Stop`. Every operation completes at once: the evaluator expects
/// `ActionCompleted` right after it, as after `Answer`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordSessionOp {
    /// Start recording. Ignored by the actor when a session recording already runs.
    Start {
        /// Path to write, relative to the recordings directory; never absolute, never with a
        /// `..` component (the evaluator guarantees it, whatever the variables held).
        to: String,
    },
    /// Stop and close the file (the call's end does it too).
    Stop,
    /// Pause: the paused span is recorded as silence, so the file keeps the call's timeline.
    Pause,
    /// Resume after `Pause`.
    Resume,
}

/// How a supervisor joins a live call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MonitorMode {
    /// Hears caller and agent; heard by nobody.
    Listen,
    /// Hears both; heard by the agent only (coaching).
    Whisper,
    /// A third party of the conversation: hears and is heard by both.
    Barge,
}

impl MonitorMode {
    /// The mode a name (`listen`, `whisper`, `barge`) or DTMF digit (`1`, `2`, `3`) selects.
    pub fn parse(s: &str) -> Option<MonitorMode> {
        match s {
            "listen" | "1" => Some(MonitorMode::Listen),
            "whisper" | "2" => Some(MonitorMode::Whisper),
            "barge" | "3" => Some(MonitorMode::Barge),
            _ => None,
        }
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            MonitorMode::Listen => "listen",
            MonitorMode::Whisper => "whisper",
            MonitorMode::Barge => "barge",
        }
    }
}

/// One action for the call actor to carry out, values interpolated.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Answer the call (200 OK). Completes at once.
    Answer,
    /// Send the caller's audio back to them until they hang up.
    Echo,
    /// End the call. No event is expected after it.
    Hangup {
        /// SIP status to answer with if the call is not answered yet (404, 486…).
        code: Option<u16>,
        /// Cause name kept in the CDR (`normal_clearing`, `busy`…).
        cause: Option<String>,
        /// SIP reason phrase.
        reason: Option<String>,
    },
    /// Play a file or URL `loops` times (0: until the next event interrupts).
    Play {
        /// What to play.
        media: Media,
        /// Times to play, 0 for forever.
        loops: u32,
    },
    /// Speak a text through TTS.
    Say {
        /// The text.
        text: String,
        /// TTS voice, engine default when `None`.
        voice: Option<String>,
    },
    /// Collect digits or speech; answer with `DigitsGathered`, `SpeechRecognised` or
    /// `GatherTimeout`.
    Gather(Gather),
    /// Record the caller; answer with `RecordingDone`.
    Record {
        /// Path to write, relative to the recordings directory.
        to: String,
        /// Longest recording.
        max_secs: u32,
        /// Play a beep first.
        beep: bool,
        /// Digit that stops recording.
        terminator: Option<char>,
    },
    /// Start, stop, pause or resume the whole-call recording. Completes at once: answer with
    /// `ActionCompleted`.
    RecordSession(RecordSessionOp),
    /// Call targets and bridge the first that answers; answer with `DialAnswered` then
    /// `ActionCompleted` when the bridge ends, or `DialFailed`.
    Dial {
        /// Who to call.
        targets: Vec<DialTarget>,
        /// All at once or one after the other.
        strategy: Strategy,
        /// Ring time in seconds (per target in sequence).
        timeout_secs: u32,
        /// Caller ID to present, the caller's own when `None`.
        caller_id: Option<String>,
    },
    /// Hand the call to a contact-centre queue; `ActionCompleted` when it leaves the queue.
    Queue {
        /// Queue name.
        name: String,
        /// Higher is served first.
        priority: i64,
        /// Routing attributes (skills, language…).
        attributes: Vec<(String, String)>,
        /// The digit a waiting caller presses to be called back instead of holding (the
        /// place in line is kept); `None`: no callback offered.
        callback_digit: Option<char>,
    },
    /// Supervise the live queue call an agent is on (dial-in monitoring, like Asterisk's
    /// ChanSpy): answer, join the call's mix in `mode`; DTMF 1 / 2 / 3 switch to listen /
    /// whisper / barge. `ActionCompleted` when the supervised call ends, or at once when the
    /// agent is on no call (variable `monitor_status`: `ended`, `not_found`).
    Monitor {
        /// The agent's name.
        agent: String,
        /// How the supervisor joins.
        mode: MonitorMode,
    },
    /// The post-call satisfaction survey ([`crate::Survey`]): the actor asks for a score 1–5
    /// and stores it on the interaction of the last queue call's agent; `ActionCompleted`
    /// when it is over (variables `csat_status`: `scored`, `invalid`, `no_input`, `skipped`,
    /// and `csat_score`).
    Csat(crate::survey::CsatSurvey),
    /// Transfer the call elsewhere.
    Transfer {
        /// Destination (user, number or SIP URI).
        to: String,
        /// Attended (consult first) rather than blind REFER.
        attended: bool,
    },
    /// Call an HTTP endpoint; answer with `WebhookAnswered` (a JSON list of actions) or
    /// `ActionCompleted` when it failed.
    Webhook {
        /// Where to send the request.
        url: String,
        /// GET or POST.
        method: Method,
        /// Call details and variables.
        body: serde_json::Value,
    },
}
