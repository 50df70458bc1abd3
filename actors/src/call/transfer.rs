//! Transfers the phones ask for: REFER on a bridged call (RFC 3515, blind, or attended with a
//! `Replaces` in the `Refer-To`, RFC 5589), INVITE with `Replaces` (RFC 3891), `Referred-By`
//! passed on (RFC 3892).
//!
//! The engine anchors media, so a transfer never needs the transferee's cooperation: the party
//! that REFERs (the transferor) sits in one *slot* of the call (relay leg A or B); the new
//! party takes that slot: the engine INVITEs the target (blind) or re-INVITEs the far end of
//! the consultation call (attended), with an offer on the slot's relay port; once it answers,
//! the relay's slot points at it, the transferor gets `NOTIFY` (`message/sipfrag` `200 OK`)
//! and a BYE. A failure is reported in the NOTIFY and the call goes on as it was.
//!
//! A dialog named by `Replaces` may belong to another call actor (the consultation call, or
//! the call an INVITE with Replaces picks up). That call is found in the live-call directory
//! and asked ([`HandOver`], through [`Control::Replace`]) to give up the party on the far side
//! of the named dialog: it routes the party's Call-ID to the asking call, BYEs the named
//! dialog and ends (cause `transferred` or `replaced`). The Call-ID stays on its shard, so a
//! call holding a dialog of another shard posts that dialog's commands to that shard
//! ([`CallActor::post`] looks the shard up by Call-ID).

use super::ivr::{direct_binding, leg_format};
use super::{BLeg, CallActor, CallMsg, LegState, Side, TxTag};
use crate::calls_api::{Control, ControlError, ControlResult};
use crate::registrar::{aor_key, Binding, Lookup};
use crate::router::{Command, ShardHandle};
use actix::prelude::*;
use bytes::Bytes;
use serde_json::json;
use std::time::Duration;
use switchboard_engine::dialog::{new_request, uri_of, Dialog};
use switchboard_engine::sdp::{endpoint_offer, negotiate, LegOrigin, Sdp, OFFER_CODECS};
use switchboard_engine::server::{new_call_id, shard_of};
use switchboard_engine::sip::build::{response, response_with_reason};
use switchboard_engine::sip::refer::{parse_refer_to, parse_replaces, Replaces};
use switchboard_engine::sip::{HeaderName, Message, Method, Request, Response, SipHeaders};
use switchboard_engine::transaction::TxKey;
use switchboard_media::{Leg, LegFormat};

/// A call's transfer state.
#[derive(Default)]
pub(super) struct CallTransfer {
    /// The transfer in progress.
    active: Option<Active>,
    /// Call-IDs of legs a transfer released: their BYE gets 200, anything else 481.
    released: Vec<String>,
    /// B legs a transfer placed (late answers to given-up ones are ACKed and hung up).
    legs: Vec<u32>,
    /// B legs adopted from another call by an INVITE with Replaces.
    adopted: Vec<u32>,
    /// The call holds a dialog whose Call-ID maps to another shard.
    pub(super) foreign: bool,
}

/// A transfer in progress.
struct Active {
    /// The transferor's slot, which the new party takes.
    slot: Leg,
    /// `blind` or `attended`.
    kind: &'static str,
    /// The Refer-To target.
    target: String,
    /// `Referred-By` for the new INVITE.
    referred_by: Option<String>,
    /// The REFER's CSeq (`Event: refer;id=`).
    refer_cseq: u32,
    /// The new party's leg, once placed.
    leg: Option<u32>,
    /// The offer it got.
    offer: Option<Sdp>,
    /// The `o=` line of its session.
    origin: Option<LegOrigin>,
}

/// A request to the call holding the dialog `replaces` names: give the party on the far side
/// of that dialog to `to` (its Call-ID routed as `side`), BYE the named dialog, and end with
/// `cause`. The party comes back through `reply`.
pub struct HandOver {
    /// The dialog named.
    pub replaces: Replaces,
    /// The call taking the party.
    pub to: Recipient<CallMsg>,
    /// The side the party's requests arrive on there.
    pub side: Side,
    /// The CDR cause of the call giving it up.
    pub cause: &'static str,
    /// Where the party goes.
    pub reply: tokio::sync::oneshot::Sender<Party>,
}

impl std::fmt::Debug for HandOver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandOver")
            .field("replaces", &self.replaces)
            .field("side", &self.side)
            .field("cause", &self.cause)
            .finish()
    }
}

/// A party handed over by another call: its dialog, media format and SDP origin.
pub struct Party {
    /// The dialog with the party (the engine's side of it).
    pub dialog: Dialog,
    /// The format its media used.
    pub format: Option<LegFormat>,
    /// The `o=` of the session the party knows.
    pub origin: LegOrigin,
}

fn refused(status: u16, error: &str) -> ControlResult {
    tracing::debug!(status, error, "dialog not handed over");
    Err(ControlError {
        status,
        error: error.to_string(),
        field: None,
    })
}

/// The slot's name in events.
fn slot_name(l: Leg) -> &'static str {
    match l {
        Leg::A => "a",
        Leg::B => "b",
    }
}

/// The control address of the live call holding a leg with Call-ID `call_id`.
fn find_owner(dir: &crate::calls_api::CallDirectory, call_id: &str) -> Option<Recipient<Control>> {
    let id = dir
        .snapshot()
        .into_iter()
        .find(|c| c.call_id == call_id || c.legs.iter().any(|l| l.call_id == call_id))?
        .id;
    dir.get(id).map(|(_, r)| r)
}

impl CallActor {
    /// The shard that owns the Call-ID of `c`, when it is not this call's own (a dialog taken
    /// over from a call of another shard).
    pub(super) fn shard_for(&self, c: &Command) -> Option<ShardHandle> {
        let call_id = match c {
            Command::Respond { resp, .. } => resp.call_id(),
            Command::Send { req, .. } => req.call_id(),
            Command::Stateless { msg, .. } => msg.headers().get(&HeaderName::CallId),
            Command::Route { call_id, .. } => Some(call_id.as_str()),
            Command::Request { .. } | Command::Forget { .. } => None,
        }?;
        let shared = &self.setup.shard.shared;
        let n = shard_of(call_id, shared.shard_count());
        if n == self.setup.shard.shard {
            return None;
        }
        self.setup.services.trunks.shard(n)
    }

    /// Posts a `Forget` to the shard of each Call-ID.
    pub(super) fn post_forget(&self, ids: Vec<String>, owner: Option<Recipient<CallMsg>>) {
        let count = self.setup.shard.shared.shard_count();
        let mut by_shard: std::collections::BTreeMap<usize, Vec<String>> = Default::default();
        for id in ids {
            by_shard.entry(shard_of(&id, count)).or_default().push(id);
        }
        for (n, ids) in by_shard {
            let cmd = Command::Forget {
                ids,
                owner: owner.clone(),
            };
            match self.setup.services.trunks.shard(n) {
                Some(h) if n != self.setup.shard.shard => h.post(cmd),
                _ => self.setup.shard.post(cmd),
            }
        }
    }

    /// Whether REFER and Replaces are allowed on this call (`calls.allow_refer`, and the
    /// inbound trunk's `allow_refer`).
    fn refer_allowed(&self) -> bool {
        self.setup.shard.shared.config.calls.allow_refer
            && self
                .setup
                .trunk
                .as_ref()
                .is_none_or(|l| l.trunk().config.allow_refer)
    }

    /// The current dialog of a slot.
    fn slot_dialog(&mut self, slot: Leg) -> Option<&mut Dialog> {
        match slot {
            Leg::A => self.a_dialog.as_mut(),
            Leg::B => self
                .winner
                .and_then(|w| self.legs.get_mut(w as usize))
                .and_then(|l| l.dialog.as_mut()),
        }
    }

    /// Requests for legs a transfer released or is placing (true when handled here).
    pub(super) fn transfer_intercepts(&mut self, tx: TxKey, req: &Request, side: Side) -> bool {
        let released = req
            .call_id()
            .is_some_and(|c| self.xfer.released.iter().any(|r| r == c));
        let placing = matches!(side, Side::B(i)
            if self.xfer.active.as_ref().and_then(|a| a.leg) == Some(i));
        if !released && !placing {
            return false;
        }
        let status = match req.method {
            Method::Ack => return true,
            Method::Bye => 200,
            Method::Invite if placing => 491,
            _ => 481,
        };
        self.post(Command::Respond {
            tx,
            resp: response(req, status),
        });
        if placing && req.method == Method::Bye {
            if let Side::B(i) = side {
                if let Some(l) = self.legs.get_mut(i as usize) {
                    l.state = LegState::Done;
                }
            }
            self.xfer_failed(487, "Request Terminated");
        }
        true
    }

    /// A REFER from one of the bridged parties.
    pub(super) fn on_refer(
        &mut self,
        ctx: &mut Context<Self>,
        tx: TxKey,
        req: Request,
        side: Side,
    ) {
        let refuse = |act: &mut Self, status: u16, reason: &str| {
            act.post(Command::Respond {
                tx,
                resp: response_with_reason(&req, status, reason),
            });
        };
        if !self.refer_allowed() {
            return refuse(self, 403, "Forbidden (transfer not allowed)");
        }
        let slot = match side {
            Side::A => Leg::A,
            Side::B(i) if self.winner == Some(i) => Leg::B,
            Side::B(_) => return refuse(self, 481, "Call/Transaction Does Not Exist"),
        };
        let in_plan = self
            .ivr
            .as_ref()
            .is_some_and(|i| !matches!(i.running, super::ivr::Running::Dial { bridged: true, .. }));
        if self.a_dialog.is_none() || self.winner.is_none() || self.relay.is_none() || in_plan {
            return refuse(self, 403, "Forbidden (no bridged call to transfer)");
        }
        if self.srtp.secured(Leg::A) || self.srtp.secured(Leg::B) {
            return refuse(self, 501, "Not Implemented (transfer of SRTP calls)");
        }
        if self.xfer.active.is_some() || self.transfer_tx.is_some() || self.api_refer_pending() {
            return refuse(self, 491, "Request Pending");
        }
        let values: Vec<&str> = req.headers.get_all(&HeaderName::ReferTo).collect();
        let [value] = values.as_slice() else {
            return refuse(self, 400, "Bad Request (one Refer-To required)");
        };
        let target = match parse_refer_to(value) {
            Ok(t) => t,
            Err(e) => return refuse(self, 400, &format!("Bad Request ({e})")),
        };
        if let Some(r) = &target.replaces {
            let own = self.guard.state.record.call_id == r.call_id
                || self.legs.iter().any(|l| l.call_id == r.call_id);
            if own {
                return refuse(self, 403, "Forbidden (Replaces names this call)");
            }
        }
        let referred_by = req
            .headers
            .get(&HeaderName::ReferredBy)
            .map(str::to_string)
            .or_else(|| {
                req.headers
                    .get(&HeaderName::From)
                    .and_then(uri_of)
                    .map(|u| format!("<{u}>"))
            });
        self.post(Command::Respond {
            tx,
            resp: response_with_reason(&req, 202, "Accepted"),
        });
        let kind = if target.replaces.is_some() {
            "attended"
        } else {
            "blind"
        };
        tracing::info!(call_id = %self.guard.state.record.call_id, kind, target = %target.uri,
            transferor = slot_name(slot), "REFER accepted");
        self.xfer.active = Some(Active {
            slot,
            kind,
            target: target.uri.clone(),
            referred_by,
            refer_cseq: req.cseq().map_or(1, |c| c.0),
            leg: None,
            offer: None,
            origin: None,
        });
        self.notify("SIP/2.0 100 Trying", false);
        match target.replaces {
            None => self.blind_transfer(ctx, target.uri),
            Some(r) => self.attended_transfer(ctx, r),
        }
    }

    /// NOTIFY of the REFER's progress to the transferor (RFC 3515 §2.4.5).
    fn notify(&mut self, status_line: &str, last: bool) {
        let Some((slot, id)) = self.xfer.active.as_ref().map(|a| (a.slot, a.refer_cseq)) else {
            return;
        };
        let Some(d) = self.slot_dialog(slot) else {
            return;
        };
        let mut n = d.request(Method::Notify);
        n.headers.push(HeaderName::Event, format!("refer;id={id}"));
        n.headers.push(
            HeaderName::Other("Subscription-State".into()),
            if last {
                "terminated;reason=noresource"
            } else {
                "active;expires=60"
            },
        );
        n.headers
            .push(HeaderName::ContentType, "message/sipfrag;version=2.0");
        n.body = Bytes::from(format!("{status_line}\r\n"));
        let dest = d.peer;
        self.post(Command::Send {
            req: n,
            dest,
            owner: None,
            tag: TxTag::Fire,
        });
    }

    /// The transfer failed: NOTIFY the status; the call goes on as it was.
    fn xfer_failed(&mut self, status: u16, reason: &str) {
        let Some(a) = self.xfer.active.as_ref() else {
            return;
        };
        tracing::info!(
            status,
            reason,
            kind = a.kind,
            "transfer failed; the call goes on"
        );
        // A party already in a dialog with us (adopted, or answered with an unusable SDP) is
        // useless now: release it.
        if let Some(l) = a.leg.and_then(|i| self.legs.get_mut(i as usize)) {
            if l.state == LegState::Answered {
                l.state = LegState::Done;
                if let Some(d) = l.dialog.as_mut() {
                    let (bye, dest) = (d.request(Method::Bye), d.peer);
                    self.post(Command::Stateless {
                        msg: Message::Request(bye),
                        dest,
                    });
                }
            }
        }
        self.notify(&format!("SIP/2.0 {status} {reason}"), true);
        self.xfer.active = None;
    }

    /// The offer for the party taking `slot`: the engine's codecs on the slot's relay port,
    /// the other party's codec first (no transcoding when the new party takes it).
    fn slot_offer(&self, slot: Leg) -> Option<Sdp> {
        let relay = self.relay.as_ref()?;
        let mut codecs = Vec::new();
        if let Some(f) = self.leg_formats[slot.other() as usize] {
            codecs.extend(super::ivr::engine_codec(f.codec));
        }
        for c in OFFER_CODECS {
            if !codecs.contains(c) {
                codecs.push(*c);
            }
        }
        Some(endpoint_offer(relay.local_addr(slot), &codecs))
    }

    /// Blind: looks the target up (a user of this engine, else a SIP URI with an IP host) and
    /// calls it.
    fn blind_transfer(&mut self, ctx: &mut Context<Self>, target: String) {
        let registrar = self.setup.services.registrar.clone();
        let key = aor_key(&target);
        let me = self.local();
        let direct = direct_binding(&target).filter(|b| b.source.addr != me);
        async move {
            let mut found = match key {
                Some(k) => registrar.send(Lookup(k)).await.unwrap_or_default(),
                None => Vec::new(),
            };
            if found.is_empty() {
                found.extend(direct);
            }
            found
        }
        .into_actor(self)
        .map(|bindings, act, ctx| act.call_target(ctx, bindings))
        .spawn(ctx);
    }

    /// Places the blind transfer's INVITE to the best binding.
    fn call_target(&mut self, ctx: &mut Context<Self>, bindings: Vec<Binding>) {
        if self.ended || self.xfer.active.is_none() {
            return;
        }
        let best = bindings
            .into_iter()
            .max_by(|a, b| a.q.partial_cmp(&b.q).unwrap_or(std::cmp::Ordering::Equal));
        let Some(b) = best else {
            return self.xfer_failed(404, "Not Found");
        };
        let Some((slot, target, referred_by)) = self
            .xfer
            .active
            .as_ref()
            .map(|a| (a.slot, a.target.clone(), a.referred_by.clone()))
        else {
            return;
        };
        let Some(mut offer) = self.slot_offer(slot) else {
            return self.xfer_failed(500, "Server Internal Error (no media)");
        };
        let mut origin = LegOrigin::random(self.setup.services.media.sdp_ip);
        origin.stamp(&mut offer);
        // The new party sees the transferee as the caller.
        let from = self
            .slot_dialog(slot.other())
            .map(|d| d.remote_uri.clone())
            .unwrap_or_else(|| "<sip:anonymous@anonymous.invalid>".into());
        let i = self.legs.len() as u32;
        let local = self.setup.shard.shared.local_addr(b.source.transport);
        let call_id = new_call_id(self.setup.shard.shard, &local.ip().to_string());
        let mut req = new_request(
            Method::Invite,
            &b.contact,
            &from,
            &format!("<{target}>"),
            &call_id,
            1,
            local,
            b.source.transport,
        );
        if let Some(by) = referred_by {
            req.headers.push(HeaderName::ReferredBy, by);
        }
        req.headers.push(HeaderName::ContentType, "application/sdp");
        req.body = Bytes::from(offer.to_string());
        let dest = b.destination();
        self.post(Command::Route {
            call_id: call_id.clone(),
            to: ctx.address().recipient(),
            side: Side::B(i),
        });
        self.post(Command::Send {
            req: req.clone(),
            dest,
            owner: Some(ctx.address().recipient()),
            tag: TxTag::Invite(i),
        });
        self.guard.state.call_ids.push(call_id.clone());
        self.guard.state.b_calling.push((req.clone(), dest));
        self.legs.push(BLeg {
            invite: req,
            dest,
            call_id,
            state: LegState::Calling,
            dialog: None,
        });
        self.xfer.legs.push(i);
        if let Some(a) = self.xfer.active.as_mut() {
            a.leg = Some(i);
            a.offer = Some(offer);
            a.origin = Some(origin);
        }
        let ring = Duration::from_secs(self.setup.shard.shared.config.calls.no_answer_timeout_secs);
        ctx.run_later(ring, move |act, _ctx| {
            let ringing = act.xfer.active.as_ref().and_then(|a| a.leg) == Some(i)
                && act
                    .legs
                    .get(i as usize)
                    .is_some_and(|l| matches!(l.state, LegState::Calling | LegState::Early));
            if ringing {
                act.hang_up_leg(i);
                act.xfer_failed(480, "Temporarily Unavailable");
            }
        });
    }

    /// Attended: asks the call holding the dialog `Replaces` names for the party on its far
    /// side (the target), then re-INVITEs it into the transferor's slot.
    fn attended_transfer(&mut self, ctx: &mut Context<Self>, replaces: Replaces) {
        let Some(owner) = find_owner(&self.setup.services.calls, &replaces.call_id) else {
            tracing::info!(call_id = %replaces.call_id, "Replaces names no live call");
            return self.xfer_failed(481, "Call/Transaction Does Not Exist");
        };
        let i = self.legs.len() as u32;
        self.ask_hand_over(
            ctx,
            owner,
            replaces,
            i,
            "transferred",
            move |act, ctx, r| match r {
                Ok(party) => act.adopt_target(ctx, party, i),
                Err((status, reason)) => act.xfer_failed(status, &reason),
            },
        );
    }

    /// Sends a [`HandOver`] and continues with `then` once the party (or a refusal) is back.
    fn ask_hand_over(
        &mut self,
        ctx: &mut Context<Self>,
        owner: Recipient<Control>,
        replaces: Replaces,
        i: u32,
        cause: &'static str,
        then: impl FnOnce(&mut Self, &mut Context<Self>, Result<Party, (u16, String)>) + 'static,
    ) {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let msg = Control::Replace(Box::new(HandOver {
            replaces,
            to: ctx.address().recipient(),
            side: Side::B(i),
            cause,
            reply,
        }));
        async move {
            match owner.send(msg).await {
                Ok(Ok(_)) => rx.await.map_err(|_| {
                    tracing::info!("the call holding the dialog ended before handing it over");
                    (481, "Call/Transaction Does Not Exist".to_string())
                }),
                Ok(Err(e)) => Err((e.status, e.error)),
                Err(e) => {
                    tracing::info!(error = %e, "the call holding the dialog is gone");
                    Err((481, "Call/Transaction Does Not Exist".to_string()))
                }
            }
        }
        .into_actor(self)
        .map(move |r, act, ctx| then(act, ctx, r))
        .spawn(ctx);
    }

    /// Takes a handed-over party as B leg `i`: records the leg and sends it `offer` in a
    /// re-INVITE (tagged as that leg's INVITE).
    fn adopt(&mut self, ctx: &mut Context<Self>, party: Party, i: u32, mut offer: Sdp) -> bool {
        let mut d = party.dialog;
        if self.ended || self.legs.len() as u32 != i {
            let (bye, dest) = (d.request(Method::Bye), d.peer);
            self.xfer.foreign = true;
            self.post(Command::Stateless {
                msg: Message::Request(bye),
                dest,
            });
            return false;
        }
        self.xfer.foreign = true;
        let mut origin = party.origin;
        origin.stamp(&mut offer);
        let mut re = d.request(Method::Invite);
        re.headers.push(HeaderName::ContentType, "application/sdp");
        re.body = Bytes::from(offer.to_string());
        let dest = d.peer;
        self.guard.state.call_ids.push(d.call_id.clone());
        self.guard.state.b_dialogs.push(d.clone());
        self.legs.push(BLeg {
            invite: re.clone(),
            dest,
            call_id: d.call_id.clone(),
            state: LegState::Answered,
            dialog: Some(d),
        });
        self.leg_formats[Leg::B as usize] = self.leg_formats[Leg::B as usize].or(party.format);
        if let Some(a) = self.xfer.active.as_mut() {
            a.leg = Some(i);
            a.offer = Some(offer);
            a.origin = Some(origin);
        } else {
            self.origins[Leg::B as usize] = origin;
        }
        self.post(Command::Send {
            req: re,
            dest,
            owner: Some(ctx.address().recipient()),
            tag: TxTag::Invite(i),
        });
        true
    }

    /// The consultation call's far end, for the transferor's slot.
    fn adopt_target(&mut self, ctx: &mut Context<Self>, party: Party, i: u32) {
        let slot = self.xfer.active.as_ref().map(|a| a.slot);
        let offer = slot.and_then(|s| self.slot_offer(s));
        let (Some(_), Some(offer)) = (slot, offer) else {
            // The transfer is gone (the call ended meanwhile): release the party.
            let mut d = party.dialog;
            let (bye, dest) = (d.request(Method::Bye), d.peer);
            self.xfer.foreign = true;
            return self.post(Command::Stateless {
                msg: Message::Request(bye),
                dest,
            });
        };
        if self.adopt(ctx, party, i, offer) {
            self.xfer.legs.push(i);
        } else {
            self.xfer_failed(500, "Server Internal Error");
        }
    }

    /// Whether B leg `i` was placed by a transfer (its responses go to
    /// [`CallActor::on_transfer_leg_response`]).
    pub(super) fn is_transfer_leg(&self, i: u32) -> bool {
        self.xfer.legs.contains(&i)
    }

    /// A response to a transfer leg's INVITE (or re-INVITE).
    pub(super) fn on_transfer_leg_response(
        &mut self,
        ctx: &mut Context<Self>,
        i: u32,
        resp: Response,
    ) {
        let current = self.xfer.active.as_ref().and_then(|a| a.leg) == Some(i);
        let local_of = |l: &BLeg| self.setup.shard.shared.local_addr(l.dest.transport);
        let Some(leg) = self.legs.get(i as usize) else {
            return;
        };
        let local = local_of(leg);
        if !current {
            // Given up already: ACK and hang up a late 2xx (RFC 3261 §13.2.2.4).
            if (200..300).contains(&resp.status) {
                if let Some(mut d) = Dialog::uac(&leg.invite, &resp, leg.dest, local) {
                    let ack = d.ack(super::cseq_number(&leg.invite));
                    let bye = d.request(Method::Bye);
                    for m in [ack, bye] {
                        self.post(Command::Stateless {
                            msg: Message::Request(m),
                            dest: leg.dest,
                        });
                    }
                }
            }
            return;
        }
        match resp.status {
            100..=199 => {
                if let Some(l) = self.legs.get_mut(i as usize) {
                    if l.state == LegState::Calling {
                        l.state = LegState::Early;
                    }
                }
            }
            200..=299 => self.transfer_answered(ctx, i, resp),
            _ => {
                if let Some(l) = self.legs.get_mut(i as usize) {
                    if l.state != LegState::Answered {
                        l.state = LegState::Done;
                    }
                    let cid = l.call_id.clone();
                    self.guard
                        .state
                        .b_calling
                        .retain(|(r, _)| r.call_id() != Some(cid.as_str()));
                }
                let reason = resp.reason.to_string();
                self.xfer_failed(resp.status, &reason);
            }
        }
    }

    /// The new party answered: it takes the transferor's slot; the transferor gets NOTIFY 200
    /// and a BYE.
    fn transfer_answered(&mut self, ctx: &mut Context<Self>, i: u32, resp: Response) {
        let Some(leg) = self.legs.get(i as usize) else {
            return;
        };
        let local = self.setup.shard.shared.local_addr(leg.dest.transport);
        let Some(d) = Dialog::uac(&leg.invite, &resp, leg.dest, local) else {
            return self.xfer_failed(500, "Server Internal Error");
        };
        let ack = d.ack(super::cseq_number(&leg.invite));
        let dest = leg.dest;
        self.post(Command::Stateless {
            msg: Message::Request(ack),
            dest,
        });
        if let Some(l) = self.legs.get_mut(i as usize) {
            l.state = LegState::Answered;
            l.dialog = Some(d.clone());
        }
        let Some(a) = self.xfer.active.as_ref() else {
            return;
        };
        let (slot, kind, target) = (a.slot, a.kind, a.target.clone());
        let negotiated = Sdp::parse_bytes(&resp.body)
            .ok()
            .zip(a.offer.as_ref())
            .and_then(|(answer, offer)| negotiate(offer, &answer).ok());
        let (Some(n), Some(relay)) = (negotiated, self.relay.clone()) else {
            return self.xfer_failed(488, "Not Acceptable Here");
        };
        relay.set_remote(slot, n.remote_rtp);
        let f = leg_format(&n.codec, n.telephone_event);
        relay.set_format(slot, f);
        self.leg_formats[slot as usize] = f;
        if let Some(o) = self.xfer.active.as_mut().and_then(|a| a.origin.take()) {
            self.origins[slot as usize] = o;
        }
        self.notify("SIP/2.0 200 OK", true);
        // Release the transferor.
        let old = self.slot_dialog(slot).map(|d| {
            let bye = d.request(Method::Bye);
            (bye, d.peer, d.call_id.clone())
        });
        if let Some((bye, dest, call_id)) = old {
            self.post(Command::Stateless {
                msg: Message::Request(bye),
                dest,
            });
            self.guard.state.b_dialogs.retain(|x| x.call_id != call_id);
            self.xfer.released.push(call_id);
        }
        let new_call_id = d.call_id.clone();
        self.guard
            .state
            .b_calling
            .retain(|(r, _)| r.call_id() != Some(new_call_id.as_str()));
        match slot {
            Leg::B => {
                if let Some(w) = self.winner.and_then(|w| self.legs.get_mut(w as usize)) {
                    w.state = LegState::Done;
                }
                self.winner = Some(i);
                self.negotiated_b = Some(n);
                self.guard
                    .state
                    .b_dialogs
                    .retain(|x| x.call_id != new_call_id);
                self.guard.state.b_dialogs.push(d);
            }
            Leg::A => {
                if let Some(l) = self.legs.get_mut(i as usize) {
                    l.state = LegState::Done;
                }
                self.guard
                    .state
                    .b_dialogs
                    .retain(|x| x.call_id != new_call_id);
                self.a_dialog = Some(d.clone());
                self.guard.state.a_dialog = Some(d);
                self.a_acked = true;
                self.session_timer_stop();
                self.post(Command::Route {
                    call_id: new_call_id.clone(),
                    to: ctx.address().recipient(),
                    side: Side::A,
                });
            }
        }
        self.xfer.active = None;
        tracing::info!(call_id = %self.guard.state.record.call_id, kind, %target, "transfer completed");
        self.setup.services.events.publish(
            "call.transferred",
            json!({
                "call_id": self.guard.state.record.call_id,
                "kind": kind,
                "transferor": slot_name(slot),
                "to": target,
                "leg_call_id": new_call_id,
            }),
        );
    }

    /// Another call asks for the party across the dialog `h.replaces` names ([`HandOver`]).
    pub(super) fn hand_over(&mut self, ctx: &mut Context<Self>, h: HandOver) -> ControlResult {
        let rep = &h.replaces;
        if self.ended || self.xfer.active.is_some() {
            return refused(481, "Call/Transaction Does Not Exist");
        }
        let matches = |d: &Dialog| rep.matches(&d.call_id, &d.local_tag, &d.remote_tag);
        let named = if self.a_dialog.as_ref().is_some_and(matches) {
            Some(Leg::A)
        } else if self
            .winner
            .and_then(|w| self.legs.get(w as usize))
            .and_then(|l| l.dialog.as_ref())
            .is_some_and(matches)
        {
            Some(Leg::B)
        } else {
            None
        };
        let Some(named) = named else {
            tracing::debug!(?rep, a = ?self.a_dialog.as_ref().map(|d| (&d.call_id, &d.local_tag, &d.remote_tag)),
                "no dialog matches");
            let early_b = self.legs.iter().any(|l| {
                l.call_id == rep.call_id && matches!(l.state, LegState::Calling | LegState::Early)
            });
            if early_b {
                return refused(
                    486,
                    "Busy Here (early dialog: call pickup is not supported)",
                );
            }
            return refused(481, "Call/Transaction Does Not Exist");
        };
        if rep.early_only {
            return refused(486, "Busy Here (the dialog is confirmed; early-only)");
        }
        let Some(w) = self.winner else {
            return refused(486, "Busy Here (the call is in a dialplan)");
        };
        if self.srtp.secured(Leg::A) || self.srtp.secured(Leg::B) {
            return refused(488, "Not Acceptable Here (SRTP call)");
        }
        let party_leg = named.other();
        let party = match party_leg {
            Leg::A => {
                self.guard.state.a_dialog = None;
                self.session_timer_stop();
                self.a_dialog.take()
            }
            Leg::B => {
                let d = self.legs.get_mut(w as usize).and_then(|l| {
                    l.state = LegState::Done;
                    l.dialog.clone()
                });
                if let Some(d) = &d {
                    self.guard
                        .state
                        .b_dialogs
                        .retain(|x| x.call_id != d.call_id);
                }
                d
            }
        };
        let Some(party) = party else {
            return refused(481, "Call/Transaction Does Not Exist");
        };
        self.post(Command::Route {
            call_id: party.call_id.clone(),
            to: h.to,
            side: h.side,
        });
        self.guard.state.call_ids.retain(|c| *c != party.call_id);
        // BYE the dialog named.
        match named {
            Leg::A => {
                if let Some(d) = self.a_dialog.as_mut() {
                    let (bye, dest) = (d.request(Method::Bye), d.peer);
                    self.post(Command::Stateless {
                        msg: Message::Request(bye),
                        dest,
                    });
                }
            }
            Leg::B => self.hang_up_leg(w),
        }
        tracing::info!(call_id = %self.guard.state.record.call_id, party = %party.call_id,
            cause = h.cause, "dialog replaced: party handed over");
        let _ = h.reply.send(Party {
            dialog: party,
            format: self.leg_formats[party_leg as usize],
            origin: self.origins[party_leg as usize].clone(),
        });
        self.end(ctx, h.cause);
        Ok(json!({ "handed_over": true }))
    }

    /// An INVITE with `Replaces` (RFC 3891): the caller takes the place of the named dialog's
    /// party; the far side of that dialog is re-INVITEd towards this call. True when the
    /// INVITE carries Replaces (and the call continues here).
    pub(super) fn invite_replaces(&mut self, ctx: &mut Context<Self>) -> bool {
        let Some(value) = self
            .setup
            .invite
            .headers
            .get(&HeaderName::Replaces)
            .map(str::to_string)
        else {
            return false;
        };
        if !self.refer_allowed() {
            let r = self.a_response(403, Some("Forbidden (Replaces not allowed)"));
            self.fail_a(ctx, r, "rejected");
            return true;
        }
        let replaces = match parse_replaces(&value) {
            Ok(r) => r,
            Err(e) => {
                let r = self.a_response(400, Some(&format!("Bad Request ({e})")));
                self.fail_a(ctx, r, "rejected");
                return true;
            }
        };
        if self.relay.is_none() {
            let r = self.a_response(
                488,
                Some("Not Acceptable Here (Replaces needs an SDP offer)"),
            );
            self.fail_a(ctx, r, "rejected");
            return true;
        }
        let owner = (replaces.call_id != self.guard.state.record.call_id)
            .then(|| find_owner(&self.setup.services.calls, &replaces.call_id))
            .flatten();
        let Some(owner) = owner else {
            let r = self.a_response(481, Some("Call/Transaction Does Not Exist"));
            self.fail_a(ctx, r, "not_found");
            return true;
        };
        let i = self.legs.len() as u32;
        self.ask_hand_over(ctx, owner, replaces, i, "replaced", move |act, ctx, r| {
            if act.a_final {
                if let Ok(p) = r {
                    let mut d = p.dialog;
                    let (bye, dest) = (d.request(Method::Bye), d.peer);
                    act.xfer.foreign = true;
                    act.post(Command::Stateless {
                        msg: Message::Request(bye),
                        dest,
                    });
                }
                return;
            }
            match r {
                Ok(party) => {
                    let offer = act
                        .offer_to_b
                        .clone()
                        .or_else(|| Sdp::parse_bytes(&act.b_body).ok());
                    let Some(offer) = offer else {
                        let r = act.a_response(488, Some("Not Acceptable Here"));
                        return act.fail_a(ctx, r, "rejected");
                    };
                    if act.adopt(ctx, party, i, offer) {
                        act.xfer.adopted.push(i);
                    } else {
                        let r = act.a_response(500, Some("Server Internal Error"));
                        act.fail_a(ctx, r, "internal_error");
                    }
                }
                Err((status, reason)) => {
                    let r = act.a_response(status, Some(&reason));
                    let cause = if status == 481 {
                        "not_found"
                    } else {
                        "rejected"
                    };
                    act.fail_a(ctx, r, cause);
                }
            }
        });
        true
    }

    /// A response to the re-INVITE of a party adopted by an INVITE with Replaces: publishes
    /// the transfer when answered, releases the party when refused. The B2BUA's own handling
    /// follows (answering or failing the caller).
    pub(super) fn on_adopted_response(&mut self, i: u32, resp: &Response) {
        if !self.xfer.adopted.contains(&i) {
            return;
        }
        if (200..300).contains(&resp.status) {
            self.setup.services.events.publish(
                "call.transferred",
                json!({
                    "call_id": self.guard.state.record.call_id,
                    "kind": "replaces",
                    "transferor": "b",
                    "leg_call_id": self.legs.get(i as usize).map(|l| l.call_id.clone()),
                }),
            );
        } else if resp.status >= 300 {
            if let Some(l) = self.legs.get_mut(i as usize) {
                if let Some(d) = l.dialog.as_mut() {
                    let (bye, dest) = (d.request(Method::Bye), d.peer);
                    self.post(Command::Stateless {
                        msg: Message::Request(bye),
                        dest,
                    });
                }
            }
        }
    }
}

/// The answer to [`Control::Replace`] from a call that cannot hand a party over.
pub(crate) fn not_replaceable() -> ControlError {
    ControlError {
        status: 481,
        error: "Call/Transaction Does Not Exist".into(),
        field: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_names() {
        assert_eq!(slot_name(Leg::A), "a");
        assert_eq!(slot_name(Leg::B), "b");
    }
}
