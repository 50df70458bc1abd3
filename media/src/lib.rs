//! switchboard-media
