//! The router's timers: a min-heap with lazy cancellation (each timer carries the generation it
//! was set for; a stale one is dropped when it fires).

use crate::routing::ids::InteractionId;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// What a timer does when it fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum TimerKind {
    /// The workflow step's timeout.
    StepTimeout { id: InteractionId, gen: u32 },
    /// The queue's maximum wait.
    MaxWait { id: InteractionId, gen: u32 },
    /// An agent's profile delay for the queue has elapsed.
    DelayElapsed { id: InteractionId, gen: u32 },
    /// The offer rang too long.
    OfferExpiry { id: InteractionId, gen: u32 },
    /// After-contact work ends on its own.
    WrapUpEnd { id: InteractionId, slot: u32 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Timer {
    at: u64,
    seq: u64,
    kind: TimerKind,
}

/// Pending timers.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<Timer>>,
    seq: u64,
}

impl Timers {
    /// Schedules `kind` at `at`.
    pub fn set(&mut self, at: u64, kind: TimerKind) {
        self.seq += 1;
        self.heap.push(Reverse(Timer {
            at,
            seq: self.seq,
            kind,
        }));
    }

    /// The earliest deadline (may belong to a timer that has gone stale).
    pub fn next(&self) -> Option<u64> {
        self.heap.peek().map(|t| t.0.at)
    }

    /// Removes and returns the earliest timer due at or before `now`.
    pub fn pop_due(&mut self, now: u64) -> Option<(u64, TimerKind)> {
        if self.heap.peek()?.0.at > now {
            return None;
        }
        self.heap.pop().map(|t| (t.0.at, t.0.kind))
    }

    /// How many are pending (stale ones included).
    pub fn len(&self) -> usize {
        self.heap.len()
    }
}
