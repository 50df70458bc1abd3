//! `POST /api/v1/calls`: validates the two endpoints and starts the two-leg outbound call
//! ([`crate::call::CallbackCall::originate`]) on the first shard's arbiter: it rings `from`;
//! when `from` answers it hears ringback while the engine calls `to`; when `to` answers the
//! two are bridged (FreeSWITCH `originate … &bridge`, Asterisk `Originate`).

use super::{CallDirectory, CallInfo, ControlError, OriginEnv};
use crate::registrar::{aor_key, contact_socket_addr, Lookup};
use actix::Actor;
use std::time::Duration;

/// A validated endpoint: a registered user's name or a SIP URI with an IP host.
pub struct Endpoint(pub String);

impl Endpoint {
    fn is_uri(&self) -> bool {
        self.0.contains(':')
    }
}

/// Checks an endpoint value; `field` names it in errors.
pub fn endpoint(field: &str, v: &str) -> Result<Endpoint, ControlError> {
    let v = v.trim();
    if v.starts_with("sip:") {
        let clean = !v.contains(|c: char| c.is_whitespace() || "<>\"".contains(c));
        if clean && v.len() <= 256 && contact_socket_addr(v).is_some() {
            return Ok(Endpoint(v.to_string()));
        }
        return Err(ControlError::field(
            422,
            field,
            "a SIP URI with an IP host (sip:user@127.0.0.1:5070) or a user name",
        ));
    }
    let user = !v.is_empty()
        && v.len() <= 64
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-+".contains(c));
    if user {
        Ok(Endpoint(v.to_string()))
    } else {
        Err(ControlError::field(
            422,
            field,
            "a user name (letters, digits, . _ - +) or a sip: URI",
        ))
    }
}

/// Checks a caller ID override (a SIP URI).
pub fn caller_id(v: &str) -> Result<(), ControlError> {
    let ok = (v.starts_with("sip:") || v.starts_with("tel:"))
        && v.len() <= 256
        && !v.contains(|c: char| c.is_whitespace() || "<>\"".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ControlError::field(422, "caller_id", "a sip: or tel: URI"))
    }
}

/// A user endpoint must be registered now (422 naming the field otherwise).
pub async fn check_reachable(
    origin: &OriginEnv,
    field: &str,
    e: &Endpoint,
) -> Result<(), ControlError> {
    if e.is_uri() {
        return Ok(());
    }
    let services = &origin.env.services;
    let key = aor_key(&format!("sip:{}@{}", e.0, services.auth.realm()))
        .ok_or_else(|| ControlError::field(422, field, "not a user name"))?;
    let bindings = services
        .registrar
        .send(Lookup(key))
        .await
        .unwrap_or_default();
    if bindings.is_empty() {
        return Err(ControlError::field(422, field, "not registered"));
    }
    Ok(())
}

/// What to originate.
pub struct Request {
    /// Rung first.
    pub from: Endpoint,
    /// Called once `from` answered.
    pub to: Endpoint,
    /// Ring time of each endpoint (`calls.no_answer_timeout_secs` when `None`).
    pub ring: Option<Duration>,
    /// The caller ID both endpoints see.
    pub caller_id: Option<String>,
}

/// Starts the call on the origin's arbiter; returns its directory view once it is listed.
pub async fn start(
    dir: &CallDirectory,
    origin: OriginEnv,
    req: Request,
) -> Result<CallInfo, ControlError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let env = origin.env.clone();
    let ring = req.ring.unwrap_or_else(|| {
        Duration::from_secs(env.shard.shared.config.calls.no_answer_timeout_secs)
    });
    crate::call::CallbackCall::start_in_arbiter(&origin.arbiter, move |_| {
        crate::call::CallbackCall::originate(env, req.from.0, req.to.0, ring, req.caller_id, tx)
    });
    let id = tokio::time::timeout(Duration::from_secs(10), rx)
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or_else(|| ControlError {
            status: 503,
            error: "the call could not be started".into(),
            field: None,
        })?;
    dir.get(id).map(|(i, _)| i).ok_or_else(|| ControlError {
        status: 410,
        error: "the call ended at once".into(),
        field: None,
    })
}
