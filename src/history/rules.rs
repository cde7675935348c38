//! The pure rules of the guard history: when a sample becomes a point ([`take`]), which old
//! points compaction drops ([`compact`]) and which points an answer keeps ([`thin`]).
//! Plain values in, plain values out; `super` does the I/O.

use std::time::Duration;

/// How often points are taken and how long they are kept (docs/api.md, "Guard history").
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// How often the sampler looks at every started release (a change of state, stage or
    /// decision is recorded at the next look).
    pub tick: Duration,
    /// Least time between two unmarked points of a series while its module is live.
    pub period: Duration,
    /// Most time between two points of a live module, even when its readings did not move.
    pub heartbeat: Duration,
    /// Points younger than this are all kept.
    pub fine: Duration,
    /// Points younger than this (and older than `fine`) keep one per `mid_step`.
    pub mid: Duration,
    /// Resolution between `fine` and `mid`.
    pub mid_step: Duration,
    /// Resolution beyond `mid`.
    pub old_step: Duration,
    /// Points older than this are dropped.
    pub keep: Duration,
    /// How often compaction runs.
    pub compact_every: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            tick: Duration::from_secs(1),
            period: Duration::from_secs(5),
            heartbeat: Duration::from_secs(60),
            fine: Duration::from_secs(3600),
            mid: Duration::from_secs(24 * 3600),
            mid_step: Duration::from_secs(60),
            old_step: Duration::from_secs(15 * 60),
            keep: Duration::from_secs(30 * 24 * 3600),
            compact_every: Duration::from_secs(300),
        }
    }
}

/// The newest point of a series, as the sampler remembers it.
#[derive(Debug, Clone, PartialEq)]
pub struct Last {
    /// When it was taken (Unix ms).
    pub at_ms: u64,
    /// Its state, stage and decision, in one string.
    pub signature: String,
    /// Its guard readings, serialized.
    pub guards: String,
}

/// What the sampler does with a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// Nothing new: no point.
    Skip,
    /// A point; `mark` when it records a change of state, stage or decision.
    Point {
        /// Whether it records a change.
        mark: bool,
    },
}

/// Whether a module's sample at `now_ms` becomes a point.
///
/// - The first sample of a series, and any sample whose state, stage or decision differs from
///   the last point's, is a marked point (live or not: the final state of a rolled-back module
///   is recorded).
/// - While the module is live (ramping, paused or held), a sample whose readings moved is a
///   point once `period` has passed since the last one, and any sample is once `heartbeat`
///   has.
/// - Otherwise nothing.
pub fn take(
    last: Option<&Last>,
    live: bool,
    signature: &str,
    guards: &str,
    now_ms: u64,
    s: &Settings,
) -> Take {
    let Some(last) = last else {
        return Take::Point { mark: true };
    };
    if last.signature != signature {
        return Take::Point { mark: true };
    }
    if !live {
        return Take::Skip;
    }
    let since = now_ms.saturating_sub(last.at_ms);
    let moved = last.guards != guards;
    if (moved && since >= ms(s.period)) || since >= ms(s.heartbeat) {
        Take::Point { mark: false }
    } else {
        Take::Skip
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The points compaction drops from a series (`points`: time and mark, oldest first):
/// - older than `keep`: every point;
/// - younger than `fine`: none;
/// - between: marked points stay; of the unmarked ones, the newest of each `mid_step` slot
///   (younger than `mid`) or `old_step` slot (older) stays.
pub fn compact(points: &[(u64, bool)], now_ms: u64, s: &Settings) -> Vec<(u64, bool)> {
    let mut drop = Vec::new();
    // Walk newest first: the first point seen in a slot is the one kept.
    let mut kept_slot: Option<(u64, u64)> = None;
    for &(at, mark) in points.iter().rev() {
        let age = now_ms.saturating_sub(at);
        if age > ms(s.keep) {
            drop.push((at, mark));
            continue;
        }
        if age <= ms(s.fine) || mark {
            continue;
        }
        let step = if age <= ms(s.mid) {
            ms(s.mid_step)
        } else {
            ms(s.old_step)
        }
        .max(1);
        let slot = (step, at / step);
        if kept_slot == Some(slot) {
            drop.push((at, mark));
        } else {
            kept_slot = Some(slot);
        }
    }
    drop.reverse();
    drop
}

/// The indices of the points an answer keeps when it may hold about `max` (`times`: oldest
/// first): every marked point and the newest point of each of `max` equal time slots between
/// the first and the last point (all of them when there are no more than `max`).
pub fn thin(times: &[(u64, bool)], max: usize) -> Vec<usize> {
    let (Some(first), Some(last)) = (times.first(), times.last()) else {
        return Vec::new();
    };
    if times.len() <= max || max == 0 {
        return (0..times.len()).collect();
    }
    let span = last.0.saturating_sub(first.0).max(1);
    let slot_of = |at: u64| ((at - first.0) as u128 * max as u128 / (span as u128 + 1)) as u64;
    let mut keep = Vec::new();
    for (i, &(at, mark)) in times.iter().enumerate() {
        let newest_of_slot = times
            .get(i + 1)
            .is_none_or(|next| slot_of(next.0) != slot_of(at));
        if mark || newest_of_slot {
            keep.push(i);
        }
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1000;

    fn last(at_ms: u64) -> Last {
        Last {
            at_ms,
            signature: "ramping|0".into(),
            guards: "[1]".into(),
        }
    }

    #[test]
    fn first_sample_and_changes_are_marked_points_even_when_not_live() {
        let s = Settings::default();
        assert_eq!(
            take(None, false, "x", "[]", 0, &s),
            Take::Point { mark: true }
        );
        let l = last(0);
        assert_eq!(
            take(Some(&l), false, "rolled_back|0", "[1]", 100, &s),
            Take::Point { mark: true }
        );
        assert_eq!(
            take(Some(&l), false, "ramping|0", "[2]", 100 * S, &s),
            Take::Skip
        );
    }

    #[test]
    fn a_live_series_takes_moved_readings_each_period_and_a_heartbeat() {
        let s = Settings::default();
        let l = last(0);
        assert_eq!(
            take(Some(&l), true, "ramping|0", "[2]", 4 * S, &s),
            Take::Skip
        );
        assert_eq!(
            take(Some(&l), true, "ramping|0", "[2]", 5 * S, &s),
            Take::Point { mark: false }
        );
        assert_eq!(
            take(Some(&l), true, "ramping|0", "[1]", 59 * S, &s),
            Take::Skip
        );
        assert_eq!(
            take(Some(&l), true, "ramping|0", "[1]", 60 * S, &s),
            Take::Point { mark: false }
        );
    }

    #[test]
    fn compaction_keeps_the_last_hour_marks_and_one_point_per_slot() {
        let s = Settings::default();
        let now = 40 * 24 * 3600 * S;
        // Every 5 s over the last 26 hours, a mark two hours ago, a point 31 days ago.
        let mut points = vec![(now - 31 * 24 * 3600 * S, false)];
        let start = now - 26 * 3600 * S;
        points.extend((0..26 * 720).map(|i| (start + i * 5 * S, false)));
        points.push((now - 2 * 3600 * S + 1, true));
        points.sort();
        let drop = compact(&points, now, &s);
        let kept: Vec<_> = points.iter().filter(|p| !drop.contains(p)).collect();
        let age_h = |at: u64| (now - at) as f64 / 3_600_000.0;
        assert!(!kept.iter().any(|p| age_h(p.0) > 30.0 * 24.0), "past keep");
        assert_eq!(kept.iter().filter(|p| age_h(p.0) <= 1.0).count(), 720);
        assert!(kept.iter().any(|p| p.1), "the mark stays");
        let mid = kept
            .iter()
            .filter(|p| age_h(p.0) > 1.0 && age_h(p.0) <= 24.0)
            .count();
        assert!(
            (1380..=1382).contains(&mid),
            "{mid} points between 1 h and 24 h"
        );
        let old = kept.iter().filter(|p| age_h(p.0) > 24.0).count();
        assert!(
            (8..=10).contains(&old),
            "{old} points beyond 24 h (15 min slots)"
        );
        assert!(compact(&kept.into_iter().copied().collect::<Vec<_>>(), now, &s).is_empty());
    }

    #[test]
    fn thinning_keeps_marks_the_last_point_and_about_max() {
        let times: Vec<(u64, bool)> = (0..10_000).map(|i| (i * 5 * S, i == 1234)).collect();
        let kept = thin(&times, 200);
        assert!((200..=202).contains(&kept.len()), "{}", kept.len());
        assert!(kept.contains(&1234));
        assert_eq!(kept.last(), Some(&9999));
        assert_eq!(thin(&times[..50], 200).len(), 50);
        assert!(thin(&[], 10).is_empty());
    }
}
