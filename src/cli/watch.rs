//! `rollgate watch`: follows `GET /api/v1/stream` and prints one line per change until
//! interrupted (`--output json`/`--json`: the raw `data` of each change event, one JSON document
//! per line; `--output yaml`: each change as a YAML document after a `---` line).
//!
//! The Server-Sent Events parser ([`SseParser`]) is written by hand over the blocking
//! response's `Read`: lines, `event:` / `data:` / `id:` / `retry:` fields, `:` comments
//! (heartbeats), a blank line ends an event. It is pure and unit-tested.
//!
//! Reconnection: when an established stream drops (server restart, idle timeout, network),
//! the watcher reconnects with `Last-Event-ID` so the server replays what was missed, waiting
//! the server's `retry:` delay, doubled after each failed attempt up to [`MAX_BACKOFF`]. A
//! first connection that fails is an error (exit 2 / 3) rather than a silent retry loop, and a
//! refused token always is.

use super::client::{root_cause, CliError, Client};
use super::output::{clean, emit, percent_of, text_of, yaml, Format};
use super::Remote;
use clap::Args;
use reqwest::Method;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// With no byte at all (heartbeats included) for this long, the stream is presumed dead and
/// reopened. The server heartbeats every 10 s by default.
const IDLE_TIMEOUT: Duration = Duration::from_secs(45);
/// First reconnection delay when the server sent no `retry:`.
const DEFAULT_RETRY: Duration = Duration::from_millis(500);
/// Longest wait between reconnection attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// `rollgate watch`
#[derive(Debug, Args)]
pub struct WatchArgs {
    #[command(flatten)]
    remote: Remote,
    /// Exit after this many change events (for tests and scripts).
    #[arg(long, hide = true)]
    max_events: Option<u64>,
}

/// One dispatched server-sent event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// `event:` field, `message` when absent.
    pub event: String,
    /// `data:` lines joined with `\n`.
    pub data: String,
    /// The last event id seen on the connection when this event was dispatched.
    pub id: Option<String>,
}

/// Incremental SSE parser: feed it lines (without their line ending), take the events.
#[derive(Debug, Default)]
pub struct SseParser {
    event: String,
    data: String,
    has_data: bool,
    last_id: Option<String>,
    retry: Option<Duration>,
}

impl SseParser {
    /// A parser that resumes after `last_id` (kept across reconnections).
    pub fn resuming(last_id: Option<String>) -> Self {
        SseParser {
            last_id,
            ..SseParser::default()
        }
    }

    /// Feeds one line; returns the event a blank line completes.
    pub fn line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            return self.dispatch();
        }
        if line.starts_with(':') {
            return None; // comment: heartbeats
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => value.clone_into(&mut self.event),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "id" if !value.contains('\0') => self.last_id = Some(value.to_owned()),
            "retry" => {
                if let Ok(ms) = value.parse::<u64>() {
                    self.retry = Some(Duration::from_millis(ms));
                }
            }
            _ => {} // unknown fields are ignored, as the SSE rules say
        }
        None
    }

    /// The id to send as `Last-Event-ID` when reconnecting.
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_id.as_deref()
    }

    /// The reconnection delay the server asked for.
    pub fn retry(&self) -> Option<Duration> {
        self.retry
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = std::mem::take(&mut self.event);
        let data = std::mem::take(&mut self.data);
        if !std::mem::take(&mut self.has_data) {
            return None;
        }
        Some(SseEvent {
            event: if event.is_empty() {
                "message".to_owned()
            } else {
                event
            },
            data,
            id: self.last_id.clone(),
        })
    }
}

/// What the watcher carries from one connection to the next.
struct Follow {
    format: Format,
    max_events: Option<u64>,
    seen: u64,
    last_id: Option<String>,
    retry: Duration,
    connections: u64,
}

/// How one connection ended.
enum Ended {
    /// Enough events printed, or stdout closed: stop.
    Stop,
    /// The stream dropped; reconnect.
    Dropped(String),
}

/// Runs `watch`.
pub fn run(args: WatchArgs) -> Result<(), CliError> {
    let client = args.remote.client_with_timeout(Some(IDLE_TIMEOUT))?;
    let mut follow = Follow {
        format: args.remote.format(),
        max_events: args.max_events,
        seen: 0,
        last_id: None,
        retry: DEFAULT_RETRY,
        connections: 0,
    };
    if follow.max_events == Some(0) {
        return Ok(());
    }
    let mut delay = follow.retry;
    loop {
        let before = follow.connections;
        match follow_once(&client, &mut follow) {
            Ok(Ended::Stop) => return Ok(()),
            Ok(Ended::Dropped(why)) => eprintln!("rollgate: stream lost ({why}); reconnecting"),
            Err(e) if follow.connections == 0 || e.exit_code() == 3 => return Err(e),
            Err(e) => eprintln!("rollgate: {e}; retrying in {}", human(delay)),
        }
        // A connection that opened resets the backoff; a failed attempt doubles it.
        delay = if follow.connections > before {
            follow.retry
        } else {
            (delay * 2).min(MAX_BACKOFF)
        };
        std::thread::sleep(delay);
    }
}

/// Opens the stream once and prints its events until it ends.
fn follow_once(client: &Client, follow: &mut Follow) -> Result<Ended, CliError> {
    let mut request = client
        .request(Method::GET, "/api/v1/stream")?
        .header("Accept", "text/event-stream");
    if let Some(id) = &follow.last_id {
        request = request.header("Last-Event-ID", id.as_str());
    }
    let response = client.send(request)?;
    follow.connections += 1;
    if follow.connections > 1 {
        eprintln!("rollgate: reconnected to {}", client.base());
    }
    let mut reader = BufReader::new(response);
    let mut parser = SseParser::resuming(follow.last_id.clone());
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) => return Ok(Ended::Dropped("closed by the server".into())),
            Ok(_) => {}
            Err(e) => return Ok(Ended::Dropped(io_cause(&e))),
        }
        while matches!(buf.last(), Some(b'\n' | b'\r')) {
            buf.pop();
        }
        let Some(event) = parser.line(&String::from_utf8_lossy(&buf)) else {
            continue;
        };
        follow.last_id = parser.last_event_id().map(str::to_owned);
        if let Some(retry) = parser.retry() {
            follow.retry = retry.clamp(Duration::from_millis(100), MAX_BACKOFF);
        }
        match event.event.as_str() {
            "config" => announce_config(client, follow, &event.data),
            "change" => {
                let line = match follow.format {
                    Format::Json => event.data,
                    Format::Yaml => match serde_json::from_str::<Value>(&event.data) {
                        Ok(change) => format!("---\n{}", yaml(&change)),
                        Err(_) => change_line(&event.data, SystemTime::now()),
                    },
                    Format::Table => change_line(&event.data, SystemTime::now()),
                };
                if emit(&line).is_err() {
                    return Ok(Ended::Stop);
                }
                follow.seen += 1;
                if follow.max_events.is_some_and(|max| follow.seen >= max) {
                    return Ok(Ended::Stop);
                }
            }
            _ => {}
        }
    }
}

/// A `config` event opens every fresh stream; after a reconnection it means the server could
/// not replay what was missed.
fn announce_config(client: &Client, follow: &Follow, data: &str) {
    let config: Value = serde_json::from_str(data).unwrap_or(Value::Null);
    let count = |k: &str| config[k].as_array().map_or(0, Vec::len);
    if follow.connections > 1 {
        eprintln!(
            "rollgate: resynced from a full config; changes made while disconnected are not shown"
        );
    } else {
        eprintln!(
            "rollgate: watching {} ({} flags, {} segments); Ctrl-C to stop",
            client.base(),
            count("flags"),
            count("segments")
        );
    }
}

/// One change event as a line: time, flag, action, rollout, switch, actor, reason.
/// The time is the change's own (from its audit id, a UUIDv7), else `now`.
pub fn change_line(data: &str, now: SystemTime) -> String {
    let Ok(change) = serde_json::from_str::<Value>(data) else {
        return format!("(unreadable change event: {})", clean(data));
    };
    let cause = &change["cause"];
    let time = cause["audit_id"]
        .as_str()
        .and_then(|id| uuid::Uuid::parse_str(id).ok())
        .and_then(|id| id.get_timestamp())
        .map_or(now, |t| {
            let (secs, nanos) = t.to_unix();
            UNIX_EPOCH + Duration::new(secs, nanos)
        });
    let subject = match change["type"].as_str() {
        Some("segment") => format!("segment:{}", text_of(&change["key"])),
        _ => text_of(&change["key"]),
    };
    let action = cause["action"]
        .as_str()
        .or_else(|| change["action"].as_str())
        .unwrap_or("-");
    let flag = &change["flag"];
    let (rollout, switch) = if change["action"] == "delete" {
        ("-".to_owned(), "deleted")
    } else if flag.is_object() {
        let switch = if flag["enabled"] == false {
            "KILLED"
        } else {
            "on"
        };
        (percent_of(&flag["rollout"]), switch)
    } else {
        ("-".to_owned(), "-")
    };
    let mut actor = text_of(&cause["actor"]);
    if let Some(release) = cause["release"].as_str() {
        actor = format!("{actor} [release {release}]");
    }
    let line = format!(
        "{}  {subject:<24}  {action:<18}  {rollout:>8}  {switch:<7}  {actor:<12}  {}",
        humantime::format_rfc3339_seconds(time),
        cause["reason"].as_str().unwrap_or(""),
    );
    clean(line.trim_end())
}

fn io_cause(e: &std::io::Error) -> String {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<reqwest::Error>())
    {
        Some(inner) => root_cause(inner),
        None => e.to_string(),
    }
}

fn human(d: Duration) -> String {
    humantime::format_duration(Duration::from_millis(d.as_millis() as u64)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(parser: &mut SseParser, text: &str) -> Vec<SseEvent> {
        text.split('\n').filter_map(|l| parser.line(l)).collect()
    }

    #[test]
    fn events_end_at_a_blank_line_and_comments_are_skipped() {
        let mut p = SseParser::default();
        let events = feed(
            &mut p,
            "retry: 1000\n\n: heartbeat\n\nid: 7-1\nevent: config\ndata: {\"flags\":[]}\n\nid: 7-2\nevent: change\ndata:{\"a\":1}\n\n",
        );
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].event, "config");
        assert_eq!(events[1].data, "{\"a\":1}");
        assert_eq!(events[1].id.as_deref(), Some("7-2"));
        assert_eq!(p.last_event_id(), Some("7-2"));
        assert_eq!(p.retry(), Some(Duration::from_millis(1000)));
    }

    #[test]
    fn data_lines_join_and_a_missing_event_name_means_message() {
        let mut p = SseParser::default();
        let events = feed(&mut p, "data: one\ndata\ndata: three\n\n");
        assert_eq!(events[0].event, "message");
        assert_eq!(events[0].data, "one\n\nthree");
    }

    #[test]
    fn an_unfinished_event_is_not_dispatched() {
        let mut p = SseParser::resuming(Some("7-9".into()));
        assert!(feed(&mut p, "event: change\ndata: {}").is_empty());
        assert_eq!(p.last_event_id(), Some("7-9"));
    }

    #[test]
    fn a_change_line_names_flag_action_rollout_and_actor() {
        let data = r#"{"type":"flag","key":"qr-ordering","action":"upsert",
            "flag":{"key":"qr-ordering","enabled":true,"rollout":25.0},
            "cause":{"actor":"ops","action":"flag.rollout","reason":"ramp","release":null}}"#;
        let line = change_line(&data.replace('\n', ""), UNIX_EPOCH);
        assert!(
            line.starts_with("1970-01-01T00:00:00Z  qr-ordering"),
            "{line}"
        );
        assert!(line.contains("flag.rollout"), "{line}");
        assert!(line.contains("25%"), "{line}");
        assert!(line.ends_with("ops           ramp"), "{line}");
    }
}
