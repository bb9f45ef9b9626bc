//! The transaction indexes on disk: which keys a transaction holds, so that
//! the writer finds a message's duplicate, its original, an orphan reversal,
//! the holds that expire and a card's or balance's history without keeping
//! any of them in memory.
//!
//! Every index entry belongs to exactly one transaction, so a change of a
//! transaction is a set difference of its entries (what to put, what to
//! delete) and its undo is the inverse. The layout, one prefix per index
//! (`store::keys`):
//!
//! | prefix | key | value | lookup |
//! |---|---|---|---|
//! | `k/` | idempotency key | id (8 bytes, big-endian) | exact `get` |
//! | `o/` | original key (length-prefixed), id | empty | first in a `range` |
//! | `x/` | orphan key (length-prefixed), id | empty | first in a `range` |
//! | `h/` | hold expiry, id | empty | `range` up to now |
//! | `hb/` | balance id (length-prefixed), id | empty | `range`, newest first |
//! | `hc/` | card id (length-prefixed), id | empty | `range`, newest first |
//!
//! Numbers are 20 zero-padded digits, as in every other key of the store
//! (`keys::numbered`). A name is preceded by its length (2 bytes) so that no
//! name's entries fall under another name's prefix (an acquirer chooses the
//! terminal id inside an original key; an administrator the balance id).
//! "First" means the lowest id: the first message to take an original key
//! is the original, as it was with the index in memory.

use crate::domain::model::{Txn, TxnState};
use crate::store::keys;

/// Idempotency keys.
pub const BY_KEY: &[u8] = b"k/";
/// Original keys (what field 90/56 names).
pub const BY_ORIGINAL: &[u8] = b"o/";
/// Orphan reversals by their original's orphan key.
pub const ORPHANS: &[u8] = b"x/";
/// Open holds by expiry.
pub const HOLDS: &[u8] = b"h/";
/// History by balance.
pub const BY_BALANCE: &[u8] = b"hb/";
/// History by card.
pub const BY_CARD: &[u8] = b"hc/";

/// Every index prefix (for tools that check or rebuild them).
pub const ALL: [&[u8]; 6] = [BY_KEY, BY_ORIGINAL, ORPHANS, HOLDS, BY_BALANCE, BY_CARD];

/// An index entry: key and value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// The exact key of an idempotency key's entry.
pub fn by_key(key: &str) -> Vec<u8> {
    keys::key(BY_KEY, key)
}

/// The prefix every entry of `name` under `index` starts with.
pub fn prefix(index: &[u8], name: &str) -> Vec<u8> {
    let len = u16::try_from(name.len()).unwrap_or(u16::MAX);
    let mut k = Vec::with_capacity(index.len() + 2 + name.len() + 20);
    k.extend_from_slice(index);
    k.extend_from_slice(&len.to_be_bytes());
    // A name longer than 64 KiB is cut: it cannot come from a message.
    k.extend_from_slice(&name.as_bytes()[..usize::from(len)]);
    k
}

/// The entry of transaction `id` under `name`.
pub fn named(index: &[u8], name: &str, id: u64) -> Vec<u8> {
    let mut k = prefix(index, name);
    append_number(&mut k, id);
    k
}

/// The entry of a hold that expires at `expires_ms`.
pub fn hold(expires_ms: u64, id: u64) -> Vec<u8> {
    let mut k = keys::numbered(HOLDS, expires_ms);
    append_number(&mut k, id);
    k
}

/// The first key after every hold entry that expires at or before `now_ms`.
pub fn holds_until(now_ms: u64) -> Vec<u8> {
    keys::numbered(HOLDS, now_ms.saturating_add(1))
}

/// The smallest key above every key that starts with `prefix`, for the end
/// of a `range` (`None`: no end).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return end;
        }
    }
    vec![u8::MAX; prefix.len() + 1]
}

/// The transaction id at the end of an entry's key (its last 20 digits).
pub fn id_of(key: &[u8]) -> Option<u64> {
    let digits = key.get(key.len().checked_sub(20)?..)?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The id an idempotency key's entry holds.
pub fn id_in(value: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(value.try_into().ok()?))
}

fn append_number(k: &mut Vec<u8>, n: u64) {
    let numbered = keys::numbered(b"", n);
    k.extend_from_slice(&numbered);
}

/// The index entries `txn` holds; `card_balance` is its card's balance
/// (the history of a balance lists the transactions of its cards).
pub fn entries(txn: &Txn, card_balance: Option<&str>) -> Vec<Entry> {
    let mut out = Vec::with_capacity(6);
    out.push((by_key(&txn.key), txn.id.to_be_bytes().to_vec()));
    out.push((named(BY_ORIGINAL, &txn.original_key, txn.id), Vec::new()));
    if let Some(orphan) = &txn.orphan_of {
        out.push((named(ORPHANS, orphan, txn.id), Vec::new()));
    }
    if let (TxnState::Authorized, Some(expires)) = (txn.state, txn.hold_expires_ms) {
        out.push((hold(expires, txn.id), Vec::new()));
    }
    let mut balances: Vec<&str> = txn.legs.iter().map(|l| l.balance.as_str()).collect();
    if let Some(b) = card_balance {
        balances.push(b);
    }
    balances.sort_unstable();
    balances.dedup();
    for balance in balances {
        out.push((named(BY_BALANCE, balance, txn.id), Vec::new()));
    }
    if let Some(card) = &txn.card {
        out.push((named(BY_CARD, card, txn.id), Vec::new()));
    }
    out
}

/// The name under `m/` of the mark that says the indexes are current: the
/// counters (`next_txn`, `next_journal`) of the last change set that wrote
/// them. A version of antaca without indexes on disk (layout 1) moves the
/// counters but not the mark, so a store it ran on since is found out at
/// the next open and its indexes are built again.
pub const MARK: &str = "indexed";

/// The mark's value for these counters.
pub fn mark(next_txn: u64, next_journal: u64) -> Vec<u8> {
    format!("{next_txn}:{next_journal}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_never_falls_under_another_names_prefix() {
        // "a" and "a/…" share bytes, not a length prefix.
        let a = prefix(BY_CARD, "a");
        let longer = named(BY_CARD, "a/00000000000000000001", 7);
        assert!(!longer.starts_with(&a));
        assert!(named(BY_CARD, "a", 7).starts_with(&a));
        assert_eq!(id_of(&named(BY_CARD, "a", 7)), Some(7));
    }

    #[test]
    fn holds_sort_by_expiry_then_id_and_the_bound_includes_now() {
        assert!(hold(5, 9) < hold(6, 1));
        assert!(hold(6, 1) < holds_until(6));
        assert!(hold(7, 0) >= holds_until(6));
        assert_eq!(id_of(&hold(6, 42)), Some(42));
    }

    #[test]
    fn the_end_of_a_prefix_is_above_all_its_keys() {
        let p = prefix(BY_BALANCE, "b-1");
        let end = prefix_end(&p);
        assert!(named(BY_BALANCE, "b-1", u64::MAX) < end);
        assert!(named(BY_BALANCE, "b-2", 0) >= end);
        assert_eq!(prefix_end(&[1, 255]), vec![2]);
        assert_eq!(id_in(&9u64.to_be_bytes()), Some(9));
        assert_eq!(id_in(b"short"), None);
    }
}
