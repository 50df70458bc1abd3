//! switchboard-tests
