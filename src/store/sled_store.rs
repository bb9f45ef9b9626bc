//! The durable store: sled, one tree, one `apply_batch` per group commit,
//! then `flush` and an `fdatasync` of sled's files.
//!
//! sled's `flush()` writes with `sync_file_range`, which does not survive a
//! power loss; the `fdatasync` after it makes a commit durable against power
//! loss as well as a process crash.

use super::{Pair, Store, StoreError, WriteBatch};
use std::fs::File;
use std::path::{Path, PathBuf};

/// A sled database in a directory.
pub struct SledStore {
    db: sled::Db,
    dir: PathBuf,
    /// sled's log file (`db`), kept open to `fdatasync` it after each flush.
    log: File,
}

impl SledStore {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<SledStore, StoreError> {
        std::fs::create_dir_all(dir)?;
        let config = sled::Config::new()
            .path(dir.join("sled"))
            .flush_every_ms(None)
            .cache_capacity(256 * 1024 * 1024);
        // A store closed a moment ago may still hold its file lock while sled's
        // IO threads finish: wait a little for it rather than fail a restart.
        let mut attempts = 0;
        let db = loop {
            match config.open() {
                Ok(db) => break db,
                Err(sled::Error::Io(e))
                    if e.to_string().contains("could not acquire lock") && attempts < 100 =>
                {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => return Err(e.into()),
            }
        };
        // sled 0.34 keeps its log and pages in the one file `db` (plus `conf`, written
        // once, and snapshots it can rebuild from the log).
        let log = File::open(dir.join("sled").join("db"))?;
        log.sync_all()?;
        // Make the directory entries of sled's files durable too.
        sync_dir(&dir.join("sled"))?;
        sync_dir(dir)?;
        Ok(SledStore {
            db,
            dir: dir.to_path_buf(),
            log,
        })
    }

    /// The directory the store lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

impl Store for SledStore {
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<Pair>, StoreError> {
        self.db
            .scan_prefix(prefix)
            .map(|item| {
                item.map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .map_err(StoreError::from)
            })
            .collect()
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get(key)?.map(|v| v.to_vec()))
    }

    fn commit(&mut self, batch: WriteBatch) -> Result<(), StoreError> {
        self.revert(batch)?;
        self.db.flush()?;
        self.log.sync_data()?;
        Ok(())
    }

    fn revert(&mut self, batch: WriteBatch) -> Result<(), StoreError> {
        let mut sled_batch = sled::Batch::default();
        for (key, value) in batch.ops {
            match value {
                Some(v) => sled_batch.insert(key, v),
                None => sled_batch.remove(key),
            }
        }
        self.db.apply_batch(sled_batch)?;
        Ok(())
    }
}
