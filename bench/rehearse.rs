//! How long a rehearsal takes: `policies/checkout.toml` (three guards → 10 scenarios) at
//! 2,000 exposures per minute, 100 runs per scenario = 1,000 simulated releases, and 1,000
//! runs per scenario = 10,000, each timed three times; the reference in the same run is 10
//! runs per scenario (100 releases), which shows the fixed cost beside the per-release cost.
//!
//! `cargo bench --bench rehearse` (optimised) or `cargo bench --profile dev --bench rehearse`
//! (the unoptimised build the tests use). Figures: bench/README.md.
#![allow(clippy::unwrap_used, clippy::expect_used)] // bench code may panic on a broken fixture

use rollgate::policies::Policy;
use rollgate::rehearsal::{rehearse, Plan, RehearsalRequest};
use std::collections::BTreeMap;
use std::time::Instant;

fn main() {
    let source = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/policies/checkout.toml"
    ))
    .expect("policies/checkout.toml");
    let policy = Policy::from_toml(&source).expect("a valid policy");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    println!("rehearsal bench: policy checkout, 2000 exposures/min, {threads} simulation threads");
    for runs in runs_list() {
        let req = RehearsalRequest {
            traffic_per_minute: 2000.0,
            base: BTreeMap::from([
                ("payment_error".to_owned(), 0.005),
                ("data_loss".to_owned(), 1e-9),
                ("complaint".to_owned(), 0.002),
            ]),
            runs: Some(runs),
            seed: Some(1),
            max_seconds: Some(60.0),
        };
        let plan = Plan::new(&policy, &req).expect("a valid request");
        for round in 1..=3 {
            let started = Instant::now();
            let report = rehearse(&plan);
            let secs = started.elapsed().as_secs_f64();
            let releases = report.runs_completed * (1 + report.regressions.len());
            println!(
                "  {runs:>5} runs/scenario = {releases:>6} releases, round {round}: {secs:>7.3} s ({:.0} releases/s){}; A/A false rollbacks {}/{}, 2x payment_error caught {:.0}%",
                releases as f64 / secs,
                if report.budget_reached { " BUDGET REACHED" } else { "" },
                report.aa.rolled_back,
                report.aa.runs,
                report.regressions.iter().find(|r| r.metric == "payment_error" && r.factor == 2.0).map_or(0.0, |r| r.caught_share * 100.0),
            );
        }
    }
}

/// Runs per scenario to time (env `RUNS`, comma-separated; default 10,100,1000).
fn runs_list() -> Vec<u64> {
    std::env::var("RUNS")
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10, 100, 1000])
}
