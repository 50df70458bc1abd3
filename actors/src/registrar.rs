//! The registrar actor (RFC 3261 §10): processes REGISTER, keeps the location service (the
//! bindings of every address-of-record) in memory and answers lookups from call actors.
//!
//! Address-of-record: this is a single-domain PBX, so an AOR is keyed by the user part of the To
//! URI (lower-cased); `sip:alice@10.0.0.1` and `sip:alice@pbx.example.com` are the same user.

use actix::prelude::*;
use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use switchboard_engine::auth::{Algorithm, Authenticator, Credentials, Verdict};
use switchboard_engine::config::RegistrarConfig;
use switchboard_engine::dialog::{uri_of, user_of};
use switchboard_engine::sip::build::{response, response_with_reason};
use switchboard_engine::sip::grammar::{find_param, parse_name_addr, split_list};
use switchboard_engine::sip::{HeaderName, Request, Response, SipHeaders};
use switchboard_engine::transaction::{Peer, TransportKind};
use switchboard_storage::Storage;

/// One contact bound to an address-of-record.
#[derive(Clone, Debug, PartialEq)]
pub struct Binding {
    /// The contact URI.
    pub contact: String,
    /// When it expires.
    pub expires_at: Instant,
    /// Wall-clock expiry (milliseconds since the epoch), for persistence.
    pub expires_at_ms: i64,
    /// Preference (`q`), 0.0–1.0.
    pub q: f32,
    /// Call-ID and CSeq of the REGISTER that last refreshed it (RFC 3261 §10.3 step 7).
    pub call_id: String,
    /// CSeq number of that REGISTER.
    pub cseq: u32,
    /// The flow the REGISTER came from: where calls to this contact are sent (NAT-friendly).
    pub source: Peer,
}

impl Binding {
    /// Where requests for this contact are sent. Over UDP, the Contact's own address when it is
    /// an IP literal (a phone that registers on behalf of another address, as SIPp tests do);
    /// otherwise (a host name, or any connection-oriented flow) the flow the REGISTER came from,
    /// which also reaches phones behind NAT.
    /// A Contact with a private address (RFC 1918, unique-local, link-local) while the REGISTER
    /// came from another address goes to where the REGISTER came from (the NAT's mapping).
    pub fn destination(&self) -> Peer {
        if self.source.transport.is_reliable() || self.behind_nat() {
            return self.source;
        }
        contact_socket_addr(&self.contact).map_or(self.source, |addr| Peer {
            addr,
            conn: self.source.conn,
            ..self.source
        })
    }

    /// The phone is behind NAT: its Contact names a private address that is not the source of
    /// its REGISTER.
    pub fn behind_nat(&self) -> bool {
        contact_socket_addr(&self.contact)
            .is_some_and(|a| is_private(a.ip()) && a != self.source.addr)
    }

    /// Whether the flow this binding was made on has closed (a TCP, TLS, WS or WSS connection
    /// that is gone: RFC 5626 flow semantics). `open` tells whether a connection id is open.
    pub fn flow_closed(&self, open: &dyn Fn(u64) -> bool) -> bool {
        self.source.transport.is_reliable() && self.source.conn.is_some_and(|c| !open(c))
    }
}

/// An address that cannot be reached from the outside: RFC 1918, CGNAT (RFC 6598), IPv6
/// unique-local and link-local.
pub fn is_private(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private() || v4.is_link_local() || (o[0] == 100 && (64..128).contains(&o[1]))
        }
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments()[0];
            (s & 0xfe00) == 0xfc00 || (s & 0xffc0) == 0xfe80
        }
    }
}

/// The `ip:port` of a SIP URI whose host is an IP literal (port 5060 when absent).
pub fn contact_socket_addr(uri: &str) -> Option<std::net::SocketAddr> {
    let rest = uri.split_once(':')?.1;
    let hostport = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let hostport = hostport.split([';', '?']).next()?;
    if let Ok(sa) = hostport.parse::<std::net::SocketAddr>() {
        return Some(sa);
    }
    let ip: std::net::IpAddr = hostport.trim_matches(['[', ']']).parse().ok()?;
    Some(std::net::SocketAddr::new(ip, 5060))
}

/// The AOR key of a URI: its user part, lower-cased.
pub fn aor_key(uri: &str) -> Option<String> {
    user_of(uri).map(|u| u.to_ascii_lowercase())
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The registrar actor.
pub struct Registrar {
    config: RegistrarConfig,
    bindings: HashMap<String, Vec<Binding>>,
    storage: Option<Storage>,
    auth: Authenticator,
    failures: HashMap<std::net::IpAddr, (Instant, u32)>,
    /// The transports, once the SIP server runs: which connections are still open.
    transport: Option<std::sync::Arc<switchboard_engine::server::Shared>>,
    /// Where `registration.*` events go (none in unit tests).
    events: Option<crate::events::Events>,
    /// Events of the REGISTER being applied, published only if it succeeds.
    pending_events: Vec<(&'static str, serde_json::Value)>,
}

/// How often expired bindings are swept (and `registration.expired` published).
const SWEEP_INTERVAL: Duration = Duration::from_secs(5);

/// A change to the location service, to persist.
enum Change {
    Upsert(String, Binding),
    Remove(String, String),
    RemoveAll(String),
}

impl Registrar {
    /// An empty registrar without persistence or authentication (unit tests).
    pub fn new(config: RegistrarConfig) -> Registrar {
        let auth = Authenticator::with_algorithms(
            &config.realm,
            Duration::from_secs(u64::from(config.nonce_ttl_secs)),
            &config.digest_algorithms,
        );
        Registrar {
            config,
            bindings: HashMap::new(),
            storage: None,
            auth,
            failures: HashMap::new(),
            transport: None,
            events: None,
            pending_events: Vec::new(),
        }
    }

    /// Publishes `registration.created/refreshed/removed/expired` on `events`.
    pub fn with_events(mut self, events: crate::events::Events) -> Registrar {
        self.events = Some(events);
        self
    }

    fn note(&mut self, kind: &'static str, aor: &str, b: &Binding, now: Instant) {
        if self.events.is_none() {
            return;
        }
        self.pending_events.push((
            kind,
            serde_json::json!({
                "aor": aor,
                "contact": b.contact,
                "source": format_source(&b.source),
                "expires_secs": b.expires_at.saturating_duration_since(now).as_secs(),
            }),
        ));
    }

    /// Drops expired bindings and publishes `registration.expired` for each.
    fn sweep(&mut self, now: Instant) {
        let mut expired = Vec::new();
        for (aor, list) in self.bindings.iter_mut() {
            list.retain(|b| {
                let live = b.expires_at > now;
                if !live {
                    expired.push((aor.clone(), b.clone()));
                }
                live
            });
        }
        self.bindings.retain(|_, l| !l.is_empty());
        for (aor, b) in expired {
            self.note("registration.expired", &aor, &b, now);
        }
        self.publish_pending();
    }

    fn publish_pending(&mut self) {
        if let Some(events) = &self.events {
            for (kind, data) in self.pending_events.drain(..) {
                events.publish(kind, data);
            }
        }
    }

    /// A registrar that authenticates against `storage` and persists bindings there, starting
    /// from the unexpired bindings already stored (so registrations survive a restart).
    pub async fn load(
        config: RegistrarConfig,
        storage: Storage,
    ) -> Result<Registrar, switchboard_storage::StorageError> {
        let mut r = Registrar::new(config);
        let now = Instant::now();
        let now_wall = now_ms();
        for b in storage.all_bindings(now_wall).await? {
            let Some(source) = parse_source(&b.source) else {
                continue;
            };
            // A binding made over a connection lived as long as it: gone with the old process.
            if source.transport.is_reliable() {
                continue;
            }
            let left = Duration::from_millis((b.expires_at_ms - now_wall).max(0) as u64);
            r.bindings.entry(b.aor.clone()).or_default().push(Binding {
                contact: b.contact_uri,
                expires_at: now + left,
                expires_at_ms: b.expires_at_ms,
                q: b.q as f32 / 1000.0,
                call_id: b.call_id,
                cseq: b.cseq.clamp(0, i64::from(u32::MAX)) as u32,
                source,
            });
        }
        r.storage = Some(storage);
        Ok(r)
    }

    /// The number of AORs with live bindings.
    pub fn aor_count(&self) -> usize {
        self.bindings.values().filter(|v| !v.is_empty()).count()
    }

    /// Applies a REGISTER (already authenticated) and returns the answer.
    pub fn apply(&mut self, req: &Request, source: Peer, now: Instant) -> Response {
        self.apply_changes(req, source, now).0
    }

    fn apply_changes(
        &mut self,
        req: &Request,
        source: Peer,
        now: Instant,
    ) -> (Response, Vec<Change>) {
        let mut changes = Vec::new();
        self.pending_events.clear();
        let resp = self.apply_inner(req, source, now, &mut changes);
        if resp.status >= 300 {
            changes.clear();
            self.pending_events.clear();
        }
        self.publish_pending();
        (resp, changes)
    }

    fn apply_inner(
        &mut self,
        req: &Request,
        source: Peer,
        now: Instant,
        changes: &mut Vec<Change>,
    ) -> Response {
        let Some(to_uri) = req.headers.get(&HeaderName::To).and_then(uri_of) else {
            return response_with_reason(req, 400, "Malformed To");
        };
        let Some(aor) = aor_key(&to_uri) else {
            return response_with_reason(req, 404, "Not Found (no user in the address-of-record)");
        };
        let call_id = req.call_id().unwrap_or_default().to_string();
        let cseq = req.cseq().map_or(0, |c| c.0);
        let header_expires = req
            .headers
            .get(&HeaderName::Expires)
            .and_then(|e| e.trim().parse::<u64>().ok());
        let contacts: Vec<&str> = req
            .headers
            .get_all(&HeaderName::Contact)
            .flat_map(|v| split_list(v).unwrap_or_default())
            .collect();
        let mut expired = Vec::new();
        let list = self.bindings.entry(aor.clone()).or_default();
        list.retain(|b| {
            let live = b.expires_at > now;
            if !live {
                expired.push(b.clone());
            }
            live
        });
        for b in &expired {
            // Gone whatever this REGISTER's outcome: published now.
            self.note("registration.expired", &aor, b, now);
            if let Some((kind, data)) = self.pending_events.pop() {
                if let Some(events) = &self.events {
                    events.publish(kind, data);
                }
            }
        }
        let mut noted = Vec::new();
        let resp = self.bind_contacts(
            req,
            &aor,
            contacts,
            header_expires,
            call_id,
            cseq,
            source,
            now,
            changes,
            &mut noted,
        );
        for (kind, b) in noted {
            self.note(kind, &aor, &b, now);
        }
        resp
    }

    /// The contacts of one REGISTER (steps 6–8 of RFC 3261 §10.3); what changed is noted in
    /// `noted` as (event type, binding).
    #[allow(clippy::too_many_arguments)]
    fn bind_contacts(
        &mut self,
        req: &Request,
        aor: &str,
        contacts: Vec<&str>,
        header_expires: Option<u64>,
        call_id: String,
        cseq: u32,
        source: Peer,
        now: Instant,
        changes: &mut Vec<Change>,
        noted: &mut Vec<(&'static str, Binding)>,
    ) -> Response {
        let aor = aor.to_string();
        let list = self.bindings.entry(aor.clone()).or_default();
        if contacts.iter().any(|c| c.trim() == "*") {
            // RFC 3261 §10.3 step 6: `*` only alone and with Expires: 0.
            if contacts.len() != 1 || header_expires != Some(0) {
                return response_with_reason(
                    req,
                    400,
                    "Contact: * needs Expires: 0 and no other contact",
                );
            }
            for b in list.drain(..) {
                noted.push(("registration.removed", b));
            }
            changes.push(Change::RemoveAll(aor.clone()));
            return self.answer(req, &aor, now);
        }
        for c in contacts {
            let Ok(na) = parse_name_addr(c) else {
                return response_with_reason(req, 400, "Malformed Contact");
            };
            let expires = find_param(&na.params, "expires")
                .and_then(|p| p.value.as_deref())
                .and_then(|v| v.parse::<u64>().ok())
                .or(header_expires)
                .unwrap_or(u64::from(self.config.default_expires_secs));
            if expires != 0 && expires < u64::from(self.config.min_expires_secs) {
                let mut r = response(req, 423);
                r.reason = "Interval Too Brief".into();
                r.headers.push(
                    HeaderName::MinExpires,
                    self.config.min_expires_secs.to_string(),
                );
                return r;
            }
            let expires = expires.min(u64::from(self.config.max_expires_secs));
            let q = find_param(&na.params, "q")
                .and_then(|p| p.value.as_deref())
                .and_then(|v| v.parse::<f32>().ok())
                .unwrap_or(1.0)
                .clamp(0.0, 1.0);
            if let Some(existing) = list.iter().find(|b| b.contact == na.uri) {
                // RFC 3261 §10.3 step 7: an older or repeated CSeq from the same Call-ID is stale.
                if existing.call_id == call_id && existing.cseq >= cseq {
                    return response_with_reason(req, 500, "Out of order REGISTER");
                }
            }
            let old = list
                .iter()
                .position(|b| b.contact == na.uri)
                .map(|i| list.remove(i));
            changes.push(Change::Remove(aor.clone(), na.uri.clone()));
            if expires == 0 {
                if let Some(b) = old.clone() {
                    noted.push(("registration.removed", b));
                }
            }
            if expires > 0 {
                list.push(Binding {
                    contact: na.uri.clone(),
                    expires_at: now + Duration::from_secs(expires),
                    expires_at_ms: now_ms() + expires as i64 * 1000,
                    q,
                    call_id: call_id.clone(),
                    cseq,
                    source,
                });
                if let Some(b) = list.last() {
                    changes.push(Change::Upsert(aor.clone(), b.clone()));
                    let kind = if old.is_some() {
                        "registration.refreshed"
                    } else {
                        "registration.created"
                    };
                    noted.push((kind, b.clone()));
                }
            }
        }
        self.answer(req, &aor, now)
    }

    fn answer(&self, req: &Request, aor: &str, now: Instant) -> Response {
        let mut r = response(req, 200);
        for b in self.lookup(aor, now) {
            let secs = b.expires_at.saturating_duration_since(now).as_secs();
            r.headers.push(
                HeaderName::Contact,
                format!("<{}>;expires={secs};q={:.1}", b.contact, b.q),
            );
        }
        r.headers.push(
            HeaderName::Other("Date".into()),
            httpdate(SystemTime::now()),
        );
        r
    }

    /// The live bindings of an AOR key, best first (q, then most recent).
    pub fn lookup(&self, aor: &str, now: Instant) -> Vec<Binding> {
        let open = |c: u64| self.transport.as_ref().is_none_or(|t| t.tcp.is_open(c));
        let mut v: Vec<Binding> = self
            .bindings
            .get(aor)
            .map(|l| {
                l.iter()
                    .filter(|b| b.expires_at > now && !b.flow_closed(&open))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        v.sort_by(|a, b| {
            b.q.partial_cmp(&a.q)
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(b.expires_at.cmp(&a.expires_at))
        });
        v
    }
}

/// An RFC 7231 date (used in the Date header of REGISTER answers).
fn httpdate(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let (h, m, s) = ((secs % 86_400) / 3600, (secs % 3600) / 60, secs % 60);
    // Civil-from-days (H. Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const WD: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MO: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {d:02} {} {year} {h:02}:{m:02}:{s:02} GMT",
        WD[(days % 7) as usize],
        MO[(month - 1) as usize]
    )
}

impl Actor for Registrar {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.events.is_some() {
            ctx.run_interval(SWEEP_INTERVAL, |act, _| act.sweep(Instant::now()));
        }
    }
}

/// A REGISTER to process; the answer comes back as the result.
#[derive(Message)]
#[rtype(result = "Response")]
pub struct Register {
    /// The request.
    pub req: Request,
    /// Where it came from.
    pub source: Peer,
}

impl Handler<Register> for Registrar {
    type Result = ResponseActFuture<Self, Response>;

    fn handle(&mut self, msg: Register, _: &mut Context<Self>) -> Self::Result {
        let Some(storage) = self.storage.clone() else {
            let r = self.apply(&msg.req, msg.source, Instant::now());
            return Box::pin(fut::ready(r));
        };
        let ip = msg.source.addr.ip();
        if self.throttled(ip) {
            let r = response_with_reason(&msg.req, 403, "Forbidden (too many failed attempts)");
            return Box::pin(fut::ready(r));
        }
        let creds = msg
            .req
            .headers
            .get_all(&HeaderName::Authorization)
            .find_map(Credentials::parse);
        let Some(creds) = creds else {
            return Box::pin(fut::ready(self.challenge(&msg.req, false)));
        };
        let realm = self.config.realm.clone();
        let user = creds.username.clone();
        Box::pin(
            async move { storage.get_user(&user, &realm).await }
                .into_actor(self)
                .then(move |found, act, _| {
                    // Answer only once the change is stored: a 200 means the binding survives a
                    // restart.
                    let (resp, changes) = act.authorized(msg, creds, found);
                    let storage = act.storage.clone();
                    async move {
                        if let Some(storage) = storage {
                            persist(storage, changes).await;
                        }
                        resp
                    }
                    .into_actor(act)
                }),
        )
    }
}

impl Registrar {
    fn challenge(&self, req: &Request, stale: bool) -> Response {
        let mut r = response(req, 401);
        for c in self.auth.challenges(now_ms().max(0) as u64, stale) {
            r.headers.push(HeaderName::WwwAuthenticate, c);
        }
        r
    }

    fn throttled(&mut self, ip: std::net::IpAddr) -> bool {
        let limit = self.config.max_auth_failures_per_min;
        match self.failures.get(&ip) {
            Some((since, n)) if since.elapsed() < Duration::from_secs(60) => *n >= limit,
            _ => false,
        }
    }

    fn failed(&mut self, ip: std::net::IpAddr) {
        let e = self.failures.entry(ip).or_insert((Instant::now(), 0));
        if e.0.elapsed() >= Duration::from_secs(60) {
            *e = (Instant::now(), 0);
        }
        e.1 += 1;
        if self.failures.len() > 100_000 {
            self.failures
                .retain(|_, (t, _)| t.elapsed() < Duration::from_secs(60));
        }
    }

    fn authorized(
        &mut self,
        msg: Register,
        creds: Credentials,
        found: Result<Option<switchboard_storage::UserRecord>, switchboard_storage::StorageError>,
    ) -> (Response, Vec<Change>) {
        let req = &msg.req;
        let ip = msg.source.addr.ip();
        let user = match found {
            Ok(Some(u)) => u,
            Ok(None) => {
                self.failed(ip);
                let status = self.config.unknown_user_status;
                return (
                    response_with_reason(
                        req,
                        status,
                        if status == 404 {
                            "Not Found (unknown user)"
                        } else {
                            "Forbidden"
                        },
                    ),
                    Vec::new(),
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "user lookup failed");
                return (
                    response_with_reason(req, 500, "Server Internal Error (user lookup)"),
                    Vec::new(),
                );
            }
        };
        let ha1 = match creds.algorithm() {
            Some(Algorithm::Sha256) => &user.ha1_sha256,
            _ => &user.ha1_md5,
        };
        match self
            .auth
            .verify(&creds, req.method.as_str(), ha1, now_ms().max(0) as u64)
        {
            Verdict::Ok => {}
            Verdict::Stale => return (self.challenge(req, true), Vec::new()),
            Verdict::BadNonce => return (self.challenge(req, false), Vec::new()),
            Verdict::WrongPassword => {
                self.failed(ip);
                return (
                    response_with_reason(req, 403, "Forbidden (wrong password)"),
                    Vec::new(),
                );
            }
        }
        let to_user = req
            .headers
            .get(&HeaderName::To)
            .and_then(uri_of)
            .and_then(|u| aor_key(&u));
        if to_user.as_deref() != Some(user.username.to_ascii_lowercase().as_str()) {
            return (
                response_with_reason(
                    req,
                    403,
                    "Forbidden (may not register another user's address)",
                ),
                Vec::new(),
            );
        }
        self.apply_changes(req, msg.source, Instant::now())
    }
}

async fn persist(storage: Storage, changes: Vec<Change>) {
    for c in changes {
        let r = match c {
            Change::Upsert(aor, b) => {
                let row = switchboard_storage::Binding {
                    aor,
                    contact_uri: b.contact.clone(),
                    expires_at_ms: b.expires_at_ms,
                    q: (b.q * 1000.0).round() as i64,
                    call_id: b.call_id.clone(),
                    cseq: i64::from(b.cseq),
                    source: format_source(&b.source),
                    user_agent: None,
                    updated_at_ms: now_ms(),
                };
                storage.upsert_binding(&row).await.map(|_| ())
            }
            Change::Remove(aor, contact) => {
                storage.remove_binding(&aor, &contact).await.map(|_| ())
            }
            Change::RemoveAll(aor) => storage.remove_all_bindings(&aor).await.map(|_| ()),
        };
        if let Err(e) = r {
            tracing::error!(error = %e, "persisting a binding failed");
        }
    }
}

/// `udp:127.0.0.1:5062#7`: the flow a REGISTER came from, as stored.
pub fn format_source(p: &Peer) -> String {
    match p.conn {
        Some(c) => format!(
            "{}:{}#{c}",
            p.transport.as_str().to_ascii_lowercase(),
            p.addr
        ),
        None => format!("{}:{}", p.transport.as_str().to_ascii_lowercase(), p.addr),
    }
}

/// The inverse of [`format_source`].
pub fn parse_source(s: &str) -> Option<Peer> {
    let (t, rest) = s.split_once(':')?;
    let (addr, conn) = match rest.split_once('#') {
        Some((a, c)) => (a, c.parse().ok()),
        None => (rest, None),
    };
    let transport = match t {
        "udp" => TransportKind::Udp,
        "tcp" => TransportKind::Tcp,
        "tls" => TransportKind::Tls,
        "ws" => TransportKind::Ws,
        "wss" => TransportKind::Wss,
        _ => return None,
    };
    Some(Peer {
        transport,
        addr: addr.parse().ok()?,
        conn,
    })
}

/// Hands the registrar the running transports: from then on a binding made over a
/// connection is removed when that connection closes (checked on each lookup and swept every
/// second).
#[derive(Message)]
#[rtype(result = "()")]
pub struct AttachTransport(pub std::sync::Arc<switchboard_engine::server::Shared>);

impl Handler<AttachTransport> for Registrar {
    type Result = ();

    fn handle(&mut self, msg: AttachTransport, ctx: &mut Context<Self>) {
        self.transport = Some(msg.0);
        ctx.run_interval(Duration::from_secs(1), |act, _| act.sweep_closed_flows());
    }
}

impl Registrar {
    /// Removes the bindings whose connection closed (and their stored rows).
    fn sweep_closed_flows(&mut self) {
        let Some(t) = self.transport.clone() else {
            return;
        };
        let open = |c: u64| t.tcp.is_open(c);
        let mut changes = Vec::new();
        for (aor, list) in self.bindings.iter_mut() {
            list.retain(|b| {
                if b.flow_closed(&open) {
                    tracing::info!(%aor, contact = %b.contact, "binding removed: its connection closed");
                    // event: registration.removed
                    changes.push(Change::Remove(aor.clone(), b.contact.clone()));
                    false
                } else {
                    true
                }
            });
        }
        self.bindings.retain(|_, l| !l.is_empty());
        if let (Some(storage), false) = (self.storage.clone(), changes.is_empty()) {
            actix::spawn(persist(storage, changes));
        }
    }
}

/// The live bindings that get NAT keep-alives: behind NAT, or over a connection.
#[derive(Message)]
#[rtype(result = "Vec<(String, Binding)>")]
pub struct KeepaliveTargets;

impl Handler<KeepaliveTargets> for Registrar {
    type Result = MessageResult<KeepaliveTargets>;

    fn handle(&mut self, _: KeepaliveTargets, _: &mut Context<Self>) -> Self::Result {
        let now = Instant::now();
        let keys: Vec<String> = self.bindings.keys().cloned().collect();
        let mut out = Vec::new();
        for aor in keys {
            for b in self.lookup(&aor, now) {
                if b.behind_nat() || b.source.transport.is_reliable() {
                    out.push((aor.clone(), b));
                }
            }
        }
        MessageResult(out)
    }
}

/// Drops one binding (its keep-alives went unanswered).
#[derive(Message)]
#[rtype(result = "()")]
pub struct DropBinding {
    /// The AOR key.
    pub aor: String,
    /// The contact URI.
    pub contact: String,
}

impl Handler<DropBinding> for Registrar {
    type Result = ();

    fn handle(&mut self, msg: DropBinding, _: &mut Context<Self>) {
        let Some(list) = self.bindings.get_mut(&msg.aor) else {
            return;
        };
        let before = list.len();
        list.retain(|b| b.contact != msg.contact);
        if list.len() != before {
            tracing::info!(aor = %msg.aor, contact = %msg.contact, "binding dropped: keep-alives unanswered");
            // event: registration.removed
            if let Some(storage) = self.storage.clone() {
                actix::spawn(persist(
                    storage,
                    vec![Change::Remove(msg.aor.clone(), msg.contact)],
                ));
            }
        }
    }
}

/// Where can this AOR key be reached?
#[derive(Message)]
#[rtype(result = "Vec<Binding>")]
pub struct Lookup(pub String);

impl Handler<Lookup> for Registrar {
    type Result = MessageResult<Lookup>;

    fn handle(&mut self, msg: Lookup, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.lookup(&msg.0, Instant::now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_engine::sip::{parse_datagram, Message};
    use switchboard_engine::transaction::TransportKind;

    fn reg(contact: &str, expires: Option<u32>, cseq: u32) -> Request {
        let exp = expires
            .map(|e| format!("Expires: {e}\r\n"))
            .unwrap_or_default();
        let m = format!("REGISTER sip:sb SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK{cseq}\r\nFrom: <sip:alice@sb>;tag=1\r\nTo: <sip:alice@sb>\r\nCall-ID: reg1\r\nCSeq: {cseq} REGISTER\r\nContact: {contact}\r\n{exp}Content-Length: 0\r\n\r\n");
        match parse_datagram(m.as_bytes()) {
            Ok(Message::Request(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bindings_lifecycle() {
        let mut r = Registrar::new(RegistrarConfig::default());
        let src = Peer::new(TransportKind::Udp, "127.0.0.1:5070".parse().unwrap());
        let now = Instant::now();
        let a = r.apply(
            &reg(
                "<sip:alice@127.0.0.1:5070>;q=0.5, <sip:alice@127.0.0.1:5072>",
                Some(600),
                1,
            ),
            src,
            now,
        );
        assert_eq!(a.status, 200);
        assert_eq!(a.headers.count(&HeaderName::Contact), 2);
        let l = r.lookup("alice", now);
        assert_eq!(l[0].contact, "sip:alice@127.0.0.1:5072");
        assert_eq!(
            r.apply(&reg("<sip:alice@127.0.0.1:5070>", Some(10), 2), src, now)
                .status,
            423
        );
        assert_eq!(
            r.apply(&reg("<sip:alice@127.0.0.1:5070>", Some(0), 3), src, now)
                .status,
            200
        );
        assert_eq!(r.lookup("alice", now).len(), 1);
        assert!(r.lookup("alice", now + Duration::from_secs(700)).is_empty());
        assert_eq!(r.apply(&reg("*", None, 4), src, now).status, 400);
        assert_eq!(r.apply(&reg("*", Some(0), 5), src, now).status, 200);
        assert!(r.lookup("alice", now).is_empty());
        assert!(httpdate(UNIX_EPOCH).starts_with("Thu, 01 Jan 1970"));
    }
}
