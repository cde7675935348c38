//! Checking definitions and compiling them into an evaluation-ready form.
//!
//! Compilation does all the work that does not depend on the context: it resolves variant
//! names to indices, inlines segments, sorts operands by JSON type, parses semantic versions
//! and builds regular expressions. Every problem is reported with the path of the offending
//! field (`rules[1].when[0].values`), so the API can name it.
//!
//! Regular expressions are bounded by their compiled size, per pattern, per flag (segments
//! included) and per snapshot; see [`crate::limits`] for the limits and why they are there.

use crate::bucket::SaltPrefix;
use crate::error::CompileError;
use crate::model::{ConditionDef, FlagDef, Op, RuleDef, SegmentDef};
use crate::pattern::RegexCost;
use crate::semver::Version;
use crate::{valid_flag_key, FlagType, Percentage};
use regex_automata::meta::Regex;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// Where compilation looks up segments by key.
pub trait SegmentLookup {
    /// The segment called `key`, if any.
    fn segment(&self, key: &str) -> Option<&SegmentDef>;
}

impl SegmentLookup for BTreeMap<String, SegmentDef> {
    fn segment(&self, key: &str) -> Option<&SegmentDef> {
        self.get(key)
    }
}

impl SegmentLookup for HashMap<String, SegmentDef> {
    fn segment(&self, key: &str) -> Option<&SegmentDef> {
        self.get(key)
    }
}

/// A flag ready to evaluate; build it with [`compile_flag`].
#[derive(Debug, Clone)]
pub struct CompiledFlag {
    pub(crate) key: Box<str>,
    pub(crate) flag_type: FlagType,
    pub(crate) variants: Vec<(Box<str>, Value)>,
    pub(crate) off: usize,
    pub(crate) on: usize,
    pub(crate) enabled: bool,
    pub(crate) rollout: Percentage,
    pub(crate) rules: Vec<CompiledRule>,
    /// Release audiences in order, after the rules.
    pub(crate) audiences: Vec<CompiledAudience>,
    pub(crate) salt: Box<str>,
    /// `salt:` as bytes, the start of every bucketing input.
    pub(crate) salt_prefix: SaltPrefix,
    /// What its regular expressions cost.
    pub(crate) regex: RegexCost,
}

impl CompiledFlag {
    /// This flag with another kill switch and rollout, without compiling anything again: what
    /// a kill switch or a rollback changes, so the emergency path never waits on a compilation.
    /// Serves exactly what compiling the changed definition would (`tests/switches.rs`).
    pub fn with_switches(&self, enabled: bool, rollout: Percentage) -> CompiledFlag {
        CompiledFlag {
            enabled,
            rollout,
            ..self.clone()
        }
    }

    /// This flag with other audience rollouts (one per audience, in order; extra values are
    /// ignored, missing ones leave the audience as it was), without compiling anything again:
    /// what a release stage or a rollback changes. Serves exactly what compiling the changed
    /// definition would (`tests/switches.rs`).
    pub fn with_audience_rollouts(
        mut self,
        rollouts: impl IntoIterator<Item = Percentage>,
    ) -> CompiledFlag {
        for (audience, p) in self.audiences.iter_mut().zip(rollouts) {
            audience.rollout = p;
        }
        self
    }

    /// The flag key.
    pub fn key(&self) -> &str {
        &self.key
    }
    /// The flag's value type.
    pub fn flag_type(&self) -> FlagType {
        self.flag_type
    }
    /// Variant names and values, sorted by name; indices match [`crate::Evaluation::variant_index`].
    pub fn variants(&self) -> &[(Box<str>, Value)] {
        &self.variants
    }
    /// The salt used for bucketing.
    pub fn salt(&self) -> &str {
        &self.salt
    }
    /// The flag-level rollout percentage.
    pub fn rollout(&self) -> Percentage {
        self.rollout
    }
    /// The kill switch (`false` = killed).
    pub fn enabled(&self) -> bool {
        self.enabled
    }
    /// The segment keys of its release audiences, in evaluation order; an
    /// [`crate::Evaluation::audience`] is one of them.
    pub fn audiences(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.audiences.iter().map(|a| &*a.segment)
    }
    /// Compiled size of all its `matches` patterns (segments included), in bytes, as the
    /// regex engine reports it; at most [`crate::limits::FLAG_REGEX_BYTES`].
    pub fn regex_bytes(&self) -> usize {
        self.regex.bytes
    }
    /// Number of `matches` patterns compiled (segments included, once per use).
    pub fn regex_patterns(&self) -> usize {
        self.regex.patterns
    }
    /// The field and compiled size of its largest pattern, if it has one.
    pub fn heaviest_regex(&self) -> Option<(&str, usize)> {
        self.regex.heaviest.as_ref().map(|(f, b)| (&**f, *b))
    }
}

#[derive(Debug, Clone)]
pub(crate) struct CompiledAudience {
    pub(crate) segment: Box<str>,
    pub(crate) conditions: Vec<Cond>,
    pub(crate) rollout: Percentage,
}

#[derive(Debug, Clone)]
pub(crate) struct CompiledRule {
    pub(crate) conditions: Vec<Cond>,
    pub(crate) outcome: Outcome,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Outcome {
    Variant(usize),
    Rollout(Percentage),
}

#[derive(Debug, Clone)]
pub(crate) enum Cond {
    Attr {
        name: Box<str>,
        /// [`crate::key_hash::key_hash`] of `name`, for the prepared context's index.
        hash: u64,
        test: Test,
    },
    /// A segment that no longer exists: never matches. (A segment that exists is spliced
    /// into its rule's conditions at compile time.)
    Never,
}

#[derive(Debug, Clone)]
pub(crate) enum Test {
    In(Scalars),
    NotIn(Scalars),
    Num(Cmp, f64),
    Semver(Cmp, OwnedVersion),
    StartsWith(Vec<Box<str>>),
    EndsWith(Vec<Box<str>>),
    Contains(Vec<Box<str>>),
    Matches(Vec<Regex>),
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Cmp {
    Lt,
    Lte,
    Gt,
    Gte,
}

/// Equality operands sorted by JSON type, so a lookup never converts anything.
#[derive(Debug, Clone, Default)]
pub(crate) struct Scalars {
    pub(crate) strings: Vec<Box<str>>,
    pub(crate) numbers: Vec<f64>,
    pub(crate) bools: Vec<bool>,
    pub(crate) null: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct OwnedVersion {
    core: [u64; 3],
    pre: Box<str>,
}

impl OwnedVersion {
    pub(crate) fn get(&self) -> Version<'_> {
        Version::from_parts(self.core, &self.pre)
    }
}

/// How to treat a reference to a segment that does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Missing {
    Reject,
    NeverMatch,
}

/// Checks a flag definition and compiles it. Unknown segments are an error.
pub fn compile_flag(
    def: &FlagDef,
    segments: &dyn SegmentLookup,
) -> Result<CompiledFlag, CompileError> {
    compile(def, segments, Missing::Reject)
}

/// Like [`compile_flag`], but a reference to a missing segment compiles to a condition that
/// never matches. Used when rebuilding a snapshot from stored flags, so one deleted segment
/// cannot take a flag offline.
pub(crate) fn compile_flag_lenient(
    def: &FlagDef,
    segments: &dyn SegmentLookup,
) -> Result<CompiledFlag, CompileError> {
    compile(def, segments, Missing::NeverMatch)
}

fn compile(
    def: &FlagDef,
    segments: &dyn SegmentLookup,
    missing: Missing,
) -> Result<CompiledFlag, CompileError> {
    if !valid_flag_key(&def.key) {
        return Err(CompileError::new(
            "key",
            "must match [a-z0-9][a-z0-9._-]{0,127}",
        ));
    }
    if def.variants.is_empty() {
        return Err(CompileError::new(
            "variants",
            "at least one variant is required",
        ));
    }
    let mut variants = Vec::with_capacity(def.variants.len());
    for (name, value) in &def.variants {
        if name.is_empty() || name.len() > 128 {
            return Err(CompileError::new(
                "variants",
                "variant names must be 1 to 128 characters",
            ));
        }
        // The server joins a variant and an audience with U+001F in its signal series.
        if name.contains('\u{1f}') {
            return Err(CompileError::new(
                "variants",
                "variant names may not contain U+001F",
            ));
        }
        if !def.flag_type.accepts(value) {
            return Err(CompileError::new(
                format!("variants.{name}"),
                format!("value is not of the flag's type {}", def.flag_type.as_str()),
            ));
        }
        variants.push((Box::<str>::from(name.as_str()), value.clone()));
    }
    let index_of = |field: &str, name: &str| {
        variants
            .iter()
            .position(|(n, _)| &**n == name)
            .ok_or_else(|| CompileError::new(field, format!("unknown variant {name:?}")))
    };
    let off = index_of("off_variant", &def.off_variant)?;
    let on = index_of("on_variant", &def.on_variant)?;
    let salt = match &def.salt {
        Some(s) if s.is_empty() || s.len() > 256 => {
            return Err(CompileError::new("salt", "must be 1 to 256 characters"));
        }
        Some(s) => s.as_str(),
        None => def.key.as_str(),
    };
    let mut rules = Vec::with_capacity(def.rules.len());
    let mut regex = RegexCost::default();
    for (i, rule) in def.rules.iter().enumerate() {
        rules.push(compile_rule(
            &format!("rules[{i}]"),
            rule,
            &index_of,
            segments,
            missing,
            &mut regex,
        )?);
    }
    let mut audiences = Vec::with_capacity(def.audiences.len());
    for (i, audience) in def.audiences.iter().enumerate() {
        let field = format!("audiences[{i}].segment");
        if def.audiences[..i]
            .iter()
            .any(|a| a.segment == audience.segment)
        {
            return Err(CompileError::new(
                field,
                format!("segment {:?} is already an audience", audience.segment),
            ));
        }
        let condition = ConditionDef {
            attribute: None,
            op: None,
            values: None,
            segment: Some(audience.segment.clone()),
        };
        let mut conditions = Vec::new();
        compile_condition(
            &format!("audiences[{i}]"),
            &condition,
            Some(segments),
            missing,
            &mut regex,
            &mut conditions,
        )?;
        audiences.push(CompiledAudience {
            segment: audience.segment.as_str().into(),
            conditions,
            rollout: audience.rollout,
        });
    }
    Ok(CompiledFlag {
        key: def.key.as_str().into(),
        flag_type: def.flag_type,
        variants,
        off,
        on,
        enabled: def.enabled,
        rollout: def.rollout,
        rules,
        audiences,
        salt: salt.into(),
        salt_prefix: SaltPrefix::new(salt),
        regex,
    })
}

fn compile_rule(
    path: &str,
    rule: &RuleDef,
    index_of: &dyn Fn(&str, &str) -> Result<usize, CompileError>,
    segments: &dyn SegmentLookup,
    missing: Missing,
    regex: &mut RegexCost,
) -> Result<CompiledRule, CompileError> {
    let outcome = match (&rule.variant, rule.rollout) {
        (Some(v), None) => Outcome::Variant(index_of(&format!("{path}.variant"), v)?),
        (None, Some(p)) => Outcome::Rollout(p),
        _ => {
            return Err(CompileError::new(
                path,
                "a rule needs exactly one of `variant` or `rollout`",
            ))
        }
    };
    let conditions = compile_conditions(
        &format!("{path}.when"),
        &rule.when,
        Some(segments),
        missing,
        regex,
    )?;
    Ok(CompiledRule {
        conditions,
        outcome,
    })
}

/// Checks a segment definition on its own (segments may not reference segments). Its
/// patterns must fit one flag's budget on their own, since every flag using it compiles them.
pub fn validate_segment(def: &SegmentDef) -> Result<(), CompileError> {
    if !valid_flag_key(&def.key) {
        return Err(CompileError::new(
            "key",
            "must match [a-z0-9][a-z0-9._-]{0,127}",
        ));
    }
    compile_conditions(
        "when",
        &def.when,
        None,
        Missing::Reject,
        &mut RegexCost::default(),
    )
    .map(|_| ())
}

fn compile_conditions(
    path: &str,
    conditions: &[ConditionDef],
    segments: Option<&dyn SegmentLookup>,
    missing: Missing,
    regex: &mut RegexCost,
) -> Result<Vec<Cond>, CompileError> {
    let mut out = Vec::with_capacity(conditions.len());
    for (i, c) in conditions.iter().enumerate() {
        compile_condition(
            &format!("{path}[{i}]"),
            c,
            segments,
            missing,
            regex,
            &mut out,
        )?;
    }
    Ok(out)
}

fn compile_condition(
    path: &str,
    c: &ConditionDef,
    segments: Option<&dyn SegmentLookup>,
    missing: Missing,
    regex: &mut RegexCost,
    out: &mut Vec<Cond>,
) -> Result<(), CompileError> {
    if let Some(key) = &c.segment {
        if c.attribute.is_some() || c.op.is_some() || c.values.is_some() {
            return Err(CompileError::new(
                path,
                "a segment condition has only `segment`",
            ));
        }
        let Some(lookup) = segments else {
            return Err(CompileError::new(
                format!("{path}.segment"),
                "segments cannot reference segments",
            ));
        };
        // A rule's conditions are a conjunction and so is a segment: its conditions are
        // spliced into the rule's list, so evaluation never recurses.
        match lookup.segment(key) {
            Some(seg) => out.extend(compile_conditions(
                &format!("{path}.segment({key})"),
                &seg.when,
                None,
                missing,
                regex,
            )?),
            None if missing == Missing::NeverMatch => out.push(Cond::Never),
            None => {
                return Err(CompileError::new(
                    format!("{path}.segment"),
                    format!("unknown segment {key:?}"),
                ))
            }
        }
        return Ok(());
    }
    let attribute = c
        .attribute
        .as_deref()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| {
            CompileError::new(format!("{path}.attribute"), "required (or use `segment`)")
        })?;
    let op =
        c.op.ok_or_else(|| CompileError::new(format!("{path}.op"), "required"))?;
    let values = c
        .values
        .as_deref()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            CompileError::new(format!("{path}.values"), "at least one value is required")
        })?;
    let field = format!("{path}.values");
    let test = match op {
        Op::Eq | Op::In => Test::In(scalars(&field, values)?),
        Op::Neq | Op::NotIn => Test::NotIn(scalars(&field, values)?),
        Op::Lt => Test::Num(Cmp::Lt, number(&field, values)?),
        Op::Lte => Test::Num(Cmp::Lte, number(&field, values)?),
        Op::Gt => Test::Num(Cmp::Gt, number(&field, values)?),
        Op::Gte => Test::Num(Cmp::Gte, number(&field, values)?),
        Op::SemverLt => Test::Semver(Cmp::Lt, version(&field, values)?),
        Op::SemverLte => Test::Semver(Cmp::Lte, version(&field, values)?),
        Op::SemverGt => Test::Semver(Cmp::Gt, version(&field, values)?),
        Op::SemverGte => Test::Semver(Cmp::Gte, version(&field, values)?),
        Op::StartsWith => Test::StartsWith(strings(&field, values)?),
        Op::EndsWith => Test::EndsWith(strings(&field, values)?),
        Op::Contains => Test::Contains(strings(&field, values)?),
        Op::Matches => Test::Matches(regexes(&field, values, regex)?),
    };
    out.push(Cond::Attr {
        name: attribute.into(),
        hash: crate::key_hash::key_hash(attribute),
        test,
    });
    Ok(())
}

fn scalars(field: &str, values: &[Value]) -> Result<Scalars, CompileError> {
    let mut out = Scalars::default();
    for v in values {
        match v {
            Value::String(s) => out.strings.push(s.as_str().into()),
            Value::Number(n) => out.numbers.push(n.as_f64().unwrap_or(f64::NAN)),
            Value::Bool(b) => out.bools.push(*b),
            Value::Null => out.null = true,
            _ => {
                return Err(CompileError::new(
                    field,
                    "values must be strings, numbers, booleans or null",
                ))
            }
        }
    }
    Ok(out)
}

fn single<'a>(field: &str, values: &'a [Value]) -> Result<&'a Value, CompileError> {
    match values {
        [one] => Ok(one),
        _ => Err(CompileError::new(
            field,
            "this operator takes exactly one value",
        )),
    }
}

fn number(field: &str, values: &[Value]) -> Result<f64, CompileError> {
    single(field, values)?
        .as_f64()
        .ok_or_else(|| CompileError::new(field, "this operator needs a number"))
}

fn version(field: &str, values: &[Value]) -> Result<OwnedVersion, CompileError> {
    let text = single(field, values)?
        .as_str()
        .ok_or_else(|| CompileError::new(field, "this operator needs a version string"))?;
    Version::parse(text)
        .map(|v| OwnedVersion {
            core: v.core(),
            pre: v.pre().into(),
        })
        .ok_or_else(|| CompileError::new(field, format!("{text:?} is not a semantic version")))
}

fn strings(field: &str, values: &[Value]) -> Result<Vec<Box<str>>, CompileError> {
    values
        .iter()
        .map(|v| {
            v.as_str()
                .map(Into::into)
                .ok_or_else(|| CompileError::new(field, "values must be strings"))
        })
        .collect()
}

fn regexes(
    field: &str,
    values: &[Value],
    cost: &mut RegexCost,
) -> Result<Vec<Regex>, CompileError> {
    strings(field, values)?
        .iter()
        .enumerate()
        .map(|(i, pattern)| cost.compile(&format!("{field}[{i}]"), pattern))
        .collect()
}
