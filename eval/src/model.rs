//! The flag, rule, condition and segment model exactly as it travels in JSON.
//!
//! These are the *definitions* (what an operator writes). They are checked and turned into
//! [`crate::CompiledFlag`] before anything is evaluated. Unknown fields are rejected so that a
//! typo in a rule never silently changes who gets what.

use crate::Percentage;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// A flag definition (`PUT /api/v1/flags/{key}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagDef {
    /// `[a-z0-9][a-z0-9._-]{0,127}`.
    pub key: String,
    /// The JSON type of every variant value.
    #[serde(rename = "type")]
    pub flag_type: FlagType,
    /// Variant name → value.
    pub variants: BTreeMap<String, Value>,
    /// What everyone gets when the flag is killed or rolled back (the old behaviour).
    pub off_variant: String,
    /// The new behaviour that the rollout gives to its cohort.
    pub on_variant: String,
    /// Kill switch: `false` serves `off_variant` to everyone.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Share of users (outside matching rules) that get `on_variant`.
    #[serde(default)]
    pub rollout: Percentage,
    /// Ordered targeting rules; the first match wins.
    #[serde(default)]
    pub rules: Vec<RuleDef>,
    /// Release audiences, after the rules and before `rollout`: the first audience whose
    /// segment the context matches serves its own rollout split. Omitted when empty, so a flag
    /// without audiences has the JSON it always had.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<AudienceDef>,
    /// Bucketing salt; defaults to the flag key. Flags with the same salt share cohorts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt: Option<String>,
    /// Free text for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Free labels for humans and tooling.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Policy whose guards watch this flag when it is ramped by hand, outside any release.
    /// Not used by evaluation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
}

impl FlagDef {
    /// Whether `other` differs from this flag at most in what evaluation reads as plain values —
    /// the kill switch, the rollout and the audiences' rollouts (same segments, same order) —
    /// or not at all (description, tags, policy), so that this flag's compiled form serves
    /// `other` after [`crate::CompiledFlag::with_switches`] and
    /// [`crate::CompiledFlag::with_audience_rollouts`].
    pub fn differs_only_in_switches(&self, other: &FlagDef) -> bool {
        self.key == other.key
            && self.flag_type == other.flag_type
            && self.variants == other.variants
            && self.off_variant == other.off_variant
            && self.on_variant == other.on_variant
            && self.rules == other.rules
            && self.salt == other.salt
            && self.audiences.len() == other.audiences.len()
            && self
                .audiences
                .iter()
                .zip(&other.audiences)
                .all(|(a, b)| a.segment == b.segment)
    }

    /// Whether a rule or an audience of this flag tests membership of segment `key` (segments
    /// never reference other segments, so these are the flags a change of that segment
    /// recompiles).
    pub fn uses_segment(&self, key: &str) -> bool {
        self.rules
            .iter()
            .flat_map(|r| &r.when)
            .any(|c| c.segment.as_deref() == Some(key))
            || self.audiences.iter().any(|a| a.segment == key)
    }
}

fn default_true() -> bool {
    true
}

/// The JSON type of a flag's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlagType {
    /// `true` / `false`.
    Boolean,
    /// Any JSON string.
    String,
    /// Any JSON number.
    Number,
    /// Any JSON object.
    Object,
}

impl FlagType {
    /// Whether `value` has this type.
    pub fn accepts(self, value: &Value) -> bool {
        match self {
            FlagType::Boolean => value.is_boolean(),
            FlagType::String => value.is_string(),
            FlagType::Number => value.is_number(),
            FlagType::Object => value.is_object(),
        }
    }

    /// The name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            FlagType::Boolean => "boolean",
            FlagType::String => "string",
            FlagType::Number => "number",
            FlagType::Object => "object",
        }
    }
}

/// One targeting rule: when every condition holds, serve `variant`, or split by `rollout`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleDef {
    /// Conditions that must all hold (an empty list always matches).
    #[serde(default)]
    pub when: Vec<ConditionDef>,
    /// The variant to serve; exclusive with `rollout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// The share of matching users that get `on_variant` (the rest get `off_variant`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Percentage>,
}

/// A release audience of a flag: users in `segment` (and in no earlier audience, and matched by
/// no rule) get `on_variant` with probability `rollout`, bucketed exactly like the flag's own
/// rollout, so raising the percentage only adds users.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudienceDef {
    /// The segment that defines the audience.
    pub segment: String,
    /// The share of the audience that gets `on_variant`.
    #[serde(default)]
    pub rollout: Percentage,
}

/// A condition: `{"attribute", "op", "values"}` or `{"segment"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConditionDef {
    /// Context attribute to test.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribute: Option<String>,
    /// Comparison operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<Op>,
    /// Operand(s); list operators match when any value matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<Value>>,
    /// Segment membership, exclusive with the three fields above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
}

/// Condition operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Equals one of `values` (same as `in`).
    Eq,
    /// Present and equal to none of `values` (same as `not_in`).
    Neq,
    /// Equals one of `values`.
    In,
    /// Present and equal to none of `values`.
    NotIn,
    /// Numerically less than `values[0]`.
    Lt,
    /// Numerically at most `values[0]`.
    Lte,
    /// Numerically greater than `values[0]`.
    Gt,
    /// Numerically at least `values[0]`.
    Gte,
    /// Semantic version less than `values[0]`.
    SemverLt,
    /// Semantic version at most `values[0]`.
    SemverLte,
    /// Semantic version greater than `values[0]`.
    SemverGt,
    /// Semantic version at least `values[0]`.
    SemverGte,
    /// String starts with one of `values`.
    StartsWith,
    /// String ends with one of `values`.
    EndsWith,
    /// String contains one of `values`.
    Contains,
    /// String matches one of the regular expressions in `values`.
    Matches,
}

/// A named, reusable set of conditions (`PUT /api/v1/segments/{key}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentDef {
    /// Same syntax as a flag key.
    pub key: String,
    /// Conditions that must all hold; segments may not reference other segments.
    pub when: Vec<ConditionDef>,
    /// Free text for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// True when `key` matches `[a-z0-9][a-z0-9._-]{0,127}`.
pub fn valid_flag_key(key: &str) -> bool {
    let bytes = key.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes.iter().all(|&b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_keys_follow_the_contract() {
        assert!(valid_flag_key("qr-ordering"));
        assert!(valid_flag_key("a"));
        assert!(valid_flag_key(&"a".repeat(128)));
        for bad in ["", "-a", "A", "a b", "a/b", ".x", &"a".repeat(129)] {
            assert!(!valid_flag_key(bad), "{bad:?}");
        }
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let json = r#"{"key":"f","type":"boolean","variants":{},"off_variant":"a","on_variant":"b","colour":1}"#;
        let err = serde_json::from_str::<FlagDef>(json).unwrap_err();
        assert!(err.to_string().contains("colour"));
    }
}
