//! Server integration tests: one binary, every test drives a real server over real HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test and bench code may panic on a broken fixture

mod helpers;

mod alerts;
mod apply;
mod audiences;
mod audit;
mod auth;
mod cli;
mod cli_objects;
mod cli_output;
mod conformance;
mod deletion;
mod deploy;
mod drills;
mod durability;
mod edges;
mod flags;
mod fsync;
mod fuzz;
mod guards;
mod history;
mod interop;
mod js_client;
mod latency;
mod ofrep;
mod openapi;
mod operations;
mod policies;
mod prometheus;
mod python_hook;
mod reach;
mod rehearsal;
mod release_audiences;
mod releases;
mod segments;
mod signals;
mod stream;
mod test_ca;
mod tls;
mod ui;
mod viewer;
mod webhook_targets;
mod webhooks;
