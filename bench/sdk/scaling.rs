//! Throughput of evaluating and recording with 1, 2, 4 and 8 threads, for a fixed time each:
//! the SDK (`bool_value`: evaluation + exposure) and, as the reference in the same run,
//! `unleash-yggdrasil` (`is_enabled` + `count_toggle`). Lock contention would show as
//! throughput falling as threads are added; without it, throughput grows up to the cores
//! present and stays flat beyond.
//!
//! `cargo run --release -p rollgate-bench-sdk --bin sdk-scaling [SECONDS_PER_POINT]`
//! (default 3; or `bench/sdk.sh`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // bench code may panic on a broken fixture

use rollgate_bench_sdk::{fixture, Fixture, CONTEXTS, FLAG};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

const THREADS: [usize; 4] = [1, 2, 4, 8];

fn rollgate(f: &Fixture, i: usize) -> bool {
    f.client.bool_value(FLAG, &f.rollgate_contexts[i], false)
}

fn yggdrasil(f: &Fixture, i: usize) -> bool {
    let on = f.engine.is_enabled(FLAG, &f.unleash_contexts[i], &None);
    f.engine.count_toggle(FLAG, on);
    on
}

/// Calls per second over all threads.
fn run(f: &Fixture, threads: usize, time: Duration, case: fn(&Fixture, usize) -> bool) -> f64 {
    let stop = AtomicBool::new(false);
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (stop, barrier) = (&stop, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    let mut n = 0u64;
                    let mut i = t * 37;
                    while !stop.load(Ordering::Relaxed) {
                        for _ in 0..1024 {
                            i = i.wrapping_add(1);
                            black_box(case(f, i & (CONTEXTS - 1)));
                        }
                        n += 1024;
                    }
                    n
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        std::thread::sleep(time);
        stop.store(true, Ordering::Relaxed);
        let total: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
        total as f64 / start.elapsed().as_secs_f64()
    })
}

fn main() {
    let secs: f64 = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("SECONDS_PER_POINT: a number"))
        .unwrap_or(3.0);
    let time = Duration::from_secs_f64(secs);
    let f = fixture().expect("fixture");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("threads evaluating + recording for {secs} s each; {cores} cores available");
    println!(
        "{:<28} {:>8} {:>14} {:>14} {:>9}",
        "engine", "threads", "calls/s", "per thread", "vs 1"
    );
    for (name, case) in [
        (
            "rollgate-client bool_value",
            rollgate as fn(&Fixture, usize) -> bool,
        ),
        ("yggdrasil is_enabled+count", yggdrasil),
    ] {
        let mut one = None;
        for threads in THREADS {
            let rate = run(&f, threads, time, case);
            let base = *one.get_or_insert(rate);
            println!(
                "{name:<28} {threads:>8} {rate:>14.0} {:>14.0} {:>8.2}x",
                rate / threads as f64,
                rate / base
            );
        }
    }
    let status = f.client.status();
    println!(
        "(SDK during the run: {} signal batches sent, {} dropped)",
        status.batches_sent, status.dropped_signals
    );
    f.runtime.block_on(f.client.shutdown());
}
