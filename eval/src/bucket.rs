//! Cohort bucketing: a stable hash of (salt, targetingKey) into one of 100,000 buckets.
//!
//! `bucket = XXH64(seed = 0, utf8(salt) ‖ ":" ‖ utf8(targetingKey)) mod 100_000`.
//! A user is in a rollout of `p` when `bucket < p.millis()`; so raising `p` only adds users,
//! and the same users come back first after a rollback and a new ramp. The algorithm and
//! its test vectors are published in `docs/bucketing.md`; changing anything here breaks
//! every client and is forbidden.

use crate::Percentage;
use std::hash::Hasher;
use twox_hash::XxHash64;

/// Number of buckets: one per 0.001 % of traffic.
pub const BUCKETS: u32 = 100_000;

/// The bucket of `targeting_key` for a flag (or shared cohort) salted with `salt`.
pub fn bucket(salt: &str, targeting_key: &str) -> u32 {
    to_bucket(joined_xxh64(&[
        salt.as_bytes(),
        b":",
        targeting_key.as_bytes(),
    ]))
}

/// True when `targeting_key` falls inside a rollout of `percentage` for `salt`.
pub fn in_rollout(salt: &str, targeting_key: &str, percentage: Percentage) -> bool {
    bucket(salt, targeting_key) < percentage.millis()
}

/// `utf8(salt) ‖ ":"`, built once per compiled flag so that bucketing a user joins two pieces
/// instead of three.
#[derive(Debug, Clone)]
pub(crate) struct SaltPrefix(Box<[u8]>);

impl SaltPrefix {
    pub(crate) fn new(salt: &str) -> Self {
        let mut bytes = Vec::with_capacity(salt.len() + 1);
        bytes.extend_from_slice(salt.as_bytes());
        bytes.push(b':');
        SaltPrefix(bytes.into_boxed_slice())
    }

    /// The bucket of `targeting_key`: the same number as [`bucket`].
    pub(crate) fn bucket(&self, targeting_key: &str) -> u32 {
        to_bucket(joined_xxh64(&[&self.0, targeting_key.as_bytes()]))
    }
}

fn to_bucket(digest: u64) -> u32 {
    (digest % u64::from(BUCKETS)) as u32
}

/// XXH64 (seed 0) of the concatenation of `parts`: joined in a stack buffer (no allocation)
/// when they fit in 64 or 256 bytes, streamed otherwise. Same digest either way.
#[inline(always)]
fn joined_xxh64(parts: &[&[u8]]) -> u64 {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    if len <= 64 {
        joined_in::<64>(parts, len)
    } else if len <= 256 {
        joined_in::<256>(parts, len)
    } else {
        let mut hasher = XxHash64::with_seed(0);
        for part in parts {
            hasher.write(part);
        }
        hasher.finish()
    }
}

#[inline(always)]
fn joined_in<const N: usize>(parts: &[&[u8]], len: usize) -> u64 {
    let mut buf = [0u8; N];
    let mut at = 0;
    for part in parts {
        buf[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    XxHash64::oneshot(0, &buf[..len])
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
    fn every_buffer_path_gives_the_streamed_digest() {
        // 64-byte buffer, 256-byte buffer, streaming: around each boundary.
        for key_len in [0, 1, 51, 52, 53, 243, 244, 245, 400] {
            let key = "k".repeat(key_len);
            let mut input = b"qr-ordering:".to_vec();
            input.extend_from_slice(key.as_bytes());
            let expected = (xxhash_rust::xxh64::xxh64(&input, 0) % u64::from(BUCKETS)) as u32;
            assert_eq!(
                bucket("qr-ordering", &key),
                expected,
                "key of {key_len} bytes"
            );
        }
    }

    #[test]
    fn zero_and_full_are_exact() {
        assert!(!in_rollout("f", "u", Percentage::ZERO));
        assert!(in_rollout("f", "u", Percentage::FULL));
    }
}
