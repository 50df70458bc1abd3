//! Session timers (RFC 4028) on the caller's leg: the thin shell around the sans-IO
//! [`switchboard_engine::session_timer`].
//!
//! The engine negotiates the timer as the answerer of the caller's INVITE (`[calls]
//! session_expires`, `min_se`): too short an interval gets 422 with `Min-SE` before the call is
//! routed; the 200 to the caller carries `Session-Expires` (and `Require: timer` when the caller
//! supports it). Any 2xx to a re-INVITE or UPDATE crossing the call refreshes the session. When
//! the engine is the refresher it sends an UPDATE to the caller at half the interval (a
//! re-INVITE with the session's SDP when the caller does not allow UPDATE); when nobody
//! refreshes in time, both legs get a BYE and the CDR says `session_timer_expired`.
//!
//! The B legs carry no timer of the engine's (they are not offered `timer`), so a callee may
//! still run one of its own as refresher; its refreshes cross the call as any re-INVITE does.

use super::{CallActor, TxTag};
use crate::router::Command;
use actix::prelude::*;
use std::time::{Duration, Instant};
use switchboard_engine::prack::lists_tag;
use switchboard_engine::session_timer::{
    negotiate_uas, Refresher, SessionTimer, TimerAction, UasDecision, OPTION_TAG,
};
use switchboard_engine::sip::{HeaderName, Message, Method, Response, SipHeaders};

/// The session timer state of one call.
#[derive(Default)]
pub(super) struct CallTimer {
    /// What the caller's INVITE negotiated (set before routing).
    decision: Option<UasDecision>,
    /// The running timer, from the 200 to the caller.
    timer: Option<SessionTimer>,
    /// Bumped on every change, so a stale scheduled wake-up does nothing.
    generation: u64,
}

impl CallActor {
    /// Negotiates the caller's session timer; false (after answering 422 or 400) when the call
    /// must not go on.
    pub(super) fn session_timer_check(&mut self, ctx: &mut Context<Self>) -> bool {
        let calls = &self.setup.shard.shared.config.calls;
        let d = negotiate_uas(&self.setup.invite, calls.session_expires, calls.min_se);
        self.timer.decision = Some(d);
        match d {
            UasDecision::TooSmall { min_se } => {
                let mut r = self.a_response(422, Some("Session Interval Too Small"));
                r.headers.push(HeaderName::MinSe, min_se.to_string());
                self.fail_a(ctx, r, "rejected");
                false
            }
            UasDecision::Malformed => {
                let r = self.a_response(400, Some("Bad Request (Session-Expires or Min-SE)"));
                self.fail_a(ctx, r, "rejected");
                false
            }
            UasDecision::Off | UasDecision::On { .. } => true,
        }
    }

    /// The headers a 2xx to the caller (its INVITE, or a refresh it sent) carries.
    pub(super) fn session_timer_headers(&self, r: &mut Response) {
        if let Some(UasDecision::On {
            interval,
            refresher,
            require,
        }) = self.timer.decision
        {
            r.headers.push(
                HeaderName::SessionExpires,
                format!("{interval};refresher={}", refresher.as_str()),
            );
            if require && !lists_tag(&r.headers, &HeaderName::Require, OPTION_TAG) {
                r.headers.push(HeaderName::Require, OPTION_TAG);
            }
        }
    }

    /// Stops the caller leg's timer (its party was replaced by a transfer).
    pub(super) fn session_timer_stop(&mut self) {
        self.timer.timer = None;
        self.timer.decision = None;
        self.timer.generation += 1;
    }

    /// The 200 to the caller's INVITE went out: the timer starts.
    pub(super) fn session_timer_start(&mut self, ctx: &mut Context<Self>) {
        if let Some(UasDecision::On {
            interval,
            refresher,
            ..
        }) = self.timer.decision
        {
            let t = SessionTimer::new(Instant::now(), interval, refresher == Refresher::Uas);
            tracing::debug!(interval, refresher = refresher.as_str(), "session timer");
            self.timer.timer = Some(t);
            self.session_timer_arm(ctx);
        }
    }

    /// A 2xx to a re-INVITE or UPDATE crossed the call: the session is refreshed.
    pub(super) fn session_refreshed(&mut self, ctx: &mut Context<Self>) {
        if let Some(t) = self.timer.timer.as_mut() {
            t.refreshed(Instant::now());
            self.session_timer_arm(ctx);
        }
    }

    /// The answer to a refresh the engine sent to the caller.
    pub(super) fn on_refresh_response(&mut self, ctx: &mut Context<Self>, resp: Response) {
        if !(200..300).contains(&resp.status) {
            // A failed refresh leaves the expiry as it was (RFC 4028 §10).
            tracing::info!(status = resp.status, "session refresh refused");
            return;
        }
        if resp.cseq().is_some_and(|c| c.1 == Method::Invite) {
            if let Some(d) = self.a_dialog.as_ref() {
                let ack = d.ack(resp.cseq().map_or(d.local_cseq, |c| c.0));
                self.post(Command::Stateless {
                    msg: Message::Request(ack),
                    dest: d.peer,
                });
            }
        }
        self.session_refreshed(ctx);
    }

    fn session_timer_arm(&mut self, ctx: &mut Context<Self>) {
        let Some(at) = self.timer.timer.as_ref().map(SessionTimer::poll_timeout) else {
            return;
        };
        self.timer.generation += 1;
        let gen = self.timer.generation;
        let wait = at.saturating_duration_since(Instant::now()) + Duration::from_millis(5);
        ctx.run_later(wait, move |act, ctx| {
            if act.timer.generation == gen && !act.ended {
                act.session_timer_tick(ctx);
            }
        });
    }

    fn session_timer_tick(&mut self, ctx: &mut Context<Self>) {
        let action = self
            .timer
            .timer
            .as_mut()
            .and_then(|t| t.handle_timeout(Instant::now()));
        match action {
            Some(TimerAction::Expired) => {
                tracing::info!("session timer expired");
                // event: call.session_expired
                return self.hang_up(ctx, "session_timer_expired");
            }
            Some(TimerAction::Refresh) => self.send_session_refresh(ctx),
            None => {}
        }
        self.session_timer_arm(ctx);
    }

    /// An UPDATE without a body to the caller, or a re-INVITE with the session's SDP when its
    /// INVITE's Allow lacks UPDATE.
    fn send_session_refresh(&mut self, ctx: &mut Context<Self>) {
        let interval = self.timer.timer.as_ref().map_or(0, |t| t.interval_secs());
        let allows_update = self
            .setup
            .invite
            .headers
            .get_all(&HeaderName::Allow)
            .any(|v| {
                v.split(',')
                    .any(|m| m.trim().eq_ignore_ascii_case("UPDATE"))
            });
        let body = self.ok_to_a.as_ref().map(|ok| ok.body.clone());
        let Some(d) = self.a_dialog.as_mut() else {
            return;
        };
        let method = if allows_update {
            Method::Update
        } else {
            Method::Invite
        };
        let mut req = d.request(method.clone());
        req.headers.push(
            HeaderName::SessionExpires,
            format!("{interval};refresher=uas"),
        );
        req.headers.push(HeaderName::Supported, OPTION_TAG);
        if method == Method::Invite {
            if let Some(body) = body.filter(|b| !b.is_empty()) {
                req.headers.push(HeaderName::ContentType, "application/sdp");
                req.body = body;
            }
        }
        let dest = d.peer;
        tracing::debug!(%method, "session refresh");
        self.post(Command::Send {
            req,
            dest,
            owner: Some(ctx.address().recipient()),
            tag: TxTag::Refresh,
        });
    }
}
