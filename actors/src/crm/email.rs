//! E-mail over SMTP for ticket notifications: `lettre`'s async transport on tokio, TLS by
//! rustls with the ring provider (no OpenSSL), the system's CA roots plus an optional
//! `ca_file`. One connection per message (notifications are rare; no pool to keep alive).

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::time::Duration;
use switchboard_engine::tickets_config::SmtpConfig;

/// A configured SMTP sender.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    /// Builds the transport from `[tickets.notifications.smtp]` (no connection yet). Errors
    /// name the key.
    pub fn new(c: &SmtpConfig) -> Result<Mailer, String> {
        let key = |k: &str| format!("tickets.notifications.smtp.{k}");
        let from: Mailbox = c
            .from
            .parse()
            .map_err(|e| format!("{}: {e}", key("from")))?;
        let tls = match c.tls.as_str() {
            "none" => Tls::None,
            mode => {
                let mut b = TlsParameters::builder(c.host.clone());
                if let Some(path) = &c.ca_file {
                    let pem = std::fs::read(path)
                        .map_err(|e| format!("{}: {}: {e}", key("ca_file"), path.display()))?;
                    let cert = Certificate::from_pem(&pem)
                        .map_err(|e| format!("{}: {e}", key("ca_file")))?;
                    b = b.add_root_certificate(cert);
                }
                let params = b.build().map_err(|e| format!("{}: {e}", key("tls")))?;
                if mode == "tls" {
                    Tls::Wrapper(params)
                } else {
                    Tls::Required(params)
                }
            }
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(c.host.clone())
            .port(c.port)
            .tls(tls)
            .hello_name(ClientId::Domain(c.hello_name.clone()))
            .timeout(Some(Duration::from_secs(c.timeout_secs)));
        if !c.username.is_empty() {
            builder = builder.credentials(Credentials::new(c.username.clone(), c.password.clone()));
        }
        Ok(Mailer {
            transport: builder.build(),
            from,
        })
    }

    /// Sends one plain-text message to one recipient.
    pub async fn send(&self, to: &str, subject: &str, body: &str) -> Result<(), String> {
        let to: Mailbox = to.parse().map_err(|e| format!("recipient {to}: {e}"))?;
        let msg = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body.to_string())
            .map_err(|e| e.to_string())?;
        self.transport
            .send(msg)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}
