//! The screen pop: what the agent sees of the customer when an interaction is offered: the
//! CRM contact found by the caller's number or the chat's identities (created when unknown),
//! its open tickets and the newest entries of its timeline. Built by the routing actor's
//! offer path under a time limit (`contact/pop.rs`); this module only reads and writes storage.

use super::identity;
use super::voice::{call_interaction, VoiceCall};
use serde_json::{json, Value};
use switchboard_storage::{Identity, Storage, StorageError};

/// Ticket statuses that count as open.
const OPEN: [&str; 3] = ["new", "open", "pending"];

/// Who the offered customer is.
#[derive(Clone, Debug)]
pub enum PopKey {
    /// A queue call: its interaction row is found or created on the caller's contact.
    Voice(VoiceCall),
    /// A chat or API conversation: the first identity owned by a contact wins; when none is,
    /// a contact is created with the first one.
    Identities(Vec<Identity>),
}

/// The chat identities of an offered chat, most specific first: the phone and e-mail the
/// customer gave, then the visitor id (web chat) or the external user id of the API channel.
pub fn chat_identities(attributes: &Value, customer_id: Option<&str>) -> Vec<Identity> {
    let mut out = Vec::new();
    let attr = |k: &str| attributes.get(k).and_then(Value::as_str);
    for (kind, key) in [("phone", "phone"), ("email", "email")] {
        if let Some(id) = attr(key).and_then(|v| identity::normalise(kind, v).ok()) {
            out.push(id);
        }
    }
    if let Some(user) = customer_id {
        let kind = match attr("source") {
            Some(src) if !src.is_empty() => format!("ext:{src}"),
            _ => "visitor".to_string(),
        };
        if let Ok(id) = identity::normalise(&kind, user) {
            out.push(id);
        }
    }
    out
}

/// The pop for `key` with the newest `entries` timeline entries, or `None` when the customer
/// has no usable identity.
pub async fn screen_pop(
    storage: &Storage,
    key: &PopKey,
    entries: usize,
    now_ms: i64,
) -> Result<Option<Value>, StorageError> {
    let (contact_id, current) = match key {
        PopKey::Voice(call) => match call_interaction(storage, call).await? {
            Some((interaction, contact)) => (contact, Some(interaction)),
            None => return Ok(None),
        },
        PopKey::Identities(ids) => {
            let mut found = None;
            for id in ids {
                if let Some(c) = storage.contact_by_identity(&id.kind, &id.value).await? {
                    found = Some(c);
                    break;
                }
            }
            match (found, ids.first()) {
                (Some(c), _) => (c, None),
                (None, Some(first)) => {
                    (storage.find_or_create_contact(first, now_ms).await?.0, None)
                }
                (None, None) => return Ok(None),
            }
        }
    };
    let Some(contact) = storage.contact(contact_id).await? else {
        return Ok(None);
    };
    let mut history: Vec<(i64, Value)> = Vec::new();
    let limit = i64::try_from(entries.saturating_add(1)).unwrap_or(i64::MAX);
    for i in storage.crm_interactions_of(contact_id, Some(limit)).await? {
        if Some(i.id) == current {
            continue;
        }
        if let (Some(score), Some(at)) = (i.csat, i.csat_at_ms) {
            history.push((
                at,
                json!({"type": "csat", "at_ms": at, "interaction_id": i.id, "score": score,
                       "channel": i.channel, "agent": i.agent}),
            ));
        }
        history.push((
            i.started_at_ms,
            json!({"type": "interaction", "at_ms": i.started_at_ms, "interaction_id": i.id,
                   "channel": i.channel, "agent": i.agent, "queue": i.queue,
                   "ended_at_ms": i.ended_at_ms, "source_ref": i.source_ref,
                   "summary": summary(&i.text)}),
        ));
    }
    let tickets = storage.tickets_of(contact_id).await?;
    let mut open = Vec::new();
    for t in &tickets {
        let v = json!({"ticket_id": t.id, "subject": t.subject, "status": t.status,
                       "ticket_type": t.ticket_type, "assignee": t.assignee,
                       "group": t.group_name, "interaction_id": t.interaction_id,
                       "created_at_ms": t.created_at_ms});
        if OPEN.contains(&t.status.as_str()) {
            open.push(v.clone());
        }
        let mut h = v;
        h["type"] = json!("ticket");
        h["at_ms"] = json!(t.created_at_ms);
        history.push((t.created_at_ms, h));
    }
    // Newest first, the last `entries` of them.
    history.sort_by_key(|e| std::cmp::Reverse(e.0));
    history.truncate(entries);
    Ok(Some(json!({
        "contact": {
            "id": contact.id,
            "name": contact.name,
            "tags": contact.tags,
            "attributes": serde_json::from_str::<Value>(&contact.attributes).unwrap_or(json!({})),
            "identities": contact.identities,
            "created_at_ms": contact.created_at_ms,
        },
        "interaction_id": current,
        "open_tickets": open,
        "history": history.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
    })))
}

/// The first 120 characters of an interaction's text (its first line: a chat's first message).
fn summary(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    line.chars().take(120).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_identities_in_order() {
        let a = json!({"phone": "+1 555 0100", "email": "Ann@Example.COM"});
        let ids = chat_identities(&a, Some("v-1"));
        let got: Vec<(&str, &str)> = ids
            .iter()
            .map(|i| (i.kind.as_str(), i.value.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("phone", "+15550100"),
                ("email", "ann@example.com"),
                ("visitor", "v-1")
            ]
        );
        let a = json!({"source": "telegram", "phone": "not a number"});
        let ids = chat_identities(&a, Some("42"));
        assert_eq!(ids.len(), 1);
        assert_eq!(ids[0].kind, "ext:telegram");
        assert!(chat_identities(&json!({}), None).is_empty());
    }
}
