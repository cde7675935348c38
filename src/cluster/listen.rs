//! The notification connection: one dedicated connection that `LISTEN`s on `rollgate_feed` and
//! `rollgate_signals` and wakes whoever waits for them. Notifications only wake; the feed
//! follower reads what is new itself (and polls anyway), so a lost notification or a killed
//! connection delays a change by at most the safety-poll interval. The connection is
//! re-established with backoff, and every (re)connection wakes the follower to catch up.

use super::db;
use futures_util::StreamExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// Who to wake.
#[derive(Debug, Clone)]
pub struct Wakes {
    /// A write committed somewhere (`rollgate_feed`).
    pub feed: Arc<Notify>,
    /// A node flushed signals (`rollgate_signals`).
    pub signals: Arc<Notify>,
    /// Whether the notification connection is up.
    pub connected: Arc<AtomicBool>,
}

/// Listens until `shutdown`, reconnecting after any failure.
pub async fn run(
    url: String,
    ca_file: Option<std::path::PathBuf>,
    wakes: Wakes,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        if *shutdown.borrow() {
            return;
        }
        tokio::select! {
            result = listen_once(&url, ca_file.as_deref(), &wakes) => {
                wakes.connected.store(false, Ordering::Relaxed);
                match result {
                    Ok(()) => tracing::warn!("notification connection closed; reconnecting"),
                    Err(e) => tracing::warn!(error = %e, "notification connection failed; reconnecting"),
                }
            }
            _ = shutdown.changed() => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// One connection's life: `LISTEN`, then wake on every notification until it closes.
async fn listen_once(
    url: &str,
    ca_file: Option<&std::path::Path>,
    wakes: &Wakes,
) -> Result<(), super::ClusterError> {
    let (client, mut connection) = db::connect(url, ca_file).await?;
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx)).boxed();
    let listen = client.batch_execute("LISTEN rollgate_feed; LISTEN rollgate_signals");
    // The connection must be driven while the LISTEN runs.
    let mut listen = std::pin::pin!(listen);
    loop {
        tokio::select! {
            done = &mut listen => { done?; break; }
            message = messages.next() => match message {
                Some(Ok(m)) => notify(wakes, m),
                Some(Err(e)) => return Err(e.into()),
                None => return Ok(()),
            }
        }
    }
    wakes.connected.store(true, Ordering::Relaxed);
    tracing::info!("listening for cluster changes");
    // Whatever was committed while this connection was down is read now.
    wakes.feed.notify_one();
    wakes.signals.notify_one();
    while let Some(message) = messages.next().await {
        notify(wakes, message?);
    }
    Ok(())
}

fn notify(wakes: &Wakes, message: tokio_postgres::AsyncMessage) {
    if let tokio_postgres::AsyncMessage::Notification(n) = message {
        match n.channel() {
            "rollgate_feed" => wakes.feed.notify_one(),
            "rollgate_signals" => wakes.signals.notify_one(),
            _ => {}
        }
    }
}
