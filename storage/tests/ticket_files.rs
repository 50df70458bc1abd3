//! Ticket attachments and SLA breach marks on both backends: metadata rows tied to their
//! ticket (an unknown ticket stores nothing), listing in upload order, lookup scoped to the
//! ticket, delete returning the row; the sweep query pages open tickets whose timers are
//! neither met nor announced, and a breach mark is set exactly once per timer.
//! PostgreSQL runs at `$SWITCHBOARD_TEST_PG` in a schema of its own, as in `backends.rs`.

use sqlx::{AssertSqlSafe, Connection};
use switchboard_storage::{NewContact, SlaTimer, Storage, Ticket, TicketAttachment};

#[tokio::test]
async fn ticket_files_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let s = Storage::connect(&url).await.expect("connect");
    exercise(&s).await;
    s.close().await;
}

#[tokio::test]
async fn ticket_files_postgres() {
    let Some(base) = std::env::var("SWITCHBOARD_TEST_PG")
        .ok()
        .filter(|s| !s.is_empty())
    else {
        if std::env::var("SWITCHBOARD_REQUIRE_PG").as_deref() == Ok("1") {
            panic!("SWITCHBOARD_REQUIRE_PG=1 but SWITCHBOARD_TEST_PG is unset");
        }
        eprintln!("\n*** ticket_files_postgres skipped: SWITCHBOARD_TEST_PG unset ***\n");
        return;
    };
    let name = format!(
        "sb_test_{}_{}_tfiles",
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

fn attachment(id: &str, ticket_id: i64, at: i64) -> TicketAttachment {
    TicketAttachment {
        id: id.into(),
        ticket_id,
        file_name: format!("{id}.pdf"),
        mime_type: "application/pdf".into(),
        size_bytes: 1234,
        path: format!("tickets/{ticket_id}/{id}"),
        uploaded_by: Some("alice".into()),
        created_at_ms: at,
    }
}

async fn exercise(s: &Storage) {
    let contact = s
        .create_contact(
            &NewContact {
                name: Some("Ann".into()),
                attributes: "{}".into(),
                identities: vec![],
                tags: vec![],
            },
            1_000,
        )
        .await
        .expect("contact");
    let ticket = |subject: &str| Ticket {
        contact_id: contact,
        subject: subject.into(),
        fields: "{}".into(),
        status: "new".into(),
        created_at_ms: 1_000,
        updated_at_ms: 1_000,
        ..Ticket::default()
    };
    let t1 = s.create_ticket(&ticket("one")).await.expect("ticket");
    let t2 = s.create_ticket(&ticket("two")).await.expect("ticket");

    // Attachments: stored on their ticket, listed oldest first, scoped by ticket.
    assert!(!s
        .add_ticket_attachment(&attachment("a0", 999_999, 2_000))
        .await
        .expect("no ticket"));
    assert!(s
        .add_ticket_attachment(&attachment("a2", t1, 3_000))
        .await
        .expect("add"));
    assert!(s
        .add_ticket_attachment(&attachment("a1", t1, 2_000))
        .await
        .expect("add"));
    let list = s.ticket_attachments(t1).await.expect("list");
    let ids: Vec<&str> = list.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, ["a1", "a2"]);
    assert_eq!(list[0], attachment("a1", t1, 2_000));
    assert_eq!(
        s.ticket(t1).await.expect("read").expect("t1").updated_at_ms,
        2_000,
        "an upload touches the ticket (the last one stored: a1 at 2 000)"
    );
    assert!(s.ticket_attachment(t2, "a1").await.expect("get").is_none());
    assert_eq!(
        s.ticket_attachment(t1, "a1").await.expect("get"),
        Some(attachment("a1", t1, 2_000))
    );
    assert!(s
        .delete_ticket_attachment(t2, "a1")
        .await
        .expect("delete")
        .is_none());
    assert_eq!(
        s.delete_ticket_attachment(t1, "a1").await.expect("delete"),
        Some(attachment("a1", t1, 2_000))
    );
    assert_eq!(s.ticket_attachments(t1).await.expect("list").len(), 1);

    // SLA sweep: both tickets have unmet timers; paging by id.
    let page = s.tickets_for_sla_sweep(0, 1).await.expect("sweep");
    assert_eq!(page.iter().map(|t| t.id).collect::<Vec<_>>(), [t1]);
    let page = s.tickets_for_sla_sweep(t1, 10).await.expect("sweep");
    assert_eq!(page.iter().map(|t| t.id).collect::<Vec<_>>(), [t2]);
    // A mark is set once.
    assert!(s
        .mark_sla_breach(t1, SlaTimer::FirstResponse, 5_000)
        .await
        .expect("mark"));
    assert!(!s
        .mark_sla_breach(t1, SlaTimer::FirstResponse, 6_000)
        .await
        .expect("mark again"));
    let t = s.ticket(t1).await.expect("read").expect("t1");
    assert_eq!(t.breach_first_response_at_ms, Some(5_000));
    assert_eq!(t.breach_resolution_at_ms, None);
    // The ticket update path never clears a mark.
    let mut t = t;
    t.status = "open".into();
    assert!(s.update_ticket(&t, "new").await.expect("update"));
    assert_eq!(
        s.ticket(t1)
            .await
            .expect("read")
            .expect("t1")
            .breach_first_response_at_ms,
        Some(5_000)
    );
    // Resolution still pending: t1 stays in the sweep until that one is marked too.
    assert_eq!(
        s.tickets_for_sla_sweep(0, 10).await.expect("sweep").len(),
        2
    );
    assert!(s
        .mark_sla_breach(t1, SlaTimer::Resolution, 7_000)
        .await
        .expect("mark"));
    let ids: Vec<i64> = s
        .tickets_for_sla_sweep(0, 10)
        .await
        .expect("sweep")
        .iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(ids, [t2]);
}
