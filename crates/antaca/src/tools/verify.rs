//! Offline consistency check of a stopped store (`antaca verify`): the
//! journal balances and is gap-free, the balances are its projection, holds
//! agree with the transactions that placed them, idempotency records match the
//! journal, and cards point at what exists. Every finding names records by
//! id only: never a PAN, CVV2, PIN or idempotency key.

use crate::domain::model::{
    Account, Balance, BalanceOwner, Card, EntryKind, JournalEntry, Program, Txn, TxnState, User,
};
use crate::domain::outcome::Outcome;
use crate::store::{keys, Backend, DiskStore, Store, StoreConfig, StoreError};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::Path;

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
}

/// What `verify` found: errors (the store is inconsistent) and warnings.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Violations; any one makes the store inconsistent.
    pub errors: Vec<String>,
    /// Allowed but noteworthy states (balances below zero through forced postings).
    pub warnings: Vec<String>,
    /// What was checked.
    pub counts: Counts,
}

impl Report {
    /// True when no error was found (warnings allowed).
    pub fn is_clean(&self) -> bool {
        self.errors.is_empty()
    }

    fn error(&mut self, message: String) {
        self.errors.push(message);
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
            "checked {} programs, {} users, {} balances, {} cards, {} transactions ({} open holds), {} journal entries",
            c.programs, c.users, c.balances, c.cards, c.txns, c.open_holds, c.journal_entries
        )?;
        if !self.errors.is_empty() {
            writeln!(f, "errors ({}):", self.errors.len())?;
            for e in &self.errors {
                writeln!(f, "  error: {e}")?;
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
            writeln!(
                f,
                "FAILED: {} error(s); the store is inconsistent",
                self.errors.len()
            )
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

/// A decreasing posting to a balance's available amount that left it below zero.
struct BelowZero {
    seq: u64,
    txn: Option<u64>,
}

/// True when a transaction's message was decided against the funds (a
/// request, not an advice, completion or reversal): its postings may not
/// take a balance below zero.
fn decided_against_funds(txn: &Txn, kind: EntryKind) -> bool {
    let class = txn.mti.get(1..4);
    matches!(
        (class, kind),
        (Some("100"), EntryKind::Hold) | (Some("200"), EntryKind::Debit)
    )
}

fn ranges(missing: &[u64]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < missing.len() {
        let start = missing[i];
        let mut end = start;
        while i + 1 < missing.len() && missing[i + 1] == end + 1 {
            i += 1;
            end = missing[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(", ")
}

fn txn_label(txns: &BTreeMap<u64, Txn>, id: Option<u64>) -> String {
    match id {
        None => "no transaction".into(),
        Some(id) => match txns.get(&id) {
            Some(t) => format!("txn {id} ({})", t.mti),
            None => format!("txn {id}"),
        },
    }
}

/// Checks every record of a stopped store and reports each violation by id.
pub fn verify(store: &impl Store) -> Result<Report, StoreError> {
    let mut report = Report::default();

    let mut programs: BTreeMap<String, Program> = BTreeMap::new();
    for (k, v) in store.scan_prefix(keys::PROGRAM)? {
        if let Some(p) = read::<Program>(&mut report, &k, &v) {
            programs.insert(p.id.clone(), p);
        }
    }
    let mut users: BTreeMap<String, User> = BTreeMap::new();
    for (k, v) in store.scan_prefix(keys::USER)? {
        if let Some(u) = read::<User>(&mut report, &k, &v) {
            users.insert(u.id.clone(), u);
        }
    }
    let mut balances: BTreeMap<String, Balance> = BTreeMap::new();
    for (k, v) in store.scan_prefix(keys::BALANCE)? {
        if let Some(b) = read_record::<Balance>(&mut report, &k, &v) {
            if keys::key(keys::BALANCE, &b.id) != k {
                report.error(format!(
                    "record {} holds balance {}",
                    String::from_utf8_lossy(&k),
                    b.id
                ));
            }
            balances.insert(b.id.clone(), b);
        }
    }
    let mut cards: BTreeMap<String, Card> = BTreeMap::new();
    for (k, v) in store.scan_prefix(keys::CARD)? {
        if let Some(c) = read::<Card>(&mut report, &k, &v) {
            cards.insert(c.id.clone(), c);
        }
    }
    let next_txn = counter(&mut report, store, "next_txn")?;
    let next_journal = counter(&mut report, store, "next_journal")?;
    let mut txns: BTreeMap<u64, Txn> = BTreeMap::new();
    for (k, v) in store.scan_prefix(keys::TXN)? {
        if let Some(t) = read_record::<Txn>(&mut report, &k, &v) {
            if keys::numbered(keys::TXN, t.id) != k {
                report.error(format!(
                    "record {} holds transaction {}",
                    String::from_utf8_lossy(&k),
                    t.id
                ));
            }
            txns.insert(t.id, t);
        }
    }
    report.counts = Counts {
        programs: programs.len(),
        users: users.len(),
        balances: balances.len(),
        cards: cards.len(),
        txns: txns.len(),
        journal_entries: 0,
        open_holds: txns
            .values()
            .filter(|t| t.state == TxnState::Authorized)
            .count(),
    };

    // Programs, users, balances and cards reference what exists.
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

    // The journal: balanced, gap-free, in the currency of what it posts to.
    let mut seqs: BTreeSet<u64> = BTreeSet::new();
    let mut available: HashMap<String, Decimal> = HashMap::new();
    let mut held: HashMap<String, Decimal> = HashMap::new();
    let mut entries_of_txn: HashMap<u64, usize> = HashMap::new();
    let mut below_zero: HashMap<String, Vec<BelowZero>> = HashMap::new();
    let mut journal_entries = 0;
    for (k, v) in store.scan_prefix(keys::JOURNAL)? {
        journal_entries += 1;
        let Some(entry) = read_record::<JournalEntry>(&mut report, &k, &v) else {
            continue;
        };
        let seq = entry.seq;
        if keys::numbered(keys::JOURNAL, seq) != k {
            report.error(format!(
                "record {} holds journal entry {seq}",
                String::from_utf8_lossy(&k)
            ));
        }
        if !seqs.insert(seq) {
            report.error(format!("journal entry {seq} appears twice"));
        }
        if !entry.balances() {
            let sum: Decimal = entry.postings.iter().map(|p| p.amount).sum();
            report.error(format!(
                "journal entry {seq}: postings sum to {sum} {}, not zero",
                entry.currency
            ));
        }
        if entry.postings.is_empty() {
            report.error(format!("journal entry {seq}: no postings"));
        }
        if let Some(id) = entry.txn {
            if txns.contains_key(&id) {
                *entries_of_txn.entry(id).or_default() += 1;
            } else {
                report.error(format!(
                    "journal entry {seq}: its transaction {id} does not exist"
                ));
            }
        }
        for posting in &entry.postings {
            let (id, sums, is_available) = match &posting.account {
                Account::Available(id) => (id, &mut available, true),
                Account::Held(id) => (id, &mut held, false),
                _ => continue,
            };
            match balances.get(id) {
                None => report.error(format!(
                    "journal entry {seq}: posts to balance {id}, which does not exist"
                )),
                Some(b) if b.currency != entry.currency => report.error(format!(
                    "journal entry {seq}: in {} but posts to balance {id} in {}",
                    entry.currency, b.currency
                )),
                Some(_) => {}
            }
            let sum = sums.entry(id.clone()).or_default();
            *sum += posting.amount;
            if is_available {
                let runs = below_zero.entry(id.clone()).or_default();
                if *sum >= Decimal::ZERO {
                    runs.clear();
                } else if posting.amount < Decimal::ZERO {
                    runs.push(BelowZero {
                        seq,
                        txn: entry.txn,
                    });
                    let decided = entry
                        .txn
                        .and_then(|t| txns.get(&t))
                        .is_some_and(|t| decided_against_funds(t, entry.kind));
                    if decided {
                        report.error(format!(
                            "journal entry {seq}: {} took balance {id} below zero ({sum}), though only forced postings (advices, completions, reversals) may",
                            txn_label(&txns, entry.txn)
                        ));
                    }
                }
            }
        }
    }
    report.counts.journal_entries = journal_entries;
    let last = next_journal.saturating_sub(1);
    let missing: Vec<u64> = (1..=last).filter(|s| !seqs.contains(s)).collect();
    if !missing.is_empty() {
        report.error(format!(
            "journal entries missing (m/next_journal is {next_journal}): {}",
            ranges(&missing)
        ));
    }
    let beyond: Vec<u64> = seqs
        .iter()
        .copied()
        .filter(|s| *s == 0 || *s > last)
        .collect();
    if !beyond.is_empty() {
        report.error(format!(
            "journal entries outside 1..{next_journal} (m/next_journal is {next_journal}): {}",
            ranges(&beyond)
        ));
    }

    // Balances are the journal's projection; holds agree with AUTHORIZED transactions.
    let mut held_by_txns: HashMap<String, Decimal> = HashMap::new();
    for t in txns.values() {
        if t.state == TxnState::Authorized {
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
                *held_by_txns.entry(leg.balance.clone()).or_default() += t.held;
            }
        } else if !t.held.is_zero() {
            report.error(format!(
                "transaction {}: {:?} but still holds {}",
                t.id, t.state, t.held
            ));
        }
    }
    for b in balances.values() {
        let posted = available.get(&b.id).copied().unwrap_or_default();
        if posted != b.available {
            report.error(format!(
                "balance {}: available is {} {} but its journal postings sum to {posted}",
                b.id, b.available, b.currency
            ));
        }
        let posted = held.get(&b.id).copied().unwrap_or_default();
        if posted != b.held {
            report.error(format!(
                "balance {}: held is {} {} but its journal postings sum to {posted}",
                b.id, b.held, b.currency
            ));
        }
        let holds = held_by_txns.get(&b.id).copied().unwrap_or_default();
        if holds != b.held {
            report.error(format!(
                "balance {}: held is {} {} but the AUTHORIZED transactions on it hold {holds}",
                b.id, b.held, b.currency
            ));
        }
        if b.available < Decimal::ZERO {
            let runs = below_zero.remove(&b.id).unwrap_or_default();
            let shown: Vec<String> = runs
                .iter()
                .take(10)
                .map(|r| format!("{} in entry {}", txn_label(&txns, r.txn), r.seq))
                .collect();
            let more = runs.len().saturating_sub(shown.len());
            let kind = match b.owner {
                BalanceOwner::User(_) => "user balance",
                BalanceOwner::PartnerCredit(_) => "partner credit balance",
                BalanceOwner::PartnerDeposit(_) => "partner deposit balance",
            };
            report.warning(format!(
                "{kind} {} is below zero ({} {}) through forced postings: {}{}",
                b.id,
                b.available,
                b.currency,
                if shown.is_empty() {
                    "none recorded".to_string()
                } else {
                    shown.join(", ")
                },
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ));
        }
    }
    // Idempotency records match the journal.
    let mut by_key: HashMap<&str, u64> = HashMap::new();
    for t in txns.values() {
        if t.id == 0 || t.id >= next_txn {
            report.error(format!(
                "transaction {}: id not below m/next_txn ({next_txn})",
                t.id
            ));
        }
        if let Some(first) = by_key.insert(t.key.as_str(), t.id) {
            report.error(format!(
                "transactions {first} and {}: the same idempotency key",
                t.id
            ));
        }
        let moved = t.outcome == Outcome::Approved
            && matches!(
                t.state,
                TxnState::Authorized | TxnState::Cleared | TxnState::Reversed
            )
            && !t.legs.is_empty();
        if moved && !entries_of_txn.contains_key(&t.id) {
            report.error(format!(
                "transaction {}: approved and {:?} with money moved, but no journal entry names it",
                t.id, t.state
            ));
        }
        if t.outcome != Outcome::Approved && !t.legs.is_empty() {
            report.error(format!(
                "transaction {}: declined ({}) but has legs",
                t.id,
                t.outcome.name()
            ));
        }
        if let Some(original) = t.original {
            if !txns.contains_key(&original) {
                report.error(format!(
                    "transaction {}: its original {original} does not exist",
                    t.id
                ));
            }
        }
        if let Some(card) = &t.card {
            if !cards.contains_key(card) {
                report.error(format!(
                    "transaction {}: its card {card} does not exist",
                    t.id
                ));
            }
        }
        for leg in &t.legs {
            if !balances.contains_key(&leg.balance) {
                report.error(format!(
                    "transaction {}: its leg's balance {} does not exist",
                    t.id, leg.balance
                ));
            }
        }
    }
    Ok(report)
}
