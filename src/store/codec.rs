//! Record encoding: a version byte, then JSON. Version 1 is the only one so far; a future
//! format adds a branch in [`decode`] instead of rewriting the data directory.

use serde::{de::DeserializeOwned, Serialize};

const V1: u8 = 1;

/// Encodes a record; a value that cannot be encoded is an error, never an empty record (which
/// the next start would refuse as corrupt).
pub(super) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = vec![V1];
    serde_json::to_writer(&mut out, value)?;
    Ok(out)
}

/// Decodes a record, naming the problem on failure.
pub(super) fn decode<T: DeserializeOwned>(raw: &[u8]) -> Result<T, String> {
    match raw.split_first() {
        Some((&V1, json)) => serde_json::from_slice(json).map_err(|e| e.to_string()),
        Some((v, _)) => Err(format!("unknown record version {v}")),
        None => Err("empty record".to_owned()),
    }
}
