//! Registrations and CDRs live in the database: bindings survive a restart of the engine and
//! expire on time; CDRs are read back. The same test runs on SQLite (the default) and on the
//! PostgreSQL that `make test` starts (`SWITCHBOARD_TEST_PG`).

use std::process::Command;
use std::time::Duration;
use switchboard_tests::{free_port, register, sipp_uac, Engine, SippUas};

fn calls(engine: &Engine, n: u32) -> bool {
    let uas = SippUas::start(n);
    // The binding points at this UAS: refresh it (the user was registered before).
    assert_eq!(uas.register(engine, "uas", "pw"), 200);
    run_uac(engine, n)
}

fn run_uac(engine: &Engine, n: u32) -> bool {
    sipp_uac(engine, "uas", n, 50, 100, 100)
        .wait()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// The number of CDRs of normally cleared calls, once `n` are stored (CDRs are written in the
/// background when a call ends).
fn wait_cdrs(engine: &Engine, n: usize) -> usize {
    let count = |all: &[serde_json::Value]| {
        all.iter()
            .filter(|c| c["cause"] == "normal_clearing")
            .count()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let c = count(&switchboard_tests::cdrs(engine, 1000));
        if c >= n || std::time::Instant::now() > deadline {
            return c;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn scenario(extra: &str) {
    let mut engine = Engine::start(&format!(
        "[calls]\ntrusted_sources = [\"127.0.0.1\"]\n[registrar]\nmin_expires_secs = 1\n{extra}"
    ));
    engine.add_user("uas", "pw");
    assert!(
        calls(&engine, 10),
        "10 calls before the restart; log:\n{}",
        engine.log()
    );
    assert_eq!(wait_cdrs(&engine, 10), 10);

    // The binding is restored from the database after a hard restart: calls still reach the UAS
    // (same contact, no new REGISTER).
    let uas_port = free_port();
    assert_eq!(
        register(
            &engine,
            "uas",
            "pw",
            format!("127.0.0.1:{uas_port}").parse().expect("addr"),
            3600
        ),
        200
    );
    engine.restart();
    let uas = SippUas::on_port(uas_port, 5);
    let ok = run_uac(&engine, 5);
    drop(uas);
    assert!(
        ok,
        "calls after the restart reach the restored binding; log:\n{}",
        engine.log()
    );
    assert_eq!(
        wait_cdrs(&engine, 15),
        15,
        "CDRs from before and after the restart"
    );

    // Bindings expire on time: a 2 s registration is gone after 3 s, and the call gets 404.
    assert_eq!(
        register(
            &engine,
            "uas",
            "pw",
            format!("127.0.0.1:{uas_port}").parse().expect("addr"),
            0
        ),
        200
    );
    assert_eq!(
        register(
            &engine,
            "uas",
            "pw",
            format!("127.0.0.1:{uas_port}").parse().expect("addr"),
            2
        ),
        200
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !run_uac(&engine, 1),
        "a call to an expired binding must fail"
    );

    // Wrong password → 403.
    assert_eq!(
        register(
            &engine,
            "uas",
            "wrong",
            format!("127.0.0.1:{uas_port}").parse().expect("addr"),
            60
        ),
        403
    );
}

#[test]
fn sqlite_bindings_and_cdrs_survive_a_restart() {
    scenario("");
}

#[test]
fn postgres_bindings_and_cdrs_survive_a_restart() {
    let Ok(url) = std::env::var("SWITCHBOARD_TEST_PG") else {
        assert!(
            std::env::var("SWITCHBOARD_REQUIRE_PG").is_err(),
            "SWITCHBOARD_TEST_PG must be set"
        );
        eprintln!("*** postgres test skipped: SWITCHBOARD_TEST_PG unset ***");
        return;
    };
    // A schema of our own, so reruns and parallel runs do not see each other's rows.
    let schema = format!(
        "sb_e2e_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
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
