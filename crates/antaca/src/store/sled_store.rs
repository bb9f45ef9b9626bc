//! The durable store: a write-ahead log in front of sled.
//!
//! A commit is one record in the log: one `pwrite` and one `fdatasync` of a
//! preallocated segment (see [`super::wal`]). The same writes reach sled
//! from a checkpoint thread, coalesced (a balance written by a thousand
//! commits is written to sled once) and flushed with sled's own `flush` and
//! an `fdatasync` of its file; the lsn they reach is stored in sled with
//! them (`m/wal_lsn`). Opening the store replays the log records above that
//! lsn into sled before anything else happens.
//!
//! sled's cost is per key (about 5 µs an insert here, whatever the value's
//! size), and every authorization adds a transaction and a journal entry.
//! So a checkpoint writes those two kinds (`t/`, `j/`) as log chunks: the
//! checkpoint's writes of them, in key order, in one value under
//! `l/{lsn}/{part}`. Reads put them back together: a `t/` or `j/` record is
//! its last write across the chunks, in lsn order (a delete removes it).
//! Everything else (balances, cards, counters …) is a key of its own.
//!
//! A segment is reused only once everything in it is in sled; when the
//! checkpoint falls behind by every segment, commits wait for it
//! (backpressure) rather than lose anything.
//!
//! sled's `flush()` writes with `sync_file_range`, which does not survive a
//! power loss; the `fdatasync` after it is what makes a checkpoint durable.
//!
//! This file holds the `SledStore` type and its writer: a commit written to
//! the log (`log_then`), handed to the sync thread (`sync.rs`), its writes
//! handed to the checkpoint thread (`checkpoint.rs`) once they are durable,
//! and the reads. Opening, replay and closing are in `open.rs`, the layout
//! of log chunks in sled in `chunks.rs`.

mod checkpoint;
mod chunks;
mod open;
mod sync;

use super::wal::{Op, Wal, WalConfig};
use super::{OnDurable, Pair, Refused, Store, StoreError, WriteBatch};
use checkpoint::{Job, Shared};
use chunks::{chunked, read_prefix};
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
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            wal: WalConfig::default(),
            checkpoint_interval: Duration::from_secs(1),
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

/// A sled database in a directory, behind a write-ahead log.
pub struct SledStore {
    db: sled::Db,
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

const WAL_LSN: &str = "wal_lsn";

impl SledStore {
    /// The directory the store lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Makes sled hold every committed write, waiting for the checkpoint thread.
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
    /// disk in the log (sled must never hold a write the log may lose).
    fn hand_over(&self) {
        if self.wait_durable(self.wal.last_lsn()).is_err() {
            // The log's tail is unknown: nothing more reaches sled.
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
    /// which tells `done` once it is on disk; on success the writes join the
    /// pending writes. An empty `ops` writes nothing and is durable once the
    /// records before it are.
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
            // have a gap) and sled holds everything it contains.
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

impl Store for SledStore {
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<Pair>, StoreError> {
        self.checkpoint_now()?;
        Ok(read_prefix(&self.db, prefix)?.into_iter().collect())
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.checkpoint_now()?;
        if chunked(key) {
            return Ok(read_prefix(&self.db, key)?.remove(key));
        }
        Ok(self.db.get(key)?.map(|v| v.to_vec()))
    }

    fn range(
        &self,
        start: &[u8],
        end: &[u8],
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<Pair>, StoreError> {
        // Interim: correct but waits for the checkpoint (the overlay of
        // unchecked-pointed writes replaces it).
        self.checkpoint_now()?;
        if start >= end {
            return Ok(Vec::new());
        }
        if chunked(start) {
            // Chunked records are put back together whole.
            let prefix = &start[..2];
            let all = read_prefix(&self.db, prefix)?;
            let within = all.range(start.to_vec()..end.to_vec());
            let pair = |(k, v): (&Vec<u8>, &Vec<u8>)| (k.clone(), v.clone());
            return Ok(if reverse {
                within.rev().take(limit).map(pair).collect()
            } else {
                within.take(limit).map(pair).collect()
            });
        }
        let iter = self.db.range(start..end);
        let mut out = Vec::new();
        let mut push = |item: sled::Result<(sled::IVec, sled::IVec)>| -> Result<bool, StoreError> {
            let (k, v) = item?;
            if !k.starts_with(super::keys::CHUNK) {
                out.push((k.to_vec(), v.to_vec()));
            }
            Ok(out.len() < limit)
        };
        if reverse {
            for item in iter.rev() {
                if !push(item)? {
                    break;
                }
            }
        } else {
            for item in iter {
                if !push(item)? {
                    break;
                }
            }
        }
        Ok(out)
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
        SledStore::wait_durable(self, self.wal.last_lsn())
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
