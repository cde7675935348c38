//! Integration tests of `rollgate-client` against the real rollgate server, one binary.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on a broken fixture

mod agreement;
mod conformance;
mod down;
mod helpers;
mod latency;
mod openfeature;
mod reach;
mod restart;
mod signals;
mod stream;
