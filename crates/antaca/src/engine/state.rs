//! The engine's in-memory state and the change set of one group commit:
//! every mutation goes through [`Changes`], which remembers the first value
//! it replaced (to undo a failed commit) and which records are dirty (to write
//! each once per batch).

use super::record;
use crate::domain::model::{Balance, Card, JournalEntry, Program, Txn, TxnState, User};
use crate::store::{keys, StoreError, WriteBatch};
use std::collections::{BTreeMap, BTreeSet};

/// The engine's hash maps: foldhash, seeded at random per process (keys such
/// as idempotency keys come from outside), several times cheaper than SipHash.
pub type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::quality::RandomState>;

/// Everything the engine decides on, loaded from the store at start.
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
    /// Transactions by id, boxed: a B-tree node moves its values on every
    /// insert, and a transaction is some 400 bytes.
    pub txns: BTreeMap<u64, Box<Txn>>,
    /// Transaction id by idempotency key.
    pub txn_by_key: ShardedIndex,
    /// Transaction id by original key (what field 90/56 names).
    pub txn_by_original_key: ShardedIndex,
    /// Reversals that arrived before their original, by the original's orphan key.
    pub orphan_reversals: ShardedIndex,
    /// Active holds by (expiry ms, txn id).
    pub active_holds: BTreeSet<(u64, u64)>,
    /// Management records (JSON) by key, e.g. `admin/alice`, `kyc/u-1`, `outbox/…`.
    pub records: BTreeMap<String, Vec<u8>>,
    /// Next transaction id.
    pub next_txn: u64,
    /// Next journal sequence.
    pub next_journal: u64,
}

/// A string-keyed index of transaction ids, kept by a 128-bit keyed digest
/// of the key rather than the key itself, and split into 256 hash tables.
///
/// The digest makes an entry 32 bytes with nothing to clone, compare or
/// rehash; a hash table that grows moves all its entries at once, and a
/// shard moves a 256th of them (with millions of transactions one table
/// stalled the writer for hundreds of milliseconds).
///
/// Two keys may share a digest (by chance with probability 2⁻¹²⁸; the seeds
/// are random per process, but foldhash does not promise that a peer cannot
/// find collisions). So the index never believes a digest alone: every
/// method takes `holder`, which tells which key the transaction with a
/// given id holds in this index (`None` when there is no such
/// transaction). A lookup returns an id only when its transaction holds the
/// key; a key whose digest slot belongs to another live transaction's key
/// goes to a small overflow map of whole keys instead of taking the slot.
pub struct ShardedIndex {
    shards: Vec<std::collections::HashMap<u128, u64, DigestHasher>>,
    seeds: (
        foldhash::quality::RandomState,
        foldhash::quality::RandomState,
    ),
    /// Keys whose digest slot another key holds.
    overflow: HashMap<String, u64>,
    len: usize,
    /// Every key gets the same digest (tests of the overflow).
    #[cfg(test)]
    collide: bool,
}

/// Hashes a digest by folding it: its bits are already uniform.
#[derive(Clone, Copy, Default)]
struct DigestHasher(u64);

impl std::hash::Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u128 digests are hashed; fold anything else all the same.
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0 ^ u64::from_le_bytes(word)).rotate_left(29);
        }
    }

    fn write_u128(&mut self, digest: u128) {
        self.0 ^= digest as u64 ^ (digest >> 64) as u64;
    }
}

impl std::hash::BuildHasher for DigestHasher {
    type Hasher = DigestHasher;

    fn build_hasher(&self) -> DigestHasher {
        DigestHasher(0)
    }
}

impl Default for ShardedIndex {
    fn default() -> Self {
        ShardedIndex {
            shards: (0..256).map(|_| Default::default()).collect(),
            seeds: Default::default(),
            overflow: HashMap::default(),
            len: 0,
            #[cfg(test)]
            collide: false,
        }
    }
}

impl ShardedIndex {
    fn digest(&self, key: &str) -> (usize, u128) {
        use std::hash::BuildHasher;
        #[cfg(test)]
        if self.collide {
            return (0, 0);
        }
        let high = self.seeds.0.hash_one(key);
        let low = self.seeds.1.hash_one(key);
        let digest = (u128::from(high) << 64) | u128::from(low);
        ((high >> 56) as usize % self.shards.len(), digest)
    }

    /// The id of the transaction that holds `key`.
    pub fn get<'a>(&self, key: &str, holder: impl Fn(u64) -> Option<&'a str>) -> Option<u64> {
        let (shard, digest) = self.digest(key);
        if let Some(&id) = self.shards[shard].get(&digest) {
            if holder(id) == Some(key) {
                return Some(id);
            }
        }
        if self.overflow.is_empty() {
            return None;
        }
        self.overflow.get(key).copied()
    }

    /// Sets the id under `key`, replacing the id of a transaction that held it.
    pub fn insert<'a>(&mut self, key: &str, id: u64, holder: impl Fn(u64) -> Option<&'a str>) {
        let (shard, digest) = self.digest(key);
        match self.shards[shard].entry(digest) {
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(id);
                self.len += 1;
            }
            std::collections::hash_map::Entry::Occupied(mut slot) => {
                let other = *slot.get();
                match holder(other) {
                    // Another live transaction's key has this digest.
                    Some(held) if other != id && held != key => {
                        if self.overflow.insert(key.to_string(), id).is_none() {
                            self.len += 1;
                        }
                    }
                    // The key itself, or a slot its transaction left.
                    _ => {
                        slot.insert(id);
                    }
                }
            }
        }
    }

    /// Sets the id under `key` unless a transaction holds it already.
    pub fn insert_if_absent<'a>(
        &mut self,
        key: &str,
        id: u64,
        holder: impl Fn(u64) -> Option<&'a str> + Copy,
    ) {
        if self.get(key, holder).is_none() {
            self.insert(key, id, holder);
        }
    }

    /// Removes `key` if it names `id`.
    pub fn remove(&mut self, key: &str, id: u64) {
        if self.overflow.get(key) == Some(&id) {
            self.overflow.remove(key);
            self.len -= 1;
            return;
        }
        let (shard, digest) = self.digest(key);
        if self.shards[shard].get(&digest) == Some(&id) {
            self.shards[shard].remove(&digest);
            self.len -= 1;
        }
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there is no key.
    pub fn is_empty(&self) -> bool {
        self.len == 0
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

    /// A transaction by id.
    pub fn txn(&self, id: u64) -> Option<&Txn> {
        self.txns.get(&id).map(|txn| &**txn)
    }

    /// The transaction whose idempotency key is `key`.
    pub fn txn_by_key(&self, key: &str) -> Option<&Txn> {
        let id = self
            .txn_by_key
            .get(key, |id| self.txn(id).map(|t| t.key.as_str()))?;
        self.txn(id)
    }

    /// The first transaction whose original key (what field 90/56 names) is `key`.
    pub fn txn_by_original_key(&self, key: &str) -> Option<&Txn> {
        let id = self
            .txn_by_original_key
            .get(key, |id| self.txn(id).map(|t| t.original_key.as_str()))?;
        self.txn(id)
    }

    /// The reversal kept under the orphan key `key` until its original arrives.
    pub fn orphan_reversal(&self, key: &str) -> Option<u64> {
        if self.orphan_reversals.is_empty() {
            return None;
        }
        self.orphan_reversals
            .get(key, |id| self.txn(id).and_then(|t| t.orphan_of.as_deref()))
    }

    /// Adds a transaction to the maps and indexes.
    pub fn index_txn(&mut self, txn: Txn) {
        if txn.state == TxnState::Authorized {
            if let Some(expires) = txn.hold_expires_ms {
                self.active_holds.insert((expires, txn.id));
            }
        }
        let txns = &self.txns;
        let held = |id: u64| txns.get(&id).map(|t| &**t);
        if let Some(orphan) = &txn.orphan_of {
            self.orphan_reversals.insert(orphan, txn.id, |id| {
                held(id).and_then(|t| t.orphan_of.as_deref())
            });
        }
        self.txn_by_key
            .insert(&txn.key, txn.id, |id| held(id).map(|t| t.key.as_str()));
        self.txn_by_original_key
            .insert_if_absent(&txn.original_key, txn.id, |id| {
                held(id).map(|t| t.original_key.as_str())
            });
        self.txns.insert(txn.id, Box::new(txn));
    }

    /// Removes a transaction from the maps and indexes.
    pub fn unindex_txn(&mut self, id: u64) -> Option<Txn> {
        let txn = *self.txns.remove(&id)?;
        if let Some(expires) = txn.hold_expires_ms {
            self.active_holds.remove(&(expires, id));
        }
        if let Some(orphan) = &txn.orphan_of {
            self.orphan_reversals.remove(orphan, id);
        }
        self.txn_by_key.remove(&txn.key, id);
        self.txn_by_original_key.remove(&txn.original_key, id);
        Some(txn)
    }
}

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

    /// Replaces (or inserts) a transaction and keeps the indexes right.
    pub fn put_txn(&mut self, state: &mut State, txn: Txn) {
        let id = txn.id;
        let old = match state.txns.get_mut(&id) {
            // A completion or reversal updating its original: the keys stay,
            // so only the hold index can change (no re-indexing of strings).
            Some(existing)
                if existing.key == txn.key
                    && existing.original_key == txn.original_key
                    && existing.orphan_of == txn.orphan_of =>
            {
                if let Some(expires) = existing.hold_expires_ms {
                    state.active_holds.remove(&(expires, id));
                }
                if let (TxnState::Authorized, Some(expires)) = (txn.state, txn.hold_expires_ms) {
                    state.active_holds.insert((expires, id));
                }
                Some(std::mem::replace(&mut **existing, txn))
            }
            _ => {
                let old = state.unindex_txn(id);
                state.index_txn(txn);
                old
            }
        };
        self.txns.entry(id).or_insert(old);
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
                state.txns.get(id).map(|txn| &**txn),
            );
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
        for (id, old) in self.txns {
            state.unindex_txn(id);
            if let Some(txn) = old {
                state.index_txn(txn);
            }
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
}

#[cfg(test)]
mod tests {
    use super::{ShardedIndex, State};
    use crate::domain::model::Txn;
    use std::collections::HashMap;

    /// Transactions with the given idempotency keys, ids from 1.
    fn txns(keys: &[&str]) -> Vec<Txn> {
        keys.iter()
            .zip(1u64..)
            .map(|(key, id)| {
                let mut txn = crate::engine::record::tests::txn();
                txn.id = id;
                txn.key = key.to_string();
                txn.original_key = format!("original of {key}");
                txn.orphan_of = None;
                txn
            })
            .collect()
    }

    #[test]
    fn a_lookup_believes_the_index_only_when_the_transaction_has_the_key() {
        let mut state = State::default();
        let txn = crate::engine::record::tests::txn();
        let (id, key, original_key) = (txn.id, txn.key.clone(), txn.original_key.clone());
        let orphan_of = txn
            .orphan_of
            .clone()
            .expect("the sample is an orphan reversal");
        state.index_txn(txn);
        assert_eq!(state.txn_by_key(&key).map(|t| t.id), Some(id));
        assert_eq!(
            state.txn_by_original_key(&original_key).map(|t| t.id),
            Some(id)
        );
        assert_eq!(state.orphan_reversal(&orphan_of), Some(id));
        // Other keys' slots naming the transaction (as a stale or colliding
        // slot would): the lookups see the transaction holds another key.
        let anyone = |_| Some("a key nobody looks up");
        state.txn_by_key.insert("other key", id, anyone);
        state
            .txn_by_original_key
            .insert("other original", id, anyone);
        state.orphan_reversals.insert("other orphan", id, anyone);
        assert!(state.txn_by_key("other key").is_none());
        assert!(state.txn_by_original_key("other original").is_none());
        assert_eq!(state.orphan_reversal("other orphan"), None);
        assert!(state.unindex_txn(id).is_some());
        assert!(state.txn_by_key(&key).is_none());
        assert!(state.txn_by_original_key(&original_key).is_none());
        assert_eq!(state.orphan_reversal(&orphan_of), None);
    }

    #[test]
    fn keys_that_share_a_digest_are_all_found() {
        let mut state = State::default();
        state.txn_by_key.collide = true;
        state.txn_by_original_key.collide = true;
        let all = txns(&["k1", "k2", "k3"]);
        for txn in all.clone() {
            state.index_txn(txn);
        }
        for txn in &all {
            assert_eq!(state.txn_by_key(&txn.key).map(|t| t.id), Some(txn.id));
            assert_eq!(
                state.txn_by_original_key(&txn.original_key).map(|t| t.id),
                Some(txn.id)
            );
        }
        assert!(state.txn_by_key("k4").is_none());
        assert_eq!(state.txn_by_key.len(), 3);
        // The slot's holder goes; the others stay found, and a new key takes the slot.
        assert!(state.unindex_txn(1).is_some());
        assert!(state.txn_by_key("k1").is_none());
        assert_eq!(state.txn_by_key("k2").map(|t| t.id), Some(2));
        assert_eq!(state.txn_by_key("k3").map(|t| t.id), Some(3));
        let mut k5 = txns(&["k5"]).remove(0);
        k5.id = 5;
        state.index_txn(k5);
        assert_eq!(state.txn_by_key("k5").map(|t| t.id), Some(5));
        assert_eq!(state.txn_by_key("k2").map(|t| t.id), Some(2));
        // An overflowed key goes too, and an undo puts a transaction back.
        let two = state.unindex_txn(2).expect("k2");
        assert!(state.txn_by_key("k2").is_none());
        assert_eq!(state.txn_by_key("k3").map(|t| t.id), Some(3));
        state.index_txn(two);
        assert_eq!(state.txn_by_key("k2").map(|t| t.id), Some(2));
        assert_eq!(state.txn_by_key.len(), 3);
    }

    #[test]
    fn the_sharded_index_behaves_as_one_map() {
        let mut index = ShardedIndex::default();
        let mut holders: HashMap<u64, String> = HashMap::new();
        assert!(index.is_empty());
        for i in 0..1000u64 {
            let key = format!("k{i}");
            index.insert(&key, i, |id| holders.get(&id).map(String::as_str));
            holders.insert(i, key);
        }
        let holder = |id: u64| holders.get(&id).map(String::as_str);
        assert_eq!(index.len(), 1000);
        assert_eq!(index.get("k7", holder), Some(7));
        index.insert_if_absent("k8", 80, holder);
        assert_eq!(index.get("k8", holder), Some(8));
        index.insert_if_absent("new", 1000, |id| holders.get(&id).map(String::as_str));
        holders.insert(1000, "new".into());
        let holder = |id: u64| holders.get(&id).map(String::as_str);
        assert_eq!(index.get("new", holder), Some(1000));
        assert_eq!(index.len(), 1001);
        assert_eq!(index.get("k1000", holder), None);
        index.remove("k9", 8);
        assert_eq!(
            index.get("k9", holder),
            Some(9),
            "only the id it names goes"
        );
        index.remove("k9", 9);
        assert_eq!(index.get("k9", holder), None);
        assert_eq!(index.len(), 1000);
    }
}
