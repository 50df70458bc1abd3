//! The non-INVITE client transaction (RFC 3261 §17.1.2): Trying and Proceeding with timer E
//! (retransmit, doubling up to T2, UDP only) and timer F (give up), then Completed with
//! timer K, which absorbs retransmitted final responses.

use super::output::{Ctx, TuEvent};
use super::peer::Peer;
use super::timers::after;
use crate::sip::{Message, Request, Response};
use std::time::{Duration, Instant};

/// One non-INVITE client transaction.
#[derive(Debug)]
pub(crate) struct ClientNonInvite {
    dest: Peer,
    state: State,
}

#[derive(Debug)]
enum State {
    /// Trying (`proceeding == false`) or Proceeding; timer E as (next fire, interval), timer F.
    Waiting {
        request: Request,
        proceeding: bool,
        timer_e: Option<(Instant, Duration)>,
        timer_f: Instant,
    },
    /// A final response arrived; timer K.
    Completed {
        timer_k: Instant,
    },
    Terminated,
}

impl ClientNonInvite {
    /// Sends the request and starts timers E and F.
    pub(crate) fn start(ctx: &mut Ctx<'_>, request: Request, dest: Peer) -> ClientNonInvite {
        ctx.out.send(dest, Message::Request(request.clone()));
        let t1 = ctx.cfg.timers.t1;
        let timer_e = (!dest.transport.is_reliable()).then(|| (after(ctx.now, t1), t1));
        let timer_f = after(ctx.now, ctx.cfg.timers.t1x64());
        ClientNonInvite {
            dest,
            state: State::Waiting {
                request,
                proceeding: false,
                timer_e,
                timer_f,
            },
        }
    }

    /// A response matched this transaction.
    pub(crate) fn on_response(&mut self, ctx: &mut Ctx<'_>, resp: Response) {
        match &mut self.state {
            State::Waiting { proceeding, .. } if resp.status < 200 => {
                *proceeding = true;
                ctx.out.event(TuEvent::Response { tx: ctx.key, resp });
            }
            State::Waiting { .. } => {
                ctx.out.event(TuEvent::Response { tx: ctx.key, resp });
                let k = ctx.cfg.timers.t4_or_zero(self.dest.transport.is_reliable());
                self.state = if k.is_zero() {
                    State::Terminated
                } else {
                    State::Completed {
                        timer_k: after(ctx.now, k),
                    }
                };
            }
            // Retransmitted finals (and late provisionals) are absorbed.
            State::Completed { .. } | State::Terminated => {}
        }
    }

    /// Runs whichever timers are due at `ctx.now`.
    pub(crate) fn on_timer(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now;
        let t2 = ctx.cfg.timers.t2;
        match &mut self.state {
            State::Waiting { timer_f, .. } if *timer_f <= now => {
                ctx.out.event(TuEvent::Timeout { tx: ctx.key });
                self.state = State::Terminated;
            }
            State::Waiting {
                request,
                proceeding,
                timer_e: Some((at, interval)),
                ..
            } if *at <= now => {
                ctx.out.send(self.dest, Message::Request(request.clone()));
                *interval = if *proceeding {
                    t2
                } else {
                    interval.saturating_mul(2).min(t2)
                };
                *at = after(now, *interval);
            }
            State::Completed { timer_k } if *timer_k <= now => {
                self.state = State::Terminated;
            }
            _ => {}
        }
    }

    /// The next time `on_timer` has work.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match &self.state {
            State::Waiting {
                timer_e, timer_f, ..
            } => Some(timer_e.map_or(*timer_f, |(e, _)| e.min(*timer_f))),
            State::Completed { timer_k } => Some(*timer_k),
            State::Terminated => None,
        }
    }

    /// True once the transaction is over.
    pub(crate) fn is_terminated(&self) -> bool {
        matches!(self.state, State::Terminated)
    }
}
