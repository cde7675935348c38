//! Rollout percentages with a fixed resolution of 0.001 %.
//!
//! A [`Percentage`] is stored as an integer number of thousandths of a percent
//! (`0..=100_000`), so comparisons with a bucket are exact integer comparisons and a value
//! that went through JSON comes back bit-for-bit identical.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A percentage in `[0, 100]` with 0.001 resolution. Cannot hold an invalid value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Percentage(u32);

/// Why a number is not a valid [`Percentage`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PercentageError {
    /// NaN or infinite.
    #[error("percentage must be a finite number")]
    NotFinite,
    /// Below 0 or above 100.
    #[error("percentage must be between 0 and 100, got {0}")]
    OutOfRange(f64),
    /// Finer than 0.001.
    #[error("percentage resolution is 0.001, got {0}")]
    TooPrecise(f64),
}

impl Percentage {
    /// 0 %.
    pub const ZERO: Percentage = Percentage(0);
    /// 100 %.
    pub const FULL: Percentage = Percentage(100_000);

    /// Parses a percentage given as a float such as `12.5`.
    pub fn from_f64(value: f64) -> Result<Self, PercentageError> {
        if !value.is_finite() {
            return Err(PercentageError::NotFinite);
        }
        if !(0.0..=100.0).contains(&value) {
            return Err(PercentageError::OutOfRange(value));
        }
        let scaled = value * 1000.0;
        let rounded = scaled.round();
        // Tolerate float noise such as 0.1 + 0.2, reject genuinely finer values.
        if (scaled - rounded).abs() > 1e-6 {
            return Err(PercentageError::TooPrecise(value));
        }
        Ok(Percentage(rounded as u32))
    }

    /// Builds a percentage from thousandths of a percent; `None` above 100 %.
    pub fn from_millis(millis: u32) -> Option<Self> {
        (millis <= 100_000).then_some(Percentage(millis))
    }

    /// Thousandths of a percent, `0..=100_000`.
    pub fn millis(self) -> u32 {
        self.0
    }

    /// The value as a float, e.g. `12.5`.
    pub fn as_f64(self) -> f64 {
        f64::from(self.0) / 1000.0
    }

    /// True for 0 %.
    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// True for 100 %.
    pub fn is_full(self) -> bool {
        self.0 == 100_000
    }
}

impl fmt::Display for Percentage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.as_f64())
    }
}

impl Serialize for Percentage {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.as_f64())
    }
}

impl<'de> Deserialize<'de> for Percentage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = f64::deserialize(d)?;
        Percentage::from_f64(value).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_thousandths_and_float_noise() {
        assert_eq!(Percentage::from_f64(12.5).unwrap().millis(), 12_500);
        assert_eq!(Percentage::from_f64(0.001).unwrap().millis(), 1);
        assert_eq!(Percentage::from_f64(0.1 + 0.2).unwrap().millis(), 300);
        assert_eq!(Percentage::from_f64(100.0).unwrap(), Percentage::FULL);
    }

    #[test]
    fn rejects_out_of_range_nan_and_too_fine() {
        assert!(matches!(
            Percentage::from_f64(-0.5),
            Err(PercentageError::OutOfRange(_))
        ));
        assert!(matches!(
            Percentage::from_f64(100.001),
            Err(PercentageError::OutOfRange(_))
        ));
        assert_eq!(
            Percentage::from_f64(f64::NAN),
            Err(PercentageError::NotFinite)
        );
        assert!(matches!(
            Percentage::from_f64(1.0001),
            Err(PercentageError::TooPrecise(_))
        ));
    }

    #[test]
    fn json_round_trip_is_exact() {
        let p: Percentage = serde_json::from_str("33.333").unwrap();
        assert_eq!(serde_json::to_string(&p).unwrap(), "33.333");
    }
}
