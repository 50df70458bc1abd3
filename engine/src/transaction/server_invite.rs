//! The INVITE server transaction (RFC 3261 §17.2.1 as updated by RFC 6026): Proceeding
//! (with the automatic 100 Trying), Completed with timers G (retransmit the non-2xx final,
//! UDP only) and H (no ACK came), Confirmed with timer I (absorbs ACK retransmissions), and
//! Accepted with timer L (after a 2xx: retransmitted INVITEs are absorbed, ACKs go to the TU,
//! the TU may retransmit its 2xx).

use super::output::{Ctx, TuEvent, TxError};
use super::peer::Peer;
use super::timers::after;
use crate::sip::{build, Headers, Message, Request, Response, SipHeaders};
use std::time::{Duration, Instant};

/// One INVITE server transaction.
#[derive(Debug)]
pub(crate) struct ServerInvite {
    source: Peer,
    state: State,
}

#[derive(Debug)]
enum State {
    /// Waiting for the TU. `trying` is when the 100 (Trying) goes out unless the TU answers
    /// first, and the request's headers it is built from (shared, not copied: most INVITEs
    /// are answered before it is due, and then it is never built); `last` is the latest provisional sent; `limit` bounds the wait for a
    /// final answer from the TU (see `LayerConfig::invite_proceeding_limit`).
    Proceeding {
        trying: Option<(Instant, Headers)>,
        last: Option<Response>,
        limit: Instant,
    },
    /// A 3xx-6xx was sent; timer G as (next fire, interval), timer H.
    Completed {
        response: Response,
        timer_g: Option<(Instant, Duration)>,
        timer_h: Instant,
    },
    /// The ACK arrived; timer I.
    Confirmed {
        timer_i: Instant,
    },
    /// A 2xx was sent (RFC 6026); timer L.
    Accepted {
        timer_l: Instant,
    },
    Terminated,
}

/// What became of an ACK that matched an INVITE server transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AckOutcome {
    /// The ACK for the non-2xx final (or a retransmission of it): absorbed.
    Absorbed,
    /// The transaction is Accepted: the ACK is for the 2xx and belongs to the TU.
    ToTu,
    /// RFC 2543 matching only: the ACK's To tag is not the response's, so it does not match.
    NoMatch,
}

impl ServerInvite {
    /// Creates the transaction for `req`. The 100 (Trying) goes out after
    /// `LayerConfig::trying_delay`, at once when that is zero.
    pub(crate) fn new(ctx: &mut Ctx<'_>, req: &Request, source: Peer) -> ServerInvite {
        let limit = after(ctx.now, ctx.cfg.invite_proceeding_limit);
        let state = if ctx.cfg.trying_delay.is_zero() {
            let trying = build::response(req, 100);
            ctx.out.send(source, Message::Response(trying.clone()));
            State::Proceeding {
                trying: None,
                last: Some(trying),
                limit,
            }
        } else {
            let at = after(ctx.now, ctx.cfg.trying_delay);
            State::Proceeding {
                trying: Some((at, req.headers.clone())),
                last: None,
                limit,
            }
        };
        ServerInvite { source, state }
    }

    /// The INVITE was received again: re-send the latest response, if any (in Proceeding
    /// with nothing sent yet, the 100 Trying goes out now). In Accepted it is absorbed.
    pub(crate) fn on_retransmission(&mut self, ctx: &mut Ctx<'_>) {
        match &mut self.state {
            State::Proceeding { trying, last, .. } => {
                if let Some((_, h)) = trying.take() {
                    *last = Some(trying_for(&h));
                }
                if let Some(r) = last {
                    ctx.out.send(self.source, Message::Response(r.clone()));
                }
            }
            State::Completed { response, .. } => {
                ctx.out
                    .send(self.source, Message::Response(response.clone()));
            }
            State::Confirmed { .. } | State::Accepted { .. } | State::Terminated => {}
        }
    }

    /// An ACK matched. With `check_to_tag` (RFC 2543 matching) its To tag must be the one of
    /// the final response.
    pub(crate) fn on_ack(
        &mut self,
        ctx: &mut Ctx<'_>,
        ack_to_tag: Option<&str>,
        check_to_tag: bool,
    ) -> AckOutcome {
        match &self.state {
            State::Completed { response, .. } => {
                if check_to_tag && response.to_tag_ref() != ack_to_tag {
                    return AckOutcome::NoMatch;
                }
                let i = ctx
                    .cfg
                    .timers
                    .t4_or_zero(self.source.transport.is_reliable());
                self.state = if i.is_zero() {
                    State::Terminated
                } else {
                    State::Confirmed {
                        timer_i: after(ctx.now, i),
                    }
                };
                AckOutcome::Absorbed
            }
            State::Accepted { .. } | State::Terminated => AckOutcome::ToTu,
            // In Proceeding no final was sent: the ACK is bogus and dropped.
            State::Proceeding { .. } | State::Confirmed { .. } => AckOutcome::Absorbed,
        }
    }

    /// The TU answers.
    pub(crate) fn send_response(
        &mut self,
        ctx: &mut Ctx<'_>,
        resp: Response,
    ) -> Result<(), TxError> {
        let status = resp.status;
        match (&mut self.state, status) {
            (
                State::Proceeding {
                    trying,
                    last,
                    limit,
                },
                100..=199,
            ) => {
                *trying = None;
                *limit = after(ctx.now, ctx.cfg.invite_proceeding_limit);
                ctx.out.send(self.source, Message::Response(resp.clone()));
                *last = Some(resp);
            }
            (State::Proceeding { .. }, 200..=299) => {
                ctx.out.send(self.source, Message::Response(resp));
                self.state = State::Accepted {
                    timer_l: after(ctx.now, ctx.cfg.timers.t1x64()),
                };
            }
            (State::Proceeding { .. }, _) => {
                ctx.out.send(self.source, Message::Response(resp.clone()));
                let t1 = ctx.cfg.timers.t1;
                let timer_g =
                    (!self.source.transport.is_reliable()).then(|| (after(ctx.now, t1), t1));
                let timer_h = after(ctx.now, ctx.cfg.timers.t1x64());
                self.state = State::Completed {
                    response: resp,
                    timer_g,
                    timer_h,
                };
            }
            (State::Accepted { .. }, 200..=299) => {
                ctx.out.send(self.source, Message::Response(resp));
            }
            (State::Accepted { .. }, _) => {
                return Err(TxError::InvalidState(
                    "only 2xx may follow a 2xx on an INVITE",
                ));
            }
            _ => {
                return Err(TxError::InvalidState(
                    "the INVITE already has a final response",
                ))
            }
        }
        Ok(())
    }

    /// Runs whichever timers are due at `ctx.now`.
    pub(crate) fn on_timer(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now;
        let t2 = ctx.cfg.timers.t2;
        match &mut self.state {
            State::Proceeding { limit, .. } if *limit <= now => {
                ctx.out.event(TuEvent::Timeout { tx: ctx.key });
                self.state = State::Terminated;
            }
            State::Proceeding { trying, last, .. }
                if trying.as_ref().is_some_and(|(at, _)| *at <= now) =>
            {
                if let Some((_, h)) = trying.take() {
                    let t = trying_for(&h);
                    ctx.out.send(self.source, Message::Response(t.clone()));
                    *last = Some(t);
                }
            }
            State::Completed { timer_h, .. } if *timer_h <= now => {
                ctx.out.event(TuEvent::Timeout { tx: ctx.key });
                self.state = State::Terminated;
            }
            State::Completed {
                response,
                timer_g: Some((at, interval)),
                ..
            } if *at <= now => {
                ctx.out
                    .send(self.source, Message::Response(response.clone()));
                *interval = interval.saturating_mul(2).min(t2);
                *at = after(now, *interval);
            }
            State::Confirmed { timer_i: t } | State::Accepted { timer_l: t } if *t <= now => {
                self.state = State::Terminated;
            }
            _ => {}
        }
    }

    /// The next time `on_timer` has work.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match &self.state {
            State::Proceeding { trying, limit, .. } => {
                Some(trying.as_ref().map_or(*limit, |(at, _)| (*at).min(*limit)))
            }
            State::Completed {
                timer_g, timer_h, ..
            } => Some(timer_g.map_or(*timer_h, |(g, _)| g.min(*timer_h))),
            State::Confirmed { timer_i } => Some(*timer_i),
            State::Accepted { timer_l } => Some(*timer_l),
            State::Terminated => None,
        }
    }

    /// True once the transaction is over.
    pub(crate) fn is_terminated(&self) -> bool {
        matches!(self.state, State::Terminated)
    }
}

/// The 100 (Trying) for the INVITE with these headers (what `build::response(invite, 100)`
/// builds).
fn trying_for(invite: &Headers) -> Response {
    build::response_to_headers(invite, 100, build::reason_phrase(100))
}
