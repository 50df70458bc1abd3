//! Registrations and CDRs live in the database: bindings survive a restart of the engine and
//! expire on time; CDRs are read back. The same test runs on SQLite (the default) and on the
//! PostgreSQL that `make test` starts (`SWITCHBOARD_TEST_PG`).

use std::process::Command;
use std::time::Duration;
use switchboard_tests::{bin_path, free_port, register, sipp, Engine};

fn calls(engine: &Engine, n: u32) -> bool {
    let uas_port = free_port();
    let mut uas = sipp(
        &[
            "-sn",
            "uas",
            "-i",
            "127.0.0.1",
            "-p",
            &uas_port.to_string(),
            "-m",
            &n.to_string(),
        ],
        60,
    );
    std::thread::sleep(Duration::from_millis(300));
    // The binding points at this UAS port: refresh it (the user was registered before).
    assert_eq!(
        register(
            engine,
            "uas",
            "pw",
            format!("127.0.0.1:{uas_port}").parse().expect("addr"),
            3600
        ),
        200
    );
    let ok = run_uac(engine, n);
    let _ = uas.kill();
    ok
}

fn run_uac(engine: &Engine, n: u32) -> bool {
    let target = engine.sip_addr().to_string();
    let port = free_port().to_string();
    sipp(
        &[
            "-sn",
            "uac",
            &target,
            "-s",
            "uas",
            "-i",
            "127.0.0.1",
            "-p",
            &port,
            "-m",
            &n.to_string(),
            "-r",
            "50",
            "-d",
            "100",
            "-timeout",
            "30s",
        ],
        40,
    )
    .wait()
    .map(|s| s.success())
    .unwrap_or(false)
}

fn cdr_count(engine: &Engine) -> usize {
    let out = Command::new(bin_path())
        .args(["cdr", "list", "--json", "--limit", "1000", "--config"])
        .arg(engine.config_path())
        .output()
        .expect("cdr list");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("\"cause\":\"normal_clearing\""))
        .count()
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
    assert_eq!(cdr_count(&engine), 10);

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
    let mut uas = sipp(
        &[
            "-sn",
            "uas",
            "-i",
            "127.0.0.1",
            "-p",
            &uas_port.to_string(),
            "-m",
            "5",
        ],
        60,
    );
    std::thread::sleep(Duration::from_millis(300));
    let ok = run_uac(&engine, 5);
    let _ = uas.kill();
    assert!(
        ok,
        "calls after the restart reach the restored binding; log:\n{}",
        engine.log()
    );
    assert_eq!(
        cdr_count(&engine),
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
