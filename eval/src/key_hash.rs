//! The in-process hash of attribute names that both compiling (conditions keep their
//! attribute's hash) and evaluating (a prepared context indexes its attributes by it) use.

/// A cheap 64-bit hash of an attribute name (FxHash-style), used only inside one process to
/// pre-filter comparisons; never persisted, never part of bucketing.
pub(crate) fn key_hash(s: &str) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = s.len() as u64;
    let mut chunks = s.as_bytes().chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut word = [0u8; 8];
        word[..rest.len()].copy_from_slice(rest);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
    }
    h
}
