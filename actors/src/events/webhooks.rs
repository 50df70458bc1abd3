//! Signed event webhooks (`[[events.webhooks]]`): each webhook has its own [`Subscription`]
//! (from the head at start), POSTs one event per request, in sequence order, and retries a
//! failed delivery with doubling back-off (0.5 s up to 60 s) until it is accepted (2xx). A
//! webhook that is down falls behind and is cut from live delivery; it then catches up from
//! storage, so nothing within the retention window is skipped and the engine never waits.
//!
//! Signature (Stripe-style): `X-Switchboard-Signature: t=<unix seconds>,v1=<hex>`, where hex is
//! HMAC-SHA256 with the webhook's secret over `<t>.<body>`. A receiver recomputes it over the
//! raw body, compares in constant time, and rejects old timestamps (replays).

use super::{Events, Filter, Next, Subscription};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::time::Duration;
use switchboard_engine::config::EventWebhookConfig;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "X-Switchboard-Signature";
/// Timeout of one delivery.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The hex HMAC-SHA256 of `<t>.<body>` under `secret`.
pub fn sign(secret: &str, t: u64, body: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The header value for `body` sent at unix time `t`.
pub fn signature_header(secret: &str, t: u64, body: &str) -> String {
    format!("t={t},v1={}", sign(secret, t, body))
}

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
                    match post(&client, &hook, &e.frame).await {
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

async fn post(client: &awc::Client, hook: &EventWebhookConfig, body: &str) -> Result<(), String> {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let res = client
        .post(&hook.url)
        .insert_header(("Content-Type", "application/json"))
        .insert_header((SIGNATURE_HEADER, signature_header(&hook.secret, t, body)))
        .send_body(body.to_string())
        .await
        .map_err(|e| e.to_string())?;
    if res.status().is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {}", res.status().as_u16()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_a_known_vector() {
        // printf '1700000000.{"seq":1}' | openssl dgst -sha256 -hmac whsec
        let body = r#"{"seq":1}"#;
        let h = signature_header("whsec", 1_700_000_000, body);
        assert!(h.starts_with("t=1700000000,v1="), "{h}");
        assert_eq!(
            h,
            "t=1700000000,v1=6acb0a2c18af5c775575ce1ef81f008481506802ae0c05bb685f0e7c90d81bc7"
        );
    }
}
