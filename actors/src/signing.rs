//! Signed webhooks, one scheme for every outbound and inbound webhook of the engine (event
//! webhooks, API-channel messages and replies, ticket notifications):
//!
//! `X-Switchboard-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`
//! (Stripe's scheme). A receiver recomputes the MAC over the raw body, compares in constant
//! time and refuses a timestamp more than [`TOLERANCE_SECS`] away (replays). Several `v1`
//! values may be sent during a secret rotation; one match is enough.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "X-Switchboard-Signature";
/// Largest accepted clock difference between the signer and the verifier, in seconds.
pub const TOLERANCE_SECS: i64 = 300;

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

/// The header value signing `body` at time `t` (Unix seconds): `t=…,v1=…`.
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    let tag = mac(secret, t, body).finalize().into_bytes();
    format!("t={t},v1={}", hex::encode(tag))
}

/// Checks `header` against `body` at `now` (Unix seconds), in constant time.
pub fn verify(
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
pub fn unix_now() -> i64 {
    switchboard_storage::now_ms() / 1000
}

/// POSTs `body` (JSON) to `url`, signed with `secret` at the current time. `Ok` on a 2xx,
/// else why not (the status, or the transport error). One attempt: callers retry.
pub async fn post(client: &awc::Client, url: &str, secret: &str, body: &str) -> Result<(), String> {
    let res = client
        .post(url)
        .insert_header(("Content-Type", "application/json"))
        .insert_header((SIGNATURE_HEADER, sign(secret, unix_now(), body.as_bytes())))
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
        let h = sign("whsec", 1_700_000_000, br#"{"seq":1}"#);
        assert_eq!(
            h,
            "t=1700000000,v1=6acb0a2c18af5c775575ce1ef81f008481506802ae0c05bb685f0e7c90d81bc7"
        );
    }

    #[test]
    fn signature_round_trip_and_failures() {
        let secret = "0123456789abcdef";
        let body = br#"{"external_user_id":"u1","text":"hi"}"#;
        let h = sign(secret, 1_700_000_000, body);
        assert!(h.starts_with("t=1700000000,v1="));
        assert_eq!(verify(secret, Some(&h), body, 1_700_000_100), Ok(()));
        assert_eq!(
            verify(secret, Some(&h), b"{}", 1_700_000_100),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify("another-secret-16", Some(&h), body, 1_700_000_100),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(secret, Some(&h), body, 1_700_000_301),
            Err(SignatureError::Expired)
        );
        assert_eq!(verify(secret, None, body, 0), Err(SignatureError::Missing));
        for bad in ["", "t=1", "v1=00", "t=x,v1=00", "t=1,v1=zz", "garbage"] {
            assert_eq!(
                verify(secret, Some(bad), body, 1),
                Err(SignatureError::Malformed),
                "{bad}"
            );
        }
        // Several v1 values (secret rotation): one match is enough.
        let two = format!("{h},v1={}", "00".repeat(32));
        assert_eq!(verify(secret, Some(&two), body, 1_700_000_000), Ok(()));
    }
}
