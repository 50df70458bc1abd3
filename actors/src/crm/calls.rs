//! Automatic recognition of callers: every finished call whose caller is a phone number is
//! recorded as a `voice` interaction of the contact owning that number (created when
//! unknown); a queue call's row, recorded while the call was up (`voice.rs`), is completed
//! with the end and the details instead. The call's CDR, recordings and transcripts are joined in at timeline time by
//! Call-ID, so nothing is copied.

use super::identity;
use switchboard_storage::{Cdr, Identity, Interaction, Storage, StorageError};

/// Records `cdr` on its caller's contact. Returns the interaction id, or `None` when the caller
/// is not a phone number (a SIP user name, an anonymous call) or the call was already recorded.
pub async fn record_call(storage: &Storage, cdr: &Cdr) -> Result<Option<i64>, StorageError> {
    let Some(number) = identity::phone(&cdr.caller) else {
        return Ok(None);
    };
    let details = serde_json::json!({
        "callee": cdr.callee,
        "answered": cdr.answer_ms.is_some(),
        "duration_ms": cdr.duration_ms,
        "cause": cdr.cause,
        "sip_code": cdr.sip_code,
    });
    if let Some(i) = storage
        .crm_interaction_by_source(&cdr.call_id)
        .await?
        .filter(|i| i.channel == "voice")
    {
        // Recorded while the call was up (screen pop, survey): complete it, once.
        if i.ended_at_ms.is_none() {
            storage
                .complete_interaction(i.id, cdr.end_ms, &details.to_string())
                .await?;
        }
        return Ok(None);
    }
    let identity = Identity {
        kind: "phone".into(),
        value: number,
    };
    let (contact_id, _created) = storage
        .find_or_create_contact(&identity, cdr.start_ms)
        .await?;
    // event: contact.created (when _created: contact_id, identity)
    let id = storage
        .record_interaction(&Interaction {
            contact_id,
            channel: "voice".into(),
            source_ref: Some(cdr.call_id.clone()),
            started_at_ms: cdr.start_ms,
            ended_at_ms: Some(cdr.end_ms),
            text: String::new(),
            details: details.to_string(),
            ..Interaction::default()
        })
        .await?;
    // event: interaction.recorded (interaction_id, contact_id, channel "voice", call_id)
    Ok(Some(id))
}
