//! Unit and property tests of the guards' analysis (see mod.rs).

use super::*;
use proptest::prelude::*;

const T0: u64 = 1_000_000;

fn flag() -> FlagDef {
    serde_json::from_value(json!({
        "key": "points", "type": "boolean", "variants": {"off": false, "on": true},
        "off_variant": "off", "on_variant": "on", "rollout": 5.0
    }))
    .unwrap()
}

fn policy() -> Policy {
    Policy::from_toml(
        r#"
        name = "steady"
        [[guard]]
        metric = "complaint"
        class = "basic"
        max_relative_increase = 0.25
        max_rate = 0.01
        [[guard]]
        metric = "data_loss"
        class = "core"
        max_count = 0
        "#,
    )
    .unwrap()
}

/// `[on exposure, off exposure, on complaint, off complaint]`.
fn counts(c: [u64; 4]) -> Counts {
    let row = |exposure: u64, complaint: u64| {
        [
            ("exposure".to_owned(), exposure),
            ("complaint".to_owned(), complaint),
        ]
        .into()
    };
    [
        ("on".to_owned(), row(c[0], c[2])),
        ("off".to_owned(), row(c[1], c[3])),
    ]
    .into()
}

/// Aggregates holding `now`, a module whose stages began at `baseline`, read 5 s in.
fn reading(now: [u64; 4], baseline: [u64; 4]) -> Reading {
    let signals = Aggregates::default();
    for (variant, exposure, complaint) in [("on", now[0], now[2]), ("off", now[1], now[3])] {
        let v = signals.variant("points", variant);
        v.add_totals("exposure", exposure, 0.0, 0);
        v.add_totals("complaint", complaint, 0.0, 0);
    }
    let module = crate::release::hand_module(&flag(), counts(baseline), T0);
    verdict(Some(&policy()), &signals, &module, &flag(), T0 + 5_000)
}

#[test]
fn saturated_exposures_raise_no_sample_ratio_mismatch_and_cannot_tell() {
    // A correct 5 % split, but the new variant's count stopped at the ceiling a million in:
    // the window reads 0.1 % on the new variant.
    let r = reading(
        [u64::MAX, 1_000_000_000, 0, 0],
        [u64::MAX - 1_000_000, 0, 0, 0],
    );

    assert!(
        matches!(&r.verdict, Verdict::CannotTell { reason, .. } if reason.contains("on/exposure")),
        "{:?}",
        r.verdict
    );
    assert_eq!(r.guards[0].state, "cannot_tell");
}

#[test]
fn a_saturated_event_count_still_breaches_max_count() {
    let r = reading([u64::MAX, u64::MAX, 0, 0], [0, 0, 0, 0]);
    assert!(
        matches!(r.verdict, Verdict::CannotTell { .. }),
        "{:?}",
        r.verdict
    );

    let signals = Aggregates::default();
    signals
        .variant("points", "on")
        .add_totals("data_loss", u64::MAX, 0.0, 0);
    let module = crate::release::hand_module(&flag(), Counts::new(), T0);
    let r = verdict(Some(&policy()), &signals, &module, &flag(), T0 + 5_000);
    assert!(
        matches!(r.verdict, Verdict::Rollback { .. }),
        "{:?}",
        r.verdict
    );
}

#[test]
fn a_baseline_above_the_current_count_reads_as_an_empty_window() {
    let r = reading([10, 10, 5, 5], [1_000, 50_000, 100, 100]);
    assert_eq!(r.guards[0].new, Rates::new(0, 0));
    assert_eq!(r.guards[0].old, Rates::new(0, 0));
    assert!(matches!(
        r.verdict,
        Verdict::Healthy | Verdict::CannotTell { .. }
    ));
}

#[test]
fn a_signal_stamped_after_the_reading_s_clock_does_not_underflow_the_silence() {
    let policy = Policy::from_toml(
        "name = \"eager\"\n[[guard]]\nmetric = \"complaint\"\nclass = \"basic\"\nmax_relative_increase = 0.25\nsilence_after = \"0s\"\n",
    )
    .unwrap();
    let signals = Aggregates::default();
    // A batch that arrived while the controller was reading, with a later clock.
    signals.variant("points", "on").touch(T0 + 10);
    let mut module = crate::release::hand_module(&flag(), Counts::new(), T0);
    module.state = ModuleState::Ramping;

    let r = verdict(Some(&policy), &signals, &module, &flag(), T0);

    assert!(
        matches!(&r.verdict, Verdict::DataQuality { reason, .. } if reason.contains("no signal for 0s")),
        "{:?}",
        r.verdict
    );
}

/// Counts from empty to saturated, weighted towards the extremes.
fn count() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        1..100_000u64,
        any::<u64>(),
        (0..1_000_000u64).prop_map(|d| u64::MAX - d),
        Just(u64::MAX),
    ]
}

proptest! {
    /// Whatever counts and baselines clients and restarts produce: no panic, every number
    /// of the reading finite, and no sample-ratio pause read from a saturated count.
    #[test]
    fn any_counts_give_a_finite_reading_and_no_srm_from_saturation(
        now in prop::array::uniform4(count()),
        baseline in prop::array::uniform4(count()),
    ) {
        let r = reading(now, baseline);
        for g in &r.guards {
            for x in [g.ln_evidence, g.stage_ln_evidence, g.relative_increase, g.new.rate, g.old.rate, g.rate_since_start].into_iter().flatten() {
                prop_assert!(x.is_finite(), "{:?}", g);
            }
        }
        for e in stage_evidence(&r).values() {
            prop_assert!(e.is_finite());
        }
        if let Verdict::DataQuality { numbers, .. } = &r.verdict {
            prop_assert!(now[0] != u64::MAX && now[1] != u64::MAX, "{}", numbers);
            prop_assert!(numbers["z"].as_f64().is_some_and(f64::is_finite), "{}", numbers);
        }
    }
}
