//! The registrar over real UDP: digest with MD5 and SHA-256, stale nonces, several contacts
//! with q-values, `Contact: *`, unknown users, and brute-force throttling.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use switchboard_engine::auth::{answer, Algorithm, Credentials};
use switchboard_tests::{status_and_call_id, Engine};

struct Client {
    s: UdpSocket,
    local: SocketAddr,
    target: SocketAddr,
    call_id: String,
    cseq: u32,
}

impl Client {
    fn new(engine: &Engine, tag: &str) -> Client {
        let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let local = s.local_addr().expect("addr");
        Client {
            s,
            local,
            target: engine.sip_addr(),
            call_id: format!("regtest-{tag}-{}", local.port()),
            cseq: 0,
        }
    }

    /// Sends a REGISTER for `user` with the given extra header lines; returns the final answer.
    fn register(&mut self, user: &str, extra: &str) -> String {
        self.cseq += 1;
        let (local, target, call_id, cseq) = (self.local, self.target, &self.call_id, self.cseq);
        let msg = format!(
            "REGISTER sip:{target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-{call_id}-{cseq};rport\r\nMax-Forwards: 70\r\n\
             From: <sip:{user}@{target}>;tag=t\r\nTo: <sip:{user}@{target}>\r\nCall-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\n\
             {extra}Content-Length: 0\r\n\r\n"
        );
        self.s.send_to(msg.as_bytes(), target).expect("send");
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut buf = vec![0u8; 65536];
        while Instant::now() < deadline {
            if let Ok(n) = self.s.recv(&mut buf) {
                if status_and_call_id(&buf[..n]).is_some_and(|(st, _)| st >= 200) {
                    return String::from_utf8_lossy(&buf[..n]).to_string();
                }
            }
        }
        panic!("no answer to REGISTER");
    }

    /// The Authorization header answering the challenge of `alg` in `resp`.
    fn authorization(&self, resp: &str, alg: Algorithm, user: &str, password: &str) -> String {
        let challenge = resp
            .split("\r\n")
            .filter(|l| l.starts_with("WWW-Authenticate:"))
            .find(|l| l.contains(&format!("algorithm={}", alg.as_str())))
            .expect("a challenge for the algorithm");
        let field = |k: &str| {
            challenge.split(',').find_map(|p| {
                let (n, v) = p
                    .trim()
                    .trim_start_matches("WWW-Authenticate: Digest ")
                    .split_once('=')?;
                (n.trim() == k).then(|| v.trim().trim_matches('"').to_string())
            })
        };
        let uri = format!("sip:{}", self.target);
        let c = Credentials {
            username: user.into(),
            realm: field("realm").unwrap_or_default(),
            nonce: field("nonce").unwrap_or_default(),
            uri: uri.clone(),
            qop: Some("auth".into()),
            nc: Some("00000001".into()),
            cnonce: Some("xyz".into()),
            algorithm: Some(alg.as_str().into()),
            ..Default::default()
        };
        let r = answer(&c, alg, "REGISTER", password);
        format!(
            "Authorization: Digest username=\"{user}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", response=\"{r}\", algorithm={}, qop=auth, nc=00000001, cnonce=\"xyz\"\r\n",
            c.realm,
            c.nonce,
            alg.as_str()
        )
    }
}

fn status(resp: &str) -> u16 {
    resp.get(8..11).and_then(|s| s.parse().ok()).unwrap_or(0)
}

#[test]
fn digest_contacts_star_stale_unknown_and_throttling() {
    let engine = Engine::start("[registrar]\ndigest_algorithms = [\"SHA-256\", \"MD5\"]\nnonce_ttl_secs = 1\nmin_expires_secs = 1\nmax_auth_failures_per_min = 5\nunknown_user_status = 404\n");
    engine.add_user("alice", "wonderland");
    let mut c = Client::new(&engine, "a");
    let contacts = "Contact: <sip:alice@127.0.0.1:7001>;q=0.5, <sip:alice@127.0.0.1:7002>;q=0.9\r\nExpires: 600\r\n";

    // No credentials: 401 with SHA-256 and MD5 challenges.
    let r = c.register("alice", contacts);
    assert_eq!(status(&r), 401, "{r}");
    assert!(
        r.contains("algorithm=SHA-256")
            && r.contains("algorithm=MD5")
            && r.contains("qop=\"auth\""),
        "{r}"
    );

    // SHA-256 (RFC 8760): 200 with both contacts and their q-values.
    let auth = c.authorization(&r, Algorithm::Sha256, "alice", "wonderland");
    let ok = c.register("alice", &format!("{contacts}{auth}"));
    assert_eq!(status(&ok), 200, "{ok}");
    assert!(
        ok.contains("<sip:alice@127.0.0.1:7002>;expires=600;q=0.9"),
        "{ok}"
    );
    assert!(
        ok.contains("<sip:alice@127.0.0.1:7001>;expires=600;q=0.5"),
        "{ok}"
    );

    // The same nonce after its lifetime: 401 with stale=true.
    std::thread::sleep(Duration::from_millis(2100));
    let stale = c.register("alice", &format!("{contacts}{auth}"));
    assert_eq!(status(&stale), 401, "{stale}");
    assert!(stale.contains("stale=true"), "{stale}");

    // MD5 with a fresh nonce; Contact: * with Expires: 0 removes every binding.
    let auth = c.authorization(&stale, Algorithm::Md5, "alice", "wonderland");
    let cleared = c.register("alice", &format!("Contact: *\r\nExpires: 0\r\n{auth}"));
    assert_eq!(status(&cleared), 200, "{cleared}");
    assert!(!cleared.contains("Contact:"), "no binding left: {cleared}");

    // Unknown user: 404 as configured.
    let mut u = Client::new(&engine, "u");
    let ch = u.register("mallory", "Contact: <sip:m@127.0.0.1:7003>\r\n");
    let auth = u.authorization(&ch, Algorithm::Md5, "mallory", "x");
    assert_eq!(
        status(&u.register(
            "mallory",
            &format!("Contact: <sip:m@127.0.0.1:7003>\r\n{auth}")
        )),
        404
    );

    // Brute force: 5 failures per minute from one source (mallory's was the first), then the
    // source is refused without a challenge, even for the right password.
    let mut b = Client::new(&engine, "b");
    for _ in 0..4 {
        let ch = b.register("alice", "Contact: <sip:alice@127.0.0.1:7004>\r\n");
        assert_eq!(status(&ch), 401, "{ch}");
        let auth = b.authorization(&ch, Algorithm::Md5, "alice", "guess");
        let wrong = b.register(
            "alice",
            &format!("Contact: <sip:alice@127.0.0.1:7004>\r\n{auth}"),
        );
        assert_eq!(status(&wrong), 403, "{wrong}");
    }
    let refused = b.register("alice", "Contact: <sip:alice@127.0.0.1:7004>\r\n");
    assert_eq!(status(&refused), 403, "throttled source: {refused}");
    assert!(refused.contains("too many failed attempts"), "{refused}");
}
