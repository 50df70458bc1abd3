//! switchboard-engine: the SIP core. Message parsing and validation, transports, the sans-IO
//! transaction layer, request inspection (the answers the engine gives on its own), config and
//! the async shell that drives it all.

pub mod api_config;
pub mod auth;
pub mod config;
pub mod core;
pub mod dialog;
pub mod inspect;
pub mod memory;
pub mod metrics;
pub mod prack;
pub mod sdp;
pub mod server;
pub mod session_timer;
pub mod sip;
pub mod tickets_config;
pub mod transaction;
pub mod transport;
