//! The checkpoint thread: the log's writes applied to sled, coalesced by
//! key (transactions and journal entries as log chunks, see `chunks.rs`),
//! flushed and made durable (`Durable`), then the checkpointed lsn
//! (`m/wal_lsn`) recorded in a second step; `Shared` tells the writer how
//! far it got, so that a log segment is reused only once sled holds it. The
//! thread runs at a lower priority (`lower_priority`, the store's one
//! `unsafe` block).
//!
//! It never reads or writes the write-ahead log and never answers a batch:
//! it is given only writes that are already durable in the log.

use super::chunks::{chunk_key, chunked, CHUNK_BYTES};
use super::WAL_LSN;
use crate::store::wal::{encode_ops, Op};
use crate::store::{keys, StoreError};
use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::Instant;

/// Writes by key (the latest wins), hashed with foldhash (cheaper than SipHash).
type Writes = std::collections::HashMap<Vec<u8>, Option<Vec<u8>>, foldhash::fast::RandomState>;

/// What the checkpoint thread has done, shared with the writer.
#[derive(Default)]
pub(super) struct Progress {
    /// Every record up to this lsn is durable in sled.
    pub(super) checkpointed: u64,
    /// Why the last checkpoint failed; the store refuses commits from then on.
    pub(super) failed: Option<Arc<StoreError>>,
}

pub(super) struct Shared {
    pub(super) progress: Mutex<Progress>,
    pub(super) changed: Condvar,
}

impl Shared {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Progress> {
        // A poisoned lock only means a checkpoint thread panicked; its progress is still right.
        self.progress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

pub(super) enum Job {
    /// Apply these writes (in commit order: the last write of a key wins) and
    /// record `upto` as checkpointed.
    Apply { writes: Vec<Op>, upto: u64 },
}

pub(super) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// sled and what makes its writes durable.
pub(super) struct Durable {
    pub(super) db: sled::Db,
    /// sled's main file (`sled/db`), synced after each flush.
    pub(super) log: File,
    pub(super) sled_dir: PathBuf,
    /// Blob files already synced (sled writes a large page to a file of its own).
    pub(super) synced_blobs: HashSet<std::ffi::OsString>,
}

impl Durable {
    /// sled's `flush`, then what it leaves to the page cache made durable:
    /// every blob file not synced yet, their directories, and the main file.
    fn flush(&mut self) -> Result<(), StoreError> {
        self.db.flush()?;
        let blobs = self.sled_dir.join("blobs");
        let mut present = HashSet::new();
        let mut new = false;
        match std::fs::read_dir(&blobs) {
            Ok(entries) => {
                for entry in entries {
                    let name = entry?.file_name();
                    if !self.synced_blobs.contains(&name) {
                        match File::open(blobs.join(&name)) {
                            Ok(file) => file.sync_all()?,
                            // sled removed it meanwhile (it was replaced).
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                            Err(e) => return Err(e.into()),
                        }
                        new = true;
                    }
                    present.insert(name);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        if new {
            sync_dir(&blobs)?;
            sync_dir(&self.sled_dir)?;
        }
        self.synced_blobs = present;
        self.log.sync_data()?;
        Ok(())
    }
}

/// Applies `writes` (the last write of each key) to sled and makes them
/// durable, then records `upto` as checkpointed (in a second step, so that
/// the mark never becomes durable before what it covers; replaying a record
/// twice is harmless).
pub(super) fn checkpoint(
    durable: &mut Durable,
    writes: Vec<Op>,
    upto: u64,
) -> Result<(), StoreError> {
    // A balance written by a thousand commits reaches sled once.
    let writes: Writes = writes.into_iter().collect();
    let mut batch = sled::Batch::default();
    let mut logged: Vec<Op> = Vec::new();
    for (key, value) in writes {
        if chunked(&key) {
            logged.push((key, value));
            continue;
        }
        match value {
            Some(v) => batch.insert(key, v),
            None => batch.remove(key),
        }
    }
    logged.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let mut part = 0u32;
    let mut start = 0usize;
    let mut bytes = 0usize;
    let mut value = Vec::new();
    for (i, (key, v)) in logged.iter().enumerate() {
        bytes += key.len() + v.as_ref().map_or(0, Vec::len) + 9;
        if bytes >= CHUNK_BYTES || i + 1 == logged.len() {
            value.clear();
            encode_ops(&mut value, &logged[start..=i]);
            batch.insert(chunk_key(upto, part), value.as_slice());
            part += 1;
            start = i + 1;
            bytes = 0;
        }
    }
    durable.db.apply_batch(batch)?;
    durable.flush()?;
    durable.db.insert(
        keys::key(keys::META, WAL_LSN),
        upto.to_string().into_bytes(),
    )?;
    durable.flush()
}

/// The checkpoint thread: applies jobs in order, merging those that queued up.
pub(super) fn run_checkpoints(durable: &mut Durable, jobs: &mpsc::Receiver<Job>, shared: &Shared) {
    /// A panic (sled asserts on what it reads) must not leave the writer
    /// waiting for a checkpoint forever: it records a failure on the way out.
    struct OnPanic<'a>(&'a Shared);
    impl Drop for OnPanic<'_> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                self.0
                    .lock()
                    .failed
                    .get_or_insert_with(|| Arc::new(StoreError::ThreadPanicked("checkpoint")));
                self.0.changed.notify_all();
            }
        }
    }
    let _guard = OnPanic(shared);
    lower_priority();
    while let Ok(Job::Apply {
        mut writes,
        mut upto,
    }) = jobs.recv()
    {
        while let Ok(Job::Apply {
            writes: later,
            upto: later_upto,
        }) = jobs.try_recv()
        {
            writes.extend(later);
            upto = later_upto;
        }
        let started = Instant::now();
        let result = checkpoint(durable, writes, upto);
        metrics::histogram!("antaca_store_checkpoint_seconds")
            .record(started.elapsed().as_secs_f64());
        let mut progress = shared.lock();
        match result {
            Ok(()) => progress.checkpointed = upto,
            Err(e) => {
                tracing::error!(error = %e, "checkpoint failed; the store stops taking commits");
                progress.failed = Some(Arc::new(e));
            }
        }
        shared.changed.notify_all();
        if progress.failed.is_some() {
            return;
        }
    }
}

/// Checkpoints are background work: give the network and the writer the CPU
/// first (nice 10 for this thread). If checkpoints fall behind by every log
/// segment, the writer waits for them and they get the CPU anyway.
#[allow(unsafe_code)] // The crate's one exception (Cargo.toml): std has no setpriority.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid has no preconditions; setpriority on our own thread id
    // only changes this thread's nice value, and failing is harmless.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        let _ = libc::setpriority(libc::PRIO_PROCESS, tid, 10);
    }
}
