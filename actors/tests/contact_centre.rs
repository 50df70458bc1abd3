//! The contact-centre actors on a real actix system, over real SQLite storage, with simulated
//! router time (a manual clock) and event-driven waits: a test never sleeps.
//!
//! * `voice_calls_served_by_five_agents`: 20 voice calls into one queue, 5 agents; every call
//!   gets an agent, one at a time per agent, a failed offer goes to the next agent, and the
//!   metrics read back through the REST handlers match the test's own count.
//! * `failed_voice_offers_auto_pause`: failed voice offers count as missed offers.
//! * `unanswered_offer_times_out_to_next_agent`: the router's offer timer (simulated time,
//!   fired by `ContactCentre::tick`) withdraws the offer and rings the next agent.
//! * `restart_rebuilds_waiting_queue`: a new routing actor over the same database restores
//!   configuration and the waiting line in order.
//! * `desktop_websocket_accepts_chat_offer`: a real HTTP server and WebSocket client.
//! * `rest_errors_name_the_field`.

use actix::prelude::*;
use actix_web::{test, web, App};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use switchboard_actors::contact::{
    api, Clock, ContactCentre, InteractionId, Request, Settings, VoiceEnqueue, VoiceUpdate,
};
use switchboard_storage::Storage;
use tokio::sync::mpsc;

/// Guard against a hang (never part of the logic: every wait is for an event).
const GUARD: Duration = Duration::from_secs(30);

/// A stand-in call actor: forwards every update, tagged with its call number, to the test.
struct Caller {
    n: usize,
    tx: mpsc::UnboundedSender<(usize, VoiceUpdate)>,
}

impl Actor for Caller {
    type Context = Context<Self>;
}

impl Handler<VoiceUpdate> for Caller {
    type Result = ();

    fn handle(&mut self, msg: VoiceUpdate, _ctx: &mut Context<Self>) {
        let _ = self.tx.send((self.n, msg));
    }
}

/// Supervision needs real media: these stand-ins refuse it.
impl Handler<switchboard_actors::call::SuperviseMsg> for Caller {
    type Result = Result<u64, String>;

    fn handle(
        &mut self,
        _msg: switchboard_actors::call::SuperviseMsg,
        _ctx: &mut Context<Self>,
    ) -> Self::Result {
        Err("a test stand-in".into())
    }
}

async fn storage(dir: &tempfile::TempDir) -> Storage {
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("cc.db").display());
    Storage::connect(&url).await.expect("sqlite")
}

async fn start(s: &Storage, clock: &Clock) -> ContactCentre {
    ContactCentre::start(s.clone(), Settings::default(), clock.clone())
        .await
        .expect("contact centre")
}

macro_rules! app {
    ($cc:expr) => {
        test::init_service(
            App::new()
                .app_data(web::Data::new($cc.clone()))
                .configure(api::configure),
        )
        .await
    };
}

/// Calls the REST API; returns (status, JSON body).
macro_rules! call {
    ($app:expr, $method:ident, $path:expr) => {{
        let req = test::TestRequest::$method().uri($path).to_request();
        let resp = test::call_service(&$app, req).await;
        let status = resp.status().as_u16();
        let body: Value =
            serde_json::from_slice(&test::read_body(resp).await).unwrap_or(Value::Null);
        (status, body)
    }};
    ($app:expr, $method:ident, $path:expr, $body:expr) => {{
        let req = test::TestRequest::$method()
            .uri($path)
            .set_payload($body.to_string())
            .to_request();
        let resp = test::call_service(&$app, req).await;
        let status = resp.status().as_u16();
        let body: Value =
            serde_json::from_slice(&test::read_body(resp).await).unwrap_or(Value::Null);
        (status, body)
    }};
}

/// Waits until the routing actor has handled everything sent to it before (a round trip), so
/// the simulated clock moves only between inputs, never under one in flight.
async fn barrier(cc: &ContactCentre) {
    cc.request(Request::Names).await.expect("names");
}

async fn next<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> T {
    tokio::time::timeout(GUARD, rx.recv())
        .await
        .expect("no update within the guard time")
        .expect("channel open")
}

fn enqueue(
    queue: &str,
    n: usize,
    tx: &mpsc::UnboundedSender<(usize, VoiceUpdate)>,
) -> VoiceEnqueue {
    let caller = Caller { n, tx: tx.clone() }.start();
    VoiceEnqueue {
        queue: queue.into(),
        priority: 0,
        attributes: serde_json::Map::new(),
        caller: format!("sip:caller{n}@example.com"),
        call_id: format!("call-{n}"),
        call: caller.clone().recipient(),
        supervise: caller.recipient(),
    }
}

#[actix_rt::test]
async fn voice_calls_served_by_five_agents() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = storage(&dir).await;
    let clock = Clock::manual(1_000_000);
    let cc = start(&s, &clock).await;
    let app = app!(cc);

    let (st, _) = call!(
        app,
        post,
        "/api/v1/queues",
        json!({"name": "support", "wrap_up_secs": 0, "offer_timeout_secs": 20})
    );
    assert_eq!(st, 201);
    let agents = ["a1", "a2", "a3", "a4", "a5"];
    for (i, a) in agents.iter().enumerate() {
        let (st, body) = call!(
            app,
            post,
            "/api/v1/agents",
            json!({
            "name": a, "sip_user": format!("100{i}"), "skills": {"support": 3},
            "queues": [{"queue": "support"}]})
        );
        assert_eq!(st, 201, "{body}");
        let (st, _) = call!(app, post, &format!("/api/v1/agents/{a}/login"));
        assert_eq!(st, 200);
    }

    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut ids = Vec::new();
    let mut created = HashMap::new();
    for n in 0..20 {
        let id = cc
            .enqueue_voice(enqueue("support", n, &tx))
            .await
            .expect("enqueue");
        created.insert(id, clock.now_ms());
        ids.push(id);
        clock.advance(100);
    }
    let by_call: HashMap<usize, InteractionId> = ids.iter().copied().enumerate().collect();

    // Drive the calls: answer every offer (after one simulated second of ringing), except the
    // first one a1 gets, which fails (486). An agent's call ends once every agent is busy, or
    // once every call has been answered.
    let mut holding: HashMap<String, InteractionId> = HashMap::new();
    let mut answered_by: HashMap<InteractionId, String> = HashMap::new();
    let mut waits = Vec::new();
    let mut positions: HashSet<usize> = HashSet::new();
    let mut failed: Option<InteractionId> = None;
    let mut order: Vec<String> = Vec::new();
    let mut answered_at = HashMap::new();
    let mut handle_ms = Vec::new();
    while answered_by.len() < 20 || !holding.is_empty() {
        if holding.len() == agents.len() || (answered_by.len() == 20 && !holding.is_empty()) {
            let agent = order.remove(0);
            let id = holding.remove(&agent).expect("held");
            barrier(&cc).await;
            clock.advance(30_000);
            handle_ms.push(clock.now_ms() - answered_at[&id]);
            cc.call_ended(id);
            continue;
        }
        let (n, update) = next(&mut rx).await;
        match update {
            VoiceUpdate::Offer {
                interaction,
                reservation,
                agent,
                sip_user,
                timeout_secs,
                ..
            } => {
                assert_eq!(by_call[&n], interaction, "offer went to its own call");
                assert_eq!(timeout_secs, 20);
                assert!(sip_user.starts_with("100"));
                assert!(
                    !holding.contains_key(&agent),
                    "{agent} offered a second call while holding one"
                );
                barrier(&cc).await;
                clock.advance(1_000);
                if agent == "a1" && failed.is_none() {
                    failed = Some(interaction);
                    cc.offer_failed(interaction, reservation, 486);
                    continue;
                }
                assert!(
                    answered_by.insert(interaction, agent.clone()).is_none(),
                    "answered twice"
                );
                waits.push(clock.now_ms() - created[&interaction]);
                answered_at.insert(interaction, clock.now_ms());
                holding.insert(agent.clone(), interaction);
                order.push(agent);
                cc.offer_answered(interaction, reservation);
            }
            VoiceUpdate::Position { position, .. } => {
                assert!(position >= 1);
                positions.insert(n);
            }
            VoiceUpdate::Withdraw { .. } | VoiceUpdate::Left { .. } => {
                panic!("call {n}: unexpected {update:?}")
            }
        }
    }
    let failed = failed.expect("a1 got an offer");
    assert_ne!(
        answered_by[&failed], "a1",
        "the failed offer went to another agent"
    );
    assert_eq!(answered_by.len(), 20, "every call answered");
    let mut per_agent: HashMap<&str, u64> = HashMap::new();
    for a in answered_by.values() {
        *per_agent.entry(a.as_str()).or_default() += 1;
    }
    assert_eq!(per_agent.len(), 5, "every agent served: {per_agent:?}");
    // Calls 0..5 were offered on arrival; every caller that waited heard its position.
    assert!((5..20).all(|n| positions.contains(&n)), "{positions:?}");

    // Metrics through the REST handlers, from the stored events.
    let (st, m) = call!(app, get, "/api/v1/metrics/queues/support?sl_secs=60");
    assert_eq!(st, 200, "{m}");
    assert_eq!(m["contacts_queued"], 20);
    assert_eq!(m["contacts_answered"], 20);
    assert_eq!(m["contacts_abandoned"], 0);
    assert_eq!(m["contacts_handled"], 20);
    let asa = waits.iter().sum::<u64>() as f64 / 20.0;
    assert_eq!(m["average_speed_of_answer_ms"].as_f64(), Some(asa));
    let within = waits.iter().filter(|w| **w <= 60_000).count() as f64;
    assert_eq!(m["service_level"].as_f64(), Some(within / 20.0));
    assert_eq!(m["abandon_rate"].as_f64(), Some(0.0));
    let aht = handle_ms.iter().sum::<u64>() as f64 / 20.0;
    assert_eq!(m["average_handle_time_ms"].as_f64(), Some(aht));
    let (_, am) = call!(app, get, "/api/v1/metrics/agents");
    let handled: u64 = am
        .as_array()
        .expect("list")
        .iter()
        .map(|a| {
            let name = a["agent"].as_str().expect("name");
            assert_eq!(a["contacts_handled"].as_u64(), per_agent.get(name).copied());
            a["contacts_handled"].as_u64().expect("n")
        })
        .sum();
    assert_eq!(handled, 20);
    let (_, q) = call!(app, get, "/api/v1/queues/support");
    assert_eq!(q["live"]["waiting"], 0);
    assert_eq!(q["live"]["agents_available"], 5);
    assert_eq!(q["metrics"]["contacts_answered"], 20);
    let (_, list) = call!(app, get, "/api/v1/interactions");
    assert_eq!(list, json!([]), "nothing live");
}

#[actix_rt::test]
async fn failed_voice_offers_auto_pause() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = storage(&dir).await;
    let clock = Clock::manual(5_000);
    let cc = start(&s, &clock).await;
    let app = app!(cc);
    call!(app, post, "/api/v1/queues", json!({"name": "q"}));
    let (st, _) = call!(
        app,
        post,
        "/api/v1/agents",
        json!({
        "name": "bob", "sip_user": "2001", "queues": [{"queue": "q"}], "auto_pause_after": 2})
    );
    assert_eq!(st, 201);
    call!(app, post, "/api/v1/agents/bob/login");
    let (tx, mut rx) = mpsc::unbounded_channel();
    for n in 0..3 {
        cc.enqueue_voice(enqueue("q", n, &tx))
            .await
            .expect("enqueue");
    }
    let mut failures = 0;
    while failures < 2 {
        if let (
            _,
            VoiceUpdate::Offer {
                interaction,
                reservation,
                ..
            },
        ) = next(&mut rx).await
        {
            cc.offer_failed(interaction, reservation, 480);
            failures += 1;
        }
    }
    let (_, bob) = call!(app, get, "/api/v1/agents/bob");
    assert_eq!(
        bob["status"],
        json!({"break": {"reason": "missed-offers"}}),
        "{bob}"
    );
    let (_, q) = call!(app, get, "/api/v1/queues/q");
    assert_eq!(q["live"]["waiting"], 3);
    // 603 Decline is a reject, not a miss.
    call!(app, post, "/api/v1/agents/bob/login");
    for _ in 0..2 {
        loop {
            if let (
                _,
                VoiceUpdate::Offer {
                    interaction,
                    reservation,
                    ..
                },
            ) = next(&mut rx).await
            {
                cc.offer_failed(interaction, reservation, 603);
                break;
            }
        }
    }
    let (_, bob) = call!(app, get, "/api/v1/agents/bob");
    assert_ne!(
        bob["status"],
        json!({"break": {"reason": "missed-offers"}}),
        "{bob}"
    );
}

#[actix_rt::test]
async fn unanswered_offer_times_out_to_next_agent() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = storage(&dir).await;
    let clock = Clock::manual(0);
    let cc = start(&s, &clock).await;
    let app = app!(cc);
    call!(
        app,
        post,
        "/api/v1/queues",
        json!({"name": "q", "offer_timeout_secs": 10})
    );
    for (name, user) in [("eve", "3001"), ("fay", "3002")] {
        call!(
            app,
            post,
            "/api/v1/agents",
            json!({
            "name": name, "sip_user": user, "queues": [{"queue": "q"}]})
        );
        call!(app, post, &format!("/api/v1/agents/{name}/login"));
        clock.advance(1_000);
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    let id = cc
        .enqueue_voice(enqueue("q", 0, &tx))
        .await
        .expect("enqueue");
    let first = match next(&mut rx).await {
        (
            _,
            VoiceUpdate::Offer {
                agent,
                reservation,
                interaction,
                ..
            },
        ) => {
            assert_eq!(interaction, id);
            (agent, reservation)
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(first.0, "eve", "longest idle first");
    // Nobody answers: ten simulated seconds later the router withdraws it and rings fay.
    barrier(&cc).await;
    clock.advance(10_000);
    cc.tick();
    let mut withdrawn = false;
    loop {
        match next(&mut rx).await {
            (_, VoiceUpdate::Withdraw { reservation }) => {
                assert_eq!(reservation, first.1);
                withdrawn = true;
            }
            (
                _,
                VoiceUpdate::Offer {
                    agent, reservation, ..
                },
            ) => {
                assert!(withdrawn, "withdrawn before the next offer");
                assert_eq!(agent, "fay");
                cc.offer_answered(id, reservation);
                break;
            }
            _ => {}
        }
    }
    let (_, m) = call!(app, get, "/api/v1/metrics/agents/eve");
    assert_eq!(m["offers_missed"], 1, "{m}");
    let (_, i) = call!(app, get, &format!("/api/v1/interactions/{}", id.0));
    assert_eq!(
        (i["state"].as_str(), i["agent"].as_str()),
        (Some("assigned"), Some("fay"))
    );
    assert_eq!(i["call_id"], "call-0");
}

#[actix_rt::test]
async fn restart_rebuilds_waiting_queue() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = storage(&dir).await;
    let clock = Clock::manual(10_000);
    let cc = start(&s, &clock).await;
    let app = app!(cc);
    call!(app, post, "/api/v1/queues", json!({"name": "chat"}));
    call!(app, post, "/api/v1/queues", json!({"name": "calls"}));
    call!(
        app,
        post,
        "/api/v1/agents",
        json!({"name": "carol", "queues": [{"queue": "chat"}]})
    );
    let (st, _) = call!(
        app,
        put,
        "/api/v1/workflow",
        json!({"filters": [], "default_queue": "chat"})
    );
    assert_eq!(st, 200);
    let mut before = Vec::new();
    for (n, prio) in [(0, 0), (1, 0), (2, 5), (3, 0)] {
        let (st, v) = call!(
            app,
            post,
            "/api/v1/interactions",
            json!({
            "channel": "chat", "queue": "chat", "priority": prio,
            "attributes": {"n": n}})
        );
        assert_eq!(st, 201, "{v}");
        before.push(v["id"].as_u64().expect("id"));
        clock.advance(1_000);
    }
    let (tx, _rx) = mpsc::unbounded_channel();
    let voice = cc
        .enqueue_voice(enqueue("calls", 0, &tx))
        .await
        .expect("voice");
    // The priority-5 chat is first, then arrival order.
    let (_, list) = call!(app, get, "/api/v1/interactions");
    let order = |list: &Value, queue: &str| {
        let mut v: Vec<(u64, u64)> = list
            .as_array()
            .expect("list")
            .iter()
            .filter(|i| i["queue"] == queue)
            .map(|i| {
                (
                    i["position"].as_u64().expect("pos"),
                    i["id"].as_u64().expect("id"),
                )
            })
            .collect();
        v.sort();
        v.into_iter().map(|(_, id)| id).collect::<Vec<_>>()
    };
    let expected = vec![before[2], before[0], before[1], before[3]];
    assert_eq!(order(&list, "chat"), expected);
    cc.flush().await;

    // A new routing actor over the same database.
    clock.advance(60_000);
    let cc2 = start(&s, &clock).await;
    let app2 = app!(cc2);
    let (_, list) = call!(app2, get, "/api/v1/interactions");
    assert_eq!(
        order(&list, "chat"),
        expected,
        "line rebuilt in order: {list}"
    );
    assert!(
        order(&list, "calls").is_empty(),
        "the dropped call is not waiting"
    );
    let first = &list.as_array().expect("list")[0];
    assert_eq!(first["attributes"]["n"], 0);
    assert!(first["age_ms"].as_u64().expect("age") >= 60_000, "age kept");
    let (_, wf) = call!(app2, get, "/api/v1/workflow");
    assert_eq!(wf["default_queue"], "chat");
    let (st, carol) = call!(app2, get, "/api/v1/agents/carol");
    assert_eq!(st, 200);
    assert_eq!(carol["status"], "offline");
    // New ids continue after the old ones; the workflow routes to `chat`.
    let (_, v) = call!(
        app2,
        post,
        "/api/v1/interactions",
        json!({"channel": "chat"})
    );
    assert!(v["id"].as_u64().expect("id") > voice.0);
    assert_eq!(v["queue"], "chat");
    // The dropped call counts as abandoned.
    let (_, m) = call!(app2, get, "/api/v1/metrics/queues/calls");
    assert_eq!(m["contacts_abandoned"], 1, "{m}");
    // Carol logs in and gets the priority chat first.
    call!(app2, post, "/api/v1/agents/carol/login");
    let (_, carol) = call!(app2, get, "/api/v1/agents/carol");
    let work = carol["work"].as_array().expect("work");
    assert_eq!(
        work[0]["interaction"].as_u64(),
        Some(expected[0]),
        "{carol}"
    );
}

#[actix_rt::test]
async fn rest_errors_name_the_field() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = storage(&dir).await;
    let clock = Clock::manual(0);
    let cc = start(&s, &clock).await;
    let app = app!(cc);
    let (st, e) = call!(
        app,
        post,
        "/api/v1/queues",
        json!({"name": "q", "offer_timeout_secs": 0})
    );
    assert_eq!((st, e["field"].as_str()), (400, Some("offer_timeout_secs")));
    let (st, e) = call!(
        app,
        post,
        "/api/v1/queues",
        json!({"name": "q", "max_length": "x"})
    );
    assert_eq!((st, e["field"].as_str()), (400, Some("max_length")), "{e}");
    let (st, e) = call!(app, post, "/api/v1/queues", "not json");
    assert_eq!(st, 400, "{e}");
    assert!(e["error"].is_string());
    call!(app, post, "/api/v1/queues", json!({"name": "q"}));
    let (st, e) = call!(app, post, "/api/v1/queues", json!({"name": "q"}));
    assert_eq!((st, e["field"].as_str()), (409, Some("name")));
    let (st, e) = call!(
        app,
        post,
        "/api/v1/agents",
        json!({"name": "x", "queues": [{"queue": "nope"}]})
    );
    assert_eq!(
        (st, e["field"].as_str()),
        (400, Some("queues[0].queue")),
        "{e}"
    );
    let (st, e) = call!(
        app,
        post,
        "/api/v1/agents",
        json!({"name": "x", "skills": {"s": 9}})
    );
    assert_eq!((st, e["field"].as_str()), (400, Some("skills.s")), "{e}");
    let (st, e) = call!(
        app,
        put,
        "/api/v1/workflow",
        json!({"filters": [{"name": "f",
        "expression": "attributes.x ==", "steps": [{"queue": "q"}]}]})
    );
    assert_eq!(st, 400, "{e}");
    assert_eq!(e["field"].as_str(), Some("filters[0].expression"), "{e}");
    let (st, e) = call!(
        app,
        put,
        "/api/v1/workflow",
        json!({"filters": [{"name": "f",
        "expression": "true", "steps": [{"queue": "zz"}]}]})
    );
    assert_eq!(
        (st, e["field"].as_str()),
        (400, Some("filters[0].steps[0].queue")),
        "{e}"
    );
    let (st, _) = call!(app, get, "/api/v1/agents/ghost");
    assert_eq!(st, 404);
    let (st, e) = call!(app, get, "/api/v1/interactions/abc");
    assert_eq!((st, e["field"].as_str()), (400, Some("id")));
    let (st, e) = call!(
        app,
        post,
        "/api/v1/interactions",
        json!({"channel": "voice"})
    );
    assert_eq!((st, e["field"].as_str()), (400, Some("channel")));
    let (st, e) = call!(app, get, "/api/v1/metrics/queues?from_ms=x");
    assert_eq!((st, e["field"].as_str()), (400, Some("query")));
    let (st, e) = call!(
        app,
        put,
        "/api/v1/agents/ghost/state",
        json!({"state": "available"})
    );
    assert_eq!(st, 404, "{e}");
    call!(
        app,
        post,
        "/api/v1/agents",
        json!({"name": "x", "queues": [{"queue": "q"}]})
    );
    let (st, e) = call!(
        app,
        put,
        "/api/v1/agents/x/state",
        json!({"state": "dancing"})
    );
    assert_eq!((st, e["field"].as_str()), (400, Some("state")));
    let (st, e) = call!(app, delete, "/api/v1/queues/q");
    assert_eq!(st, 409, "agent x serves it: {e}");
    let _ = cc.request(Request::ListQueues).await.expect("list");
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next frame of `kind`, skipping others.
async fn frame(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let msg = tokio::time::timeout(GUARD, ws.next())
            .await
            .expect("no frame within the guard time")
            .expect("socket open")
            .expect("frame");
        if let tokio_tungstenite::tungstenite::Message::Text(t) = msg {
            let v: Value = serde_json::from_str(t.as_str()).expect("JSON frame");
            if v["type"] == kind {
                return v;
            }
        }
    }
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(tokio_tungstenite::tungstenite::Message::text(v.to_string()))
        .await
        .expect("send");
}

#[actix_rt::test]
async fn desktop_websocket_accepts_chat_offer() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = storage(&dir).await;
    let clock = Clock::manual(0);
    let cc = start(&s, &clock).await;
    let app = app!(cc);
    call!(
        app,
        post,
        "/api/v1/queues",
        json!({"name": "web", "dispositions": ["solved"]})
    );
    call!(
        app,
        post,
        "/api/v1/agents",
        json!({
        "name": "dora", "capacity": {"chat": 2}, "queues": [{"queue": "web"}]})
    );

    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server_cc = cc.clone();
    let server = actix_web::HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(server_cc.clone()))
            .configure(api::configure)
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .expect("listen")
    .run();
    let handle = server.handle();
    actix_rt::spawn(server);

    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/api/v1/agents/dora/ws"))
            .await
            .expect("connect");
    let hello = frame(&mut ws, "hello").await;
    assert_eq!(hello["status"], "offline");
    // Bad input: an error frame, and the socket stays open.
    ws.send(tokio_tungstenite::tungstenite::Message::text("{nonsense"))
        .await
        .expect("send");
    let err = frame(&mut ws, "error").await;
    assert!(err["error"].is_string());
    send(&mut ws, json!({"type": "accept", "reservation": 999})).await;
    let err = frame(&mut ws, "error").await;
    assert_eq!(err["field"], "reservation");

    send(&mut ws, json!({"type": "state", "state": "available"})).await;
    assert_eq!(frame(&mut ws, "status").await["status"], "available");

    let (st, chat) = call!(
        app,
        post,
        "/api/v1/interactions",
        json!({
        "channel": "chat", "queue": "web", "attributes": {"topic": "refund"},
        "customer": {"id": "c-42", "address": "chat:abc"}})
    );
    assert_eq!(st, 201, "{chat}");
    let offer = frame(&mut ws, "offer").await;
    assert_eq!(offer["interaction"], chat["id"]);
    assert_eq!(offer["channel"], "chat");
    assert_eq!(offer["attributes"]["topic"], "refund");
    assert_eq!(offer["customer"]["id"], "c-42");
    assert_eq!(offer["queue"], "web");
    send(
        &mut ws,
        json!({"type": "accept", "reservation": offer["reservation"]}),
    )
    .await;
    let assigned = frame(&mut ws, "assigned").await;
    assert_eq!(assigned["interaction"], chat["id"]);
    let (_, dora) = call!(app, get, "/api/v1/agents/dora");
    assert_eq!(dora["status"], "busy");

    send(&mut ws, json!({"type": "end", "interaction": chat["id"]})).await;
    let wrap = frame(&mut ws, "wrapup").await;
    assert_eq!(wrap["ends_in_ms"], Value::Null, "until the agent ends it");
    send(
        &mut ws,
        json!({"type": "wrapup_done", "disposition": "bogus"}),
    )
    .await;
    assert_eq!(frame(&mut ws, "error").await["field"], "disposition");
    send(
        &mut ws,
        json!({"type": "wrapup_done", "disposition": "solved"}),
    )
    .await;
    let done = frame(&mut ws, "completed").await;
    assert_eq!(done["disposition"], "solved");

    let (_, m) = call!(app, get, "/api/v1/metrics/agents/dora");
    assert_eq!(m["contacts_handled"], 1, "{m}");
    ws.close(None).await.expect("close");
    handle.stop(true).await;
}
