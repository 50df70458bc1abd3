//! Identifiers and the channel an interaction arrives on.

use serde::{Deserialize, Serialize};
use std::fmt;

/// An interaction (one customer contact on one channel), chosen by the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct InteractionId(pub u64);

/// An agent, chosen by the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AgentId(pub u32);

/// A queue, chosen by the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct QueueId(pub u32);

impl fmt::Display for InteractionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "i{}", self.0)
    }
}

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a{}", self.0)
    }
}

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "q{}", self.0)
    }
}

/// The channel of an interaction. Every channel shares one interaction model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// A phone call (SIP or WebRTC leg).
    Voice,
    /// A web chat over the agent and customer WebSockets.
    Chat,
    /// An API / messaging channel (SMS, WhatsApp, social, bots handing over).
    Messaging,
    /// An e-mail.
    Email,
}

impl Channel {
    /// Every channel, in index order.
    pub const ALL: [Channel; 4] = [
        Channel::Voice,
        Channel::Chat,
        Channel::Messaging,
        Channel::Email,
    ];

    /// A dense index (0..4) for per-channel tables.
    pub fn index(self) -> usize {
        match self {
            Channel::Voice => 0,
            Channel::Chat => 1,
            Channel::Messaging => 2,
            Channel::Email => 3,
        }
    }

    /// The lowercase name used in expressions (`channel == "chat"`) and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Voice => "voice",
            Channel::Chat => "chat",
            Channel::Messaging => "messaging",
            Channel::Email => "email",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
