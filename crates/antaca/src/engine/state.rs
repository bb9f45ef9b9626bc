//! The engine's in-memory state and the change set of one group commit:
//! every mutation goes through [`Changes`], which remembers the first value
//! it replaced (to undo a failed commit) and which records are dirty (to write
//! each once per batch).

use super::record;
use crate::domain::model::{Balance, Card, JournalEntry, Program, Txn, User};
use crate::store::{keys, StoreError, WriteBatch};
use std::collections::BTreeMap;

/// The engine's hash maps: foldhash, seeded at random per process (keys such
/// as idempotency keys come from outside), several times cheaper than SipHash.
pub type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::quality::RandomState>;

/// Everything the engine decides on. Programs, users, balances, cards and
/// management records are loaded from the store at start; transactions are
/// not: they live on disk with their indexes (`engine::index`), and
/// [`State::txns`] caches the recent ones.
#[derive(Default)]
pub struct State {
    /// Programs by id.
    pub programs: HashMap<String, Program>,
    /// Users by id.
    pub users: HashMap<String, User>,
    /// Balances by id.
    pub balances: HashMap<String, Balance>,
    /// Cards by id.
    pub cards: HashMap<String, Card>,
    /// Card id by keyed PAN hash.
    pub card_by_pan: HashMap<[u8; 32], String>,
    /// Recent transactions (and every one the batch in flight touches).
    pub txns: TxnCache,
    /// Index entries written since the last commit reached the store (the
    /// batch in flight's): lookups read them before the store's.
    pub pending_index: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// False only while the store holds no orphan reversal: a message then
    /// skips the orphan lookup.
    pub orphans_possible: bool,
    /// Management records (JSON) by key, e.g. `admin/alice`, `kyc/u-1`, `outbox/…`.
    pub records: BTreeMap<String, Vec<u8>>,
    /// Next transaction id.
    pub next_txn: u64,
    /// Next journal sequence.
    pub next_journal: u64,
}

/// A bounded cache of transactions by id. Entries are evicted oldest
/// touched first, and only by [`TxnCache::trim`], which the writer calls
/// between batches: a transaction the batch in flight read or wrote stays
/// until the batch is in the store (its undo, its index changes and the
/// next request of the batch read it here).
pub struct TxnCache {
    map: HashMap<u64, (Box<Txn>, u64)>,
    /// Ids in the order they were touched, with the stamp of that touch; an
    /// id touched again later has a stale entry here, skipped on eviction.
    order: std::collections::VecDeque<(u64, u64)>,
    stamp: u64,
    capacity: usize,
}

/// Transactions cached by default (some 600 bytes each).
pub const DEFAULT_TXN_CACHE: usize = 100_000;

impl Default for TxnCache {
    fn default() -> Self {
        TxnCache::with_capacity(DEFAULT_TXN_CACHE)
    }
}

impl TxnCache {
    /// An empty cache that keeps `capacity` transactions between batches.
    pub fn with_capacity(capacity: usize) -> TxnCache {
        TxnCache {
            map: HashMap::default(),
            order: std::collections::VecDeque::new(),
            stamp: 0,
            capacity,
        }
    }

    /// A cached transaction.
    pub fn get(&self, id: u64) -> Option<&Txn> {
        self.map.get(&id).map(|(txn, _)| &**txn)
    }

    /// Caches (or replaces) a transaction, returning the one it replaced.
    pub fn insert(&mut self, txn: Txn) -> Option<Txn> {
        self.stamp += 1;
        let id = txn.id;
        self.order.push_back((id, self.stamp));
        self.map
            .insert(id, (Box::new(txn), self.stamp))
            .map(|(old, _)| *old)
    }

    /// Drops a transaction from the cache.
    pub fn remove(&mut self, id: u64) -> Option<Txn> {
        self.map.remove(&id).map(|(txn, _)| *txn)
    }

    /// Evicts the oldest touched transactions beyond the capacity.
    pub fn trim(&mut self) {
        while self.map.len() > self.capacity {
            let Some((id, stamp)) = self.order.pop_front() else {
                break;
            };
            if self.map.get(&id).is_some_and(|(_, s)| *s == stamp) {
                self.map.remove(&id);
            }
        }
        // Touches of cached entries leave stale slots: compact them away so
        // that the queue stays within a small multiple of the cache.
        if self.order.len() > 2 * self.map.len() + 1024 {
            let map = &self.map;
            self.order
                .retain(|(id, stamp)| map.get(id).is_some_and(|(_, s)| s == stamp));
        }
    }

    /// Empties the cache.
    pub fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
    }

    /// Transactions cached now.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Serialises a record for the store.
pub fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Our records contain no maps with non-string keys, so serialisation cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

/// Reads a stored record.
pub fn decode<T: serde::de::DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes)
        .map_err(|e| StoreError::Corrupt(format!("{}: {e}", String::from_utf8_lossy(key))))
}

impl State {
    /// A management record, if present and readable.
    pub fn record<T: serde::de::DeserializeOwned>(&self, key: &str) -> Option<T> {
        self.records
            .get(key)
            .and_then(|bytes| serde_json::from_slice(bytes).ok())
    }

    /// Every management record whose key starts with `prefix`, in key order.
    pub fn records_under<'a, T: serde::de::DeserializeOwned + 'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a str, T)> + 'a {
        self.records
            .range(prefix.to_string()..)
            .take_while(move |(k, _)| k.starts_with(prefix))
            .filter_map(|(k, v)| serde_json::from_slice(v).ok().map(|t| (k.as_str(), t)))
    }

    /// What the writes not yet in the store did to an index entry:
    /// `Some(value)` (`None` when deleted) if they wrote it, `None` if not.
    pub fn index_entry(&self, key: &[u8]) -> Option<Option<&[u8]>> {
        self.pending_index.get(key).map(Option::as_deref)
    }

    /// The lowest entry under `prefix` the writes not yet in the store put.
    pub fn first_index_entry(&self, prefix: &[u8]) -> Option<&[u8]> {
        self.pending_index
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .find(|(_, after)| after.is_some())
            .map(|(k, _)| k.as_slice())
    }

    /// True when the writes not yet in the store deleted the entry `key`.
    pub fn index_deleted(&self, key: &[u8]) -> bool {
        matches!(self.pending_index.get(key), Some(None))
    }

    /// The balance a card spends from, if the card is known.
    pub fn card_balance(&self, card: Option<&String>) -> Option<&str> {
        card.and_then(|c| self.cards.get(c))
            .map(|c| c.balance.as_str())
    }
}

/// An index entry's value before a batch and after it (`None`: absent).
type IndexChange = (Option<Vec<u8>>, Option<Vec<u8>>);

/// The changes of one batch, applied to [`State`] at once, written by [`Changes::to_batch`]
/// or rolled back by [`Changes::undo`].
#[derive(Default)]
pub struct Changes {
    balances: HashMap<String, Option<Balance>>,
    cards: HashMap<String, Option<Card>>,
    txns: HashMap<u64, Option<Txn>>,
    programs: HashMap<String, Option<Program>>,
    users: HashMap<String, Option<User>>,
    pans: HashMap<[u8; 32], Option<String>>,
    records: HashMap<String, Option<Vec<u8>>>,
    /// Index entries the batch changes, by key.
    index: BTreeMap<Vec<u8>, IndexChange>,
    journal: Vec<JournalEntry>,
    counters: Option<(u64, u64)>,
}

impl Changes {
    /// An empty change set sized for a batch of `requests` requests (each
    /// writes a transaction, a balance or two and a journal entry or two), so
    /// that its maps do not grow, moving their entries, while it fills.
    pub fn for_requests(requests: usize) -> Changes {
        Changes {
            balances: HashMap::with_capacity_and_hasher(requests, Default::default()),
            txns: HashMap::with_capacity_and_hasher(requests, Default::default()),
            journal: Vec::with_capacity(requests),
            ..Changes::default()
        }
    }

    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        self.balances.is_empty()
            && self.cards.is_empty()
            && self.txns.is_empty()
            && self.programs.is_empty()
            && self.users.is_empty()
            && self.journal.is_empty()
            && self.pans.is_empty()
            && self.records.is_empty()
            && self.index.is_empty()
    }

    fn remember_counters(&mut self, state: &State) {
        if self.counters.is_none() {
            self.counters = Some((state.next_txn, state.next_journal));
        }
    }

    /// Takes the next transaction id.
    pub fn next_txn_id(&mut self, state: &mut State) -> u64 {
        self.remember_counters(state);
        let id = state.next_txn;
        state.next_txn += 1;
        id
    }

    /// Appends a journal entry (its sequence is assigned here).
    pub fn journal(&mut self, state: &mut State, mut entry: JournalEntry) {
        assert!(entry.balances(), "journal entry does not balance");
        self.remember_counters(state);
        entry.seq = state.next_journal;
        state.next_journal += 1;
        self.journal.push(entry);
    }

    /// Replaces (or inserts) a balance.
    pub fn put_balance(&mut self, state: &mut State, balance: Balance) {
        let old = state.balances.insert(balance.id.clone(), balance.clone());
        self.balances.entry(balance.id).or_insert(old);
    }

    /// Replaces (or inserts) a card, indexing it by its PAN hash.
    pub fn put_card(&mut self, state: &mut State, card: Card, pan_hash: [u8; 32]) {
        let old_pan = state.card_by_pan.insert(pan_hash, card.id.clone());
        self.pans.entry(pan_hash).or_insert(old_pan);
        let old = state.cards.insert(card.id.clone(), card.clone());
        self.cards.entry(card.id).or_insert(old);
    }

    /// Replaces (or inserts) a program.
    pub fn put_program(&mut self, state: &mut State, program: Program) {
        let old = state.programs.insert(program.id.clone(), program.clone());
        self.programs.entry(program.id).or_insert(old);
    }

    /// Replaces (or inserts) a user.
    pub fn put_user(&mut self, state: &mut State, user: User) {
        let old = state.users.insert(user.id.clone(), user.clone());
        self.users.entry(user.id).or_insert(old);
    }

    /// Replaces (or inserts) a management record.
    pub fn put_record<T: serde::Serialize>(&mut self, state: &mut State, key: &str, value: &T) {
        let old = state.records.insert(key.to_string(), encode(value));
        self.records.entry(key.to_string()).or_insert(old);
    }

    /// Deletes a management record.
    pub fn delete_record(&mut self, state: &mut State, key: &str) {
        let old = state.records.remove(key);
        self.records.entry(key.to_string()).or_insert(old);
    }

    /// Takes the next number of a named sequence kept as a record (`seq/NAME`).
    pub fn next_in_sequence(&mut self, state: &mut State, name: &str) -> u64 {
        let key = format!("seq/{name}");
        let next = state.record::<u64>(&key).unwrap_or(0) + 1;
        self.put_record(state, &key, &next);
        next
    }

    /// Replaces (or inserts) a transaction and changes its index entries.
    /// A transaction updated here must be in the cache (the writer read it
    /// in this batch); one not cached is new (its id was taken in this batch).
    pub fn put_txn(&mut self, state: &mut State, txn: Txn) {
        let id = txn.id;
        let card_balance = state.card_balance(txn.card.as_ref()).map(str::to_owned);
        let new_entries = super::index::entries(&txn, card_balance.as_deref());
        if txn.orphan_of.is_some() {
            state.orphans_possible = true;
        }
        let old = state.txns.insert(txn);
        let old_entries = old.as_ref().map_or_else(Vec::new, |old| {
            let card_balance = state.card_balance(old.card.as_ref());
            super::index::entries(old, card_balance)
        });
        for (key, value) in &old_entries {
            if !new_entries.iter().any(|(k, _)| k == key) {
                self.index_write(state, key, Some(value), None);
            }
        }
        for (key, value) in new_entries {
            if !old_entries.iter().any(|(k, v)| *k == key && *v == value) {
                let before = old_entries.iter().find(|(k, _)| *k == key).map(|(_, v)| v);
                self.index_write(state, &key, before, Some(value));
            }
        }
        self.txns.entry(id).or_insert(old);
    }

    /// Deletes an index entry no transaction justifies (one written before
    /// a restore or by a version that kept other indexes): what a sweep
    /// finds there and cannot act on, so that it is not read again.
    pub fn drop_stale_entry(&mut self, state: &mut State, key: &[u8], value: Vec<u8>) {
        self.index_write(state, key, Some(&value), None);
    }

    fn index_write(
        &mut self,
        state: &mut State,
        key: &[u8],
        before: Option<&Vec<u8>>,
        after: Option<Vec<u8>>,
    ) {
        state.pending_index.insert(key.to_vec(), after.clone());
        match self.index.get_mut(key) {
            Some(slot) => slot.1 = after,
            None => {
                self.index.insert(key.to_vec(), (before.cloned(), after));
            }
        }
    }

    /// The writes that make this change set durable, counters included.
    pub fn to_batch(&self, state: &State) -> WriteBatch {
        let mut batch = WriteBatch::with_capacity(
            self.programs.len()
                + self.users.len()
                + self.balances.len()
                + self.cards.len()
                + self.txns.len()
                + self.journal.len()
                + self.records.len()
                + self.index.len()
                + 2,
        );
        write_records(&mut batch, keys::PROGRAM, &self.programs, |id| {
            state.programs.get(id)
        });
        write_records(&mut batch, keys::USER, &self.users, |id| {
            state.users.get(id)
        });
        for id in self.balances.keys() {
            put_or_delete_record(
                &mut batch,
                keys::key(keys::BALANCE, id),
                state.balances.get(id),
            );
        }
        write_records(&mut batch, keys::CARD, &self.cards, |id| {
            state.cards.get(id)
        });
        for id in self.txns.keys() {
            put_or_delete_record(
                &mut batch,
                keys::numbered(keys::TXN, *id),
                state.txns.get(*id),
            );
        }
        for (key, (_, after)) in &self.index {
            put_or_delete_raw(&mut batch, key.clone(), after.as_ref());
        }
        for entry in &self.journal {
            batch.put(
                keys::numbered(keys::JOURNAL, entry.seq),
                record::encode(entry),
            );
        }
        for key in self.records.keys() {
            put_or_delete_raw(
                &mut batch,
                keys::key(keys::RECORD, key),
                state.records.get(key),
            );
        }
        if self.counters.is_some() {
            put_counters(&mut batch, state.next_txn, state.next_journal);
        }
        batch
    }

    /// The writes that put the store back as it was before [`Changes::to_batch`]
    /// was applied: the old records, and no new journal entries.
    pub fn undo_batch(&self) -> WriteBatch {
        let mut batch = WriteBatch::default();
        write_records(&mut batch, keys::PROGRAM, &self.programs, |id| {
            self.programs.get(id).and_then(Option::as_ref)
        });
        write_records(&mut batch, keys::USER, &self.users, |id| {
            self.users.get(id).and_then(Option::as_ref)
        });
        for (id, old) in &self.balances {
            put_or_delete_record(&mut batch, keys::key(keys::BALANCE, id), old.as_ref());
        }
        write_records(&mut batch, keys::CARD, &self.cards, |id| {
            self.cards.get(id).and_then(Option::as_ref)
        });
        for (id, old) in &self.txns {
            put_or_delete_record(&mut batch, keys::numbered(keys::TXN, *id), old.as_ref());
        }
        for (key, (before, _)) in &self.index {
            put_or_delete_raw(&mut batch, key.clone(), before.as_ref());
        }
        for entry in &self.journal {
            batch.delete(keys::numbered(keys::JOURNAL, entry.seq));
        }
        for (key, old) in &self.records {
            put_or_delete_raw(&mut batch, keys::key(keys::RECORD, key), old.as_ref());
        }
        if let Some((next_txn, next_journal)) = self.counters {
            put_counters(&mut batch, next_txn, next_journal);
        }
        batch
    }

    /// Puts the state back as it was before this change set.
    pub fn undo(self, state: &mut State) {
        for (id, old) in self.balances {
            match old {
                Some(b) => state.balances.insert(id, b),
                None => state.balances.remove(&id),
            };
        }
        for (id, old) in self.cards {
            match old {
                Some(c) => state.cards.insert(id, c),
                None => state.cards.remove(&id),
            };
        }
        for (key, old) in self.records {
            match old {
                Some(v) => state.records.insert(key, v),
                None => state.records.remove(&key),
            };
        }
        for (hash, old) in self.pans {
            match old {
                Some(id) => state.card_by_pan.insert(hash, id),
                None => state.card_by_pan.remove(&hash),
            };
        }
        for (id, old) in self.programs {
            match old {
                Some(p) => state.programs.insert(id, p),
                None => state.programs.remove(&id),
            };
        }
        for (id, old) in self.users {
            match old {
                Some(u) => state.users.insert(id, u),
                None => state.users.remove(&id),
            };
        }
        for key in self.index.keys() {
            state.pending_index.remove(key);
        }
        for (id, old) in self.txns {
            match old {
                Some(txn) => state.txns.insert(txn),
                None => state.txns.remove(id),
            };
        }
        if let Some((next_txn, next_journal)) = self.counters {
            state.next_txn = next_txn;
            state.next_journal = next_journal;
        }
    }
}

fn put_or_delete<T: serde::Serialize>(batch: &mut WriteBatch, key: Vec<u8>, value: Option<&T>) {
    match value {
        Some(v) => batch.put(key, encode(v)),
        None => batch.delete(key),
    }
}

/// Writes, for every id in `changed`, the record `value(id)` returns (or deletes it).
fn write_records<'a, T: serde::Serialize + 'a>(
    batch: &mut WriteBatch,
    prefix: &[u8],
    changed: &HashMap<String, Option<T>>,
    value: impl Fn(&str) -> Option<&'a T>,
) {
    for id in changed.keys() {
        put_or_delete(batch, keys::key(prefix, id), value(id));
    }
}

fn put_or_delete_record<T: record::Record>(
    batch: &mut WriteBatch,
    key: Vec<u8>,
    value: Option<&T>,
) {
    match value {
        Some(v) => batch.put(key, record::encode(v)),
        None => batch.delete(key),
    }
}

fn put_or_delete_raw(batch: &mut WriteBatch, key: Vec<u8>, value: Option<&Vec<u8>>) {
    match value {
        Some(v) => batch.put(key, v.clone()),
        None => batch.delete(key),
    }
}

fn put_counters(batch: &mut WriteBatch, next_txn: u64, next_journal: u64) {
    batch.put(
        keys::key(keys::META, "next_txn"),
        next_txn.to_string().into_bytes(),
    );
    batch.put(
        keys::key(keys::META, "next_journal"),
        next_journal.to_string().into_bytes(),
    );
    // A store with transactions keeps their indexes on disk (layout 2),
    // current up to these counters.
    batch.put(keys::key(keys::META, "layout"), b"2".to_vec());
    batch.put(
        keys::key(keys::META, super::index::MARK),
        super::index::mark(next_txn, next_journal),
    );
}

#[cfg(test)]
mod tests {
    use super::{Changes, State, TxnCache};
    use crate::domain::model::TxnState;
    use crate::engine::index;

    fn txn(id: u64) -> crate::domain::model::Txn {
        let mut txn = crate::engine::record::tests::txn();
        txn.id = id;
        txn.key = format!("key {id}");
        txn.original_key = format!("original {id}");
        txn.orphan_of = None;
        txn
    }

    #[test]
    fn the_cache_evicts_the_oldest_touched_only_when_trimmed() {
        let mut cache = TxnCache::with_capacity(2);
        for id in 1..=4 {
            cache.insert(txn(id));
        }
        assert_eq!(cache.len(), 4, "nothing goes before the batch ends");
        // 1 is touched again: 2 and 3 are now the oldest.
        cache.insert(txn(1));
        cache.trim();
        assert_eq!(cache.len(), 2);
        assert!(cache.get(1).is_some() && cache.get(4).is_some());
        assert!(cache.get(2).is_none() && cache.get(3).is_none());
        for _ in 0..10_000 {
            cache.insert(txn(4));
            cache.trim();
        }
        assert!(
            cache.order.len() <= 2 * cache.len() + 1024,
            "stale slots are compacted"
        );
    }

    #[test]
    fn a_change_writes_the_index_difference_and_its_undo_the_inverse() {
        let mut state = State::default();
        let mut changes = Changes::default();
        let mut auth = txn(1);
        auth.state = TxnState::Authorized;
        auth.hold_expires_ms = Some(50);
        changes.put_txn(&mut state, auth.clone());
        let hold = index::hold(50, 1);
        assert_eq!(state.index_entry(&hold), Some(Some(&[][..])));
        assert_eq!(
            state.index_entry(&index::by_key("key 1")),
            Some(Some(&1u64.to_be_bytes()[..]))
        );
        let mut next = Changes::default();
        auth.state = TxnState::Cleared;
        next.put_txn(&mut state, auth);
        // Only the hold's entry changes.
        assert_eq!(next.index.len(), 1);
        assert!(state.index_deleted(&hold));
        let undo = next.undo_batch();
        assert!(undo
            .ops
            .iter()
            .any(|(k, v)| *k == hold && v.as_deref() == Some(&[][..])));
        next.undo(&mut state);
        assert_eq!(
            state.txns.get(1).map(|t| t.state),
            Some(TxnState::Authorized)
        );
        assert_eq!(
            state.index_entry(&hold),
            None,
            "the undo leaves it to the store"
        );
    }
}
