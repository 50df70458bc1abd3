//! The REST control plane against the release binary with API tokens configured: every
//! endpoint's happy path, bad input (4xx naming the field), a role that is not enough (403)
//! and no token (401); the OpenAPI document lists every route and every route it lists is
//! served; recordings download with HTTP Range, byte-exact against the file.

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use switchboard_tests::phone::{Phone, PhoneCodec};
use switchboard_tests::{register, Engine};

const ADMIN: &str = "admin-token-0123456789";
const SUPERVISOR: &str = "supervisor-token-0123456789";
const ALICE: &str = "alice-agent-token-0123456789";
const READ_ONLY: &str = "read-only-token-0123456789";

/// An engine with one token per role; the supervisor's comes from `tokens_file`. `extra` is
/// more TOML.
fn engine_with(extra: &str) -> Engine {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("tokens.toml");
    std::fs::write(
        &file,
        format!("[[tokens]]\ntoken = \"{SUPERVISOR}\"\nrole = \"supervisor\"\n"),
    )
    .expect("write tokens file");
    // The engine's own temp dir is created by `Engine::start`: keep the tokens file alive by
    // leaking its directory for the test's lifetime.
    let path = file.display().to_string();
    std::mem::forget(dir);
    Engine::start(&format!(
        "[calls]\ntrusted_sources = [\"127.0.0.1\"]\n\
         [contact_centre]\nconfig_file = \"\"\n\
         [api]\ntokens_file = \"{path}\"\n\
         [[api.tokens]]\ntoken = \"{ADMIN}\"\nrole = \"admin\"\n\
         [[api.tokens]]\ntoken = \"{ALICE}\"\nrole = \"agent\"\nagent = \"alice\"\n\
         [[api.tokens]]\ntoken = \"{READ_ONLY}\"\nrole = \"read_only\"\n{extra}"
    ))
}

/// [`engine_with`] routing calls straight to registered users (no dialplan).
fn engine() -> Engine {
    engine_with("")
}

/// One HTTP answer.
struct Resp {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

/// A raw HTTP/1.1 request (chunked answers are decoded).
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> Resp {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() || matches!(method, "POST" | "PUT") {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).expect("send");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
            let n = usize::from_str_radix(String::from_utf8_lossy(&rest[..eol]).trim(), 16)
                .unwrap_or(0);
            if n == 0 {
                break;
            }
            out.extend_from_slice(&rest[eol + 2..eol + 2 + n]);
            rest = &rest[eol + 2 + n + 2..];
        }
        body = out;
    }
    Resp { status, head, body }
}

/// Test context: the engine and shorthand requests.
struct Api {
    e: Engine,
}

impl Api {
    fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> Resp {
        let b = body.map(|b| b.to_string());
        http(self.e.http_addr(), method, path, token, b.as_deref(), &[])
    }

    /// Must answer `status`; returns the JSON.
    fn ok(&self, method: &str, path: &str, token: &str, body: Option<Value>, status: u16) -> Value {
        let r = self.call(method, path, Some(token), body);
        assert_eq!(r.status, status, "{method} {path}: {}", r.text());
        r.json()
    }

    /// Must answer a 4xx naming `field`.
    fn bad(&self, method: &str, path: &str, body: Option<Value>, status: u16, field: &str) {
        let r = self.call(method, path, Some(ADMIN), body);
        assert_eq!(r.status, status, "{method} {path}: {}", r.text());
        let v = r.json();
        assert_eq!(v["field"], field, "{method} {path}: {v}");
        assert!(v["error"].is_string(), "{method} {path}: {v}");
    }

    /// No token → 401; `weak` (a role below the route's) → 403; both name `authorization`.
    fn guarded(&self, method: &str, path: &str, weak: Option<&str>, body: Option<Value>) {
        let r = self.call(method, path, None, body.clone());
        assert_eq!(
            r.status,
            401,
            "{method} {path} without a token: {}",
            r.text()
        );
        assert_eq!(r.json()["field"], "authorization");
        assert!(r.header("www-authenticate").is_some(), "{}", r.head);
        let r = self.call(method, path, Some("not-a-token"), body.clone());
        assert_eq!(r.status, 401, "{method} {path} with a bad token");
        if let Some(weak) = weak {
            let r = self.call(method, path, Some(weak), body);
            assert_eq!(r.status, 403, "{method} {path} as {weak}: {}", r.text());
            assert_eq!(r.json()["field"], "authorization");
        }
    }
}

/// Queues, agents, presence, workflow, interactions, metrics, dialplans, trunks and bans.
#[test]
fn existing_endpoints_check_roles_and_input() {
    // The demo dialplan as a file, so that a reload has something to load.
    let plan = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../dialplans/examples/default.yaml")
        .display()
        .to_string();
    let a = Api {
        e: engine_with(&format!("[dialplan]\nfile = \"{plan}\"\n")),
    };
    // Queues (admin writes).
    a.guarded(
        "POST",
        "/api/v1/queues",
        Some(SUPERVISOR),
        Some(json!({"name": "x"})),
    );
    a.ok(
        "POST",
        "/api/v1/queues",
        ADMIN,
        Some(json!({"name": "support"})),
        201,
    );
    a.ok(
        "POST",
        "/api/v1/queues",
        ADMIN,
        Some(json!({"name": "sales"})),
        201,
    );
    a.bad(
        "POST",
        "/api/v1/queues",
        Some(json!({"name": 5})),
        400,
        "name",
    );
    a.bad(
        "POST",
        "/api/v1/queues",
        Some(json!({"name": "bad name"})),
        400,
        "name",
    );
    a.guarded("GET", "/api/v1/queues", None, None);
    let qs = a.ok("GET", "/api/v1/queues", READ_ONLY, None, 200);
    assert_eq!(qs.as_array().map(Vec::len), Some(2), "{qs}");
    a.guarded("GET", "/api/v1/queues/support", None, None);
    a.ok("GET", "/api/v1/queues/support", READ_ONLY, None, 200);
    a.bad(
        "GET",
        "/api/v1/queues/support?from_ms=x",
        None,
        400,
        "query",
    );
    let body = json!({"name": "sales", "max_wait_secs": 60});
    a.guarded(
        "PUT",
        "/api/v1/queues/sales",
        Some(SUPERVISOR),
        Some(body.clone()),
    );
    a.ok("PUT", "/api/v1/queues/sales", ADMIN, Some(body), 200);
    let bad = json!({"name": "sales", "max_wait_secs": "soon"});
    a.bad(
        "PUT",
        "/api/v1/queues/sales",
        Some(bad),
        400,
        "max_wait_secs",
    );
    // Agents.
    let alice = json!({"name": "alice", "queues": [{"queue": "support"}]});
    a.guarded(
        "POST",
        "/api/v1/agents",
        Some(SUPERVISOR),
        Some(alice.clone()),
    );
    a.ok("POST", "/api/v1/agents", ADMIN, Some(alice), 201);
    let bob = json!({"name": "bob", "queues": [{"queue": "support"}]});
    a.ok("POST", "/api/v1/agents", ADMIN, Some(bob.clone()), 201);
    let bad = json!({"name": "carol", "skills": {"billing": "expert"}});
    a.bad("POST", "/api/v1/agents", Some(bad), 400, "skills.billing");
    a.guarded("GET", "/api/v1/agents", None, None);
    a.ok("GET", "/api/v1/agents", READ_ONLY, None, 200);
    a.ok("GET", "/api/v1/agents/alice", READ_ONLY, None, 200);
    a.guarded("GET", "/api/v1/agents/alice", None, None);
    a.bad("GET", "/api/v1/agents/nobody", None, 404, "agent");
    a.guarded("PUT", "/api/v1/agents/bob", Some(ALICE), Some(bob.clone()));
    a.ok("PUT", "/api/v1/agents/bob", ADMIN, Some(bob), 200);
    let bad = json!({"name": "bob", "languages": "en"});
    a.bad("PUT", "/api/v1/agents/bob", Some(bad), 400, "languages");
    // Skills: admin.
    let skills = json!({"billing": 4});
    a.guarded(
        "PUT",
        "/api/v1/agents/alice/skills",
        Some(SUPERVISOR),
        Some(skills.clone()),
    );
    a.ok(
        "PUT",
        "/api/v1/agents/alice/skills",
        ADMIN,
        Some(skills),
        200,
    );
    let bad = json!({"billing": "x"});
    a.bad(
        "PUT",
        "/api/v1/agents/alice/skills",
        Some(bad),
        400,
        "billing",
    );
    // Presence: the agent itself (or a supervisor); not another agent, not read_only.
    a.guarded("POST", "/api/v1/agents/alice/login", Some(READ_ONLY), None);
    a.ok("POST", "/api/v1/agents/alice/login", ALICE, None, 200);
    a.guarded("POST", "/api/v1/agents/bob/login", Some(ALICE), None);
    a.ok("POST", "/api/v1/agents/bob/login", SUPERVISOR, None, 200);
    a.bad("POST", "/api/v1/agents/nobody/login", None, 404, "agent");
    let brk = json!({"state": "break", "reason": "lunch"});
    a.guarded(
        "PUT",
        "/api/v1/agents/alice/state",
        Some(READ_ONLY),
        Some(brk.clone()),
    );
    a.ok(
        "PUT",
        "/api/v1/agents/alice/state",
        ALICE,
        Some(brk.clone()),
        200,
    );
    a.guarded(
        "PUT",
        "/api/v1/agents/bob/state",
        Some(ALICE),
        Some(brk.clone()),
    );
    a.ok(
        "PUT",
        "/api/v1/agents/bob/state",
        SUPERVISOR,
        Some(brk),
        200,
    );
    a.bad(
        "PUT",
        "/api/v1/agents/alice/state",
        Some(json!({"state": 3})),
        400,
        "state",
    );
    a.guarded("POST", "/api/v1/agents/alice/logout", Some(READ_ONLY), None);
    a.ok("POST", "/api/v1/agents/alice/logout", ALICE, None, 200);
    a.guarded("POST", "/api/v1/agents/bob/logout", Some(ALICE), None);
    a.ok("POST", "/api/v1/agents/alice/login", ALICE, None, 200);
    // Workflow.
    a.guarded("GET", "/api/v1/workflow", None, None);
    let wf = a.ok("GET", "/api/v1/workflow", READ_ONLY, None, 200);
    a.guarded(
        "PUT",
        "/api/v1/workflow",
        Some(SUPERVISOR),
        Some(wf.clone()),
    );
    a.ok("PUT", "/api/v1/workflow", ADMIN, Some(wf), 200);
    a.bad(
        "PUT",
        "/api/v1/workflow",
        Some(json!({"filters": 5})),
        400,
        "filters",
    );
    // Interactions: supervisor actions.
    let chat = json!({"channel": "chat", "queue": "sales"});
    a.guarded(
        "POST",
        "/api/v1/interactions",
        Some(ALICE),
        Some(chat.clone()),
    );
    let created = a.ok("POST", "/api/v1/interactions", SUPERVISOR, Some(chat), 201);
    let id = created["id"].as_u64().expect("an interaction id");
    a.bad(
        "POST",
        "/api/v1/interactions",
        Some(json!({"channel": "fax"})),
        400,
        "channel",
    );
    a.guarded("GET", "/api/v1/interactions", None, None);
    a.ok("GET", "/api/v1/interactions", READ_ONLY, None, 200);
    let one = format!("/api/v1/interactions/{id}");
    a.guarded("GET", &one, None, None);
    a.ok("GET", &one, READ_ONLY, None, 200);
    a.bad("GET", "/api/v1/interactions/abc", None, 400, "id");
    let mv = format!("/api/v1/interactions/{id}/move");
    let to = json!({"queue": "support"});
    a.guarded("POST", &mv, Some(ALICE), Some(to.clone()));
    a.ok("POST", &mv, SUPERVISOR, Some(to), 200);
    a.bad("POST", &mv, Some(json!({"queue": 1})), 400, "queue");
    let sup = format!("/api/v1/interactions/{id}/supervision");
    a.guarded("PUT", &sup, Some(ALICE), Some(json!({"mode": "listen"})));
    a.bad("PUT", &sup, Some(json!({"mode": "shout"})), 400, "mode");
    // A chat has no voice call to supervise (the happy path is in contact_centre_supervisor).
    a.bad("PUT", &sup, Some(json!({"mode": "listen"})), 404, "id");
    let end = format!("/api/v1/interactions/{id}/end");
    a.guarded("POST", &end, Some(ALICE), None);
    a.ok("POST", &end, SUPERVISOR, None, 200);
    a.bad("POST", "/api/v1/interactions/x/end", None, 400, "id");
    // Metrics.
    for p in [
        "/api/v1/metrics/queues",
        "/api/v1/metrics/queues/support",
        "/api/v1/metrics/agents",
        "/api/v1/metrics/agents/alice",
    ] {
        a.guarded("GET", p, None, None);
        a.ok("GET", p, READ_ONLY, None, 200);
        a.bad(
            "GET",
            &format!("{p}?from_ms=9&to_ms=1"),
            None,
            400,
            "from_ms",
        );
    }
    // Deletions (admin).
    a.guarded("DELETE", "/api/v1/agents/bob", Some(SUPERVISOR), None);
    a.ok("DELETE", "/api/v1/agents/bob", ADMIN, None, 200);
    a.bad("DELETE", "/api/v1/agents/bob", None, 404, "agent");
    a.guarded("DELETE", "/api/v1/queues/sales", Some(SUPERVISOR), None);
    a.ok("DELETE", "/api/v1/queues/sales", ADMIN, None, 200);
    a.bad("DELETE", "/api/v1/queues/sales", None, 404, "queue");
    // Dialplans, trunks, bans.
    a.guarded("GET", "/api/v1/dialplans", None, None);
    a.ok("GET", "/api/v1/dialplans", READ_ONLY, None, 200);
    a.guarded("POST", "/api/v1/dialplans/reload", Some(SUPERVISOR), None);
    a.ok("POST", "/api/v1/dialplans/reload", ADMIN, None, 200);
    a.guarded("GET", "/api/v1/trunks", None, None);
    a.ok("GET", "/api/v1/trunks", READ_ONLY, None, 200);
    a.guarded("GET", "/api/v1/trunks/none", None, None);
    let r = a.call("GET", "/api/v1/trunks/none", Some(READ_ONLY), None);
    assert_eq!(r.status, 404, "{}", r.text());
    a.guarded("GET", "/api/v1/bans", None, None);
    a.ok("GET", "/api/v1/bans", READ_ONLY, None, 200);
    // Public without a token.
    assert_eq!(a.call("GET", "/health", None, None).status, 200);
    assert_eq!(a.call("GET", "/metrics", None, None).status, 200);
    assert_eq!(
        a.call("GET", "/api/v1/openapi.json", None, None).status,
        200
    );
}

/// The desktop WebSocket takes the agent's own token as `?token=` (or a header).
#[test]
fn desktop_websocket_needs_the_agents_token() {
    let a = Api { e: engine() };
    a.ok(
        "POST",
        "/api/v1/queues",
        ADMIN,
        Some(json!({"name": "support"})),
        201,
    );
    for n in ["alice", "bob"] {
        let body = json!({"name": n, "queues": [{"queue": "support"}]});
        a.ok("POST", "/api/v1/agents", ADMIN, Some(body), 201);
    }
    let ws = |path: &str| {
        let url = format!("ws://{}{path}", a.e.http_addr());
        match tungstenite::connect(url) {
            Ok((mut sock, resp)) => {
                let _ = sock.close(None);
                resp.status().as_u16()
            }
            Err(tungstenite::Error::Http(r)) => r.status().as_u16(),
            Err(e) => panic!("{path}: {e}"),
        }
    };
    assert_eq!(ws(&format!("/api/v1/agents/alice/ws?token={ALICE}")), 101);
    assert_eq!(ws(&format!("/api/v1/agents/bob/ws?token={ALICE}")), 403);
    assert_eq!(
        ws(&format!("/api/v1/agents/bob/ws?token={SUPERVISOR}")),
        101
    );
    assert_eq!(
        ws(&format!("/api/v1/agents/alice/ws?token={READ_ONLY}")),
        403
    );
    assert_eq!(ws("/api/v1/agents/alice/ws"), 401);
    assert_eq!(ws("/api/v1/agents/alice/ws?token=wrong"), 401);
    // `?token=` counts on WebSocket upgrades only.
    let r = a.call("GET", &format!("/api/v1/queues?token={ADMIN}"), None, None);
    assert_eq!(r.status, 401, "{}", r.text());
}

/// Registrations, CDRs, recordings (Range download) and SIP users.
#[test]
fn record_endpoints() {
    let a = Api { e: engine() };
    // Users: admin writes, nobody sees a hash.
    let carol = json!({"username": "carol", "password": "pw-carol", "display_name": "Carol"});
    a.guarded(
        "POST",
        "/api/v1/users",
        Some(SUPERVISOR),
        Some(carol.clone()),
    );
    let u = a.ok("POST", "/api/v1/users", ADMIN, Some(carol.clone()), 201);
    assert_eq!(u["username"], "carol");
    assert_eq!(u["realm"], "switchboard", "{u}");
    a.bad("POST", "/api/v1/users", Some(carol), 409, "username");
    let bad = json!({"username": "a:b", "password": "x"});
    a.bad("POST", "/api/v1/users", Some(bad), 400, "username");
    a.bad(
        "POST",
        "/api/v1/users",
        Some(json!({"username": "d"})),
        400,
        "password",
    );
    let bad = json!({"username": "d", "password": "x", "admin": true});
    a.bad("POST", "/api/v1/users", Some(bad), 400, "admin");
    let bad = json!({"username": "d", "password": ""});
    a.bad("POST", "/api/v1/users", Some(bad), 400, "password");
    a.guarded("GET", "/api/v1/users", None, None);
    let users = a.ok("GET", "/api/v1/users", READ_ONLY, None, 200);
    let text = users.to_string();
    assert!(
        text.contains("\"carol\"") && !text.contains("ha1"),
        "{text}"
    );
    a.bad("GET", "/api/v1/users?x=1", None, 400, "x");
    // The SIP user works: it registers with its password.
    let callee = Phone::callee(PhoneCodec::Pcmu, true);
    assert_eq!(
        register(&a.e, "carol", "pw-carol", callee.sip_addr(), 300),
        200
    );
    // Registrations.
    a.guarded("GET", "/api/v1/registrations", None, None);
    let deadline = Instant::now() + Duration::from_secs(10);
    let regs = loop {
        let r = a.ok("GET", "/api/v1/registrations", READ_ONLY, None, 200);
        if r.as_array().is_some_and(|v| !v.is_empty()) || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let reg = &regs[0];
    assert!(
        reg["aor"].as_str().is_some_and(|s| s.contains("carol")),
        "{regs}"
    );
    let contact = callee.sip_addr().to_string();
    assert!(
        reg["contact"]
            .as_str()
            .is_some_and(|c| c.contains(&contact)),
        "{regs}"
    );
    let aor = reg["aor"].as_str().unwrap_or_default().to_string();
    let one = a.ok(
        "GET",
        &format!("/api/v1/registrations?aor={}", aor.replace(':', "%3A")),
        READ_ONLY,
        None,
        200,
    );
    assert_eq!(one.as_array().map(Vec::len), Some(1), "{one}");
    a.bad("GET", "/api/v1/registrations?aor=", None, 400, "aor");
    a.bad("GET", "/api/v1/registrations?who=x", None, 400, "who");
    // A real call makes a CDR.
    let mut caller = Phone::call(a.e.sip_addr(), "carol", PhoneCodec::Pcmu);
    assert_eq!(caller.status(), Some(200), "the call is answered");
    caller.hang_up();
    a.guarded("GET", "/api/v1/cdrs", None, None);
    let deadline = Instant::now() + Duration::from_secs(10);
    let cdrs = loop {
        let r = a.ok("GET", "/api/v1/cdrs", READ_ONLY, None, 200);
        if r.as_array().is_some_and(|v| !v.is_empty()) || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let cdr = &cdrs[0];
    assert_eq!(cdr["sip_code"], 200, "{cdr}");
    let (id, callee_uri, start) = (
        cdr["id"].as_i64().expect("id"),
        cdr["callee"].as_str().expect("callee").to_string(),
        cdr["start_ms"].as_i64().expect("start"),
    );
    let q = |s: &str| s.replace(':', "%3A").replace('@', "%40");
    let hit = a.ok(
        "GET",
        &format!(
            "/api/v1/cdrs?callee={}&from_ms={start}&to_ms={}&limit=5",
            q(&callee_uri),
            start + 1
        ),
        READ_ONLY,
        None,
        200,
    );
    assert_eq!(hit.as_array().map(Vec::len), Some(1), "{hit}");
    let miss = a.ok("GET", "/api/v1/cdrs?caller=nobody", READ_ONLY, None, 200);
    assert_eq!(miss.as_array().map(Vec::len), Some(0), "{miss}");
    let later = a.ok("GET", "/api/v1/cdrs?offset=1", READ_ONLY, None, 200);
    assert_eq!(later.as_array().map(Vec::len), Some(0), "{later}");
    a.bad("GET", "/api/v1/cdrs?limit=0", None, 400, "limit");
    a.bad("GET", "/api/v1/cdrs?limit=abc", None, 400, "limit");
    a.bad(
        "GET",
        "/api/v1/cdrs?from_ms=5&to_ms=1",
        None,
        400,
        "from_ms",
    );
    a.bad("GET", "/api/v1/cdrs?sort=up", None, 400, "sort");
    let path = format!("/api/v1/cdrs/{id}");
    a.guarded("GET", &path, None, None);
    let got = a.ok("GET", &path, READ_ONLY, None, 200);
    assert_eq!(got["call_id"], cdr["call_id"]);
    a.bad("GET", "/api/v1/cdrs/0", None, 400, "id");
    a.bad("GET", "/api/v1/cdrs/x", None, 400, "id");
    a.bad("GET", "/api/v1/cdrs/99999", None, 404, "id");
    // Recordings: a WAV in the recordings directory, indexed as the recorder does.
    let dir = a.e.dir.path().join("data/recordings/api");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let wav = dir.join("rec.wav");
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&wav, spec).expect("wav");
    for i in 0..16000i32 {
        w.write_sample((i * 7 % 65536 - 32768) as i16)
            .expect("sample");
    }
    w.finalize().expect("finalize");
    let bytes = std::fs::read(&wav).expect("read wav");
    let call_id = cdr["call_id"].as_str().expect("call id").to_string();
    let rec_id = index_recording(&a.e, &call_id, &wav.display().to_string(), bytes.len());
    let outside = index_recording(&a.e, &call_id, "/etc/hostname", 1);
    let missing = index_recording(&a.e, &call_id, "gone.wav", 1);
    a.guarded("GET", "/api/v1/recordings", None, None);
    let list = a.ok("GET", "/api/v1/recordings?limit=10", READ_ONLY, None, 200);
    assert_eq!(list.as_array().map(Vec::len), Some(3), "{list}");
    let by_call = a.ok(
        "GET",
        &format!("/api/v1/recordings?call_id={}", q(&call_id)),
        READ_ONLY,
        None,
        200,
    );
    assert_eq!(by_call[0]["id"], rec_id, "{by_call}");
    a.bad("GET", "/api/v1/recordings?limit=1001", None, 400, "limit");
    a.bad("GET", "/api/v1/recordings?call_id=", None, 400, "call_id");
    let file = format!("/api/v1/recordings/{rec_id}");
    a.guarded("GET", &file, None, None);
    let addr = a.e.http_addr();
    let whole = http(addr, "GET", &file, Some(READ_ONLY), None, &[]);
    assert_eq!(whole.status, 200, "{}", whole.head);
    assert_eq!(whole.body, bytes, "the whole file, byte-exact");
    assert!(
        whole.header("accept-ranges").is_some_and(|v| v == "bytes"),
        "{}",
        whole.head
    );
    let part = http(
        addr,
        "GET",
        &file,
        Some(READ_ONLY),
        None,
        &[("Range", "bytes=100-1099")],
    );
    assert_eq!(part.status, 206, "{}", part.head);
    assert_eq!(part.body, bytes[100..1100], "the range, byte-exact");
    let total = bytes.len();
    assert_eq!(
        part.header("content-range"),
        Some(format!("bytes 100-1099/{total}")),
        "{}",
        part.head
    );
    let tail = http(
        addr,
        "GET",
        &file,
        Some(READ_ONLY),
        None,
        &[("Range", "bytes=-44")],
    );
    assert_eq!(tail.status, 206, "{}", tail.head);
    assert_eq!(
        tail.body,
        bytes[total - 44..],
        "the suffix range, byte-exact"
    );
    let past = format!("bytes={}-", total + 10);
    let none = http(
        addr,
        "GET",
        &file,
        Some(READ_ONLY),
        None,
        &[("Range", &past)],
    );
    assert_eq!(none.status, 416, "{}", none.head);
    a.bad(
        "GET",
        &format!("/api/v1/recordings/{outside}"),
        None,
        403,
        "id",
    );
    a.bad(
        "GET",
        &format!("/api/v1/recordings/{missing}"),
        None,
        404,
        "id",
    );
    a.bad("GET", "/api/v1/recordings/-3", None, 400, "id");
    a.bad("GET", "/api/v1/recordings/424242", None, 404, "id");
    // Removing a user.
    a.guarded("DELETE", "/api/v1/users/carol", Some(SUPERVISOR), None);
    a.ok("DELETE", "/api/v1/users/carol", ADMIN, None, 200);
    a.bad("DELETE", "/api/v1/users/carol", None, 404, "name");
    a.bad("DELETE", "/api/v1/users/carol?realm=", None, 400, "realm");
}

/// Writes a recording's index row into the engine's database, as the call recorder does.
fn index_recording(e: &Engine, call_id: &str, path: &str, bytes: usize) -> i64 {
    let url = format!(
        "sqlite://{}",
        e.dir.path().join("data/switchboard.db").display()
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let s = switchboard_storage::Storage::connect(&url)
            .await
            .expect("open the engine's database");
        let id = s
            .insert_recording(&switchboard_storage::Recording {
                call_id: call_id.into(),
                path: path.into(),
                duration_ms: 1000,
                bytes: bytes as i64,
                rate: 8000,
                channels: 2,
                legs: "caller,callee".into(),
                format: "wav".into(),
                created_ms: switchboard_storage::now_ms(),
                ..Default::default()
            })
            .await
            .expect("index the recording");
        s.close().await;
        id
    })
}

/// Every route the OpenAPI document lists is served (no route-level 404/405), with its
/// minimum role; the document is public.
#[test]
fn openapi_document_matches_the_routes() {
    let a = Api { e: engine() };
    let doc = a.call("GET", "/api/v1/openapi.json", None, None).json();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    let paths = doc["paths"].as_object().expect("paths");
    let mut n = 0;
    for (p, item) in paths {
        for m in ["get", "post", "put", "patch", "delete"] {
            let Some(op) = item.get(m) else { continue };
            n += 1;
            let role = op["x-required-role"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            assert!(!role.is_empty(), "{m} {p} has no x-required-role");
            let path = fill_path_parameters(p);
            let method = m.to_ascii_uppercase();
            let r = a.call(&method, &path, Some(ADMIN), None);
            let unrouted = matches!(r.status, 404 | 405) && r.body.is_empty();
            assert!(
                !unrouted,
                "{method} {p} is documented but not served ({})",
                r.status
            );
            assert!(r.status < 500, "{method} {path}: {} {}", r.status, r.text());
            // Every protected operation refuses a request without a token, and every one above
            // `read_only` refuses the read-only token, before its handler runs.
            if role != "public" && op["security"] != serde_json::json!([]) {
                let r = a.call(&method, &path, None, None);
                assert_eq!(r.status, 401, "{method} {p} without a token");
                assert_eq!(r.json()["field"], "authorization", "{method} {p}");
                if role != "read_only" {
                    let r = a.call(&method, &path, Some(READ_ONLY), None);
                    assert_eq!(r.status, 403, "{method} {p} with the read-only token");
                    assert_eq!(r.json()["field"], "authorization", "{method} {p}");
                }
            }
        }
    }
    assert!(n >= 43, "only {n} operations documented");
}

/// `path` with every `{parameter}` replaced by a value that names nothing.
fn fill_path_parameters(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').map_or(rest.len(), |c| open + c + 1);
        let name = &rest[open..close];
        out.push_str(if name == "{name}" {
            "nonexistent"
        } else {
            "999999"
        });
        rest = &rest[close..];
    }
    out.push_str(rest);
    out
}

/// The engine starts open (development mode) without tokens, and says so.
#[test]
fn without_tokens_the_api_is_open() {
    let e = Engine::start("[contact_centre]\nconfig_file = \"\"\n");
    let r = http(e.http_addr(), "GET", "/api/v1/queues", None, None, &[]);
    assert_eq!(r.status, 200);
    assert!(e.log().contains("no API token configured"), "{}", e.log());
}

/// `POST /api/v1/dialplans/check` validates a plan without loading it: the shipped default plan
/// is valid, a broken one gets 422 with its diagnostics; the plan in force is unchanged.
#[test]
fn dialplan_check_reports_diagnostics_without_loading() {
    let a = Api { e: engine() };
    let before = a.ok("GET", "/api/v1/dialplans", READ_ONLY, None, 200);
    let good = include_str!("../../dialplans/examples/default.yaml");
    let r = http(
        a.e.http_addr(),
        "POST",
        "/api/v1/dialplans/check",
        Some(READ_ONLY),
        Some(good),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["valid"], true);
    let r = http(
        a.e.http_addr(),
        "POST",
        "/api/v1/dialplans/check",
        Some(READ_ONLY),
        Some("routes:\n  - match: [unclosed\n"),
        &[],
    );
    assert_eq!(r.status, 422, "{}", r.text());
    let v = r.json();
    assert_eq!(v["valid"], false);
    assert_eq!(v["field"], "body");
    assert!(v["diagnostics"][0]["message"].is_string(), "{v}");
    assert!(v["diagnostics"][0]["line"].is_number(), "{v}");
    assert_eq!(
        a.ok("GET", "/api/v1/dialplans", READ_ONLY, None, 200),
        before
    );
}
