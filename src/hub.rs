//! The change hub: every committed flag or segment change becomes one numbered event, kept
//! in a bounded ring (for `Last-Event-ID` resume) and fanned out over a `broadcast` channel
//! to streaming clients.
//!
//! Invariants:
//! - Events are published by the control path while it holds the writer lock, after the
//!   change is durable, so sequence order is commit order and nothing is announced that a
//!   restart could take back.
//! - Publishing never waits for subscribers: the broadcast channel is bounded and a
//!   subscriber that falls behind is disconnected (it reconnects with `Last-Event-ID`).
//! - Ids are config revisions (docs/clients.md): durable, one per change, growing across
//!   restarts. The ring holds only this run's events, so an id older than the ring (or ahead
//!   of the store, or not a number) gets a fresh `config` instead of a replay; the current
//!   revision replays nothing.
//! - In a cluster the revisions are global (docs/cluster.md) and ids may skip numbers (token,
//!   policy and release changes take revisions too): [`ChangeHub::publish_at`] publishes at a
//!   given revision and [`ChangeHub::advance`] moves past revisions with no event. A resume is
//!   a replay when the id is at or after the `floor` (the revision before the oldest event
//!   the ring still holds).

use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

/// How many past events a reconnecting client can catch up on.
pub const RING: usize = 4096;

/// One change, pre-serialized once for every subscriber.
#[derive(Debug)]
pub struct ChangeEvent {
    /// The change's revision.
    pub seq: u64,
    /// The complete SSE frame of the `change` event (formatted once for every subscriber).
    pub change_frame: Bytes,
    /// The complete SSE frame of the OFREP `refetchEvaluation` message.
    pub ofrep_frame: Bytes,
    /// When it was handed to the hub (the drill's stream delay starts here).
    pub published: Instant,
}

/// Where a reconnecting client starts.
#[derive(Debug)]
pub enum Resume {
    /// Send the full config, then live events after `seq`.
    Fresh { seq: u64 },
    /// Replay these missed events (all after `after`), then live events.
    Replay {
        after: u64,
        events: Vec<Arc<ChangeEvent>>,
    },
}

/// The hub.
#[derive(Debug)]
pub struct ChangeHub {
    next_seq: AtomicU64,
    /// The ring and its floor: every event after the floor is in the ring.
    ring: Mutex<(u64, VecDeque<Arc<ChangeEvent>>)>,
    tx: broadcast::Sender<Arc<ChangeEvent>>,
    subscribers: AtomicI64,
    closing: tokio::sync::watch::Sender<bool>,
    /// Running drills (docs/operations.md, "Drills"): while above zero, streams note when
    /// they wrote each event into `probed`.
    probing: AtomicUsize,
    probed: Mutex<Vec<(u64, Duration)>>,
}

/// Most deliveries one drill window records (a bound, whatever the number of streams).
pub const PROBE_CAPACITY: usize = 65_536;

impl ChangeHub {
    /// A hub whose last published revision is `revision` (the store's, at start).
    pub fn new(revision: u64, capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(16));
        ChangeHub {
            next_seq: AtomicU64::new(revision + 1),
            ring: Mutex::new((revision, VecDeque::with_capacity(RING))),
            tx,
            subscribers: AtomicI64::new(0),
            closing: tokio::sync::watch::Sender::new(false),
            probing: AtomicUsize::new(0),
            probed: Mutex::new(Vec::new()),
        }
    }

    /// The SSE id of revision `seq`.
    pub fn event_id(&self, seq: u64) -> String {
        seq.to_string()
    }

    /// The revision of the last published event (the store's at start).
    pub fn last_seq(&self) -> u64 {
        self.next_seq.load(Ordering::Acquire) - 1
    }

    /// Publishes one event (called by the control path under the writer lock, after the
    /// commit that stored revision `last_seq() + 1`); returns its revision.
    pub fn publish(&self, data: Vec<u8>, unix_s: u64) -> u64 {
        let seq = self.last_seq() + 1;
        self.publish_at(seq, data, unix_s);
        seq
    }

    /// Publishes one event at `revision`, which must be above [`ChangeHub::last_seq`] (called
    /// under the writer lock, after the commit that stored it); an older revision is ignored.
    pub fn publish_at(&self, revision: u64, data: Vec<u8>, unix_s: u64) {
        if revision <= self.last_seq() {
            tracing::error!(
                revision,
                last = self.last_seq(),
                "change event out of order; not published"
            );
            return;
        }
        let id = self.event_id(revision);
        let data = String::from_utf8_lossy(&data);
        let change_frame = Bytes::from(format!("id: {id}\nevent: change\ndata: {data}\n\n"));
        let ofrep_frame = Bytes::from(format!(
            "id: {id}\nevent: message\ndata: {{\"type\":\"refetchEvaluation\",\"etag\":\"{id}\",\"lastModified\":{unix_s}}}\n\n"
        ));
        let event = Arc::new(ChangeEvent {
            seq: revision,
            change_frame,
            ofrep_frame,
            published: Instant::now(),
        });
        {
            let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
            let (floor, events) = &mut *ring;
            if events.len() == RING {
                if let Some(oldest) = events.pop_front() {
                    *floor = oldest.seq;
                }
            }
            events.push_back(event.clone());
            self.next_seq.store(revision + 1, Ordering::Release);
        }
        // No receiver is fine: nobody is streaming.
        let _ = self.tx.send(event);
    }

    /// Moves the last revision to `revision` without an event (a cluster change that is not a
    /// flag or segment: a token, policy or release). Never moves back.
    pub fn advance(&self, revision: u64) {
        let _ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        self.next_seq.fetch_max(revision + 1, Ordering::AcqRel);
    }

    /// Subscribes, deciding what a client that last saw `last_event_id` must receive first.
    /// The receiver is created before the ring is read, so no event falls in between; the
    /// caller skips live events with `seq` at or below what it already sent.
    pub fn subscribe(
        &self,
        last_event_id: Option<&str>,
    ) -> (broadcast::Receiver<Arc<ChangeEvent>>, Resume) {
        let rx = self.tx.subscribe();
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        let (floor, ring) = (&ring.0, &ring.1);
        let last = self.next_seq.load(Ordering::Acquire) - 1;
        let resume = match last_event_id.and_then(|id| self.parse_id(id)) {
            Some(seen) if seen <= last => {
                if seen >= *floor {
                    Resume::Replay {
                        after: seen,
                        events: ring.iter().filter(|e| e.seq > seen).cloned().collect(),
                    }
                } else {
                    Resume::Fresh { seq: last }
                }
            }
            _ => Resume::Fresh { seq: last },
        };
        (rx, resume)
    }

    fn parse_id(&self, id: &str) -> Option<u64> {
        id.trim().parse().ok()
    }

    /// Ends every stream (server shutdown), so graceful shutdown does not wait for them.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Resolves when the hub closes.
    pub fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Connected streaming clients.
    pub fn subscribers(&self) -> i64 {
        self.subscribers.load(Ordering::Relaxed)
    }

    /// Counts a subscriber for as long as the guard lives.
    pub fn track(self: &Arc<Self>) -> SubscriberGuard {
        self.subscribers.fetch_add(1, Ordering::Relaxed);
        SubscriberGuard(self.clone())
    }
}

impl ChangeHub {
    /// Starts recording stream deliveries for a drill; recording lasts while the guard lives.
    pub fn probe(self: &Arc<Self>) -> ProbeGuard {
        self.probing.fetch_add(1, Ordering::AcqRel);
        ProbeGuard(self.clone())
    }

    /// Called by a stream after it wrote `event`: a no-op (one atomic load) unless a drill
    /// runs; then the delay since publication is recorded, up to [`PROBE_CAPACITY`].
    pub fn delivered(&self, event: &ChangeEvent) {
        if self.probing.load(Ordering::Relaxed) == 0 {
            return;
        }
        let delay = event.published.elapsed();
        let mut probed = self.probed.lock().unwrap_or_else(|e| e.into_inner());
        if probed.len() < PROBE_CAPACITY {
            probed.push((event.seq, delay));
        }
    }

    /// The recorded delays of the deliveries of revision `seq`.
    pub fn delivered_of(&self, seq: u64) -> Vec<Duration> {
        let probed = self.probed.lock().unwrap_or_else(|e| e.into_inner());
        probed
            .iter()
            .filter(|(s, _)| *s == seq)
            .map(|(_, d)| *d)
            .collect()
    }
}

/// Keeps a drill's stream recording on; the last one to end clears the records.
#[derive(Debug)]
pub struct ProbeGuard(Arc<ChangeHub>);

impl Drop for ProbeGuard {
    fn drop(&mut self) {
        if self.0.probing.fetch_sub(1, Ordering::AcqRel) == 1 {
            let mut probed = self.0.probed.lock().unwrap_or_else(|e| e.into_inner());
            probed.clear();
        }
    }
}

/// Decrements the subscriber gauge when a stream ends.
#[derive(Debug)]
pub struct SubscriberGuard(Arc<ChangeHub>);

impl Drop for SubscriberGuard {
    fn drop(&mut self) {
        self.0.subscribers.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_replays_missed_events_or_falls_back_to_config() {
        // A run that starts at revision 10 (earlier runs made 10 changes).
        let hub = ChangeHub::new(10, 64);
        for i in 0..3 {
            assert_eq!(hub.publish(format!("{i}").into_bytes(), 0), 11 + i);
        }

        let (_, replay) = hub.subscribe(Some("11"));
        let (_, current) = hub.subscribe(Some("13"));
        let (_, before_this_run) = hub.subscribe(Some("9"));
        let (_, garbage) = hub.subscribe(Some("nope"));
        let (_, future) = hub.subscribe(Some("99"));

        match replay {
            Resume::Replay { after, events } => {
                assert_eq!(after, 11);
                assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), [12, 13]);
            }
            Resume::Fresh { .. } => panic!("expected a replay"),
        }
        assert!(matches!(current, Resume::Replay { after: 13, ref events } if events.is_empty()));
        for r in [before_this_run, garbage, future] {
            assert!(matches!(r, Resume::Fresh { seq: 13 }));
        }
    }

    #[test]
    fn cluster_revisions_may_skip_numbers_and_still_resume() {
        let hub = ChangeHub::new(10, 64);
        hub.publish_at(12, b"a".to_vec(), 0);
        hub.advance(14);
        hub.publish_at(15, b"b".to_vec(), 0);
        hub.publish_at(15, b"again".to_vec(), 0);
        assert_eq!(hub.last_seq(), 15);

        let (_, from_13) = hub.subscribe(Some("13"));
        let (_, from_10) = hub.subscribe(Some("10"));
        let (_, from_9) = hub.subscribe(Some("9"));
        let seqs = |r: Resume| match r {
            Resume::Replay { events, .. } => events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            Resume::Fresh { .. } => panic!("expected a replay"),
        };
        assert_eq!(seqs(from_13), [15]);
        assert_eq!(seqs(from_10), [12, 15]);
        assert!(matches!(from_9, Resume::Fresh { seq: 15 }));
    }

    #[test]
    fn a_client_up_to_date_before_a_restart_needs_nothing_after_it() {
        let hub = ChangeHub::new(10, 64);
        let (_, up_to_date) = hub.subscribe(Some("10"));
        let (_, behind) = hub.subscribe(Some("9"));
        assert!(
            matches!(up_to_date, Resume::Replay { after: 10, ref events } if events.is_empty())
        );
        assert!(matches!(behind, Resume::Fresh { seq: 10 }));
    }

    #[test]
    fn deliveries_are_recorded_only_while_a_drill_probes() {
        let hub = Arc::new(ChangeHub::new(0, 64));
        hub.publish(b"a".to_vec(), 0);
        let (mut rx, _) = hub.subscribe(None);
        hub.publish(b"b".to_vec(), 0);
        let Ok(event) = rx.try_recv() else {
            panic!("no event")
        };
        hub.delivered(&event);
        assert!(hub.delivered_of(2).is_empty());
        let guard = hub.probe();
        hub.delivered(&event);
        hub.delivered(&event);
        assert_eq!(hub.delivered_of(2).len(), 2);
        assert!(hub.delivered_of(1).is_empty());
        drop(guard);
        assert!(hub.delivered_of(2).is_empty());
    }
}
