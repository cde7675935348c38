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
    SaltPrefix::new(salt).bucket(targeting_key)
}

/// True when `targeting_key` falls inside a rollout of `percentage` for `salt`.
pub fn in_rollout(salt: &str, targeting_key: &str, percentage: Percentage) -> bool {
    bucket(salt, targeting_key) < percentage.millis()
}

/// `utf8(salt) ‖ ":"`, built once per compiled flag so that bucketing a user copies only the
/// targeting key before hashing.
#[derive(Debug, Clone)]
pub(crate) struct SaltPrefix(Box<[u8]>);

impl SaltPrefix {
    pub(crate) fn new(salt: &str) -> Self {
        let mut bytes = Vec::with_capacity(salt.len() + 1);
        bytes.extend_from_slice(salt.as_bytes());
        bytes.push(b':');
        SaltPrefix(bytes.into_boxed_slice())
    }

    /// The bucket of `targeting_key`; hashes from a stack buffer (no allocation) whenever
    /// salt and key fit in 256 bytes, and streams otherwise. Same digest either way.
    pub(crate) fn bucket(&self, targeting_key: &str) -> u32 {
        let len = self.0.len() + targeting_key.len();
        let digest = if len <= 64 {
            hash_joined::<64>(&self.0, targeting_key.as_bytes())
        } else if len <= 256 {
            hash_joined::<256>(&self.0, targeting_key.as_bytes())
        } else {
            let mut hasher = Xxh64::new(0);
            hasher.update(&self.0);
            hasher.update(targeting_key.as_bytes());
            hasher.digest()
        };
        (digest % u64::from(BUCKETS)) as u32
    }
}

/// XXH64 of `prefix ‖ key`, joined in an `N`-byte stack buffer (`prefix.len() + key.len() <= N`).
#[inline(always)]
fn hash_joined<const N: usize>(prefix: &[u8], key: &[u8]) -> u64 {
    let mut buf = [0u8; N];
    let len = prefix.len() + key.len();
    buf[..prefix.len()].copy_from_slice(prefix);
    buf[prefix.len()..len].copy_from_slice(key);
    xxhash_rust::xxh64::xxh64(&buf[..len], 0)
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
            let mut streamed = Xxh64::new(0);
            streamed.update(b"qr-ordering:");
            streamed.update(key.as_bytes());
            let expected = (streamed.digest() % u64::from(BUCKETS)) as u32;
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
