//! API channels: the HMAC-SHA256 signature of inbound requests and outbound webhooks
//! (`X-Switchboard-Signature: t=UNIX_SECONDS,v1=hex(hmac_sha256(secret, t + "." + body))`,
//! Stripe's scheme) and the per-conversation outbound webhook queue with retries.

use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;
use std::time::Duration;
use tokio::sync::mpsc;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "X-Switchboard-Signature";
/// Largest accepted clock difference between the signer and us, in seconds.
pub const TOLERANCE_SECS: i64 = 300;
/// Delivery attempts of one outbound webhook.
const ATTEMPTS: u32 = 5;
/// Wait before the first retry (doubles each time).
const FIRST_RETRY: Duration = Duration::from_millis(500);

/// Why a signature was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignatureError {
    /// No header.
    Missing,
    /// The header is not `t=…,v1=…`.
    Malformed,
    /// `t` is more than [`TOLERANCE_SECS`] away from now.
    Expired,
    /// No `v1` matches.
    Mismatch,
}

impl std::fmt::Display for SignatureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SignatureError::Missing => "missing X-Switchboard-Signature header",
            SignatureError::Malformed => "malformed signature: expected t=…,v1=…",
            SignatureError::Expired => "signature timestamp outside the 5-minute tolerance",
            SignatureError::Mismatch => "signature does not match",
        })
    }
}

fn mac(secret: &str, t: i64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length: this cannot fail.
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    m.update(t.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m
}

/// The header value signing `body` at time `t` (Unix seconds).
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    let tag = mac(secret, t, body).finalize().into_bytes();
    format!("t={t},v1={}", hex::encode(tag))
}

/// Checks `header` against `body` at `now` (Unix seconds), in constant time.
pub fn verify_signature(
    secret: &str,
    header: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut t = None;
    let mut sigs = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = Some(v.parse::<i64>().map_err(|_| SignatureError::Malformed)?),
            Some(("v1", v)) => sigs.push(hex::decode(v).map_err(|_| SignatureError::Malformed)?),
            Some(_) => {}
            None => return Err(SignatureError::Malformed),
        }
    }
    let t = t.ok_or(SignatureError::Malformed)?;
    if sigs.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if (now - t).abs() > TOLERANCE_SECS {
        return Err(SignatureError::Expired);
    }
    if sigs
        .iter()
        .any(|s| mac(secret, t, body).verify_slice(s).is_ok())
    {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// Unix seconds now.
pub(super) fn unix_now() -> i64 {
    switchboard_storage::now_ms() / 1000
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
                    let sig = sign(&secret, unix_now(), body.as_bytes());
                    let r = client
                        .post(&url)
                        .insert_header(("Content-Type", "application/json"))
                        .insert_header((SIGNATURE_HEADER, sig))
                        .send_body(body.clone())
                        .await;
                    match r {
                        Ok(res) if res.status().is_success() => break,
                        Ok(res) => {
                            tracing::warn!(%url, status = res.status().as_u16(), attempt, "channel webhook refused")
                        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_round_trip_and_failures() {
        let secret = "0123456789abcdef";
        let body = br#"{"external_user_id":"u1","text":"hi"}"#;
        let h = sign(secret, 1_700_000_000, body);
        assert!(h.starts_with("t=1700000000,v1="));
        assert_eq!(
            verify_signature(secret, Some(&h), body, 1_700_000_100),
            Ok(())
        );
        assert_eq!(
            verify_signature(secret, Some(&h), b"{}", 1_700_000_100),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature("another-secret-16", Some(&h), body, 1_700_000_100),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(secret, Some(&h), body, 1_700_000_301),
            Err(SignatureError::Expired)
        );
        assert_eq!(
            verify_signature(secret, None, body, 0),
            Err(SignatureError::Missing)
        );
        for bad in ["", "t=1", "v1=00", "t=x,v1=00", "t=1,v1=zz", "garbage"] {
            assert_eq!(
                verify_signature(secret, Some(bad), body, 1),
                Err(SignatureError::Malformed),
                "{bad}"
            );
        }
        // Several v1 values (secret rotation): one match is enough.
        let two = format!("{h},v1={}", "00".repeat(32));
        assert_eq!(
            verify_signature(secret, Some(&two), body, 1_700_000_000),
            Ok(())
        );
    }
}
