//! The client side of SIP digest authentication (RFC 3261 §22.2, RFC 7616, RFC 8760): reads
//! the challenges of a 401/407 and writes the Authorization / Proxy-Authorization that answers
//! the first one whose algorithm the engine supports (MD5 or SHA-256), hashing with
//! [`switchboard_engine::auth`].

use switchboard_engine::auth::{self, Algorithm, Credentials};
use switchboard_engine::sip::grammar::split_list;
use switchboard_engine::sip::{HeaderName, Response};

/// One `Digest` challenge.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Challenge {
    /// `realm`.
    pub realm: String,
    /// `nonce`.
    pub nonce: String,
    /// `opaque`, echoed back.
    pub opaque: Option<String>,
    /// `algorithm` (MD5 when absent).
    pub algorithm: Option<String>,
    /// `qop` options offered.
    pub qop: Option<String>,
}

impl Challenge {
    /// Parses `Digest realm="…", nonce="…", …`; `None` for another scheme or no nonce.
    pub fn parse(value: &str) -> Option<Challenge> {
        let (scheme, rest) = value.trim().split_once([' ', '\t'])?;
        if !scheme.eq_ignore_ascii_case("Digest") {
            return None;
        }
        let mut c = Challenge::default();
        for item in split_list(rest).ok()? {
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
                "realm" => c.realm = v,
                "nonce" => c.nonce = v,
                "opaque" => c.opaque = Some(v),
                "algorithm" => c.algorithm = Some(v),
                "qop" => c.qop = Some(v),
                _ => {}
            }
        }
        (!c.nonce.is_empty()).then_some(c)
    }

    fn algorithm(&self) -> Option<Algorithm> {
        match self.algorithm.as_deref() {
            None => Some(Algorithm::Md5),
            Some(a) if a.eq_ignore_ascii_case("MD5") => Some(Algorithm::Md5),
            Some(a) if a.eq_ignore_ascii_case("SHA-256") => Some(Algorithm::Sha256),
            _ => None,
        }
    }

    fn offers_auth(&self) -> bool {
        self.qop
            .as_deref()
            .is_some_and(|q| q.split(',').any(|o| o.trim().eq_ignore_ascii_case("auth")))
    }
}

/// The header to add to the retried request, as (name, value), answering the challenge of a
/// 401 (WWW-Authenticate) or 407 (Proxy-Authenticate) for `method` on `uri`. `None` when no
/// challenge uses a supported algorithm.
pub fn authorize(
    resp: &Response,
    method: &str,
    uri: &str,
    user: &str,
    password: &str,
    cnonce: &str,
) -> Option<(HeaderName, String)> {
    let (challenge_header, answer_header) = if resp.status == 407 {
        (
            HeaderName::ProxyAuthenticate,
            HeaderName::ProxyAuthorization,
        )
    } else {
        (HeaderName::WwwAuthenticate, HeaderName::Authorization)
    };
    let (challenge, alg) = resp
        .headers
        .get_all(&challenge_header)
        .filter_map(Challenge::parse)
        .find_map(|c| c.algorithm().map(|a| (c, a)))?;
    Some((
        answer_header,
        answer(&challenge, alg, method, uri, user, password, cnonce),
    ))
}

/// The credentials value answering `c`.
fn answer(
    c: &Challenge,
    alg: Algorithm,
    method: &str,
    uri: &str,
    user: &str,
    password: &str,
    cnonce: &str,
) -> String {
    let nc = "00000001";
    let mut out = format!(
        "Digest username=\"{user}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\"",
        c.realm, c.nonce
    );
    let response = if c.offers_auth() {
        let creds = Credentials {
            username: user.to_string(),
            realm: c.realm.clone(),
            nonce: c.nonce.clone(),
            uri: uri.to_string(),
            nc: Some(nc.into()),
            cnonce: Some(cnonce.into()),
            ..Credentials::default()
        };
        auth::answer(&creds, alg, method, password)
    } else {
        let ha1 = auth::ha1(alg, user, &c.realm, password);
        let ha2 = alg.hash(&format!("{method}:{uri}"));
        alg.hash(&format!("{ha1}:{}:{ha2}", c.nonce))
    };
    out.push_str(&format!(
        ", response=\"{response}\", algorithm={}",
        alg.as_str()
    ));
    if c.offers_auth() {
        out.push_str(&format!(", qop=auth, nc={nc}, cnonce=\"{cnonce}\""));
    }
    if let Some(o) = &c.opaque {
        out.push_str(&format!(", opaque=\"{o}\""));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use switchboard_engine::auth::{Authenticator, Verdict};
    use switchboard_engine::sip::Headers;

    fn challenge_response(a: &Authenticator, status: u16) -> Response {
        let mut headers = Headers::new();
        let name = if status == 407 {
            HeaderName::ProxyAuthenticate
        } else {
            HeaderName::WwwAuthenticate
        };
        headers.push(name.clone(), "Basic realm=\"x\"");
        for c in a.challenges(1_000, false) {
            headers.push(name.clone(), c);
        }
        Response {
            status,
            reason: "Unauthorized".into(),
            headers,
            body: Default::default(),
        }
    }

    /// The engine's own verifier accepts what we compute, for both algorithms it offers.
    #[test]
    fn engine_verifier_accepts_the_answer() {
        for algs in [vec!["SHA-256".to_string()], vec!["MD5".to_string()]] {
            let a = Authenticator::with_algorithms("sb", Duration::from_secs(60), &algs);
            for status in [401, 407] {
                let resp = challenge_response(&a, status);
                let (name, value) =
                    authorize(&resp, "REGISTER", "sip:127.0.0.1", "alice", "s3cret", "c1")
                        .expect("a supported challenge");
                let want = if status == 407 {
                    HeaderName::ProxyAuthorization
                } else {
                    HeaderName::Authorization
                };
                assert_eq!(name, want);
                let creds = Credentials::parse(&value).expect("parses back");
                let alg = creds.algorithm().expect("known algorithm");
                let ha1 = auth::ha1(alg, "alice", "sb", "s3cret");
                assert_eq!(a.verify(&creds, "REGISTER", &ha1, 1_500), Verdict::Ok);
                let bad = auth::ha1(alg, "alice", "sb", "other");
                assert_eq!(
                    a.verify(&creds, "REGISTER", &bad, 1_500),
                    Verdict::WrongPassword
                );
            }
        }
    }

    /// RFC 2617 §3.5's credentials in the RFC 2069 form (no qop), with opaque echoed.
    #[test]
    fn no_qop_and_opaque() {
        let c = Challenge::parse(
            r#"Digest realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#,
        )
        .expect("parses");
        let v = answer(
            &c,
            Algorithm::Md5,
            "GET",
            "/dir/index.html",
            "Mufasa",
            "Circle Of Life",
            "x",
        );
        // HA1 is RFC 2617's; H(HA1:nonce:HA2) was computed with Python's hashlib.
        let ha1 = auth::ha1(
            Algorithm::Md5,
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
        );
        assert_eq!(ha1, "939e7578ed9e3c518a452acee763bce9");
        assert!(
            v.contains("response=\"670fd8c2df070c60b045671b8b24ff02\""),
            "{v}"
        );
        assert!(v.contains("opaque=\"5ccc069c403ebaf9f0171e9517f40e41\""));
        assert!(!v.contains("qop"));
        assert!(Challenge::parse("Basic realm=\"x\"").is_none());
        assert!(Challenge::parse("Digest realm=\"x\"").is_none());
    }
}
