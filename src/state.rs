//! The one shared application state handed to every handler (`web::Data<AppState>`): the parts
//! of the server, wired once. Behaviour lives in the rooms that own it (`ops`, `controller`,
//! `writer`, `signals`, `auth`); this file only holds and builds the parts.

use crate::auth::TokenBook;
use crate::cluster::pg::WriteTx;
use crate::cluster::Node;
use crate::hub::ChangeHub;
use crate::lease::Lease;
use crate::live::Live;
use crate::metrics::Metrics;
use crate::policies::PolicySet;
use crate::proxies::TrustedProxies;
use crate::reach::Reach;
use crate::signals::Aggregates;
use crate::store::{Store, StoreError};
use crate::webhooks::Webhooks;
use crate::writer::{Batch, OpsError, Sinks, WriteGuard, Writer};
use arc_swap::ArcSwap;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

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
    /// Peers whose forwarded headers are believed.
    pub proxies: TrustedProxies,
    /// Reach tracking: the window, bounds, target share and timeout.
    pub reach: crate::reach::Settings,
    /// This node's part of a cluster (`None`: a single node on sled).
    pub cluster: Option<Arc<Node>>,
    /// Whether this node may act as the controller.
    pub lease: Arc<dyn Lease>,
}

/// Everything the handlers share.
pub struct AppState {
    /// Durable storage.
    pub store: Store,
    /// The flag set evaluation reads.
    pub live: ArcSwap<Live>,
    /// Valid tokens (also registered on its own for the auth extractors).
    pub tokens: Arc<TokenBook>,
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
    /// Flags watched by a live release or a hand guard (owned by the controller; read by the
    /// signals handler without taking the writer lock).
    pub watched: ArcSwap<HashSet<String>>,
    /// Wakes the controller early (signals arrived, a command was given).
    pub wakeup: tokio::sync::Notify,
    /// Per-token signal rate limits.
    pub rate_limiter: crate::signals::RateLimiter,
    /// Whether this node may act as the controller.
    pub lease: Arc<dyn Lease>,
    /// Peers whose forwarded headers are believed.
    pub proxies: TrustedProxies,
    /// Which live clients applied which change (fed by signal batches and commits).
    pub reach: Reach,
    /// This node's part of a cluster (`None`: a single node on sled; docs/cluster.md).
    pub cluster: Option<Arc<Node>>,
    /// The latest Prometheus answers of Prometheus-sourced guards (filled by the poller on the
    /// node holding the controller lease).
    pub prom: crate::sources::readings::Readings,
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
        let tokens = TokenBook::new(&parts.store.tokens()?, server_key);
        let revision = parts.store.revision()?;
        let mut live = parts.live;
        live.revision = revision;
        Ok(AppState {
            store: parts.store,
            live: ArcSwap::from_pointee(live),
            tokens: Arc::new(tokens),
            policies: ArcSwap::from_pointee(parts.policies),
            metrics: Metrics::default(),
            writer: tokio::sync::Mutex::new({
                let mut w = Writer::new(releases);
                w.node = parts.cluster.as_ref().map(|n| n.id.clone());
                w
            }),
            limits: parts.limits,
            timing: parts.timing,
            hub: Arc::new(ChangeHub::new(revision, 1024)),
            webhooks: parts.webhooks,
            signals,
            watched: ArcSwap::from_pointee(HashSet::new()),
            wakeup: tokio::sync::Notify::new(),
            rate_limiter: crate::signals::RateLimiter::default(),
            lease: parts.lease,
            proxies: parts.proxies,
            reach: Reach::new(parts.reach, revision),
            cluster: parts.cluster,
            prom: Default::default(),
        })
    }

    /// Where commits go.
    pub fn sinks(&self) -> Sinks<'_> {
        Sinks {
            store: &self.store,
            pool: self.cluster.as_deref().map(|c| &c.pool),
            live: &self.live,
            tokens: &self.tokens,
            policies: &self.policies,
            hub: &self.hub,
            webhooks: &self.webhooks,
            reach: &self.reach,
        }
    }

    /// Takes the single writer. In a cluster it also begins the database transaction that
    /// holds the global head lock and applies whatever other nodes committed before it, so
    /// the change is built on the newest state; with the database unreachable it fails
    /// ([`OpsError::Cluster`], answered 503) and nothing is written.
    pub async fn write(&self) -> Result<WriteGuard<'_>, OpsError> {
        let w = self.writer.lock().await;
        let Some(node) = &self.cluster else {
            return Ok(WriteGuard::local(w));
        };
        let tx = match WriteTx::begin(&node.pool).await {
            Ok(tx) => tx,
            Err(e) => {
                node.set_db_up(false);
                return Err(e.into());
            }
        };
        node.set_db_up(true);
        let applied = self.hub.last_seq();
        let rows = if tx.head() > applied {
            tx.rows_after(applied).await?
        } else {
            Vec::new()
        };
        let mut guard = WriteGuard::cluster(w, tx);
        if !rows.is_empty() {
            self.sinks().apply_feed(&mut guard, rows).await?;
        }
        Ok(guard)
    }

    /// Commits `batch` durably, then publishes it (see [`Sinks::commit`]).
    pub async fn commit(&self, w: &mut WriteGuard<'_>, batch: Batch) -> Result<(), OpsError> {
        self.sinks().commit(w, batch).await
    }
}
