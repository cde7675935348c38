//! The SDK's two error types: why a flag could not be evaluated, and why a client could not
//! be built. Neither is ever raised because the server is down.

use rollgate_eval::FlagType;

/// Why an evaluation served the caller's default instead of a variant. The names follow
/// OpenFeature's error codes ([`EvaluationError::code`]).
///
/// ```
/// use rollgate_client::EvaluationError;
/// assert_eq!(EvaluationError::FlagNotFound.code(), "FLAG_NOT_FOUND");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EvaluationError {
    /// No config has arrived yet (the server was unreachable within the start timeout).
    #[error("no config received from the server yet")]
    NotReady,
    /// The config has no flag with this key (or it could not be compiled here).
    #[error("flag not found")]
    FlagNotFound,
    /// A percentage rollout had to decide, and the context has no `targetingKey`.
    #[error("targetingKey is required: this flag serves a percentage rollout")]
    TargetingKeyMissing,
    /// The context's `targetingKey` is not a string.
    #[error("targetingKey must be a string")]
    InvalidContext,
    /// The flag's values are not of the type asked for.
    #[error("the flag is of type {actual}, not {expected}")]
    TypeMismatch {
        /// What the caller asked for (`"boolean"`, `"string"`, `"number"`, `"integer"`, `"object"`).
        expected: &'static str,
        /// The flag's type.
        actual: &'static str,
    },
}

impl EvaluationError {
    /// OpenFeature's code for this error, e.g. `TARGETING_KEY_MISSING`.
    ///
    /// ```
    /// use rollgate_client::EvaluationError;
    /// assert_eq!(EvaluationError::NotReady.code(), "PROVIDER_NOT_READY");
    /// ```
    pub fn code(&self) -> &'static str {
        match self {
            EvaluationError::NotReady => "PROVIDER_NOT_READY",
            EvaluationError::FlagNotFound => "FLAG_NOT_FOUND",
            EvaluationError::TargetingKeyMissing => "TARGETING_KEY_MISSING",
            EvaluationError::InvalidContext => "INVALID_CONTEXT",
            EvaluationError::TypeMismatch { .. } => "TYPE_MISMATCH",
        }
    }

    pub(crate) fn mismatch(expected: &'static str, actual: FlagType) -> Self {
        EvaluationError::TypeMismatch {
            expected,
            actual: actual.as_str(),
        }
    }
}

impl From<rollgate_eval::EvalError> for EvaluationError {
    fn from(e: rollgate_eval::EvalError) -> Self {
        match e {
            rollgate_eval::EvalError::TargetingKeyMissing => EvaluationError::TargetingKeyMissing,
            rollgate_eval::EvalError::InvalidTargetingKey => EvaluationError::InvalidContext,
        }
    }
}

/// Why [`crate::ClientBuilder::connect`] refused to build a client: only a configuration
/// mistake, never an unreachable server.
///
/// ```
/// # async fn demo() {
/// let err = rollgate_client::Client::builder("not a url", "token").connect().await.unwrap_err();
/// assert!(matches!(err, rollgate_client::BuildError::InvalidUrl(_)));
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The base URL is not an absolute `http`/`https` URL.
    #[error("invalid base URL: {0}")]
    InvalidUrl(String),
    /// The token cannot be sent in an HTTP header.
    #[error("the token contains characters an HTTP header cannot carry")]
    InvalidToken,
    /// The HTTP client could not be built (e.g. no TLS backend for an `https` URL).
    #[error("could not build the HTTP client: {0}")]
    Http(String),
    /// `connect` was called outside a Tokio runtime.
    #[error("connect must run inside a Tokio runtime")]
    NoRuntime,
}
