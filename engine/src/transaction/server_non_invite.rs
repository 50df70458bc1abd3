//! The non-INVITE server transaction (RFC 3261 §17.2.2): Trying, Proceeding (retransmitted
//! requests get the latest provisional again), Completed with timer J (they get the final
//! again).

use super::output::{Ctx, TuEvent, TxError};
use super::peer::Peer;
use super::timers::after;
use crate::sip::{Message, Response};
use std::time::Instant;

/// One non-INVITE server transaction.
#[derive(Debug)]
pub(crate) struct ServerNonInvite {
    source: Peer,
    state: State,
}

#[derive(Debug)]
enum State {
    /// Waiting for the TU: Trying (`last == None`) or Proceeding. `limit` is 64·T1 after the
    /// request: by then the client has given up (timer F), so a TU that has not answered is
    /// told with a timeout instead of the transaction living forever.
    Waiting {
        last: Option<Response>,
        limit: Instant,
    },
    /// The final response was sent; timer J.
    Completed {
        response: Response,
        timer_j: Instant,
    },
    Terminated,
}

impl ServerNonInvite {
    /// Creates the transaction (Trying).
    pub(crate) fn new(ctx: &mut Ctx<'_>, source: Peer) -> ServerNonInvite {
        let limit = after(ctx.now, ctx.cfg.timers.t1x64());
        ServerNonInvite {
            source,
            state: State::Waiting { last: None, limit },
        }
    }

    /// The request was received again: re-send the latest response, if any.
    pub(crate) fn on_retransmission(&mut self, ctx: &mut Ctx<'_>) {
        let last = match &self.state {
            State::Waiting { last, .. } => last.as_ref(),
            State::Completed { response, .. } => Some(response),
            State::Terminated => None,
        };
        if let Some(r) = last {
            ctx.out.send(self.source, Message::Response(r.clone()));
        }
    }

    /// The TU answers.
    pub(crate) fn send_response(
        &mut self,
        ctx: &mut Ctx<'_>,
        resp: Response,
    ) -> Result<(), TxError> {
        let State::Waiting { last, .. } = &mut self.state else {
            return Err(TxError::InvalidState(
                "the request already has a final response",
            ));
        };
        ctx.out.send(self.source, Message::Response(resp.clone()));
        if resp.status < 200 {
            *last = Some(resp);
            return Ok(());
        }
        let j = ctx.cfg.timers.timer_j(self.source.transport.is_reliable());
        self.state = if j.is_zero() {
            State::Terminated
        } else {
            State::Completed {
                response: resp,
                timer_j: after(ctx.now, j),
            }
        };
        Ok(())
    }

    /// Runs whichever timers are due at `ctx.now`.
    pub(crate) fn on_timer(&mut self, ctx: &mut Ctx<'_>) {
        match &self.state {
            State::Waiting { limit, .. } if *limit <= ctx.now => {
                ctx.out.event(TuEvent::Timeout { tx: ctx.key });
                self.state = State::Terminated;
            }
            State::Completed { timer_j, .. } if *timer_j <= ctx.now => {
                self.state = State::Terminated;
            }
            _ => {}
        }
    }

    /// The next time `on_timer` has work.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match &self.state {
            State::Waiting { limit, .. } => Some(*limit),
            State::Completed { timer_j, .. } => Some(*timer_j),
            State::Terminated => None,
        }
    }

    /// True once the transaction is over.
    pub(crate) fn is_terminated(&self) -> bool {
        matches!(self.state, State::Terminated)
    }
}
