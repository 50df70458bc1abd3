//! switchboard-storage
