//! Tests of the sled store: commit, replay of the write-ahead log, torn and
//! stale records, failures of the disk.

use super::*;
use crate::store::keys;

fn small() -> StoreConfig {
    StoreConfig {
        wal: WalConfig {
            segments: 2,
            segment_bytes: 256,
        },
        checkpoint_interval: Duration::from_hours(1),
    }
}

fn put(key: &str, value: &str) -> WriteBatch {
    let mut batch = WriteBatch::default();
    batch.put(key.as_bytes().to_vec(), value.as_bytes().to_vec());
    batch
}

#[test]
fn commits_survive_a_crash_across_many_segment_laps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = tempfile::tempdir().expect("tempdir");
    {
        let mut store = SledStore::open_with(dir.path(), small()).expect("open");
        for i in 0..200 {
            store
                .commit(put(&format!("k/{}", i % 7), &format!("v{i}")))
                .expect("commit");
        }
        let mut gone = WriteBatch::default();
        gone.delete(b"k/3".to_vec());
        store.commit(gone).expect("delete");
        // Let the checkpoint thread finish what it was given; the writes
        // after that are only in the log, and the reopen must replay them.
        store.wait_checkpointed(store.handed.get()).expect("settle");
        assert!(!store.pending.borrow().writes.is_empty());
        assert_ne!(store.db.get(b"k/3").expect("get"), None);
        // A copy of the directory stands for the machine after a crash
        // (the store is leaked, so nothing is checkpointed at close).
        copy_dir(dir.path(), copy.path());
        std::mem::forget(store);
    }
    let store = SledStore::open_with(copy.path(), small()).expect("reopen");
    assert_eq!(store.get(b"k/6").expect("get"), Some(b"v195".to_vec()));
    assert_eq!(store.get(b"k/3").expect("get"), None);
    assert_eq!(store.scan_prefix(b"k/").expect("scan").len(), 6);
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            std::fs::create_dir_all(&target).expect("mkdir");
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

#[test]
fn transactions_and_journal_entries_read_back_from_log_chunks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = StoreConfig {
        checkpoint_interval: Duration::ZERO,
        ..small()
    };
    {
        let mut store = SledStore::open_with(dir.path(), config.clone()).expect("open");
        for i in 0..50u64 {
            let mut batch = WriteBatch::default();
            batch.put(
                keys::numbered(keys::TXN, i % 10),
                format!("t{i}").into_bytes(),
            );
            batch.put(
                keys::numbered(keys::JOURNAL, i),
                format!("j{i}").into_bytes(),
            );
            batch.put(b"b/one".to_vec(), format!("b{i}").into_bytes());
            store.commit(batch).expect("commit");
        }
        let mut undo = WriteBatch::default();
        undo.delete(keys::numbered(keys::JOURNAL, 49));
        undo.delete(keys::numbered(keys::TXN, 9));
        store.commit(undo).expect("commit");
        store.checkpoint_now().expect("checkpoint");
        let chunks = store.db.scan_prefix(keys::CHUNK).count();
        assert!(chunks > 1, "several checkpoints wrote chunks: {chunks}");
        assert_eq!(
            store.db.scan_prefix(keys::TXN).count(),
            0,
            "no key per transaction"
        );
    }
    let store = SledStore::open_with(dir.path(), config).expect("reopen");
    let txns = store.scan_prefix(keys::TXN).expect("scan");
    assert_eq!(txns.len(), 9);
    assert_eq!(txns[8], (keys::numbered(keys::TXN, 8), b"t48".to_vec()));
    let journal = store.scan_prefix(keys::JOURNAL).expect("scan");
    assert_eq!(journal.len(), 49);
    assert_eq!(journal[0].1, b"j0".to_vec());
    assert_eq!(
        store.get(&keys::numbered(keys::TXN, 3)).expect("get"),
        Some(b"t43".to_vec())
    );
    assert_eq!(store.get(&keys::numbered(keys::TXN, 9)).expect("get"), None);
    assert_eq!(store.get(b"b/one").expect("get"), Some(b"b49".to_vec()));
    assert_eq!(
        store.scan_prefix(b"").expect("scan").len(),
        9 + 49 + 2,
        "plus m/wal_lsn"
    );
}

#[test]
fn a_failed_write_is_overwritten_by_its_undo_and_the_log_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = tempfile::tempdir().expect("tempdir");
    let config = StoreConfig {
        wal: WalConfig {
            segments: 2,
            segment_bytes: 1 << 20,
        },
        ..small()
    };
    {
        let mut store = SledStore::open_with(dir.path(), config.clone()).expect("open");
        store.commit(put("a", "1")).expect("commit");
        // The batch setting a=2 and b=new is torn half-way and fails…
        let mut failed = put("a", "2");
        failed.put(b"b".to_vec(), b"new".to_vec());
        store.wal.tear_next = Some(30);
        assert!(store.commit(failed).is_err());
        // …the engine writes its undo in its place, and the log goes on.
        let mut undo = put("a", "1");
        undo.delete(b"b".to_vec());
        store.revert(undo).expect("revert");
        store.commit(put("c", "3")).expect("commit");
        assert!(store.refusal().is_none());
        copy_dir(dir.path(), copy.path());
        std::mem::forget(store);
    }
    let store = SledStore::open_with(copy.path(), config).expect("reopen");
    assert_eq!(store.get(b"a").expect("get"), Some(b"1".to_vec()));
    assert_eq!(store.get(b"b").expect("get"), None);
    assert_eq!(store.get(b"c").expect("get"), Some(b"3".to_vec()));
    assert_eq!(
        store.wal.last_lsn(),
        3,
        "the undo took the failed record's lsn"
    );
}

#[test]
fn a_failed_undo_makes_the_store_refuse_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = SledStore::open_with(dir.path(), small()).expect("open");
    store.wal.tear_next = Some(10);
    assert!(store.commit(put("a", "1")).is_err());
    store.wal.tear_next = Some(10);
    assert!(store.revert(put("a", "0")).is_err());
    assert!(store.refusal().is_some());
    assert!(
        store.commit(put("b", "1")).is_err(),
        "nothing is committed after that"
    );
}

/// Sends (batch number, durable?) when told.
struct Told(std::sync::mpsc::Sender<(u32, bool)>, u32);

impl OnDurable for Told {
    fn durable(self: Box<Self>) {
        let _ = self.0.send((self.1, true));
    }
    fn failed(self: Box<Self>, _: StoreError) {
        let _ = self.0.send((self.1, false));
    }
}

#[test]
fn batches_are_told_in_order_once_durable_and_an_empty_one_waits_for_those_before() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let mut store = SledStore::open_with(dir.path(), small()).expect("open");
        for i in 0..30u32 {
            let batch = if i % 3 == 2 {
                WriteBatch::default()
            } else {
                put(&format!("k{i}"), "v")
            };
            let told = Box::new(Told(tx.clone(), i));
            if let Err((e, _)) = store.commit_then(batch, told) {
                panic!("commit {i}: {e}");
            }
        }
        let told: Vec<(u32, bool)> = (0..30)
            .map(|_| rx.recv_timeout(Duration::from_secs(10)).expect("told"))
            .collect();
        assert_eq!(told, (0..30).map(|i| (i, true)).collect::<Vec<_>>());
        // Everything told is durable: the next open finds it.
    }
    let store = SledStore::open_with(dir.path(), small()).expect("reopen");
    for i in (0..30u32).filter(|i| i % 3 != 2) {
        assert_eq!(
            store.get(format!("k{i}").as_bytes()).expect("get"),
            Some(b"v".to_vec()),
            "k{i}"
        );
    }
}

#[test]
fn a_failed_fdatasync_tells_nobody_and_the_store_refuses_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = SledStore::open_with(dir.path(), small()).expect("open");
    let (tx, rx) = std::sync::mpsc::channel();
    let (woken_tx, woken) = std::sync::mpsc::channel();
    store.on_refusal(Box::new(move || {
        let _ = woken_tx.send(());
    }));
    store
        .synced
        .fail_next
        .store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(
        store
            .commit_then(put("a", "1"), Box::new(Told(tx.clone(), 1)))
            .is_ok(),
        "the record is written; its fdatasync fails later"
    );
    let waited = Instant::now();
    while store.refusal().is_none() {
        assert!(waited.elapsed() < Duration::from_secs(10), "no refusal");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(store.refusal().is_some_and(|r| r.contains("fdatasync")));
    assert!(
        woken.recv_timeout(Duration::from_secs(1)).is_ok(),
        "the writer is woken to stop"
    );
    assert!(
        rx.recv_timeout(Duration::from_millis(200)).is_err(),
        "a batch whose fdatasync failed is neither approved nor declined"
    );
    match store.commit_then(put("b", "1"), Box::new(Told(tx, 2))) {
        Ok(()) => panic!("a commit after a failed fdatasync"),
        Err((e, told)) => {
            assert!(e.to_string().contains("fdatasync"), "{e}");
            told.failed(e);
            assert_eq!(rx.recv_timeout(Duration::from_secs(1)), Ok((2, false)));
        }
    }
    assert!(store.commit(put("c", "1")).is_err());
    assert!(store.revert(put("a", "0")).is_err());
}

#[test]
fn after_a_failed_fdatasync_nothing_is_written_to_the_next_segment() {
    // A record in the next segment must never outlive one before it that
    // the failed fdatasync may have lost: the log would have a gap.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = SledStore::open_with(dir.path(), small()).expect("open");
    store
        .synced
        .fail_next
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let (tx, _rx) = std::sync::mpsc::channel();
    assert!(store
        .commit_then(put("a", "1"), Box::new(Told(tx.clone(), 1)))
        .is_ok());
    let first = store.wal.last_lsn();
    let big = "x".repeat(300);
    match store.commit_then(put("b", &big), Box::new(Told(tx, 2))) {
        Ok(()) => panic!("a record written after a failed fdatasync"),
        Err((e, _)) => assert!(e.to_string().contains("fdatasync"), "{e}"),
    }
    assert_eq!(store.wal.last_lsn(), first, "nothing more written");
    drop(store);
    for i in 0..2 {
        let path = dir.path().join("wal").join(format!("{i:04}.wal"));
        let bytes = std::fs::read(&path).expect("segment");
        assert!(
            super::super::wal::scan(&bytes)
                .iter()
                .all(|(lsn, _)| *lsn <= first),
            "segment {i} holds a record after the failed one"
        );
    }
}

#[test]
fn checkpoints_leave_no_blob_files_to_sled() {
    // sled writes pages over 128 KiB to files of their own; the chunk size
    // keeps the pages of a busy checkpoint below that.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = SledStore::open_with(dir.path(), small()).expect("open");
    let record = vec![b'x'; 500];
    let mut batch = WriteBatch::default();
    for i in 0..20_000u64 {
        batch.put(keys::numbered(keys::TXN, i), record.clone());
        batch.put(keys::numbered(keys::JOURNAL, i), record.clone());
    }
    store.commit(batch).expect("commit");
    store.checkpoint_now().expect("checkpoint");
    let blobs = std::fs::read_dir(dir.path().join("sled").join("blobs"))
        .map_or(0, std::iter::Iterator::count);
    assert_eq!(blobs, 0);
    assert_eq!(store.scan_prefix(keys::TXN).expect("scan").len(), 20_000);
}

#[test]
fn a_read_sees_every_commit_and_a_clean_close_leaves_nothing_to_replay() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut store = SledStore::open_with(dir.path(), small()).expect("open");
        store.commit(put("a", "1")).expect("commit");
        assert_eq!(store.get(b"a").expect("get"), Some(b"1".to_vec()));
        store.commit(put("a", "2")).expect("commit");
    }
    let store = SledStore::open_with(dir.path(), small()).expect("reopen");
    assert_eq!(store.db.get(b"a").expect("get").as_deref(), Some(&b"2"[..]));
    let lsn = store.db.get(keys::key(keys::META, WAL_LSN)).expect("get");
    assert_eq!(lsn.as_deref(), Some(&b"2"[..]));
}
