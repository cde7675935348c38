//! What the controller shows: the status document of a release (every module's state,
//! percentage, stage, what it waits for, each guard's reading — read through the same
//! [`super::step`] the controller decides with — and the reach of its flag's newest change).

use super::machine::Decision;
use super::step;
use crate::analysis::GuardReading;
use crate::live::Live;
use crate::policies::PolicySet;
use crate::release::Release;
use crate::state::AppState;
use crate::writer::OpsError;
use rollgate_eval::Percentage;
use serde_json::{json, Value};

/// Releases in creation order.
pub async fn releases(state: &AppState) -> Vec<Release> {
    state
        .writer
        .lock()
        .await
        .releases
        .values()
        .cloned()
        .collect()
}

/// One release by id or name (the newest of that name), with live guard readings.
pub async fn release_status(state: &AppState, id: &str) -> Result<Value, OpsError> {
    let w = state.writer.lock().await;
    let id = w.find_release(id)?;
    Ok(status_json(state, &w.releases[&id]))
}

/// The status document of a release.
pub fn status_json(state: &AppState, release: &Release) -> Value {
    let live = state.live.load();
    let policies = state.policies.load();
    let now = crate::clock::now_ms();
    let modules: Vec<Value> = (0..release.modules.len())
        .map(|i| module_json(state, &live, &policies, release, i, now))
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

fn module_json(
    state: &AppState,
    live: &Live,
    policies: &PolicySet,
    release: &Release,
    i: usize,
    now: u64,
) -> Value {
    let m = &release.modules[i];
    let policy = release.policy.as_ref().and_then(|p| policies.get(p));
    // With audiences, the phases share the budget, as the controller reads them.
    let shared = policy.filter(|_| !m.audiences.is_empty()).map(|p| {
        crate::release::audiences::share_budget(p, crate::release::audiences::tested_phases(m))
    });
    let policy = shared.as_ref().or(policy);
    let def = live.get(&m.flag).map(|f| &f.def);
    let (readings, note) = match def {
        Some(def) => {
            let answers = state.prom.module(release.id, &m.flag);
            let obs = step::observe_sourced(policy, &state.signals, Some(&answers), m, def, now);
            let decision = step::decide(
                m,
                &obs,
                release.module_may_start(i),
                step::cooldown_ms(policy),
            );
            let note = match decision {
                _ if !release.started => Some("release not started".to_owned()),
                Decision::Wait { note } => note,
                _ => None,
            };
            (obs.reading.guards, note)
        }
        None => (
            Vec::<GuardReading>::new(),
            Some("flag no longer exists".into()),
        ),
    };
    let exposures_in_stage = def.map(|d| {
        state
            .signals
            .totals(&d.key, &d.on_variant, "exposure")
            .count
            .saturating_sub(m.exposures_at_stage_start)
    });
    json!({
        "flag": m.flag,
        "state": m.state,
        "percentage": def.map_or(0.0, |d| d.rollout.as_f64()),
        "stage": m.stage,
        "stages": m.stages.percentages.iter().map(|p| p.as_f64()).collect::<Vec<_>>(),
        "stage_percentage": m.stage.and_then(|s| m.stages.percentages.get(s)).map(|p: &Percentage| p.as_f64()),
        "stage_started_ms": m.stage_started_ms,
        "min_duration_ms": m.stages.min_duration_ms,
        "min_exposures": m.stages.min_exposures,
        "exposures_in_stage": exposures_in_stage,
        "reason": m.reason,
        "waiting": note,
        "paused": m.paused,
        "decision": m.decision,
        "guards": readings,
        "reach": state.reach.latest_of_flag(now, &m.flag),
        "audiences": def.map(|d| audiences_json(state, policy, m, d, now)),
    })
}

/// Each audience's phase (in ramp order: early, everyone else as `"segment": null`, protected)
/// with its own guards' readings; `null` for a module without audiences.
fn audiences_json(
    state: &AppState,
    policy: Option<&crate::policies::Policy>,
    m: &crate::release::Module,
    def: &rollgate_eval::FlagDef,
    now: u64,
) -> Option<Value> {
    if m.audiences.is_empty() {
        return None;
    }
    let phase = |segment: Option<&str>,
                 protected: bool,
                 state_name: &str,
                 p: &crate::release::Module,
                 view: &rollgate_eval::FlagDef| {
        let reading = step::observe_sourced(
            policy,
            &state.signals,
            Some(&step::NO_ANSWERS),
            p,
            view,
            now,
        )
        .reading;
        json!({
            "segment": segment,
            "protected": protected,
            "state": state_name,
            "stage": p.stage,
            "stages": p.stages.percentages.iter().map(|x| x.as_f64()).collect::<Vec<_>>(),
            "percentage": view.rollout.as_f64(),
            "reason": p.reason,
            "decision": p.decision,
            "guards": reading.guards,
        })
    };
    let one = |(j, a): (usize, &crate::release::AudiencePhase)| {
        let view = super::audiences::audience_view(def, &a.segment, a.percentage);
        let mut v = phase(
            Some(&a.segment),
            a.protected,
            crate::release::audiences::state_name(m, j),
            &a.phase,
            &view,
        );
        v["advance"] = json!(a.advance);
        v
    };
    let mut out: Vec<Value> = m
        .audiences
        .iter()
        .enumerate()
        .filter(|(_, a)| !a.protected)
        .map(one)
        .collect();
    out.push(phase(None, false, m.state.as_str(), m, def));
    out.extend(
        m.audiences
            .iter()
            .enumerate()
            .filter(|(_, a)| a.protected)
            .map(one),
    );
    Some(Value::Array(out))
}
