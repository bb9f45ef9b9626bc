//! Opening and closing the store: sled opened (waiting out the lock of a
//! store closed a moment ago), its files and their directory entries made
//! durable, the write-ahead log replayed into sled above the checkpointed
//! lsn (`m/wal_lsn`) before a new record can take the place of an old one,
//! then the checkpoint and sync threads started. `Drop` stops them in order
//! (sync thread, last hand-over, checkpoint thread), leaving sled complete.
//!
//! It never writes a log record or answers a batch: committing is the
//! writer's (`sled_store.rs`), making records durable the sync thread's.

use super::checkpoint::{checkpoint, run_checkpoints, sync_dir, Durable, Progress, Shared};
use super::sync::{run_syncs, Synced};
use super::{Pending, SledStore, StoreConfig, WAL_LSN};
use crate::store::wal::{Op, Wal};
use crate::store::{keys, StoreError};
use std::cell::RefCell;
use std::collections::HashSet;
use std::fs::File;
use std::path::Path;
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::Duration;

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
}

/// True when sled could not open its files because another process (or a
/// store closed a moment ago) holds their lock; sled says so only in text.
fn lock_held(error: &sled::Error) -> bool {
    matches!(error, sled::Error::Io(e) if e.to_string().contains("could not acquire lock"))
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
