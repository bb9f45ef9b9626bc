//! The stored form of the records every authorization writes: its
//! transaction (`t/`), its journal entry (`j/`) and the balances it moves
//! (`b/`). They are a compact binary encoding rather than JSON: JSON spent
//! a tenth of the writer's time on formatting and made each authorization
//! about 1.2 KB on disk, which the log, its `fdatasync` and the checkpoint
//! into sled all pay for again. Everything else (cards, programs, users,
//! management records) stays JSON: it is written far less often.
//!
//! ```text
//! record: version u8 (1), then the fields in declaration order
//! u64, u32, u16: little-endian
//! string: length u32, UTF-8 bytes
//! option: 0 (none) or 1 then the value
//! decimal: rust_decimal's 16-byte serialisation (flags, lo, mid, hi)
//! list: count u32, then the items
//! ```
//!
//! Decoding checks every length against what is left and every tag and
//! decimal against what it may be, so corrupt bytes are an error, never a
//! panic or a huge allocation. A record that starts with `{` is JSON, as
//! stores written before this encoding hold them, and is read as such.

use crate::domain::model::{
    Account, Balance, BalanceOwner, EntryKind, JournalEntry, Leg, Posting, Txn, TxnState,
};
use crate::domain::outcome::Outcome;
use crate::store::StoreError;
use rust_decimal::Decimal;

const VERSION: u8 = 1;

/// A record with a binary stored form (and the JSON form stores written
/// before it still read as).
pub trait Record: Sized + serde::de::DeserializeOwned {
    /// Appends the stored form to `out`.
    fn encode_to(&self, out: &mut Vec<u8>);
    /// Reads the stored form; `None` when the bytes are not one.
    fn decode_from(reader: &mut Reader<'_>) -> Option<Self>;
}

/// The stored form of `record`.
pub fn encode<T: Record>(record: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.push(VERSION);
    record.encode_to(&mut out);
    out
}

/// Reads a stored record; `key` names it in the error.
pub fn decode<T: Record>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    let corrupt = || {
        StoreError::Corrupt(format!(
            "{}: not a version {VERSION} record",
            String::from_utf8_lossy(key)
        ))
    };
    let (&version, rest) = bytes.split_first().ok_or_else(corrupt)?;
    if version == b'{' {
        // Written as JSON by an earlier version: read as such (it is
        // rewritten in binary the next time it changes).
        return serde_json::from_slice(bytes).map_err(|_| corrupt());
    }
    if version != VERSION {
        return Err(corrupt());
    }
    let mut reader = Reader { rest };
    let record = T::decode_from(&mut reader).ok_or_else(corrupt)?;
    if !reader.rest.is_empty() {
        return Err(corrupt());
    }
    Ok(record)
}

/// What is left of a record being read.
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.rest.len() < n {
            return None;
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.array()?))
    }

    fn string(&mut self) -> Option<String> {
        let len = usize::try_from(self.u32()?).ok()?;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).ok()
    }

    fn decimal(&mut self) -> Option<Decimal> {
        let bytes: [u8; 16] = self.array()?;
        let flags = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        // Only the sign bit and a scale of at most 28 may be set.
        let scale = (flags >> 16) & 0xff;
        if flags & 0x7f00_ffff != 0 || scale > 28 {
            return None;
        }
        Some(Decimal::deserialize(bytes))
    }

    #[allow(clippy::option_option)] // outer: the bytes were readable; inner: the value was present.
    fn option<T>(&mut self, read: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        match self.u8()? {
            0 => Some(None),
            1 => read(self).map(Some),
            _ => None,
        }
    }

    fn list<T>(&mut self, mut read: impl FnMut(&mut Self) -> Option<T>) -> Option<Vec<T>> {
        let count = usize::try_from(self.u32()?).ok()?;
        // Each item takes at least one byte: a corrupt count cannot allocate much.
        let mut items = Vec::with_capacity(count.min(self.rest.len()));
        for _ in 0..count {
            items.push(read(self)?);
        }
        Some(items)
    }
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Fields come from frames of a few kilobytes at most.
    put_u32(out, u32::try_from(s.len()).unwrap_or(u32::MAX));
    out.extend_from_slice(s.as_bytes());
}

fn put_option<T>(out: &mut Vec<u8>, value: Option<T>, put: impl FnOnce(&mut Vec<u8>, T)) {
    match value {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            put(out, v);
        }
    }
}

fn put_opt_str(out: &mut Vec<u8>, value: Option<&String>) {
    put_option(out, value, |out, s| put_str(out, s));
}

fn put_list<T>(out: &mut Vec<u8>, items: &[T], mut put: impl FnMut(&mut Vec<u8>, &T)) {
    put_u32(out, u32::try_from(items.len()).unwrap_or(u32::MAX));
    for item in items {
        put(out, item);
    }
}

fn put_decimal(out: &mut Vec<u8>, d: Decimal) {
    out.extend_from_slice(&d.serialize());
}

fn put_account(out: &mut Vec<u8>, account: &Account) {
    match account {
        Account::Available(id) => {
            out.push(0);
            put_str(out, id);
        }
        Account::Held(id) => {
            out.push(1);
            put_str(out, id);
        }
        Account::Network => out.push(2),
        Account::Funding => out.push(3),
        Account::PartnerUsage(id) => {
            out.push(4);
            put_str(out, id);
        }
    }
}

fn read_account(r: &mut Reader<'_>) -> Option<Account> {
    Some(match r.u8()? {
        0 => Account::Available(r.string()?),
        1 => Account::Held(r.string()?),
        2 => Account::Network,
        3 => Account::Funding,
        4 => Account::PartnerUsage(r.string()?),
        _ => return None,
    })
}

/// Outcomes are stored by their tag from the one outcome table
/// (`domain::outcome::OUTCOMES`); `Locked` carries its reason in the next byte.
fn put_outcome(out: &mut Vec<u8>, outcome: Outcome) {
    out.push(outcome.tag());
    if let Outcome::Locked(reason) = outcome {
        out.push(reason);
    }
}

fn read_outcome(r: &mut Reader<'_>) -> Option<Outcome> {
    match Outcome::from_tag(r.u8()?)? {
        Outcome::Locked(_) => Some(Outcome::Locked(r.u8()?)),
        outcome => Some(outcome),
    }
}

const STATES: [TxnState; 4] = [
    TxnState::Authorized,
    TxnState::Cleared,
    TxnState::Reversed,
    TxnState::None,
];

fn state_tag(state: TxnState) -> u8 {
    match state {
        TxnState::Authorized => 0,
        TxnState::Cleared => 1,
        TxnState::Reversed => 2,
        TxnState::None => 3,
    }
}

const KINDS: [EntryKind; 7] = [
    EntryKind::Opening,
    EntryKind::Reload,
    EntryKind::Hold,
    EntryKind::Release,
    EntryKind::Capture,
    EntryKind::Debit,
    EntryKind::Credit,
];

fn kind_tag(kind: EntryKind) -> u8 {
    match kind {
        EntryKind::Opening => 0,
        EntryKind::Reload => 1,
        EntryKind::Hold => 2,
        EntryKind::Release => 3,
        EntryKind::Capture => 4,
        EntryKind::Debit => 5,
        EntryKind::Credit => 6,
    }
}

fn by_tag<T: Copy>(table: &[T], tag: u8) -> Option<T> {
    table.get(usize::from(tag)).copied()
}

impl Record for Txn {
    fn encode_to(&self, out: &mut Vec<u8>) {
        put_u64(out, self.id);
        put_str(out, &self.key);
        put_str(out, &self.original_key);
        put_str(out, &self.mti);
        put_opt_str(out, self.card.as_ref());
        put_opt_str(out, self.pan_masked.as_ref());
        put_opt_str(out, self.processing_code.as_ref());
        put_u64(out, self.amount_minor);
        put_option(out, self.currency, |out, c| {
            out.extend_from_slice(&c.to_le_bytes());
        });
        put_outcome(out, self.outcome);
        put_opt_str(out, self.approval_code.as_ref());
        put_opt_str(out, self.additional_amounts.as_ref());
        out.push(state_tag(self.state));
        put_list(out, &self.legs, |out, leg| {
            put_str(out, &leg.balance);
            put_account(out, &leg.counterpart);
        });
        put_decimal(out, self.held);
        put_decimal(out, self.charged);
        put_option(out, self.original, put_u64);
        put_option(out, self.hold_expires_ms, put_u64);
        put_u64(out, self.at_ms);
        put_opt_str(out, self.mcc.as_ref());
        put_opt_str(out, self.merchant_id.as_ref());
        put_opt_str(out, self.terminal.as_ref());
        put_u64(out, self.fingerprint);
        put_opt_str(out, self.orphan_of.as_ref());
    }

    fn decode_from(r: &mut Reader<'_>) -> Option<Txn> {
        Some(Txn {
            id: r.u64()?,
            key: r.string()?,
            original_key: r.string()?,
            mti: r.string()?,
            card: r.option(Reader::string)?,
            pan_masked: r.option(Reader::string)?,
            processing_code: r.option(Reader::string)?,
            amount_minor: r.u64()?,
            currency: r.option(Reader::u16)?,
            outcome: read_outcome(r)?,
            approval_code: r.option(Reader::string)?,
            additional_amounts: r.option(Reader::string)?,
            state: by_tag(&STATES, r.u8()?)?,
            legs: r.list(|r| {
                Some(Leg {
                    balance: r.string()?,
                    counterpart: read_account(r)?,
                })
            })?,
            held: r.decimal()?,
            charged: r.decimal()?,
            original: r.option(Reader::u64)?,
            hold_expires_ms: r.option(Reader::u64)?,
            at_ms: r.u64()?,
            mcc: r.option(Reader::string)?,
            merchant_id: r.option(Reader::string)?,
            terminal: r.option(Reader::string)?,
            fingerprint: r.u64()?,
            orphan_of: r.option(Reader::string)?,
        })
    }
}

impl Record for JournalEntry {
    fn encode_to(&self, out: &mut Vec<u8>) {
        put_u64(out, self.seq);
        put_u64(out, self.at_ms);
        out.push(kind_tag(self.kind));
        put_option(out, self.txn, put_u64);
        put_str(out, &self.currency);
        put_list(out, &self.postings, |out, posting| {
            put_account(out, &posting.account);
            put_decimal(out, posting.amount);
        });
    }

    fn decode_from(r: &mut Reader<'_>) -> Option<JournalEntry> {
        Some(JournalEntry {
            seq: r.u64()?,
            at_ms: r.u64()?,
            kind: by_tag(&KINDS, r.u8()?)?,
            txn: r.option(Reader::u64)?,
            currency: r.string()?,
            postings: r.list(|r| {
                Some(Posting {
                    account: read_account(r)?,
                    amount: r.decimal()?,
                })
            })?,
        })
    }
}

impl Record for Balance {
    fn encode_to(&self, out: &mut Vec<u8>) {
        put_str(out, &self.id);
        let (tag, owner) = match &self.owner {
            BalanceOwner::User(id) => (0, id),
            BalanceOwner::PartnerCredit(id) => (1, id),
            BalanceOwner::PartnerDeposit(id) => (2, id),
        };
        out.push(tag);
        put_str(out, owner);
        put_str(out, &self.currency);
        put_decimal(out, self.available);
        put_decimal(out, self.held);
        put_option(out, self.low_level, put_decimal);
    }

    fn decode_from(r: &mut Reader<'_>) -> Option<Balance> {
        Some(Balance {
            id: r.string()?,
            owner: match r.u8()? {
                0 => BalanceOwner::User(r.string()?),
                1 => BalanceOwner::PartnerCredit(r.string()?),
                2 => BalanceOwner::PartnerDeposit(r.string()?),
                _ => return None,
            },
            currency: r.string()?,
            available: r.decimal()?,
            held: r.decimal()?,
            low_level: r.option(Reader::decimal)?,
        })
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::str::FromStr;

    /// A transaction with every field set (the state's tests use it too).
    pub(in crate::engine) fn txn() -> Txn {
        Txn {
            id: 42,
            key: "0100|600001|000123|1205101112|SIM00001".into(),
            original_key: "0100|000123|1205101112|600001".into(),
            mti: "0100".into(),
            card: Some("c-1".into()),
            pan_masked: Some("535522******0012".into()),
            processing_code: Some("000000".into()),
            amount_minor: 12_345,
            currency: Some(978),
            outcome: Outcome::Locked(7),
            approval_code: Some("A1B2C3".into()),
            additional_amounts: None,
            state: TxnState::Authorized,
            legs: vec![
                Leg {
                    balance: "b-1".into(),
                    counterpart: Account::Network,
                },
                Leg {
                    balance: "pc-1".into(),
                    counterpart: Account::PartnerUsage("demo-credit".into()),
                },
            ],
            held: Decimal::from_str("123.45").expect("decimal"),
            charged: Decimal::from_str("-0.001").expect("decimal"),
            original: Some(7),
            hold_expires_ms: Some(1_700_000_000_000),
            at_ms: 1_699_000_000_000,
            mcc: Some("5411".into()),
            merchant_id: None,
            terminal: Some("SIM00001".into()),
            fingerprint: u64::MAX - 3,
            orphan_of: Some("000123|1205101112|600001".into()),
        }
    }

    fn entry() -> JournalEntry {
        JournalEntry {
            seq: 9,
            at_ms: 1_699_000_000_000,
            kind: EntryKind::Capture,
            txn: None,
            currency: "EUR".into(),
            postings: vec![
                Posting {
                    account: Account::Held("b-1".into()),
                    amount: Decimal::from_str("-10.50").expect("decimal"),
                },
                Posting {
                    account: Account::Funding,
                    amount: Decimal::from_str("10.50").expect("decimal"),
                },
            ],
        }
    }

    #[test]
    fn records_round_trip_and_are_smaller_than_json() {
        let t = txn();
        let bytes = encode(&t);
        assert_eq!(decode::<Txn>(b"t/1", &bytes).expect("txn"), t);
        let json = serde_json::to_vec(&t).expect("json");
        assert!(
            bytes.len() * 2 < json.len(),
            "{} vs {}",
            bytes.len(),
            json.len()
        );
        let e = entry();
        assert_eq!(
            decode::<JournalEntry>(b"j/1", &encode(&e)).expect("entry"),
            e
        );
    }

    fn balances() -> Vec<Balance> {
        let balance = |owner, low_level| Balance {
            id: "b-1".into(),
            owner,
            currency: "EUR".into(),
            available: Decimal::from_str("-12.345").expect("decimal"),
            held: Decimal::from_str("1000000.00").expect("decimal"),
            low_level,
        };
        vec![
            balance(BalanceOwner::User("u-1".into()), None),
            balance(
                BalanceOwner::PartnerCredit("demo".into()),
                Some(Decimal::from_str("50.00").expect("decimal")),
            ),
            balance(BalanceOwner::PartnerDeposit("demo".into()), None),
        ]
    }

    #[test]
    fn balances_round_trip_and_old_json_ones_still_read() {
        for b in balances() {
            let bytes = encode(&b);
            assert_eq!(decode::<Balance>(b"b/b-1", &bytes).expect("balance"), b);
            let json = serde_json::to_vec(&b).expect("json");
            assert!(
                bytes.len() < json.len(),
                "{} vs {}",
                bytes.len(),
                json.len()
            );
            assert_eq!(decode::<Balance>(b"b/b-1", &json).expect("json"), b);
            for n in 0..bytes.len() {
                assert!(
                    decode::<Balance>(b"b/b-1", &bytes[..n]).is_err(),
                    "prefix {n}"
                );
            }
        }
        let mut unknown_owner = encode(&balances()[0]);
        let tag = 1 + 4 + "b-1".len();
        unknown_owner[tag] = 3;
        assert!(decode::<Balance>(b"b/b-1", &unknown_owner).is_err());
    }

    #[test]
    fn records_stored_as_json_by_an_earlier_version_still_read() {
        let t = txn();
        let json = serde_json::to_vec(&t).expect("json");
        assert_eq!(decode::<Txn>(b"t/1", &json).expect("txn"), t);
        let e = entry();
        let json = serde_json::to_vec(&e).expect("json");
        assert_eq!(decode::<JournalEntry>(b"j/1", &json).expect("entry"), e);
    }

    #[test]
    fn every_tag_round_trips() {
        // The stored tags are fixed forever (the outcome table pins them).
        for outcome in Outcome::all() {
            let mut t = txn();
            t.outcome = outcome;
            assert_eq!(decode::<Txn>(b"t", &encode(&t)).expect("txn"), t);
        }
        for (tag, state) in STATES.iter().enumerate() {
            assert_eq!(usize::from(state_tag(*state)), tag);
        }
        for (tag, kind) in KINDS.iter().enumerate() {
            assert_eq!(usize::from(kind_tag(*kind)), tag);
        }
        let mut e = entry();
        e.postings[0].account = Account::Available("b-2".into());
        e.postings[1].account = Account::Network;
        e.txn = Some(3);
        assert_eq!(decode::<JournalEntry>(b"j", &encode(&e)).expect("entry"), e);
    }

    #[test]
    fn corrupt_bytes_are_an_error_not_a_panic() {
        let bytes = encode(&txn());
        // Every truncation, and a byte too many.
        for n in 0..bytes.len() {
            assert!(decode::<Txn>(b"t/1", &bytes[..n]).is_err(), "prefix {n}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode::<Txn>(b"t/1", &longer).is_err());
        // Every single byte changed to every value decodes or errs, never panics.
        for i in 0..bytes.len() {
            for v in [0u8, 1, 2, 0x7f, 0x80, 0xff] {
                let mut changed = bytes.clone();
                changed[i] = v;
                let _ = decode::<Txn>(b"t/1", &changed);
            }
        }
        // A huge list count does not allocate for it.
        let mut huge = vec![VERSION];
        huge.extend_from_slice(&1u64.to_le_bytes());
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode::<JournalEntry>(b"j/1", &huge).is_err());
        // An unknown version is refused by name.
        let mut unknown = encode(&entry());
        unknown[0] = 2;
        let error = decode::<JournalEntry>(b"j/00000000000000000001", &unknown)
            .expect_err("version 2")
            .to_string();
        assert!(error.contains("j/00000000000000000001"), "{error}");
        // Broken JSON too.
        assert!(decode::<JournalEntry>(b"j/1", b"{\"seq\":").is_err());
    }

    #[test]
    fn a_bad_decimal_is_refused() {
        let mut bytes = encode(&entry());
        // The first posting's amount starts after: version, seq, at_ms, kind,
        // txn (none), currency, count, account tag + id.
        let at = 1 + 8 + 8 + 1 + 1 + (4 + 3) + 4 + (1 + 4 + 3);
        bytes[at + 2] = 29; // scale 29
        assert!(decode::<JournalEntry>(b"j/1", &bytes).is_err());
    }
}
