//! `rollgate-guards-bench`: a seeded simulation of thousands of rollouts against rollgate's
//! guard statistics, printing
//! (a) the false-rollback rate under A/A at confidence 0.99 (target ≤ 1 %), and
//! (b) the new-variant exposures needed to detect a 1.5× and a 2× regression of a 0.5 %
//!     error rate, next to a fixed-horizon one-sided two-proportion z-test at α = 0.01 and
//!     80 % power — and what that z-test's false-rollback rate becomes when it is naively
//!     re-checked after every batch.
//!
//! Every rollout has its own seed derived from `--seed`, so results do not depend on
//! `--threads`. See `README.md` beside this crate for the model and the figures.

mod report;
mod shadow;
mod sim;
mod variants;
mod ztest;

use rand::rngs::StdRng;
use rand::SeedableRng;
use rollgate::analysis::stats::PRIOR_CONCENTRATION;
use sim::{Evidence, Model, Outcome, Run};
use std::time::Instant;

const USAGE: &str = "usage: rollgate-guards-bench [--rollouts N] [--seed S] [--users-per-batch U]
       [--batches-per-stage B] [--threads T] [--shadow K] [--compare] [--sweep]

  --rollouts N           rollouts per scenario (default 10000)
  --seed S               base seed (default 20240601)
  --users-per-batch U    users arriving per batch, split by the stage % (default 2000)
  --batches-per-stage B  guard checks per stage (default 200)
  --threads T            worker threads (default 2); results do not depend on it
  --shadow K             also drive the first K rollouts of each scenario through
                         controller::step (observe, apply), the server's own step and compare (default 20)
  --compare              also run copies of the guard formula (first release; log-space tails)
  --sweep                also measure other prior concentrations (copied formula)";

/// Command-line settings.
#[derive(Debug, Clone)]
pub struct Args {
    pub rollouts: usize,
    pub seed: u64,
    pub users_per_batch: u64,
    pub batches_per_stage: u32,
    pub threads: usize,
    pub shadow: usize,
    pub compare: bool,
    pub sweep: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        rollouts: 10_000,
        seed: 20_240_601,
        users_per_batch: 2_000,
        batches_per_stage: 200,
        threads: 2,
        shadow: 20,
        compare: false,
        sweep: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .ok_or_else(|| format!("{name} needs a value"))?
                .parse::<u64>()
                .map_err(|e| format!("{name}: {e}"))
        };
        match flag.as_str() {
            "--rollouts" => args.rollouts = value("--rollouts")? as usize,
            "--seed" => args.seed = value("--seed")?,
            "--users-per-batch" => args.users_per_batch = value("--users-per-batch")?,
            "--batches-per-stage" => {
                args.batches_per_stage = u32::try_from(value("--batches-per-stage")?)
                    .map_err(|e| format!("--batches-per-stage: {e}"))?;
            }
            "--threads" => args.threads = (value("--threads")? as usize).max(1),
            "--shadow" => args.shadow = value("--shadow")? as usize,
            "--compare" => args.compare = true,
            "--sweep" => args.sweep = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if args.rollouts == 0 || args.users_per_batch == 0 || args.batches_per_stage == 0 {
        return Err("--rollouts, --users-per-batch and --batches-per-stage must be > 0".into());
    }
    Ok(args)
}

/// SplitMix64: turns (seed, scenario, rollout) into independent per-rollout seeds.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Runs `n` rollouts of `run` (scenario `tag`) on `threads` threads, in rollout order.
fn simulate(args: &Args, tag: u64, run: Run) -> Vec<Outcome> {
    let n = args.rollouts;
    let threads = args.threads.min(n);
    let mut results: Vec<Option<Outcome>> = vec![None; n];
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    (t..n)
                        .step_by(threads)
                        .map(|i| {
                            let mut rng = StdRng::seed_from_u64(mix(mix(args.seed)
                                ^ mix(tag)
                                ^ (i as u64).rotate_left(32)));
                            let run = Run {
                                shadow: run.shadow && i < args.shadow,
                                ..run
                            };
                            (i, sim::rollout(&run, &mut rng))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for w in workers {
            for (i, outcome) in w.join().expect("a simulation thread panicked") {
                results[i] = Some(outcome);
            }
        }
    });
    results.into_iter().flatten().collect()
}

/// Where a fixed-horizon z-test planned on this ramp takes its single look.
#[derive(Debug, Clone, Copy)]
pub struct FixedPlan {
    /// New-variant exposures at the look.
    pub new_exposures: f64,
    /// Old exposures per new one at the look.
    pub k: f64,
}

/// The first point of the ramp where the expected exposures reach the z-test's sample size
/// for the allocation accumulated so far (`None` if the ramp is too short).
fn fixed_plan(model: &Model) -> Option<FixedPlan> {
    (1..=model.batches()).find_map(|b| {
        let (new, old) = model.expected_exposures(b);
        let k = old / new;
        (new >= ztest::sample_size(model.p_old, model.p_new, k)).then_some(FixedPlan {
            new_exposures: new,
            k,
        })
    })
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("error: {e}\n");
            }
            eprintln!("{USAGE}");
            std::process::exit(if e.is_empty() { 0 } else { 2 });
        }
    };
    let started = Instant::now();
    let model = |p_new: f64| Model {
        users_per_batch: args.users_per_batch,
        batches_per_stage: args.batches_per_stage,
        p_old: 0.005,
        p_new,
    };
    let regressions = [1.5, 2.0];
    let plans = regressions.map(|r| fixed_plan(&model(0.005 * r)));
    let run = |p_new: f64, fixed_n: f64, evidence: Evidence, stop_early: bool| Run {
        model: model(p_new),
        evidence,
        fixed_n,
        stop_early,
        shadow: evidence == Evidence::Rollgate,
    };
    let unplanned = f64::INFINITY;
    let aa_look = plans[0].map_or(unplanned, |p| p.new_exposures);

    let aa = simulate(&args, 0, run(0.005, aa_look, Evidence::Rollgate, false));
    let detect: Vec<Vec<Outcome>> = regressions
        .iter()
        .zip(&plans)
        .enumerate()
        .map(|(i, (r, plan))| {
            let look = plan.map_or(unplanned, |p| p.new_exposures);
            simulate(
                &args,
                1 + i as u64,
                run(0.005 * r, look, Evidence::Rollgate, true),
            )
        })
        .collect();

    report::header(&args, &model(0.005));
    report::false_rollbacks(&aa, aa_look);
    report::detection(&regressions, &plans, &detect, &model(0.005));
    report::stages(&aa, &detect, &regressions);
    report::cannot_tell(&aa);
    report::shadow(&aa, &detect);

    let variants = |rows: Vec<(String, Evidence)>| -> Vec<report::SweepRow> {
        rows.into_iter()
            .map(|(label, e)| {
                let aa = simulate(&args, 0, run(0.005, unplanned, e, false));
                let detect = regressions
                    .iter()
                    .enumerate()
                    .map(|(i, r)| simulate(&args, 1 + i as u64, run(0.005 * r, unplanned, e, true)))
                    .collect();
                report::SweepRow { label, aa, detect }
            })
            .collect()
    };
    if args.compare {
        let rows = variants(vec![
            ("stats.rs as built".into(), Evidence::Rollgate),
            (
                "first release (floored tails)".into(),
                Evidence::Concentration(PRIOR_CONCENTRATION),
            ),
            ("log-space tails (proposed)".into(), Evidence::LogSpace),
        ]);
        report::sweep(
            "Guard formula variants on the same seeds (concentration 50)",
            &rows,
            &regressions,
        );
    }
    if args.sweep {
        let rows = variants(
            [2.0, 10.0, 50.0, 200.0, 1000.0]
                .into_iter()
                .map(|c| (format!("concentration {c}"), Evidence::Concentration(c)))
                .collect(),
        );
        report::sweep(
            "Prior concentration sweep (first-release formula; shipped PRIOR_CONCENTRATION = 50)",
            &rows,
            &regressions,
        );
    }
    println!(
        "\ntook {:.1} s ({} threads)",
        started.elapsed().as_secs_f64(),
        args.threads
    );
}
