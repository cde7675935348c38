//! What the regular expressions of `matches` conditions may cost.
//!
//! A pattern's source says little about its compiled size: `\w` is one Unicode class of about
//! 56 KB compiled, and a counted repetition copies it, so `\w{20}` (six bytes of source) compiles
//! to about 1.1 MB and takes about 10 ms. Three hundred of them in a 4 KB body took seconds and
//! hundreds of megabytes. So the bound is on the *compiled* size, as the regex engine reports it
//! (`regex_automata::meta::Regex::memory_usage`: its automata, literal prefilters and one-pass
//! DFA), at three levels:
//!
//! | Level | Limit | Refused with the field of |
//! |---|---|---|
//! | one pattern | each automaton ≤ [`PATTERN_AUTOMATON_BYTES`] | the pattern, `rules[3].when[0].values[0]` |
//! | one flag, segments spliced in included | ≤ [`FLAG_PATTERNS`] patterns and ≤ [`FLAG_REGEX_BYTES`] in all | the pattern that crosses it |
//! | a snapshot (every flag of the server) | ≤ [`SNAPSHOT_REGEX_BYTES`] in all (checked by [`crate::check_snapshot_budget`]) | the flag's heaviest pattern |
//!
//! Compilation stops at the pattern that crosses a limit: each pattern is built with its
//! automaton limit lowered to what is left of the flag's budget, so the engine gives up as soon
//! as it has built that much. Refusing any body therefore costs at most about
//! [`FLAG_REGEX_BYTES`] of compilation (milliseconds), however many patterns it holds.
//!
//! Evaluation memory is bounded too: each pattern's lazy DFA may cache at most
//! [`PATTERN_LAZY_DFA_BYTES`] of transitions per thread (the engine clears it when full, and
//! falls back to its other engines if it clears too often), beside its other search state,
//! about half its compiled size per thread.
//!
//! Ways to stay small: Unicode classes are large and a repetition multiplies them, so prefer
//! `+`/`*` to `{n}` on `\w`, `\d` or `.`, or switch Unicode off for the class (`(?-u:\w){20}`
//! compiles to about 2 KB), or use `starts_with`/`ends_with`/`contains` for plain text.

/// Largest compiled automaton (NFA, one-pass DFA) of one pattern, in bytes. `\w{10}` fits,
/// `\w{11}` does not; `^[\w.-]+@([\w-]+\.)+[a-z]{2,}$` takes 114 KB in all.
pub const PATTERN_AUTOMATON_BYTES: usize = 512 << 10;

/// Largest lazy DFA transition cache of one pattern, per thread, in bytes (the engine's
/// default is 2 MiB).
pub const PATTERN_LAZY_DFA_BYTES: usize = 512 << 10;

/// Most `matches` patterns one flag may compile, counting a segment's patterns once per
/// condition that uses it.
pub const FLAG_PATTERNS: usize = 256;

/// Largest compiled size of all of one flag's patterns, segments included, in bytes.
pub const FLAG_REGEX_BYTES: usize = 4 << 20;

/// Largest compiled size of the patterns of every flag of a snapshot, in bytes.
pub const SNAPSHOT_REGEX_BYTES: usize = 64 << 20;

/// `1536` → `1.5 KiB`: sizes in messages.
pub(crate) fn bytes(n: usize) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / f64::from(1 << 20)),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / f64::from(1 << 10)),
        n => format!("{n} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::bytes;

    #[test]
    fn sizes_read_naturally() {
        assert_eq!(bytes(512), "512 bytes");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(4 << 20), "4.0 MiB");
    }
}
