//! switchboard-actors: the long-lived actors of the engine (call B2BUAs, the registrar), the
//! per-shard router that connects them to the SIP core, and the HTTP side (health, metrics).

pub mod call;
pub mod cdr;
pub mod contact;
pub mod dialplan;
pub mod events;
pub mod http;
pub mod registrar;
pub mod router;
pub mod routing;
pub mod serve;
pub mod trunk;
pub mod webhook;
