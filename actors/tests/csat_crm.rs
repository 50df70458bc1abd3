//! The CRM side of a queue call, on both backends: the call's interaction is created while
//! the call is up (screen pop, agent answer) and found again by Call-ID, the post-call survey's
//! score lands on it and on its ticket, the CDR completes the same row instead of adding one,
//! and the screen pop shows the contact, its open tickets and its history without the live
//! call. PostgreSQL runs at `$SWITCHBOARD_TEST_PG` in a schema of its own.

use serde_json::json;
use sqlx::{AssertSqlSafe, Connection};
use switchboard_actors::crm::calls::record_call;
use switchboard_actors::crm::pop::{chat_identities, screen_pop, PopKey};
use switchboard_actors::crm::voice::{call_interaction, record_csat, VoiceCall};
use switchboard_actors::crm::Crm;
use switchboard_storage::{Cdr, Storage, Ticket};

#[tokio::test]
async fn csat_crm_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("c.db").display());
    let s = Storage::connect(&url).await.expect("connect");
    exercise(&s).await;
    s.close().await;
}

#[tokio::test]
async fn csat_crm_postgres() {
    let Some(base) = std::env::var("SWITCHBOARD_TEST_PG")
        .ok()
        .filter(|s| !s.is_empty())
    else {
        if std::env::var("SWITCHBOARD_REQUIRE_PG").as_deref() == Ok("1") {
            panic!("SWITCHBOARD_REQUIRE_PG=1 but SWITCHBOARD_TEST_PG is unset");
        }
        eprintln!("\n*** csat_crm_postgres skipped: SWITCHBOARD_TEST_PG unset ***\n");
        return;
    };
    let name = format!(
        "sb_test_{}_{}_csat_crm",
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

async fn exercise(s: &Storage) {
    let t0 = 1_790_000_000_000i64;
    // An earlier call of the same number, recorded from its CDR.
    let earlier = Cdr {
        call_id: "earlier@test".into(),
        caller: "sip:+15550100001@127.0.0.1".into(),
        callee: "sip:600@127.0.0.1".into(),
        start_ms: t0 - 86_400_000,
        answer_ms: Some(t0 - 86_400_000),
        end_ms: t0 - 86_300_000,
        duration_ms: 100_000,
        cause: "normal_clearing".into(),
        sip_code: 200,
        ..Cdr::default()
    };
    let earlier_id = record_call(s, &earlier)
        .await
        .expect("record")
        .expect("new");
    let contact = s
        .crm_interaction(earlier_id)
        .await
        .unwrap()
        .unwrap()
        .contact_id;
    let old_ticket = s
        .create_ticket(&Ticket {
            contact_id: contact,
            interaction_id: Some(earlier_id),
            subject: "Parcel lost".into(),
            fields: "{}".into(),
            status: "open".into(),
            created_at_ms: t0 - 86_000_000,
            updated_at_ms: t0 - 86_000_000,
            ..Ticket::default()
        })
        .await
        .expect("ticket");

    // The live call: the screen pop creates its interaction on the same contact.
    let mut call = VoiceCall {
        call_id: "live@test".into(),
        caller: "sip:+1 555 0100001@127.0.0.1".into(),
        agent: None,
        queue: Some("support".into()),
        started_at_ms: t0,
    };
    let pop = screen_pop(s, &PopKey::Voice(call.clone()), 10, t0)
        .await
        .expect("pop")
        .expect("a contact");
    assert_eq!(pop["contact"]["id"], contact);
    let live = pop["interaction_id"].as_i64().expect("live interaction");
    assert_ne!(live, earlier_id);
    assert_eq!(pop["open_tickets"][0]["ticket_id"], old_ticket, "{pop}");
    let history = pop["history"].as_array().expect("history");
    assert_eq!(
        history.len(),
        2,
        "the earlier call and its ticket, not the live call: {pop}"
    );
    assert_eq!(history[0]["type"], "ticket", "newest first");
    assert_eq!(history[1]["interaction_id"], earlier_id);

    // The agent answers: the same row gets the agent.
    call.agent = Some("alice".into());
    assert_eq!(
        call_interaction(s, &call).await.expect("find"),
        Some((live, contact))
    );
    let ticket = s
        .create_ticket(&Ticket {
            contact_id: contact,
            interaction_id: Some(live),
            subject: "Refund".into(),
            fields: "{}".into(),
            status: "new".into(),
            created_at_ms: t0 + 1000,
            updated_at_ms: t0 + 1000,
            ..Ticket::default()
        })
        .await
        .expect("ticket");

    // The survey's score: on the interaction (with agent and queue) and on its ticket.
    let crm = Crm::new(s.clone());
    assert_eq!(record_csat(&crm, &call, 4).await.expect("csat"), Some(live));
    let i = s.crm_interaction(live).await.unwrap().unwrap();
    assert_eq!(
        (i.csat, i.agent.as_deref(), i.queue.as_deref()),
        (Some(4), Some("alice"), Some("support"))
    );
    assert_eq!(s.ticket(ticket).await.unwrap().unwrap().csat, Some(4));
    assert_eq!(s.ticket(old_ticket).await.unwrap().unwrap().csat, None);
    let scores = s.csat_scores(0, i64::MAX).await.expect("scores");
    assert_eq!(scores.len(), 1);
    assert_eq!(
        (
            scores[0].agent.as_deref(),
            scores[0].queue.as_deref(),
            scores[0].score
        ),
        (Some("alice"), Some("support"), 4)
    );

    // The CDR completes the live row; no second interaction for the call.
    let cdr = Cdr {
        call_id: "live@test".into(),
        caller: "sip:+15550100001@127.0.0.1".into(),
        callee: "sip:600@127.0.0.1".into(),
        start_ms: t0,
        answer_ms: Some(t0),
        end_ms: t0 + 60_000,
        duration_ms: 60_000,
        cause: "normal_clearing".into(),
        sip_code: 200,
        ..Cdr::default()
    };
    assert_eq!(record_call(s, &cdr).await.expect("record"), None);
    let i = s.crm_interaction(live).await.unwrap().unwrap();
    assert_eq!(i.ended_at_ms, Some(t0 + 60_000));
    let details: serde_json::Value = serde_json::from_str(&i.details).expect("details");
    assert_eq!(details["duration_ms"], 60_000);
    assert_eq!(i.csat, Some(4), "the score stays");
    assert_eq!(s.crm_interactions_of(contact, None).await.unwrap().len(), 2);

    // A chat from the same number finds the contact; an unknown visitor gets a new one.
    let ids = chat_identities(&json!({"phone": "+1 555 0100001"}), Some("v-9"));
    let pop = screen_pop(s, &PopKey::Identities(ids), 3, t0 + 90_000)
        .await
        .expect("pop")
        .expect("contact");
    assert_eq!(pop["contact"]["id"], contact);
    assert_eq!(
        pop["history"].as_array().map(Vec::len),
        Some(3),
        "the newest 3: {pop}"
    );
    // The score was given now (after the call's start): the newest entry.
    assert_eq!(pop["history"][0]["type"], "csat", "{pop}");
    assert_eq!(pop["history"][1]["type"], "ticket", "{pop}");
    assert_eq!(pop["interaction_id"], json!(null));
    let ids = chat_identities(&json!({}), Some("v-new"));
    let pop = screen_pop(s, &PopKey::Identities(ids), 10, t0)
        .await
        .expect("pop")
        .expect("created");
    assert_ne!(pop["contact"]["id"], contact);
    assert_eq!(pop["history"], json!([]));
    assert_eq!(
        screen_pop(s, &PopKey::Identities(Vec::new()), 10, t0)
            .await
            .expect("pop"),
        None
    );
}
