//! The transaction user of the SIP core until calls arrive: answers what the engine answers on
//! its own (OPTIONS, inspection failures, requests outside any dialog) through the transaction
//! layer, so retransmissions and ACKs are handled by the state machines.

use crate::inspect::{inspect, options_ok, LocalIdentity};
use crate::sip::build::{response, response_with_reason};
use crate::sip::{Method, Request, Response};
use crate::transaction::{TransactionLayer, TuEvent};
use std::time::Instant;

/// The default transaction user.
pub struct Core {
    local: LocalIdentity,
}

impl Core {
    /// A core that knows its own identity (for loop detection).
    pub fn new(local: LocalIdentity) -> Core {
        Core { local }
    }

    /// Handles one event of the layer.
    pub fn handle(&mut self, layer: &mut TransactionLayer, now: Instant, ev: TuEvent) {
        self.on_event(layer, now, ev);
    }

    fn on_event(&mut self, layer: &mut TransactionLayer, now: Instant, ev: TuEvent) {
        match ev {
            TuEvent::Request {
                tx, req, cancels, ..
            } => {
                let resp =
                    inspect(&req, &self.local).unwrap_or_else(|| answer(&req, cancels.is_some()));
                if let Err(e) = layer.send_response(now, &tx, resp) {
                    tracing::debug!(error = %e, "answer not sent");
                }
            }
            TuEvent::AckFor2xx { .. } => {} // no dialogs here: only OPTIONS is answered with 2xx
            TuEvent::StrayResponse { resp, source } => {
                tracing::debug!(status = resp.status, peer = %source.addr, "stray response dropped");
            }
            TuEvent::Response { .. } | TuEvent::Timeout { .. } | TuEvent::Terminated { .. } => {}
        }
    }
}

/// What the engine answers on its own to a request that passed inspection and that no call or
/// registrar handles.
pub fn answer(req: &Request, cancel_matched: bool) -> Response {
    match req.method {
        Method::Options => options_ok(req),
        Method::Invite => {
            response_with_reason(req, 480, "Temporarily Unavailable (no call handler)")
        }
        Method::Cancel if cancel_matched => response(req, 200),
        Method::Cancel
        | Method::Bye
        | Method::Update
        | Method::Info
        | Method::Prack
        | Method::Refer
        | Method::Notify => response(req, 481),
        _ => response(req, 501),
    }
}
