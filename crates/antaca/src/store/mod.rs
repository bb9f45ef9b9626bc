//! Storage behind a small trait: a durable store (a write-ahead log in front
//! of sled or fjall) and an in-memory one for tests and fault injection. The
//! store keeps bytes under keys and commits batches; it decides nothing.
//!
//! Owns: durability (the write-ahead log, group `fdatasync`, checkpoints into
//! sled or fjall), key encoding and the content-addressed blob files of KYC documents
//! (`blobs`, written outside the log). Must never touch: a decision, a wire
//! format, the engine; it imports nothing else of the crate but
//! `security::keyfile` (the whole-file writes of `blobs`).

pub mod blobs;
mod memory;
mod sled_store;
pub mod wal;

pub use memory::MemoryStore;
pub use sled_store::{
    Backend, DiskStore, SledStore, StoreConfig, BACKEND_VARIABLE, CACHE_BYTES_DEFAULT,
};

use std::fmt;
use std::sync::Arc;

/// A key and its value.
pub type Pair = (Vec<u8>, Vec<u8>);

/// A set of writes committed all or nothing.
#[derive(Default, Debug)]
pub struct WriteBatch {
    /// Key and new value (`None` deletes), in order; a later write of a key wins.
    pub ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl WriteBatch {
    /// An empty batch with room for `writes` writes.
    pub fn with_capacity(writes: usize) -> WriteBatch {
        WriteBatch {
            ops: Vec::with_capacity(writes),
        }
    }

    /// Sets `key` to `value`.
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.ops.push((key, Some(value)));
    }

    /// Deletes `key`.
    pub fn delete(&mut self, key: Vec<u8>) {
        self.ops.push((key, None));
    }

    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Number of writes.
    pub fn len(&self) -> usize {
        self.ops.len()
    }
}

/// Why the store failed. Each variant keeps what caused it as its
/// [`source`](std::error::Error::source); `Display` says what to do.
#[derive(Debug, Clone)]
pub enum StoreError {
    /// A file of the store could not be created, read, written or synced.
    Io(Arc<std::io::Error>),
    /// The sled engine failed.
    Sled(sled::Error),
    /// The fjall engine failed.
    Fjall(Arc<fjall::Error>),
    /// Another process (a running server) holds the data directory's lock.
    Locked(Arc<dyn std::error::Error + Send + Sync>),
    /// The data directory holds the other backend's store: opening it with
    /// this one would start empty beside it.
    WrongBackend {
        /// The data directory.
        dir: std::path::PathBuf,
        /// The backend asked for.
        asked: Backend,
        /// The backend whose files are there.
        found: Backend,
    },
    /// A setting of the store is invalid (the text says which).
    Invalid(String),
    /// An `fdatasync` of the write-ahead log failed; the store refuses every
    /// commit until a restart.
    SyncFailed(Arc<std::io::Error>),
    /// The checkpoint thread could not apply the log to sled; the store
    /// refuses every commit until a restart.
    CheckpointFailed(Arc<StoreError>),
    /// A log write and its undo both failed: the log's tail is unknown, so
    /// the store refuses every commit until a restart.
    LogUnusable(Arc<StoreError>),
    /// The sync thread is gone, so nothing can be made durable.
    SyncStopped,
    /// A background thread of the store panicked (named here).
    ThreadPanicked(&'static str),
    /// A failure a test injected (the text says which).
    Injected(&'static str),
    /// A value on disk could not be read back.
    Corrupt(String),
}

/// What the operator can do about most failures.
const CHECK_THE_DISK: &str = "check the disk and the data directory's permissions";

impl StoreError {
    /// The failure at the bottom of a chain of wrapped ones (what to advise on).
    fn innermost(&self) -> &StoreError {
        match self {
            StoreError::CheckpointFailed(inner) | StoreError::LogUnusable(inner) => {
                inner.innermost()
            }
            other => other,
        }
    }
}

/// What failed, without the "storage failed" prefix or advice, so that a
/// wrapped failure reads once: "checkpoint failed: the checkpoint thread panicked".
struct Reason<'a>(&'a StoreError);

impl fmt::Display for Reason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            StoreError::Io(e) => write!(f, "{e}"),
            StoreError::SyncFailed(e) => write!(f, "fdatasync failed: {e}"),
            StoreError::Sled(e) => write!(f, "{e}"),
            StoreError::Fjall(e) => write!(f, "{e}"),
            StoreError::Locked(e) => write!(f, "{e}"),
            StoreError::WrongBackend { dir, asked, found } => write!(
                f,
                "{} holds a {found} store, not a {asked} one",
                dir.display()
            ),
            StoreError::Invalid(e) => f.write_str(e),
            StoreError::CheckpointFailed(inner) => {
                write!(f, "checkpoint failed: {}", Reason(inner))
            }
            StoreError::LogUnusable(inner) => {
                write!(f, "the write-ahead log is unusable: {}", Reason(inner))
            }
            StoreError::SyncStopped => f.write_str("the sync thread has stopped"),
            StoreError::ThreadPanicked(thread) => write!(f, "the {thread} thread panicked"),
            StoreError::Injected(what) => f.write_str(what),
            StoreError::Corrupt(e) => f.write_str(e),
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reason = Reason(self);
        match (self, self.innermost()) {
            (StoreError::WrongBackend { found, .. }, _) => write!(
                f,
                "storage failed: {reason}; open it with `--store {found}` (ANTACA_STORE={found}), or choose another data directory"
            ),
            (StoreError::Invalid(_), _) => write!(f, "storage settings are invalid: {reason}"),
            (StoreError::Corrupt(_), _) => write!(
                f,
                "stored data is unreadable: {reason}; run `antaca verify` on a copy"
            ),
            (_, StoreError::Locked(_)) => write!(
                f,
                "storage failed: {reason}; another process (a running server?) has the data directory open: stop it first"
            ),
            (_, StoreError::ThreadPanicked(_)) => write!(
                f,
                "storage failed: {reason}; restart the server and report the bug"
            ),
            _ => write!(f, "storage failed: {reason}; {CHECK_THE_DISK}"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Io(e) | StoreError::SyncFailed(e) => Some(e.as_ref()),
            StoreError::Sled(e) => Some(e),
            StoreError::Fjall(e) => Some(e.as_ref()),
            StoreError::Locked(e) => Some(e.as_ref()),
            StoreError::CheckpointFailed(e) | StoreError::LogUnusable(e) => Some(e.as_ref()),
            StoreError::WrongBackend { .. }
            | StoreError::Invalid(_)
            | StoreError::SyncStopped
            | StoreError::ThreadPanicked(_)
            | StoreError::Injected(_)
            | StoreError::Corrupt(_) => None,
        }
    }
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Sled(e)
    }
}

impl From<fjall::Error> for StoreError {
    fn from(e: fjall::Error) -> Self {
        StoreError::Fjall(Arc::new(e))
    }
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        StoreError::Io(Arc::new(e))
    }
}

/// What waits for a batch to become durable (see [`Store::commit_then`]).
pub trait OnDurable: Send {
    /// The batch, and every batch committed before it, is on disk.
    fn durable(self: Box<Self>);
    /// The commit failed as [`Store::commit`] fails; it has been reverted.
    fn failed(self: Box<Self>, error: StoreError);
}

/// A commit that failed at once, with what was waiting for it.
pub type Refused = (StoreError, Box<dyn OnDurable>);

/// A key-value store that commits batches durably.
pub trait Store: Send + 'static {
    /// Every key-value pair whose key starts with `prefix`, in key order.
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<Pair>, StoreError>;
    /// One value, as of every batch committed so far (durable yet or not):
    /// the writer reads its own writes. It must not wait for a checkpoint.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// The pairs with `start <= key < end`, in key order (or from the end
    /// when `reverse`), at most `limit` of them, as of every batch committed
    /// so far, like [`Store::get`].
    fn range(
        &self,
        start: &[u8],
        end: &[u8],
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<Pair>, StoreError>;
    /// Applies the batch atomically and returns only once it is on disk.
    /// On an error the batch may still have been applied (sled applies, then
    /// flushes): the caller puts the old values back with [`Store::revert`].
    fn commit(&mut self, batch: WriteBatch) -> Result<(), StoreError>;
    /// Commits like [`Store::commit`], but may return once the batch is
    /// written, and tell `done` (perhaps from another thread) when it and
    /// every batch before it are on disk, so that the caller can go on with
    /// the next batch meanwhile. An empty batch is durable once the batches
    /// before it are. An error returned here is a failed commit as
    /// [`Store::commit`] reports one (the caller reverts it), and gives
    /// `done` back. If the disk fails after the return, `done` is dropped
    /// without a word and the store refuses every commit from then on
    /// ([`Store::refusal`]): whether that batch is on disk is unknown.
    fn commit_then(&mut self, batch: WriteBatch, done: Box<dyn OnDurable>) -> Result<(), Refused> {
        if batch.is_empty() {
            done.durable();
            return Ok(());
        }
        match self.commit(batch) {
            Ok(()) => {
                done.durable();
                Ok(())
            }
            Err(e) => Err((e, done)),
        }
    }
    /// Applies a batch that undoes a failed commit. Whether it is durable
    /// at once or with the next commit is the store's choice; an error means
    /// the store no longer knows what it holds ([`Store::refusal`] says so).
    fn revert(&mut self, batch: WriteBatch) -> Result<(), StoreError>;
    /// Why the store refuses every commit until a restart, if it does.
    fn refusal(&self) -> Option<String> {
        None
    }
    /// Sets what the store calls when it starts refusing commits on a
    /// thread of its own (a failed `fdatasync`), so that an idle writer
    /// learns of it without waiting for its next batch.
    fn on_refusal(&mut self, wake: Box<dyn Fn() + Send>) {
        let _ = wake;
    }
    /// Waits until every batch committed so far is on disk (see
    /// [`Store::commit_then`]); an error when that can no longer happen.
    fn wait_durable(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Key prefixes of the layout: one tree, one prefix per record kind, so that
/// a single `apply_batch` commits every record an authorization touches.
pub mod keys {
    /// Meta records (counters, format version).
    pub const META: &[u8] = b"m/";
    /// Programs by id.
    pub const PROGRAM: &[u8] = b"p/";
    /// Users by id.
    pub const USER: &[u8] = b"u/";
    /// Balances by id.
    pub const BALANCE: &[u8] = b"b/";
    /// Cards by id.
    pub const CARD: &[u8] = b"c/";
    /// Transactions by zero-padded id.
    pub const TXN: &[u8] = b"t/";
    /// Journal entries by zero-padded sequence.
    pub const JOURNAL: &[u8] = b"j/";
    /// Management records (sessions' devices, administrators, KYC, outbox …) by their own key.
    pub const RECORD: &[u8] = b"r/";
    /// Log chunks (sled only): the journal writes of one checkpoint, in a
    /// few values (sled's cost is per key); the store reads them back as
    /// `j/` records. Stores written before transactions became keys of their
    /// own hold `t/` writes in them too, until the open that migrates them.
    pub const CHUNK: &[u8] = b"l/";

    #[test]
    fn numbered_keys_are_zero_padded_to_twenty_digits() {
        assert_eq!(numbered(b"t/", 0), b"t/00000000000000000000".to_vec());
        assert_eq!(numbered(b"j/", 1234), b"j/00000000000000001234".to_vec());
        assert_eq!(
            numbered(b"t/", u64::MAX),
            b"t/18446744073709551615".to_vec()
        );
    }

    /// `prefix` followed by `id`.
    pub fn key(prefix: &[u8], id: &str) -> Vec<u8> {
        let mut k = Vec::with_capacity(prefix.len() + id.len());
        k.extend_from_slice(prefix);
        k.extend_from_slice(id.as_bytes());
        k
    }

    /// `prefix` followed by a 20-digit zero-padded number, so keys sort numerically.
    pub fn numbered(prefix: &[u8], n: u64) -> Vec<u8> {
        let mut k = Vec::with_capacity(prefix.len() + 20);
        k.extend_from_slice(prefix);
        let mut digits = [b'0'; 20];
        let mut rest = n;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        k.extend_from_slice(&digits);
        k
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrapped_failure_reads_once_with_the_advice_of_its_cause() {
        let panicked =
            StoreError::CheckpointFailed(Arc::new(StoreError::ThreadPanicked("checkpoint")));
        assert_eq!(
            panicked.to_string(),
            "storage failed: checkpoint failed: the checkpoint thread panicked; restart the server and report the bug"
        );
        let io = std::io::Error::other("disk full");
        let unusable = StoreError::LogUnusable(Arc::new(StoreError::Io(Arc::new(io))));
        assert_eq!(
            unusable.to_string(),
            format!("storage failed: the write-ahead log is unusable: disk full; {CHECK_THE_DISK}")
        );
        let sync = StoreError::SyncFailed(Arc::new(std::io::Error::other("EIO")));
        assert_eq!(
            sync.to_string(),
            format!("storage failed: fdatasync failed: EIO; {CHECK_THE_DISK}")
        );
        assert!(StoreError::Corrupt("bad record".into())
            .to_string()
            .starts_with("stored data is unreadable: bad record;"));
    }
}
