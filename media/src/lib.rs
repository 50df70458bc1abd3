//! switchboard-media: the media plane. Today: RTP/RTCP port allocation ([`PortAllocator`]), the
//! per-call relay that anchors media with symmetric latching ([`RelaySession`]) and the RTP header
//! and RFC 3550 loss accounting it needs ([`rtp`]).
//!
//! How the B2BUA (call actor) drives a relay:
//!
//! 1. At start-up: one [`PortAllocator`] over `media.rtp_port_min..=rtp_port_max` on
//!    `media.rtp_ip`, and a multi-thread tokio runtime for media whose [`tokio::runtime::Handle`]
//!    every call gets.
//! 2. On the caller's INVITE with SDP: [`RelaySession::start`]; `set_remote(Leg::A, …)` with the
//!    caller's SDP address; put `local_addr(Leg::B)` in the offer sent to the callee.
//! 3. On the callee's answer: `set_remote(Leg::B, …)`; put `local_addr(Leg::A)` in the answer
//!    relayed to the caller; `on_timeout(rtp_timeout)` and select on the receiver.
//! 4. re-INVITE (hold/unhold, new address): `set_remote` or `reset_latch` for the leg that
//!    changed. On BYE: `stats()` for the CDR, then `stop().await` (or drop the session).
//!
//! Architecture invariant: this crate knows nothing of SIP or SDP, and no packet ever goes through
//! an actor mailbox.

pub mod asr;
pub mod codec;
pub mod conference;
pub mod dtls;
pub mod dtmf;
pub mod jitter;
pub mod mix;
pub mod pcm;
pub mod plc;
pub mod ports;
pub mod prompt;
pub mod quality;
pub mod recording;
pub mod relay;
pub mod resample;
pub mod rtp;
pub mod signal;
pub mod srtp;
pub mod tone;
pub mod transcode;
pub mod tts;
pub mod video_room;
pub mod webrtc;

pub use pcm::Pcm;
pub use ports::{BoundPair, PortAllocator, PortError, PortLease};
pub use relay::{
    DirectionStats, DtlsOutcome, DtlsParams, DtmfSource, Leg, LegFormat, LegSrtp, LiveAudio,
    MediaEvent, RecordError, RecordingInfo, RelayConfig, RelayError, RelayMonitor, RelaySession,
    RelayStats, Route, StreamQuality, MAX_PACKET,
};
