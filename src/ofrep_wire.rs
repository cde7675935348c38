//! OFREP answer bytes, written without serde on the hot path (issue 15).
//!
//! What is constant per flag — `{"key":"…","value":` and each variant's value and name as
//! JSON — is serialized once, when the flag enters the live snapshot ([`FlagWire`]); a request
//! copies those pieces and writes only the reason, the revision and the audience between them.
//! Error entries and the bulk answer's `eventStreams` are written the same way.
//!
//! Invariant: every writer here produces exactly the bytes `serde_json` produces for the same
//! answer (field order `key`, `value`, `reason`, `variant`, `metadata`; compact; serde_json's
//! string escaping). The tests below compare them over random keys, values and answers, and
//! `api::ofrep`'s tests over random flag sets and contexts, so the wire, the conformance
//! vectors and the ETags cannot drift from a plain serialization.

use rollgate_eval::Evaluation;
use serde_json::Value;

/// A flag's constant answer pieces, serialized once: one buffer and the end of each piece.
pub struct FlagWire {
    /// `{"key":"K","value":`, then per variant its value's JSON and its name's JSON string.
    bytes: Box<[u8]>,
    /// `ends[0]` ends the head; `ends[1 + 2i]` variant i's value, `ends[2 + 2i]` its name.
    ends: Box<[usize]>,
}

impl std::fmt::Debug for FlagWire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlagWire")
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

impl FlagWire {
    /// The pieces of flag `key` whose variants are `variants` (indexed like
    /// `CompiledFlag::variants`).
    pub fn new(key: &str, variants: &[(Box<str>, Value)]) -> Self {
        let mut bytes = Vec::with_capacity(16 + key.len() + variants.len() * 16);
        let mut ends = Vec::with_capacity(1 + 2 * variants.len());
        bytes.extend_from_slice(b"{\"key\":");
        write_str(&mut bytes, key);
        bytes.extend_from_slice(b",\"value\":");
        ends.push(bytes.len());
        for (name, value) in variants {
            // Writing a `Value` into a Vec cannot fail (no I/O, every key is a string).
            let _ = serde_json::to_writer(&mut bytes, value);
            ends.push(bytes.len());
            write_str(&mut bytes, name);
            ends.push(bytes.len());
        }
        FlagWire {
            bytes: bytes.into_boxed_slice(),
            ends: ends.into_boxed_slice(),
        }
    }

    /// `{"key":"K","value":`.
    fn head(&self) -> &[u8] {
        &self.bytes[..self.ends[0]]
    }

    /// Piece `i` (≥ 1) of `ends`.
    fn piece(&self, i: usize) -> Option<&[u8]> {
        self.bytes.get(*self.ends.get(i - 1)?..*self.ends.get(i)?)
    }
}

/// Appends the success entry of `e` (evaluated from the flag `wire` describes) at `revision`:
/// `{"key":…,"value":…,"reason":…,"variant":…,"metadata":{"revision":…[,"audience":…]}}`.
pub fn write_success(out: &mut Vec<u8>, wire: &FlagWire, e: &Evaluation<'_>, revision: u64) {
    let i = e.variant_index;
    out.extend_from_slice(wire.head());
    // The pieces exist for every evaluation of this flag; the serde fallbacks are not reached.
    match wire.piece(1 + 2 * i) {
        Some(value) => out.extend_from_slice(value),
        None => {
            let _ = serde_json::to_writer(&mut *out, e.value);
        }
    }
    out.extend_from_slice(b",\"reason\":\"");
    out.extend_from_slice(e.reason.as_str().as_bytes());
    out.extend_from_slice(b"\",\"variant\":");
    match wire.piece(2 + 2 * i) {
        Some(name) => out.extend_from_slice(name),
        None => write_str(out, e.variant),
    }
    out.extend_from_slice(b",\"metadata\":{\"revision\":");
    out.extend_from_slice(itoa::Buffer::new().format(revision).as_bytes());
    if let Some(audience) = e.audience {
        out.extend_from_slice(b",\"audience\":");
        write_str(out, audience);
    }
    out.extend_from_slice(b"}}");
}

/// Appends an error entry: `{["key":…,]"errorCode":…,"errorDetails":…}`.
pub fn write_failure(out: &mut Vec<u8>, key: Option<&str>, code: &str, details: &str) {
    out.push(b'{');
    if let Some(key) = key {
        out.extend_from_slice(b"\"key\":");
        write_str(out, key);
        out.push(b',');
    }
    out.extend_from_slice(b"\"errorCode\":");
    write_str(out, code);
    out.extend_from_slice(b",\"errorDetails\":");
    write_str(out, details);
    out.push(b'}');
}

/// Appends the bulk answer's `,"eventStreams":[…]`: one SSE stream at
/// `{scheme}://{host}/api/v1/stream?format=ofrep&token={stream_token}`.
pub fn write_event_streams(out: &mut Vec<u8>, scheme: &str, host: &str, stream_token: &str) {
    out.extend_from_slice(b",\"eventStreams\":[{\"type\":\"sse\",\"url\":\"");
    write_str_contents(out, scheme);
    out.extend_from_slice(b"://");
    write_str_contents(out, host);
    out.extend_from_slice(b"/api/v1/stream?format=ofrep&token=");
    write_str_contents(out, stream_token);
    out.extend_from_slice(b"\",\"inactivityDelaySec\":120}]");
}

/// Appends `s` as a JSON string, escaped as serde_json escapes it.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    write_str_contents(out, s);
    out.push(b'"');
}

/// `s` escaped as serde_json escapes a string's contents: `"`, `\\` and the control
/// characters below U+0020 (`\b \t \n \f \r` by name, the rest as `\u00xx`); everything else,
/// non-ASCII included, as it is.
fn write_str_contents(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x09 => b"\\t",
            0x0a => b"\\n",
            0x0c => b"\\f",
            0x0d => b"\\r",
            0x00..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escape);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
pub(crate) mod reference;
#[cfg(test)]
mod tests;
