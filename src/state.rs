//! The one shared application state handed to every handler (`web::Data<AppState>`).

use crate::domain::{token_digest, Role};
use crate::hub::ChangeHub;
use crate::live::Live;
use crate::metrics::Metrics;
use crate::ops::Writer;
use crate::policies::PolicySet;
use crate::signals::Aggregates;
use crate::store::{Store, StoreError};
use crate::webhooks::Webhooks;
use arc_swap::ArcSwap;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    /// Token name (recorded as the actor in the audit log).
    pub name: Arc<str>,
    /// Token role.
    pub role: Role,
}

/// Token hashes → principals, swapped atomically when tokens change.
#[derive(Debug, Default)]
pub struct TokenIndex {
    by_digest: HashMap<[u8; 32], Principal>,
    /// Stream-only tokens (`st_…`) derived from each token, for URLs such as OFREP's
    /// `eventStreams`, where a browser cannot send headers.
    by_stream_token: HashMap<[u8; 32], Principal>,
}

impl TokenIndex {
    /// The principal owning `secret`, if any.
    ///
    /// The secret is hashed first and the map is keyed by the digest, so lookup timing reveals
    /// nothing an attacker can steer; the final comparison is constant-time anyway.
    pub fn authenticate(&self, secret: &str) -> Option<&Principal> {
        let digest = token_digest(secret);
        let (stored, principal) = self.by_digest.get_key_value(&digest)?;
        bool::from(stored.ct_eq(&digest)).then_some(principal)
    }

    /// The principal owning a stream-only token.
    pub fn authenticate_stream(&self, secret: &str) -> Option<&Principal> {
        let digest = token_digest(secret);
        let (stored, principal) = self.by_stream_token.get_key_value(&digest)?;
        bool::from(stored.ct_eq(&digest)).then_some(principal)
    }
}

/// The stream-only token of a token: `st_` + hex HMAC-SHA256(server key, token digest).
pub fn stream_token(server_key: &[u8; 32], token_sha256_hex: &str) -> String {
    let mut message = b"rollgate-stream:".to_vec();
    message.extend_from_slice(token_sha256_hex.as_bytes());
    format!(
        "st_{}",
        hex::encode(crate::webhooks::hmac_sha256(server_key, &message))
    )
}

/// Request-size limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest accepted JSON body on the ops API, in bytes.
    pub max_body: usize,
    /// Largest accepted OFREP evaluation body, in bytes.
    pub max_eval_body: usize,
    /// Most signals accepted in one batch.
    pub max_signals: usize,
    /// Largest accepted signals body, in bytes.
    pub max_signals_body: usize,
}

/// Timing settings of the background machinery.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How often the controller re-evaluates releases when nothing wakes it.
    pub controller_tick: Duration,
    /// SSE heartbeat interval.
    pub heartbeat: Duration,
    /// How often signal aggregates are persisted.
    pub aggregate_flush: Duration,
    /// Per-token signal rate limit (signals per second; 0 = unlimited).
    pub signals_per_second: u64,
}

/// What [`AppState::new`] is built from.
pub struct StateParts {
    /// Open store.
    pub store: Store,
    /// Loaded flags.
    pub live: Live,
    /// Loaded policies.
    pub policies: PolicySet,
    /// Body limits.
    pub limits: Limits,
    /// Background timing.
    pub timing: Timing,
    /// Started webhook delivery.
    pub webhooks: Webhooks,
}

/// Everything the handlers share.
pub struct AppState {
    /// Durable storage.
    pub store: Store,
    /// The flag set evaluation reads.
    pub live: ArcSwap<Live>,
    /// Valid tokens.
    pub tokens: ArcSwap<TokenIndex>,
    /// Loaded policies.
    pub policies: ArcSwap<PolicySet>,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// The single writer: serializes every control-path change and owns the releases.
    pub writer: tokio::sync::Mutex<Writer>,
    /// Request-size limits.
    pub limits: Limits,
    /// Background timing.
    pub timing: Timing,
    /// Change events for streaming clients.
    pub hub: Arc<ChangeHub>,
    /// Outgoing webhooks.
    pub webhooks: Webhooks,
    /// Signal aggregates.
    pub signals: Aggregates,
    /// Flags watched by a live release (read by ingestion without taking the writer lock).
    pub watched: ArcSwap<HashSet<String>>,
    /// Wakes the controller early (signals arrived, a command was given).
    pub wakeup: tokio::sync::Notify,
    /// Key for derived stream tokens.
    pub server_key: [u8; 32],
    /// Per-token signal rate limits.
    pub rate_limiter: crate::signals::RateLimiter,
}

impl AppState {
    /// Builds the state from an open store.
    pub fn new(parts: StateParts) -> Result<Self, StoreError> {
        let server_key = parts.store.server_key()?;
        let releases = parts.store.releases()?;
        let signals = match parts.store.aggregates()? {
            Some(saved) => Aggregates::restore(saved),
            None => Aggregates::default(),
        };
        let epoch = crate::ops::now_ms();
        let state = AppState {
            store: parts.store,
            live: ArcSwap::from_pointee(parts.live),
            tokens: ArcSwap::from_pointee(TokenIndex::default()),
            policies: ArcSwap::from_pointee(parts.policies),
            metrics: Metrics::default(),
            writer: tokio::sync::Mutex::new(Writer::new(releases)),
            limits: parts.limits,
            timing: parts.timing,
            hub: Arc::new(ChangeHub::new(epoch, 1024)),
            webhooks: parts.webhooks,
            signals,
            watched: ArcSwap::from_pointee(HashSet::new()),
            wakeup: tokio::sync::Notify::new(),
            server_key,
            rate_limiter: crate::signals::RateLimiter::default(),
        };
        state.reload_tokens()?;
        Ok(state)
    }

    /// Rebuilds the token index from the store.
    pub(crate) fn reload_tokens(&self) -> Result<(), StoreError> {
        let mut by_digest = HashMap::new();
        let mut by_stream_token = HashMap::new();
        for t in self.store.tokens()? {
            let Ok(raw) = hex::decode(&t.sha256) else {
                continue;
            };
            let Ok(digest) = <[u8; 32]>::try_from(raw.as_slice()) else {
                continue;
            };
            let principal = Principal {
                name: Arc::from(t.name.as_str()),
                role: t.role,
            };
            by_stream_token.insert(
                token_digest(&stream_token(&self.server_key, &t.sha256)),
                principal.clone(),
            );
            by_digest.insert(digest, principal);
        }
        self.tokens.store(Arc::new(TokenIndex {
            by_digest,
            by_stream_token,
        }));
        Ok(())
    }

    /// The stream-only token of the caller's token.
    pub fn stream_token_for(&self, presented_secret: &str) -> String {
        stream_token(
            &self.server_key,
            &hex::encode(token_digest(presented_secret)),
        )
    }
}
