//! L16 (RFC 3551 §4.5.11): uncompressed 16-bit signed PCM in network byte order.

use super::{Codec, CodecKind, DecodeError};

/// Mono L16 at a given rate. Lossless.
#[derive(Clone, Copy, Debug)]
pub struct L16 {
    rate: u32,
}

impl L16 {
    /// An L16 codec at `rate` Hz (see [`CodecKind::l16`] for the rates SDP negotiation accepts).
    pub fn new(rate: u32) -> L16 {
        L16 { rate }
    }
}

impl Codec for L16 {
    fn kind(&self) -> CodecKind {
        CodecKind::L16 { rate: self.rate }
    }

    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) {
        out.reserve(pcm.len() * 2);
        for s in pcm {
            out.extend_from_slice(&s.to_be_bytes());
        }
    }

    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), DecodeError> {
        if !payload.len().is_multiple_of(2) {
            return Err(DecodeError::OddLength(payload.len()));
        }
        out.extend(
            payload
                .chunks_exact(2)
                .map(|b| i16::from_be_bytes([b[0], b[1]])),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_endian_on_the_wire() {
        let mut c = L16::new(16000);
        let mut out = Vec::new();
        c.encode(&[0x0102, -2], &mut out);
        assert_eq!(out, [0x01, 0x02, 0xff, 0xfe]);
        let mut pcm = Vec::new();
        c.decode(&out, &mut pcm).unwrap(); // invariant: even length
        assert_eq!(pcm, [0x0102, -2]);
        assert_eq!(
            c.decode(&[1, 2, 3], &mut pcm),
            Err(DecodeError::OddLength(3))
        );
    }
}
