//! The fixed-horizon comparison: a one-sided two-proportion z-test (pooled standard error)
//! and its closed-form sample size for a given allocation.

/// One-sided critical value at α = 0.01: Φ⁻¹(0.99).
pub const Z_ALPHA: f64 = 2.326_347_874_040_841;
/// Critical value for 80 % power: Φ⁻¹(0.80).
pub const Z_BETA: f64 = 0.841_621_233_572_914_3;

/// The z statistic for "new rate > old rate"; 0 when undefined (no data or no events).
pub fn z(new_events: u64, new_exposures: u64, old_events: u64, old_exposures: u64) -> f64 {
    if new_exposures == 0 || old_exposures == 0 {
        return 0.0;
    }
    let (n1, n0) = (new_exposures as f64, old_exposures as f64);
    let (p1, p0) = (new_events as f64 / n1, old_events as f64 / n0);
    let pooled = (new_events + old_events) as f64 / (n1 + n0);
    let se = (pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n0)).sqrt();
    if se == 0.0 {
        0.0
    } else {
        (p1 - p0) / se
    }
}

/// New-variant exposures a fixed-horizon test needs to detect `p_new` over `p_old` with
/// `k` old exposures per new one, at α = 0.01 (one-sided) and 80 % power:
///
/// `n₁ = [z_α √(p̄q̄(1 + 1/k)) + z_β √(p₁q₁ + p₀q₀/k)]² / (p₁ − p₀)²`, `p̄ = (p₁ + k p₀)/(1 + k)`.
pub fn sample_size(p_old: f64, p_new: f64, k: f64) -> f64 {
    let pooled = (p_new + k * p_old) / (1.0 + k);
    let h0 = Z_ALPHA * (pooled * (1.0 - pooled) * (1.0 + 1.0 / k)).sqrt();
    let h1 = Z_BETA * (p_new * (1.0 - p_new) + p_old * (1.0 - p_old) / k).sqrt();
    ((h0 + h1) / (p_new - p_old)).powi(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_allocation_matches_the_textbook_figure() {
        // 0.5 % vs 1.0 %, α = 0.01 one-sided, 80 % power: about 5,975 per arm.
        let n = sample_size(0.005, 0.010, 1.0);
        assert!((5_950.0..6_000.0).contains(&n), "{n}");
    }

    #[test]
    fn a_tripled_rate_gives_a_large_z() {
        assert!(z(150, 10_000, 150, 30_000) > 8.0);
        assert_eq!(z(0, 0, 10, 100), 0.0);
    }
}
