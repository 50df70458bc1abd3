//! `switchboard serve` configuration: embedded defaults, an optional TOML file, and validation
//! that names the file, the key and the reason before anything is bound.

use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The whole configuration.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// SIP listeners and behaviour.
    pub sip: SipConfig,
    /// The HTTP server (health, metrics, later the API).
    pub http: HttpConfig,
    /// Where state lives.
    pub data: DataConfig,
    /// Media port ranges.
    pub media: MediaConfig,
    /// Limits and overload protection.
    pub limits: Limits,
    /// The runtime.
    pub runtime: RuntimeConfig,
    /// The database.
    pub database: DatabaseConfig,
    /// The registrar.
    pub registrar: RegistrarConfig,
    /// Call handling (B2BUA).
    pub calls: CallsConfig,
    /// The dialplan and the IVR media it uses.
    pub dialplan: DialplanConfig,
    /// The contact centre (queues, agents, routing).
    pub contact_centre: ContactCentreConfig,
    /// SIP trunks by name (`[trunks.carrier]`): gateways for outbound calls (the targets of a
    /// dialplan `dial: { trunk, number }`), outbound registration, inbound identification and
    /// per-trunk admission control.
    pub trunks: std::collections::BTreeMap<String, TrunkConfig>,
    /// Least-cost routing tables by name (`[routes.lcr] "44" = ["cheap", "backup"]`): number
    /// prefix → trunks in cost order; the longest matching prefix wins (`""` matches every
    /// number). Used by a dialplan `dial: { route: lcr, number }`.
    pub routes: std::collections::BTreeMap<String, std::collections::BTreeMap<String, Vec<String>>>,
    /// Temporary bans of sources that fail digest authentication repeatedly (fail2ban-style).
    pub bans: BanConfig,
    /// The REST API's bearer tokens and roles (none: the API is open).
    pub api: crate::api_config::ApiConfig,
    /// Contact-centre reports written on a schedule.
    pub reports: ReportsConfig,
    /// Web chat: the customer WebSocket, the widget and attachment limits.
    pub chat: ChatConfig,
    /// API channels by name (`[channels.telegram]`): inbound messages signed with `secret`,
    /// agent replies posted (signed) to `webhook_url`.
    pub channels: std::collections::BTreeMap<String, ChannelConfig>,
    /// The event stream (`/api/v1/events`) and its signed webhooks.
    pub events: EventsConfig,
    /// Tickets: attachment limits, the SLA sweeper, notifications (webhooks and e-mail).
    pub tickets: crate::tickets_config::TicketsConfig,
    /// WebRTC browser legs (`/webrtc/ws`, the `/webrtc` demo page).
    pub webrtc: WebRtcConfig,
}

/// WebRTC browser legs (`[webrtc]`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebRtcConfig {
    /// Serve `/webrtc/ws` and the demo page `/webrtc`.
    pub enabled: bool,
    /// The address ICE binds on (host candidates); unset: `media.rtp_ip`.
    pub ice_ip: Option<IpAddr>,
    /// The address put in host candidates instead of `ice_ip` (1:1 NAT, e.g. a cloud VM's
    /// public address).
    pub advertised_ip: Option<IpAddr>,
    /// STUN/TURN server URLs handed to browsers (`stun:host:3478`, `turn:host:3478`).
    pub ice_servers: Vec<String>,
    /// TURN username handed to browsers with `ice_servers`.
    pub turn_username: String,
    /// TURN credential handed to browsers with `ice_servers`.
    pub turn_credential: String,
    /// Most browser legs at once (more: the socket gets an `error` and closes).
    pub max_legs: usize,
    /// What browsers may dial: exact numbers/users and prefixes ending in `*` (`"*"`: all).
    /// Browser calls enter the dialplan as trusted callers, so the default is none.
    pub allowed_destinations: Vec<String>,
    /// Video rooms (`{"type":"join"}` on `/webrtc/ws`): on or off.
    pub rooms: bool,
    /// The video codec of rooms, forwarded untranscoded: `vp8` or `h264`.
    pub room_codec: String,
    /// Most browsers in one room. Two (customer and agent): a third member would get two
    /// senders' streams in one slot (the supervisor's layout is not built yet).
    pub max_room_members: usize,
}

impl Default for WebRtcConfig {
    fn default() -> Self {
        WebRtcConfig {
            enabled: true,
            ice_ip: None,
            advertised_ip: None,
            ice_servers: Vec::new(),
            turn_username: String::new(),
            turn_credential: String::new(),
            max_legs: 1000,
            allowed_destinations: Vec::new(),
            rooms: true,
            room_codec: "vp8".into(),
            max_room_members: 2,
        }
    }
}

/// Contact-centre reports: where scheduled ones are written and which.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportsConfig {
    /// The folder for generated files; empty: `<data.dir>/reports`.
    pub dir: PathBuf,
    /// Reports generated on a schedule (`[[reports.schedules]]`).
    pub schedules: Vec<ReportSchedule>,
}

/// One scheduled report: `report` (`agents`, `queues`, `volume`) per `period` (`day`, `week`,
/// `month`), written as CSV and SVG at start and then `every` (`hourly`, `daily`, `weekly`,
/// `monthly`, or a duration like `30s`, `15m`, `2h`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSchedule {
    /// The report.
    pub report: String,
    /// Its rows.
    pub period: String,
    /// How often.
    #[serde(default = "daily")]
    pub every: String,
}

fn daily() -> String {
    "daily".into()
}

/// Web chat settings (`[chat]`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChatConfig {
    /// Serve `/chat/...`, `/widget.js`, `/agent` and the API channel (needs the contact centre).
    pub enabled: bool,
    /// Largest attachment accepted, in bytes (larger: 413).
    pub max_attachment_bytes: usize,
    /// MIME types accepted for attachments (others: 415).
    pub attachment_types: Vec<String>,
    /// Longest message text, in characters.
    pub max_message_chars: usize,
    /// The queue of chats that name none (empty: the workflow decides).
    pub default_queue: String,
    /// How long an ended chat's session stays in memory (for the CSAT prompt and a last
    /// resume), in seconds.
    pub linger_secs: u64,
    /// How long a chat whose customer socket is gone waits for a resume before it ends, in
    /// seconds.
    pub resume_window_secs: u64,
    /// Whether `chat.message` events carry the message text (else only ids and lengths).
    pub events_include_text: bool,
}

impl Default for ChatConfig {
    fn default() -> Self {
        ChatConfig {
            enabled: true,
            max_attachment_bytes: 5 << 20,
            attachment_types: [
                "image/png",
                "image/jpeg",
                "image/gif",
                "application/pdf",
                "text/plain",
            ]
            .map(String::from)
            .to_vec(),
            max_message_chars: 4000,
            default_queue: String::new(),
            linger_secs: 300,
            resume_window_secs: 600,
            events_include_text: false,
        }
    }
}

/// The event stream: retention of stored events, consumer buffers and signed webhooks.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// How long stored events are kept for replay, in hours.
    pub retention_hours: u64,
    /// How often old events are pruned, in seconds.
    pub prune_interval_secs: u64,
    /// Events a stream consumer may have queued before it is cut off (close code 4008).
    pub consumer_buffer: usize,
    /// Webhooks that receive events as signed POSTs (`[[events.webhooks]]`).
    pub webhooks: Vec<EventWebhookConfig>,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            retention_hours: 72,
            prune_interval_secs: 300,
            consumer_buffer: 8_192,
            webhooks: Vec::new(),
        }
    }
}

/// One API channel (`[channels.NAME]`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChannelConfig {
    /// The shared HMAC-SHA256 secret of inbound and outbound signatures.
    pub secret: String,
    /// Where agent replies are posted (`http://…`); empty: replies are only stored.
    pub webhook_url: String,
    /// The queue of its conversations (empty: the chat default queue, then the workflow).
    pub queue: String,
}

/// One event webhook.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventWebhookConfig {
    /// Where events are POSTed (`http://host:port/path`).
    pub url: String,
    /// The HMAC-SHA256 key of the `X-Switchboard-Signature` header.
    pub secret: String,
    /// Which events (`call.*`, `agent.state_changed`, `*`); empty: all.
    #[serde(default)]
    pub types: Vec<String>,
}

/// Temporary bans after repeated authentication failures from one source address.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BanConfig {
    /// Failed authentications (403 to REGISTER or INVITE) within `window_secs` that ban the
    /// source (0 = no bans).
    pub max_auth_failures: u32,
    /// The counting window, in seconds.
    pub window_secs: u64,
    /// How long a ban lasts, in seconds.
    pub ban_secs: u64,
}

impl Default for BanConfig {
    fn default() -> Self {
        BanConfig {
            max_auth_failures: 0,
            window_secs: 60,
            ban_secs: 300,
        }
    }
}

/// A SIP trunk: a carrier's gateways and how calls to and from it are handled.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrunkConfig {
    /// A single gateway (shorthand for `gateways = [{ address = … }]`).
    pub address: Option<SocketAddr>,
    /// The carrier's gateways (IP and port; calls go over UDP).
    pub gateways: Vec<GatewayConfig>,
    /// How a call picks its first gateway; the others follow as failover.
    pub strategy: GatewayStrategy,
    /// Whether calls that came in on this trunk may be transferred by REFER (and their
    /// dialogs replaced); `calls.allow_refer = false` forbids it everywhere.
    pub allow_refer: bool,
    /// Number format sent to the carrier: `asis`, `e164` (`+CC…`) or `national` (`0…`).
    pub number_format: NumberFormat,
    /// The country code used by `e164`/`national` (e.g. `"33"`).
    pub country_code: String,
    /// Removed from the start of the (formatted) number when present (e.g. `"+"`).
    pub strip_prefix: String,
    /// Prepended to the dialled number after formatting and stripping (`00`, a tech prefix).
    pub prefix: String,
    /// Caller ID (the From user) on calls through this trunk; default: the caller's number in
    /// `number_format`. A dialplan `dial … caller_id` wins over it.
    pub caller_id: Option<String>,
    /// Codecs offered to the carrier, in preference order (`PCMA`, `PCMU`, `G722`, `opus`);
    /// empty: the caller's or the engine's offer unchanged.
    pub codecs: Vec<String>,
    /// Most concurrent calls through this trunk, in and out (0 = no limit).
    pub max_calls: u32,
    /// Most new calls per second through this trunk, in and out (0 = no limit).
    pub max_cps: f64,
    /// Source addresses (IP or CIDR) whose INVITEs are this trunk's inbound calls (accepted
    /// without digest authentication).
    pub inbound_sources: Vec<String>,
    /// Digest user a carrier authenticates its inbound calls with (with `inbound_password`).
    pub inbound_username: Option<String>,
    /// Digest password of `inbound_username`.
    pub inbound_password: Option<String>,
    /// A gateway that sends no response to an INVITE within this time is skipped (408) and the
    /// next one is tried, in milliseconds.
    pub invite_timeout_ms: u64,
    /// Digest user for calls to the carrier that it challenges (401/407); default: the
    /// registration's credentials.
    pub outbound_username: Option<String>,
    /// Digest password of `outbound_username`.
    pub outbound_password: Option<String>,
    /// OPTIONS keep-alive probes of the gateways.
    pub probe: ProbeConfig,
    /// Outbound registration to the carrier (RFC 3261 §10), when present.
    pub register: Option<RegisterConfig>,
    /// How registration, OPTIONS probes and calls reach the carrier: `udp`, `tcp` or `tls`
    /// (`sips:` Request-URIs).
    pub transport: TrunkTransport,
    /// PEM file of the CAs that sign the carrier's certificate (`transport = "tls"`).
    pub tls_ca: Option<std::path::PathBuf>,
    /// Check the carrier's certificate (chain and name); `false` accepts any (labs only).
    pub tls_verify: bool,
    /// The name sent in SNI and checked in the carrier's certificate (default: the gateway's
    /// IP address).
    pub tls_server_name: Option<String>,
    /// PEM certificate chain presented to the carrier (mutual TLS), with `tls_key`.
    pub tls_cert: Option<std::path::PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<std::path::PathBuf>,
}

/// The transport of a trunk.
#[derive(Clone, Copy, Debug, Default, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TrunkTransport {
    /// UDP.
    #[default]
    Udp,
    /// TCP, one connection per gateway, reused.
    Tcp,
    /// TLS over TCP.
    Tls,
}

impl TrunkTransport {
    /// The engine transport it maps to.
    pub fn kind(self) -> crate::transaction::TransportKind {
        use crate::transaction::TransportKind;
        match self {
            TrunkTransport::Udp => TransportKind::Udp,
            TrunkTransport::Tcp => TransportKind::Tcp,
            TrunkTransport::Tls => TransportKind::Tls,
        }
    }
}

impl Default for TrunkConfig {
    fn default() -> Self {
        TrunkConfig {
            address: None,
            gateways: Vec::new(),
            strategy: GatewayStrategy::Priority,
            allow_refer: true,
            number_format: NumberFormat::Asis,
            country_code: String::new(),
            strip_prefix: String::new(),
            prefix: String::new(),
            caller_id: None,
            codecs: Vec::new(),
            max_calls: 0,
            max_cps: 0.0,
            inbound_sources: Vec::new(),
            inbound_username: None,
            inbound_password: None,
            invite_timeout_ms: 5000,
            outbound_username: None,
            outbound_password: None,
            probe: ProbeConfig::default(),
            register: None,
            transport: TrunkTransport::Udp,
            tls_ca: None,
            tls_verify: true,
            tls_server_name: None,
            tls_cert: None,
            tls_key: None,
        }
    }
}

impl TrunkConfig {
    /// Digest credentials for challenged calls to the carrier: `outbound_username`/
    /// `outbound_password`, else the registration's.
    pub fn outbound_credentials(&self) -> Option<(&str, &str)> {
        if let (Some(u), Some(p)) = (&self.outbound_username, &self.outbound_password) {
            return Some((u, p));
        }
        self.register.as_ref().map(|r| {
            (
                r.auth_username.as_deref().unwrap_or(&r.username),
                r.password.as_str(),
            )
        })
    }

    /// Every gateway: `address` first, then `gateways`.
    pub fn all_gateways(&self) -> Vec<GatewayConfig> {
        let mut v: Vec<GatewayConfig> = self
            .address
            .map(|address| GatewayConfig {
                address,
                weight: 1,
                priority: 0,
            })
            .into_iter()
            .collect();
        v.extend(self.gateways.iter().cloned());
        v
    }
}

/// One gateway of a trunk.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// IP and port.
    pub address: SocketAddr,
    /// Share of calls under the `weighted` strategy.
    #[serde(default = "one")]
    pub weight: u32,
    /// Order under the `priority` strategy (lower first).
    #[serde(default)]
    pub priority: u32,
}

fn one() -> u32 {
    1
}

/// How a trunk orders its gateways for a new call.
#[derive(Clone, Copy, Debug, Default, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum GatewayStrategy {
    /// Lowest `priority` first (ties in configuration order).
    #[default]
    Priority,
    /// Each call starts at the next gateway.
    RoundRobin,
    /// First gateway drawn at random in proportion to `weight`.
    Weighted,
    /// The gateway with the fewest calls in progress first.
    LeastCalls,
}

/// How numbers are written towards a carrier.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum NumberFormat {
    /// Unchanged (only visual separators removed).
    #[default]
    Asis,
    /// E.164 with `+`: `00…` → `+…`, national `0…` → `+CC…`.
    E164,
    /// National: `+CC…`/`00CC…` → `0…`, other countries `00…`.
    National,
}

/// OPTIONS keep-alive probes (like Kamailio's dispatcher).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProbeConfig {
    /// Seconds between probes of one gateway (0 = no probes: gateways are always up).
    pub interval_secs: u64,
    /// A probe without a final response after this long has failed, in milliseconds.
    pub timeout_ms: u64,
    /// Consecutive failed probes (timeout, 5xx, 6xx) that mark a gateway down.
    pub down_after: u32,
    /// Consecutive answered probes that mark a down gateway up again.
    pub up_after: u32,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            interval_secs: 0,
            timeout_ms: 2000,
            down_after: 2,
            up_after: 1,
        }
    }
}

/// Outbound registration of a trunk (RFC 3261 §10, as a client).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegisterConfig {
    /// The registrar (default: the trunk's first gateway).
    pub registrar: Option<SocketAddr>,
    /// The domain of the address of record (default: the registrar's IP).
    pub domain: Option<String>,
    /// The user registered (the AOR's user part and the digest user).
    pub username: String,
    /// Digest user when it differs from `username`.
    pub auth_username: Option<String>,
    /// Digest password.
    pub password: String,
    /// The user part of our Contact (default `username`); INVITEs to it are this trunk's
    /// inbound calls.
    pub contact_user: Option<String>,
    /// Registration lifetime asked for, in seconds.
    pub expires_secs: u32,
    /// A REGISTER without a final response after this long has failed, in milliseconds.
    pub timeout_ms: u64,
    /// First wait after a failure, in seconds; doubles on each further failure.
    pub retry_min_secs: u64,
    /// Longest wait between attempts, in seconds.
    pub retry_max_secs: u64,
}

impl Default for RegisterConfig {
    fn default() -> Self {
        RegisterConfig {
            registrar: None,
            domain: None,
            username: String::new(),
            auth_username: None,
            password: String::new(),
            contact_user: None,
            expires_secs: 600,
            timeout_ms: 5000,
            retry_min_secs: 2,
            retry_max_secs: 300,
        }
    }
}

/// The contact centre: queues, agents and workflows are configured through the REST API and
/// stored in the database; these are the engine-wide settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContactCentreConfig {
    /// Run the routing actor and serve `/api/v1` (queues, agents, metrics, agent desktops).
    pub enabled: bool,
    /// The X of "service level X" when a metrics request names none, in seconds.
    pub service_level_secs: u64,
    /// Least time between two position announcements to one queued caller, in seconds.
    pub position_update_secs: u64,
    /// Queues, agents and the workflow to create or update at start (TOML, the REST API's
    /// documents: `[[queues]]`, `[[agents]]`, `[workflow]`); `builtin:demo` is the demo file
    /// compiled into the binary (`dialplans/examples/contact-centre.toml`); empty: none.
    pub config_file: String,
    /// Longest wait for the CRM screen pop of an offer, in ms; past it the offer goes out
    /// without the pop (0: no screen pop).
    pub screen_pop_timeout_ms: u64,
    /// Timeline entries in a screen pop (newest first).
    pub screen_pop_entries: usize,
    /// Tests only: delays every screen-pop lookup by this many ms (to exercise the timeout).
    pub debug_screen_pop_delay_ms: u64,
}

impl Default for ContactCentreConfig {
    fn default() -> Self {
        ContactCentreConfig {
            enabled: true,
            service_level_secs: 20,
            position_update_secs: 10,
            config_file: "builtin:demo".into(),
            screen_pop_timeout_ms: 500,
            screen_pop_entries: 10,
            debug_screen_pop_delay_ms: 0,
        }
    }
}

impl ContactCentreConfig {
    /// Parses the text of a contact-centre file (TOML) into `T`; errors name the file, the key
    /// (`agents[1].skills.billing`) and the reason.
    pub fn parse_file<T: serde::de::DeserializeOwned>(
        text: &str,
        file: &str,
    ) -> Result<T, ConfigError> {
        let de = toml::Deserializer::parse(text).map_err(|e| ConfigError {
            file: file.to_string(),
            key: "-".into(),
            reason: e.message().to_string(),
        })?;
        serde_path_to_error::deserialize(de).map_err(|e| ConfigError {
            file: file.to_string(),
            key: e.path().to_string(),
            reason: e.inner().message().to_string(),
        })
    }
}

/// Which dialplan routes calls, and the media resources it uses.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DialplanConfig {
    /// The plan file (YAML, `dialplans/FORMAT.md`); `builtin:demo` is the demo plan compiled into
    /// the binary (`dialplans/examples/default.yaml`); empty means no dialplan: every call goes
    /// to the registered user named by its Request-URI.
    pub file: String,
    /// Where prompt files are found (default: the plan's `prompt_dir`, else the plan's folder).
    pub prompt_dir: Option<PathBuf>,
    /// How often the plan file is checked for changes, in seconds (0: only on
    /// `switchboard dialplan reload`).
    pub watch_secs: u64,
    /// How long a webhook may take to answer, in milliseconds.
    pub webhook_timeout_ms: u64,
    /// TTS voice (flite), the engine default when unset.
    pub tts_voice: Option<String>,
    /// Music on hold for queued callers (an audio file); a ringback-like tone when unset.
    pub music_on_hold: Option<PathBuf>,
}

impl Default for DialplanConfig {
    fn default() -> Self {
        DialplanConfig {
            file: "builtin:demo".into(),
            prompt_dir: None,
            watch_secs: 2,
            webhook_timeout_ms: 5000,
            tts_voice: None,
            music_on_hold: None,
        }
    }
}

/// The database connection.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://…` or `postgres://…`; default: SQLite file `switchboard.db` in `data.dir`.
    pub url: Option<String>,
}

/// Registrar and digest authentication.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrarConfig {
    /// The digest realm (also the domain users belong to).
    pub realm: String,
    /// Shortest registration accepted (423 Interval Too Brief below it).
    pub min_expires_secs: u32,
    /// Longest registration granted.
    pub max_expires_secs: u32,
    /// Granted when the request names none.
    pub default_expires_secs: u32,
    /// How long a nonce stays valid before `stale=true`.
    pub nonce_ttl_secs: u32,
    /// Answer for an unknown user: 404 or 403 (403 does not reveal which users exist).
    pub unknown_user_status: u16,
    /// Failed authentications per source IP per minute before requests are refused (403).
    pub max_auth_failures_per_min: u32,
    /// Digest algorithms offered in challenges, in this order (`SHA-256`, `MD5`). Default: MD5
    /// alone, because widespread clients fail otherwise (baresip 1.0/libre 1.1 aborts when any
    /// offered challenge is not MD5; SIPp 3.6 reads only the first). `["SHA-256", "MD5"]`
    /// follows RFC 8760 for clients that support it.
    pub digest_algorithms: Vec<String>,
    /// On a start with no users at all, create demo users 1001 and 1002 (passwords
    /// `demo1001` / `demo1002`) so a softphone can register and call at once.
    pub seed_demo_users: bool,
    /// Keep-alives to bindings behind NAT and over connections: `off`, `options` (an OPTIONS
    /// each interval; the binding is dropped after `nat_keepalive_failures` unanswered in a
    /// row) or `crlf` (a CRLF ping on the binding's flow: keeps the NAT mapping open).
    pub nat_keepalive: NatKeepalive,
    /// Seconds between keep-alives.
    pub nat_keepalive_secs: u64,
    /// Unanswered OPTIONS keep-alives in a row that drop a binding.
    pub nat_keepalive_failures: u32,
}

/// Keep-alives to registered users behind NAT (`[registrar] nat_keepalive`).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum NatKeepalive {
    /// None.
    #[default]
    Off,
    /// OPTIONS requests; unanswered ones count as failures.
    Options,
    /// CRLF pings (RFC 5626 §4.4.1 on connections; a bare NAT refresh over UDP).
    Crlf,
}

/// B2BUA call handling.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallsConfig {
    /// Source addresses (IP or CIDR) allowed to place calls without digest authentication.
    pub trusted_sources: Vec<String>,
    /// No final answer from the callee within this time: 480 to the caller.
    pub no_answer_timeout_secs: u64,
    /// Calls longer than this are ended with BYE on both legs.
    pub max_duration_secs: u64,
    /// No RTP on an answered call for this long ends it (cause `rtp_timeout`).
    pub rtp_timeout_secs: u64,
    /// Test hook: a call whose INVITE carries `X-Switchboard-Panic: answer` panics its call
    /// actor right after answering, to exercise the supervision path. Never enable in
    /// production.
    pub debug_panic_injection: bool,
    /// SRTP toward callees (the B legs): `mirror` (default: SDES-SRTP when the caller's leg is
    /// SRTP, plain RTP when it is plain), `sdes` (always offer SDES-SRTP, `RTP/SAVP`), `off`
    /// (always plain `RTP/AVP`). Callers may always offer SDES-SRTP: the engine answers with its
    /// own key and decrypts and re-encrypts between the legs.
    pub srtp: SrtpPolicy,
    /// Per-callee overrides of `srtp`, by user name (the user part of the AOR), e.g.
    /// `srtp_users = { "1002" = "sdes", "fax" = "off" }`.
    pub srtp_users: std::collections::BTreeMap<String, SrtpPolicy>,
    /// DTLS-SRTP offers (`UDP/TLS/RTP/SAVP(F)`, RFC 5763/5764): `terminate` (default: the
    /// engine runs the handshake on the leg and decrypts/re-encrypts), `passthrough` (the
    /// section is relayed untouched, end to end) or `reject` (488).
    pub dtls: DtlsMode,
    /// PEM file holding the DTLS certificate followed by its PKCS#8 private key; empty: a
    /// self-signed ECDSA P-256 certificate is generated at start.
    pub dtls_certificate: String,
    /// A DTLS handshake not completed within this time fails the leg (BYE).
    pub dtls_handshake_timeout_secs: u64,
    /// Session timer (RFC 4028) interval the engine asks for on the caller's leg, in seconds:
    /// a caller's longer `Session-Expires` is lowered to it; 0 uses a timer only when the
    /// caller asks for one.
    pub session_expires: u32,
    /// Smallest session interval accepted (Min-SE); a shorter `Session-Expires` gets 422.
    /// RFC 4028 sets 90 as the floor; smaller values are for tests.
    pub min_se: u32,
    /// Whether phones may transfer calls with REFER (blind, or attended with `Replaces`) and
    /// replace dialogs with `INVITE … Replaces:`; false answers both with 403.
    pub allow_refer: bool,
}

/// Whether the engine secures a B leg with SDES-SRTP (see [`CallsConfig::srtp`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SrtpPolicy {
    /// The B leg uses SRTP when the A leg does.
    #[default]
    Mirror,
    /// The B leg is offered SDES-SRTP (`RTP/SAVP` with `a=crypto`) whatever the A leg uses.
    Sdes,
    /// The B leg is always plain RTP.
    Off,
    /// The B leg is offered DTLS-SRTP (`UDP/TLS/RTP/SAVP`, `a=fingerprint`, `a=setup:actpass`).
    Dtls,
}

/// What the engine does with DTLS-SRTP offers (see [`CallsConfig::dtls`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DtlsMode {
    /// The engine is the DTLS endpoint of the leg.
    #[default]
    Terminate,
    /// The section passes through untouched (end-to-end DTLS between the phones).
    Passthrough,
    /// 488 Not Acceptable Here.
    Reject,
}

impl CallsConfig {
    /// The SRTP policy toward callee `user` (its override, matched case-insensitively, else
    /// the default).
    pub fn srtp_for(&self, user: Option<&str>) -> SrtpPolicy {
        user.and_then(|u| {
            self.srtp_users
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(u))
                .map(|(_, p)| *p)
        })
        .unwrap_or(self.srtp)
    }
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        RegistrarConfig {
            realm: "switchboard".into(),
            min_expires_secs: 60,
            max_expires_secs: 3600,
            default_expires_secs: 3600,
            nonce_ttl_secs: 300,
            unknown_user_status: 403,
            max_auth_failures_per_min: 20,
            seed_demo_users: true,
            digest_algorithms: vec!["MD5".into()],
            nat_keepalive: NatKeepalive::Off,
            nat_keepalive_secs: 30,
            nat_keepalive_failures: 3,
        }
    }
}

impl Default for CallsConfig {
    fn default() -> Self {
        CallsConfig {
            trusted_sources: Vec::new(),
            no_answer_timeout_secs: 60,
            max_duration_secs: 4 * 3600,
            rtp_timeout_secs: 60,
            debug_panic_injection: false,
            srtp: SrtpPolicy::Mirror,
            srtp_users: std::collections::BTreeMap::new(),
            dtls: DtlsMode::Terminate,
            dtls_certificate: String::new(),
            dtls_handshake_timeout_secs: 10,
            session_expires: 1800,
            min_se: 90,
            allow_refer: true,
        }
    }
}

/// SIP listeners and protocol settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipConfig {
    /// UDP listen addresses.
    pub udp_listen: Vec<SocketAddr>,
    /// TCP listen addresses.
    pub tcp_listen: Vec<SocketAddr>,
    /// SIP over TLS listen addresses (RFC 3261 §26; usually port 5061). Needs `tls_cert` and
    /// `tls_key`.
    pub tls_listen: Vec<SocketAddr>,
    /// SIP over WebSocket listen addresses (RFC 7118, plain `ws://`).
    pub ws_listen: Vec<SocketAddr>,
    /// SIP over secure WebSocket listen addresses (`wss://`, the TLS settings below).
    pub wss_listen: Vec<SocketAddr>,
    /// PEM file with the server certificate chain (leaf first) for TLS and WSS.
    pub tls_cert: Option<PathBuf>,
    /// PEM file with the private key of `tls_cert` (PKCS#8, PKCS#1 or SEC1).
    pub tls_key: Option<PathBuf>,
    /// PEM file with the CA certificates client certificates must chain to. When set, TLS and
    /// WSS clients must present a valid certificate (mutual TLS).
    pub tls_client_ca: Option<PathBuf>,
    /// The address put in Via and Contact when it differs from the listen address (NAT).
    pub advertised_address: Option<IpAddr>,
    /// Per listen socket: the public IP put in Via and Contact for messages through that
    /// listener (`{ "10.0.0.5:5060" = "203.0.113.5" }`); wins over `advertised_address`.
    pub advertised_addresses: std::collections::BTreeMap<SocketAddr, IpAddr>,
    /// RFC 3261 T1 in milliseconds (RTT estimate).
    pub t1_ms: u64,
    /// RFC 3261 T2 in milliseconds (maximum non-INVITE retransmit interval).
    pub t2_ms: u64,
    /// RFC 3261 T4 in milliseconds (maximum time a message stays in the network).
    pub t4_ms: u64,
}

/// The HTTP listener.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Listen address.
    pub listen: SocketAddr,
}

/// Storage locations.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// The data directory (SQLite database, recordings).
    pub dir: PathBuf,
}

/// RTP addresses and port range.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// The address RTP sockets bind to (and put in SDP unless `sip.advertised_address` is set).
    pub rtp_ip: std::net::IpAddr,
    /// First RTP port (even).
    pub rtp_port_min: u16,
    /// Last RTP port.
    pub rtp_port_max: u16,
}

/// Limits that keep bad or heavy traffic from exhausting the engine.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest SIP message accepted, in bytes (UDP datagram or framed TCP message).
    pub max_message_bytes: usize,
    /// Most concurrent TCP connections.
    pub max_tcp_connections: usize,
    /// A TCP connection with no traffic for this long is closed (RFC 5626 keep-alives count).
    pub tcp_idle_timeout_secs: u64,
    /// A TCP message that has started but is not complete after this long closes the connection.
    pub tcp_message_timeout_secs: u64,
    /// A TLS handshake or WebSocket upgrade not complete after this long closes the connection.
    pub handshake_timeout_secs: u64,
    /// Most concurrent TLS, WS and WSS connections (handshakes included) from one IP address
    /// (0 = no limit). Plain TCP is bounded by `max_tcp_connections` only.
    pub max_connections_per_source: usize,
    /// Capacity of each shard's inbound queue (transport → transaction layer).
    pub queue_capacity: usize,
    /// Queue depth above which new out-of-dialog requests get 503 (in-dialog traffic still flows).
    pub overload_queue_depth: usize,
    /// New INVITEs per second accepted before 503 (0 = no limit).
    pub max_invites_per_sec: u32,
    /// Retry-After seconds sent with 503.
    pub retry_after_secs: u32,
    /// Most live transactions per shard.
    pub max_transactions: usize,
}

/// Runtime threads.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Number of shards (threads); 0 = one per core.
    pub shards: usize,
}

impl Default for SipConfig {
    fn default() -> Self {
        let addr = SocketAddr::from(([127, 0, 0, 1], 5060));
        SipConfig {
            udp_listen: vec![addr],
            tcp_listen: vec![addr],
            tls_listen: Vec::new(),
            ws_listen: Vec::new(),
            wss_listen: Vec::new(),
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            advertised_address: None,
            advertised_addresses: std::collections::BTreeMap::new(),
            t1_ms: 500,
            t2_ms: 4000,
            t4_ms: 5000,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
        }
    }
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            dir: PathBuf::from("./data"),
        }
    }
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            rtp_ip: IpAddr::from([127, 0, 0, 1]),
            rtp_port_min: 20000,
            rtp_port_max: 29999,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 65_535,
            max_tcp_connections: 10_000,
            tcp_idle_timeout_secs: 300,
            tcp_message_timeout_secs: 10,
            handshake_timeout_secs: 10,
            max_connections_per_source: 100,
            queue_capacity: 32_768,
            overload_queue_depth: 2_048,
            max_invites_per_sec: 0,
            retry_after_secs: 5,
            max_transactions: 1_000_000,
        }
    }
}

/// A configuration error: which file, which key, and why.
#[derive(Debug, thiserror::Error)]
#[error("{file}: key `{key}`: {reason}")]
pub struct ConfigError {
    /// The file (or `<defaults>`).
    pub file: String,
    /// The dotted key path (or `-` when the file as a whole is wrong).
    pub key: String,
    /// What is wrong.
    pub reason: String,
}

impl Config {
    /// Loads `path`, or the embedded defaults when `None`, and validates the result.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let Some(path) = path else {
            let c = Config::default();
            c.validate("<defaults>")?;
            return Ok(c);
        };
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            key: "-".into(),
            reason: format!("cannot read: {e}"),
        })?;
        let c = Config::parse(&text, &file)?;
        c.validate(&file)?;
        Ok(c)
    }

    /// Parses TOML text (without semantic validation).
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::parse(text).map_err(|e| ConfigError {
            file: file.to_string(),
            key: "-".into(),
            reason: e.message().to_string(),
        })?;
        serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            ConfigError {
                file: file.to_string(),
                key,
                reason: e.inner().message().to_string(),
            }
        })
    }

    /// Checks the values that parse but make no sense together.
    pub fn validate(&self, file: &str) -> Result<(), ConfigError> {
        let err = |key: &str, reason: &str| {
            Err(ConfigError {
                file: file.to_string(),
                key: key.to_string(),
                reason: reason.to_string(),
            })
        };
        let sip = &self.sip;
        if sip.udp_listen.is_empty()
            && sip.tcp_listen.is_empty()
            && sip.tls_listen.is_empty()
            && sip.ws_listen.is_empty()
            && sip.wss_listen.is_empty()
        {
            return err(
                "sip.udp_listen",
                "at least one UDP, TCP, TLS, WS or WSS listen address is needed",
            );
        }
        if !sip.tls_listen.is_empty() || !sip.wss_listen.is_empty() {
            if sip.tls_cert.is_none() {
                return err(
                    "sip.tls_cert",
                    "needed by sip.tls_listen and sip.wss_listen",
                );
            }
            if sip.tls_key.is_none() {
                return err("sip.tls_key", "needed by sip.tls_listen and sip.wss_listen");
            }
        }
        if let (Some(cert), Some(key)) = (&sip.tls_cert, &sip.tls_key) {
            // Read the files now, so a bad certificate stops the engine before anything is bound.
            if let Err(e) =
                crate::transport::tls::server_config(cert, key, sip.tls_client_ca.as_deref())
            {
                return err(e.key, &e.reason);
            }
        }
        if self.calls.min_se < 2
            || (self.calls.session_expires != 0 && self.calls.session_expires < self.calls.min_se)
        {
            return err(
                "calls.session_expires",
                "min_se must be >= 2 and session_expires 0 or >= min_se",
            );
        }
        let ev = &self.events;
        if ev.retention_hours == 0 {
            return err("events.retention_hours", "must be at least 1");
        }
        if ev.prune_interval_secs == 0 {
            return err("events.prune_interval_secs", "must be at least 1");
        }
        if !(16..=1_048_576).contains(&ev.consumer_buffer) {
            return err("events.consumer_buffer", "must be between 16 and 1048576");
        }
        for (i, w) in ev.webhooks.iter().enumerate() {
            if !w.url.starts_with("http://") {
                return err(
                    &format!("events.webhooks[{i}].url"),
                    "must be an http:// URL",
                );
            }
            if w.secret.is_empty() {
                return err(&format!("events.webhooks[{i}].secret"), "must not be empty");
            }
        }
        if self.sip.t1_ms == 0 || self.sip.t2_ms < self.sip.t1_ms {
            return err("sip.t2_ms", "T1 must be > 0 and T2 >= T1");
        }
        if !self.media.rtp_port_min.is_multiple_of(2) {
            return err(
                "media.rtp_port_min",
                "must be even (RTP on even ports, RTCP on odd)",
            );
        }
        if self.media.rtp_port_min >= self.media.rtp_port_max {
            return err(
                "media.rtp_port_max",
                "must be greater than media.rtp_port_min",
            );
        }
        let l = &self.limits;
        if !(512..=1_048_576).contains(&l.max_message_bytes) {
            return err(
                "limits.max_message_bytes",
                "must be between 512 and 1048576",
            );
        }
        if l.queue_capacity == 0 {
            return err("limits.queue_capacity", "must be > 0");
        }
        if l.overload_queue_depth == 0 || l.overload_queue_depth > l.queue_capacity {
            return err(
                "limits.overload_queue_depth",
                "must be > 0 and <= limits.queue_capacity",
            );
        }
        if l.tcp_idle_timeout_secs == 0 || l.tcp_message_timeout_secs == 0 {
            return err("limits.tcp_idle_timeout_secs", "timeouts must be > 0");
        }
        if l.handshake_timeout_secs == 0 {
            return err("limits.handshake_timeout_secs", "must be > 0");
        }
        let r = &self.registrar;
        if r.min_expires_secs > r.max_expires_secs {
            return err(
                "registrar.min_expires_secs",
                "must be <= registrar.max_expires_secs",
            );
        }
        if r.digest_algorithms.is_empty()
            || r.digest_algorithms
                .iter()
                .any(|a| a != "MD5" && a != "SHA-256")
        {
            return err(
                "registrar.digest_algorithms",
                "a non-empty list of \"SHA-256\" and \"MD5\"",
            );
        }
        if !matches!(r.unknown_user_status, 403 | 404) {
            return err("registrar.unknown_user_status", "must be 403 or 404");
        }
        if let Some(url) = &self.database.url {
            if !(url.starts_with("sqlite:")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://"))
            {
                return err("database.url", "must start with sqlite: or postgres://");
            }
        }
        for (i, s) in self.calls.trusted_sources.iter().enumerate() {
            if parse_cidr(s).is_none() {
                return err(
                    &format!("calls.trusted_sources[{i}]"),
                    "not an IP address or CIDR",
                );
            }
        }
        self.validate_trunks(file)?;
        if let Err((key, reason)) = self.api.validate() {
            return err(&key, &reason);
        }
        self.validate_channels(file)?;
        if let Err((key, reason)) = self.tickets.validate() {
            return err(&key, &reason);
        }
        if l.max_transactions == 0 {
            return err("limits.max_transactions", "must be > 0");
        }
        Ok(())
    }

    fn validate_channels(&self, file: &str) -> Result<(), ConfigError> {
        let err = |key: String, reason: &str| {
            Err(ConfigError {
                file: file.to_string(),
                key,
                reason: reason.to_string(),
            })
        };
        if self.chat.max_attachment_bytes == 0 {
            return err("chat.max_attachment_bytes".into(), "must be > 0");
        }
        if !matches!(
            self.webrtc.room_codec.to_ascii_lowercase().as_str(),
            "vp8" | "h264"
        ) {
            return err("webrtc.room_codec".into(), "must be vp8 or h264");
        }
        if self.chat.max_message_chars == 0 {
            return err("chat.max_message_chars".into(), "must be > 0");
        }
        for (name, c) in &self.channels {
            let ok_name = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok_name {
                return err(format!("channels.{name}"), "names use a-z, 0-9, - and _");
            }
            if c.secret.len() < 16 {
                return err(
                    format!("channels.{name}.secret"),
                    "at least 16 characters are needed",
                );
            }
            if !c.webhook_url.is_empty() && !c.webhook_url.starts_with("http://") {
                return err(
                    format!("channels.{name}.webhook_url"),
                    "an http:// URL (or empty)",
                );
            }
        }
        Ok(())
    }

    fn validate_trunks(&self, file: &str) -> Result<(), ConfigError> {
        let err = |key: String, reason: &str| {
            Err(ConfigError {
                file: file.to_string(),
                key,
                reason: reason.to_string(),
            })
        };
        const CODECS: [&str; 4] = ["pcmu", "pcma", "g722", "opus"];
        for (name, t) in &self.trunks {
            let k = |s: &str| format!("trunks.{name}.{s}");
            if t.gateways.iter().any(|g| g.weight == 0) {
                return err(k("gateways"), "weight must be > 0");
            }
            if !t.max_cps.is_finite() || t.max_cps < 0.0 {
                return err(k("max_cps"), "must be a number >= 0");
            }
            if t.number_format != NumberFormat::Asis
                && (t.country_code.is_empty()
                    || !t.country_code.bytes().all(|b| b.is_ascii_digit()))
            {
                return err(k("country_code"), "digits, needed by number_format");
            }
            for (i, c) in t.codecs.iter().enumerate() {
                if !CODECS.contains(&c.to_ascii_lowercase().as_str()) {
                    return err(k(&format!("codecs[{i}]")), "one of PCMU, PCMA, G722, opus");
                }
            }
            for (i, s) in t.inbound_sources.iter().enumerate() {
                if parse_cidr(s).is_none() {
                    return err(
                        k(&format!("inbound_sources[{i}]")),
                        "not an IP address or CIDR",
                    );
                }
            }
            if t.inbound_username.is_some() != t.inbound_password.is_some() {
                return err(
                    k("inbound_password"),
                    "inbound_username and inbound_password go together",
                );
            }
            if t.outbound_username.is_some() != t.outbound_password.is_some() {
                return err(
                    k("outbound_password"),
                    "outbound_username and outbound_password go together",
                );
            }
            if t.invite_timeout_ms == 0 {
                return err(k("invite_timeout_ms"), "must be > 0");
            }
            let p = &t.probe;
            if p.interval_secs > 0 && (p.timeout_ms == 0 || p.down_after == 0 || p.up_after == 0) {
                return err(
                    k("probe"),
                    "timeout_ms, down_after and up_after must be > 0",
                );
            }
            if t.tls_cert.is_some() != t.tls_key.is_some() {
                return err(k("tls_key"), "tls_cert and tls_key go together");
            }
            if t.transport == TrunkTransport::Tls && t.tls_verify && t.tls_ca.is_none() {
                return err(
                    k("tls_ca"),
                    "needed with transport = \"tls\" (or tls_verify = false)",
                );
            }
            if let Some(r) = &t.register {
                if r.username.is_empty() {
                    return err(k("register.username"), "needed for registration");
                }
                if r.expires_secs < 2 {
                    return err(k("register.expires_secs"), "must be >= 2");
                }
                if r.timeout_ms == 0 || r.retry_min_secs == 0 || r.retry_max_secs < r.retry_min_secs
                {
                    return err(
                        k("register.retry_min_secs"),
                        "timeout_ms and retry_min_secs > 0, retry_max_secs >= retry_min_secs",
                    );
                }
            }
        }
        for (table, prefixes) in &self.routes {
            for (prefix, trunks) in prefixes {
                let key = format!("routes.{table}.\"{prefix}\"");
                if !prefix
                    .trim_start_matches('+')
                    .bytes()
                    .all(|b| b.is_ascii_digit())
                {
                    return err(key, "a prefix is digits, optionally after `+`");
                }
                if trunks.is_empty() {
                    return err(key, "lists at least one trunk");
                }
                if let Some(t) = trunks.iter().find(|t| !self.trunks.contains_key(*t)) {
                    return err(key, &format!("no trunk `{t}`"));
                }
            }
        }
        Ok(())
    }

    /// The number of shards to run.
    pub fn shard_count(&self) -> usize {
        match self.runtime.shards {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    /// The database URL: the configured one, or SQLite in the data directory.
    pub fn database_url(&self) -> String {
        match &self.database.url {
            Some(u) => u.clone(),
            None => format!(
                "sqlite://{}?mode=rwc",
                self.data.dir.join("switchboard.db").display()
            ),
        }
    }

    /// T1 as a duration.
    pub fn t1(&self) -> Duration {
        Duration::from_millis(self.sip.t1_ms)
    }
}

/// Parses `a.b.c.d`, `a.b.c.d/n` or an IPv6 equivalent into (network, prefix length).
pub fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (ip, len) = match s.split_once('/') {
        Some((ip, len)) => (ip.parse::<IpAddr>().ok()?, len.parse::<u8>().ok()?),
        None => {
            let ip = s.parse::<IpAddr>().ok()?;
            (ip, if ip.is_ipv4() { 32 } else { 128 })
        }
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((ip, len))
}

/// True when `addr` lies inside the network `(net, len)`.
pub fn cidr_contains(net: (IpAddr, u8), addr: IpAddr) -> bool {
    match (net.0, addr) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(net.1)).unwrap_or(0);
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(net.1)).unwrap_or(0);
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        let net = parse_cidr("127.0.0.0/8").unwrap();
        assert!(cidr_contains(net, "127.1.2.3".parse().unwrap()));
        assert!(!cidr_contains(net, "10.0.0.1".parse().unwrap()));
        assert!(cidr_contains(
            parse_cidr("0.0.0.0/0").unwrap(),
            "10.0.0.1".parse().unwrap()
        ));
        assert!(parse_cidr("1.2.3.4/33").is_none());
    }

    #[test]
    fn trunk_errors_name_the_key() {
        let key = |text: &str| {
            Config::parse(text, "f.toml")
                .and_then(|c| c.validate("f.toml"))
                .unwrap_err()
                .key
        };
        assert_eq!(
            key("[trunks.a]\ninbound_sources = [\"x\"]\n"),
            "trunks.a.inbound_sources[0]"
        );
        assert_eq!(
            key("[trunks.a]\naddress = \"127.0.0.1:5070\"\ncodecs = [\"GSM\"]\n"),
            "trunks.a.codecs[0]"
        );
        assert_eq!(
            key("[trunks.a]\nnumber_format = \"e164\"\n"),
            "trunks.a.country_code"
        );
        assert_eq!(
            key("[trunks.a]\n[trunks.a.register]\npassword = \"p\"\n"),
            "trunks.a.register.username"
        );
        assert_eq!(
            key("[routes.lcr]\n\"44\" = [\"nope\"]\n"),
            "routes.lcr.\"44\""
        );
        assert_eq!(
            key("[trunks.a]\nstrategy = \"random\"\n"),
            "trunks.a.strategy"
        );
        let c = Config::parse(
            "[trunks.a]\ngateways = [{ address = \"127.0.0.1:5070\", weight = 2 }]\nmax_cps = 5\n\
             [routes.lcr]\n\"+44\" = [\"a\"]\n",
            "f.toml",
        )
        .unwrap();
        c.validate("f.toml").unwrap();
        assert_eq!(c.trunks["a"].all_gateways()[0].weight, 2);
        assert_eq!(c.trunks["a"].max_cps, 5.0);
    }

    #[test]
    fn defaults_are_valid() {
        Config::load(None).unwrap();
    }

    #[test]
    fn errors_name_the_key() {
        let e = Config::parse("[sip]\nudp_listen = [\"nonsense\"]\n", "f.toml").unwrap_err();
        assert_eq!(e.key, "sip.udp_listen[0]");
        let e = Config::parse("[limits]\nbogus = 1\n", "f.toml").unwrap_err();
        assert!(e.reason.contains("bogus"), "{e}");
        let c = Config::parse("[media]\nrtp_port_min = 3001\n", "f.toml").unwrap();
        assert_eq!(c.validate("f.toml").unwrap_err().key, "media.rtp_port_min");
        let c = Config::parse("[sip]\ntls_listen = [\"127.0.0.1:5061\"]\n", "f.toml").unwrap();
        assert_eq!(c.validate("f.toml").unwrap_err().key, "sip.tls_cert");
        let c = Config::parse(
            "[sip]\ntls_listen = [\"127.0.0.1:5061\"]\ntls_cert = \"/nonexistent/c.pem\"\ntls_key = \"/nonexistent/k.pem\"\n",
            "f.toml",
        )
        .unwrap();
        let e = c.validate("f.toml").unwrap_err();
        assert_eq!(e.key, "sip.tls_cert");
        assert!(e.reason.contains("/nonexistent/c.pem"), "{e}");
    }
}
