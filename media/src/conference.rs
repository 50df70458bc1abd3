//! Conference rooms: [`Room`] mixes the audio of N call legs with [`Mixer`] (mix-minus, mute,
//! listen / whisper / barge) on the media runtime, every 20 ms.
//!
//! A participant is one leg of a [`RelaySession`]. Joining sets the leg's route to
//! [`Route::Local`] (what the leg sends goes to the room only), subscribes to its audio
//! ([`RelaySession::subscribe`]: jitter buffer, decoder with loss concealment, resampled to the
//! room's rate) and opens a live stream into it ([`RelaySession::stream`]: resampled to the
//! leg's codec, encoded, paced, comfort silence when the room falls behind). So every
//! participant keeps its own negotiated format: an Opus WebRTC leg and PCMU carrier legs mix
//! in one room.
//!
//! Each tick the room takes one frame per participant from its subscription (none: silence;
//! frames beyond a backlog of [`MAX_BACKLOG`] are dropped, oldest first, so the delay through
//! the room cannot grow), mixes, and pushes each participant's output to its live stream.
//!
//! The room runs at 16 kHz by default ([`Room::start`]): wideband legs keep their bandwidth and
//! narrowband ones pay one 8 ↔ 16 kHz resampling each way. A room that will only ever hold
//! narrowband legs (G.711 supervision) can run at 8 kHz ([`Room::start_with_rate`]) and skip
//! the resampling; the rate is fixed for the room's life, because [`ParticipantId`]s (which
//! [`MixMode::Whisper`] names) belong to its mixer.
//!
//! Supervision: a live agent call (caller leg A, agent leg B of one session, bridged) becomes a
//! room of three when the supervisor's leg joins: join A and B in [`MixMode::Normal`] (they
//! keep hearing each other, now through the room), then the supervisor in
//! [`MixMode::Listen`], [`MixMode::Whisper`] `{ to: agent }` or [`MixMode::Barge`], switched
//! with [`Room::set_mode`]. To end it, [`Room::leave`] each participant (or drop the room) and
//! set the legs' routes back (e.g. [`Route::Bridge`] on A and B).
//!
//! A `play`, `stop_play` or `stream` on a participant's leg ends the room's stream into it
//! (the player wins); [`ParticipantInfo::live`] then reads false, and [`Room::rejoin`]
//! reopens it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::codec::FRAME_MS;
use crate::mix::{MixMode, Mixer, ParticipantId};
use crate::relay::{Leg, LiveAudio, RelaySession, Route};

/// The default rate of a room's mix, Hz.
pub const ROOM_RATE: u32 = 16000;

/// Frames of a participant's audio kept waiting beyond the one mixed this tick; older ones are
/// dropped.
pub const MAX_BACKLOG: usize = 2;

/// Why a room refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RoomError {
    /// The room was stopped.
    #[error("the room has stopped")]
    Stopped,
    /// This leg of this session is already in the room.
    #[error("the leg is already in the room")]
    AlreadyJoined,
    /// No such participant in the room.
    #[error("no such participant")]
    NotFound,
    /// The rate is not one the resampler converts (8 to 48 kHz, whole samples per 20 ms).
    #[error("unsupported room rate {0} Hz")]
    Rate(u32),
}

/// One participant as [`Room::participants`] describes it.
#[derive(Clone, Debug)]
pub struct ParticipantInfo {
    /// Its id in the room's mixer.
    pub id: ParticipantId,
    /// Its session.
    pub relay: Arc<RelaySession>,
    /// Its leg of that session.
    pub leg: Leg,
    /// Who hears it.
    pub mode: MixMode,
    /// Whether it is muted (heard by nobody; it still hears).
    pub muted: bool,
    /// Whether the room's stream into the leg still runs (a play on the leg ends it).
    pub live: bool,
}

/// Counters of a room since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RoomStats {
    /// Ticks mixed.
    pub ticks: u64,
    /// Sum over ticks of the participants mixed (the frames mixed and pushed).
    pub participant_ticks: u64,
    /// Wall time spent inside ticks (draining subscriptions, mixing, pushing): the room task's
    /// own cost, without the decoding and encoding done by the sessions' tap and stream tasks.
    pub busy: Duration,
    /// Participant-ticks with no frame from the subscription (mixed as silence).
    pub missing: u64,
    /// Frames dropped because a participant's backlog exceeded [`MAX_BACKLOG`].
    pub trimmed: u64,
}

struct Member {
    id: ParticipantId,
    relay: Arc<RelaySession>,
    leg: Leg,
    muted: bool,
    audio: mpsc::Receiver<Vec<i16>>,
    live: LiveAudio,
    backlog: VecDeque<Vec<i16>>,
}

struct State {
    rate: u32,
    mixer: Mixer,
    members: Vec<Member>,
    stopped: bool,
    stats: RoomStats,
}

impl State {
    fn member(&mut self, id: ParticipantId) -> Result<&mut Member, RoomError> {
        if self.stopped {
            return Err(RoomError::Stopped);
        }
        self.members
            .iter_mut()
            .find(|m| m.id == id)
            .ok_or(RoomError::NotFound)
    }

    /// One 20 ms step: a frame in from every participant, the mix, a frame out to every one.
    fn tick(&mut self) {
        let t0 = Instant::now();
        for m in &mut self.members {
            while let Ok(f) = m.audio.try_recv() {
                m.backlog.push_back(f);
            }
            while m.backlog.len() > MAX_BACKLOG + 1 {
                m.backlog.pop_front();
                self.stats.trimmed += 1;
            }
            match m.backlog.pop_front() {
                Some(f) => {
                    self.mixer.push(m.id, &f);
                }
                None => self.stats.missing += 1,
            }
        }
        let out = self.mixer.mix();
        // The mixer returns outputs in the order participants were added, which is the
        // members' order (both only ever append and remove).
        for ((id, frame), m) in out.into_iter().zip(&self.members) {
            if id == m.id {
                m.live.push(frame);
            }
        }
        self.stats.ticks += 1;
        self.stats.participant_ticks += self.members.len() as u64;
        self.stats.busy += t0.elapsed();
    }
}

/// An N-party mixing room on the media runtime. See the module documentation. Dropping the room
/// (or [`Room::stop`]) ends it: its streams into the legs end and its subscriptions are
/// dropped; the legs' routes stay as they are (Local) for the caller to restore.
pub struct Room {
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Room {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.state();
        f.debug_struct("Room")
            .field("rate", &st.rate)
            .field("participants", &st.members.len())
            .field("stopped", &st.stopped)
            .finish()
    }
}

impl Room {
    /// An empty room mixing at [`ROOM_RATE`] (16 kHz), ticking on the runtime of `handle`.
    pub fn start(handle: &Handle) -> Room {
        Room::spawn(handle, ROOM_RATE)
    }

    /// An empty room mixing at `rate` Hz (e.g. 8000 for a room of narrowband legs only).
    pub fn start_with_rate(handle: &Handle, rate: u32) -> Result<Room, RoomError> {
        if !crate::resample::supported_rate(rate) {
            return Err(RoomError::Rate(rate));
        }
        Ok(Room::spawn(handle, rate))
    }

    fn spawn(handle: &Handle, rate: u32) -> Room {
        let state = Arc::new(Mutex::new(State {
            rate,
            mixer: Mixer::new(rate),
            members: Vec::new(),
            stopped: false,
            stats: RoomStats::default(),
        }));
        let task = handle.spawn(run(state.clone()));
        Room { state, task }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Ticks and edits leave the state consistent at every step: usable after a panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The room's mixing rate, Hz.
    pub fn rate(&self) -> u32 {
        self.state().rate
    }

    /// Adds a leg to the room in `mode`, unmuted: sets the leg's route to [`Route::Local`],
    /// subscribes to its audio and opens a live stream into it (replacing whatever its player
    /// was playing). Heard from the next tick on (after the leg's jitter buffer fills). The room
    /// holds `relay` until the participant leaves or the room ends: leave before stopping a
    /// session.
    pub fn join(
        &self,
        relay: Arc<RelaySession>,
        leg: Leg,
        mode: MixMode,
    ) -> Result<ParticipantId, RoomError> {
        let mut st = self.state();
        if st.stopped {
            return Err(RoomError::Stopped);
        }
        if st
            .members
            .iter()
            .any(|m| m.leg == leg && Arc::ptr_eq(&m.relay, &relay))
        {
            return Err(RoomError::AlreadyJoined);
        }
        relay.set_route(leg, Route::Local);
        let audio = relay.subscribe(leg, st.rate);
        let live = relay.stream(leg, st.rate);
        let id = st.mixer.add(mode);
        st.members.push(Member {
            id,
            relay,
            leg,
            muted: false,
            audio,
            live,
            backlog: VecDeque::new(),
        });
        Ok(id)
    }

    /// Reopens the room's stream into a participant's leg after a `play` (or `stop_play`)
    /// on the leg ended it; a stream still running is replaced.
    pub fn rejoin(&self, id: ParticipantId) -> Result<(), RoomError> {
        let mut st = self.state();
        let rate = st.rate;
        let m = st.member(id)?;
        m.live = m.relay.stream(m.leg, rate);
        Ok(())
    }

    /// Removes a participant: its stream into the leg ends (within 20 ms) and its subscription
    /// is dropped. The leg's route stays [`Route::Local`]: the caller sets it back. A whisper
    /// to it is heard by no one until its mode changes.
    pub fn leave(&self, id: ParticipantId) -> Result<(), RoomError> {
        let mut st = self.state();
        st.member(id)?;
        st.members.retain(|m| m.id != id);
        st.mixer.remove(id);
        Ok(())
    }

    /// Changes who hears a participant, from the next tick on.
    pub fn set_mode(&self, id: ParticipantId, mode: MixMode) -> Result<(), RoomError> {
        let mut st = self.state();
        st.member(id)?;
        st.mixer.set_mode(id, mode);
        Ok(())
    }

    /// Mutes (heard by nobody, still hears) or unmutes a participant, from the next tick on.
    pub fn set_muted(&self, id: ParticipantId, muted: bool) -> Result<(), RoomError> {
        let mut st = self.state();
        st.member(id)?.muted = muted;
        st.mixer.set_muted(id, muted);
        Ok(())
    }

    /// The participants, in the order they joined.
    pub fn participants(&self) -> Vec<ParticipantInfo> {
        let st = self.state();
        st.members
            .iter()
            .map(|m| ParticipantInfo {
                id: m.id,
                relay: m.relay.clone(),
                leg: m.leg,
                mode: st.mixer.mode(m.id).unwrap_or(MixMode::Normal),
                muted: m.muted,
                live: m.live.is_live(),
            })
            .collect()
    }

    /// The room's counters.
    pub fn stats(&self) -> RoomStats {
        self.state().stats
    }

    /// Ends the room (as dropping it does).
    pub fn stop(self) {}
}

impl Drop for Room {
    fn drop(&mut self) {
        self.task.abort();
        let mut st = self.state();
        st.stopped = true;
        for m in std::mem::take(&mut st.members) {
            st.mixer.remove(m.id);
        }
    }
}

/// The room's ticker.
async fn run(state: Arc<Mutex<State>>) {
    let mut tick = tokio::time::interval(Duration::from_millis(u64::from(FRAME_MS)));
    // After a stall the room resumes at the next tick; the backlog limit drops what piled up.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let mut st = state.lock().unwrap_or_else(PoisonError::into_inner);
        if st.stopped {
            return;
        }
        st.tick();
    }
}
