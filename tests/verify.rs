//! `antaca verify`: a store after real ISO 8583 traffic verifies clean, and
//! each kind of tampering is reported with its own message, by id only.

mod common;

use antaca::domain::model::{JournalEntry, Txn};
use antaca::engine::record::{self, Record};
use antaca::store::{keys, SledStore, Store, WriteBatch};
use antaca::tools::verify::{verify, verify_dir, OpenError, Report};
use common::*;
use std::path::Path;
use std::process::Command;

/// Real traffic of every money-moving kind, then a clean stop.
fn store_after_traffic() -> tempfile::TempDir {
    let mut server = TestServer::start("iso87ascii");
    let mut client = server.client();
    let held = auth(&pan("ok"), 10_000, 1);
    assert_eq!(code(&client.call(&held)), "00");
    let captured = auth(&pan("ok"), 5_000, 2);
    assert_eq!(code(&client.call(&captured)), "00");
    let mut completion = request("0220", &pan("ok"), "000000", 5_500, 3);
    completion.set(90, original_data(&captured));
    assert_eq!(code(&client.call(&completion)), "00");
    let reversed = auth(&pan("cr1"), 1_000, 4);
    assert_eq!(code(&client.call(&reversed)), "00");
    let mut reversal = request("0400", &pan("cr1"), "000000", 1_000, 5);
    reversal.set(90, original_data(&reversed));
    assert_eq!(code(&client.call(&reversal)), "00");
    assert_eq!(
        code(&client.call(&request("0200", &pan("dep"), "000000", 2_000, 6))),
        "00"
    );
    assert_eq!(
        code(&client.call(&request("0200", &pan("ok"), "200000", 700, 7))),
        "00",
        "refund"
    );
    // A forced advice past the available funds: allowed, a warning.
    assert_eq!(
        code(&client.call(&request("0120", &pan("poor"), "000000", 2_000, 8))),
        "00"
    );
    // A decline and a balance inquiry move nothing.
    assert_eq!(
        code(&client.call(&auth(&pan("poor"), 100_000, 9))),
        "51",
        "insufficient funds"
    );
    assert_eq!(
        code(&client.call(&request("0100", &pan("ok"), "310000", 0, 10))),
        "00"
    );
    drop(client);
    if let Some(running) = server.running.take() {
        running.stop();
    }
    server.dir
}

fn check(store: &SledStore) -> Report {
    verify(store).expect("verify reads the store")
}

/// Applies `ops` (unflushed), verifies, and puts the old values back.
fn tampered(store: &mut SledStore, ops: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Report {
    let mut undo = WriteBatch::default();
    for (key, _) in ops.iter().rev() {
        match store.get(key).expect("get") {
            Some(old) => undo.put(key.clone(), old),
            None => undo.delete(key.clone()),
        }
    }
    store.revert(WriteBatch { ops }).expect("tamper");
    let report = check(store);
    store.revert(undo).expect("untamper");
    assert!(check(store).is_clean(), "the store is clean again");
    report
}

fn has(report: &Report, needle: &str) -> bool {
    report.errors.iter().any(|e| e.contains(needle))
}

fn json<T: serde::de::DeserializeOwned>(store: &SledStore, key: &[u8]) -> T {
    serde_json::from_slice(&store.get(key).expect("get").expect("record")).expect("json")
}

/// A transaction, journal entry or balance as stored.
fn stored<T: Record>(store: &SledStore, key: &[u8]) -> T {
    record::decode(key, &store.get(key).expect("get").expect("record")).expect("record")
}

fn counter(store: &SledStore, name: &str) -> u64 {
    String::from_utf8(
        store
            .get(&keys::key(keys::META, name))
            .expect("get")
            .expect("counter"),
    )
    .expect("utf8")
    .parse()
    .expect("number")
}

fn no_card_data(text: &str) {
    for card in ["ok", "poor", "cr1", "dep"] {
        assert!(!text.contains(&pan(card)), "a PAN in the report");
    }
}

#[test]
fn a_store_after_real_traffic_verifies_clean_and_each_tampering_is_named() {
    let dir = store_after_traffic();
    let mut store = SledStore::open(dir.path()).expect("open");
    let report = check(&store);
    let text = report.to_string();
    assert!(report.is_clean(), "{text}");
    no_card_data(&text);
    assert!(report.counts.journal_entries >= 8, "{text}");
    assert_eq!(report.counts.open_holds, 2, "{text}");
    assert_eq!(report.warnings.len(), 1, "{text}");
    assert!(
        report.warnings[0].contains("user balance b-poor is below zero")
            && report.warnings[0].contains("(0120)"),
        "{text}"
    );

    // A balance record edited: no longer the journal's projection.
    let key = keys::key(keys::BALANCE, "b-ok");
    let mut balance: antaca::domain::model::Balance = stored(&store, &key);
    balance.available += Decimal::ONE;
    let report = tampered(&mut store, vec![(key, Some(record::encode(&balance)))]);
    assert!(
        has(&report, "balance b-ok: available is") && has(&report, "journal postings sum to"),
        "{report}"
    );

    // A held amount edited: journal and holds both disagree.
    let key = keys::key(keys::BALANCE, "b-ok");
    let mut balance: antaca::domain::model::Balance = stored(&store, &key);
    balance.held -= Decimal::ONE;
    balance.available += Decimal::ONE;
    // Written as JSON, as an earlier version stored balances: read all the same.
    let report = tampered(
        &mut store,
        vec![(key, Some(serde_json::to_vec(&balance).expect("json")))],
    );
    assert!(
        has(&report, "balance b-ok: held is")
            && has(&report, "the AUTHORIZED transactions on it hold"),
        "{report}"
    );

    // A journal entry dropped: a gap, and the balances it posted to disagree.
    let report = tampered(&mut store, vec![(keys::numbered(keys::JOURNAL, 3), None)]);
    assert!(has(&report, "journal entries missing"), "{report}");
    assert!(has(&report, ": 3"), "{report}");

    // An unbalanced entry appended (with the counter moved past it).
    let next = counter(&store, "next_journal");
    let mut entry: JournalEntry = stored(&store, &keys::numbered(keys::JOURNAL, next - 1));
    entry.seq = next;
    entry.txn = None;
    entry.postings.truncate(1);
    let report = tampered(
        &mut store,
        vec![
            (
                keys::numbered(keys::JOURNAL, next),
                Some(record::encode(&entry)),
            ),
            (
                keys::key(keys::META, "next_journal"),
                Some((next + 1).to_string().into_bytes()),
            ),
        ],
    );
    assert!(
        has(&report, &format!("journal entry {next}: postings sum to")),
        "{report}"
    );

    // An entry past the counter.
    let mut balanced: JournalEntry = stored(&store, &keys::numbered(keys::JOURNAL, next - 1));
    balanced.seq = next + 5;
    let report = tampered(
        &mut store,
        vec![(
            keys::numbered(keys::JOURNAL, next + 5),
            Some(record::encode(&balanced)),
        )],
    );
    assert!(has(&report, "journal entries outside"), "{report}");

    // Two transactions with one idempotency key.
    let next_txn = counter(&store, "next_txn");
    let mut copy: Txn = stored(&store, &keys::numbered(keys::TXN, 1));
    copy.id = next_txn;
    let report = tampered(
        &mut store,
        vec![
            (
                keys::numbered(keys::TXN, next_txn),
                Some(record::encode(&copy)),
            ),
            (
                keys::key(keys::META, "next_txn"),
                Some((next_txn + 1).to_string().into_bytes()),
            ),
        ],
    );
    assert!(
        has(
            &report,
            &format!("transactions 1 and {next_txn}: the same idempotency key")
        ),
        "{report}"
    );

    // A transaction id at or past the counter.
    let report = tampered(
        &mut store,
        vec![(
            keys::key(keys::META, "next_txn"),
            Some(next_txn.saturating_sub(1).to_string().into_bytes()),
        )],
    );
    assert!(has(&report, "id not below m/next_txn"), "{report}");

    // The transaction record of an approved hold lost: the journal names a missing transaction.
    let report = tampered(&mut store, vec![(keys::numbered(keys::TXN, 1), None)]);
    assert!(
        has(&report, "its transaction 1 does not exist")
            && has(&report, "the AUTHORIZED transactions on it hold"),
        "{report}"
    );

    // Every journal entry of an approved hold lost: money moved with no record of it.
    let entries: Vec<u64> = store
        .scan_prefix(keys::JOURNAL)
        .expect("scan")
        .into_iter()
        .filter_map(|(k, v)| record::decode::<JournalEntry>(&k, &v).ok())
        .filter(|e| e.txn == Some(1))
        .map(|e| e.seq)
        .collect();
    assert!(!entries.is_empty());
    let report = tampered(
        &mut store,
        entries
            .iter()
            .map(|s| (keys::numbered(keys::JOURNAL, *s), None))
            .collect(),
    );
    assert!(
        has(&report, "transaction 1: approved and Authorized with money moved, but no journal entry names it"),
        "{report}"
    );

    // A card pointing at a missing balance, and two cards sharing a PAN hash.
    let key = keys::key(keys::CARD, "cr1");
    let mut card: antaca::domain::model::Card = json(&store, &key);
    let ok: antaca::domain::model::Card = json(&store, &keys::key(keys::CARD, "ok"));
    card.balance = "b-gone".into();
    card.pan_hash = ok.pan_hash.clone();
    let report = tampered(
        &mut store,
        vec![(key, Some(serde_json::to_vec(&card).expect("json")))],
    );
    assert!(
        has(&report, "card cr1: its balance b-gone does not exist"),
        "{report}"
    );
    assert!(
        has(&report, "cards cr1 and ok: the same PAN hash")
            || has(&report, "cards ok and cr1: the same PAN hash"),
        "{report}"
    );
    no_card_data(&report.to_string());

    // An unreadable record is named by its key, its content never shown.
    let report = tampered(
        &mut store,
        vec![(keys::key(keys::CARD, "ok"), Some(pan("ok").into_bytes()))],
    );
    assert!(has(&report, "record c/ok is unreadable"), "{report}");
    no_card_data(&report.to_string());
}

fn antaca(data: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_antaca"))
        .arg("verify")
        .arg("--data")
        .arg(data)
        .output()
        .expect("run antaca verify")
}

#[test]
fn the_command_exits_0_clean_1_inconsistent_2_when_it_cannot_open() {
    let dir = store_after_traffic();
    let out = antaca(dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("OK: the store is consistent"), "{stdout}");
    no_card_data(&stdout);

    {
        let mut store = SledStore::open(dir.path()).expect("open");
        let mut batch = WriteBatch::default();
        batch.delete(keys::numbered(keys::JOURNAL, 2));
        store.commit(batch).expect("commit");
    }
    let out = antaca(dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("journal entries missing"), "{stdout}");

    let empty = tempfile::tempdir().expect("tempdir");
    let out = antaca(&empty.path().join("nothing-here"));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no store"));
    assert!(
        !empty.path().join("nothing-here").exists(),
        "verify creates no store"
    );
}

#[test]
fn a_running_server_holds_the_store_and_verify_says_so() {
    let server = TestServer::start("iso87ascii");
    match verify_dir(server.dir.path()) {
        Err(OpenError::InUse(_)) => {}
        Err(e) => panic!("expected in use, got {e}"),
        Ok(report) => panic!("opened a store in use: {report}"),
    }
    let out = antaca(server.dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("stop the server first"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
