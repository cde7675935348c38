//! Cluster tests: several nodes of the real `rollgate` binary on one PostgreSQL database, over
//! real HTTP, with real process signals (SIGKILL, SIGSTOP/SIGCONT) and a real database outage.
//! Written against issue 11 and docs/cluster.md; `support.rs` holds the harness and, each in
//! one function, the readings whose names the design leaves open.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code may panic on a broken fixture

#[path = "../api/helpers.rs"]
#[allow(dead_code)] // the cluster tests use part of the API suite's harness
mod helpers;
mod support;
#[path = "../api/test_ca.rs"]
mod test_ca;

mod boot;
mod drills;
mod feed;
mod latency;
mod leader;
mod outage;
mod tls;
