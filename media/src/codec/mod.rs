//! Audio codecs: encode 16-bit PCM frames to RTP payloads and back.
//!
//! [`CodecKind`] names a codec as SDP does (encoding name, clock rate, static payload type) and
//! makes instances; a [`Codec`] instance holds the encoder and decoder state of one stream.
//! G.711 µ-law/A-law ([`g711`]) and L16 ([`l16`]) are stateless; G.722 ([`g722`]) is an ADPCM
//! codec and Opus ([`opus`]) a predictive one, both with state in both directions, so use one
//! instance per stream and direction pair.
//!
//! Architecture invariant: no I/O and no clock here; a codec only turns samples into bytes and
//! bytes into samples. Any byte string from the network decodes without panicking.

pub mod g711;
pub mod g722;
pub mod l16;
pub mod opus;

pub use g711::{Pcma, Pcmu};
pub use g722::G722;
pub use l16::L16;
pub use opus::{Opus, OpusError};

/// Milliseconds of audio in one frame (the usual RTP packetisation time).
pub const FRAME_MS: u32 = 20;

/// A codec, as negotiated in SDP. `Copy`: it holds no state, [`CodecKind::codec`] makes one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CodecKind {
    /// G.711 µ-law, 8 kHz, static payload type 0.
    Pcmu,
    /// G.711 A-law, 8 kHz, static payload type 8.
    Pcma,
    /// G.722 at 64 kbit/s: 16 kHz audio, RTP clock 8 kHz (RFC 3551 §4.5.2), payload type 9.
    G722,
    /// Linear 16-bit big-endian PCM, mono, at `rate` Hz (payload type 11 at 44.1 kHz, else
    /// dynamic). Build it with [`CodecKind::l16`], which checks the rate.
    L16 {
        /// Sample rate and RTP clock rate in Hz.
        rate: u32,
    },
    /// Opus, mono, 20 ms frames, in-band FEC on; dynamic payload type (from SDP), RTP clock
    /// always 48 kHz (RFC 7587). Build it with [`CodecKind::opus`], which checks the rate.
    Opus {
        /// PCM sample rate in Hz this end encodes from and decodes to (8, 12, 16, 24 or
        /// 48 kHz): a local choice, not negotiated, so legs at different rates interoperate.
        rate: u32,
    },
}

impl CodecKind {
    /// L16 at `rate` Hz, if `rate` is between 8 and 48 kHz and a 20 ms frame is a whole number
    /// of samples.
    pub fn l16(rate: u32) -> Option<CodecKind> {
        ((8000..=48000).contains(&rate) && (rate * FRAME_MS).is_multiple_of(1000))
            .then_some(CodecKind::L16 { rate })
    }

    /// Opus at a PCM sample rate of `rate` Hz (8, 12, 16, 24 or 48 kHz).
    pub fn opus(rate: u32) -> Option<CodecKind> {
        opus::RATES
            .contains(&rate)
            .then_some(CodecKind::Opus { rate })
    }

    /// The codec an SDP `a=rtpmap:<pt> <name>/<clock_rate>[/<channels>]` line names (name
    /// case-insensitive, mono only), or `None` if this crate cannot encode it. Opus is the
    /// exception to mono: its rtpmap always says `opus/48000/2` (RFC 7587 §7) even for mono
    /// streams; it maps to Opus at 48 kHz (pick another PCM rate with [`CodecKind::opus`]).
    pub fn from_sdp(name: &str, clock_rate: u32, channels: u8) -> Option<CodecKind> {
        if name.eq_ignore_ascii_case("opus") {
            return (clock_rate == 48000 && (1..=2).contains(&channels))
                .then_some(CodecKind::Opus { rate: 48000 });
        }
        if channels != 1 {
            return None;
        }
        let kind = match name.to_ascii_uppercase().as_str() {
            "PCMU" => CodecKind::Pcmu,
            "PCMA" => CodecKind::Pcma,
            "G722" => CodecKind::G722,
            "L16" => return CodecKind::l16(clock_rate),
            _ => return None,
        };
        (kind.clock_rate() == clock_rate).then_some(kind)
    }

    /// The codec a static RTP payload type (RFC 3551 table 4) stands for, if supported.
    pub fn from_static_payload_type(pt: u8) -> Option<CodecKind> {
        match pt {
            0 => Some(CodecKind::Pcmu),
            8 => Some(CodecKind::Pcma),
            9 => Some(CodecKind::G722),
            11 => Some(CodecKind::L16 { rate: 44100 }),
            _ => None,
        }
    }

    /// The encoding name in SDP (`a=rtpmap`).
    pub fn sdp_name(self) -> &'static str {
        match self {
            CodecKind::Pcmu => "PCMU",
            CodecKind::Pcma => "PCMA",
            CodecKind::G722 => "G722",
            CodecKind::L16 { .. } => "L16",
            CodecKind::Opus { .. } => "opus",
        }
    }

    /// The channel count an SDP `a=rtpmap` line carries for this codec: 2 for Opus (RFC 7587
    /// §7, even for mono streams), else 1.
    pub fn sdp_channels(self) -> u8 {
        match self {
            CodecKind::Opus { .. } => 2,
            _ => 1,
        }
    }

    /// Whether RTP payloads of `self` can be relayed unchanged to a leg that negotiated
    /// `other`: same codec and RTP clock. Opus at different PCM rates is one payload format.
    pub fn same_payload_format(self, other: CodecKind) -> bool {
        match (self, other) {
            (CodecKind::Opus { .. }, CodecKind::Opus { .. }) => true,
            _ => self == other,
        }
    }

    /// The static RTP payload type, or `None` if the codec needs a dynamic one (96..=127).
    pub fn payload_type(self) -> Option<u8> {
        match self {
            CodecKind::Pcmu => Some(0),
            CodecKind::Pcma => Some(8),
            CodecKind::G722 => Some(9),
            CodecKind::L16 { rate: 44100 } => Some(11),
            CodecKind::L16 { .. } | CodecKind::Opus { .. } => None,
        }
    }

    /// The RTP timestamp clock rate in Hz (8000 for G.722 although it carries 16 kHz audio,
    /// 48000 for Opus whatever its PCM rate).
    pub fn clock_rate(self) -> u32 {
        match self {
            CodecKind::Pcmu | CodecKind::Pcma | CodecKind::G722 => 8000,
            CodecKind::L16 { rate } => rate,
            CodecKind::Opus { .. } => 48000,
        }
    }

    /// The PCM sample rate in Hz the codec encodes from and decodes to.
    pub fn sample_rate(self) -> u32 {
        match self {
            CodecKind::Pcmu | CodecKind::Pcma => 8000,
            CodecKind::G722 => 16000,
            CodecKind::L16 { rate } | CodecKind::Opus { rate } => rate,
        }
    }

    /// PCM samples in one 20 ms frame.
    pub fn samples_per_frame(self) -> usize {
        (self.sample_rate() * FRAME_MS / 1000) as usize
    }

    /// RTP timestamp increment of one 20 ms frame.
    pub fn timestamp_per_frame(self) -> u32 {
        self.clock_rate() * FRAME_MS / 1000
    }

    /// A fresh codec instance (encoder and decoder state).
    ///
    /// Panics only for an Opus rate libopus refuses, which [`CodecKind::opus`] and
    /// [`CodecKind::from_sdp`] never make; use [`CodecKind::try_codec`] for a hand-built kind.
    pub fn codec(self) -> Box<dyn Codec> {
        match self.try_codec() {
            Ok(c) => c,
            Err(e) => panic!("CodecKind::codec({self:?}): {e}"),
        }
    }

    /// A fresh codec instance, or why libopus refused to make one (the other codecs cannot
    /// fail).
    pub fn try_codec(self) -> Result<Box<dyn Codec>, OpusError> {
        Ok(match self {
            CodecKind::Pcmu => Box::new(Pcmu),
            CodecKind::Pcma => Box::new(Pcma),
            CodecKind::G722 => Box::new(G722::new()),
            CodecKind::L16 { rate } => Box::new(L16::new(rate)),
            CodecKind::Opus { rate } => Box::new(Opus::new(rate)?),
        })
    }
}

/// Why a payload could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// L16 carries two bytes per sample: an odd length is malformed.
    #[error("payload of {0} bytes is not a whole number of 16-bit samples")]
    OddLength(usize),
    /// libopus rejected the packet (its error text).
    #[error("invalid Opus packet: {0}")]
    Opus(&'static str),
}

/// One codec instance: encoder and decoder state for one stream.
///
/// `encode` and `decode` append to the output vector, so a caller can reuse one buffer (clear it
/// first) and never allocate on the hot path once it has grown.
pub trait Codec: Send {
    /// Which codec this is (name, payload type, rates, frame size).
    fn kind(&self) -> CodecKind;

    /// Encodes PCM at [`CodecKind::sample_rate`] (normally one frame of
    /// [`CodecKind::samples_per_frame`] samples) and appends the payload to `out`.
    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>);

    /// Decodes one RTP payload and appends its PCM samples to `out`.
    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), DecodeError>;

    /// Conceals one lost frame of about `samples` samples with the codec's own means, appending
    /// them to `out`; `next` is the packet after the loss if the caller has it (Opus recovers
    /// the lost frame from its in-band FEC). Returns `false`, appending nothing, if the codec
    /// has no concealment of its own (the default): the caller conceals, e.g. with
    /// [`crate::plc::Concealer`].
    fn conceal(&mut self, next: Option<&[u8]>, samples: usize, out: &mut Vec<i16>) -> bool {
        let _ = (next, samples, out);
        false
    }

    /// Sets the encoder's complexity, 0 (fastest) to 10 (best), where the codec has such a
    /// trade-off (Opus). Returns `false` if it has none (the default) or refused.
    fn set_complexity(&mut self, complexity: i32) -> bool {
        let _ = complexity;
        false
    }

    /// The encoding name in SDP.
    fn sdp_name(&self) -> &'static str {
        self.kind().sdp_name()
    }

    /// The static RTP payload type, if any.
    fn payload_type(&self) -> Option<u8> {
        self.kind().payload_type()
    }

    /// The RTP clock rate in Hz.
    fn clock_rate(&self) -> u32 {
        self.kind().clock_rate()
    }

    /// The PCM sample rate in Hz.
    fn sample_rate(&self) -> u32 {
        self.kind().sample_rate()
    }

    /// PCM samples in one 20 ms frame.
    fn samples_per_frame(&self) -> usize {
        self.kind().samples_per_frame()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::{sine, snr_db, tone_dbfs, Noise};

    const ALL: [CodecKind; 6] = [
        CodecKind::Pcmu,
        CodecKind::Pcma,
        CodecKind::G722,
        CodecKind::L16 { rate: 8000 },
        CodecKind::L16 { rate: 16000 },
        CodecKind::Opus { rate: 8000 },
    ];

    /// Encodes `pcm` frame by frame through one instance and decodes through another, as a
    /// sender and a receiver would.
    fn round_trip(kind: CodecKind, pcm: &[i16]) -> Vec<i16> {
        let (mut enc, mut dec) = (kind.codec(), kind.codec());
        let (mut payload, mut out) = (Vec::new(), Vec::new());
        for frame in pcm.chunks(kind.samples_per_frame()) {
            payload.clear();
            enc.encode(frame, &mut payload);
            dec.decode(&payload, &mut out).unwrap(); // invariant: our own encoder's output
        }
        out
    }

    fn tone_snr(kind: CodecKind, freq: f64, dbfs: f64) -> f64 {
        let rate = kind.sample_rate();
        let x = sine(freq, dbfs, rate, rate as usize); // one second
        let y = round_trip(kind, &x);
        assert_eq!(y.len(), x.len(), "{kind:?}");
        // Skip the first 100 ms: ADPCM step sizes adapt from their initial state.
        let skip = rate as usize / 10;
        snr_db(&x[skip..], &y[skip..], 64)
    }

    /// Kind, SDP name, payload type, clock rate, samples, timestamp units and bytes per frame.
    type Row = (CodecKind, &'static str, Option<u8>, u32, usize, u32, usize);

    #[test]
    fn sdp_names_payload_types_and_frame_sizes() {
        let rows: [Row; 5] = [
            (CodecKind::Pcmu, "PCMU", Some(0), 8000, 160, 160, 160),
            (CodecKind::Pcma, "PCMA", Some(8), 8000, 160, 160, 160),
            (CodecKind::G722, "G722", Some(9), 8000, 320, 160, 160),
            (
                CodecKind::L16 { rate: 8000 },
                "L16",
                None,
                8000,
                160,
                160,
                320,
            ),
            (
                CodecKind::L16 { rate: 16000 },
                "L16",
                None,
                16000,
                320,
                320,
                640,
            ),
        ];
        for (kind, name, pt, clock, spf, tpf, bytes) in rows {
            let mut c = kind.codec();
            assert_eq!(c.kind(), kind);
            assert_eq!(c.sdp_name(), name);
            assert_eq!(c.payload_type(), pt);
            assert_eq!(c.clock_rate(), clock);
            assert_eq!(c.samples_per_frame(), spf);
            assert_eq!(kind.timestamp_per_frame(), tpf);
            let mut out = Vec::new();
            c.encode(&vec![0; spf], &mut out);
            assert_eq!(out.len(), bytes, "{kind:?} payload bytes per 20 ms");
            assert_eq!(CodecKind::from_sdp(name, clock, 1), Some(kind));
        }
        assert_eq!(CodecKind::from_sdp("pcmu", 8000, 1), Some(CodecKind::Pcmu));
        assert_eq!(CodecKind::from_sdp("PCMU", 16000, 1), None);
        assert_eq!(CodecKind::from_sdp("PCMU", 8000, 2), None);
        assert_eq!(
            CodecKind::from_sdp("opus", 48000, 2),
            Some(CodecKind::Opus { rate: 48000 })
        );
        assert_eq!(
            CodecKind::from_sdp("OPUS", 48000, 1),
            Some(CodecKind::Opus { rate: 48000 })
        );
        assert_eq!(CodecKind::from_sdp("opus", 8000, 2), None);
        let opus8 = CodecKind::Opus { rate: 8000 };
        assert!(opus8.same_payload_format(CodecKind::Opus { rate: 48000 }));
        assert!(!CodecKind::Pcmu.same_payload_format(CodecKind::Pcma));
        assert!(!CodecKind::L16 { rate: 8000 }.same_payload_format(CodecKind::L16 { rate: 16000 }));
        assert_eq!(
            (opus8.sdp_channels(), CodecKind::Pcmu.sdp_channels()),
            (2, 1)
        );
        assert!(CodecKind::Opus { rate: 44100 }.try_codec().is_err());
        assert_eq!(
            CodecKind::l16(44100).and_then(CodecKind::payload_type),
            Some(11)
        );
        assert_eq!(
            CodecKind::l16(11025),
            None,
            "20 ms is not a whole number of samples"
        );
        assert_eq!(
            CodecKind::from_static_payload_type(8),
            Some(CodecKind::Pcma)
        );
        assert_eq!(CodecKind::from_static_payload_type(18), None);
    }

    /// Stated bounds, on a -10 dBFS 1 kHz tone: G.711 ≥ 35 dB (theory ≈ 38 dB), G.722 ≥ 30 dB,
    /// L16 lossless. Measured figures are printed (`cargo test -- --nocapture`).
    #[test]
    fn round_trip_snr_on_a_1khz_tone() {
        for (kind, bound) in [
            (CodecKind::Pcmu, 35.0),
            (CodecKind::Pcma, 35.0),
            (CodecKind::G722, 30.0),
            (CodecKind::L16 { rate: 8000 }, f64::INFINITY),
            (CodecKind::L16 { rate: 16000 }, f64::INFINITY),
        ] {
            // 1000 Hz hits only 8 sample phases at 8 kHz; 1004 Hz (the usual test tone) all.
            for freq in [1000.0, 1004.0] {
                let snr = tone_snr(kind, freq, -10.0);
                println!("{kind:?}: {freq} Hz at -10 dBFS: SNR {snr:.2} dB");
                assert!(
                    snr >= bound,
                    "{kind:?} {freq} Hz: SNR {snr:.2} dB < {bound} dB"
                );
            }
        }
    }

    /// G.711 is logarithmic: the SNR stays near 38 dB over a wide range of levels (≥ 30 dB from
    /// -40 to -3 dBFS), where a linear 8-bit quantiser would lose 6 dB per 6 dB of level.
    #[test]
    fn g711_snr_is_flat_over_levels() {
        for kind in [CodecKind::Pcmu, CodecKind::Pcma] {
            for dbfs in [-40.0, -30.0, -20.0, -10.0, -3.0] {
                let snr = tone_snr(kind, 1000.0, dbfs);
                assert!(snr >= 30.0, "{kind:?} at {dbfs} dBFS: {snr:.2} dB");
            }
        }
    }

    /// G.722 keeps wideband audio: a 6 kHz tone (above the 4 kHz narrowband limit) survives.
    #[test]
    fn g722_carries_wideband_audio() {
        let x = sine(6000.0, -10.0, 16000, 16000);
        let y = round_trip(CodecKind::G722, &x);
        let tail = &y[1600..];
        assert!((tone_dbfs(tail, 6000.0, 16000) + 10.0).abs() < 2.0);
        assert!(snr_db(&x[1600..], tail, 64) > 20.0);
    }

    #[test]
    fn random_payloads_decode_without_panicking() {
        let mut rng = Noise::new(42);
        for kind in ALL {
            let mut dec = kind.codec();
            for len in 0..400 {
                let payload: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
                let mut out = Vec::new();
                match dec.decode(&payload, &mut out) {
                    // Opus: at most 120 ms per packet.
                    Ok(()) => assert!(out.len() <= (2 * payload.len()).max(6 * 160)),
                    Err(DecodeError::OddLength(n)) => {
                        assert!(matches!(kind, CodecKind::L16 { .. }) && n % 2 == 1)
                    }
                    Err(DecodeError::Opus(_)) => {
                        assert!(matches!(kind, CodecKind::Opus { .. }))
                    }
                }
            }
        }
    }
}
