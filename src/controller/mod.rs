//! The release controller: the pure [`machine`] decides, this module acts.
//!
//! Every step runs under the writer lock: read the releases, ask the machine what each module
//! should do given the guards' verdict, and commit all resulting transitions (module states,
//! flag rollouts, audit entries with the numbers) in one durable batch before they take
//! effect. Operator commands (`start`, `pause`, `resume`, `rollback`) go through the same path.

pub mod machine;
pub mod runner;

use crate::analysis::{self, GuardReading};
use crate::ops::{invalid, now_ms, to_value, Actor, Batch, OpsError, Writer};
use crate::policies::{Policy, Scope};
use crate::release::{build_release, Cohort, ModuleState, Release, ReleasePlan, ReleaseState};
use crate::state::AppState;
use crate::webhooks::{WebhookEvent, WebhookKind};
use machine::{Command, Decision, Inputs, Verdict};
use rollgate_eval::{FlagDef, Percentage};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use uuid::Uuid;

/// Default cooldown before a guard-paused module resumes once back in band.
pub const DEFAULT_COOLDOWN_MS: u64 = 60_000;

/// A release operator command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseCommand {
    /// Begin: the first module (or every module, with overlap) ramps at once.
    Start,
    /// Pause every ramping or held module.
    Pause,
    /// Resume paused, held and rolled-back modules.
    Resume,
    /// Roll back every started module.
    Rollback,
}

/// Flags changed during one step, latest definition first.
struct FlagEdits<'a> {
    live: &'a crate::live::Live,
    edited: BTreeMap<String, FlagDef>,
}

impl FlagEdits<'_> {
    fn get(&self, key: &str) -> Option<FlagDef> {
        self.edited
            .get(key)
            .cloned()
            .or_else(|| self.live.get(key).map(|f| f.def.clone()))
    }
}

impl AppState {
    /// Validates a plan and stores the release (state `pending`).
    pub async fn create_release(
        &self,
        actor: &Actor,
        plan: ReleasePlan,
    ) -> Result<Release, OpsError> {
        let policies = self.policies.load();
        let policy = match &plan.policy {
            Some(name) => Some(
                policies
                    .get(name)
                    .ok_or_else(|| invalid("policy", format!("unknown policy {name:?}")))?,
            ),
            None => None,
        };
        let release = build_release(plan, policy, Uuid::now_v7(), crate::domain::now_rfc3339())
            .map_err(|e| invalid(e.field, e.message))?;
        let mut w = self.writer.lock().await;
        let live = self.live.load();
        for (i, m) in release.modules.iter().enumerate() {
            if live.get(&m.flag).is_none() {
                return Err(invalid(
                    format!("modules[{i}].flag"),
                    format!("unknown flag {:?}", m.flag),
                ));
            }
            if let Some((other, _)) = w.live_release_of(&m.flag) {
                return Err(OpsError::Conflict(format!(
                    "modules[{i}].flag: flag {:?} already belongs to live release {:?} ({})",
                    m.flag, other.name, other.id
                )));
            }
        }
        if let Some(other) = w
            .releases
            .values()
            .find(|r| r.is_live() && r.name == release.name)
        {
            return Err(OpsError::Conflict(format!(
                "a live release is already named {:?} ({})",
                other.name, other.id
            )));
        }
        let mut entry = w.audit(actor, "release.create");
        entry.release = Some(release.id.to_string());
        entry.subject = Some(release.name.clone());
        entry.after = to_value(&release.plan);
        let batch = Batch {
            releases: vec![release.clone()],
            audit: vec![entry],
            ..Batch::default()
        };
        self.commit(&mut w, batch).await?;
        self.refresh_watched(&w);
        tracing::info!(release = %release.name, id = %release.id, actor = %actor.name, "release created");
        Ok(release)
    }

    /// Applies an operator command to a release; returns the release after it.
    pub async fn release_command(
        &self,
        actor: &Actor,
        id: &str,
        cmd: ReleaseCommand,
    ) -> Result<Release, OpsError> {
        let mut w = self.writer.lock().await;
        let id = find_release(&w, id)?;
        let mut release = w.releases[&id].clone();
        let reason = actor
            .reason
            .clone()
            .unwrap_or_else(|| format!("{cmd:?} by {}", actor.name).to_lowercase());
        let mut batch = Batch::default();
        let live = self.live.load_full();
        let mut edits = FlagEdits {
            live: &live,
            edited: BTreeMap::new(),
        };
        match cmd {
            ReleaseCommand::Start => {
                if release.started {
                    return Err(OpsError::Conflict(format!(
                        "release {:?} was already started",
                        release.name
                    )));
                }
                release.started = true;
            }
            ReleaseCommand::Pause | ReleaseCommand::Resume | ReleaseCommand::Rollback => {
                if !release.started {
                    return Err(OpsError::Conflict(format!(
                        "release {:?} has not been started",
                        release.name
                    )));
                }
                let machine_cmd = match cmd {
                    ReleaseCommand::Pause => Command::Pause,
                    ReleaseCommand::Resume => Command::Resume,
                    _ => Command::Rollback,
                };
                if cmd == ReleaseCommand::Resume {
                    for m in release
                        .modules
                        .iter()
                        .filter(|m| m.state == ModuleState::RolledBack)
                    {
                        if let Some((other, _)) = w
                            .live_release_of(&m.flag)
                            .filter(|(r, _)| r.id != release.id)
                        {
                            return Err(OpsError::Conflict(format!(
                                "flag {:?} now belongs to live release {:?}",
                                m.flag, other.name
                            )));
                        }
                    }
                }
                let mut acted = false;
                for i in 0..release.modules.len() {
                    if let Some(d) = machine::command(&release.modules[i], machine_cmd, &reason) {
                        self.transition(&mut w, &mut batch, &mut edits, &mut release, i, &d, actor);
                        acted = true;
                    }
                }
                if !acted {
                    return Err(OpsError::Conflict(format!(
                        "nothing to {} in release {:?} (state {:?})",
                        format!("{cmd:?}").to_lowercase(),
                        release.name,
                        release.state()
                    )));
                }
            }
        }
        let mut entry = w.audit(
            actor,
            &format!("release.{}", format!("{cmd:?}").to_lowercase()),
        );
        entry.release = Some(release.id.to_string());
        entry.subject = Some(release.name.clone());
        batch.audit.insert(0, entry);
        // Let the machine act right away (a started release ramps its first module at once).
        self.step_release(
            &mut w,
            &mut batch,
            &mut edits,
            &mut release,
            crate::ops::now_ms(),
        );
        batch.flags.extend(edits.edited.into_values());
        batch.releases.push(release.clone());
        self.commit(&mut w, batch).await?;
        self.refresh_watched(&w);
        tracing::info!(release = %release.name, id = %release.id, actor = %actor.name, command = ?cmd, state = ?release.state(), "release command");
        Ok(release)
    }

    /// Acts on one alert: roll back (critical) or pause what it names; record everything.
    pub async fn alert(
        &self,
        actor: &Actor,
        firing: bool,
        critical: bool,
        flag: Option<&String>,
        release: Option<&String>,
        reason: &str,
    ) -> Result<String, OpsError> {
        let actor = Actor {
            name: actor.name.clone(),
            reason: Some(reason.to_owned()),
        };
        if firing {
            let cmd = if critical {
                ReleaseCommand::Rollback
            } else {
                ReleaseCommand::Pause
            };
            if let Some(id) = release {
                return match self.release_command(&actor, id, cmd).await {
                    Ok(r) => Ok(format!("release {} {:?}", r.name, r.state()).to_lowercase()),
                    Err(OpsError::Conflict(why)) => Ok(format!("nothing to do: {why}")),
                    Err(e) => Err(e),
                };
            }
            if let Some(flag) = flag {
                return self.module_alert(&actor, flag, critical).await;
            }
        }
        let mut w = self.writer.lock().await;
        let mut entry = w.audit(
            &actor,
            if firing {
                "alert.ignored"
            } else {
                "alert.resolved"
            },
        );
        entry.flag = flag.cloned();
        entry.release = release.cloned();
        self.commit(
            &mut w,
            Batch {
                audit: vec![entry],
                ..Batch::default()
            },
        )
        .await?;
        Ok(if firing {
            "recorded: the alert names no rollgate flag or release".into()
        } else {
            "resolved: recorded".into()
        })
    }

    async fn module_alert(
        &self,
        actor: &Actor,
        flag: &str,
        critical: bool,
    ) -> Result<String, OpsError> {
        let mut w = self.writer.lock().await;
        let live = self.live.load_full();
        let Some(current) = live.get(flag) else {
            return Err(OpsError::NotFound {
                what: "flag",
                key: flag.to_owned(),
            });
        };
        let mut edits = FlagEdits {
            live: &live,
            edited: BTreeMap::new(),
        };
        let mut batch = Batch::default();
        let reason = actor.reason.clone().unwrap_or_default();
        if let Some((release, index)) = w.live_release_of(flag) {
            let mut release = release.clone();
            let cmd = if critical {
                Command::Rollback
            } else {
                Command::Pause
            };
            let Some(decision) = machine::command(&release.modules[index], cmd, &reason) else {
                return Ok(format!(
                    "nothing to do: module {flag} is {:?}",
                    release.modules[index].state
                )
                .to_lowercase());
            };
            self.transition(
                &mut w,
                &mut batch,
                &mut edits,
                &mut release,
                index,
                &decision,
                actor,
            );
            let outcome = format!(
                "module {flag} of release {}: {}",
                release.name,
                decision.action()
            );
            batch.flags.extend(edits.edited.into_values());
            batch.releases.push(release);
            self.commit(&mut w, batch).await?;
            self.refresh_watched(&w);
            return Ok(outcome);
        }
        if !critical || current.def.rollout.is_zero() {
            let mut entry = w.audit(actor, "alert.recorded");
            entry.flag = Some(flag.to_owned());
            self.commit(
                &mut w,
                Batch {
                    audit: vec![entry],
                    ..Batch::default()
                },
            )
            .await?;
            return Ok(format!("recorded: flag {flag} is not in a running release"));
        }
        // A flag ramped by hand: a critical alert still rolls it back.
        let mut def = current.def.clone();
        def.rollout = Percentage::ZERO;
        let mut entry = w.audit(actor, "flag.rollback");
        entry.flag = Some(flag.to_owned());
        entry.before = to_value(&current.def);
        entry.after = to_value(&def);
        self.commit(
            &mut w,
            Batch {
                flags: vec![def],
                audit: vec![entry],
                ..Batch::default()
            },
        )
        .await?;
        tracing::warn!(flag = %flag, actor = %actor.name, reason = %reason, "flag rolled back by alert");
        Ok(format!("flag {flag} rolled back to 0%"))
    }

    /// One controller pass over every running release (or only those watching `only` flags).
    pub async fn controller_step(&self, only: Option<&[String]>) -> Result<(), OpsError> {
        let mut w = self.writer.lock().await;
        let now = now_ms();
        let live = self.live.load_full();
        let mut edits = FlagEdits {
            live: &live,
            edited: BTreeMap::new(),
        };
        let mut batch = Batch::default();
        let ids: Vec<Uuid> = w
            .releases
            .values()
            .filter(|r| r.started && r.is_live())
            .filter(|r| only.is_none_or(|flags| r.modules.iter().any(|m| flags.contains(&m.flag))))
            .map(|r| r.id)
            .collect();
        for id in ids {
            let mut release = w.releases[&id].clone();
            if self.step_release(&mut w, &mut batch, &mut edits, &mut release, now) {
                batch.releases.push(release);
            }
        }
        self.step_hand_guards(&mut w, &mut batch, &mut edits, only, now);
        if batch.releases.is_empty() && batch.audit.is_empty() {
            return Ok(());
        }
        batch.flags.extend(edits.edited.into_values());
        self.commit(&mut w, batch).await?;
        Ok(())
    }

    /// Asks the machine about every module of `release`; returns whether anything changed.
    fn step_release(
        &self,
        w: &mut Writer,
        batch: &mut Batch,
        edits: &mut FlagEdits<'_>,
        release: &mut Release,
        now: u64,
    ) -> bool {
        if !release.started || !release.is_live() {
            return false;
        }
        let policies = self.policies.load();
        let policy = release
            .policy
            .as_ref()
            .and_then(|p| policies.get(p))
            .cloned();
        let actor = Actor::controller();
        let mut changed = false;
        let mut release_rollback = None;
        for i in 0..release.modules.len() {
            let may_start = release.overlap
                || release.modules[..i]
                    .iter()
                    .all(|m| m.state == ModuleState::Completed);
            let Some(def) = edits.get(&release.modules[i].flag) else {
                continue;
            };
            let exposures = self
                .signals
                .totals(&def.key, &def.on_variant, "exposure")
                .count;
            let verdict = analysis::verdict(
                policy.as_ref(),
                &self.signals,
                &release.modules[i],
                &def,
                now,
            )
            .verdict;
            // The machine measures exposures from the stage baseline it keeps.
            let exposures = exposures.max(release.modules[i].exposures_at_stage_start);
            let inputs = Inputs {
                now_ms: now,
                verdict: &verdict,
                exposures_total: exposures,
                may_start,
                cooldown_ms: cooldown(policy.as_ref()),
            };
            let decision = machine::next(&release.modules[i], &inputs);
            if !decision.changes_state() {
                continue;
            }
            if matches!(decision, Decision::Rollback { .. })
                && policy.as_ref().is_some_and(|p| p.scope == Scope::Release)
            {
                release_rollback = Some(decision.clone());
            }
            self.transition(w, batch, edits, release, i, &decision, &actor);
            changed = true;
        }
        if let Some(Decision::Rollback { reason, numbers }) = release_rollback {
            let why = format!("release-scope policy: {reason}");
            for i in 0..release.modules.len() {
                let m = &release.modules[i];
                if matches!(
                    m.state,
                    ModuleState::Ramping
                        | ModuleState::Paused
                        | ModuleState::Held
                        | ModuleState::Completed
                ) {
                    let d = Decision::Rollback {
                        reason: why.clone(),
                        numbers: numbers.clone(),
                    };
                    self.transition(w, batch, edits, release, i, &d, &actor);
                }
            }
        }
        if changed && release.state() == ReleaseState::Completed {
            batch.webhooks.push(webhook(
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

    /// Applies one decision to module `i`: module state, flag rollout, audit, webhook.
    #[allow(clippy::too_many_arguments)]
    fn transition(
        &self,
        w: &mut Writer,
        batch: &mut Batch,
        edits: &mut FlagEdits<'_>,
        release: &mut Release,
        i: usize,
        decision: &Decision,
        actor: &Actor,
    ) {
        let now = now_ms();
        let Some(mut def) = edits.get(&release.modules[i].flag) else {
            return;
        };
        let policies = self.policies.load();
        let policy = release.policy.as_ref().and_then(|p| policies.get(p));
        let reading = analysis::verdict(policy, &self.signals, &release.modules[i], &def, now);
        let counts = analysis::snapshot_counts(
            &self.signals,
            &def,
            policy
                .iter()
                .flat_map(|p| p.guards.iter().map(|g| g.metric.as_str())),
        );
        let evidence = analysis::stage_evidence(&reading);
        let before = def.rollout;
        let ctx = machine::ApplyCtx {
            now_ms: now,
            counts: &counts,
            stage_evidence: &evidence,
            rollout: before,
            actor: &actor.name,
            on_variant: &def.on_variant,
        };
        let new_rollout = machine::apply(&mut release.modules[i], decision, &ctx);
        let module = &release.modules[i];
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
        if matches!(decision, Decision::BackInBand | Decision::LeftBand) {
            return;
        }
        let record = module.decision.clone();
        let mut entry = w.audit(actor, &format!("module.{}", decision.action()));
        entry.flag = Some(def.key.clone());
        entry.release = Some(release.id.to_string());
        entry.reason = module.reason.clone();
        entry.before = Some(json!({"rollout": before.as_f64()}));
        entry.after = Some(
            json!({"rollout": def.rollout.as_f64(), "state": module.state, "stage": module.stage, "decision": record}),
        );
        batch.audit.push(entry);
        tracing::info!(
            release = %release.name, flag = %def.key, action = decision.action(), state = ?module.state,
            stage = ?module.stage, rollout = def.rollout.as_f64(), reason = module.reason.as_deref().unwrap_or(""),
            "module transition"
        );
        let numbers = record.map(|r| r.numbers).unwrap_or(Value::Null);
        let reason = module.reason.clone().unwrap_or_default();
        match decision {
            Decision::Pause { .. } => batch.webhooks.push(webhook(
                release,
                Some(&def.key),
                WebhookKind::Pause,
                reason,
                actor,
                numbers,
            )),
            Decision::Rollback { .. } => batch.webhooks.push(webhook(
                release,
                Some(&def.key),
                WebhookKind::Rollback,
                reason,
                actor,
                numbers,
            )),
            Decision::Complete => batch.webhooks.push(webhook(
                release,
                Some(&def.key),
                WebhookKind::Completion,
                reason,
                actor,
                numbers,
            )),
            _ => {}
        }
        if flag_changed {
            edits.edited.insert(def.key.clone(), def);
        }
    }

    /// Recomputes the set of flags that ingestion should hand to the controller at once:
    /// modules of running releases, and flags with a policy ramped by hand.
    pub fn refresh_watched(&self, w: &Writer) {
        let mut watched: HashSet<String> = w
            .releases
            .values()
            .filter(|r| r.is_live() && r.started)
            .flat_map(|r| r.modules.iter().map(|m| m.flag.clone()))
            .collect();
        let live = self.live.load();
        watched.extend(
            live.flags()
                .iter()
                .filter(|f| f.def.policy.is_some() && !f.def.rollout.is_zero())
                .map(|f| f.def.key.clone()),
        );
        self.watched.store(Arc::new(watched));
    }

    /// Flags ramped by hand whose policy arms guards: a policy, a rollout above 0, no live release.
    fn hand_candidates(&self, w: &Writer, live: &crate::live::Live) -> Vec<FlagDef> {
        live.flags()
            .iter()
            .map(|f| &f.def)
            .filter(|d| {
                d.policy.is_some() && !d.rollout.is_zero() && w.live_release_of(&d.key).is_none()
            })
            .cloned()
            .collect()
    }

    /// Arms (or disarms) hand guards after a change: baselines are the counts at this moment,
    /// so only signals from now on count. Called after every commit.
    pub fn arm_hand_guards(&self, w: &mut Writer) {
        let live = self.live.load_full();
        let candidates = self.hand_candidates(w, &live);
        let policies = self.policies.load();
        let now = now_ms();
        w.hand.retain(|key, m| {
            candidates
                .iter()
                .any(|d| &d.key == key && m.stages.percentages.first() == Some(&d.rollout))
        });
        for def in candidates {
            let Some(policy) = def.policy.as_ref().and_then(|p| policies.get(p)) else {
                continue;
            };
            if !w.hand.contains_key(&def.key) {
                let counts = analysis::snapshot_counts(
                    &self.signals,
                    &def,
                    policy.guards.iter().map(|g| g.metric.as_str()),
                );
                w.hand.insert(
                    def.key.clone(),
                    crate::release::hand_module(&def, counts, now),
                );
            }
        }
    }

    /// Guards on flags ramped by hand: a core breach sets the rollout to 0, like a module's.
    fn step_hand_guards(
        &self,
        w: &mut Writer,
        batch: &mut Batch,
        edits: &mut FlagEdits<'_>,
        only: Option<&[String]>,
        now: u64,
    ) {
        let policies = self.policies.load();
        let candidates = self.hand_candidates(w, edits.live);
        w.hand.retain(|key, m| {
            candidates
                .iter()
                .any(|d| &d.key == key && m.stages.percentages.first() == Some(&d.rollout))
        });
        for def in candidates {
            if only.is_some_and(|flags| !flags.contains(&def.key)) {
                continue;
            }
            let Some(policy) = def.policy.as_ref().and_then(|p| policies.get(p)) else {
                continue;
            };
            let module = w.hand.entry(def.key.clone()).or_insert_with(|| {
                let counts = analysis::snapshot_counts(
                    &self.signals,
                    &def,
                    policy.guards.iter().map(|g| g.metric.as_str()),
                );
                crate::release::hand_module(&def, counts, now)
            });
            let Verdict::Rollback { reason, numbers } =
                analysis::verdict(Some(policy), &self.signals, module, &def, now).verdict
            else {
                continue;
            };
            let actor = Actor::controller();
            let mut after = def.clone();
            after.rollout = Percentage::ZERO;
            let mut entry = w.audit(&actor, "flag.rollback");
            entry.flag = Some(def.key.clone());
            entry.reason = Some(reason.clone());
            entry.before = to_value(&def);
            entry.after = Some(json!({"flag": after, "numbers": numbers}));
            batch.audit.push(entry);
            let mut event = WebhookEvent::new(WebhookKind::Rollback, "controller", reason.clone());
            event.module = Some(def.key.clone());
            event.numbers = numbers;
            batch.webhooks.push(event);
            tracing::warn!(flag = %def.key, reason = %reason, "flag ramped by hand rolled back by its policy");
            w.hand.remove(&def.key);
            edits.edited.insert(def.key.clone(), after);
        }
    }

    /// Releases in creation order.
    pub async fn releases(&self) -> Vec<Release> {
        self.writer
            .lock()
            .await
            .releases
            .values()
            .cloned()
            .collect()
    }

    /// One release by id or name (the newest of that name), with live guard readings.
    pub async fn release_status(&self, id: &str) -> Result<Value, OpsError> {
        let w = self.writer.lock().await;
        let id = find_release(&w, id)?;
        Ok(self.status_json(&w.releases[&id]))
    }

    /// The status document of a release.
    pub fn status_json(&self, release: &Release) -> Value {
        let live = self.live.load();
        let policies = self.policies.load();
        let policy = release.policy.as_ref().and_then(|p| policies.get(p));
        let now = now_ms();
        let modules: Vec<Value> = release
            .modules
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let def = live.get(&m.flag).map(|f| &f.def);
                let percentage = def.map_or(0.0, |d| d.rollout.as_f64());
                let (readings, note) = match def {
                    Some(def) => {
                        let reading = analysis::verdict(policy, &self.signals, m, def, now);
                        let exposures = self.signals.totals(&def.key, &def.on_variant, "exposure").count;
                        let may_start = release.started && (release.overlap || release.modules[..i].iter().all(|m| m.state == ModuleState::Completed));
                        let inputs = Inputs { now_ms: now, verdict: &reading.verdict, exposures_total: exposures, may_start, cooldown_ms: cooldown(policy) };
                        let note = match machine::next(m, &inputs) {
                            _ if !release.started => Some("release not started".to_owned()),
                            Decision::Wait { note } => note,
                            _ => None,
                        };
                        (reading.guards, note)
                    }
                    None => (Vec::<GuardReading>::new(), Some("flag no longer exists".into())),
                };
                json!({
                    "flag": m.flag,
                    "state": m.state,
                    "percentage": percentage,
                    "stage": m.stage,
                    "stages": m.stages.percentages.iter().map(|p| p.as_f64()).collect::<Vec<_>>(),
                    "stage_percentage": m.stage.and_then(|s| m.stages.percentages.get(s)).map(|p: &Percentage| p.as_f64()),
                    "stage_started_ms": m.stage_started_ms,
                    "min_duration_ms": m.stages.min_duration_ms,
                    "min_exposures": m.stages.min_exposures,
                    "exposures_in_stage": def.map(|d| self.signals.totals(&d.key, &d.on_variant, "exposure").count.saturating_sub(m.exposures_at_stage_start)),
                    "reason": m.reason,
                    "waiting": note,
                    "paused": m.paused,
                    "decision": m.decision,
                    "guards": readings,
                })
            })
            .collect();
        json!({
            "id": release.id,
            "name": release.name,
            "state": release.state(),
            "policy": release.policy,
            "overlap": release.overlap,
            "cohort": release.cohort,
            "created": release.created,
            "modules": modules,
        })
    }
}

fn cooldown(policy: Option<&Policy>) -> u64 {
    policy
        .and_then(|p| p.cooldown.as_deref())
        .and_then(crate::policies::parse_duration)
        .map_or(DEFAULT_COOLDOWN_MS, |d| d.as_millis() as u64)
}

fn find_release(w: &Writer, id: &str) -> Result<Uuid, OpsError> {
    if let Ok(uuid) = Uuid::parse_str(id) {
        if w.releases.contains_key(&uuid) {
            return Ok(uuid);
        }
    }
    w.releases
        .values()
        .rev()
        .find(|r| r.name == id)
        .map(|r| r.id)
        .ok_or_else(|| OpsError::NotFound {
            what: "release",
            key: id.to_owned(),
        })
}

fn webhook(
    release: &Release,
    module: Option<&str>,
    kind: WebhookKind,
    reason: String,
    actor: &Actor,
    numbers: Value,
) -> WebhookEvent {
    WebhookEvent {
        id: Uuid::now_v7(),
        kind,
        time: crate::domain::now_rfc3339(),
        release_id: Some(release.id.to_string()),
        release: Some(release.name.clone()),
        module: module.map(str::to_owned),
        reason,
        actor: actor.name.clone(),
        numbers,
    }
}

impl AppState {
    /// Control-plane metric families: module states, guard readings, signals, streams, webhooks.
    pub fn control_metrics(&self, releases: &[Release]) -> Vec<crate::metrics::Family> {
        use crate::metrics::Family;
        use std::sync::atomic::Ordering::Relaxed;
        let live = self.live.load();
        let policies = self.policies.load();
        let now = now_ms();
        let mut module_state = Family::gauge(
            "module_state",
            "1 for the current state of each release module",
        );
        let mut module_pct = Family::gauge(
            "module_percentage",
            "Rollout percentage of each release module",
        );
        let mut evidence = Family::gauge(
            "guard_evidence",
            "Log evidence against the band (fires at guard_threshold)",
        );
        let mut threshold = Family::gauge("guard_threshold", "Log evidence threshold ln(1/alpha)");
        let mut breached = Family::gauge("guard_breached", "1 while the guard is out of band");
        let mut rate = Family::gauge(
            "guard_rate",
            "Per-exposure rate of the guarded metric in the current stage",
        );
        let mut signals =
            Family::counter("signals", "Signals received by flag, variant and metric");
        for r in releases
            .iter()
            .filter(|r| r.is_live() || r.state() == ReleaseState::RolledBack)
        {
            let policy = r.policy.as_ref().and_then(|p| policies.get(p));
            for m in &r.modules {
                let labels = |extra: Vec<(&'static str, String)>| {
                    let mut l = vec![("release", r.name.clone()), ("flag", m.flag.clone())];
                    l.extend(extra);
                    l
                };
                let state = serde_json::to_value(m.state)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                module_state.push(labels(vec![("state", state)]), 1.0);
                let Some(def) = live.get(&m.flag).map(|f| &f.def) else {
                    continue;
                };
                module_pct.push(labels(vec![]), def.rollout.as_f64());
                for g in analysis::verdict(policy, &self.signals, m, def, now).guards {
                    let with_metric = || labels(vec![("metric", g.metric.clone())]);
                    if let Some(e) = g.ln_evidence {
                        evidence.push(with_metric(), e);
                    }
                    threshold.push(with_metric(), g.ln_threshold);
                    breached.push(with_metric(), f64::from(u8::from(g.state == "breach")));
                    for (variant, r) in [("new", g.new), ("old", g.old)] {
                        if let Some(x) = r.rate {
                            rate.push(
                                labels(vec![
                                    ("metric", g.metric.clone()),
                                    ("variant", variant.into()),
                                ]),
                                x,
                            );
                        }
                    }
                }
            }
        }
        let saved = self.signals.save();
        for (flag, variant, metric, totals) in saved.iter() {
            signals.push(
                vec![
                    ("flag", flag.to_owned()),
                    ("variant", variant.to_owned()),
                    ("metric", metric.to_owned()),
                ],
                totals.count as f64,
            );
        }
        let mut subscribers = Family::gauge("stream_subscribers", "Connected streaming clients");
        subscribers.push(vec![], self.hub.subscribers() as f64);
        let stats = self.webhooks.stats();
        let mut hooks = Family::counter(
            "webhook_deliveries",
            "Webhook deliveries by outcome (per event and URL)",
        );
        for (outcome, v) in [
            ("delivered", &stats.delivered),
            ("failed", &stats.failed),
            ("retried", &stats.retried),
            ("dropped", &stats.dropped),
        ] {
            hooks.push(vec![("outcome", outcome.into())], v.load(Relaxed) as f64);
        }
        vec![
            module_state,
            module_pct,
            evidence,
            threshold,
            breached,
            rate,
            signals,
            subscribers,
            hooks,
        ]
    }
}
