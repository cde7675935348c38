//! Interop: the official OpenFeature SDKs evaluate flags over OFREP against a real server.
//!
//! Each test starts a server on port 0 and runs one script from `tests/interop/` with the
//! official SDK + OFREP provider of its language (Python `openfeature-sdk` +
//! `openfeature-provider-ofrep`, Node `@openfeature/server-sdk` + `@openfeature/ofrep-provider`).
//! The script creates its own flags and a client token over the admin API, evaluates through
//! the provider and prints one line per check.
//!
//! The clients are installed by `tests/interop/setup.sh`. When they are missing the tests
//! FAIL with a pointer to that script rather than skip: a green run must mean that the
//! official clients really talked to this server.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use tokio::process::Command;

const SETUP_HINT: &str = "run tests/interop/setup.sh (the README test command does)";

/// Generous: a script makes ~100 requests, but a loaded 2-core CI machine is slow.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// Runs `program script` in `tests/interop/` against `address`, failing the test with the
/// script's whole output unless it exits 0.
async fn run_interop_script(program: &Path, script: &str, address: &str, admin_token: &str) {
    let dir = interop_dir();
    let run = Command::new(program)
        .arg(dir.join(script))
        .current_dir(&dir)
        .env("ROLLGATE_URL", address)
        .env("ROLLGATE_ADMIN_TOKEN", admin_token)
        // The server is on loopback: never route the clients through a proxy.
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .kill_on_drop(true)
        .output();
    let output: Output = match tokio::time::timeout(SCRIPT_TIMEOUT, run).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => panic!(
            "could not start {} {script}: {e}; {SETUP_HINT}",
            program.display()
        ),
        Err(_) => panic!("{script} did not finish within {SCRIPT_TIMEOUT:?}"),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{script} failed ({}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        output.status
    );
    assert!(
        stdout.lines().any(|l| l.ends_with(" passed, 0 failed")),
        "{script} exited 0 without its `N passed, 0 failed` line:\n{stdout}\n{stderr}"
    );
}

#[tokio::test]
async fn python_openfeature_sdk_evaluates_over_ofrep() {
    // Arrange
    let python = interop_dir().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: {SETUP_HINT}",
        python.display()
    );
    let app = crate::helpers::spawn_app().await;

    // Act + Assert (the script asserts each check)
    run_interop_script(&python, "ofrep_python.py", &app.address, &app.admin_token).await;
}

#[tokio::test]
async fn node_openfeature_sdk_evaluates_over_ofrep() {
    // Arrange
    let provider = interop_dir().join("node_modules/@openfeature/ofrep-provider/package.json");
    assert!(
        provider.exists(),
        "{} is missing: {SETUP_HINT}",
        provider.display()
    );
    let app = crate::helpers::spawn_app().await;

    // Act + Assert (the script asserts each check)
    run_interop_script(
        Path::new("node"),
        "ofrep_node.mjs",
        &app.address,
        &app.admin_token,
    )
    .await;
}
