//! Call detail records: logged on the `cdr` target and written to the database by one writer
//! task that batches them (one transaction per batch), so thousands of calls per second do not
//! each wait for a pooled connection and a commit.

use crate::call::CallRecord;
use switchboard_storage::{Cdr, Storage};
use tokio::sync::mpsc;

/// Most CDRs written in one transaction.
const BATCH: usize = 512;
/// Finished calls waiting for the CRM recorder at most.
const CRM_BACKLOG: usize = 10_000;

/// Where call actors hand their CDRs. The channel is unbounded on purpose: a CDR is never
/// dropped, and there is at most one per call, whose number admission control bounds.
#[derive(Clone)]
pub struct CdrSink {
    tx: mpsc::UnboundedSender<Cdr>,
}

impl CdrSink {
    /// Starts the writer task on the current actix arbiter. With `crm_calls`, every stored
    /// call is also recorded on its caller's CRM contact ([`crate::crm::calls`]).
    pub fn start(storage: Storage, crm_calls: bool) -> CdrSink {
        let (tx, mut rx) = mpsc::unbounded_channel::<Cdr>();
        // The CRM recorder runs beside the CDR writer with a bounded backlog, so that a slow
        // CRM never delays CDRs or grows memory under a flood of calls.
        let crm = crm_calls.then(|| {
            let (crm_tx, mut crm_rx) = mpsc::channel::<Cdr>(CRM_BACKLOG);
            let storage = storage.clone();
            actix_rt::spawn(async move {
                while let Some(cdr) = crm_rx.recv().await {
                    if let Err(e) = crate::crm::calls::record_call(&storage, &cdr).await {
                        tracing::warn!(error = %e, call_id = %cdr.call_id, "CRM: call not recorded");
                    }
                }
            });
            crm_tx
        });
        actix_rt::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            while rx.recv_many(&mut batch, BATCH).await > 0 {
                // A failed batch is retried once, then reported with every Call-ID it held.
                if let Err(e) = storage.insert_cdrs(&batch).await {
                    tracing::warn!(error = %e, n = batch.len(), "CDR batch failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    if let Err(e) = storage.insert_cdrs(&batch).await {
                        let ids: Vec<&str> = batch.iter().map(|c| c.call_id.as_str()).collect();
                        tracing::error!(error = %e, call_ids = ?ids, "CDRs not stored");
                    }
                }
                if let Some(crm) = &crm {
                    for cdr in &batch {
                        if crm.try_send(cdr.clone()).is_err() {
                            tracing::warn!(call_id = %cdr.call_id, "CRM recorder behind; call not recorded on its contact");
                        }
                    }
                }
                batch.clear();
            }
        });
        CdrSink { tx }
    }

    /// Records the end of a call.
    pub fn write(&self, r: &CallRecord) {
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
            mos_a: r.mos[0],
            mos_b: r.mos[1],
            jitter_a_ms: r.jitter_ms[0],
            jitter_b_ms: r.jitter_ms[1],
            codec_a: r.codecs[0].clone(),
            codec_b: r.codecs[1].clone(),
            recording: r.recording.clone(),
        };
        if self.tx.send(cdr).is_err() {
            tracing::error!(call_id = %r.call_id, "CDR writer gone; CDR only logged");
        }
    }
}
