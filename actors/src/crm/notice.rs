//! Ticket notifications, the rules without I/O: which notices a `ticket.*` event makes
//! (`created`, `status_changed`, `assigned`, `note_added`, `sla_breached`), the webhook body,
//! the e-mail templates (`{placeholder}` substitution) and who receives a mail.
//!
//! An internal note is never mailed to the requester and its text is never put in a message;
//! a public note's text is (it is the answer the customer is meant to read).

use serde_json::{json, Value};
use std::collections::BTreeMap;
use switchboard_engine::tickets_config::{looks_like_address, NotificationsConfig};

/// One notice about one ticket.
#[derive(Clone, Debug, PartialEq)]
pub struct Notice {
    /// `created`, `status_changed`, `assigned`, `note_added` or `sla_breached`.
    pub kind: &'static str,
    /// The ticket.
    pub ticket_id: i64,
    /// What changed (`status_from`/`status_to`, `assignee_from`/`assignee`, `note_id`/
    /// `internal`/`author`, `timer`/`due_at_ms`).
    pub change: Value,
}

impl Notice {
    /// Whether this is an internal note (kept from requesters).
    pub fn is_internal(&self) -> bool {
        self.kind == "note_added" && self.change["internal"].as_bool().unwrap_or(true)
    }
}

fn s(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(str::to_string)
}

/// The notices a published event makes (none for other events).
pub fn notices_of(kind: &str, data: &Value) -> Vec<Notice> {
    let Some(ticket_id) = data.get("ticket_id").and_then(Value::as_i64) else {
        return Vec::new();
    };
    let one = |kind: &'static str, change: Value| Notice {
        kind,
        ticket_id,
        change,
    };
    match kind {
        "ticket.created" => {
            let mut out = vec![one("created", json!({}))];
            // Created already assigned: the assignee hears of it as of any assignment.
            if let Some(a) = s(data, "assignee") {
                out.push(one(
                    "assigned",
                    json!({"assignee_from": null, "assignee": a}),
                ));
            }
            out
        }
        "ticket.sla_breached" => vec![one(
            "sla_breached",
            json!({"timer": data["timer"], "due_at_ms": data["due_at_ms"]}),
        )],
        "ticket.updated" if data.get("note_id").is_some() => vec![one(
            "note_added",
            json!({"note_id": data["note_id"], "internal": data["internal"], "author": data["author"]}),
        )],
        "ticket.updated" => {
            let mut out = Vec::new();
            let (from, to) = (s(data, "status_from"), s(data, "status_to"));
            if from != to {
                out.push(one(
                    "status_changed",
                    json!({"status_from": from, "status_to": to}),
                ));
            }
            let (before, after) = (s(data, "assignee_from"), s(data, "assignee"));
            if before != after && after.is_some() {
                out.push(one(
                    "assigned",
                    json!({"assignee_from": before, "assignee": after}),
                ));
            }
            out
        }
        _ => Vec::new(),
    }
}

/// What a message says about the ticket (read when the notice is sent).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TicketView {
    /// Its id (the ticket number).
    pub id: i64,
    /// Subject.
    pub subject: String,
    /// Current status.
    pub status: String,
    /// Group, if any.
    pub group: Option<String>,
    /// Assignee, if any.
    pub assignee: Option<String>,
    /// The contact.
    pub contact_id: i64,
    /// The contact's e-mail identity, if it has one.
    pub requester_email: Option<String>,
    /// The link to the ticket.
    pub link: String,
    /// The text of the note a `note_added` notice is about, when it is public.
    pub public_note: Option<String>,
}

/// The link to ticket `id`: `link_base` + id, or the API path.
pub fn link(config: &NotificationsConfig, id: i64) -> String {
    if config.link_base.is_empty() {
        format!("/api/v1/tickets/{id}")
    } else {
        format!("{}{id}", config.link_base)
    }
}

/// The webhook body: `{"notice", "seq", "at", "ticket": {…}, "change": {…}}`.
pub fn webhook_body(n: &Notice, t: &TicketView, seq: u64, at_ms: i64) -> String {
    json!({
        "notice": n.kind,
        "seq": seq,
        "at": at_ms,
        "ticket": {
            "id": t.id, "number": t.id, "subject": t.subject, "status": t.status,
            "group": t.group, "assignee": t.assignee, "contact_id": t.contact_id,
            "link": t.link,
        },
        "change": n.change,
    })
    .to_string()
}

/// Template variables: `number`, `id`, `subject`, `status`, `previous_status`, `assignee`,
/// `group`, `notice`, `link`, `timer`, `due`, `author`, `note`, `detail`.
pub fn vars(n: &Notice, t: &TicketView) -> BTreeMap<&'static str, String> {
    let c = &n.change;
    let get = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let due = c
        .get("due_at_ms")
        .and_then(Value::as_i64)
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default();
    let timer = get("timer").replace('_', " ");
    let detail = match n.kind {
        "created" => "A new ticket was opened.".to_string(),
        "status_changed" => format!(
            "Status changed from {} to {}.",
            get("status_from"),
            get("status_to")
        ),
        "assigned" => format!("Assigned to {}.", get("assignee")),
        "note_added" if n.is_internal() => format!("{} added an internal note.", get("author")),
        "note_added" => format!(
            "{} replied:\n\n{}",
            get("author"),
            t.public_note.as_deref().unwrap_or("")
        ),
        "sla_breached" => format!("The {timer} target was missed (due {due})."),
        _ => String::new(),
    };
    let mut v = BTreeMap::new();
    v.insert("number", t.id.to_string());
    v.insert("id", t.id.to_string());
    v.insert("subject", t.subject.clone());
    v.insert("status", t.status.clone());
    v.insert("previous_status", get("status_from"));
    v.insert("assignee", t.assignee.clone().unwrap_or_default());
    v.insert("group", t.group.clone().unwrap_or_default());
    v.insert("notice", n.kind.to_string());
    v.insert("link", t.link.clone());
    v.insert("timer", timer);
    v.insert("due", due);
    v.insert("author", get("author"));
    v.insert(
        "note",
        if n.is_internal() {
            String::new()
        } else {
            t.public_note.clone().unwrap_or_default()
        },
    );
    v.insert("detail", detail);
    v
}

/// Replaces each `{name}` of `vars` in `template`; other braces stay as they are.
pub fn render(template: &str, vars: &BTreeMap<&'static str, String>) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        match after
            .find('}')
            .and_then(|j| vars.get(&after[..j]).map(|v| (j, v)))
        {
            Some((j, v)) => {
                out.push_str(v);
                rest = &after[j + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The subject used when a rule gives none.
pub const DEFAULT_SUBJECT: &str = "[Ticket #{number}] {subject} ({status})";
/// The body used when a rule gives none.
pub const DEFAULT_BODY: &str = "Ticket #{number}: {subject}\n\n{detail}\n\nStatus: {status}\nAssignee: {assignee}\nGroup: {group}\n\n{link}\n";

/// A header-safe subject: control characters become spaces (no header injection).
pub fn subject_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(250)
        .collect()
}

/// The addresses `to` names for this notice, without duplicates, in order. `requester` is
/// skipped for internal notes.
pub fn recipients(
    to: &[String],
    n: &Notice,
    t: &TicketView,
    config: &NotificationsConfig,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in to {
        let addr = match r.as_str() {
            "assignee" => t.assignee.as_ref().and_then(|a| {
                if looks_like_address(a) {
                    Some(a.clone())
                } else {
                    config.agent_emails.get(a).cloned()
                }
            }),
            "group" => t
                .group
                .as_ref()
                .and_then(|g| config.group_emails.get(g).cloned()),
            "requester" if n.is_internal() => None,
            "requester" => t.requester_email.clone(),
            other => Some(other.to_string()),
        };
        if let Some(a) = addr {
            if !out.iter().any(|o| o.eq_ignore_ascii_case(&a)) {
                out.push(a);
            }
        }
    }
    out
}

/// Whether a rule or webhook listening to `events` (empty: all) takes `kind`.
pub fn wants(events: &[String], kind: &str) -> bool {
    events.is_empty() || events.iter().any(|e| e == kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> TicketView {
        TicketView {
            id: 42,
            subject: "Parcel late".into(),
            status: "open".into(),
            group: Some("billing".into()),
            assignee: Some("alice".into()),
            contact_id: 7,
            requester_email: Some("bea@example.com".into()),
            link: "https://desk.example.com/t/42".into(),
            public_note: None,
        }
    }

    #[test]
    fn events_make_notices() {
        let n = notices_of(
            "ticket.updated",
            &json!({"ticket_id": 42, "status_from": "new", "status_to": "open",
                    "assignee_from": null, "assignee": "alice"}),
        );
        let kinds: Vec<&str> = n.iter().map(|n| n.kind).collect();
        assert_eq!(kinds, ["status_changed", "assigned"]);
        let n = notices_of(
            "ticket.updated",
            &json!({"ticket_id": 42, "status_from": "open", "status_to": "open",
                    "assignee_from": "alice", "assignee": null}),
        );
        assert!(n.is_empty(), "unassigning and no status change: nothing");
        let n = notices_of(
            "ticket.updated",
            &json!({"ticket_id": 42, "note_id": 3, "internal": true, "author": "bob"}),
        );
        assert_eq!(n[0].kind, "note_added");
        assert!(n[0].is_internal());
        assert_eq!(
            notices_of("ticket.created", &json!({"ticket_id": 1, "assignee": null}))
                .iter()
                .map(|n| n.kind)
                .collect::<Vec<_>>(),
            ["created"]
        );
        assert_eq!(
            notices_of(
                "ticket.created",
                &json!({"ticket_id": 1, "assignee": "bob"})
            )
            .iter()
            .map(|n| n.kind)
            .collect::<Vec<_>>(),
            ["created", "assigned"]
        );
        assert_eq!(
            notices_of(
                "ticket.sla_breached",
                &json!({"ticket_id": 1, "timer": "first_response", "due_at_ms": 0})
            )[0]
            .change["timer"],
            "first_response"
        );
        assert!(notices_of("call.created", &json!({"ticket_id": 1})).is_empty());
        assert!(notices_of("ticket.created", &json!({})).is_empty());
    }

    #[test]
    fn templates_and_recipients() {
        let n = Notice {
            kind: "status_changed",
            ticket_id: 42,
            change: json!({"status_from": "new", "status_to": "open"}),
        };
        let v = vars(&n, &view());
        assert_eq!(
            render(DEFAULT_SUBJECT, &v),
            "[Ticket #42] Parcel late (open)"
        );
        let body = render(DEFAULT_BODY, &v);
        assert!(body.contains("Status changed from new to open."), "{body}");
        assert!(body.contains("https://desk.example.com/t/42"));
        assert_eq!(render("{nope} {status} {", &v), "{nope} open {");
        assert_eq!(subject_line("a\r\nBcc: x"), "a  Bcc: x");

        let mut config = NotificationsConfig::default();
        config
            .agent_emails
            .insert("alice".into(), "alice@example.com".into());
        config
            .group_emails
            .insert("billing".into(), "billing@example.com".into());
        let to: Vec<String> = [
            "assignee",
            "group",
            "requester",
            "ALICE@example.com",
            "ops@example.com",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            recipients(&to, &n, &view(), &config),
            [
                "alice@example.com",
                "billing@example.com",
                "bea@example.com",
                "ops@example.com"
            ]
        );
        let internal = Notice {
            kind: "note_added",
            ticket_id: 42,
            change: json!({"note_id": 1, "internal": true, "author": "bob"}),
        };
        assert_eq!(
            recipients(&to, &internal, &view(), &config),
            [
                "alice@example.com",
                "billing@example.com",
                "ops@example.com"
            ],
            "an internal note is never mailed to the requester"
        );
        let mut t = view();
        t.public_note = Some("secret text".into());
        assert!(!render(DEFAULT_BODY, &vars(&internal, &t)).contains("secret text"));
        assert!(wants(&[], "created"));
        assert!(!wants(&["assigned".into()], "created"));
    }
}
