//! Evaluating a compiled flag for one context. No allocation, no panics.
//!
//! Order: kill switch → rules in order (first match wins) → audiences in order (the first
//! whose segment matches serves its own rollout) → the flag's rollout.
//! Reasons (OFREP): `DISABLED` when killed; `TARGETING_MATCH` when a rule serves a variant
//! (or a rule's or an audience's rollout is 0 % / 100 %); `SPLIT` when a percentage decided;
//! `STATIC` when the flag has no rules, no audiences and a 0 % / 100 % rollout; `DEFAULT` when
//! rules or audiences exist, none matched and the rollout is 0 % / 100 %.

use crate::compile::{Cmp, CompiledFlag, Cond, Outcome, Scalars, Test};
use crate::semver::Version;
use crate::{Context, Percentage, TARGETING_KEY};
use serde_json::Value;
use std::cmp::Ordering;

/// Why a variant was served, in OFREP's vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// No targeting and no split: everyone gets the same value.
    Static,
    /// A targeting rule decided.
    TargetingMatch,
    /// A percentage rollout decided.
    Split,
    /// The kill switch is off.
    Disabled,
    /// Rules exist but none matched; the flag's fallthrough served.
    Default,
}

impl Reason {
    /// The OFREP string, e.g. `TARGETING_MATCH`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Static => "STATIC",
            Reason::TargetingMatch => "TARGETING_MATCH",
            Reason::Split => "SPLIT",
            Reason::Disabled => "DISABLED",
            Reason::Default => "DEFAULT",
        }
    }
}

/// Why a context could not be evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    /// A percentage had to decide but the context has no `targetingKey`.
    #[error("targetingKey is required: this flag serves a percentage rollout")]
    TargetingKeyMissing,
    /// `targetingKey` is present but not a string.
    #[error("targetingKey must be a string")]
    InvalidTargetingKey,
}

/// The outcome of one evaluation, borrowing from the compiled flag.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation<'a> {
    /// The served variant's name.
    pub variant: &'a str,
    /// The served variant's value.
    pub value: &'a Value,
    /// Why it was served.
    pub reason: Reason,
    /// Index into [`CompiledFlag::variants`].
    pub variant_index: usize,
    /// The segment key of the release audience that decided, if one did.
    pub audience: Option<&'a str>,
}

/// The `targetingKey` of a context: `None` when absent, null or empty.
pub fn targeting_key(ctx: &Context) -> Result<Option<&str>, EvalError> {
    match lookup(ctx, TARGETING_KEY) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(EvalError::InvalidTargetingKey),
    }
}

/// Contexts with at most this many attributes get a hashed index.
const INDEXED: usize = 16;
static NULL: Value = Value::Null;

/// A context checked once, with its targeting key looked up and (up to 16 attributes) an index
/// of its attributes by a cheap hash, so each condition finds its attribute with one string
/// comparison instead of a tree search. Prepare once, evaluate many flags.
#[derive(Debug, Clone, Copy)]
pub struct Prepared<'a> {
    attributes: &'a Context,
    targeting_key: Option<&'a str>,
    /// `None` for a single evaluation or a context too large to index.
    index: Option<Index<'a>>,
}

#[derive(Debug, Clone, Copy)]
struct Index<'a> {
    entries: [(u64, &'a str, &'a Value); INDEXED],
    len: usize,
}

impl<'a> Prepared<'a> {
    /// Checks `ctx` (a non-string `targetingKey` is an error), looks up its key and indexes
    /// its attributes: the way to evaluate many flags for one context.
    pub fn new(ctx: &'a Context) -> Result<Self, EvalError> {
        let index = (ctx.len() <= INDEXED).then(|| {
            let mut entries = [(0u64, "", &NULL); INDEXED];
            for (slot, (key, value)) in entries.iter_mut().zip(ctx.iter()) {
                *slot = (crate::key_hash::key_hash(key), key.as_str(), value);
            }
            Index {
                entries,
                len: ctx.len(),
            }
        });
        Ok(Prepared {
            attributes: ctx,
            targeting_key: targeting_key(ctx)?,
            index,
        })
    }

    /// Checks `ctx` without building the index: cheaper when only one flag is evaluated.
    pub fn single(ctx: &'a Context) -> Result<Self, EvalError> {
        Ok(Prepared {
            attributes: ctx,
            targeting_key: targeting_key(ctx)?,
            index: None,
        })
    }

    fn get(&self, name: &str, hash: u64) -> Option<&'a Value> {
        match &self.index {
            Some(index) => index.entries[..index.len]
                .iter()
                .find(|(h, k, _)| *h == hash && same_bytes(k.as_bytes(), name.as_bytes()))
                .map(|(_, _, v)| *v),
            // Small contexts: a scan that compares lengths first beats a tree search, whose
            // every step is a full string comparison.
            None => lookup(self.attributes, name),
        }
    }
}

/// `ctx[name]`. Small contexts: a scan that compares lengths first beats a tree search, whose
/// every step is a full string comparison.
#[inline]
fn lookup<'a>(ctx: &'a Context, name: &str) -> Option<&'a Value> {
    if ctx.len() <= INDEXED {
        ctx.iter()
            .find(|(k, _)| same_bytes(k.as_bytes(), name.as_bytes()))
            .map(|(_, v)| v)
    } else {
        ctx.get(name)
    }
}

/// `a == b`, inline for the short strings that attribute names are: two overlapping word
/// loads instead of a call to `memcmp`.
#[inline(always)]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    fn word<const N: usize>(s: &[u8], at: usize) -> [u8; N] {
        let mut w = [0u8; N];
        w.copy_from_slice(&s[at..at + N]);
        w
    }
    let n = a.len();
    if n != b.len() {
        return false;
    }
    match n {
        0 => true,
        1..=3 => a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
        4..=7 => word::<4>(a, 0) == word::<4>(b, 0) && word::<4>(a, n - 4) == word::<4>(b, n - 4),
        8..=16 => word::<8>(a, 0) == word::<8>(b, 0) && word::<8>(a, n - 8) == word::<8>(b, n - 8),
        _ => a == b,
    }
}

impl CompiledFlag {
    /// Evaluates the flag for `ctx`.
    pub fn evaluate(&self, ctx: &Context) -> Result<Evaluation<'_>, EvalError> {
        self.evaluate_prepared(&Prepared::single(ctx)?)
    }

    /// Evaluates the flag for a context prepared once (for evaluating many flags).
    pub fn evaluate_prepared(&self, ctx: &Prepared<'_>) -> Result<Evaluation<'_>, EvalError> {
        if !self.enabled {
            return Ok(self.served(self.off, Reason::Disabled));
        }
        for rule in &self.rules {
            if rule.conditions.iter().all(|c| holds(c, ctx)) {
                return match rule.outcome {
                    Outcome::Variant(i) => Ok(self.served(i, Reason::TargetingMatch)),
                    Outcome::Rollout(p) => self.split(p, ctx.targeting_key, Reason::TargetingMatch),
                };
            }
        }
        for audience in &self.audiences {
            if audience.conditions.iter().all(|c| holds(c, ctx)) {
                let mut served =
                    self.split(audience.rollout, ctx.targeting_key, Reason::TargetingMatch)?;
                served.audience = Some(&audience.segment);
                return Ok(served);
            }
        }
        let fixed = if self.rules.is_empty() && self.audiences.is_empty() {
            Reason::Static
        } else {
            Reason::Default
        };
        self.split(self.rollout, ctx.targeting_key, fixed)
    }

    fn split(
        &self,
        p: Percentage,
        key: Option<&str>,
        fixed: Reason,
    ) -> Result<Evaluation<'_>, EvalError> {
        if p.is_zero() {
            return Ok(self.served(self.off, fixed));
        }
        if p.is_full() {
            return Ok(self.served(self.on, fixed));
        }
        let key = key.ok_or(EvalError::TargetingKeyMissing)?;
        let index = if self.salt_prefix.bucket(key) < p.millis() {
            self.on
        } else {
            self.off
        };
        Ok(self.served(index, Reason::Split))
    }

    fn served(&self, index: usize, reason: Reason) -> Evaluation<'_> {
        let (name, value) = &self.variants[index];
        Evaluation {
            variant: name,
            value,
            reason,
            variant_index: index,
            audience: None,
        }
    }
}

#[inline]
fn holds(cond: &Cond, ctx: &Prepared<'_>) -> bool {
    match cond {
        Cond::Never => false,
        Cond::Attr { name, hash, test } => match ctx.get(name, *hash) {
            None => false,
            Some(value) => test_value(test, value),
        },
    }
}

fn test_value(test: &Test, value: &Value) -> bool {
    match test {
        Test::In(set) => contains_scalar(set, value),
        Test::NotIn(set) => !contains_scalar(set, value),
        Test::Num(cmp, operand) => {
            as_number(value).is_some_and(|n| compare(n.partial_cmp(operand), *cmp))
        }
        Test::Semver(cmp, operand) => value
            .as_str()
            .and_then(Version::parse)
            .is_some_and(|v| compare(Some(v.cmp(&operand.get())), *cmp)),
        Test::StartsWith(list) => value
            .as_str()
            .is_some_and(|s| list.iter().any(|p| s.starts_with(&**p))),
        Test::EndsWith(list) => value
            .as_str()
            .is_some_and(|s| list.iter().any(|p| s.ends_with(&**p))),
        Test::Contains(list) => value
            .as_str()
            .is_some_and(|s| list.iter().any(|p| s.contains(&**p))),
        Test::Matches(list) => value.as_str().is_some_and(|s| any_match(list, s)),
    }
}

/// Kept out of line: the regex search state would otherwise bloat every condition's frame.
#[inline(never)]
fn any_match(list: &[regex_automata::meta::Regex], s: &str) -> bool {
    list.iter().any(|r| r.is_match(s))
}

/// Equality is by JSON type, except that numbers compare numerically (`1` = `1.0`).
fn contains_scalar(set: &Scalars, value: &Value) -> bool {
    match value {
        Value::String(s) => set
            .strings
            .iter()
            .any(|x| same_bytes(x.as_bytes(), s.as_bytes())),
        Value::Number(n) => n.as_f64().is_some_and(|n| set.numbers.contains(&n)),
        Value::Bool(b) => set.bools.contains(b),
        Value::Null => set.null,
        Value::Array(_) | Value::Object(_) => false,
    }
}

/// Numeric operators accept numbers and numeric strings (`"60"`), since many apps send strings.
fn as_number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => parse_number(s),
        _ => None,
    }
}

/// Kept out of line, like [`any_match`]: the float parser is large and rarely needed.
#[inline(never)]
fn parse_number(s: &str) -> Option<f64> {
    s.trim().parse::<f64>().ok().filter(|n| n.is_finite())
}

fn compare(ord: Option<Ordering>, cmp: Cmp) -> bool {
    match (ord, cmp) {
        (None, _) => false,
        (Some(o), Cmp::Lt) => o == Ordering::Less,
        (Some(o), Cmp::Lte) => o != Ordering::Greater,
        (Some(o), Cmp::Gt) => o == Ordering::Greater,
        (Some(o), Cmp::Gte) => o != Ordering::Less,
    }
}

#[cfg(test)]
mod tests {
    use super::same_bytes;

    #[test]
    fn same_bytes_is_equality_at_every_length() {
        let base: Vec<u8> = (b'a'..=b'z').collect();
        for n in 0..=base.len() {
            let a = &base[..n];
            assert!(same_bytes(a, a), "equal at {n}");
            for at in 0..n {
                let mut b = a.to_vec();
                b[at] ^= 0x20;
                assert!(!same_bytes(a, &b), "differ at {at} of {n}");
            }
            if n > 0 {
                assert!(!same_bytes(a, &base[..n - 1]), "shorter than {n}");
            }
        }
    }
}
