//! Pre-aggregated histograms in signals: `"histogram": {"bounds": [...], "counts": [...]}`.
//!
//! `counts[i]` observations lie in `(bounds[i−1], bounds[i]]` (`counts[0]`: at most
//! `bounds[0]`); there is no overflow bucket, so the last bound must be at or above the largest
//! observation. Each observation is recorded at its bucket's upper bound: a quantile read from a
//! histogram is never below the true one, and is exact when the bounds are the observed values.
//! The shape is checked strictly; a problem names its field (`signals[3].histogram.counts`).
//! What the OpenAPI document states (1 to 512 bounds, integer counts ≥ 0, no other key) is 400;
//! the rules it can only state in words (bounds increasing and in range, one count per bound,
//! at least one and at most 1,000,000 observations) are 422, as for every schema-valid request.

use super::bounds::{Malformed, MAX_ABS_VALUE, MAX_COUNT};
use serde::Deserialize;

/// Most buckets one histogram may have.
pub const MAX_BUCKETS: usize = 512;

/// A signal's histogram.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Histogram {
    /// Upper bounds of the buckets, strictly increasing, each in `[0, 1e12]`.
    pub bounds: Vec<f64>,
    /// Observations per bucket, as many as bounds.
    #[serde(deserialize_with = "counts")]
    pub counts: Vec<u64>,
}

fn counts<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u64>, D::Error> {
    #[derive(Deserialize)]
    struct Count(#[serde(deserialize_with = "crate::json_int::u64")] u64);
    Ok(Vec::<Count>::deserialize(d)?
        .into_iter()
        .map(|c| c.0)
        .collect())
}

/// `histogram`: an object or `null`; an array is refused (a derived struct would also read its
/// fields from `[bounds, counts]`, which no client means and the document does not allow).
pub fn option<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Histogram>, D::Error> {
    struct Object;
    impl<'de> serde::de::Visitor<'de> for Object {
        type Value = Option<Histogram>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a histogram object {\"bounds\": [...], \"counts\": [...]} or null")
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            Histogram::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Some)
        }
    }
    d.deserialize_any(Object)
}

impl Histogram {
    /// Checks the shape and bounds; returns the number of observations. `at` is the
    /// signal's field prefix (`signals[3]`).
    pub fn check(&self, at: &str) -> Result<u64, Malformed> {
        let field = |f: &str| format!("{at}.histogram.{f}");
        if self.bounds.is_empty() || self.bounds.len() > MAX_BUCKETS {
            return Err(Malformed::shape(
                field("bounds"),
                format!("1 to {MAX_BUCKETS} bucket bounds"),
            ));
        }
        let mut previous = f64::NEG_INFINITY;
        for (j, &b) in self.bounds.iter().enumerate() {
            if !b.is_finite() || b <= previous {
                return Err(Malformed::bound(
                    field(&format!("bounds[{j}]")),
                    "bounds must be finite and strictly increasing",
                ));
            }
            if !(0.0..=MAX_ABS_VALUE).contains(&b) {
                return Err(Malformed::bound(
                    field(&format!("bounds[{j}]")),
                    format!("must be between 0 and {MAX_ABS_VALUE:e}"),
                ));
            }
            previous = b;
        }
        if self.counts.len() != self.bounds.len() {
            return Err(Malformed::bound(
                field("counts"),
                format!(
                    "one count per bound: {} bounds, {} counts",
                    self.bounds.len(),
                    self.counts.len()
                ),
            ));
        }
        let total = self.counts.iter().fold(0u64, |a, &c| a.saturating_add(c));
        if total == 0 {
            return Err(Malformed::bound(
                field("counts"),
                "a histogram needs at least one observation",
            ));
        }
        if total > MAX_COUNT {
            return Err(Malformed::bound(
                field("counts"),
                format!("at most {MAX_COUNT} observations per signal"),
            ));
        }
        Ok(total)
    }

    /// `(upper bound, observations)` of the non-empty buckets.
    pub fn buckets(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        self.bounds
            .iter()
            .copied()
            .zip(self.counts.iter().copied())
            .filter(|(_, c)| *c > 0)
    }
}
