//! Offline consistency check of a stopped store (`antaca verify`): the
//! journal balances and is gap-free, the balances are its projection, holds
//! agree with the transactions that placed them, idempotency records match the
//! journal, cards point at what exists, and the transaction indexes on disk
//! (`engine::index`) hold exactly the entries the transactions imply. Every
//! finding names records by id only: never a PAN, CVV2, PIN or idempotency key.
//!
//! It streams: transactions, journal entries and index entries are read a
//! page at a time (`Store::range`, [`PAGE`] records), and what stays in
//! memory is small: programs, users, balances and cards, sums per balance,
//! one byte per transaction id (`Facts`) and a digest per index and 1,024
//! transaction ids (`IndexCheck`). Where a finding needs a whole
//! transaction it reads that one again (`Store::get`); findings are rare.
//!
//! The index check compares, for each index and each bucket of transaction
//! ids, the sum of the hashes of the entries the transactions imply with
//! the sum over the entries the index holds (every entry names its
//! transaction: the last 20 digits of its key, or the value of a `k/`
//! entry). Only the buckets that disagree are read again and itemized.

use crate::domain::model::{
    Account, Balance, BalanceOwner, Card, EntryKind, JournalEntry, Program, Txn, TxnState, User,
};
use crate::domain::outcome::Outcome;
use crate::engine::index;
use crate::store::{keys, Backend, DiskStore, Pair, Store, StoreConfig, StoreError};
use rust_decimal::Decimal;
use std::any::Any;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::hash::BuildHasher;
use std::path::Path;

/// Records read per `Store::range` call.
pub const PAGE: usize = 10_000;
/// Transaction ids per bucket of the index check's digests.
const BUCKET: u64 = 1_024;
/// Disagreeing buckets itemized per index; beyond, they are counted.
const ITEMIZED_BUCKETS: usize = 32;
/// Errors a report lists; beyond, they are counted.
const LISTED_ERRORS: usize = 10_000;
/// Ranges a list of sequence numbers shows; beyond, they are counted.
const SHOWN_RANGES: usize = 100;
/// The layout whose transaction indexes are on disk (the engine writes it
/// with its counters, `engine::state`).
const INDEXED_LAYOUT: &[u8] = b"2";
/// Names of the indexes, in the order of `index::ALL`.
const INDEX_NAMES: [&str; 6] = [
    "k/ (idempotency keys)",
    "o/ (original keys)",
    "x/ (orphan reversals)",
    "h/ (open holds)",
    "hb/ (history by balance)",
    "hc/ (history by card)",
];

/// How many records of each kind were checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Programs read.
    pub programs: usize,
    /// Users read.
    pub users: usize,
    /// Balances read.
    pub balances: usize,
    /// Cards read.
    pub cards: usize,
    /// Transactions read.
    pub txns: usize,
    /// Journal entries read.
    pub journal_entries: usize,
    /// Transactions in state AUTHORIZED (open holds).
    pub open_holds: usize,
    /// Entries read from the transaction indexes (`k/ o/ x/ h/ hb/ hc/`),
    /// 0 when they were not checked.
    pub index_entries: usize,
}

/// What `verify` found: errors (the store is inconsistent) and warnings.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Violations; any one makes the store inconsistent (the first 10,000).
    pub errors: Vec<String>,
    /// Violations found beyond those listed in `errors`.
    pub errors_not_listed: usize,
    /// Allowed but noteworthy states (balances below zero through forced
    /// postings, indexes not built yet).
    pub warnings: Vec<String>,
    /// What was checked.
    pub counts: Counts,
}

impl Report {
    /// True when no error was found (warnings allowed).
    pub fn is_clean(&self) -> bool {
        self.errors.is_empty() && self.errors_not_listed == 0
    }

    fn error(&mut self, message: String) {
        if self.errors.len() < LISTED_ERRORS {
            self.errors.push(message);
        } else {
            self.errors_not_listed += 1;
        }
    }

    fn warning(&mut self, message: String) {
        self.warnings.push(message);
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counts;
        writeln!(
            f,
            "checked {} programs, {} users, {} balances, {} cards, {} transactions ({} open holds), {} journal entries, {} index entries",
            c.programs, c.users, c.balances, c.cards, c.txns, c.open_holds, c.journal_entries, c.index_entries
        )?;
        let errors = self.errors.len() + self.errors_not_listed;
        if errors > 0 {
            writeln!(f, "errors ({errors}):")?;
            for e in &self.errors {
                writeln!(f, "  error: {e}")?;
            }
            if self.errors_not_listed > 0 {
                writeln!(f, "  ... and {} more, not listed", self.errors_not_listed)?;
            }
        }
        if !self.warnings.is_empty() {
            writeln!(f, "warnings ({}):", self.warnings.len())?;
            for w in &self.warnings {
                writeln!(f, "  warning: {w}")?;
            }
        }
        if self.is_clean() {
            writeln!(f, "OK: the store is consistent")
        } else {
            writeln!(f, "FAILED: {errors} error(s); the store is inconsistent")
        }
    }
}

/// Why the store could not be checked at all.
#[derive(Debug)]
pub enum OpenError {
    /// There is no store in the directory.
    NoStore(String),
    /// Another process (a running server) holds the store's lock.
    InUse(String),
    /// Opening or reading the store failed.
    Store(String),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::NoStore(dir) => write!(f, "cannot open the store: there is no store in {dir}"),
            OpenError::InUse(dir) => write!(
                f,
                "cannot open the store in {dir}: it is in use; stop the server first (verify checks a stopped store)"
            ),
            OpenError::Store(e) => write!(f, "cannot open the store: {e}"),
        }
    }
}

impl std::error::Error for OpenError {}

/// Opens the existing store in `dir` (never creates one) and verifies it.
pub fn verify_dir(dir: &Path) -> Result<Report, OpenError> {
    let shown = dir.display().to_string();
    // Either backend: the one whose files the directory holds.
    let backend = match Backend::detect(dir) {
        Ok(Some(backend)) => backend,
        Ok(None) => return Err(OpenError::NoStore(shown)),
        Err(e) => return Err(OpenError::Store(format!("{shown}: {e}"))),
    };
    let config = StoreConfig {
        backend: Some(backend),
        ..StoreConfig::default()
    };
    let store = DiskStore::open_with(dir, config).map_err(|e| match &e {
        StoreError::Locked(_) => OpenError::InUse(shown.clone()),
        _ => OpenError::Store(format!("{shown}: {e}")),
    })?;
    verify(&store).map_err(|e| OpenError::Store(format!("{shown}: {e}")))
}

/// Reads a record; an unreadable one is reported by key (ids only) and skipped.
fn read<T: serde::de::DeserializeOwned>(
    report: &mut Report,
    key: &[u8],
    bytes: &[u8],
) -> Option<T> {
    match serde_json::from_slice(bytes) {
        Ok(value) => Some(value),
        Err(e) => {
            // serde's message may quote the value; only its position is shown.
            report.error(format!(
                "record {} is unreadable ({:?} error at line {} column {})",
                String::from_utf8_lossy(key),
                e.classify(),
                e.line(),
                e.column()
            ));
            None
        }
    }
}

/// Reads a transaction or journal entry (binary records); an unreadable one
/// is reported by key and skipped.
fn read_record<T: crate::engine::record::Record>(
    report: &mut Report,
    key: &[u8],
    bytes: &[u8],
) -> Option<T> {
    match crate::engine::record::decode(key, bytes) {
        Ok(value) => Some(value),
        Err(e) => {
            // The error names the key only, never the bytes.
            report.error(format!("record is unreadable: {e}"));
            None
        }
    }
}

fn counter(report: &mut Report, store: &impl Store, name: &str) -> Result<u64, StoreError> {
    match store.get(&keys::key(keys::META, name))? {
        None => Ok(1),
        Some(v) => match String::from_utf8_lossy(&v).parse() {
            Ok(n) => Ok(n),
            Err(_) => {
                report.error(format!("counter m/{name} is not a number"));
                Ok(1)
            }
        },
    }
}

// ---------------------------------------------------------------------------
// Reading in pages.

/// Whether the records at `start` are read a page at a time with
/// `Store::range`. Not the journal of a `DiskStore` over sled: sled keeps
/// it in log chunks, which its `range` puts back together whole at every
/// call, so there `j/` is read with one `scan_prefix` (the whole journal in
/// memory: a limit of the sled backend). Everything else, and every prefix
/// of fjall (the default of a new store), is read in pages.
fn paged<S: Store>(store: &S, start: &[u8]) -> bool {
    if !start.starts_with(keys::JOURNAL) {
        return true;
    }
    let any: &dyn Any = store;
    !any.downcast_ref::<DiskStore>()
        .is_some_and(|disk| disk.backend() == Backend::Sled)
}

/// Calls `each` with the records `start <= key < end`, in key order, at most
/// `page` at a time.
fn pages<S: Store>(
    store: &S,
    start: &[u8],
    end: &[u8],
    page: usize,
    mut each: impl FnMut(Vec<Pair>) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let page = page.max(1);
    if !paged(store, start) {
        let mut all = store.scan_prefix(keys::JOURNAL)?.into_iter();
        loop {
            let chunk: Vec<Pair> = all
                .by_ref()
                .filter(|(k, _)| k.as_slice() >= start && k.as_slice() < end)
                .take(page)
                .collect();
            if chunk.is_empty() {
                return Ok(());
            }
            each(chunk)?;
        }
    }
    let mut from = start.to_vec();
    loop {
        let batch = store.range(&from, end, false, page)?;
        let Some((last, _)) = batch.last() else {
            return Ok(());
        };
        from.clone_from(last);
        from.push(0);
        each(batch)?;
    }
}

/// [`pages`] over every record under `prefix`.
fn prefix_pages<S: Store>(
    store: &S,
    prefix: &[u8],
    page: usize,
    each: impl FnMut(Vec<Pair>) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    pages(store, prefix, &index::prefix_end(prefix), page, each)
}

/// One transaction read again (for a finding); `None` when it is missing or
/// unreadable (already reported).
fn read_txn(store: &impl Store, id: u64) -> Option<Txn> {
    let key = keys::numbered(keys::TXN, id);
    let bytes = store.get(&key).ok()??;
    crate::engine::record::decode(&key, &bytes).ok()
}

// ---------------------------------------------------------------------------
// Compact state.

/// How far past the end of a [`ByNumber`]'s vector a number may be and
/// still grow it; a number farther away (a tampered id) goes to the map.
const REACH: u64 = 1 << 20;

/// Values by number, for numbers that come nearly dense from 0 (transaction
/// ids and buckets of them): a vector, and a map for the stray numbers far
/// past its end, so that a tampered record cannot make the vector huge.
struct ByNumber<T> {
    dense: Vec<T>,
    stray: HashMap<u64, T>,
}

impl<T: Copy + Default> ByNumber<T> {
    fn new() -> ByNumber<T> {
        ByNumber {
            dense: Vec::new(),
            stray: HashMap::new(),
        }
    }

    fn get(&self, n: u64) -> T {
        if let Some(v) = self.stray.get(&n) {
            return *v;
        }
        usize::try_from(n)
            .ok()
            .and_then(|i| self.dense.get(i))
            .copied()
            .unwrap_or_default()
    }

    fn slot(&mut self, n: u64) -> &mut T {
        let len = self.dense.len() as u64;
        if n < len + REACH && !self.stray.contains_key(&n) {
            let i = n as usize;
            if i >= self.dense.len() {
                self.dense.resize(i + 1, T::default());
            }
            return &mut self.dense[i];
        }
        self.stray.entry(n).or_default()
    }

    /// Every number with a value (and some with the default one).
    fn iter(&self) -> impl Iterator<Item = (u64, T)> + '_ {
        self.dense
            .iter()
            .enumerate()
            .map(|(i, v)| (i as u64, *v))
            .chain(self.stray.iter().map(|(n, v)| (*n, *v)))
    }
}

/// Bits of a transaction's [`Facts`] byte: its MTI (0: no such
/// transaction, 1–14: one of the first 14 MTIs met, 15: another).
const MTI_BITS: u8 = 0x0f;
const OTHER_MTI: u8 = 0x0f;
/// A journal entry names it.
const NAMED: u8 = 0x10;
/// It moved money (approved, with legs): its state, 1 AUTHORIZED, 2 CLEARED, 3 REVERSED.
const MOVED_SHIFT: u8 = 5;
const MOVED_BITS: u8 = 0x60;

/// One byte per transaction id: what the journal pass and the last checks
/// need of each transaction (50 MB for 50 million).
struct Facts {
    bytes: ByNumber<u8>,
    mtis: Vec<String>,
}

/// A transaction's MTI as [`Facts`] know it.
enum Mti<'a> {
    Missing,
    Known(&'a str),
    /// Not among the MTIs kept: read the transaction again.
    Other,
}

impl Facts {
    fn new() -> Facts {
        Facts {
            bytes: ByNumber::new(),
            mtis: Vec::new(),
        }
    }

    fn record(&mut self, txn: &Txn, moved: Option<TxnState>) {
        let code = match self.mtis.iter().position(|m| *m == txn.mti) {
            Some(i) => i as u8 + 1,
            None if self.mtis.len() < usize::from(OTHER_MTI - 1) => {
                self.mtis.push(txn.mti.clone());
                self.mtis.len() as u8
            }
            None => OTHER_MTI,
        };
        let moved = match moved {
            Some(TxnState::Authorized) => 1,
            Some(TxnState::Cleared) => 2,
            Some(TxnState::Reversed) => 3,
            Some(TxnState::None) | None => 0,
        };
        let slot = self.bytes.slot(txn.id);
        *slot = (*slot & NAMED) | code | (moved << MOVED_SHIFT);
    }

    fn exists(&self, id: u64) -> bool {
        self.bytes.get(id) & MTI_BITS != 0
    }

    fn name(&mut self, id: u64) {
        *self.bytes.slot(id) |= NAMED;
    }

    fn mti(&self, id: u64) -> Mti<'_> {
        match self.bytes.get(id) & MTI_BITS {
            0 => Mti::Missing,
            OTHER_MTI => Mti::Other,
            code => Mti::Known(&self.mtis[usize::from(code) - 1]),
        }
    }

    /// Transactions that moved money but no journal entry names, with their state.
    fn moved_unnamed(&self) -> impl Iterator<Item = (u64, TxnState)> + '_ {
        self.bytes.iter().filter_map(|(id, b)| {
            if b & MTI_BITS == 0 || b & NAMED != 0 {
                return None;
            }
            match (b & MOVED_BITS) >> MOVED_SHIFT {
                1 => Some((id, TxnState::Authorized)),
                2 => Some((id, TxnState::Cleared)),
                3 => Some((id, TxnState::Reversed)),
                _ => None,
            }
        })
    }
}

/// Numbers in ascending runs ("3, 5-9"): the first [`SHOWN_RANGES`] kept,
/// the rest counted.
#[derive(Default)]
struct Ranges {
    kept: Vec<(u64, u64)>,
    /// The run being extended once `kept` is full.
    open: Option<(u64, u64)>,
    /// Runs closed after `kept` was full.
    more: u64,
}

impl Ranges {
    fn add(&mut self, from: u64, to: u64) {
        if let Some(open) = &mut self.open {
            if from <= open.1.saturating_add(1) && from >= open.0 {
                open.1 = open.1.max(to);
            } else if from > open.1 {
                self.more += 1;
                *open = (from, to);
            }
            // (A number below the kept runs once they are full is not shown.)
            return;
        }
        let full = self.kept.len() >= SHOWN_RANGES;
        match self.kept.last_mut() {
            Some(last) if from >= last.0 && from <= last.1.saturating_add(1) => {
                last.1 = last.1.max(to);
            }
            Some(last) if from < last.0 => {
                // Out of order (rare): insert and merge.
                self.kept.push((from, to));
                self.kept.sort_unstable();
                let mut merged: Vec<(u64, u64)> = Vec::with_capacity(self.kept.len());
                for (a, b) in self.kept.drain(..) {
                    match merged.last_mut() {
                        Some(m) if a <= m.1.saturating_add(1) => m.1 = m.1.max(b),
                        _ => merged.push((a, b)),
                    }
                }
                self.kept = merged;
            }
            _ if full => self.open = Some((from, to)),
            _ => self.kept.push((from, to)),
        }
    }

    /// Takes `n` out of the kept runs (a number found after all).
    fn remove(&mut self, n: u64) {
        if let Some(i) = self.kept.iter().position(|(a, b)| *a <= n && n <= *b) {
            let (a, b) = self.kept[i];
            self.kept.remove(i);
            if n < b {
                self.kept.insert(i, (n + 1, b));
            }
            if a < n {
                self.kept.insert(i, (a, n - 1));
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.kept.is_empty() && self.open.is_none()
    }
}

impl fmt::Display for Ranges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (a, b)) in self.kept.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            if a == b {
                write!(f, "{a}")?;
            } else {
                write!(f, "{a}-{b}")?;
            }
        }
        let more = self.more + u64::from(self.open.is_some());
        match more {
            0 => Ok(()),
            1 => f.write_str(" and 1 more range"),
            n => write!(f, " and {n} more ranges"),
        }
    }
}

// ---------------------------------------------------------------------------
// The index check.

/// A multiset of index entries: the wrapping sum of their hashes and their number.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct Digest {
    sum: u64,
    count: i64,
}

/// The entries each index should hold (from the transactions) against
/// those it holds, by index and bucket of transaction ids.
struct IndexCheck {
    hasher: foldhash::quality::RandomState,
    buckets: [ByNumber<Digest>; 6],
    implied: [u64; 6],
    found: [u64; 6],
    unnumbered: [u64; 6],
}

/// Which index (position in `index::ALL`) a key belongs to.
fn index_of(key: &[u8]) -> Option<usize> {
    index::ALL.iter().position(|p| key.starts_with(p))
}

/// The transaction an entry of index `i` names.
fn holder(i: usize, key: &[u8], value: &[u8]) -> Option<u64> {
    if index::ALL[i] == index::BY_KEY {
        index::id_in(value)
    } else {
        index::id_of(key)
    }
}

/// What an entry of index `i` is, by ids only: the balance or card of a
/// history entry, the expiry of a hold; never a key's content.
fn describe(i: usize, key: &[u8]) -> String {
    let prefix = index::ALL[i];
    let rest = &key[prefix.len()..];
    let name = || {
        let len = usize::from(u16::from_be_bytes([*rest.first()?, *rest.get(1)?]));
        rest.get(2..2 + len)
            .map(|n| String::from_utf8_lossy(n).into_owned())
    };
    let detail = match prefix {
        p if p == index::HOLDS => rest
            .get(..20)
            .map(|ms| format!(", expiring at {}", String::from_utf8_lossy(ms))),
        p if p == index::BY_BALANCE => name().map(|b| format!(", balance {b}")),
        p if p == index::BY_CARD => name().map(|c| format!(", card {c}")),
        _ => None,
    };
    let index = INDEX_NAMES[i];
    match detail {
        // "hb/ (history by balance, balance b-1)"
        Some(d) => format!("{}{d})", &index[..index.len() - 1]),
        None => index.to_string(),
    }
}

impl IndexCheck {
    fn new() -> IndexCheck {
        IndexCheck {
            hasher: foldhash::quality::RandomState::default(),
            buckets: std::array::from_fn(|_| ByNumber::new()),
            implied: [0; 6],
            found: [0; 6],
            unnumbered: [0; 6],
        }
    }

    fn hash(&self, key: &[u8], value: &[u8]) -> u64 {
        self.hasher.hash_one((key, value))
    }

    /// The entries transaction `id` implies.
    fn implied(&mut self, id: u64, entries: &[index::Entry]) {
        for (key, value) in entries {
            let Some(i) = index_of(key) else { continue };
            let h = self.hash(key, value);
            self.implied[i] += 1;
            let d = self.buckets[i].slot(id / BUCKET);
            d.sum = d.sum.wrapping_add(h);
            d.count += 1;
        }
    }

    /// An entry read from index `i`.
    fn found(&mut self, i: usize, key: &[u8], value: &[u8]) {
        self.found[i] += 1;
        let Some(id) = holder(i, key, value) else {
            self.unnumbered[i] += 1;
            return;
        };
        let h = self.hash(key, value);
        let d = self.buckets[i].slot(id / BUCKET);
        d.sum = d.sum.wrapping_sub(h);
        d.count -= 1;
    }

    /// The buckets of index `i` where the two sides differ, in order.
    fn disagreeing(&self, i: usize) -> Vec<u64> {
        let mut out: Vec<u64> = self.buckets[i]
            .iter()
            .filter(|(_, d)| *d != Digest::default())
            .map(|(b, _)| b)
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

// ---------------------------------------------------------------------------
// The check.

/// A decreasing posting to a balance's available amount that left it below zero.
struct BelowZero {
    seq: u64,
    txn: Option<u64>,
}

/// The runs below zero of one balance since it was last at or above zero:
/// the first 10 kept (a warning shows them), the rest counted.
#[derive(Default)]
struct Runs {
    shown: Vec<BelowZero>,
    more: usize,
}

/// True when a transaction's message was decided against the funds (a
/// request, not an advice, completion or reversal): its postings may not
/// take a balance below zero.
fn decided_against_funds(mti: &str, kind: EntryKind) -> bool {
    let class = mti.get(1..4);
    matches!(
        (class, kind),
        (Some("100"), EntryKind::Hold) | (Some("200"), EntryKind::Debit)
    )
}

/// Everything but transactions and journal entries: read whole (they are few).
#[derive(Default)]
struct Small {
    programs: BTreeMap<String, Program>,
    users: BTreeMap<String, User>,
    balances: BTreeMap<String, Balance>,
    cards: BTreeMap<String, Card>,
}

struct Checker<'a, S: Store> {
    store: &'a S,
    page: usize,
    report: Report,
    small: Small,
    next_txn: u64,
    next_journal: u64,
    facts: Facts,
    /// What the AUTHORIZED transactions hold, by balance.
    held_by_txns: HashMap<String, Decimal>,
    /// Transactions whose original has a higher id (checked after the pass).
    later_originals: Vec<(u64, u64)>,
    /// Without indexes on disk: the first transaction of each idempotency key's hash.
    key_hashes: Option<(foldhash::quality::RandomState, HashMap<u64, u64>)>,
    index: Option<IndexCheck>,
}

/// Checks every record of a stopped store and reports each violation by id.
pub fn verify(store: &impl Store) -> Result<Report, StoreError> {
    verify_in_pages(store, PAGE)
}

/// [`verify`], reading transactions, journal entries and index entries
/// `page` records at a time.
pub fn verify_in_pages<S: Store>(store: &S, page: usize) -> Result<Report, StoreError> {
    let mut report = Report::default();
    let small = read_small(store, &mut report)?;
    check_small(&small, &mut report);
    let next_txn = counter(&mut report, store, "next_txn")?;
    let next_journal = counter(&mut report, store, "next_journal")?;
    let layout = store.get(&keys::key(keys::META, "layout"))?;
    // The indexes are checked when they are current: written up to these
    // counters (`engine::index::MARK`), not left behind by a version that
    // kept them in memory.
    let mark = store.get(&keys::key(keys::META, crate::engine::index::MARK))?;
    let current =
        mark.as_deref() == Some(crate::engine::index::mark(next_txn, next_journal).as_slice());
    let indexed = layout.as_deref() == Some(INDEXED_LAYOUT) && current;
    let mut checker = Checker {
        store,
        page,
        report,
        small,
        next_txn,
        next_journal,
        facts: Facts::new(),
        held_by_txns: HashMap::new(),
        later_originals: Vec::new(),
        key_hashes: (!indexed).then(|| (Default::default(), HashMap::new())),
        index: indexed.then(IndexCheck::new),
    };
    checker.transactions()?;
    let (available, held, below_zero) = checker.journal()?;
    checker.balances(&available, &held, below_zero);
    for (id, state) in checker.facts.moved_unnamed().collect::<Vec<_>>() {
        checker.report.error(format!(
            "transaction {id}: approved and {state:?} with money moved, but no journal entry names it"
        ));
    }
    match layout.as_deref() {
        Some(INDEXED_LAYOUT) if current => checker.indexes()?,
        Some(INDEXED_LAYOUT) => checker.report.warning(
            "the transaction indexes are not current (m/indexed does not match the counters: a version of antaca without indexes on disk ran on this store since), so they were not checked; `antaca serve` builds them again at its next start"
                .into(),
        ),
        None if checker.report.counts.txns == 0 => {
            // No transaction, no index entry (any one is stale).
            checker.index = Some(IndexCheck::new());
            checker.indexes()?;
        }
        None => checker.report.warning(format!(
            "the transaction indexes are absent (a layout 1 store: no m/layout), so they were not checked; `antaca serve` builds them at its next start ({} transactions)",
            checker.report.counts.txns
        )),
        Some(_) => checker.report.error(
            "m/layout is not a layout this version knows (2): the transaction indexes were not checked"
                .into(),
        ),
    }
    Ok(checker.report)
}

fn read_small(store: &impl Store, report: &mut Report) -> Result<Small, StoreError> {
    let mut small = Small::default();
    for (k, v) in store.scan_prefix(keys::PROGRAM)? {
        if let Some(p) = read::<Program>(report, &k, &v) {
            small.programs.insert(p.id.clone(), p);
        }
    }
    for (k, v) in store.scan_prefix(keys::USER)? {
        if let Some(u) = read::<User>(report, &k, &v) {
            small.users.insert(u.id.clone(), u);
        }
    }
    for (k, v) in store.scan_prefix(keys::BALANCE)? {
        if let Some(b) = read_record::<Balance>(report, &k, &v) {
            if keys::key(keys::BALANCE, &b.id) != k {
                report.error(format!(
                    "record {} holds balance {}",
                    String::from_utf8_lossy(&k),
                    b.id
                ));
            }
            small.balances.insert(b.id.clone(), b);
        }
    }
    for (k, v) in store.scan_prefix(keys::CARD)? {
        if let Some(c) = read::<Card>(report, &k, &v) {
            small.cards.insert(c.id.clone(), c);
        }
    }
    report.counts.programs = small.programs.len();
    report.counts.users = small.users.len();
    report.counts.balances = small.balances.len();
    report.counts.cards = small.cards.len();
    Ok(small)
}

/// Programs, users, balances and cards reference what exists.
fn check_small(small: &Small, report: &mut Report) {
    let Small {
        programs,
        users,
        balances,
        cards,
    } = small;
    for p in programs.values() {
        if let Some(b) = &p.partner_balance {
            if !balances.contains_key(b) {
                report.error(format!(
                    "program {}: its partner balance {b} does not exist",
                    p.id
                ));
            }
        }
    }
    for u in users.values() {
        if !programs.contains_key(&u.program) {
            report.error(format!(
                "user {}: its program {} does not exist",
                u.id, u.program
            ));
        }
    }
    for b in balances.values() {
        if crate::domain::money::Currency::from_alpha(&b.currency).is_none() {
            report.error(format!("balance {}: unknown currency", b.id));
        }
        match &b.owner {
            BalanceOwner::User(u) if !users.contains_key(u) => {
                report.error(format!("balance {}: its user {u} does not exist", b.id));
            }
            BalanceOwner::PartnerCredit(p) | BalanceOwner::PartnerDeposit(p)
                if !programs.contains_key(p) =>
            {
                report.error(format!("balance {}: its program {p} does not exist", b.id));
            }
            _ => {}
        }
        if b.held < Decimal::ZERO {
            report.error(format!(
                "balance {}: held is negative ({} {})",
                b.id, b.held, b.currency
            ));
        }
    }
    let mut by_pan_hash: HashMap<&str, &str> = HashMap::new();
    for c in cards.values() {
        if !balances.contains_key(&c.balance) {
            report.error(format!(
                "card {}: its balance {} does not exist",
                c.id, c.balance
            ));
        }
        if !programs.contains_key(&c.program) {
            report.error(format!(
                "card {}: its program {} does not exist",
                c.id, c.program
            ));
        }
        if c.pan_hash.len() != 64 || hex::decode(&c.pan_hash).is_err() {
            report.error(format!("card {}: its PAN hash is malformed", c.id));
        }
        if let Some(other) = by_pan_hash.insert(c.pan_hash.as_str(), c.id.as_str()) {
            report.error(format!(
                "cards {other} and {}: the same PAN hash (one PAN, two cards)",
                c.id
            ));
        }
    }
}

type Sums = HashMap<String, Decimal>;

impl<S: Store> Checker<'_, S> {
    /// "txn N (MTI)", or "txn N" when it does not exist.
    fn txn_label(&self, id: Option<u64>) -> String {
        match id {
            None => "no transaction".into(),
            Some(id) => match self.facts.mti(id) {
                Mti::Missing => format!("txn {id}"),
                Mti::Known(mti) => format!("txn {id} ({mti})"),
                Mti::Other => match read_txn(self.store, id) {
                    Some(t) => format!("txn {id} ({})", t.mti),
                    None => format!("txn {id}"),
                },
            },
        }
    }

    /// The pass over the transactions: each one on its own, what it holds
    /// by balance, its facts, and the index entries it implies.
    fn transactions(&mut self) -> Result<(), StoreError> {
        let store = self.store;
        prefix_pages(store, keys::TXN, self.page, |page| {
            for (k, v) in page {
                if let Some(t) = read_record::<Txn>(&mut self.report, &k, &v) {
                    if keys::numbered(keys::TXN, t.id) != k {
                        self.report.error(format!(
                            "record {} holds transaction {}",
                            String::from_utf8_lossy(&k),
                            t.id
                        ));
                    }
                    self.transaction(&t);
                }
            }
            Ok(())
        })?;
        for (id, original) in std::mem::take(&mut self.later_originals) {
            if !self.facts.exists(original) {
                self.report.error(format!(
                    "transaction {id}: its original {original} does not exist"
                ));
            }
        }
        Ok(())
    }

    fn transaction(&mut self, t: &Txn) {
        let report = &mut self.report;
        let small = &self.small;
        report.counts.txns += 1;
        // Holds agree with AUTHORIZED transactions.
        if t.state == TxnState::Authorized {
            report.counts.open_holds += 1;
            if t.held <= Decimal::ZERO {
                report.error(format!(
                    "transaction {}: AUTHORIZED but holds {}",
                    t.id, t.held
                ));
            }
            if t.legs.is_empty() {
                report.error(format!("transaction {}: AUTHORIZED without legs", t.id));
            }
            for leg in &t.legs {
                *self.held_by_txns.entry(leg.balance.clone()).or_default() += t.held;
            }
        } else if !t.held.is_zero() {
            report.error(format!(
                "transaction {}: {:?} but still holds {}",
                t.id, t.state, t.held
            ));
        }
        if t.id == 0 || t.id >= self.next_txn {
            report.error(format!(
                "transaction {}: id not below m/next_txn ({})",
                t.id, self.next_txn
            ));
        }
        let moved = t.outcome == Outcome::Approved
            && matches!(
                t.state,
                TxnState::Authorized | TxnState::Cleared | TxnState::Reversed
            )
            && !t.legs.is_empty();
        if t.outcome != Outcome::Approved && !t.legs.is_empty() {
            report.error(format!(
                "transaction {}: declined ({}) but has legs",
                t.id,
                t.outcome.name()
            ));
        }
        if let Some(original) = t.original {
            if original >= t.id {
                self.later_originals.push((t.id, original));
            } else if !self.facts.exists(original) {
                report.error(format!(
                    "transaction {}: its original {original} does not exist",
                    t.id
                ));
            }
        }
        if let Some(card) = &t.card {
            if !small.cards.contains_key(card) {
                report.error(format!(
                    "transaction {}: its card {card} does not exist",
                    t.id
                ));
            }
        }
        for leg in &t.legs {
            if !small.balances.contains_key(&leg.balance) {
                report.error(format!(
                    "transaction {}: its leg's balance {} does not exist",
                    t.id, leg.balance
                ));
            }
        }
        // Idempotency keys: with the indexes on disk, the `k/` index proves
        // them unique (one entry per key, checked below); without, a map of
        // their hashes (a layout 1 store kept them all in memory anyway).
        if let Some((hasher, first_of)) = &mut self.key_hashes {
            let h = hasher.hash_one(t.key.as_str());
            match first_of.get(&h) {
                None => {
                    first_of.insert(h, t.id);
                }
                Some(&first) => {
                    if read_txn(self.store, first).is_some_and(|f| f.key == t.key) {
                        report.error(format!(
                            "transactions {first} and {}: the same idempotency key",
                            t.id
                        ));
                    }
                }
            }
        }
        if let Some(check) = &mut self.index {
            let card_balance = t
                .card
                .as_ref()
                .and_then(|c| small.cards.get(c))
                .map(|c| c.balance.as_str());
            check.implied(t.id, &index::entries(t, card_balance));
        }
        self.facts.record(t, moved.then_some(t.state));
    }

    /// The pass over the journal: balanced, gap-free, in the currency of
    /// what it posts to; returns the sums of its postings by balance and
    /// the runs below zero.
    fn journal(&mut self) -> Result<(Sums, Sums, HashMap<String, Runs>), StoreError> {
        let store = self.store;
        let last = self.next_journal.saturating_sub(1);
        let mut available = Sums::new();
        let mut held = Sums::new();
        let mut below_zero: HashMap<String, Runs> = HashMap::new();
        let mut missing = Ranges::default();
        let mut beyond = Ranges::default();
        // The last sequence number found under its own key: those come in
        // order, so a gap between two of them is a run of missing entries.
        let mut placed = 0u64;
        // Entries under another key than their own (each one an error).
        let mut misplaced: BTreeSet<u64> = BTreeSet::new();
        prefix_pages(store, keys::JOURNAL, self.page, |page| {
            for (k, v) in page {
                self.report.counts.journal_entries += 1;
                let Some(entry) = read_record::<JournalEntry>(&mut self.report, &k, &v) else {
                    continue;
                };
                let seq = entry.seq;
                if keys::numbered(keys::JOURNAL, seq) == k {
                    let gap_end = seq.saturating_sub(1).min(last);
                    if seq > placed.saturating_add(1) && placed < gap_end {
                        missing.add(placed + 1, gap_end);
                    }
                    placed = placed.max(seq);
                    if seq == 0 || seq > last {
                        beyond.add(seq, seq);
                    }
                } else {
                    self.report.error(format!(
                        "record {} holds journal entry {seq}",
                        String::from_utf8_lossy(&k)
                    ));
                    if !misplaced.insert(seq) {
                        self.report
                            .error(format!("journal entry {seq} appears twice"));
                    }
                }
                self.journal_entry(&entry, &mut available, &mut held, &mut below_zero);
            }
            Ok(())
        })?;
        if placed < last {
            missing.add(placed + 1, last);
        }
        for seq in misplaced {
            let own = keys::numbered(keys::JOURNAL, seq);
            let there = store
                .get(&own)?
                .and_then(|v| crate::engine::record::decode::<JournalEntry>(&own, &v).ok());
            if there.is_some_and(|e| e.seq == seq) {
                self.report
                    .error(format!("journal entry {seq} appears twice"));
            }
            if seq == 0 || seq > last {
                beyond.add(seq, seq);
            } else {
                missing.remove(seq);
            }
        }
        let next_journal = self.next_journal;
        if !missing.is_empty() {
            self.report.error(format!(
                "journal entries missing (m/next_journal is {next_journal}): {missing}"
            ));
        }
        if !beyond.is_empty() {
            self.report.error(format!(
                "journal entries outside 1..{next_journal} (m/next_journal is {next_journal}): {beyond}"
            ));
        }
        Ok((available, held, below_zero))
    }

    fn journal_entry(
        &mut self,
        entry: &JournalEntry,
        available: &mut Sums,
        held: &mut Sums,
        below_zero: &mut HashMap<String, Runs>,
    ) {
        let seq = entry.seq;
        if !entry.balances() {
            let sum: Decimal = entry.postings.iter().map(|p| p.amount).sum();
            self.report.error(format!(
                "journal entry {seq}: postings sum to {sum} {}, not zero",
                entry.currency
            ));
        }
        if entry.postings.is_empty() {
            self.report
                .error(format!("journal entry {seq}: no postings"));
        }
        if let Some(id) = entry.txn {
            if self.facts.exists(id) {
                self.facts.name(id);
            } else {
                self.report.error(format!(
                    "journal entry {seq}: its transaction {id} does not exist"
                ));
            }
        }
        for posting in &entry.postings {
            let (id, sums, is_available) = match &posting.account {
                Account::Available(id) => (id, &mut *available, true),
                Account::Held(id) => (id, &mut *held, false),
                _ => continue,
            };
            match self.small.balances.get(id) {
                None => self.report.error(format!(
                    "journal entry {seq}: posts to balance {id}, which does not exist"
                )),
                Some(b) if b.currency != entry.currency => self.report.error(format!(
                    "journal entry {seq}: in {} but posts to balance {id} in {}",
                    entry.currency, b.currency
                )),
                Some(_) => {}
            }
            // (No key allocated per posting for a balance already summed.)
            let sum = if let Some(sum) = sums.get_mut(id) {
                *sum += posting.amount;
                *sum
            } else {
                sums.insert(id.clone(), posting.amount);
                posting.amount
            };
            if !is_available {
                continue;
            }
            if sum >= Decimal::ZERO {
                if let Some(runs) = below_zero.get_mut(id) {
                    runs.shown.clear();
                    runs.more = 0;
                }
            } else if posting.amount < Decimal::ZERO {
                let runs = below_zero.entry(id.clone()).or_default();
                if runs.shown.len() < 10 {
                    runs.shown.push(BelowZero {
                        seq,
                        txn: entry.txn,
                    });
                } else {
                    runs.more += 1;
                }
                let decided = entry.txn.is_some_and(|t| match self.facts.mti(t) {
                    Mti::Missing => false,
                    Mti::Known(mti) => decided_against_funds(mti, entry.kind),
                    Mti::Other => read_txn(self.store, t)
                        .is_some_and(|t| decided_against_funds(&t.mti, entry.kind)),
                });
                if decided {
                    let label = self.txn_label(entry.txn);
                    self.report.error(format!(
                        "journal entry {seq}: {label} took balance {id} below zero ({sum}), though only forced postings (advices, completions, reversals) may",
                    ));
                }
            }
        }
    }

    /// Balances are the journal's projection; holds agree with AUTHORIZED transactions.
    fn balances(&mut self, available: &Sums, held: &Sums, mut below_zero: HashMap<String, Runs>) {
        let small = std::mem::take(&mut self.small);
        for b in small.balances.values() {
            let posted = available.get(&b.id).copied().unwrap_or_default();
            if posted != b.available {
                self.report.error(format!(
                    "balance {}: available is {} {} but its journal postings sum to {posted}",
                    b.id, b.available, b.currency
                ));
            }
            let posted = held.get(&b.id).copied().unwrap_or_default();
            if posted != b.held {
                self.report.error(format!(
                    "balance {}: held is {} {} but its journal postings sum to {posted}",
                    b.id, b.held, b.currency
                ));
            }
            let holds = self.held_by_txns.get(&b.id).copied().unwrap_or_default();
            if holds != b.held {
                self.report.error(format!(
                    "balance {}: held is {} {} but the AUTHORIZED transactions on it hold {holds}",
                    b.id, b.held, b.currency
                ));
            }
            if b.available < Decimal::ZERO {
                let runs = below_zero.remove(&b.id).unwrap_or_default();
                let shown: Vec<String> = runs
                    .shown
                    .iter()
                    .map(|r| format!("{} in entry {}", self.txn_label(r.txn), r.seq))
                    .collect();
                let kind = match b.owner {
                    BalanceOwner::User(_) => "user balance",
                    BalanceOwner::PartnerCredit(_) => "partner credit balance",
                    BalanceOwner::PartnerDeposit(_) => "partner deposit balance",
                };
                self.report.warning(format!(
                    "{kind} {} is below zero ({} {}) through forced postings: {}{}",
                    b.id,
                    b.available,
                    b.currency,
                    if shown.is_empty() {
                        "none recorded".to_string()
                    } else {
                        shown.join(", ")
                    },
                    if runs.more > 0 {
                        format!(" and {} more", runs.more)
                    } else {
                        String::new()
                    }
                ));
            }
        }
        self.small = small;
    }

    /// The pass over the indexes: every entry read once and taken off its
    /// bucket's digest; then the counts, and the buckets that disagree
    /// itemized (read again).
    fn indexes(&mut self) -> Result<(), StoreError> {
        let Some(mut check) = self.index.take() else {
            return Ok(());
        };
        let store = self.store;
        for (i, prefix) in index::ALL.iter().enumerate() {
            prefix_pages(store, prefix, self.page, |page| {
                for (k, v) in &page {
                    check.found(i, k, v);
                }
                Ok(())
            })?;
        }
        self.report.counts.index_entries = check.found.iter().sum::<u64>() as usize;
        let mut itemized: [Vec<u64>; 6] = Default::default();
        for (i, name) in INDEX_NAMES.iter().enumerate() {
            if check.found[i] != check.implied[i] {
                self.report.error(format!(
                    "index {name} has {} entries but the transactions imply {}",
                    check.found[i], check.implied[i]
                ));
            }
            if check.unnumbered[i] > 0 {
                self.report.error(format!(
                    "index {name}: {} entries name no transaction",
                    check.unnumbered[i]
                ));
            }
            let mut bad = check.disagreeing(i);
            if bad.len() > ITEMIZED_BUCKETS {
                self.report.error(format!(
                    "index {name}: {} more ranges of {BUCKET} transaction ids disagree with the transactions (not itemized)",
                    bad.len() - ITEMIZED_BUCKETS
                ));
                bad.truncate(ITEMIZED_BUCKETS);
            }
            itemized[i] = bad;
        }
        if itemized.iter().any(|b| !b.is_empty()) {
            self.itemize(&itemized)?;
        }
        Ok(())
    }

    /// Names what differs in the disagreeing buckets: each transaction's
    /// missing or wrong entries (read with `get`), then each index's stale
    /// entries (one more pass over that index).
    fn itemize(&mut self, itemized: &[Vec<u64>; 6]) -> Result<(), StoreError> {
        let store = self.store;
        let mut masks: BTreeMap<u64, u8> = BTreeMap::new();
        for (i, buckets) in itemized.iter().enumerate() {
            for b in buckets {
                *masks.entry(*b).or_default() |= 1 << i;
            }
        }
        let mut expected: [HashSet<Vec<u8>>; 6] = Default::default();
        let mut holds: HashMap<u64, (TxnState, Option<u64>)> = HashMap::new();
        let mut txns_in = |page: Vec<Pair>| -> Result<(), StoreError> {
            for (k, v) in page {
                let Ok(txn) = crate::engine::record::decode::<Txn>(&k, &v) else {
                    continue; // reported by the first pass
                };
                let Some(&mask) = masks.get(&(txn.id / BUCKET)) else {
                    continue;
                };
                holds.insert(txn.id, (txn.state, txn.hold_expires_ms));
                let card_balance = txn
                    .card
                    .as_ref()
                    .and_then(|c| self.small.cards.get(c))
                    .map(|c| c.balance.as_str());
                for (key, value) in index::entries(&txn, card_balance) {
                    let Some(i) = index_of(&key) else { continue };
                    if mask & (1 << i) == 0 {
                        continue;
                    }
                    match store.get(&key)? {
                        None => self.report.error(format!(
                            "transaction {}: its entry in index {} is missing",
                            txn.id,
                            describe(i, &key)
                        )),
                        Some(found) if found != value && index::ALL[i] != index::BY_KEY => {
                            self.report.error(format!(
                                "transaction {}: its entry in index {} holds an unexpected value",
                                txn.id,
                                describe(i, &key)
                            ));
                        }
                        Some(found) if found != value => {
                            let other = index::id_in(&found);
                            match other {
                                Some(other)
                                    if read_txn(store, other).is_some_and(|o| o.key == txn.key) =>
                                {
                                    self.report.error(format!(
                                        "transactions {} and {}: the same idempotency key",
                                        other.min(txn.id),
                                        other.max(txn.id)
                                    ));
                                }
                                Some(other) => self.report.error(format!(
                                    "transaction {}: its entry in index {} names transaction {other}",
                                    txn.id,
                                    describe(i, &key)
                                )),
                                None => self.report.error(format!(
                                    "transaction {}: its entry in index {} names no transaction",
                                    txn.id,
                                    describe(i, &key)
                                )),
                            }
                        }
                        Some(_) => {}
                    }
                    expected[i].insert(key);
                }
            }
            Ok(())
        };
        for bucket in masks.keys() {
            let start = keys::numbered(keys::TXN, bucket * BUCKET);
            let end = keys::numbered(keys::TXN, (bucket + 1).saturating_mul(BUCKET));
            pages(store, &start, &end, self.page, &mut txns_in)?;
        }
        for (i, buckets) in itemized.iter().enumerate() {
            if buckets.is_empty() {
                continue;
            }
            let buckets: HashSet<u64> = buckets.iter().copied().collect();
            prefix_pages(store, index::ALL[i], self.page, |page| {
                for (k, v) in page {
                    let Some(id) = holder(i, &k, &v) else {
                        continue; // counted as naming no transaction
                    };
                    if !buckets.contains(&(id / BUCKET)) || expected[i].contains(&k) {
                        continue;
                    }
                    let what = describe(i, &k);
                    let why = match holds.get(&id) {
                        None => format!("transaction {id}, which does not exist"),
                        Some((state, _))
                            if index::ALL[i] == index::HOLDS && *state != TxnState::Authorized =>
                        {
                            format!("transaction {id}, which is {state:?}, not AUTHORIZED")
                        }
                        Some(_) if index::ALL[i] == index::HOLDS => {
                            format!("transaction {id}, whose hold has another expiry")
                        }
                        Some(_) => format!("transaction {id}, which does not hold it"),
                    };
                    self.report
                        .error(format!("index {what}: a stale entry names {why}"));
                }
                Ok(())
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_runs_and_count_what_they_do_not_show() {
        let mut r = Ranges::default();
        r.add(3, 3);
        r.add(5, 7);
        r.add(8, 9);
        assert_eq!(r.to_string(), "3, 5-9");
        r.remove(6);
        assert_eq!(r.to_string(), "3, 5, 7-9");
        r.add(1, 1);
        assert_eq!(r.to_string(), "1, 3, 5, 7-9");
        let mut many = Ranges::default();
        for n in 0..(SHOWN_RANGES as u64 + 5) {
            many.add(n * 10, n * 10);
            many.add(n * 10 + 1, n * 10 + 1);
        }
        assert!(many.to_string().ends_with(" and 5 more ranges"), "{many}");
        assert!(!many.is_empty());
    }

    #[test]
    fn numbers_far_past_the_end_go_to_the_map() {
        let mut n: ByNumber<u8> = ByNumber::new();
        *n.slot(3) = 1;
        *n.slot(u64::MAX) = 2;
        *n.slot(1 << 40) = 3;
        assert_eq!(n.dense.len(), 4);
        assert_eq!(
            (n.get(3), n.get(u64::MAX), n.get(1 << 40), n.get(7)),
            (1, 2, 3, 0)
        );
        let mut values: Vec<(u64, u8)> = n.iter().filter(|(_, v)| *v != 0).collect();
        values.sort_unstable();
        assert_eq!(values, vec![(3, 1), (1 << 40, 3), (u64::MAX, 2)]);
    }

    #[test]
    fn an_entry_is_described_by_ids_only() {
        let key = index::named(index::BY_CARD, "c-1", 7);
        assert_eq!(describe(5, &key), "hc/ (history by card, card c-1)");
        let key = index::hold(1_700, 7);
        assert_eq!(
            describe(3, &key),
            "h/ (open holds, expiring at 00000000000000001700)"
        );
        let key = index::by_key("0100|600001|000123|1205101112|SIM00001");
        assert_eq!(describe(0, &key), "k/ (idempotency keys)");
    }

    #[test]
    fn pages_read_every_record_once_whatever_the_page() {
        let mut store = crate::store::MemoryStore::new();
        let mut batch = crate::store::WriteBatch::default();
        for n in 0..25u64 {
            batch.put(keys::numbered(keys::TXN, n), vec![1]);
            batch.put(keys::numbered(keys::JOURNAL, n), vec![2]);
        }
        batch.put(b"u".to_vec(), vec![3]);
        store.commit(batch).expect("commit");
        for page in [1, 2, 7, 25, 10_000] {
            let mut seen = Vec::new();
            prefix_pages(&store, keys::TXN, page, |p| {
                assert!(p.len() <= page);
                seen.extend(p.into_iter().map(|(k, _)| k));
                Ok(())
            })
            .expect("pages");
            let want: Vec<Vec<u8>> = (0..25).map(|n| keys::numbered(keys::TXN, n)).collect();
            assert_eq!(seen, want, "page {page}");
        }
    }
}
