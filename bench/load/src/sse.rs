//! A minimal SSE subscriber over a raw tokio `TcpStream` (HTTP/1.1, chunked or not).
//!
//! Cheap enough for thousands of connections: one 4 KiB read buffer, one frame buffer, and a
//! task per connection. The arrival time of a frame is taken right after the `read` that
//! completed it, before any parsing, so parsing other connections' frames delays it only as
//! far as the runtime runs them first.

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc::UnboundedSender;

/// What a subscriber saw.
#[derive(Debug)]
pub enum Kind {
    /// The full `config` event sent on connect.
    Config,
    /// A `change` event for a flag: its key and `rollout` in thousandths of a percent
    /// (`None` for deletes and segment changes).
    Change {
        key: String,
        rollout_millis: Option<i64>,
    },
    /// The stream ended (EOF, error or a bad frame), with why.
    Closed(String),
}

/// One observation, stamped on arrival.
#[derive(Debug)]
pub struct Event {
    pub conn: usize,
    pub kind: Kind,
    pub at: Instant,
}

#[derive(Deserialize)]
struct ChangeData {
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    flag: Option<FlagPart>,
}

#[derive(Deserialize)]
struct FlagPart {
    #[serde(default)]
    rollout: Option<f64>,
}

/// Incremental HTTP/1.1 chunked-transfer decoder.
#[derive(Default)]
struct Dechunk {
    raw: Vec<u8>,
    /// Bytes of the current chunk still to copy.
    remaining: usize,
    /// A CRLF closes the chunk data just copied.
    need_crlf: bool,
    ended: bool,
}

impl Dechunk {
    /// Feeds wire bytes, appending decoded payload to `out`.
    fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<()> {
        self.raw.extend_from_slice(data);
        let mut pos = 0;
        loop {
            if self.ended {
                break;
            }
            if self.remaining > 0 {
                let n = self.remaining.min(self.raw.len() - pos);
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&self.raw[pos..pos + n]);
                pos += n;
                self.remaining -= n;
                continue;
            }
            if self.need_crlf {
                if self.raw.len() - pos < 2 {
                    break;
                }
                if &self.raw[pos..pos + 2] != b"\r\n" {
                    bail!("chunked encoding: missing CRLF after chunk data");
                }
                pos += 2;
                self.need_crlf = false;
                continue;
            }
            let Some(end) = find(&self.raw[pos..], b"\r\n") else {
                break;
            };
            let line = std::str::from_utf8(&self.raw[pos..pos + end])?;
            let hex = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(hex, 16)
                .with_context(|| format!("chunked encoding: bad size line {line:?}"))?;
            pos += end + 2;
            if size == 0 {
                self.ended = true;
            } else {
                self.remaining = size;
                self.need_crlf = true;
            }
        }
        self.raw.drain(..pos);
        Ok(())
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Connects, sends `GET /api/v1/stream`, and returns the stream positioned after the headers
/// plus whatever body bytes came with them and whether the body is chunked.
async fn open(addr: SocketAddr, host: &str, token: &str) -> Result<(TcpStream, Vec<u8>, bool)> {
    let mut stream = TcpStream::connect(addr).await.context("connect")?;
    stream.set_nodelay(true)?;
    let request = format!(
        "GET /api/v1/stream HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\
         Accept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 2048];
    let header_end = loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            bail!("connection closed before the response headers");
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(i) = find(&head, b"\r\n\r\n") {
            break i + 4;
        }
        if head.len() > 16 * 1024 {
            bail!("response headers too long");
        }
    };
    let text = String::from_utf8_lossy(&head[..header_end]).to_ascii_lowercase();
    let status_line = text.lines().next().unwrap_or("");
    if !status_line.starts_with("http/1.1 200") {
        bail!("stream answered {status_line:?}");
    }
    let chunked = text
        .lines()
        .any(|l| l.starts_with("transfer-encoding:") && l.contains("chunked"));
    Ok((stream, head[header_end..].to_vec(), chunked))
}

/// Runs one subscriber until the stream ends; every `config` / `change` is sent to `tx`, and
/// a final `Closed` says why it ended.
pub async fn subscribe(
    addr: SocketAddr,
    host: String,
    token: String,
    conn: usize,
    tx: UnboundedSender<Event>,
) {
    let why = match run(addr, &host, &token, conn, &tx).await {
        Ok(()) => "end of stream".to_owned(),
        Err(e) => format!("{e:#}"),
    };
    let _ = tx.send(Event {
        conn,
        kind: Kind::Closed(why),
        at: Instant::now(),
    });
}

async fn run(
    addr: SocketAddr,
    host: &str,
    token: &str,
    conn: usize,
    tx: &UnboundedSender<Event>,
) -> Result<()> {
    let (mut stream, first, chunked) = open(addr, host, token).await?;
    let mut dechunk = Dechunk::default();
    let mut payload: Vec<u8> = Vec::with_capacity(1024);
    let mut buf = vec![0u8; 4096];
    let mut pending = Some(first);
    loop {
        let (data, at): (Vec<u8>, Instant) = match pending.take() {
            Some(first) => (first, Instant::now()),
            None => {
                let n = stream.read(&mut buf).await?;
                let at = Instant::now();
                if n == 0 {
                    return Ok(());
                }
                (buf[..n].to_vec(), at)
            }
        };
        if chunked {
            dechunk.feed(&data, &mut payload)?;
        } else {
            payload.extend_from_slice(&data);
        }
        // Frames end with a blank line ("\n\n"; the server does not send CR).
        let mut start = 0;
        while let Some(end) = find(&payload[start..], b"\n\n") {
            let frame = &payload[start..start + end];
            start += end + 2;
            if let Some(kind) = parse_frame(frame)? {
                if tx.send(Event { conn, kind, at }).is_err() {
                    return Ok(()); // the scenario is over
                }
            }
        }
        payload.drain(..start);
        if dechunk.ended {
            return Ok(());
        }
    }
}

fn parse_frame(frame: &[u8]) -> Result<Option<Kind>> {
    let mut event = None;
    let mut data: Option<&[u8]> = None;
    for line in frame.split(|b| *b == b'\n') {
        if let Some(v) = line.strip_prefix(b"event:") {
            event = Some(v.trim_ascii());
        } else if let Some(v) = line.strip_prefix(b"data:") {
            // Multi-line data is not used by the server; take the first.
            data.get_or_insert(v.strip_prefix(b" ").unwrap_or(v));
        }
    }
    match event {
        Some(b"config") => Ok(Some(Kind::Config)),
        Some(b"change") => {
            let data = data.ok_or_else(|| anyhow!("change event without data"))?;
            let c: ChangeData = serde_json::from_slice(data).context("change event data")?;
            Ok(Some(Kind::Change {
                key: c.key.unwrap_or_default(),
                rollout_millis: c
                    .flag
                    .and_then(|f| f.rollout)
                    .map(|r| (r * 1000.0).round() as i64),
            }))
        }
        _ => Ok(None), // retry:, heartbeats, other formats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dechunks_across_reads() {
        let wire = b"5\r\nhello\r\n7\r\n world!\r\n0\r\n\r\n";
        for split in 0..wire.len() {
            let mut d = Dechunk::default();
            let mut out = Vec::new();
            d.feed(&wire[..split], &mut out).unwrap();
            d.feed(&wire[split..], &mut out).unwrap();
            assert_eq!(out, b"hello world!");
            assert!(d.ended);
        }
    }

    #[test]
    fn parses_change_frames() {
        let f = b"id: 1-2\nevent: change\ndata: {\"type\":\"flag\",\"key\":\"k\",\"flag\":{\"rollout\":12.5},\"cause\":{}}";
        match parse_frame(f).unwrap() {
            Some(Kind::Change {
                key,
                rollout_millis,
            }) => {
                assert_eq!(key, "k");
                assert_eq!(rollout_millis, Some(12_500));
            }
            other => panic!("{other:?}"),
        }
        assert!(parse_frame(b": heartbeat").unwrap().is_none());
    }
}
