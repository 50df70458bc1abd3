//! Call recording. Today: stereo WAV ([`wav`]), caller left and callee right, aligned by RTP
//! timestamps. The recording index (file, duration, size, legs) belongs to storage; the tap
//! that feeds a recorder is a subscriber of the relay's streams.

pub mod wav;

pub use wav::{LegAudio, RecordingError, RecordingSummary, Side, StereoWavWriter};
