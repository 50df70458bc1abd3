//! Ticket attachments, notifications and SLA breaches end to end, against the release binary
//! on SQLite and on PostgreSQL:
//!
//! * attachments: raw-body upload with a name (201; 413 naming `body` over the size limit, 415
//!   naming `Content-Type` for a type not accepted), list, download with the stored type and
//!   `Content-Disposition`, shown on the ticket and on the contact timeline, the
//!   `ticket.attachment_added` event, delete (204, file gone from disk, then 404);
//! * signed webhooks: a local HTTP receiver checks every `X-Switchboard-Signature`
//!   (HMAC-SHA256 over `t.body`), answers the first delivery 500 and sees it retried with the
//!   same body, and gets one ticket's notices in order (created, status_changed, assigned,
//!   note_added ×2);
//! * e-mail: a local SMTP sink (a real TCP server speaking SMTP to lettre) receives the mails
//!   of each rule, with the right recipients (requester from the contact's e-mail identity,
//!   group and assignee addresses from the config), subjects and bodies; an internal note is
//!   never mailed to the requester, a public one is, with its text;
//! * SLA: the sweeper finds a ticket whose one-minute first-response target passed, publishes
//!   `ticket.sla_breached` once, and that notice goes out by webhook and mail;
//! * a dead SMTP server does not slow the API: the failure is counted in `/metrics`.

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use switchboard_tests::smtp::{Mail, SmtpSink};
use switchboard_tests::webhook_sink::{Request, WebhookSink};
use switchboard_tests::{api, api_get, free_port, http_get, Engine};

const SECRET: &str = "tickets_hook_secret_0123";

/// `(status, headers (lower-case names), body)` of a request with a raw body.
fn http_raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .expect("write head");
    // A refused upload may be answered before the body is read: ignore a broken pipe.
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&out[..split]).to_string();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    let headers = head
        .split("\r\n")
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, out[split + 4..].to_vec())
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

fn json_of(b: &[u8]) -> Value {
    serde_json::from_slice(b).unwrap_or(Value::Null)
}

/// Verifies `t=<unix>,v1=<hex>` over the raw body as a receiver should.
fn verify(header: &str, body: &str) -> Result<(), String> {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = v.parse::<u64>().ok(),
            Some(("v1", v)) => v1 = hex::decode(v).ok(),
            _ => {}
        }
    }
    let (t, v1) = t.zip(v1).ok_or("malformed header")?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    if now.abs_diff(t) > 300 {
        return Err("timestamp too old".into());
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key length");
    mac.update(format!("{t}.{body}").as_bytes());
    mac.verify_slice(&v1)
        .map_err(|_| "signature mismatch".to_string())
}

/// The notices (200-answered deliveries) for ticket `id`, in arrival order.
fn notices_for(reqs: &[Request], id: i64) -> Vec<Value> {
    reqs.iter()
        .filter(|r| r.status == 200)
        .map(|r| serde_json::from_str::<Value>(&r.body).unwrap_or(Value::Null))
        .filter(|v| v["ticket"]["id"] == id)
        .collect()
}

fn kinds(v: &[Value]) -> Vec<String> {
    v.iter()
        .map(|n| n["notice"].as_str().unwrap_or("").to_string())
        .collect()
}

fn mails_to<'a>(mails: &'a [Mail], to: &str) -> Vec<&'a Mail> {
    mails
        .iter()
        .filter(|m| m.to.iter().any(|t| t == to))
        .collect()
}

fn config(db: &str, hook: &WebhookSink, smtp_port: u16) -> String {
    format!(
        r#"{db}
[tickets]
max_attachment_bytes = 2048
attachment_types = ["application/pdf", "text/plain"]
sla_sweep_secs = 1
[tickets.notifications]
link_base = "https://desk.example.com/tickets/"
[[tickets.notifications.webhooks]]
url = "{url}"
secret = "{SECRET}"
[tickets.notifications.smtp]
host = "127.0.0.1"
port = {smtp_port}
tls = "none"
from = "Help desk <desk@example.com>"
timeout_secs = 5
[tickets.notifications.agent_emails]
alice = "alice@example.com"
[tickets.notifications.group_emails]
billing = "billing@example.com"
[[tickets.notifications.email]]
events = ["created"]
to = ["requester", "group"]
[[tickets.notifications.email]]
events = ["assigned"]
to = ["assignee"]
subject = "Assigned: #{{number}} {{subject}}"
[[tickets.notifications.email]]
events = ["note_added", "status_changed"]
to = ["requester"]
[[tickets.notifications.email]]
events = ["sla_breached"]
to = ["sla-lead@example.com"]
body = "SLA: {{timer}} of #{{number}} was due {{due}}. {{link}}"
"#,
        url = hook.url("/tickets"),
    )
}

fn scenario(db: &str) {
    let smtp = SmtpSink::start();
    let hook = WebhookSink::start(1);
    let e = Engine::start(&config(db, &hook, smtp.addr().port()));
    let wait = Duration::from_secs(30);

    // Groups: one with a one-minute first-response target (it will breach), one without.
    api(
        &e,
        "PUT",
        "/api/v1/ticket-groups/fast",
        Some(json!({"first_response_mins": 1, "resolution_mins": 600})),
    );
    api(&e, "PUT", "/api/v1/ticket-groups/billing", Some(json!({})));
    let bea = api(
        &e,
        "POST",
        "/api/v1/contacts",
        Some(json!({"name": "Bea", "identities": [{"kind": "email", "value": "Bea@Example.com"}]})),
    )["id"]
        .as_i64()
        .expect("contact id");
    let late = api(
        &e,
        "POST",
        "/api/v1/tickets",
        Some(json!({"contact_id": bea, "subject": "Refund overdue", "group": "fast"})),
    )["id"]
        .as_i64()
        .expect("ticket id");
    let started = Instant::now();

    // --- Notifications of one ticket's life.
    let t = api(
        &e,
        "POST",
        "/api/v1/tickets",
        Some(json!({"contact_id": bea, "subject": "Parcel late", "group": "billing"})),
    );
    let id = t["id"].as_i64().expect("ticket id");
    api(
        &e,
        "PATCH",
        &format!("/api/v1/tickets/{id}"),
        Some(json!({"status": "open", "assignee": "alice"})),
    );
    api(
        &e,
        "POST",
        &format!("/api/v1/tickets/{id}/notes"),
        Some(json!({"author": "alice", "body": "customer sounds angry", "internal": true})),
    );
    api(
        &e,
        "POST",
        &format!("/api/v1/tickets/{id}/notes"),
        Some(json!({"author": "alice", "body": "Your parcel leaves today.", "internal": false})),
    );
    let reqs = hook.wait_for(wait, |r| {
        notices_for(r, id).len() >= 5
            && r.first()
                .is_some_and(|f| r[1..].iter().any(|x| x.status == 200 && x.body == f.body))
    });
    for r in &reqs {
        let sig = r.headers.get("x-switchboard-signature").expect("signed");
        verify(sig, &r.body).unwrap_or_else(|why| panic!("{why}: {}", r.body));
        assert_eq!(r.line, "POST /tickets HTTP/1.1");
    }
    // The very first delivery was refused and retried with the same body.
    assert_eq!(reqs[0].status, 500);
    assert!(
        reqs[1..]
            .iter()
            .any(|r| r.status == 200 && r.body == reqs[0].body),
        "the refused notice is retried"
    );
    let mine = notices_for(&reqs, id);
    assert_eq!(
        kinds(&mine),
        [
            "created",
            "status_changed",
            "assigned",
            "note_added",
            "note_added"
        ],
        "one ticket's notices arrive in order"
    );
    assert_eq!(mine[0]["ticket"]["subject"], "Parcel late");
    assert_eq!(
        mine[0]["ticket"]["link"],
        format!("https://desk.example.com/tickets/{id}")
    );
    assert_eq!(mine[1]["change"]["status_from"], "new");
    assert_eq!(mine[1]["change"]["status_to"], "open");
    assert_eq!(mine[2]["change"]["assignee"], "alice");
    assert_eq!(mine[3]["change"]["internal"], true);
    assert_eq!(mine[4]["change"]["internal"], false);

    // E-mail: created → requester + group; assigned → alice; status → requester; the public
    // note → requester with its text; the internal one → nobody.
    let mails = smtp.wait_for(wait, |m| {
        mails_to(m, "bea@example.com").len() >= 3
            && !mails_to(m, "billing@example.com").is_empty()
            && !mails_to(m, "alice@example.com").is_empty()
    });
    let created_subject = format!("[Ticket #{id}] Parcel late (new)");
    let to_billing = mails_to(&mails, "billing@example.com");
    assert!(
        to_billing
            .iter()
            .any(|m| m.header("Subject").as_deref() == Some(created_subject.as_str())),
        "{to_billing:?}"
    );
    for m in &mails {
        assert_eq!(m.from, "desk@example.com");
        assert_eq!(m.to.len(), 1, "one recipient per message");
        assert!(
            m.header("From")
                .is_some_and(|f| f.contains("desk@example.com")),
            "{m:?}"
        );
    }
    let to_alice = mails_to(&mails, "alice@example.com");
    assert_eq!(
        to_alice[0].header("Subject"),
        Some(format!("Assigned: #{id} Parcel late"))
    );
    assert!(to_alice[0].body().contains("Assigned to alice."));
    let to_bea: Vec<&Mail> = mails_to(&mails, "bea@example.com")
        .into_iter()
        .filter(|m| {
            m.header("Subject")
                .is_some_and(|s| s.starts_with(&format!("[Ticket #{id}]")))
        })
        .collect();
    let subjects: Vec<String> = to_bea.iter().filter_map(|m| m.header("Subject")).collect();
    assert!(subjects.contains(&created_subject), "{subjects:?}");
    assert!(
        subjects.contains(&format!("[Ticket #{id}] Parcel late (open)")),
        "{subjects:?}"
    );
    assert!(
        to_bea
            .iter()
            .any(|m| m.body().contains("Your parcel leaves today.")),
        "the public note is mailed with its text"
    );
    assert!(
        mails.iter().all(|m| !m.body().contains("angry")),
        "an internal note's text is never mailed"
    );
    assert!(to_bea.iter().any(|m| m
        .body()
        .contains(&format!("https://desk.example.com/tickets/{id}"))));

    // --- Attachments.
    let addr = e.http_addr();
    let up = format!("/api/v1/tickets/{id}/attachments?name=proof%20of%20delivery.txt&by=alice");
    let (s, _, b) = http_raw(addr, "POST", &up, "text/plain", b"signed by B.");
    assert_eq!(s, 201, "{}", String::from_utf8_lossy(&b));
    let meta = json_of(&b);
    assert_eq!(meta["name"], "proof_of_delivery.txt");
    assert_eq!(meta["mime"], "text/plain");
    assert_eq!(meta["size"], 12);
    assert_eq!(meta["uploaded_by"], "alice");
    let aid = meta["id"].as_str().expect("attachment id").to_string();
    let (s, _, b) = http_raw(addr, "POST", &up, "text/plain", &[b'x'; 3000]);
    assert_eq!(s, 413);
    assert_eq!(json_of(&b)["field"], "body");
    let (s, _, b) = http_raw(addr, "POST", &up, "image/png", b"\x89PNG");
    assert_eq!(s, 415);
    assert_eq!(json_of(&b)["field"], "Content-Type");
    let (s, _, b) = http_raw(
        addr,
        "POST",
        "/api/v1/tickets/999999/attachments?name=x.txt",
        "text/plain",
        b"x",
    );
    assert_eq!((s, json_of(&b)["field"].clone()), (404, json!("id")));
    let (s, h, b) = http_raw(
        addr,
        "GET",
        &format!("/api/v1/tickets/{id}/attachments/{aid}"),
        "text/plain",
        b"",
    );
    assert_eq!(s, 200);
    assert_eq!(b, b"signed by B.");
    assert_eq!(header(&h, "content-type"), Some("text/plain"));
    assert_eq!(
        header(&h, "content-disposition"),
        Some("attachment; filename=\"proof_of_delivery.txt\"")
    );
    assert_eq!(header(&h, "x-content-type-options"), Some("nosniff"));
    let list = api_get(&e, &format!("/api/v1/tickets/{id}/attachments"));
    assert_eq!(list["attachments"][0]["id"], aid.as_str());
    let ticket = api_get(&e, &format!("/api/v1/tickets/{id}"));
    assert_eq!(ticket["attachments"][0]["name"], "proof_of_delivery.txt");
    let tl = api_get(&e, &format!("/api/v1/contacts/{bea}/timeline"));
    let items = tl["items"].as_array().expect("items");
    let ti = items
        .iter()
        .position(|i| i["type"] == "ticket" && i["ticket_id"] == id)
        .expect("ticket on the timeline");
    let ai = items
        .iter()
        .position(|i| i["type"] == "attachment" && i["id"] == aid.as_str())
        .expect("attachment on the timeline");
    assert!(ai > ti, "the upload comes after the ticket");
    let ev = api_get(&e, "/api/v1/events?since=0&types=ticket.attachment_added");
    assert_eq!(ev["events"][0]["data"]["attachment_id"], aid.as_str());
    assert_eq!(ev["events"][0]["data"]["ticket_id"], id);
    let file = e
        .dir
        .path()
        .join("data")
        .join("tickets")
        .join(id.to_string())
        .join(&aid);
    assert!(file.exists(), "stored under the data directory");
    let (s, _, _) = http_raw(
        addr,
        "DELETE",
        &format!("/api/v1/tickets/{id}/attachments/{aid}"),
        "text/plain",
        b"",
    );
    assert_eq!(s, 204);
    assert!(!file.exists(), "the file is removed with its row");
    let (s, _, b) = http_raw(
        addr,
        "GET",
        &format!("/api/v1/tickets/{id}/attachments/{aid}"),
        "text/plain",
        b"",
    );
    assert_eq!((s, json_of(&b)["field"].clone()), (404, json!("aid")));

    // --- SLA: the one-minute first-response target of `late` passes; announced once.
    let reqs = hook.wait_for(Duration::from_secs(150), |r| {
        kinds(&notices_for(r, late)).contains(&"sla_breached".to_string())
    });
    assert!(
        started.elapsed() >= Duration::from_secs(55),
        "not before the target"
    );
    let breach = notices_for(&reqs, late)
        .into_iter()
        .find(|n| n["notice"] == "sla_breached")
        .expect("an SLA notice");
    assert_eq!(breach["change"]["timer"], "first_response");
    let sla = api_get(&e, &format!("/api/v1/tickets/{late}"))["sla"].clone();
    assert_eq!(sla["first_response"]["breached"], true, "{sla}");
    let mails = smtp.wait_for(wait, |m| !mails_to(m, "sla-lead@example.com").is_empty());
    let lead = mails_to(&mails, "sla-lead@example.com");
    assert!(
        lead[0]
            .body()
            .starts_with(&format!("SLA: first response of #{late} was due ")),
        "{}",
        lead[0].body()
    );
    // Several more sweeps: still one breach event and one notice.
    std::thread::sleep(Duration::from_secs(3));
    let ev = api_get(&e, "/api/v1/events?since=0&types=ticket.sla_breached");
    let breaches = ev["events"].as_array().expect("events");
    assert_eq!(breaches.len(), 1, "{ev}");
    assert_eq!(breaches[0]["data"]["ticket_id"], late);
    let reqs = hook.wait_for(Duration::from_millis(10), |_| false);
    assert_eq!(
        kinds(&notices_for(&reqs, late))
            .iter()
            .filter(|k| *k == "sla_breached")
            .count(),
        1
    );
    let (_, metrics) = http_get(addr, "/metrics").expect("metrics");
    assert!(
        metrics.contains(
            "switchboard_ticket_notifications_total{channel=\"webhook\",result=\"retried\"} 1"
        ),
        "{metrics}"
    );
}

#[test]
fn tickets_attachments_notifications_sla_on_sqlite() {
    scenario("");
}

#[test]
fn tickets_attachments_notifications_sla_on_postgres() {
    let Ok(url) = std::env::var("SWITCHBOARD_TEST_PG") else {
        assert!(
            std::env::var("SWITCHBOARD_REQUIRE_PG").is_err(),
            "SWITCHBOARD_TEST_PG must be set"
        );
        eprintln!("*** postgres test skipped: SWITCHBOARD_TEST_PG unset ***");
        return;
    };
    let schema = format!(
        "sb_e2e_tn_{}_{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() % 1_000_000_000)
    );
    let out = Command::new("psql")
        .arg(&url)
        .args(["-q", "-c", &format!("CREATE SCHEMA {schema}")])
        .output()
        .expect("psql");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sep = if url.contains('?') { '&' } else { '?' };
    let scoped = format!("{url}{sep}options=-c%20search_path%3D{schema}");
    scenario(&format!("[database]\nurl = \"{scoped}\"\n"));
    let _ = Command::new("psql")
        .arg(&url)
        .args(["-q", "-c", &format!("DROP SCHEMA {schema} CASCADE")])
        .output();
}

/// An SMTP server that is down: the API answers as usual and the failure is counted.
#[test]
fn a_dead_smtp_server_never_blocks_the_api() {
    let hook = WebhookSink::start(0);
    // A port nobody listens on.
    let dead = free_port();
    let e = Engine::start(&config("", &hook, dead));
    let bea = api(
        &e,
        "POST",
        "/api/v1/contacts",
        Some(json!({"identities": [{"kind": "email", "value": "bea@example.com"}]})),
    )["id"]
        .as_i64()
        .expect("contact id");
    // Answered 201 (`api` checks it): mail goes out after the answer, never in it.
    api(
        &e,
        "POST",
        "/api/v1/tickets",
        Some(json!({"contact_id": bea, "subject": "Hello"})),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, m) = http_get(e.http_addr(), "/metrics").expect("metrics");
        if m.contains(
            "switchboard_ticket_notifications_total{channel=\"email\",result=\"failed\"} 1",
        ) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the failure was never counted:\n{m}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The webhook still went out.
    let reqs = hook.wait_for(Duration::from_secs(15), |r| !r.is_empty());
    assert_eq!(reqs.len(), 1);
}
