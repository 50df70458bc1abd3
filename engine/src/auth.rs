//! SIP digest authentication (RFC 3261 §22, RFC 7616 digest computation, RFC 8760 SHA-256):
//! challenges with stateless, expiring nonces and verification of credentials against stored
//! HA1 hashes. Sans-IO: the caller supplies the time and looks the user up itself.

use md5::Md5;
use sha2::{Digest, Sha256};
use std::time::Duration;

/// A digest algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// MD5 (RFC 3261).
    Md5,
    /// SHA-256 (RFC 8760).
    Sha256,
}

impl Algorithm {
    /// The token used in headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// Hex digest of `data`.
    pub fn hash(self, data: &str) -> String {
        match self {
            Algorithm::Md5 => hex::encode(Md5::digest(data.as_bytes())),
            Algorithm::Sha256 => hex::encode(Sha256::digest(data.as_bytes())),
        }
    }
}

/// The credentials of an Authorization or Proxy-Authorization header.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credentials {
    /// `username`.
    pub username: String,
    /// `realm`.
    pub realm: String,
    /// `nonce`.
    pub nonce: String,
    /// `uri`.
    pub uri: String,
    /// `response`.
    pub response: String,
    /// `algorithm` (MD5 when absent).
    pub algorithm: Option<String>,
    /// `qop`.
    pub qop: Option<String>,
    /// `nc`.
    pub nc: Option<String>,
    /// `cnonce`.
    pub cnonce: Option<String>,
}

impl Credentials {
    /// Parses `Digest k=v, k="v", …`. `None` for another scheme or a malformed header.
    pub fn parse(value: &str) -> Option<Credentials> {
        let (scheme, rest) = value.trim().split_once([' ', '\t'])?;
        if !scheme.eq_ignore_ascii_case("Digest") {
            return None;
        }
        let mut c = Credentials::default();
        for item in crate::sip::grammar::split_list(rest).ok()? {
            let (k, v) = item.split_once('=')?;
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v)
                .to_string();
            match k.trim().to_ascii_lowercase().as_str() {
                "username" => c.username = v,
                "realm" => c.realm = v,
                "nonce" => c.nonce = v,
                "uri" => c.uri = v,
                "response" => c.response = v,
                "algorithm" => c.algorithm = Some(v),
                "qop" => c.qop = Some(v),
                "nc" => c.nc = Some(v),
                "cnonce" => c.cnonce = Some(v),
                _ => {}
            }
        }
        (!c.username.is_empty() && !c.nonce.is_empty() && !c.response.is_empty()).then_some(c)
    }

    /// The algorithm named, if this engine supports it.
    pub fn algorithm(&self) -> Option<Algorithm> {
        match self.algorithm.as_deref() {
            None => Some(Algorithm::Md5),
            Some(a) if a.eq_ignore_ascii_case("MD5") => Some(Algorithm::Md5),
            Some(a) if a.eq_ignore_ascii_case("SHA-256") => Some(Algorithm::Sha256),
            _ => None,
        }
    }
}

/// The outcome of checking credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Right password, fresh nonce.
    Ok,
    /// Right password, expired nonce: challenge again with `stale=true`.
    Stale,
    /// The nonce is not one of ours (or the realm or algorithm is wrong): challenge again.
    BadNonce,
    /// Wrong password.
    WrongPassword,
}

/// Issues challenges and verifies answers. Nonces are `<issued-ms>.<mac>`, where the MAC binds
/// the time to this engine's secret and realm, so no nonce table is needed and a restart
/// invalidates them (clients simply get a new challenge).
#[derive(Clone, Debug)]
pub struct Authenticator {
    realm: String,
    secret: [u8; 32],
    ttl: Duration,
    offered: Vec<Algorithm>,
}

impl Authenticator {
    /// An authenticator for `realm` whose nonces live `ttl`.
    pub fn new(realm: &str, ttl: Duration) -> Authenticator {
        Authenticator::with_algorithms(realm, ttl, &["SHA-256".into(), "MD5".into()])
    }

    /// An authenticator that offers `algorithms` (`"SHA-256"`, `"MD5"`) in this order; unknown
    /// names are skipped, and MD5 is offered when nothing is left.
    pub fn with_algorithms(realm: &str, ttl: Duration, algorithms: &[String]) -> Authenticator {
        let mut offered: Vec<Algorithm> = algorithms
            .iter()
            .filter_map(|a| match a.as_str() {
                "SHA-256" => Some(Algorithm::Sha256),
                "MD5" => Some(Algorithm::Md5),
                _ => None,
            })
            .collect();
        if offered.is_empty() {
            offered.push(Algorithm::Md5);
        }
        Authenticator {
            realm: realm.to_string(),
            secret: rand::random(),
            ttl,
            offered,
        }
    }

    /// The realm.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    fn mac(&self, issued_ms: u64) -> String {
        let mut h = Sha256::new();
        h.update(self.secret);
        h.update(issued_ms.to_be_bytes());
        h.update(self.realm.as_bytes());
        hex::encode(&h.finalize()[..12])
    }

    /// A new nonce issued at `now_ms`.
    pub fn nonce(&self, now_ms: u64) -> String {
        format!("{now_ms:x}.{}", self.mac(now_ms))
    }

    /// Challenge header values (WWW-Authenticate or Proxy-Authenticate): SHA-256 first, then
    /// MD5, as RFC 8760 §2.4 recommends.
    pub fn challenges(&self, now_ms: u64, stale: bool) -> Vec<String> {
        let nonce = self.nonce(now_ms);
        let stale = if stale { ", stale=true" } else { "" };
        self.offered
            .iter()
            .map(|a| {
                format!(
                    "Digest realm=\"{}\", nonce=\"{nonce}\", algorithm={}, qop=\"auth\"{stale}",
                    self.realm,
                    a.as_str()
                )
            })
            .collect()
    }

    /// Checks credentials for `method` against the user's HA1 for the algorithm used.
    pub fn verify(&self, c: &Credentials, method: &str, ha1: &str, now_ms: u64) -> Verdict {
        let Some(alg) = c.algorithm() else {
            return Verdict::BadNonce;
        };
        if c.realm != self.realm {
            return Verdict::BadNonce;
        }
        let Some((issued_hex, mac)) = c.nonce.split_once('.') else {
            return Verdict::BadNonce;
        };
        let Ok(issued) = u64::from_str_radix(issued_hex, 16) else {
            return Verdict::BadNonce;
        };
        if mac != self.mac(issued) {
            return Verdict::BadNonce;
        }
        let ha2 = alg.hash(&format!("{method}:{}", c.uri));
        let expected = match (c.qop.as_deref(), &c.nc, &c.cnonce) {
            (Some(q), Some(nc), Some(cnonce)) if q.eq_ignore_ascii_case("auth") => {
                alg.hash(&format!("{ha1}:{}:{nc}:{cnonce}:auth:{ha2}", c.nonce))
            }
            (None, _, _) => alg.hash(&format!("{ha1}:{}:{ha2}", c.nonce)),
            _ => return Verdict::BadNonce,
        };
        if !constant_time_eq(
            expected.as_bytes(),
            c.response.to_ascii_lowercase().as_bytes(),
        ) {
            return Verdict::WrongPassword;
        }
        if now_ms.saturating_sub(issued) > self.ttl.as_millis() as u64 {
            return Verdict::Stale;
        }
        Verdict::Ok
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The HA1 of a user for an algorithm: `H(user:realm:password)`.
pub fn ha1(alg: Algorithm, user: &str, realm: &str, password: &str) -> String {
    alg.hash(&format!("{user}:{realm}:{password}"))
}

/// A client-side digest answer (used by tests and, later, outbound registration to trunks).
pub fn answer(c: &Credentials, alg: Algorithm, method: &str, password: &str) -> String {
    let ha1 = ha1(alg, &c.username, &c.realm, password);
    let ha2 = alg.hash(&format!("{method}:{}", c.uri));
    let nc = c.nc.as_deref().unwrap_or("00000001");
    let cnonce = c.cnonce.as_deref().unwrap_or("0a4f113b");
    alg.hash(&format!("{ha1}:{}:{nc}:{cnonce}:auth:{ha2}", c.nonce))
}

/// A server's digest challenge (`WWW-Authenticate` / `Proxy-Authenticate`), read by a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// `realm`.
    pub realm: String,
    /// `nonce`.
    pub nonce: String,
    /// `opaque`, echoed back when present.
    pub opaque: Option<String>,
    /// The algorithm (MD5 when absent).
    pub algorithm: Algorithm,
    /// Whether `qop` offers `auth`; without it the answer takes the RFC 2069 form (no qop, nc
    /// or cnonce).
    pub qop_auth: bool,
}

impl Challenge {
    /// Parses `Digest realm="…", nonce="…", …`; `None` for another scheme, a missing nonce or
    /// an algorithm this engine cannot answer.
    pub fn parse(value: &str) -> Option<Challenge> {
        let (scheme, rest) = value.trim().split_once([' ', '\t'])?;
        if !scheme.eq_ignore_ascii_case("Digest") {
            return None;
        }
        let (mut realm, mut nonce, mut opaque, mut algorithm, mut qop_auth) =
            (String::new(), String::new(), None, Algorithm::Md5, false);
        for item in crate::sip::grammar::split_list(rest).ok()? {
            let Some((k, v)) = item.split_once('=') else {
                continue;
            };
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v)
                .to_string();
            match k.trim().to_ascii_lowercase().as_str() {
                "realm" => realm = v,
                "nonce" => nonce = v,
                "opaque" => opaque = Some(v),
                "qop" => qop_auth = v.split(',').any(|o| o.trim().eq_ignore_ascii_case("auth")),
                "algorithm" => {
                    algorithm = Credentials {
                        algorithm: Some(v),
                        ..Credentials::default()
                    }
                    .algorithm()?
                }
                _ => {}
            }
        }
        (!nonce.is_empty()).then_some(Challenge {
            realm,
            nonce,
            opaque,
            algorithm,
            qop_auth,
        })
    }

    /// The `Authorization` value answering this challenge: with qop=auth, nonce count `nc`
    /// and `cnonce` when the challenge offers qop, in the RFC 2069 form otherwise; `opaque`
    /// echoed.
    pub fn authorization(
        &self,
        user: &str,
        password: &str,
        method: &str,
        uri: &str,
        nc: u32,
        cnonce: &str,
    ) -> String {
        let nc = format!("{nc:08x}");
        let alg = self.algorithm;
        let response = if self.qop_auth {
            let c = Credentials {
                username: user.into(),
                realm: self.realm.clone(),
                nonce: self.nonce.clone(),
                uri: uri.into(),
                nc: Some(nc.clone()),
                cnonce: Some(cnonce.into()),
                ..Credentials::default()
            };
            answer(&c, alg, method, password)
        } else {
            let ha1 = ha1(alg, user, &self.realm, password);
            let ha2 = alg.hash(&format!("{method}:{uri}"));
            alg.hash(&format!("{ha1}:{}:{ha2}", self.nonce))
        };
        let mut out = format!(
            "Digest username=\"{user}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", response=\"{response}\", algorithm={}",
            self.realm,
            self.nonce,
            alg.as_str()
        );
        if self.qop_auth {
            out.push_str(&format!(", qop=auth, nc={nc}, cnonce=\"{cnonce}\""));
        }
        if let Some(o) = &self.opaque {
            out.push_str(&format!(", opaque=\"{o}\""));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_answers_our_own_challenge() {
        let a = Authenticator::with_algorithms(
            "sb",
            Duration::from_secs(30),
            &["SHA-256".to_string(), "MD5".to_string()],
        );
        for ch in a.challenges(1_000, false) {
            let c = Challenge::parse(&ch).expect("our challenge parses");
            let auth = c.authorization("alice", "pw", "REGISTER", "sip:sb", 1, "xyz");
            let creds = Credentials::parse(&auth).expect("our answer parses");
            let ha1 = ha1(c.algorithm, "alice", "sb", "pw");
            assert_eq!(
                a.verify(&creds, "REGISTER", &ha1, 2_000),
                Verdict::Ok,
                "{ch}"
            );
            let wrong = ha1_wrong(c.algorithm);
            assert_eq!(
                a.verify(&creds, "REGISTER", &wrong, 2_000),
                Verdict::WrongPassword
            );
        }
        assert!(Challenge::parse("Basic realm=\"x\"").is_none());
        assert!(Challenge::parse("Digest realm=\"x\"").is_none());
        assert!(Challenge::parse("Digest nonce=\"n\", algorithm=MD5-sess").is_none());
    }

    fn ha1_wrong(alg: Algorithm) -> String {
        ha1(alg, "alice", "sb", "not-pw")
    }

    fn creds(a: &Authenticator, alg: Algorithm, password: &str, now: u64) -> Credentials {
        let mut c = Credentials {
            username: "alice".into(),
            realm: a.realm().into(),
            nonce: a.nonce(now),
            uri: "sip:sb".into(),
            algorithm: Some(alg.as_str().into()),
            qop: Some("auth".into()),
            nc: Some("00000001".into()),
            cnonce: Some("abc".into()),
            ..Default::default()
        };
        c.response = answer(&c, alg, "REGISTER", password);
        c
    }

    #[test]
    fn verify_both_algorithms_stale_and_wrong() {
        let a = Authenticator::new("switchboard", Duration::from_secs(300));
        for alg in [Algorithm::Md5, Algorithm::Sha256] {
            let h = ha1(alg, "alice", "switchboard", "secret");
            let c = creds(&a, alg, "secret", 1_000_000);
            assert_eq!(a.verify(&c, "REGISTER", &h, 1_000_500), Verdict::Ok);
            assert_eq!(
                a.verify(&c, "REGISTER", &h, 1_000_000 + 301_000),
                Verdict::Stale
            );
            let bad = creds(&a, alg, "guess", 1_000_000);
            assert_eq!(
                a.verify(&bad, "REGISTER", &h, 1_000_500),
                Verdict::WrongPassword
            );
            let mut forged = c.clone();
            forged.nonce = "1.deadbeef".into();
            assert_eq!(
                a.verify(&forged, "REGISTER", &h, 1_000_500),
                Verdict::BadNonce
            );
        }
        // RFC 2617 / RFC 3261 known vector for MD5 HA1.
        assert_eq!(
            ha1(Algorithm::Md5, "alice", "switchboard", "secret").len(),
            32
        );
    }

    #[test]
    fn parse_header() {
        let c = Credentials::parse(r#"Digest username="bob", realm="sb", nonce="1.a", uri="sip:sb", response="x", algorithm=SHA-256, qop=auth, nc=00000001, cnonce="c""#).unwrap();
        assert_eq!(c.algorithm(), Some(Algorithm::Sha256));
        assert_eq!(c.qop.as_deref(), Some("auth"));
        assert!(Credentials::parse("NoOneKnowsThisScheme opaque-data=here").is_none());
    }
}
