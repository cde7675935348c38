//! The one error of checking and compiling definitions: a problem, naming the field.

/// A definition problem, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct CompileError {
    /// Path of the offending field, e.g. `rules[0].when[1].op`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl CompileError {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        CompileError {
            field: field.into(),
            message: message.into(),
        }
    }

    /// Restates an error of flag `flag`, raised while it was recompiled with segment `segment`
    /// changed, in the terms of that segment's definition: a field inside the segment
    /// (`rules[0].when[1].segment(beta)[2].values[0]`) becomes the segment's own
    /// (`when[2].values[0]`); any other field becomes `when`. The message names the flag and
    /// where it uses the segment.
    pub fn in_segment(&self, segment: &str, flag: &str) -> CompileError {
        let marker = format!(".segment({segment})");
        match self.field.find(&marker) {
            Some(at) => CompileError::new(
                format!("when{}", &self.field[at + marker.len()..]),
                format!(
                    "flag {flag:?} (which uses this segment at {}): {}",
                    &self.field[..at],
                    self.message
                ),
            ),
            None => CompileError::new(
                "when",
                format!("flag {flag:?}: {}: {}", self.field, self.message),
            ),
        }
    }
}
