//! Authentication, in one room: token kinds and secrets ([`Role`], [`StoredToken`]), the token
//! index that maps presented secrets to principals ([`index`]), derived stream-only tokens
//! ([`index::stream_token`]), HMAC-SHA256 ([`hmac`], also used to sign webhooks) and the actix
//! extractors that handlers take ([`extract`]).
//!
//! Invariants:
//! - A secret is never stored or logged: only its SHA-256 is kept; lookups hash first and
//!   compare in constant time.
//! - The index is swapped atomically when tokens change, so a revocation takes effect for the
//!   very next request, and ends the open streams of the revoked token ([`Held`]).

pub mod extract;
pub mod hmac;
pub mod index;

pub use extract::{presented_token, Admin, AuthError, Caller, Reader, Sender};
pub use index::{stream_token, Held, Principal, TokenBook, TokenIndex, Via};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Who asked for a change and why: recorded in the audit log.
#[derive(Debug, Clone)]
pub struct Actor {
    /// Token name, `controller`, `alertmanager` or `bootstrap`.
    pub name: String,
    /// Free-text reason, if given.
    pub reason: Option<String>,
}

impl Actor {
    /// The controller acting on its own.
    pub fn controller() -> Self {
        Actor {
            name: "controller".into(),
            reason: None,
        }
    }
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Evaluate flags, stream, send signals.
    Client,
    /// Everything.
    Admin,
    /// Read-only operator: every `GET` of the ops API and the stream; no change of any kind
    /// (no write, no signals, no OFREP evaluation).
    Viewer,
}

impl Role {
    /// The name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Admin => "admin",
            Role::Viewer => "viewer",
        }
    }
}

/// A token as stored: the secret itself is never kept, only its SHA-256.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredToken {
    /// Unique name, e.g. `web-app`.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Hex SHA-256 of the secret.
    pub sha256: String,
    /// RFC 3339 creation time.
    pub created: String,
}

/// SHA-256 of a token secret.
pub fn token_digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// A fresh random token secret: `rg_` + 43 base62 characters (~256 bits).
pub fn new_token_secret() -> String {
    use rand::distributions::Alphanumeric;
    use rand::Rng;
    let body: String = rand::rngs::OsRng
        .sample_iter(&Alphanumeric)
        .take(43)
        .map(char::from)
        .collect();
    format!("rg_{body}")
}

/// True when `name` is a valid token name: 1–64 of `[A-Za-z0-9._-]`.
pub fn valid_token_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}
