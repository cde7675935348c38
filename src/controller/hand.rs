//! Guards on flags ramped by hand: a flag with a `policy`, a rollout above 0 and no live
//! release gets one synthetic `held` module whose baselines are the counts when it was first
//! seen at that percentage, so only signals from then on count. A core breach sets the
//! rollout to 0, like a module's rollback.

use super::step;
use super::transition::Turn;
use crate::analysis::Verdict;
use crate::auth::Actor;
use crate::live::Live;
use crate::policies::{Policy, PolicySet};
use crate::release::{hand_module, Module};
use crate::signals::Aggregates;
use crate::state::AppState;
use crate::webhooks::{WebhookEvent, WebhookKind};
use crate::writer::{to_value, OpsError, Writer};
use rollgate_eval::{FlagDef, Percentage};
use serde_json::json;

/// Flags ramped by hand whose policy arms guards: a policy, a rollout above 0, no live release.
fn candidates(w: &Writer, live: &Live) -> Vec<FlagDef> {
    live.flags()
        .iter()
        .map(|f| &f.def)
        .filter(|d| {
            d.policy.is_some() && !d.rollout.is_zero() && w.live_release_of(&d.key).is_none()
        })
        .cloned()
        .collect()
}

/// Drops hand modules whose flag is no longer a candidate or moved to another percentage.
fn prune(w: &mut Writer, candidates: &[FlagDef]) {
    w.hand.retain(|key, m| {
        candidates
            .iter()
            .any(|d| &d.key == key && m.stages.percentages.first() == Some(&d.rollout))
    });
}

fn fresh_module(signals: &Aggregates, def: &FlagDef, policy: &Policy, now_ms: u64) -> Module {
    hand_module(def, step::counts_now(signals, def, Some(policy)), now_ms)
}

fn policy_of<'p>(policies: &'p PolicySet, def: &FlagDef) -> Option<&'p Policy> {
    def.policy.as_ref().and_then(|p| policies.get(p))
}

/// Arms (or disarms) hand guards after a change.
pub(super) fn arm(state: &AppState, w: &mut Writer) {
    let live = state.live.load_full();
    let candidates = candidates(w, &live);
    prune(w, &candidates);
    let policies = state.policies.load();
    let now = crate::clock::now_ms();
    for def in candidates {
        let Some(policy) = policy_of(&policies, &def) else {
            continue;
        };
        if !w.hand.contains_key(&def.key) {
            let module = fresh_module(&state.signals, &def, policy, now);
            w.hand.insert(def.key.clone(), module);
        }
    }
}

/// Steps the hand guards (of `only` flags, when given) within `turn`.
pub(super) fn step(
    turn: &mut Turn<'_>,
    w: &mut Writer,
    only: Option<&[String]>,
) -> Result<(), OpsError> {
    let candidates = candidates(w, &turn.live);
    prune(w, &candidates);
    for def in candidates {
        if only.is_some_and(|flags| !flags.contains(&def.key)) {
            continue;
        }
        let Some(policy) = policy_of(&turn.policies, &def).cloned() else {
            continue;
        };
        let (signals, now) = (&turn.state.signals, turn.now_ms);
        let module = w
            .hand
            .entry(def.key.clone())
            .or_insert_with(|| fresh_module(signals, &def, &policy, now));
        let obs = step::observe(Some(&policy), signals, module, &def, now);
        let Verdict::Rollback { reason, numbers } = obs.reading.verdict else {
            continue;
        };
        let actor = Actor::controller();
        let mut after = def.clone();
        after.rollout = Percentage::ZERO;
        let mut entry = w.audit(&actor, "flag.rollback");
        entry.flag = Some(def.key.clone());
        entry.reason = Some(reason.clone());
        entry.before = Some(to_value("flag", &def)?);
        entry.after = Some(json!({"flag": after, "numbers": numbers}));
        turn.batch.audit.push(entry);
        let mut event = WebhookEvent::new(WebhookKind::Rollback, "controller", reason.clone());
        event.module = Some(def.key.clone());
        event.numbers = numbers;
        turn.batch.webhooks.push(event);
        tracing::warn!(flag = %def.key, reason = %reason, "flag ramped by hand rolled back by its policy");
        w.hand.remove(&def.key);
        turn.edit(after);
    }
    Ok(())
}
