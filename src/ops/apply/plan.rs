//! The pure core of flags as code: an apply document and the state in force in, a validated
//! plan and its diff out. No I/O, no clock: the shell (`super`) reads the state under the writer
//! lock, calls [`plan`], and commits what it returns.
//!
//! Invariants:
//! - Everything is validated before anything is planned, each object exactly as its own
//!   endpoint validates it, and an error names the object and field in the request
//!   (`flags[2].rollout`), so a refused document changes nothing.
//! - The diff lists every object of the document (and, with `prune`, every object missing from
//!   it) in a fixed order — segments, policies, flags, releases; the document's order within a
//!   kind, removals after, by key — so a dry run and the apply that follows print the same.
//! - `prune` deletes a segment or a policy only when nothing left after the run uses it
//!   (`crate::ops::references`); otherwise the whole run is refused (409) naming the user. A
//!   policy loaded from this node's `policies/` directory is kept, never deleted (its file
//!   would bring it back at the next start).
//! - A flag that a live release ramps keeps the `rollout` and `audiences` in force (the
//!   release owns them); a flag without `salt` keeps the salt in force (like `PUT`).

use crate::ops::references;
use crate::policies::Policy;
use crate::release::{build_release, ReleasePlan};
use crate::writer::{invalid, OpsError};
use rollgate_eval::{compile_flag, validate_segment, FlagDef, SegmentDef};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use uuid::Uuid;

/// `POST /api/v1/apply` body: the desired objects and how to apply them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplyRequest {
    /// Flags, as `PUT /api/v1/flags/{key}` takes them.
    #[serde(default)]
    pub flags: Vec<FlagDef>,
    /// Segments, as `PUT /api/v1/segments/{key}` takes them.
    #[serde(default)]
    pub segments: Vec<SegmentDef>,
    /// Policies, as `PUT /api/v1/policies/{name}` takes them.
    #[serde(default)]
    pub policies: Vec<Policy>,
    /// Release plans, as `POST /api/v1/releases` takes them.
    #[serde(default)]
    pub releases: Vec<ReleasePlan>,
    /// Delete the flags, segments and policies that the document does not have.
    #[serde(default)]
    pub prune: bool,
    /// Compute and return the diff only.
    #[serde(default)]
    pub dry_run: bool,
    /// Recorded as the reason of every audit entry of the run.
    #[serde(default)]
    pub message: Option<String>,
}

/// The kind of an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Segment,
    Policy,
    Flag,
    Release,
}

/// What applying does to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// New.
    Create,
    /// Replaced; `fields` says what differs.
    Update,
    /// Removed (`prune`).
    Delete,
    /// Already as the document says.
    Unchanged,
    /// Missing from the document under `prune`, but not deleted: a policy loaded from this
    /// node's `policies/` directory.
    Kept,
}

/// One top-level field that differs (`before`/`after` absent when the field is).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldChange {
    pub field: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
}

/// One line of the diff.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub kind: Kind,
    pub key: String,
    pub op: Op,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldChange>,
}

/// The state in force, as the planner needs it.
#[derive(Debug, Default)]
pub struct Current {
    pub flags: BTreeMap<String, FlagDef>,
    pub segments: BTreeMap<String, SegmentDef>,
    pub policies: BTreeMap<String, Policy>,
    /// The newest release of each name: its plan, and whether it is live.
    pub releases: BTreeMap<String, (ReleasePlan, bool)>,
    /// Flags that a live release ramps → that release's name.
    pub live_flags: BTreeMap<String, String>,
    /// Segments that a live release's module audiences use → that use, described.
    pub segment_users: BTreeMap<String, String>,
    /// Policies that a stored release (of any status) names → that use, described.
    pub policy_users: BTreeMap<String, String>,
    /// Policies loaded from this node's `policies/` directory → the file.
    pub policy_files: BTreeMap<String, String>,
}

/// The diff of the whole document, and what to write for it.
#[derive(Debug, Default)]
pub struct Plan {
    pub changes: Vec<Change>,
    pub writes: Writes,
}

/// The objects that change.
#[derive(Debug, Default)]
pub struct Writes {
    pub flags: Vec<FlagDef>,
    pub deleted_flags: Vec<String>,
    pub segments: Vec<SegmentDef>,
    pub deleted_segments: Vec<String>,
    pub policies: Vec<Policy>,
    pub deleted_policies: Vec<String>,
    pub releases: Vec<ReleasePlan>,
}

/// Validates `req` against `current` and plans it.
pub fn plan(req: &ApplyRequest, current: &Current) -> Result<Plan, OpsError> {
    unique("segments", "key", req.segments.iter().map(|s| &s.key))?;
    unique("policies", "name", req.policies.iter().map(|p| &p.name))?;
    unique("flags", "key", req.flags.iter().map(|f| &f.key))?;
    unique("releases", "name", req.releases.iter().map(|r| &r.name))?;
    let mut out = Plan::default();

    let mut segments = current.segments.clone();
    for (i, s) in req.segments.iter().enumerate() {
        validate_segment(s)
            .map_err(|e| invalid(format!("segments[{i}].{}", e.field), e.message))?;
        segments.insert(s.key.clone(), s.clone());
        let change = diff(Kind::Segment, &s.key, current.segments.get(&s.key), s)?;
        if change.op != Op::Unchanged {
            out.writes.segments.push(s.clone());
        }
        out.changes.push(change);
    }
    let pruned_segments: Vec<String> = pruned(req, current.segments.keys(), |k| {
        req.segments.iter().any(|s| &s.key == k)
    });
    for key in &pruned_segments {
        segments.remove(key);
    }

    let mut policies = current.policies.clone();
    for (i, p) in req.policies.iter().enumerate() {
        p.validate()
            .map_err(|e| invalid(format!("policies[{i}].{}", e.field), e.message))?;
        policies.insert(p.name.clone(), p.clone());
        let change = diff(Kind::Policy, &p.name, current.policies.get(&p.name), p)?;
        if change.op != Op::Unchanged {
            out.writes.policies.push(p.clone());
        }
        out.changes.push(change);
    }
    let pruned_policies: Vec<String> = pruned(req, current.policies.keys(), |k| {
        req.policies.iter().any(|p| &p.name == k)
    });
    for name in &pruned_policies {
        if !current.policy_files.contains_key(name) {
            policies.remove(name);
        }
    }

    // Under `prune` the document's flags are all the flags there will be.
    let defs: Vec<FlagDef> = req
        .flags
        .iter()
        .map(|f| {
            let before = current.flags.get(&f.key);
            normalized(f, before, current.live_flags.contains_key(&f.key))
        })
        .collect();
    for key in &pruned_segments {
        let user = references::segment_user(&defs, std::iter::empty(), key)
            .or_else(|| current.segment_users.get(key).cloned());
        if let Some(user) = user {
            return Err(refused("segment", key, &user));
        }
        out.changes.push(deleted(Kind::Segment, key));
        out.writes.deleted_segments.push(key.clone());
    }
    for name in &pruned_policies {
        if current.policy_files.contains_key(name) {
            out.changes.push(Change {
                kind: Kind::Policy,
                key: name.clone(),
                op: Op::Kept,
                fields: Vec::new(),
            });
            continue;
        }
        let user = references::policy_user(&defs, std::iter::empty(), name)
            .or_else(|| current.policy_users.get(name).cloned());
        if let Some(user) = user {
            return Err(refused("policy", name, &user));
        }
        out.changes.push(deleted(Kind::Policy, name));
        out.writes.deleted_policies.push(name.clone());
    }

    for (i, (f, def)) in req.flags.iter().zip(defs).enumerate() {
        let before = current.flags.get(&f.key);
        compile_flag(&def, &segments)
            .map_err(|e| invalid(format!("flags[{i}].{}", e.field), e.message))?;
        if let Some(policy) = &def.policy {
            if !policies.contains_key(policy) {
                return Err(invalid(
                    format!("flags[{i}].policy"),
                    format!("unknown policy {policy:?}"),
                ));
            }
        }
        let change = diff(Kind::Flag, &f.key, before, &def)?;
        if change.op != Op::Unchanged {
            out.writes.flags.push(def);
        }
        out.changes.push(change);
    }
    if req.prune {
        for key in current.flags.keys() {
            if req.flags.iter().any(|f| &f.key == key) {
                continue;
            }
            if let Some(release) = current.live_flags.get(key) {
                return Err(OpsError::Conflict(format!(
                    "prune would delete flag {key:?}, which live release {release:?} ramps; \
                     keep it in the document or finish the release first"
                )));
            }
            out.writes.deleted_flags.push(key.clone());
            out.changes.push(deleted(Kind::Flag, key));
        }
    }

    let flag_exists = |key: &str| {
        req.flags.iter().any(|f| f.key == key)
            || (current.flags.contains_key(key)
                && !out.writes.deleted_flags.iter().any(|d| d == key))
    };
    let mut claimed: BTreeMap<&str, &str> = BTreeMap::new();
    for (i, r) in req.releases.iter().enumerate() {
        let at = format!("releases[{i}]");
        let policy = match &r.policy {
            Some(name) => Some(policies.get(name).ok_or_else(|| {
                invalid(format!("{at}.policy"), format!("unknown policy {name:?}"))
            })?),
            None => None,
        };
        let built = build_release(r.clone(), policy, Uuid::nil(), String::new())
            .map_err(|e| invalid(format!("{at}.{}", e.field), e.message))?;
        match current.releases.get(&r.name) {
            Some((existing, _)) if existing == r => {
                out.changes.push(Change {
                    kind: Kind::Release,
                    key: r.name.clone(),
                    op: Op::Unchanged,
                    fields: Vec::new(),
                });
                continue;
            }
            Some((existing, _)) => {
                let fields = field_changes(&to_json(existing)?, &to_json(r)?);
                let names: Vec<&str> = fields.iter().map(|f| f.field.as_str()).collect();
                return Err(invalid(
                    at,
                    format!(
                        "release {:?} exists with a different plan ({} differ); a release plan \
                         cannot be changed — give the new plan a new name",
                        r.name,
                        names.join(", ")
                    ),
                ));
            }
            None => {}
        }
        for (j, m) in built.modules.iter().enumerate() {
            if !flag_exists(&m.flag) {
                return Err(invalid(
                    format!("{at}.modules[{j}].flag"),
                    format!("unknown flag {:?}", m.flag),
                ));
            }
            if let Some(k) = m
                .audiences
                .iter()
                .position(|a| !segments.contains_key(&a.segment))
            {
                return Err(invalid(
                    format!("{at}.modules[{j}].audiences[{k}].segment"),
                    format!("unknown segment {:?}", m.audiences[k].segment),
                ));
            }
            let other = current
                .live_flags
                .get(&m.flag)
                .map(String::as_str)
                .or_else(|| claimed.get(m.flag.as_str()).copied());
            if let Some(other) = other {
                return Err(OpsError::Conflict(format!(
                    "{at}.modules[{j}].flag: flag {:?} already belongs to live release {other:?}",
                    m.flag
                )));
            }
        }
        for m in &r.modules {
            claimed.insert(&m.flag, &r.name);
        }
        out.changes.push(Change {
            kind: Kind::Release,
            key: r.name.clone(),
            op: Op::Create,
            fields: Vec::new(),
        });
        out.writes.releases.push(r.clone());
    }
    Ok(out)
}

/// The flag as it will be stored: salt and release-owned fields kept from the one in force.
fn normalized(f: &FlagDef, before: Option<&FlagDef>, in_live_release: bool) -> FlagDef {
    let mut def = f.clone();
    if let Some(before) = before {
        if def.salt.is_none() {
            def.salt = before.salt.clone();
        }
        if in_live_release {
            def.rollout = before.rollout;
            def.audiences = before.audiences.clone();
        }
    }
    def
}

/// Under `prune`, the objects of a kind in force that the document lacks, by key.
fn pruned<'a>(
    req: &ApplyRequest,
    keys: impl Iterator<Item = &'a String>,
    in_document: impl Fn(&String) -> bool,
) -> Vec<String> {
    if !req.prune {
        return Vec::new();
    }
    keys.filter(|k| !in_document(k)).cloned().collect()
}

/// The diff line of a deletion.
fn deleted(kind: Kind, key: &str) -> Change {
    Change {
        kind,
        key: key.to_owned(),
        op: Op::Delete,
        fields: Vec::new(),
    }
}

/// `prune` refused: it would delete a segment or policy that `user` still uses.
fn refused(what: &str, key: &str, user: &str) -> OpsError {
    OpsError::Conflict(format!(
        "prune would delete {what} {key:?}, which {user} uses; keep it in the document or \
         change that first"
    ))
}

/// Refuses a key that appears twice in one list, naming the second.
fn unique<'a>(
    list: &str,
    field: &str,
    keys: impl Iterator<Item = &'a String>,
) -> Result<(), OpsError> {
    let mut seen = BTreeSet::new();
    for (i, key) in keys.enumerate() {
        if !seen.insert(key) {
            return Err(invalid(
                format!("{list}[{i}].{field}"),
                format!("{key:?} appears twice in the document"),
            ));
        }
    }
    Ok(())
}

fn to_json<T: Serialize>(v: &T) -> Result<Value, OpsError> {
    crate::writer::to_value("apply", v)
}

/// The change from `before` to `after` of one object.
fn diff<T: Serialize>(
    kind: Kind,
    key: &str,
    before: Option<&T>,
    after: &T,
) -> Result<Change, OpsError> {
    let (op, fields) = match before {
        None => (Op::Create, Vec::new()),
        Some(before) => {
            let fields = field_changes(&to_json(before)?, &to_json(after)?);
            let op = if fields.is_empty() {
                Op::Unchanged
            } else {
                Op::Update
            };
            (op, fields)
        }
    };
    Ok(Change {
        kind,
        key: key.to_owned(),
        op,
        fields,
    })
}

/// The top-level fields of two JSON objects that differ, in key order.
pub fn field_changes(before: &Value, after: &Value) -> Vec<FieldChange> {
    let empty = serde_json::Map::new();
    let b = before.as_object().unwrap_or(&empty);
    let a = after.as_object().unwrap_or(&empty);
    let keys: BTreeSet<&String> = b.keys().chain(a.keys()).collect();
    keys.into_iter()
        .filter(|k| b.get(*k) != a.get(*k))
        .map(|k| FieldChange {
            field: k.clone(),
            before: b.get(k).cloned(),
            after: a.get(k).cloned(),
        })
        .collect()
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
