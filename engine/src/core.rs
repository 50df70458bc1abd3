//! The transaction user of the SIP core until calls arrive: answers what the engine answers on
//! its own (OPTIONS, inspection failures, requests outside any dialog) through the transaction
//! layer, so retransmissions and ACKs are handled by the state machines.

use crate::inspect::{inspect, options_ok, LocalIdentity};
use crate::sip::build::{response, response_with_reason};
use crate::sip::{HeaderName, Method, Request, Response};
use crate::transaction::{TransactionLayer, TuEvent, TxError};
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

    /// Handles every pending event of the layer.
    pub fn drive(&mut self, layer: &mut TransactionLayer, now: Instant) {
        while let Some(ev) = layer.poll_event() {
            self.on_event(layer, now, ev);
        }
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
            TuEvent::AckFor2xx { .. } => {} // no dialogs yet: nothing was answered with 2xx but OPTIONS
            TuEvent::StrayResponse { resp, source } => {
                tracing::debug!(status = resp.status, peer = %source.addr, "stray response dropped");
            }
            TuEvent::Response { .. } | TuEvent::Timeout { .. } | TuEvent::Terminated { .. } => {}
        }
    }

    /// The stateless answer when the layer refuses a request (overload), if one is due.
    pub fn on_layer_error(&self, req: &Request, e: &TxError) -> Option<Response> {
        if req.method == Method::Ack {
            return None;
        }
        match e {
            TxError::Overloaded => {
                let mut r =
                    response_with_reason(req, 503, "Service Unavailable (too many transactions)");
                r.headers.push(HeaderName::RetryAfter, "5");
                Some(r)
            }
            TxError::Malformed(why) => Some(response_with_reason(req, 400, why)),
            _ => None,
        }
    }
}

/// What the engine answers to a request that passed inspection, before call handling exists.
fn answer(req: &Request, cancel_matched: bool) -> Response {
    match req.method {
        Method::Options => options_ok(req),
        Method::Invite => {
            response_with_reason(req, 480, "Temporarily Unavailable (no call handler)")
        }
        Method::Cancel if cancel_matched => response(req, 200),
        Method::Cancel | Method::Bye => response(req, 481),
        _ => response(req, 501),
    }
}
