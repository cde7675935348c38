//! The immutable snapshot an SDK evaluates from: compiled flags, their index, the revision it
//! was built at, and the striped counters evaluation records into.
//!
//! Invariants:
//! - A `FlagSet` never changes after it is published (only its counters move); a new config
//!   builds a new set, published with one atomic pointer swap.
//! - Slot layout: each flag owns `variants.len() × (1 + audiences)` consecutive exposure slots
//!   starting at its `base` — one block of `variants.len()` for everyone else, then one per
//!   release audience in the flag's order — then one "last served" slot per flag after all
//!   exposure slots, holding `1 +` the served slot's offset within its flag (0: nothing yet).
//! - Evaluating and recording never allocate and never panic.

use crate::counters::Striped;
use rollgate_eval::{CompiledFlag, Context, Evaluation, FlagDef, SegmentDef, Snapshot};
use rustc_hash::FxHashMap;
use std::collections::BTreeMap;
use std::time::Instant;

/// One compiled config, as published to evaluating threads.
pub(crate) struct FlagSet {
    pub(crate) snapshot: Snapshot,
    index: FxHashMap<Box<str>, usize>,
    /// First exposure slot of each flag, parallel to `snapshot.flags()`.
    bases: Vec<usize>,
    last_served_base: usize,
    pub(crate) counters: Striped,
    /// The server's revision of this config (`None` from a server that does not send one).
    pub(crate) revision: Option<u64>,
    /// When this set was published (`None`: the empty set before any config arrived).
    pub(crate) applied_at: Option<Instant>,
}

impl FlagSet {
    /// The set before any config arrived: no flag, not ready.
    pub(crate) fn empty() -> Self {
        Self::build(&BTreeMap::new(), &BTreeMap::new(), None, None, 1)
    }

    /// Compiles `flags` against `segments` (a flag that does not compile is left out).
    pub(crate) fn build(
        flags: &BTreeMap<String, FlagDef>,
        segments: &BTreeMap<String, SegmentDef>,
        revision: Option<u64>,
        applied_at: Option<Instant>,
        stripes: usize,
    ) -> Self {
        let snapshot = Snapshot::compile(flags.values(), segments);
        for (key, error) in snapshot.broken() {
            tracing::warn!(flag = %key, %error, "flag left out of the local config: it does not compile here");
        }
        let mut bases = Vec::with_capacity(snapshot.len());
        let mut next = 0usize;
        let mut index = FxHashMap::with_capacity_and_hasher(snapshot.len(), Default::default());
        for (i, flag) in snapshot.flags().iter().enumerate() {
            index.insert(Box::from(flag.key()), i);
            bases.push(next);
            next += flag.variants().len() * (1 + flag.audiences().len());
        }
        let last_served_base = next;
        let counters = Striped::new(next + snapshot.len(), stripes);
        FlagSet {
            snapshot,
            index,
            bases,
            last_served_base,
            counters,
            revision,
            applied_at,
        }
    }

    /// Whether this set came from the server (as opposed to the empty start set).
    pub(crate) fn is_ready(&self) -> bool {
        self.applied_at.is_some()
    }

    /// The position of flag `key`.
    #[inline]
    pub(crate) fn position(&self, key: &str) -> Option<usize> {
        self.index.get(key).copied()
    }

    /// Evaluates flag number `i` for `ctx` without recording anything.
    #[inline]
    pub(crate) fn evaluate_at(
        &self,
        i: usize,
        ctx: &Context,
    ) -> Option<Result<Evaluation<'_>, rollgate_eval::EvalError>> {
        self.snapshot.flags().get(i).map(|f| f.evaluate(ctx))
    }

    /// Records one exposure of variant `variant_index` of flag number `i`, served by release
    /// `audience` (one of the flag's, see [`rollgate_eval::Evaluation::audience`]) or not.
    #[inline]
    pub(crate) fn record_exposure(&self, i: usize, variant_index: usize, audience: Option<&str>) {
        let (Some(&base), Some(flag)) = (self.bases.get(i), self.snapshot.flags().get(i)) else {
            return;
        };
        let block = match audience {
            None => 0,
            // A few audiences per flag: a short scan, no allocation.
            Some(a) => match flag.audiences().position(|s| s == a) {
                Some(p) => p + 1,
                None => 0,
            },
        };
        let offset = block * flag.variants().len() + variant_index;
        self.counters.increment(base + offset);
        // 0 means "nothing served yet", so the slot is stored plus one.
        self.counters
            .set(self.last_served_base + i, offset as u64 + 1);
    }

    /// What this process last served for flag number `i` (this thread's first): (variant,
    /// audience).
    pub(crate) fn last_served(&self, i: usize) -> Option<(&str, Option<&str>)> {
        let v = self.counters.get_preferring_mine(self.last_served_base + i);
        let flag = self.snapshot.flags().get(i)?;
        let offset = usize::try_from(v.checked_sub(1)?).ok()?;
        served_at(flag, offset)
    }

    /// Takes every exposure counted so far: `(flag, (variant, audience), count)`.
    pub(crate) fn drain(&self, mut each: impl FnMut(&str, (&str, Option<&str>), u64)) {
        for (i, flag) in self.snapshot.flags().iter().enumerate() {
            let base = self.bases.get(i).copied().unwrap_or(0);
            let slots = flag.variants().len() * (1 + flag.audiences().len());
            for offset in 0..slots {
                let n = self.counters.take(base + offset);
                if n > 0 {
                    if let Some(served) = served_at(flag, offset) {
                        each(flag.key(), served, n);
                    }
                }
            }
        }
    }

    /// Carries "last served" over from the set this one replaces, for flags whose variant
    /// names survive, so a complaint right after a change still finds the variant the user saw.
    pub(crate) fn inherit_last_served(&self, old: &FlagSet) {
        for (i, flag) in self.snapshot.flags().iter().enumerate() {
            let Some(j) = old.position(flag.key()) else {
                continue;
            };
            let Some(old_flag) = old.snapshot.flags().get(j) else {
                continue;
            };
            let map = |v: u64| -> u64 {
                v.checked_sub(1)
                    .and_then(|x| usize::try_from(x).ok())
                    .and_then(|offset| served_at(old_flag, offset))
                    .and_then(|served| offset_of(flag, served))
                    .map_or(0, |p| p as u64 + 1)
            };
            self.counters.copy_from(
                self.last_served_base + i,
                &old.counters,
                old.last_served_base + j,
                map,
            );
        }
    }
}

/// The (variant, audience) of exposure slot `offset` of `flag` (see the slot layout).
fn served_at(flag: &CompiledFlag, offset: usize) -> Option<(&str, Option<&str>)> {
    let n = flag.variants().len();
    let (variant, _) = flag.variants().get(offset.checked_rem(n)?)?;
    let audience = match offset / n {
        0 => None,
        block => Some(flag.audiences().nth(block - 1)?),
    };
    Some((&**variant, audience))
}

/// The exposure slot of (variant, audience) in `flag`, when the flag still has both.
fn offset_of(flag: &CompiledFlag, (variant, audience): (&str, Option<&str>)) -> Option<usize> {
    let v = flag.variants().iter().position(|(n, _)| &**n == variant)?;
    let block = match audience {
        None => 0,
        Some(a) => flag.audiences().position(|s| s == a)? + 1,
    };
    Some(block * flag.variants().len() + v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(innovation_pct: f64) -> (BTreeMap<String, FlagDef>, BTreeMap<String, SegmentDef>) {
        let flag: FlagDef = serde_json::from_value(json!({
            "key": "qr", "type": "boolean", "variants": {"off": false, "on": true},
            "off_variant": "off", "on_variant": "on", "rollout": 0,
            "audiences": [{"segment": "seniors", "rollout": 0},
                          {"segment": "innovation", "rollout": innovation_pct}]
        }))
        .unwrap();
        let segments = [
            (
                "seniors",
                json!([{"attribute": "age", "op": "gte", "values": [60]}]),
            ),
            (
                "innovation",
                json!([{"attribute": "tier", "op": "in", "values": ["innovation"]}]),
            ),
        ]
        .into_iter()
        .map(|(k, when)| {
            let def: SegmentDef = serde_json::from_value(json!({"key": k, "when": when})).unwrap();
            (k.to_string(), def)
        })
        .collect();
        (BTreeMap::from([("qr".to_string(), flag)]), segments)
    }

    fn serve(set: &FlagSet, ctx: serde_json::Value) {
        let ctx: Context = serde_json::from_value(ctx).unwrap();
        let e = set.evaluate_at(0, &ctx).unwrap().unwrap();
        set.record_exposure(0, e.variant_index, e.audience);
    }

    fn drained(set: &FlagSet) -> Vec<(String, Option<String>, u64)> {
        let mut out = Vec::new();
        set.drain(|_, (v, a), n| out.push((v.to_string(), a.map(str::to_string), n)));
        out.sort();
        out
    }

    #[test]
    fn exposures_are_counted_per_variant_and_audience() {
        let (flags, segments) = config(100.0);
        let set = FlagSet::build(&flags, &segments, Some(1), Some(Instant::now()), 2);
        serve(&set, json!({"targetingKey": "a", "tier": "innovation"}));
        serve(&set, json!({"targetingKey": "b", "tier": "innovation"}));
        serve(
            &set,
            json!({"targetingKey": "c", "tier": "innovation", "age": 70}),
        );
        assert_eq!(set.last_served(0), Some(("off", Some("seniors"))));
        serve(&set, json!({"targetingKey": "d"}));
        assert_eq!(set.last_served(0), Some(("off", None)));
        let on = |a: &str| Some(a.to_string());
        assert_eq!(
            drained(&set),
            vec![
                ("off".into(), None, 1),
                ("off".into(), on("seniors"), 1),
                ("on".into(), on("innovation"), 2),
            ]
        );
        assert_eq!(drained(&set), vec![], "drained once");
    }

    #[test]
    fn last_served_survives_a_new_config_by_names() {
        let (flags, segments) = config(100.0);
        let old = FlagSet::build(&flags, &segments, Some(1), Some(Instant::now()), 1);
        serve(&old, json!({"targetingKey": "a", "tier": "innovation"}));
        let (flags, segments) = config(50.0);
        let new = FlagSet::build(&flags, &segments, Some(2), Some(Instant::now()), 1);
        new.inherit_last_served(&old);
        assert_eq!(new.last_served(0), Some(("on", Some("innovation"))));
    }
}
