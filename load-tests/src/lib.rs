//! switchboard-load: load generation and benchmarks for Switchboard.
//!
//! * [`sipp`]: reading what SIPp writes (`-trace_stat` and `-trace_rtt` CSV files) and the CPU
//!   time of a process, for the benchmarks that compare Switchboard with SIPp
//!   (`src/bin/bench-options.rs`).
//! * `benches/sip_codec.rs`: the SIP parse/serialize micro-benchmark (criterion).
//!
//! Nothing here is needed at run time by the server.

pub mod sipp;
