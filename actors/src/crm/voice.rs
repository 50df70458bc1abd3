//! The CRM side of a live queue call: its interaction row, created while the call is up (at
//! the agent's screen pop, or when the caller scores the post-call survey) rather than after
//! the CDR, so an agent can open a ticket on it during the call and the score lands on it.
//! [`super::calls::record_call`] completes the same row when the call ends.

use super::identity;
use super::Crm;
use serde_json::json;
use switchboard_storage::{now_ms, Identity, Interaction, Storage, StorageError};

/// The identity a caller is recognised by: their number (`phone`), else their SIP user name
/// (`ext:sip`), so a score from an internal caller still has a contact to live on.
pub fn caller_identity(caller: &str) -> Option<Identity> {
    if let Some(number) = identity::phone(caller) {
        return Some(Identity {
            kind: "phone".into(),
            value: number,
        });
    }
    let user = sip_user(caller)?;
    identity::normalise("ext:sip", user).ok()
}

/// The user part of a SIP URI (`"Bob" <sip:bob@host>` → `bob`).
fn sip_user(uri: &str) -> Option<&str> {
    let s = uri.trim();
    let s = match (s.find('<'), s.find('>')) {
        (Some(a), Some(b)) if a < b => s.get(a + 1..b)?,
        _ => s,
    };
    let rest = s
        .strip_prefix("sip:")
        .or_else(|| s.strip_prefix("sips:"))
        .unwrap_or(s);
    let user = rest.split(['@', ';', '?']).next()?;
    (!user.is_empty() && rest.contains('@')).then_some(user)
}

/// A live queue call as the CRM sees it.
#[derive(Clone, Debug, Default)]
pub struct VoiceCall {
    /// The caller leg's Call-ID (the interaction's `source_ref`).
    pub call_id: String,
    /// Who calls (URI or number).
    pub caller: String,
    /// The agent on the call, once known.
    pub agent: Option<String>,
    /// The queue it came through.
    pub queue: Option<String>,
    /// When the call started (epoch ms).
    pub started_at_ms: i64,
}

/// The call's interaction and its contact: the row recorded for this Call-ID, else a new one
/// on the contact of the caller's identity (created when unknown). Agent and queue are set
/// when given. `None` when the caller has no usable identity (anonymous).
pub async fn call_interaction(
    storage: &Storage,
    call: &VoiceCall,
) -> Result<Option<(i64, i64)>, StorageError> {
    if let Some(i) = storage
        .crm_interaction_by_source(&call.call_id)
        .await?
        .filter(|i| i.channel == "voice")
    {
        if call.agent.is_some() || call.queue.is_some() {
            storage
                .finish_interaction(i.id, call.agent.as_deref(), call.queue.as_deref(), None)
                .await?;
        }
        return Ok(Some((i.id, i.contact_id)));
    }
    let Some(identity) = caller_identity(&call.caller) else {
        return Ok(None);
    };
    let (contact_id, _created) = storage
        .find_or_create_contact(&identity, call.started_at_ms)
        .await?;
    let id = storage
        .record_interaction(&Interaction {
            contact_id,
            channel: "voice".into(),
            source_ref: Some(call.call_id.clone()),
            agent: call.agent.clone(),
            queue: call.queue.clone(),
            started_at_ms: call.started_at_ms,
            details: "{}".into(),
            ..Interaction::default()
        })
        .await?;
    Ok(Some((id, contact_id)))
}

/// Stores the post-call survey's `score` on the call's interaction (and its tickets) and
/// publishes `csat.recorded`. Returns the interaction id, `None` without an identity.
pub async fn record_csat(
    crm: &Crm,
    call: &VoiceCall,
    score: i64,
) -> Result<Option<i64>, StorageError> {
    let Some((id, contact_id)) = call_interaction(crm.storage(), call).await? else {
        return Ok(None);
    };
    let Some(tickets) = crm.storage().set_csat(id, score, now_ms()).await? else {
        return Ok(None);
    };
    crm.publish(
        "csat.recorded",
        json!({"interaction_id": id, "score": score, "ticket_ids": tickets,
               "contact_id": contact_id, "channel": "voice", "source": "ivr",
               "call_id": call.call_id, "agent": call.agent, "queue": call.queue}),
    );
    Ok(Some(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callers_are_recognised_by_number_then_sip_user() {
        let id = caller_identity("sip:+33 1 23@example.net").expect("phone");
        assert_eq!((id.kind.as_str(), id.value.as_str()), ("phone", "+33123"));
        let id = caller_identity("\"Alice\" <sip:alice@127.0.0.1>;tag=1").expect("user");
        assert_eq!((id.kind.as_str(), id.value.as_str()), ("ext:sip", "alice"));
        assert!(caller_identity("anonymous").is_none());
        assert!(caller_identity("sip:@host").is_none());
    }
}
