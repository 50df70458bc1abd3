//! Contact-centre reports over known journals, with exact figures, on SQLite and PostgreSQL
//! (`$SWITCHBOARD_TEST_PG`, a schema per test), and the reports REST API on a real routing actor.
//!
//! * `reports_sqlite` / `reports_postgres`: routing events and new interactions written to the
//!   journal, then the agent, queue and volume reports per day, week and month, checked figure by
//!   figure (counts, service level, ASA, AHT, occupancy, volume by channel and hour), and CSV.
//! * `reports_api`: JSON, CSV (`?format=csv` and `Accept: text/csv`), SVG, errors naming the
//!   field, and a scheduled run listed and downloaded through the API.

use actix_web::{test, web, App};
use serde_json::{json, Value};
use sqlx::{AssertSqlSafe, Connection};
use switchboard_actors::contact::{api, Clock, ContactCentre, Settings};
use switchboard_actors::reports::{
    self, api::ReportsDir, render, schedule, Names, Period, Query, ReportKind,
};
use switchboard_actors::routing::agent::AgentStatus;
use switchboard_actors::routing::events::EventKind;
use switchboard_actors::routing::{AgentId, Channel, InteractionId, QueueId, RoutingEvent};
use switchboard_storage::{ContactEvent, ContactWrite, Storage};

const H: u64 = 3_600_000;
const M: u64 = 60_000;
const S: u64 = 1000;
/// 2026-11-23, a Monday, 00:00 UTC.
const DAY0: u64 = 1_795_392_000_000;
const DAY: u64 = 24 * H;

fn routing(at: u64, kind: EventKind) -> ContactWrite {
    let e = RoutingEvent { at, kind };
    ContactWrite::Event(ContactEvent {
        seq: 0,
        at_ms: at as i64,
        stream: "routing".into(),
        queue_id: None,
        interaction_id: None,
        body: serde_json::to_string(&e).expect("serializable"),
    })
}

fn created(at: u64, id: u64, channel: &str) -> ContactWrite {
    ContactWrite::Event(ContactEvent {
        seq: 0,
        at_ms: at as i64,
        stream: "interaction".into(),
        queue_id: None,
        interaction_id: Some(id as i64),
        body: json!({"id": id, "channel": channel}).to_string(),
    })
}

fn status(at: u64, agent: u32, s: AgentStatus) -> ContactWrite {
    routing(
        at,
        EventKind::AgentStatus {
            agent: AgentId(agent),
            status: s,
        },
    )
}

/// One answered contact: queued, answered after `wait`, talk, wrap-up, completed.
#[allow(clippy::too_many_arguments)] // one line per contact in `journal` reads best
fn answered(
    w: &mut Vec<ContactWrite>,
    id: u64,
    queue: u32,
    agent: u32,
    channel: Channel,
    at: u64,
    wait: u64,
    talk: u64,
    wrap: u64,
) {
    let (i, q, a) = (InteractionId(id), QueueId(queue), AgentId(agent));
    w.push(created(at, id, channel.as_str()));
    w.push(routing(
        at,
        EventKind::Queued {
            interaction: i,
            queue: q,
            channel,
        },
    ));
    w.push(routing(
        at + wait,
        EventKind::Answered {
            interaction: i,
            agent: a,
            queue: q,
            channel,
            waited_ms: wait,
        },
    ));
    w.push(status(at + wait, agent, AgentStatus::Busy));
    w.push(routing(
        at + wait + talk,
        EventKind::WrapUpStarted {
            interaction: i,
            agent: a,
        },
    ));
    if wrap > 0 {
        w.push(status(at + wait + talk, agent, AgentStatus::WrapUp));
    }
    w.push(routing(
        at + wait + talk + wrap,
        EventKind::Completed {
            interaction: i,
            agent: a,
            queue: Some(q),
            disposition: None,
        },
    ));
    w.push(status(
        at + wait + talk + wrap,
        agent,
        AgentStatus::Available,
    ));
}

/// The known journal: day 1 billing (alice), day 2 support (bob).
fn journal() -> Vec<ContactWrite> {
    let mut w = Vec::new();
    // Day 1: alice 08:00–12:00.
    w.push(status(DAY0 + 8 * H, 1, AgentStatus::Available));
    // 09:00 answered after 10 s, 5 min talk, 30 s wrap-up (handle 5 min 30 s).
    answered(
        &mut w,
        1,
        1,
        1,
        Channel::Voice,
        DAY0 + 9 * H,
        10 * S,
        5 * M,
        30 * S,
    );
    // 10:00 abandoned after 30 s.
    w.push(created(DAY0 + 10 * H, 2, "voice"));
    w.push(routing(
        DAY0 + 10 * H,
        EventKind::Queued {
            interaction: InteractionId(2),
            queue: QueueId(1),
            channel: Channel::Voice,
        },
    ));
    w.push(routing(
        DAY0 + 10 * H + 30 * S,
        EventKind::Abandoned {
            interaction: InteractionId(2),
            queue: Some(QueueId(1)),
            waited_ms: 30 * S,
        },
    ));
    // 11:00 answered after 30 s (over the 20 s threshold), 2 min talk, no wrap-up.
    answered(
        &mut w,
        3,
        1,
        1,
        Channel::Voice,
        DAY0 + 11 * H,
        30 * S,
        2 * M,
        0,
    );
    w.push(status(DAY0 + 12 * H, 1, AgentStatus::Offline));
    // Day 2: bob 13:00–15:00, one chat at 14:00 answered after 5 s, 10 min.
    w.push(status(DAY0 + DAY + 13 * H, 2, AgentStatus::Available));
    answered(
        &mut w,
        4,
        2,
        2,
        Channel::Chat,
        DAY0 + DAY + 14 * H,
        5 * S,
        10 * M,
        0,
    );
    w.push(status(DAY0 + DAY + 15 * H, 2, AgentStatus::Offline));
    // Day 2 too: an e-mail at 14:30 that nobody routes yet.
    w.push(created(DAY0 + DAY + 14 * H + 30 * M, 5, "email"));
    w
}

fn names() -> Names {
    Names {
        queues: vec![
            (QueueId(1), "billing".into()),
            (QueueId(2), "support".into()),
        ],
        agents: vec![(AgentId(1), "alice".into()), (AgentId(2), "bob".into())],
    }
}

/// The rows of `kind` as objects.
async fn rows(s: &Storage, kind: ReportKind, period: Period, from: u64, to: u64) -> Vec<Value> {
    let q = Query {
        kind,
        period,
        from,
        to,
        service_level_ms: 20 * S,
    };
    let r = reports::generate(s, &names(), &q).await.expect("report");
    r.to_json()["rows"].as_array().expect("rows").clone()
}

fn row<'a>(rows: &'a [Value], period: &str, key: &str, name: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["period"] == period && r[key] == name)
        .unwrap_or_else(|| panic!("no row {period} {name} in {rows:#?}"))
}

async fn exercise(s: &Storage) {
    s.apply_contact_writes(&journal()).await.expect("journal");

    // Queues per day.
    let q = rows(s, ReportKind::Queues, Period::Day, DAY0, DAY0 + 2 * DAY).await;
    assert_eq!(q.len(), 4, "2 days × 2 queues");
    let b = row(&q, "2026-11-23", "queue", "billing");
    assert_eq!(b["offered"], 3);
    assert_eq!(b["answered"], 2);
    assert_eq!(b["abandoned"], 1);
    assert_eq!(b["answered_within_service_level"], 1);
    assert_eq!(b["service_level_pct"], json!(1.0 / 3.0 * 100.0));
    assert_eq!(b["average_speed_of_answer_ms"], json!(20_000.0));
    assert_eq!(b["average_handle_time_ms"], json!(225_000.0));
    assert_eq!(b["abandon_rate_pct"], json!(1.0 / 3.0 * 100.0));
    let s1 = row(&q, "2026-11-23", "queue", "support");
    assert_eq!(s1["offered"], 0);
    assert_eq!(s1["service_level_pct"], Value::Null, "nothing to divide by");
    let s2 = row(&q, "2026-11-24", "queue", "support");
    assert_eq!(s2["offered"], 1);
    assert_eq!(s2["service_level_pct"], json!(100.0));
    assert_eq!(s2["average_speed_of_answer_ms"], json!(5_000.0));
    assert_eq!(s2["average_handle_time_ms"], json!(600_000.0));
    assert_eq!(s2["abandon_rate_pct"], json!(0.0));
    assert_eq!(row(&q, "2026-11-24", "queue", "billing")["offered"], 0);

    // CSAT scores stored by the CRM: bob gets 4 and 5 on the second day.
    let contact = s
        .create_contact(
            &switchboard_storage::NewContact {
                attributes: "{}".into(),
                ..Default::default()
            },
            DAY0 as i64,
        )
        .await
        .expect("contact");
    for score in [4, 5] {
        let at = (DAY0 + DAY + 10 * H) as i64;
        let i = switchboard_storage::Interaction {
            contact_id: contact,
            channel: "voice".into(),
            agent: Some("bob".into()),
            queue: Some("billing".into()),
            started_at_ms: at,
            details: "{}".into(),
            ..Default::default()
        };
        let id = s.record_interaction(&i).await.expect("interaction");
        s.set_csat(id, score, at).await.expect("csat");
    }

    // Agents per day: handled, AHT, occupancy to the millisecond, mean CSAT.
    let a = rows(s, ReportKind::Agents, Period::Day, DAY0, DAY0 + 2 * DAY).await;
    let alice = row(&a, "2026-11-23", "agent", "alice");
    assert_eq!(alice["contacts_handled"], 2);
    assert_eq!(alice["average_handle_time_ms"], json!(225_000.0));
    // On contact: 5 min busy + 30 s wrap-up + 2 min busy; idle: the rest of 08:00–12:00.
    assert_eq!(alice["on_contact_ms"], 450_000);
    assert_eq!(alice["idle_ms"], 4 * H - 450_000);
    assert_eq!(
        alice["occupancy_pct"],
        json!(450_000.0 / (4.0 * H as f64) * 100.0)
    );
    assert_eq!(alice["csat"], Value::Null);
    let bob = row(&a, "2026-11-24", "agent", "bob");
    assert_eq!(bob["contacts_handled"], 1);
    assert_eq!(bob["csat"], json!(4.5));
    assert_eq!(bob["on_contact_ms"], 600_000);
    assert_eq!(bob["idle_ms"], 2 * H - 600_000);
    assert_eq!(
        row(&a, "2026-11-24", "agent", "alice")["contacts_handled"],
        0
    );
    assert_eq!(
        row(&a, "2026-11-24", "agent", "alice")["occupancy_pct"],
        Value::Null
    );

    // One week, one month: the two days together.
    for (period, label) in [(Period::Week, "2026-11-23"), (Period::Month, "2026-11-01")] {
        let q = rows(s, ReportKind::Queues, period, DAY0, DAY0 + 7 * DAY).await;
        assert_eq!(q.len(), 2, "{period:?}");
        assert_eq!(row(&q, label, "queue", "billing")["offered"], 3);
        assert_eq!(row(&q, label, "queue", "support")["answered"], 1);
        // The queue's mean CSAT; none for a queue without scores.
        assert_eq!(row(&q, label, "queue", "billing")["csat"], json!(4.5));
        assert_eq!(row(&q, label, "queue", "support")["csat"], Value::Null);
        let a = rows(s, ReportKind::Agents, period, DAY0, DAY0 + 7 * DAY).await;
        assert_eq!(row(&a, label, "agent", "alice")["contacts_handled"], 2);
        assert_eq!(row(&a, label, "agent", "bob")["on_contact_ms"], 600_000);
    }

    // Volume by channel and hour.
    let v = rows(s, ReportKind::Volume, Period::Day, DAY0, DAY0 + 2 * DAY).await;
    assert_eq!(v.len(), 48, "24 hours × 2 days");
    let hour = |day: &str, h: u64| {
        v.iter()
            .find(|r| r["period"] == day && r["hour"] == h)
            .expect("hour row")
            .clone()
    };
    for h in [9, 10, 11] {
        let r = hour("2026-11-23", h);
        assert_eq!(
            (r["voice"].clone(), r["total"].clone()),
            (json!(1), json!(1)),
            "hour {h}"
        );
    }
    assert_eq!(hour("2026-11-23", 12)["total"], 0);
    let r = hour("2026-11-24", 14);
    assert_eq!(
        (r["chat"].clone(), r["email"].clone(), r["total"].clone()),
        (json!(1), json!(1), json!(2))
    );
    let total: u64 = v.iter().map(|r| r["total"].as_u64().unwrap_or(0)).sum();
    assert_eq!(total, 5);

    // A window that cuts a day: only what happened inside counts.
    let q = rows(
        s,
        ReportKind::Queues,
        Period::Day,
        DAY0 + 10 * H,
        DAY0 + 11 * H,
    )
    .await;
    let b = row(&q, "2026-11-23", "queue", "billing");
    assert_eq!(
        (b["offered"].clone(), b["abandoned"].clone()),
        (json!(1), json!(1))
    );

    // CSV of the same.
    let q = Query {
        kind: ReportKind::Queues,
        period: Period::Week,
        from: DAY0,
        to: DAY0 + 7 * DAY,
        service_level_ms: 20 * S,
    };
    let r = reports::generate(s, &names(), &q).await.expect("report");
    let csv = render::csv(&r);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[0].starts_with("period,from_ms,to_ms,queue,offered,answered,abandoned"));
    assert_eq!(
        lines[1],
        format!(
            "2026-11-23,{DAY0},{},billing,3,2,1,1,{},20000.0,225000.0,{},4.5",
            DAY0 + 7 * DAY,
            1.0 / 3.0 * 100.0,
            1.0 / 3.0 * 100.0
        )
    );
    let svg = render::svg(&r).expect("svg");
    assert!(switchboard_chart::texts(&svg).contains(&"Service level (%)"));
}

#[tokio::test]
async fn reports_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("r.db").display());
    let s = Storage::connect(&url).await.expect("connect");
    exercise(&s).await;
    s.close().await;
}

#[tokio::test]
async fn reports_postgres() {
    let Some(base) = std::env::var("SWITCHBOARD_TEST_PG")
        .ok()
        .filter(|s| !s.is_empty())
    else {
        if std::env::var("SWITCHBOARD_REQUIRE_PG").as_deref() == Ok("1") {
            panic!("SWITCHBOARD_REQUIRE_PG=1 but SWITCHBOARD_TEST_PG is unset");
        }
        eprintln!("\n*** reports_postgres skipped: SWITCHBOARD_TEST_PG unset ***\n");
        return;
    };
    let name = format!(
        "sb_test_{}_{}_reports",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        std::process::id()
    );
    let mut conn = sqlx::PgConnection::connect(&base).await.expect("connect");
    sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA \"{name}\"")))
        .execute(&mut conn)
        .await
        .expect("create schema");
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-c%20search_path%3D{name}");
    let s = Storage::connect(&url).await.expect("connect postgres");
    exercise(&s).await;
    s.close().await;
    sqlx::query(AssertSqlSafe(format!("DROP SCHEMA \"{name}\" CASCADE")))
        .execute(&mut conn)
        .await
        .expect("drop schema");
    let _ = conn.close().await;
}

#[actix_rt::test]
async fn reports_api() {
    let dir = tempfile::tempdir().expect("tmp");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("cc.db").display());
    let s = Storage::connect(&url).await.expect("sqlite");
    // 2026-11-24 09:15 UTC on the router's clock.
    let now = DAY0 + DAY + 9 * H + 15 * M;
    let cc = ContactCentre::start(s.clone(), Settings::default(), Clock::manual(now))
        .await
        .expect("contact centre");
    let files = dir.path().join("reports");
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(cc.clone()))
            .configure(|cfg| reports::api::configure(cfg, ReportsDir(files.clone())))
            .configure(api::configure),
    )
    .await;
    let send = |req: test::TestRequest| {
        let app = &app;
        async move {
            let resp = test::call_service(app, req.to_request()).await;
            let status = resp.status().as_u16();
            let ct = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let body = String::from_utf8_lossy(&test::read_body(resp).await).into_owned();
            (status, ct, body)
        }
    };
    let (st, _, _) = send(
        test::TestRequest::post()
            .uri("/api/v1/queues")
            .set_payload(r#"{"name":"billing"}"#),
    )
    .await;
    assert_eq!(st, 201);
    for _ in 0..2 {
        let (st, _, b) = send(
            test::TestRequest::post()
                .uri("/api/v1/interactions")
                .set_payload(r#"{"channel":"chat","queue":"billing"}"#),
        )
        .await;
        assert_eq!(st, 201, "{b}");
    }

    // JSON: today so far, the default 7 days.
    let (st, ct, b) = send(test::TestRequest::get().uri("/api/v1/reports/queues")).await;
    assert_eq!(st, 200, "{b}");
    assert!(ct.starts_with("application/json"), "{ct}");
    let v: Value = serde_json::from_str(&b).expect("json");
    let rows = v["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 7, "{v:#}");
    assert_eq!(rows[6]["period"], "2026-11-24");
    assert_eq!(rows[6]["offered"], 2);
    assert_eq!(rows[6]["answered"], 0);
    assert_eq!(rows[0]["period"], "2026-11-18");

    // CSV two ways.
    let (st, ct, csv) =
        send(test::TestRequest::get().uri("/api/v1/reports/volume?period=week&format=csv")).await;
    assert_eq!(st, 200);
    assert!(ct.starts_with("text/csv"), "{ct}");
    assert!(
        csv.starts_with("period,from_ms,to_ms,hour,voice,chat,messaging,email,total\n"),
        "{csv}"
    );
    assert!(csv.contains(",9,0,2,0,0,2\n"), "two chats at 09h: {csv}");
    let (st, ct, csv2) = send(
        test::TestRequest::get()
            .uri("/api/v1/reports/volume?period=week")
            .insert_header(("Accept", "text/csv")),
    )
    .await;
    assert_eq!((st, ct.starts_with("text/csv")), (200, true));
    assert_eq!(csv, csv2);

    // SVG.
    let (st, ct, svg) = send(
        test::TestRequest::get()
            .uri("/api/v1/reports/agents?format=svg&from=2026-11-01&to=2026-11-30&period=month"),
    )
    .await;
    assert_eq!(st, 200, "{svg}");
    assert_eq!(ct, "image/svg+xml");
    assert!(svg.starts_with("<svg"));

    // Errors name the field.
    for (uri, status, field) in [
        ("/api/v1/reports/queues?period=year", 400, "period"),
        ("/api/v1/reports/queues?from=yesterday", 400, "from"),
        ("/api/v1/reports/queues?to=2026-13-40", 400, "to"),
        (
            "/api/v1/reports/queues?from=2026-11-30&to=2026-11-01",
            400,
            "from",
        ),
        ("/api/v1/reports/queues?format=pdf", 400, "format"),
        ("/api/v1/reports/queues?sl_secs=-1", 400, "sl_secs"),
        ("/api/v1/reports/queues?colour=red", 400, "colour"),
        (
            "/api/v1/reports/queues?from=0&to=999999999999999",
            400,
            "from",
        ),
        ("/api/v1/reports/sales", 404, "report"),
        ("/api/v1/reports/files/..%2Fcc.db", 404, "name"),
        (
            "/api/v1/reports/files/queues-day-2026-11-24.csv",
            404,
            "name",
        ),
    ] {
        let (st, _, b) = send(test::TestRequest::get().uri(uri)).await;
        assert_eq!(st, status, "{uri}: {b}");
        let v: Value = serde_json::from_str(&b).expect("json error");
        assert_eq!(v["field"], field, "{uri}: {b}");
        assert!(v["error"].is_string());
    }

    // A scheduled run writes yesterday and today, CSV and SVG, listed and served.
    let sched = schedule::Schedule {
        report: ReportKind::Queues,
        period: Period::Day,
        every: schedule::Every::parse("daily").expect("daily"),
    };
    let written = schedule::run_once(&cc, &files, &sched, now)
        .await
        .expect("run");
    assert_eq!(written.len(), 4);
    let (st, _, b) = send(test::TestRequest::get().uri("/api/v1/reports")).await;
    assert_eq!(st, 200);
    let v: Value = serde_json::from_str(&b).expect("json");
    let names: Vec<&str> = v["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "queues-day-2026-11-23.csv",
            "queues-day-2026-11-23.svg",
            "queues-day-2026-11-24.csv",
            "queues-day-2026-11-24.svg"
        ]
    );
    let (st, ct, today) =
        send(test::TestRequest::get().uri("/api/v1/reports/files/queues-day-2026-11-24.csv")).await;
    assert_eq!(st, 200);
    assert!(ct.starts_with("text/csv"));
    let line = today.lines().nth(1).expect("a row");
    assert!(
        line.starts_with(&format!(
            "2026-11-24,{},{},billing,2,0,0,0,",
            DAY0 + DAY,
            now + 1
        )),
        "{line}"
    );
}
