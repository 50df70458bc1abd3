//! switchboard-load: load generation and benchmarks for Switchboard.
//!
//! * `switchboard load` ([`cli::run`]): the call-flood generator. UAC and UAS roles are
//!   sans-IO state machines ([`uac`], [`uas`]) over the engine's transaction layer, each
//!   worker thread a thin shell around one of them ([`worker`]); [`pace`] spaces call starts,
//!   [`stats`] counts lock-free, [`report`] writes the verdict, JSON and CSV; [`media`] is the
//!   fixed pool of RTP threads (one shared socket each) that streams G.711 and scores it;
//!   [`multi`] runs one controller and N worker processes (`--workers N`) over a loopback
//!   control socket; [`script`] runs TOML scenario files on either side.
//! * [`sipp`]: reading what SIPp writes (`-trace_stat` and `-trace_rtt` CSV files) and the CPU
//!   time of a process, for the benchmarks that compare Switchboard with SIPp
//!   (`src/bin/bench-options.rs`).
//! * `benches/sip_codec.rs`: the SIP parse/serialize micro-benchmark (criterion).
//!
//! Nothing here is needed at run time by the server.

pub mod agent;
pub mod chart;
pub mod cli;
pub mod media;
pub mod mmsg;
pub mod multi;
pub mod pace;
pub mod report;
pub mod script;
pub mod sipp;
pub mod sockbuf;
pub mod stats;
pub mod uac;
pub mod uas;
pub mod worker;
