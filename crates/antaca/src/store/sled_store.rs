//! The durable store: a write-ahead log in front of a backend, sled or
//! fjall (`Backend`, chosen by `StoreConfig::backend`).
//!
//! A commit is one record in the log: one `pwrite` and one `fdatasync` of a
//! preallocated segment (see [`super::wal`]). The same writes reach the
//! backend from a checkpoint thread, coalesced (a balance written by a
//! thousand commits is written there once) and made durable; the lsn they
//! reach is stored with them (`m/wal_lsn`). Opening the store replays the
//! log records above that lsn into the backend before anything else happens.
//!
//! Reads never wait for a checkpoint: every write in the log that the
//! backend may not hold yet is in the overlay (`overlay.rs`, bounded by what
//! the log holds: segments x segment size), and a read looks there first,
//! then in the backend; a range merges the two.
//!
//! sled's cost is per key (about 5 µs an insert here, whatever the value's
//! size), and every authorization adds a journal entry. So on sled a
//! checkpoint writes the journal (`j/`, read only by full scans) as log
//! chunks: its writes of them, in key order, in one value under
//! `l/{lsn}/{part}` (`chunks.rs`). Everything else (transactions and their
//! indexes, balances, cards, counters …) is a key of its own; an older store
//! whose chunks hold transactions is migrated at open (`migrate.rs`). fjall,
//! an LSM tree, takes every key as it is.
//!
//! A segment is reused only once everything in it is in the backend; when
//! the checkpoint falls behind by every segment, commits wait for it
//! (backpressure) rather than lose anything.
//!
//! This file holds the `DiskStore` type and its writer: a commit written to
//! the log (`log_then`) and to the overlay, handed to the sync thread
//! (`sync.rs`), its writes handed to the checkpoint thread (`checkpoint.rs`)
//! once they are durable, and the reads. Opening, replay and closing are in
//! `open.rs`, the backends in `backend.rs`, `sled_target.rs` and
//! `fjall_target.rs`.

mod backend;
mod checkpoint;
mod chunks;
mod fjall_target;
mod migrate;
mod open;
mod overlay;
mod sled_target;
mod sync;

pub use backend::{Backend, BACKEND_VARIABLE};

use super::wal::{Op, Wal, WalConfig};
use super::{OnDurable, Pair, Refused, Store, StoreError, WriteBatch};
use backend::Reader;
use checkpoint::{Job, Shared};
use chunks::prefix_end;
use overlay::{merge, Latest, Overlay};
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use sync::{SyncJob, Synced};

/// Settings of the store.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// The write-ahead log's layout.
    pub wal: WalConfig,
    /// Longest time a committed write waits in the log before the checkpoint
    /// thread is given it (segments filling up hand it over sooner).
    pub checkpoint_interval: Duration,
    /// The backend. `None`: the one the data directory holds; for a new
    /// store, the one `ANTACA_STORE` names, else fjall. With `Some`, a
    /// directory that holds the other backend's store is refused.
    pub backend: Option<Backend>,
    /// The backend's memory budget, bytes: sled's page cache; fjall's block
    /// cache and memtables (see `fjall_target.rs`).
    pub cache_bytes: u64,
}

/// The default memory budget of the backend (`StoreConfig::cache_bytes`).
pub const CACHE_BYTES_DEFAULT: u64 = 256 << 20;

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            wal: WalConfig::default(),
            checkpoint_interval: Duration::from_secs(1),
            backend: None,
            cache_bytes: CACHE_BYTES_DEFAULT,
        }
    }
}

/// Writes committed to the log and not yet handed to the checkpoint thread,
/// in commit order. The writer only appends; the checkpoint thread, which
/// runs in the background, keeps the last write of each key.
#[derive(Default)]
struct Pending {
    writes: Vec<Op>,
    since: Option<Instant>,
}

/// Nothing to tell: a synchronous commit waits for the durable lsn instead.
struct Nobody;

impl OnDurable for Nobody {
    fn durable(self: Box<Self>) {}
    fn failed(self: Box<Self>, _: StoreError) {}
}

/// A store in a directory: a write-ahead log in front of sled or fjall.
pub struct DiskStore {
    /// Reads of the backend.
    reader: Reader,
    /// The backend it was opened with.
    backend: Backend,
    /// Writes in the log the backend may not hold yet (shared with the checkpoint thread).
    overlay: Arc<Overlay>,
    dir: PathBuf,
    wal: Wal,
    config: StoreConfig,
    pending: RefCell<Pending>,
    /// The lsn of the last writes handed to the checkpoint thread.
    handed: std::cell::Cell<u64>,
    shared: Arc<Shared>,
    jobs: Option<mpsc::Sender<Job>>,
    checkpointer: Option<std::thread::JoinHandle<()>>,
    /// Set when a log write failed and its place could not be overwritten:
    /// the log's tail is unknown, so nothing more is committed until a restart.
    broken: Option<Arc<StoreError>>,
    /// The last log write failed: the next record goes in its place.
    retry_in_place: bool,
    /// Written records on their way to the sync thread.
    syncs: Option<mpsc::Sender<SyncJob>>,
    syncer: Option<std::thread::JoinHandle<()>>,
    synced: Arc<Synced>,
}

/// The store's former name, from when sled was its only backend.
pub type SledStore = DiskStore;

impl DiskStore {
    /// The directory the store lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The backend the store was opened with.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Makes the backend hold every committed write, waiting for the checkpoint thread.
    pub fn checkpoint_now(&self) -> Result<(), StoreError> {
        self.wait_durable(self.wal.last_lsn())?;
        self.hand_over();
        self.wait_checkpointed(self.wal.last_lsn())
    }

    /// Waits until every record up to `lsn` is on disk.
    fn wait_durable(&self, lsn: u64) -> Result<(), StoreError> {
        wait_for(&self.synced.progress, &self.synced.changed, |p| {
            match &p.failed {
                Some(e) => Some(Err(StoreError::SyncFailed(e.clone()))),
                None => (p.durable >= lsn).then_some(Ok(())),
            }
        })
    }

    /// Gives the pending writes to the checkpoint thread, once they are on
    /// disk in the log (the backend must never hold a write the log may lose).
    fn hand_over(&self) {
        if self.wait_durable(self.wal.last_lsn()).is_err() {
            // The log's tail is unknown: nothing more reaches the backend.
            return;
        }
        let mut pending = self.pending.borrow_mut();
        if pending.writes.is_empty() {
            return;
        }
        // The next interval is likely as busy as this one: no regrowth.
        let capacity = pending.writes.len();
        let writes = std::mem::replace(&mut pending.writes, Vec::with_capacity(capacity));
        pending.since = None;
        let upto = self.wal.last_lsn();
        self.handed.set(upto);
        if let Some(jobs) = &self.jobs {
            // A stopped checkpoint thread has recorded why in `failed`.
            let _ = jobs.send(Job::Apply { writes, upto });
        }
    }

    fn wait_checkpointed(&self, lsn: u64) -> Result<(), StoreError> {
        wait_for(&self.shared.progress, &self.shared.changed, |p| {
            match &p.failed {
                Some(e) => Some(Err(StoreError::CheckpointFailed(e.clone()))),
                None => (p.checkpointed >= lsn).then_some(Ok(())),
            }
        })
    }

    /// Writes `ops` as the next log record and waits until it is on disk.
    fn log(&mut self, ops: Vec<Op>) -> Result<(), StoreError> {
        self.log_then(ops, Box::new(Nobody)).map_err(|(e, _)| e)?;
        self.wait_durable(self.wal.last_lsn())
    }

    /// Writes `ops` as the next log record and hands it to the sync thread,
    /// which tells `done` once it is on disk; once written, the writes join
    /// the overlay (reads see them at once) and the pending writes. An empty
    /// `ops` writes nothing and is durable once the records before it are.
    fn log_then(&mut self, ops: Vec<Op>, done: Box<dyn OnDurable>) -> Result<(), Refused> {
        if let Some(e) = &self.broken {
            return Err((StoreError::LogUnusable(e.clone()), done));
        }
        if let Some(e) = &self.shared.lock().failed {
            return Err((StoreError::CheckpointFailed(e.clone()), done));
        }
        if let Some(e) = &self.synced.lock().failed {
            return Err((StoreError::SyncFailed(e.clone()), done));
        }
        if ops.is_empty() {
            let lsn = self.wal.last_lsn();
            if self.synced.lock().durable >= lsn {
                done.durable();
                return Ok(());
            }
            return self.to_sync(SyncJob {
                lsn,
                file: None,
                done,
            });
        }
        let len = self.wal.encode(&ops);
        // After a failed write the next record takes its place, whatever its
        // size: moving on would leave the failed record (which may have
        // reached the disk) in the log under the lsn the next one takes.
        if !self.retry_in_place && !self.wal.fits(len) {
            // Move on to the next segment once everything in this one is on
            // disk (a record in the next segment must never outlive one
            // before it that a failed fdatasync may have lost: the log would
            // have a gap) and the backend holds everything it contains.
            if let Err(e) = self.wait_durable(self.wal.last_lsn()) {
                return Err((e, done));
            }
            self.hand_over();
            let (next, holds) = self.wal.next_segment();
            if holds > 0 {
                let waited = Instant::now();
                if let Err(e) = self.wait_checkpointed(holds) {
                    return Err((e, done));
                }
                metrics::histogram!("antaca_store_segment_wait_seconds")
                    .record(waited.elapsed().as_secs_f64());
            }
            self.wal.begin(next);
        }
        let (lsn, file) = match self.wal.append_unsynced() {
            Ok(written) => written,
            Err(e) => {
                self.retry_in_place = true;
                return Err((e, done));
            }
        };
        self.retry_in_place = false;
        metrics::counter!("antaca_store_log_bytes_total").increment(len as u64);
        self.overlay.insert(lsn, &ops);
        let mut pending = self.pending.borrow_mut();
        pending.since.get_or_insert_with(Instant::now);
        pending.writes.extend(ops);
        let due = pending
            .since
            .is_some_and(|since| since.elapsed() >= self.config.checkpoint_interval);
        drop(pending);
        self.to_sync(SyncJob {
            lsn,
            file: Some(file),
            done,
        })?;
        if due {
            self.hand_over();
        }
        Ok(())
    }

    fn to_sync(&self, job: SyncJob) -> Result<(), Refused> {
        let stopped = || StoreError::SyncStopped;
        match &self.syncs {
            Some(syncs) => syncs.send(job).map_err(|e| (stopped(), e.0.done)),
            None => Err((stopped(), job.done)),
        }
    }
}

/// Waits on `changed` until `outcome` has one. A poisoned lock only means a
/// background thread panicked; the progress it guards is still right.
fn wait_for<T>(
    lock: &Mutex<T>,
    changed: &Condvar,
    mut outcome: impl FnMut(&T) -> Option<Result<(), StoreError>>,
) -> Result<(), StoreError> {
    let mut guard = lock
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    loop {
        if let Some(result) = outcome(&guard) {
            return result;
        }
        guard = changed
            .wait(guard)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
    }
}

impl DiskStore {
    /// The pairs with `start <= key < end` (`None`: no end), in key order or
    /// from the end, at most `limit`: the backend's with the overlay on top.
    fn merged(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<Pair>, StoreError> {
        // The overlay first: an entry leaves it only once the backend holds
        // its write, so a key missing here is current in the backend read next.
        let overlay = self.overlay.range(start, end, reverse, limit);
        let backend = self.reader.range(start, end, reverse)?;
        merge(overlay, backend, reverse, limit)
    }

    /// The backend's value of `key`, without the overlay (tests look at what a checkpoint wrote).
    #[cfg(test)]
    fn backend_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.reader.get(key)
    }
}

impl Store for DiskStore {
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<Pair>, StoreError> {
        self.merged(prefix, prefix_end(prefix).as_deref(), false, usize::MAX)
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        // The overlay first, as in `merged`.
        match self.overlay.get(key) {
            Latest::Written(value) => Ok(value),
            Latest::InBackend => self.reader.get(key),
        }
    }

    fn range(
        &self,
        start: &[u8],
        end: &[u8],
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<Pair>, StoreError> {
        if start >= end || limit == 0 {
            return Ok(Vec::new());
        }
        self.merged(start, Some(end), reverse, limit)
    }

    fn commit(&mut self, batch: WriteBatch) -> Result<(), StoreError> {
        self.log(batch.ops)
    }

    fn commit_then(&mut self, batch: WriteBatch, done: Box<dyn OnDurable>) -> Result<(), Refused> {
        self.log_then(batch.ops, done)
    }

    fn on_refusal(&mut self, wake: Box<dyn Fn() + Send>) {
        *self
            .synced
            .waker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(wake);
    }

    fn wait_durable(&self) -> Result<(), StoreError> {
        DiskStore::wait_durable(self, self.wal.last_lsn())
    }

    fn refusal(&self) -> Option<String> {
        if let Some(e) = &self.broken {
            return Some(format!("the write-ahead log is unusable: {e}"));
        }
        if let Some(e) = &self.synced.lock().failed {
            return Some(format!("fdatasync of the write-ahead log failed: {e}"));
        }
        self.shared
            .lock()
            .failed
            .as_ref()
            .map(|e| format!("checkpoint failed: {e}"))
    }

    /// The undo of a failed commit takes the failed record's place in the
    /// log (a failed write does not advance it) and is made durable at once:
    /// whether or not the failed record reached the disk, what the log holds
    /// there afterwards puts the old values back. If that fails too, the
    /// log's tail is unknown and the store refuses commits until a restart.
    fn revert(&mut self, batch: WriteBatch) -> Result<(), StoreError> {
        let result = self.log(batch.ops);
        if let Err(e) = &result {
            self.broken.get_or_insert_with(|| Arc::new(e.clone()));
        }
        result
    }
}

#[cfg(test)]
mod tests;
