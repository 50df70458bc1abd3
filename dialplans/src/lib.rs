//! switchboard-dialplans
