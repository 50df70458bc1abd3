//! [`Mixer`]: an N-party audio mixer for conferences and call supervision (listen, whisper,
//! barge), sans-IO.
//!
//! The mixer works on 20 ms frames of mono 16-bit PCM at one internal rate; participants convert
//! at the edge (decode, resample to the mixer's rate, and back). Each tick the caller pushes
//! every participant's frame ([`Mixer::push`]; no frame means silence) and takes every
//! participant's output ([`Mixer::mix`]):
//!
//! * **mix-minus**: nobody hears themselves;
//! * who hears whom follows each participant's [`MixMode`] and mute flag (mute silences what a
//!   participant says, never what it hears);
//! * sums are exact in `i32`; an output that would leave the `i16` range goes through a limiter
//!   (one gain per listener: instant attack over the whole frame, linear release over
//!   [`RELEASE_MS`]) instead of being hard-clipped, so loud conferences do not distort. An
//!   output that fits is passed through bit-exact: in a two-party mix each side gets the other's
//!   samples unchanged.
//!
//! Architecture invariant: no clock, socket or sleep; the shell calls [`Mixer::mix`] every 20 ms.

use crate::codec::FRAME_MS;

/// Time for a listener's limiter gain to come back from 0 to 1 once its mix is quiet again.
pub const RELEASE_MS: u32 = 500;

/// Largest output magnitude the limiter aims for.
const LIMIT: u32 = i16::MAX as u32;

/// A participant of one [`Mixer`], as [`Mixer::add`] returned it. Never reused by that mixer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParticipantId(u64);

/// Who hears a participant. Every mode hears everyone it is allowed to hear (see each variant);
/// [`Mixer::set_muted`] additionally keeps a participant from being heard at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MixMode {
    /// An ordinary party: heard by every other participant, hears every audible one.
    Normal,
    /// Silent monitoring: hears everyone, heard by no one.
    Listen,
    /// Coaching: hears everyone, heard only by `to` (e.g. a supervisor talking to the agent
    /// without the caller hearing). Whispering to oneself, or to a participant that is not (or
    /// no longer) in the mixer, is heard by no one.
    Whisper {
        /// The only participant who hears this one.
        to: ParticipantId,
    },
    /// A supervisor who joined the conversation: mixed exactly as [`MixMode::Normal`], kept
    /// distinct so the application knows who barged in (and can send them back to listening).
    Barge,
}

/// One participant's state.
#[derive(Debug)]
struct Participant {
    id: ParticipantId,
    mode: MixMode,
    muted: bool,
    /// This tick's frame, `frame_len` samples (padded or cut by [`Mixer::push`]).
    input: Vec<i16>,
    /// Whether `input` holds this tick's frame (else the participant is silent this tick).
    has_input: bool,
    /// The limiter gain on this participant's output, in `(0, 1]`.
    gain: f32,
}

impl Participant {
    /// Whether everybody else hears this participant this tick.
    fn heard_by_all(&self) -> bool {
        self.has_input && !self.muted && matches!(self.mode, MixMode::Normal | MixMode::Barge)
    }

    /// Whether only `listener` hears this participant this tick (a whisper to it).
    fn whispers_to(&self, listener: ParticipantId) -> bool {
        self.has_input
            && !self.muted
            && self.id != listener
            && self.mode == MixMode::Whisper { to: listener }
    }
}

/// An N-party mixer over 20 ms frames of mono i16 PCM at one rate. See the module docs.
#[derive(Debug)]
pub struct Mixer {
    rate: u32,
    frame_len: usize,
    /// Limiter gain step per frame on release.
    release: f32,
    next_id: u64,
    /// In insertion order: [`Mixer::mix`] returns outputs in this order.
    parts: Vec<Participant>,
    /// Sum of everyone heard by all, this tick.
    common: Vec<i32>,
    /// One listener's mix, before limiting.
    scratch: Vec<i32>,
}

impl Mixer {
    /// An empty mixer at `rate` Hz (e.g. 16 000); a frame is `rate / 50` samples (20 ms), so
    /// `rate` should be a multiple of 50.
    pub fn new(rate: u32) -> Mixer {
        let frame_len = (u64::from(rate) * u64::from(FRAME_MS) / 1000) as usize;
        Mixer {
            rate,
            frame_len,
            release: FRAME_MS as f32 / RELEASE_MS as f32,
            next_id: 0,
            parts: Vec::new(),
            common: vec![0; frame_len],
            scratch: vec![0; frame_len],
        }
    }

    /// The mixer's sample rate in Hz.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Samples in one frame (20 ms at [`Mixer::rate`]).
    pub fn frame_len(&self) -> usize {
        self.frame_len
    }

    /// How many participants the mixer has.
    pub fn len(&self) -> usize {
        self.parts.len()
    }

    /// Whether the mixer has no participant.
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// Adds a participant, unmuted, in `mode`; it is silent until its first [`Mixer::push`].
    pub fn add(&mut self, mode: MixMode) -> ParticipantId {
        let id = ParticipantId(self.next_id);
        self.next_id += 1;
        self.parts.push(Participant {
            id,
            mode,
            muted: false,
            input: vec![0; self.frame_len],
            has_input: false,
            gain: 1.0,
        });
        id
    }

    /// Removes a participant; `false` if it was not in the mixer. Whispers to it are then heard
    /// by no one (until their mode changes).
    pub fn remove(&mut self, id: ParticipantId) -> bool {
        let before = self.parts.len();
        self.parts.retain(|p| p.id != id);
        self.parts.len() != before
    }

    /// A participant's mode, `None` if it is not in the mixer.
    pub fn mode(&self, id: ParticipantId) -> Option<MixMode> {
        self.get(id).map(|p| p.mode)
    }

    /// Changes a participant's mode from the next [`Mixer::mix`] on; `false` if it is not in
    /// the mixer.
    pub fn set_mode(&mut self, id: ParticipantId, mode: MixMode) -> bool {
        self.get_mut(id).map(|p| p.mode = mode).is_some()
    }

    /// Mutes (nobody hears it, it still hears) or unmutes a participant; `false` if it is not
    /// in the mixer.
    pub fn set_muted(&mut self, id: ParticipantId, muted: bool) -> bool {
        self.get_mut(id).map(|p| p.muted = muted).is_some()
    }

    /// Sets a participant's frame for this tick: [`Mixer::frame_len`] samples, a shorter frame
    /// is padded with silence and a longer one cut. A second push in the same tick replaces the
    /// first. `false` if the participant is not in the mixer.
    pub fn push(&mut self, id: ParticipantId, frame: &[i16]) -> bool {
        let Some(p) = self.get_mut(id) else {
            return false;
        };
        let n = frame.len().min(p.input.len());
        let (head, tail) = p.input.split_at_mut(n);
        head.copy_from_slice(&frame[..n]);
        tail.fill(0);
        p.has_input = true;
        true
    }

    /// Ends the tick: every participant's output frame ([`Mixer::frame_len`] samples), in the
    /// order they were added, then forgets the inputs (a participant not pushed next tick is
    /// silent).
    pub fn mix(&mut self) -> Vec<(ParticipantId, Vec<i16>)> {
        self.common.fill(0);
        for p in self.parts.iter().filter(|p| p.heard_by_all()) {
            for (acc, &x) in self.common.iter_mut().zip(&p.input) {
                *acc = acc.saturating_add(i32::from(x));
            }
        }

        let mut outputs = Vec::with_capacity(self.parts.len());
        for i in 0..self.parts.len() {
            let listener = &self.parts[i];
            self.scratch.copy_from_slice(&self.common);
            if listener.heard_by_all() {
                for (acc, &x) in self.scratch.iter_mut().zip(&listener.input) {
                    *acc = acc.saturating_sub(i32::from(x));
                }
            }
            for w in self.parts.iter().filter(|w| w.whispers_to(listener.id)) {
                for (acc, &x) in self.scratch.iter_mut().zip(&w.input) {
                    *acc = acc.saturating_add(i32::from(x));
                }
            }
            let id = listener.id;
            let gain = &mut self.parts[i].gain;
            outputs.push((id, limit(&self.scratch, gain, self.release)));
        }

        for p in &mut self.parts {
            p.has_input = false;
        }
        outputs
    }

    fn get(&self, id: ParticipantId) -> Option<&Participant> {
        self.parts.iter().find(|p| p.id == id)
    }

    fn get_mut(&mut self, id: ParticipantId) -> Option<&mut Participant> {
        self.parts.iter_mut().find(|p| p.id == id)
    }
}

/// One listener's mix to i16 through its limiter. `gain` is the gain reached at the end of the
/// previous frame; the frame's gain never exceeds what keeps its peak within [`LIMIT`]: it drops
/// at once when the peak needs it (the whole frame is known: a one-frame look-ahead), and
/// otherwise rises by at most `release` per frame, ramping linearly across the frame.
fn limit(mix: &[i32], gain: &mut f32, release: f32) -> Vec<i16> {
    let peak = mix.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
    let target = if peak > LIMIT {
        LIMIT as f32 / peak as f32
    } else {
        1.0
    };
    let start = *gain;
    let end = (start + release).min(target).min(1.0);
    *gain = end;
    if start >= 1.0 && end >= 1.0 {
        // Fits: bit-exact (the clamp only guards `i32` sums, which fit here).
        return mix.iter().map(|&s| clamp(s as f32)).collect();
    }
    if end <= start {
        return mix.iter().map(|&s| clamp(s as f32 * end)).collect();
    }
    let n = mix.len() as f32;
    mix.iter()
        .enumerate()
        .map(|(i, &s)| {
            let g = start + (end - start) * (i as f32 + 1.0) / n;
            clamp(s as f32 * g)
        })
        .collect()
}

fn clamp(v: f32) -> i16 {
    // `as` saturates (and maps NaN to 0).
    v.round() as i16
}
