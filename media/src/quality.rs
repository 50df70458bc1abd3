//! Stream quality: RFC 3550 receiver statistics and an E-model (ITU-T G.107) MOS estimate.
//!
//! [`ReceiverStats`] follows RFC 3550 appendix A: A.1 for the extended highest sequence number
//! (without the probation period: counting starts with the first packet), A.3 for expected,
//! lost and the fraction lost per report interval, A.8 for the interarrival jitter. Statistics
//! are per source: a new SSRC starts them over.
//!
//! [`estimate`] is the simplified E-model that VoIP monitors use (G.107 with default values
//! except the ones measured): `R = 93.2 − Id − Ie,eff`, where
//!
//! * `Id = 0.024·Ta + 0.11·(Ta − 177.3)·H(Ta − 177.3)` (Cole & Rosenbluth's fit of G.107's delay
//!   impairment), with `Ta` the one-way delay + 2 × jitter (what a jitter buffer adds) + 10 ms of
//!   codec and packetisation delay;
//! * `Ie,eff = Ie + (95 − Ie)·Ppl / (Ppl/BurstR + Bpl)` (G.107 §7.4), with the codec's `Ie` and
//!   `Bpl` from G.113 Appendix I;
//!
//! and `MOS = 1 + 0.035·R + R·(R − 60)·(100 − R)·7·10⁻⁶` (G.107 Annex B), 1 below R = 0, 4.5
//! above R = 100. The narrowband model cannot credit wideband audio: G.722 scores as G.711.

use crate::codec::CodecKind;

/// A sequence jump within this many packets forward is in order (RFC 3550 A.1).
const MAX_DROPOUT: u16 = 3000;
/// A jump within this many packets backward is a reordering or a duplicate.
const MAX_MISORDER: u16 = 100;
const SEQ_MOD: u64 = 1 << 16;

/// Reception statistics of one RTP source (RFC 3550 appendix A).
#[derive(Clone, Debug)]
pub struct ReceiverStats {
    clock_rate: u32,
    source: Option<Source>,
}

#[derive(Clone, Debug)]
struct Source {
    ssrc: u32,
    max_seq: u16,
    /// Shifted count of sequence number cycles (multiples of 2^16).
    cycles: u64,
    base_seq: u64,
    bad_seq: Option<u16>,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    transit: Option<u32>,
    /// Interarrival jitter in timestamp units (A.8, kept as a float).
    jitter: f64,
}

/// The numbers of an RTCP report block about one source (RFC 3550 §6.4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReportBlock {
    /// Fraction of packets lost since the previous report, in 1/256.
    pub fraction_lost: u8,
    /// Packets lost since the start (expected − received; negative with duplicates), clamped
    /// to the 24-bit signed field.
    pub cumulative_lost: i32,
    /// Extended highest sequence number received (cycles in the high 16 bits).
    pub extended_highest_seq: u32,
    /// Interarrival jitter, timestamp units.
    pub jitter: u32,
}

impl ReceiverStats {
    /// Statistics for a stream whose RTP clock runs at `clock_rate` Hz.
    pub fn new(clock_rate: u32) -> ReceiverStats {
        ReceiverStats {
            clock_rate: clock_rate.max(1),
            source: None,
        }
    }

    /// Accounts one packet: its SSRC, sequence number and RTP timestamp, and when it arrived
    /// on the caller's clock, in microseconds.
    pub fn on_packet(&mut self, ssrc: u32, seq: u16, timestamp: u32, arrival_us: u64) {
        let src = match &mut self.source {
            Some(s) if s.ssrc == ssrc => s,
            _ => self.source.insert(Source::new(ssrc, seq)),
        };
        if !src.update_seq(seq) {
            return;
        }
        // A.8, in timestamp units modulo 2^32 (wrapping arithmetic keeps differences right).
        let arrival = (u128::from(arrival_us) * u128::from(self.clock_rate) / 1_000_000) as u32;
        let transit = arrival.wrapping_sub(timestamp);
        if let Some(prev) = src.transit {
            let d = f64::from((transit.wrapping_sub(prev) as i32).unsigned_abs());
            src.jitter += (d - src.jitter) / 16.0;
        }
        src.transit = Some(transit);
    }

    /// The SSRC being measured.
    pub fn ssrc(&self) -> Option<u32> {
        self.source.as_ref().map(|s| s.ssrc)
    }

    /// Extended highest sequence number received.
    pub fn extended_highest_seq(&self) -> u64 {
        self.source
            .as_ref()
            .map_or(0, |s| s.cycles + u64::from(s.max_seq))
    }

    /// Packets expected: extended highest − first + 1.
    pub fn expected(&self) -> u64 {
        self.source.as_ref().map_or(0, Source::expected)
    }

    /// Packets received (duplicates included, as RFC 3550 counts them).
    pub fn received(&self) -> u64 {
        self.source.as_ref().map_or(0, |s| s.received)
    }

    /// Cumulative packets lost: expected − received (negative when duplicates outnumber losses).
    pub fn lost(&self) -> i64 {
        self.source
            .as_ref()
            .map_or(0, |s| s.expected() as i64 - s.received as i64)
    }

    /// Cumulative loss in percent of the packets expected (0 when nothing is missing).
    pub fn loss_percent(&self) -> f64 {
        match self.expected() {
            0 => 0.0,
            e => self.lost().max(0) as f64 * 100.0 / e as f64,
        }
    }

    /// Interarrival jitter in timestamp units (A.8).
    pub fn jitter(&self) -> f64 {
        self.source.as_ref().map_or(0.0, |s| s.jitter)
    }

    /// Interarrival jitter in milliseconds.
    pub fn jitter_ms(&self) -> f64 {
        self.jitter() * 1000.0 / f64::from(self.clock_rate)
    }

    /// The report block for an RTCP RR/SR, and the start of a new report interval (A.3).
    pub fn report(&mut self) -> ReportBlock {
        let extended_highest_seq = self.extended_highest_seq() as u32; // 32-bit on the wire
        let cumulative_lost = self.lost().clamp(-(1 << 23), (1 << 23) - 1) as i32;
        let Some(s) = &mut self.source else {
            return ReportBlock {
                fraction_lost: 0,
                cumulative_lost: 0,
                extended_highest_seq: 0,
                jitter: 0,
            };
        };
        let expected = s.expected();
        let expected_interval = expected - s.expected_prior.min(expected);
        let received_interval = s.received - s.received_prior.min(s.received);
        s.expected_prior = expected;
        s.received_prior = s.received;
        let lost_interval = expected_interval as i64 - received_interval as i64;
        let fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            // lost_interval ≤ expected_interval, so the fraction is at most 256: clamp to 255.
            ((lost_interval as u64 * 256) / expected_interval).min(255) as u8
        };
        ReportBlock {
            fraction_lost,
            cumulative_lost,
            extended_highest_seq,
            jitter: s.jitter.round() as u32,
        }
    }

    /// The E-model estimate for this stream, given the codec and the one-way delay in ms (from
    /// RTCP round trips, or a configured guess).
    pub fn estimate(&self, codec: CodecImpairment, one_way_delay_ms: f64) -> QualityEstimate {
        estimate(
            codec,
            self.loss_percent(),
            one_way_delay_ms,
            self.jitter_ms(),
        )
    }
}

impl Source {
    fn new(ssrc: u32, seq: u16) -> Source {
        Source {
            ssrc,
            max_seq: seq,
            cycles: 0,
            base_seq: u64::from(seq),
            bad_seq: None,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            transit: None,
            jitter: 0.0,
        }
    }

    fn expected(&self) -> u64 {
        (self.cycles + u64::from(self.max_seq) + 1).saturating_sub(self.base_seq)
    }

    /// A.1 `update_seq` (after `init_seq`, without probation). Whether the packet counts.
    fn update_seq(&mut self, seq: u16) -> bool {
        let udelta = seq.wrapping_sub(self.max_seq);
        if udelta < MAX_DROPOUT {
            if seq < self.max_seq {
                self.cycles += SEQ_MOD;
            }
            self.max_seq = seq;
        } else if u32::from(udelta) <= (1 << 16) - u32::from(MAX_MISORDER) {
            // A very large jump: believe it only if the next packet follows it.
            if self.bad_seq == Some(seq) {
                let (ssrc, transit, jitter) = (self.ssrc, self.transit, self.jitter);
                *self = Source::new(ssrc, seq);
                self.transit = transit;
                self.jitter = jitter;
            } else {
                self.bad_seq = Some(seq.wrapping_add(1));
                return false;
            }
        }
        // Else a duplicate or a reordered packet: counted, nothing else changes.
        self.received += 1;
        true
    }
}

/// A codec's equipment impairment `Ie` and packet-loss robustness `Bpl` (ITU-T G.113 App. I).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CodecImpairment {
    /// Equipment impairment factor with no loss.
    pub ie: f64,
    /// Packet-loss robustness factor (higher: degrades more gracefully).
    pub bpl: f64,
}

impl CodecImpairment {
    /// G.711 with packet loss concealment (G.711 Appendix I): `Ie` 0, `Bpl` 25.1.
    pub const G711_PLC: CodecImpairment = CodecImpairment { ie: 0.0, bpl: 25.1 };
    /// G.711 without concealment: `Ie` 0, `Bpl` 4.3.
    pub const G711: CodecImpairment = CodecImpairment { ie: 0.0, bpl: 4.3 };
    /// G.729A with its own concealment (and VAD off): `Ie` 11, `Bpl` 19.
    pub const G729A: CodecImpairment = CodecImpairment {
        ie: 11.0,
        bpl: 19.0,
    };

    /// The values for a codec of this crate, assuming loss is concealed (the jitter buffer
    /// reports losses and [`crate::plc`] conceals them). G.722, L16 and Opus score as G.711:
    /// the narrowband model has no better (G.113 lists no Opus values).
    pub fn of(kind: CodecKind) -> CodecImpairment {
        match kind {
            CodecKind::Pcmu
            | CodecKind::Pcma
            | CodecKind::G722
            | CodecKind::L16 { .. }
            | CodecKind::Opus { .. } => CodecImpairment::G711_PLC,
        }
    }
}

/// An E-model result.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QualityEstimate {
    /// Transmission rating factor R, 0..=100 (93.2 is a perfect narrowband call).
    pub r: f64,
    /// Estimated mean opinion score, 1..=4.5.
    pub mos: f64,
}

/// The E-model estimate (see the module documentation) from the codec, random packet loss in
/// percent, one-way network delay and interarrival jitter in ms.
pub fn estimate(
    codec: CodecImpairment,
    loss_percent: f64,
    one_way_delay_ms: f64,
    jitter_ms: f64,
) -> QualityEstimate {
    let r = r_factor(codec, loss_percent, 1.0, one_way_delay_ms, jitter_ms);
    QualityEstimate {
        r,
        mos: mos_from_r(r),
    }
}

/// The R factor with a burst ratio (`BurstR` 1 for random loss, > 1 for bursty loss).
pub fn r_factor(
    codec: CodecImpairment,
    loss_percent: f64,
    burst_ratio: f64,
    one_way_delay_ms: f64,
    jitter_ms: f64,
) -> f64 {
    let ppl = finite_or_zero(loss_percent).clamp(0.0, 100.0);
    let burst = finite_or_zero(burst_ratio).max(1.0);
    let ta =
        finite_or_zero(one_way_delay_ms).max(0.0) + 2.0 * finite_or_zero(jitter_ms).max(0.0) + 10.0;
    let id = 0.024 * ta + if ta > 177.3 { 0.11 * (ta - 177.3) } else { 0.0 };
    let ie_eff = codec.ie + (95.0 - codec.ie) * ppl / (ppl / burst + codec.bpl);
    (93.2 - id - ie_eff).clamp(0.0, 100.0)
}

/// MOS from R (G.107 Annex B).
pub fn mos_from_r(r: f64) -> f64 {
    if r.is_nan() || r <= 0.0 {
        1.0
    } else if r >= 100.0 {
        4.5
    } else {
        1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7e-6
    }
}

fn finite_or_zero(x: f64) -> f64 {
    if x.is_finite() {
        x
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Packet `i` sent every 20 ms at 8 kHz, arriving `extra_us(i)` after its send time.
    fn feed(stats: &mut ReceiverStats, seqs: impl IntoIterator<Item = u16>, seq0: u16) {
        for seq in seqs {
            let i = u64::from(seq.wrapping_sub(seq0));
            stats.on_packet(7, seq, (i * 160) as u32, i * 20_000);
        }
    }

    #[test]
    fn counts_expected_received_and_lost() {
        let mut s = ReceiverStats::new(8000);
        feed(&mut s, (0..100).filter(|i| i % 20 != 3), 0);
        assert_eq!((s.expected(), s.received(), s.lost()), (100, 95, 5));
        assert_eq!(s.loss_percent(), 5.0);
        let r = s.report();
        assert_eq!(r.fraction_lost, 12, "5/100 × 256 = 12.8, truncated");
        assert_eq!((r.cumulative_lost, r.extended_highest_seq), (5, 99));
        // Next interval: no loss.
        feed(&mut s, 100..150, 0);
        let r = s.report();
        assert_eq!((r.fraction_lost, r.cumulative_lost), (0, 5));
        // Then half of the next 20 lost.
        feed(&mut s, (150..170).filter(|i| i % 2 == 0), 0);
        assert_eq!(
            s.report().fraction_lost,
            121,
            "10 of 19 expected: 10·256/19"
        );
    }

    #[test]
    fn extends_the_sequence_across_the_wrap() {
        let mut s = ReceiverStats::new(8000);
        feed(
            &mut s,
            (0..40u16).map(|i| 65_520u16.wrapping_add(i)),
            65_520,
        );
        assert_eq!(s.extended_highest_seq(), 65_536 + 23);
        assert_eq!((s.expected(), s.lost()), (40, 0));
        assert_eq!(s.report().extended_highest_seq, 65_559);
    }

    #[test]
    fn duplicates_reordering_and_jumps() {
        let mut s = ReceiverStats::new(8000);
        feed(&mut s, [0, 1, 3, 2, 4, 4, 4], 0);
        assert_eq!((s.expected(), s.received(), s.lost()), (5, 7, -2));
        assert_eq!(s.loss_percent(), 0.0);
        assert_eq!(s.report().cumulative_lost, -2);
        // One wild packet is ignored…
        s.on_packet(7, 30_000, 0, 200_000);
        assert_eq!((s.extended_highest_seq(), s.received()), (4, 7));
        // …two in a row restart the count.
        s.on_packet(7, 40_000, 0, 220_000);
        s.on_packet(7, 40_001, 160, 240_000);
        assert_eq!((s.extended_highest_seq(), s.expected()), (40_001, 1));
        // A new SSRC starts over.
        s.on_packet(8, 5, 0, 260_000);
        assert_eq!((s.ssrc(), s.expected(), s.received()), (Some(8), 1, 1));
    }

    #[test]
    fn jitter_follows_appendix_a8() {
        // Perfectly paced: no jitter.
        let mut s = ReceiverStats::new(8000);
        feed(&mut s, 0..200, 0);
        assert_eq!(s.jitter(), 0.0);
        // One packet 10 ms late (80 units): J = 80/16 = 5, then J decays by 15/16 as the next
        // packet is on time again but 80 units off the late one: J = 5 + (80 − 5)/16.
        let mut s = ReceiverStats::new(8000);
        s.on_packet(1, 0, 0, 0);
        s.on_packet(1, 1, 160, 30_000);
        assert_eq!(s.jitter(), 5.0);
        s.on_packet(1, 2, 320, 40_000);
        assert_eq!(s.jitter(), 5.0 + 75.0 / 16.0);
        // Alternating 0 / +10 ms: every |D| is 80 units, J converges to 80 units = 10 ms.
        let mut s = ReceiverStats::new(8000);
        for i in 0..400u64 {
            s.on_packet(1, i as u16, (i * 160) as u32, i * 20_000 + (i % 2) * 10_000);
        }
        assert!((s.jitter() - 80.0).abs() < 0.01, "{}", s.jitter());
        assert!((s.jitter_ms() - 10.0).abs() < 0.01);
        assert_eq!(s.report().jitter, 80);
        // Timestamps wrapping do not disturb it.
        let mut s = ReceiverStats::new(8000);
        for i in 0..100u64 {
            let ts = (u32::MAX - 4000).wrapping_add((i * 160) as u32);
            s.on_packet(1, i as u16, ts, 1_000_000 + i * 20_000);
        }
        assert_eq!(s.jitter(), 0.0);
    }

    #[test]
    fn mos_from_r_known_points() {
        assert_eq!(mos_from_r(-5.0), 1.0);
        assert_eq!(mos_from_r(0.0), 1.0);
        assert_eq!(mos_from_r(100.0), 4.5);
        assert!(
            (mos_from_r(93.2) - 4.41).abs() < 0.005,
            "{}",
            mos_from_r(93.2)
        );
        assert!((mos_from_r(50.0) - 2.575).abs() < 1e-9);
        assert!((mos_from_r(80.0) - 4.024).abs() < 1e-9);
        assert_eq!(mos_from_r(f64::NAN), 1.0);
    }

    #[test]
    fn e_model_reference_cases() {
        let g711 = CodecImpairment::G711_PLC;
        let clean = estimate(g711, 0.0, 20.0, 0.0);
        assert!((clean.r - 92.48).abs() < 0.01, "{clean:?}");
        assert!(
            (clean.mos - 4.4).abs() < 0.02,
            "G.711, no loss, low delay: {clean:?}"
        );
        let lossy = estimate(g711, 5.0, 20.0, 0.0);
        // Ie,eff = 95·5/(5 + 25.1) = 15.78.
        assert!((lossy.r - (92.48 - 15.78)).abs() < 0.01, "{lossy:?}");
        assert!((3.85..3.95).contains(&lossy.mos), "5% loss: {lossy:?}");
        let no_plc = estimate(CodecImpairment::G711, 5.0, 20.0, 0.0);
        assert!(
            no_plc.mos < lossy.mos - 1.0,
            "concealment matters: {no_plc:?}"
        );
        let far = estimate(g711, 0.0, 400.0, 0.0);
        // Ta = 410 ms: Id = 35.4, R = 57.8 ("many users dissatisfied").
        assert!((2.9..3.1).contains(&far.mos), "400 ms one way: {far:?}");
        let jittery = estimate(g711, 0.0, 20.0, 40.0);
        assert!(jittery.mos < clean.mos && jittery.mos > 4.3, "{jittery:?}");
        let g729 = estimate(CodecImpairment::G729A, 0.0, 20.0, 0.0);
        assert!((4.0..4.1).contains(&g729.mos), "{g729:?}");
        let bursty = r_factor(g711, 5.0, 2.0, 20.0, 0.0);
        assert!(bursty < lossy.r);
        // Garbage in does not give garbage out.
        let odd = estimate(g711, f64::NAN, f64::INFINITY, -3.0);
        assert!((odd.r - (clean.r + 0.024 * 20.0)).abs() < 1e-9, "{odd:?}");
        assert_eq!(CodecImpairment::of(CodecKind::Pcma), g711);
    }

    #[test]
    fn loss_lowers_the_mos_monotonically() {
        let mut last = f64::INFINITY;
        for loss in [0.0, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0] {
            let m = estimate(CodecImpairment::G711_PLC, loss, 50.0, 5.0).mos;
            assert!(m < last, "{loss}%: {m}");
            last = m;
        }
    }

    #[test]
    fn stats_feed_the_estimate() {
        let mut s = ReceiverStats::new(8000);
        feed(&mut s, (0..1000).filter(|i| i % 20 != 3), 0);
        let q = s.estimate(CodecImpairment::G711_PLC, 20.0);
        assert_eq!(q, estimate(CodecImpairment::G711_PLC, 5.0, 20.0, 0.0));
    }
}
