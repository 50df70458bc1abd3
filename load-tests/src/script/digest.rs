//! The client side of SIP digest authentication (RFC 3261 §22.2, RFC 7616, RFC 8760): reads
//! the challenges of a 401/407 and writes the Authorization / Proxy-Authorization that answers
//! the first one whose algorithm the engine supports (MD5 or SHA-256), with
//! [`switchboard_engine::auth::Challenge`].

use switchboard_engine::auth::Challenge;
use switchboard_engine::sip::{HeaderName, Response};

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
    let challenge = resp
        .headers
        .get_all(&challenge_header)
        .find_map(Challenge::parse)?;
    Some((
        answer_header,
        challenge.authorization(user, password, method, uri, 1, cnonce),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use switchboard_engine::auth::{self, Algorithm, Authenticator, Credentials, Verdict};
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
        let v = c.authorization("Mufasa", "Circle Of Life", "GET", "/dir/index.html", 1, "x");
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
