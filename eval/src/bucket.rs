//! Cohort bucketing: a stable hash of (salt, targetingKey) into one of 100,000 buckets.
//!
//! `bucket = XXH64(seed = 0, utf8(salt) ‖ ":" ‖ utf8(targetingKey)) mod 100_000`.
//! A user is in a rollout of `p` when `bucket < p.millis()`; so raising `p` only adds users,
//! and the same users come back first after a rollback and a new ramp. The algorithm and
//! its test vectors are published in `docs/bucketing.md`; changing anything here breaks
//! every client and is forbidden.

use crate::Percentage;
use xxhash_rust::xxh64::Xxh64;

/// Number of buckets: one per 0.001 % of traffic.
pub const BUCKETS: u32 = 100_000;

/// The bucket of `targeting_key` for a flag (or shared cohort) salted with `salt`.
pub fn bucket(salt: &str, targeting_key: &str) -> u32 {
    const STACK: usize = 192;
    let len = salt.len() + 1 + targeting_key.len();
    let digest = if len <= STACK {
        let mut buf = [0u8; STACK];
        buf[..salt.len()].copy_from_slice(salt.as_bytes());
        buf[salt.len()] = b':';
        buf[salt.len() + 1..len].copy_from_slice(targeting_key.as_bytes());
        xxhash_rust::xxh64::xxh64(&buf[..len], 0)
    } else {
        let mut hasher = Xxh64::new(0);
        hasher.update(salt.as_bytes());
        hasher.update(b":");
        hasher.update(targeting_key.as_bytes());
        hasher.digest()
    };
    (digest % u64::from(BUCKETS)) as u32
}

/// True when `targeting_key` falls inside a rollout of `percentage` for `salt`.
pub fn in_rollout(salt: &str, targeting_key: &str, percentage: Percentage) -> bool {
    bucket(salt, targeting_key) < percentage.millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_is_below_bucket_count_and_stable() {
        let b = bucket("qr-ordering", "user-1");
        assert!(b < BUCKETS);
        assert_eq!(b, bucket("qr-ordering", "user-1"));
    }

    #[test]
    fn zero_and_full_are_exact() {
        assert!(!in_rollout("f", "u", Percentage::ZERO));
        assert!(in_rollout("f", "u", Percentage::FULL));
    }
}
