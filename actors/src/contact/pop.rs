//! The CRM screen pop on offers. An offer waits for the customer's pop (`crm::pop`: contact,
//! open tickets, newest timeline entries; the contact is created when unknown) at most
//! `screen_pop_timeout_ms`: the lookup runs as a task beside the routing actor, which goes on
//! routing meanwhile and delivers the offer ([`RoutingActor::deliver_offer`]) when the pop
//! arrives or the time is up, whichever comes first (then without the pop, logged). For a call
//! the agent's phone rings at delivery too, so the desktop always knows the caller first.

use super::routing_actor::RoutingActor;
use super::ReservationId;
use crate::crm::pop::{chat_identities, screen_pop, PopKey};
use crate::crm::voice::{caller_identity, VoiceCall};
use crate::routing::Channel;
use actix::prelude::*;
use serde_json::Value;

/// The pop of offer `reservation` is ready (`None`: none, or the lookup failed or took too
/// long).
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct PopReady {
    reservation: ReservationId,
    pop: Option<Value>,
}

impl Handler<PopReady> for RoutingActor {
    type Result = ();

    fn handle(&mut self, msg: PopReady, ctx: &mut Context<Self>) {
        self.deliver_offer(msg.reservation, msg.pop);
        self.drain();
        self.rearm(ctx);
    }
}

impl RoutingActor {
    /// Starts the screen-pop lookup of offer `r`; false when there is none to make (no CRM,
    /// no identity), and the offer goes out at once.
    pub(super) fn start_screen_pop(&mut self, r: ReservationId) -> bool {
        let (Some(settings), Some(me)) = (self.settings.screen_pop.clone(), self.me.clone()) else {
            return false;
        };
        let Some(key) = self.pop_key(r) else {
            return false;
        };
        let storage = settings.crm.storage().clone();
        let now = i64::try_from(self.now()).unwrap_or(i64::MAX);
        actix_rt::spawn(async move {
            let lookup = async {
                if !settings.debug_delay.is_zero() {
                    tokio::time::sleep(settings.debug_delay).await;
                }
                screen_pop(&storage, &key, settings.entries, now).await
            };
            let pop = match tokio::time::timeout(settings.timeout, lookup).await {
                Ok(Ok(pop)) => pop,
                Ok(Err(e)) => {
                    tracing::warn!(reservation = %r, error = %e, "screen pop failed; offering without it");
                    None
                }
                Err(_) => {
                    tracing::warn!(reservation = %r, timeout_ms = settings.timeout.as_millis() as u64,
                        "screen pop timed out; offering without it");
                    None
                }
            };
            me.do_send(PopReady {
                reservation: r,
                pop,
            });
        });
        true
    }

    /// Who the customer of offer `r` is, for the CRM.
    fn pop_key(&self, r: ReservationId) -> Option<PopKey> {
        let offer = self.offers.get(&r)?;
        let live = self.live.get(&offer.interaction)?;
        let queue = live.queue.map(|q| self.dir.queue_name(q));
        if offer.channel == Channel::Voice {
            let caller = live.customer.address.clone().unwrap_or_default();
            return match &live.voice {
                Some(leg) if !leg.call_id.starts_with("callback-") => {
                    Some(PopKey::Voice(VoiceCall {
                        call_id: leg.call_id.clone(),
                        caller,
                        agent: None,
                        queue,
                        started_at_ms: i64::try_from(live.created).unwrap_or(0),
                    }))
                }
                // A callback: its caller's number only.
                _ => caller_identity(&caller).map(|i| PopKey::Identities(vec![i])),
            };
        }
        let ids = chat_identities(&live.attributes, live.customer.id.as_deref());
        (!ids.is_empty()).then_some(PopKey::Identities(ids))
    }
}
