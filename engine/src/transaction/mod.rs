//! The sans-IO SIP transaction layer (RFC 3261 §17, RFC 6026).
//!
//! [`TransactionLayer`] owns every client and server transaction, matches messages to them,
//! runs timers A–M from instants the caller passes in, and queues messages to send
//! ([`Transmit`]) and events for the transaction user ([`TuEvent`]). It never touches a
//! socket or a clock, so it is tested with simulated time and fuzzed.
//!
//! Code map:
//! * [`peer`]: [`TransportKind`] and [`Peer`], where messages come from and go to;
//! * [`key`]: [`TxKey`] handles, matching keys, [`new_branch`];
//! * [`timers`]: [`TimerConfig`] (T1, T2, T4) and the lazy-deletion deadline queue;
//! * `client_invite`, `client_non_invite`, `server_invite`, `server_non_invite`: the four
//!   state machines;
//! * [`output`]: [`Transmit`], [`TuEvent`], [`TxError`];
//! * [`layer`]: [`TransactionLayer`] and [`LayerConfig`].

mod client_invite;
mod client_non_invite;
pub mod key;
pub mod layer;
pub mod output;
pub mod peer;
mod server_invite;
mod server_non_invite;
pub mod timers;

pub use key::{new_branch, TxKey, TxKind};
pub use layer::{LayerConfig, LayerStats, TransactionLayer};
pub use output::{Transmit, TuEvent, TxError};
pub use peer::{Peer, TransportKind};
pub use timers::TimerConfig;
