//! A compiled, immutable set of flags: what a local-evaluating client holds and swaps when its
//! config changes. (The server publishes its own richer set, `rollgate::live::Live`, which keeps
//! each flag's definition and evaluation counters beside its compiled form and rebuilds only
//! the changed flag on a write; it compiles strictly, since a stored flag was validated when
//! written, while a client compiles leniently so one flag it cannot read never hides the rest.)

use crate::compile::{compile_flag_lenient, CompiledFlag, SegmentLookup};
use crate::error::CompileError;
use crate::FlagDef;
use std::collections::HashMap;

/// Every flag compiled, indexed by key, iterated in key order.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    flags: Vec<CompiledFlag>,
    index: HashMap<Box<str>, usize>,
    broken: Vec<(String, CompileError)>,
}

impl Snapshot {
    /// Compiles `flags` against `segments`. A flag that fails to compile is left out and
    /// reported by [`Snapshot::broken`], so one bad definition never takes the others down;
    /// a reference to a missing segment simply never matches. So is a flag whose patterns,
    /// added in key order, would take the snapshot over
    /// [`crate::limits::SNAPSHOT_REGEX_BYTES`].
    pub fn compile<'a>(
        flags: impl IntoIterator<Item = &'a FlagDef>,
        segments: &dyn SegmentLookup,
    ) -> Self {
        let mut compiled = Vec::new();
        let mut broken = Vec::new();
        for def in flags {
            match compile_flag_lenient(def, segments) {
                Ok(flag) => compiled.push(flag),
                Err(e) => broken.push((def.key.clone(), e)),
            }
        }
        compiled.sort_by(|a, b| a.key.cmp(&b.key));
        compiled.dedup_by(|a, b| a.key == b.key);
        // In key order, so which flags are left out over the budget does not depend on the
        // order they came in.
        let mut regex_bytes = 0;
        compiled.retain(|flag| match check_snapshot_budget(regex_bytes, flag) {
            Ok(()) => {
                regex_bytes += flag.regex_bytes();
                true
            }
            Err(e) => {
                broken.push((flag.key().to_owned(), e));
                false
            }
        });
        let index = compiled
            .iter()
            .enumerate()
            .map(|(i, f)| (f.key.clone(), i))
            .collect();
        Snapshot {
            flags: compiled,
            index,
            broken,
        }
    }

    /// The flag called `key`.
    pub fn get(&self, key: &str) -> Option<&CompiledFlag> {
        self.index.get(key).map(|&i| &self.flags[i])
    }

    /// All flags in key order.
    pub fn flags(&self) -> &[CompiledFlag] {
        &self.flags
    }

    /// Flags that could not be compiled, with the reason.
    pub fn broken(&self) -> &[(String, CompileError)] {
        &self.broken
    }

    /// Number of compiled flags.
    pub fn len(&self) -> usize {
        self.flags.len()
    }

    /// True when there is no flag.
    pub fn is_empty(&self) -> bool {
        self.flags.is_empty()
    }
}

/// Checks that `flag` fits beside flags whose patterns take `others` bytes compiled, i.e.
/// that the snapshot's patterns stay within [`crate::limits::SNAPSHOT_REGEX_BYTES`]. The error names the
/// flag's heaviest pattern.
pub fn check_snapshot_budget(others: usize, flag: &CompiledFlag) -> Result<(), CompileError> {
    let total = others.saturating_add(flag.regex_bytes());
    if total <= crate::limits::SNAPSHOT_REGEX_BYTES {
        return Ok(());
    }
    let (field, heaviest) = flag.heaviest_regex().map_or(("rules", 0), |(f, b)| (f, b));
    Err(CompileError {
        field: field.to_owned(),
        message: format!(
            "the regular expressions of all flags would take {} compiled, over the limit of {} \
             for the server (this flag's take {}, this one {})",
            crate::limits::bytes(total),
            crate::limits::bytes(crate::limits::SNAPSHOT_REGEX_BYTES),
            crate::limits::bytes(flag.regex_bytes()),
            crate::limits::bytes(heaviest)
        ),
    })
}
