//! "Durable (fsynced)" means fsynced: the real `rollgate serve` runs under `strace`, and every
//! acknowledged ops write must show, between the request and its answer, sled's `pwrite64` to
//! its `db` file followed by an `fdatasync`/`fsync` of that file that finished before the
//! answer. sled's own `sync_file_range` does not count: it flushes neither the drive's cache
//! nor the file size.
//!
//! strace is installed by `tests/api/setup.sh` (run by `scripts/test.sh`); without it this test
//! fails, it does not skip.

use crate::helpers::{bool_flag, policies_dir, ADMIN_TOKEN};
use serde_json::json;
use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncBufReadExt, BufReader};

const NEED_STRACE: &str = "strace is required by this test (it counts the server's real sync \
     calls): run `bash tests/api/setup.sh` as root (scripts/test.sh does), or install strace";

#[tokio::test]
async fn every_acknowledged_write_is_fdatasynced_after_sleds_write_and_before_the_answer() {
    let version = std::process::Command::new("strace").arg("-V").output();
    assert!(version.is_ok_and(|o| o.status.success()), "{NEED_STRACE}");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let trace = dir.path().join("strace.log");
    let mut server = TracedServer::start(&data, &trace).await;
    let client = reqwest::Client::new();

    // Act: acknowledged ops writes, one at a time, each with its wall-clock window.
    let mut writes: Vec<(String, f64, f64)> = Vec::new();
    for i in 0..6 {
        let key = format!("f{i}");
        let flag = bool_flag(&key, 10.0 * i as f64);
        let put = client
            .put(server.url(&format!("/api/v1/flags/{key}")))
            .json(&flag);
        writes.push(acknowledged(&format!("PUT flag {key}"), put).await);
    }
    for i in 0..3 {
        let put = client
            .put(server.url("/api/v1/flags/f0/rollout"))
            .json(&json!({"percentage": 20 + i}));
        writes.push(acknowledged("PUT rollout f0", put).await);
    }
    let kill = client.post(server.url("/api/v1/flags/f1/kill"));
    writes.push(acknowledged("POST kill f1", kill).await);
    server.stop().await;

    // Assert
    let calls = parse_strace(&std::fs::read_to_string(&trace).unwrap());
    let db = data.canonicalize().unwrap().join("db"); // strace -y prints resolved paths
    let on_db = |c: &&Call| Path::new(&c.path) == db;
    let mut missing = Vec::new();
    for (what, sent, answered) in &writes {
        let within = |c: &&Call| c.start >= *sent && c.end <= *answered;
        let pwrites: Vec<&Call> = calls
            .iter()
            .filter(on_db)
            .filter(within)
            .filter(|c| c.name == "pwrite64")
            .collect();
        let synced_after_write = calls
            .iter()
            .filter(on_db)
            .filter(within)
            .filter(|c| c.name == "fdatasync" || c.name == "fsync")
            .any(|s| pwrites.iter().any(|w| w.end <= s.start));
        if pwrites.is_empty() || !synced_after_write {
            let seen: Vec<String> = calls
                .iter()
                .filter(within)
                .map(|c| format!("{}({})", c.name, c.path))
                .collect();
            missing.push(format!("{what}: {}", seen.join(", ")));
        }
    }
    let count = |name: &str| {
        calls
            .iter()
            .filter(on_db)
            .filter(|c| c.name == name)
            .count()
    };
    let syncs = count("fdatasync") + count("fsync");
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged writes were answered without pwrite64 → fdatasync/fsync of {} \
         before the answer (whole run on db: {} fdatasync, {} fsync, {} sync_file_range). \
         Calls seen during those requests:\n{}",
        missing.len(),
        writes.len(),
        db.display(),
        count("fdatasync"),
        count("fsync"),
        count("sync_file_range"),
        missing.join("\n")
    );
    assert!(
        syncs >= writes.len(),
        "{syncs} syncs of db for {} acknowledged writes",
        writes.len()
    );
}

/// Sends `request` with the admin token; returns (what, sent, answered) in Unix seconds.
async fn acknowledged(what: &str, request: reqwest::RequestBuilder) -> (String, f64, f64) {
    let sent = unix_now();
    let response = request.bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    let answered = unix_now();
    assert!(
        response.status().is_success(),
        "{what}: {}",
        response.status()
    );
    (what.to_owned(), sent, answered)
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// `rollgate serve` under `strace -f`, its system calls logged to a file.
struct TracedServer {
    strace: tokio::process::Child,
    /// The traced server; killed on drop if the test did not stop it.
    server_pid: Option<u32>,
    address: String,
    _stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl TracedServer {
    async fn start(data: &Path, trace: &Path) -> Self {
        let mut strace = tokio::process::Command::new("strace")
            // -f every thread, -ttt Unix time of entry, -T duration, -y the fd's path.
            .args(["-f", "-ttt", "-T", "-y", "-qq"])
            .args(["-e", "trace=fsync,fdatasync,sync_file_range,pwrite64", "-o"])
            .arg(trace)
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_rollgate"))
            .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .arg("--policies-dir")
            .arg(policies_dir())
            .env("ROLLGATE_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect(NEED_STRACE);
        let mut stderr = strace.stderr.take().unwrap();
        let mut stdout = BufReader::new(strace.stdout.take().unwrap()).lines();
        let listening = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = stdout.next_line().await.unwrap() {
                if let Some(url) = line.strip_prefix("rollgate listening on ") {
                    return Some(url.to_owned());
                }
            }
            None
        })
        .await
        .expect("server did not start under strace in 60 s");
        let Some(address) = listening else {
            let mut why = String::new();
            let _ = tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut why).await;
            panic!(
                "rollgate under strace exited before listening (is ptrace allowed here?): {why}"
            );
        };
        let server_pid = child_of(strace.id().unwrap());
        TracedServer {
            strace,
            server_pid: Some(server_pid),
            address,
            _stdout: stdout,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// SIGTERM to the server; strace exits with it and has written its whole log.
    async fn stop(&mut self) {
        let pid = self.server_pid.take().unwrap();
        signal(pid, "-TERM");
        let status = tokio::time::timeout(Duration::from_secs(30), self.strace.wait())
            .await
            .expect("server did not stop within 30 s of SIGTERM")
            .unwrap();
        assert!(status.success(), "strace/rollgate exited with {status}");
    }
}

impl Drop for TracedServer {
    fn drop(&mut self) {
        // Killing strace would leave the server running detached.
        if let Some(pid) = self.server_pid {
            signal(pid, "-KILL");
        }
    }
}

fn signal(pid: u32, which: &str) {
    let _ = std::process::Command::new("kill")
        .args([which, &pid.to_string()])
        .status();
}

/// The one child process of `parent` (the server strace started), from `/proc/*/stat`.
fn child_of(parent: u32) -> u32 {
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid …"; comm may contain spaces, so split after the last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) {
            return pid;
        }
    }
    panic!("no child of strace (pid {parent}) found");
}

/// One traced system call: name, the path of its fd, and its start and end in Unix seconds.
#[derive(Debug)]
struct Call {
    name: String,
    path: String,
    start: f64,
    end: f64,
}

/// Parses `strace -f -ttt -T -y -o` output, joining `<unfinished ...>` / `resumed` pairs.
fn parse_strace(log: &str) -> Vec<Call> {
    let mut calls = Vec::new();
    let mut pending: HashMap<&str, (&str, f64, &str)> = HashMap::new();
    for line in log.lines() {
        // "PID  SECONDS.MICROS call(…) = ret <duration>"; strace pads the pid with spaces.
        let Some((pid, rest)) = line.trim_start().split_once(' ') else {
            continue;
        };
        let Some((ts, rest)) = rest.trim_start().split_once(' ') else {
            continue;
        };
        let Ok(ts) = ts.parse::<f64>() else { continue };
        if let Some(resumed) = rest.strip_prefix("<... ") {
            let Some((name, start, args)) = pending.remove(pid) else {
                continue;
            };
            let name_here = resumed.split(' ').next().unwrap_or_default();
            assert_eq!(name, name_here, "strace line out of order: {line}");
            calls.push(call(
                name,
                args,
                start,
                duration(rest).unwrap_or(ts - start),
            ));
        } else if let Some((name, args)) = rest.split_once('(') {
            if rest.ends_with("<unfinished ...>") {
                pending.insert(pid, (name, ts, args));
            } else {
                calls.push(call(name, args, ts, duration(rest).unwrap_or(0.0)));
            }
        }
    }
    calls
}

fn call(name: &str, args: &str, start: f64, duration: f64) -> Call {
    // With -y the first argument is `fd<path>`.
    let path = args
        .split_once('<')
        .and_then(|(_, p)| p.split_once('>'))
        .map(|(p, _)| p.to_owned())
        .unwrap_or_default();
    Call {
        name: name.to_owned(),
        path,
        start,
        end: start + duration,
    }
}

/// The trailing `<0.000123>` that -T appends.
fn duration(line: &str) -> Option<f64> {
    let inner = line.trim_end().strip_suffix('>')?;
    inner.rsplit_once('<')?.1.parse().ok()
}
