//! A dialplan `dial` through trunks: the gateways to try in order (the trunk's strategy, then
//! the next trunk of a least-cost route), admission under each trunk's limits, the caller ID,
//! number and codec preference of the trunk, a per-gateway INVITE timeout, and failover to the
//! next gateway on 408, 5xx or no answer.

use super::{CallActor, LegState};
use crate::registrar::Binding;
use crate::trunk::{fails_over, normalize, Hop, Lease, Trunk};
use actix::prelude::*;
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_engine::dialog::uri_of;
use switchboard_engine::sdp::Sdp;
use switchboard_engine::sip::{HeaderName, Response};

/// The trunk side of one dial.
pub(super) struct TrunkDial {
    /// Gateways not tried yet.
    hops: VecDeque<Hop>,
    /// The call's slot on the trunk it uses now (kept while the call is bridged).
    lease: Option<Lease>,
    /// The gateway being tried.
    current: Option<Hop>,
    /// Its Request-URI, From and offer.
    leg: Option<(String, String, Bytes)>,
    /// Caller ID the dialplan asked for.
    caller_id: Option<String>,
    /// Why the last gateway or trunk failed.
    failure: Option<(u16, String)>,
}

impl CallActor {
    /// Sets up a dial through `trunks` (each with its number) and returns the first gateway to
    /// call, if any is available.
    pub(super) fn start_trunk_dial(
        &mut self,
        sets: Vec<(Vec<Arc<Trunk>>, String)>,
        caller_id: Option<String>,
    ) -> Option<Binding> {
        let trunks = self.setup.services.trunks.clone();
        let hops: VecDeque<Hop> = sets
            .iter()
            .flat_map(|(ts, number)| trunks.plan(ts, number))
            .collect();
        let none_up = hops.is_empty();
        let ivr = self.ivr.as_mut()?;
        ivr.trunk = Some(Box::new(TrunkDial {
            hops,
            lease: None,
            current: None,
            leg: None,
            caller_id,
            failure: none_up.then(|| (503, "Service Unavailable (no trunk gateway up)".into())),
        }));
        self.next_trunk_hop()
    }

    /// The next gateway to call: admits the call on a new trunk (skipping a trunk over its
    /// limits or without a usable codec), counts it on the gateway, and prepares the leg's
    /// Request-URI, From and offer.
    fn next_trunk_hop(&mut self) -> Option<Binding> {
        let calling = self
            .setup
            .invite
            .headers
            .get(&HeaderName::From)
            .and_then(uri_of)
            .and_then(|u| switchboard_engine::dialog::user_of(&u).map(str::to_string))
            .unwrap_or_default();
        let local_ip = self.local().ip();
        let base = self.b_body.clone();
        let td = self.ivr.as_mut()?.trunk.as_mut()?;
        while let Some(hop) = td.hops.pop_front() {
            let same = td
                .lease
                .as_ref()
                .is_some_and(|l| Arc::ptr_eq(l.trunk(), &hop.trunk));
            if !same {
                td.lease = None;
                match hop.trunk.admit(Instant::now(), false) {
                    Ok(l) => td.lease = Some(l),
                    Err(why) => {
                        tracing::info!(trunk = %hop.trunk.name, ?why, "trunk refused the call");
                        td.failure = Some((503, why.reason().into()));
                        td.hops.retain(|h| !Arc::ptr_eq(&h.trunk, &hop.trunk));
                        continue;
                    }
                }
            }
            let cfg = &hop.trunk.config;
            let body = if base.is_empty() || cfg.codecs.is_empty() {
                Some(base.clone())
            } else {
                Sdp::parse_bytes(&base)
                    .ok()
                    .and_then(|s| crate::trunk::codecs::prefer(&s, &cfg.codecs))
                    .map(|s| Bytes::from(s.to_string()))
            };
            let Some(body) = body else {
                td.failure = Some((488, "Not Acceptable Here (no codec the trunk takes)".into()));
                td.hops.retain(|h| !Arc::ptr_eq(&h.trunk, &hop.trunk));
                td.lease = None;
                continue;
            };
            if let Some(l) = td.lease.as_mut() {
                l.set_gateway(hop.gateway);
            }
            let uri = hop.request_uri();
            let cid = normalize::caller_id(cfg, td.caller_id.as_deref(), &calling);
            let from = format!("<sip:{cid}@{local_ip}>");
            let binding = super::ivr::direct_binding(&uri).map(|mut b| {
                b.source = hop.peer();
                b
            });
            if binding.is_none() {
                continue;
            }
            td.leg = Some((uri, from, body));
            td.current = Some(hop);
            return binding;
        }
        td.lease = None;
        td.current = None;
        td.leg = None;
        None
    }

    /// The From and offer of a B leg to `contact` when it is the trunk gateway being tried.
    pub(super) fn trunk_leg(&self, contact: &str) -> Option<(String, Bytes)> {
        let (uri, from, body) = self.ivr.as_ref()?.trunk.as_ref()?.leg.as_ref()?;
        (uri == contact).then(|| (from.clone(), body.clone()))
    }

    /// Arms the INVITE timeout of the trunk leg just started: no response from the gateway in
    /// `invite_timeout_ms` counts as a 408 and fails over.
    pub(super) fn arm_trunk_timeout(&mut self, ctx: &mut Context<Self>) {
        let Some(td) = self.ivr.as_ref().and_then(|i| i.trunk.as_ref()) else {
            return;
        };
        let (Some((uri, _, _)), Some(hop)) = (&td.leg, &td.current) else {
            return;
        };
        let Some(i) = self
            .legs
            .iter()
            .rposition(|l| &l.invite.uri == uri && l.state == LegState::Calling)
        else {
            return;
        };
        let wait = Duration::from_millis(hop.trunk.config.invite_timeout_ms);
        ctx.run_later(wait, move |act, ctx| {
            if act
                .legs
                .get(i)
                .is_some_and(|l| l.state == LegState::Calling)
                && !act.ended
            {
                let r = Response {
                    status: 408,
                    reason: "Request Timeout (gateway did not answer)".into(),
                    headers: Default::default(),
                    body: Bytes::new(),
                };
                act.on_leg_response(ctx, i as u32, r);
            }
        });
    }

    /// A dial failed with `code`: the next gateway when the failure is one to fail over on
    /// and one is left, else the trunk dial ends (its slot freed) and `None`.
    pub(super) fn trunk_failover(&mut self, code: u16, reason: &str) -> Option<Binding> {
        let td = self.ivr.as_mut()?.trunk.as_mut()?;
        if let Some(hop) = &td.current {
            hop.trunk.gateway_failed(hop.gateway, code, reason);
            tracing::info!(trunk = %hop.trunk.name, gateway = %hop.address(), code, reason, "trunk gateway failed");
        }
        td.failure = Some((code, reason.to_string()));
        if fails_over(code) {
            if let Some(b) = self.next_trunk_hop() {
                return Some(b);
            }
        }
        if let Some(ivr) = self.ivr.as_mut() {
            ivr.trunk = None;
        }
        None
    }

    /// Why the trunk dial could not even start (no gateway up, limits, codecs).
    pub(super) fn trunk_failure(&self) -> Option<(u16, String)> {
        self.ivr.as_ref()?.trunk.as_ref()?.failure.clone()
    }
}

impl CallActor {
    /// Counts a failed caller authentication towards a ban of its source.
    pub(super) fn auth_failed(&self) {
        self.setup
            .services
            .trunks
            .auth_failed(self.setup.source.addr.ip(), Instant::now());
    }

    /// Digest credentials naming a trunk's `inbound_username`: checked against the trunk's
    /// password; when right, the call is that trunk's inbound call (admitted under its limits,
    /// 503 with Retry-After over them). Returns false when the user is not a trunk's.
    pub(super) fn trunk_credentials(
        &mut self,
        ctx: &mut Context<Self>,
        creds: &switchboard_engine::auth::Credentials,
    ) -> bool {
        use switchboard_engine::auth::{ha1, Algorithm, Verdict};
        let trunks = self.setup.services.trunks.clone();
        let Some(t) = trunks.by_inbound_user(&creds.username) else {
            return false;
        };
        let auth = &self.setup.services.auth;
        let alg = creds.algorithm().unwrap_or(Algorithm::Md5);
        let password = t.config.inbound_password.as_deref().unwrap_or_default();
        let ha1 = ha1(alg, &creds.username, auth.realm(), password);
        let now = crate::registrar::now_ms().max(0) as u64;
        match auth.verify(creds, "INVITE", &ha1, now) {
            Verdict::Ok => match t.admit(Instant::now(), true) {
                Ok(lease) => {
                    self.setup.trunk = Some(lease);
                    self.route(ctx);
                }
                Err(why) => {
                    let mut r = self.a_response(503, Some(why.reason()));
                    r.headers
                        .push(HeaderName::RetryAfter, trunks.retry_after(why).to_string());
                    self.fail_a(ctx, r, "trunk_limit");
                }
            },
            Verdict::Stale => self.challenge(ctx, true),
            Verdict::BadNonce => self.challenge(ctx, false),
            Verdict::WrongPassword => {
                self.auth_failed();
                let r = self.a_response(403, Some("Forbidden (wrong password)"));
                self.fail_a(ctx, r, "rejected");
            }
        }
        true
    }
}

/// The CSeq number of a request (1 when unreadable).
pub(super) fn cseq_number(req: &switchboard_engine::sip::Request) -> u32 {
    req.headers
        .get(&HeaderName::CSeq)
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(1)
}

impl CallActor {
    /// A trunk gateway challenged our INVITE (401/407): sends it again once, with the trunk's
    /// digest credentials, a new branch and the next CSeq (same Call-ID and From tag). False
    /// when this is not the trunk leg, there are no credentials, or we already answered a
    /// challenge on this leg.
    pub(super) fn trunk_auth_retry(
        &mut self,
        ctx: &mut Context<Self>,
        i: u32,
        resp: &Response,
    ) -> bool {
        use super::{Command, TxTag};
        use switchboard_engine::auth::Challenge;
        let Some(td) = self.ivr.as_ref().and_then(|iv| iv.trunk.as_ref()) else {
            return false;
        };
        let (Some(hop), Some((uri, _, _))) = (&td.current, &td.leg) else {
            return false;
        };
        let Some((user, password)) = hop.trunk.config.outbound_credentials() else {
            return false;
        };
        let (user, password) = (user.to_string(), password.to_string());
        let Some(leg) = self.legs.get(i as usize) else {
            return false;
        };
        if &leg.invite.uri != uri
            || leg.invite.headers.get(&HeaderName::Authorization).is_some()
            || leg
                .invite
                .headers
                .get(&HeaderName::ProxyAuthorization)
                .is_some()
        {
            return false;
        }
        let (from, to) = if resp.status == 401 {
            (HeaderName::WwwAuthenticate, HeaderName::Authorization)
        } else {
            (
                HeaderName::ProxyAuthenticate,
                HeaderName::ProxyAuthorization,
            )
        };
        let Some(ch) = resp.headers.get_all(&from).find_map(Challenge::parse) else {
            return false;
        };
        let local = self.setup.shard.shared.local_addr(leg.dest.transport);
        let mut req = leg.invite.clone();
        let cseq = cseq_number(&req) + 1;
        req.headers.set(
            HeaderName::Via,
            switchboard_engine::dialog::via_value(local, leg.dest.transport),
        );
        req.headers.set(HeaderName::CSeq, format!("{cseq} INVITE"));
        let cnonce = format!("{:08x}", rand::random::<u32>());
        req.headers.push(
            to,
            ch.authorization(&user, &password, "INVITE", &req.uri, 1, &cnonce),
        );
        let dest = leg.dest;
        let call_id = leg.call_id.clone();
        if let Some(l) = self.legs.get_mut(i as usize) {
            l.invite = req.clone();
        }
        for (r, _) in self.guard.state.b_calling.iter_mut() {
            if r.headers.get(&HeaderName::CallId) == Some(call_id.as_str()) {
                *r = req.clone();
            }
        }
        tracing::debug!(
            status = resp.status,
            "trunk gateway challenged the INVITE; answering"
        );
        self.post(Command::Send {
            req,
            dest,
            owner: Some(ctx.address().recipient()),
            tag: TxTag::Invite(i),
        });
        true
    }
}
