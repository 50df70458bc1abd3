//! The tap of a session: one task that takes copies of the RTP received on the legs whose
//! audio is wanted (recording, subscribers), puts each leg's packets through a jitter buffer,
//! decodes them (concealing losses) every 20 ms, and hands the PCM to the stereo WAV writer and
//! to every subscriber of the leg. It sleeps when nobody wants audio; the pumps then stop
//! copying packets to it.

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{mpsc, Notify};

use super::{Leg, Shared};
use crate::codec::{Codec, CodecKind};
use crate::jitter::{JitterBuffer, JitterConfig, Packet, Pop};
use crate::plc::Concealer;
use crate::recording::{LegAudio, Side, StereoWavWriter};
use crate::resample::Resampler;

/// Packets queued from the pumps to the tap task (both legs): about 2.5 s of a call.
pub(super) const TAP_QUEUE: usize = 256;
/// Frames queued to one subscriber (1 s); beyond, frames are dropped and counted.
pub(super) const SUBSCRIBER_QUEUE: usize = 50;

/// A copy of one received RTP packet for the tap.
#[derive(Debug)]
pub(super) struct TapPacket {
    pub leg: Leg,
    pub kind: CodecKind,
    pub ssrc: u32,
    pub seq: u16,
    pub timestamp: u32,
    pub marker: bool,
    pub payload: Vec<u8>,
    pub arrival_ms: u64,
}

/// What the session's methods and the tap task share.
#[derive(Default)]
pub(super) struct Tap {
    state: Mutex<TapState>,
    pub notify: Notify,
}

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tap").finish_non_exhaustive()
    }
}

impl Tap {
    pub fn state(&self) -> MutexGuard<'_, TapState> {
        // A panic mid-update leaves at worst a half-fed subscriber: still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Consumers of the decoded audio.
#[derive(Default)]
pub(super) struct TapState {
    pub recorder: Option<Recorder>,
    pub subs: [Vec<Subscriber>; 2],
    /// Frames a slow subscriber did not take, per leg.
    pub frames_dropped: [u64; 2],
}

impl TapState {
    /// Whether the audio received on `leg` is wanted.
    pub fn wants(&self, leg: Leg) -> bool {
        self.recorder.is_some() || !self.subs[leg.idx()].is_empty()
    }

    /// Tells the pumps which legs to copy packets from.
    pub fn publish(&self, shared: &Shared) {
        let want = [self.wants(Leg::A), self.wants(Leg::B)];
        let now = {
            let c = shared.plane.config();
            [c.legs[0].tap, c.legs[1].tap]
        };
        if want != now {
            shared.plane.update(|c| {
                c.legs[0].tap = want[0];
                c.legs[1].tap = want[1];
            });
        }
    }

    fn deliver(&mut self, leg: Leg, kind: CodecKind, ssrc: u32, ts: u32, pcm: &[i16], now: u64) {
        if let Some(r) = self.recorder.as_mut().filter(|r| !r.failed) {
            let side = match leg {
                Leg::A => Side::Caller,
                Leg::B => Side::Callee,
            };
            let audio = LegAudio {
                ssrc,
                timestamp: ts,
                clock_rate: kind.clock_rate(),
                sample_rate: kind.sample_rate(),
                samples: pcm,
            };
            if let Err(e) = r.writer.push(side, audio, now) {
                tracing::warn!(path = %r.path.display(), error = %e, "recording failed");
                r.failed = true;
            }
        }
        let dropped = &mut self.frames_dropped[leg.idx()];
        self.subs[leg.idx()].retain_mut(|s| s.feed(kind.sample_rate(), pcm, dropped));
    }
}

/// A recording in progress.
pub(super) struct Recorder {
    pub writer: StereoWavWriter<BufWriter<File>>,
    pub path: PathBuf,
    pub rate: u32,
    /// A write failed: nothing more is written (the file is still finished on stop).
    pub failed: bool,
}

/// One PCM fork of a leg.
pub(super) struct Subscriber {
    tx: mpsc::Sender<Vec<i16>>,
    rate: u32,
    /// Rate of the decoded audio the resampler was made for (0: none yet).
    from: u32,
    resampler: Option<Resampler>,
    fifo: Vec<i16>,
}

impl Subscriber {
    pub fn new(tx: mpsc::Sender<Vec<i16>>, rate: u32) -> Subscriber {
        Subscriber {
            tx,
            rate,
            from: 0,
            resampler: None,
            fifo: Vec::with_capacity(rate as usize / 25),
        }
    }

    /// Converts and sends 20 ms frames; false once the receiver is gone (unsubscribed).
    fn feed(&mut self, from: u32, pcm: &[i16], dropped: &mut u64) -> bool {
        if self.tx.is_closed() {
            return false;
        }
        if from != self.from {
            self.from = from;
            self.fifo.clear();
            self.resampler = None;
            if from != self.rate {
                match Resampler::new(from, self.rate) {
                    Ok(r) => self.resampler = Some(r),
                    Err(e) => tracing::warn!(from, to = self.rate, error = %e, "subscriber"),
                }
            }
        }
        match self.resampler.as_mut() {
            Some(r) => r.process(pcm, &mut self.fifo),
            None if from == self.rate => self.fifo.extend_from_slice(pcm),
            None => return true,
        }
        let n = (self.rate / 50).max(1) as usize;
        let mut start = 0;
        while self.fifo.len() - start >= n {
            let frame = self.fifo[start..start + n].to_vec();
            start += n;
            match self.tx.try_send(frame) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => *dropped += 1,
                Err(mpsc::error::TrySendError::Closed(_)) => return false,
            }
        }
        self.fifo.drain(..start);
        true
    }
}

/// Jitter buffer and decoder of one leg's received stream.
struct LegDecode {
    kind: CodecKind,
    jitter: JitterBuffer,
    decoder: Box<dyn Codec>,
    concealer: Concealer,
    ssrc: u32,
    pcm: Vec<i16>,
}

impl LegDecode {
    fn new(kind: CodecKind) -> Option<LegDecode> {
        let decoder = kind
            .try_codec()
            .map_err(|e| tracing::warn!(codec = ?kind, error = %e, "tap: no decoder"))
            .ok()?;
        Some(LegDecode {
            kind,
            jitter: JitterBuffer::new(JitterConfig::new(kind.clock_rate())),
            decoder,
            concealer: Concealer::default(),
            ssrc: 0,
            pcm: Vec::with_capacity(kind.samples_per_frame()),
        })
    }

    /// The frame due now in `self.pcm`, with its SSRC and RTP timestamp.
    fn pop(&mut self, now_ms: u64) -> Option<(u32, u32)> {
        self.pcm.clear();
        let spf = self.kind.samples_per_frame();
        match self.jitter.pop(now_ms) {
            Pop::Frame(p) => {
                match self.decoder.decode(&p.payload, &mut self.pcm) {
                    Ok(()) if !self.pcm.is_empty() => self.concealer.good(&self.pcm),
                    _ => self.conceal(spf),
                }
                self.ssrc = p.ssrc;
                Some((p.ssrc, p.timestamp))
            }
            Pop::Concealed { timestamp } => {
                self.conceal(spf);
                Some((self.ssrc, timestamp))
            }
            Pop::Empty => None,
        }
    }

    fn conceal(&mut self, spf: usize) {
        self.pcm.clear();
        if !self.decoder.conceal(None, spf, &mut self.pcm) {
            self.pcm.resize(spf, 0);
            self.concealer.conceal(&mut self.pcm);
        }
    }
}

/// The tap task of a session (see the module documentation).
pub(super) async fn run(shared: Arc<Shared>, tap: Arc<Tap>, mut rx: mpsc::Receiver<TapPacket>) {
    let mut legs: [Option<LegDecode>; 2] = [None, None];
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        let idle = {
            let st = tap.state();
            !st.wants(Leg::A) && !st.wants(Leg::B)
        };
        if idle {
            while rx.try_recv().is_ok() {}
            legs = [None, None];
            tap.notify.notified().await;
            tick.reset();
            continue;
        }
        tick.tick().await;
        while let Ok(p) = rx.try_recv() {
            let slot = &mut legs[p.leg.idx()];
            if slot.as_ref().is_none_or(|d| d.kind != p.kind) {
                // A new leg or a format change (re-INVITE): a fresh decoder and buffer; the
                // writer re-anchors the new stream where the old one ended.
                *slot = LegDecode::new(p.kind);
            }
            if let Some(d) = slot.as_mut() {
                let packet = Packet {
                    ssrc: p.ssrc,
                    seq: p.seq,
                    timestamp: p.timestamp,
                    marker: p.marker,
                    payload: p.payload,
                };
                d.jitter.push(packet, p.arrival_ms);
            }
        }
        let now = shared.now_ms();
        let mut st = tap.state();
        for leg in [Leg::A, Leg::B] {
            if let Some(d) = legs[leg.idx()].as_mut() {
                if let Some((ssrc, ts)) = d.pop(now) {
                    st.deliver(leg, d.kind, ssrc, ts, &d.pcm, now);
                }
            }
            st.subs[leg.idx()].retain(|s| !s.tx.is_closed());
        }
        if let Some(r) = st.recorder.as_mut().filter(|r| !r.failed) {
            if let Err(e) = r.writer.advance(now) {
                tracing::warn!(path = %r.path.display(), error = %e, "recording failed");
                r.failed = true;
            }
        }
        st.publish(&shared);
    }
}
