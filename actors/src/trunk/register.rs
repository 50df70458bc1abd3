//! Outbound registration to a carrier (RFC 3261 §10, the client side) as a sans-IO state
//! machine: it builds each REGISTER, reads the answers (digest challenges, 423 Interval Too
//! Brief, the granted expiry) and says when it next needs to act.
//!
//! Call order (as in quinn-proto): [`Registration::handle_timeout`] when
//! [`Registration::poll_timeout`] has passed, [`Registration::handle_response`] /
//! [`Registration::handle_failure`] for each outcome of a REGISTER it sent, then
//! [`Registration::poll_request`] until it returns `None`. No clock, socket or sleep inside.
//!
//! A refresh is sent at half the granted lifetime; a failure (timeout, an error status, a
//! refused challenge answer) is retried after a back-off that doubles from `retry_min_secs` to
//! `retry_max_secs` and resets on success. A restarted registrar therefore gets a new
//! REGISTER at the next refresh or retry, challenges it, and the registration comes back.

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use switchboard_engine::auth::Challenge;
use switchboard_engine::config::RegisterConfig;
use switchboard_engine::dialog::{new_request, new_tag, uri_of};
use switchboard_engine::sip::grammar::{find_param, parse_name_addr};
use switchboard_engine::sip::{HeaderName, Method, Request, Response};
use switchboard_engine::transaction::TransportKind;

/// Where a registration stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Not yet tried.
    Unregistered,
    /// A REGISTER is on its way (first attempt or after a failure).
    Registering,
    /// The registrar accepted the binding; it is refreshed before it expires.
    Registered,
    /// The last attempt failed; another follows after the back-off.
    Failed,
}

/// A REGISTER sent and not yet answered.
#[derive(Debug)]
struct Pending {
    cseq: u32,
    deadline: Instant,
    /// Challenges answered within this attempt (a second refusal ends it).
    auth_rounds: u32,
}

/// One trunk's registration.
#[derive(Debug)]
pub struct Registration {
    cfg: RegisterConfig,
    registrar: SocketAddr,
    aor: String,
    request_uri: String,
    contact: String,
    call_id: String,
    from_tag: String,
    cseq: u32,
    expires: u32,
    state: State,
    pending: Option<Pending>,
    next_at: Instant,
    challenge: Option<(Challenge, bool)>,
    nc: u32,
    backoff: Duration,
    auth_rounds: u32,
    expires_at: Option<Instant>,
    last: Option<(u16, String)>,
    registrations: u64,
    failures: u64,
    transport: TransportKind,
    local: SocketAddr,
}

/// What the API shows of a registration (times in milliseconds from now).
#[derive(Clone, Debug, serde::Serialize)]
pub struct Status {
    /// The state.
    pub state: State,
    /// The registrar's address.
    pub registrar: String,
    /// Our address of record.
    pub aor: String,
    /// Our Contact.
    pub contact: String,
    /// The last final answer (`200 OK`, `401 Unauthorized`, `408 timeout`), if any.
    pub last_response: Option<String>,
    /// Time left on the binding the registrar granted (0 when none).
    pub expires_in_ms: u64,
    /// When the next REGISTER goes out (refresh or retry).
    pub next_attempt_in_ms: u64,
    /// Successful registrations (first and refreshes).
    pub registrations: u64,
    /// Failed attempts.
    pub failures: u64,
}

impl Registration {
    /// A registration to `registrar` from `local` (our UDP address), with a fixed Call-ID
    /// (RFC 3261 §10.2.4: refreshes reuse it). The first REGISTER is due at `now`.
    pub fn new(
        cfg: RegisterConfig,
        registrar: SocketAddr,
        local: SocketAddr,
        call_id: String,
        now: Instant,
    ) -> Registration {
        let domain = cfg
            .domain
            .clone()
            .unwrap_or_else(|| registrar.ip().to_string());
        let aor = format!("sip:{}@{domain}", cfg.username);
        let request_uri = match &cfg.domain {
            Some(d) => format!("sip:{d}"),
            None => format!("sip:{registrar}"),
        };
        let user = cfg
            .contact_user
            .clone()
            .unwrap_or_else(|| cfg.username.clone());
        let contact = format!("sip:{user}@{local}");
        let backoff = Duration::from_secs(cfg.retry_min_secs.max(1));
        Registration {
            expires: cfg.expires_secs,
            cfg,
            registrar,
            aor,
            request_uri,
            contact,
            call_id,
            from_tag: new_tag(),
            cseq: 0,
            state: State::Unregistered,
            pending: None,
            next_at: now,
            challenge: None,
            nc: 0,
            backoff,
            auth_rounds: 0,
            expires_at: None,
            last: None,
            registrations: 0,
            failures: 0,
            transport: TransportKind::Udp,
            local,
        }
    }

    /// The same registration sent over `transport` (TCP, TLS): the Via names it and the
    /// Contact carries `;transport=`.
    pub fn with_transport(mut self, transport: TransportKind) -> Registration {
        self.transport = transport;
        if transport != TransportKind::Udp {
            self.contact = format!(
                "{};transport={}",
                self.contact,
                transport.as_str().to_ascii_lowercase()
            );
        }
        self
    }

    /// The registrar (where [`Registration::poll_request`]'s requests go).
    pub fn registrar(&self) -> SocketAddr {
        self.registrar
    }

    /// The user part of our Contact: INVITEs to it are the trunk's inbound calls.
    pub fn contact_user(&self) -> &str {
        self.cfg
            .contact_user
            .as_deref()
            .unwrap_or(&self.cfg.username)
    }

    /// The state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The next REGISTER to send, when one is due.
    pub fn poll_request(&mut self, now: Instant) -> Option<Request> {
        if self.pending.is_some() || now < self.next_at {
            return None;
        }
        if self.state != State::Registered {
            self.state = State::Registering;
        }
        self.cseq += 1;
        let from = format!("<{}>;tag={}", self.aor, self.from_tag);
        let mut req = new_request(
            Method::Register,
            &self.request_uri,
            "<sip:placeholder>",
            &format!("<{}>", self.aor),
            &self.call_id,
            self.cseq,
            self.local,
            self.transport,
        );
        req.headers.set(HeaderName::From, from);
        req.headers
            .set(HeaderName::Contact, format!("<{}>", self.contact));
        req.headers
            .push(HeaderName::Expires, self.expires.to_string());
        if let Some((ch, proxy)) = &self.challenge {
            self.nc += 1;
            let user = self
                .cfg
                .auth_username
                .as_deref()
                .unwrap_or(&self.cfg.username);
            let cnonce = format!("{:08x}", rand::random::<u32>());
            let value = ch.authorization(
                user,
                &self.cfg.password,
                "REGISTER",
                &self.request_uri,
                self.nc,
                &cnonce,
            );
            let name = if *proxy {
                HeaderName::ProxyAuthorization
            } else {
                HeaderName::Authorization
            };
            req.headers.push(name, value);
        }
        self.pending = Some(Pending {
            cseq: self.cseq,
            deadline: now + Duration::from_millis(self.cfg.timeout_ms),
            auth_rounds: self.auth_rounds,
        });
        Some(req)
    }

    /// A response to the REGISTER with CSeq `cseq` (others are ignored).
    pub fn handle_response(&mut self, now: Instant, cseq: u32, resp: &Response) {
        if resp.status < 200 {
            return;
        }
        let Some(p) = self.pending.take_if(|p| p.cseq == cseq) else {
            return;
        };
        self.last = Some((resp.status, resp.reason.clone()));
        match resp.status {
            200..=299 => {
                let granted = self.granted_expires(resp).unwrap_or(self.expires).max(1);
                self.state = State::Registered;
                self.expires_at = Some(now + Duration::from_secs(u64::from(granted)));
                self.next_at = now
                    + Duration::from_millis(u64::from(granted) * 500)
                        .max(Duration::from_millis(500));
                self.backoff = Duration::from_secs(self.cfg.retry_min_secs.max(1));
                self.auth_rounds = 0;
                self.registrations += 1;
            }
            401 | 407 => {
                let (name, proxy) = if resp.status == 401 {
                    (HeaderName::WwwAuthenticate, false)
                } else {
                    (HeaderName::ProxyAuthenticate, true)
                };
                let challenge = resp.headers.get_all(&name).find_map(Challenge::parse);
                let stale = resp.headers.get_all(&name).any(|v| {
                    v.to_ascii_lowercase()
                        .replace(' ', "")
                        .contains("stale=true")
                });
                match challenge {
                    // A fresh challenge, or a stale nonce: answer it at once, at most twice in
                    // one attempt (a second plain refusal means wrong credentials).
                    Some(ch) if p.auth_rounds == 0 || (stale && p.auth_rounds < 2) => {
                        self.challenge = Some((ch, proxy));
                        self.nc = 0;
                        self.auth_rounds = p.auth_rounds + 1;
                        self.next_at = now;
                    }
                    _ => self.fail(now),
                }
            }
            423 => {
                let min = resp
                    .headers
                    .get(&HeaderName::MinExpires)
                    .and_then(|v| v.trim().parse::<u32>().ok());
                match min {
                    Some(m) if m > self.expires && p.auth_rounds < 2 => {
                        self.expires = m;
                        self.auth_rounds = p.auth_rounds + 1;
                        self.next_at = now;
                    }
                    _ => self.fail(now),
                }
            }
            _ => self.fail(now),
        }
    }

    /// The REGISTER with CSeq `cseq` got no answer (transaction timeout, send error).
    pub fn handle_failure(&mut self, now: Instant, cseq: u32) {
        if self.pending.take_if(|p| p.cseq == cseq).is_some() {
            self.last = Some((408, "Request Timeout".into()));
            self.fail(now);
        }
    }

    /// Time passes: an unanswered REGISTER past its deadline has failed; an expired binding
    /// is gone.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.pending.as_ref().is_some_and(|p| now >= p.deadline) {
            self.pending = None;
            self.last = Some((408, "Request Timeout".into()));
            self.fail(now);
        }
        if self.expires_at.is_some_and(|t| now >= t) {
            self.expires_at = None;
            if self.state == State::Registered {
                self.state = State::Failed;
            }
        }
    }

    /// When [`Registration::handle_timeout`] or [`Registration::poll_request`] next has work.
    pub fn poll_timeout(&self) -> Instant {
        let mut t = match &self.pending {
            Some(p) => p.deadline,
            None => self.next_at,
        };
        if let Some(e) = self.expires_at {
            t = t.min(e);
        }
        t
    }

    fn fail(&mut self, now: Instant) {
        self.failures += 1;
        self.state = State::Failed;
        self.auth_rounds = 0;
        self.next_at = now + self.backoff;
        self.backoff = (self.backoff * 2).min(Duration::from_secs(self.cfg.retry_max_secs.max(1)));
    }

    /// The lifetime the registrar granted our Contact: its `expires` parameter, else the
    /// Expires header.
    fn granted_expires(&self, resp: &Response) -> Option<u32> {
        let ours = resp.headers.get_all(&HeaderName::Contact).find_map(|v| {
            switchboard_engine::sip::grammar::split_list(v)
                .ok()?
                .into_iter()
                .filter_map(|c| parse_name_addr(c).ok())
                .find(|n| same_contact(&n.uri, &self.contact))
                .and_then(|n| {
                    find_param(&n.params, "expires")?
                        .value
                        .as_deref()?
                        .parse()
                        .ok()
                })
        });
        ours.or_else(|| {
            resp.headers
                .get(&HeaderName::Expires)
                .and_then(|v| v.trim().parse().ok())
        })
    }

    /// What the API shows.
    pub fn status(&self, now: Instant) -> Status {
        let left = |t: Instant| t.saturating_duration_since(now).as_millis() as u64;
        Status {
            state: self.state,
            registrar: self.registrar.to_string(),
            aor: self.aor.clone(),
            contact: self.contact.clone(),
            last_response: self.last.as_ref().map(|(c, r)| format!("{c} {r}")),
            expires_in_ms: self.expires_at.map_or(0, left),
            next_attempt_in_ms: match &self.pending {
                Some(_) => 0,
                None => left(self.next_at),
            },
            registrations: self.registrations,
            failures: self.failures,
        }
    }
}

/// Whether two contact URIs name the same user and host (parameters aside).
fn same_contact(a: &str, b: &str) -> bool {
    let strip = |u: &str| {
        let u = uri_of(u).unwrap_or_else(|| u.to_string());
        u.split(';').next().unwrap_or("").to_ascii_lowercase()
    };
    strip(a) == strip(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use switchboard_engine::sip::build::response;
    use switchboard_engine::sip::SipHeaders;

    fn cfg() -> RegisterConfig {
        RegisterConfig {
            username: "trunk1".into(),
            password: "secret".into(),
            expires_secs: 60,
            timeout_ms: 1000,
            retry_min_secs: 2,
            retry_max_secs: 8,
            ..RegisterConfig::default()
        }
    }

    fn cseq(r: &Request) -> u32 {
        r.headers
            .get(&HeaderName::CSeq)
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap()
    }

    fn reg(t0: Instant) -> Registration {
        Registration::new(
            cfg(),
            "127.0.0.1:5090".parse().unwrap(),
            "127.0.0.1:5060".parse().unwrap(),
            "sb0-reg@127.0.0.1".into(),
            t0,
        )
    }

    #[test]
    fn challenge_then_refresh_at_half() {
        let t0 = Instant::now();
        let mut r = reg(t0);
        let first = r.poll_request(t0).unwrap();
        assert!(r.poll_request(t0).is_none(), "one at a time");
        assert_eq!(first.uri, "sip:127.0.0.1:5090");
        assert!(first.headers.get(&HeaderName::Authorization).is_none());
        let mut c = response(&first, 401);
        c.headers.push(
            HeaderName::WwwAuthenticate,
            "Digest realm=\"carrier\", nonce=\"abc\", qop=\"auth\"",
        );
        r.handle_response(t0, cseq(&first), &c);
        let second = r.poll_request(t0).unwrap();
        assert_eq!(cseq(&second), 2);
        assert_eq!(second.call_id(), first.call_id());
        let auth = second.headers.get(&HeaderName::Authorization).unwrap();
        assert!(
            auth.contains("username=\"trunk1\"") && auth.contains("nc=00000001"),
            "{auth}"
        );
        let mut ok = response(&second, 200);
        ok.headers.push(
            HeaderName::Contact,
            "<sip:trunk1@127.0.0.1:5060>;expires=40",
        );
        r.handle_response(t0, 2, &ok);
        assert_eq!(r.state(), State::Registered);
        assert_eq!(
            r.poll_timeout(),
            t0 + Duration::from_secs(20),
            "refresh at half"
        );
        let t1 = t0 + Duration::from_secs(20);
        r.handle_timeout(t1);
        let refresh = r.poll_request(t1).unwrap();
        assert_eq!(cseq(&refresh), 3);
        assert!(refresh
            .headers
            .get(&HeaderName::Authorization)
            .unwrap()
            .contains("nc=00000002"));
        assert_eq!(r.status(t1).registrations, 1);
    }

    #[test]
    fn timeouts_back_off_and_recover() {
        let t0 = Instant::now();
        let mut r = reg(t0);
        let mut now = t0;
        let mut waits = Vec::new();
        for _ in 0..4 {
            let req = r.poll_request(now).unwrap();
            let _ = req;
            now = r.poll_timeout();
            r.handle_timeout(now);
            assert_eq!(r.state(), State::Failed);
            let next = r.poll_timeout();
            waits.push((next - now).as_secs());
            now = next;
        }
        assert_eq!(waits, [2, 4, 8, 8]);
        // The registrar is back: wrong credentials are not retried at once.
        let req = r.poll_request(now).unwrap();
        let mut c = response(&req, 401);
        c.headers.push(
            HeaderName::WwwAuthenticate,
            "Digest realm=\"c\", nonce=\"n1\"",
        );
        r.handle_response(now, cseq(&req), &c);
        let req = r.poll_request(now).unwrap();
        r.handle_response(now, cseq(&req), &c);
        assert_eq!(r.state(), State::Failed);
        assert!(r.poll_request(now).is_none());
        // Next attempt succeeds; the back-off resets.
        now = r.poll_timeout();
        let req = r.poll_request(now).unwrap();
        let mut ok = response(&req, 200);
        ok.headers.push(HeaderName::Expires, "10");
        ok.body = Bytes::new();
        r.handle_response(now, cseq(&req), &ok);
        assert_eq!(r.state(), State::Registered);
        assert_eq!(r.poll_timeout() - now, Duration::from_secs(5));
        // A late answer to an old CSeq is ignored.
        r.handle_response(now, 1, &response(&req, 500));
        assert_eq!(r.state(), State::Registered);
    }

    #[test]
    fn interval_too_brief() {
        let t0 = Instant::now();
        let mut r = reg(t0);
        let req = r.poll_request(t0).unwrap();
        let mut b = response(&req, 423);
        b.headers.push(HeaderName::MinExpires, "120");
        r.handle_response(t0, cseq(&req), &b);
        let req = r.poll_request(t0).unwrap();
        assert_eq!(req.headers.get(&HeaderName::Expires), Some("120"));
    }
}
