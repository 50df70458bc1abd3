//! Call detail records: logged on the `cdr` target and written to the database.

use crate::call::CallRecord;
use switchboard_storage::{Cdr, Storage};

/// Records the end of a call (the database write runs in the background).
pub fn write(storage: &Storage, r: &CallRecord) {
    let duration_ms = r.answer_ms.map_or(0, |a| (r.end_ms - a).max(0));
    tracing::info!(
        target: "cdr",
        call_id = %r.call_id,
        caller = %r.caller,
        callee = %r.callee,
        cause = %r.cause,
        sip_code = r.sip_code,
        duration_ms,
        packets_a_to_b = r.packets_a_to_b,
        packets_b_to_a = r.packets_b_to_a,
        "call ended"
    );
    let cdr = Cdr {
        id: 0,
        call_id: r.call_id.clone(),
        caller: r.caller.clone(),
        callee: r.callee.clone(),
        start_ms: r.start_ms,
        answer_ms: r.answer_ms,
        end_ms: r.end_ms,
        duration_ms,
        cause: r.cause.clone(),
        sip_code: i64::from(r.sip_code),
        packets_a_to_b: r.packets_a_to_b as i64,
        packets_b_to_a: r.packets_b_to_a as i64,
        bytes_a_to_b: r.bytes_a_to_b as i64,
        bytes_b_to_a: r.bytes_b_to_a as i64,
        lost_a_to_b: r.lost_a_to_b as i64,
        lost_b_to_a: r.lost_b_to_a as i64,
    };
    let storage = storage.clone();
    actix_rt::spawn(async move {
        if let Err(e) = storage.insert_cdr(&cdr).await {
            tracing::error!(error = %e, "writing a CDR failed");
        }
    });
}
