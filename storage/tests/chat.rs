//! Chat persistence on both backends: conversations, messages in seq order, receipts, ended
//! state, CSAT, attachments, the open-conversation lookup of API channels, and a transaction
//! that fails as a whole (nothing half-written). PostgreSQL runs at `$SWITCHBOARD_TEST_PG` in a
//! schema of its own, as in `backends.rs`.

use sqlx::{AssertSqlSafe, Connection};
use switchboard_storage::{
    ChatAttachmentRow, ChatMessageRow, ChatRow, ChatWrite, Identity, Interaction, SearchQuery,
    Storage,
};

#[tokio::test]
async fn chat_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("c.db").display());
    let s = Storage::connect(&url).await.expect("connect");
    exercise(&s).await;
    s.close().await;
}

#[tokio::test]
async fn chat_postgres() {
    let Some(base) = std::env::var("SWITCHBOARD_TEST_PG")
        .ok()
        .filter(|s| !s.is_empty())
    else {
        if std::env::var("SWITCHBOARD_REQUIRE_PG").as_deref() == Ok("1") {
            panic!("SWITCHBOARD_REQUIRE_PG=1 but SWITCHBOARD_TEST_PG is unset");
        }
        eprintln!("\n*** chat_postgres skipped: SWITCHBOARD_TEST_PG unset ***\n");
        return;
    };
    let name = format!(
        "sb_test_{}_{}_chat",
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

fn chat(id: &str, source: &str, user: &str) -> ChatRow {
    ChatRow {
        id: id.into(),
        channel: if source.is_empty() {
            "chat"
        } else {
            "messaging"
        }
        .into(),
        source: source.into(),
        external_user_id: Some(user.into()),
        token_hash: format!("hash-{id}"),
        name: "Ann".into(),
        email: Some("ann@example.com".into()),
        phone: None,
        queue: Some("web".into()),
        attributes: "{}".into(),
        interaction_id: None,
        agent: None,
        state: "queued".into(),
        ended_by: None,
        csat: None,
        created_at_ms: 1_000,
        ended_at_ms: None,
    }
}

fn msg(chat: &str, seq: i64, sender: &str, body: &str) -> ChatWrite {
    ChatWrite::Message(ChatMessageRow {
        chat_id: chat.into(),
        seq,
        sender: sender.into(),
        author: sender.into(),
        body: body.into(),
        attachment_id: None,
        created_at_ms: 1_000 + seq,
        delivered_at_ms: None,
        read_at_ms: None,
    })
}

async fn exercise(s: &Storage) {
    let w = vec![
        ChatWrite::Create(chat("c1", "", "v-1")),
        ChatWrite::Interaction {
            chat_id: "c1".into(),
            interaction_id: 7,
        },
        msg("c1", 1, "customer", "hello"),
        ChatWrite::Assigned {
            chat_id: "c1".into(),
            agent: "alice".into(),
        },
        msg("c1", 2, "agent", "hi"),
        msg("c1", 3, "agent", "how can I help?"),
        ChatWrite::Receipt {
            chat_id: "c1".into(),
            sender: "agent".into(),
            seq: 3,
            read: false,
            at_ms: 2_000,
        },
        ChatWrite::Receipt {
            chat_id: "c1".into(),
            sender: "agent".into(),
            seq: 2,
            read: true,
            at_ms: 2_500,
        },
        ChatWrite::Attachment(ChatAttachmentRow {
            id: "a1".into(),
            chat_id: "c1".into(),
            file_name: "x.png".into(),
            mime_type: "image/png".into(),
            size_bytes: 3,
            path: "chat/c1/a1".into(),
            created_at_ms: 3_000,
        }),
    ];
    assert_eq!(s.apply_chat_writes(&w).await.expect("writes"), w.len());
    let c = s.chat("c1").await.expect("chat").expect("row");
    assert_eq!(c.state, "active");
    assert_eq!(c.agent.as_deref(), Some("alice"));
    assert_eq!(c.interaction_id, Some(7));
    assert_eq!(
        s.chat_by_token("hash-c1")
            .await
            .expect("by token")
            .map(|c| c.id),
        Some("c1".to_string())
    );
    assert_eq!(s.chat_by_token("nope").await.expect("by token"), None);

    let m = s.chat_messages("c1", 0, 100).await.expect("messages");
    assert_eq!(m.iter().map(|m| m.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(m[0].delivered_at_ms, None, "customer messages untouched");
    assert_eq!(
        (m[1].delivered_at_ms, m[1].read_at_ms),
        (Some(2_000), Some(2_500))
    );
    assert_eq!((m[2].delivered_at_ms, m[2].read_at_ms), (Some(2_000), None));
    assert_eq!(s.chat_messages("c1", 1, 1).await.expect("page")[0].seq, 2);
    let a = s.chat_attachment("a1").await.expect("att").expect("row");
    assert_eq!((a.mime_type.as_str(), a.size_bytes), ("image/png", 3));

    // CSAT only once ended.
    assert!(!s.set_chat_csat("c1", 5).await.expect("csat"));
    s.apply_chat_writes(&[ChatWrite::Ended {
        chat_id: "c1".into(),
        by: "agent".into(),
        at_ms: 4_000,
    }])
    .await
    .expect("end");
    assert!(s.set_chat_csat("c1", 4).await.expect("csat"));
    // A second end does not overwrite the first.
    s.apply_chat_writes(&[
        ChatWrite::Ended {
            chat_id: "c1".into(),
            by: "system".into(),
            at_ms: 9_000,
        },
        ChatWrite::Csat {
            chat_id: "c1".into(),
            score: 5,
        },
    ])
    .await
    .expect("end again");
    let c = s.chat("c1").await.expect("chat").expect("row");
    assert_eq!(
        (
            c.state.as_str(),
            c.ended_by.as_deref(),
            c.ended_at_ms,
            c.csat
        ),
        ("ended", Some("agent"), Some(4_000), Some(5))
    );

    // API channel conversations: the open one of a user.
    s.apply_chat_writes(&[
        ChatWrite::Create(chat("m1", "tg", "u-9")),
        ChatWrite::Ended {
            chat_id: "m1".into(),
            by: "agent".into(),
            at_ms: 5_000,
        },
        ChatWrite::Create(ChatRow {
            created_at_ms: 6_000,
            ..chat("m2", "tg", "u-9")
        }),
    ])
    .await
    .expect("channel chats");
    let open = s.open_chat_of("tg", "u-9").await.expect("open");
    assert_eq!(open.map(|c| c.id), Some("m2".to_string()));
    assert_eq!(s.open_chat_of("tg", "u-1").await.expect("none"), None);

    // A failing batch leaves nothing behind (duplicate seq 1 of m2).
    let bad = vec![msg("m2", 1, "customer", "a"), msg("m2", 1, "customer", "b")];
    assert!(s.apply_chat_writes(&bad).await.is_err());
    assert!(s.chat_messages("m2", 0, 10).await.expect("m2").is_empty());

    // Message lines for the chat's CRM interaction: appended in order and searchable, in the
    // batch's transaction; a line for no such interaction is a no-op.
    let (contact, _) = s
        .find_or_create_contact(
            &Identity {
                kind: "visitor".into(),
                value: "v-crm".into(),
            },
            1,
        )
        .await
        .expect("contact");
    let crm = s
        .record_interaction(&Interaction {
            contact_id: contact,
            channel: "chat".into(),
            source_ref: Some("m3".into()),
            started_at_ms: 10,
            details: "{}".into(),
            ..Interaction::default()
        })
        .await
        .expect("CRM interaction");
    s.apply_chat_writes(&[
        ChatWrite::CrmText {
            interaction_id: crm,
            line: "Nora: my parcel is late".into(),
        },
        ChatWrite::CrmText {
            interaction_id: crm,
            line: "alice: sorry about that".into(),
        },
        ChatWrite::CrmText {
            interaction_id: crm + 1000,
            line: "nobody".into(),
        },
    ])
    .await
    .expect("CRM text");
    let i = s.crm_interaction(crm).await.expect("read").expect("exists");
    assert_eq!(i.text, "Nora: my parcel is late\nalice: sorry about that");
    let hits = s
        .search(&SearchQuery {
            text: "parcel".into(),
            limit: 10,
            ..SearchQuery::default()
        })
        .await
        .expect("search");
    assert_eq!(hits.iter().map(|h| h.id).collect::<Vec<_>>(), [crm]);
}
