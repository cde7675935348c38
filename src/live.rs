//! The live flag set that evaluation reads: an immutable, precompiled snapshot swapped
//! atomically by the control path (arc-swap). Readers never lock and never touch disk.
//!
//! Invariants:
//! - A [`Live`] is never mutated after it is published; writers build a new one.
//! - Rebuilding after a one-flag change is O(number of flags) pointer copies, not a
//!   recompilation of every flag.
//! - The compiled `matches` patterns of all flags stay within
//!   [`rollgate_eval::limits::SNAPSHOT_REGEX_BYTES`]: a change that would grow them past it is
//!   refused, one that does not grow them (a kill switch, a rollout) never is.
//! - Each flag carries its OFREP answer pieces ([`FlagWire`]), serialized when it is
//!   compiled, so an evaluation request only copies bytes.
//! - Evaluation counters live beside each compiled flag and are carried over to its next
//!   version by variant name, so `/metrics` counters only reset when a variant disappears.

use crate::ofrep_wire::FlagWire;
use rollgate_eval::check_snapshot_budget;
use rollgate_eval::{compile_flag, CompileError, CompiledFlag, FlagDef, SegmentDef};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// One flag as served: its definition, compiled form and evaluation counters.
#[derive(Debug)]
pub struct ServedFlag {
    /// The definition as stored.
    pub def: FlagDef,
    /// The evaluation-ready form.
    pub compiled: CompiledFlag,
    /// Evaluations per variant, indexed like `compiled.variants()`.
    pub served: Box<[AtomicU64]>,
    /// The constant pieces of its OFREP answers, serialized once (`crate::ofrep_wire`).
    pub wire: FlagWire,
}

impl ServedFlag {
    fn new(def: FlagDef, compiled: CompiledFlag, previous: Option<&ServedFlag>) -> Self {
        let served = compiled
            .variants()
            .iter()
            .map(|(name, _)| {
                let carried = previous.and_then(|p| p.count_for(name)).unwrap_or(0);
                AtomicU64::new(carried)
            })
            .collect();
        let wire = FlagWire::new(&def.key, compiled.variants());
        ServedFlag {
            def,
            compiled,
            served,
            wire,
        }
    }

    fn count_for(&self, variant: &str) -> Option<u64> {
        let i = self
            .compiled
            .variants()
            .iter()
            .position(|(n, _)| &**n == variant)?;
        Some(self.served[i].load(Ordering::Relaxed))
    }

    /// Counts one evaluation that served `variant_index`.
    pub fn record(&self, variant_index: usize) {
        if let Some(c) = self.served.get(variant_index) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The published flag set.
#[derive(Debug, Default)]
pub struct Live {
    by_key: HashMap<Arc<str>, Arc<ServedFlag>>,
    ordered: Vec<Arc<ServedFlag>>,
    /// Segments by key.
    pub segments: BTreeMap<String, SegmentDef>,
    /// The config revision this set reflects (docs/clients.md): set by the commit that
    /// publishes it, durable, one per flag or segment change.
    pub revision: u64,
    /// Compiled size of every flag's `matches` patterns, in bytes.
    regex_bytes: usize,
    client_config: OnceLock<(bytes::Bytes, String)>,
}

impl Live {
    /// Builds the set from stored definitions. Flags that no longer compile (which validation
    /// at write time prevents, unless the limits changed) are skipped and returned with the
    /// reason; so are flags, in key order, whose patterns would take the set over its budget.
    pub fn build(
        mut flags: Vec<FlagDef>,
        segments: BTreeMap<String, SegmentDef>,
    ) -> (Self, Vec<(String, CompileError)>) {
        flags.sort_by(|a, b| a.key.cmp(&b.key));
        let mut broken = Vec::new();
        let mut ordered = Vec::with_capacity(flags.len());
        let mut regex_bytes = 0;
        for def in flags {
            match compile_flag(&def, &segments)
                .and_then(|c| check_snapshot_budget(regex_bytes, &c).map(|()| c))
            {
                Ok(compiled) => {
                    regex_bytes += compiled.regex_bytes();
                    ordered.push(Arc::new(ServedFlag::new(def, compiled, None)));
                }
                Err(e) => broken.push((def.key.clone(), e)),
            }
        }
        let by_key = ordered
            .iter()
            .map(|f| (Arc::from(f.def.key.as_str()), f.clone()))
            .collect();
        (
            Live {
                by_key,
                ordered,
                segments,
                revision: 0,
                regex_bytes,
                client_config: OnceLock::new(),
            },
            broken,
        )
    }

    /// The flag called `key`.
    pub fn get(&self, key: &str) -> Option<&Arc<ServedFlag>> {
        self.by_key.get(key)
    }

    /// All flags in key order.
    pub fn flags(&self) -> &[Arc<ServedFlag>] {
        &self.ordered
    }

    /// Compiled size of every flag's `matches` patterns, in bytes.
    pub fn regex_bytes(&self) -> usize {
        self.regex_bytes
    }

    /// A new set with `def` (already compiled) inserted or replaced; refused if its patterns
    /// grow and would take the set over its budget.
    pub fn with_flag(&self, def: FlagDef, compiled: CompiledFlag) -> Result<Live, CompileError> {
        let previous = self.get(&def.key).cloned();
        let before = previous.as_ref().map_or(0, |p| p.compiled.regex_bytes());
        if compiled.regex_bytes() > before {
            check_snapshot_budget(self.regex_bytes - before, &compiled)?;
        }
        let flag = Arc::new(ServedFlag::new(def, compiled, previous.as_deref()));
        let mut ordered = self.ordered.clone();
        match ordered.binary_search_by(|f| f.def.key.as_str().cmp(&flag.def.key)) {
            Ok(i) => ordered[i] = flag.clone(),
            Err(i) => ordered.insert(i, flag.clone()),
        }
        let mut by_key = self.by_key.clone();
        by_key.insert(Arc::from(flag.def.key.as_str()), flag);
        Ok(self.next(by_key, ordered, self.segments.clone()))
    }

    /// A new set without flag `key`.
    pub fn without_flag(&self, key: &str) -> Live {
        let ordered = self
            .ordered
            .iter()
            .filter(|f| f.def.key != key)
            .cloned()
            .collect();
        let mut by_key = self.by_key.clone();
        by_key.remove(key);
        self.next(by_key, ordered, self.segments.clone())
    }

    /// A new set without the segment `key` (the caller makes sure no flag uses it: a flag that
    /// still did would keep its compiled form, which inlines the segment's conditions).
    pub fn without_segment(&self, key: &str) -> Live {
        let mut segments = self.segments.clone();
        segments.remove(key);
        self.next(self.by_key.clone(), self.ordered.clone(), segments)
    }

    /// A new set with `segment` replaced and every flag using it recompiled against it.
    /// Refused, in the segment's terms (`when[2].values[0]`), if that takes a flag over its
    /// own budget or the set over its budget.
    pub fn with_segment(&self, segment: SegmentDef) -> Result<Live, CompileError> {
        let key = segment.key.clone();
        let mut segments = self.segments.clone();
        segments.insert(key.clone(), segment);
        let mut ordered = Vec::with_capacity(self.ordered.len());
        let mut regex_bytes = self.regex_bytes;
        for old in &self.ordered {
            if !old.def.uses_segment(&key) {
                ordered.push(old.clone());
                continue;
            }
            let compiled = compile_flag(&old.def, &segments)
                .and_then(|c| {
                    let others = regex_bytes - old.compiled.regex_bytes();
                    if c.regex_bytes() > old.compiled.regex_bytes() {
                        check_snapshot_budget(others, &c)?;
                    }
                    regex_bytes = others + c.regex_bytes();
                    Ok(c)
                })
                .map_err(|e| e.in_segment(&key, &old.def.key))?;
            ordered.push(Arc::new(ServedFlag::new(
                old.def.clone(),
                compiled,
                Some(old),
            )));
        }
        let by_key = ordered
            .iter()
            .map(|f| (Arc::from(f.def.key.as_str()), f.clone()))
            .collect();
        Ok(self.next(by_key, ordered, segments))
    }

    /// A new set with the same flags and segments.
    pub fn with_nothing(&self) -> Live {
        self.next(
            self.by_key.clone(),
            self.ordered.clone(),
            self.segments.clone(),
        )
    }

    fn next(
        &self,
        by_key: HashMap<Arc<str>, Arc<ServedFlag>>,
        ordered: Vec<Arc<ServedFlag>>,
        segments: BTreeMap<String, SegmentDef>,
    ) -> Live {
        Live {
            regex_bytes: ordered.iter().map(|f| f.compiled.regex_bytes()).sum(),
            by_key,
            ordered,
            segments,
            revision: self.revision,
            client_config: OnceLock::new(),
        }
    }

    /// The `GET /api/v1/client/config` body and its ETag, computed once per published set.
    pub fn client_config(&self) -> &(bytes::Bytes, String) {
        self.client_config.get_or_init(|| {
            #[derive(serde::Serialize)]
            struct Body<'a> {
                revision: u64,
                flags: Vec<&'a FlagDef>,
                segments: Vec<&'a SegmentDef>,
                bucketing: &'static str,
            }
            let body = Body {
                revision: self.revision,
                flags: self.ordered.iter().map(|f| &f.def).collect(),
                segments: self.segments.values().collect(),
                bucketing:
                    "xxh64(seed=0, salt + \":\" + targetingKey) % 100000 < percentage * 1000",
            };
            let json = serde_json::to_vec(&body).unwrap_or_default();
            let etag = crate::etag(&json);
            (bytes::Bytes::from(json), etag)
        })
    }
}
