//! The shipped operations files (`deploy/`): the systemd unit verifies clean with
//! `systemd-analyze verify` (installed by tests/api/setup.sh when missing; missing → the test
//! FAILS with that pointer, never skips), runs `rollgate serve`, and gives the server the stop
//! time its shutdown needs.

use std::path::Path;
use std::process::Command;

const UNIT: &str = include_str!("../../deploy/rollgate.service");

#[test]
fn the_systemd_unit_verifies_clean_and_runs_the_server() {
    // Verified against the binary this test built (the unit names its installed path).
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("rollgate.service");
    let binary = env!("CARGO_BIN_EXE_rollgate");
    assert!(
        UNIT.contains("ExecStart=/usr/local/bin/rollgate serve\n"),
        "{UNIT}"
    );
    std::fs::write(&unit, UNIT.replace("/usr/local/bin/rollgate", binary)).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap_or_else(|e| {
            panic!("systemd-analyze: {e}; run tests/api/setup.sh (scripts/test.sh does)")
        });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.trim().is_empty(),
        "warnings (an unknown or misspelt key?): {stderr}"
    );

    // The data dir is the unit's state directory; the stop time covers the 10 s drain.
    assert!(UNIT.contains("StateDirectory=rollgate\n"));
    assert!(UNIT.contains("Environment=ROLLGATE_DATA_DIR=/var/lib/rollgate\n"));
    let stop: u64 = UNIT
        .lines()
        .find_map(|l| l.strip_prefix("TimeoutStopSec="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(stop >= 15, "TimeoutStopSec={stop}");
    assert!(Path::new(binary).exists());
}
