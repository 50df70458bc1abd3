//! Chats on CRM contacts: every conversation becomes a CRM interaction (channel `chat` for the
//! widget, `api` for an API channel) of the contact it is recognised as, so it appears on that
//! contact's timeline with a link to its transcript, and its messages are searchable.
//!
//! Recognition, in order: the phone number, then the e-mail address the customer gave (pre-chat
//! form or `Switchboard.identify`), then the widget's visitor id (`visitor`) or the platform's
//! user id (`ext:<channel>`). The first identity some contact owns picks the contact; the others
//! are added to it when nobody owns them (an identity of a *different* contact is left there: two
//! contacts are only ever merged through the audited merge API). When none is known a contact is
//! created with all of them.

use super::session::Spec;
use crate::crm::{identity, ApiError, Crm};
use crate::routing::Channel;
use serde_json::json;
use switchboard_storage::{Identity, Interaction, NewContact, StorageError};

/// The contact and CRM interaction of a chat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Linked {
    /// The contact (`crm_contacts.id`).
    pub contact_id: i64,
    /// The chat's CRM interaction (`crm_interactions.id`).
    pub interaction_id: i64,
    /// Whether the contact was created for this chat.
    pub created: bool,
}

/// The CRM channel of a chat's interaction.
pub(super) fn crm_channel(spec: &Spec) -> &'static str {
    if spec.channel == Channel::Messaging {
        "api"
    } else {
        "chat"
    }
}

/// The identities a chat carries, strongest first; values that do not normalise are skipped.
pub(super) fn identities(spec: &Spec) -> Vec<Identity> {
    let mut out = Vec::new();
    let mut add = |kind: &str, value: &str| {
        if let Ok(i) = identity::normalise(kind, value) {
            if !out.contains(&i) {
                out.push(i);
            }
        }
    };
    if let Some(p) = &spec.phone {
        add("phone", p);
    }
    if let Some(e) = &spec.email {
        add("email", e);
    }
    if let Some(u) = &spec.external_user_id {
        if spec.source.is_empty() {
            add("visitor", u);
        } else {
            add(&format!("ext:{}", spec.source), u);
        }
    }
    out
}

/// Finds (or creates) the chat's contact and records the chat as its interaction.
pub(super) async fn link(crm: &Crm, spec: &Spec, now_ms: i64) -> Result<Linked, ApiError> {
    let s = crm.storage();
    let ids = identities(spec);
    let mut found = None;
    // Twice at most: a concurrent chat may create the contact between lookup and insert.
    for _ in 0..2 {
        let mut owners = Vec::with_capacity(ids.len());
        for i in &ids {
            owners.push(s.contact_by_identity(&i.kind, &i.value).await?);
        }
        if let Some(owner) = owners.iter().flatten().next() {
            let owner = *owner;
            for (i, o) in ids.iter().zip(&owners) {
                if o.is_none() {
                    match s.add_identity(owner, i, now_ms).await {
                        Ok(()) | Err(StorageError::IdentityTaken { .. }) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            found = Some((owner, false));
            break;
        }
        let new = NewContact {
            name: (!spec.name.is_empty()).then(|| spec.name.clone()),
            attributes: "{}".into(),
            identities: ids.clone(),
            tags: Vec::new(),
        };
        match s.create_contact(&new, now_ms).await {
            Ok(id) => {
                found = Some((id, true));
                break;
            }
            Err(StorageError::IdentityTaken { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    let (contact_id, created) =
        found.ok_or_else(|| ApiError::conflict("identities", "contact changed concurrently"))?;
    if created {
        crm.publish(
            "contact.created",
            json!({"contact_id": contact_id, "identities": ids.iter()
                .map(|i| json!({"kind": i.kind, "value": i.value})).collect::<Vec<_>>(),
                "by": "chat", "chat": spec.id}),
        );
    }
    let details = json!({
        "chat": spec.id,
        "transcript": format!("/api/v1/chats/{}", spec.id),
        "name": spec.name,
        "source": spec.source,
        "external_user_id": spec.external_user_id,
    });
    let interaction_id = s
        .record_interaction(&Interaction {
            contact_id,
            channel: crm_channel(spec).into(),
            source_ref: Some(spec.id.clone()),
            queue: spec.queue.clone(),
            started_at_ms: now_ms,
            details: details.to_string(),
            ..Interaction::default()
        })
        .await?;
    Ok(Linked {
        contact_id,
        interaction_id,
        created,
    })
}

/// The score of an ended chat whose session is gone: stored on its CRM interaction (and its
/// tickets) in the background, and published as `chat.rated`.
pub(super) fn rate_stored(svc: &super::ChatService, chat: &str, score: i64) {
    let (svc, chat) = (svc.clone(), chat.to_string());
    actix_rt::spawn(async move {
        let s = svc.storage();
        let crm = match s.crm_interaction_by_source(&chat).await {
            Ok(i) => i.filter(|i| i.channel == "chat" || i.channel == "api"),
            Err(e) => {
                tracing::warn!(%chat, error = %e, "chat CSAT: CRM interaction unavailable");
                None
            }
        };
        if let Some(i) = &crm {
            if let Err(e) = s.set_csat(i.id, score, switchboard_storage::now_ms()).await {
                tracing::warn!(%chat, error = %e, "chat CSAT not stored on its CRM interaction");
            }
        }
        svc.event(
            "chat.rated",
            json!({"chat": chat, "score": score, "agent": crm.as_ref().and_then(|i| i.agent.clone()),
                   "contact_id": crm.as_ref().map(|i| i.contact_id),
                   "crm_interaction": crm.as_ref().map(|i| i.id)}),
        );
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    fn spec(source: &str, phone: Option<&str>, email: Option<&str>, user: Option<&str>) -> Spec {
        Spec {
            id: "c1".into(),
            token_hash: String::new(),
            channel: if source.is_empty() {
                Channel::Chat
            } else {
                Channel::Messaging
            },
            source: source.into(),
            external_user_id: user.map(str::to_owned),
            name: "Ann".into(),
            email: email.map(str::to_owned),
            phone: phone.map(str::to_owned),
            queue: None,
            attributes: Map::new(),
        }
    }

    #[test]
    fn identities_strongest_first_and_normalised() {
        let s = spec(
            "",
            Some("+1 (555) 010-0001"),
            Some("Ann@X.org"),
            Some("v-1"),
        );
        let ids: Vec<(String, String)> = identities(&s)
            .into_iter()
            .map(|i| (i.kind, i.value))
            .collect();
        assert_eq!(
            ids,
            [
                ("phone".into(), "+15550100001".into()),
                ("email".into(), "ann@x.org".into()),
                ("visitor".into(), "v-1".into()),
            ]
        );
        let api = spec("telegram", None, None, Some("42"));
        assert_eq!(identities(&api)[0].kind, "ext:telegram");
        assert_eq!(crm_channel(&api), "api");
        // A channel name that is no identity kind is skipped, not an error.
        assert!(identities(&spec("Bad Name", None, None, Some("1"))).is_empty());
    }
}
