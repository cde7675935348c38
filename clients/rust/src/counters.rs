//! Striped counters: what evaluation writes on every call, without sharing a cache line
//! between threads.
//!
//! Invariants:
//! - A thread picks its stripe once (round robin, a thread-local); every stripe starts on its
//!   own 128-byte line, so threads on different stripes never write the same line, and with
//!   no more threads than stripes no counter is contended.
//! - Writing is one relaxed `fetch_add` (and, for "last served", a load and a store only when
//!   the value changes); reading sums the stripes and is done by the flusher, off the hot path.
//! - Nothing here allocates after construction.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// `AtomicU64`s per 128-byte line (two x86 cache lines, the prefetch pair).
const PER_LINE: usize = 16;

#[repr(align(128))]
struct Line([AtomicU64; PER_LINE]);

impl Line {
    fn new() -> Self {
        Line(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    // Const-initialised, no destructor: reading it never allocates.
    static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// This thread's stripe number (before masking by the stripe count).
#[inline]
fn thread_stripe() -> usize {
    STRIPE
        .try_with(|s| {
            let mut v = s.get();
            if v == usize::MAX {
                v = NEXT_STRIPE.fetch_add(1, Ordering::Relaxed);
                s.set(v);
            }
            v
        })
        .unwrap_or(0)
}

/// How many stripes: the cores present, rounded up to a power of two, at most 64.
pub(crate) fn default_stripes() -> usize {
    std::thread::available_parallelism()
        .map_or(4, |n| n.get())
        .next_power_of_two()
        .clamp(1, 64)
}

/// `slots` counters, each striped `stripes` ways.
pub(crate) struct Striped {
    lines: Box<[Line]>,
    lines_per_stripe: usize,
    mask: usize,
    slots: usize,
}

impl Striped {
    /// `stripes` is rounded up to a power of two.
    pub(crate) fn new(slots: usize, stripes: usize) -> Self {
        let stripes = stripes.max(1).next_power_of_two();
        let lines_per_stripe = slots.div_ceil(PER_LINE).max(1);
        let lines = (0..stripes * lines_per_stripe)
            .map(|_| Line::new())
            .collect();
        Striped {
            lines,
            lines_per_stripe,
            mask: stripes - 1,
            slots,
        }
    }

    fn cell(&self, stripe: usize, slot: usize) -> Option<&AtomicU64> {
        let line = stripe * self.lines_per_stripe + slot / PER_LINE;
        self.lines.get(line).map(|l| &l.0[slot % PER_LINE])
    }

    fn mine(&self, slot: usize) -> Option<&AtomicU64> {
        if slot >= self.slots {
            return None;
        }
        self.cell(thread_stripe() & self.mask, slot)
    }

    /// Adds one to `slot` on this thread's stripe.
    #[inline]
    pub(crate) fn increment(&self, slot: usize) {
        if let Some(c) = self.mine(slot) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Stores `value` in `slot` on this thread's stripe, writing only when it changes (so a
    /// flag that keeps serving the same variant never dirties the line).
    #[inline]
    pub(crate) fn set(&self, slot: usize, value: u64) {
        if let Some(c) = self.mine(slot) {
            if c.load(Ordering::Relaxed) != value {
                c.store(value, Ordering::Relaxed);
            }
        }
    }

    /// This thread's value of `slot`, else the first non-zero one of any stripe.
    pub(crate) fn get_preferring_mine(&self, slot: usize) -> u64 {
        let mine = self.mine(slot).map_or(0, |c| c.load(Ordering::Relaxed));
        if mine != 0 {
            return mine;
        }
        (0..=self.mask)
            .filter_map(|s| self.cell(s, slot))
            .map(|c| c.load(Ordering::Relaxed))
            .find(|&v| v != 0)
            .unwrap_or(0)
    }

    /// Takes the sum of `slot` over all stripes, leaving zeros.
    pub(crate) fn take(&self, slot: usize) -> u64 {
        if slot >= self.slots {
            return 0;
        }
        (0..=self.mask)
            .filter_map(|s| self.cell(s, slot))
            .map(|c| {
                if c.load(Ordering::Relaxed) == 0 {
                    0
                } else {
                    c.swap(0, Ordering::Relaxed)
                }
            })
            .fold(0u64, u64::saturating_add)
    }

    /// Copies `slot`'s value on every stripe from `other`'s `other_slot` (stripe counts equal).
    pub(crate) fn copy_from(
        &self,
        slot: usize,
        other: &Striped,
        other_slot: usize,
        map: impl Fn(u64) -> u64,
    ) {
        for s in 0..=self.mask.min(other.mask) {
            if let (Some(to), Some(from)) = (self.cell(s, slot), other.cell(s, other_slot)) {
                to.store(map(from.load(Ordering::Relaxed)), Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_many_threads_sum_exactly() {
        let c = std::sync::Arc::new(Striped::new(3, 8));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        c.increment(1);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(c.take(1), 80_000);
        assert_eq!(c.take(1), 0);
        assert_eq!(c.take(0), 0);
        c.increment(99); // out of range: ignored, no panic
        assert_eq!(c.take(99), 0);
    }

    #[test]
    fn last_value_prefers_this_thread() {
        let c = std::sync::Arc::new(Striped::new(1, 64));
        let other = c.clone();
        std::thread::spawn(move || other.set(0, 7)).join().unwrap();
        assert_eq!(c.get_preferring_mine(0), 7);
        c.set(0, 3);
        assert_eq!(c.get_preferring_mine(0), 3);
    }
}
