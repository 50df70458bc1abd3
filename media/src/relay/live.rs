//! Live PCM sources into a leg: [`LiveAudio`] is the producer's handle, [`run`] the task that
//! paces the queued frames into the leg on the engine's outgoing stream, as a player does.
//!
//! The queue is bounded ([`LIVE_QUEUE`] frames); a push into a full queue drops the oldest
//! frame. Every 20 ms the task takes one frame; when the queue is empty it sends a frame of
//! silence (comfort silence), so the far end's stream stays continuous (timestamps, jitter
//! buffer, NAT bindings) whether or not the producer kept up.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::plane::CountGuard;
use super::player::send_frame;
use super::{Leg, LegFormat, Shared, Sockets};
use crate::codec::{Codec, FRAME_MS};
use crate::resample::Resampler;

/// Frames a [`LiveAudio`] queue holds (160 ms); a push beyond drops the oldest.
pub const LIVE_QUEUE: usize = 8;

/// What the producer's handle and the sending task share.
#[derive(Debug, Default)]
struct Feed {
    queue: Mutex<VecDeque<Vec<i16>>>,
    /// The handle was dropped: the task ends at its next tick.
    closed: AtomicBool,
    /// The task is gone (replaced by a play or another stream, stopped, or never started).
    ended: AtomicBool,
    /// Frames dropped because the queue was full.
    dropped: AtomicU64,
    /// Ticks that found the queue empty (a frame of silence was sent).
    underruns: AtomicU64,
}

impl Feed {
    fn queue(&self) -> MutexGuard<'_, VecDeque<Vec<i16>>> {
        // Plain pushes and pops: a poisoned queue is still consistent.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A live PCM source into one leg, from [`super::RelaySession::stream`]: push 20 ms frames of
/// mono PCM at the stream's rate; the leg's player encodes them in the leg's format and sends
/// them, one every 20 ms. Cheap and `Send`; [`LiveAudio::push`] never blocks. Dropping the
/// handle ends the stream.
#[derive(Debug)]
pub struct LiveAudio {
    feed: Arc<Feed>,
    rate: u32,
}

/// Ends the stream when the sending task's future is dropped (returned, aborted, or never
/// polled): pushes then return false.
pub(super) struct EndOnDrop(Arc<Feed>);

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        self.0.ended.store(true, Ordering::Release);
        self.0.queue().clear();
    }
}

impl LiveAudio {
    /// A handle and the guard its task holds.
    pub(super) fn new(rate: u32) -> (LiveAudio, EndOnDrop) {
        let feed = Arc::new(Feed::default());
        (
            LiveAudio {
                feed: feed.clone(),
                rate,
            },
            EndOnDrop(feed),
        )
    }

    /// Queues one frame (20 ms at [`LiveAudio::rate`]; a shorter one is padded with silence, a
    /// longer one cut). A full queue drops its oldest frame. Returns false, dropping the frame,
    /// once the stream has ended: a `play`/`stop_play`/another `stream` on the leg replaced it,
    /// the session stopped, or the rate was unsupported.
    pub fn push(&self, frame: Vec<i16>) -> bool {
        if self.feed.ended.load(Ordering::Acquire) {
            return false;
        }
        let mut q = self.feed.queue();
        if q.len() >= LIVE_QUEUE {
            q.pop_front();
            self.feed.dropped.fetch_add(1, Ordering::Relaxed);
        }
        q.push_back(frame);
        true
    }

    /// Whether the stream still runs (see [`LiveAudio::push`]).
    pub fn is_live(&self) -> bool {
        !self.feed.ended.load(Ordering::Acquire)
    }

    /// The rate of the frames pushed, Hz.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Frames waiting to be sent.
    pub fn queued(&self) -> usize {
        self.feed.queue().len()
    }

    /// Frames dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.feed.dropped.load(Ordering::Relaxed)
    }

    /// Ticks so far that found the queue empty (a frame of silence was sent instead).
    pub fn underruns(&self) -> u64 {
        self.feed.underruns.load(Ordering::Relaxed)
    }
}

impl Drop for LiveAudio {
    fn drop(&mut self) {
        self.feed.closed.store(true, Ordering::Release);
    }
}

/// The leg's encoder state for the format in force.
struct Encoder {
    format: LegFormat,
    codec: Box<dyn Codec>,
    /// `None` when the stream's rate is the codec's.
    resampler: Option<Resampler>,
    /// PCM at the codec's rate waiting to be encoded.
    fifo: Vec<i16>,
    frame: Vec<i16>,
    payload: Vec<u8>,
}

impl Encoder {
    fn new(format: LegFormat, rate: u32, leg: Leg) -> Option<Encoder> {
        let codec = format
            .codec
            .try_codec()
            .map_err(|e| tracing::warn!(?leg, error = %e, "live stream: no encoder"))
            .ok()?;
        let to = format.codec.sample_rate();
        let resampler = if to == rate {
            None
        } else {
            Some(
                Resampler::new(rate, to)
                    .map_err(|e| tracing::warn!(?leg, rate, to, error = %e, "live stream"))
                    .ok()?,
            )
        };
        Some(Encoder {
            format,
            codec,
            resampler,
            fifo: Vec::with_capacity(2 * format.codec.samples_per_frame()),
            frame: Vec::new(),
            payload: Vec::new(),
        })
    }
}

/// The task of one live stream into `leg` (see the module documentation).
pub(super) async fn run(
    shared: Arc<Shared>,
    sockets: Arc<Sockets>,
    leg: Leg,
    rate: u32,
    end: EndOnDrop,
) {
    let feed = end.0.clone();
    let lp = &shared.plane.legs[leg.idx()];
    let _inject = CountGuard::new(&lp.injecting);
    let n = (rate * FRAME_MS / 1000) as usize;
    let mut input: Vec<i16> = Vec::with_capacity(n);
    let (mut gen, mut enc): (Option<u64>, Option<Encoder>) = (None, None);
    let (mut packet, mut first) = (Vec::new(), true);
    let mut tick = tokio::time::interval(Duration::from_millis(u64::from(FRAME_MS)));
    // Like a player: a late tick sends the missed frames at once, so the stream keeps its rate.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    loop {
        tick.tick().await;
        if feed.closed.load(Ordering::Acquire) {
            break;
        }
        input.clear();
        match feed.queue().pop_front() {
            Some(f) => input.extend_from_slice(&f[..f.len().min(n)]),
            None => {
                feed.underruns.fetch_add(1, Ordering::Relaxed);
            }
        }
        input.resize(n, 0);
        // A re-INVITE may change the leg's format: picked up at the next frame.
        let g = shared.plane.gen.load(Ordering::Acquire);
        if gen != Some(g) {
            gen = Some(g);
            let format = shared.plane.format(leg);
            if enc.as_ref().map(|e| e.format) != format {
                enc = format.and_then(|f| Encoder::new(f, rate, leg));
                first = true;
            }
        }
        // No format yet (or no encoder), or a digit being sent: the frame is dropped, so the
        // stream stays live rather than falling behind.
        let Some(e) = enc
            .as_mut()
            .filter(|_| lp.dtmf_busy.load(Ordering::Acquire) == 0)
        else {
            continue;
        };
        match e.resampler.as_mut() {
            Some(r) => r.process(&input, &mut e.fifo),
            None => e.fifo.extend_from_slice(&input),
        }
        let spf = e.format.codec.samples_per_frame();
        let mut start = 0;
        while e.fifo.len() - start >= spf {
            e.frame.clear();
            e.frame.extend_from_slice(&e.fifo[start..start + spf]);
            start += spf;
            e.payload.clear();
            e.codec.encode(&e.frame, &mut e.payload);
            let marker = std::mem::take(&mut first);
            send_frame(
                &shared,
                &sockets,
                leg,
                e.format,
                marker,
                &e.payload,
                &mut packet,
            );
        }
        e.fifo.drain(..start);
    }
    drop(end);
}
