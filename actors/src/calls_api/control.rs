//! What the API asks of a live call, and how a call says no. Every call actor that lists itself
//! in the [`super::CallDirectory`] handles [`Control`].

use actix::Message;
use serde::Serialize;
use switchboard_dialplans::Prompt;

/// A leg as the API names it: `a` is the caller (or, for an originated call, the first
/// endpoint rung), `b` the callee (the second).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiLeg {
    /// The caller / first endpoint.
    A,
    /// The callee / second endpoint.
    B,
}

impl ApiLeg {
    /// Reads `a` or `b`.
    pub fn parse(s: &str) -> Option<ApiLeg> {
        match s {
            "a" | "A" => Some(ApiLeg::A),
            "b" | "B" => Some(ApiLeg::B),
            _ => None,
        }
    }

    /// `a` or `b`.
    pub fn name(self) -> &'static str {
        match self {
            ApiLeg::A => "a",
            ApiLeg::B => "b",
        }
    }
}

/// A request to a live call.
#[derive(Message, Debug)]
#[rtype(result = "ControlResult")]
pub enum Control {
    /// Hang up every live leg (BYE / CANCEL; the caller gets a final answer if unanswered);
    /// the CDR cause is `api`.
    Hangup,
    /// Blind transfer of one leg: REFER it to `to`; once the leg accepts, the call ends with
    /// cause `transferred`.
    Transfer {
        /// The leg to transfer.
        leg: ApiLeg,
        /// The target (a SIP URI, or a user of this engine).
        to: String,
    },
    /// Start or stop a whole-call stereo recording.
    Recording {
        /// Start (true) or stop.
        start: bool,
    },
    /// Play a prompt file, a URL or TTS text into a leg (once).
    Play {
        /// Into which leg.
        leg: ApiLeg,
        /// What (`Prompt::Play` file or URL, or `Prompt::Say`).
        prompt: Prompt,
    },
    /// Send DTMF digits into a leg (RFC 4733 when the leg negotiated telephone-event, else
    /// in-band tones).
    Dtmf {
        /// Into which leg.
        leg: ApiLeg,
        /// The digits (`0-9*#A-D`).
        digits: String,
        /// Each digit's length.
        duration_ms: u32,
    },
    /// From another call (REFER with Replaces, INVITE with Replaces): hand over the party
    /// across the dialog named, BYE that dialog and end (not an API operation).
    Replace(Box<crate::call::HandOver>),
}

/// A control request's answer: a JSON result, or an error with the HTTP status to give.
pub type ControlResult = Result<serde_json::Value, ControlError>;

/// Why a call refused a request: HTTP status, message and the request field at fault.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ControlError {
    /// The HTTP status (404, 409, 422, …).
    #[serde(skip)]
    pub status: u16,
    /// What went wrong.
    pub error: String,
    /// The request field at fault, if one is.
    pub field: Option<String>,
}

impl ControlError {
    /// 409: the call's state does not allow it.
    pub fn conflict(error: impl Into<String>) -> ControlError {
        ControlError {
            status: 409,
            error: error.into(),
            field: None,
        }
    }

    /// 422 (or 400): a field's value is wrong.
    pub fn field(status: u16, field: &str, error: impl Into<String>) -> ControlError {
        ControlError {
            status,
            error: error.into(),
            field: Some(field.to_string()),
        }
    }

    /// 404: no such call.
    pub fn not_found() -> ControlError {
        ControlError {
            status: 404,
            error: "no such call".into(),
            field: Some("id".into()),
        }
    }
}
