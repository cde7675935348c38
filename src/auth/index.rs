//! The token index: presented secrets → principals, rebuilt from the stored tokens and swapped
//! atomically ([`TokenBook`]), and the stream-only tokens derived from each token.

use super::hmac::hmac_sha256;
use super::{token_digest, Role, StoredToken};
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    /// Token name (recorded as the actor in the audit log).
    pub name: Arc<str>,
    /// Token role.
    pub role: Role,
}

/// Token hashes → principals.
#[derive(Debug, Default)]
pub struct TokenIndex {
    by_digest: HashMap<[u8; 32], Principal>,
    /// Stream-only tokens (`st_…`) derived from each token, for URLs such as OFREP's
    /// `eventStreams`, where a browser cannot send headers.
    by_stream_token: HashMap<[u8; 32], Principal>,
}

impl TokenIndex {
    /// The index of `tokens`; records whose hash is not 32 hex bytes are skipped.
    pub fn build(tokens: &[StoredToken], server_key: &[u8; 32]) -> Self {
        let mut index = TokenIndex::default();
        for t in tokens {
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
            index.by_stream_token.insert(
                token_digest(&stream_token(server_key, &t.sha256)),
                principal.clone(),
            );
            index.by_digest.insert(digest, principal);
        }
        index
    }

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
    format!("st_{}", hex::encode(hmac_sha256(server_key, &message)))
}

/// The live token index and the key stream tokens are derived with; shared by the handlers
/// (registered as its own `web::Data` so that the auth extractors need nothing above them).
#[derive(Debug)]
pub struct TokenBook {
    index: ArcSwap<TokenIndex>,
    server_key: [u8; 32],
}

impl TokenBook {
    /// A book over `tokens`.
    pub fn new(tokens: &[StoredToken], server_key: [u8; 32]) -> Self {
        TokenBook {
            index: ArcSwap::from_pointee(TokenIndex::build(tokens, &server_key)),
            server_key,
        }
    }

    /// The current index.
    pub fn load(&self) -> arc_swap::Guard<Arc<TokenIndex>> {
        self.index.load()
    }

    /// Replaces the index after tokens changed (takes effect for the next request).
    pub fn rebuild(&self, tokens: &[StoredToken]) {
        self.index
            .store(Arc::new(TokenIndex::build(tokens, &self.server_key)));
    }

    /// The stream-only token of the presented secret's token.
    pub fn stream_token_for(&self, presented_secret: &str) -> String {
        stream_token(
            &self.server_key,
            &hex::encode(token_digest(presented_secret)),
        )
    }

    /// A principal for a URL token: a stream-only token or a regular one.
    pub fn authenticate_url_token(&self, secret: &str) -> Option<Principal> {
        let index = self.index.load();
        index
            .authenticate_stream(secret)
            .or_else(|| index.authenticate(secret))
            .cloned()
    }
}
