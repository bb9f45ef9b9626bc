//! fjall as the checkpoint target, in `DATA_DIR/fjall/`: one keyspace
//! (`antaca`) holding every key as it is (an LSM tree's cost per key is
//! small, so nothing is chunked). fjall has a journal of its own; ours is
//! the durability path, so fjall's is written without a flush per batch
//! (`manual_journal_persist`) and made durable once per checkpoint.
//!
//! Memory is bounded by the store's `cache_bytes`: a sixteenth of it (1 to
//! 64 MiB) per memtable, of which fjall keeps one active and at most four
//! sealed (it halts writes beyond that), the rest as block cache; fjall's
//! journals are limited to eight memtables (at least the 64 MiB it requires),
//! which bounds what it replays at open. The memtable size is fixed when the
//! keyspace is created.
//!
//! It never reads the write-ahead log: it is given writes already durable there.

use super::backend::{wal_lsn_key, Writes};
use super::sled_target::sync_dir;
use crate::store::StoreError;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The one keyspace of the store.
const KEYSPACE: &str = "antaca";
const MIB: u64 = 1 << 20;

/// fjall's memory and journal limits out of a budget of `cache_bytes`.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Limits {
    pub(super) memtable_bytes: u64,
    pub(super) block_cache_bytes: u64,
    pub(super) journal_bytes: u64,
}

impl Limits {
    pub(super) fn of(cache_bytes: u64) -> Limits {
        let memtable_bytes = (cache_bytes / 16).clamp(MIB, 64 * MIB);
        Limits {
            memtable_bytes,
            // One active and four sealed memtables at most.
            block_cache_bytes: cache_bytes.saturating_sub(5 * memtable_bytes).max(MIB),
            journal_bytes: (8 * memtable_bytes).max(64 * MIB),
        }
    }
}

/// fjall and its keyspace.
pub(super) struct FjallTarget {
    db: fjall::Database,
    pub(super) keyspace: fjall::Keyspace,
}

impl FjallTarget {
    /// Opens (or creates) fjall in `folder` within a budget of `cache_bytes`.
    pub(super) fn open(folder: &Path, cache_bytes: u64) -> Result<FjallTarget, StoreError> {
        let limits = Limits::of(cache_bytes);
        // A store closed a moment ago may still hold its lock while fjall's
        // threads stop: wait a little for it rather than fail a restart.
        let mut attempts = 0;
        let db = loop {
            let opened = fjall::Database::builder(folder)
                .cache_size(limits.block_cache_bytes)
                .max_journaling_size(limits.journal_bytes)
                .manual_journal_persist(true)
                .open();
            match opened {
                Ok(db) => break db,
                Err(fjall::Error::Locked) if attempts < 100 => {
                    attempts += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e @ fjall::Error::Locked) => return Err(StoreError::Locked(Arc::new(e))),
                Err(e) => return Err(e.into()),
            }
        };
        let keyspace = db.keyspace(KEYSPACE, || {
            fjall::KeyspaceCreateOptions::default()
                .max_memtable_size(limits.memtable_bytes)
                .manual_journal_persist(true)
        })?;
        // The keyspace's creation, and the folder's entry in the data directory.
        db.persist(fjall::PersistMode::SyncAll)?;
        if let Some(parent) = folder.parent() {
            sync_dir(parent)?;
        }
        Ok(FjallTarget { db, keyspace })
    }

    /// Applies `writes` as one fjall batch and makes it durable, then records `upto`.
    pub(super) fn apply(&mut self, writes: &Writes, upto: u64) -> Result<(), StoreError> {
        let mut batch = self.db.batch();
        for (key, value) in writes {
            match value {
                Some(v) => batch.insert(&self.keyspace, key.as_slice(), v.as_slice()),
                None => batch.remove(&self.keyspace, key.as_slice()),
            }
        }
        batch.commit()?;
        self.db.persist(fjall::PersistMode::SyncAll)?;
        let mut mark = self.db.batch();
        mark.insert(
            &self.keyspace,
            wal_lsn_key().as_slice(),
            upto.to_string().as_bytes(),
        );
        mark.commit()?;
        self.db.persist(fjall::PersistMode::SyncAll)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_bounds_memtables_and_cache_and_the_journal_stays_legal() {
        let default = Limits::of(256 * MIB);
        assert_eq!(default.memtable_bytes, 16 * MIB);
        assert_eq!(default.block_cache_bytes, 176 * MIB);
        assert_eq!(default.journal_bytes, 128 * MIB);
        let tiny = Limits::of(0);
        assert_eq!(tiny.memtable_bytes, MIB);
        assert_eq!(
            tiny.journal_bytes,
            64 * MIB,
            "fjall asserts at least 64 MiB"
        );
        assert_eq!(Limits::of(4 << 30).memtable_bytes, 64 * MIB);
    }
}
