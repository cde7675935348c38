use super::*;
use proptest::prelude::*;

fn settings() -> Settings {
    Settings {
        live_window_ms: 60_000,
        max_clients: 100,
        max_changes: 8,
        target: 0.99,
        timeout_ms: 10_000,
    }
}

fn change(revision: u64, key: &str, rollback: bool, at_ms: u64) -> Change {
    Change {
        revision,
        subject: Subject::Flag,
        key: key.into(),
        action: Some(
            if rollback {
                "module.rollback"
            } else {
                "flag.update"
            }
            .into(),
        ),
        rollback,
        release: None,
        at_ms,
    }
}

fn report(id: &str, revision: u64, applied_ms_ago: u64) -> Report<'_> {
    Report {
        id,
        revision,
        applied_ms_ago,
        closing: false,
    }
}

#[test]
fn a_closing_client_stops_counting_at_once_and_keeps_its_latency_sample() {
    let mut t = Tracker::new(settings(), 4);
    for id in ["a", "b"] {
        t.report(report(id, 4, 0), 1_000);
    }
    t.change(change(5, "f", true, 2_000));
    // "a" applies revision 5 and closes in the same report; "b" stays on 4.
    let closing = Report {
        closing: true,
        ..report("a", 5, 100)
    };
    t.report(closing, 2_500);
    assert_eq!(t.live_clients(2_600), 1);
    let figures = t.latest_of_flag(2_600, "f").unwrap();
    assert_eq!((figures.live_clients, figures.confirmed), (1, 0));
    // A client that closes without ever having counted is simply not added.
    t.report(
        Report {
            closing: true,
            ..report("c", 5, 0)
        },
        2_700,
    );
    assert_eq!(t.live_clients(2_800), 1);
    // The closed id may come back (a restarted process reusing it) and counts again.
    t.report(report("a", 5, 0), 2_900);
    assert_eq!(t.live_clients(3_000), 2);
}

#[test]
fn counts_the_live_clients_that_applied_a_change_and_their_share() {
    let mut t = Tracker::new(settings(), 4);
    for id in ["a", "b", "c"] {
        t.report(report(id, 4, 0), 1_000);
    }
    t.change(change(5, "f", false, 2_000));
    t.report(report("a", 5, 0), 2_100);
    t.report(report("b", 5, 0), 2_200);
    t.report(report("c", 4, 0), 2_300);

    let f = t.latest_of_flag(2_400, "f").unwrap();
    assert_eq!((f.revision, f.live_clients, f.confirmed), (5, 3, 2));
    assert_eq!(f.share, Some(2.0 / 3.0));
    assert_eq!(f.state, ReachState::Confirming);
    assert_eq!(t.latest_of_flag(2_400, "g"), None);
}

#[test]
fn latency_runs_from_the_commit_to_the_apply_time_the_client_reports() {
    let mut t = Tracker::new(settings(), 4);
    for id in ["a", "b", "c"] {
        t.report(report(id, 4, 0), 1_000);
    }
    t.change(change(5, "f", false, 10_000));
    // Received at 12,000, 1,800 ms after applying → applied at 10,200: 200 ms.
    t.report(report("a", 5, 1_800), 12_000);
    t.report(report("b", 5, 600), 11_000); // 400 ms
    t.report(report("c", 5, 0), 12_000); // 2,000 ms
    let f = t.latest_of_flag(12_000, "f").unwrap();
    assert_eq!(f.samples, 3);
    assert_eq!((f.p50_ms, f.p99_ms), (Some(400), Some(2_000)));
}

#[test]
fn a_client_first_seen_past_a_change_is_confirmed_without_a_latency_sample() {
    let mut t = Tracker::new(settings(), 4);
    t.change(change(5, "f", false, 1_000));
    t.report(report("late", 5, 10), 5_000);
    let f = t.latest_of_flag(5_000, "f").unwrap();
    assert_eq!((f.confirmed, f.samples, f.p50_ms), (1, 0, None));
    assert_eq!(f.state, ReachState::Confirmed);
}

#[test]
fn an_apply_reported_before_the_commit_counts_as_zero_latency() {
    let mut t = Tracker::new(settings(), 4);
    t.report(report("a", 4, 0), 1_000);
    t.change(change(5, "f", false, 2_000));
    t.report(report("a", 5, 5_000), 2_500);
    assert_eq!(t.latest_of_flag(2_500, "f").unwrap().p99_ms, Some(0));
}

#[test]
fn one_jump_over_several_changes_samples_each_of_them() {
    let mut t = Tracker::new(settings(), 4);
    t.report(report("a", 4, 0), 0);
    t.change(change(5, "f", false, 1_000));
    t.change(change(6, "g", false, 2_000));
    t.report(report("a", 6, 0), 3_000);
    assert_eq!(t.latest_of_flag(3_000, "f").unwrap().p50_ms, Some(2_000));
    assert_eq!(t.latest_of_flag(3_000, "g").unwrap().p50_ms, Some(1_000));
}

#[test]
fn a_client_silent_for_the_live_window_stops_counting() {
    let mut t = Tracker::new(settings(), 4);
    t.report(report("quiet", 4, 0), 1_000);
    t.report(report("chatty", 4, 0), 1_000);
    t.change(change(5, "f", false, 2_000));
    t.report(report("chatty", 5, 0), 40_000);

    assert_eq!(t.live_clients(60_999), 2, "heard 59,999 ms ago: live");
    assert_eq!(t.live_clients(61_000), 1, "heard 60,000 ms ago: gone");
    let f = t.latest_of_flag(61_000, "f").unwrap();
    assert_eq!((f.live_clients, f.confirmed), (1, 1));
}

#[test]
fn beyond_max_clients_the_one_heard_from_longest_ago_is_evicted_and_counted() {
    let mut t = Tracker::new(
        Settings {
            max_clients: 2,
            ..settings()
        },
        4,
    );
    t.report(report("old", 4, 0), 1_000);
    t.report(report("mid", 4, 0), 2_000);
    t.report(report("old", 4, 0), 3_000); // heard again: now the newest
    t.report(report("new", 4, 0), 4_000);
    assert_eq!((t.live_clients(4_000), t.evicted()), (2, 1));
    // "mid" was evicted: reporting again makes it new (and evicts "old").
    t.report(report("mid", 4, 0), 5_000);
    assert_eq!(t.evicted(), 2);
}

#[test]
fn a_revision_never_goes_down_nor_past_the_newest_announced() {
    let mut t = Tracker::new(settings(), 4);
    t.change(change(5, "f", false, 1_000));
    t.report(report("a", 5, 0), 2_000);
    t.report(report("a", 3, 0), 2_100);
    assert_eq!(t.latest_of_flag(2_100, "f").unwrap().confirmed, 1);

    t.report(report("b", 4, 0), 2_200);
    t.report(report("b", 99, 0), 2_300);
    t.change(change(6, "f", false, 3_000));
    let f = t.latest_of_flag(3_000, "f").unwrap();
    assert_eq!(
        f.confirmed, 0,
        "b claimed 99 when 5 was the newest: it has 5"
    );
}

#[test]
fn only_the_last_max_changes_are_kept_and_out_of_order_ones_are_ignored() {
    let mut t = Tracker::new(settings(), 0);
    for r in 1..=20 {
        t.change(change(r, &format!("f{r}"), false, r));
    }
    t.change(change(3, "late", false, 30));
    let all = t.list(30, |_| true, usize::MAX);
    let revisions: Vec<u64> = all.iter().map(|f| f.revision).collect();
    assert_eq!(revisions, (13..=20).rev().collect::<Vec<_>>());
    assert_eq!(t.revision(), 20);
}

#[test]
fn an_unconfirmed_rollback_fires_once_at_its_deadline_then_confirms_late() {
    let mut t = Tracker::new(settings(), 4);
    t.report(report("a", 4, 0), 0);
    t.report(report("b", 4, 0), 0);
    t.change(change(5, "f", true, 1_000));
    t.report(report("a", 5, 0), 1_500);

    assert_eq!(t.settle(10_999), vec![], "before the deadline");
    assert_eq!(
        t.latest_of_flag(10_999, "f").unwrap().state,
        ReachState::Confirming
    );
    let fired = t.settle(11_000);
    let [Outcome::Unconfirmed(f)] = fired.as_slice() else {
        panic!("{fired:?}")
    };
    assert_eq!((f.confirmed, f.live_clients, f.share), (1, 2, Some(0.5)));
    assert_eq!((f.state, f.alerted), (ReachState::Unconfirmed, true));
    assert_eq!(t.settle(12_000), vec![], "once");
    assert_eq!(t.alerts(), 1);

    t.report(report("b", 5, 0), 13_000);
    let late = t.settle(13_000);
    let [Outcome::ConfirmedLate(f)] = late.as_slice() else {
        panic!("{late:?}")
    };
    assert_eq!((f.state, f.confirmed), (ReachState::Confirmed, 2));
    assert_eq!(t.settle(14_000), vec![]);
}

#[test]
fn a_rollback_confirmed_in_time_or_without_live_clients_never_fires() {
    let mut t = Tracker::new(settings(), 4);
    t.report(report("a", 4, 0), 0);
    t.change(change(5, "f", true, 1_000));
    t.report(report("a", 5, 0), 1_200);
    assert_eq!(t.settle(1_300), vec![]);
    assert_eq!(t.settle(20_000), vec![]);
    // Confirmed stays confirmed, even when a stale client shows up.
    t.report(report("stale", 4, 0), 20_000);
    assert_eq!(
        t.latest_of_flag(20_000, "f").unwrap().state,
        ReachState::Confirmed
    );

    let mut empty = Tracker::new(settings(), 4);
    empty.change(change(5, "g", true, 1_000));
    assert_eq!(empty.settle(11_000), vec![]);
    let f = empty.latest_of_flag(11_000, "g").unwrap();
    assert_eq!((f.state, f.share), (ReachState::NoLiveClients, None));
}

#[test]
fn a_plain_change_below_target_is_unconfirmed_after_the_timeout_but_never_alerts() {
    let mut t = Tracker::new(settings(), 4);
    t.report(report("a", 4, 0), 0);
    t.change(change(5, "f", false, 1_000));
    assert_eq!(t.settle(20_000), vec![]);
    assert_eq!(
        t.latest_of_flag(20_000, "f").unwrap().state,
        ReachState::Unconfirmed
    );
}

#[test]
fn the_target_share_is_inclusive() {
    let mut t = Tracker::new(settings(), 4);
    for i in 0..100 {
        t.report(report(&format!("c{i}"), 4, 0), 0);
    }
    t.change(change(5, "f", true, 1_000));
    for i in 0..99 {
        t.report(report(&format!("c{i}"), 5, 0), 1_100);
    }
    assert_eq!(t.settle(1_200), vec![]);
    assert_eq!(
        t.latest_of_flag(1_200, "f").unwrap().state,
        ReachState::Confirmed
    );
}

/// One step of a random history.
#[derive(Debug, Clone)]
enum Step {
    Report { client: u8, revision: u64, at: u64 },
    Change { at: u64 },
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        4 => (0u8..12, 0u64..14, 0u64..5_000).prop_map(|(client, revision, at)| Step::Report { client, revision, at }),
        1 => (0u64..5_000).prop_map(|at| Step::Change { at }),
    ];
    proptest::collection::vec(step, 1..120)
}

proptest! {
    /// Against a naive model (every client's last time and revision), the counts are exact
    /// after any history: live clients, confirmed per change, no client counted twice.
    #[test]
    fn counts_match_a_naive_model(history in steps()) {
        let s = Settings { live_window_ms: 2_000, max_clients: 8, max_changes: 5, ..settings() };
        let mut t = Tracker::new(s, 0);
        let mut model: HashMap<String, ((u64, u64), u64)> = HashMap::new(); // id → ((last seen, seq), revision)
        let mut seq = 0u64;
        let mut now = 0u64;
        let mut announced = 0u64;
        for step in history {
            match step {
                Step::Report { client, revision, at } => {
                    now += at % 700;
                    let id = format!("c{client}");
                    seq += 1;
                    model.retain(|_, ((seen, _), _)| now - *seen < s.live_window_ms);
                    if !model.contains_key(&id) && model.len() >= s.max_clients {
                        let oldest = model.iter().min_by_key(|(_, (seen, _))| *seen).map(|(k, _)| k.clone());
                        if let Some(k) = oldest { model.remove(&k); }
                    }
                    let capped = revision.min(announced);
                    let entry = model.entry(id.clone()).or_insert(((now, seq), capped));
                    *entry = ((now, seq), entry.1.max(capped));
                    t.report(Report { id: &id, revision, applied_ms_ago: 0, closing: false }, now);
                }
                Step::Change { at } => {
                    now += at % 300;
                    announced += 1;
                    t.change(change(announced, "f", false, now));
                }
            }
            let live: Vec<u64> = model.values().filter(|((seen, _), _)| now - *seen < s.live_window_ms).map(|&(_, r)| r).collect();
            prop_assert_eq!(t.live_clients(now), live.len() as u64);
            for f in t.list(now, |_| true, usize::MAX) {
                let confirmed = live.iter().filter(|&&r| r >= f.revision).count() as u64;
                prop_assert_eq!(f.confirmed, confirmed, "revision {}", f.revision);
                prop_assert!(f.samples <= 8 * 120);
            }
        }
    }
}
