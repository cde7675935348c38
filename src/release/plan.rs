//! Release plans as an operator writes them (`POST /api/v1/releases`): stage overrides,
//! modules, audiences, and the resolution of a module's stages, naming the field of every
//! problem. Pure data and pure functions.
//!
//! Stage plans resolve field by field: module override → release override → the policy's
//! `[stages]` → the defaults (`[1, 5, 25, 50, 100]`, no bake time, no exposure minimum).

use crate::policies::{parse_duration, Policy};
use rollgate_eval::Percentage;
use serde::{Deserialize, Serialize};

/// Stage overrides as written in a plan (every field optional).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StagesOverride {
    /// Strictly increasing percentages in (0, 100].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentages: Option<Vec<f64>>,
    /// Minimum bake time per stage: `500ms`, `30s`, `10m`, `2h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_duration: Option<String>,
    /// Minimum exposures of the new variant per stage.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::json_int::option_u64"
    )]
    pub min_exposures: Option<u64>,
}

/// One module of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModulePlan {
    /// The flag this module ramps.
    pub flag: String,
    /// Overrides of the release's stages for this module.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stages: Option<StagesOverride>,
    /// Audiences ramped separately (default: the plan's `audiences`); docs/releases.md.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audiences: Option<Vec<AudiencePlan>>,
}

/// How modules of a release bucket users.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Cohort {
    /// Each module buckets with its own flag's salt.
    #[default]
    Independent,
    /// All modules bucket the same users (salt `release:<name>`).
    Shared,
}

/// `POST /api/v1/releases` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleasePlan {
    /// Human name, same syntax as a flag key.
    pub name: String,
    /// Policy whose guards watch the release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Modules in ramp order.
    pub modules: Vec<ModulePlan>,
    /// Overrides of the policy's stages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stages: Option<StagesOverride>,
    /// `true`: modules ramp together; `false` (default): one after another.
    #[serde(default)]
    pub overlap: bool,
    /// `independent` (default) or `shared`.
    #[serde(default)]
    pub cohort: Cohort,
    /// Default audiences of every module (docs/releases.md#audiences).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<AudiencePlan>,
}

/// A fully resolved stage plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Stages {
    /// Percentages to walk.
    #[schema(value_type = Vec<f64>)]
    pub percentages: Vec<Percentage>,
    /// Minimum bake time per stage, milliseconds.
    pub min_duration_ms: u64,
    /// Minimum new-variant exposures per stage.
    pub min_exposures: u64,
}

/// How a protected audience starts once everyone else has completed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Advance {
    /// At once.
    #[default]
    Auto,
    /// On an operator's `POST /api/v1/releases/{id}/advance`.
    Manual,
}

/// One audience of a plan (or of a module).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AudiencePlan {
    /// An existing segment's key.
    pub segment: String,
    /// Protected: ramps after everyone else has completed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub protected: bool,
    /// Only for protected audiences: `auto` (default) or `manual`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advance: Option<Advance>,
    /// This audience's own stages (resolved like a module's, over the module's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stages: Option<StagesOverride>,
}

/// A plan problem, naming the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct PlanError {
    /// E.g. `modules[1].stages.percentages[0]`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

pub(super) fn plan_err(field: impl Into<String>, message: impl Into<String>) -> PlanError {
    PlanError {
        field: field.into(),
        message: message.into(),
    }
}

/// Resolves the stages of one module: module → release → policy → defaults.
pub fn resolve_stages(
    at: &str,
    module: Option<&StagesOverride>,
    release: Option<&StagesOverride>,
    policy: Option<&Policy>,
) -> Result<Stages, PlanError> {
    let policy_stages = policy.and_then(|p| p.stages.as_ref());
    let pick = |f: fn(&StagesOverride) -> bool| {
        if module.is_some_and(f) {
            "module"
        } else if release.is_some_and(f) {
            "release"
        } else {
            "policy"
        }
    };
    let field_at = |source: &str, field: &str| match source {
        "module" => format!("{at}.stages.{field}"),
        "release" => format!("stages.{field}"),
        _ => format!("policy.stages.{field}"),
    };
    let percentages = module
        .and_then(|m| m.percentages.clone())
        .or_else(|| release.and_then(|r| r.percentages.clone()))
        .or_else(|| policy_stages.map(|s| s.percentages.clone()))
        .unwrap_or_else(|| vec![1.0, 5.0, 25.0, 50.0, 100.0]);
    let percentages_field = field_at(pick(|o| o.percentages.is_some()), "percentages");
    if percentages.is_empty() || percentages.len() > 100 {
        return Err(plan_err(
            percentages_field,
            "between 1 and 100 stages are required",
        ));
    }
    let mut parsed = Vec::with_capacity(percentages.len());
    for (i, p) in percentages.iter().enumerate() {
        let field = format!("{percentages_field}[{i}]");
        let value = Percentage::from_f64(*p).map_err(|e| plan_err(&field, e.to_string()))?;
        if value.is_zero() || parsed.last().is_some_and(|prev| *prev >= value) {
            return Err(plan_err(
                field,
                "stages must be strictly increasing and above 0",
            ));
        }
        parsed.push(value);
    }
    let duration = module
        .and_then(|m| m.min_duration.clone())
        .or_else(|| release.and_then(|r| r.min_duration.clone()))
        .or_else(|| policy_stages.map(|s| s.min_duration.clone()))
        .unwrap_or_else(|| "0s".to_owned());
    let duration_field = field_at(pick(|o| o.min_duration.is_some()), "min_duration");
    let min_duration = parse_duration(&duration).ok_or_else(|| {
        plan_err(
            duration_field,
            format!("{duration:?} is not a duration (use 500ms, 30s, 10m, 2h)"),
        )
    })?;
    let min_exposures = module
        .and_then(|m| m.min_exposures)
        .or_else(|| release.and_then(|r| r.min_exposures))
        .or_else(|| policy_stages.map(|s| s.min_exposures))
        .unwrap_or(0);
    Ok(Stages {
        percentages: parsed,
        min_duration_ms: u64::try_from(min_duration.as_millis()).unwrap_or(u64::MAX),
        min_exposures,
    })
}
