//! Call detail records: logged on the `cdr` target and, once storage is attached, written to
//! the database.

use crate::call::CallRecord;

/// Records the end of a call.
pub fn write(r: &CallRecord) {
    let duration_ms = r.answer_ms.map_or(0, |a| (r.end_ms - a).max(0));
    tracing::info!(
        target: "cdr",
        call_id = %r.call_id,
        caller = %r.caller,
        callee = %r.callee,
        cause = %r.cause,
        sip_code = r.sip_code,
        duration_ms,
        "call ended"
    );
}
