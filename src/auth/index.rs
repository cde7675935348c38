//! The token index: presented secrets → principals, rebuilt from the stored tokens and swapped
//! atomically ([`TokenBook`]), and the stream-only tokens derived from each token.
//!
//! A request is authenticated once, but a stream outlives its request: it [`TokenBook::hold`]s
//! its token, and the [`Held`] handle resolves [`Held::revoked`] when a rebuild no longer
//! contains that token. A rebuild bumps a generation counter (a `watch` channel); each held
//! token then does one map lookup by its already computed digest, so a revocation costs one
//! lookup per open stream and an event costs nothing.
//!
//! The SHA-256 of a presented secret is remembered per thread for the last few secrets
//! (`recent.rs`): a digest depends on the secret alone, never on the index, so a revocation —
//! a new index without the digest — still takes effect on the very next request.

mod recent;

use super::hmac::hmac_sha256;
use super::{token_digest, Role, StoredToken};
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::Arc;
use subtle::ConstantTimeEq;
use tokio::sync::watch;

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    /// Token name (recorded as the actor in the audit log).
    pub name: Arc<str>,
    /// Token role.
    pub role: Role,
}

/// A token as the index holds it: its principal and its stream-only token, derived once when
/// the index is built (not per request).
#[derive(Debug)]
pub struct Entry {
    /// Who the token is.
    pub principal: Principal,
    /// Its stream-only token (`st_…`).
    pub stream_token: Arc<str>,
}

/// Token hashes → principals.
#[derive(Debug, Default)]
pub struct TokenIndex {
    by_digest: HashMap<[u8; 32], Entry>,
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
            let stream = stream_token(server_key, &t.sha256);
            index
                .by_stream_token
                .insert(token_digest(&stream), principal.clone());
            index.by_digest.insert(
                digest,
                Entry {
                    principal,
                    stream_token: Arc::from(stream),
                },
            );
        }
        index
    }

    /// The principal owning `secret`, if any.
    ///
    /// The secret is hashed first and the map is keyed by the digest, so lookup timing reveals
    /// nothing an attacker can steer; the final comparison is constant-time anyway.
    pub fn authenticate(&self, secret: &str) -> Option<&Principal> {
        self.entry(secret).map(|e| &e.principal)
    }

    /// The entry (principal and stream-only token) of the token `secret`, if any; same lookup
    /// as [`TokenIndex::authenticate`].
    pub fn entry(&self, secret: &str) -> Option<&Entry> {
        let digest = recent::digest(secret);
        let (stored, entry) = self.by_digest.get_key_value(&digest)?;
        bool::from(stored.ct_eq(&digest)).then_some(entry)
    }

    /// The principal owning a stream-only token.
    pub fn authenticate_stream(&self, secret: &str) -> Option<&Principal> {
        self.find(Presented::StreamToken(token_digest(secret)))
    }

    fn find(&self, presented: Presented) -> Option<&Principal> {
        let (hit, digest) = match &presented {
            Presented::Token(d) => (
                self.by_digest
                    .get_key_value(d)
                    .map(|(k, e)| (k, &e.principal)),
                d,
            ),
            Presented::StreamToken(d) => (self.by_stream_token.get_key_value(d), d),
        };
        let (stored, principal) = hit?;
        bool::from(stored.ct_eq(digest)).then_some(principal)
    }
}

/// A presented secret, by its digest: a regular token or a stream-only one.
#[derive(Debug, Clone, Copy)]
enum Presented {
    Token([u8; 32]),
    StreamToken([u8; 32]),
}

/// Where a long-lived connection presented its secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// `Authorization` / `X-API-Key`: a regular token only.
    Header,
    /// A URL parameter: a stream-only token, or else a regular one.
    Url,
}

/// A token held by a long-lived connection (a stream), to learn when it is revoked.
#[derive(Debug)]
pub struct Held {
    book: Arc<TokenBook>,
    presented: Presented,
    generations: watch::Receiver<u64>,
}

impl Held {
    /// Resolves once the held token is no longer valid (revoked, or replaced under its name).
    /// Cancel-safe: it can sit in a `select!` and be re-created on every turn.
    pub async fn revoked(&mut self) {
        loop {
            if self.generations.changed().await.is_err() {
                // The book is gone only when the server is; nothing will revoke this token.
                return std::future::pending().await;
            }
            if self.book.load().find(self.presented).is_none() {
                return;
            }
        }
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
    /// Bumped after every rebuild, so that held tokens check themselves again.
    generation: watch::Sender<u64>,
}

impl TokenBook {
    /// A book over `tokens`.
    pub fn new(tokens: &[StoredToken], server_key: [u8; 32]) -> Self {
        TokenBook {
            index: ArcSwap::from_pointee(TokenIndex::build(tokens, &server_key)),
            server_key,
            generation: watch::Sender::new(0),
        }
    }

    /// The current index.
    pub fn load(&self) -> arc_swap::Guard<Arc<TokenIndex>> {
        self.index.load()
    }

    /// Replaces the index after tokens changed: it takes effect for the next request, and
    /// every [`Held`] token checks itself against it (open streams of a revoked token end).
    pub fn rebuild(&self, tokens: &[StoredToken]) {
        self.index
            .store(Arc::new(TokenIndex::build(tokens, &self.server_key)));
        // After the store: a holder woken by this bump sees the new index.
        self.generation.send_modify(|g| *g = g.wrapping_add(1));
    }

    /// Authenticates `secret` for a connection that outlives its request, returning the
    /// principal and the [`Held`] token that tells the connection when to end.
    pub fn hold(self: &Arc<Self>, secret: &str, via: Via) -> Option<(Principal, Held)> {
        // Subscribe before the lookup, so a revocation racing this call still wakes the holder.
        let generations = self.generation.subscribe();
        let digest = token_digest(secret);
        let index = self.index.load();
        let (presented, principal) = match via {
            Via::Header => None,
            Via::Url => {
                let p = Presented::StreamToken(digest);
                index.find(p).map(|principal| (p, principal))
            }
        }
        .or_else(|| {
            let p = Presented::Token(digest);
            index.find(p).map(|principal| (p, principal))
        })?;
        let held = Held {
            book: Arc::clone(self),
            presented,
            generations,
        };
        Some((principal.clone(), held))
    }
}
