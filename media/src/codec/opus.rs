//! Opus (RFC 6716, RTP payload format RFC 7587) through libopus (crate `opus`, which builds the
//! bundled libopus with cmake).
//!
//! One instance is a mono encoder and decoder at one PCM sample rate (8, 12, 16, 24 or 48 kHz),
//! 20 ms frames, `VOIP` application, in-band FEC on. The RTP clock is 48 kHz whatever the PCM
//! rate (RFC 7587 §4.1), so a 20 ms frame is 960 timestamp units; the PCM rate is a local choice
//! of each end, not negotiated, and the decoder downmixes stereo packets.
//!
//! Loss: [`Codec::conceal`] recovers a lost frame from the in-band FEC (LBRR) data of the packet
//! after it when the caller has that packet, else runs libopus's own concealment.

use opus::{Application, Bitrate, Channels, Decoder, Encoder};

use super::{Codec, CodecKind, DecodeError, FRAME_MS};

/// Largest Opus packet libopus writes (its recommended `max_data_bytes`).
const MAX_PACKET: usize = 4000;
/// Longest packet duration Opus allows (RFC 6716 §3.2.5), in ms.
const MAX_PACKET_MS: usize = 120;
/// Expected loss the encoder plans FEC for, in percent (in-band FEC is only sent when > 0).
const EXPECTED_LOSS_PERCENT: i32 = 10;

/// The PCM sample rates libopus encodes from and decodes to.
pub const RATES: [u32; 5] = [8000, 12000, 16000, 24000, 48000];

/// Target bitrate in bit/s for a PCM rate: enough for transparent speech at that bandwidth with
/// room for the FEC copy (narrowband 16k, wideband 24k, fullband 32k as WebRTC uses).
pub fn default_bitrate(rate: u32) -> i32 {
    match rate {
        0..=12000 => 16_000,
        12001..=24000 => 24_000,
        _ => 32_000,
    }
}

/// Why an Opus instance could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OpusError {
    /// libopus only runs at 8, 12, 16, 24 or 48 kHz.
    #[error("Opus does not run at {0} Hz (8, 12, 16, 24 or 48 kHz)")]
    Rate(u32),
    /// libopus refused to create or configure the encoder or decoder.
    #[error("libopus: {0}")]
    Lib(&'static str),
}

impl From<opus::Error> for OpusError {
    fn from(e: opus::Error) -> Self {
        OpusError::Lib(e.code().description())
    }
}

/// A mono Opus encoder and decoder pair at one PCM sample rate.
pub struct Opus {
    rate: u32,
    encoder: Encoder,
    decoder: Decoder,
    /// Encoder output scratch (libopus writes into a slice).
    packet: Vec<u8>,
    /// Decoder output scratch, [`MAX_PACKET_MS`] long.
    pcm: Vec<i16>,
    /// Zero-padded input when a caller gives a frame of a length Opus cannot encode.
    padded: Vec<i16>,
}

impl Opus {
    /// An encoder and decoder at `rate` Hz (one of [`RATES`]), 20 ms frames, VOIP application,
    /// in-band FEC on (planned for 10 % loss), bitrate [`default_bitrate`].
    pub fn new(rate: u32) -> Result<Opus, OpusError> {
        if !RATES.contains(&rate) {
            return Err(OpusError::Rate(rate));
        }
        let mut encoder = Encoder::new(rate, Channels::Mono, Application::Voip)?;
        encoder.set_bitrate(Bitrate::Bits(default_bitrate(rate)))?;
        encoder.set_inband_fec(true)?;
        encoder.set_packet_loss_perc(EXPECTED_LOSS_PERCENT)?;
        let decoder = Decoder::new(rate, Channels::Mono)?;
        Ok(Opus {
            rate,
            encoder,
            decoder,
            packet: vec![0; MAX_PACKET],
            pcm: vec![0; rate as usize * MAX_PACKET_MS / 1000],
            padded: Vec::new(),
        })
    }

    /// Sets the encoder's target bitrate in bit/s (libopus accepts 500 to 512 000).
    pub fn set_bitrate(&mut self, bits_per_second: i32) -> Result<(), OpusError> {
        Ok(self
            .encoder
            .set_bitrate(Bitrate::Bits(bits_per_second.clamp(500, 512_000)))?)
    }

    /// Whether `n` samples at this rate is a duration an Opus frame can have
    /// (2.5, 5, 10, 20, 40 or 60 ms).
    fn is_frame_size(&self, n: usize) -> bool {
        let per_2_5_ms = self.rate as usize / 400;
        [1, 2, 4, 8, 16, 24].iter().any(|k| k * per_2_5_ms == n)
    }

    fn encode_frame(&mut self, pcm: &[i16], out: &mut Vec<u8>) {
        match self.encoder.encode(pcm, &mut self.packet) {
            Ok(n) => out.extend_from_slice(&self.packet[..n.min(self.packet.len())]),
            // Cannot happen with a valid frame size and a MAX_PACKET buffer; drop the frame
            // rather than send garbage.
            Err(e) => tracing::warn!(error = %e, "opus encode failed"),
        }
    }

    fn decode_into(
        &mut self,
        payload: &[u8],
        samples: usize,
        fec: bool,
        out: &mut Vec<i16>,
    ) -> Result<(), DecodeError> {
        let samples = samples.min(self.pcm.len());
        let n = self
            .decoder
            .decode(payload, &mut self.pcm[..samples], fec)
            .map_err(|e| DecodeError::Opus(e.code().description()))?;
        out.extend_from_slice(&self.pcm[..n.min(samples)]);
        Ok(())
    }
}

impl std::fmt::Debug for Opus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opus").field("rate", &self.rate).finish()
    }
}

impl Codec for Opus {
    fn kind(&self) -> CodecKind {
        CodecKind::Opus { rate: self.rate }
    }

    /// Encodes one frame. A length Opus cannot encode (not 2.5/5/10/20/40/60 ms) is cut or
    /// padded with silence to 20 ms.
    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) {
        if self.is_frame_size(pcm.len()) {
            self.encode_frame(pcm, out);
            return;
        }
        let frame = (self.rate * FRAME_MS / 1000) as usize;
        let mut padded = std::mem::take(&mut self.padded);
        padded.clear();
        padded.extend_from_slice(&pcm[..pcm.len().min(frame)]);
        padded.resize(frame, 0);
        self.encode_frame(&padded, out);
        self.padded = padded;
    }

    /// Decodes one packet (up to 120 ms). An empty payload is not a packet: an error (signal
    /// a loss with [`Codec::conceal`] instead).
    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), DecodeError> {
        if payload.is_empty() {
            return Err(DecodeError::Opus("empty packet"));
        }
        self.decode_into(payload, self.pcm.len(), false, out)
    }

    /// Conceals `samples` lost samples (rounded down to a whole 2.5 ms, at least 2.5 ms): from
    /// `next`'s in-band FEC if given (libopus falls back to concealment when `next` carries
    /// none), else by libopus's packet loss concealment.
    fn conceal(&mut self, next: Option<&[u8]>, samples: usize, out: &mut Vec<i16>) -> bool {
        let per_2_5_ms = self.rate as usize / 400;
        let samples = (samples / per_2_5_ms).max(1) * per_2_5_ms;
        let (payload, fec) = match next {
            Some(p) if !p.is_empty() => (p, true),
            _ => (&[][..], false),
        };
        let start = out.len();
        if self.decode_into(payload, samples, fec, out).is_err() {
            // `next` is corrupt: plain concealment instead.
            out.truncate(start);
            return self.decode_into(&[], samples, false, out).is_ok();
        }
        true
    }

    /// Complexity 0 (fastest) to 10 (best; libopus's default, kept here, is 9). Out-of-range
    /// values are clamped.
    fn set_complexity(&mut self, complexity: i32) -> bool {
        self.encoder.set_complexity(complexity.clamp(0, 10)).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::{rms_dbfs, sine, snr_db, tone_dbfs, Noise};

    fn round_trip(rate: u32, pcm: &[i16]) -> (Vec<i16>, usize) {
        let kind = CodecKind::Opus { rate };
        let (mut enc, mut dec) = (kind.codec(), kind.codec());
        let (mut payload, mut out, mut bytes) = (Vec::new(), Vec::new(), 0);
        for frame in pcm.chunks(kind.samples_per_frame()) {
            payload.clear();
            enc.encode(frame, &mut payload);
            bytes += payload.len();
            dec.decode(&payload, &mut out).unwrap(); // invariant: our own encoder's output
        }
        (out, bytes)
    }

    /// Stated bounds on a -10 dBFS tone over one second (first 200 ms skipped while the
    /// encoder settles): the tone's level within 2 dB, everything else (noise and distortion
    /// in the band, by Goertzel at 8 to 10 other frequencies) at least 30 dB below it, and the
    /// bitrate (VBR: a tone takes less) under 1.25 × the target. Opus is perceptual, so waveform SNR is reported, not bounded.
    #[test]
    fn round_trip_keeps_a_tone_at_each_rate() {
        for rate in [8000, 16000, 48000] {
            for freq in [1000.0, 440.0] {
                let x = sine(freq, -10.0, rate, rate as usize);
                let (y, bytes) = round_trip(rate, &x);
                assert_eq!(y.len(), x.len(), "{rate} Hz");
                let tail = &y[rate as usize / 5..];
                let level = tone_dbfs(tail, freq, rate);
                let worst_other = [300.0, 600.0, 700.0, 1300.0, 1700.0, 2000.0, 2500.0, 3000.0]
                    .iter()
                    .chain([5000.0, 7000.0].iter().filter(|_| rate > 8000))
                    .map(|&f| tone_dbfs(tail, f, rate))
                    .fold(f64::NEG_INFINITY, f64::max);
                let kbps = bytes as f64 * 8.0 / 1000.0;
                let snr = snr_db(&x[rate as usize / 5..], tail, rate as usize / 100);
                println!(
                    "Opus {rate} Hz, {freq} Hz at -10 dBFS: tone {level:.2} dBFS, worst other \
                     {worst_other:.1} dBFS, waveform SNR {snr:.1} dB, {kbps:.1} kbit/s"
                );
                assert!((level + 10.0).abs() < 2.0, "{rate} Hz: level {level:.2}");
                assert!(worst_other < level - 30.0, "{rate} Hz: {worst_other:.1}");
                let target = f64::from(default_bitrate(rate)) / 1000.0;
                assert!(kbps < 1.25 * target, "{kbps:.1} kbit/s");
            }
        }
    }

    #[test]
    fn wideband_and_fullband_carry_a_6khz_tone() {
        for rate in [16000, 48000] {
            let x = sine(6000.0, -10.0, rate, rate as usize);
            let (y, _) = round_trip(rate, &x);
            let level = tone_dbfs(&y[rate as usize / 5..], 6000.0, rate);
            println!("Opus {rate} Hz: 6 kHz tone at {level:.2} dBFS");
            assert!((level + 10.0).abs() < 3.0, "{rate}: {level:.2}");
        }
    }

    #[test]
    fn frames_sizes_and_sdp() {
        for (rate, spf) in [(8000, 160), (16000, 320), (48000, 960)] {
            let kind = CodecKind::opus(rate).unwrap();
            assert_eq!(kind, CodecKind::Opus { rate });
            assert_eq!(kind.samples_per_frame(), spf);
            assert_eq!(kind.timestamp_per_frame(), 960);
            assert_eq!(kind.clock_rate(), 48000);
            assert_eq!(kind.sdp_name(), "opus");
            assert_eq!(kind.payload_type(), None);
        }
        assert_eq!(CodecKind::opus(44100), None);
        let mut c = CodecKind::Opus { rate: 16000 }.codec();
        assert!(c.set_complexity(5) && c.set_complexity(99));
        assert!(!CodecKind::Pcmu.codec().set_complexity(5));
        assert!(matches!(Opus::new(44100), Err(OpusError::Rate(44100))));
        // Odd lengths are cut or padded to 20 ms, never rejected.
        let mut c = Opus::new(8000).unwrap();
        for n in [0, 1, 100, 161, 5000] {
            let mut out = Vec::new();
            c.encode(&vec![1000; n], &mut out);
            assert!(!out.is_empty(), "{n}");
            let mut pcm = Vec::new();
            c.decode(&out, &mut pcm).unwrap();
            assert_eq!(pcm.len(), 160);
        }
        // 10 and 60 ms frames are encoded as they are.
        for n in [80, 480] {
            let mut out = Vec::new();
            c.encode(&vec![0; n], &mut out);
            let mut pcm = Vec::new();
            c.decode(&out, &mut pcm).unwrap();
            assert_eq!(pcm.len(), n);
        }
    }

    /// With one frame in five lost, recovering each from the next packet's FEC gives a
    /// better waveform than plain concealment (measured: see the printout).
    #[test]
    fn fec_recovers_lost_frames_better_than_plc() {
        let rate = 16000;
        let x = crate::signal::sweep(300.0, 3000.0, -12.0, rate, 2 * rate as usize);
        let kind = CodecKind::Opus { rate };
        let mut enc = kind.codec();
        let packets: Vec<Vec<u8>> = x
            .chunks(kind.samples_per_frame())
            .map(|f| {
                let mut p = Vec::new();
                enc.encode(f, &mut p);
                p
            })
            .collect();
        let decode = |use_fec: bool| {
            let mut dec = kind.codec();
            let mut out = Vec::new();
            for (i, p) in packets.iter().enumerate() {
                if i % 5 == 2 {
                    let next = packets.get(i + 1).filter(|_| use_fec).map(Vec::as_slice);
                    assert!(dec.conceal(next, kind.samples_per_frame(), &mut out));
                } else {
                    dec.decode(p, &mut out).unwrap();
                }
            }
            out
        };
        let skip = rate as usize / 5;
        let (fec, plc) = (decode(true), decode(false));
        assert_eq!(fec.len(), x.len());
        assert_eq!(plc.len(), x.len());
        let d = rate as usize / 100;
        let (snr_fec, snr_plc) = (
            snr_db(&x[skip..], &fec[skip..], d),
            snr_db(&x[skip..], &plc[skip..], d),
        );
        println!(
            "Opus 16 kHz sweep, 20 % loss: SNR with FEC {snr_fec:.1} dB, with PLC {snr_plc:.1} dB"
        );
        assert!(
            snr_fec > snr_plc + 3.0,
            "FEC {snr_fec:.1} vs PLC {snr_plc:.1}"
        );
        assert!(rms_dbfs(&fec[skip..]) > -16.0);
    }

    #[test]
    fn garbage_decodes_to_an_error_or_bounded_audio() {
        let mut rng = Noise::new(9);
        let mut c = Opus::new(48000).unwrap();
        let mut errors = 0;
        for len in 0..600 {
            let payload: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            let mut out = Vec::new();
            match c.decode(&payload, &mut out) {
                Ok(()) => assert!(out.len() <= 48 * MAX_PACKET_MS),
                Err(DecodeError::Opus(_)) => errors += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(errors > 0);
        // Concealment with a corrupt `next` still produces audio.
        let mut out = Vec::new();
        assert!(c.conceal(Some(&[0xff, 0xff, 0xff]), 960, &mut out));
        assert_eq!(out.len(), 960);
    }
}
