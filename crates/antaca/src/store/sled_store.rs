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

use super::wal::{decode_ops, encode_ops, Op, Wal, WalConfig};
use super::{keys, OnDurable, Pair, Refused, Store, StoreError, WriteBatch};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};

/// Writes by key (the latest wins), hashed with foldhash (cheaper than SipHash).
type Writes = std::collections::HashMap<Vec<u8>, Option<Vec<u8>>, foldhash::fast::RandomState>;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

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

/// What the checkpoint thread has done, shared with the writer.
#[derive(Default)]
struct Progress {
    /// Every record up to this lsn is durable in sled.
    checkpointed: u64,
    /// Why the last checkpoint failed; the store refuses commits from then on.
    failed: Option<Arc<StoreError>>,
}

struct Shared {
    progress: Mutex<Progress>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Progress> {
        // A poisoned lock only means a checkpoint thread panicked; its progress is still right.
        self.progress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

enum Job {
    /// Apply these writes (in commit order: the last write of a key wins) and
    /// record `upto` as checkpointed.
    Apply { writes: Vec<Op>, upto: u64 },
}

/// Writes committed to the log and not yet handed to the checkpoint thread,
/// in commit order. The writer only appends; the checkpoint thread, which
/// runs in the background, keeps the last write of each key.
#[derive(Default)]
struct Pending {
    writes: Vec<Op>,
    since: Option<Instant>,
}

/// A log record written and waiting for its `fdatasync`, or (no file) a
/// barrier that is durable once the records before it are.
struct SyncJob {
    lsn: u64,
    file: Option<Arc<File>>,
    done: Box<dyn OnDurable>,
}

/// How far the sync thread has made the log durable.
#[derive(Default)]
struct SyncProgress {
    /// Every record up to this lsn is on disk.
    durable: u64,
    /// Why an `fdatasync` failed; the store refuses commits from then on.
    failed: Option<Arc<std::io::Error>>,
}

#[derive(Default)]
struct Synced {
    progress: Mutex<SyncProgress>,
    changed: Condvar,
    /// Told when an `fdatasync` fails (see [`Store::on_refusal`]).
    waker: Mutex<Option<Box<dyn Fn() + Send>>>,
    /// Test hook: the next `fdatasync` fails.
    #[cfg(test)]
    fail_next: std::sync::atomic::AtomicBool,
}

impl Synced {
    fn lock(&self) -> std::sync::MutexGuard<'_, SyncProgress> {
        // A poisoned lock only means the sync thread panicked; its progress is still right.
        self.progress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records that the log can no longer be made durable, and says so.
    fn fail(&self, error: std::io::Error) {
        self.lock().failed.get_or_insert(Arc::new(error));
        self.changed.notify_all();
        let waker = self
            .waker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(wake) = waker.as_ref() {
            wake();
        }
    }
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
    /// Opens (or creates) the store in `dir` with the default settings.
    pub fn open(dir: &Path) -> Result<SledStore, StoreError> {
        SledStore::open_with(dir, StoreConfig::default())
    }

    /// Opens (or creates) the store in `dir`, replaying the log into sled.
    pub fn open_with(dir: &Path, config: StoreConfig) -> Result<SledStore, StoreError> {
        std::fs::create_dir_all(dir)?;
        let sled_config = sled::Config::new()
            .path(dir.join("sled"))
            .flush_every_ms(None)
            .mode(sled::Mode::HighThroughput)
            .cache_capacity(256 * 1024 * 1024);
        // A store closed a moment ago may still hold its file lock while sled's
        // IO threads finish: wait a little for it rather than fail a restart.
        let mut attempts = 0;
        let db = loop {
            match sled_config.open() {
                Ok(db) => break db,
                Err(e) if lock_held(&e) && attempts < 100 => {
                    attempts += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) if lock_held(&e) => return Err(StoreError::Locked(e)),
                Err(e) => return Err(e.into()),
            }
        };
        // sled 0.34 keeps its log and pages in the one file `db` (plus `conf`, written
        // once, and snapshots it can rebuild from the log).
        let log = File::open(dir.join("sled").join("db"))?;
        let mut durable = Durable {
            db: db.clone(),
            log,
            sled_dir: dir.join("sled"),
            synced_blobs: HashSet::new(),
        };
        durable.log.sync_all()?;
        // Make the directory entries of sled's files durable too.
        sync_dir(&dir.join("sled"))?;
        sync_dir(dir)?;

        let checkpointed = match db.get(keys::key(keys::META, WAL_LSN))? {
            None => 0,
            Some(v) => String::from_utf8_lossy(&v)
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("m/{WAL_LSN} is not a number")))?,
        };
        let (wal, recovered) = Wal::open(&dir.join("wal"), config.wal.clone(), checkpointed)?;
        // Replay: what the log holds beyond the checkpoint goes into sled now,
        // before a new record can take the place of an old one.
        let upto = wal.last_lsn();
        let replay: Vec<Op> = recovered.into_iter().flat_map(|(_, ops)| ops).collect();
        if upto > checkpointed {
            checkpoint(&mut durable, replay, upto)?;
        }

        let shared = Arc::new(Shared {
            progress: Mutex::new(Progress {
                checkpointed: upto,
                failed: None,
            }),
            changed: Condvar::new(),
        });
        let (jobs, rx) = mpsc::channel();
        let thread_shared = shared.clone();
        let checkpointer = std::thread::Builder::new()
            .name("antaca-checkpoint".into())
            .spawn(move || run_checkpoints(&mut durable, &rx, &thread_shared))?;
        let synced = Arc::new(Synced::default());
        synced.lock().durable = upto;
        let (syncs, sync_rx) = mpsc::channel();
        let thread_synced = synced.clone();
        let syncer = std::thread::Builder::new()
            .name("antaca-sync".into())
            .spawn(move || run_syncs(&sync_rx, &thread_synced))?;
        Ok(SledStore {
            db,
            dir: dir.to_path_buf(),
            wal,
            config,
            pending: RefCell::new(Pending::default()),
            handed: std::cell::Cell::new(upto),
            shared,
            jobs: Some(jobs),
            checkpointer: Some(checkpointer),
            broken: None,
            retry_in_place: false,
            syncs: Some(syncs),
            syncer: Some(syncer),
            synced,
        })
    }

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

/// The sync thread: one `fdatasync` for every record written since the
/// last one (group commit across the writer's batches), then tells each
/// batch, in order. After a failed `fdatasync` the kernel may have dropped
/// the pages it could not write, so a later one that succeeds proves
/// nothing: the store stops there (as PostgreSQL does), and the batches
/// waiting are never told.
fn run_syncs(jobs: &mpsc::Receiver<SyncJob>, synced: &Synced) {
    /// A panic must not leave the writer or `Drop` waiting for a sync forever.
    struct OnPanic<'a>(&'a Synced);
    impl Drop for OnPanic<'_> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                self.0
                    .fail(std::io::Error::other("the sync thread panicked"));
            }
        }
    }
    let _guard = OnPanic(synced);
    let mut batch: Vec<SyncJob> = Vec::new();
    while let Ok(first) = jobs.recv() {
        batch.push(first);
        while let Ok(job) = jobs.try_recv() {
            batch.push(job);
        }
        let started = Instant::now();
        let mut result = Ok(());
        let mut files: Vec<&Arc<File>> = Vec::with_capacity(2);
        for file in batch.iter().filter_map(|job| job.file.as_ref()) {
            if !files.iter().any(|f| Arc::ptr_eq(f, file)) {
                files.push(file);
            }
        }
        #[cfg(test)]
        if synced
            .fail_next
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            result = Err(std::io::Error::other("injected: fdatasync failed"));
            files.clear();
        }
        for file in &files {
            if let Err(e) = file.sync_data() {
                result = Err(e);
                break;
            }
        }
        if !files.is_empty() {
            metrics::histogram!("antaca_store_sync_seconds")
                .record(started.elapsed().as_secs_f64());
        }
        let upto = batch.iter().map(|job| job.lsn).max().unwrap_or(0);
        if let Err(e) = result {
            tracing::error!(error = %e, "fdatasync of the write-ahead log failed; the store stops taking commits");
            synced.fail(e);
            return;
        }
        // Answer first, then publish: an empty batch that finds everything
        // durable is answered by the writer at once, and must come after these.
        for job in batch.drain(..) {
            job.done.durable();
        }
        {
            let mut progress = synced.lock();
            progress.durable = progress.durable.max(upto);
        }
        synced.changed.notify_all();
    }
}

/// True when sled could not open its files because another process (or a
/// store closed a moment ago) holds their lock; sled says so only in text.
fn lock_held(error: &sled::Error) -> bool {
    matches!(error, sled::Error::Io(e) if e.to_string().contains("could not acquire lock"))
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

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// Key prefixes whose writes sled receives as log chunks.
const CHUNKED: [&[u8]; 2] = [keys::TXN, keys::JOURNAL];
/// Most bytes of writes in one chunk value. sled writes a page (up to 16
/// entries) bigger than 128 KiB to a file of its own, a "blob"; 4 KiB chunks
/// keep pages below that (blobs are still synced, see [`Durable::flush`]).
const CHUNK_BYTES: usize = 4 << 10;

fn chunked(key: &[u8]) -> bool {
    CHUNKED.iter().any(|p| key.starts_with(p))
}

/// sled and what makes its writes durable.
struct Durable {
    db: sled::Db,
    /// sled's main file (`sled/db`), synced after each flush.
    log: File,
    sled_dir: PathBuf,
    /// Blob files already synced (sled writes a large page to a file of its own).
    synced_blobs: HashSet<std::ffi::OsString>,
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
fn checkpoint(durable: &mut Durable, writes: Vec<Op>, upto: u64) -> Result<(), StoreError> {
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

fn chunk_key(upto: u64, part: u32) -> Vec<u8> {
    let mut key = keys::numbered(keys::CHUNK, upto);
    key.extend_from_slice(format!("/{part:06}").as_bytes());
    key
}

/// Every record under `prefix` as the reader sees it: sled's own keys, then
/// the log chunks' writes on top, oldest chunk first.
fn read_prefix(db: &sled::Db, prefix: &[u8]) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, StoreError> {
    let mut out = BTreeMap::new();
    for item in db.scan_prefix(prefix) {
        let (k, v) = item?;
        if !k.starts_with(keys::CHUNK) {
            out.insert(k.to_vec(), v.to_vec());
        }
    }
    let overlaps = |c: &[u8]| c.starts_with(prefix) || prefix.starts_with(c);
    if CHUNKED.iter().any(|c| overlaps(c)) {
        for item in db.scan_prefix(keys::CHUNK) {
            let (_, chunk) = item?;
            for (key, value) in decode_ops(&chunk)? {
                if !key.starts_with(prefix) {
                    continue;
                }
                match value {
                    Some(v) => out.insert(key, v),
                    None => out.remove(&key),
                };
            }
        }
    }
    Ok(out)
}

/// The checkpoint thread: applies jobs in order, merging those that queued up.
fn run_checkpoints(durable: &mut Durable, jobs: &mpsc::Receiver<Job>, shared: &Shared) {
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
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid has no preconditions; setpriority on our own thread id
    // only changes this thread's nice value, and failing is harmless.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        let _ = libc::setpriority(libc::PRIO_PROCESS, tid, 10);
    }
}

impl Drop for SledStore {
    fn drop(&mut self) {
        // Let the sync thread finish what was written (it tells every batch),
        // then leave sled complete, so that the next open has nothing to replay.
        self.syncs = None;
        if let Some(thread) = self.syncer.take() {
            let _ = thread.join();
        }
        self.hand_over();
        self.jobs = None;
        if let Some(thread) = self.checkpointer.take() {
            let _ = thread.join();
        }
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
