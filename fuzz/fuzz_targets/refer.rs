//! Fuzzes the transfer header parsers (`Refer-To` with an embedded `Replaces`, and `Replaces`),
//! which read untrusted header values of REFER and INVITE requests.
//!
//! Invariants checked:
//! - nothing panics;
//! - the target URI is never longer than the input;
//! - a parsed `Replaces` (standalone or embedded) re-serializes (`to_header`) to a value that
//!   parses to the same dialog identifiers.

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_engine::sip::refer::{parse_refer_to, parse_replaces};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = parse_refer_to(s) {
        assert!(r.uri.len() <= s.len());
        if let Some(rep) = r.replaces {
            assert_eq!(parse_replaces(&rep.to_header()), Ok(rep));
        }
    }
    if let Ok(rep) = parse_replaces(s) {
        assert_eq!(parse_replaces(&rep.to_header()), Ok(rep));
    }
});
