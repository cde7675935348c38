//! Counts as the OpenAPI document types them: `integer`, `format: int64`, `minimum: 0`.
//!
//! - `125` and `125.0` are the same integer (JSON Schema's `integer` is any number without a
//!   fractional part); serde's `u64` refuses `125.0`, these accept it.
//! - The range is `0..=2^63-1`: the range of `int64`, and of a TOML integer, so a policy means
//!   the same in JSON and in TOML. `125.5`, negatives and larger values are refused with
//!   serde's own "invalid value" messages.
//!
//! Use with `#[serde(deserialize_with = "crate::json_int::u64")]` (or `option_u64`, with
//! `default`).

use serde::de::{self, Deserializer, Unexpected, Visitor};
use std::fmt;

/// The largest count: `i64::MAX`.
pub const MAX: u64 = i64::MAX as u64;

struct U64Visitor;

impl Visitor<'_> for U64Visitor {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer from 0 to 2^63-1")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        if v <= MAX {
            Ok(v)
        } else {
            Err(E::invalid_value(Unexpected::Unsigned(v), &self))
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<u64, E> {
        // 2^63 is a float; every integral float below it converts exactly.
        if v.fract() == 0.0 && (0.0..9_223_372_036_854_775_808.0).contains(&v) {
            Ok(v as u64)
        } else {
            Err(E::invalid_value(Unexpected::Float(v), &self))
        }
    }
}

/// A `u64` that also accepts an integral float (`125.0`).
pub fn u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    d.deserialize_any(U64Visitor)
}

/// An optional `u64` (`null` is `None`) that also accepts an integral float.
pub fn option_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    struct OptionVisitor;
    impl<'de> Visitor<'de> for OptionVisitor {
        type Value = Option<u64>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a non-negative integer or null")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            u64(d).map(Some)
        }
    }
    d.deserialize_option(OptionVisitor)
}

#[cfg(test)]
mod tests {
    #[derive(serde::Deserialize)]
    struct T {
        #[serde(deserialize_with = "super::u64")]
        n: u64,
        #[serde(default, deserialize_with = "super::option_u64")]
        o: Option<u64>,
    }

    fn n(json: &str) -> Result<u64, String> {
        serde_json::from_str::<T>(json)
            .map(|t| t.n)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn integral_floats_are_integers() {
        assert_eq!(n(r#"{"n": 125}"#), Ok(125));
        assert_eq!(n(r#"{"n": 125.0}"#), Ok(125));
        assert_eq!(n(r#"{"n": 1e3}"#), Ok(1000));
        assert_eq!(n(r#"{"n": 9223372036854775807}"#), Ok(super::MAX));
    }

    #[test]
    fn fractions_negatives_and_overflow_are_refused() {
        for bad in [
            "125.5",
            "-1",
            "-1.0",
            "9223372036854775808",
            "18446744073709551616",
            "1e20",
            "\"1\"",
            "null",
        ] {
            let err = n(&format!(r#"{{"n": {bad}}}"#)).unwrap_err();
            assert!(
                err.starts_with("invalid value") || err.starts_with("invalid type"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn options_take_null_and_absence() {
        let t: T = serde_json::from_str(r#"{"n": 1, "o": null}"#).unwrap();
        assert_eq!(t.o, None);
        let t: T = serde_json::from_str(r#"{"n": 1}"#).unwrap();
        assert_eq!(t.o, None);
        let t: T = serde_json::from_str(r#"{"n": 1, "o": 7.0}"#).unwrap();
        assert_eq!(t.o, Some(7));
    }
}
