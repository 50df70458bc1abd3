//! Transports: UDP and TCP listeners (TLS and WebSocket plug in beside them), stream framing,
//! and response routing. The shells here only move bytes; parsing and decisions live in
//! [`crate::sip`], [`crate::inspect`] and [`crate::transaction`].

pub mod framing;
pub mod route;
pub mod tcp;
pub mod udp;

pub use crate::transaction::{Peer, TransportKind};
