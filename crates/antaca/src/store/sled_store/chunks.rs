//! Log chunks: how transactions and journal entries (`t/`, `j/`) lie in
//! sled, the writes of one checkpoint in a few values under
//! `l/{lsn}/{part}`, and how reads put them back together on top of sled's
//! own keys (`read_prefix`).
//!
//! It never writes to sled and never waits for a thread: the checkpoint
//! thread writes the chunks, the reads call it after `checkpoint_now`.

use crate::store::wal::decode_ops;
use crate::store::{keys, StoreError};
use std::collections::BTreeMap;

/// Key prefixes whose writes sled receives as log chunks.
const CHUNKED: [&[u8]; 2] = [keys::TXN, keys::JOURNAL];
/// Most bytes of writes in one chunk value. sled writes a page (up to 16
/// entries) bigger than 128 KiB to a file of its own, a "blob"; 4 KiB chunks
/// keep pages below that (blobs are still synced, see
/// [`Durable::flush`](super::checkpoint::Durable::flush)).
pub(super) const CHUNK_BYTES: usize = 4 << 10;

pub(super) fn chunked(key: &[u8]) -> bool {
    CHUNKED.iter().any(|p| key.starts_with(p))
}

pub(super) fn chunk_key(upto: u64, part: u32) -> Vec<u8> {
    let mut key = keys::numbered(keys::CHUNK, upto);
    key.extend_from_slice(format!("/{part:06}").as_bytes());
    key
}

/// Every record under `prefix` as the reader sees it: sled's own keys, then
/// the log chunks' writes on top, oldest chunk first.
pub(super) fn read_prefix(
    db: &sled::Db,
    prefix: &[u8],
) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, StoreError> {
    let mut out = BTreeMap::new();
    for item in db.scan_prefix(prefix) {
        let (k, v) = item?;
        if !k.starts_with(keys::CHUNK) {
            out.insert(k.to_vec(), v.to_vec());
        }
    }
    let overlaps = |c: &[u8]| c.starts_with(prefix) || prefix.starts_with(c);
    if CHUNKED.iter().any(|c| overlaps(c)) {
        for item in db.scan_prefix(keys::CHUNK) {
            let (_, chunk) = item?;
            for (key, value) in decode_ops(&chunk)? {
                if !key.starts_with(prefix) {
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
