//! Always-valid sequential tests (mixture likelihood ratios) used by the guards.
//!
//! Every function returns the natural log of a test martingale's value: under the null
//! hypothesis its expectation is at most 1 at every moment, so by Ville's inequality the
//! chance that it *ever* reaches `1/α` is at most `α`, however often it is checked. That is
//! what lets rollgate check guards after every batch without inflating false rollbacks.
//! The maths is written out in `docs/guards.md`.

use statrs::function::beta::{beta_reg, ln_beta};
use statrs::function::gamma::{gamma_ur, ln_gamma};

/// Concentration of the Beta mixing prior around the null share (see `docs/guards.md`).
pub const PRIOR_CONCENTRATION: f64 = 50.0;

fn ln_upper_beta_tail(a: f64, b: f64, x0: f64) -> f64 {
    // ln ∫_{x0}^1 t^(a-1) (1-t)^(b-1) dt = ln B(a,b) + ln I_(1-x0)(b,a).
    ln_beta(a, b) + ln_beta_reg(b, a, 1.0 - x0)
}

/// ln I_x(p, q), the regularized incomplete beta. Where it underflows, the first term of its
/// hypergeometric series, `x^p (1-x)^q / (p B(p,q))`, is used: every further term is
/// positive, so this is a lower bound, and evidence computed from it errs on the side of
/// fewer rollbacks.
fn ln_beta_reg(p: f64, q: f64, x: f64) -> f64 {
    let v = beta_reg(p, q, x);
    if v > 1e-250 {
        v.ln()
    } else {
        p * x.ln() + q * (1.0 - x).ln() - p.ln() - ln_beta(p, q)
    }
}

/// ln Q(a, z), the regularized upper incomplete gamma, with the same lower-bound fallback:
/// for a ≥ 1, Γ(a, z) ≥ z^(a-1) e^(-z).
fn ln_gamma_ur(a: f64, z: f64) -> f64 {
    let v = gamma_ur(a, z);
    if v > 1e-250 || a < 1.0 {
        v.max(1e-300).ln()
    } else {
        (a - 1.0) * z.ln() - z - ln_gamma(a)
    }
}

/// The share of events expected on the new variant if its per-exposure rate is exactly
/// `(1 + delta)` times the old one's.
pub fn null_share(new_exposures: u64, old_exposures: u64, delta: f64) -> f64 {
    let n1 = new_exposures as f64 * (1.0 + delta);
    let n0 = old_exposures as f64;
    n1 / (n1 + n0)
}

/// Log mixture likelihood ratio for "the new variant's rate exceeds `(1 + delta)` × the old
/// one's", from event counts and exposures of both variants over the same window.
///
/// Conditional on the total number of events, each event is on the new variant with
/// probability π; the null boundary is π₀ = [`null_share`]. The alternative mixes π over a
/// Beta prior centred on π₀, truncated to π > π₀ (one-sided).
pub fn ln_relative_lr(
    new_events: u64,
    new_exposures: u64,
    old_events: u64,
    old_exposures: u64,
    delta: f64,
) -> f64 {
    if new_exposures == 0 || old_exposures == 0 || (new_events == 0 && old_events == 0) {
        return 0.0;
    }
    ln_share_lr(
        new_events,
        old_events,
        null_share(new_exposures, old_exposures, delta),
    )
}

/// Log mixture likelihood ratio for "the share of successes exceeds `pi0`", from `successes`
/// and `failures` (each a Bernoulli trial): the truncated Beta mixture of `docs/guards.md`.
/// Increasing in `successes` for a fixed total; 0 when there is no trial.
pub fn ln_share_lr(successes: u64, failures: u64, pi0: f64) -> f64 {
    ln_share_lr_with(successes, failures, pi0, PRIOR_CONCENTRATION)
}

/// [`ln_share_lr`] with the mixing prior's concentration `c` (Beta(c·π₀, c·(1 − π₀))). Any
/// fixed `c` gives a valid test; it sets which effects it finds fastest. The latency guards
/// use `c = 50 / min(π₀, 1 − π₀)`: a prior worth about 50 events of the rarer kind.
pub fn ln_share_lr_with(successes: u64, failures: u64, pi0: f64, c: f64) -> f64 {
    if successes == 0 && failures == 0 {
        return 0.0;
    }
    let pi0 = pi0.clamp(1e-9, 1.0 - 1e-9);
    let (a, b) = (c * pi0, c * (1.0 - pi0));
    let (x1, x0) = (successes as f64, failures as f64);
    let ln_mixture = ln_upper_beta_tail(x1 + a, x0 + b, pi0) - ln_upper_beta_tail(a, b, pi0);
    let ln_null = x1 * pi0.ln() + x0 * (1.0 - pi0).ln();
    ln_mixture - ln_null
}

/// Log mixture likelihood ratio for "the new variant's rate exceeds `max_rate`" (events are
/// Poisson in exposures; Gamma prior with mean `2 × max_rate`, truncated above `max_rate`).
pub fn ln_rate_lr(events: u64, exposures: u64, max_rate: f64) -> f64 {
    if exposures == 0 || max_rate <= 0.0 {
        return 0.0;
    }
    let (x, n, l0) = (events as f64, exposures as f64, max_rate);
    let (shape, rate) = (2.0, 1.0 / l0);
    // ∫_{l0}^∞ λ^x e^{-λn} Gamma(λ; shape, rate) dλ / P(λ > l0), over l0^x e^{-l0 n}.
    let ln_num = shape * rate.ln() - ln_gamma(shape) + ln_gamma(x + shape)
        - (x + shape) * (n + rate).ln()
        + ln_gamma_ur(x + shape, (n + rate) * l0);
    let ln_prior_tail = ln_gamma_ur(shape, rate * l0);
    let ln_null = x * l0.ln() - l0 * n;
    ln_num - ln_prior_tail - ln_null
}

/// Whether the data could have detected a relative increase of `effect` above the band
/// `delta` with about 80 % power: the test is evaluated at the 20th percentile of the new
/// variant's event count expected under that harm.
pub fn could_detect(
    new_exposures: u64,
    old_events: u64,
    old_exposures: u64,
    delta: f64,
    effect: f64,
    ln_threshold: f64,
) -> bool {
    if old_exposures == 0 || new_exposures == 0 {
        return false;
    }
    let base = old_events as f64 / old_exposures as f64;
    if base == 0.0 {
        // No events at all on the old variant: there is no rate to be relatively worse than.
        return true;
    }
    let mean = new_exposures as f64 * base * (1.0 + delta) * (1.0 + effect);
    let low = (mean - 0.84 * mean.sqrt()).max(0.0).floor() as u64;
    ln_relative_lr(low, new_exposures, old_events, old_exposures, delta) >= ln_threshold
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Counts from empty to saturated, weighted towards the extremes.
    fn count() -> impl Strategy<Value = u64> {
        prop_oneof![
            Just(0u64),
            1..10_000u64,
            any::<u64>(),
            (0..1_000_000u64).prop_map(|d| u64::MAX - d),
        ]
    }

    proptest! {
        /// Any counts a client can accumulate give a finite, storable evidence (no panic on
        /// overflow, no NaN or infinity that JSON could not persist).
        #[test]
        fn evidence_is_finite_for_any_counts(
            x1 in count(), n1 in count(), x0 in count(), n0 in count(),
            delta in 0.0..2.0f64, max_rate in 1e-6..1.0f64,
        ) {
            let rel = ln_relative_lr(x1, n1, x0, n0, delta);
            prop_assert!(rel.is_finite(), "{}", rel);
            let rate = ln_rate_lr(x1, n1, max_rate);
            prop_assert!(rate.is_finite(), "{}", rate);
            could_detect(n1, x0, n0, delta, 0.5, (1.0f64 / 0.01).ln());
        }
    }

    #[test]
    fn saturated_event_counts_do_not_overflow() {
        assert!(ln_relative_lr(u64::MAX, 10, u64::MAX, 10, 0.0).is_finite());
        assert!(ln_relative_lr(1, 10, u64::MAX, 10, 0.0).is_finite());
    }

    #[test]
    fn equal_rates_give_no_evidence_and_a_tripled_rate_gives_a_lot() {
        let same = ln_relative_lr(50, 10_000, 150, 30_000, 0.0);
        let tripled = ln_relative_lr(150, 10_000, 150, 30_000, 0.0);
        assert!(same < 1.0, "{same}");
        assert!(tripled > (1.0f64 / 0.01).ln(), "{tripled}");
    }

    #[test]
    fn a_band_tolerates_increases_inside_it() {
        // +15 % inside a 25 % band: no evidence of a breach; +100 %: strong evidence.
        assert!(ln_relative_lr(1150, 100_000, 1000, 100_000, 0.25) <= 0.0);
        assert!(ln_relative_lr(2000, 100_000, 1000, 100_000, 0.25) > 10.0);
    }

    #[test]
    fn absolute_rate_test_rises_above_the_ceiling_only() {
        assert!(ln_rate_lr(10, 1000, 0.02) <= 0.0);
        assert!(ln_rate_lr(60, 1000, 0.02) > (1.0f64 / 0.01).ln());
    }

    #[test]
    fn very_good_data_is_never_evidence_of_harm() {
        // Regression: clamped tails once turned huge volumes of good data into a rollback.
        assert!(ln_relative_lr(0, 100_000, 3000, 300_000, 0.0) <= 0.0);
        assert!(ln_relative_lr(500, 100_000, 3000, 300_000, 0.0) <= 0.0);
        assert!(ln_rate_lr(0, 36_000, 0.02) <= 0.0);
        assert!(ln_rate_lr(500, 100_000, 0.02) <= 0.0);
        assert!(ln_rate_lr(5_000_000, 1_000_000_000, 0.02) <= 0.0);
    }

    #[test]
    fn detectability_grows_with_exposures() {
        let t = (1.0f64 / 0.01).ln();
        assert!(!could_detect(200, 5, 1000, 0.0, 0.5, t));
        assert!(could_detect(200_000, 1000, 200_000, 0.0, 0.5, t));
    }
}
