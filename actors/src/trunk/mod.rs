//! SIP trunks: the carrier side of the engine, like Kamailio's dispatcher and FreeSWITCH's
//! gateways.
//!
//! * [`Trunks`] is the registry shared by every shard: trunks by name, least-cost routing
//!   tables, inbound identification (source IP/CIDR, the registered Contact user, or digest
//!   credentials) and the shards' command channels the background work sends through.
//! * Each [`Trunk`] keeps its runtime state behind one short-held mutex: admission
//!   ([`admission`]: calls in progress and a calls-per-second bucket), per-gateway counters,
//!   gateway health ([`probe`]) and the outbound registration ([`register`]). Calls hold a
//!   [`Lease`] while they use a trunk; dropping it frees the slot, so a call actor that dies
//!   cannot leak one.
//! * [`runner`] is the thin async shell: one task per trunk with registration or probes, which
//!   drives the sans-IO state machines and sends their requests through a shard.
//! * Selection ([`select`]), number normalisation ([`normalize`]), codec preference
//!   ([`codecs`]) and LCR ([`lcr`]) are pure functions.

pub mod admission;
pub mod api;
pub mod ban;
pub mod codecs;
pub mod lcr;
pub mod normalize;
pub mod probe;
pub mod register;
mod runner;
pub mod select;

use crate::router::ShardHandle;
use admission::{Admission, Refusal};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use switchboard_engine::config::{parse_cidr, Config, GatewayConfig, TrunkConfig, TrunkTransport};
use switchboard_engine::dialog::user_of;

/// Every trunk and routing table, shared by all shards.
pub struct Trunks {
    by_name: BTreeMap<String, Arc<Trunk>>,
    routes: BTreeMap<String, lcr::Table>,
    shards: Mutex<Vec<ShardHandle>>,
    /// Seconds in the Retry-After of a 503 for the concurrency limit.
    retry_after_secs: u32,
    /// Sources banned after failed authentications.
    bans: Mutex<ban::BanList>,
    /// Where `trunk.registration_changed` and `gateway.down/up` go (set once at start).
    events: std::sync::OnceLock<crate::events::Events>,
}

/// One trunk.
pub struct Trunk {
    /// Its name (`[trunks.NAME]`).
    pub name: String,
    /// Its configuration.
    pub config: TrunkConfig,
    gateways: Vec<GatewayConfig>,
    sources: Vec<(IpAddr, u8)>,
    state: Mutex<TrunkState>,
}

/// Per-gateway counters.
#[derive(Clone, Debug, Default)]
struct GatewayCounters {
    active: u32,
    attempts: u64,
    failures: u64,
    last_failure: Option<String>,
}

struct TrunkState {
    admission: Admission,
    gateways: Vec<GatewayCounters>,
    turn: usize,
    prober: Option<probe::Prober>,
    registration: Option<register::Registration>,
    inbound_calls: u64,
    outbound_calls: u64,
}

/// A call's use of a trunk (one admission slot, and the gateway it is on). Dropping it frees
/// both.
pub struct Lease {
    trunk: Arc<Trunk>,
    gateway: Option<usize>,
}

/// One attempt of an outbound call: a gateway of a trunk and the number as that trunk wants it.
#[derive(Clone)]
pub struct Hop {
    /// The trunk.
    pub trunk: Arc<Trunk>,
    /// Index of the gateway in the trunk.
    pub gateway: usize,
    /// The dialled number (before the trunk's normalisation).
    pub number: String,
}

impl Hop {
    /// The gateway's address.
    pub fn address(&self) -> SocketAddr {
        self.trunk.gateways[self.gateway].address
    }

    /// The Request-URI of the INVITE to this gateway: `sips:` over TLS, `;transport=tcp`
    /// over TCP.
    pub fn request_uri(&self) -> String {
        let user = normalize::outbound_number(&self.trunk.config, &self.number);
        let addr = self.address();
        match self.trunk.config.transport {
            TrunkTransport::Udp => format!("sip:{user}@{addr}"),
            TrunkTransport::Tcp => format!("sip:{user}@{addr};transport=tcp"),
            TrunkTransport::Tls => format!("sips:{user}@{addr}"),
        }
    }

    /// Where the INVITE to this gateway goes: its address over the trunk's transport (a
    /// TCP or TLS connection is opened or reused by the engine).
    pub fn peer(&self) -> switchboard_engine::transaction::Peer {
        switchboard_engine::transaction::Peer::new(
            self.trunk.config.transport.kind(),
            self.address(),
        )
    }
}

impl Trunks {
    /// Builds the registry from the (validated) configuration.
    pub fn new(config: &Config) -> Arc<Trunks> {
        let by_name = config
            .trunks
            .iter()
            .map(|(name, t)| {
                let gateways = t.all_gateways();
                let state = TrunkState {
                    admission: Admission::new(t.max_calls, t.max_cps),
                    gateways: vec![GatewayCounters::default(); gateways.len()],
                    turn: 0,
                    prober: None,
                    registration: None,
                    inbound_calls: 0,
                    outbound_calls: 0,
                };
                let trunk = Trunk {
                    name: name.clone(),
                    config: t.clone(),
                    sources: t
                        .inbound_sources
                        .iter()
                        .filter_map(|s| parse_cidr(s))
                        .collect(),
                    gateways,
                    state: Mutex::new(state),
                };
                (name.clone(), Arc::new(trunk))
            })
            .collect();
        Arc::new(Trunks {
            by_name,
            routes: config
                .routes
                .iter()
                .map(|(n, m)| (n.clone(), lcr::Table::new(m)))
                .collect(),
            shards: Mutex::new(Vec::new()),
            events: std::sync::OnceLock::new(),
            retry_after_secs: config.limits.retry_after_secs.max(1),
            bans: Mutex::new(ban::BanList::new(
                config.bans.max_auth_failures,
                std::time::Duration::from_secs(config.bans.window_secs),
                std::time::Duration::from_secs(config.bans.ban_secs),
            )),
        })
    }

    /// True when no trunk is configured (the router skips identification).
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// A trunk by name.
    pub fn get(&self, name: &str) -> Option<&Arc<Trunk>> {
        self.by_name.get(name)
    }

    /// Every trunk.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Trunk>> {
        self.by_name.values()
    }

    /// The trunks of routing table `table` for `number`, in cost order (`None`: no such table).
    pub fn route(&self, table: &str, number: &str) -> Option<Vec<Arc<Trunk>>> {
        let t = self.routes.get(table)?;
        Some(
            t.lookup(&normalize::clean(number))
                .iter()
                .filter_map(|n| self.by_name.get(n).cloned())
                .collect(),
        )
    }

    /// The gateways to try for `number` through `trunks` (in order): each trunk's gateways in
    /// its strategy's order, gateways marked down left out.
    pub fn plan(&self, trunks: &[Arc<Trunk>], number: &str) -> Vec<Hop> {
        let mut hops = Vec::new();
        for t in trunks {
            for gateway in t.gateway_order() {
                hops.push(Hop {
                    trunk: t.clone(),
                    gateway,
                    number: number.to_string(),
                });
            }
        }
        hops
    }

    /// The trunk a new INVITE from `source` to `request_uri` belongs to: the first whose
    /// `inbound_sources` hold the address, else the one whose registered Contact user the
    /// Request-URI names, when it comes from that trunk's registrar or one of its gateways
    /// (anyone else naming that user still has to authenticate).
    pub fn identify(&self, source: IpAddr, request_uri: &str) -> Option<Arc<Trunk>> {
        if let Some(t) = self.by_name.values().find(|t| {
            t.sources
                .iter()
                .any(|n| switchboard_engine::config::cidr_contains(*n, source))
        }) {
            return Some(t.clone());
        }
        let user = user_of(request_uri)?;
        self.by_name
            .values()
            .find(|t| {
                t.config.register.as_ref().is_some_and(|r| {
                    r.contact_user.as_deref().unwrap_or(&r.username) == user
                        && (r.registrar.is_some_and(|a| a.ip() == source)
                            || t.gateways.iter().any(|g| g.address.ip() == source))
                })
            })
            .cloned()
    }

    /// Whether new requests from `ip` are refused (a ban in force).
    pub fn banned(&self, ip: IpAddr, now: Instant) -> bool {
        lock(&self.bans).is_banned(ip, now)
    }

    /// A failed digest authentication from `ip` (counts towards a ban).
    pub fn auth_failed(&self, ip: IpAddr, now: Instant) {
        lock(&self.bans).failure(ip, now);
    }

    /// The bans in force as JSON (`GET /api/v1/bans`).
    pub fn bans_json(&self, now: Instant) -> serde_json::Value {
        let list: Vec<_> = lock(&self.bans)
            .list(now)
            .into_iter()
            .map(|(ip, left, n)| {
                serde_json::json!({ "source": ip.to_string(), "remaining_secs": left.as_secs(), "failures": n })
            })
            .collect();
        serde_json::json!({ "bans": list })
    }

    /// The trunk whose inbound digest user is `username`.
    pub fn by_inbound_user(&self, username: &str) -> Option<&Arc<Trunk>> {
        self.by_name
            .values()
            .find(|t| t.config.inbound_username.as_deref() == Some(username))
    }

    /// The Retry-After (seconds) of a 503 for `why`.
    pub fn retry_after(&self, why: Refusal) -> u32 {
        match why {
            Refusal::Rate => 1,
            Refusal::Calls => self.retry_after_secs,
        }
    }

    /// Records a shard's command channel (called by each shard's router as it starts).
    pub fn attach_shard(&self, handle: ShardHandle) {
        lock(&self.shards).push(handle);
    }

    /// The handle of shard `n`, once its router started.
    pub(crate) fn shard(&self, n: usize) -> Option<ShardHandle> {
        lock(&self.shards).iter().find(|h| h.shard == n).cloned()
    }

    pub(crate) fn any_shard(&self) -> Option<ShardHandle> {
        lock(&self.shards).iter().min_by_key(|h| h.shard).cloned()
    }

    /// Starts the background task of every trunk that registers or probes. Call inside the
    /// actix system.
    pub fn start(self: &Arc<Self>) {
        for t in self.by_name.values() {
            if t.config.register.is_some() || t.config.probe.interval_secs > 0 {
                actix_rt::spawn(runner::run(self.clone(), t.clone()));
            }
        }
    }
}

/// Locks a trunk mutex; a poisoned one (a panic while held, which nothing here does on input)
/// is used as it is: the counters stay usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Trunk {
    /// Admits a new call (inbound or outbound) under the trunk's limits.
    pub fn admit(self: &Arc<Self>, now: Instant, inbound: bool) -> Result<Lease, Refusal> {
        let mut st = lock(&self.state);
        st.admission.admit(now)?;
        if inbound {
            st.inbound_calls += 1;
        } else {
            st.outbound_calls += 1;
        }
        Ok(Lease {
            trunk: self.clone(),
            gateway: None,
        })
    }

    /// Gateway indexes in the order a new call tries them.
    fn gateway_order(&self) -> Vec<usize> {
        let mut st = lock(&self.state);
        let views: Vec<select::View> = self
            .gateways
            .iter()
            .enumerate()
            .map(|(i, g)| select::View {
                up: st
                    .prober
                    .as_ref()
                    .and_then(|p| p.health(i))
                    .is_none_or(|h| h.up),
                active: st.gateways.get(i).map_or(0, |c| c.active),
                weight: g.weight,
                priority: g.priority,
            })
            .collect();
        let mut turn = st.turn;
        let order = select::order(self.config.strategy, &views, &mut turn, rand::random());
        st.turn = turn;
        order
    }

    /// Records a failed attempt on gateway `i` (the status that made the call fail over).
    pub fn gateway_failed(&self, i: usize, status: u16, reason: &str) {
        if let Some(c) = lock(&self.state).gateways.get_mut(i) {
            c.failures += 1;
            c.last_failure = Some(format!("{status} {reason}"));
        }
    }
}

impl Trunks {
    /// Publishes trunk events on `events` from now on (the first call wins).
    pub fn set_events(&self, events: crate::events::Events) {
        let _ = self.events.set(events);
    }

    /// The bus, once set.
    pub(crate) fn events(&self) -> Option<&crate::events::Events> {
        self.events.get()
    }
}

impl Lease {
    /// The trunk.
    pub fn trunk(&self) -> &Arc<Trunk> {
        &self.trunk
    }

    /// Moves the call to gateway `i` (counted as one attempt and one call in progress there).
    pub fn set_gateway(&mut self, i: usize) {
        let mut st = lock(&self.trunk.state);
        if let Some(old) = self.gateway.take() {
            if let Some(c) = st.gateways.get_mut(old) {
                c.active = c.active.saturating_sub(1);
            }
        }
        if let Some(c) = st.gateways.get_mut(i) {
            c.active += 1;
            c.attempts += 1;
            self.gateway = Some(i);
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut st = lock(&self.trunk.state);
        st.admission.release();
        if let Some(c) = self.gateway.and_then(|g| st.gateways.get_mut(g)) {
            c.active = c.active.saturating_sub(1);
        }
    }
}

/// Whether a failed attempt moves on to the next gateway: timeouts, 408 and server errors
/// (5xx, 503 included). A 4xx/6xx is the callee's answer and ends the dial.
pub fn fails_over(status: u16) -> bool {
    status == 408 || (500..600).contains(&status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trunks(toml: &str) -> Arc<Trunks> {
        let c = Config::parse(toml, "t.toml").expect("parses");
        c.validate("t.toml").expect("valid");
        Trunks::new(&c)
    }

    #[test]
    fn identify_plan_and_leases() {
        let t = trunks(
            "[trunks.a]\ninbound_sources = [\"10.0.0.0/8\"]\nmax_calls = 1\n\
             gateways = [{ address = \"127.0.0.1:5071\", priority = 1 }, { address = \"127.0.0.1:5072\" }]\n\
             [trunks.b]\naddress = \"127.0.0.2:5060\"\n[trunks.b.register]\nusername = \"acct\"\n\
             [routes.lcr]\n\"44\" = [\"b\", \"a\"]\n",
        );
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(t.identify(ip("10.1.2.3"), "sip:x@h").unwrap().name, "a");
        // The registered Contact user counts only from the carrier's own addresses.
        assert_eq!(t.identify(ip("127.0.0.2"), "sip:acct@h").unwrap().name, "b");
        assert!(t.identify(ip("127.0.0.9"), "sip:acct@h").is_none());
        let route = t.route("lcr", "+44 20").unwrap();
        let hops = t.plan(&route, "+4420");
        let order: Vec<String> = hops.iter().map(|h| h.address().to_string()).collect();
        assert_eq!(
            order,
            ["127.0.0.2:5060", "127.0.0.1:5072", "127.0.0.1:5071"]
        );
        assert_eq!(hops[0].request_uri(), "sip:+4420@127.0.0.2:5060");
        assert!(t.route("nope", "1").is_none());
        // max_calls = 1: a second call waits for the first lease to drop.
        let a = t.get("a").unwrap();
        let mut lease = a.admit(Instant::now(), true).unwrap();
        lease.set_gateway(1);
        assert!(a.admit(Instant::now(), false).is_err());
        assert_eq!(
            api::snapshot(a, Instant::now())["gateways"][1]["active_calls"],
            1
        );
        drop(lease);
        assert!(a.admit(Instant::now(), false).is_ok());
        assert_eq!(api::snapshot(a, Instant::now())["active_calls"], 0);
        assert!(fails_over(503) && fails_over(408) && !fails_over(486) && !fails_over(404));
    }
}
