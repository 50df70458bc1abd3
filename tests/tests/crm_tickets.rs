//! CRM and tickets end to end, over HTTP against the release binary: a real call from a phone
//! number (our test phone) is recognised and recorded on a new contact; a chat customer known
//! by e-mail claims the same number (409 suggesting the merge), the merge moves the call onto
//! the chat contact and is audited; a ticket created from the chat validates its custom fields,
//! follows the status flow (illegal transitions are 409 naming `status`) with its SLA timers
//! paused while pending; a CSAT score lands on the interaction and the ticket; the timeline
//! shows the call, the chat, the ticket and the score in time order; search finds them by
//! words, channel, agent and tag.

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use switchboard_tests::phone::{Phone, PhoneCodec};
use switchboard_tests::{api, api_get, http_json, Engine};

const NUMBER: &str = "+15550100001";

fn engine() -> Engine {
    let dir = tempfile::tempdir().expect("temp dir").keep();
    let plan = dir.join("plan.yaml");
    std::fs::write(
        &plan,
        "timezone: UTC\ncontexts:\n  default:\n    rules:\n      - name: hello\n        called: 800\n        actions:\n          - answer\n          - say: Hello.\n          - hangup\n",
    )
    .expect("write plan");
    Engine::start(&format!(
        "[calls]\ntrusted_sources = [\"127.0.0.1\"]\n[dialplan]\nfile = \"{}\"\nwatch_secs = 0\n",
        plan.display()
    ))
}

/// `(status, JSON)` of a request expected to fail.
fn refused(e: &Engine, method: &str, path: &str, body: Value) -> (u16, Value) {
    let (status, text) = http_json(e.http_addr(), method, path, Some(&body)).expect("answer");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[test]
fn crm_contacts_merge_tickets_csat_timeline_search() {
    let e = engine();

    // 1. A call from a phone number: answered, hung up by the plan; recorded on a new contact.
    let mut phone = Phone::call_from(e.sip_addr(), NUMBER, "800", PhoneCodec::Pcmu);
    assert_eq!(phone.status(), Some(200), "the plan answers");
    if !phone.wait_bye(Duration::from_secs(15)) {
        phone.hang_up();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let caller = loop {
        let found = api_get(&e, "/api/v1/contacts?identity=phone:%2B15550100001");
        if let Some(c) = found["contacts"].as_array().and_then(|a| a.first()) {
            break c.clone();
        }
        assert!(Instant::now() < deadline, "the caller was never recorded");
        std::thread::sleep(Duration::from_millis(200));
    };
    let caller_id = caller["id"].as_i64().expect("id");
    let tl = api_get(&e, &format!("/api/v1/contacts/{caller_id}/timeline"));
    let call = &tl["items"][0];
    assert_eq!(call["channel"], "voice");
    assert_eq!(call["call"]["answered"], true, "{call}");
    assert_eq!(
        call["call"]["caller"].as_str().map(|c| c.contains(NUMBER)),
        Some(true)
    );

    // 2. A chat customer known by e-mail and visitor id, with a chat about a parcel.
    let (s, err) = refused(
        &e,
        "POST",
        "/api/v1/contacts",
        json!({"identities": [{"kind": "email", "value": "not-an-address"}]}),
    );
    assert_eq!(
        (s, err["field"].as_str()),
        (400, Some("identities[0].value"))
    );
    let chat_contact = api(
        &e,
        "POST",
        "/api/v1/contacts",
        Some(json!({
            "name": "Bea",
            "attributes": {"plan": "gold"},
            "identities": [{"kind": "email", "value": "Bea@Example.com"}, {"kind": "visitor", "value": "v-77"}],
            "tags": ["vip"],
        })),
    );
    let bea = chat_contact["id"].as_i64().expect("id");
    let seg = api_get(&e, "/api/v1/contacts?attr=plan:gold");
    assert_eq!(seg["contacts"][0]["id"], bea, "{seg}");
    assert_eq!(
        api_get(&e, "/api/v1/contacts?tag=vip")["contacts"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    let (s, text) = switchboard_tests::http_get(e.http_addr(), "/api/v1/contacts?attr=pl%22an:x")
        .expect("answer");
    assert_eq!(s, 400, "{text}");
    assert_eq!(chat_contact["identities"][0]["value"], "bea@example.com");
    let chat = api(
        &e,
        "POST",
        &format!("/api/v1/contacts/{bea}/interactions"),
        Some(
            json!({"channel": "chat", "source_ref": "chat-1", "agent": "alice", "queue": "support",
                    "text": "Hello, my parcel is late"}),
        ),
    );
    let chat_id = chat["id"].as_i64().expect("id");
    let (s, _) = refused(
        &e,
        "POST",
        &format!("/api/v1/crm/interactions/{chat_id}/messages"),
        json!({"text": "waybill WB-42 please"}),
    );
    assert_eq!(s, 204);

    // 3. She gives the number she called from: 409 naming the owner and the merge to make.
    let (s, err) = refused(
        &e,
        "POST",
        &format!("/api/v1/contacts/{bea}/identities"),
        json!({"kind": "phone", "value": "+1 555 010 0001"}),
    );
    assert_eq!(s, 409, "{err}");
    assert_eq!(err["contact_id"], caller_id);
    assert_eq!(err["field"], "value");
    assert_eq!(
        err["merge"]["path"],
        format!("/api/v1/contacts/{bea}/merge")
    );
    let (s, err) = refused(
        &e,
        "POST",
        &format!("/api/v1/contacts/{bea}/merge"),
        json!({"from": bea}),
    );
    assert_eq!((s, err["field"].as_str()), (400, Some("from")));
    let merged = api(
        &e,
        "POST",
        &format!("/api/v1/contacts/{bea}/merge"),
        Some(json!({"from": caller_id, "by": "supervisor-1"})),
    );
    assert_eq!(merged["merge"]["moved"]["interactions"], 1);
    let kinds: Vec<&str> = merged["contact"]["identities"]
        .as_array()
        .expect("identities")
        .iter()
        .filter_map(|i| i["kind"].as_str())
        .collect();
    assert_eq!(kinds, vec!["email", "phone", "visitor"]);
    assert_eq!(
        api_get(&e, &format!("/api/v1/contacts/{caller_id}"))["merged_into"],
        bea
    );
    let audit = api_get(&e, &format!("/api/v1/contacts/{bea}/merges"));
    assert_eq!(audit["merges"][0]["by"], "supervisor-1");
    let (s, _) = refused(
        &e,
        "POST",
        &format!("/api/v1/contacts/{bea}/merge"),
        json!({"from": caller_id}),
    );
    assert_eq!(s, 409, "merged twice");

    // 4. Ticket type with validated custom fields, a group with business hours and SLA.
    let (s, err) = refused(
        &e,
        "PUT",
        "/api/v1/ticket-types/delivery",
        json!({"fields": {"order_number": {"type": "string", "pattern": "("}}}),
    );
    assert_eq!(
        (s, err["field"].as_str()),
        (400, Some("fields.order_number.pattern"))
    );
    api(
        &e,
        "PUT",
        "/api/v1/ticket-types/delivery",
        Some(json!({"fields": {
            "order_number": {"type": "string", "required": true, "pattern": "ORD-[0-9]{4}"},
            "waybill": {"type": "string"}
        }})),
    );
    let (s, err) = refused(
        &e,
        "PUT",
        "/api/v1/ticket-groups/logistics",
        json!({"time_zone": "Mars/Olympus"}),
    );
    assert_eq!((s, err["field"].as_str()), (400, Some("time_zone")));
    api(
        &e,
        "PUT",
        "/api/v1/ticket-groups/logistics",
        Some(
            json!({"time_zone": "Europe/Paris", "first_response_mins": 60, "resolution_mins": 480}),
        ),
    );
    let new_ticket = |fields: Value| {
        json!({"interaction_id": chat_id, "type": "delivery", "subject": "Late parcel",
               "description": "Customer waits for her parcel", "fields": fields,
               "group": "logistics", "assignee": "alice"})
    };
    let (s, err) = refused(
        &e,
        "POST",
        "/api/v1/tickets",
        new_ticket(json!({"order_number": "12"})),
    );
    assert_eq!(
        (s, err["field"].as_str()),
        (400, Some("fields.order_number"))
    );
    let (s, err) = refused(&e, "POST", "/api/v1/tickets", json!({"subject": "x"}));
    assert_eq!((s, err["field"].as_str()), (400, Some("interaction_id")));
    let ticket = api(
        &e,
        "POST",
        "/api/v1/tickets",
        Some(new_ticket(
            json!({"order_number": "ORD-1234", "waybill": "WB-42"}),
        )),
    );
    let tid = ticket["id"].as_i64().expect("id");
    assert_eq!(ticket["contact_id"], bea);
    assert_eq!(ticket["status"], "new");
    assert_eq!(ticket["sla"]["paused"], false);
    assert_eq!(ticket["sla"]["resolution"]["target_mins"], 480);
    assert!(ticket["sla"]["resolution"]["due_at_ms"].is_i64());

    // 5. Status flow: illegal jumps are 409 naming `status`; pending pauses the SLA.
    let path = format!("/api/v1/tickets/{tid}");
    let (s, err) = refused(&e, "PATCH", &path, json!({"status": "closed"}));
    assert_eq!((s, err["field"].as_str()), (409, Some("status")));
    let (s, err) = refused(&e, "PATCH", &path, json!({"status": "lost"}));
    assert_eq!((s, err["field"].as_str()), (400, Some("status")));
    assert_eq!(
        api(&e, "PATCH", &path, Some(json!({"status": "open"})))["status"],
        "open"
    );
    let pending = api(&e, "PATCH", &path, Some(json!({"status": "pending"})));
    assert_eq!(pending["sla"]["paused"], true);
    let open = api(&e, "PATCH", &path, Some(json!({"status": "open"})));
    assert_eq!(open["sla"]["paused"], false);
    api(
        &e,
        "POST",
        &format!("{path}/notes"),
        Some(json!({"author": "alice", "body": "Asked the courier", "internal": true})),
    );
    api(
        &e,
        "POST",
        &format!("{path}/notes"),
        Some(json!({"author": "alice", "body": "Your parcel arrives tomorrow", "internal": false})),
    );
    let solved = api(&e, "PATCH", &path, Some(json!({"status": "solved"})));
    assert!(solved["first_response_at_ms"].is_i64());
    assert!(solved["solved_at_ms"].is_i64());
    assert_eq!(
        api_get(&e, &path)["notes"].as_array().map(Vec::len),
        Some(2)
    );

    // 6. CSAT on the chat: stored on the interaction and its ticket.
    let (s, err) = refused(
        &e,
        "POST",
        &format!("/api/v1/interactions/{chat_id}/csat"),
        json!({"score": 6}),
    );
    assert_eq!((s, err["field"].as_str()), (400, Some("score")));
    let rated = api(
        &e,
        "POST",
        &format!("/api/v1/interactions/{chat_id}/csat"),
        Some(json!({"score": 5})),
    );
    assert_eq!(rated["tickets"], json!([tid]));
    assert_eq!(api_get(&e, &path)["csat"], 5);
    assert_eq!(
        api(&e, "PATCH", &path, Some(json!({"status": "closed"})))["status"],
        "closed"
    );

    let report = api_get(&e, "/api/v1/metrics/csat");
    assert_eq!(report["agents"]["alice"]["responses"], 1);
    assert_eq!(report["queues"]["support"]["csat_percent"], 100.0);

    // 7. The timeline: call, chat, ticket, CSAT and the merge, in time order.
    let tl = api_get(&e, &format!("/api/v1/contacts/{bea}/timeline"));
    let items = tl["items"].as_array().expect("items");
    let seen: Vec<String> = items
        .iter()
        .map(|i| {
            format!(
                "{}{}",
                i["type"].as_str().unwrap_or("?"),
                i["channel"]
                    .as_str()
                    .map(|c| format!(":{c}"))
                    .unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            "interaction:voice",
            "interaction:chat",
            "merge",
            "ticket",
            "csat"
        ],
        "{tl}"
    );
    let times: Vec<i64> = items.iter().filter_map(|i| i["at_ms"].as_i64()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");

    // 8. Search by words (messages, ticket text, notes), channel, agent and tag.
    let hits = |q: &str| -> Vec<(String, i64)> {
        api_get(&e, &format!("/api/v1/search?{q}"))["results"]
            .as_array()
            .expect("results")
            .iter()
            .map(|h| {
                (
                    h["kind"].as_str().unwrap_or("").to_string(),
                    h["id"].as_i64().unwrap_or(0),
                )
            })
            .collect()
    };
    assert_eq!(
        hits("q=parcel"),
        vec![("ticket".into(), tid), ("interaction".into(), chat_id)]
    );
    assert_eq!(hits("q=courier"), vec![("ticket".into(), tid)]);
    assert_eq!(
        hits("q=waybill+please&channel=chat"),
        vec![("interaction".into(), chat_id)]
    );
    let voice = hits("channel=voice");
    assert_eq!(voice.len(), 1);
    assert_eq!(voice[0].0, "interaction");
    assert_eq!(hits("agent=alice").len(), 2);
    assert_eq!(hits("tag=vip").len(), 3);
    assert!(hits("tag=nobody").is_empty());
    assert!(hits("q=parcel&to=0").is_empty());
    let (s, text) = switchboard_tests::http_get(e.http_addr(), "/api/v1/search?from=yesterday")
        .expect("answer");
    assert_eq!(s, 400, "{text}");
    assert!(text.contains("\"field\":\"from\""), "{text}");
}
