//! `matches` patterns: building one within what is left of its flag's budget, and counting
//! what the flag's patterns cost (see [`crate::limits`] for the limits and why).

use crate::error::CompileError;
use crate::limits::{
    bytes, FLAG_PATTERNS, FLAG_REGEX_BYTES, PATTERN_AUTOMATON_BYTES, PATTERN_LAZY_DFA_BYTES,
};
use regex_automata::meta::Regex;

/// The compiled size of a flag's (or a segment's) regular expressions, counted while compiling.
#[derive(Debug, Clone, Default)]
pub(crate) struct RegexCost {
    /// Sum of the patterns' compiled sizes, in bytes.
    pub(crate) bytes: usize,
    /// Number of patterns compiled.
    pub(crate) patterns: usize,
    /// The largest pattern: its field and compiled size.
    pub(crate) heaviest: Option<(Box<str>, usize)>,
}

impl RegexCost {
    /// Builds one pattern within what is left of the flag's budget, and counts it.
    pub(crate) fn compile(&mut self, field: &str, pattern: &str) -> Result<Regex, CompileError> {
        let over_flag = |size: &str| {
            CompileError::new(
                field,
                format!(
                    "the flag's regular expressions (segments included) would take {size} \
                     compiled, over the limit of {} per flag",
                    bytes(FLAG_REGEX_BYTES)
                ),
            )
        };
        if self.patterns >= FLAG_PATTERNS {
            return Err(CompileError::new(
                field,
                format!(
                    "a flag may use at most {FLAG_PATTERNS} regular expressions \
                     (segments included, once per use)"
                ),
            ));
        }
        let left = FLAG_REGEX_BYTES.saturating_sub(self.bytes);
        // The engine stops building as soon as an automaton outgrows its limit, so a body
        // that goes over the flag's budget costs at most that budget's worth of compilation.
        let limit = PATTERN_AUTOMATON_BYTES.min(left);
        let built = Regex::builder()
            .configure(
                Regex::config()
                    // As the `regex` crate configures it for `&str` haystacks.
                    .match_kind(regex_automata::MatchKind::LeftmostFirst)
                    .utf8_empty(true)
                    .nfa_size_limit(Some(limit))
                    .onepass_size_limit(Some(limit))
                    // No fully compiled DFA: only the `dfa-build` feature makes the engine
                    // build one, and in the server another crate (tracing-subscriber's
                    // `matchers`) turns it on, so sizes, and what fits, would differ between
                    // the server and a client linking this crate alone.
                    .dfa(false)
                    .hybrid_cache_capacity(PATTERN_LAZY_DFA_BYTES),
            )
            .syntax(regex_automata::util::syntax::Config::new().utf8(true))
            .build(pattern);
        let regex = match built {
            Ok(regex) => regex,
            Err(e) if e.size_limit().is_some() && limit < PATTERN_AUTOMATON_BYTES => {
                return Err(over_flag(&format!("more than {}", bytes(FLAG_REGEX_BYTES))));
            }
            Err(e) if e.size_limit().is_some() => {
                return Err(CompileError::new(
                    field,
                    format!(
                        "this regular expression compiles to more than {} (the limit per \
                         pattern); a counted repetition of a Unicode class such as \\w{{20}} \
                         is large: use + or *, or (?-u:\\w)",
                        bytes(PATTERN_AUTOMATON_BYTES)
                    ),
                ));
            }
            Err(e) => {
                let reason = e
                    .syntax_error()
                    .map_or_else(|| e.to_string(), |s| s.to_string());
                return Err(CompileError::new(
                    field,
                    format!("invalid regular expression: {reason}"),
                ));
            }
        };
        let size = regex.memory_usage();
        if size > left {
            return Err(over_flag(&bytes(self.bytes + size)));
        }
        self.bytes += size;
        self.patterns += 1;
        if self.heaviest.as_ref().is_none_or(|(_, b)| size > *b) {
            self.heaviest = Some((field.into(), size));
        }
        Ok(regex)
    }
}
