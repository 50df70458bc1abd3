//! Signed event webhooks (`[[events.webhooks]]`): each webhook has its own [`Subscription`]
//! (from the head at start), POSTs one event per request, in sequence order, and retries a
//! failed delivery with doubling back-off (0.5 s up to 60 s) until it is accepted (2xx). A
//! webhook that is down falls behind and is cut from live delivery; it then catches up from
//! storage, so nothing within the retention window is skipped and the engine never waits.
//!
//! Signature: the engine's one scheme ([`crate::signing`]): `X-Switchboard-Signature:
//! t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.

use super::{Events, Filter, Next, Subscription};
use crate::signing;
use std::time::Duration;
use switchboard_engine::config::EventWebhookConfig;

pub use signing::SIGNATURE_HEADER;

/// Timeout of one delivery.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Starts one delivery task per webhook on the current actix arbiter. Errors name the
/// webhook whose `types` do not parse.
pub fn start(events: &Events, hooks: &[EventWebhookConfig]) -> Result<(), String> {
    for (i, hook) in hooks.iter().enumerate() {
        let filter = Filter::from_patterns(hook.types.iter().map(String::as_str))
            .map_err(|e| format!("events.webhooks[{i}].types: {e}"))?;
        let sub = events.subscribe(events.head(), filter, events.consumer_buffer());
        actix_rt::spawn(deliver(sub, hook.clone()));
        tracing::info!(url = %hook.url, "event webhook started");
    }
    Ok(())
}

async fn deliver(mut sub: Subscription, hook: EventWebhookConfig) {
    let client = awc::Client::builder().timeout(TIMEOUT).finish();
    loop {
        match sub.next().await {
            Next::Event(e) => {
                let mut delay = Duration::from_millis(500);
                loop {
                    match signing::post(&client, &hook.url, &hook.secret, &e.frame).await {
                        Ok(()) => break,
                        Err(why) => {
                            tracing::warn!(url = %hook.url, seq = e.seq, error = %why, retry_in_ms = delay.as_millis() as u64, "event webhook failed");
                            tokio::time::sleep(delay).await;
                            delay = (delay * 2).min(MAX_BACKOFF);
                        }
                    }
                }
            }
            Next::Cut => sub.resume(),
            Next::Failed(why) => {
                tracing::warn!(url = %hook.url, error = %why, "event webhook cannot replay");
                tokio::time::sleep(Duration::from_secs(5)).await;
                sub.resume();
            }
        }
    }
}
