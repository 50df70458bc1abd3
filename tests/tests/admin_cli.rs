//! The admin CLI end to end: `switchboard user add/list/remove` and `switchboard cdr list` run
//! through the real binary against a SQLite database in a temp directory.

use std::path::Path;
use std::process::{Command, Output};
use switchboard_storage::{Cdr, Storage};
use switchboard_tests::bin_path;

/// Runs the binary; returns (success, stdout, stderr).
fn sb(args: &[&str]) -> (bool, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(bin_path())
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run switchboard");
    (
        status.success(),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

fn db_url(dir: &Path) -> String {
    // A directory that does not exist yet: the CLI creates it.
    format!("sqlite://{}?mode=rwc", dir.join("data/admin.db").display())
}

/// Runs `f` on a fresh current-thread runtime.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

#[test]
fn user_add_list_remove() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = db_url(dir.path());

    let (ok, out, err) = sb(&[
        "user",
        "add",
        "alice",
        "--password",
        "secret",
        "--display-name",
        "Alice Liddell",
        "--database-url",
        &url,
    ]);
    assert!(ok, "user add failed: {err}");
    assert!(out.contains("alice"), "{out}");

    // The password is stored only as HA1 hashes, in the default realm.
    let alice = block_on(async {
        let s = Storage::connect(&url).await.expect("open");
        s.get_user("alice", "switchboard").await.expect("get")
    })
    .expect("alice stored in realm switchboard");
    assert_eq!(alice.ha1_md5, "04edd9ed7517a1d90445b0c86f283b19");

    // A duplicate fails with a clear message and a non-zero status.
    let (ok, _, err) = sb(&[
        "user",
        "add",
        "alice",
        "--password",
        "x",
        "--database-url",
        &url,
    ]);
    assert!(!ok, "duplicate accepted");
    assert!(err.contains("already exists"), "{err}");

    // The realm and the database can come from a configuration file; options go anywhere.
    let cfg = dir.path().join("switchboard.toml");
    std::fs::write(
        &cfg,
        format!("[database]\nurl = \"{url}\"\n[registrar]\nrealm = \"example.com\"\n"),
    )
    .expect("write config");
    let cfg = cfg.to_string_lossy().into_owned();
    let (ok, _, err) = sb(&["user", "--config", &cfg, "add", "bob", "--password", "pw"]);
    assert!(ok, "user add with --config failed: {err}");

    let (ok, out, err) = sb(&["user", "list", "--database-url", &url]);
    assert!(ok, "user list failed: {err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "header and two users:\n{out}");
    assert!(lines[0].starts_with("USERNAME"), "{out}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("bob") && l.contains("example.com")),
        "{out}"
    );
    assert!(
        lines.iter().any(|l| l.contains("alice")
            && l.contains("switchboard")
            && l.contains("Alice Liddell")),
        "{out}"
    );
    assert!(!out.contains("secret"), "no password in the listing");

    let (ok, _, err) = sb(&["user", "remove", "alice", "--database-url", &url]);
    assert!(ok, "user remove failed: {err}");
    let (ok, _, err) = sb(&["user", "remove", "alice", "--database-url", &url]);
    assert!(!ok, "removing a missing user succeeded");
    assert!(err.contains("no user"), "{err}");
    let (ok, _, err) = sb(&["user", "remove", "bob", "--config", &cfg]);
    assert!(ok, "user remove with the config's realm failed: {err}");

    let (ok, out, _) = sb(&["user", "list", "--database-url", &url]);
    assert!(ok);
    assert_eq!(out.lines().count(), 1, "only the header left:\n{out}");
}

#[test]
fn cdr_list_table_and_json() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = db_url(dir.path());

    // Empty database: a header, no rows; JSON: nothing.
    let (ok, out, err) = sb(&["cdr", "list", "--database-url", &url]);
    assert!(ok, "cdr list failed: {err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    let (ok, out, _) = sb(&["cdr", "list", "--json", "--database-url", &url]);
    assert!(ok);
    assert!(out.is_empty(), "{out}");

    block_on(async {
        let s = Storage::connect(&url).await.expect("open");
        for (i, cause, code) in [
            (1, "normal_clearing", 200),
            (2, "busy", 486),
            (3, "no_answer", 480),
        ] {
            s.insert_cdr(&Cdr {
                call_id: format!("call-{i}@test"),
                caller: "sip:alice@switchboard".into(),
                callee: "sip:bob@switchboard".into(),
                start_ms: 1_700_000_000_000 + i * 1000,
                answer_ms: (code == 200).then_some(1_700_000_002_000),
                end_ms: 1_700_000_010_000 + i * 1000,
                duration_ms: if code == 200 { 9_000 } else { 0 },
                cause: cause.into(),
                sip_code: code,
                packets_a_to_b: 450,
                ..Cdr::default()
            })
            .await
            .expect("insert");
        }
        s.close().await;
    });

    let (ok, out, err) = sb(&["cdr", "list", "--limit", "2", "--database-url", &url]);
    assert!(ok, "cdr list failed: {err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "header and two rows:\n{out}");
    assert!(lines[0].starts_with("ID"), "{out}");
    assert!(
        lines[1].contains("call-3@test") && lines[1].contains("no_answer"),
        "{out}"
    );
    assert!(
        lines[2].contains("call-2@test") && lines[2].contains("486"),
        "{out}"
    );

    let (ok, out, err) = sb(&["cdr", "list", "--json", "--database-url", &url]);
    assert!(ok, "cdr list --json failed: {err}");
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    let call_ids: Vec<&str> = rows.iter().filter_map(|r| r["call_id"].as_str()).collect();
    assert_eq!(call_ids, ["call-3@test", "call-2@test", "call-1@test"]);
    assert_eq!(rows[2]["sip_code"], 200);
    assert_eq!(rows[2]["duration_ms"], 9000);
    assert_eq!(rows[2]["answer_ms"], 1_700_000_002_000_i64);
    assert!(rows[0]["answer_ms"].is_null());
}

#[test]
fn bad_database_url_fails_cleanly() {
    let (ok, out, err) = sb(&["user", "list", "--database-url", "mysql://u:hunter2@h/db"]);
    assert!(!ok);
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("unsupported database URL"), "{err}");
    assert!(
        !err.contains("hunter2"),
        "no password in the message: {err}"
    );
}
