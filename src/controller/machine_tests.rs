//! Exhaustive tests of the pure controller state machine (see machine.rs): every state
//! against every verdict and every operator command, what `apply` does to the module and
//! the flag's rollout, and a seeded property check over random sequences.
//!
//! The fixture module walks `[1, 5, 25, 50, 100]` with a 10-minute bake and 1,000 new-variant
//! exposures per stage; clocks start at `T0`.

use super::*;
use crate::release::Stages;
use rollgate_eval::in_rollout;

const MIN: u64 = 60_000;
const T0: u64 = 1_700_000_000_000;
const BAKE_MS: u64 = 10 * MIN;
const MIN_EXPOSURES: u64 = 1_000;
const GRACE_MS: u64 = 30 * MIN;
const COOLDOWN_MS: u64 = MIN;
const STATES: [ModuleState; 6] = ModuleState::ALL;

// ---------------------------------------------------------------- fixtures

fn pct(p: f64) -> Percentage {
    Percentage::from_f64(p).unwrap()
}

fn plan() -> Stages {
    Stages {
        percentages: [1.0, 5.0, 25.0, 50.0, 100.0].map(pct).to_vec(),
        min_duration_ms: BAKE_MS,
        min_exposures: MIN_EXPOSURES,
    }
}

fn pending() -> Module {
    Module::pending("qr-ordering".into(), plan())
}

/// Ramping in `stage`, which began at `T0` with 5,000 exposures already counted.
fn ramping(stage: usize) -> Module {
    Module {
        state: ModuleState::Ramping,
        stage: Some(stage),
        stage_started_ms: Some(T0),
        exposures_at_stage_start: 5_000,
        started_ms: Some(T0 - 60 * MIN),
        reason: Some(format!("ramping: stage {}", stage + 1)),
        evidence: BTreeMap::from([("complaint".to_owned(), 0.7)]),
        ..pending()
    }
}

/// Paused in stage 1 at `T0` by `cause`.
fn paused_by(cause: PauseCause) -> Module {
    Module {
        state: ModuleState::Paused,
        paused: Some(cause),
        paused_ms: Some(T0),
        reason: Some("paused".into()),
        ..ramping(1)
    }
}

fn guard_cause() -> PauseCause {
    PauseCause::Guard {
        metric: "complaint".into(),
        grace_ms: GRACE_MS,
        from_held: false,
    }
}

/// A module in `state` as the machine would have left it (paused: by a guard).
fn in_state(state: ModuleState) -> Module {
    match state {
        ModuleState::Pending => pending(),
        ModuleState::Paused => paused_by(guard_cause()),
        other => Module {
            state: other,
            ..ramping(1)
        },
    }
}

fn healthy() -> Verdict {
    Verdict::Healthy
}

fn cannot_tell() -> Verdict {
    Verdict::CannotTell {
        reason: "1200 new-variant exposures could not yet reveal a +50% increase".into(),
        numbers: json!({"guard": {"metric": "complaint"}}),
    }
}

fn out_of_band() -> Verdict {
    out_of_band_with_grace(GRACE_MS)
}

fn out_of_band_with_grace(grace_ms: u64) -> Verdict {
    Verdict::Pause {
        metric: "complaint".into(),
        reason: "basic guard complaint out of band".into(),
        grace_ms,
        numbers: json!({"guard": {"metric": "complaint", "ln_evidence": 5.1}}),
    }
}

fn broken_telemetry() -> Verdict {
    Verdict::DataQuality {
        reason: "telemetry silent: no signal for 10m".into(),
        numbers: json!({"silence_after_ms": 600_000}),
    }
}

fn core_breach() -> Verdict {
    Verdict::Rollback {
        reason: "core guard payment_error: new rate 0.015 vs old 0.005".into(),
        numbers: json!({"guard": {"metric": "payment_error", "ln_evidence": 9.2}}),
    }
}

fn every_verdict() -> [Verdict; 5] {
    [
        healthy(),
        cannot_tell(),
        out_of_band(),
        broken_telemetry(),
        core_breach(),
    ]
}

/// Inputs at `now_ms` with the stage's exposures met and the module's turn come.
fn at(now_ms: u64, verdict: &Verdict) -> Inputs<'_> {
    Inputs {
        now_ms,
        verdict,
        exposures_total: 5_000 + MIN_EXPOSURES,
        may_start: true,
        cooldown_ms: COOLDOWN_MS,
    }
}

/// Baked and exposed: every ramping wait condition is met.
fn ready(verdict: &Verdict) -> Inputs<'_> {
    at(T0 + BAKE_MS, verdict)
}

fn note(decision: &Decision) -> &str {
    match decision {
        Decision::Wait { note } => note.as_deref().unwrap_or(""),
        other => panic!("expected a wait, got {other:?}"),
    }
}

fn counts(on_exposures: u64, off_exposures: u64, on_complaints: u64) -> Counts {
    Counts::from([
        (
            "on".to_owned(),
            BTreeMap::from([
                ("exposure".to_owned(), on_exposures),
                ("complaint".to_owned(), on_complaints),
            ]),
        ),
        (
            "off".to_owned(),
            BTreeMap::from([("exposure".to_owned(), off_exposures)]),
        ),
    ])
}

/// Everything `apply` reads, owned.
struct World {
    now_ms: u64,
    counts: Counts,
    stage_evidence: BTreeMap<String, f64>,
    rollout: Percentage,
}

impl World {
    fn at(now_ms: u64, rollout: f64) -> World {
        World {
            now_ms,
            counts: counts(9_000, 400_000, 12),
            stage_evidence: BTreeMap::from([("complaint".to_owned(), 0.5)]),
            rollout: pct(rollout),
        }
    }

    fn apply(&self, module: &mut Module, decision: &Decision) -> Option<Percentage> {
        let ctx = ApplyCtx {
            now_ms: self.now_ms,
            counts: &self.counts,
            stage_evidence: &self.stage_evidence,
            rollout: self.rollout,
            actor: "controller",
            on_variant: "on",
        };
        apply(module, decision, &ctx)
    }
}

fn resume() -> Decision {
    Decision::Resume {
        reason: "ops said so".into(),
    }
}

// ---------------------------------------------------------------- pending

#[test]
fn pending_module_waits_for_the_previous_module() {
    for verdict in every_verdict() {
        let inputs = Inputs {
            may_start: false,
            ..at(T0, &verdict)
        };

        let decision = next(&pending(), &inputs);

        assert_eq!(
            note(&decision),
            "waiting for the previous module to complete"
        );
    }
}

#[test]
fn pending_module_starts_when_its_turn_comes_whatever_the_verdict() {
    for verdict in every_verdict() {
        assert_eq!(next(&pending(), &at(T0, &verdict)), Decision::Start);
    }
}

#[test]
fn starting_ramps_at_stage_zero_with_the_first_percentage() {
    let mut module = Module {
        evidence: BTreeMap::from([("complaint".to_owned(), 3.0)]),
        ..pending()
    };
    let world = World::at(T0, 0.0);

    let rollout = world.apply(&mut module, &Decision::Start);

    assert_eq!(rollout, Some(pct(1.0)));
    assert_eq!(module.state, ModuleState::Ramping);
    assert_eq!(module.stage, Some(0));
    assert_eq!(module.stage_started_ms, Some(T0));
    assert_eq!(module.started_ms, Some(T0));
    assert_eq!(module.exposures_at_stage_start, 9_000);
    assert_eq!(module.stage_baseline, world.counts);
    assert_eq!(module.module_baseline, world.counts);
    assert!(module.evidence.is_empty(), "a fresh ramp has no evidence");
    assert_eq!(module.reason.as_deref(), Some("ramping: stage 1"));
}

// ---------------------------------------------------------------- ramping

#[test]
fn ramping_module_bakes_before_anything_else() {
    let module = ramping(0);
    let verdict = healthy();
    let inputs = at(T0 + BAKE_MS - 1, &verdict);

    let decision = next(&module, &inputs);

    assert!(note(&decision).starts_with("baking: "), "{decision:?}");
}

#[test]
fn ramping_module_waits_for_the_stage_exposures_after_baking() {
    let module = ramping(0);
    let verdict = healthy();
    let inputs = Inputs {
        exposures_total: 5_000 + MIN_EXPOSURES - 1,
        ..ready(&verdict)
    };

    let decision = next(&module, &inputs);

    assert_eq!(note(&decision), "waiting for exposures: 999 of 1000");
}

#[test]
fn ramping_module_advances_when_baked_exposed_and_healthy() {
    for stage in 0..4 {
        let decision = next(&ramping(stage), &ready(&healthy()));

        assert_eq!(decision, Decision::Advance { to: stage + 1 });
    }
}

#[test]
fn the_last_stage_completes_the_module() {
    let decision = next(&ramping(4), &ready(&healthy()));

    assert_eq!(decision, Decision::Complete);
}

#[test]
fn cannot_tell_extends_a_baked_and_exposed_stage() {
    let decision = next(&ramping(1), &ready(&cannot_tell()));

    assert_eq!(
        note(&decision),
        "stage extended: 1200 new-variant exposures could not yet reveal a +50% increase"
    );
}

#[test]
fn cannot_tell_during_the_bake_reports_the_bake_first() {
    let decision = next(&ramping(1), &at(T0 + 1, &cannot_tell()));

    assert!(note(&decision).starts_with("baking: "), "{decision:?}");
}

#[test]
fn out_of_band_verdict_pauses_a_ramping_module_at_once_with_the_guard_and_its_grace() {
    // Even in the middle of the bake: a guard does not wait for the stage to finish.
    let decision = next(&ramping(2), &at(T0 + 1, &out_of_band()));

    assert_eq!(
        decision,
        Decision::Pause {
            cause: guard_cause(),
            reason: "basic guard complaint out of band".into(),
            numbers: json!({"guard": {"metric": "complaint", "ln_evidence": 5.1}}),
        }
    );
}

#[test]
fn broken_telemetry_pauses_a_ramping_module_for_data_quality() {
    let decision = next(&ramping(2), &ready(&broken_telemetry()));

    let Decision::Pause { cause, reason, .. } = decision else {
        panic!("expected a pause, got {decision:?}");
    };
    assert_eq!(cause, PauseCause::DataQuality);
    assert_eq!(reason, "telemetry silent: no signal for 10m");
}

#[test]
fn ramping_module_without_a_stage_starts_over_instead_of_panicking() {
    let module = Module {
        stage: None,
        ..ramping(0)
    };

    assert_eq!(next(&module, &ready(&healthy())), Decision::Start);
}

// ---------------------------------------------------------------- rollback verdict

#[test]
fn core_breach_rolls_back_ramping_paused_held_and_completed_modules() {
    let paused_modules = [
        paused_by(guard_cause()),
        paused_by(PauseCause::DataQuality),
        paused_by(PauseCause::Operator),
    ];
    let others = [
        ModuleState::Ramping,
        ModuleState::Held,
        ModuleState::Completed,
    ]
    .map(in_state);
    for module in paused_modules.iter().chain(&others) {
        let decision = next(module, &at(T0 + 1, &core_breach()));

        assert_eq!(
            decision,
            Decision::Rollback {
                reason: "core guard payment_error: new rate 0.015 vs old 0.005".into(),
                numbers: json!({"guard": {"metric": "payment_error", "ln_evidence": 9.2}}),
            },
            "from {:?} {:?}",
            module.state,
            module.paused
        );
    }
}

#[test]
fn core_breach_does_not_roll_back_a_pending_or_rolled_back_module() {
    let verdict = core_breach();
    let waiting = Inputs {
        may_start: false,
        ..at(T0, &verdict)
    };

    assert!(!next(&pending(), &waiting).changes_state());
    assert_eq!(
        next(&in_state(ModuleState::RolledBack), &at(T0, &core_breach())),
        Decision::Wait { note: None }
    );
}

// ---------------------------------------------------------------- guard pause

#[test]
fn guard_paused_module_waits_while_out_of_band_inside_its_grace() {
    let decision = next(
        &paused_by(guard_cause()),
        &at(T0 + GRACE_MS - 1, &out_of_band()),
    );

    assert_eq!(note(&decision), "paused: a basic guard is out of band");
}

#[test]
fn guard_paused_module_rolls_back_when_still_out_of_band_after_its_grace() {
    let decision = next(
        &paused_by(guard_cause()),
        &at(T0 + GRACE_MS, &out_of_band()),
    );

    let Decision::Rollback { reason, numbers } = decision else {
        panic!("expected a rollback, got {decision:?}");
    };
    assert_eq!(
        reason,
        "complaint still out of band after the 30m grace: basic guard complaint out of band"
    );
    assert_eq!(numbers["guard"]["ln_evidence"], 5.1);
}

#[test]
fn guard_paused_module_records_when_it_is_back_in_band() {
    for verdict in [healthy(), cannot_tell()] {
        let mut module = paused_by(guard_cause());

        let decision = next(&module, &at(T0 + MIN, &verdict));
        let rollout = World::at(T0 + MIN, 5.0).apply(&mut module, &decision);

        assert_eq!(decision, Decision::BackInBand);
        assert_eq!(rollout, None);
        assert_eq!(module.in_band_since_ms, Some(T0 + MIN));
        assert_eq!(module.state, ModuleState::Paused);
        assert_eq!(module.decision, None, "not an audited transition");
    }
}

#[test]
fn guard_paused_module_does_not_resume_before_the_cooldown() {
    let module = Module {
        in_band_since_ms: Some(T0 + MIN),
        ..paused_by(guard_cause())
    };

    let decision = next(&module, &at(T0 + MIN + COOLDOWN_MS - 1, &healthy()));

    assert_eq!(
        note(&decision),
        "back in band; cooling down before resuming"
    );
}

#[test]
fn guard_paused_module_resumes_after_the_cooldown_back_in_band() {
    let module = Module {
        in_band_since_ms: Some(T0 + MIN),
        ..paused_by(guard_cause())
    };

    let decision = next(&module, &at(T0 + MIN + COOLDOWN_MS, &cannot_tell()));

    assert_eq!(
        decision,
        Decision::Resume {
            reason: "complaint back in band for 1m".into()
        }
    );
}

#[test]
fn guard_paused_module_waits_while_telemetry_is_broken() {
    let decision = next(
        &paused_by(guard_cause()),
        &at(T0 + 2 * GRACE_MS, &broken_telemetry()),
    );

    assert!(!decision.changes_state(), "{decision:?}");
}

#[test]
fn guard_paused_module_restarts_its_cooldown_when_it_leaves_the_band_again() {
    // Back in band at +1m, out again at +2m, back at +3m: the cooldown counts from +3m.
    let mut module = paused_by(guard_cause());
    let back = next(&module, &at(T0 + MIN, &healthy()));
    World::at(T0 + MIN, 5.0).apply(&mut module, &back);
    let left = next(&module, &at(T0 + 2 * MIN, &out_of_band()));
    let rollout = World::at(T0 + 2 * MIN, 5.0).apply(&mut module, &left);
    let back_again = next(&module, &at(T0 + 3 * MIN, &healthy()));
    World::at(T0 + 3 * MIN, 5.0).apply(&mut module, &back_again);

    let early = next(&module, &at(T0 + 3 * MIN + COOLDOWN_MS - 1, &healthy()));
    let on_time = next(&module, &at(T0 + 3 * MIN + COOLDOWN_MS, &healthy()));

    assert_eq!(left, Decision::LeftBand);
    assert_eq!(rollout, None);
    assert_eq!(module.decision, None, "not an audited transition");
    assert_eq!(back_again, Decision::BackInBand);
    assert_eq!(module.in_band_since_ms, Some(T0 + 3 * MIN));
    assert!(!early.changes_state(), "{early:?}");
    assert!(matches!(on_time, Decision::Resume { .. }), "{on_time:?}");
}

#[test]
fn leaving_the_band_only_forgets_since_when_it_was_in_band() {
    let mut module = Module {
        in_band_since_ms: Some(T0 + MIN),
        ..paused_by(guard_cause())
    };
    let before = module.clone();

    let rollout = World::at(T0 + 2 * MIN, 5.0).apply(&mut module, &Decision::LeftBand);

    assert_eq!(rollout, None);
    assert_eq!(
        module,
        Module {
            in_band_since_ms: None,
            ..before
        }
    );
}

#[test]
fn a_flapping_guard_still_rolls_back_once_its_grace_is_over() {
    let module = Module {
        in_band_since_ms: Some(T0 + MIN),
        ..paused_by(guard_cause())
    };

    let decision = next(&module, &at(T0 + GRACE_MS, &out_of_band()));

    assert!(
        matches!(decision, Decision::Rollback { .. }),
        "{decision:?}"
    );
}

// ---------------------------------------------------------------- data-quality and operator pause

#[test]
fn data_quality_pause_resumes_as_soon_as_telemetry_is_sound() {
    for verdict in [healthy(), cannot_tell()] {
        let decision = next(&paused_by(PauseCause::DataQuality), &at(T0 + 1, &verdict));

        assert_eq!(
            decision,
            Decision::Resume {
                reason: "telemetry is sound again".into()
            }
        );
    }
}

#[test]
fn data_quality_pause_holds_while_telemetry_is_broken() {
    let decision = next(
        &paused_by(PauseCause::DataQuality),
        &at(T0 + 10 * GRACE_MS, &broken_telemetry()),
    );

    assert_eq!(note(&decision), "paused");
}

#[test]
fn operator_paused_module_never_resumes_by_itself() {
    let module = paused_by(PauseCause::Operator);
    for verdict in [healthy(), cannot_tell(), out_of_band(), broken_telemetry()] {
        for now in [T0 + 1, T0 + GRACE_MS, T0 + 1000 * GRACE_MS] {
            let decision = next(&module, &at(now, &verdict));

            assert_eq!(
                decision,
                Decision::Wait {
                    note: Some("paused".into())
                }
            );
        }
    }
}

// ---------------------------------------------------------------- held, completed, rolled back

#[test]
fn held_module_is_never_advanced_by_the_controller() {
    let module = in_state(ModuleState::Held);
    for verdict in [healthy(), cannot_tell(), broken_telemetry()] {
        let decision = next(&module, &at(T0 + 1000 * BAKE_MS, &verdict));

        assert_eq!(
            note(&decision),
            "held by hand: resume to let the controller ramp it"
        );
    }
}

#[test]
fn a_basic_breach_pauses_a_held_module_and_the_cooldown_returns_it_to_held() {
    let mut module = in_state(ModuleState::Held);

    let pause = next(&module, &at(T0 + MIN, &out_of_band()));
    assert!(
        matches!(
            &pause,
            Decision::Pause {
                cause: PauseCause::Guard {
                    from_held: true,
                    ..
                },
                ..
            }
        ),
        "{pause:?}"
    );
    World::at(T0 + MIN, 7.0).apply(&mut module, &pause);
    assert_eq!(module.state, ModuleState::Paused);

    let back = next(&module, &at(T0 + 2 * MIN, &healthy()));
    World::at(T0 + 2 * MIN, 7.0).apply(&mut module, &back);
    let resume = next(&module, &at(T0 + 2 * MIN + COOLDOWN_MS, &healthy()));
    let rollout = World::at(T0 + 2 * MIN + COOLDOWN_MS, 7.0).apply(&mut module, &resume);

    assert_eq!(
        module.state,
        ModuleState::Held,
        "back to the hold, not ramping"
    );
    assert_eq!(rollout, None, "the hand-set percentage is kept");
}

#[test]
fn a_held_module_still_out_of_band_after_grace_rolls_back() {
    let mut module = in_state(ModuleState::Held);
    let pause = next(&module, &at(T0, &out_of_band()));
    World::at(T0, 7.0).apply(&mut module, &pause);

    let decision = next(&module, &at(T0 + GRACE_MS, &out_of_band()));

    assert!(
        matches!(decision, Decision::Rollback { .. }),
        "{decision:?}"
    );
}

#[test]
fn a_basic_breach_during_a_data_quality_pause_starts_the_guard_s_grace() {
    let module = paused_by(PauseCause::DataQuality);

    let decision = next(&module, &at(T0 + 5 * MIN, &out_of_band()));

    assert!(
        matches!(
            &decision,
            Decision::Pause {
                cause: PauseCause::Guard {
                    from_held: false,
                    ..
                },
                ..
            }
        ),
        "{decision:?}"
    );
    let mut module = module;
    World::at(T0 + 5 * MIN, 5.0).apply(&mut module, &decision);
    assert_eq!(
        module.paused_ms,
        Some(T0 + 5 * MIN),
        "the grace counts from now"
    );
}

#[test]
fn resuming_an_operator_pause_after_a_hold_keeps_the_hand_set_percentage() {
    // Held at 10% while on stage 1 (5%), then paused by an operator.
    let mut module = in_state(ModuleState::Held);
    let pause = command(&module, Command::Pause, "lunch").unwrap();
    World::at(T0, 10.0).apply(&mut module, &pause);

    let rollout = World::at(T0 + MIN, 10.0).apply(&mut module, &resume());

    assert_eq!(module.state, ModuleState::Ramping);
    assert_eq!(rollout, None, "10% is kept: no users taken away");
    assert_eq!(module.stage, Some(1));
}

#[test]
fn completed_module_stays_completed_unless_a_core_guard_breaches() {
    let module = in_state(ModuleState::Completed);
    for verdict in [healthy(), cannot_tell(), out_of_band(), broken_telemetry()] {
        assert_eq!(
            next(&module, &ready(&verdict)),
            Decision::Wait { note: None }
        );
    }
}

#[test]
fn rolled_back_module_never_re_ramps_by_itself_whatever_the_verdict() {
    let module = in_state(ModuleState::RolledBack);
    for verdict in every_verdict() {
        for now in [T0, T0 + BAKE_MS, T0 + 1000 * GRACE_MS] {
            let decision = next(&module, &at(now, &verdict));

            assert_eq!(decision, Decision::Wait { note: None });
        }
    }
}

// ---------------------------------------------------------------- operator commands

fn applies(cmd: Command) -> Vec<ModuleState> {
    STATES
        .into_iter()
        .filter(|s| command(&in_state(*s), cmd, "ops").is_some())
        .collect()
}

#[test]
fn operator_pause_applies_to_ramping_and_held_modules_only() {
    use ModuleState::*;
    assert_eq!(applies(Command::Pause), [Ramping, Held]);
    assert_eq!(
        command(&in_state(Ramping), Command::Pause, "incident 42"),
        Some(Decision::Pause {
            cause: PauseCause::Operator,
            reason: "incident 42".into(),
            numbers: json!({}),
        })
    );
}

#[test]
fn operator_resume_applies_to_paused_held_and_rolled_back_modules_only() {
    use ModuleState::*;
    assert_eq!(applies(Command::Resume), [Paused, Held, RolledBack]);
    assert_eq!(
        command(&in_state(RolledBack), Command::Resume, "fixed"),
        Some(Decision::Resume {
            reason: "fixed".into()
        })
    );
}

#[test]
fn operator_rollback_applies_to_ramping_paused_held_and_completed_modules_only() {
    use ModuleState::*;
    assert_eq!(
        applies(Command::Rollback),
        [Ramping, Paused, Held, Completed]
    );
    assert_eq!(
        command(&in_state(Completed), Command::Rollback, "bad"),
        Some(Decision::Rollback {
            reason: "bad".into(),
            numbers: json!({}),
        })
    );
}

// ---------------------------------------------------------------- apply

#[test]
fn waiting_changes_nothing() {
    let mut module = ramping(2);
    let before = module.clone();

    let rollout = World::at(T0 + 1, 25.0).apply(&mut module, &Decision::Wait { note: None });

    assert_eq!(rollout, None);
    assert_eq!(module, before);
}

#[test]
fn advancing_sets_the_next_percentage_new_baselines_and_carries_the_stage_evidence() {
    let mut module = ramping(1);
    let mut world = World::at(T0 + BAKE_MS, 5.0);
    world.stage_evidence = BTreeMap::from([
        ("complaint".to_owned(), 0.5),
        ("payment_error".to_owned(), -1.25),
    ]);

    let rollout = world.apply(&mut module, &Decision::Advance { to: 2 });

    assert_eq!(rollout, Some(pct(25.0)));
    assert_eq!(module.stage, Some(2));
    assert_eq!(module.stage_started_ms, Some(T0 + BAKE_MS));
    assert_eq!(module.exposures_at_stage_start, 9_000);
    assert_eq!(module.stage_baseline, world.counts);
    assert_eq!(
        module.module_baseline,
        Counts::new(),
        "kept since the start"
    );
    assert_eq!(
        module.started_ms,
        Some(T0 - 60 * MIN),
        "kept since the start"
    );
    assert_eq!(
        module.evidence,
        BTreeMap::from([
            ("complaint".to_owned(), 0.7 + 0.5),
            ("payment_error".to_owned(), -1.25),
        ])
    );
    assert_eq!(module.reason.as_deref(), Some("ramping: stage 3"));
}

#[test]
fn completing_keeps_the_rollout() {
    let mut module = ramping(4);

    let rollout = World::at(T0 + BAKE_MS, 100.0).apply(&mut module, &Decision::Complete);

    assert_eq!(rollout, None);
    assert_eq!(module.state, ModuleState::Completed);
    assert_eq!(module.stage, Some(4));
}

#[test]
fn pausing_keeps_the_rollout_and_records_the_cause_and_time() {
    let mut module = Module {
        in_band_since_ms: Some(T0),
        ..ramping(2)
    };
    let decision = next(&module, &at(T0 + 1, &out_of_band()));

    let rollout = World::at(T0 + 1, 25.0).apply(&mut module, &decision);

    assert_eq!(rollout, None);
    assert_eq!(module.state, ModuleState::Paused);
    assert_eq!(module.paused, Some(guard_cause()));
    assert_eq!(module.paused_ms, Some(T0 + 1));
    assert_eq!(module.in_band_since_ms, None);
    assert_eq!(
        module.reason.as_deref(),
        Some("basic guard complaint out of band")
    );
    assert_eq!(module.stage, Some(2), "the stage is kept for the resume");
}

#[test]
fn rolling_back_sets_the_rollout_to_zero_and_forgets_the_pause() {
    let mut module = Module {
        in_band_since_ms: Some(T0 + MIN),
        ..paused_by(guard_cause())
    };
    let decision = next(&module, &at(T0 + GRACE_MS, &core_breach()));

    let rollout = World::at(T0 + GRACE_MS, 5.0).apply(&mut module, &decision);

    assert_eq!(rollout, Some(Percentage::ZERO));
    assert_eq!(module.state, ModuleState::RolledBack);
    assert_eq!(
        (
            module.paused.clone(),
            module.paused_ms,
            module.in_band_since_ms
        ),
        (None, None, None)
    );
    assert_eq!(
        module.reason.as_deref(),
        Some("core guard payment_error: new rate 0.015 vs old 0.005")
    );
}

#[test]
fn rolling_back_a_flag_already_at_zero_reports_no_rollout_change() {
    let mut module = in_state(ModuleState::Held);
    let decision = command(&module, Command::Rollback, "ops").unwrap();

    let rollout = World::at(T0, 0.0).apply(&mut module, &decision);

    assert_eq!(rollout, None);
    assert_eq!(module.state, ModuleState::RolledBack);
}

#[test]
fn resuming_a_paused_module_re_bakes_the_same_stage() {
    let mut module = paused_by(PauseCause::Operator);
    let world = World::at(T0 + 5 * MIN, 5.0);

    let rollout = world.apply(&mut module, &resume());

    assert_eq!(rollout, None, "already at the stage's 5%");
    assert_eq!(module.state, ModuleState::Ramping);
    assert_eq!(module.stage, Some(1));
    assert_eq!(module.stage_started_ms, Some(T0 + 5 * MIN));
    assert_eq!((module.paused.clone(), module.paused_ms), (None, None));
    assert_eq!(module.evidence["complaint"], 0.7 + 0.5);
    assert_eq!(module.reason.as_deref(), Some("resumed: ops said so"));
}

#[test]
fn resuming_a_rolled_back_module_ramps_again_from_stage_zero_with_fresh_evidence() {
    let mut module = in_state(ModuleState::RolledBack);
    let world = World::at(T0 + 120 * MIN, 0.0);

    let rollout = world.apply(&mut module, &resume());

    assert_eq!(rollout, Some(pct(1.0)));
    assert_eq!(module.state, ModuleState::Ramping);
    assert_eq!(module.stage, Some(0));
    assert_eq!(module.started_ms, Some(T0 + 120 * MIN));
    assert_eq!(module.module_baseline, world.counts);
    assert_eq!(module.stage_baseline, world.counts);
    assert!(module.evidence.is_empty(), "{:?}", module.evidence);
}

#[test]
fn the_same_users_come_back_first_after_a_rollback_and_a_resume() {
    // The machine never touches the flag's salt, so the first stage after a resume buckets
    // exactly the users of the first stage before the rollback.
    let mut module = pending();
    let first = World::at(T0, 0.0)
        .apply(&mut module, &Decision::Start)
        .unwrap();
    let rollback = command(&module, Command::Rollback, "x").unwrap();
    World::at(T0 + 1, 1.0).apply(&mut module, &rollback);
    let again = World::at(T0 + 2, 0.0)
        .apply(&mut module, &resume())
        .unwrap();
    let cohort = |p: Percentage| -> Vec<usize> {
        (0..20_000)
            .filter(|u| in_rollout("qr-ordering", &format!("user-{u}"), p))
            .collect()
    };

    assert_eq!(first, again);
    assert_eq!(cohort(first), cohort(again));
    assert!(!cohort(again).is_empty());
}

#[test]
fn resuming_a_held_module_bakes_at_the_hand_set_percentage_as_the_stage_it_has_reached() {
    // (hand-set %, expected stage, expected new rollout): never a jump up, never users taken away.
    let cases = [
        (0.5, 0, Some(1.0)),
        (5.0, 1, None),
        (10.0, 1, None),
        (60.0, 3, None),
        (100.0, 4, None),
    ];
    for (hand_set, stage, expected) in cases {
        let mut module = in_state(ModuleState::Held);

        let rollout = World::at(T0 + 1, hand_set).apply(&mut module, &resume());

        assert_eq!(module.state, ModuleState::Ramping, "hand-set {hand_set}");
        assert_eq!(module.stage, Some(stage), "hand-set {hand_set}");
        assert_eq!(rollout, expected.map(pct), "hand-set {hand_set}");
        assert_eq!(module.stage_started_ms, Some(T0 + 1));
    }
}

#[test]
fn resuming_a_held_module_above_a_short_plan_keeps_its_percentage_on_the_last_stage() {
    let mut module = Module {
        stages: Stages {
            percentages: vec![pct(1.0), pct(25.0)],
            ..plan()
        },
        ..in_state(ModuleState::Held)
    };

    let rollout = World::at(T0 + 1, 40.0).apply(&mut module, &resume());

    assert_eq!(
        (module.stage, rollout),
        (Some(1), None),
        "40% is kept: resuming never takes users away"
    );
}

#[test]
fn the_decision_record_holds_the_transition_and_its_numbers() {
    let mut module = ramping(0);
    let world = World::at(T0 + BAKE_MS, 1.0);
    world.apply(&mut module, &Decision::Advance { to: 1 });
    let advance = module.decision.clone().unwrap();
    let breach = next(&module, &at(T0 + BAKE_MS + 1, &core_breach()));
    World::at(T0 + BAKE_MS + 1, 5.0).apply(&mut module, &breach);
    let rollback = module.decision.clone().unwrap();

    assert_eq!(
        (
            advance.action.as_str(),
            advance.actor.as_str(),
            advance.at_ms
        ),
        ("advance", "controller", T0 + BAKE_MS)
    );
    assert_eq!(advance.reason, "ramping: stage 2");
    assert_eq!(
        advance.numbers,
        json!({
            "from": {"state": "ramping", "stage": 0},
            "to": {"state": "ramping", "stage": 1},
            "rollout_before": 1.0,
            "rollout_after": 5.0,
            "exposures_total": 9_000,
            "guards": null,
        })
    );
    assert_eq!(rollback.action, "rollback");
    assert_eq!(
        rollback.numbers["from"],
        json!({"state": "ramping", "stage": 1})
    );
    assert_eq!(
        rollback.numbers["to"],
        json!({"state": "rolled_back", "stage": 1})
    );
    assert_eq!(rollback.numbers["rollout_after"], 0.0);
    assert_eq!(
        rollback.numbers["guards"]["guard"]["metric"],
        "payment_error"
    );
}

#[test]
fn every_decision_but_wait_changes_state_and_has_an_audit_name() {
    let decisions = [
        (Decision::Wait { note: None }, "wait", false),
        (Decision::Start, "start", true),
        (Decision::Advance { to: 1 }, "advance", true),
        (Decision::Complete, "complete", true),
        (
            command(&ramping(0), Command::Pause, "x").unwrap(),
            "pause",
            true,
        ),
        (resume(), "resume", true),
        (
            command(&ramping(0), Command::Rollback, "x").unwrap(),
            "rollback",
            true,
        ),
        (Decision::BackInBand, "in_band", true),
        (Decision::LeftBand, "out_of_band", true),
    ];
    for (decision, action, changes) in decisions {
        assert_eq!(
            (decision.action(), decision.changes_state()),
            (action, changes)
        );
    }
}

// ---------------------------------------------------------------- property check

/// Knuth's MMIX LCG: tiny, seeded, good enough to shuffle test sequences.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

fn random_verdict(rng: &mut Lcg) -> Verdict {
    match rng.below(8) {
        0..=2 => healthy(),
        3 => cannot_tell(),
        4 => broken_telemetry(),
        5 => core_breach(),
        _ => out_of_band_with_grace([0, 5 * MIN, GRACE_MS][rng.below(3) as usize]),
    }
}

#[test]
fn no_sequence_re_ramps_a_rolled_back_module_without_an_operator_and_rollouts_stay_on_plan() {
    let mut rng = Lcg(0x5eed_2024);
    let (mut rollbacks, mut operator_resumes, mut completions) = (0, 0, 0);
    for sequence in 0..400 {
        let mut module = pending();
        let (mut now, mut exposures, mut rollout) = (T0, 0u64, Percentage::ZERO);
        for step in 0..150 {
            let was_rolled_back = module.state == ModuleState::RolledBack;
            let mut by_operator_resume = false;
            let decision = match rng.below(20) {
                0 => command(&module, Command::Pause, "ops"),
                1 => command(&module, Command::Rollback, "ops"),
                2 => {
                    let d = command(&module, Command::Resume, "ops");
                    by_operator_resume = d.is_some();
                    d
                }
                3 if matches!(module.state, ModuleState::Ramping | ModuleState::Paused) => {
                    // A hand-set percentage holds the module (as controller::commands::hold_for_manual_rollout does).
                    module.state = ModuleState::Held;
                    module.paused = None;
                    module.paused_ms = None;
                    rollout = Percentage::from_millis(rng.below(100_001) as u32).unwrap();
                    None
                }
                _ => {
                    now += rng.below(2 * BAKE_MS);
                    exposures += rng.below(2 * MIN_EXPOSURES);
                    let verdict = random_verdict(&mut rng);
                    let inputs = Inputs {
                        now_ms: now,
                        verdict: &verdict,
                        exposures_total: exposures,
                        may_start: rng.below(4) > 0,
                        cooldown_ms: [0, COOLDOWN_MS][rng.below(2) as usize],
                    };
                    Some(next(&module, &inputs))
                }
            };
            let Some(decision) = decision else { continue };
            let world = World {
                now_ms: now,
                counts: counts(exposures, 50 * exposures, 0),
                stage_evidence: BTreeMap::from([("complaint".to_owned(), 0.1)]),
                rollout,
            };
            let changed = world.apply(&mut module, &decision);
            let at = format!("sequence {sequence} step {step}: {decision:?}");

            if was_rolled_back && !by_operator_resume {
                assert_eq!(module.state, ModuleState::RolledBack, "{at}");
            }
            if let Some(p) = changed {
                assert!(
                    p.is_zero() || module.stages.percentages.contains(&p),
                    "{at}: rollout {p} is neither 0 nor a stage"
                );
                assert_eq!(p.is_zero(), module.state == ModuleState::RolledBack, "{at}");
                rollout = p;
            }
            if module.state == ModuleState::Ramping {
                // On its stage's percentage, or (resumed from a hand-set percentage) between
                // that stage and the next one.
                let stage = module.stage.expect("a ramping module has a stage");
                assert!(module.stage_started_ms.is_some(), "{at}");
                let floor = module.stages.percentages[stage];
                let ceiling = module.stages.percentages.get(stage + 1).copied();
                assert!(
                    rollout >= floor && ceiling.is_none_or(|c| rollout < c),
                    "{at}: rollout {rollout} off stage {stage}"
                );
            }
            if module.state == ModuleState::RolledBack {
                assert!(rollout.is_zero(), "{at}");
            }
            rollbacks += usize::from(!was_rolled_back && module.state == ModuleState::RolledBack);
            operator_resumes += usize::from(was_rolled_back && by_operator_resume);
            completions += usize::from(matches!(decision, Decision::Complete));
        }
    }
    // The walk must actually visit the interesting transitions to prove anything.
    assert!(rollbacks > 1_000, "{rollbacks} rollbacks");
    assert!(
        operator_resumes > 100,
        "{operator_resumes} operator resumes"
    );
    assert!(completions > 5, "{completions} completions");
}

#[test]
fn no_verdict_sequence_resumes_a_guard_paused_module_before_a_whole_cooldown_in_band() {
    let mut rng = Lcg(0xf1a9_b0a7);
    let mut guard_resumes = 0;
    for sequence in 0..300 {
        // Never enough exposures to advance: the module only ramps, pauses and resumes.
        let mut module = ramping(0);
        let mut now = T0;
        // The first in-band reading since the last out-of-band one.
        let mut in_band_from: Option<u64> = None;
        for step in 0..200 {
            now += rng.below(COOLDOWN_MS);
            let verdict = match rng.below(10) {
                0..=3 => out_of_band_with_grace(1_000 * GRACE_MS),
                4 => broken_telemetry(),
                5 => cannot_tell(),
                _ => healthy(),
            };
            match verdict {
                Verdict::Pause { .. } => in_band_from = None,
                Verdict::Healthy | Verdict::CannotTell { .. } => {
                    in_band_from.get_or_insert(now);
                }
                _ => {}
            }
            let guard_paused = matches!(module.paused, Some(PauseCause::Guard { .. }));
            let inputs = Inputs {
                exposures_total: 0,
                ..at(now, &verdict)
            };

            let decision = next(&module, &inputs);
            World::at(now, 1.0).apply(&mut module, &decision);

            if guard_paused && matches!(decision, Decision::Resume { .. }) {
                let since = in_band_from.expect("resumed without an in-band reading");
                assert!(
                    now - since >= COOLDOWN_MS,
                    "sequence {sequence} step {step}: resumed {} ms after coming back in band",
                    now - since
                );
                guard_resumes += 1;
            }
        }
    }
    assert!(guard_resumes > 100, "{guard_resumes} guard resumes");
}
