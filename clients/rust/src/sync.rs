//! The config sync task: fetch `GET /api/v1/client/config`, follow `GET /api/v1/stream`, fall
//! back to polling, publish each new config.
//!
//! Decide vs do: [`Defs`] applies config bodies and change events to plain maps (pure);
//! [`run`] does the I/O around it.
//!
//! Policy:
//! - Start: one config fetch (so a server that refuses streaming still serves at once), then
//!   the stream. The stream's first event is a full `config` (or, when resuming with
//!   `Last-Event-ID`, the changes missed).
//! - An unreachable server is retried with exponential backoff and jitter, forever.
//! - A stream the server refuses (404, 405, 501, or not `text/event-stream`) switches to
//!   polling at once; a stream that fails `max_stream_failures` times in a row before
//!   delivering anything switches too. While polling, the stream is tried again every
//!   `stream_retry_interval`, and at once when a poll succeeds after the server was
//!   unreachable (it came back).
//! - Events of one chunk are applied in order and published together (one compilation).
//! - The server down later: the last config stays in force.

use crate::flagset::FlagSet;
use crate::shared::Shared;
use crate::sse::{Event, Parser};
use rollgate_eval::{FlagDef, SegmentDef};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The largest stream event accepted (a full config of many flags).
const MAX_EVENT_BYTES: usize = 64 << 20;

/// The definitions a client holds, and what it last applied.
#[derive(Debug, Default)]
pub(crate) struct Defs {
    pub(crate) flags: BTreeMap<String, FlagDef>,
    pub(crate) segments: BTreeMap<String, SegmentDef>,
    pub(crate) revision: Option<u64>,
    /// Whether the maps changed since the last publication.
    pub(crate) dirty: bool,
}

#[derive(Deserialize)]
struct ConfigBody {
    flags: Vec<Value>,
    #[serde(default)]
    segments: Vec<Value>,
    #[serde(default)]
    revision: Option<u64>,
}

#[derive(Deserialize)]
struct Change {
    #[serde(rename = "type")]
    kind: String,
    key: String,
    action: String,
    #[serde(default)]
    flag: Option<Value>,
    #[serde(default)]
    segment: Option<Value>,
    #[serde(default)]
    revision: Option<u64>,
}

/// A definition the client cannot read is skipped (and logged), never fatal: a newer server
/// may send fields this version does not know.
fn parse_def<T: serde::de::DeserializeOwned>(what: &str, v: Value) -> Option<T> {
    match serde_json::from_value(v) {
        Ok(d) => Some(d),
        Err(error) => {
            tracing::warn!(what, %error, "definition skipped: this client cannot read it");
            None
        }
    }
}

impl Defs {
    /// Replaces everything with a full config body. Same revision as applied: nothing to do.
    pub(crate) fn apply_config(&mut self, body: &str) -> Result<(), serde_json::Error> {
        let body: ConfigBody = serde_json::from_str(body)?;
        if body.revision.is_some() && body.revision == self.revision && !self.flags.is_empty() {
            return Ok(());
        }
        self.flags = body
            .flags
            .into_iter()
            .filter_map(|v| parse_def::<FlagDef>("flag", v))
            .map(|f| (f.key.clone(), f))
            .collect();
        self.segments = body
            .segments
            .into_iter()
            .filter_map(|v| parse_def::<SegmentDef>("segment", v))
            .map(|s| (s.key.clone(), s))
            .collect();
        self.revision = body.revision;
        self.dirty = true;
        Ok(())
    }

    /// Applies one `change` event.
    pub(crate) fn apply_change(&mut self, data: &str) -> Result<(), serde_json::Error> {
        let change: Change = serde_json::from_str(data)?;
        match (change.kind.as_str(), change.action.as_str()) {
            ("flag", "delete") => {
                self.flags.remove(&change.key);
            }
            ("flag", _) => {
                if let Some(def) = change.flag.and_then(|v| parse_def::<FlagDef>("flag", v)) {
                    self.flags.insert(def.key.clone(), def);
                }
            }
            ("segment", "delete") => {
                self.segments.remove(&change.key);
            }
            ("segment", _) => {
                if let Some(def) = change
                    .segment
                    .and_then(|v| parse_def::<SegmentDef>("segment", v))
                {
                    self.segments.insert(def.key.clone(), def);
                }
            }
            (other, _) => tracing::debug!(kind = other, "unknown change type ignored"),
        }
        if change.revision.is_some() {
            self.revision = change.revision;
        }
        self.dirty = true;
        Ok(())
    }
}

/// How a stream attempt ended.
enum StreamEnd {
    /// No HTTP answer (connection refused, reset, timeout): retry with backoff.
    Unreachable,
    /// The server refused streaming (404/405/501, or not an event stream): poll.
    Refused,
    /// An HTTP error or a stream that ended before delivering anything.
    Failed,
    /// The stream delivered events, then ended (or went idle): reconnect soon.
    Ended,
    /// Shutdown was asked for.
    Shutdown,
}

/// How a poll ended.
enum PollEnd {
    Applied,
    Unchanged,
    Unreachable,
    Failed,
}

struct Sync {
    shared: Arc<Shared>,
    defs: Defs,
    etag: Option<String>,
    last_event_id: Option<String>,
    shutdown: watch::Receiver<bool>,
}

/// The task: runs until shutdown.
pub(crate) async fn run(shared: Arc<Shared>, shutdown: watch::Receiver<bool>) {
    let mut sync = Sync {
        shared,
        defs: Defs::default(),
        etag: None,
        last_event_id: None,
        shutdown,
    };
    sync.run().await;
    sync.shared.streaming.store(false, Ordering::Relaxed);
}

impl Sync {
    async fn run(&mut self) {
        let o = self.shared.options.clone();
        let mut unreachable = matches!(self.poll().await, PollEnd::Unreachable);
        let mut failures = 0u32; // stream attempts in a row that delivered nothing
        let mut backoff = o.backoff_initial;
        let mut polling_until: Option<Instant> = None;
        while !self.stopping() {
            let stream_now = o.streaming && polling_until.is_none_or(|t| Instant::now() >= t);
            if stream_now {
                polling_until = None;
                match self.stream().await {
                    StreamEnd::Shutdown => return,
                    StreamEnd::Ended => {
                        failures = 0;
                        backoff = o.backoff_initial;
                        if !self.pause(jitter(o.backoff_initial)).await {
                            return;
                        }
                    }
                    StreamEnd::Refused => {
                        tracing::info!("the server refuses streaming; polling the config");
                        polling_until = Some(Instant::now() + o.stream_retry_interval);
                        failures = 0;
                    }
                    end @ (StreamEnd::Unreachable | StreamEnd::Failed) => {
                        if matches!(end, StreamEnd::Failed) {
                            failures += 1;
                        }
                        if failures >= o.max_stream_failures {
                            tracing::warn!(
                                failures,
                                "the stream keeps failing; polling the config"
                            );
                            polling_until = Some(Instant::now() + o.stream_retry_interval);
                            failures = 0;
                            backoff = o.backoff_initial;
                            continue;
                        }
                        if !self.pause(jitter(backoff)).await {
                            return;
                        }
                        backoff = (backoff * 2).min(o.backoff_max);
                        // Between stream attempts, keep the config fresh if the server answers.
                        if matches!(end, StreamEnd::Failed) || !self.shared.set.load().is_ready() {
                            self.poll().await;
                        }
                    }
                }
            } else {
                let came_back = match self.poll().await {
                    PollEnd::Unreachable => {
                        unreachable = true;
                        false
                    }
                    PollEnd::Applied | PollEnd::Unchanged => std::mem::take(&mut unreachable),
                    PollEnd::Failed => false,
                };
                if came_back && polling_until.is_some() {
                    polling_until = Some(Instant::now());
                    continue;
                }
                let mut wait = o.poll_interval;
                if let Some(t) = polling_until {
                    wait = wait.min(t.saturating_duration_since(Instant::now()));
                }
                if !self.pause(wait.max(Duration::from_millis(1))).await {
                    return;
                }
            }
        }
    }

    fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Sleeps `d`; false when shutdown came first.
    async fn pause(&mut self, d: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(d) => {}
            () = stopped(&mut self.shutdown) => {}
        }
        !self.stopping()
    }

    fn publish(&mut self) {
        if !self.defs.dirty {
            return;
        }
        self.defs.dirty = false;
        let set = FlagSet::build(
            &self.defs.flags,
            &self.defs.segments,
            self.defs.revision,
            Some(Instant::now()),
            self.shared.options.stripes,
        );
        tracing::debug!(flags = set.snapshot.len(), revision = ?self.defs.revision, "config applied");
        self.shared.publish(set);
    }

    async fn poll(&mut self) -> PollEnd {
        let url = format!("{}/api/v1/client/config", self.shared.base);
        let mut req = self
            .shared
            .http
            .get(url)
            .timeout(self.shared.options.request_timeout);
        if let Some(etag) = &self.etag {
            req = req.header(reqwest::header::IF_NONE_MATCH, etag);
        }
        let response = tokio::select! {
            r = req.send() => r,
            () = stopped(&mut self.shutdown) => return PollEnd::Failed,
        };
        let response = match response {
            Ok(r) => r,
            Err(error) => {
                tracing::debug!(%error, "config fetch failed");
                return PollEnd::Unreachable;
            }
        };
        let status = response.status();
        if status == reqwest::StatusCode::NOT_MODIFIED {
            return PollEnd::Unchanged;
        }
        if !status.is_success() {
            tracing::warn!(%status, "config fetch refused");
            return PollEnd::Failed;
        }
        let etag = response
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = match response.text().await {
            Ok(b) => b,
            Err(_) => return PollEnd::Unreachable,
        };
        if let Err(error) = self.defs.apply_config(&body) {
            tracing::warn!(%error, "config body unreadable; keeping the last config");
            return PollEnd::Failed;
        }
        self.etag = etag;
        if let Some(r) = self.defs.revision {
            // Stream ids are revisions: resume after what this config contains.
            self.last_event_id = Some(r.to_string());
        }
        self.publish();
        PollEnd::Applied
    }

    async fn stream(&mut self) -> StreamEnd {
        let o = &self.shared.options;
        let url = format!("{}/api/v1/stream", self.shared.base);
        let mut req = self
            .shared
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .header(reqwest::header::CACHE_CONTROL, "no-cache");
        if let Some(id) = &self.last_event_id {
            req = req.header("last-event-id", id);
        }
        let response = tokio::select! {
            r = tokio::time::timeout(o.request_timeout, req.send()) => r,
            () = stopped(&mut self.shutdown) => return StreamEnd::Shutdown,
        };
        let mut response = match response {
            Ok(Ok(r)) => r,
            Ok(Err(error)) => {
                tracing::debug!(%error, "stream connection failed");
                return StreamEnd::Unreachable;
            }
            Err(_) => return StreamEnd::Unreachable,
        };
        let status = response.status().as_u16();
        if matches!(status, 404 | 405 | 501) {
            return StreamEnd::Refused;
        }
        if status != 200 {
            tracing::warn!(status, "stream refused");
            return StreamEnd::Failed;
        }
        let is_sse = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !is_sse {
            return StreamEnd::Refused;
        }
        self.shared.streaming.store(true, Ordering::Relaxed);
        let mut parser = Parser::new(MAX_EVENT_BYTES);
        let mut events: Vec<Event> = Vec::new();
        let mut delivered = false;
        let idle = o.stream_idle_timeout;
        let end = loop {
            let chunk = tokio::select! {
                c = tokio::time::timeout(idle, response.chunk()) => c,
                () = stopped(&mut self.shutdown) => break StreamEnd::Shutdown,
            };
            let chunk = match chunk {
                Ok(Ok(Some(chunk))) => chunk,
                Ok(Ok(None)) | Ok(Err(_)) | Err(_) => {
                    break if delivered {
                        StreamEnd::Ended
                    } else {
                        StreamEnd::Failed
                    };
                }
            };
            delivered = true;
            if parser.feed(&chunk, &mut events).is_err() {
                tracing::warn!("stream event over the size bound; reconnecting");
                break StreamEnd::Ended;
            }
            for event in events.drain(..) {
                self.apply(&event);
            }
            self.publish();
        };
        self.shared.streaming.store(false, Ordering::Relaxed);
        end
    }

    fn apply(&mut self, event: &Event) {
        let applied = match event.event.as_str() {
            "config" => self.defs.apply_config(&event.data),
            "change" => self.defs.apply_change(&event.data),
            _ => return,
        };
        match applied {
            Ok(()) => {
                if let Some(id) = &event.id {
                    self.last_event_id = Some(id.clone());
                }
            }
            Err(error) => {
                // An event this client cannot read: resuming after it would skip it, so the
                // next connection starts from a fresh config instead.
                tracing::warn!(%error, event = %event.event, "stream event unreadable");
                self.last_event_id = None;
            }
        }
    }
}

/// Resolves once shutdown is asked for (holding no borrow of the channel across awaits).
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// A wait between half and all of `d`.
fn jitter(d: Duration) -> Duration {
    let f: f64 = rand::Rng::gen_range(&mut rand::thread_rng(), 0.5..=1.0);
    d.mul_f64(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLAG: &str = r#"{"key":"f","type":"boolean","variants":{"off":false,"on":true},"off_variant":"off","on_variant":"on","rollout":10}"#;

    #[test]
    fn config_then_changes_apply_in_order() {
        let mut d = Defs::default();
        d.apply_config(&format!(
            r#"{{"flags":[{FLAG}],"segments":[],"bucketing":"x","revision":3}}"#
        ))
        .unwrap();
        assert_eq!(d.revision, Some(3));
        assert_eq!(d.flags["f"].rollout.millis(), 10_000);
        let changed = FLAG.replace("\"rollout\":10", "\"rollout\":0");
        d.apply_change(&format!(
            r#"{{"type":"flag","key":"f","action":"upsert","flag":{changed},"revision":4,"cause":{{}}}}"#
        ))
        .unwrap();
        assert_eq!(d.flags["f"].rollout.millis(), 0);
        assert_eq!(d.revision, Some(4));
        d.apply_change(r#"{"type":"flag","key":"f","action":"delete","flag":null,"revision":5}"#)
            .unwrap();
        assert!(d.flags.is_empty());
        assert!(d.apply_change("not json").is_err());
    }

    #[test]
    fn a_segment_deletion_removes_the_segment() {
        let mut d = Defs::default();
        let seg = r#"{"key":"kiwis","when":[{"attribute":"country","op":"in","values":["NZ"]}]}"#;
        d.apply_config(&format!(
            r#"{{"flags":[{FLAG}],"segments":[{seg}],"bucketing":"x","revision":3}}"#
        ))
        .unwrap();
        assert!(d.segments.contains_key("kiwis"));
        // The event exactly as the server sends it (src/writer/events.rs).
        d.apply_change(
            r#"{"type":"segment","key":"kiwis","action":"delete","segment":null,"revision":4,"cause":{"action":"segment.delete"}}"#,
        )
        .unwrap();
        assert!(d.segments.is_empty());
        assert_eq!(d.revision, Some(4));
        assert_eq!(d.flags.len(), 1);
    }

    #[test]
    fn an_unreadable_flag_is_skipped_not_fatal() {
        let mut d = Defs::default();
        d.apply_config(&format!(
            r#"{{"flags":[{FLAG}, {{"key":"g","type":"colour"}}],"segments":[]}}"#
        ))
        .unwrap();
        assert_eq!(d.flags.len(), 1);
        assert_eq!(d.revision, None);
    }
}
