//! The minimum of RTP the relay needs: the fixed header fields and RFC 3550 loss accounting.

/// The fields of the 12-byte fixed RTP header (RFC 3550 §5.1) the relay looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtpHeader {
    /// Payload type (7 bits).
    pub payload_type: u8,
    /// Sequence number.
    pub sequence: u16,
    /// Timestamp.
    pub timestamp: u32,
    /// Synchronization source.
    pub ssrc: u32,
}

impl RtpHeader {
    /// Reads the header of an RTP packet: version 2, at least 12 bytes, and not an RTCP packet
    /// multiplexed on the same port (RFC 5761 §4: second byte 192..=223). `None` otherwise.
    pub fn parse(packet: &[u8]) -> Option<RtpHeader> {
        let h: &[u8; 12] = packet.get(..12)?.try_into().ok()?;
        if h[0] >> 6 != 2 || (192..=223).contains(&h[1]) {
            return None;
        }
        Some(RtpHeader {
            payload_type: h[1] & 0x7f,
            sequence: u16::from_be_bytes([h[2], h[3]]),
            timestamp: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
            ssrc: u32::from_be_bytes([h[8], h[9], h[10], h[11]]),
        })
    }
}

const MAX_DROPOUT: u16 = 3000;
const MAX_MISORDER: u16 = 100;

/// Per-stream loss accounting after RFC 3550 Appendix A.1 (extended highest sequence number,
/// expected − received), without the probation period. A new SSRC (or a jump confirmed by two
/// consecutive packets) restarts the count; what was lost before is kept.
#[derive(Clone, Debug, Default)]
pub struct SeqTracker {
    stream: Option<Stream>,
    lost_before: u64,
}

#[derive(Clone, Debug)]
struct Stream {
    ssrc: u32,
    base: u64,
    max_ext: u64,
    received: u64,
    bad_seq: Option<u16>,
}

impl SeqTracker {
    /// Accounts one packet.
    pub fn on_packet(&mut self, h: &RtpHeader) {
        let restart = match &mut self.stream {
            None => true,
            Some(s) if s.ssrc != h.ssrc => true,
            Some(s) => {
                let max = (s.max_ext & 0xffff) as u16;
                let delta = h.sequence.wrapping_sub(max);
                if delta < MAX_DROPOUT {
                    // In order, maybe with a gap; a smaller sequence means a wrap.
                    if delta != 0 {
                        let cycles = s.max_ext & !0xffff;
                        let wrapped = if h.sequence < max { 1 << 16 } else { 0 };
                        s.max_ext = cycles + wrapped + u64::from(h.sequence);
                    }
                    s.received += 1;
                    s.bad_seq = None;
                    false
                } else if delta <= u16::MAX - MAX_MISORDER {
                    // A big jump: restart only if the next packet confirms it.
                    if s.bad_seq == Some(h.sequence) {
                        true
                    } else {
                        s.bad_seq = Some(h.sequence.wrapping_add(1));
                        false
                    }
                } else {
                    // Late or duplicate.
                    s.received += 1;
                    false
                }
            }
        };
        if restart {
            self.lost_before += self.stream.as_ref().map_or(0, Stream::lost);
            let seq = u64::from(h.sequence) + (1 << 16); // room for early reordering below base
            self.stream = Some(Stream {
                ssrc: h.ssrc,
                base: seq,
                max_ext: seq,
                received: 1,
                bad_seq: None,
            });
        }
    }

    /// Packets lost so far (never negative: duplicates do not earn credit).
    pub fn lost(&self) -> u64 {
        self.lost_before + self.stream.as_ref().map_or(0, Stream::lost)
    }
}

impl Stream {
    fn lost(&self) -> u64 {
        let expected = self.max_ext.saturating_sub(self.base) + 1;
        expected.saturating_sub(self.received)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(seq: u16, ssrc: u32) -> RtpHeader {
        RtpHeader {
            payload_type: 0,
            sequence: seq,
            timestamp: 0,
            ssrc,
        }
    }

    #[test]
    fn parses_and_rejects() {
        let mut p = [0u8; 172];
        p[0] = 0x80;
        p[1] = 0x80 | 8;
        p[2..4].copy_from_slice(&513u16.to_be_bytes());
        p[8..12].copy_from_slice(&7u32.to_be_bytes());
        let hd = RtpHeader::parse(&p).unwrap();
        assert_eq!((hd.payload_type, hd.sequence, hd.ssrc), (8, 513, 7));
        assert!(RtpHeader::parse(&p[..11]).is_none());
        p[1] = 200; // RTCP SR on a muxed port
        assert!(RtpHeader::parse(&p).is_none());
        p[0] = 0x40;
        assert!(RtpHeader::parse(&p).is_none());
    }

    #[test]
    fn counts_gaps_across_a_wrap_and_ignores_duplicates() {
        let mut t = SeqTracker::default();
        for seq in (65500u16..=65535).chain(0..100) {
            if seq % 10 != 3 {
                t.on_packet(&h(seq, 1));
            }
        }
        // 65503, 65513, 65523, 65533, then 3, 13, …, 93: 4 + 10.
        assert_eq!(t.lost(), 14);
        t.on_packet(&h(99, 1)); // duplicate
        t.on_packet(&h(50, 1)); // late
        assert_eq!(
            t.lost(),
            12,
            "late/duplicate packets count as received (RFC 3550)"
        );
    }

    #[test]
    fn new_ssrc_and_confirmed_jumps_restart_keeping_past_loss() {
        let mut t = SeqTracker::default();
        for seq in [1u16, 2, 4, 5] {
            t.on_packet(&h(seq, 1));
        }
        assert_eq!(t.lost(), 1);
        for seq in [1000u16, 1001, 1003] {
            t.on_packet(&h(seq, 2));
        }
        assert_eq!(t.lost(), 2);
        // A single wild packet is ignored; two in a row restart.
        t.on_packet(&h(40000, 2));
        t.on_packet(&h(1004, 2));
        assert_eq!(t.lost(), 2);
        t.on_packet(&h(50000, 2));
        t.on_packet(&h(50001, 2));
        t.on_packet(&h(50003, 2));
        assert_eq!(t.lost(), 3);
    }
}
