//! Restart in the middle of a random operation sequence, then go on: same
//! results (issue 12's restart test, written against today's engine so that
//! it guards the restructuring).
//!
//! Each case is a random sequence of up to 120 steps (any length from 1, so
//! that a failure shrinks to a few) over a small portfolio
//! (`fixtures/test-portfolio.json`: user-balance cards "ok" and "poor",
//! partner-credit "cr0" and "cr1", partner-deposit "dep", "lock3" locked,
//! "expired"): authorizations (0100), purchases and refunds (0200), balance
//! inquiries, advices (0120), completions (0220) of earlier authorizations,
//! reversals (0400/0420) of earlier messages, late ones (after their hold
//! expired) and orphans (whose original arrives later or never), repeats
//! (0101/0221/0401), exact duplicates, file updates (0302 add/delete), locks,
//! unlocks and reloads through `Engine::apply`, and hold expiry by advancing
//! the clock passed to the engine and calling `Engine::expire_holds`. Steps
//! are grouped into change sets (1–4 steps, as the writer groups a batch) and
//! committed through the engine.
//!
//! The sequence runs twice, each on a real `SledStore` in its own temporary
//! directory: once straight through with the default transaction cache and
//! no prefetch (every lookup reads through), once with a cache of two
//! transactions, each request prefetched as the writer does (and the
//! prefetch must foresee every read: no read on the execute path), and one
//! or two restarts at random points (engine and store dropped, both opened
//! again from the directory).
//! Every reply (`AuthResponse`: outcome, approval code, field 54) and every
//! management result must be identical, and so must every balance
//! (available, held, ledger) and the counters, both in the live engines and
//! after a last re-open; `tools::verify` must find the restarted store clean.
//!
//! Failures show step numbers, card ids and the first differing reply, never
//! a PAN. Deterministic per proptest seed; the clock is simulated.
//!
//! `cargo test --test engine_model` runs 64 cases (a few seconds in a debug
//! build). The long run: `ANTACA_MODEL_CASES=2000 cargo test --release --test
//! engine_model`.

mod common;

use antaca::domain::outcome::Dialect;
use antaca::engine::state::Changes;
use antaca::engine::{Engine, EngineConfig};
use antaca::iso8583::Message;
use antaca::manage::cards::Scope;
use antaca::manage::portfolio::{self, Portfolio};
use antaca::protocol::{self, AuthResponse, Profile};
use antaca::security::secrets::CardSecrets;
use antaca::store::SledStore;
use common::{file_update_at, fixture, original_data, pan, request_at, transmission_at, Decimal};
use proptest::prelude::*;
use std::path::Path;
use std::time::Duration;

/// The cards the sequences use, by test-portfolio id.
const CARDS: [&str; 7] = ["ok", "poor", "cr0", "cr1", "dep", "lock3", "expired"];
/// The balances reloads go to.
const BALANCES: [&str; 4] = ["b-ok", "b-poor", "pc", "pd"];
/// 2025-06-15T15:06:40Z: the simulated clock starts here.
const T0: u64 = 1_750_000_000_000;
/// Holds expire after an hour; `Advance` moves the clock by up to 90 minutes.
const HOLD_EXPIRY_MS: u64 = 3_600_000;

fn secrets() -> CardSecrets {
    CardSecrets::from_key([7; 32])
}

fn config(tiny: bool) -> EngineConfig {
    EngineConfig {
        hold_expiry: Duration::from_millis(HOLD_EXPIRY_MS),
        txn_cache: if tiny {
            2
        } else {
            EngineConfig::default().txn_cache
        },
        ..EngineConfig::default()
    }
}

/// One step of a sequence. Indices into earlier messages are taken modulo
/// the number available, so every sequence is valid and shrinks freely.
#[derive(Clone, Debug)]
enum Op {
    /// 0100 purchase authorization.
    Authorize { card: usize, minor: u64 },
    /// 0200 purchase.
    Purchase { card: usize, minor: u64 },
    /// 0200 refund (processing 20).
    Refund { card: usize, minor: u64 },
    /// 0100 balance inquiry (processing 31).
    Inquiry { card: usize },
    /// 0120 authorization advice.
    Advice { card: usize, minor: u64 },
    /// 0220 completion of an earlier 0100, for a share of its amount.
    Complete { pick: usize, percent: u64 },
    /// 0400 (or 0420) reversal of an earlier message.
    Reverse { pick: usize, advice: bool },
    /// A 0400 naming a 0100 that has not arrived yet (an orphan).
    Orphan { card: usize, minor: u64 },
    /// The late original of an earlier orphan reversal.
    LateOriginal { pick: usize },
    /// An earlier message again as a repeat (last MTI digit 1).
    Repeat { pick: usize },
    /// An earlier message again, byte for byte.
    Duplicate { pick: usize },
    /// 0302 file update: add (lock `reason`) or delete.
    FileUpdate { card: usize, add: bool, reason: u8 },
    /// Lock through `Engine::apply` (`manage::cards::lock`).
    Lock { card: usize, reason: u8 },
    /// Unlock through `Engine::apply`.
    Unlock { card: usize },
    /// Reload through `Engine::apply` (`manage::balances::reload`).
    Reload { balance: usize, minor: u64 },
    /// Moves the clock on and releases expired holds.
    Advance { minutes: u64 },
}

/// A step, whether its change set is committed after it, and whether the
/// restarted run restarts after it (which commits first).
#[derive(Clone, Debug)]
struct Step {
    op: Op,
    commit: bool,
    restart: bool,
}

/// Lock reasons that can be lifted again (1, 2, 5 and 8 are for good).
fn reason() -> impl Strategy<Value = u8> {
    prop::sample::select(vec![3u8, 4, 6, 7])
}

fn op() -> impl Strategy<Value = Op> {
    let card = 0..CARDS.len();
    let minor = prop_oneof![1u64..3_000, 3_000u64..120_000];
    prop_oneof![
        6 => (card.clone(), minor.clone()).prop_map(|(card, minor)| Op::Authorize { card, minor }),
        3 => (card.clone(), minor.clone()).prop_map(|(card, minor)| Op::Purchase { card, minor }),
        2 => (card.clone(), minor.clone()).prop_map(|(card, minor)| Op::Refund { card, minor }),
        2 => card.clone().prop_map(|card| Op::Inquiry { card }),
        2 => (card.clone(), minor.clone()).prop_map(|(card, minor)| Op::Advice { card, minor }),
        4 => (any::<usize>(), 1u64..=120).prop_map(|(pick, percent)| Op::Complete { pick, percent }),
        4 => (any::<usize>(), any::<bool>()).prop_map(|(pick, advice)| Op::Reverse { pick, advice }),
        2 => (card.clone(), minor.clone()).prop_map(|(card, minor)| Op::Orphan { card, minor }),
        2 => any::<usize>().prop_map(|pick| Op::LateOriginal { pick }),
        3 => any::<usize>().prop_map(|pick| Op::Repeat { pick }),
        3 => any::<usize>().prop_map(|pick| Op::Duplicate { pick }),
        1 => (card.clone(), any::<bool>(), reason())
            .prop_map(|(card, add, reason)| Op::FileUpdate { card, add, reason }),
        1 => (card.clone(), reason()).prop_map(|(card, reason)| Op::Lock { card, reason }),
        1 => card.prop_map(|card| Op::Unlock { card }),
        1 => (0..BALANCES.len(), 1u64..50_000).prop_map(|(balance, minor)| Op::Reload { balance, minor }),
        2 => prop_oneof![1u64..10, 30u64..90].prop_map(|minutes| Op::Advance { minutes }),
    ]
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        (op(), prop::bool::weighted(0.6), prop::bool::weighted(0.025)).prop_map(
            |(op, commit, restart)| Step {
                op,
                commit,
                restart,
            },
        ),
        1..=120,
    )
}

/// What a step answered, compared between the runs.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Answer {
    /// The engine's reply to a message.
    Reply(AuthResponse),
    /// A management change's result (its error text when refused).
    Managed(Result<(), String>),
    /// A message the protocol layer refused (should not happen).
    Unparsed,
    /// A step that answers nothing (the clock moved).
    Nothing,
}

/// Every balance (available, held, ledger) and the counters.
/// Balances (id, available, held, ledger), the counters, and every
/// history page of every card and balance (read from the indexes on disk).
type Books = (
    Vec<(String, Decimal, Decimal, Decimal)>,
    u64,
    u64,
    Vec<String>,
);

fn books<S: antaca::store::Store>(engine: &Engine<S>) -> Books {
    let state = engine.state();
    let mut balances: Vec<_> = state
        .balances
        .values()
        .map(|b| (b.id.clone(), b.available, b.held, b.ledger()))
        .collect();
    balances.sort();
    // Every page of every card's and balance's history, read from their
    // indexes, must be the whole history (read by id) filtered.
    let pages = |card: Option<&str>, balance: Option<&str>| {
        let mut filter = antaca::manage::history::HistoryFilter {
            card: card.map(str::to_string),
            balance: balance.map(str::to_string),
            limit: 7,
            ..Default::default()
        };
        let mut items = Vec::new();
        loop {
            let page =
                antaca::manage::history::history(&engine.reader(), &filter).expect("history");
            items.extend(page.items);
            match page.next_cursor {
                Some(cursor) => filter.before = Some(cursor),
                None => return items,
            }
        }
    };
    let all = pages(None, None);
    let mut history = Vec::new();
    for card in CARDS {
        let indexed = pages(Some(card), None);
        let filtered: Vec<_> = all
            .iter()
            .filter(|i| i.card_id.as_deref() == Some(card))
            .cloned()
            .collect();
        assert_eq!(indexed, filtered, "the history of card {card}");
    }
    for balance in BALANCES {
        let indexed = pages(None, Some(balance));
        let filtered: Vec<_> = all
            .iter()
            .filter(|i| i.balance_ids.iter().any(|b| b == balance))
            .cloned()
            .collect();
        assert_eq!(indexed, filtered, "the history of balance {balance}");
    }
    for item in &all {
        history.push(format!(
            "{} {} {:?} {} {:?}",
            item.id, item.kind, item.state, item.outcome, item.original_id
        ));
    }
    (balances, state.next_txn, state.next_journal, history)
}

/// A request with the fields an acquirer sends, at simulated time `now`.
fn request(mti: &str, pan: &str, processing: &str, minor: u64, stan: u32, now: u64) -> Message {
    request_at(mti, pan, processing, minor, stan, &transmission_at(now))
}

fn file_update(pan: &str, add: bool, reason: u8, stan: u32, now: u64) -> Message {
    let (code, reason) = if add {
        ("1", Some(reason))
    } else {
        ("3", None)
    };
    file_update_at("0302", pan, code, reason, stan, &transmission_at(now))
}

fn pick<T>(items: &[T], i: usize) -> Option<&T> {
    (!items.is_empty()).then(|| &items[i % items.len()])
}

/// The messages a sequence builds. They depend only on the steps (never on
/// the engine's answers), so both runs send exactly the same bytes.
#[derive(Default)]
struct Script {
    stan: u32,
    /// Every message sent, for reversals, repeats and duplicates.
    sent: Vec<Message>,
    /// The 0100s sent, for completions.
    authorizations: Vec<Message>,
    /// Originals named by orphan reversals, not sent yet.
    unsent: Vec<Message>,
}

impl Script {
    fn next_stan(&mut self) -> u32 {
        self.stan += 1;
        self.stan
    }
}

/// The engine over a sled store in `dir`, and the PANs of [`CARDS`].
struct Run {
    engine: Option<Engine<SledStore>>,
    pans: Vec<String>,
    /// A tiny cache, and every request prefetched.
    tiny: bool,
}

impl Run {
    fn open(dir: &Path, tiny: bool) -> Engine<SledStore> {
        let store = SledStore::open(dir).expect("open store");
        Engine::open(store, config(tiny))
            .expect("open engine")
            .with_secrets(secrets())
    }

    fn new(dir: &Path, tiny: bool) -> Run {
        let mut engine = Run::open(dir, tiny);
        let portfolio = Portfolio::read(&fixture("test-portfolio.json")).expect("portfolio");
        portfolio::import(&mut engine, &portfolio, &secrets(), T0).expect("import");
        Run {
            engine: Some(engine),
            pans: CARDS.iter().map(|c| pan(c)).collect(),
            tiny,
        }
    }

    fn engine(&mut self) -> &mut Engine<SledStore> {
        self.engine.as_mut().expect("engine")
    }

    fn commit(&mut self, changes: &mut Changes) {
        let changes = std::mem::take(changes);
        self.engine().commit_for_bench(changes).expect("commit");
    }

    /// Drops the engine and its store and opens both again from `dir`.
    fn restart(&mut self, dir: &Path) {
        self.check_prefetch();
        drop(self.engine.take());
        self.engine = Some(Run::open(dir, self.tiny));
    }

    fn send(&mut self, changes: &mut Changes, msg: &Message, now: u64) -> Answer {
        let profile = Profile {
            dialect: Dialect::Iso87,
        };
        match protocol::parse::parse(msg, profile, &secrets()) {
            Ok(request) => {
                if self.tiny {
                    self.engine().prefetch(&request).expect("prefetch");
                }
                Answer::Reply(self.engine().process(changes, &request, now))
            }
            Err(_) => Answer::Unparsed,
        }
    }

    /// A prefetching run read nothing on the execute path.
    fn check_prefetch(&mut self) {
        if self.tiny {
            assert_eq!(
                self.engine().prefetch_misses(),
                0,
                "the prefetch missed reads"
            );
        }
    }

    fn manage(
        &mut self,
        changes: &mut Changes,
        f: impl FnOnce(
            &mut antaca::engine::state::State,
            &mut Changes,
        ) -> Result<(), antaca::manage::ManageError>,
    ) -> Answer {
        // The writer applies a management change in order with the batch:
        // commit what came before, then apply (which commits itself).
        self.commit(changes);
        let result = self.engine().apply(f).expect("apply");
        Answer::Managed(result.map_err(|e| e.to_string()))
    }
}

/// Runs `steps` in a fresh store under `dir`, restarting after the steps
/// numbered in `restarts`; returns every answer and the books.
fn run(dir: &Path, steps: &[Step], restarts: &[usize], tiny: bool) -> (Vec<Answer>, Books) {
    let mut run = Run::new(dir, tiny);
    let mut script = Script::default();
    let mut changes = Changes::default();
    let mut now = T0;
    let mut answers = Vec::with_capacity(steps.len());
    for (i, step) in steps.iter().enumerate() {
        now += 1_000;
        let answer = match &step.op {
            Op::Authorize { card, minor } => {
                let stan = script.next_stan();
                let m = request("0100", &run.pans[*card], "000000", *minor, stan, now);
                script.authorizations.push(m.clone());
                script.sent.push(m.clone());
                run.send(&mut changes, &m, now)
            }
            Op::Purchase { card, minor } | Op::Refund { card, minor } => {
                let processing = if matches!(step.op, Op::Refund { .. }) {
                    "200000"
                } else {
                    "000000"
                };
                let stan = script.next_stan();
                let m = request("0200", &run.pans[*card], processing, *minor, stan, now);
                script.sent.push(m.clone());
                run.send(&mut changes, &m, now)
            }
            Op::Inquiry { card } => {
                let stan = script.next_stan();
                let m = request("0100", &run.pans[*card], "310000", 0, stan, now);
                script.sent.push(m.clone());
                run.send(&mut changes, &m, now)
            }
            Op::Advice { card, minor } => {
                let stan = script.next_stan();
                let m = request("0120", &run.pans[*card], "000000", *minor, stan, now);
                script.sent.push(m.clone());
                run.send(&mut changes, &m, now)
            }
            Op::Complete { pick: p, percent } => match pick(&script.authorizations, *p).cloned() {
                Some(original) => {
                    let minor = amount(&original) * percent / 100;
                    let stan = script.next_stan();
                    let mut m = request(
                        "0220",
                        &pan_of(&original),
                        "000000",
                        minor.max(1),
                        stan,
                        now,
                    );
                    m.set(90, original_data(&original));
                    script.sent.push(m.clone());
                    run.send(&mut changes, &m, now)
                }
                None => Answer::Nothing,
            },
            Op::Reverse { pick: p, advice } => match pick(&script.sent, *p).cloned() {
                Some(original) => {
                    let stan = script.next_stan();
                    let mti = if *advice { "0420" } else { "0400" };
                    let processing = common::field(&original, 3);
                    let mut m = request(
                        mti,
                        &pan_of(&original),
                        &processing,
                        amount(&original),
                        stan,
                        now,
                    );
                    m.set(90, original_data(&original));
                    script.sent.push(m.clone());
                    run.send(&mut changes, &m, now)
                }
                None => Answer::Nothing,
            },
            Op::Orphan { card, minor } => {
                let original_stan = script.next_stan();
                let original = request(
                    "0100",
                    &run.pans[*card],
                    "000000",
                    *minor,
                    original_stan,
                    now,
                );
                let stan = script.next_stan();
                let mut m = request("0400", &run.pans[*card], "000000", *minor, stan, now);
                m.set(90, original_data(&original));
                script.unsent.push(original);
                script.sent.push(m.clone());
                run.send(&mut changes, &m, now)
            }
            Op::LateOriginal { pick: p } => {
                if script.unsent.is_empty() {
                    Answer::Nothing
                } else {
                    let m = script.unsent.remove(p % script.unsent.len());
                    script.authorizations.push(m.clone());
                    script.sent.push(m.clone());
                    run.send(&mut changes, &m, now)
                }
            }
            Op::Repeat { pick: p } => match pick(&script.sent, *p).cloned() {
                Some(mut m) => {
                    let mut mti = m.mti();
                    mti[3] = b'1';
                    m.set_mti(mti);
                    run.send(&mut changes, &m, now)
                }
                None => Answer::Nothing,
            },
            Op::Duplicate { pick: p } => match pick(&script.sent, *p).cloned() {
                Some(m) => run.send(&mut changes, &m, now),
                None => Answer::Nothing,
            },
            Op::FileUpdate { card, add, reason } => {
                let stan = script.next_stan();
                let m = file_update(&run.pans[*card], *add, *reason, stan, now);
                run.send(&mut changes, &m, now)
            }
            Op::Lock { card, reason } => {
                let (id, reason) = (CARDS[*card], *reason);
                run.manage(&mut changes, move |state, changes| {
                    antaca::manage::cards::lock(state, changes, id, &Scope::any(), reason).map(drop)
                })
            }
            Op::Unlock { card } => {
                let id = CARDS[*card];
                run.manage(&mut changes, move |state, changes| {
                    antaca::manage::cards::unlock(state, changes, id, &Scope::any()).map(drop)
                })
            }
            Op::Reload { balance, minor } => {
                let (id, amount) = (
                    BALANCES[*balance],
                    Decimal::new(i64::try_from(*minor).expect("minor"), 2),
                );
                run.manage(&mut changes, move |state, changes| {
                    antaca::manage::balances::reload(state, changes, id, amount, now).map(drop)
                })
            }
            Op::Advance { minutes } => {
                now += minutes * 60_000;
                run.engine().expire_holds(&mut changes, now);
                Answer::Nothing
            }
        };
        answers.push(answer);
        let restart = restarts.contains(&i);
        if step.commit || restart || i + 1 == steps.len() {
            run.commit(&mut changes);
        }
        if restart {
            run.restart(dir);
        }
    }
    run.check_prefetch();
    let books = books(run.engine());
    (answers, books)
}

fn amount(m: &Message) -> u64 {
    common::field(m, 4).parse().expect("field 4")
}

fn pan_of(m: &Message) -> String {
    common::field(m, 2)
}

/// The books of the store in `dir`, opened again, and `verify`'s report.
fn reopened(dir: &Path) -> (Books, antaca::tools::verify::Report) {
    let engine = Run::open(dir, false);
    let books = books(&engine);
    let report = antaca::tools::verify::verify(engine.store()).expect("verify");
    (books, report)
}

/// The balances and counters that differ, one per line ("" when none).
fn differences(a: &Books, b: &Books) -> String {
    let mut out = String::new();
    for (x, y) in a.0.iter().zip(&b.0) {
        if x != y {
            out.push_str(&format!("\n  {x:?} vs {y:?}"));
        }
    }
    if a.0.len() != b.0.len() {
        out.push_str(&format!("\n  {} vs {} balances", a.0.len(), b.0.len()));
    }
    if let Some((x, y)) = a.3.iter().zip(&b.3).find(|(x, y)| x != y) {
        out.push_str(&format!("\n  history: {x} vs {y}"));
    }
    if a.3.len() != b.3.len() {
        out.push_str(&format!("\n  {} vs {} history items", a.3.len(), b.3.len()));
    }
    if (a.1, a.2) != (b.1, b.2) {
        out.push_str(&format!(
            "\n  next_txn, next_journal: {:?} vs {:?}",
            (a.1, a.2),
            (b.1, b.2)
        ));
    }
    out
}

fn check(steps: &[Step], restarts: &[usize]) -> Result<(), TestCaseError> {
    let straight_dir = tempfile::tempdir().expect("tempdir");
    let restarted_dir = tempfile::tempdir().expect("tempdir");
    let (straight, straight_books) = run(straight_dir.path(), steps, &[], false);
    let (restarted, restarted_books) = run(restarted_dir.path(), steps, restarts, true);
    prop_assert!(
        !straight.contains(&Answer::Unparsed),
        "a generated message did not parse"
    );
    if let Some(i) = (0..steps.len()).find(|&i| straight[i] != restarted[i]) {
        prop_assert!(
            false,
            "step {i} ({:?}) answered {:?} straight through but {:?} with a tiny cache, prefetch and restarts after steps {restarts:?} (cards by index: {CARDS:?})",
            steps[i].op,
            straight[i],
            restarted[i]
        );
    }
    let differ = differences(&straight_books, &restarted_books);
    prop_assert!(differ.is_empty(), "straight through vs restarted: {differ}");
    let (reopened_books, report) = reopened(restarted_dir.path());
    let differ = differences(&restarted_books, &reopened_books);
    prop_assert!(
        differ.is_empty(),
        "restarted vs re-opened at the end: {differ}"
    );
    prop_assert!(report.is_clean(), "verify: {:?}", report.errors);
    Ok(())
}

fn cases() -> u32 {
    std::env::var("ANTACA_MODEL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

/// The steps the restarted run restarts after: those marked, or the middle
/// one when none is (so that every case restarts at least once).
fn restarts(steps: &[Step]) -> Vec<usize> {
    let marked: Vec<usize> = (0..steps.len()).filter(|&i| steps[i].restart).collect();
    if marked.is_empty() {
        vec![steps.len() / 2]
    } else {
        marked
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        max_shrink_iters: 400,
        ..ProptestConfig::default()
    })]

    #[test]
    fn a_restart_mid_sequence_changes_no_answer_and_no_balance(steps in steps()) {
        check(&steps, &restarts(&steps))?;
    }
}
