//! The same repository tests on both backends: SQLite in a temp directory, and PostgreSQL at
//! `$SWITCHBOARD_TEST_PG` in a schema of its own (created, used, dropped), so that parallel runs
//! and reruns never see each other's rows.
//!
//! Without `$SWITCHBOARD_TEST_PG` the PostgreSQL test fails when `SWITCHBOARD_REQUIRE_PG=1`
//! (as `make test` sets) and is otherwise skipped with a loud message.

use sqlx::{AssertSqlSafe, Connection, Row};
use switchboard_storage::{
    ha1_md5, ha1_sha256, Backend, Binding, Cdr, CdrFilter, Recording, Storage, StorageError,
    StoredEvent,
};

/// Known vectors: `printf 'alice:switchboard:secret' | md5sum` and `| sha256sum`.
const ALICE_HA1_MD5: &str = "04edd9ed7517a1d90445b0c86f283b19";
const ALICE_HA1_SHA256: &str = "0510c3df272bafea598ccad1f8335bec4b835330cb7be697869e62c466dd1809";

#[tokio::test]
async fn sqlite_backend() {
    let dir = tempfile::tempdir().expect("temp dir");
    // The parent directory does not exist yet: connect creates it.
    let path = dir.path().join("nested/data/switchboard.db");
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let storage = Storage::connect(&url).await.expect("connect sqlite");
    assert_eq!(storage.backend(), Backend::Sqlite);
    assert!(path.exists(), "database file created");
    exercise(&storage).await;
    storage.close().await;

    // Reopening runs the (already applied) migrations again and keeps the data.
    let again = Storage::connect(&url).await.expect("reconnect sqlite");
    assert_eq!(again.list_users().await.expect("list").len(), 2);
    assert_eq!(again.list_cdrs(10).await.expect("cdrs").len(), 6);
    assert_eq!(
        again
            .list_recordings(10, 0)
            .await
            .expect("recordings")
            .len(),
        2
    );
    again.close().await;
}

#[tokio::test]
async fn sqlite_in_memory() {
    let storage = Storage::connect("sqlite::memory:").await.expect("connect");
    exercise(&storage).await;
}

#[tokio::test]
async fn postgres_backend() {
    let Some(base) = std::env::var("SWITCHBOARD_TEST_PG")
        .ok()
        .filter(|s| !s.is_empty())
    else {
        if std::env::var("SWITCHBOARD_REQUIRE_PG").as_deref() == Ok("1") {
            panic!("SWITCHBOARD_REQUIRE_PG=1 but SWITCHBOARD_TEST_PG is unset");
        }
        eprintln!("\n*** postgres_backend skipped: SWITCHBOARD_TEST_PG unset ***\n");
        return;
    };
    let schema = PgSchema::create(&base).await;
    let storage = Storage::connect(&schema.url)
        .await
        .expect("connect postgres");
    assert_eq!(storage.backend(), Backend::Postgres);
    exercise(&storage).await;
    storage.close().await;

    let again = Storage::connect(&schema.url).await.expect("reconnect");
    assert_eq!(again.list_users().await.expect("list").len(), 2);
    again.close().await;
    schema.drop().await;
}

#[tokio::test]
async fn unsupported_url_is_refused() {
    let err = Storage::connect("mysql://u:secret@h/db")
        .await
        .expect_err("mysql is not supported");
    assert!(matches!(err, StorageError::UnsupportedUrl { .. }));
    assert!(!err.to_string().contains("secret"), "{err}");
}

/// The shared body: users, bindings, CDRs and recordings on an empty database.
async fn exercise(s: &Storage) {
    users(s).await;
    bindings(s).await;
    cdrs(s).await;
    recordings(s).await;
    events(s).await;
}

/// The event stream: ordered pages after a sequence number, the largest one, age pruning that
/// keeps the newest event.
async fn events(s: &Storage) {
    assert_eq!(s.max_event_seq().await.expect("max"), 0);
    let batch: Vec<StoredEvent> = (1..=5)
        .map(|i| StoredEvent {
            seq: i,
            at_ms: 1_000 * i,
            kind: "call.created".into(),
            data: format!("{{\"n\":{i}}}"),
        })
        .collect();
    assert_eq!(s.insert_events(&batch).await.expect("insert"), 5);
    assert_eq!(s.max_event_seq().await.expect("max"), 5);
    let page = s.events_after(2, 2).await.expect("page");
    assert_eq!(page, batch[2..4].to_vec());
    assert!(s.insert_events(&batch[..1]).await.is_err(), "seq is unique");
    assert_eq!(s.prune_events(i64::MAX).await.expect("prune"), 4);
    assert_eq!(
        s.events_after(0, 10).await.expect("rest"),
        batch[4..].to_vec()
    );
    assert_eq!(s.max_event_seq().await.expect("max"), 5);
}

async fn users(s: &Storage) {
    assert!(s.list_users().await.expect("list").is_empty());
    s.add_user("alice", "switchboard", "secret", Some("Alice Liddell"))
        .await
        .expect("add alice");
    let alice = s
        .get_user("alice", "switchboard")
        .await
        .expect("get")
        .expect("alice exists");
    assert_eq!(alice.username, "alice");
    assert_eq!(alice.realm, "switchboard");
    assert_eq!(alice.ha1_md5, ALICE_HA1_MD5);
    assert_eq!(alice.ha1_sha256, ALICE_HA1_SHA256);
    assert_eq!(ha1_md5("alice", "switchboard", "secret"), ALICE_HA1_MD5);
    assert_eq!(
        ha1_sha256("alice", "switchboard", "secret"),
        ALICE_HA1_SHA256
    );
    assert_eq!(alice.display_name.as_deref(), Some("Alice Liddell"));
    assert!(
        alice.created_at_ms > 1_600_000_000_000,
        "epoch milliseconds"
    );

    // Same name and realm: a conflict that says so; the stored hash is untouched.
    let err = s
        .add_user("alice", "switchboard", "other", None)
        .await
        .expect_err("duplicate");
    assert!(matches!(err, StorageError::Conflict { .. }), "{err:?}");
    assert!(err.to_string().contains("already exists"), "{err}");
    let still = s.get_user("alice", "switchboard").await.expect("get");
    assert_eq!(still.map(|u| u.ha1_md5).as_deref(), Some(ALICE_HA1_MD5));

    // The same name in another realm is another user.
    s.add_user("alice", "example.com", "secret", None)
        .await
        .expect("alice@example.com");
    s.add_user("bob", "switchboard", "hunter2", Some(""))
        .await
        .expect("bob");
    let bob = s.get_user("bob", "switchboard").await.expect("get");
    assert_eq!(bob.and_then(|b| b.display_name), None, "empty → none");

    let err = s.add_user("carol", "switchboard", "", None).await;
    assert!(matches!(err, Err(StorageError::Invalid { .. })), "{err:?}");
    let err = s.add_user("ca:rol", "switchboard", "pw", None).await;
    assert!(matches!(err, Err(StorageError::Invalid { .. })), "{err:?}");

    let list = s.list_users().await.expect("list");
    let names: Vec<_> = list
        .iter()
        .map(|u| (u.realm.as_str(), u.username.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("example.com", "alice"),
            ("switchboard", "alice"),
            ("switchboard", "bob")
        ]
    );

    assert!(s.remove_user("alice", "example.com").await.expect("remove"));
    assert!(!s.remove_user("alice", "example.com").await.expect("again"));
    assert!(s
        .get_user("alice", "example.com")
        .await
        .expect("get")
        .is_none());
    assert!(s
        .get_user("nobody", "switchboard")
        .await
        .expect("get")
        .is_none());
    assert_eq!(s.list_users().await.expect("list").len(), 2);
}

fn binding(aor: &str, contact: &str, q: i64, expires_at_ms: i64, updated_at_ms: i64) -> Binding {
    Binding {
        aor: aor.into(),
        contact_uri: contact.into(),
        expires_at_ms,
        q,
        call_id: format!("cid-{contact}"),
        cseq: 1,
        source: "udp:127.0.0.1:5062#conn".into(),
        user_agent: Some("test-ua/1.0".into()),
        updated_at_ms,
    }
}

fn contacts(bindings: &[Binding]) -> Vec<&str> {
    bindings.iter().map(|b| b.contact_uri.as_str()).collect()
}

async fn bindings(s: &Storage) {
    const ALICE: &str = "sip:alice@switchboard";
    const BOB: &str = "sip:bob@switchboard";
    let now = 1_700_000_000_000_i64;

    assert!(s.bindings(ALICE, now).await.expect("none").is_empty());
    let desk = binding(ALICE, "sip:alice@10.0.0.1:5062", 1000, now + 60_000, now);
    let mobile = binding(ALICE, "sip:alice@10.0.0.2:5062", 500, now + 3_600_000, now);
    let laptop = binding(
        ALICE,
        "sip:alice@10.0.0.3:5062",
        1000,
        now + 30_000,
        now + 5,
    );
    let mut bob_phone = binding(BOB, "sip:bob@10.0.0.9:5060", 1000, now + 60_000, now);
    bob_phone.user_agent = None;
    for b in [&desk, &mobile, &laptop, &bob_phone] {
        s.upsert_binding(b).await.expect("upsert");
    }

    // q desc, then most recently updated first.
    let got = s.bindings(ALICE, now).await.expect("bindings");
    assert_eq!(
        contacts(&got),
        [
            "sip:alice@10.0.0.3:5062",
            "sip:alice@10.0.0.1:5062",
            "sip:alice@10.0.0.2:5062"
        ]
    );
    assert_eq!(got[1], desk, "every field round-trips");
    assert_eq!(
        s.bindings(BOB, now).await.expect("bob"),
        [bob_phone.clone()]
    );

    // A refresh replaces the row (no duplicate) and moves it ahead of the equal-q laptop.
    let mut refreshed = desk.clone();
    refreshed.expires_at_ms = now + 120_000;
    refreshed.cseq = 2;
    refreshed.updated_at_ms = now + 10;
    refreshed.source = "tcp:127.0.0.1:40000#conn".into();
    refreshed.user_agent = None;
    s.upsert_binding(&refreshed).await.expect("refresh");
    let got = s.bindings(ALICE, now).await.expect("bindings");
    assert_eq!(got.len(), 3);
    assert_eq!(got[0], refreshed);
    assert_eq!(got[1].contact_uri, laptop.contact_uri);

    // Expiry: a binding is gone at its expiry instant, before it is purged.
    let later = now + 30_000;
    assert_eq!(
        contacts(&s.bindings(ALICE, later).await.expect("later")),
        ["sip:alice@10.0.0.1:5062", "sip:alice@10.0.0.2:5062"]
    );
    let all = s.all_bindings(later).await.expect("all");
    assert_eq!(
        contacts(&all),
        [
            "sip:alice@10.0.0.1:5062",
            "sip:alice@10.0.0.2:5062",
            "sip:bob@10.0.0.9:5060"
        ]
    );
    assert_eq!(s.all_bindings(now).await.expect("all now").len(), 4);

    // Purge: laptop (expired at +30 s) and bob (+60 s) at +60 s.
    assert_eq!(s.purge_expired(now + 60_000).await.expect("purge"), 2);
    assert_eq!(s.purge_expired(now + 60_000).await.expect("purge"), 0);
    assert_eq!(s.all_bindings(now).await.expect("all").len(), 2);

    assert!(s
        .remove_binding(ALICE, "sip:alice@10.0.0.2:5062")
        .await
        .expect("remove"));
    assert!(!s
        .remove_binding(ALICE, "sip:alice@10.0.0.2:5062")
        .await
        .expect("again"));
    s.upsert_binding(&mobile).await.expect("re-add");
    assert_eq!(s.remove_all_bindings(ALICE).await.expect("remove all"), 2);
    assert_eq!(s.remove_all_bindings(ALICE).await.expect("again"), 0);
    assert!(s.all_bindings(now).await.expect("all").is_empty());
}

async fn cdrs(s: &Storage) {
    assert!(s.list_cdrs(10).await.expect("empty").is_empty());
    let answered = Cdr {
        id: 0,
        call_id: "call-1@test".into(),
        caller: "sip:alice@switchboard".into(),
        callee: "sip:bob@switchboard".into(),
        start_ms: 1_700_000_000_000,
        answer_ms: Some(1_700_000_002_000),
        end_ms: 1_700_000_012_000,
        duration_ms: 10_000,
        cause: "normal_clearing".into(),
        sip_code: 200,
        packets_a_to_b: 500,
        packets_b_to_a: 498,
        bytes_a_to_b: 86_000,
        bytes_b_to_a: 85_656,
        lost_a_to_b: 0,
        lost_b_to_a: 2,
        mos_a: Some(4.32),
        mos_b: Some(3.871_234_5),
        jitter_a_ms: Some(2.5),
        jitter_b_ms: Some(12.75),
        codec_a: Some("PCMU".into()),
        codec_b: Some("opus".into()),
        recording: Some("recordings/2023/11/14/call-1@test.wav".into()),
    };
    let unanswered = Cdr {
        call_id: "call-2@test".into(),
        start_ms: 1_700_000_100_000,
        end_ms: 1_700_000_130_000,
        cause: "no_answer".into(),
        sip_code: 480,
        ..answered.clone()
    };
    let unanswered = Cdr {
        answer_ms: None,
        duration_ms: 0,
        packets_a_to_b: 0,
        packets_b_to_a: 0,
        bytes_a_to_b: 0,
        bytes_b_to_a: 0,
        lost_b_to_a: 0,
        mos_a: None,
        mos_b: None,
        jitter_a_ms: None,
        jitter_b_ms: None,
        codec_a: None,
        codec_b: None,
        recording: None,
        ..unanswered
    };
    let busy = Cdr {
        id: 12345, // ignored
        call_id: "call-3@test".into(),
        cause: "busy".into(),
        sip_code: 486,
        ..unanswered.clone()
    };

    // The batch path (the engine's CDR writer), as the first CDR insert on any connection: its
    // first row has no quality figures, the next ones some or all. (sqlx 0.9.0 prepares with the
    // first run's parameter types, and types a NULL f64 wrongly: see `bind_real` in cdrs.rs.)
    let bare = Cdr {
        call_id: "call-0@test".into(),
        ..unanswered.clone()
    };
    let partial = Cdr {
        call_id: "call-4@test".into(),
        mos_a: Some(1.0),
        jitter_a_ms: Some(0.0),
        codec_a: Some("G722".into()),
        ..unanswered.clone()
    };
    let full = Cdr {
        call_id: "call-5@test".into(),
        ..answered.clone()
    };
    let batch = [bare.clone(), partial.clone(), full.clone()];
    assert_eq!(s.insert_cdrs(&batch).await.expect("batch"), 3);
    assert_eq!(s.insert_cdrs(&[]).await.expect("empty batch"), 0);
    let mut stored = s.list_cdrs(3).await.expect("list");
    stored.reverse();
    let ids: Vec<i64> = stored.iter().map(|c| c.id).collect();
    let expected: Vec<Cdr> = batch
        .into_iter()
        .zip(&ids)
        .map(|(c, &id)| Cdr { id, ..c })
        .collect();
    assert_eq!(stored, expected, "every field round-trips, NULLs included");
    assert_eq!(stored[1].mos_b, None);

    let id1 = s.insert_cdr(&answered).await.expect("insert 1");
    let id2 = s.insert_cdr(&unanswered).await.expect("insert 2");
    let id3 = s.insert_cdr(&busy).await.expect("insert 3");
    assert!(id1 < id2 && id2 < id3, "{id1} {id2} {id3}");
    assert_ne!(id3, 12345);

    let newest = s.list_cdrs(2).await.expect("list");
    let ids: Vec<i64> = newest.iter().map(|c| c.id).collect();
    assert_eq!(ids, [id3, id2]);
    assert_eq!(s.list_cdrs(100).await.expect("all").len(), 6);
    assert!(s.list_cdrs(0).await.expect("none").is_empty());

    let got = s
        .cdr_by_call_id("call-1@test")
        .await
        .expect("by call id")
        .expect("found");
    assert_eq!(
        got,
        Cdr {
            id: id1,
            ..answered.clone()
        }
    );
    let got = s
        .cdr_by_call_id("call-2@test")
        .await
        .expect("by call id")
        .expect("found");
    assert_eq!(
        got,
        Cdr {
            id: id2,
            ..unanswered.clone()
        }
    );
    assert_eq!(got.answer_ms, None);
    assert_eq!((got.mos_a, got.codec_b, got.recording), (None, None, None));
    assert!(s
        .cdr_by_call_id("nope")
        .await
        .expect("by call id")
        .is_none());
    search(s, id1).await;
}

/// `search_cdrs` and `cdr` agree with filtering every row by hand.
async fn search(s: &Storage, id1: i64) {
    let all = s.list_cdrs(100).await.expect("all");
    let pick = |f: &dyn Fn(&Cdr) -> bool| -> Vec<i64> {
        all.iter().filter(|c| f(c)).map(|c| c.id).collect()
    };
    let run = |f: CdrFilter| async move {
        let got = s.search_cdrs(&f).await.expect("search");
        got.iter().map(|c| c.id).collect::<Vec<i64>>()
    };
    let every = CdrFilter {
        limit: 100,
        ..CdrFilter::default()
    };
    assert_eq!(run(every.clone()).await, pick(&|_| true));
    let caller = "sip:alice@switchboard".to_string();
    let f = CdrFilter {
        caller: caller.clone(),
        ..every.clone()
    };
    assert_eq!(run(f).await, pick(&|c| c.caller == caller));
    let callee = "sip:bob@switchboard".to_string();
    let f = CdrFilter {
        callee: callee.clone(),
        from_ms: Some(1_700_000_000_000),
        to_ms: Some(1_700_000_000_001),
        ..every.clone()
    };
    let want = pick(&|c| c.callee == callee && c.start_ms == 1_700_000_000_000);
    assert!(!want.is_empty());
    assert_eq!(run(f).await, want);
    let page = CdrFilter {
        limit: 2,
        offset: 1,
        ..every
    };
    assert_eq!(run(page).await, pick(&|_| true)[1..3].to_vec());
    let one = s.cdr(id1).await.expect("by id").expect("found");
    assert_eq!(one.id, id1);
    assert!(s.cdr(-5).await.expect("by id").is_none());
}

fn recording(call_id: &str, path: &str, started_ms: i64) -> Recording {
    Recording {
        id: 0,
        call_id: call_id.into(),
        path: path.into(),
        started_ms,
        duration_ms: 61_240,
        bytes: 3_919_404,
        rate: 16_000,
        channels: 2,
        legs: "caller,callee".into(),
        format: "wav".into(),
        created_ms: started_ms + 61_500,
    }
}

async fn recordings(s: &Storage) {
    let t = 1_700_000_000_000_i64;
    assert!(s.list_recordings(10, 0).await.expect("empty").is_empty());
    assert!(s
        .recordings_for_call("call-1@test")
        .await
        .expect("none")
        .is_empty());

    // Two recordings of call 1 (inserted out of order: paused and resumed), one of call 2.
    let second = recording("call-1@test", "rec/call-1-b.wav", t + 30_000);
    let first = Recording {
        id: 999, // ignored
        ..recording("call-1@test", "rec/call-1-a.wav", t)
    };
    let other = Recording {
        channels: 1,
        legs: "caller".into(),
        rate: 8000,
        ..recording(
            "call-2@test",
            "/var/lib/switchboard/rec/call-2.wav",
            t + 5_000,
        )
    };
    let id_second = s.insert_recording(&second).await.expect("insert");
    let id_first = s.insert_recording(&first).await.expect("insert");
    let id_other = s.insert_recording(&other).await.expect("insert");
    assert!(id_second < id_first && id_first < id_other);
    assert_ne!(id_first, 999);

    // Every field round-trips.
    let got = s.recording(id_other).await.expect("get").expect("found");
    assert_eq!(
        got,
        Recording {
            id: id_other,
            ..other.clone()
        }
    );
    assert!(s.recording(id_other + 1000).await.expect("get").is_none());

    // By call: oldest first, whatever the insertion order.
    let call1 = s.recordings_for_call("call-1@test").await.expect("by call");
    assert_eq!(
        call1,
        [
            Recording {
                id: id_first,
                ..first.clone()
            },
            Recording {
                id: id_second,
                ..second.clone()
            },
        ]
    );
    assert!(s
        .recordings_for_call("nope")
        .await
        .expect("by call")
        .is_empty());

    // Pages: newest first.
    let ids = |v: Vec<Recording>| v.iter().map(|r| r.id).collect::<Vec<_>>();
    let all = s.list_recordings(10, 0).await.expect("list");
    assert_eq!(ids(all), [id_other, id_first, id_second]);
    assert_eq!(
        ids(s.list_recordings(2, 0).await.expect("page 1")),
        [id_other, id_first]
    );
    assert_eq!(
        ids(s.list_recordings(2, 2).await.expect("page 2")),
        [id_second]
    );
    assert!(s
        .list_recordings(2, 4)
        .await
        .expect("past the end")
        .is_empty());
    assert!(s.list_recordings(0, 0).await.expect("none").is_empty());

    // Refused before reaching the database.
    let err = s.insert_recording(&recording("", "x.wav", t)).await;
    assert!(matches!(err, Err(StorageError::Invalid { .. })), "{err:?}");
    let err = s.insert_recording(&recording("call-9@test", "", t)).await;
    assert!(matches!(err, Err(StorageError::Invalid { .. })), "{err:?}");

    // Delete: the row goes (the file is the caller's business), once.
    assert!(s.delete_recording(id_second).await.expect("delete"));
    assert!(!s.delete_recording(id_second).await.expect("again"));
    assert!(s.recording(id_second).await.expect("get").is_none());
    assert_eq!(
        ids(s.recordings_for_call("call-1@test").await.expect("by call")),
        [id_first]
    );
    assert_eq!(s.list_recordings(10, 0).await.expect("list").len(), 2);
}

/// A PostgreSQL schema private to one test run; `url` points `search_path` at it.
struct PgSchema {
    base: String,
    name: String,
    url: String,
}

impl PgSchema {
    /// Schemas left behind by crashed runs are dropped after this many seconds.
    const STALE_SECS: u64 = 3600;

    async fn create(base: &str) -> PgSchema {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970");
        let name = format!(
            "sb_test_{}_{}_{}",
            now.as_secs(),
            std::process::id(),
            now.subsec_nanos()
        );
        let mut conn = sqlx::PgConnection::connect(base)
            .await
            .expect("connect to $SWITCHBOARD_TEST_PG");
        // Clean up after runs that panicked before dropping their schema.
        let old = sqlx::query("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'sb_test_%'")
            .fetch_all(&mut conn)
            .await
            .expect("list schemas");
        for row in old {
            let old_name: String = row.get("nspname");
            let born = old_name
                .split('_')
                .nth(2)
                .and_then(|s| s.parse::<u64>().ok());
            if born.is_some_and(|b| b + Self::STALE_SECS < now.as_secs()) {
                let _ = sqlx::query(AssertSqlSafe(format!(
                    "DROP SCHEMA IF EXISTS \"{old_name}\" CASCADE"
                )))
                .execute(&mut conn)
                .await;
            }
        }
        sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA \"{name}\"")))
            .execute(&mut conn)
            .await
            .expect("create schema");
        conn.close().await.expect("close");
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options=-c%20search_path%3D{name}");
        PgSchema {
            base: base.to_string(),
            name,
            url,
        }
    }

    async fn drop(self) {
        let mut conn = sqlx::PgConnection::connect(&self.base)
            .await
            .expect("connect");
        sqlx::query(AssertSqlSafe(format!(
            "DROP SCHEMA \"{}\" CASCADE",
            self.name
        )))
        .execute(&mut conn)
        .await
        .expect("drop schema");
        let _ = conn.close().await;
    }
}
