//! Server integration tests: one binary, every test drives a real server over real HTTP.

mod helpers;

mod audit;
mod auth;
mod cli;
mod conformance;
mod durability;
mod flags;
mod fsync;
mod guards;
mod interop;
mod ofrep;
mod operations;
mod policies;
mod releases;
mod segments;
mod signals;
mod stream;
mod webhooks;
