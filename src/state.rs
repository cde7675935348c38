//! The one shared application state handed to every handler (`web::Data<AppState>`).

use crate::domain::{token_digest, Role};
use crate::live::Live;
use crate::metrics::Metrics;
use crate::policies::PolicySet;
use crate::store::{Store, StoreError};
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::Arc;
use subtle::ConstantTimeEq;
use uuid::Uuid;

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
}

/// Request-size limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest accepted JSON body on the ops API, in bytes.
    pub max_body: usize,
    /// Largest accepted OFREP evaluation body, in bytes.
    pub max_eval_body: usize,
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
    /// Serializes control-path writers; holds the last audit id issued.
    pub(crate) writer: tokio::sync::Mutex<Uuid>,
    /// Request-size limits.
    pub limits: Limits,
}

impl AppState {
    /// Builds the state from an open store.
    pub fn new(
        store: Store,
        live: Live,
        policies: PolicySet,
        limits: Limits,
    ) -> Result<Self, StoreError> {
        let state = AppState {
            store,
            live: ArcSwap::from_pointee(live),
            tokens: ArcSwap::from_pointee(TokenIndex::default()),
            policies: ArcSwap::from_pointee(policies),
            metrics: Metrics::default(),
            writer: tokio::sync::Mutex::new(Uuid::nil()),
            limits,
        };
        state.reload_tokens()?;
        Ok(state)
    }

    /// Rebuilds the token index from the store.
    pub(crate) fn reload_tokens(&self) -> Result<(), StoreError> {
        let mut by_digest = HashMap::new();
        for t in self.store.tokens()? {
            let Ok(raw) = hex::decode(&t.sha256) else {
                continue;
            };
            let Ok(digest) = <[u8; 32]>::try_from(raw.as_slice()) else {
                continue;
            };
            by_digest.insert(
                digest,
                Principal {
                    name: Arc::from(t.name.as_str()),
                    role: t.role,
                },
            );
        }
        self.tokens.store(Arc::new(TokenIndex { by_digest }));
        Ok(())
    }
}
