//! The engine's own media into a leg: clip players and DTMF senders, each a task on the
//! session's runtime sending from the leg's RTP socket on the leg's [`super::plane::OutStream`].

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::plane::{send_leg, write_rtp, CountGuard};
use super::{Kind, Leg, LegFormat, MediaEvent, Shared, Sockets};
use crate::dtmf::{Digit, DtmfTone, EventGenerator};
use crate::pcm::Pcm;

/// Silence sent after an in-band digit, so the far end's detector sees the key released.
const INBAND_GAP_MS: u32 = 60;

fn frame_interval() -> tokio::time::Interval {
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    // A late tick sends the missed frames at once: the far end's jitter buffer copes, and the
    // clip keeps its length.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    tick
}

/// Sends one encoded 20 ms frame into `leg` on the engine's stream.
pub(super) fn send_frame(
    shared: &Shared,
    sockets: &Sockets,
    leg: Leg,
    format: LegFormat,
    marker: bool,
    payload: &[u8],
    packet: &mut Vec<u8>,
) {
    let (clock, step) = (
        format.codec.clock_rate(),
        format.codec.timestamp_per_frame(),
    );
    let (seq, ts, ssrc) = {
        let mut o = shared.plane.out(leg);
        let (seq, ts) = o.audio(Instant::now(), clock, step);
        (seq, ts, o.ssrc)
    };
    packet.clear();
    write_rtp(packet, marker, format.payload_type, seq, ts, ssrc, payload);
    let dst = shared.latch(leg, Kind::Rtp).remote;
    let sock = &sockets.socks[leg.idx()][Kind::Rtp as usize];
    send_leg(&shared.plane, leg, sock, dst, packet);
}

/// Plays `clip` into `leg` `loops` times (0: until aborted), then reports `PlayDone`.
pub(super) async fn play(
    shared: Arc<Shared>,
    sockets: Arc<Sockets>,
    leg: Leg,
    format: LegFormat,
    clip: Pcm,
    loops: u32,
    id: u64,
) {
    let done = || shared.plane.emit(MediaEvent::PlayDone { leg, id });
    let rate = format.codec.sample_rate();
    let clip = if clip.rate == rate {
        clip
    } else {
        // Resampling a long prompt takes a while: off the media threads.
        match tokio::task::spawn_blocking(move || clip.resampled(rate)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                tracing::warn!(?leg, id, error = %e, "clip cannot be resampled: not played");
                return done();
            }
            Err(e) => {
                tracing::warn!(?leg, id, error = %e, "resampling failed: not played");
                return done();
            }
        }
    };
    let mut codec = match format.codec.try_codec() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(?leg, id, error = %e, "no encoder: clip not played");
            return done();
        }
    };
    if clip.samples.is_empty() {
        return done();
    }
    let lp = &shared.plane.legs[leg.idx()];
    let inject = CountGuard::new(&lp.injecting);
    let spf = format.codec.samples_per_frame();
    let (mut frame, mut payload, mut packet) = (vec![0i16; spf], Vec::new(), Vec::new());
    let (mut pos, mut played, mut first) = (0usize, 0u32, true);
    let mut tick = frame_interval();
    loop {
        tick.tick().await;
        if lp.dtmf_busy.load(Ordering::Acquire) != 0 {
            continue; // a digit is being sent: the clip waits
        }
        let n = (clip.samples.len() - pos).min(spf);
        frame[..n].copy_from_slice(&clip.samples[pos..pos + n]);
        frame[n..].fill(0);
        payload.clear();
        codec.encode(&frame, &mut payload);
        send_frame(
            &shared,
            &sockets,
            leg,
            format,
            std::mem::take(&mut first),
            &payload,
            &mut packet,
        );
        pos += n;
        if pos >= clip.samples.len() {
            played += 1;
            if loops != 0 && played >= loops {
                break;
            }
            pos = 0;
        }
    }
    drop(inject);
    done();
}

/// Sends one key press into `leg`: RFC 4733 if the leg has telephone-event, else in-band.
pub(super) async fn dtmf(
    shared: Arc<Shared>,
    sockets: Arc<Sockets>,
    leg: Leg,
    format: LegFormat,
    digit: Digit,
    duration_ms: u32,
) {
    let lp = &shared.plane.legs[leg.idx()];
    let _inject = CountGuard::new(&lp.injecting);
    let _busy = CountGuard::new(&lp.dtmf_busy);
    let mut packet = Vec::new();
    let clock = format.codec.clock_rate();
    let Some(pt) = format.dtmf_payload_type else {
        // In-band: the tone pair in the leg's codec, then a short silence.
        let rate = format.codec.sample_rate();
        let n = (u64::from(rate) * u64::from(duration_ms) / 1000) as usize;
        let mut pcm = DtmfTone::standard(digit, rate).samples(n);
        pcm.resize(n + (rate * INBAND_GAP_MS / 1000) as usize, 0);
        let mut codec = match format.codec.try_codec() {
            Ok(c) => c,
            Err(e) => return tracing::warn!(?leg, error = %e, "no encoder: digit not sent"),
        };
        let mut payload = Vec::new();
        let mut tick = frame_interval();
        let spf = format.codec.samples_per_frame();
        for (i, chunk) in pcm.chunks(spf).enumerate() {
            tick.tick().await;
            let mut frame = chunk.to_vec();
            frame.resize(spf, 0);
            payload.clear();
            codec.encode(&frame, &mut payload);
            send_frame(
                &shared,
                &sockets,
                leg,
                format,
                i == 0,
                &payload,
                &mut packet,
            );
        }
        return;
    };
    let generator = EventGenerator {
        clock_rate: clock,
        interval_ms: 50,
        end_packets: 3,
        volume: 10,
    };
    let start = Instant::now();
    let start_ts = shared.plane.out(leg).sync(start, clock);
    let sock = &sockets.socks[leg.idx()][Kind::Rtp as usize];
    for p in generator.press(digit, start_ts, duration_ms) {
        let at =
            start + Duration::from_micros(u64::from(p.send_offset) * 1_000_000 / u64::from(clock));
        tokio::time::sleep_until(at.into()).await;
        let (seq, ssrc) = {
            let mut o = shared.plane.out(leg);
            (o.next_seq(), o.ssrc)
        };
        packet.clear();
        let bytes = p.payload_bytes();
        write_rtp(&mut packet, p.marker, pt, seq, p.timestamp, ssrc, &bytes);
        let dst = shared.latch(leg, Kind::Rtp).remote;
        send_leg(&shared.plane, leg, sock, dst, &packet);
    }
    let units = (u64::from(duration_ms) * u64::from(clock) / 1000) as u32;
    shared.plane.out(leg).after_event(
        start_ts,
        units,
        start,
        Duration::from_millis(u64::from(duration_ms)),
    );
}
