//! A controller turn: turning decisions into one batch — module states, flag rollouts, audit
//! entries with the numbers, webhook events — that the caller commits once.

use super::machine::Decision;
use super::step::{self, Observation};
use crate::auth::Actor;
use crate::live::Live;
use crate::policies::{Policy, PolicySet, Scope};
use crate::release::{Cohort, ModuleState, Release, ReleaseState};
use crate::state::AppState;
use crate::webhooks::{WebhookEvent, WebhookKind};
use crate::writer::{Batch, OpsError, WriteGuard, Writer};
use rollgate_eval::FlagDef;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// One action of the controller in progress: the batch it builds and the flags it edits.
pub(super) struct Turn<'a> {
    pub state: &'a AppState,
    pub live: Arc<Live>,
    pub policies: Arc<PolicySet>,
    pub batch: Batch,
    /// Flags changed during this turn, latest definition.
    edited: BTreeMap<String, FlagDef>,
    pub now_ms: u64,
}

impl<'a> Turn<'a> {
    /// A turn over the current snapshot at the current time.
    pub fn new(state: &'a AppState) -> Self {
        Turn {
            state,
            live: state.live.load_full(),
            policies: state.policies.load_full(),
            batch: Batch::default(),
            edited: BTreeMap::new(),
            now_ms: crate::clock::now_ms(),
        }
    }

    /// A flag's definition as this turn left it.
    pub fn flag(&self, key: &str) -> Option<FlagDef> {
        self.edited
            .get(key)
            .cloned()
            .or_else(|| self.live.get(key).map(|f| f.def.clone()))
    }

    /// Records a changed flag definition.
    pub fn edit(&mut self, def: FlagDef) {
        self.edited.insert(def.key.clone(), def);
    }

    fn policy_of(&self, release: &Release) -> Option<&Policy> {
        release.policy.as_ref().and_then(|p| self.policies.get(p))
    }

    /// The guards' reading of module `i` now (its flag as this turn left it).
    pub fn observe(&self, release: &Release, i: usize) -> Option<(FlagDef, Observation)> {
        let def = self.flag(&release.modules[i].flag)?;
        let policy = self.policy_of(release);
        let answers = self.state.prom.module(release.id, &def.key);
        let obs = step::observe_sourced(
            policy,
            &self.state.signals,
            Some(&answers),
            &release.modules[i],
            &def,
            self.now_ms,
        );
        Some((def, obs))
    }

    /// Asks the machine about every module of a running `release`; returns whether anything
    /// changed.
    pub fn step_release(&mut self, w: &mut Writer, release: &mut Release) -> bool {
        if !release.started || !release.is_live() {
            return false;
        }
        let actor = Actor::controller();
        let cooldown = step::cooldown_ms(self.policy_of(release));
        let release_scope = self
            .policy_of(release)
            .is_some_and(|p| p.scope == Scope::Release);
        let mut changed = false;
        let mut release_rollback = None;
        for i in 0..release.modules.len() {
            if !release.modules[i].audiences.is_empty() {
                let (moved, rollback) = self.step_audiences(w, release, i, cooldown, &actor);
                changed |= moved;
                if release_scope && rollback.is_some() {
                    release_rollback = rollback;
                }
                continue;
            }
            let may_start = release.module_may_start(i);
            let Some((def, obs)) = self.observe(release, i) else {
                continue;
            };
            let decision = step::decide(&release.modules[i], &obs, may_start, cooldown);
            if !decision.changes_state() {
                continue;
            }
            if release_scope && matches!(decision, Decision::Rollback { .. }) {
                release_rollback = Some(decision.clone());
            }
            self.transition(w, release, i, &decision, def, &obs, &actor);
            changed = true;
        }
        if let Some(Decision::Rollback { reason, numbers }) = release_rollback {
            let why = format!("release-scope policy: {reason}");
            for i in 0..release.modules.len() {
                let m = &release.modules[i];
                if !m.audiences.is_empty() {
                    // Any phase started (an early audience ramps while everyone else waits).
                    let started = crate::release::audiences::watched(m)
                        || m.audiences
                            .iter()
                            .any(|a| crate::release::audiences::watched(&a.phase));
                    if started && m.state != ModuleState::RolledBack {
                        self.rollback_all(w, release, i, &why, numbers.clone(), None, &actor);
                    }
                    continue;
                }
                if !matches!(
                    m.state,
                    ModuleState::Ramping
                        | ModuleState::Paused
                        | ModuleState::Held
                        | ModuleState::Completed
                ) {
                    continue;
                }
                let Some((def, obs)) = self.observe(release, i) else {
                    continue;
                };
                let d = Decision::Rollback {
                    reason: why.clone(),
                    numbers: numbers.clone(),
                };
                self.transition(w, release, i, &d, def, &obs, &actor);
            }
        }
        if changed && release.state() == ReleaseState::Completed {
            self.batch.webhooks.push(webhook(
                release,
                None,
                WebhookKind::Completion,
                "every module completed".into(),
                &actor,
                json!({}),
            ));
        }
        changed
    }

    /// Applies one decision to module `i` (whose flag is `def`, read as `obs`): module state,
    /// flag rollout, audit entry, webhook event.
    #[allow(clippy::too_many_arguments)]
    pub fn transition(
        &mut self,
        w: &mut Writer,
        release: &mut Release,
        i: usize,
        decision: &Decision,
        mut def: FlagDef,
        obs: &Observation,
        actor: &Actor,
    ) {
        let counts = step::counts_now(&self.state.signals, &def, self.policy_of(release));
        let before = def.rollout;
        let restarted = matches!(decision, Decision::Resume { .. })
            && release.modules[i].state == ModuleState::RolledBack;
        let new_rollout = step::apply(
            &mut release.modules[i],
            decision,
            obs,
            &counts,
            before,
            &actor.name,
            &def.on_variant,
        );
        let mut flag_changed = false;
        if let Some(p) = new_rollout {
            def.rollout = p;
            flag_changed = true;
        }
        if matches!(decision, Decision::Start) && release.cohort == Cohort::Shared {
            let salt = release.shared_salt();
            if def.salt.as_deref() != Some(salt.as_str()) {
                def.salt = Some(salt);
                flag_changed = true;
            }
        }
        // The release's guards stay armed on the flag after the release ends.
        if matches!(decision, Decision::Start) && def.policy.is_none() && release.policy.is_some() {
            def.policy = release.policy.clone();
            flag_changed = true;
        }
        if !matches!(decision, Decision::BackInBand | Decision::LeftBand) {
            self.record(w, release, i, decision, &def, before.as_f64(), actor);
        }
        if restarted {
            // Resolves what the rollback raised (a PagerDuty incident, for one).
            let reason = release.modules[i].reason.clone().unwrap_or_default();
            let event = webhook(
                release,
                Some(&def.key),
                WebhookKind::Resume,
                reason,
                actor,
                json!({}),
            );
            self.batch.webhooks.push(event);
        }
        if flag_changed {
            self.edit(def);
        }
    }

    /// The audit entry, log line and webhook event of a state-changing decision.
    #[allow(clippy::too_many_arguments)]
    fn record(
        &mut self,
        w: &mut Writer,
        release: &Release,
        i: usize,
        decision: &Decision,
        def: &FlagDef,
        rollout_before: f64,
        actor: &Actor,
    ) {
        let module = &release.modules[i];
        let record = module.decision.clone();
        let mut entry = w.audit(actor, &format!("module.{}", decision.action()));
        entry.flag = Some(def.key.clone());
        entry.release = Some(release.id.to_string());
        entry.reason = module.reason.clone();
        entry.before = Some(json!({"rollout": rollout_before}));
        entry.after = Some(
            json!({"rollout": def.rollout.as_f64(), "state": module.state, "stage": module.stage, "decision": record}),
        );
        self.batch.audit.push(entry);
        tracing::info!(
            release = %release.name, flag = %def.key, action = decision.action(), state = ?module.state,
            stage = ?module.stage, rollout = def.rollout.as_f64(), reason = module.reason.as_deref().unwrap_or(""),
            "module transition"
        );
        let kind = match decision {
            Decision::Pause { .. } => WebhookKind::Pause,
            Decision::Rollback { .. } => WebhookKind::Rollback,
            Decision::Complete => WebhookKind::Completion,
            _ => return,
        };
        let numbers = record.map(|r| r.numbers).unwrap_or(Value::Null);
        let reason = module.reason.clone().unwrap_or_default();
        self.batch.webhooks.push(webhook(
            release,
            Some(&def.key),
            kind,
            reason,
            actor,
            numbers,
        ));
    }

    /// Commits everything this turn built, in one batch.
    pub async fn commit(mut self, w: &mut WriteGuard<'_>) -> Result<(), OpsError> {
        self.batch.flags.extend(self.edited.into_values());
        self.state.commit(w, self.batch).await
    }
}

/// A webhook event about `release` (or one of its modules).
pub(super) fn webhook(
    release: &Release,
    module: Option<&str>,
    kind: WebhookKind,
    reason: String,
    actor: &Actor,
    numbers: Value,
) -> WebhookEvent {
    WebhookEvent {
        release_id: Some(release.id.to_string()),
        release: Some(release.name.clone()),
        module: module.map(str::to_owned),
        numbers,
        ..WebhookEvent::new(kind, actor.name.clone(), reason)
    }
}
