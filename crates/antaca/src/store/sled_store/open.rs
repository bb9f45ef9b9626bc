//! Opening and closing the store: the backend chosen (the configured one,
//! else the one the directory holds, else `ANTACA_STORE`, else fjall) and
//! opened (a directory holding the other backend's store is refused), an
//! older sled store's chunked transactions migrated (`migrate.rs`), the
//! write-ahead log replayed into the backend above the checkpointed lsn
//! (`m/wal_lsn`) before a new record can take the place of an old one, then
//! the checkpoint and sync threads started. `Drop` stops them in order
//! (sync thread, last hand-over, checkpoint thread), leaving the backend
//! complete.
//!
//! It never writes a log record or answers a batch: committing is the
//! writer's (`sled_store.rs`), making records durable the sync thread's.

use super::backend::{Backend, Target};
use super::checkpoint::{checkpoint, run_checkpoints, Progress, Shared};
use super::migrate::STEP_BYTES;
use super::overlay::Overlay;
use super::sync::{run_syncs, Synced};
use super::{DiskStore, Pending, StoreConfig};
use crate::store::wal::{Op, Wal};
use crate::store::StoreError;
use std::cell::RefCell;
use std::path::Path;
use std::sync::{mpsc, Arc, Condvar, Mutex};

impl DiskStore {
    /// Opens (or creates) the store in `dir` with the default settings: the
    /// backend the directory holds, or for a new store the one
    /// `ANTACA_STORE` names (sled when unset).
    pub fn open(dir: &Path) -> Result<DiskStore, StoreError> {
        DiskStore::open_with(dir, StoreConfig::default())
    }

    /// The backend `config` asks for, else the one `dir` holds, else the one
    /// `ANTACA_STORE` names, else fjall.
    pub fn choose_backend(dir: &Path, config: &StoreConfig) -> Result<Backend, StoreError> {
        if let Some(backend) = config.backend {
            return Ok(backend);
        }
        if let Some(found) = Backend::detect(dir)? {
            return Ok(found);
        }
        Ok(Backend::from_env()?.unwrap_or_default())
    }

    /// Opens (or creates) the store in `dir`, replaying the log into the backend.
    pub fn open_with(dir: &Path, config: StoreConfig) -> Result<DiskStore, StoreError> {
        let backend = DiskStore::choose_backend(dir, &config)?;
        std::fs::create_dir_all(dir)?;
        let mut target = Target::open(dir, backend, config.cache_bytes)?;
        if let Target::Sled(sled) = &mut target {
            // Before the replay: the log's transaction writes are newer than every chunk's.
            sled.migrate(STEP_BYTES, None)?;
        }
        let overlay = Arc::new(Overlay::default());
        let checkpointed = target.checkpointed()?;
        let (wal, recovered) = Wal::open(&dir.join("wal"), config.wal.clone(), checkpointed)?;
        // Replay: what the log holds beyond the checkpoint goes into the
        // backend now, before a new record can take the place of an old one.
        let upto = wal.last_lsn();
        let replay: Vec<Op> = recovered.into_iter().flat_map(|(_, ops)| ops).collect();
        if upto > checkpointed {
            checkpoint(&mut target, replay, upto, &overlay)?;
        }

        let shared = Arc::new(Shared {
            progress: Mutex::new(Progress {
                checkpointed: upto,
                failed: None,
            }),
            changed: Condvar::new(),
        });
        let reader = target.reader();
        let (jobs, rx) = mpsc::channel();
        let thread_shared = shared.clone();
        let thread_overlay = overlay.clone();
        let checkpointer = std::thread::Builder::new()
            .name("antaca-checkpoint".into())
            .spawn(move || run_checkpoints(&mut target, &rx, &thread_shared, &thread_overlay))?;
        let synced = Arc::new(Synced::default());
        synced.lock().durable = upto;
        let (syncs, sync_rx) = mpsc::channel();
        let thread_synced = synced.clone();
        let syncer = std::thread::Builder::new()
            .name("antaca-sync".into())
            .spawn(move || run_syncs(&sync_rx, &thread_synced))?;
        Ok(DiskStore {
            reader,
            backend,
            overlay,
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

impl Drop for DiskStore {
    fn drop(&mut self) {
        // Let the sync thread finish what was written (it tells every batch),
        // then leave the backend complete, so that the next open has nothing to replay.
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
