//! What a signal batch may carry, and the refusal that names the field: shared by the batch
//! (`ingest.rs`) and its histograms (`histogram.rs`), below both.

/// Events one signal may carry (`count`).
pub const MAX_COUNT: u64 = 1_000_000;
/// Events one batch may carry: the sum of its signals' counts.
pub const MAX_BATCH_COUNT: u64 = 100_000_000;
/// Largest magnitude of a signal's `value`.
pub const MAX_ABS_VALUE: f64 = 1e12;
/// Largest `client.applied_ms_ago`: a day.
pub const MAX_APPLIED_MS_AGO: u64 = 86_400_000;
/// Longest `client.sdk`, in characters.
pub const MAX_SDK_CHARS: usize = 64;

/// A malformed signal (the batch is refused).
#[derive(Debug, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Malformed {
    /// E.g. `signals[3].metric`.
    pub field: String,
    /// What is wrong.
    pub message: String,
    /// Well-formed but beyond a bound (422) rather than malformed (400).
    pub out_of_bounds: bool,
}

impl Malformed {
    pub(super) fn shape(field: String, message: impl Into<String>) -> Self {
        Malformed {
            field,
            message: message.into(),
            out_of_bounds: false,
        }
    }

    pub(super) fn bound(field: String, message: impl Into<String>) -> Self {
        Malformed {
            field,
            message: message.into(),
            out_of_bounds: true,
        }
    }
}
