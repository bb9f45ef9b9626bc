//! The writer without sockets: hold expiry with a given clock, a failing
//! disk, journal invariants. Requests are built with the real protocol layer.

mod common;

use antaca::domain::outcome::Outcome;
use antaca::engine::state::{Changes, State};
use antaca::engine::{index, Engine, EngineConfig};
use antaca::iso8583::Message;
use antaca::manage::portfolio::{self, Portfolio};
use antaca::protocol::{self, AuthRequest, Profile};
use antaca::security::secrets::CardSecrets;
use antaca::store::{keys, MemoryStore, Store};
use common::{fixture, pan, request};
use rust_decimal::Decimal;
use std::time::Duration;

fn secrets() -> CardSecrets {
    CardSecrets::from_key([7; 32])
}

fn engine_over(store: MemoryStore) -> Engine<MemoryStore> {
    let config = EngineConfig {
        hold_expiry: Duration::from_hours(1),
        ..EngineConfig::default()
    };
    Engine::open(store, config).expect("open")
}

fn engine(store: MemoryStore) -> Engine<MemoryStore> {
    let mut engine = engine_over(store);
    let portfolio = Portfolio::read(&fixture("test-portfolio.json")).expect("portfolio");
    portfolio::import(&mut engine, &portfolio, &secrets(), 0).expect("import");
    engine
}

fn parse(msg: &Message) -> AuthRequest {
    let profile = Profile {
        dialect: antaca::domain::outcome::Dialect::Iso87,
    };
    protocol::parse::parse(msg, profile, &secrets()).expect("parse")
}

fn process(engine: &mut Engine<MemoryStore>, msg: &Message, now: u64) -> (Outcome, Changes) {
    let mut changes = Changes::default();
    let response = engine.process(&mut changes, &parse(msg), now);
    (response.outcome, changes)
}

fn available(state: &State, id: &str) -> (Decimal, Decimal) {
    let b = &state.balances[id];
    (b.available, b.held)
}

fn now() -> u64 {
    antaca::engine::now_ms()
}

#[test]
fn a_reversal_never_moves_the_money_of_another_card() {
    // An acquirer that reuses STAN, date-time and acquirer id on another
    // terminal gives two authorizations one field-90 key; the first keeps it.
    let mut engine = engine(MemoryStore::new());
    let first = request("0100", &pan("ok"), "000000", 1_000, 7);
    let mut second = first.clone();
    second.set(2, pan("poor"));
    second.set(4, format!("{:012}", 100));
    second.set(41, "TERM0002".to_string());
    assert_eq!(process(&mut engine, &first, now()).0, Outcome::Approved);
    assert_eq!(process(&mut engine, &second, now()).0, Outcome::Approved);
    let ok = available(engine.state(), "b-ok");
    let poor = available(engine.state(), "b-poor");
    assert!(!ok.1.is_zero() && !poor.1.is_zero(), "both hold");

    // A completion on card "poor" naming the second: the key finds the
    // first, of card "ok", whose hold it must not capture; it captures its
    // own original's, found by the fields it names and its terminal.
    let mut completion = request("0220", &pan("poor"), "000000", 100, 9);
    completion.set(41, "TERM0002".to_string());
    completion.set(90, common::original_data(&second));
    assert_eq!(
        process(&mut engine, &completion, now()).0,
        Outcome::Approved
    );
    assert_eq!(available(engine.state(), "b-ok"), ok, "card ok untouched");
    assert_eq!(
        available(engine.state(), "b-poor"),
        (poor.0, Decimal::ZERO),
        "poor's hold became the charge, not a second debit"
    );

    // A reversal of that completion on card "poor" credits poor, not ok.
    let mut reversal = request("0400", &pan("poor"), "000000", 100, 8);
    reversal.set(41, "TERM0002".to_string());
    reversal.set(90, common::original_data(&second));
    assert_eq!(process(&mut engine, &reversal, now()).0, Outcome::Approved);
    assert_eq!(available(engine.state(), "b-ok"), ok, "card ok untouched");
    assert_eq!(
        available(engine.state(), "b-poor"),
        (poor.0 + poor.1, Decimal::ZERO),
        "poor's charge reversed"
    );

    // The same reversal on the right card does release it.
    let mut reversal = request("0400", &pan("ok"), "000000", 1_000, 10);
    reversal.set(90, common::original_data(&first));
    assert_eq!(process(&mut engine, &reversal, now()).0, Outcome::Approved);
    assert!(available(engine.state(), "b-ok").1.is_zero(), "released");
}

#[test]
fn holds_expire_after_the_configured_time() {
    let mut engine = engine(MemoryStore::new());
    let t0 = now();
    let (outcome, _) = process(
        &mut engine,
        &request("0100", &pan("ok"), "000000", 2_000, 1),
        t0,
    );
    assert_eq!(outcome, Outcome::Approved);
    assert_eq!(
        available(engine.state(), "b-ok"),
        ("980.00".parse().expect("d"), "20.00".parse().expect("d"))
    );
    // Not yet.
    let mut changes = Changes::default();
    engine.expire_holds(&mut changes, t0 + 3_599_999);
    assert!(changes.is_empty());
    // Now.
    engine.expire_holds(&mut changes, t0 + 3_600_000);
    assert!(!changes.is_empty());
    assert_eq!(
        available(engine.state(), "b-ok"),
        ("1000.00".parse().expect("d"), "0.00".parse().expect("d"))
    );
    // A completion after expiry is still posted, as a forced charge.
    let mut completion = request("0220", &pan("ok"), "000000", 2_000, 1);
    completion.set(
        90,
        common::original_data(&request("0100", &pan("ok"), "000000", 2_000, 1)),
    );
    let (outcome, _) = process(&mut engine, &completion, t0 + 3_700_000);
    assert_eq!(outcome, Outcome::Approved);
    assert_eq!(
        available(engine.state(), "b-ok"),
        ("980.00".parse().expect("d"), "0.00".parse().expect("d"))
    );
}

#[tokio::test]
async fn a_store_that_cannot_tell_what_it_holds_gets_no_answer_and_stops_the_writer() {
    let store = MemoryStore::new();
    let (handle, writer) = engine(store.clone()).spawn().expect("spawn");
    store.set_fail_commits(true);
    store.set_refusal(Some("the undo failed too"));
    // Whether the batch is on disk is unknown: no "declined" may contradict a
    // later replay, so the request is not answered at all.
    let unanswered = handle
        .request(parse(&request("0100", &pan("ok"), "000000", 1_000, 1)))
        .await;
    assert!(unanswered.is_err(), "no answer: {unanswered:?}");
    writer.join().expect("the writer stopped cleanly");
    let later = handle
        .request(parse(&request("0100", &pan("ok"), "000000", 1_000, 2)))
        .await;
    assert!(later.is_err(), "the writer takes nothing more");
}

#[tokio::test]
async fn a_failing_disk_answers_system_malfunction_and_changes_nothing() {
    let store = MemoryStore::new();
    let engine = engine(store.clone());
    let (handle, writer) = engine.spawn().expect("spawn");
    let before = handle
        .inspect(|s| (s.balances["b-ok"].available, s.next_journal))
        .await
        .expect("inspect");

    store.set_fail_commits(true);
    let response = handle
        .request(parse(&request("0100", &pan("ok"), "000000", 1_000, 1)))
        .await
        .expect("answer");
    assert_eq!(response.outcome, Outcome::SystemMalfunction);
    assert!(response.approval_code.is_none());
    let during = handle
        .inspect(|s| (s.balances["b-ok"].available, s.next_journal))
        .await
        .expect("inspect");
    assert_eq!(during, before, "a failed commit is undone in memory");
    // The store applied the batch before its flush failed (as sled does); the
    // engine put the old records back there too.
    let stored = store
        .get(&keys::key(keys::BALANCE, "b-ok"))
        .expect("get")
        .expect("balance");
    let balance: antaca::domain::model::Balance =
        antaca::engine::record::decode(b"b/b-ok", &stored).expect("balance");
    assert_eq!(balance.available, "1000.00".parse::<Decimal>().expect("d"));
    assert!(
        store.scan_prefix(keys::TXN).expect("scan").is_empty(),
        "no transaction record left behind"
    );

    store.set_fail_commits(false);
    let response = handle
        .request(parse(&request("0100", &pan("ok"), "000000", 1_000, 1)))
        .await
        .expect("answer");
    assert_eq!(
        response.outcome,
        Outcome::Approved,
        "the same request succeeds once the disk is back"
    );
    drop(handle);
    writer.join().expect("writer");
    let stored = store
        .get(&keys::key(keys::BALANCE, "b-ok"))
        .expect("get")
        .expect("balance");
    let balance: antaca::domain::model::Balance =
        antaca::engine::record::decode(b"b/b-ok", &stored).expect("balance");
    assert_eq!(balance.available, "990.00".parse::<Decimal>().expect("d"));
}

#[test]
fn every_journal_entry_balances_and_balances_are_their_journal() {
    let store = MemoryStore::new();
    let mut engine = engine(store.clone());
    let t = now();
    let original = request("0100", &pan("cr1"), "000000", 3_000, 1);
    let messages = vec![
        original.clone(),
        request("0200", &pan("ok"), "000000", 1_234, 2),
        request("0200", &pan("ok"), "200000", 234, 3),
        request("0120", &pan("poor"), "000000", 9_900, 4),
        {
            let mut c = request("0220", &pan("cr1"), "000000", 2_500, 5);
            c.set(90, common::original_data(&original));
            c
        },
        request("0100", &pan("dep"), "000000", 1_000, 6),
    ];
    for m in &messages {
        let mut changes = Changes::default();
        let outcome = engine.process(&mut changes, &parse(m), t).outcome;
        assert_eq!(outcome, Outcome::Approved);
        // Commit through the public path so the store sees it.
        let batch = changes.to_batch(engine.state());
        let mut s = store.clone();
        s.commit(batch).expect("commit");
    }
    // Re-project every balance from the stored journal.
    let mut projected: std::collections::HashMap<String, (Decimal, Decimal)> = Default::default();
    for (k, v) in store.scan_prefix(keys::JOURNAL).expect("scan") {
        let entry: antaca::domain::model::JournalEntry =
            antaca::engine::record::decode(&k, &v).expect("entry");
        assert!(entry.balances(), "entry {} does not balance", entry.seq);
        for p in entry.postings {
            match p.account {
                antaca::domain::model::Account::Available(b) => {
                    projected.entry(b).or_default().0 += p.amount;
                }
                antaca::domain::model::Account::Held(b) => {
                    projected.entry(b).or_default().1 += p.amount;
                }
                _ => {}
            }
        }
    }
    for (id, balance) in &engine.state().balances {
        let (a, h) = projected.get(id).copied().unwrap_or_default();
        assert_eq!(
            (balance.available, balance.held),
            (a, h),
            "balance {id} equals its journal"
        );
    }
    // partner credit: both legs held, then captured at 25.00.
    assert_eq!(
        available(engine.state(), "pc"),
        ("75.00".parse().expect("d"), Decimal::ZERO)
    );
    assert_eq!(
        available(engine.state(), "b-cr1"),
        ("25.00".parse().expect("d"), Decimal::ZERO)
    );
}

#[test]
fn import_refuses_bad_records_and_imports_nothing() {
    let base = std::fs::read_to_string(fixture("test-portfolio.json")).expect("read");
    let cases = [
        ("\"5355220000000012\"", "\"5355220000000013\"", "Luhn"),
        (
            "\"funding\": \"user_balance\"",
            "\"funding\": \"user_balance\", \"colour\": \"red\"",
            "unknown field",
        ),
        (
            "\"balance\": \"b-poor\"",
            "\"balance\": \"b-nowhere\"",
            "does not exist",
        ),
        (
            "\"amount\": \"5.00\"",
            "\"amount\": \"5.001\"",
            "digits after the decimal point",
        ),
        (
            "\"amount\": \"5.00\"",
            "\"amount\": \"-5.00\"",
            "not a plain",
        ),
        ("\"lock\": 7", "\"lock\": 9", "lock must be"),
    ];
    for (from, to, expect) in cases {
        assert!(base.contains(from), "fixture has {from}");
        let text = base.replacen(from, to, 1);
        let store = MemoryStore::new();
        let mut engine = Engine::open(store.clone(), EngineConfig::default()).expect("open");
        let error = Portfolio::parse(&text)
            .and_then(|p| portfolio::import(&mut engine, &p, &secrets(), 0))
            .expect_err(expect);
        let message = error.to_string();
        assert!(
            message.contains(expect),
            "{message:?} should mention {expect:?}"
        );
        assert!(
            !message.contains("535522"),
            "errors never carry a PAN: {message}"
        );
        assert!(
            store.scan_prefix(b"").expect("scan").is_empty(),
            "nothing imported"
        );
    }
    // A store that already holds a portfolio refuses another.
    let store = MemoryStore::new();
    let mut engine = engine(store);
    let p = Portfolio::parse(&base).expect("parse");
    let error = portfolio::import(&mut engine, &p, &secrets(), 0).expect_err("non-empty");
    assert!(error.to_string().contains("already holds a portfolio"));
}

#[test]
fn no_clear_pan_cvv2_or_pin_reaches_the_store() {
    let store = MemoryStore::new();
    let _engine = engine(store.clone());
    let text = std::fs::read_to_string(fixture("test-portfolio.json")).expect("read");
    let portfolio: serde_json::Value = serde_json::from_str(&text).expect("json");
    let everything: Vec<u8> = store
        .scan_prefix(b"")
        .expect("scan")
        .into_iter()
        .flat_map(|(k, v)| k.into_iter().chain(v))
        .collect();
    let haystack = String::from_utf8_lossy(&everything);
    for card in portfolio["cards"].as_array().expect("cards") {
        let pan = card["pan"].as_str().expect("pan");
        assert!(!haystack.contains(pan), "a full PAN is stored in clear");
        if let Some(cvv2) = card.get("cvv2").and_then(|c| c.as_str()) {
            assert!(
                !haystack.contains(&format!("\"{cvv2}\"")),
                "a CVV2 is stored in clear"
            );
        }
    }
}

#[test]
fn a_partner_balance_crossing_its_low_level_queues_one_notification() {
    let mut engine = engine(MemoryStore::new());
    let t = now();
    // pc: 100.00 with a low level of 10.00; each user of the program has 50.00.
    for (stan, card) in [(1, "cr0"), (2, "cr1")] {
        let (outcome, _) = process(
            &mut engine,
            &request("0200", &pan(card), "000000", 4_500, stan),
            t,
        );
        assert_eq!(outcome, Outcome::Approved);
    }
    // 100 → 55 → 10: not below yet.
    assert_eq!(
        engine
            .state()
            .records_under::<antaca::domain::model::Notification>("outbox/")
            .count(),
        0
    );
    let (outcome, _) = process(
        &mut engine,
        &request("0200", &pan("cr2"), "000000", 1, 3),
        t,
    );
    assert_eq!(outcome, Outcome::Approved);
    let (outcome, _) = process(
        &mut engine,
        &request("0200", &pan("cr3"), "000000", 1, 4),
        t,
    );
    assert_eq!(outcome, Outcome::Approved);
    let queued: Vec<_> = engine
        .state()
        .records_under::<antaca::domain::model::Notification>("outbox/")
        .collect();
    assert_eq!(
        queued.len(),
        1,
        "one notification for the crossing, none while it stays below"
    );
    let (_, n) = &queued[0];
    assert_eq!(
        (n.balance.as_str(), n.program.as_str(), n.kind.as_str()),
        ("pc", "credit", "low_balance")
    );
    assert_eq!(n.available, "9.99".parse::<Decimal>().expect("d"));
}

/// What waits for the batches a [`Gated`] store holds, oldest first.
type Waiting = std::sync::Mutex<std::collections::VecDeque<Box<dyn antaca::store::OnDurable>>>;

/// A store whose commits become durable only when the test says so: it
/// applies each batch at once and keeps what waits for it, in order.
#[derive(Clone, Default)]
struct Gated {
    inner: MemoryStore,
    waiting: std::sync::Arc<(Waiting, std::sync::Condvar)>,
}

impl Gated {
    fn waiting(&self) -> usize {
        self.waiting.0.lock().expect("lock").len()
    }

    /// Tells the oldest waiting batch that it is durable.
    fn release_one(&self) {
        let done = self.waiting.0.lock().expect("lock").pop_front();
        if let Some(done) = done {
            done.durable();
        }
        self.waiting.1.notify_all();
    }

    async fn until_waiting(&self, n: usize) {
        let started = std::time::Instant::now();
        while self.waiting() < n {
            assert!(started.elapsed() < Duration::from_secs(10), "no batch");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

impl Store for Gated {
    fn scan_prefix(
        &self,
        prefix: &[u8],
    ) -> Result<Vec<antaca::store::Pair>, antaca::store::StoreError> {
        self.inner.scan_prefix(prefix)
    }
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, antaca::store::StoreError> {
        self.inner.get(key)
    }
    fn range(
        &self,
        start: &[u8],
        end: &[u8],
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<antaca::store::Pair>, antaca::store::StoreError> {
        self.inner.range(start, end, reverse, limit)
    }
    fn commit(
        &mut self,
        batch: antaca::store::WriteBatch,
    ) -> Result<(), antaca::store::StoreError> {
        self.inner.commit(batch)
    }
    fn revert(
        &mut self,
        batch: antaca::store::WriteBatch,
    ) -> Result<(), antaca::store::StoreError> {
        self.inner.revert(batch)
    }
    fn commit_then(
        &mut self,
        batch: antaca::store::WriteBatch,
        done: Box<dyn antaca::store::OnDurable>,
    ) -> Result<(), antaca::store::Refused> {
        if let Err(e) = self.inner.commit(batch) {
            return Err((e, done));
        }
        self.waiting.0.lock().expect("lock").push_back(done);
        Ok(())
    }
    fn wait_durable(&self) -> Result<(), antaca::store::StoreError> {
        let mut waiting = self.waiting.0.lock().expect("lock");
        while !waiting.is_empty() {
            waiting = self.waiting.1.wait(waiting).expect("wait");
        }
        Ok(())
    }
}

#[tokio::test]
async fn nothing_is_answered_or_read_before_the_store_says_it_is_durable() {
    let store = Gated::default();
    let mut engine = Engine::open(store.clone(), EngineConfig::default()).expect("open");
    let portfolio = Portfolio::read(&fixture("test-portfolio.json")).expect("portfolio");
    portfolio::import(&mut engine, &portfolio, &secrets(), 0).expect("import");
    let (handle, _writer) = engine.spawn().expect("spawn");
    let ask = |message: Message| {
        let handle = handle.clone();
        tokio::spawn(async move { handle.request(parse(&message)).await })
    };
    let auth = request("0100", &pan("ok"), "000000", 1_000, 1);

    let first = ask(auth.clone());
    store.until_waiting(1).await;
    // Its duplicate: the replayed answer repeats an effect not yet durable.
    let duplicate = ask(auth);
    store.until_waiting(2).await;
    // A read of the state: it would show the hold.
    let look = {
        let handle = handle.clone();
        tokio::spawn(async move { handle.inspect(|s| s.balances["b-ok"].held).await })
    };
    store.until_waiting(3).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !first.is_finished() && !duplicate.is_finished() && !look.is_finished(),
        "nothing leaves before its batch is durable"
    );

    store.release_one();
    let first = first.await.expect("task").expect("answer");
    assert_eq!(first.outcome, Outcome::Approved);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(
        !duplicate.is_finished(),
        "the duplicate's batch is not durable yet"
    );
    store.release_one();
    let duplicate = duplicate.await.expect("task").expect("answer");
    assert_eq!(duplicate.outcome, Outcome::Approved);
    assert_eq!(duplicate.approval_code, first.approval_code);
    assert!(!look.is_finished(), "the read waits for its own batch too");
    store.release_one();
    let held = look.await.expect("task").expect("inspect");
    assert_eq!(held, "10.00".parse::<Decimal>().expect("decimal"));
}

/// Processes `msg` and commits its changes, as the writer does.
fn process_and_commit(engine: &mut Engine<MemoryStore>, msg: &Message, now: u64) -> Outcome {
    let (outcome, changes) = process(engine, msg, now);
    engine.commit_for_bench(changes).expect("commit");
    outcome
}

fn hold_entries(store: &MemoryStore) -> Vec<Vec<u8>> {
    store
        .range(index::HOLDS, &index::holds_until(u64::MAX - 1), false, 100)
        .expect("range")
        .into_iter()
        .map(|(k, _)| k)
        .collect()
}

/// A store and its engine with one approved hold of 20.00 on card "ok",
/// committed at the returned time, and the hold's request.
fn one_open_hold() -> (MemoryStore, Engine<MemoryStore>, u64, Message) {
    let store = MemoryStore::new();
    let mut engine = engine(store.clone());
    let t0 = now();
    let hold = request("0100", &pan("ok"), "000000", 2_000, 1);
    assert_eq!(
        process_and_commit(&mut engine, &hold, t0),
        Outcome::Approved
    );
    (store, engine, t0, hold)
}

#[test]
fn indexes_left_stale_by_a_version_without_them_are_built_again_at_open() {
    // What a rollback to a version that kept its indexes in memory leaves
    // behind, then an upgrade again: transactions it wrote without index
    // entries, and a hold it released whose entry is still there. The
    // counters moved, the index mark did not.
    let (mut store, mut engine, t0, _) = one_open_hold();
    let mark_before = store
        .get(&keys::key(keys::META, index::MARK))
        .expect("get")
        .expect("the mark");
    let [hold_entry] = hold_entries(&store).try_into().expect("one open hold");
    // "The old version" takes a purchase and sweeps the hold.
    let purchase = request("0200", &pan("ok"), "000000", 500, 2);
    let purchase_id = engine.state().next_txn;
    assert_eq!(
        process_and_commit(&mut engine, &purchase, t0 + 1),
        Outcome::Approved
    );
    let mut sweep = Changes::default();
    engine.expire_holds(&mut sweep, t0 + 3_600_000);
    assert!(!sweep.is_empty());
    engine.commit_for_bench(sweep).expect("commit");
    let balance = available(engine.state(), "b-ok");
    drop(engine);
    // The purchase's index entries were never written by the old version.
    let key = keys::numbered(keys::TXN, purchase_id);
    let stored = store.get(&key).expect("get").expect("the purchase");
    let txn: antaca::domain::model::Txn =
        antaca::engine::record::decode(&key, &stored).expect("decode");
    assert_eq!(txn.mti, "0200");
    let mut batch = antaca::store::WriteBatch::default();
    for (key, _) in index::entries(&txn, Some("b-ok")) {
        batch.delete(key);
    }
    batch.put(hold_entry.clone(), Vec::new());
    batch.put(keys::key(keys::META, index::MARK), mark_before);
    store.commit(batch).expect("tamper");
    assert_eq!(hold_entries(&store), vec![hold_entry.clone()]);

    // The upgrade: the indexes are built again from the transactions.
    let mut engine = engine_over(store.clone());
    assert!(
        hold_entries(&store).is_empty(),
        "the stale hold entry is gone"
    );
    let next_txn = engine.state().next_txn;
    // A retransmission of the purchase is its duplicate, not a second charge.
    assert_eq!(
        process_and_commit(&mut engine, &purchase, t0 + 3_700_000),
        Outcome::Approved
    );
    assert_eq!(
        engine.state().next_txn,
        next_txn,
        "answered from the stored one"
    );
    assert_eq!(available(engine.state(), "b-ok"), balance);
    let report = antaca::tools::verify::verify(&store).expect("verify");
    assert!(report.is_clean() && report.warnings.is_empty(), "{report}");
}

#[test]
fn a_hold_entry_no_open_hold_justifies_is_deleted_by_the_sweep() {
    let (mut store, mut engine, t0, hold) = one_open_hold();
    let [entry] = hold_entries(&store).try_into().expect("one open hold");
    let mut reversal = request("0400", &pan("ok"), "000000", 2_000, 2);
    reversal.set(90, common::original_data(&hold));
    assert_eq!(
        process_and_commit(&mut engine, &reversal, t0 + 1),
        Outcome::Approved
    );
    assert!(hold_entries(&store).is_empty());
    // An entry back (a restore of part of the store, a bug): the sweep reads
    // it, finds no open hold, moves no money and deletes it.
    let mut batch = antaca::store::WriteBatch::default();
    batch.put(entry.clone(), Vec::new());
    batch.put(index::hold(t0, 999_999), Vec::new());
    store.commit(batch).expect("tamper");
    let balance = available(engine.state(), "b-ok");
    let mut sweep = Changes::default();
    engine.expire_holds(&mut sweep, t0 + 3_600_000);
    engine.commit_for_bench(sweep).expect("commit");
    assert!(
        hold_entries(&store).is_empty(),
        "both stale entries deleted"
    );
    assert_eq!(available(engine.state(), "b-ok"), balance, "no money moved");
}
