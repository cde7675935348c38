//! [`Shared`]: the state the client handles and the background tasks (config sync, signal
//! flushing) share, below all of them so none imports another to reach it.

use crate::flagset::FlagSet;
use crate::options::Options;
use crate::signals::{Acc, Pending};
use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// The `sdk` name reported to the server.
pub(crate) const SDK: &str = concat!("rollgate-rust/", env!("CARGO_PKG_VERSION"));

/// State shared by the client handles and the background tasks.
pub(crate) struct Shared {
    pub(crate) options: Options,
    pub(crate) set: ArcSwap<FlagSet>,
    /// Sets replaced since the flusher last drained them all (their counters may still move).
    pub(crate) retired: Mutex<Vec<Arc<FlagSet>>>,
    pub(crate) pending: Pending,
    pub(crate) http: reqwest::Client,
    pub(crate) base: String,
    pub(crate) client_id: String,
    pub(crate) ready: watch::Sender<bool>,
    pub(crate) streaming: AtomicBool,
    /// Evaluation errors with no variant to attribute them to (flag not found, no key…).
    pub(crate) unattributed_errors: AtomicU64,
    /// Reports and complaints dropped because no variant was known for them.
    pub(crate) unattributed_reports: AtomicU64,
    pub(crate) batches_sent: AtomicU64,
    /// The server refused the `client` report (a server older than the protocol): sent
    /// without it from then on.
    pub(crate) client_report_refused: AtomicBool,
}

impl Shared {
    /// Publishes a new set: carries "last served" over and retires the old set.
    pub(crate) fn publish(&self, set: FlagSet) {
        let current = self.set.load();
        set.inherit_last_served(&current);
        drop(current);
        let old = self.set.swap(Arc::new(set));
        self.retired
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(old);
        self.ready.send_replace(true);
    }

    /// One `error` of what `flag` served: (variant, audience).
    pub(crate) fn error_signal(&self, flag: &str, served: (&str, Option<&str>)) {
        self.pending.add(flag, served, "error", Acc::count(1));
    }
}
