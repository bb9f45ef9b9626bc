//! An in-memory store for tests, with fault injection.

use super::{Pair, Store, StoreError, WriteBatch};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// A `BTreeMap` store. Clones share the same data, so a test can keep one to
/// inspect what the engine committed or to make commits fail.
#[derive(Clone, Default)]
pub struct MemoryStore {
    data: Arc<Mutex<BTreeMap<Vec<u8>, Vec<u8>>>>,
    fail_commits: Arc<AtomicBool>,
    refusal: Arc<Mutex<Option<String>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// While `fail` is true every commit fails after applying its batch in
    /// memory, as sled's does when the flush fails (a dead disk).
    pub fn set_fail_commits(&self, fail: bool) {
        self.fail_commits.store(fail, Ordering::SeqCst);
    }

    /// Makes the store report that it refuses commits (as a store whose
    /// undo of a failed write failed too), or no longer.
    pub fn set_refusal(&self, reason: Option<&str>) {
        *self.refusal.lock().unwrap_or_else(PoisonError::into_inner) = reason.map(str::to_string);
    }
}

impl Store for MemoryStore {
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<Pair>, StoreError> {
        let data = self.data.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(data
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let data = self.data.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(data.get(key).cloned())
    }

    fn range(
        &self,
        start: &[u8],
        end: &[u8],
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<Pair>, StoreError> {
        if start >= end {
            return Ok(Vec::new());
        }
        let data = self.data.lock().unwrap_or_else(PoisonError::into_inner);
        let range = data.range(start.to_vec()..end.to_vec());
        let pair = |(k, v): (&Vec<u8>, &Vec<u8>)| (k.clone(), v.clone());
        Ok(if reverse {
            range.rev().take(limit).map(pair).collect()
        } else {
            range.take(limit).map(pair).collect()
        })
    }

    fn commit(&mut self, batch: WriteBatch) -> Result<(), StoreError> {
        self.revert(batch)?;
        if self.fail_commits.load(Ordering::SeqCst) {
            return Err(StoreError::Injected("injected flush failure"));
        }
        Ok(())
    }

    fn refusal(&self) -> Option<String> {
        self.refusal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn revert(&mut self, batch: WriteBatch) -> Result<(), StoreError> {
        let mut data = self.data.lock().unwrap_or_else(PoisonError::into_inner);
        for (key, value) in batch.ops {
            match value {
                Some(v) => data.insert(key, v),
                None => data.remove(&key),
            };
        }
        Ok(())
    }
}
