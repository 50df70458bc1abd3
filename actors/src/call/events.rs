//! The call's events on the bus: `call.created` (routing starts, after authentication),
//! `call.ringing` (the first 18x relayed to the caller), `call.answered` (200 to the caller)
//! and `call.ended` (with cause, final SIP code and answered duration). A call that never got
//! past authentication (a 407 challenge) publishes nothing.

use super::{CallActor, CallRecord};
use crate::events::Events;
use serde_json::json;

impl CallActor {
    /// `call.created`, once.
    pub(super) fn publish_created(&mut self) {
        let t = &mut self.guard.state;
        if t.announced {
            return;
        }
        t.announced = true;
        let r = &t.record;
        self.setup.services.events.publish(
            "call.created",
            json!({
                "call_id": r.call_id,
                "caller": r.caller,
                "callee": r.callee,
                "source": self.setup.source.addr.to_string(),
                "trunk": self.setup.trunk.as_ref().map(|l| l.trunk().name.clone()),
            }),
        );
    }

    /// `call.ringing`, once, with the status relayed (180 or 183).
    pub(super) fn publish_ringing(&mut self, status: u16) {
        let t = &mut self.guard.state;
        if !t.announced || t.rang {
            return;
        }
        t.rang = true;
        self.setup.services.events.publish(
            "call.ringing",
            json!({ "call_id": t.record.call_id, "status": status }),
        );
    }

    /// `call.answered`.
    pub(super) fn publish_answered(&self) {
        let t = &self.guard.state;
        if !t.announced {
            return;
        }
        self.setup
            .services
            .events
            .publish("call.answered", json!({ "call_id": t.record.call_id }));
    }
}

/// `call.ended` for a finished record (from the actor or its teardown guard).
pub(super) fn publish_ended(events: &Events, r: &CallRecord) {
    let duration_ms = r.answer_ms.map_or(0, |a| (r.end_ms - a).max(0));
    events.publish(
        "call.ended",
        json!({
            "call_id": r.call_id,
            "caller": r.caller,
            "callee": r.callee,
            "cause": r.cause,
            "sip_code": r.sip_code,
            "answered": r.answer_ms.is_some(),
            "duration_ms": duration_ms,
        }),
    );
}
