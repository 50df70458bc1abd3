//! The async shell of the SIP core: binds the listeners, shards work by Call-ID onto tasks that
//! each own a sans-IO [`TransactionLayer`], applies overload protection between the transports
//! and the shards, and sends what the state machines produce.
//!
//! Data flow: transport reader → [`parse`](crate::sip::parse) → stateless answer (malformed,
//! overload) or bounded shard queue → transaction layer → [`core`](crate::core) (the
//! transaction user) → transaction layer → transmit.

use crate::config::Config;
use crate::core::Core;
use crate::inspect::LocalIdentity;
use crate::metrics::Metrics;
use crate::sip::build::response_with_reason;
use crate::sip::{HeaderName, Message, Method, ParseError, Request, Response, SipHeaders};
use crate::transaction::{Peer, TimerConfig, TransactionLayer, Transmit, TransportKind, TuEvent};
use crate::transport::limit::SourceLimiter;
use crate::transport::{route, tcp, tls, udp, ws};
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// The branch prefix of every Via this engine creates (used for loop detection).
pub const BRANCH_PREFIX: &str = "z9hG4bK-sb";

/// A message handed from a transport to a shard.
#[derive(Debug)]
pub struct Inbound {
    /// The parsed message.
    pub message: Message,
    /// Where it came from.
    pub source: Peer,
}

/// State shared by the transport readers and the shards.
pub struct Shared {
    /// The configuration.
    pub config: Config,
    /// Metrics.
    pub metrics: Metrics,
    /// Bound UDP sockets; `Peer::conn` of a UDP peer indexes this.
    pub udp: Vec<Arc<UdpSocket>>,
    /// Open connections of every connection-oriented transport (TCP, TLS, WS, WSS); the
    /// `conn` of such a peer is an id here.
    pub tcp: tcp::Registry,
    /// Per-source admission of TLS, WS and WSS connections.
    pub limiter: Arc<SourceLimiter>,
    /// TLS client settings of outbound connections, by destination (TLS trunks).
    pub client_tls: crate::transport::connect::ClientTlsMap,
    /// Every bound listener and its transport, for [`Shared::local_addr`].
    listeners: Vec<(TransportKind, SocketAddr)>,
    /// Shard queues.
    shards: Vec<mpsc::Sender<Inbound>>,
    /// Who we are, for loop detection.
    pub local: LocalIdentity,
    invite_bucket: Mutex<TokenBucket>,
}

/// What the dispatcher decided for one inbound message.
enum Verdict {
    Queued,
    Reject(Response),
    Drop(&'static str),
}

impl Shared {
    fn shard_of(&self, call_id: &str) -> usize {
        shard_of(call_id, self.shards.len())
    }

    /// The number of shards.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The address this engine puts in Via and Contact for `transport`.
    pub fn local_addr(&self, transport: TransportKind) -> SocketAddr {
        let bound = self
            .listeners
            .iter()
            .find(|(t, _)| *t == transport)
            .or_else(|| self.listeners.first())
            .map(|(_, a)| *a)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 5060)));
        let sip = &self.config.sip;
        match sip
            .advertised_addresses
            .get(&bound)
            .or(sip.advertised_address.as_ref())
        {
            Some(ip) => SocketAddr::new(*ip, bound.port()),
            None => bound,
        }
    }

    /// The address we advertise towards `peer`: over UDP that of the socket the peer's
    /// messages came in on (its `conn`), with that listener's advertised address; else as
    /// [`Shared::local_addr`].
    pub fn local_addr_for(&self, peer: Peer) -> SocketAddr {
        let bound = match (peer.transport, peer.conn) {
            (TransportKind::Udp, Some(i)) => {
                self.udp.get(i as usize).and_then(|s| s.local_addr().ok())
            }
            _ => None,
        };
        let Some(bound) = bound else {
            return self.local_addr(peer.transport);
        };
        let sip = &self.config.sip;
        match sip
            .advertised_addresses
            .get(&bound)
            .or(sip.advertised_address.as_ref())
        {
            Some(ip) => SocketAddr::new(*ip, bound.port()),
            None => bound,
        }
    }

    /// Handles the outcome of parsing one message from `source`: answers malformed requests,
    /// applies overload protection, and queues the rest to their shard. Never blocks.
    pub async fn accept(&self, parsed: Result<Message, ParseError>, source: Peer) {
        let transport = source.transport.as_str();
        let mut message = match parsed {
            Ok(m) => m,
            Err(e) => return self.refuse(e, source).await,
        };
        let kind = if matches!(message, Message::Request(_)) {
            "request"
        } else {
            "response"
        };
        self.metrics
            .received
            .with_label_values(&[transport, kind])
            .inc();
        if let Message::Request(req) = &mut message {
            route::stamp_received(req, source.addr);
        }
        match self.admit(message, source) {
            Verdict::Queued => {}
            Verdict::Reject(resp) => {
                self.metrics.overload_rejections.inc();
                self.send_response(&resp, source).await;
            }
            Verdict::Drop(reason) => self.metrics.dropped.with_label_values(&[reason]).inc(),
        }
    }

    fn admit(&self, message: Message, source: Peer) -> Verdict {
        let call_id = message
            .headers()
            .get(&HeaderName::CallId)
            .unwrap_or_default();
        let shard = self.shard_of(call_id);
        let queue = &self.shards[shard];
        let depth = self
            .config
            .limits
            .queue_capacity
            .saturating_sub(queue.capacity());
        if let Message::Request(req) = &message {
            let new_request =
                !matches!(req.method, Method::Ack | Method::Cancel) && !req.in_dialog();
            if new_request {
                let over_depth = depth >= self.config.limits.overload_queue_depth;
                let over_rate = req.method == Method::Invite && !self.take_invite_token();
                if over_depth || over_rate {
                    return Verdict::Reject(self.overloaded(req));
                }
            }
        }
        match queue.try_send(Inbound { message, source }) {
            Ok(()) => Verdict::Queued,
            // A full queue: new requests are refused with 503; in-dialog requests (BYE above all)
            // are never refused, because a refused BYE leaves a call up: they are dropped, and
            // the UAC's retransmission tries again once the shard has drained.
            Err(mpsc::error::TrySendError::Full(inbound)) => match inbound.message {
                Message::Request(req)
                    if !matches!(req.method, Method::Ack | Method::Cancel) && !req.in_dialog() =>
                {
                    Verdict::Reject(self.overloaded(&req))
                }
                _ => Verdict::Drop("queue_full"),
            },
            Err(mpsc::error::TrySendError::Closed(_)) => Verdict::Drop("shard_closed"),
        }
    }

    fn overloaded(&self, req: &Request) -> Response {
        let mut r = response_with_reason(req, 503, "Service Unavailable (overload)");
        r.headers.push(
            HeaderName::RetryAfter,
            self.config.limits.retry_after_secs.to_string(),
        );
        r
    }

    fn take_invite_token(&self) -> bool {
        let limit = self.config.limits.max_invites_per_sec;
        if limit == 0 {
            return true;
        }
        match self.invite_bucket.lock() {
            Ok(mut b) => b.take(Instant::now(), limit),
            Err(_) => true,
        }
    }

    async fn refuse(&self, e: ParseError, source: Peer) {
        self.metrics
            .parse_errors
            .with_label_values(&[&e.status.to_string()])
            .inc();
        tracing::debug!(peer = %source.addr, status = e.status, reason = %e.reason, "refused message");
        let Some(req) = e
            .request
            .filter(|r| e.status != 0 && r.method != Method::Ack)
        else {
            self.metrics.dropped.with_label_values(&["malformed"]).inc();
            return;
        };
        let mut req = *req;
        route::stamp_received(&mut req, source.addr);
        let resp = response_with_reason(&req, e.status, &e.reason);
        self.send_response(&resp, source).await;
    }

    /// Sends a response to the peer a request came from (RFC 3261 §18.2.2 over UDP, the same
    /// connection over TCP, TLS, WS and WSS).
    pub async fn send_response(&self, resp: &Response, source: Peer) {
        self.metrics
            .responses_sent
            .with_label_values(&[status_label(resp.status)])
            .inc();
        let bytes = resp.to_bytes();
        match source.transport {
            TransportKind::Udp => {
                let dest = route::response_destination(resp, source.addr);
                self.send_udp(source, &bytes, dest).await;
            }
            _ => {
                self.tcp
                    .send(source.conn.unwrap_or(u64::MAX), bytes.into())
                    .await
            }
        }
    }

    async fn send_udp(&self, via: Peer, bytes: &[u8], dest: SocketAddr) {
        let idx = via.conn.unwrap_or(0) as usize;
        let Some(sock) = self.udp.get(idx).or_else(|| self.udp.first()) else {
            return;
        };
        if let Err(e) = sock.send_to(bytes, dest).await {
            tracing::debug!(%dest, error = %e, "UDP send failed");
            self.metrics
                .dropped
                .with_label_values(&["send_error"])
                .inc();
        }
    }

    async fn transmit(self: &Arc<Self>, t: Transmit) {
        match t.message {
            Message::Response(resp) => self.send_response(&resp, t.dest).await,
            Message::Request(req) => {
                let bytes = req.to_bytes();
                match t.dest.transport {
                    TransportKind::Udp => self.send_udp(t.dest, &bytes, t.dest.addr).await,
                    kind => {
                        // On its own connection (a registered flow: gone when it closed), else
                        // any open one to that address, else a new one (TCP, TLS).
                        let conn = t.dest.conn.or_else(|| {
                            crate::transport::connect::connection_to(self, kind, t.dest.addr)
                        });
                        self.tcp.send(conn.unwrap_or(u64::MAX), bytes.into()).await
                    }
                }
            }
        }
    }
}

/// A static label for a status code (avoids an allocation per response).
fn status_label(code: u16) -> &'static str {
    const CODES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "6xx"];
    match code {
        100 => "100",
        180 => "180",
        200 => "200",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        407 => "407",
        408 => "408",
        415 => "415",
        416 => "416",
        420 => "420",
        480 => "480",
        481 => "481",
        482 => "482",
        483 => "483",
        486 => "486",
        487 => "487",
        500 => "500",
        501 => "501",
        503 => "503",
        505 => "505",
        c => CODES
            .get((c / 100).saturating_sub(1) as usize)
            .copied()
            .unwrap_or("other"),
    }
}

/// A token bucket for the new-INVITE rate limit.
struct TokenBucket {
    tokens: f64,
    last: Option<Instant>,
}

impl TokenBucket {
    fn take(&mut self, now: Instant, per_sec: u32) -> bool {
        let rate = f64::from(per_sec);
        let elapsed = self
            .last
            .map_or(1.0, |l| now.saturating_duration_since(l).as_secs_f64());
        self.tokens = (self.tokens + elapsed * rate).min(rate);
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A running SIP server.
pub struct Server {
    /// Shared state (for the HTTP side: metrics).
    pub shared: Arc<Shared>,
    /// The UDP addresses actually bound.
    pub udp_addrs: Vec<SocketAddr>,
    /// The TCP addresses actually bound.
    pub tcp_addrs: Vec<SocketAddr>,
    /// The TLS addresses actually bound.
    pub tls_addrs: Vec<SocketAddr>,
    /// The WebSocket addresses actually bound.
    pub ws_addrs: Vec<SocketAddr>,
    /// The secure WebSocket addresses actually bound.
    pub wss_addrs: Vec<SocketAddr>,
}

/// The transaction user of a shard: what happens to requests once the transaction layer has
/// matched them (the engine's own answers, the registrar, calls). One instance per shard, living
/// on the shard's thread, so it may hold `!Send` state (actor addresses, `Rc`s).
pub trait TransactionUser: 'static {
    /// Messages other parts of the shard (actors) post back to it.
    type Command: Send + 'static;

    /// An event from the transaction layer.
    fn on_event(&mut self, cx: &mut ShardCx<'_, Self::Command>, ev: TuEvent);

    /// A command posted on the shard's command channel.
    fn on_command(&mut self, cx: &mut ShardCx<'_, Self::Command>, cmd: Self::Command);
}

/// What a transaction user may touch while handling an event or command.
pub struct ShardCx<'a, C> {
    /// The shard's transaction layer.
    pub layer: &'a mut TransactionLayer,
    /// The current time.
    pub now: Instant,
    /// This shard's index.
    pub shard: usize,
    /// Engine-wide state.
    pub shared: &'a Arc<Shared>,
    /// The shard's own command channel (clone it for actors).
    pub commands: &'a mpsc::UnboundedSender<C>,
    stateless: &'a mut Vec<(Response, Peer)>,
}

impl<C> ShardCx<'_, C> {
    /// Sends a response outside any transaction (after the current batch).
    pub fn send_stateless(&mut self, resp: Response, to: Peer) {
        self.stateless.push((resp, to));
    }
}

/// Builds the transaction user of shard `index`; runs on the shard's thread.
pub type TuFactory<T> = Arc<
    dyn Fn(usize, mpsc::UnboundedSender<<T as TransactionUser>::Command>, Arc<Shared>) -> T
        + Send
        + Sync,
>;

/// The engine's own transaction user (no calls): [`Core`].
impl TransactionUser for Core {
    type Command = ();

    fn on_event(&mut self, cx: &mut ShardCx<'_, ()>, ev: TuEvent) {
        self.handle(cx.layer, cx.now, ev);
    }

    fn on_command(&mut self, _cx: &mut ShardCx<'_, ()>, _cmd: ()) {}
}

/// A factory for the engine's own [`Core`] transaction user.
pub fn core_factory() -> TuFactory<Core> {
    Arc::new(|_, _, shared: Arc<Shared>| Core::new(shared.local.clone()))
}

/// Binds every listener and starts the readers (on the current actix arbiter) and one shard
/// per core, each on its own actix [`actix_rt::Arbiter`] with a transaction user from `factory`.
/// Must run inside an actix system.
pub async fn start<T: TransactionUser>(
    config: Config,
    metrics: Metrics,
    factory: TuFactory<T>,
) -> std::io::Result<Server> {
    let mut udp_socks = Vec::new();
    for addr in &config.sip.udp_listen {
        udp_socks.push(Arc::new(
            udp::bind(*addr)
                .await
                .map_err(|e| annotate(e, "UDP", addr))?,
        ));
    }
    let mut tcp_listeners = Vec::new();
    for addr in &config.sip.tcp_listen {
        tcp_listeners.push(tcp::bind(*addr).map_err(|e| annotate(e, "TCP", addr))?);
    }
    let bind_all = |addrs: &[SocketAddr], what: &str| {
        addrs
            .iter()
            .map(|a| tcp::bind(*a).map_err(|e| annotate(e, what, a)))
            .collect::<std::io::Result<Vec<_>>>()
    };
    let tls_listeners = bind_all(&config.sip.tls_listen, "TLS")?;
    let ws_listeners = bind_all(&config.sip.ws_listen, "WS")?;
    let wss_listeners = bind_all(&config.sip.wss_listen, "WSS")?;
    let acceptor = match (&config.sip.tls_cert, &config.sip.tls_key) {
        (Some(cert), Some(key)) if !tls_listeners.is_empty() || !wss_listeners.is_empty() => {
            let tls_config = tls::server_config(cert, key, config.sip.tls_client_ca.as_deref())
                .map_err(|e| {
                    std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string())
                })?;
            Some(tokio_rustls::TlsAcceptor::from(tls_config))
        }
        _ => None,
    };
    let addrs_of = |ls: &[tokio::net::TcpListener]| -> Vec<SocketAddr> {
        ls.iter().filter_map(|s| s.local_addr().ok()).collect()
    };
    let udp_addrs: Vec<SocketAddr> = udp_socks
        .iter()
        .filter_map(|s| s.local_addr().ok())
        .collect();
    let tcp_addrs = addrs_of(&tcp_listeners);
    let tls_addrs = addrs_of(&tls_listeners);
    let ws_addrs = addrs_of(&ws_listeners);
    let wss_addrs = addrs_of(&wss_listeners);
    let mut listeners: Vec<(TransportKind, SocketAddr)> = Vec::new();
    for (kind, addrs) in [
        (TransportKind::Udp, &udp_addrs),
        (TransportKind::Tcp, &tcp_addrs),
        (TransportKind::Tls, &tls_addrs),
        (TransportKind::Ws, &ws_addrs),
        (TransportKind::Wss, &wss_addrs),
    ] {
        listeners.extend(addrs.iter().map(|a| (kind, *a)));
    }
    let mut sent_by: Vec<String> = listeners.iter().map(|(_, a)| a.to_string()).collect();
    if let Some(adv) = config.sip.advertised_address {
        for (_, a) in &listeners {
            sent_by.push(SocketAddr::new(adv, a.port()).to_string());
        }
    }
    for (listen, adv) in &config.sip.advertised_addresses {
        sent_by.push(SocketAddr::new(*adv, listen.port()).to_string());
    }
    let shard_count = config.shard_count();
    let mut senders = Vec::with_capacity(shard_count);
    let mut receivers = Vec::with_capacity(shard_count);
    for _ in 0..shard_count {
        let (tx, rx) = mpsc::channel(config.limits.queue_capacity);
        senders.push(tx);
        receivers.push(rx);
    }
    let client_tls = crate::transport::connect::ClientTlsMap::from_config(&config)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
    let shared = Arc::new(Shared {
        client_tls,
        tcp: tcp::Registry::new(metrics.tcp_connections.clone()),
        limiter: SourceLimiter::new(config.limits.max_connections_per_source),
        listeners,
        metrics,
        udp: udp_socks.clone(),
        shards: senders,
        local: LocalIdentity {
            sent_by,
            branch_prefix: BRANCH_PREFIX.to_string(),
        },
        invite_bucket: Mutex::new(TokenBucket {
            tokens: 0.0,
            last: None,
        }),
        config,
    });
    for (i, rx) in receivers.into_iter().enumerate() {
        let arbiter = actix_rt::Arbiter::new();
        let shared = shared.clone();
        let factory = factory.clone();
        arbiter.spawn_fn(move || {
            actix_rt::spawn(run_shard(i, rx, shared, factory));
        });
        // The arbiter thread lives as long as the system; its handle is not needed.
        std::mem::forget(arbiter);
    }
    for (i, sock) in udp_socks.into_iter().enumerate() {
        actix_rt::spawn(udp::serve(sock, i as u64, shared.clone()));
    }
    for l in tcp_listeners {
        actix_rt::spawn(tcp::serve(l, shared.clone()));
    }
    if let Some(acceptor) = &acceptor {
        for l in tls_listeners {
            actix_rt::spawn(tls::serve(l, acceptor.clone(), shared.clone()));
        }
        for l in wss_listeners {
            actix_rt::spawn(ws::serve(l, Some(acceptor.clone()), shared.clone()));
        }
    }
    for l in ws_listeners {
        actix_rt::spawn(ws::serve(l, None, shared.clone()));
    }
    tracing::info!(
        udp = ?udp_addrs,
        tcp = ?tcp_addrs,
        tls = ?tls_addrs,
        ws = ?ws_addrs,
        wss = ?wss_addrs,
        shards = shard_count,
        "SIP listening"
    );
    Ok(Server {
        shared,
        udp_addrs,
        tcp_addrs,
        tls_addrs,
        ws_addrs,
        wss_addrs,
    })
}

fn annotate(e: std::io::Error, what: &str, addr: &SocketAddr) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("cannot bind SIP {what} {addr}: {e}"))
}

/// One shard: owns a transaction layer and the transaction user, fed by its queue and by
/// commands from the shard's actors.
async fn run_shard<T: TransactionUser>(
    index: usize,
    mut rx: mpsc::Receiver<Inbound>,
    shared: Arc<Shared>,
    factory: TuFactory<T>,
) {
    let c = &shared.config;
    let timers = TimerConfig {
        t1: Duration::from_millis(c.sip.t1_ms),
        t2: Duration::from_millis(c.sip.t2_ms),
        t4: Duration::from_millis(c.sip.t4_ms),
    };
    let mut layer = TransactionLayer::new(timers, c.limits.max_transactions);
    let (cmd_tx, mut cmd_rx) = mpsc::unbounded_channel();
    let mut tu = factory(index, cmd_tx.clone(), shared.clone());
    let depth_gauge = shared
        .metrics
        .queue_depth
        .with_label_values(&[&index.to_string()]);
    let mut live = 0i64;
    let mut batch = Vec::with_capacity(64);
    let mut commands = Vec::with_capacity(64);
    let mut stateless = Vec::new();
    loop {
        let deadline = layer.poll_timeout();
        tokio::select! {
            n = rx.recv_many(&mut batch, 64) => {
                if n == 0 {
                    return; // every sender is gone: the server is shutting down
                }
                let now = Instant::now();
                for inbound in batch.drain(..) {
                    if let Some(refusal) = handle_inbound(&mut layer, &shared, now, inbound) {
                        shared.metrics.overload_rejections.inc();
                        stateless.push(refusal);
                    }
                }
            }
            _ = cmd_rx.recv_many(&mut commands, 64) => {
                let now = Instant::now();
                for cmd in commands.drain(..) {
                    let mut cx = ShardCx { layer: &mut layer, now, shard: index, shared: &shared, commands: &cmd_tx, stateless: &mut stateless };
                    tu.on_command(&mut cx, cmd);
                }
            }
            _ = sleep_until_opt(deadline) => {
                layer.handle_timeout(Instant::now());
            }
        }
        let now = Instant::now();
        while let Some(ev) = layer.poll_event() {
            let mut cx = ShardCx {
                layer: &mut layer,
                now,
                shard: index,
                shared: &shared,
                commands: &cmd_tx,
                stateless: &mut stateless,
            };
            tu.on_event(&mut cx, ev);
        }
        while let Some(t) = layer.poll_transmit() {
            shared.transmit(t).await;
        }
        for (resp, to) in stateless.drain(..) {
            shared.send_response(&resp, to).await;
        }
        depth_gauge
            .set((c.limits.queue_capacity - rx.capacity().min(c.limits.queue_capacity)) as i64);
        let n = layer.len() as i64;
        shared.metrics.transactions.add(n - live);
        live = n;
    }
}

/// Feeds one message to the layer; returns a stateless answer when the layer refuses it.
fn handle_inbound(
    layer: &mut TransactionLayer,
    shared: &Shared,
    now: Instant,
    inbound: Inbound,
) -> Option<(Response, Peer)> {
    match inbound.message {
        Message::Request(req) => {
            shared
                .metrics
                .requests
                .with_label_values(&[req.method.as_str()])
                .inc();
            let span = tracing::debug_span!("sip", call_id = req.call_id().unwrap_or_default());
            let _g = span.enter();
            if layer.len() >= shared.config.limits.max_transactions && req.method != Method::Ack {
                let mut r =
                    response_with_reason(&req, 503, "Service Unavailable (too many transactions)");
                r.headers.push(
                    HeaderName::RetryAfter,
                    shared.config.limits.retry_after_secs.to_string(),
                );
                return Some((r, inbound.source));
            }
            if let Err(e) = layer.handle_request(now, req, inbound.source) {
                tracing::debug!(error = %e, "request refused by the transaction layer");
            }
            None
        }
        Message::Response(resp) => {
            layer.handle_response(now, resp, inbound.source);
            None
        }
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// The shard a Call-ID belongs to. Call-IDs this engine creates carry their shard
/// (`sb<shard>-…`, see [`new_call_id`]) so the B leg of a call lands where its A leg is;
/// any other Call-ID is hashed.
pub fn shard_of(call_id: &str, shards: usize) -> usize {
    if let Some(rest) = call_id.strip_prefix("sb") {
        if let Some((n, _)) = rest.split_once('-') {
            if let Ok(n) = n.parse::<usize>() {
                if n < shards {
                    return n;
                }
            }
        }
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    call_id.hash(&mut h);
    (h.finish() % shards.max(1) as u64) as usize
}

/// A new Call-ID that [`shard_of`] maps to `shard`.
pub fn new_call_id(shard: usize, host: &str) -> String {
    format!(
        "sb{shard}-{:016x}{:08x}@{host}",
        rand::random::<u64>(),
        rand::random::<u32>()
    )
}
