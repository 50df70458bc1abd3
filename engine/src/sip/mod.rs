//! SIP messages: the wire parser with RFC 4475-grade validation, the message model, grammar
//! helpers and response construction. Typed URIs come from rsipstack's codec (see [`uri::to_rsip`]).

pub mod build;
pub mod grammar;
pub mod header;
pub mod message;
pub mod method;
pub mod parse;
pub mod refer;
pub mod uri;
pub mod via;

pub use header::{Header, HeaderName, Headers};
pub use message::{Message, Request, Response, SipHeaders};
pub use method::Method;
pub use parse::{parse_datagram, parse_stream_message, ParseError};
pub use via::{Via, ViaRef};
