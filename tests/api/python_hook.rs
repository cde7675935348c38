//! The Python hook (`clients/python`, `rollgate-openfeature`) against a real server.
//!
//! Each test starts servers on port 0 and runs a pytest file of `clients/python/tests/` with
//! the official `openfeature-sdk` + `openfeature-provider-ofrep`, in the venv made by
//! `clients/python/setup.sh`. The Python tests read every count back from the server's
//! `/metrics`. When the venv is missing the tests FAIL with a pointer to the script.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::Command;

use crate::helpers::{spawn_app, spawn_app_with, TestApp};

const SETUP_HINT: &str = "run clients/python/setup.sh (scripts/test.sh does)";

/// Generous: a loaded 2-core CI machine is slow, and the 429 test waits out Retry-After.
const PYTEST_TIMEOUT: Duration = Duration::from_secs(240);

fn python_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/python")
}

/// Runs `pytest files` against `app` (and `limited`, a rate-limited server), failing the test
/// with pytest's whole output unless every test passed.
async fn pytest(files: &[&str], app: &TestApp, limited: Option<&TestApp>) {
    let dir = python_dir();
    let python = dir.join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: {SETUP_HINT}",
        python.display()
    );
    let mut command = Command::new(&python);
    command
        .args(["-m", "pytest", "-p", "no:cacheprovider", "-q"])
        .args(files)
        .current_dir(&dir)
        .env("ROLLGATE_URL", &app.address)
        .env("ROLLGATE_ADMIN_TOKEN", &app.admin_token)
        // The servers are on loopback: never route the hook through a proxy.
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .kill_on_drop(true);
    if let Some(limited) = limited {
        command.env("ROLLGATE_LIMITED_URL", &limited.address);
    }
    let output = match tokio::time::timeout(PYTEST_TIMEOUT, command.output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => panic!("could not start {}: {e}; {SETUP_HINT}", python.display()),
        Err(_) => panic!("pytest {files:?} did not finish within {PYTEST_TIMEOUT:?}"),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "pytest {files:?} failed ({}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        output.status
    );
    // pytest's closing line when all passed and none was skipped: `N passed in 1.23s`.
    assert!(
        stdout.lines().any(|l| {
            let mut words = l.split_whitespace();
            words.next().is_some_and(|n| n.parse::<u32>().is_ok_and(|n| n > 0))
                && words.next() == Some("passed")
                && words.next() == Some("in")
        }),
        "pytest {files:?} did not end with `N passed in …` (skipped or none ran?):\n{stdout}\n{stderr}"
    );
}

#[tokio::test]
async fn python_hook_reports_exact_signals_through_the_ofrep_provider() {
    let app = spawn_app().await;
    pytest(
        &[
            "tests/test_signals.py",
            "tests/test_client_report.py",
            "tests/test_audiences.py",
        ],
        &app,
        None,
    )
    .await;
}

#[tokio::test]
async fn python_hook_gives_exact_totals_from_many_threads() {
    let app = spawn_app().await;
    pytest(&["tests/test_threads.py"], &app, None).await;
}

#[tokio::test]
async fn python_hook_never_fails_the_app_when_the_server_fails() {
    let app = spawn_app().await;
    let limited = spawn_app_with(|c| c.timing.signals_per_second = 2).await;
    pytest(&["tests/test_resilience.py"], &app, Some(&limited)).await;
}
