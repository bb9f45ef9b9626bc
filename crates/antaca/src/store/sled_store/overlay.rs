//! The overlay: every write that is in the log but not yet in the backend,
//! by key, with the lsn of the record that wrote it, so that reads see every
//! committed batch (durable yet or not) without waiting for a checkpoint.
//!
//! The writer inserts a record's writes once the record is written to the
//! log (`log_then`); the checkpoint thread removes a key's entry once the
//! backend holds a write of it at least as new (`retire`), never a newer
//! write of the same key. A read looks here first (a `None` value is a
//! delete) and goes to the backend only for a key with no entry: the entry
//! leaves only after the backend has it, so a key without one is current in
//! the backend.
//!
//! Bound: an entry is retired once the checkpoint covering its record is
//! done, and the log reuses a segment only once everything in it is
//! checkpointed, so the overlay holds at most what the log holds (segments x
//! segment size, 4 x 32 MiB by default), plus a `BTreeMap` node's overhead
//! per key; usually about one checkpoint interval of writes.
//!
//! It never touches the log or the backend: it is memory shared by the two threads.

use crate::store::wal::Op;
use crate::store::{Pair, StoreError};
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// A key's latest write in the log: its record's lsn and the value (`None` deletes).
type Entry = (u64, Option<Vec<u8>>);

/// Keys retired under one hold of the lock, so that a large checkpoint does
/// not keep the writer's reads waiting for long.
const RETIRE_SLICE: usize = 1024;

/// What the overlay knows of a key.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Latest {
    /// Nothing: the backend is current for it.
    InBackend,
    /// Its latest write, in the log (`None`: deleted).
    Written(Option<Vec<u8>>),
}

/// Writes in the log that the backend may not hold yet.
#[derive(Default)]
pub(super) struct Overlay {
    entries: Mutex<BTreeMap<Vec<u8>, Entry>>,
}

impl Overlay {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<Vec<u8>, Entry>> {
        // A poisoned lock only means a thread panicked between two whole
        // operations on the map; what it holds is still right.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records the writes of the log record `lsn` (a later write of a key wins).
    pub(super) fn insert(&self, lsn: u64, ops: &[Op]) {
        let mut entries = self.lock();
        for (key, value) in ops {
            entries.insert(key.clone(), (lsn, value.clone()));
        }
    }

    /// The key's latest write in the log, if the backend may not hold it yet.
    pub(super) fn get(&self, key: &[u8]) -> Latest {
        match self.lock().get(key) {
            None => Latest::InBackend,
            Some((_, value)) => Latest::Written(value.clone()),
        }
    }

    /// Forgets the entries of `keys` that the backend now holds: those
    /// written by a record up to `upto` (a newer write of a key stays).
    pub(super) fn retire<'a>(&self, keys: impl Iterator<Item = &'a Vec<u8>>, upto: u64) {
        let mut keys = keys.peekable();
        while keys.peek().is_some() {
            let mut entries = self.lock();
            for key in keys.by_ref().take(RETIRE_SLICE) {
                if entries.get(key).is_some_and(|(lsn, _)| *lsn <= upto) {
                    entries.remove(key);
                }
            }
        }
    }

    /// Number of keys with a write the backend may not hold yet.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }

    /// The entries with `start <= key < end` (`None`: no end), in key order
    /// (or from the end when `reverse`), until `puts` of them set a value:
    /// the first `puts` results of a merge cannot come from beyond them.
    pub(super) fn range(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        reverse: bool,
        puts: usize,
    ) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        let entries = self.lock();
        let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
        let range = entries.range::<[u8], _>((Bound::Included(start), upper));
        let mut out = Vec::new();
        let mut seen = 0usize;
        let mut take = |(key, (_, value)): (&Vec<u8>, &Entry)| {
            if seen >= puts {
                return false;
            }
            seen += usize::from(value.is_some());
            out.push((key.clone(), value.clone()));
            true
        };
        if reverse {
            for entry in range.rev() {
                if !take(entry) {
                    break;
                }
            }
        } else {
            for entry in range {
                if !take(entry) {
                    break;
                }
            }
        }
        out
    }
}

/// The backend's pairs (in the direction of `reverse`) with the overlay's
/// entries (same direction, from [`Overlay::range`]) on top: an overlay
/// entry replaces the backend's value of its key, a delete hides it. At
/// most `limit` pairs.
pub(super) fn merge(
    overlay: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    backend: impl Iterator<Item = Result<Pair, StoreError>>,
    reverse: bool,
    limit: usize,
) -> Result<Vec<Pair>, StoreError> {
    // Is `a` before `b` in the direction of the walk?
    let before = |a: &[u8], b: &[u8]| if reverse { a > b } else { a < b };
    let mut out = Vec::new();
    let mut overlay = overlay.into_iter().peekable();
    let mut backend = backend.peekable();
    while out.len() < limit {
        let from_overlay = match (overlay.peek(), backend.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(_), Some(Err(_))) => false,
            (Some((o, _)), Some(Ok((b, _)))) => {
                if o == b {
                    // The overlay's write is newer: the backend's pair is hidden.
                    backend.next();
                    true
                } else {
                    before(o, b)
                }
            }
        };
        if from_overlay {
            if let Some((key, Some(value))) = overlay.next() {
                out.push((key, value));
            }
        } else if let Some(pair) = backend.next() {
            out.push(pair?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<Result<Pair, StoreError>> {
        list.iter()
            .map(|(k, v)| Ok((k.as_bytes().to_vec(), v.as_bytes().to_vec())))
            .collect()
    }

    fn shown(out: &[Pair]) -> Vec<String> {
        out.iter()
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    String::from_utf8_lossy(k),
                    String::from_utf8_lossy(v)
                )
            })
            .collect()
    }

    #[test]
    fn the_overlay_wins_deletes_hide_and_the_limit_holds_both_ways() {
        let overlay = Overlay::default();
        overlay.insert(
            5,
            &[
                (b"b".to_vec(), Some(b"B5".to_vec())),
                (b"c".to_vec(), None),
                (b"e".to_vec(), Some(b"E5".to_vec())),
            ],
        );
        let backend = [("a", "A"), ("b", "B"), ("c", "C"), ("d", "D")];
        let forward = merge(
            overlay.range(b"a", Some(b"z"), false, usize::MAX),
            pairs(&backend).into_iter(),
            false,
            usize::MAX,
        )
        .expect("merge");
        assert_eq!(shown(&forward), ["a=A", "b=B5", "d=D", "e=E5"]);
        let mut reversed = pairs(&backend);
        reversed.reverse();
        let last_two = merge(
            overlay.range(b"a", Some(b"z"), true, 2),
            reversed.into_iter(),
            true,
            2,
        )
        .expect("merge");
        assert_eq!(shown(&last_two), ["e=E5", "d=D"]);
        let bounded = overlay.range(b"a", Some(b"e"), false, 1);
        assert_eq!(bounded.len(), 1, "stops at the first put: {bounded:?}");
    }

    #[test]
    fn retiring_keeps_a_newer_write_of_the_same_key() {
        let overlay = Overlay::default();
        overlay.insert(3, &[(b"k".to_vec(), Some(b"old".to_vec()))]);
        overlay.insert(4, &[(b"j".to_vec(), Some(b"j".to_vec()))]);
        overlay.insert(8, &[(b"k".to_vec(), Some(b"new".to_vec()))]);
        overlay.retire([b"k".to_vec(), b"j".to_vec()].iter(), 5);
        assert_eq!(overlay.get(b"k"), Latest::Written(Some(b"new".to_vec())));
        assert_eq!(overlay.get(b"j"), Latest::InBackend);
        overlay.retire([b"k".to_vec()].iter(), 8);
        assert_eq!(overlay.len(), 0);
    }
}
