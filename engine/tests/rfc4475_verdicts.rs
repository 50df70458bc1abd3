//! Sans-IO check of the RFC 4475 corpus: what the parser and request inspection decide for
//! each message, without sockets. The end-to-end version is tests/tests/rfc4475.rs.

use switchboard_engine::inspect::{inspect, LocalIdentity};
use switchboard_engine::sip::{parse_datagram, Message};

/// Parses and inspects one datagram: `Some(status)` for an answer, `None` for a drop or for a
/// request the engine passes on to the transaction user.
fn verdict(bytes: &[u8]) -> (Option<u16>, String) {
    let local = LocalIdentity {
        sent_by: vec!["127.0.0.1:5060".into()],
        branch_prefix: "z9hG4bK-sb".into(),
    };
    match parse_datagram(bytes) {
        Ok(Message::Request(r)) => match inspect(&r, &local) {
            Some(resp) => (Some(resp.status), resp.reason),
            None => (None, format!("passes to the TU as {}", r.method)),
        },
        Ok(Message::Response(r)) => (
            None,
            format!("response {} (dropped unless matched)", r.status),
        ),
        Err(e) if e.status == 0 => (None, format!("dropped: {}", e.reason)),
        Err(e) => (Some(e.status), e.reason),
    }
}

#[test]
fn corpus_verdicts() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/conformance/rfc4475/messages");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .expect("corpus dir")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    names.sort();
    for p in names {
        let bytes = std::fs::read(&p).expect("read");
        let (status, why) = verdict(&bytes);
        println!(
            "{:<12} {:>5} {}",
            p.file_stem().and_then(|s| s.to_str()).unwrap_or("?"),
            status.map_or("-".into(), |s| s.to_string()),
            why
        );
    }
}
