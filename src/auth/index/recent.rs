//! The digests of the secrets this thread was presented last.
//!
//! Apps send the same token on every request, and hashing it was the largest part of
//! authenticating one (issue 15). A digest is a pure function of the secret, so remembering it
//! can never keep a revoked token alive: the lookup by digest still goes to the index in force.
//! A presented secret is compared with each remembered one in constant time (all of them,
//! always), so timing tells an attacker only whether a whole guess was a secret presented here
//! lately — which a successful answer tells anyway.

use super::token_digest;
use std::cell::RefCell;
use subtle::ConstantTimeEq;

/// Secrets remembered per thread (one app's token per slot; round robin).
const SLOTS: usize = 4;
/// Longer secrets are hashed every time (ours are 46 bytes).
const MAX_SECRET: usize = 128;

/// A remembered secret and its digest.
type Slot = (Box<[u8]>, [u8; 32]);

#[derive(Default)]
struct Recent {
    slots: [Option<Slot>; SLOTS],
    next: usize,
}

thread_local! {
    static RECENT: RefCell<Recent> = RefCell::default();
}

/// SHA-256 of `secret`, remembered for the next request on this thread.
pub(super) fn digest(secret: &str) -> [u8; 32] {
    let presented = secret.as_bytes();
    if presented.len() > MAX_SECRET {
        return token_digest(secret);
    }
    RECENT.with(|recent| {
        let mut recent = recent.borrow_mut();
        let mut found: Option<[u8; 32]> = None;
        for (stored, digest) in recent.slots.iter().flatten() {
            let same = stored.len() == presented.len() && bool::from(stored.ct_eq(presented));
            if same {
                found = Some(*digest);
            }
        }
        if let Some(digest) = found {
            return digest;
        }
        let digest = token_digest(secret);
        let slot = recent.next;
        recent.slots[slot] = Some((presented.into(), digest));
        recent.next = (slot + 1) % SLOTS;
        digest
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remembered_digest_is_the_digest() {
        let secrets: Vec<String> = (0..2 * SLOTS).map(|i| format!("rg_secret_{i}")).collect();
        for round in 0..3 {
            for s in &secrets {
                assert_eq!(digest(s), token_digest(s), "round {round}, {s}");
            }
        }
        // Same length, one byte apart: never taken for each other.
        assert_ne!(digest("rg_aaaa"), digest("rg_aaab"));
        assert_eq!(digest("rg_aaab"), token_digest("rg_aaab"));
        let long = "x".repeat(MAX_SECRET + 1);
        assert_eq!(digest(&long), token_digest(&long));
    }
}
