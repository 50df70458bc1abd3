//! The INVITE client transaction (RFC 3261 §17.1.1 as updated by RFC 6026): Calling with
//! timers A (retransmit, doubling, UDP only) and B (give up), Proceeding, Completed with
//! timer D (absorbs retransmitted non-2xx finals and re-sends the ACK it generated), and
//! Accepted with timer M (2xx retransmissions go to the TU, which ACKs them).

use super::output::{Ctx, TuEvent};
use super::peer::Peer;
use super::timers::after;
use crate::sip::{HeaderName, Message, Method, Request, Response, SipHeaders};
use bytes::Bytes;
use std::mem;
use std::time::{Duration, Instant};

/// One INVITE client transaction.
#[derive(Debug)]
pub(crate) struct ClientInvite {
    dest: Peer,
    state: State,
}

#[derive(Debug)]
enum State {
    /// Waiting for any response; timer A as (next fire, current interval), timer B.
    Calling {
        request: Request,
        timer_a: Option<(Instant, Duration)>,
        timer_b: Instant,
    },
    /// A provisional response arrived; the request is kept to build the ACK. `limit` bounds
    /// the wait for a final response (a Timer C-like guard, see `LayerConfig`).
    Proceeding {
        request: Request,
        limit: Instant,
    },
    /// A 3xx-6xx arrived and was ACKed; timer D.
    Completed {
        ack: Option<Request>,
        timer_d: Instant,
    },
    /// A 2xx arrived (RFC 6026); timer M.
    Accepted {
        timer_m: Instant,
    },
    Terminated,
}

impl ClientInvite {
    /// Sends the INVITE and starts timers A and B.
    pub(crate) fn start(ctx: &mut Ctx<'_>, request: Request, dest: Peer) -> ClientInvite {
        ctx.out.send(dest, Message::Request(request.clone()));
        let t1 = ctx.cfg.timers.t1;
        let timer_a = (!dest.transport.is_reliable()).then(|| (after(ctx.now, t1), t1));
        let timer_b = after(ctx.now, ctx.cfg.timers.t1x64());
        ClientInvite {
            dest,
            state: State::Calling {
                request,
                timer_a,
                timer_b,
            },
        }
    }

    /// A response matched this transaction.
    pub(crate) fn on_response(&mut self, ctx: &mut Ctx<'_>, resp: Response) {
        let reliable = self.dest.transport.is_reliable();
        let state = mem::replace(&mut self.state, State::Terminated);
        self.state = match (state, resp.status) {
            (State::Calling { request, .. } | State::Proceeding { request, .. }, 100..=199) => {
                ctx.out.event(TuEvent::Response { tx: ctx.key, resp });
                State::Proceeding {
                    request,
                    limit: after(ctx.now, ctx.cfg.invite_proceeding_limit),
                }
            }
            (State::Calling { .. } | State::Proceeding { .. }, 200..=299) => {
                ctx.out.event(TuEvent::Response { tx: ctx.key, resp });
                State::Accepted {
                    timer_m: after(ctx.now, ctx.cfg.timers.t1x64()),
                }
            }
            (State::Calling { request, .. } | State::Proceeding { request, .. }, _) => {
                let ack = build_ack(&request, &resp);
                if let Some(ack) = &ack {
                    ctx.out.send(self.dest, Message::Request(ack.clone()));
                }
                ctx.out.event(TuEvent::Response { tx: ctx.key, resp });
                let d = ctx.cfg.timers.timer_d(reliable);
                if d.is_zero() {
                    State::Terminated
                } else {
                    State::Completed {
                        ack,
                        timer_d: after(ctx.now, d),
                    }
                }
            }
            (State::Completed { ack, timer_d }, 300..=699) => {
                if let Some(ack) = &ack {
                    ctx.out.send(self.dest, Message::Request(ack.clone()));
                }
                State::Completed { ack, timer_d }
            }
            (State::Accepted { timer_m }, 200..=299) => {
                ctx.out.event(TuEvent::Response { tx: ctx.key, resp });
                State::Accepted { timer_m }
            }
            (other, _) => other,
        };
    }

    /// Runs whichever timers are due at `ctx.now`.
    pub(crate) fn on_timer(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now;
        match &mut self.state {
            State::Calling { timer_b, .. } if *timer_b <= now => {
                ctx.out.event(TuEvent::Timeout { tx: ctx.key });
                self.state = State::Terminated;
            }
            State::Calling {
                request,
                timer_a: Some((at, interval)),
                ..
            } if *at <= now => {
                ctx.out.send(self.dest, Message::Request(request.clone()));
                *interval = interval.saturating_mul(2);
                *at = after(now, *interval);
            }
            State::Proceeding { limit, .. } if *limit <= now => {
                ctx.out.event(TuEvent::Timeout { tx: ctx.key });
                self.state = State::Terminated;
            }
            State::Completed { timer_d: t, .. } | State::Accepted { timer_m: t } if *t <= now => {
                self.state = State::Terminated;
            }
            _ => {}
        }
    }

    /// The next time `on_timer` has work.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match &self.state {
            State::Calling {
                timer_a, timer_b, ..
            } => Some(timer_a.map_or(*timer_b, |(a, _)| a.min(*timer_b))),
            State::Proceeding { limit, .. } => Some(*limit),
            State::Completed { timer_d, .. } => Some(*timer_d),
            State::Accepted { timer_m } => Some(*timer_m),
            State::Terminated => None,
        }
    }

    /// True once the transaction is over.
    pub(crate) fn is_terminated(&self) -> bool {
        matches!(self.state, State::Terminated)
    }
}

/// The ACK for a non-2xx final response (RFC 3261 §17.1.1.3): the INVITE's Request-URI,
/// Call-ID, From, CSeq number and top Via (only that one), its Route headers, and the To of
/// the response. `None` if the INVITE lacks a top Via or CSeq (it was checked when sent).
pub(crate) fn build_ack(invite: &Request, resp: &Response) -> Option<Request> {
    let via = invite.top_via()?;
    let (cseq, _) = invite.cseq()?;
    let mut ack = Request {
        method: Method::Ack,
        uri: invite.uri.clone(),
        headers: Default::default(),
        body: Bytes::new(),
    };
    ack.headers.push(HeaderName::Via, via.to_string());
    for route in invite.headers.get_all(&HeaderName::Route) {
        ack.headers.push(HeaderName::Route, route);
    }
    ack.headers.push(HeaderName::MaxForwards, "70");
    for name in [HeaderName::From, HeaderName::To, HeaderName::CallId] {
        let source = if name == HeaderName::To {
            &resp.headers
        } else {
            &invite.headers
        };
        if let Some(v) = source.get(&name) {
            ack.headers.push(name, v);
        }
    }
    ack.headers.push(HeaderName::CSeq, format!("{cseq} ACK"));
    Some(ack)
}
