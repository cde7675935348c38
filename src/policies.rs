//! Policies: the guards that watch a release, loaded from `policies/*.toml` at start and
//! changed through `PUT /api/v1/policies/{name}`.
//!
//! Validation is strict and names the file, the guard and the field, because a policy that
//! silently means something else than its author thought is worse than a refused start.

use crate::sources::{GuardSource, PromQuery};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A policy as written in TOML or JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Unique name; the file `policies/NAME.toml` must carry the same name.
    pub name: String,
    /// `module` (a core breach rolls back the module) or `release` (the whole release).
    #[serde(default)]
    pub scope: Scope,
    /// Default confidence for relative comparisons, in (0.5, 1).
    #[serde(default = "default_confidence")]
    pub confidence: f64,
    /// Overall false-rollback budget shared by the policy's guards, in (0, 0.5).
    #[serde(default = "default_false_rollback")]
    pub false_rollback_rate: f64,
    /// How long a guard-paused module must be back in band before it resumes (default `1m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<String>,
    /// The guards.
    #[serde(default, rename = "guard")]
    pub guards: Vec<Guard>,
    /// Default stage plan for releases using this policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stages: Option<StagePlan>,
}

fn default_confidence() -> f64 {
    0.99
}
fn default_false_rollback() -> f64 {
    0.01
}

/// What a core breach rolls back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Only the breaching module.
    #[default]
    Module,
    /// The whole release.
    Release,
}

/// Guard class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum GuardClass {
    /// Zero tolerance: breach → immediate rollback.
    Core,
    /// Tolerance band: breach → pause + alert, rollback after `grace`.
    Basic,
}

/// One guarded metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Guard {
    /// Signal metric name, e.g. `payment_error`.
    pub metric: String,
    /// `core` or `basic`.
    pub class: GuardClass,
    /// Allowed relative increase of the new variant's per-exposure rate over the old one's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_relative_increase: Option<f64>,
    /// Absolute ceiling on the new variant's per-exposure rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rate: Option<f64>,
    /// Absolute ceiling on the new variant's event count (`0` = one event breaches).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::json_int::option_u64"
    )]
    pub max_count: Option<u64>,
    /// Basic guards: how long out of band before rolling back (e.g. `30m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace: Option<String>,
    /// Overrides the policy's confidence for this guard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
    /// Smallest relative increase a stage must be able to detect before completing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detect: Option<f64>,
    /// Telemetry silence that pauses a ramping module (e.g. `10m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silence_after: Option<String>,
    /// A latency guard: the quantile of the metric's values watched, in (0, 1), e.g. `0.95`.
    /// `max_relative_increase` then bands the new variant's quantile against the old one's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantile: Option<f64>,
    /// A latency guard: ceiling on the new variant's quantile, in the metric's unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_value: Option<f64>,
    /// Where events and exposures come from: `signals` (default) or `prometheus`.
    #[serde(default, skip_serializing_if = "GuardSource::is_signals")]
    pub source: GuardSource,
    /// With `source = "prometheus"`: the API and the PromQL templates (docs/guards.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PromQuery>,
}

impl Guard {
    /// How many statistical tests the guard runs, each taking a share of the false-rollback
    /// budget: the relative band, `max_rate`, `max_value` (`max_count` is exact).
    pub fn statistical_tests(&self) -> usize {
        usize::from(self.max_relative_increase.is_some())
            + usize::from(self.max_rate.is_some())
            + usize::from(self.max_value.is_some())
    }
}

/// Percentages to walk, with a minimum bake time and exposures per stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StagePlan {
    /// Strictly increasing, each in (0, 100].
    #[serde(default = "default_percentages")]
    pub percentages: Vec<f64>,
    /// Minimum bake time per stage, e.g. `15m`.
    #[serde(default = "default_min_duration")]
    pub min_duration: String,
    /// Minimum exposures of the new variant per stage.
    #[serde(default, deserialize_with = "crate::json_int::u64")]
    pub min_exposures: u64,
}

fn default_percentages() -> Vec<f64> {
    vec![1.0, 5.0, 25.0, 50.0, 100.0]
}
fn default_min_duration() -> String {
    "0s".to_owned()
}

/// A policy problem: which field, and what is wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct PolicyError {
    /// Path such as `guard[1].max_rate` (`guard[1]` is the second `[[guard]]`).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

fn err(field: impl Into<String>, message: impl Into<String>) -> PolicyError {
    PolicyError {
        field: field.into(),
        message: message.into(),
    }
}

/// Parses a duration such as `500ms`, `30s`, `10m`, `2h`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    humantime::parse_duration(text.trim()).ok()
}

impl Policy {
    /// Parses TOML source, reporting the failing field.
    pub fn from_toml(source: &str) -> Result<Policy, PolicyError> {
        let policy = Policy::parse_toml(source)?;
        policy.validate()?;
        Ok(policy)
    }

    /// Parses TOML source without checking values (shape errors only). A syntax error, which
    /// has no field path, names the key of its line (`name`) or else the line itself.
    pub fn parse_toml(source: &str) -> Result<Policy, PolicyError> {
        let de = toml::Deserializer::new(source);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let mut message = inner.message().trim().to_owned();
            let Some(span) = inner.span() else {
                return err(path, message);
            };
            let before = &source[..span.start.min(source.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            if message.is_empty() {
                // What the parser says for `name = ` at the end of the input, for instance.
                message = "invalid TOML: a value is missing or malformed here".into();
            }
            let message = format!("{message} (line {line}, column {column})");
            if path != "." {
                return err(path, message);
            }
            let text = source.lines().nth(line - 1).unwrap_or_default();
            match text.split_once('=').map(|(k, _)| k.trim()) {
                Some(key) if !key.is_empty() => err(key, message),
                _ => err(format!("line {line}"), message),
            }
        })
    }

    /// Checks every field; the first problem found is returned.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if !rollgate_eval::valid_flag_key(&self.name) {
            return Err(err("name", "must match [a-z0-9][a-z0-9._-]{0,127}"));
        }
        if !(self.confidence > 0.5 && self.confidence < 1.0) {
            return Err(err("confidence", "must be in (0.5, 1)"));
        }
        if !(self.false_rollback_rate > 0.0 && self.false_rollback_rate < 0.5) {
            return Err(err("false_rollback_rate", "must be in (0, 0.5)"));
        }
        if let Some(text) = &self.cooldown {
            if parse_duration(text).is_none() {
                return Err(err(
                    "cooldown",
                    format!("{text:?} is not a duration (use 500ms, 30s, 10m, 2h)"),
                ));
            }
        }
        let mut seen = BTreeMap::new();
        for (i, g) in self.guards.iter().enumerate() {
            let at = |field: &str| format!("guard[{i}].{field}");
            if g.metric.is_empty() || g.metric == "exposure" {
                return Err(err(
                    at("metric"),
                    "must name a metric other than `exposure`",
                ));
            }
            if let Some(prev) = seen.insert(g.metric.as_str(), i) {
                return Err(err(
                    at("metric"),
                    format!("metric {:?} is already guarded by guard[{prev}]", g.metric),
                ));
            }
            check_quantile(g, &at)?;
            check_source(g, &at)?;
            if g.max_relative_increase.is_none()
                && g.max_rate.is_none()
                && g.max_count.is_none()
                && g.max_value.is_none()
            {
                return Err(err(
                    at("metric"),
                    "a guard needs max_relative_increase, max_rate or max_count",
                ));
            }
            if let Some(x) = g.max_relative_increase {
                if !(x.is_finite() && x >= 0.0) {
                    return Err(err(at("max_relative_increase"), "must be a number >= 0"));
                }
            }
            if let Some(x) = g.max_rate {
                if !(x.is_finite() && x > 0.0) {
                    return Err(err(
                        at("max_rate"),
                        "must be a number > 0 (use max_count = 0 to allow no event at all)",
                    ));
                }
            }
            if let Some(c) = g.confidence {
                if !(c > 0.5 && c < 1.0) {
                    return Err(err(at("confidence"), "must be in (0.5, 1)"));
                }
            }
            if let Some(d) = g.detect {
                if !(d.is_finite() && d > 0.0) {
                    return Err(err(at("detect"), "must be a number > 0"));
                }
            }
            for (field, value) in [("grace", &g.grace), ("silence_after", &g.silence_after)] {
                if let Some(text) = value {
                    if parse_duration(text).is_none() {
                        return Err(err(
                            at(field),
                            format!("{text:?} is not a duration (use 500ms, 30s, 10m, 2h)"),
                        ));
                    }
                }
            }
            if g.class == GuardClass::Core && g.grace.is_some() {
                return Err(err(
                    at("grace"),
                    "core guards roll back at once; grace applies to basic guards",
                ));
            }
        }
        if let Some(stages) = &self.stages {
            stages.validate("stages")?;
        }
        Ok(())
    }
}

/// `source` and `[guard.prometheus]` go together; a Prometheus guard counts events, so it is
/// not a quantile guard.
fn check_source(g: &Guard, at: &dyn Fn(&str) -> String) -> Result<(), PolicyError> {
    match (g.source, &g.prometheus) {
        (GuardSource::Signals, None) => Ok(()),
        (GuardSource::Signals, Some(_)) => Err(err(
            at("source"),
            "a [guard.prometheus] table needs source = \"prometheus\"",
        )),
        (GuardSource::Prometheus, None) => Err(err(
            at("prometheus"),
            "source = \"prometheus\" needs a [guard.prometheus] table (url, events, exposures)",
        )),
        (GuardSource::Prometheus, Some(_)) if g.quantile.is_some() => Err(err(
            at("quantile"),
            "Prometheus guards read event and exposure counts; quantile guards read client signals",
        )),
        (GuardSource::Prometheus, Some(q)) => q
            .validate()
            .map_err(|e| err(at(&format!("prometheus.{}", e.field)), e.message)),
    }
}

/// The fields of a latency guard (`quantile`, `max_value`) and what they exclude.
fn check_quantile(g: &Guard, at: &dyn Fn(&str) -> String) -> Result<(), PolicyError> {
    let Some(q) = g.quantile else {
        if g.max_value.is_some() {
            return Err(err(
                at("max_value"),
                "max_value is a ceiling on a quantile: set quantile too (e.g. quantile = 0.95)",
            ));
        }
        return Ok(());
    };
    if !(q > 0.0 && q < 1.0) {
        return Err(err(at("quantile"), "must be in (0, 1), e.g. 0.95"));
    }
    for (field, set) in [
        ("max_rate", g.max_rate.is_some()),
        ("max_count", g.max_count.is_some()),
    ] {
        if set {
            return Err(err(
                at(field),
                "a quantile guard watches values, not event rates: use max_relative_increase and max_value",
            ));
        }
    }
    if let Some(v) = g.max_value {
        if !(v.is_finite() && v > 0.0) {
            return Err(err(at("max_value"), "must be a number > 0"));
        }
    }
    if g.max_relative_increase.is_none() && g.max_value.is_none() {
        return Err(err(
            at("quantile"),
            "a quantile guard needs max_relative_increase or max_value",
        ));
    }
    Ok(())
}

impl StagePlan {
    /// Checks percentages (strictly increasing, in (0, 100], 0.001 resolution) and durations.
    pub fn validate(&self, at: &str) -> Result<(), PolicyError> {
        if self.percentages.is_empty() {
            return Err(err(
                format!("{at}.percentages"),
                "at least one stage is required",
            ));
        }
        let mut previous = 0.0;
        for (i, &p) in self.percentages.iter().enumerate() {
            let field = format!("{at}.percentages[{i}]");
            let parsed =
                rollgate_eval::Percentage::from_f64(p).map_err(|e| err(&field, e.to_string()))?;
            if parsed.is_zero() || p <= previous {
                return Err(err(field, "stages must be strictly increasing and above 0"));
            }
            previous = p;
        }
        if parse_duration(&self.min_duration).is_none() {
            return Err(err(
                format!("{at}.min_duration"),
                format!("{:?} is not a duration", self.min_duration),
            ));
        }
        Ok(())
    }
}

/// All loaded policies by name.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    by_name: BTreeMap<String, Arc<Policy>>,
    /// Names loaded from this node's `policies/` directory, with their file: deleting one
    /// through the API is refused (the file would bring it back at the next start).
    files: BTreeMap<String, String>,
}

impl PolicySet {
    /// The policy called `name`.
    pub fn get(&self, name: &str) -> Option<&Policy> {
        self.by_name.get(name).map(|p| &**p)
    }

    /// All policies in name order.
    pub fn iter(&self) -> impl Iterator<Item = &Policy> {
        self.by_name.values().map(|p| &**p)
    }

    /// A copy with `policy` inserted or replaced.
    pub fn with(&self, policy: Policy) -> PolicySet {
        let mut by_name = self.by_name.clone();
        by_name.insert(policy.name.clone(), Arc::new(policy));
        PolicySet {
            by_name,
            files: self.files.clone(),
        }
    }

    /// A copy without the policy called `name`.
    pub fn without(&self, name: &str) -> PolicySet {
        let mut by_name = self.by_name.clone();
        by_name.remove(name);
        PolicySet {
            by_name,
            files: self.files.clone(),
        }
    }

    /// The file this node loaded the policy called `name` from, if any.
    pub fn file_of(&self, name: &str) -> Option<&str> {
        self.files.get(name).map(String::as_str)
    }
}

/// A policy file that cannot be used, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The directory or a file could not be read.
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// A file is invalid.
    #[error("{path}: {error}")]
    Invalid { path: String, error: PolicyError },
}

/// Loads every `*.toml` in `dir` (a missing directory means no policies).
pub fn load_dir(dir: &Path) -> Result<PolicySet, LoadError> {
    let io = |source| LoadError::Io {
        path: dir.display().to_string(),
        source,
    };
    let mut set = PolicySet::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(set),
        Err(e) => return Err(io(e)),
    };
    let mut paths: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    paths.sort();
    for path in paths
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
    {
        let shown = path.display().to_string();
        let source = std::fs::read_to_string(&path).map_err(|source| LoadError::Io {
            path: shown.clone(),
            source,
        })?;
        let policy = Policy::from_toml(&source).map_err(|error| LoadError::Invalid {
            path: shown.clone(),
            error,
        })?;
        if path.file_stem().and_then(|s| s.to_str()) != Some(policy.name.as_str()) {
            let error = err(
                "name",
                format!("{:?} does not match the file name", policy.name),
            );
            return Err(LoadError::Invalid { path: shown, error });
        }
        set.files.insert(policy.name.clone(), shown);
        set = set.with(policy);
    }
    Ok(set)
}
