//! Tests of the store: commit, replay of the write-ahead log, torn and
//! stale records, failures of the disk, reads through the overlay, the
//! migration of chunked transactions; each on both backends where it
//! applies (`on_each_backend!` at the end makes a `sled` and a `fjall` test
//! of each).

use super::backend::{Reader, WAL_LSN};
use super::*;
use crate::store::keys;

fn small(backend: Backend) -> StoreConfig {
    StoreConfig {
        wal: WalConfig {
            segments: 2,
            segment_bytes: 256,
        },
        checkpoint_interval: Duration::from_hours(1),
        backend: Some(backend),
        cache_bytes: 16 << 20,
    }
}

/// sled's own keys under `prefix` (log chunks are sled's only).
fn sled_keys(store: &DiskStore, prefix: &[u8]) -> usize {
    match &store.reader {
        Reader::Sled(db) => db.scan_prefix(prefix).count(),
        Reader::Fjall(_) => panic!("a sled store"),
    }
}

fn put(key: &str, value: &str) -> WriteBatch {
    let mut batch = WriteBatch::default();
    batch.put(key.as_bytes().to_vec(), value.as_bytes().to_vec());
    batch
}

fn commits_survive_a_crash_across_many_segment_laps(backend: Backend) {
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = tempfile::tempdir().expect("tempdir");
    {
        let mut store = DiskStore::open_with(dir.path(), small(backend)).expect("open");
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
        assert_ne!(store.backend_get(b"k/3").expect("get"), None);
        // A copy of the directory stands for the machine after a crash
        // (the store is leaked, so nothing is checkpointed at close).
        copy_dir(dir.path(), copy.path());
        std::mem::forget(store);
    }
    let store = DiskStore::open_with(copy.path(), small(backend)).expect("reopen");
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

fn transactions_are_keys_and_journal_entries_read_back_from_log_chunks(backend: Backend) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = StoreConfig {
        checkpoint_interval: Duration::ZERO,
        ..small(backend)
    };
    {
        let mut store = DiskStore::open_with(dir.path(), config.clone()).expect("open");
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
        if backend == Backend::Sled {
            let chunks = sled_keys(&store, keys::CHUNK);
            assert!(chunks > 1, "several checkpoints wrote chunks: {chunks}");
            assert_eq!(
                sled_keys(&store, keys::TXN),
                9,
                "a key per transaction, none per journal entry"
            );
            assert_eq!(sled_keys(&store, keys::JOURNAL), 0);
        }
    }
    let store = DiskStore::open_with(dir.path(), config).expect("reopen");
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
        9 + 49 + 2 + usize::from(backend == Backend::Sled),
        "plus m/wal_lsn (and sled's m/store_layout)"
    );
}

fn a_failed_write_is_overwritten_by_its_undo_and_the_log_goes_on(backend: Backend) {
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = tempfile::tempdir().expect("tempdir");
    let config = StoreConfig {
        wal: WalConfig {
            segments: 2,
            segment_bytes: 1 << 20,
        },
        ..small(backend)
    };
    {
        let mut store = DiskStore::open_with(dir.path(), config.clone()).expect("open");
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
    let store = DiskStore::open_with(copy.path(), config).expect("reopen");
    assert_eq!(store.get(b"a").expect("get"), Some(b"1".to_vec()));
    assert_eq!(store.get(b"b").expect("get"), None);
    assert_eq!(store.get(b"c").expect("get"), Some(b"3".to_vec()));
    assert_eq!(
        store.wal.last_lsn(),
        3,
        "the undo took the failed record's lsn"
    );
}

fn a_failed_undo_makes_the_store_refuse_commits(backend: Backend) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = DiskStore::open_with(dir.path(), small(backend)).expect("open");
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

fn batches_are_told_in_order_once_durable_and_an_empty_one_waits_for_those_before(
    backend: Backend,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let mut store = DiskStore::open_with(dir.path(), small(backend)).expect("open");
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
    let store = DiskStore::open_with(dir.path(), small(backend)).expect("reopen");
    for i in (0..30u32).filter(|i| i % 3 != 2) {
        assert_eq!(
            store.get(format!("k{i}").as_bytes()).expect("get"),
            Some(b"v".to_vec()),
            "k{i}"
        );
    }
}

fn a_failed_fdatasync_tells_nobody_and_the_store_refuses_commits(backend: Backend) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = DiskStore::open_with(dir.path(), small(backend)).expect("open");
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

fn after_a_failed_fdatasync_nothing_is_written_to_the_next_segment(backend: Backend) {
    // A record in the next segment must never outlive one before it that
    // the failed fdatasync may have lost: the log would have a gap.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = DiskStore::open_with(dir.path(), small(backend)).expect("open");
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
    let backend = Backend::Sled;
    // sled writes pages over 128 KiB to files of their own; the chunk size
    // keeps the pages of a busy checkpoint below that.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = DiskStore::open_with(dir.path(), small(backend)).expect("open");
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

fn a_read_sees_every_commit_and_a_clean_close_leaves_nothing_to_replay(backend: Backend) {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut store = DiskStore::open_with(dir.path(), small(backend)).expect("open");
        store.commit(put("a", "1")).expect("commit");
        assert_eq!(store.get(b"a").expect("get"), Some(b"1".to_vec()));
        store.commit(put("a", "2")).expect("commit");
    }
    let store = DiskStore::open_with(dir.path(), small(backend)).expect("reopen");
    assert_eq!(store.backend_get(b"a").expect("get"), Some(b"2".to_vec()));
    let lsn = store
        .backend_get(&keys::key(keys::META, WAL_LSN))
        .expect("get");
    assert_eq!(lsn, Some(b"2".to_vec()));
}

/// A config whose checkpoints happen only when a test asks for one.
fn manual(backend: Backend) -> StoreConfig {
    StoreConfig {
        wal: WalConfig {
            segments: 2,
            segment_bytes: 1 << 20,
        },
        ..small(backend)
    }
}

fn text(pairs: &[Pair]) -> Vec<String> {
    pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                String::from_utf8_lossy(k),
                String::from_utf8_lossy(v)
            )
        })
        .collect()
}

fn reads_see_uncheckpointed_writes_and_deletes_and_the_overlay_empties_at_a_checkpoint(
    backend: Backend,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = DiskStore::open_with(dir.path(), manual(backend)).expect("open");
    let mut batch = WriteBatch::default();
    for key in ["h/1", "h/2", "h/3", "k/a"] {
        batch.put(key.as_bytes().to_vec(), b"old".to_vec());
    }
    store.commit(batch).expect("commit");
    store.checkpoint_now().expect("checkpoint");
    assert_eq!(store.overlay.len(), 0, "a checkpoint retires what it wrote");

    let mut batch = put("h/2", "new");
    batch.delete(b"h/3".to_vec());
    batch.put(b"h/4".to_vec(), b"new".to_vec());
    batch.delete(b"k/a".to_vec());
    store.commit(batch).expect("commit");
    // Not in the backend yet, seen all the same.
    assert_eq!(store.backend_get(b"h/4").expect("get"), None);
    assert_eq!(store.get(b"h/4").expect("get"), Some(b"new".to_vec()));
    assert_eq!(store.get(b"h/2").expect("get"), Some(b"new".to_vec()));
    assert_eq!(store.get(b"k/a").expect("get"), None, "a delete hides");
    assert_eq!(store.get(b"h/1").expect("get"), Some(b"old".to_vec()));
    let seen = |store: &DiskStore| {
        (
            text(&store.range(b"h/", b"h0", false, 10).expect("range")),
            text(&store.range(b"h/", b"h0", true, 2).expect("range")),
            text(&store.scan_prefix(b"h/").expect("scan")),
        )
    };
    let before = seen(&store);
    assert_eq!(before.0, ["h/1=old", "h/2=new", "h/4=new"]);
    assert_eq!(before.1, ["h/4=new", "h/2=new"]);
    assert_eq!(before.2, before.0);
    assert_eq!(store.overlay.len(), 4);

    store.checkpoint_now().expect("checkpoint");
    assert_eq!(store.overlay.len(), 0);
    assert_eq!(
        store.backend_get(b"h/4").expect("get"),
        Some(b"new".to_vec())
    );
    assert_eq!(store.backend_get(b"k/a").expect("get"), None);
    assert_eq!(seen(&store), before, "the same reads from the backend");
}

/// A small deterministic generator (no dependency on a seeded RNG's stability).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

fn ranges_agree_with_a_model_across_overlay_and_backend(backend: Backend) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = DiskStore::open_with(dir.path(), manual(backend)).expect("open");
    let mut model: std::collections::BTreeMap<Vec<u8>, Vec<u8>> = Default::default();
    let mut rng = Lcg(7);
    let key = |n: u64| format!("hc/{:02}/{n:020}", n % 3).into_bytes();
    for round in 0..60u64 {
        let mut batch = WriteBatch::default();
        for _ in 0..=rng.below(6) {
            let k = key(rng.below(40));
            if rng.below(3) == 0 {
                model.remove(&k);
                batch.delete(k);
            } else {
                let v = format!("v{round}").into_bytes();
                model.insert(k.clone(), v.clone());
                batch.put(k, v);
            }
        }
        store.commit(batch).expect("commit");
        if rng.below(5) == 0 {
            store.checkpoint_now().expect("checkpoint");
        }
        for _ in 0..4 {
            let (a, b) = (key(rng.below(45)), key(rng.below(45)));
            let (start, end) = if a <= b { (a, b) } else { (b, a) };
            let (start, end) = if rng.below(4) == 0 {
                (b"hc/".to_vec(), b"hd".to_vec())
            } else {
                (start, end)
            };
            let reverse = rng.below(2) == 0;
            let limit = [1, 2, 5, usize::MAX][rng.below(4) as usize];
            let range = model.range(start.clone()..end.clone());
            let expected: Vec<Pair> = if reverse {
                range
                    .rev()
                    .take(limit)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            } else {
                range
                    .take(limit)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            };
            let got = store.range(&start, &end, reverse, limit).expect("range");
            assert_eq!(
                text(&got),
                text(&expected),
                "round {round}: {}..{} reverse {reverse} limit {limit}",
                String::from_utf8_lossy(&start),
                String::from_utf8_lossy(&end)
            );
        }
    }
    // And the same after a restart (the log replayed) and a checkpoint.
    drop(store);
    let store = DiskStore::open_with(dir.path(), manual(backend)).expect("reopen");
    let all: Vec<Pair> = model.into_iter().collect();
    assert_eq!(text(&store.scan_prefix(b"hc/").expect("scan")), text(&all));
}

fn a_revert_is_seen_at_once(backend: Backend) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = DiskStore::open_with(dir.path(), manual(backend)).expect("open");
    store.commit(put("b/one", "1")).expect("commit");
    store.checkpoint_now().expect("checkpoint");
    // A torn write reaches neither the log's readers nor the overlay…
    store.wal.tear_next = Some(30);
    assert!(store.commit(put("b/one", "2")).is_err());
    assert_eq!(store.get(b"b/one").expect("get"), Some(b"1".to_vec()));
    store.revert(put("b/one", "1")).expect("revert");
    // …and a batch written, then undone, reads as undone before any checkpoint.
    store
        .commit_then(put("b/one", "3"), Box::new(super::Nobody))
        .map_err(|(e, _)| e)
        .expect("commit");
    assert_eq!(store.get(b"b/one").expect("get"), Some(b"3".to_vec()));
    let mut undo = put("b/one", "1");
    undo.delete(b"b/two".to_vec());
    store.revert(undo).expect("revert");
    assert_eq!(store.get(b"b/one").expect("get"), Some(b"1".to_vec()));
    assert_eq!(
        text(&store.range(b"b/", b"b0", false, 10).expect("range")),
        ["b/one=1"]
    );
}

fn a_directory_of_the_other_backend_is_refused(backend: Backend) {
    let other = match backend {
        Backend::Sled => Backend::Fjall,
        Backend::Fjall => Backend::Sled,
    };
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut store = DiskStore::open_with(dir.path(), small(backend)).expect("open");
        store.commit(put("k/a", "1")).expect("commit");
    }
    match DiskStore::open_with(dir.path(), small(other)) {
        Ok(_) => panic!("a {backend} directory opened as {other}"),
        Err(e) => {
            assert!(
                matches!(e, StoreError::WrongBackend { found, asked, .. } if found == backend && asked == other),
                "{e:?}"
            );
            let shown = e.to_string();
            assert!(shown.contains(&format!("--store {backend}")), "{shown}");
        }
    }
    assert!(
        !dir.path().join(other.folder()).exists(),
        "nothing of the other backend was created"
    );
    // Without a backend the directory says which.
    let auto = StoreConfig {
        backend: None,
        ..small(other)
    };
    assert_eq!(
        DiskStore::choose_backend(dir.path(), &auto).expect("choose"),
        backend
    );
    let store = DiskStore::open_with(dir.path(), auto).expect("open");
    assert_eq!(store.backend(), backend);
    assert_eq!(store.get(b"k/a").expect("get"), Some(b"1".to_vec()));
}

/// An older sled store: transactions (and journal entries) only in log
/// chunks, one transaction overwritten and one deleted by a later chunk,
/// one older transaction as a plain key under them, and no layout mark.
fn old_sled_store(dir: &Path) {
    {
        let mut store = DiskStore::open_with(dir, manual(Backend::Sled)).expect("open");
        store.commit(put("b/one", "10")).expect("commit");
    }
    let mut sled = sled_target::SledTarget::open(&dir.join("sled"), 16 << 20).expect("sled");
    let db = sled.db.clone();
    let txn = |n: u64| keys::numbered(keys::TXN, n);
    let journal = |n: u64| keys::numbered(keys::JOURNAL, n);
    let value = |s: &str| Some(s.as_bytes().to_vec());
    db.insert(txn(0), b"t0-plain".to_vec()).expect("insert");
    migrate::old_chunk(
        &db,
        1,
        0,
        &[
            (journal(1), value("j1")),
            (txn(0), value("t0")),
            (txn(1), value("t1")),
        ],
    )
    .expect("chunk");
    migrate::old_chunk(&db, 1, 1, &[(txn(2), value("t2"))]).expect("chunk");
    migrate::old_chunk(
        &db,
        2,
        0,
        &[
            (journal(2), value("j2")),
            (txn(1), value("t1-again")),
            (txn(2), None),
        ],
    )
    .expect("chunk");
    migrate::old_chunk(&db, 3, 0, &[(txn(3), value("t3"))]).expect("chunk");
    migrate::forget_layout(&db).expect("forget");
    sled.flush().expect("flush");
}

/// What the chunks of the sled store in `dir` hold: (t/ writes, j/ writes).
fn chunk_contents(dir: &Path) -> (usize, usize) {
    let sled = sled_target::SledTarget::open(&dir.join("sled"), 16 << 20).expect("sled");
    let mut counts = (0, 0);
    for item in sled.db.scan_prefix(keys::CHUNK) {
        let (_, chunk) = item.expect("chunk");
        for (key, _) in crate::store::wal::decode_ops(&chunk).expect("decode") {
            if key.starts_with(keys::TXN) {
                counts.0 += 1;
            } else if key.starts_with(keys::JOURNAL) {
                counts.1 += 1;
            }
        }
    }
    counts
}

fn assert_migrated(dir: &Path) {
    let store = DiskStore::open_with(dir, manual(Backend::Sled)).expect("open");
    let txn = |n: u64| keys::numbered(keys::TXN, n);
    assert_eq!(store.get(&txn(0)).expect("get"), Some(b"t0".to_vec()));
    assert_eq!(store.get(&txn(1)).expect("get"), Some(b"t1-again".to_vec()));
    assert_eq!(
        store.get(&txn(2)).expect("get"),
        None,
        "deleted by a later chunk"
    );
    assert_eq!(
        store.backend_get(&txn(3)).expect("get"),
        Some(b"t3".to_vec())
    );
    let txns = store.range(&txn(0), &txn(9), true, 2).expect("range");
    assert_eq!(text(&txns)[0], "t/00000000000000000003=t3");
    assert_eq!(store.scan_prefix(keys::TXN).expect("scan").len(), 3);
    assert_eq!(store.scan_prefix(keys::JOURNAL).expect("scan").len(), 2);
    assert_eq!(store.get(b"b/one").expect("get"), Some(b"10".to_vec()));
    drop(store);
    assert_eq!(
        chunk_contents(dir),
        (0, 2),
        "the chunks keep the journal only"
    );
}

#[test]
fn an_older_sled_store_has_its_chunked_transactions_migrated_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    old_sled_store(dir.path());
    assert_eq!(chunk_contents(dir.path()), (6, 2));
    assert_migrated(dir.path());
    // Idempotent: the next open finds the layout mark and changes nothing.
    let mut sled = sled_target::SledTarget::open(&dir.path().join("sled"), 16 << 20).expect("sled");
    assert_eq!(
        sled.migrate(migrate::STEP_BYTES, None).expect("migrate"),
        migrate::Migrated::default()
    );
    drop(sled);
    assert_migrated(dir.path());
}

#[test]
fn a_migration_cut_short_by_a_crash_goes_on_at_the_next_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    old_sled_store(dir.path());
    {
        // One chunk per batch, stopped after the first two (as a crash would).
        let mut sled =
            sled_target::SledTarget::open(&dir.path().join("sled"), 16 << 20).expect("sled");
        let done = sled.migrate(1, Some(2)).expect("migrate");
        assert_eq!(done.chunks, 2);
    }
    let (transactions, journal) = chunk_contents(dir.path());
    assert!(
        transactions > 0 && transactions < 6,
        "half-way: {transactions}"
    );
    assert_eq!(journal, 2);
    assert_migrated(dir.path());
}

/// Makes a `sled` and a `fjall` test of each function that takes a backend.
macro_rules! on_each_backend {
    ($($name:ident),* $(,)?) => {
        $(mod $name {
            #[test]
            fn sled() {
                super::$name(super::Backend::Sled);
            }
            #[test]
            fn fjall() {
                super::$name(super::Backend::Fjall);
            }
        })*
    };
}

on_each_backend!(
    commits_survive_a_crash_across_many_segment_laps,
    transactions_are_keys_and_journal_entries_read_back_from_log_chunks,
    a_failed_write_is_overwritten_by_its_undo_and_the_log_goes_on,
    a_failed_undo_makes_the_store_refuse_commits,
    batches_are_told_in_order_once_durable_and_an_empty_one_waits_for_those_before,
    a_failed_fdatasync_tells_nobody_and_the_store_refuses_commits,
    after_a_failed_fdatasync_nothing_is_written_to_the_next_segment,
    a_read_sees_every_commit_and_a_clean_close_leaves_nothing_to_replay,
    reads_see_uncheckpointed_writes_and_deletes_and_the_overlay_empties_at_a_checkpoint,
    ranges_agree_with_a_model_across_overlay_and_backend,
    a_revert_is_seen_at_once,
    a_directory_of_the_other_backend_is_refused,
);
