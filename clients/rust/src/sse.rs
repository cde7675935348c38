//! A Server-Sent Events parser (the WHATWG event-stream format), fed with body chunks.
//!
//! Hand-written because it is small (this file) and the client needs full control of what a
//! crate would hide: the `Last-Event-ID` it resumes from, when to reconnect and when to give
//! up streaming for polling. Lines end with `\n`, `\r\n` or `\r`; `:` lines are comments (the
//! server's heartbeats); `data` lines are joined with `\n`; an event is dispatched on a blank
//! line. An event larger than the bound is an error (the caller reconnects).

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Event {
    /// The last `id` seen on the stream so far (ids persist across events, as in browsers).
    pub(crate) id: Option<String>,
    /// `event` field, `message` when absent.
    pub(crate) event: String,
    pub(crate) data: String,
}

/// The event exceeded the size bound.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TooLarge;

pub(crate) struct Parser {
    line: Vec<u8>,
    /// The previous chunk ended with `\r`: a `\n` starting the next one belongs to it.
    after_cr: bool,
    event: String,
    data: String,
    has_data: bool,
    id: Option<String>,
    size: usize,
    max: usize,
}

impl Parser {
    pub(crate) fn new(max_event_bytes: usize) -> Self {
        Parser {
            line: Vec::new(),
            after_cr: false,
            event: String::new(),
            data: String::new(),
            has_data: false,
            id: None,
            size: 0,
            max: max_event_bytes,
        }
    }

    /// Feeds one chunk, appending every completed event to `out`.
    pub(crate) fn feed(&mut self, chunk: &[u8], out: &mut Vec<Event>) -> Result<(), TooLarge> {
        let mut rest = chunk;
        if self.after_cr {
            self.after_cr = false;
            if let Some(stripped) = rest.strip_prefix(b"\n") {
                rest = stripped;
            }
        }
        while !rest.is_empty() {
            match rest.iter().position(|&b| b == b'\n' || b == b'\r') {
                Some(at) => {
                    self.line.extend_from_slice(&rest[..at]);
                    let cr = rest[at] == b'\r';
                    rest = &rest[at + 1..];
                    if cr {
                        match rest.first() {
                            Some(b'\n') => rest = &rest[1..],
                            Some(_) => {}
                            None => self.after_cr = true,
                        }
                    }
                    let line = std::mem::take(&mut self.line);
                    self.line_done(&line, out)?;
                }
                None => {
                    self.line.extend_from_slice(rest);
                    rest = &[];
                }
            }
            if self.size + self.line.len() > self.max {
                return Err(TooLarge);
            }
        }
        Ok(())
    }

    fn line_done(&mut self, line: &[u8], out: &mut Vec<Event>) -> Result<(), TooLarge> {
        if line.is_empty() {
            if self.has_data {
                out.push(Event {
                    id: self.id.clone(),
                    event: if self.event.is_empty() {
                        "message".to_owned()
                    } else {
                        std::mem::take(&mut self.event)
                    },
                    data: std::mem::take(&mut self.data),
                });
            }
            self.event.clear();
            self.data.clear();
            self.has_data = false;
            self.size = 0;
            return Ok(());
        }
        if line[0] == b':' {
            return Ok(());
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.find(':') {
            Some(at) => {
                let v = &line[at + 1..];
                (&line[..at], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (&line[..], ""),
        };
        self.size += value.len();
        if self.size > self.max {
            return Err(TooLarge);
        }
        match field {
            "event" => self.event = value.to_owned(),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "id" if !value.contains('\0') => self.id = Some(value.to_owned()),
            _ => {} // `retry` and unknown fields: the client has its own backoff.
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(chunks: &[&[u8]]) -> Vec<Event> {
        let mut p = Parser::new(1 << 20);
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c, &mut out).unwrap();
        }
        out
    }

    #[test]
    fn events_split_anywhere_parse_the_same() {
        let stream: &[u8] = b"retry: 1000\n\nid: 7\nevent: config\ndata: {\"a\":\ndata: 1}\n\n: heartbeat\n\nid: 8\r\nevent: change\r\ndata: x\r\n\r\n";
        let whole = parse(&[stream]);
        assert_eq!(
            whole,
            vec![
                Event {
                    id: Some("7".into()),
                    event: "config".into(),
                    data: "{\"a\":\n1}".into()
                },
                Event {
                    id: Some("8".into()),
                    event: "change".into(),
                    data: "x".into()
                },
            ]
        );
        for cut in 0..stream.len() {
            assert_eq!(
                parse(&[&stream[..cut], &stream[cut..]]),
                whole,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn lone_carriage_returns_end_lines_and_defaults_apply() {
        let out = parse(&[b"data:plain\r\rdata: two\n\n"]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].event, "message");
        assert_eq!(out[0].data, "plain");
        assert_eq!(out[1].id, None);
    }

    #[test]
    fn an_event_over_the_bound_is_an_error_not_a_panic() {
        let mut p = Parser::new(10);
        let mut out = Vec::new();
        assert_eq!(p.feed(b"data: 0123456789abcdef", &mut out), Err(TooLarge));
    }
}
