//! The immutable snapshot an SDK evaluates from: compiled flags, their index, the revision it
//! was built at, and the striped counters evaluation records into.
//!
//! Invariants:
//! - A `FlagSet` never changes after it is published (only its counters move); a new config
//!   builds a new set, published with one atomic pointer swap.
//! - Slot layout: each flag owns `variants.len()` consecutive exposure slots starting at its
//!   `base`, then one "last served" slot per flag after all exposure slots.
//! - Evaluating and recording never allocate and never panic.

use crate::counters::Striped;
use rollgate_eval::{Context, Evaluation, FlagDef, SegmentDef, Snapshot};
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
            next += flag.variants().len();
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

    /// Records one exposure of variant `variant_index` of flag number `i`.
    #[inline]
    pub(crate) fn record_exposure(&self, i: usize, variant_index: usize) {
        if let Some(&base) = self.bases.get(i) {
            self.counters.increment(base + variant_index);
            // 0 means "nothing served yet", so the variant is stored plus one.
            self.counters
                .set(self.last_served_base + i, variant_index as u64 + 1);
        }
    }

    /// The variant this process last served for flag number `i` (this thread's first).
    pub(crate) fn last_served(&self, i: usize) -> Option<&str> {
        let v = self.counters.get_preferring_mine(self.last_served_base + i);
        let flag = self.snapshot.flags().get(i)?;
        let index = usize::try_from(v.checked_sub(1)?).ok()?;
        flag.variants().get(index).map(|(name, _)| &**name)
    }

    /// Takes every exposure counted so far: `(flag, variant, count)`.
    pub(crate) fn drain(&self, mut each: impl FnMut(&str, &str, u64)) {
        for (i, flag) in self.snapshot.flags().iter().enumerate() {
            let base = self.bases.get(i).copied().unwrap_or(0);
            for (v, (variant, _)) in flag.variants().iter().enumerate() {
                let n = self.counters.take(base + v);
                if n > 0 {
                    each(flag.key(), variant, n);
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
            let names: Vec<&str> = old_flag.variants().iter().map(|(n, _)| &**n).collect();
            let map = |v: u64| -> u64 {
                let Some(idx) = v.checked_sub(1).and_then(|x| usize::try_from(x).ok()) else {
                    return 0;
                };
                names
                    .get(idx)
                    .and_then(|name| flag.variants().iter().position(|(n, _)| &**n == *name))
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
