//! The open-time migration of a sled store written before transactions
//! became keys of their own: its log chunks (`l/…`) hold `t/` writes, which
//! only a full scan could put back together. Each chunk's `t/` writes become
//! plain keys and the chunk is rewritten with its journal writes only (or
//! removed), oldest chunk first, a few MiB of chunks per sled batch, each
//! batch made durable before the next; then `m/store_layout` records that
//! the store is migrated, so that later opens skip the scan.
//!
//! Crash-safe and idempotent: a read is sled's own keys with the chunks'
//! writes on top, oldest first, and every step keeps that unchanged (a
//! chunk's `t/` writes move below the chunks that follow it, which are
//! newer); a batch is atomic, so a crash leaves some chunks migrated and the
//! rest as they were, and the next open goes on with those (a migrated
//! chunk holds no `t/` write, so it is not touched again).
//!
//! It runs before the log is replayed (the replay's `t/` writes are newer
//! than every chunk's) and never reads the log.

use super::sled_target::SledTarget;
use crate::store::wal::{decode_ops, encode_ops, Op};
use crate::store::{keys, StoreError};

/// `m/store_layout`: which layout of sled the store is in.
const LAYOUT: &str = "store_layout";
/// Transactions are plain keys; chunks hold journal entries only.
const PLAIN_TRANSACTIONS: &[u8] = b"2";
/// Bytes of chunks rewritten in one sled batch.
pub(super) const STEP_BYTES: usize = 8 << 20;

/// What the migration did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Migrated {
    /// Chunks that held transactions.
    pub(super) chunks: usize,
    /// Transaction writes moved out of them (puts and deletes).
    pub(super) writes: usize,
}

impl SledTarget {
    /// Moves the `t/` writes of the log chunks to plain keys, unless
    /// `m/store_layout` says it is done. `stop_after` (tests) stops after
    /// that many batches, as a crash would, without recording the layout.
    pub(super) fn migrate(
        &mut self,
        step_bytes: usize,
        stop_after: Option<usize>,
    ) -> Result<Migrated, StoreError> {
        let layout = keys::key(keys::META, LAYOUT);
        if self.db.get(&layout)?.as_deref() == Some(PLAIN_TRANSACTIONS) {
            return Ok(Migrated::default());
        }
        let mut migrated = Migrated::default();
        let mut steps = 0usize;
        let mut cursor = keys::CHUNK.to_vec();
        loop {
            let mut batch = sled::Batch::default();
            let mut bytes = 0usize;
            let mut last = None;
            for item in self.db.range(cursor.as_slice()..) {
                let (key, chunk) = item?;
                if !key.starts_with(keys::CHUNK) {
                    break;
                }
                bytes += chunk.len();
                last = Some(key.to_vec());
                let (transactions, rest): (Vec<Op>, Vec<Op>) = decode_ops(&chunk)?
                    .into_iter()
                    .partition(|(k, _)| k.starts_with(keys::TXN));
                if !transactions.is_empty() {
                    migrated.chunks += 1;
                    migrated.writes += transactions.len();
                    // A later chunk's write of the same key, in this batch, wins.
                    for (k, v) in transactions {
                        match v {
                            Some(v) => batch.insert(k, v),
                            None => batch.remove(k),
                        }
                    }
                    if rest.is_empty() {
                        batch.remove(&*key);
                    } else {
                        let mut value = Vec::new();
                        encode_ops(&mut value, &rest);
                        batch.insert(&*key, value);
                    }
                }
                if bytes >= step_bytes {
                    break;
                }
            }
            let Some(last) = last else { break };
            self.db.apply_batch(batch)?;
            self.flush()?;
            steps += 1;
            if stop_after.is_some_and(|n| steps >= n) {
                return Ok(migrated);
            }
            cursor = last;
            cursor.push(0);
        }
        self.db.insert(layout, PLAIN_TRANSACTIONS)?;
        self.flush()?;
        if migrated.chunks > 0 {
            tracing::info!(
                chunks = migrated.chunks,
                writes = migrated.writes,
                "moved transactions out of the log chunks into keys of their own"
            );
        }
        Ok(migrated)
    }
}

/// A chunk as the previous version wrote it (tests build old stores with it).
#[cfg(test)]
pub(super) fn old_chunk(db: &sled::Db, upto: u64, part: u32, ops: &[Op]) -> Result<(), StoreError> {
    let mut value = Vec::new();
    encode_ops(&mut value, ops);
    db.insert(super::chunks::chunk_key(upto, part), value)?;
    Ok(())
}

/// Forgets that the store is migrated (tests build old stores with it).
#[cfg(test)]
pub(super) fn forget_layout(db: &sled::Db) -> Result<(), StoreError> {
    db.remove(keys::key(keys::META, LAYOUT))?;
    Ok(())
}
