use super::*;
use serde_json::json;

fn flag(key: &str, rollout: f64) -> FlagDef {
    serde_json::from_value(json!({
        "key": key, "type": "boolean", "variants": {"on": true, "off": false},
        "off_variant": "off", "on_variant": "on", "rollout": rollout
    }))
    .unwrap()
}

fn doc(flags: Vec<FlagDef>, prune: bool) -> ApplyRequest {
    ApplyRequest {
        flags,
        prune,
        ..ApplyRequest::default()
    }
}

#[test]
fn a_changed_rollout_is_an_update_naming_the_field() {
    let mut current = Current::default();
    current.flags.insert("search".into(), flag("search", 10.0));
    let plan = plan(
        &doc(vec![flag("search", 25.0), flag("new", 0.0)], false),
        &current,
    )
    .unwrap();
    assert_eq!(plan.changes[0].op, Op::Update);
    assert_eq!(plan.changes[0].fields[0].field, "rollout");
    assert_eq!(plan.changes[0].fields[0].after, Some(json!(25.0)));
    assert_eq!(plan.changes[1].op, Op::Create);
    assert_eq!(plan.writes.flags.len(), 2);
}

#[test]
fn the_same_document_is_unchanged_and_writes_nothing() {
    let mut current = Current::default();
    current.flags.insert("search".into(), flag("search", 10.0));
    let plan = plan(&doc(vec![flag("search", 10.0)], true), &current).unwrap();
    assert_eq!(plan.changes.len(), 1);
    assert_eq!(plan.changes[0].op, Op::Unchanged);
    assert!(plan.writes.flags.is_empty());
}

#[test]
fn prune_deletes_a_missing_flag_but_refuses_one_a_live_release_ramps() {
    let mut current = Current::default();
    current.flags.insert("old".into(), flag("old", 10.0));
    let plan = plan(&doc(Vec::new(), true), &current).unwrap();
    assert_eq!(plan.writes.deleted_flags, vec!["old".to_owned()]);
    current.live_flags.insert("old".into(), "spring".into());
    let err = super::plan(&doc(Vec::new(), true), &current).unwrap_err();
    assert!(matches!(err, OpsError::Conflict(m) if m.contains("\"old\"") && m.contains("spring")));
}

#[test]
fn a_live_release_keeps_its_rollout() {
    let mut current = Current::default();
    current.flags.insert("search".into(), flag("search", 10.0));
    current.live_flags.insert("search".into(), "spring".into());
    let plan = plan(&doc(vec![flag("search", 50.0)], false), &current).unwrap();
    assert_eq!(plan.changes[0].op, Op::Unchanged);
}

#[test]
fn errors_name_the_object_and_field() {
    let mut bad = flag("search", 10.0);
    bad.on_variant = "missing".into();
    let err = plan(&doc(vec![flag("a", 1.0), bad], false), &Current::default()).unwrap_err();
    assert!(matches!(err, OpsError::Invalid { field, .. } if field.starts_with("flags[1].")));
    let err = plan(
        &doc(vec![flag("a", 1.0), flag("a", 2.0)], false),
        &Current::default(),
    );
    assert!(matches!(err, Err(OpsError::Invalid { field, .. }) if field == "flags[1].key"));
}

fn segment(key: &str) -> SegmentDef {
    serde_json::from_value(
        json!({"key": key, "when": [{"attribute": "country", "op": "in", "values": ["NZ"]}]}),
    )
    .unwrap()
}

fn policy(name: &str) -> Policy {
    Policy::from_toml(&format!(
        "name = \"{name}\"\n[stages]\npercentages = [1, 100]\nmin_duration = \"1m\"\n"
    ))
    .unwrap()
}

#[test]
fn prune_deletes_unused_segments_and_policies_in_the_diff_order() {
    let mut current = Current::default();
    current.segments.insert("kiwis".into(), segment("kiwis"));
    current.policies.insert("slow".into(), policy("slow"));
    let plan = plan(&doc(Vec::new(), true), &current).unwrap();
    let ops: Vec<(Kind, &str, Op)> = plan
        .changes
        .iter()
        .map(|c| (c.kind, c.key.as_str(), c.op))
        .collect();
    assert_eq!(
        ops,
        vec![
            (Kind::Segment, "kiwis", Op::Delete),
            (Kind::Policy, "slow", Op::Delete)
        ]
    );
    assert_eq!(plan.writes.deleted_segments, vec!["kiwis".to_owned()]);
    assert_eq!(plan.writes.deleted_policies, vec!["slow".to_owned()]);
    // Without prune nothing is deleted.
    let plan = super::plan(&doc(Vec::new(), false), &current).unwrap();
    assert!(plan.changes.is_empty() && plan.writes.deleted_segments.is_empty());
}

#[test]
fn prune_refuses_a_segment_or_policy_still_used() {
    let mut current = Current::default();
    current.segments.insert("kiwis".into(), segment("kiwis"));
    current.policies.insert("slow".into(), policy("slow"));
    let mut user: FlagDef = serde_json::from_value(json!({
        "key": "shop", "type": "boolean", "variants": {"on": true, "off": false},
        "off_variant": "off", "on_variant": "on", "rollout": 0,
        "rules": [{"when": [{"segment": "kiwis"}], "variant": "on"}]
    }))
    .unwrap();
    let err = plan(&doc(vec![user.clone()], true), &current).unwrap_err();
    assert!(
        matches!(&err, OpsError::Conflict(m) if m.contains("segment \"kiwis\"") && m.contains("flag \"shop\"")),
        "{err:?}"
    );
    user.rules.clear();
    user.policy = Some("slow".into());
    let err = plan(&doc(vec![user], true), &current).unwrap_err();
    assert!(
        matches!(&err, OpsError::Conflict(m) if m.contains("policy \"slow\"") && m.contains("flag \"shop\"")),
        "{err:?}"
    );
    current
        .policy_users
        .insert("slow".into(), "release \"spring\"".into());
    let err = plan(&doc(Vec::new(), true), &current).unwrap_err();
    assert!(matches!(&err, OpsError::Conflict(m) if m.contains("release \"spring\"")));
    current.policy_users.clear();
    current
        .segment_users
        .insert("kiwis".into(), "live release \"spring\"".into());
    assert!(plan(&doc(Vec::new(), true), &current).is_err());
}

#[test]
fn prune_keeps_a_policy_loaded_from_a_file() {
    let mut current = Current::default();
    current.policies.insert("slow".into(), policy("slow"));
    current
        .policy_files
        .insert("slow".into(), "policies/slow.toml".into());
    let plan = plan(&doc(Vec::new(), true), &current).unwrap();
    assert_eq!(plan.changes[0].op, Op::Kept);
    assert!(plan.writes.deleted_policies.is_empty());
}
