//! Bearer-token authentication and role checks for every `/api/v1` route.
//!
//! [`ROUTES`] is the one table that decides the minimum role per (method, path pattern); it is
//! also the list of routes the OpenAPI document must describe (checked by a test). A route
//! missing from the table needs `read_only` for `GET`/`HEAD` and `admin` for anything else.
//!
//! With no token configured the API is open (development mode; a warning is logged at start).

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method};
use actix_web::middleware::Next;
use actix_web::{web, Error, HttpResponse};
use serde_json::json;
use switchboard_engine::api_config::{ApiRole, ApiTokenConfig};

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without a token.
    Public,
    /// A token with at least this role.
    Role(ApiRole),
    /// An agent token whose agent is the route's `{name}`, or a supervisor.
    OwnAgent,
}

/// A method of the route table; `Any` matches every method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum M {
    /// `GET`.
    Get,
    /// `POST`.
    Post,
    /// `PUT`.
    Put,
    /// `DELETE`.
    Delete,
    /// `PATCH`.
    Patch,
    /// Every method (for prefix rules).
    Any,
}

impl M {
    /// The lowercase name OpenAPI uses (`any` for [`M::Any`]).
    pub fn name(self) -> &'static str {
        match self {
            M::Get => "get",
            M::Post => "post",
            M::Put => "put",
            M::Delete => "delete",
            M::Patch => "patch",
            M::Any => "any",
        }
    }

    fn matches(self, m: &Method) -> bool {
        match self {
            M::Get => m == Method::GET || m == Method::HEAD,
            M::Post => m == Method::POST,
            M::Put => m == Method::PUT,
            M::Delete => m == Method::DELETE,
            M::Patch => m == Method::PATCH,
            M::Any => true,
        }
    }
}

use Access::{OwnAgent, Public, Role};
use ApiRole::{Admin, Agent, ReadOnly, Supervisor};

/// Every HTTP route with who may call it: `(method, pattern, access)`. `{x}` matches one path
/// segment; a pattern ending in `/*` matches everything below it (rules for route families,
/// not listed in the OpenAPI document). The first match wins.
pub const ROUTES: &[(M, &str, Access)] = &[
    (M::Get, "/health", Public),
    (M::Get, "/metrics", Public),
    (M::Get, "/api/v1/openapi.json", Public),
    // Contact centre (`crate::contact::api`).
    (M::Get, "/api/v1/queues", Role(ReadOnly)),
    (M::Post, "/api/v1/queues", Role(Admin)),
    (M::Get, "/api/v1/queues/{name}", Role(ReadOnly)),
    (M::Put, "/api/v1/queues/{name}", Role(Admin)),
    (M::Delete, "/api/v1/queues/{name}", Role(Admin)),
    (M::Get, "/api/v1/agents", Role(ReadOnly)),
    (M::Post, "/api/v1/agents", Role(Admin)),
    (M::Get, "/api/v1/agents/{name}", Role(ReadOnly)),
    (M::Put, "/api/v1/agents/{name}", Role(Admin)),
    (M::Delete, "/api/v1/agents/{name}", Role(Admin)),
    (M::Post, "/api/v1/agents/{name}/login", OwnAgent),
    (M::Post, "/api/v1/agents/{name}/logout", OwnAgent),
    (M::Put, "/api/v1/agents/{name}/state", OwnAgent),
    (M::Put, "/api/v1/agents/{name}/skills", Role(Admin)),
    (M::Get, "/api/v1/agents/{name}/ws", OwnAgent),
    (M::Get, "/api/v1/workflow", Role(ReadOnly)),
    (M::Put, "/api/v1/workflow", Role(Admin)),
    (M::Get, "/api/v1/interactions", Role(ReadOnly)),
    (M::Post, "/api/v1/interactions", Role(Supervisor)),
    (M::Get, "/api/v1/interactions/{id}", Role(ReadOnly)),
    (M::Post, "/api/v1/interactions/{id}/move", Role(Supervisor)),
    (M::Post, "/api/v1/interactions/{id}/end", Role(Supervisor)),
    (
        M::Put,
        "/api/v1/interactions/{id}/supervision",
        Role(Supervisor),
    ),
    (M::Get, "/api/v1/metrics/queues", Role(ReadOnly)),
    (M::Get, "/api/v1/metrics/queues/{name}", Role(ReadOnly)),
    (M::Get, "/api/v1/metrics/agents", Role(ReadOnly)),
    (M::Get, "/api/v1/metrics/agents/{name}", Role(ReadOnly)),
    // Dialplans (`crate::dialplan::configure`), trunks and bans (`crate::trunk::api`).
    (M::Get, "/api/v1/dialplans", Role(ReadOnly)),
    (M::Post, "/api/v1/dialplans/reload", Role(Admin)),
    (M::Post, "/api/v1/dialplans/check", Role(ReadOnly)),
    (M::Get, "/api/v1/trunks", Role(ReadOnly)),
    (M::Get, "/api/v1/trunks/{name}", Role(ReadOnly)),
    (M::Get, "/api/v1/bans", Role(ReadOnly)),
    // Records (`crate::api::records`).
    (M::Get, "/api/v1/registrations", Role(ReadOnly)),
    (M::Get, "/api/v1/cdrs", Role(ReadOnly)),
    (M::Get, "/api/v1/cdrs/{id}", Role(ReadOnly)),
    (M::Get, "/api/v1/recordings", Role(ReadOnly)),
    (M::Get, "/api/v1/recordings/{id}", Role(ReadOnly)),
    (M::Get, "/api/v1/users", Role(ReadOnly)),
    (M::Post, "/api/v1/users", Role(Admin)),
    (M::Delete, "/api/v1/users/{name}", Role(Admin)),
    // Reports (`crate::reports::api`).
    (M::Get, "/api/v1/reports", Role(ReadOnly)),
    (M::Get, "/api/v1/reports/files/{name}", Role(ReadOnly)),
    (M::Get, "/api/v1/reports/{report}", Role(ReadOnly)),
    // Chat (`crate::chat::api`): the API channel's inbound endpoint checks the channel's own
    // HMAC signature instead of a token; agents write into chats.
    (M::Post, "/api/v1/channels/{channel}/messages", Public),
    (M::Get, "/api/v1/chats/{id}", Role(ReadOnly)),
    (M::Post, "/api/v1/chats/{id}/messages", Role(Agent)),
    (M::Post, "/api/v1/chats/{id}/attachments", Role(Agent)),
    (
        M::Get,
        "/api/v1/chats/{id}/attachments/{att}",
        Role(ReadOnly),
    ),
    // CRM, tickets, CSAT and search (`crate::crm::api`): agents keep records; merges are a
    // supervisor's, ticket configuration an admin's.
    (M::Post, "/api/v1/contacts", Role(Agent)),
    (M::Get, "/api/v1/contacts", Role(ReadOnly)),
    (M::Get, "/api/v1/contacts/{id}", Role(ReadOnly)),
    (M::Patch, "/api/v1/contacts/{id}", Role(Agent)),
    (M::Post, "/api/v1/contacts/{id}/identities", Role(Agent)),
    (M::Post, "/api/v1/contacts/{id}/interactions", Role(Agent)),
    (M::Post, "/api/v1/contacts/{id}/merge", Role(Supervisor)),
    (M::Get, "/api/v1/contacts/{id}/merges", Role(ReadOnly)),
    (M::Get, "/api/v1/contacts/{id}/timeline", Role(ReadOnly)),
    (
        M::Post,
        "/api/v1/crm/interactions/{id}/messages",
        Role(Agent),
    ),
    (M::Post, "/api/v1/interactions/{id}/csat", Role(Agent)),
    (M::Get, "/api/v1/metrics/csat", Role(ReadOnly)),
    (M::Get, "/api/v1/search", Role(ReadOnly)),
    (M::Get, "/api/v1/ticket-groups", Role(ReadOnly)),
    (M::Get, "/api/v1/ticket-groups/{name}", Role(ReadOnly)),
    (M::Put, "/api/v1/ticket-groups/{name}", Role(Admin)),
    (M::Get, "/api/v1/ticket-types", Role(ReadOnly)),
    (M::Get, "/api/v1/ticket-types/{name}", Role(ReadOnly)),
    (M::Put, "/api/v1/ticket-types/{name}", Role(Admin)),
    (M::Post, "/api/v1/tickets", Role(Agent)),
    (M::Patch, "/api/v1/tickets/{id}", Role(Agent)),
    (M::Get, "/api/v1/tickets/{id}", Role(ReadOnly)),
    (M::Post, "/api/v1/tickets/{id}/notes", Role(Agent)),
    // Ticket attachments (`crate::crm::attachments`): deleting evidence is a supervisor's.
    (M::Post, "/api/v1/tickets/{id}/attachments", Role(Agent)),
    (M::Get, "/api/v1/tickets/{id}/attachments", Role(ReadOnly)),
    (
        M::Get,
        "/api/v1/tickets/{id}/attachments/{aid}",
        Role(ReadOnly),
    ),
    (
        M::Delete,
        "/api/v1/tickets/{id}/attachments/{aid}",
        Role(Supervisor),
    ),
    // The event stream (`crate::events::api`): JSON pages and the WebSocket.
    (M::Get, "/api/v1/events", Role(ReadOnly)),
    // Call control (`crate::calls_api`): acting on a call is a supervisor's job.
    (M::Get, "/api/v1/calls", Role(ReadOnly)),
    (M::Post, "/api/v1/calls", Role(Supervisor)),
    (M::Get, "/api/v1/calls/{id}", Role(ReadOnly)),
    (M::Delete, "/api/v1/calls/{id}", Role(Supervisor)),
    (M::Post, "/api/v1/calls/{id}/transfer", Role(Supervisor)),
    (M::Post, "/api/v1/calls/{id}/recording", Role(Supervisor)),
    (M::Post, "/api/v1/calls/{id}/play", Role(Supervisor)),
    (M::Post, "/api/v1/calls/{id}/dtmf", Role(Supervisor)),
];

/// Whether `path` matches `pattern`; returns the `{name}` segment when there is one.
fn matches<'p>(pattern: &str, path: &'p str) -> Option<Option<&'p str>> {
    let mut name = None;
    let mut pi = pattern.split('/');
    let mut si = path.split('/');
    loop {
        match (pi.next(), si.next()) {
            (None, None) => return Some(name),
            (Some("*"), Some(s)) if !s.is_empty() => return Some(name),
            (Some(p), Some(s)) if p.starts_with('{') && p.ends_with('}') => {
                if s.is_empty() {
                    return None;
                }
                if p == "{name}" {
                    name = Some(s);
                }
            }
            (Some(p), Some(s)) if p == s => {}
            _ => return None,
        }
    }
}

/// The access rule for a request and the path's `{name}` segment.
pub fn access(method: &Method, path: &str) -> (Access, Option<String>) {
    for (m, pattern, a) in ROUTES {
        if m.matches(method) {
            if let Some(name) = matches(pattern, path) {
                return (*a, name.map(percent_decode));
            }
        }
    }
    let default = if method == Method::GET || method == Method::HEAD {
        ReadOnly
    } else {
        Admin
    };
    (Role(default), None)
}

/// Decodes `%xx` escapes (as actix does for path parameters), leaving bad escapes as they are.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                // Two hex digits make one byte: h and l are below 16.
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The token table the middleware checks against.
pub struct Auth {
    tokens: Vec<ApiTokenConfig>,
    public: Vec<String>,
}

impl Auth {
    /// A table of `tokens`, with extra public paths (exact, or prefixes ending in `*`).
    pub fn new(tokens: Vec<ApiTokenConfig>, public: Vec<String>) -> Auth {
        Auth { tokens, public }
    }

    /// True when no token is configured: every request passes.
    pub fn is_open(&self) -> bool {
        self.tokens.is_empty()
    }

    fn is_public(&self, path: &str) -> bool {
        self.public.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix),
            None => p == path,
        })
    }

    /// The token matching `given` (every token is compared in constant time).
    fn find(&self, given: &str) -> Option<&ApiTokenConfig> {
        let mut found = None;
        for t in &self.tokens {
            if ct_eq(t.token.as_bytes(), given.as_bytes()) {
                found = Some(t);
            }
        }
        found
    }

    /// Decides a request: `Ok` to pass, or the refusal (401 or 403).
    pub fn check(
        &self,
        method: &Method,
        path: &str,
        bearer: Option<&str>,
    ) -> Result<(), (u16, String)> {
        let on_api = path == "/api/v1" || path.starts_with("/api/v1/");
        let (rule, name) = access(method, path);
        if !on_api || rule == Public || self.is_public(path) || self.is_open() {
            return Ok(());
        }
        let Some(given) = bearer else {
            return Err((401, "a bearer token is required".into()));
        };
        let Some(tok) = self.find(given) else {
            return Err((401, "unknown token".into()));
        };
        let ok = match rule {
            Public => true,
            Role(min) => tok.role >= min,
            OwnAgent => {
                tok.role >= Supervisor
                    || (tok.role == ApiRole::Agent
                        && tok.agent.is_some()
                        && tok.agent.as_deref() == name.as_deref())
            }
        };
        if ok {
            return Ok(());
        }
        let need = match rule {
            Role(min) => format!("role `{}`", min.name()),
            _ => "the agent's own token or role `supervisor`".into(),
        };
        Err((
            403,
            format!(
                "role `{}` may not {method} {path}: needs {need}",
                tok.role.name()
            ),
        ))
    }
}

/// Constant-time equality of two byte strings (the length is not secret).
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token of a request: `Authorization: Bearer …`, or `?token=…` on a WebSocket upgrade.
fn bearer(req: &ServiceRequest) -> Option<String> {
    if let Some(v) = req.headers().get(header::AUTHORIZATION) {
        let v = v.to_str().ok()?.trim();
        let (scheme, rest) = v.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| rest.trim().to_string());
    }
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !upgrade {
        return None;
    }
    req.query_string()
        .split('&')
        .find_map(|kv| kv.strip_prefix("token="))
        .map(percent_decode)
}

/// The actix middleware: applies [`Auth::check`] to every request (the app holds a
/// `web::Data<Auth>`; without one every request passes).
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let verdict = match req.app_data::<web::Data<Auth>>() {
        Some(auth) => auth.check(req.method(), req.path(), bearer(&req).as_deref()),
        None => Ok(()),
    };
    match verdict {
        Ok(()) => Ok(next.call(req).await?.map_into_left_body()),
        Err((status, error)) => {
            tracing::debug!(status, method = %req.method(), path = req.path(), %error, "API request refused");
            let mut resp = if status == 401 {
                let mut r = HttpResponse::Unauthorized();
                r.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
                r
            } else {
                HttpResponse::Forbidden()
            };
            let resp = resp.json(json!({"error": error, "field": "authorization"}));
            Ok(req.into_response(resp).map_into_right_body())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(token: &str, role: ApiRole, agent: Option<&str>) -> ApiTokenConfig {
        ApiTokenConfig {
            token: token.into(),
            role,
            agent: agent.map(Into::into),
        }
    }

    fn auth() -> Auth {
        Auth::new(
            vec![
                tok("ro", ReadOnly, None),
                tok("al", ApiRole::Agent, Some("alice")),
                tok("sv", Supervisor, None),
                tok("ad", Admin, None),
            ],
            vec!["/api/v1/public/*".into()],
        )
    }

    fn code(a: &Auth, m: Method, path: &str, t: Option<&str>) -> u16 {
        a.check(&m, path, t).err().map_or(200, |e| e.0)
    }

    #[test]
    fn patterns_match_segments() {
        assert_eq!(
            matches("/api/v1/agents/{name}/state", "/api/v1/agents/bob/state"),
            Some(Some("bob"))
        );
        assert_eq!(matches("/api/v1/agents/{name}", "/api/v1/agents/"), None);
        assert_eq!(matches("/api/v1/agents", "/api/v1/agents/x"), None);
        assert_eq!(
            matches("/api/v1/calls/*", "/api/v1/calls/1/hangup"),
            Some(None)
        );
        assert_eq!(matches("/api/v1/calls/*", "/api/v1/calls"), None);
    }

    #[test]
    fn roles_are_checked() {
        let a = auth();
        assert_eq!(code(&a, Method::GET, "/api/v1/queues", None), 401);
        assert_eq!(code(&a, Method::GET, "/api/v1/queues", Some("nope")), 401);
        assert_eq!(code(&a, Method::GET, "/api/v1/queues", Some("ro")), 200);
        assert_eq!(code(&a, Method::POST, "/api/v1/queues", Some("sv")), 403);
        assert_eq!(code(&a, Method::POST, "/api/v1/queues", Some("ad")), 200);
        assert_eq!(
            code(&a, Method::POST, "/api/v1/interactions/3/move", Some("al")),
            403
        );
        assert_eq!(
            code(&a, Method::POST, "/api/v1/interactions/3/move", Some("sv")),
            200
        );
        // Unknown routes: reads need a token, writes need admin.
        assert_eq!(code(&a, Method::GET, "/api/v1/nothing", Some("ro")), 200);
        assert_eq!(code(&a, Method::POST, "/api/v1/nothing", Some("sv")), 403);
        assert_eq!(code(&a, Method::PATCH, "/api/v1/queues", Some("ad")), 200);
        // Public paths.
        assert_eq!(code(&a, Method::GET, "/api/v1/openapi.json", None), 200);
        assert_eq!(code(&a, Method::GET, "/api/v1/public/x", None), 200);
        assert_eq!(code(&a, Method::GET, "/health", None), 200);
        assert_eq!(code(&a, Method::GET, "/", None), 200);
    }

    #[test]
    fn agents_act_on_themselves_only() {
        let a = auth();
        let p = "/api/v1/agents/alice/state";
        assert_eq!(code(&a, Method::PUT, p, Some("al")), 200);
        assert_eq!(code(&a, Method::PUT, p, Some("ro")), 403);
        assert_eq!(code(&a, Method::PUT, p, Some("sv")), 200);
        let other = "/api/v1/agents/bob/state";
        assert_eq!(code(&a, Method::PUT, other, Some("al")), 403);
        assert_eq!(
            code(&a, Method::GET, "/api/v1/agents/alice/ws", Some("al")),
            200
        );
        assert_eq!(
            code(&a, Method::GET, "/api/v1/agents/bob/ws", Some("al")),
            403
        );
        assert_eq!(
            code(&a, Method::GET, "/api/v1/agents/%61lice/ws", Some("al")),
            200
        );
        assert_eq!(
            code(&a, Method::PUT, "/api/v1/agents/alice", Some("al")),
            403
        );
    }

    #[test]
    fn open_without_tokens() {
        let a = Auth::new(vec![], vec![]);
        assert!(a.is_open());
        assert_eq!(code(&a, Method::DELETE, "/api/v1/queues/x", None), 200);
    }

    #[test]
    fn percent_decoding_is_total() {
        assert_eq!(percent_decode("a%20b"), "a b");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("x%41"), "xA");
    }
}
