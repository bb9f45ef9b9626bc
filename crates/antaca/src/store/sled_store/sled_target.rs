//! sled as the checkpoint target, in `DATA_DIR/sled/`: opened (waiting out
//! the lock of a store closed a moment ago), its files made durable, a
//! checkpoint applied as one batch (journal entries as log chunks, see
//! `chunks.rs`) and made durable with sled's `flush` and an `fdatasync` of
//! its files, then the checkpointed lsn recorded.
//!
//! sled's `flush()` writes with `sync_file_range`, which does not survive a
//! power loss; the `fdatasync` after it is what makes a checkpoint durable.
//!
//! It never reads the write-ahead log: it is given writes already durable there.

use super::backend::{wal_lsn_key, Writes};
use super::chunks::{chunk_key, chunked, CHUNK_BYTES};
use crate::store::wal::{encode_ops, Op};
use crate::store::StoreError;
use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub(super) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// sled and what makes its writes durable.
pub(super) struct SledTarget {
    pub(super) db: sled::Db,
    /// sled's main file (`sled/db`), synced after each flush.
    log: File,
    sled_dir: PathBuf,
    /// Blob files already synced (sled writes a large page to a file of its own).
    synced_blobs: HashSet<std::ffi::OsString>,
}

/// True when sled could not open its files because another process (or a
/// store closed a moment ago) holds their lock; sled says so only in text.
fn lock_held(error: &sled::Error) -> bool {
    matches!(error, sled::Error::Io(e) if e.to_string().contains("could not acquire lock"))
}

impl SledTarget {
    /// Opens (or creates) sled in `folder` with a page cache of `cache_bytes`.
    pub(super) fn open(folder: &Path, cache_bytes: u64) -> Result<SledTarget, StoreError> {
        let sled_config = sled::Config::new()
            .path(folder)
            .flush_every_ms(None)
            .mode(sled::Mode::HighThroughput)
            .cache_capacity(cache_bytes);
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
                Err(e) if lock_held(&e) => return Err(StoreError::Locked(Arc::new(e))),
                Err(e) => return Err(e.into()),
            }
        };
        // sled 0.34 keeps its log and pages in the one file `db` (plus `conf`, written
        // once, and snapshots it can rebuild from the log).
        let log = File::open(folder.join("db"))?;
        log.sync_all()?;
        // Make the directory entries of sled's files durable too.
        sync_dir(folder)?;
        if let Some(parent) = folder.parent() {
            sync_dir(parent)?;
        }
        Ok(SledTarget {
            db,
            log,
            sled_dir: folder.to_path_buf(),
            synced_blobs: HashSet::new(),
        })
    }

    /// sled's `flush`, then what it leaves to the page cache made durable:
    /// every blob file not synced yet, their directories, and the main file.
    pub(super) fn flush(&mut self) -> Result<(), StoreError> {
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

    /// Applies `writes` in one sled batch (journal entries as log chunks
    /// under `l/{upto}/…`) and makes it durable, then records `upto`.
    pub(super) fn apply(&mut self, writes: &Writes, upto: u64) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        let mut logged: Vec<Op> = Vec::new();
        for (key, value) in writes {
            if chunked(key) {
                logged.push((key.clone(), value.clone()));
                continue;
            }
            match value {
                Some(v) => batch.insert(key.as_slice(), v.as_slice()),
                None => batch.remove(key.as_slice()),
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
        self.db.apply_batch(batch)?;
        self.flush()?;
        self.db
            .insert(wal_lsn_key(), upto.to_string().into_bytes())?;
        self.flush()
    }
}
