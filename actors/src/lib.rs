//! switchboard-actors
