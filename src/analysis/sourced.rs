//! A Prometheus guard's numbers for the current stage, from the poller's latest answer (pure).
//!
//! The stage window is the answer's own (the query asked for `increase(…[$window])` with
//! `$window` = the stage's age), so no baseline is subtracted; the module window likewise.
//!
//! Failure semantics (docs/guards.md#prometheus): a failed query (HTTP error, timeout, PromQL
//! error, not a vector) is silent telemetry at once; no answer for this stage yet, or no series
//! for a variant the guard needs, is "cannot tell" until the guard's `silence_after` has passed
//! since the stage started, then silent telemetry; an answer older than three intervals plus
//! the timeout is silent telemetry. Never healthy without numbers.

use super::{GuardReading, Rates, Verdict};
use crate::policies::Guard;
use crate::sources::readings::{Answer, VariantCounts};
use serde_json::{json, Value};

/// What a Prometheus guard reads now.
#[derive(Debug, Clone, PartialEq)]
pub enum View {
    /// Numbers: stage window per variant and the new variant since the module started.
    Counts {
        new: Rates,
        old: Rates,
        since_start: Rates,
        query: Value,
    },
    /// Not yet: the stage is extended.
    NotYet { reason: String, query: Value },
    /// Silent telemetry: the module pauses.
    Silent { reason: String, query: Value },
}

impl View {
    /// Stage window (new, old), module window (new) and the query: zeros without numbers.
    pub fn rates(&self) -> (Rates, Rates, Rates, Option<Value>) {
        match self {
            View::Counts {
                new,
                old,
                since_start,
                query,
            } => (*new, *old, *since_start, Some(query.clone())),
            View::NotYet { query, .. } | View::Silent { query, .. } => (
                Rates::default(),
                Rates::default(),
                Rates::default(),
                Some(query.clone()),
            ),
        }
    }

    /// Without numbers: marks `r` as unable to judge and returns the verdict it raises
    /// (`CannotTell`, or `DataQuality` for silent telemetry); with numbers, `None`.
    pub fn unread(self, r: &mut GuardReading) -> Option<Verdict> {
        let (reason, silent) = match self {
            View::Counts { .. } => return None,
            View::NotYet { reason, .. } => (reason, false),
            View::Silent { reason, .. } => (reason, true),
        };
        r.state = "cannot_tell";
        r.explanation = reason.clone();
        let numbers = json!({"guard": &*r});
        Some(if silent {
            Verdict::DataQuality { reason, numbers }
        } else {
            Verdict::CannotTell { reason, numbers }
        })
    }
}

/// Inputs besides the answer.
pub struct Ctx<'a> {
    /// The guard.
    pub guard: &'a Guard,
    /// New and old variant keys.
    pub on: &'a str,
    pub off: &'a str,
    /// Whether the old variant is needed (a relative band below 100 %).
    pub needs_old: bool,
    /// When the current stage started (Unix ms).
    pub stage_started_ms: u64,
    /// The guard's silence window (ms).
    pub silence_ms: u64,
    /// Now (Unix ms).
    pub now_ms: u64,
}

/// The guard's view of `answer` (`None`: never queried for this module).
pub fn view(ctx: &Ctx<'_>, answer: Option<&Answer>) -> View {
    let q = ctx.guard.prometheus.as_ref();
    let base = json!({"source": "prometheus", "url": q.map(|q| q.url.as_str())});
    let age = ctx.now_ms.saturating_sub(ctx.stage_started_ms);
    let waited = |what: String, query: Value| {
        if age >= ctx.silence_ms {
            View::Silent {
                reason: format!(
                    "telemetry silent: Prometheus guard {}: {what} after {} (silence_after {})",
                    ctx.guard.metric,
                    super::ms(age),
                    super::ms(ctx.silence_ms)
                ),
                query,
            }
        } else {
            View::NotYet {
                reason: format!("Prometheus guard {}: {what} yet", ctx.guard.metric),
                query,
            }
        }
    };
    let Some(a) = answer.filter(|a| a.stage_started_ms == ctx.stage_started_ms) else {
        return waited("no answer for this stage".into(), base);
    };
    let query = json!({
        "source": "prometheus",
        "url": q.map(|q| q.url.as_str()),
        "events": a.queries[0],
        "exposures": a.queries[1],
        "fetched_ms": a.fetched_ms,
    });
    let limit = q.map_or(0, |q| {
        3 * q.interval().as_millis() as u64 + q.timeout().as_millis() as u64
    });
    let stale = ctx.now_ms.saturating_sub(a.fetched_ms);
    if stale > limit {
        return View::Silent {
            reason: format!(
                "telemetry silent: Prometheus guard {}: the latest answer is {} old",
                ctx.guard.metric,
                super::ms(stale)
            ),
            query,
        };
    }
    let counted = match &a.outcome {
        Ok(c) => c,
        Err(e) => {
            return View::Silent {
                reason: format!(
                    "telemetry silent: Prometheus query of guard {} failed: {e}",
                    ctx.guard.metric
                ),
                query,
            }
        }
    };
    let mut needed = vec![ctx.on];
    if ctx.needs_old {
        needed.push(ctx.off);
    }
    let missing: Vec<String> = needed
        .iter()
        .flat_map(|v| absent(&counted.stage, v).map(|what| format!("{what} of variant {v:?}")))
        .chain(
            (ctx.guard.max_rate.is_some() || ctx.guard.max_count.is_some())
                .then(|| absent(&counted.module, ctx.on))
                .flatten()
                .map(|what| format!("{what} since the module started")),
        )
        .collect();
    if !missing.is_empty() {
        return waited(format!("no series for {}", missing.join(", ")), query);
    }
    let rates = |c: &VariantCounts, v: &str| {
        Rates::new(
            c.events.get(v).copied().unwrap_or(0),
            c.exposures.get(v).copied().unwrap_or(0),
        )
    };
    View::Counts {
        new: rates(&counted.stage, ctx.on),
        old: rates(&counted.stage, ctx.off),
        since_start: rates(&counted.module, ctx.on),
        query,
    }
}

/// Which query returned no series for `variant`.
fn absent(c: &VariantCounts, variant: &str) -> Option<&'static str> {
    if !c.events.contains_key(variant) {
        Some("events")
    } else if !c.exposures.contains_key(variant) {
        Some("exposures")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::{verdict_sourced, Verdict};
    use crate::policies::Policy;
    use crate::signals::Aggregates;
    use crate::sources::readings::{Answer, Counted, ModuleAnswers, VariantCounts};
    use rollgate_eval::FlagDef;
    use serde_json::json;
    use std::collections::BTreeMap;

    const T0: u64 = 1_000_000;

    fn flag() -> FlagDef {
        serde_json::from_value(json!({
            "key": "points", "type": "boolean", "variants": {"off": false, "on": true},
            "off_variant": "off", "on_variant": "on", "rollout": 50.0
        }))
        .unwrap()
    }

    fn policy() -> Policy {
        Policy::from_toml(
            r#"
            name = "prom"
            [[guard]]
            metric = "error"
            class = "core"
            max_relative_increase = 0.1
            silence_after = "30s"
            source = "prometheus"
            [guard.prometheus]
            url = "http://127.0.0.1:9090"
            events = "sum by ($variant_label) (increase(errors_total[$window]))"
            exposures = "sum by ($variant_label) (increase(requests_total[$window]))"
            "#,
        )
        .unwrap()
    }

    /// `[(on events, on exposures), (off events, off exposures)]`, absent variants left out.
    fn counts(on: Option<(u64, u64)>, off: Option<(u64, u64)>) -> VariantCounts {
        let mut c = VariantCounts::default();
        for (v, x) in [("on", on), ("off", off)] {
            if let Some((e, n)) = x {
                c.events.insert(v.into(), e);
                c.exposures.insert(v.into(), n);
            }
        }
        c
    }

    fn read(outcome: Result<Counted, String>, fetched: u64, now: u64) -> Verdict {
        let answer = Answer {
            fetched_ms: fetched,
            stage_started_ms: T0,
            queries: ["e".into(), "x".into()],
            outcome,
        };
        let answers: ModuleAnswers = BTreeMap::from([("error".to_owned(), answer)]);
        let module = crate::release::hand_module(&flag(), Default::default(), T0);
        let r = verdict_sourced(
            Some(&policy()),
            &Aggregates::default(),
            Some(&answers),
            &module,
            &flag(),
            now,
        );
        r.verdict
    }

    fn stage(c: VariantCounts) -> Result<Counted, String> {
        Ok(Counted {
            stage: c,
            module: VariantCounts::default(),
        })
    }

    #[test]
    fn a_regression_in_the_answer_rolls_back_and_records_the_source() {
        let v = read(
            stage(counts(Some((400, 2000)), Some((20, 2000)))),
            T0 + 4_000,
            T0 + 5_000,
        );
        let Verdict::Rollback { numbers, .. } = v else {
            panic!("{v:?}")
        };
        assert_eq!(numbers["guard"]["source"], "prometheus");
        assert_eq!(numbers["guard"]["query"]["events"], "e");
        assert_eq!(numbers["guard"]["new"]["events"], 400);
    }

    #[test]
    fn a_failed_query_is_silent_telemetry_at_once() {
        let v = read(Err("events query: HTTP 502".into()), T0 + 4_000, T0 + 5_000);
        assert!(
            matches!(&v, Verdict::DataQuality { reason, .. } if reason.contains("HTTP 502")),
            "{v:?}"
        );
    }

    #[test]
    fn a_missing_variant_cannot_tell_then_is_silent_after_silence_after() {
        let missing = || stage(counts(Some((1, 100)), None));
        let early = read(missing(), T0 + 4_000, T0 + 5_000);
        assert!(matches!(early, Verdict::CannotTell { .. }), "{early:?}");
        let late = read(missing(), T0 + 30_000, T0 + 31_000);
        assert!(
            matches!(&late, Verdict::DataQuality { reason, .. } if reason.contains("variant \"off\"")),
            "{late:?}"
        );
    }

    #[test]
    fn a_stale_answer_is_silent_and_an_answer_for_another_stage_is_not_read() {
        let sound = || stage(counts(Some((10, 2000)), Some((10, 2000))));
        let stale = read(sound(), T0, T0 + 60_000);
        assert!(matches!(stale, Verdict::DataQuality { .. }), "{stale:?}");
        let answers: ModuleAnswers = BTreeMap::from([(
            "error".to_owned(),
            Answer {
                fetched_ms: T0,
                stage_started_ms: T0 - 1,
                queries: ["e".into(), "x".into()],
                outcome: sound(),
            },
        )]);
        let module = crate::release::hand_module(&flag(), Default::default(), T0);
        let r = verdict_sourced(
            Some(&policy()),
            &Aggregates::default(),
            Some(&answers),
            &module,
            &flag(),
            T0 + 1_000,
        );
        assert!(
            matches!(r.verdict, Verdict::CannotTell { .. }),
            "{:?}",
            r.verdict
        );
    }
}
