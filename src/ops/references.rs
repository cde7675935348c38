//! Who still uses a segment or a policy: the pure checks behind deleting one (`DELETE
//! /api/v1/segments/{key}`, `DELETE /api/v1/policies/{name}`, `apply --prune`).
//!
//! Invariants: a segment is in use while a flag tests it (a rule condition or an audience) or
//! a live release's module has it as an audience (the controller writes it into the flag
//! later); a policy is in use while a flag names it or any release does — finished ones too,
//! since a release's status and history read its policy. The answer names the first user,
//! in key order, so the refusal says what to change.

use crate::release::Release;
use rollgate_eval::FlagDef;

/// The first flag or live release that uses segment `key`, described for an error message.
pub fn segment_user<'a>(
    flags: impl IntoIterator<Item = &'a FlagDef>,
    releases: impl IntoIterator<Item = &'a Release>,
    key: &str,
) -> Option<String> {
    if let Some(f) = flags.into_iter().find(|f| f.uses_segment(key)) {
        return Some(format!("flag {:?}", f.key));
    }
    releases
        .into_iter()
        .filter(|r| r.is_live())
        .find(|r| {
            r.modules
                .iter()
                .any(|m| m.audiences.iter().any(|a| a.segment == key))
        })
        .map(|r| format!("live release {:?}", r.name))
}

/// The first flag or release (of any status) that names policy `name`.
pub fn policy_user<'a>(
    flags: impl IntoIterator<Item = &'a FlagDef>,
    releases: impl IntoIterator<Item = &'a Release>,
    name: &str,
) -> Option<String> {
    if let Some(f) = flags
        .into_iter()
        .find(|f| f.policy.as_deref() == Some(name))
    {
        return Some(format!("flag {:?}", f.key));
    }
    releases
        .into_iter()
        .find(|r| r.policy.as_deref() == Some(name))
        .map(|r| format!("release {:?}", r.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flag(json: serde_json::Value) -> FlagDef {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_segment_is_used_by_a_rule_or_an_audience() {
        let rule = flag(
            serde_json::json!({"key": "a", "type": "boolean", "variants": {"on": true, "off": false},
            "off_variant": "off", "on_variant": "on", "rollout": 100, "rules": [{"when": [{"segment": "beta"}], "variant": "on"}]}),
        );
        let plain = flag(
            serde_json::json!({"key": "b", "type": "boolean", "variants": {"on": true, "off": false},
            "off_variant": "off", "on_variant": "on", "rollout": 100}),
        );
        assert_eq!(
            segment_user([&plain, &rule], std::iter::empty(), "beta").as_deref(),
            Some("flag \"a\"")
        );
        assert_eq!(
            segment_user([&plain, &rule], std::iter::empty(), "other"),
            None
        );
    }

    #[test]
    fn a_policy_is_used_by_a_flag() {
        let mut f = flag(
            serde_json::json!({"key": "a", "type": "boolean", "variants": {"on": true, "off": false},
            "off_variant": "off", "on_variant": "on", "rollout": 100}),
        );
        assert_eq!(policy_user([&f], std::iter::empty(), "p"), None);
        f.policy = Some("p".into());
        assert_eq!(
            policy_user([&f], std::iter::empty(), "p").as_deref(),
            Some("flag \"a\"")
        );
    }
}
