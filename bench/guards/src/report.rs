//! Printing the tables.

use crate::sim::{Model, Outcome, ALPHA, STAGES};
use crate::ztest;
use crate::{Args, FixedPlan};

/// `12345` → `12,345`.
fn thousands(n: f64) -> String {
    let digits = format!("{:.0}", n.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Wilson 95 % interval of `k` successes in `n`, in percent.
fn wilson(k: usize, n: usize) -> (f64, f64) {
    let (k, n, z) = (k as f64, n as f64, 1.96);
    let p = k / n;
    let centre = (p + z * z / (2.0 * n)) / (1.0 + z * z / n);
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / (1.0 + z * z / n);
    (
        100.0 * (centre - half).max(0.0),
        100.0 * (centre + half).min(1.0),
    )
}

/// Nearest-rank percentile of sorted `v`.
fn percentile(v: &[u64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1] as f64
}

fn rate_row(name: &str, k: usize, n: usize) {
    let (lo, hi) = wilson(k, n);
    println!(
        "  {name:<46} {:>6} / {n:<6} {:>6.2}%   [{lo:.2}%, {hi:.2}%]",
        k,
        100.0 * k as f64 / n as f64
    );
}

/// The model and the test settings.
pub fn header(args: &Args, model: &Model) {
    let per_stage: Vec<String> = STAGES
        .iter()
        .map(|p| {
            thousands(model.users_per_batch as f64 * p / 100.0 * model.batches_per_stage as f64)
        })
        .collect();
    let (ramp_new, _) = model.expected_exposures(model.batches());
    println!("rollgate guards — seeded rollout simulation (bench/guards)");
    println!(
        "  seed {}, {} rollouts per scenario, {} users per batch, {} batches (= guard checks) per stage",
        args.seed,
        args.rollouts,
        thousands(model.users_per_batch as f64),
        model.batches_per_stage
    );
    println!(
        "  stages {:?} %: expected new-variant exposures per stage {} (ramp total {})",
        STAGES,
        per_stage.join(" / "),
        thousands(ramp_new)
    );
    println!(
        "  one core guard, max_relative_increase = 0, confidence 0.99 → α = {ALPHA}, fires when carried + stage ln LR ≥ ln(1/α) = {:.3}",
        (1.0 / ALPHA).ln()
    );
    println!(
        "  fixed-horizon comparison: one-sided two-proportion z-test (pooled SE), z > {:.3}",
        ztest::Z_ALPHA
    );
}

/// (a): the A/A false-rollback rates.
pub fn false_rollbacks(aa: &[Outcome], look: f64) {
    let n = aa.len();
    println!("\n(a) False rollbacks under A/A (p_new = p_old = 0.5 %), whole ramp 1 → 50 %");
    println!(
        "  {:<46} {:>15}   {:>6}    95% CI",
        "test", "rollbacks", "rate"
    );
    rate_row(
        "rollgate sequential guard, every batch",
        aa.iter().filter(|o| o.sequential.is_some()).count(),
        n,
    );
    let looked = aa.iter().filter(|o| o.fixed_look.is_some()).count();
    rate_row(
        &format!("z-test, one planned look at {} new exp.", thousands(look)),
        aa.iter().filter(|o| o.fixed_look == Some(true)).count(),
        looked.max(1),
    );
    rate_row(
        "z-test re-checked after every batch (naive)",
        aa.iter().filter(|o| o.naive.is_some()).count(),
        n,
    );
}

/// (b): exposures to detect each regression, sequential vs fixed horizon.
pub fn detection(
    regressions: &[f64],
    plans: &[Option<FixedPlan>],
    detect: &[Vec<Outcome>],
    model: &Model,
) {
    println!("\n(b) Detecting a regression of the 0.5 % error rate (same traffic model)");
    println!(
        "  {:<7} {:<46} {:>9} {:>10} {:>14} {:>17}",
        "regr.", "test", "detected", "median", "80% caught by", "p10 – p90"
    );
    for ((r, plan), outcomes) in regressions.iter().zip(plans).zip(detect) {
        let mut seen: Vec<u64> = outcomes.iter().filter_map(|o| o.sequential).collect();
        seen.sort_unstable();
        let rate = 100.0 * seen.len() as f64 / outcomes.len() as f64;
        // Share of all rollouts (undetected ones count as never caught).
        let caught_by = |q: f64| {
            let rank = (q * outcomes.len() as f64).ceil() as usize;
            seen.get(rank.saturating_sub(1))
                .map_or("never".to_owned(), |n| thousands(*n as f64))
        };
        println!(
            "  {:<7} {:<46} {:>8.1}% {:>10} {:>14} {:>17}",
            format!("{r}×"),
            "rollgate sequential guard, every batch",
            rate,
            caught_by(0.5),
            caught_by(0.8),
            format!(
                "{} – {}",
                thousands(percentile(&seen, 0.1)),
                thousands(percentile(&seen, 0.9))
            )
        );
        let p_new = model.p_old * r;
        match plan {
            Some(plan) => {
                let looked: Vec<&Outcome> =
                    outcomes.iter().filter(|o| o.fixed_look.is_some()).collect();
                let power = 100.0
                    * looked.iter().filter(|o| o.fixed_look == Some(true)).count() as f64
                    / looked.len().max(1) as f64;
                println!(
                    "  {:<7} {:<46} {:>8.1}% {:>10} {:>14} {:>17}",
                    "",
                    format!("fixed-horizon z-test on this ramp (k = {:.0}:1)", plan.k),
                    power,
                    "",
                    thousands(plan.new_exposures),
                    "one look"
                );
            }
            None => println!("  {:<7} fixed-horizon z-test: the ramp is too short", ""),
        }
        for (label, k) in [("50/50 split", 1.0), ("1 % split", 99.0)] {
            println!(
                "  {:<7} {:<46} {:>9} {:>10} {:>14} {:>17}",
                "",
                format!("  z-test closed form, {label} (k = {k:.0}:1)"),
                "80%",
                "",
                thousands(ztest::sample_size(model.p_old, p_new, k)),
                "one look"
            );
        }
    }
    println!(
        "  Columns are new-variant exposures since the module started. \"80% caught by\": the"
    );
    println!(
        "  sequential guard had rolled back 80 % of the rollouts by then; for the z-test it is the"
    );
    println!(
        "  closed-form n₁ at α = 0.01, 80 % power, taken where the ramp's expected exposures first"
    );
    println!("  reach it for the old:new ratio k accumulated so far (\"detected\" = its empirical power).");
}

/// In which stage the sequential guard fired.
pub fn stages(aa: &[Outcome], detect: &[Vec<Outcome>], regressions: &[f64]) {
    println!("\nStage in which the sequential guard fired (share of all rollouts)");
    let header: Vec<String> = STAGES.iter().map(|p| format!("{p:>5}%")).collect();
    println!("  {:<10} {}   never", "scenario", header.join(" "));
    let row = |name: String, outcomes: &[Outcome]| {
        let n = outcomes.len() as f64;
        let cells: Vec<String> = (0..STAGES.len())
            .map(|s| {
                let k = outcomes
                    .iter()
                    .filter(|o| o.sequential_stage == Some(s))
                    .count();
                format!("{:>5.1}%", 100.0 * k as f64 / n)
            })
            .collect();
        let never = outcomes.iter().filter(|o| o.sequential.is_none()).count();
        println!(
            "  {name:<10} {}  {:>5.1}%",
            cells.join(" "),
            100.0 * never as f64 / n
        );
    };
    row("A/A".into(), aa);
    for (r, outcomes) in regressions.iter().zip(detect) {
        row(format!("{r}×"), outcomes);
    }
}

/// How often a stage's data could have revealed +50 % (else rollgate extends the stage).
pub fn cannot_tell(aa: &[Outcome]) {
    let cells: Vec<String> = (0..STAGES.len())
        .map(|s| {
            let ended: Vec<bool> = aa.iter().filter_map(|o| o.could_detect[s]).collect();
            let yes = ended.iter().filter(|b| **b).count();
            format!(
                "{}%: {:.0}%",
                STAGES[s],
                100.0 * yes as f64 / ended.len().max(1) as f64
            )
        })
        .collect();
    println!(
        "\nA/A stages whose data could reveal +50 % at the stage end (`detect`, 80 % power): {}",
        cells.join(", ")
    );
    println!("  (rollgate would extend the other stages; this fixed-length model does not)");
}

/// The cross-check against the server's own code path.
pub fn shadow(aa: &[Outcome], detect: &[Vec<Outcome>]) {
    let all = aa.iter().chain(detect.iter().flatten());
    let (checks, bad, runs) = all.fold((0, 0, 0), |(c, b, r), o| {
        (
            c + o.shadow_checks,
            b + o.shadow_disagreements,
            r + usize::from(o.shadow_checks > 0),
        )
    });
    println!(
        "\nCross-check: {runs} rollouts also driven through controller::step (observe, apply), the server's own step: \
         {} batch decisions compared, {bad} disagreements",
        thousands(checks as f64)
    );
}

/// One variant of the guard formula: its A/A outcomes and its outcomes per regression.
pub struct SweepRow {
    /// What was varied.
    pub label: String,
    /// A/A rollouts.
    pub aa: Vec<Outcome>,
    /// Rollouts per regression.
    pub detect: Vec<Vec<Outcome>>,
}

/// A/A false rollbacks and detection per formula variant.
pub fn sweep(title: &str, rows: &[SweepRow], regressions: &[f64]) {
    println!("\n{title}");
    let mut head = format!("  {:<30} {:>22}", "variant", "A/A false (95% CI)");
    for r in regressions {
        head.push_str(&format!(
            " {:>8} {:>8} {:>8}",
            format!("{r}× det"),
            "median",
            "80% by"
        ));
    }
    println!("{head}");
    for row in rows {
        let fp = row.aa.iter().filter(|o| o.sequential.is_some()).count();
        let (lo, hi) = wilson(fp, row.aa.len());
        let mut line = format!(
            "  {:<30} {:>6.2}% [{lo:.2}, {hi:.2}]",
            row.label,
            100.0 * fp as f64 / row.aa.len() as f64
        );
        for outcomes in &row.detect {
            let mut seen: Vec<u64> = outcomes.iter().filter_map(|o| o.sequential).collect();
            seen.sort_unstable();
            let by = |q: f64| {
                let rank = (q * outcomes.len() as f64).ceil() as usize;
                seen.get(rank.saturating_sub(1))
                    .map_or("never".to_owned(), |n| thousands(*n as f64))
            };
            line.push_str(&format!(
                " {:>7.1}% {:>8} {:>8}",
                100.0 * seen.len() as f64 / outcomes.len() as f64,
                by(0.5),
                by(0.8)
            ));
        }
        println!("{line}");
    }
}
