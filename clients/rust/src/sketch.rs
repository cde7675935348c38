//! The server's quantile-sketch buckets (`src/signals/sketch.rs`, docs/guards.md): measured
//! values are kept per bucket and sent as a histogram whose bounds are the buckets'
//! representative values, so the server's sketch holds exactly what it would hold had every
//! value been sent alone, at a fraction of the signals.
//!
//! Invariant: the mapping is the server's, bucket for bucket (`tests/sdk/latency.rs` checks the
//! quantile the server reads against the exact one).

/// Relative accuracy of a bucket's representative value (the server's).
const RELATIVE_ACCURACY: f64 = 0.01;
/// The smallest value with its own bucket; smaller values (0, negatives) share bucket
/// [`ZERO_INDEX`], read as 0.
const MIN_VALUE: f64 = 1e-9;
/// The largest value the server takes.
const MAX_VALUE: f64 = 1e12;
/// Index of the zero bucket.
pub(crate) const ZERO_INDEX: i32 = -1037;
const MIN_INDEX: i32 = -1036;
const MAX_INDEX: i32 = 1382;

fn gamma() -> f64 {
    (1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY)
}

/// The bucket of `value`: `⌈ln v / ln γ⌉`, clamped to the server's range.
pub(crate) fn index_of(value: f64) -> i32 {
    if value.is_nan() || value < MIN_VALUE {
        return ZERO_INDEX;
    }
    let i = (value.min(MAX_VALUE).ln() / gamma().ln()).ceil();
    (i as i32).clamp(MIN_INDEX, MAX_INDEX)
}

/// The value bucket `i` reads as (within 1 % of each of its values), inside the bucket, so the
/// server files it in the same bucket.
pub(crate) fn representative(i: i32) -> f64 {
    if i <= ZERO_INDEX {
        0.0
    } else {
        2.0 * (f64::from(i) * gamma().ln()).exp() / (gamma() + 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn representatives_fall_in_their_own_bucket_within_one_percent() {
        // (The lowest bucket's representative is below MIN_VALUE: it reads as the zero bucket,
        // on the server as here.)
        for i in (MIN_INDEX + 1..=MAX_INDEX).step_by(7) {
            assert_eq!(index_of(representative(i)), i, "bucket {i}");
        }
        for v in [1e-6, 0.003, 0.25, 1.0, 7.5, 1234.5, 9.9e11] {
            let r = representative(index_of(v));
            assert!((r - v).abs() <= v * RELATIVE_ACCURACY * 1.0001, "{v} → {r}");
        }
        assert_eq!(representative(index_of(0.0)), 0.0);
        assert_eq!(representative(index_of(-3.0)), 0.0);
    }
}
