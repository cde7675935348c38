//! Copies of the guard formula with the knobs turned, to measure what they change. The
//! shipped formula stays in `rollgate::analysis::stats`.
//!
//! - [`ln_relative_lr`]: the formula of the first release of `stats.rs` (upper Beta tails from
//!   `statrs::beta_reg`, floored at 1e-300), with the prior concentration as a parameter.
//! - [`ln_relative_lr_log_space`]: the same mixture with the tails computed in log space, so
//!   they never underflow and need no floor and no shortcut: the value is the true log
//!   likelihood ratio, negative when the data favour the null — which is what must be
//!   carried from stage to stage for the product of the stages' ratios to stay a test
//!   supermartingale.

use statrs::function::beta::{beta_reg, ln_beta};

fn ln_upper_beta_tail(a: f64, b: f64, x0: f64) -> f64 {
    let tail = beta_reg(b, a, 1.0 - x0).max(1e-300);
    ln_beta(a, b) + tail.ln()
}

fn null_share(new_exposures: u64, old_exposures: u64, delta: f64) -> f64 {
    rollgate::analysis::stats::null_share(new_exposures, old_exposures, delta)
        .clamp(1e-9, 1.0 - 1e-9)
}

/// The first release's `stats::ln_relative_lr`, with the prior concentration as a parameter.
pub fn ln_relative_lr(
    new_events: u64,
    new_exposures: u64,
    old_events: u64,
    old_exposures: u64,
    delta: f64,
    concentration: f64,
) -> f64 {
    if new_exposures == 0 || old_exposures == 0 || new_events + old_events == 0 {
        return 0.0;
    }
    let pi0 = null_share(new_exposures, old_exposures, delta);
    let (a, b) = (concentration * pi0, concentration * (1.0 - pi0));
    let (x1, x0) = (new_events as f64, old_events as f64);
    let ln_mixture = ln_upper_beta_tail(x1 + a, x0 + b, pi0) - ln_upper_beta_tail(a, b, pi0);
    let ln_null = x1 * pi0.ln() + x0 * (1.0 - pi0).ln();
    ln_mixture - ln_null
}

/// Continued fraction of the incomplete beta function (modified Lentz), converged to 1e-15.
fn beta_continued_fraction(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let guard = |v: f64| if v.abs() < TINY { TINY } else { v };
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 / guard(1.0 - qab * x / qap);
    let mut h = d;
    for m in 1..1_000_000 {
        let (m, m2) = (f64::from(m), f64::from(2 * m));
        let even = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 / guard(1.0 + even * d);
        c = guard(1.0 + even / c);
        h *= d * c;
        let odd = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 / guard(1.0 + odd * d);
        c = guard(1.0 + odd / c);
        let step = d * c;
        h *= step;
        if (step - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

/// `ln I_x(a, b)` (regularized lower incomplete beta), accurate where `I_x` underflows.
pub fn ln_beta_reg(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if x >= 1.0 {
        return 0.0;
    }
    let ln_front = a * x.ln() + b * (1.0 - x).ln() - ln_beta(a, b);
    if x < (a + 1.0) / (a + b + 2.0) {
        ln_front + beta_continued_fraction(a, b, x).ln() - a.ln()
    } else {
        let upper = (ln_front + beta_continued_fraction(b, a, 1.0 - x).ln() - b.ln()).exp();
        (-upper).ln_1p()
    }
}

/// The mixture likelihood ratio of `stats::ln_relative_lr` with log-space tails: exact where
/// the shipped code floors or short-cuts.
pub fn ln_relative_lr_log_space(
    new_events: u64,
    new_exposures: u64,
    old_events: u64,
    old_exposures: u64,
    delta: f64,
    concentration: f64,
) -> f64 {
    if new_exposures == 0 || old_exposures == 0 || new_events + old_events == 0 {
        return 0.0;
    }
    let pi0 = null_share(new_exposures, old_exposures, delta);
    let (a, b) = (concentration * pi0, concentration * (1.0 - pi0));
    let (x1, x0) = (new_events as f64, old_events as f64);
    // ln ∫_{π0}^1 t^(a-1) (1-t)^(b-1) dt = ln B(a, b) + ln I_{1-π0}(b, a).
    let tail = |a: f64, b: f64| ln_beta(a, b) + ln_beta_reg(b, a, 1.0 - pi0);
    let ln_mixture = tail(x1 + a, x0 + b) - tail(a, b);
    let ln_null = x1 * pi0.ln() + x0 * (1.0 - pi0).ln();
    ln_mixture - ln_null
}

#[cfg(test)]
mod tests {
    use super::*;
    use rollgate::analysis::stats::PRIOR_CONCENTRATION;

    const CASES: [(u64, u64, u64, u64); 4] = [
        (3, 400, 20, 39_600),
        (40, 5_000, 150, 30_000),
        (150, 10_000, 150, 30_000),
        (80, 20_000, 300, 380_000),
    ];

    #[test]
    fn log_space_tails_match_statrs_where_it_does_not_underflow() {
        for (a, b, x) in [
            (2.0, 3.0, 0.4),
            (20.0, 1980.0, 0.012),
            (1000.0, 99_000.0, 0.0097),
        ] {
            let expected = beta_reg(a, b, x);
            let got = ln_beta_reg(a, b, x).exp();
            assert!(
                (got - expected).abs() < 1e-12,
                "{a} {b} {x}: {got} vs {expected}"
            );
        }
    }

    #[test]
    fn both_copies_agree_on_ordinary_data() {
        for (x1, n1, x0, n0) in CASES {
            let floored = ln_relative_lr(x1, n1, x0, n0, 0.0, PRIOR_CONCENTRATION);
            let exact = ln_relative_lr_log_space(x1, n1, x0, n0, 0.0, PRIOR_CONCENTRATION);
            assert!((floored - exact).abs() < 1e-9, "{floored} vs {exact}");
        }
    }

    #[test]
    fn the_shipped_formula_agrees_wherever_the_new_rate_is_higher() {
        for (x1, n1, x0, n0) in CASES {
            let shipped = rollgate::analysis::stats::ln_relative_lr(x1, n1, x0, n0, 0.0);
            let exact = ln_relative_lr_log_space(x1, n1, x0, n0, 0.0, PRIOR_CONCENTRATION);
            if x1 as f64 / n1 as f64 > x0 as f64 / n0 as f64 {
                assert!((shipped - exact).abs() < 1e-9, "{shipped} vs {exact}");
            }
        }
    }

    #[test]
    fn very_good_data_is_evidence_for_the_null_where_floored_tails_cried_harm() {
        // 0 errors in 100,000 new exposures against 1 % on the old variant: the floored tail
        // of the first release turned this into ln LR ≈ +120, a rollback.
        let floored = ln_relative_lr(0, 100_000, 3000, 300_000, 0.0, PRIOR_CONCENTRATION);
        let exact = ln_relative_lr_log_space(0, 100_000, 3000, 300_000, 0.0, PRIOR_CONCENTRATION);
        assert!(floored > (1.0f64 / 0.01).ln(), "{floored}");
        // The one-sided mixture is bounded below by the prior mass at the boundary: ≈ −5.7.
        assert!((-6.0..-5.0).contains(&exact), "{exact}");
    }

    #[test]
    fn the_shipped_formula_never_exceeds_the_exact_likelihood_ratio() {
        // Evidence is carried from stage to stage: a value above the true ratio (such as 0 for
        // a negative one) breaks the supermartingale and inflates false rollbacks.
        let extremes = [
            (0, 100_000, 3000, 300_000),
            (500, 100_000, 3000, 300_000),
            (0, 1_000_000, 30_000, 3_000_000),
            (5000, 1_000_000, 30_000, 3_000_000),
            (9000, 1_000_000, 30_000, 3_000_000),
            (0, 10_000, 20_000, 10_000),
        ];
        for (x1, n1, x0, n0) in CASES.into_iter().chain(extremes) {
            let shipped = rollgate::analysis::stats::ln_relative_lr(x1, n1, x0, n0, 0.0);
            let exact = ln_relative_lr_log_space(x1, n1, x0, n0, 0.0, PRIOR_CONCENTRATION);
            assert!(
                shipped <= exact + 1e-9,
                "({x1}, {n1}, {x0}, {n0}): shipped {shipped} > exact {exact}"
            );
        }
    }
}
