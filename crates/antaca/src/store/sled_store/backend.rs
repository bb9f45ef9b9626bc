//! The checkpoint targets behind the log: which backend (`Backend`), how a
//! data directory says which one it holds (`Backend::detect`), the handle
//! reads go through (`Reader`) and the one the checkpoint thread writes
//! with (`Target`). sled lives in `DATA_DIR/sled/` (`sled_target.rs`),
//! fjall in `DATA_DIR/fjall/` (`fjall_target.rs`).
//!
//! It never reads the log or the overlay: the store merges those on top.

use super::chunks::{chunked, chunked_range, read_range};
use super::fjall_target::FjallTarget;
use super::sled_target::SledTarget;
use crate::store::{keys, Pair, StoreError};
use std::fmt;
use std::path::Path;
use std::str::FromStr;

/// Writes by key (the latest wins), hashed with foldhash (cheaper than SipHash).
pub(super) type Writes =
    std::collections::HashMap<Vec<u8>, Option<Vec<u8>>, foldhash::fast::RandomState>;

/// The key of the checkpointed lsn (`m/wal_lsn`).
pub(super) const WAL_LSN: &str = "wal_lsn";

/// The storage engine the write-ahead log is checkpointed into.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// sled 0.34, in `DATA_DIR/sled/`.
    Sled,
    /// fjall 3 (an LSM tree), in `DATA_DIR/fjall/`: the default for a new
    /// store (BENCHMARKS.md, "Store backends": twice sled's throughput, a
    /// fifth of its disk bytes per message, flat memory).
    #[default]
    Fjall,
}

/// The variable that chooses the backend of a new store opened without one
/// (tests run the whole suite on either with it).
pub const BACKEND_VARIABLE: &str = "ANTACA_STORE";

impl Backend {
    /// Both backends, for tests that run on each.
    pub const ALL: [Backend; 2] = [Backend::Sled, Backend::Fjall];

    /// Its name, as `--store` and `ANTACA_STORE` spell it.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sled => "sled",
            Backend::Fjall => "fjall",
        }
    }

    /// The folder of the data directory its files live in.
    pub fn folder(self) -> &'static str {
        self.name()
    }

    /// The backend whose files `dir` holds (`None`: neither). Both is an
    /// error: which one holds the data is unknown.
    pub fn detect(dir: &Path) -> Result<Option<Backend>, StoreError> {
        let sled = dir.join("sled");
        let has_sled = sled.join("conf").is_file() || sled.join("db").is_file();
        let has_fjall = dir.join("fjall").join("version").is_file();
        match (has_sled, has_fjall) {
            (true, true) => Err(StoreError::Invalid(format!(
                "{} holds both a sled and a fjall store; move one away",
                dir.display()
            ))),
            (true, false) => Ok(Some(Backend::Sled)),
            (false, true) => Ok(Some(Backend::Fjall)),
            (false, false) => Ok(None),
        }
    }

    /// The backend `ANTACA_STORE` names (`None`: unset or empty).
    pub fn from_env() -> Result<Option<Backend>, StoreError> {
        match std::env::var(BACKEND_VARIABLE) {
            Ok(name) if name.trim().is_empty() => Ok(None),
            Ok(name) => name
                .parse()
                .map(Some)
                .map_err(|e| StoreError::Invalid(format!("{BACKEND_VARIABLE}: {e}"))),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(StoreError::Invalid(format!(
                "{BACKEND_VARIABLE} is not valid text"
            ))),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Backend {
    type Err = String;

    fn from_str(s: &str) -> Result<Backend, String> {
        match s.trim() {
            "sled" => Ok(Backend::Sled),
            "fjall" => Ok(Backend::Fjall),
            other => Err(format!("unknown store backend `{other}` (sled or fjall)")),
        }
    }
}

/// `m/wal_lsn` as stored (`None`: nothing checkpointed yet).
pub(super) fn parse_lsn(stored: Option<&[u8]>) -> Result<u64, StoreError> {
    match stored {
        None => Ok(0),
        Some(v) => String::from_utf8_lossy(v)
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("m/{WAL_LSN} is not a number"))),
    }
}

/// The key of `m/wal_lsn`.
pub(super) fn wal_lsn_key() -> Vec<u8> {
    keys::key(keys::META, WAL_LSN)
}

/// Pairs of a backend, one at a time.
pub(super) type Pairs<'a> = Box<dyn Iterator<Item = Result<Pair, StoreError>> + 'a>;

/// What reads go through: a handle on the backend, shared with the
/// checkpoint thread's writes (both engines are safe to read while written).
#[derive(Clone)]
pub(super) enum Reader {
    Sled(sled::Db),
    Fjall(fjall::Keyspace),
}

impl Reader {
    /// The backend's value of `key`, without the overlay.
    pub(super) fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self {
            Reader::Sled(db) => {
                if chunked(key) {
                    // A journal entry may lie in any chunk: read them all.
                    let mut end = key.to_vec();
                    end.push(0);
                    return Ok(read_range(db, key, Some(&end))?.remove(key));
                }
                Ok(db.get(key)?.map(|v| v.to_vec()))
            }
            Reader::Fjall(keyspace) => Ok(keyspace.get(key)?.map(|v| v.to_vec())),
        }
    }

    /// The backend's pairs with `start <= key < end` (`None`: no end), in
    /// key order or from the end, without the overlay; never a log chunk
    /// itself (sled's chunked journal entries come back as `j/` pairs).
    pub(super) fn range(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        reverse: bool,
    ) -> Result<Pairs<'_>, StoreError> {
        match self {
            Reader::Sled(db) => {
                if chunked_range(start, end) {
                    // The journal's chunks are read whole (full scans only).
                    let all = read_range(db, start, end)?;
                    let pairs: Vec<Pair> = if reverse {
                        all.into_iter().rev().collect()
                    } else {
                        all.into_iter().collect()
                    };
                    return Ok(Box::new(pairs.into_iter().map(Ok)));
                }
                let iter = match end {
                    Some(end) => db.range(start..end),
                    None => db.range(start..),
                };
                let pair = |item: sled::Result<(sled::IVec, sled::IVec)>| match item {
                    Ok((k, _)) if k.starts_with(keys::CHUNK) => None,
                    Ok((k, v)) => Some(Ok((k.to_vec(), v.to_vec()))),
                    Err(e) => Some(Err(StoreError::from(e))),
                };
                Ok(if reverse {
                    Box::new(iter.rev().filter_map(pair))
                } else {
                    Box::new(iter.filter_map(pair))
                })
            }
            Reader::Fjall(keyspace) => {
                let iter = match end {
                    Some(end) => keyspace.range(start..end),
                    None => keyspace.range(start..),
                };
                let pair = |guard: fjall::Guard| {
                    guard
                        .into_inner()
                        .map(|(k, v)| (k.to_vec(), v.to_vec()))
                        .map_err(StoreError::from)
                };
                Ok(if reverse {
                    Box::new(iter.rev().map(pair))
                } else {
                    Box::new(iter.map(pair))
                })
            }
        }
    }
}

/// The backend as the checkpoint thread writes it.
pub(super) enum Target {
    Sled(SledTarget),
    Fjall(FjallTarget),
}

impl Target {
    /// Opens (or creates) the backend's files in `dir`; a directory that
    /// holds the other backend's files is refused.
    pub(super) fn open(
        dir: &Path,
        backend: Backend,
        cache_bytes: u64,
    ) -> Result<Target, StoreError> {
        if let Some(found) = Backend::detect(dir)? {
            if found != backend {
                return Err(StoreError::WrongBackend {
                    dir: dir.to_path_buf(),
                    asked: backend,
                    found,
                });
            }
        }
        let folder = dir.join(backend.folder());
        Ok(match backend {
            Backend::Sled => Target::Sled(SledTarget::open(&folder, cache_bytes)?),
            Backend::Fjall => Target::Fjall(FjallTarget::open(&folder, cache_bytes)?),
        })
    }

    /// A handle for reads.
    pub(super) fn reader(&self) -> Reader {
        match self {
            Target::Sled(target) => Reader::Sled(target.db.clone()),
            Target::Fjall(target) => Reader::Fjall(target.keyspace.clone()),
        }
    }

    /// The lsn every record up to which the backend holds (`m/wal_lsn`).
    pub(super) fn checkpointed(&self) -> Result<u64, StoreError> {
        match self {
            Target::Sled(target) => parse_lsn(target.db.get(wal_lsn_key())?.as_deref()),
            Target::Fjall(target) => parse_lsn(target.keyspace.get(wal_lsn_key())?.as_deref()),
        }
    }

    /// Writes `writes` (the last write of each key) and makes them durable,
    /// then records `upto` as checkpointed, in a second step, so that the
    /// mark never becomes durable before what it covers (replaying a record
    /// twice is harmless).
    pub(super) fn apply(&mut self, writes: &Writes, upto: u64) -> Result<(), StoreError> {
        match self {
            Target::Sled(target) => target.apply(writes, upto),
            Target::Fjall(target) => target.apply(writes, upto),
        }
    }
}
