//! G.722 (ITU-T, 64 kbit/s sub-band ADPCM, 16 kHz audio), through the pure-Rust implementation
//! of the `audio-codec` crate (a port of the spandsp/libg722 reference code).
//!
//! RTP quirk (RFC 3551 §4.5.2): the RTP clock is 8000 Hz although the audio is sampled at
//! 16 kHz, so a 20 ms frame is 320 samples, 160 bytes and 160 timestamp units.

use audio_codec::g722::{G722Decoder, G722Encoder};
use audio_codec::{Decoder, Encoder};

use super::{Codec, CodecKind, DecodeError};

/// A G.722 encoder and decoder pair at 64 kbit/s (mode 1), unpacked (one byte per sample pair).
pub struct G722 {
    encoder: G722Encoder,
    decoder: G722Decoder,
}

impl G722 {
    /// Fresh encoder and decoder state.
    pub fn new() -> G722 {
        G722 {
            encoder: G722Encoder::new(),
            decoder: G722Decoder::new(),
        }
    }
}

impl Default for G722 {
    fn default() -> Self {
        G722::new()
    }
}

impl std::fmt::Debug for G722 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("G722")
    }
}

impl Codec for G722 {
    fn kind(&self) -> CodecKind {
        CodecKind::G722
    }

    /// Encodes pairs of samples to one byte each; a trailing odd sample is dropped.
    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) {
        let start = out.len();
        out.resize(start + self.encoder.max_encode_bytes(pcm.len()), 0);
        // The buffer is sized by the encoder's own bound, so this cannot fail; keep the bytes
        // written either way.
        let n = self
            .encoder
            .encode_into(pcm, &mut out[start..])
            .unwrap_or(0);
        out.truncate(start + n);
    }

    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), DecodeError> {
        let start = out.len();
        out.resize(start + self.decoder.max_decode_samples(payload.len()), 0);
        // Sized by the decoder's own bound: cannot fail (every byte is a valid code).
        let n = self
            .decoder
            .decode_into(payload, &mut out[start..])
            .unwrap_or(0);
        out.truncate(start + n);
        Ok(())
    }
}
