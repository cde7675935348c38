//! Tests of `aggregate.rs`: saturation, persistence, raising to the global totals, sketches.

use super::*;
use proptest::prelude::*;

#[test]
fn counts_stop_at_the_ceiling_instead_of_wrapping() {
    let a = Aggregates::default();
    let v = a.variant("f", "on");
    v.add_totals("exposure", 3, 0.0, 0);
    v.add_totals("exposure", u64::MAX - 2, 0.0, 0);
    v.add("latency", u64::MAX - 1, Some(f64::MAX));
    v.add("latency", 5, Some(f64::MAX));

    assert_eq!(a.totals("f", "on", "exposure").count, u64::MAX);
    let latency = a.totals("f", "on", "latency");
    assert_eq!((latency.count, latency.valued), (u64::MAX, u64::MAX));
    assert_eq!(latency.sum, f64::MAX, "the sum stays finite");
    v.add_totals("latency", 1, f64::NEG_INFINITY, 1);
    assert_eq!(a.totals("f", "on", "latency").sum, 0.0);
}

#[test]
fn an_infinite_sum_saved_by_an_older_version_restores_as_zero() {
    // serde_json writes an infinite f64 as `null`.
    let saved: SavedAggregates = serde_json::from_str(
        r#"{"series": {"f": {"on": {"latency": {"count": 4, "sum": null, "valued": 4}}}}, "last_signal_ms": {"f": 7}}"#,
    )
    .unwrap();

    let a = Aggregates::restore(saved);

    assert_eq!(
        a.totals("f", "on", "latency"),
        MetricTotals {
            count: 4,
            sum: 0.0,
            valued: 4
        }
    );
}

proptest! {
    /// Whatever is added, a count never decreases, equals the true total up to the
    /// ceiling, and survives save and restore; sums stay finite.
    #[test]
    fn counts_never_decrease_and_sums_stay_finite(
        adds in prop::collection::vec(
            (prop_oneof![1..1_000_000u64, Just(u64::MAX / 2), Just(u64::MAX)],
             prop_oneof![Just(None), (-1e12..1e12f64).prop_map(Some), Just(Some(f64::MAX)), Just(Some(-f64::MAX))]),
            1..40,
        )
    ) {
        let a = Aggregates::default();
        let v = a.variant("f", "on");
        let (mut truth, mut last) = (0u128, 0u64);
        for (count, value) in adds {
            v.add("m", count, value);
            truth += u128::from(count);
            let t = a.totals("f", "on", "m");
            prop_assert!(t.count >= last);
            prop_assert_eq!(u128::from(t.count), truth.min(u128::from(u64::MAX)));
            prop_assert!(t.sum.is_finite());
            prop_assert!(t.valued <= t.count);
            last = t.count;
        }
        let restored = Aggregates::restore(a.save());
        prop_assert_eq!(restored.totals("f", "on", "m"), a.totals("f", "on", "m"));
    }
}

fn totals(count: u64, sum: f64, valued: u64) -> MetricTotals {
    MetricTotals { count, sum, valued }
}

#[test]
fn set_totals_raises_series_but_never_lowers_a_count() {
    let a = Aggregates::default();
    let v = a.variant("f", "on");
    v.add("exposure", 10, None);
    v.add("latency", 4, Some(1.0));
    v.touch(500);
    let mut global = SavedAggregates::default();
    global.add("f", "on", "exposure", totals(7, 0.0, 0)); // behind the local count
    global.add("f", "on", "latency", totals(9, 4.5, 9));
    global.add("g", "off", "errors", totals(3, 0.0, 0)); // never seen locally
    global.touch("f", 400);
    global.touch("g", 900);
    // Sketch buckets are raised like counts: 1.0 is behind (2 < 4), 0.5 is new.
    let mut behind = SavedSketch::default();
    behind.add(1.0, 2);
    behind.add(0.5, 5);
    global.add_sketch("f", "on", "latency", &behind);

    a.set_totals(&global);

    assert_eq!(a.totals("f", "on", "exposure"), totals(10, 0.0, 0));
    assert_eq!(a.totals("f", "on", "latency"), totals(9, 4.5, 9));
    assert_eq!(a.totals("g", "off", "errors"), totals(3, 0.0, 0));
    assert_eq!(a.last_signal_ms("f"), Some(500));
    assert_eq!(a.last_signal_ms("g"), Some(900));
    a.set_totals(&global);
    assert_eq!(
        a.save(),
        {
            let mut expected = SavedAggregates::default();
            expected.add("f", "on", "exposure", totals(10, 0.0, 0));
            expected.add("f", "on", "latency", totals(9, 4.5, 9));
            expected.add("g", "off", "errors", totals(3, 0.0, 0));
            expected.touch("f", 500);
            expected.touch("g", 900);
            let mut sketch = SavedSketch::default();
            sketch.add(1.0, 4);
            sketch.add(0.5, 5);
            expected.add_sketch("f", "on", "latency", &sketch);
            expected
        },
        "applying the same totals twice changes nothing"
    );
}

#[test]
fn merge_adds_series_saturating_and_keeps_the_latest_signal() {
    let mut a = SavedAggregates::default();
    a.add("f", "on", "latency", totals(u64::MAX - 1, f64::MAX, 2));
    a.touch("f", 5);
    let mut b = SavedAggregates::default();
    b.add("f", "on", "latency", totals(5, f64::MAX, 1));
    b.add("f", "off", "exposure", totals(1, 0.0, 0));
    b.touch("f", 3);
    assert!(SavedAggregates::default().is_empty() && !b.is_empty());

    a.merge(&b);

    let series: Vec<_> = a.iter().map(|(f, v, m, t)| (f, v, m, *t)).collect();
    assert_eq!(
        series,
        [
            ("f", "off", "exposure", totals(1, 0.0, 0)),
            ("f", "on", "latency", totals(u64::MAX, f64::MAX, 3)),
        ]
    );
    assert_eq!(a.last_signals().collect::<Vec<_>>(), [("f", 5)]);
}

#[test]
fn totals_accumulate_and_survive_save_and_restore() {
    let a = Aggregates::default();
    let v = a.variant("f", "on");
    v.add("exposure", 950, None);
    v.add("latency", 2, Some(0.25));
    v.touch(1234);

    let restored = Aggregates::restore(a.save());

    for agg in [&a, &restored] {
        assert_eq!(agg.totals("f", "on", "exposure").count, 950);
        assert_eq!(
            agg.totals("f", "on", "latency"),
            MetricTotals {
                count: 2,
                sum: 0.5,
                valued: 2
            }
        );
        assert_eq!(agg.totals("f", "off", "exposure").count, 0);
        assert_eq!(agg.last_signal_ms("f"), Some(1234));
        let sketch = agg
            .sketch("f", "on", "latency")
            .expect("a valued series has a sketch");
        assert_eq!(
            sketch.quantile(0.5).map(|q| (q - 0.25).abs() < 0.0025),
            Some(true)
        );
        assert_eq!(agg.sketch("f", "on", "exposure"), None);
    }
}
