//! The served OpenAPI document validates (`openapi-spec-validator`), and `schemathesis` (both
//! PyPI, pinned; `make test` installs them into `target/schemathesis-venv`) fuzzes every
//! operation of a running engine with an admin token without a single 5xx.

use std::path::PathBuf;
use std::process::Command;
use switchboard_tests::{http_get, Engine};

const ADMIN: &str = "schemathesis-admin-token";

/// The venv holding schemathesis: `$SWITCHBOARD_SCHEMATHESIS_VENV`, or `target/schemathesis-venv`.
fn venv() -> PathBuf {
    let dir = std::env::var_os("SWITCHBOARD_SCHEMATHESIS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/schemathesis-venv")
        });
    assert!(
        dir.join("bin/schemathesis").exists(),
        "schemathesis is not installed in {} (`make deps-schemathesis` installs it)",
        dir.display()
    );
    dir
}

#[test]
fn openapi_document_validates_and_schemathesis_finds_no_server_error() {
    let venv = venv();
    let engine = Engine::start(&format!(
        "[contact_centre]\nconfig_file = \"builtin:demo\"\n\
         [[api.tokens]]\ntoken = \"{ADMIN}\"\nrole = \"admin\"\n"
    ));
    let (status, doc) = http_get(engine.http_addr(), "/api/v1/openapi.json").expect("answer");
    assert_eq!(status, 200);
    let file = engine.dir.path().join("openapi.json");
    std::fs::write(&file, &doc).expect("write the document");
    let out = Command::new(venv.join("bin/openapi-spec-validator"))
        .arg(&file)
        .output()
        .expect("run openapi-spec-validator");
    assert!(
        out.status.success(),
        "the OpenAPI document does not validate:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("timeout")
        .args(["-k", "10", "600"])
        .arg(venv.join("bin/schemathesis"))
        .args([
            "run",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "12",
        ])
        .args(["--phases", "examples,coverage,fuzzing", "--workers", "1"])
        .args(["--generation-deterministic", "--request-timeout", "20"])
        .arg("--url")
        .arg(format!("http://{}", engine.http_addr()))
        .args(["-H", &format!("Authorization: Bearer {ADMIN}")])
        .arg(&file)
        .current_dir(engine.dir.path())
        .env("NO_COLOR", "1")
        .output()
        .expect("run schemathesis");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "schemathesis failed:\n{text}\nengine log:\n{}",
        engine.log()
    );
    assert!(!text.contains("Server error"), "{text}");
    // It really ran: every operation, and a few hundred generated cases.
    let cases: u64 = text
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_suffix(" passed")?
                .split(" generated")
                .next()?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0);
    eprintln!("{text}");
    let after = |key: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(key).map(|v| v.trim().to_string()))
            .unwrap_or_default()
    };
    let (selected, tested) = (after("Selected:"), after("Tested:"));
    let total = selected.split('/').nth(1).unwrap_or("?");
    assert_eq!(
        (selected.split('/').next(), tested.as_str()),
        (Some(total), total),
        "not every operation was tested"
    );
    assert!(cases >= 300, "only {cases} generated cases:\n{text}");
}
