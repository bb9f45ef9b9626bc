//! The write-ahead log in front of sled. A group commit is one record,
//! written into a segment file with one `pwrite` and made durable with one
//! `fdatasync`; sled receives the same writes later from the checkpoint
//! thread (see `sled_store`).
//!
//! A record is a header and a body:
//!
//! ```text
//! magic u32 | body length u32 | lsn u64 | crc32 u32 (of lsn and body) | body
//! body: op count u32, then per op: key length u32, key, kind u8 (1 put, 0 delete),
//!       and for a put: value length u32, value
//! ```
//!
//! All integers are little-endian. Log sequence numbers (lsn) grow by one
//! per record and are never reused once a record is durable. A segment is
//! read from its start and ends at the first record that is missing, torn,
//! corrupt or out of sequence, so the stale records of an earlier lap and the
//! zeros ahead of the write position are never mistaken for new ones.
//! Segments are zero-filled ahead of the write position in chunks, so that
//! most `fdatasync`s overwrite allocated blocks and need not commit a change
//! of the file's size.

use super::StoreError;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One write of a batch: key and new value (`None` deletes).
pub type Op = (Vec<u8>, Option<Vec<u8>>);

const MAGIC: u32 = 0x4157_4e41; // "ANWA" read as little-endian bytes
const HEADER: usize = 20;
/// Bytes zero-filled ahead of the write position at a time.
const ZERO_CHUNK: u64 = 1 << 20;

/// How the log is laid out.
#[derive(Clone, Debug)]
pub struct WalConfig {
    /// Number of segment files used in turn.
    pub segments: usize,
    /// Size of a segment; a record larger than this gets a segment of its own.
    pub segment_bytes: u64,
}

impl Default for WalConfig {
    fn default() -> Self {
        WalConfig {
            segments: 4,
            segment_bytes: 32 << 20,
        }
    }
}

/// Appends `ops` as the record `lsn` to `buf`.
pub fn encode_record(buf: &mut Vec<u8>, lsn: u64, ops: &[Op]) {
    let start = buf.len();
    buf.extend_from_slice(&MAGIC.to_le_bytes());
    buf.extend_from_slice(&[0; 4]); // body length, filled in below
    buf.extend_from_slice(&lsn.to_le_bytes());
    buf.extend_from_slice(&[0; 4]); // crc, filled in below
    let body = buf.len();
    encode_ops(buf, ops);
    let body_len = len32(buf.len() - body);
    buf[start + 4..start + 8].copy_from_slice(&body_len.to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&lsn.to_le_bytes());
    crc.update(&buf[body..]);
    buf[start + 16..start + 20].copy_from_slice(&crc.finalize().to_le_bytes());
}

/// Appends `ops` in the body format to `buf` (also the format of sled's log chunks).
pub fn encode_ops(buf: &mut Vec<u8>, ops: &[Op]) {
    buf.extend_from_slice(&len32(ops.len()).to_le_bytes());
    for (key, value) in ops {
        buf.extend_from_slice(&len32(key.len()).to_le_bytes());
        buf.extend_from_slice(key);
        match value {
            Some(v) => {
                buf.push(1);
                buf.extend_from_slice(&len32(v.len()).to_le_bytes());
                buf.extend_from_slice(v);
            }
            None => buf.push(0),
        }
    }
}

/// The length as a u32; keys and values are far below 4 GiB (frames are
/// limited to kilobytes and imports to what fits in memory).
fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The records at the start of a segment, in order, until the first that is
/// missing, torn, corrupt or does not follow its predecessor's lsn.
pub fn scan(bytes: &[u8]) -> Vec<(u64, &[u8])> {
    let mut out: Vec<(u64, &[u8])> = Vec::new();
    let mut at = 0usize;
    while let Some(header) = bytes.get(at..at + HEADER) {
        let word =
            |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
        if word(0) != MAGIC {
            break;
        }
        let body_len = word(4) as usize;
        let mut lsn_bytes = [0u8; 8];
        lsn_bytes.copy_from_slice(&header[8..16]);
        let lsn = u64::from_le_bytes(lsn_bytes);
        let Some(body) = bytes.get(at + HEADER..at + HEADER + body_len) else {
            break;
        };
        let mut crc = crc32fast::Hasher::new();
        crc.update(&lsn_bytes);
        crc.update(body);
        if crc.finalize() != word(16) {
            break;
        }
        if let Some((previous, _)) = out.last() {
            if previous.checked_add(1) != Some(lsn) {
                break;
            }
        }
        out.push((lsn, body));
        at += HEADER + body_len;
    }
    out
}

/// The writes of a record's body.
pub fn decode_ops(body: &[u8]) -> Result<Vec<Op>, StoreError> {
    let corrupt = || StoreError::Corrupt("a write-ahead log record is malformed".into());
    let mut at = 0usize;
    let mut take = |n: usize| -> Result<&[u8], StoreError> {
        let slice = body.get(at..at + n).ok_or_else(corrupt)?;
        at += n;
        Ok(slice)
    };
    fn u32_of(b: &[u8]) -> usize {
        u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize
    }
    let count = u32_of(take(4)?);
    let mut ops = Vec::with_capacity(count.min(body.len() / 6));
    for _ in 0..count {
        let key_len = u32_of(take(4)?);
        let key = take(key_len)?.to_vec();
        let value = match take(1)?[0] {
            0 => None,
            1 => {
                let len = u32_of(take(4)?);
                Some(take(len)?.to_vec())
            }
            _ => return Err(corrupt()),
        };
        ops.push((key, value));
    }
    Ok(ops)
}

struct Segment {
    /// Shared with the thread that makes written records durable.
    file: Arc<File>,
    /// Bytes from the start that are allocated (written at least once).
    allocated: u64,
    /// Highest lsn written into this segment since it was last begun (0: none).
    max_lsn: u64,
}

/// The segment files and the write position.
pub struct Wal {
    config: WalConfig,
    segments: Vec<Segment>,
    active: usize,
    pos: u64,
    next_lsn: u64,
    buf: Vec<u8>,
    /// Test hook: the next append writes this many bytes of its record, then fails.
    #[cfg(test)]
    pub(crate) tear_next: Option<usize>,
}

/// The records found on disk at open, in lsn order.
pub type Recovered = Vec<(u64, Vec<Op>)>;

impl Wal {
    /// Opens (creating) the segments in `dir` and returns every record with
    /// an lsn above `checkpointed`, which must follow on from it without a gap.
    /// Writing continues at the start of the first segment with the lsn after
    /// the highest found: the caller checkpoints what is returned first.
    pub fn open(
        dir: &Path,
        config: WalConfig,
        checkpointed: u64,
    ) -> Result<(Wal, Recovered), StoreError> {
        std::fs::create_dir_all(dir)?;
        let mut segments = Vec::with_capacity(config.segments.max(2));
        let mut found: Recovered = Vec::new();
        for i in 0..config.segments.max(2) {
            let path = segment_path(dir, i);
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)?;
            let bytes = std::fs::read(&path)?;
            for (lsn, body) in scan(&bytes) {
                if lsn > checkpointed {
                    found.push((lsn, decode_ops(body)?));
                }
            }
            segments.push(Segment {
                allocated: bytes.len() as u64,
                file: Arc::new(file),
                max_lsn: 0,
            });
        }
        // A segment beyond the configured count (written with a larger one)
        // must hold nothing that is not checkpointed yet, or it would be lost.
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let index = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".wal"))
                .and_then(|n| n.parse::<usize>().ok());
            if index.is_some_and(|i| i >= segments.len()) {
                let bytes = std::fs::read(&path)?;
                if scan(&bytes).iter().any(|(lsn, _)| *lsn > checkpointed) {
                    return Err(StoreError::Corrupt(format!(
                        "{} holds records not yet checkpointed but is beyond the {} segments configured",
                        path.display(),
                        segments.len()
                    )));
                }
            }
        }
        File::open(dir)?.sync_all()?;
        found.sort_by_key(|(lsn, _)| *lsn);
        let exhausted =
            || StoreError::Corrupt("the write-ahead log's numbering is exhausted".into());
        let mut expected = checkpointed.checked_add(1).ok_or_else(exhausted)?;
        for (lsn, _) in &found {
            if *lsn != expected {
                return Err(StoreError::Corrupt(format!(
                    "the write-ahead log has a gap: record {expected} is missing before {lsn}"
                )));
            }
            expected = expected.checked_add(1).ok_or_else(exhausted)?;
        }
        let wal = Wal {
            config,
            segments,
            active: 0,
            pos: 0,
            next_lsn: expected,
            buf: Vec::with_capacity(64 * 1024),
            #[cfg(test)]
            tear_next: None,
        };
        Ok((wal, found))
    }

    /// The lsn of the last record written (0: none yet); with
    /// [`Wal::append_unsynced`] it may not be durable yet.
    pub fn last_lsn(&self) -> u64 {
        self.next_lsn - 1
    }

    /// True when a record of `len` bytes fits in the active segment (an empty segment takes any record).
    pub fn fits(&self, len: usize) -> bool {
        self.pos == 0 || self.pos + len as u64 <= self.config.segment_bytes
    }

    /// The segment that comes after the active one, and the highest lsn it still holds.
    pub fn next_segment(&self) -> (usize, u64) {
        let next = (self.active + 1) % self.segments.len();
        (next, self.segments[next].max_lsn)
    }

    /// Starts writing at the beginning of segment `i`; its records must be checkpointed.
    pub fn begin(&mut self, i: usize) {
        self.active = i;
        self.pos = 0;
        self.segments[i].max_lsn = 0;
    }

    /// Encodes `ops` as the next record, for [`Wal::append_unsynced`].
    pub fn encode(&mut self, ops: &[Op]) -> usize {
        self.buf.clear();
        encode_record(&mut self.buf, self.next_lsn, ops);
        self.buf.len()
    }

    /// Writes the encoded record at the write position without waiting for
    /// the disk, and returns its lsn and the file to `fdatasync` to make it
    /// durable (the store's sync thread does). On an error nothing advances:
    /// the next record takes the same place and lsn, so a record whose write
    /// failed is overwritten.
    pub fn append_unsynced(&mut self) -> Result<(u64, Arc<File>), StoreError> {
        self.put()?;
        let file = Arc::clone(&self.segments[self.active].file);
        Ok((self.advance(), file))
    }

    /// Moves past the record just written.
    fn advance(&mut self) -> u64 {
        let lsn = self.next_lsn;
        self.segments[self.active].max_lsn = lsn;
        self.pos += self.buf.len() as u64;
        self.next_lsn += 1;
        lsn
    }

    /// Writes the encoded record at the write position (zero-filling ahead first).
    fn put(&mut self) -> Result<(), StoreError> {
        let end = self.pos + self.buf.len() as u64;
        let segment = &mut self.segments[self.active];
        while segment.allocated < end {
            let zeros = vec![0u8; ZERO_CHUNK as usize];
            segment.file.write_all_at(&zeros, segment.allocated)?;
            segment.allocated += ZERO_CHUNK;
        }
        #[cfg(test)]
        if let Some(n) = self.tear_next.take() {
            segment
                .file
                .write_all_at(&self.buf[..n.min(self.buf.len())], self.pos)?;
            return Err(StoreError::Injected("injected: torn write"));
        }
        segment.file.write_all_at(&self.buf, self.pos)?;
        Ok(())
    }
}

fn segment_path(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("{i:04}.wal"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(n: u8) -> Vec<Op> {
        vec![(vec![b'k', n], Some(vec![n; 3])), (vec![b'd', n], None)]
    }

    /// `segments` segments of 64 bytes: about one record each.
    fn tiny(segments: usize) -> WalConfig {
        WalConfig {
            segments,
            segment_bytes: 64,
        }
    }

    /// Appends records 1..=n, moving on to the next segment as the writer does.
    fn append_records(wal: &mut Wal, n: u8) {
        for i in 1..=n {
            let len = wal.encode(&ops(i));
            if !wal.fits(len) {
                let (next, _) = wal.next_segment();
                wal.begin(next);
            }
            wal.append_unsynced().expect("append");
        }
    }

    #[test]
    fn records_round_trip_and_a_segment_ends_at_a_torn_or_stale_record() {
        let mut buf = Vec::new();
        encode_record(&mut buf, 7, &ops(1));
        encode_record(&mut buf, 8, &ops(2));
        let whole = buf.len();
        encode_record(&mut buf, 3, &ops(3)); // stale: out of sequence
        let records = scan(&buf);
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].0, 7);
        assert_eq!(decode_ops(records[1].1).expect("decodes"), ops(2));

        let mut torn = buf[..whole].to_vec();
        let last = torn.len() - 1;
        torn[last] ^= 0xff;
        assert_eq!(
            scan(&torn).len(),
            1,
            "a record with a bad checksum ends the log"
        );
        assert_eq!(
            scan(&torn[..whole - 1]).len(),
            1,
            "a short record ends the log"
        );
        assert!(scan(&[0u8; 64]).is_empty(), "zeros are no record");
    }

    #[test]
    fn a_segment_beyond_the_configured_count_with_live_records_refuses_the_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let four = tiny(4);
        let (mut wal, _) = Wal::open(dir.path(), four, 0).expect("open");
        append_records(&mut wal, 4);
        drop(wal);
        let two = tiny(2);
        assert!(matches!(
            Wal::open(dir.path(), two.clone(), 0),
            Err(StoreError::Corrupt(_))
        ));
        // Once everything is checkpointed, the extra segments hold nothing live.
        assert!(Wal::open(dir.path(), two, 4).is_ok());
    }

    #[test]
    fn a_malformed_body_is_an_error_not_a_panic() {
        assert!(decode_ops(&[5, 0, 0, 0, 1]).is_err());
        assert!(decode_ops(&[1, 0, 0, 0, 1, 0, 0, 0, b'k', 9]).is_err());
        assert!(decode_ops(&[]).is_err());
    }

    #[test]
    fn reopening_returns_what_was_not_checkpointed_and_refuses_a_gap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = tiny(2);
        let (mut wal, found) = Wal::open(dir.path(), config.clone(), 0).expect("open");
        assert!(found.is_empty());
        append_records(&mut wal, 3);
        assert_eq!(wal.last_lsn(), 3);
        drop(wal);
        let (wal, found) = Wal::open(dir.path(), config.clone(), 1).expect("reopen");
        assert_eq!(
            found.iter().map(|(l, _)| *l).collect::<Vec<_>>(),
            vec![2, 3]
        );
        assert_eq!(found[1].1, ops(3));
        assert_eq!(wal.last_lsn(), 3);
        drop(wal);
        // Record 2 lost (its segment wiped): 3 cannot be applied without it.
        let holding_2 = (0..2)
            .map(|i| segment_path(dir.path(), i))
            .find(|p| {
                let bytes = std::fs::read(p).expect("read");
                scan(&bytes).first().map(|(l, _)| *l) == Some(2)
            })
            .expect("a segment starts with record 2");
        std::fs::write(holding_2, [0u8; 8]).expect("wipe");
        assert!(matches!(
            Wal::open(dir.path(), config, 1),
            Err(StoreError::Corrupt(_))
        ));
    }
}
