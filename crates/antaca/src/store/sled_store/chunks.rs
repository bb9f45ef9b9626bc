//! Log chunks (sled only): how journal entries (`j/`) lie in sled, the
//! writes of one checkpoint in a few values under `l/{lsn}/{part}`, and how
//! reads put them back together on top of sled's own keys (`read_range`).
//! The journal is read only by full scans, so a chunk costs one sled key
//! per 4 KiB of entries instead of one per entry. Transactions (`t/`) were
//! chunked too before they became keys of their own; `migrate.rs` takes
//! them out of the chunks of an older store.
//!
//! It never writes to sled and never waits for a thread: the checkpoint
//! thread writes the chunks, the reads call it.

use crate::store::wal::decode_ops;
use crate::store::{keys, StoreError};
use std::collections::BTreeMap;

/// Key prefix whose writes sled receives as log chunks.
const CHUNKED: &[u8] = keys::JOURNAL;
/// Most bytes of writes in one chunk value. sled writes a page (up to 16
/// entries) bigger than 128 KiB to a file of its own, a "blob"; 4 KiB chunks
/// keep pages below that (blobs are still synced, see
/// [`SledTarget::flush`](super::sled_target::SledTarget::flush)).
pub(super) const CHUNK_BYTES: usize = 4 << 10;

/// True for a key whose writes go into log chunks.
pub(super) fn chunked(key: &[u8]) -> bool {
    key.starts_with(CHUNKED)
}

/// The first key after every key that starts with `prefix` (`None`: there
/// is none, the prefix is empty or all `0xff`).
pub(super) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// True when `start <= key < end` (`None`: no end) may hold a chunked key.
pub(super) fn chunked_range(start: &[u8], end: Option<&[u8]>) -> bool {
    let below_end = end.is_none_or(|end| CHUNKED < end);
    let above_start = prefix_end(CHUNKED).is_none_or(|after| start < after.as_slice());
    below_end && above_start
}

pub(super) fn chunk_key(upto: u64, part: u32) -> Vec<u8> {
    let mut key = keys::numbered(keys::CHUNK, upto);
    key.extend_from_slice(format!("/{part:06}").as_bytes());
    key
}

/// Every record with `start <= key < end` (`None`: no end) as the reader
/// sees it: sled's own keys (never a chunk itself), then the log chunks'
/// writes on top, oldest chunk first (a delete removes the key).
pub(super) fn read_range(
    db: &sled::Db,
    start: &[u8],
    end: Option<&[u8]>,
) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, StoreError> {
    let in_range = |key: &[u8]| key >= start && end.is_none_or(|end| key < end);
    let mut out = BTreeMap::new();
    let iter = match end {
        Some(end) => db.range(start..end),
        None => db.range(start..),
    };
    for item in iter {
        let (k, v) = item?;
        if !k.starts_with(keys::CHUNK) {
            out.insert(k.to_vec(), v.to_vec());
        }
    }
    if chunked_range(start, end) {
        for item in db.scan_prefix(keys::CHUNK) {
            let (_, chunk) = item?;
            for (key, value) in decode_ops(&chunk)? {
                if !in_range(&key) {
                    continue;
                }
                match value {
                    Some(v) => out.insert(key, v),
                    None => out.remove(&key),
                };
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_touches_the_chunks_only_where_journal_keys_can_be() {
        assert!(chunked_range(b"", None));
        assert!(chunked_range(b"j/", Some(b"j/00000000000000000010")));
        assert!(chunked_range(b"h/", Some(b"k/")));
        assert!(!chunked_range(b"t/", Some(b"u/")));
        assert!(!chunked_range(b"a/", Some(b"j/")));
        assert!(!chunked_range(b"j0", None));
        assert_eq!(prefix_end(b"j/"), Some(b"j0".to_vec()));
        assert_eq!(prefix_end(&[b'a', 0xff]), Some(b"b".to_vec()));
        assert_eq!(prefix_end(&[0xff]), None);
    }
}
