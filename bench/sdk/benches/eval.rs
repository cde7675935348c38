//! The SDK's local evaluation of a boolean flag with a rollout and 3 rules, against
//! `unleash-yggdrasil` evaluating the equivalent gradual-rollout toggle with 3 constraints, in
//! the same run; and what recording the exposure adds to an evaluation.
//!
//! `cargo bench -p rollgate-bench-sdk --bench eval` (or `bench/sdk.sh`). Prints allocations
//! per evaluation (counted by this binary's global allocator; the SDK's must be 0, else the
//! bench fails), criterion's figures, then the ratios, from the medians of this run.
//!
//! | id | what |
//! |---|---|
//! | `rollgate_eval` | `client.flags().variant_for(flag, ctx)`: evaluation alone |
//! | `rollgate_eval_exposure` | `client.bool_value(flag, ctx, false)`: evaluation + exposure recorded |
//! | `yggdrasil_eval` | `engine.is_enabled(flag, ctx, &None)` |
//! | `yggdrasil_eval_metrics` | `is_enabled` + `count_toggle` (what an Unleash SDK does per check) |
#![allow(clippy::unwrap_used, clippy::expect_used)] // bench code may panic on a broken fixture

use criterion::{black_box, Criterion};
use rollgate_bench_sdk::{fixture, Fixture, CONTEXTS, FLAG};
use std::alloc::{GlobalAlloc, Layout, System};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Counts every allocation of this process.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const MASK: usize = CONTEXTS - 1;

type Case = (&'static str, fn(&Fixture, usize) -> bool);

const CASES: [Case; 4] = [
    ("rollgate_eval", |f, i| {
        f.client.flags().variant_for(FLAG, &f.rollgate_contexts[i]) == Some("on")
    }),
    ("rollgate_eval_exposure", |f, i| {
        f.client.bool_value(FLAG, &f.rollgate_contexts[i], false)
    }),
    ("yggdrasil_eval", |f, i| {
        f.engine.is_enabled(FLAG, &f.unleash_contexts[i], &None)
    }),
    ("yggdrasil_eval_metrics", |f, i| {
        let on = f.engine.is_enabled(FLAG, &f.unleash_contexts[i], &None);
        f.engine.count_toggle(FLAG, on);
        on
    }),
];

/// Allocations per call, over 100,000 calls (the SDK's background tasks run on the other
/// threads meanwhile and may allocate: the minimum over 5 rounds is taken).
fn allocations_per_call(f: &Fixture, case: fn(&Fixture, usize) -> bool) -> f64 {
    const N: usize = 100_000;
    (0..5)
        .map(|_| {
            let before = ALLOCATIONS.load(Ordering::Relaxed);
            for i in 0..N {
                black_box(case(f, i & MASK));
            }
            (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / N as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"))
}

fn median_ns(out: &std::path::Path, id: &str) -> Option<f64> {
    let text =
        std::fs::read_to_string(out.join("sdk-eval").join(id).join("new/estimates.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["median"]["point_estimate"].as_f64()
}

fn main() {
    let f = fixture().expect("fixture");
    println!("allocations per call (min of 5 rounds of 100,000):");
    for (id, case) in CASES {
        let a = allocations_per_call(&f, case);
        println!("  {id:<24} {a:.3}");
        if id.starts_with("rollgate") {
            assert_eq!(a, 0.0, "{id} allocates");
        }
    }

    let out = target_dir().join("criterion");
    let mut c = Criterion::default()
        .configure_from_args()
        .output_directory(&out)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    let mut group = c.benchmark_group("sdk-eval");
    for (id, case) in CASES {
        group.bench_function(id, |b| {
            let mut i = 0usize;
            b.iter(|| {
                i = i.wrapping_add(1);
                case(&f, black_box(i & MASK))
            })
        });
    }
    group.finish();
    c.final_summary();

    let m = |id: &str| median_ns(&out, id);
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "n/a (filtered out)".into(),
    };
    let ns = |x: Option<f64>| x.map_or("n/a".into(), |x| format!("{x:.1} ns"));
    println!(
        "medians: rollgate eval {}, eval+exposure {}; yggdrasil eval {}, eval+metrics {}",
        ns(m("rollgate_eval")),
        ns(m("rollgate_eval_exposure")),
        ns(m("yggdrasil_eval")),
        ns(m("yggdrasil_eval_metrics"))
    );
    println!(
        "RATIO rollgate/yggdrasil, evaluation alone:            {} (goal <= 0.5x, never above 1.0x)",
        ratio(m("rollgate_eval"), m("yggdrasil_eval"))
    );
    println!(
        "RATIO rollgate/yggdrasil, evaluation + exposure/metric: {} (goal <= 0.5x, never above 1.0x)",
        ratio(m("rollgate_eval_exposure"), m("yggdrasil_eval_metrics"))
    );
    println!(
        "RATIO rollgate evaluation + exposure / evaluation:    {} (goal <= 1.25x)",
        ratio(m("rollgate_eval_exposure"), m("rollgate_eval"))
    );
    let status = f.client.status();
    println!(
        "(SDK during the run: {} signal batches sent, {} dropped)",
        status.batches_sent, status.dropped_signals
    );
    f.runtime.block_on(f.client.shutdown());
}
