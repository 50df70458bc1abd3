//! DTLS-SRTP (RFC 5763/5764) on a call's SIP legs: the engine's certificate, the offer/answer
//! state of one leg (`a=fingerprint`, `a=setup`), and the outcome of a leg's handshake.
//!
//! `srtp.rs` routes every SDP through here: a DTLS offer from a leg is answered with the
//! engine's fingerprint and `a=setup:active` (to `actpass` or `passive`) or `passive` (to
//! `active`); an offer the engine makes is `actpass` and the answer's `setup` decides the
//! engine's role. Once the leg's remote address is set, [`CallActor::start_dtls`] starts the
//! handshake on the relay; its outcome comes back as a [`DtlsMsg`]: a failure (fingerprint
//! mismatch, timeout) ends the call with BYE, logged and counted.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix::{Context, Handler, Message};
use switchboard_engine::config::{CallsConfig, DtlsMode};
use switchboard_engine::sdp::Setup;
use switchboard_media::dtls::{DtlsIdentity, DtlsRole, Fingerprint};
use switchboard_media::{DtlsOutcome, DtlsParams, Leg, RelaySession};

use super::CallActor;

/// The engine's DTLS identity: from `calls.dtls_certificate`, or self-signed, made once per
/// process (see [`init_identity`]).
static IDENTITY: OnceLock<Result<Arc<DtlsIdentity>, String>> = OnceLock::new();

/// Makes (or loads) the engine's DTLS certificate; call at start so a bad file shows at once.
/// Later calls return the same identity.
pub fn init_identity(config: &CallsConfig) -> Result<Arc<DtlsIdentity>, String> {
    IDENTITY
        .get_or_init(|| {
            let id = if config.dtls_certificate.is_empty() {
                DtlsIdentity::generate().map_err(|e| e.to_string())?
            } else {
                let pem = std::fs::read_to_string(&config.dtls_certificate)
                    .map_err(|e| format!("{}: {e}", config.dtls_certificate))?;
                DtlsIdentity::from_pem(&pem)
                    .map_err(|e| format!("{}: {e}", config.dtls_certificate))?
            };
            tracing::info!(fingerprint = %id.fingerprint(), "DTLS-SRTP certificate");
            Ok(Arc::new(id))
        })
        .clone()
}

/// What one call needs to terminate DTLS-SRTP: the mode, the identity, the deadline.
#[derive(Clone, Debug)]
pub(super) struct DtlsSetup {
    pub mode: DtlsMode,
    pub identity: Option<Arc<DtlsIdentity>>,
    pub timeout: Duration,
}

impl Default for DtlsSetup {
    fn default() -> Self {
        DtlsSetup {
            mode: DtlsMode::Passthrough,
            identity: None,
            timeout: switchboard_media::dtls::HANDSHAKE_TIMEOUT,
        }
    }
}

impl DtlsSetup {
    /// From the configuration; without a usable certificate DTLS offers are refused (488).
    pub fn from_config(config: &CallsConfig) -> DtlsSetup {
        let identity = match config.dtls {
            DtlsMode::Terminate => match init_identity(config) {
                Ok(id) => Some(id),
                Err(e) => {
                    tracing::warn!(error = %e, "no DTLS certificate: DTLS-SRTP refused");
                    None
                }
            },
            _ => None,
        };
        DtlsSetup {
            mode: config.dtls,
            identity,
            timeout: Duration::from_secs(config.dtls_handshake_timeout_secs.max(1)),
        }
    }

    /// The engine's `a=fingerprint` value.
    pub fn fingerprint(&self) -> Option<String> {
        self.identity.as_ref().map(|i| i.fingerprint().to_string())
    }
}

/// The DTLS association a leg's SDP asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct LegDtls {
    /// The engine's side.
    pub role: DtlsRole,
    /// The leg's certificate fingerprint.
    pub peer: Fingerprint,
    /// RTCP multiplexed on the RTP port (RFC 5761).
    pub mux: bool,
}

/// The engine's role and its `a=setup` answer for an offer's `a=setup` (RFC 5763 §5: answer
/// `active` to `actpass`; an absent attribute counts as `actpass`). Err for `holdconn`.
pub(super) fn answer_setup(offered: Option<Setup>) -> Result<(DtlsRole, Setup), String> {
    match offered.unwrap_or(Setup::ActPass) {
        Setup::ActPass | Setup::Passive => Ok((DtlsRole::Client, Setup::Active)),
        Setup::Active => Ok((DtlsRole::Server, Setup::Passive)),
        Setup::HoldConn => Err("a=setup:holdconn is not supported".into()),
    }
}

/// The engine's role from the `a=setup` of an answer to its `actpass` offer.
pub(super) fn role_from_answer(answered: Option<Setup>) -> Result<DtlsRole, String> {
    match answered {
        // RFC 5763 §5: the answerer says active or passive; RFC 4145's default is active.
        Some(Setup::Active) | None => Ok(DtlsRole::Server),
        Some(Setup::Passive) => Ok(DtlsRole::Client),
        Some(s) => Err(format!("a=setup:{} in an answer", s.as_str())),
    }
}

/// The outcome of a leg's handshake, for the call actor.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(super) struct DtlsMsg {
    pub leg: Leg,
    pub outcome: DtlsOutcome,
}

impl CallActor {
    /// Starts the handshake a leg's SDP asked for (after its remote address is set), and
    /// watches its outcome.
    pub(super) fn start_dtls(&mut self, leg: Leg) {
        let Some(relay) = self.relay.clone() else {
            return;
        };
        let Some((want, identity, timeout)) = self.srtp.dtls_to_start(leg) else {
            return;
        };
        if want.mux {
            relay.set_remote_rtcp(leg, relay.remote(leg));
        }
        let params = DtlsParams {
            identity,
            role: want.role,
            peer: want.peer.clone(),
            timeout,
        };
        match start(&relay, leg, params) {
            Ok(rx) => {
                tracing::info!(?leg, role = ?want.role, "DTLS-SRTP: handshake started");
                self.srtp.dtls_started(leg, want);
                if let Some(addr) = self.guard.addr.clone() {
                    actix_rt::spawn(async move {
                        if let Ok(outcome) = rx.await {
                            addr.do_send(DtlsMsg { leg, outcome });
                        }
                    });
                }
            }
            Err(e) => {
                tracing::warn!(?leg, error = %e, "DTLS-SRTP could not start");
                self.setup.shard.shared.metrics.dtls_handshakes_failed.inc();
            }
        }
    }
}

fn start(
    relay: &RelaySession,
    leg: Leg,
    params: DtlsParams,
) -> Result<tokio::sync::oneshot::Receiver<DtlsOutcome>, String> {
    relay.start_dtls(leg, params)
}

impl Handler<DtlsMsg> for CallActor {
    type Result = ();

    fn handle(&mut self, msg: DtlsMsg, ctx: &mut Context<Self>) {
        let metrics = &self.setup.shard.shared.metrics;
        match msg.outcome {
            DtlsOutcome::Connected { suite } => {
                metrics.dtls_handshakes_ok.inc();
                tracing::info!(leg = ?msg.leg, %suite, "DTLS-SRTP handshake done");
            }
            DtlsOutcome::Failed(reason) => {
                metrics.dtls_handshakes_failed.inc();
                tracing::warn!(leg = ?msg.leg, %reason, "DTLS-SRTP failed: ending the call");
                if self.ended {
                    return;
                }
                if self.a_final {
                    self.hang_up(ctx, "dtls_failed");
                } else {
                    let r = self.a_response(488, Some("Not Acceptable Here (DTLS-SRTP failed)"));
                    self.fail_a(ctx, r, "dtls_failed");
                }
            }
        }
        self.refresh_listing();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_negotiation() {
        assert_eq!(
            answer_setup(Some(Setup::ActPass)),
            Ok((DtlsRole::Client, Setup::Active))
        );
        assert_eq!(answer_setup(None), Ok((DtlsRole::Client, Setup::Active)));
        assert_eq!(
            answer_setup(Some(Setup::Passive)),
            Ok((DtlsRole::Client, Setup::Active))
        );
        assert_eq!(
            answer_setup(Some(Setup::Active)),
            Ok((DtlsRole::Server, Setup::Passive))
        );
        assert!(answer_setup(Some(Setup::HoldConn)).is_err());
        assert_eq!(role_from_answer(Some(Setup::Active)), Ok(DtlsRole::Server));
        assert_eq!(role_from_answer(Some(Setup::Passive)), Ok(DtlsRole::Client));
        assert!(role_from_answer(Some(Setup::ActPass)).is_err());
    }
}
