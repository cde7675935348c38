//! Stepping a module that has audiences (docs/releases.md#audiences): one phase ramps at a
//! time — early audiences, then everyone else, then protected audiences — through the same
//! machine and guards as any module. An audience's guards read that audience's own series
//! (signals tagged with it, `signals::series_key`) through a view of the flag whose variants
//! are those series and whose rollout is the audience's percentage; everyone else reads the
//! untagged series. A rollback of any phase rolls back every phase.

use super::machine::{self, Command, Decision};
use super::step::{self, Observation};
use super::transition::{webhook, Turn};
use crate::auth::Actor;
use crate::policies::Policy;
use crate::release::audiences::{self as audience_plan, Active};
use crate::release::{Cohort, Module, ModuleState, Release};
use crate::signals::series_key;
use crate::webhooks::WebhookKind;
use crate::writer::Writer;
use rollgate_eval::{FlagDef, Percentage};
use serde_json::{json, Value};

/// The flag as audience `segment`'s guards read it: its variants are the audience's series and
/// its rollout the audience's percentage.
pub(super) fn audience_view(def: &FlagDef, segment: &str, percentage: Percentage) -> FlagDef {
    FlagDef {
        on_variant: series_key(&def.on_variant, Some(segment)).into_owned(),
        off_variant: series_key(&def.off_variant, Some(segment)).into_owned(),
        rollout: percentage,
        rules: def.rules.clone(),
        ..def.clone()
    }
}

/// The phase of module `m` that ramps now, as (its module, the flag view its guards read,
/// its segment); `None` when nothing ramps (done, or a manual audience waiting).
pub fn phase_view<'m>(
    m: &'m Module,
    def: &FlagDef,
) -> Option<(&'m Module, FlagDef, Option<&'m str>)> {
    match audience_plan::active(m) {
        Active::Done => None,
        Active::EveryoneElse => Some((m, def.clone(), None)),
        Active::Audience(j) => {
            let a = &m.audiences[j];
            (!audience_plan::waiting(a)).then(|| {
                (
                    &a.phase,
                    audience_view(def, &a.segment, a.percentage),
                    Some(a.segment.as_str()),
                )
            })
        }
    }
}

fn policy_of<'p>(turn: &'p Turn<'_>, release: &Release) -> Option<&'p Policy> {
    release.policy.as_ref().and_then(|p| turn.policies.get(p))
}

impl Turn<'_> {
    /// Steps module `i` (which has audiences) until nothing changes; returns whether anything
    /// changed and the rollback decision if one was taken.
    pub(super) fn step_audiences(
        &mut self,
        w: &mut Writer,
        release: &mut Release,
        i: usize,
        cooldown: u64,
        actor: &Actor,
    ) -> (bool, Option<Decision>) {
        let mut changed = false;
        // Each pass of the loop moves one phase; a completed phase lets the next start at once.
        for _ in 0..=release.modules[i].audiences.len() + 1 {
            let Some(def) = self.flag(&release.modules[i].flag) else {
                break;
            };
            let m = &release.modules[i];
            let shared = policy_of(self, release)
                .map(|p| audience_plan::share_budget(p, audience_plan::tested_phases(m)));
            let policy = shared.as_ref();
            // Phases that ramped before (and everyone else once completed) stay guarded: a
            // breach in any of them rolls the module back.
            if let Some((reason, numbers, segment)) =
                self.breach_elsewhere(m, &def, policy, cooldown)
            {
                self.rollback_all(
                    w,
                    release,
                    i,
                    &reason,
                    numbers.clone(),
                    segment.as_deref(),
                    actor,
                );
                return (true, Some(Decision::Rollback { reason, numbers }));
            }
            let m = &release.modules[i];
            let Some((phase, view, segment)) = phase_view(m, &def) else {
                break;
            };
            let obs = step::observe_sourced(
                policy,
                &self.state.signals,
                Some(&step::NO_ANSWERS),
                phase,
                &view,
                self.now_ms,
            );
            let may_start = release.module_may_start(i);
            let decision = step::decide(phase, &obs, may_start, cooldown);
            if !decision.changes_state() {
                break;
            }
            changed = true;
            let segment = segment.map(str::to_owned);
            if let Decision::Rollback { reason, numbers } = &decision {
                let why = match &segment {
                    Some(s) => format!("{s}: {reason}"),
                    None => reason.clone(),
                };
                self.rollback_all(
                    w,
                    release,
                    i,
                    &why,
                    numbers.clone(),
                    segment.as_deref(),
                    actor,
                );
                let named = Decision::Rollback {
                    reason: why,
                    numbers: numbers.clone(),
                };
                return (true, Some(named));
            }
            self.phase_transition(
                w,
                release,
                i,
                segment.as_deref(),
                &decision,
                &view,
                &obs,
                actor,
            );
        }
        (changed, None)
    }

    /// A rollback verdict on a watched phase of `m` other than the one ramping now, as (reason
    /// naming the audience, numbers, audience).
    fn breach_elsewhere(
        &self,
        m: &Module,
        def: &FlagDef,
        policy: Option<&Policy>,
        cooldown: u64,
    ) -> Option<(String, Value, Option<String>)> {
        let active = audience_plan::active(m);
        let mut others: Vec<(&Module, FlagDef, Option<&str>)> = Vec::new();
        if active != Active::EveryoneElse {
            others.push((m, def.clone(), None));
        }
        for (j, a) in m.audiences.iter().enumerate() {
            if active != Active::Audience(j) {
                let view = audience_view(def, &a.segment, a.percentage);
                others.push((&a.phase, view, Some(a.segment.as_str())));
            }
        }
        others
            .into_iter()
            .filter(|(phase, _, _)| audience_plan::watched(phase))
            .find_map(|(phase, view, segment)| {
                let obs = step::observe_sourced(
                    policy,
                    &self.state.signals,
                    Some(&step::NO_ANSWERS),
                    phase,
                    &view,
                    self.now_ms,
                );
                match step::decide(phase, &obs, false, cooldown) {
                    Decision::Rollback { reason, numbers } => Some((
                        format!("{}: {reason}", segment.unwrap_or("everyone else")),
                        numbers,
                        segment.map(str::to_owned),
                    )),
                    _ => None,
                }
            })
    }

    /// Applies `decision` to the phase of module `i` named by `segment` (`None`: everyone
    /// else), rewrites the flag's audiences and rollout, and records it.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn phase_transition(
        &mut self,
        w: &mut Writer,
        release: &mut Release,
        i: usize,
        segment: Option<&str>,
        decision: &Decision,
        view: &FlagDef,
        obs: &Observation,
        actor: &Actor,
    ) {
        let Some(mut def) = self.flag(&release.modules[i].flag) else {
            return;
        };
        let policy = policy_of(self, release);
        let counts = step::counts_now(&self.state.signals, view, policy);
        let module = &mut release.modules[i];
        let first_start = matches!(decision, Decision::Start)
            && module.state == ModuleState::Pending
            && module
                .audiences
                .iter()
                .all(|a| a.phase.state == ModuleState::Pending);
        let (phase, before) = match segment {
            None => (&mut *module, def.rollout),
            Some(s) => match module.audiences.iter_mut().find(|a| a.segment == s) {
                Some(a) => {
                    let before = a.percentage;
                    (&mut a.phase, before)
                }
                None => return,
            },
        };
        let new = step::apply(
            phase,
            decision,
            obs,
            &counts,
            before,
            &actor.name,
            &view.on_variant,
        );
        let after = new.unwrap_or(before);
        if let Some(record) = phase.decision.as_mut() {
            // `null`: everyone else.
            record.numbers["audience"] = json!(segment);
            if let Some(s) = segment {
                record.reason = format!("{s}: {}", record.reason);
            }
        }
        let (state, stage, reason, record) = (
            phase.state,
            phase.stage,
            phase.reason.clone(),
            phase.decision.clone(),
        );
        match segment {
            None => def.rollout = after,
            Some(s) => {
                if let Some(a) = module.audiences.iter_mut().find(|a| a.segment == s) {
                    a.percentage = after;
                }
            }
        }
        def.audiences = audience_plan::flag_audiences(module);
        if first_start {
            if release.cohort == Cohort::Shared {
                def.salt = Some(release.shared_salt());
            }
            if def.policy.is_none() {
                def.policy = release.policy.clone();
            }
        }
        if !matches!(decision, Decision::BackInBand | Decision::LeftBand) {
            let label = segment.unwrap_or("everyone else");
            let text = match (decision, stage) {
                (Decision::Start | Decision::Advance { .. }, Some(st)) => {
                    format!("{label}: stage {} → {} %", st + 1, after.as_f64())
                }
                _ => format!("{label}: {}", reason.clone().unwrap_or_default()),
            };
            let mut entry = w.audit(actor, &format!("module.{}", decision.action()));
            entry.flag = Some(def.key.clone());
            entry.release = Some(release.id.to_string());
            entry.reason = Some(text.clone());
            entry.before = Some(json!({"audience": segment, "rollout": before.as_f64()}));
            entry.after = Some(
                json!({"audience": segment, "rollout": after.as_f64(), "state": state, "stage": stage, "decision": record}),
            );
            self.batch.audit.push(entry);
            tracing::info!(release = %release.name, flag = %def.key, audience = label, action = decision.action(), "audience transition");
            let kind = match decision {
                Decision::Pause { .. } => Some(WebhookKind::Pause),
                Decision::Complete => Some(WebhookKind::Completion),
                _ => None,
            };
            if let Some(kind) = kind {
                let numbers = record.map(|r| r.numbers).unwrap_or(Value::Null);
                self.batch.webhooks.push(webhook(
                    release,
                    Some(&def.key),
                    kind,
                    text,
                    actor,
                    numbers,
                ));
            }
        }
        self.edit(def);
    }

    /// Rolls back every phase of module `i`: every audience and everyone else to 0 %.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn rollback_all(
        &mut self,
        w: &mut Writer,
        release: &mut Release,
        i: usize,
        reason: &str,
        numbers: Value,
        audience: Option<&str>,
        actor: &Actor,
    ) {
        let Some(mut def) = self.flag(&release.modules[i].flag) else {
            return;
        };
        let policy = policy_of(self, release);
        let counts = step::counts_now(&self.state.signals, &def, policy);
        let obs = step::observe_sourced(
            policy,
            &self.state.signals,
            Some(&step::NO_ANSWERS),
            &release.modules[i],
            &def,
            self.now_ms,
        );
        let decision = Decision::Rollback {
            reason: reason.to_owned(),
            numbers,
        };
        let before = def.rollout;
        let module = &mut release.modules[i];
        step::apply(
            module,
            &decision,
            &obs,
            &counts,
            before,
            &actor.name,
            &def.on_variant,
        );
        if let Some(record) = module.decision.as_mut() {
            record.numbers["audience"] = json!(audience);
        }
        for a in &mut module.audiences {
            a.percentage = Percentage::ZERO;
            if a.phase.state != ModuleState::RolledBack {
                a.phase.state = ModuleState::RolledBack;
                a.phase.paused = None;
                a.phase.reason = Some(format!("rolled back with the module: {reason}"));
            }
        }
        def.rollout = Percentage::ZERO;
        def.audiences = audience_plan::flag_audiences(module);
        let record = module.decision.clone();
        let mut entry = w.audit(actor, "module.rollback");
        entry.flag = Some(def.key.clone());
        entry.release = Some(release.id.to_string());
        entry.reason = Some(reason.to_owned());
        entry.before = Some(json!({"rollout": before.as_f64()}));
        entry.after = Some(
            json!({"rollout": 0.0, "audiences": def.audiences, "state": "rolled_back", "decision": record}),
        );
        self.batch.audit.push(entry);
        let numbers = record.map(|r| r.numbers).unwrap_or(Value::Null);
        self.batch.webhooks.push(webhook(
            release,
            Some(&def.key),
            WebhookKind::Rollback,
            reason.to_owned(),
            actor,
            numbers,
        ));
        self.edit(def);
    }

    /// An operator command on module `i` (which has audiences); returns whether it applied.
    /// `Advance` releases a waiting manual audience; `Resume` of a rolled-back module restarts
    /// every phase from the beginning.
    pub(super) fn command_audiences(
        &mut self,
        w: &mut Writer,
        release: &mut Release,
        i: usize,
        cmd: Option<Command>,
        reason: &str,
        actor: &Actor,
    ) -> bool {
        let m = &release.modules[i];
        let Some(def) = self.flag(&m.flag) else {
            return false;
        };
        match cmd {
            None => {
                let Active::Audience(j) = audience_plan::active(m) else {
                    return false;
                };
                if !audience_plan::waiting(&m.audiences[j]) {
                    return false;
                }
                let segment = m.audiences[j].segment.clone();
                release.modules[i].audiences[j].released = true;
                let mut entry = w.audit(actor, "module.advance");
                entry.flag = Some(def.key.clone());
                entry.release = Some(release.id.to_string());
                entry.reason = Some(format!("{segment}: released by {}: {reason}", actor.name));
                self.batch.audit.push(entry);
                true
            }
            Some(Command::Rollback) => {
                let started = m.state != ModuleState::Pending
                    || m.audiences
                        .iter()
                        .any(|a| a.phase.state != ModuleState::Pending);
                if !started || m.state == ModuleState::RolledBack {
                    return false;
                }
                self.rollback_all(w, release, i, reason, json!({}), None, actor);
                true
            }
            Some(Command::Resume) if m.state == ModuleState::RolledBack => {
                let module = &mut release.modules[i];
                let flag = module.flag.clone();
                let phases = std::mem::take(&mut module.audiences)
                    .into_iter()
                    .map(|mut a| {
                        a.percentage = Percentage::ZERO;
                        a.released = false;
                        a.phase = Module::pending(flag.clone(), a.phase.stages.clone());
                        a
                    })
                    .collect();
                let decision = module.decision.clone();
                *module = Module {
                    audiences: phases,
                    decision,
                    reason: Some(format!("restarted from the first audience: {reason}")),
                    ..Module::pending(flag, module.stages.clone())
                };
                let mut entry = w.audit(actor, "module.resume");
                entry.flag = Some(def.key.clone());
                entry.release = Some(release.id.to_string());
                entry.reason = Some(format!("restart from the first audience: {reason}"));
                self.batch.audit.push(entry);
                let why = format!("restarted from the first audience: {reason}");
                let event = webhook(
                    release,
                    Some(&def.key),
                    WebhookKind::Resume,
                    why,
                    actor,
                    json!({}),
                );
                self.batch.webhooks.push(event);
                true
            }
            Some(cmd) => {
                let Some((phase, view, segment)) = phase_view(m, &def) else {
                    return false;
                };
                let Some(d) = machine::command(phase, cmd, reason) else {
                    return false;
                };
                let policy = policy_of(self, release);
                let obs = step::observe_sourced(
                    policy,
                    &self.state.signals,
                    Some(&step::NO_ANSWERS),
                    phase,
                    &view,
                    self.now_ms,
                );
                let segment = segment.map(str::to_owned);
                self.phase_transition(w, release, i, segment.as_deref(), &d, &view, &obs, actor);
                true
            }
        }
    }
}
