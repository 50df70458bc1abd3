//! `[tickets]`: ticket attachment limits, the SLA sweeper and ticket notifications (signed
//! webhooks and e-mail over SMTP).

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// What a notification is about.
pub const NOTICE_KINDS: [&str; 5] = [
    "created",
    "status_changed",
    "assigned",
    "note_added",
    "sla_breached",
];

/// `[tickets]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TicketsConfig {
    /// Largest ticket attachment accepted, in bytes (larger: 413).
    pub max_attachment_bytes: usize,
    /// MIME types accepted for ticket attachments (others: 415).
    pub attachment_types: Vec<String>,
    /// How often the SLA sweeper looks for breached timers, in seconds (0: never).
    pub sla_sweep_secs: u64,
    /// Notifications of ticket changes.
    pub notifications: NotificationsConfig,
}

impl Default for TicketsConfig {
    fn default() -> Self {
        TicketsConfig {
            max_attachment_bytes: 10 << 20,
            attachment_types: [
                "application/pdf",
                "image/png",
                "image/jpeg",
                "image/gif",
                "text/plain",
                "text/csv",
                "application/zip",
            ]
            .map(String::from)
            .to_vec(),
            sla_sweep_secs: 30,
            notifications: NotificationsConfig::default(),
        }
    }
}

/// `[tickets.notifications]`: who hears of ticket changes, and how.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationsConfig {
    /// The ticket link in messages is `link_base` + the ticket id (empty: the API path
    /// `/api/v1/tickets/<id>`).
    pub link_base: String,
    /// Signed webhooks (`[[tickets.notifications.webhooks]]`).
    pub webhooks: Vec<TicketWebhookConfig>,
    /// The SMTP server for e-mail (`[tickets.notifications.smtp]`); without it no mail is sent.
    pub smtp: Option<SmtpConfig>,
    /// E-mail rules (`[[tickets.notifications.email]]`).
    pub email: Vec<EmailRule>,
    /// Agent name → e-mail address (for `to = ["assignee"]`; an assignee that is itself an
    /// address needs no entry).
    pub agent_emails: BTreeMap<String, String>,
    /// Ticket group → e-mail address (for `to = ["group"]`).
    pub group_emails: BTreeMap<String, String>,
}

/// One ticket webhook.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketWebhookConfig {
    /// Where notices are POSTed (`http://…`).
    pub url: String,
    /// The HMAC-SHA256 key of the `X-Switchboard-Signature` header (16 characters or more).
    pub secret: String,
    /// Which notices ([`NOTICE_KINDS`]); empty: all.
    #[serde(default)]
    pub events: Vec<String>,
}

/// `[tickets.notifications.smtp]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// Server name or address.
    pub host: String,
    /// Port (default 25; 587 for submission with STARTTLS, 465 for `tls`).
    #[serde(default = "smtp_port")]
    pub port: u16,
    /// `none` (plain: a local relay), `starttls` (required) or `tls` (implicit TLS).
    #[serde(default = "starttls")]
    pub tls: String,
    /// The sender, `Help desk <desk@example.com>` or a bare address.
    pub from: String,
    /// Login (AUTH PLAIN/LOGIN); empty: none.
    #[serde(default)]
    pub username: String,
    /// Password for `username`.
    #[serde(default)]
    pub password: String,
    /// Extra trusted CA (PEM) besides the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The EHLO name (default `localhost`).
    #[serde(default = "localhost")]
    pub hello_name: String,
    /// Connect + send timeout, in seconds.
    #[serde(default = "ten")]
    pub timeout_secs: u64,
}

fn smtp_port() -> u16 {
    25
}
fn starttls() -> String {
    "starttls".into()
}
fn localhost() -> String {
    "localhost".into()
}
fn ten() -> u64 {
    10
}

/// One e-mail rule: on these notices, mail these recipients with this template.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailRule {
    /// Which notices ([`NOTICE_KINDS`]); empty: all.
    #[serde(default)]
    pub events: Vec<String>,
    /// `assignee`, `group`, `requester` (the contact's e-mail identity) or an address.
    pub to: Vec<String>,
    /// Subject template (placeholders `{number}`, `{subject}`, `{status}`, …; see README).
    #[serde(default)]
    pub subject: Option<String>,
    /// Body template.
    #[serde(default)]
    pub body: Option<String>,
}

fn kinds_ok(v: &[String]) -> Result<(), (usize, String)> {
    for (i, k) in v.iter().enumerate() {
        if !NOTICE_KINDS.contains(&k.as_str()) {
            return Err((i, format!("one of {}", NOTICE_KINDS.join(", "))));
        }
    }
    Ok(())
}

/// Whether `s` looks like one e-mail address (`local@domain`, no spaces or angle brackets).
pub fn looks_like_address(s: &str) -> bool {
    match s.split_once('@') {
        Some((l, d)) => {
            !l.is_empty()
                && d.contains('.')
                && !d.starts_with('.')
                && !d.ends_with('.')
                && !s.contains(['<', '>', ' ', ',', ';', '\r', '\n'])
                && !d.contains('@')
        }
        None => false,
    }
}

impl TicketsConfig {
    /// Checks the section; the error names the key.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let bad = |k: String, r: &str| Err((k, r.to_string()));
        if self.max_attachment_bytes == 0 {
            return bad("tickets.max_attachment_bytes".into(), "must be > 0");
        }
        for (i, t) in self.attachment_types.iter().enumerate() {
            if t.is_empty() || !t.contains('/') || t.to_ascii_lowercase() != *t {
                return bad(
                    format!("tickets.attachment_types[{i}]"),
                    "a lower-case MIME type such as application/pdf",
                );
            }
        }
        let n = &self.notifications;
        for (i, w) in n.webhooks.iter().enumerate() {
            let k = |s: &str| format!("tickets.notifications.webhooks[{i}].{s}");
            if !w.url.starts_with("http://") {
                return bad(k("url"), "an http:// URL");
            }
            if w.secret.len() < 16 {
                return bad(k("secret"), "at least 16 characters are needed");
            }
            if let Err((j, r)) = kinds_ok(&w.events) {
                return bad(k(&format!("events[{j}]")), &r);
            }
        }
        if let Some(s) = &n.smtp {
            let k = |x: &str| format!("tickets.notifications.smtp.{x}");
            if s.host.is_empty() {
                return bad(k("host"), "must not be empty");
            }
            if !["none", "starttls", "tls"].contains(&s.tls.as_str()) {
                return bad(k("tls"), "none, starttls or tls");
            }
            if s.from.parse::<lettre_free::Mailbox>().is_err() {
                return bad(k("from"), "an address, or Name <address>");
            }
            if s.timeout_secs == 0 {
                return bad(k("timeout_secs"), "must be > 0");
            }
        }
        if !n.email.is_empty() && n.smtp.is_none() {
            return bad(
                "tickets.notifications.smtp".into(),
                "e-mail rules need an SMTP server",
            );
        }
        for (i, r) in n.email.iter().enumerate() {
            let k = |s: &str| format!("tickets.notifications.email[{i}].{s}");
            if let Err((j, why)) = kinds_ok(&r.events) {
                return bad(k(&format!("events[{j}]")), &why);
            }
            if r.to.is_empty() {
                return bad(k("to"), "at least one recipient");
            }
            for (j, t) in r.to.iter().enumerate() {
                let ok = ["assignee", "group", "requester"].contains(&t.as_str())
                    || looks_like_address(t);
                if !ok {
                    return bad(
                        k(&format!("to[{j}]")),
                        "assignee, group, requester or an e-mail address",
                    );
                }
            }
        }
        for (name, a) in n.agent_emails.iter().chain(n.group_emails.iter()) {
            if !looks_like_address(a) {
                return bad(
                    format!("tickets.notifications.*_emails.{name}"),
                    "an e-mail address",
                );
            }
        }
        Ok(())
    }
}

/// The `from` check without a mail crate in the engine: `addr` or `Name <addr>`.
mod lettre_free {
    /// A parsed sender.
    pub struct Mailbox;

    impl std::str::FromStr for Mailbox {
        type Err = ();
        fn from_str(s: &str) -> Result<Self, ()> {
            let s = s.trim();
            let addr = match (s.rfind('<'), s.ends_with('>')) {
                (Some(i), true) => &s[i + 1..s.len() - 1],
                (None, false) => s,
                _ => return Err(()),
            };
            if super::looks_like_address(addr) {
                Ok(Mailbox)
            } else {
                Err(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_pass_and_errors_name_the_key() {
        TicketsConfig::default().validate().expect("defaults");
        let parse = |s: &str| -> TicketsConfig { toml::from_str(s).expect("toml") };
        let c = parse(
            "[notifications]\n[[notifications.webhooks]]\nurl = \"https://x\"\nsecret = \"0123456789abcdef\"\n",
        );
        assert_eq!(
            c.validate().expect_err("https").0,
            "tickets.notifications.webhooks[0].url"
        );
        let c = parse(
            "[notifications.smtp]\nhost = \"127.0.0.1\"\nfrom = \"Desk <desk@example.com>\"\n\
             [[notifications.email]]\nto = [\"assignee\", \"boss\"]\n",
        );
        assert_eq!(
            c.validate().expect_err("to").0,
            "tickets.notifications.email[0].to[1]"
        );
        let c = parse("[notifications.smtp]\nhost = \"h\"\nfrom = \"nobody\"\n");
        assert_eq!(
            c.validate().expect_err("from").0,
            "tickets.notifications.smtp.from"
        );
        let c = parse(
            "[notifications.smtp]\nhost = \"h\"\nfrom = \"Desk <desk@example.com>\"\ntls = \"none\"\n\
             [[notifications.email]]\nevents = [\"created\", \"sla_breached\"]\nto = [\"requester\", \"ops@example.com\"]\n",
        );
        c.validate().expect("valid");
        assert_eq!(c.notifications.smtp.as_ref().map(|s| s.port), Some(25));
    }
}
