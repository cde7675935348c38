//! Unit tests of the rehearsal core: reproducible, calibrated, powerful, strict on input.

use super::*;

const POLICY: &str = r#"
name = "checkout"
false_rollback_rate = 0.05
confidence = 0.95

[[guard]]
metric = "payment_error"
class = "core"
max_relative_increase = 0.1

[stages]
percentages = [5.0, 25.0, 50.0, 100.0]
min_duration = "5m"
"#;

fn policy() -> Policy {
    Policy::from_toml(POLICY).unwrap()
}

fn request(runs: u64, seed: u64) -> RehearsalRequest {
    RehearsalRequest {
        traffic_per_minute: 2000.0,
        base: BTreeMap::from([("payment_error".to_owned(), 0.01)]),
        runs: Some(runs),
        seed: Some(seed),
        max_seconds: Some(60.0),
    }
}

fn report(runs: u64, seed: u64) -> RehearsalReport {
    rehearse(&Plan::new(&policy(), &request(runs, seed)).unwrap())
}

#[test]
fn the_same_seed_gives_the_same_figures_and_another_seed_others() {
    let mut a = report(40, 7);
    let mut b = report(40, 7);
    let mut c = report(40, 8);
    assert_eq!(a.runs_completed, 40);
    assert!(!a.budget_reached);
    a.elapsed_ms = 0;
    b.elapsed_ms = 0;
    c.elapsed_ms = 0;
    assert_eq!(a, b);
    assert_ne!(a.regressions, c.regressions);
}

#[test]
fn aa_stays_within_the_budget_and_a_2x_regression_is_caught_far_more_often_than_125x() {
    let r = report(200, 1);
    assert_eq!(r.aa.runs, 200);
    // The false-rollback rate is not significantly above the policy's 5 % budget.
    assert!(
        r.aa.false_rollback_ci95[0] <= 0.05,
        "A/A false rollbacks {:?}",
        r.aa
    );
    assert!(r.aa.completed > 150, "{:?}", r.aa);
    assert!(r.aa.ramp_minutes.median.unwrap() >= 20.0, "{:?}", r.aa);
    let share = |f: f64| {
        r.regressions
            .iter()
            .find(|g| g.factor == f)
            .unwrap()
            .clone()
    };
    let (low, high) = (share(1.25), share(2.0));
    assert!(
        high.caught_share > 0.9 && high.caught_share > low.caught_share + 0.2,
        "1.25×: {low:?}, 2×: {high:?}"
    );
    assert_eq!(high.by_rollback, high.caught, "a core guard rolls back");
    // A 2× regression is caught sooner than a 1.25× one.
    assert!(high.minutes_to_catch.median <= low.minutes_to_catch.median);
}

#[test]
fn a_basic_guard_catches_by_pausing() {
    let source = POLICY.replace("class = \"core\"", "class = \"basic\"\ngrace = \"2h\"");
    let p = Policy::from_toml(&source).unwrap();
    let r = rehearse(&Plan::new(&p, &request(40, 3)).unwrap());
    let high = r.regressions.iter().find(|g| g.factor == 2.0).unwrap();
    assert!(high.caught > 30, "{high:?}");
    assert_eq!(high.by_pause, high.caught);
}

#[test]
fn a_budget_stops_early_and_says_so() {
    let mut req = request(10_000, 1);
    req.max_seconds = Some(0.05);
    let r = rehearse(&Plan::new(&policy(), &req).unwrap());
    assert!(r.budget_reached);
    assert!(r.runs_completed < 10_000);
    assert_eq!(r.aa.runs, r.runs_completed);
}

#[test]
fn a_stage_too_small_for_its_traffic_is_reported() {
    let mut req = request(1, 1);
    req.traffic_per_minute = 0.5;
    req.base.insert("payment_error".into(), 0.0001);
    let r = rehearse(&Plan::new(&policy(), &req).unwrap());
    assert!(!r.never_detectable.is_empty(), "{r:?}");
    assert!(r.never_detectable[0].starts_with("stage 1 (5%): payment_error"));
    // At 2000/min the same stages are detectable, and say how long they need.
    let r = report(1, 1);
    assert!(r.never_detectable.is_empty());
    let first = &r.stage_requirements[0];
    assert!(
        first.within_horizon && first.minutes_needed.unwrap() > 0.0,
        "{first:?}"
    );
}

#[test]
fn bad_input_names_the_field() {
    let p = policy();
    let field = |f: &dyn Fn(&mut RehearsalRequest)| {
        let mut req = request(10, 1);
        f(&mut req);
        Plan::new(&p, &req).unwrap_err().field
    };
    assert_eq!(field(&|r| r.traffic_per_minute = 0.0), "traffic_per_minute");
    assert_eq!(
        field(&|r| r.traffic_per_minute = f64::NAN),
        "traffic_per_minute"
    );
    assert_eq!(field(&|r| r.runs = Some(0)), "runs");
    assert_eq!(field(&|r| r.runs = Some(MAX_RUNS + 1)), "runs");
    assert_eq!(field(&|r| r.max_seconds = Some(61.0)), "max_seconds");
    assert_eq!(
        field(&|r| {
            r.base.insert("latency".into(), 0.1);
        }),
        "base.latency"
    );
    assert_eq!(
        field(&|r| {
            r.base.insert("payment_error".into(), 1.0);
        }),
        "base.payment_error"
    );
    assert_eq!(field(&|r| r.base.clear()), "base.payment_error");
}
