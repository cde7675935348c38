//! The signal flusher task: every flush interval, move exposures out of the snapshots'
//! counters into the pending store and send it to `POST /api/v1/signals` in batches, with the
//! `client` report (`docs/clients.md`).
//!
//! Policy:
//! - A 429 keeps the batch and waits its `Retry-After` (integer seconds, default 1 s) before
//!   sending again; signals keep aggregating meanwhile.
//! - A network error or a 5xx keeps the batch for the next round; a 4xx other than 429 drops
//!   it (counted): sending it again cannot succeed.
//! - With nothing to send, a heartbeat (`{"signals": [], "client": …}`) goes at the heartbeat
//!   interval, when there is a revision to report.
//! - On shutdown, the last batches (a heartbeat if nothing else is pending) say
//!   `"closing": true`, so the server stops counting this client as live at once.
//! - A server that rejects the `client` field (older than the protocol) gets batches without
//!   it from then on.
//! - Retired snapshots are drained until no reader holds them (then once more, and dropped).

use crate::shared::{Shared, SDK};
use crate::signals::{to_wire, Acc, SeriesKey, WireSignal};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

#[derive(Serialize)]
struct Batch<'a> {
    signals: &'a [WireSignal],
    #[serde(skip_serializing_if = "Option::is_none")]
    client: Option<ClientReport<'a>>,
}

#[derive(Serialize)]
struct ClientReport<'a> {
    id: &'a str,
    revision: u64,
    applied_ms_ago: u64,
    sdk: &'a str,
    /// The last batches, sent on shutdown: the server stops counting this client as live.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    closing: bool,
}

enum Sent {
    Ok,
    /// Keep the batch and wait this long.
    RetryAfter(Duration),
    /// Keep the batch for the next round.
    Later,
    /// Drop the batch (counted).
    Refused,
}

struct Flusher {
    shared: Arc<Shared>,
    retry_at: Option<Instant>,
    /// Signals per batch now: halved on each 429 (a server's burst may be smaller than a
    /// batch, which would then never pass), doubled back on each success.
    batch_limit: usize,
    last_sent: Instant,
    /// The shutdown round: its batches carry `closing` (docs/clients.md).
    closing: bool,
}

/// The task: runs until shutdown, then flushes once more.
pub(crate) async fn run(
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    mut flush: mpsc::Receiver<oneshot::Sender<()>>,
) {
    let mut f = Flusher {
        shared: shared.clone(),
        retry_at: None,
        batch_limit: shared_max_batch(&shared),
        last_sent: Instant::now(),
        closing: false,
    };
    let mut tick = tokio::time::interval(f.shared.options.flush_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.reset();
    loop {
        tokio::select! {
            _ = tick.tick() => f.round(false).await,
            asked = flush.recv() => {
                f.round(false).await;
                if let Some(done) = asked {
                    let _ = done.send(());
                }
            }
            () = crate::sync::stopped(&mut shutdown) => break,
        }
    }
    let budget = f.shared.options.shutdown_timeout;
    let _ = tokio::time::timeout(budget, f.round(true)).await;
}

impl Flusher {
    fn drain_snapshots(&self) {
        let shared = &self.shared;
        let current = shared.set.load_full();
        current
            .drain(|flag, served, n| shared.pending.add(flag, served, "exposure", Acc::count(n)));
        let mut retired =
            std::mem::take(&mut *shared.retired.lock().unwrap_or_else(|e| e.into_inner()));
        retired.retain(|set| {
            // Only this list holds it: no evaluation can still count into it, so this drain
            // is its last.
            let last = Arc::strong_count(set) == 1;
            set.drain(|flag, served, n| {
                shared.pending.add(flag, served, "exposure", Acc::count(n))
            });
            !last
        });
        let mut list = shared.retired.lock().unwrap_or_else(|e| e.into_inner());
        retired.append(&mut list);
        *list = retired;
    }

    /// One round: drain, then send everything pending (unless a 429 asked to wait).
    async fn round(&mut self, closing: bool) {
        self.closing = closing;
        self.drain_snapshots();
        if let Some(at) = self.retry_at {
            let now = Instant::now();
            if at > now {
                if !closing {
                    return;
                }
                // Closing: honour the wait if the shutdown budget allows it (the caller's
                // timeout cuts it short otherwise).
                tokio::time::sleep(at - now).await;
            }
            self.retry_at = None;
        }
        let pending = self.shared.pending.take_all();
        if pending.is_empty() {
            // A heartbeat when one is due, and always on shutdown (the closing report).
            if closing || self.last_sent.elapsed() >= self.shared.options.heartbeat_interval {
                if let Some(client) = self.client_report() {
                    let _ = self.send(&[], Some(client)).await;
                    self.last_sent = Instant::now();
                }
            }
            return;
        }
        self.send_all(pending).await;
    }

    async fn send_all(&mut self, pending: HashMap<SeriesKey, Acc>) {
        let wire = to_wire(&pending);
        let max = shared_max_batch(&self.shared);
        let mut sent_upto = 0usize;
        let mut outcome = Sent::Ok;
        while sent_upto < wire.len() {
            let end = (sent_upto + self.batch_limit.max(1)).min(wire.len());
            let chunk = &wire[sent_upto..end];
            let client = self.client_report();
            outcome = self.send(chunk, client).await;
            match outcome {
                Sent::Ok => self.batch_limit = (self.batch_limit * 2).min(max),
                Sent::RetryAfter(_) => {
                    self.batch_limit = (chunk.len() / 2).max(1);
                    break;
                }
                Sent::Later | Sent::Refused => break,
            }
            sent_upto = end;
        }
        self.last_sent = Instant::now();
        let unsent = &wire[sent_upto..];
        if unsent.is_empty() {
            return;
        }
        match outcome {
            Sent::RetryAfter(d) => {
                self.retry_at = Some(Instant::now() + d);
                self.keep(unsent);
            }
            Sent::Later => self.keep(unsent),
            Sent::Refused | Sent::Ok => {
                let events: u64 = unsent.iter().map(|s| s.events).sum();
                self.shared
                    .pending
                    .dropped
                    .fetch_add(events, Ordering::Relaxed);
            }
        }
    }

    /// Puts unsent signals back into the pending store.
    fn keep(&self, unsent: &[WireSignal]) {
        for s in unsent {
            let acc = Acc::from_wire(s);
            let served = (&*s.variant, s.audience.as_deref());
            self.shared.pending.add(&s.flag, served, &s.metric, acc);
        }
    }

    fn client_report(&self) -> Option<ClientReport<'_>> {
        if self.shared.client_report_refused.load(Ordering::Relaxed) {
            return None;
        }
        let set = self.shared.set.load();
        let revision = set.revision?;
        let ago = set.applied_at.map_or(0, |t| t.elapsed().as_millis());
        Some(ClientReport {
            id: &self.shared.client_id,
            revision,
            applied_ms_ago: u64::try_from(ago).unwrap_or(u64::MAX).min(86_400_000),
            sdk: SDK,
            closing: self.closing,
        })
    }

    async fn send(&self, signals: &[WireSignal], client: Option<ClientReport<'_>>) -> Sent {
        let with_client = client.is_some();
        let outcome = self.post(&Batch { signals, client }).await;
        match outcome {
            Err(body) if with_client && refuses_client_field(&body) => {
                tracing::info!("the server does not take the client report; sending without it");
                self.shared
                    .client_report_refused
                    .store(true, Ordering::Relaxed);
                if signals.is_empty() {
                    return Sent::Ok;
                }
                self.post(&Batch {
                    signals,
                    client: None,
                })
                .await
                .unwrap_or(Sent::Refused)
            }
            Err(_) => Sent::Refused,
            Ok(sent) => sent,
        }
    }

    /// Posts a batch; `Err(body)` for a 400 (so the caller can look at it).
    async fn post(&self, batch: &Batch<'_>) -> Result<Sent, String> {
        let url = format!("{}/api/v1/signals", self.shared.base);
        let response = self
            .shared
            .http
            .post(url)
            .timeout(self.shared.options.request_timeout)
            .json(batch)
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            Err(error) => {
                tracing::debug!(%error, "signals not sent; kept for the next round");
                return Ok(Sent::Later);
            }
        };
        let status = response.status().as_u16();
        match status {
            200..=299 => {
                if !batch.signals.is_empty() {
                    self.shared.batches_sent.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Sent::Ok)
            }
            429 => {
                let secs = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(1)
                    .clamp(1, 3600);
                tracing::debug!(secs, "signals rate limited; waiting as asked");
                Ok(Sent::RetryAfter(Duration::from_secs(secs)))
            }
            400 => Err(response.text().await.unwrap_or_default()),
            401 | 403 | 413 | 422 => {
                tracing::warn!(status, "signals batch refused; dropped");
                Ok(Sent::Refused)
            }
            _ => Ok(Sent::Later),
        }
    }
}

fn shared_max_batch(shared: &Shared) -> usize {
    shared.options.max_batch_signals.max(1)
}

/// A 400 that names the `client` field as unknown: a server older than the client report.
fn refuses_client_field(body: &str) -> bool {
    body.contains("unknown field `client`")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_client_field_is_recognised() {
        assert!(refuses_client_field(
            r#"{"error":{"code":"bad_request","message":"unknown field `client`, expected `signals`"}}"#
        ));
        assert!(!refuses_client_field(
            r#"{"error":{"message":"signals[0].count"}}"#
        ));
    }
}
