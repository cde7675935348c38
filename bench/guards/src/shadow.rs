//! The same rollout driven through the server's own code: signals into
//! `signals::Aggregates`, the controller's own step (`controller::step::observe` after every
//! batch, `controller::step::apply` at every stage end, which carries the stage's evidence).
//! There is no glue of its own to drift: it proves that the fast path of `sim` decides exactly
//! what rollgate decides.

use rollgate::analysis::Verdict;
use rollgate::controller::machine::Decision;
use rollgate::controller::step::{self, Observation};
use rollgate::policies::Policy;
use rollgate::release::{self, Module, StagesOverride};
use rollgate::signals::Aggregates;
use rollgate_eval::FlagDef;

const POLICY: &str = r#"
name = "bench"

[[guard]]
metric = "error"
class = "core"
max_relative_increase = 0.0
"#;

const FLAG: &str = "bench-flag";

/// A module ramping one flag under a one-guard core policy.
pub struct Shadow {
    signals: Aggregates,
    policy: Policy,
    def: FlagDef,
    module: Module,
    now_ms: u64,
}

impl Shadow {
    /// A module that has just started its first stage.
    pub fn new() -> Shadow {
        let policy = Policy::from_toml(POLICY).expect("the bench policy is valid");
        let def: FlagDef = serde_json::from_value(serde_json::json!({
            "key": FLAG, "type": "boolean", "variants": {"off": false, "on": true},
            "off_variant": "off", "on_variant": "on", "rollout": 0.0
        }))
        .expect("the bench flag is valid");
        let plan = StagesOverride {
            percentages: Some(vec![1.0, 5.0, 25.0, 50.0, 100.0]),
            ..StagesOverride::default()
        };
        let stages = release::resolve_stages("modules[0]", Some(&plan), None, Some(&policy))
            .expect("the bench stages are valid");
        let module = Module::pending(FLAG.into(), stages);
        let mut shadow = Shadow {
            signals: Aggregates::default(),
            policy,
            def,
            module,
            now_ms: 1_700_000_000_000,
        };
        shadow.apply(&Decision::Start);
        shadow
    }

    fn observe(&self) -> Observation {
        step::observe(
            Some(&self.policy),
            &self.signals,
            &self.module,
            &self.def,
            self.now_ms,
        )
    }

    fn apply(&mut self, decision: &Decision) {
        let counts = step::counts_now(&self.signals, &self.def, Some(&self.policy));
        let obs = self.observe();
        if let Some(rollout) = step::apply(
            &mut self.module,
            decision,
            &obs,
            &counts,
            self.def.rollout,
            "bench",
            "on",
        ) {
            self.def.rollout = rollout;
        }
    }

    /// Records one batch of signals — `(events, exposures)` of the new and the old variant —;
    /// returns whether the guards say roll back, and the guard's total log evidence.
    pub fn feed(&mut self, new: (u64, u64), old: (u64, u64)) -> (bool, Option<f64>) {
        self.now_ms += 1_000;
        for (variant, (events, exposures)) in [("on", new), ("off", old)] {
            let handle = self.signals.variant(FLAG, variant);
            handle.add("exposure", exposures, None);
            handle.add("error", events, None);
            handle.touch(self.now_ms);
        }
        let reading = self.observe().reading;
        let rollback = matches!(reading.verdict, Verdict::Rollback { .. });
        (rollback, reading.guards.first().and_then(|g| g.ln_evidence))
    }

    /// Moves to stage `to` as the controller does.
    pub fn advance(&mut self, to: usize) {
        self.apply(&Decision::Advance { to });
    }
}
