//! Reliable provisional responses (RFC 3262) in the B2BUA: the thin shell around the sans-IO
//! [`switchboard_engine::prack`] state machines.
//!
//! * **B legs**: every INVITE the engine sends says `Supported: 100rel`; a callee's reliable
//!   1xx (`Require: 100rel`, `RSeq`) is PRACKed in its early dialog (`RAck`), once per RSeq
//!   (retransmissions and out-of-order ones are dropped, not relayed twice). The PRACK's CSeq
//!   is carried into the confirmed dialog so later requests keep counting up.
//! * **A leg**: a provisional relayed to the caller goes reliably when the caller requires
//!   100rel, or supports it and the callee's was reliable; it is retransmitted with T1 back-off
//!   until the caller's PRACK (answered 200), and the caller gets 500 after 64·T1 without one.
//!   Otherwise it goes as a plain 1xx, as before. Early media needs nothing here: the relay
//!   forwards from the moment the callee's 1xx SDP is anchored.

use super::{CallActor, TxTag};
use crate::router::Command;
use actix::prelude::*;
use std::time::{Duration, Instant};
use switchboard_engine::dialog::Dialog;
use switchboard_engine::prack::{PrackError, ReliableUac, ReliableUas, UacVerdict, UasAction};
use switchboard_engine::sip::build::{response, response_with_reason};
use switchboard_engine::sip::{HeaderName, Method, Request, Response, SipHeaders};
use switchboard_engine::transaction::TxKey;

/// The 100rel state of one call.
#[derive(Default)]
pub(super) struct CallPrack {
    /// Toward the caller: created with the first provisional relayed.
    uas: Option<ReliableUas>,
    /// Toward the callees: the RSeqs acknowledged, per leg.
    uac: Vec<(u32, ReliableUac)>,
    /// The early dialog of each leg a PRACK was sent in (its CSeq continues after answer).
    early: Vec<(u32, Dialog)>,
    /// When the retransmission timer is set to fire.
    armed: Option<Instant>,
}

impl CallActor {
    /// A provisional from B leg `i`: PRACKs it when it is a new reliable one. `None` when it
    /// must be dropped (a retransmission); otherwise whether it was reliable.
    pub(super) fn prack_leg_provisional(
        &mut self,
        ctx: &mut Context<Self>,
        i: u32,
        resp: &Response,
    ) -> Option<bool> {
        let Some(leg) = self.legs.get(i as usize) else {
            return Some(false);
        };
        let invite_cseq = super::cseq_number(&leg.invite);
        let p = &mut self.prack;
        let uac = match p.uac.iter().position(|(l, _)| *l == i) {
            Some(n) => &mut p.uac[n].1,
            None => {
                p.uac.push((i, ReliableUac::default()));
                let last = p.uac.len() - 1;
                &mut p.uac[last].1
            }
        };
        let rack = match uac.on_provisional(resp, invite_cseq) {
            UacVerdict::Unreliable => return Some(false),
            UacVerdict::Ignore => return None,
            UacVerdict::Prack { rack } => rack,
        };
        let local = self.setup.shard.shared.local_addr(leg.dest.transport);
        let tag = resp.to_tag().unwrap_or_default();
        let dialog = match p
            .early
            .iter_mut()
            .find(|(l, d)| *l == i && d.remote_tag == tag)
        {
            Some((_, d)) => d,
            None => {
                let Some(d) = Dialog::uac(&leg.invite, resp, leg.dest, local) else {
                    return Some(true);
                };
                p.early.retain(|(l, _)| *l != i);
                p.early.push((i, d));
                let last = p.early.len() - 1;
                &mut p.early[last].1
            }
        };
        let mut prack = dialog.request(Method::Prack);
        prack.headers.push(HeaderName::RAck, rack);
        let dest = dialog.peer;
        tracing::debug!(leg = i, "PRACK to a reliable provisional");
        self.post(Command::Send {
            req: prack,
            dest,
            owner: Some(ctx.address().recipient()),
            tag: TxTag::Fire,
        });
        Some(true)
    }

    /// The confirmed dialog of leg `i` continues the CSeq of the PRACKs sent in its early
    /// dialog (RFC 3261 §12.2.1.1: CSeq increases within a dialog).
    pub(super) fn prack_carry_cseq(&self, i: u32, d: &mut Dialog) {
        if let Some((_, early)) = self.prack.early.iter().find(|(l, _)| *l == i) {
            if early.remote_tag == d.remote_tag {
                d.local_cseq = d.local_cseq.max(early.local_cseq);
            }
        }
    }

    /// Sends a provisional to the caller: reliably when RFC 3262 says so (see the module doc),
    /// else as it is.
    pub(super) fn provisional_to_a(
        &mut self,
        ctx: &mut Context<Self>,
        resp: Response,
        upstream_reliable: bool,
    ) {
        let t1 = Duration::from_millis(self.setup.shard.shared.config.sip.t1_ms);
        let invite = &self.setup.invite;
        let uas = self
            .prack
            .uas
            .get_or_insert_with(|| ReliableUas::new(invite, t1));
        let reliable = uas.wants_reliable(upstream_reliable);
        if let Some(r) = uas.provisional(Instant::now(), resp, reliable) {
            self.post(Command::Respond {
                tx: self.setup.tx,
                resp: r,
            });
        }
        self.prack_arm(ctx);
    }

    /// A PRACK: 200 when it acknowledges the caller's outstanding reliable provisional, 481
    /// when it matches none, 400 without a usable RAck.
    pub(super) fn on_prack(&mut self, ctx: &mut Context<Self>, tx: TxKey, req: &Request) {
        let now = Instant::now();
        let verdict = match self.prack.uas.as_mut() {
            Some(uas) => uas.on_prack(now, req),
            None => Err(PrackError::NoMatch),
        };
        let resp = match verdict {
            Ok(next) => {
                self.post(Command::Respond {
                    tx,
                    resp: response(req, 200),
                });
                if let Some(next) = next {
                    self.post(Command::Respond {
                        tx: self.setup.tx,
                        resp: next,
                    });
                }
                return self.prack_arm(ctx);
            }
            Err(PrackError::BadRack) => response_with_reason(req, 400, "Bad Request (RAck)"),
            Err(PrackError::NoMatch) => response_with_reason(
                req,
                481,
                "Call/Transaction Does Not Exist (no such reliable provisional)",
            ),
        };
        self.post(Command::Respond { tx, resp });
    }

    /// The caller's INVITE got its final answer: reliable provisionals stop.
    pub(super) fn prack_final_sent(&mut self) {
        if let Some(uas) = self.prack.uas.as_mut() {
            uas.final_sent();
        }
    }

    /// Sets the retransmission timer for the next deadline, if it is not set for an earlier one.
    fn prack_arm(&mut self, ctx: &mut Context<Self>) {
        let Some(at) = self.prack.uas.as_ref().and_then(ReliableUas::poll_timeout) else {
            return;
        };
        if self.prack.armed.is_some_and(|a| a <= at) {
            return;
        }
        self.prack.armed = Some(at);
        let wait = at.saturating_duration_since(Instant::now());
        ctx.run_later(wait, |act, ctx| {
            act.prack.armed = None;
            act.prack_tick(ctx);
        });
    }

    fn prack_tick(&mut self, ctx: &mut Context<Self>) {
        if self.ended || self.a_final {
            return;
        }
        let now = Instant::now();
        while let Some(action) = self.prack.uas.as_mut().and_then(|u| u.handle_timeout(now)) {
            match action {
                UasAction::Retransmit(resp) => self.post(Command::Respond {
                    tx: self.setup.tx,
                    resp,
                }),
                UasAction::GiveUp => {
                    tracing::info!("no PRACK from the caller for a reliable provisional");
                    let r = self.a_response(
                        500,
                        Some("Server Internal Error (reliable provisional not acknowledged)"),
                    );
                    return self.fail_a(ctx, r, "no_prack");
                }
            }
        }
        self.prack_arm(ctx);
    }
}
