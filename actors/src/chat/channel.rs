//! API channels: inbound requests and outbound webhooks are signed with the engine's one
//! scheme ([`crate::signing`]: `X-Switchboard-Signature: t=…,v1=HMAC-SHA256(t.body)`); this
//! module holds the per-conversation outbound webhook queue with retries.

use crate::signing;
use serde_json::Value;
use std::time::Duration;
use tokio::sync::mpsc;

pub use signing::{sign, verify as verify_signature, SignatureError, SIGNATURE_HEADER};

/// Delivery attempts of one outbound webhook.
const ATTEMPTS: u32 = 5;
/// Wait before the first retry (doubles each time).
const FIRST_RETRY: Duration = Duration::from_millis(500);

/// Unix seconds now.
pub(super) fn unix_now() -> i64 {
    signing::unix_now()
}

/// One conversation's outbound webhooks, delivered in order by a task on the session's
/// arbiter; each is retried with exponential back-off, then dropped with an error log.
pub(super) struct Outbound {
    tx: mpsc::UnboundedSender<Value>,
}

impl Outbound {
    /// Starts the delivery task (call from an actor: it runs on the current arbiter).
    pub fn start(
        url: String,
        secret: String,
        channel: String,
        user: String,
        chat: String,
    ) -> Outbound {
        let (tx, mut rx) = mpsc::unbounded_channel::<Value>();
        actix_rt::spawn(async move {
            let client = awc::Client::builder()
                .timeout(Duration::from_secs(10))
                .finish();
            while let Some(mut v) = rx.recv().await {
                v["channel"] = Value::String(channel.clone());
                v["external_user_id"] = Value::String(user.clone());
                v["chat"] = Value::String(chat.clone());
                let body = v.to_string();
                let mut wait = FIRST_RETRY;
                for attempt in 1..=ATTEMPTS {
                    let r = signing::post(&client, &url, &secret, &body).await;
                    match r {
                        Ok(()) => break,
                        Err(e) => {
                            tracing::warn!(%url, error = %e, attempt, "channel webhook failed")
                        }
                    }
                    if attempt == ATTEMPTS {
                        // event: channel.webhook_failed (channel, chat, seq)
                        tracing::error!(%url, %chat, "channel webhook dropped after retries");
                        break;
                    }
                    actix_rt::time::sleep(wait).await;
                    wait *= 2;
                }
            }
        });
        Outbound { tx }
    }

    /// Queues one webhook body (`channel`, `external_user_id` and `chat` are added).
    pub fn send(&self, v: Value) {
        let _ = self.tx.send(v);
    }
}
