//! The event stream: `noun.verb` events (`call.created`, `agent.state_changed`, …) with a
//! sequence number that grows by one per event, for consumers that must not miss any.
//!
//! * [`Events`] (`bus.rs`) is the handle every producer holds: [`Events::publish`] assigns the
//!   next sequence number and a timestamp, keeps the event in a ring of recent events, hands it to
//!   each live consumer's bounded buffer and to the storage writer, and returns at once: a slow
//!   database or consumer never blocks the caller. A consumer whose buffer is full is cut off
//!   (it reconnects with its last sequence number and replays from storage); the others go on.
//! * [`Subscription`] reads storage after a sequence number, then switches to live delivery
//!   under the bus lock, so the switch-over has neither a gap nor a duplicate.
//! * `api.rs` serves `GET /api/v1/events` (WebSocket or JSON pages); `webhooks.rs` POSTs events
//!   to configured URLs, signed Stripe-style, in order, with retries.
//!
//! Wire format of one event (a WebSocket text frame, a webhook body, an element of a page):
//! `{"seq":123,"at":1732480000000,"type":"call.created","data":{…}}`.

pub mod api;
mod bus;
mod filter;
pub mod webhooks;

pub use bus::{Event, Events, Next, Settings, Subscription};
pub use filter::{Filter, FilterError};
