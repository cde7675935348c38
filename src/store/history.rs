//! The `history` tree: the guard history of release modules (`crate::history` samples it).
//!
//! Key: release id (16 bytes) ‖ module index (u16 BE) ‖ time in Unix ms (u64 BE) ‖ mark (1
//! byte: 1 when the point records a change of state, stage or decision). Keys of one series
//! are contiguous and in time order, so a range read is one prefix scan. Value: the point's
//! JSON, kept opaque here.
//!
//! Durability: points are not synced per write (a point every few seconds per module would
//! double the server's fsyncs for nothing an operator acts on). They reach the disk with sled's
//! background flush (every 500 ms), the next synced commit, or the flush at shutdown; a crash
//! loses at most the last half second of history.

use super::{Store, StoreError};
use uuid::Uuid;

/// Which series a point belongs to: a release's module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HistoryKey {
    /// The release.
    pub release: Uuid,
    /// The module's index in the release.
    pub module: u16,
}

/// One stored point.
#[derive(Debug, Clone)]
pub struct StoredPoint {
    /// When it was sampled (Unix ms).
    pub at_ms: u64,
    /// Whether it records a change of state, stage or decision (kept by compaction).
    pub mark: bool,
    /// Its JSON.
    pub json: sled::IVec,
}

/// Every series with its points' times and marks, oldest first.
pub type SeriesIndex = Vec<(HistoryKey, Vec<(u64, bool)>)>;

const PREFIX: usize = 18;

impl HistoryKey {
    fn prefix(&self) -> [u8; PREFIX] {
        let mut p = [0u8; PREFIX];
        p[..16].copy_from_slice(self.release.as_bytes());
        p[16..].copy_from_slice(&self.module.to_be_bytes());
        p
    }

    fn key(&self, at_ms: u64, mark: bool) -> Vec<u8> {
        let mut k = self.prefix().to_vec();
        k.extend_from_slice(&at_ms.to_be_bytes());
        k.push(u8::from(mark));
        k
    }
}

/// The series key, time and mark of a stored key; `None` for a key of another shape.
fn parse(key: &[u8]) -> Option<(HistoryKey, u64, bool)> {
    if key.len() != PREFIX + 9 {
        return None;
    }
    let release = Uuid::from_slice(&key[..16]).ok()?;
    let module = u16::from_be_bytes([key[16], key[17]]);
    let at_ms = u64::from_be_bytes(key[PREFIX..PREFIX + 8].try_into().ok()?);
    Some((HistoryKey { release, module }, at_ms, key[PREFIX + 8] == 1))
}

fn point(
    entry: Result<(sled::IVec, sled::IVec), sled::Error>,
) -> Result<Option<StoredPoint>, StoreError> {
    let (k, v) = entry?;
    Ok(parse(&k).map(|(_, at_ms, mark)| StoredPoint {
        at_ms,
        mark,
        json: v,
    }))
}

impl Store {
    /// Appends a point to a series (not synced: see the module header).
    pub fn history_put(
        &self,
        series: HistoryKey,
        at_ms: u64,
        mark: bool,
        json: &[u8],
    ) -> Result<(), StoreError> {
        self.history.insert(series.key(at_ms, mark), json)?;
        Ok(())
    }

    /// The times and marks of a series' points, oldest first (keys only).
    pub fn history_times(&self, series: HistoryKey) -> Result<Vec<(u64, bool)>, StoreError> {
        let mut out = Vec::new();
        for key in self.history.scan_prefix(series.prefix()).keys() {
            if let Some((_, at_ms, mark)) = parse(&key?) {
                out.push((at_ms, mark));
            }
        }
        Ok(out)
    }

    /// One point's JSON.
    pub fn history_get(
        &self,
        series: HistoryKey,
        at_ms: u64,
        mark: bool,
    ) -> Result<Option<sled::IVec>, StoreError> {
        Ok(self.history.get(series.key(at_ms, mark))?)
    }

    /// The newest point of a series.
    pub fn history_last(&self, series: HistoryKey) -> Result<Option<StoredPoint>, StoreError> {
        match self.history.scan_prefix(series.prefix()).next_back() {
            Some(entry) => point(entry),
            None => Ok(None),
        }
    }

    /// Every series with its points' times and marks (keys only; for compaction).
    pub fn history_index(&self) -> Result<SeriesIndex, StoreError> {
        let mut out: SeriesIndex = Vec::new();
        for key in self.history.iter().keys() {
            let Some((series, at_ms, mark)) = parse(&key?) else {
                continue;
            };
            match out.last_mut() {
                Some((last, points)) if *last == series => points.push((at_ms, mark)),
                _ => out.push((series, vec![(at_ms, mark)])),
            }
        }
        Ok(out)
    }

    /// Removes points of a series.
    pub fn history_remove(
        &self,
        series: HistoryKey,
        points: &[(u64, bool)],
    ) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (at_ms, mark) in points {
            batch.remove(series.key(*at_ms, *mark));
        }
        self.history.apply_batch(batch)?;
        Ok(())
    }
}
