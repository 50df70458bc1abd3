//! The call-control API under `/api/v1/calls`: a directory of live calls that every call actor
//! lists itself in ([`directory`]), the requests a call accepts ([`control`]), originating
//! calls ([`originate`]: ring one endpoint, then call the other and bridge, through the same
//! two-leg outbound call that contact-centre callbacks use) and the HTTP routes ([`api`]).
//!
//! The HTTP thread never touches a call's state: it reads the directory's snapshots and sends
//! [`Control`] messages to the call's actor on its shard, which answers with JSON or a
//! [`ControlError`] (status, message, field).

pub mod api;
pub mod control;
pub mod directory;
pub mod originate;

pub use api::configure;
pub use control::{ApiLeg, Control, ControlError, ControlResult};
pub use directory::{CallDirectory, CallInfo, CallKind, LegInfo, Listing, OriginEnv};
