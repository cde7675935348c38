//! Making sled's writes durable: sled's flush, then `fdatasync`/`fsync`, group-committed.
//!
//! Why this exists: sled 0.34's `flush` writes its log buffer with `pwrite` and then calls
//! `sync_file_range(WAIT_BEFORE | WRITE | WAIT_AFTER)` on Linux (`pagecache/iobuf.rs`). That
//! pushes the dirty pages to the device but does not flush the device's volatile write cache and
//! does not persist the file's metadata (its size, when the log grew), so an acknowledged change
//! can be lost by a power cut. sled calls `fsync` only at open, on shutdown, when it truncates the
//! file and from its background flusher every 500 ms — never before our `flush` returns.
//!
//! What must be synced, from reading sled 0.34.7:
//! - `db`: the log and every segment. `fdatasync` is enough: it also persists the size when the
//!   file grew (the metadata needed to read the data back), not the timestamps.
//! - `blobs/<lsn>`: a value whose serialized page exceeds a quarter of a segment (~128 KiB) is
//!   written to its own new file, never synced by sled (`pagecache/blob_io.rs`). A new blob file
//!   needs its data synced and the `blobs` directory synced (its entry).
//! - The data directory: `db`, `conf` (written without sync) and `blobs/` are created on first
//!   open; snapshots (`snap.*`, synced by sled) are renamed into place. Entries live in the
//!   directory, so it is synced when its listing changed, and once at open with its parent.
//!
//! Detecting new files costs two `readdir`s of small directories per sync, far below the
//! `fdatasync` itself; most syncs find nothing new and only sync `db`.
//!
//! Group commit: one step is sled's blocking `flush` followed by the syncs above. A caller
//! needs a step that *started* after its transaction returned (a step already running may have
//! flushed before it). [`Syncer::sync`] joins the next step to start; every caller that arrives
//! while one runs shares the following one, so N concurrent committers cost at most two steps.
//! The step runs on tokio's blocking pool and finishes (and wakes its waiters) even if every
//! waiting future is dropped.
//!
//! Why not `flush_async`: it runs sled's flush on sled's own small thread pool, where it waits
//! for the log write that sled queues on that same pool; with several flushes at once every
//! thread waits and the write never runs (sled issue #1241; the commit bench hung with eight
//! concurrent committers, and the server has two: ops commits and the aggregate persist). One
//! step at a time, on a thread outside sled's pool, cannot starve that pool.
//!
//! A failed sync poisons the syncer: after a failed `fsync` the kernel may have dropped the dirty
//! pages and marked them clean, so a later successful `fsync` proves nothing (PostgreSQL's
//! "fsyncgate"). Every later commit fails; restarting the server recovers from what is on disk.

use super::StoreError;
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs::File;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::watch;

/// How a commit reaches the disk. Only [`Durability::Fsync`] keeps the contract; the other
/// exists so `bench/commit.rs` can measure the cost of the sync in the same run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// sled's flush, then `fdatasync` of `db` and `fsync` of anything new (the default).
    Fsync,
    /// sled's flush alone (`pwrite` + `sync_file_range`), still group-committed: what a commit
    /// cost before `fdatasync` was added. Bench only; it does not keep the contract.
    SledFlushOnly,
}

/// Runs the syncs of one data directory, one at a time, shared by concurrent callers.
pub(super) struct Syncer {
    state: Arc<Mutex<GateState>>,
    /// The epoch of the last finished sync, successful or not.
    finished: watch::Sender<u64>,
    /// Used by one step at a time (the gate ensures it; the mutex makes it sound).
    disk: Arc<Mutex<Disk>>,
}

#[derive(Default)]
struct GateState {
    /// Epoch of the last sync started.
    started: u64,
    running: bool,
    /// Set forever by the first failed sync.
    failed: Option<String>,
}

impl Syncer {
    /// Opens the files to sync in `dir` (sled, open as `db`, has created them) and syncs
    /// everything once.
    pub(super) fn open(
        db: &sled::Db,
        dir: &Path,
        durability: Durability,
    ) -> Result<Self, StoreError> {
        let mut disk = Disk::open(db, dir, durability).map_err(sync_error)?;
        disk.sync_everything_at_open().map_err(sync_error)?;
        Ok(Syncer {
            state: Arc::default(),
            finished: watch::Sender::new(0),
            disk: Arc::new(Mutex::new(disk)),
        })
    }

    /// Flushes and syncs now, on this thread; for startup paths that are not async.
    pub(super) fn sync_blocking(&self) -> Result<(), StoreError> {
        if let Some(message) = &lock(&self.state).failed {
            return Err(poisoned(message));
        }
        let result = lock(&self.disk).step();
        if let Err(e) = &result {
            lock(&self.state).failed.get_or_insert_with(|| e.clone());
        }
        result.map_err(StoreError::Sync)
    }

    /// Returns once a flush-and-sync step that started after this call has finished:
    /// everything written to sled before the call is then on stable storage.
    pub(super) async fn sync(&self) -> Result<(), StoreError> {
        let target = {
            let state = lock(&self.state);
            if let Some(message) = &state.failed {
                return Err(poisoned(message));
            }
            state.started + 1
        };
        // Subscribing after choosing the target loses nothing: the loop reads the current
        // value before it waits for a change.
        let mut finished = self.finished.subscribe();
        loop {
            {
                let mut state = lock(&self.state);
                if let Some(message) = &state.failed {
                    return Err(poisoned(message));
                }
                if *finished.borrow_and_update() >= target {
                    return Ok(());
                }
                if !state.running {
                    state.running = true;
                    state.started += 1;
                    self.spawn_sync(state.started);
                }
            }
            finished
                .changed()
                .await
                .map_err(|_| StoreError::Task("the sync gate was dropped".into()))?;
        }
    }

    /// Holds every step back until the returned guard is dropped (tests of what callers see
    /// while a sync is running).
    #[cfg(test)]
    pub(super) fn stall(&self) -> impl Sized + '_ {
        lock(&self.disk)
    }

    /// Runs step number `epoch` on the blocking pool; it reports back even if nobody waits.
    fn spawn_sync(&self, epoch: u64) {
        let disk = Arc::clone(&self.disk);
        let state = Arc::clone(&self.state);
        let finished = self.finished.clone();
        tokio::task::spawn_blocking(move || {
            let result = lock(&disk).step();
            // Before waking the waiters: once they have dropped the store, this may be the
            // last handle on the database, whose file lock must be gone when they reopen it.
            drop(disk);
            let mut s = lock(&state);
            s.running = false;
            if let Err(e) = result {
                tracing::error!(error = %e, "flushing or syncing the data directory failed; refusing every further commit");
                s.failed.get_or_insert(e);
            }
            drop(s);
            finished.send_replace(epoch);
        });
    }
}

/// The database and the files of its directory that a step covers.
struct Disk {
    sled: sled::Db,
    durability: Durability,
    dir: PathBuf,
    /// sled's `db` file, opened a second time: `fdatasync` acts on the file, whichever
    /// descriptor it is called on.
    db: File,
    /// Entries of `dir` and of `dir/blobs` as of the last sync.
    entries: BTreeSet<OsString>,
    blobs: BTreeSet<OsString>,
}

impl Disk {
    fn open(sled: &sled::Db, dir: &Path, durability: Durability) -> std::io::Result<Disk> {
        let db = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(dir.join("db"))?;
        Ok(Disk {
            sled: sled.clone(),
            durability,
            dir: dir.to_path_buf(),
            db,
            entries: BTreeSet::new(),
            blobs: BTreeSet::new(),
        })
    }

    /// Every file and directory of the store, and the data directory's entry in its parent
    /// (sled may just have created it).
    fn sync_everything_at_open(&mut self) -> std::io::Result<()> {
        if self.durability == Durability::SledFlushOnly {
            return Ok(());
        }
        self.sync()?;
        let absolute = self.dir.canonicalize()?;
        match absolute.parent() {
            Some(parent) => sync_dir(parent),
            None => Ok(()),
        }
    }

    /// sled's flush (its log buffer to `db`), then the syncs.
    fn step(&mut self) -> Result<(), String> {
        self.sled.flush().map_err(|e| e.to_string())?;
        if self.durability == Durability::SledFlushOnly {
            return Ok(());
        }
        self.sync().map_err(|e| e.to_string())
    }

    /// `fdatasync` of `db`, then data and entry of every file that appeared since the last
    /// sync (blobs first, then the data directory).
    fn sync(&mut self) -> std::io::Result<()> {
        self.db.sync_data()?;
        sync_new_entries(&self.dir.join("blobs"), &mut self.blobs)?;
        sync_new_entries(&self.dir, &mut self.entries)
    }
}

/// Syncs the entries of `dir` not in `known`, then `dir` itself when its listing changed
/// (new, renamed or removed entries); `known` becomes the listing.
fn sync_new_entries(dir: &Path, known: &mut BTreeSet<OsString>) -> std::io::Result<()> {
    let now = match std::fs::read_dir(dir) {
        Ok(listing) => listing
            .map(|entry| entry.map(|e| e.file_name()))
            .collect::<std::io::Result<BTreeSet<_>>>()?,
        Err(e) if e.kind() == ErrorKind::NotFound => BTreeSet::new(),
        Err(e) => return Err(e),
    };
    if now == *known {
        return Ok(());
    }
    for name in now.difference(known) {
        match File::open(dir.join(name)) {
            Ok(file) => file.sync_all()?,
            // Removed or renamed since the listing (a snapshot being put in place, a blob
            // collected): its new name, if any, is in the next listing.
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    sync_dir(dir)?;
    *known = now;
    Ok(())
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // No section under these locks can leave the state half-updated, so a panic elsewhere
    // while holding one does not make it unusable.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn sync_error(e: std::io::Error) -> StoreError {
    StoreError::Sync(e.to_string())
}

fn poisoned(message: &str) -> StoreError {
    StoreError::Sync(format!(
        "an earlier sync failed ({message}); restart the server to recover from what is on disk"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::OwnedFd;

    fn open(dir: &Path) -> Syncer {
        let db = sled::Config::new().path(dir).open().expect("sled opens");
        Syncer::open(&db, dir, Durability::Fsync).expect("syncer opens")
    }

    // Holding the disk lock across the awaits is the point: it keeps the first step running
    // while the others arrive (the test runs on one thread; the step on the blocking pool).
    #[allow(clippy::await_holding_lock)]
    #[tokio::test]
    async fn callers_arriving_during_a_sync_share_the_next_one() {
        let dir = tempfile::tempdir().expect("temp dir");
        let syncer = Arc::new(open(dir.path()));
        let held = lock(&syncer.disk); // the first sync blocks until this is dropped

        let first = tokio::spawn({
            let syncer = Arc::clone(&syncer);
            async move { syncer.sync().await }
        });
        let later: Vec<_> = (0..10)
            .map(|_| {
                let syncer = Arc::clone(&syncer);
                tokio::spawn(async move { syncer.sync().await })
            })
            .collect();
        while syncer.finished.receiver_count() < 11 {
            tokio::task::yield_now().await;
        }
        drop(held);

        first.await.expect("task").expect("first sync");
        for task in later {
            task.await.expect("task").expect("shared sync");
        }
        assert_eq!(
            lock(&syncer.state).started,
            2,
            "one sync for the first caller, one shared by the ten that came during it"
        );
    }

    #[tokio::test]
    async fn a_failed_sync_fails_every_later_commit() {
        let dir = tempfile::tempdir().expect("temp dir");
        let syncer = open(dir.path());
        // fdatasync on a socket fails with EINVAL, as a failing disk would fail it with EIO.
        let (socket, _peer) = std::os::unix::net::UnixStream::pair().expect("socket pair");
        lock(&syncer.disk).db = File::from(OwnedFd::from(socket));

        assert!(matches!(syncer.sync().await, Err(StoreError::Sync(_))));
        lock(&syncer.disk).db = File::open(dir.path().join("db")).expect("db file");
        let again = syncer.sync().await;
        assert!(
            matches!(&again, Err(StoreError::Sync(m)) if m.contains("an earlier sync failed")),
            "{again:?}"
        );
        assert!(syncer.sync_blocking().is_err());
    }
}
