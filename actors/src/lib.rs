//! switchboard-actors: the long-lived actors of the engine (call B2BUAs, the registrar), the
//! per-shard router that connects them to the SIP core, and the HTTP side (health, metrics).

pub mod api;
pub mod call;
pub mod calls_api;
pub mod cdr;
pub mod chat;
pub mod contact;
pub mod crm;
pub mod dashboard;
pub mod dialplan;
pub mod events;
pub mod files;
pub mod http;
pub mod nat;
pub mod registrar;
pub mod reports;
pub mod router;
pub mod routing;
pub mod serve;
pub mod signing;
pub mod trunk;
pub mod webhook;
pub mod webrtc;
