//! Rollback drills (`POST /api/v1/drills`, `rollgate drill`; docs/operations.md, "Drills"): the
//! server kills and revives a dedicated drill flag through the normal commit path and measures
//! what an emergency rollback would do — how fast the change reached the connected streams,
//! which share of live clients confirmed it and how fast, and whether the audit log, webhooks
//! and the store held.
//!
//! This file is the pure core: the result's shape, the figures from raw delays, the verdict.
//! `run.rs` is the shell that performs a drill; `keep.rs` keeps results in either backend.

mod keep;
mod run;

pub use keep::{get, list, save, MAX_KEPT};
pub use run::{run, DrillError};

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The drill flag when the request names none.
pub const DEFAULT_FLAG: &str = "rollgate-drill";
/// How long a drill waits for client reports by default, ms.
pub const DEFAULT_WAIT_MS: u64 = 3_000;
/// The longest wait a request may ask for, ms.
pub const MAX_WAIT_MS: u64 = 60_000;

/// What a drill was asked to do (already validated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrillRequest {
    /// The drill flag.
    pub flag: String,
    /// Longest wait for streams and client reports after the kill, ms.
    pub wait_ms: u64,
}

/// Why a drill request is refused: the field and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct BadRequest {
    /// The offending field.
    pub field: &'static str,
    /// Why.
    pub message: String,
}

/// Validates a request's fields.
pub fn request(flag: Option<String>, wait_ms: Option<u64>) -> Result<DrillRequest, BadRequest> {
    let flag = flag.unwrap_or_else(|| DEFAULT_FLAG.to_owned());
    if !valid_key(&flag) {
        return Err(BadRequest {
            field: "flag",
            message: "a flag key: [a-z0-9][a-z0-9._-]{0,127}".to_owned(),
        });
    }
    let wait_ms = wait_ms.unwrap_or(DEFAULT_WAIT_MS);
    if wait_ms > MAX_WAIT_MS {
        return Err(BadRequest {
            field: "wait_ms",
            message: format!("at most {MAX_WAIT_MS}"),
        });
    }
    Ok(DrillRequest { flag, wait_ms })
}

fn valid_key(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && key.len() <= 128
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
}

/// A kept drill result (the answer of `POST /api/v1/drills`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DrillResult {
    /// UUIDv7 (newest sorts last).
    pub id: String,
    /// The drill flag.
    pub flag: String,
    /// Token name that ran it.
    pub actor: String,
    /// The node that ran it (cluster), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// RFC 3339 UTC.
    pub started: String,
    /// RFC 3339 UTC.
    pub finished: String,
    /// Whether the drill created its flag.
    pub created_flag: bool,
    /// The kill, then the revive.
    pub steps: Vec<DrillStep>,
    /// Reach of the kill: live clients that confirmed its revision.
    pub reach: DrillReach,
    /// Each check, passed or not, with the reason.
    pub checks: Vec<DrillCheck>,
    /// Every check passed.
    pub passed: bool,
}

/// One committed change of the drill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DrillStep {
    /// `kill` or `revive`.
    pub action: String,
    /// Its revision.
    pub revision: u64,
    /// Commit time, RFC 3339 UTC.
    pub committed_at: String,
    /// How long the commit took (writer lock to durable and published), ms.
    pub commit_ms: f64,
    /// How the change reached this node's connected streams.
    pub stream: DrillStream,
}

/// How one change reached the node's connected streams: delay from hand-over to the hub to the
/// stream's write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DrillStream {
    /// Streams connected when the change was committed.
    pub subscribers: u64,
    /// Streams that wrote the change within the wait.
    pub reached: u64,
    /// Median delay, ms.
    pub p50_ms: Option<f64>,
    /// 99th percentile, ms.
    pub p99_ms: Option<f64>,
    /// Longest, ms.
    pub max_ms: Option<f64>,
}

impl DrillStream {
    /// The figures of the recorded `delays` with `subscribers` streams connected.
    pub fn of(subscribers: u64, delays: &[Duration]) -> DrillStream {
        let mut ms: Vec<f64> = delays.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        DrillStream {
            subscribers,
            reached: ms.len() as u64,
            p50_ms: quantile(&ms, 0.5),
            p99_ms: quantile(&ms, 0.99),
            max_ms: ms.last().copied(),
        }
    }
}

/// The `q` quantile of sorted values (nearest rank), `None` when empty.
fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// Reach of the kill, from the clients' version reports (`crate::reach`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DrillReach {
    /// Live clients at the end of the wait.
    pub live_clients: u64,
    /// Of them, those at or past the kill's revision.
    pub confirmed: u64,
    /// `confirmed / live_clients`; `None` without live clients.
    pub share: Option<f64>,
    /// Median apply latency, ms.
    pub p50_ms: Option<u64>,
    /// 99th percentile apply latency, ms.
    pub p99_ms: Option<u64>,
    /// The configured `reach_target`.
    pub target: f64,
}

/// One check of a drill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DrillCheck {
    /// `streams`, `reach`, `audit`, `webhooks` or `durable`.
    pub name: String,
    /// Whether it held.
    pub passed: bool,
    /// Why, in words.
    pub reason: String,
}

impl DrillCheck {
    /// A check named `name`.
    pub fn new(name: &str, passed: bool, reason: impl Into<String>) -> DrillCheck {
        DrillCheck {
            name: name.to_owned(),
            passed,
            reason: reason.into(),
        }
    }
}

/// The streams check: every stream connected at the commit wrote the change.
pub fn streams_check(steps: &[DrillStep]) -> DrillCheck {
    let short: Vec<String> = steps
        .iter()
        .filter(|s| s.stream.reached < s.stream.subscribers)
        .map(|s| {
            format!(
                "{} reached {} of {} streams",
                s.action, s.stream.reached, s.stream.subscribers
            )
        })
        .collect();
    if short.is_empty() {
        let n = steps.first().map_or(0, |s| s.stream.subscribers);
        DrillCheck::new(
            "streams",
            true,
            format!("every connected stream ({n}) wrote each change"),
        )
    } else {
        DrillCheck::new("streams", false, short.join("; "))
    }
}

/// The reach check: with live clients, the kill's confirmed share reached the target.
pub fn reach_check(r: &DrillReach) -> DrillCheck {
    match r.share {
        None => DrillCheck::new("reach", true, "no live client reports; nothing to confirm"),
        Some(share) if share >= r.target => DrillCheck::new(
            "reach",
            true,
            format!(
                "{} of {} live clients confirmed the kill ({:.1}%, target {:.1}%)",
                r.confirmed,
                r.live_clients,
                share * 100.0,
                r.target * 100.0
            ),
        ),
        Some(share) => DrillCheck::new(
            "reach",
            false,
            format!(
                "only {} of {} live clients confirmed the kill ({:.1}%, target {:.1}%)",
                r.confirmed,
                r.live_clients,
                share * 100.0,
                r.target * 100.0
            ),
        ),
    }
}

/// The verdict: every check passed.
pub fn passed(checks: &[DrillCheck]) -> bool {
    checks.iter().all(|c| c.passed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_default_and_name_the_bad_field() {
        assert_eq!(
            request(None, None),
            Ok(DrillRequest {
                flag: DEFAULT_FLAG.into(),
                wait_ms: DEFAULT_WAIT_MS
            })
        );
        assert_eq!(
            request(Some("Bad Key".into()), None).map_err(|e| e.field),
            Err("flag")
        );
        assert_eq!(
            request(Some(String::new()), None).map_err(|e| e.field),
            Err("flag")
        );
        assert_eq!(
            request(None, Some(60_001)).map_err(|e| e.field),
            Err("wait_ms")
        );
        assert!(request(Some("drill.b-1".into()), Some(0)).is_ok());
    }

    #[test]
    fn stream_figures_are_nearest_rank_quantiles() {
        let delays: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let f = DrillStream::of(120, &delays);
        assert_eq!((f.subscribers, f.reached), (120, 100));
        assert_eq!(f.p50_ms, Some(50.0));
        assert_eq!(f.p99_ms, Some(99.0));
        assert_eq!(f.max_ms, Some(100.0));
        let none = DrillStream::of(0, &[]);
        assert_eq!((none.p50_ms, none.max_ms), (None, None));
    }

    #[test]
    fn checks_fail_on_missed_streams_and_low_reach() {
        let step = |reached| DrillStep {
            action: "kill".into(),
            revision: 3,
            committed_at: String::new(),
            commit_ms: 1.0,
            stream: DrillStream::of(3, &vec![Duration::from_millis(1); reached]),
        };
        assert!(streams_check(&[step(3)]).passed);
        assert!(!streams_check(&[step(2)]).passed);
        let reach = |confirmed, live| DrillReach {
            live_clients: live,
            confirmed,
            share: (live > 0).then(|| confirmed as f64 / live as f64),
            p50_ms: None,
            p99_ms: None,
            target: 0.99,
        };
        assert!(reach_check(&reach(0, 0)).passed);
        assert!(reach_check(&reach(2, 2)).passed);
        assert!(!reach_check(&reach(1, 2)).passed);
        assert!(!passed(&[
            reach_check(&reach(1, 2)),
            streams_check(&[step(3)])
        ]));
    }
}
