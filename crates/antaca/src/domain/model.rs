//! The records the engine keeps: programs, users, balances, cards, holds,
//! transactions and journal entries. Plain data; no IO, no decisions.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// How a card program's spending is funded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Funding {
    /// Debit the card's user balance.
    UserBalance,
    /// Debit the user balance and the partner's credit balance, atomically.
    PartnerCredit,
    /// The user balance is kept by the partner elsewhere: debit only the partner's deposit balance.
    PartnerDeposit,
}

/// A card program: a BIN range, a currency and a funding model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Program {
    /// Program id.
    pub id: String,
    /// The BIN (first 6–8 digits) its PANs start with.
    pub bin: String,
    /// ISO 4217 alphabetic currency of the program.
    pub currency: String,
    /// Funding model.
    pub funding: Funding,
    /// The partner credit or deposit balance of a `partner_*` program.
    pub partner_balance: Option<String>,
    /// Registered in Mastercard's Digital First: virtual cards may be printed.
    #[serde(default)]
    pub digital_first: bool,
    /// How long new cards are valid, in months.
    #[serde(default = "default_card_validity_months")]
    pub card_validity_months: u32,
}

/// Cards are valid 3 years unless the program says otherwise.
pub fn default_card_validity_months() -> u32 {
    36
}

/// Who a balance belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "owner")]
pub enum BalanceOwner {
    /// A cardholder's balance; the owner is the user id.
    User(String),
    /// A partner credit balance; the owner is the program id.
    PartnerCredit(String),
    /// A partner deposit balance; the owner is the program id.
    PartnerDeposit(String),
}

/// A balance (account): a projection of the journal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Balance {
    /// Balance id.
    pub id: String,
    /// Owner and kind.
    pub owner: BalanceOwner,
    /// ISO 4217 alphabetic currency.
    pub currency: String,
    /// What may be spent now: ledger minus active holds.
    pub available: Decimal,
    /// Funds blocked by authorization holds.
    pub held: Decimal,
    /// Level below which the partner is notified (partner balances).
    pub low_level: Option<Decimal>,
}

impl Balance {
    /// The ledger amount: available plus held.
    pub fn ledger(&self) -> Decimal {
        self.available + self.held
    }
}

/// KYC status of a user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kyc {
    /// Not started.
    None,
    /// Submitted, waiting for a decision.
    Pending,
    /// Positive decision.
    Verified,
    /// Negative decision.
    Rejected,
}

/// A cardholder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct User {
    /// User id.
    pub id: String,
    /// The program the user belongs to.
    pub program: String,
    /// KYC status.
    pub kyc: Kyc,
}

/// Card types of the seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CardType {
    /// Digital only.
    Virtual,
    /// Plastic; inactive until activated.
    Physical,
    /// A physical copy of a virtual card; no activation.
    DigitalFirst,
}

/// Lifecycle state of a card.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CardState {
    /// Usable.
    Active,
    /// Issued but not yet activated.
    Inactive,
    /// Removed for good; its PAN declines as an invalid card.
    Removed,
}

/// A payment card. Holds no clear PAN, CVV2 or PIN.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Card {
    /// Card id.
    pub id: String,
    /// The user balance the card spends from.
    pub balance: String,
    /// The card's program (denormalised from the balance's user for the hot path).
    pub program: String,
    /// Type.
    #[serde(rename = "type")]
    pub card_type: CardType,
    /// State.
    pub state: CardState,
    /// Lock reason 1–8, if locked.
    pub lock: Option<u8>,
    /// Expiry as YYMM.
    pub expiry: String,
    /// Keyed hash of the PAN (hex): the only way a PAN finds its card.
    pub pan_hash: String,
    /// First 6 and last 4 digits, the rest masked.
    pub pan_masked: String,
    /// Keyed hash of the CVV2, if the card has one.
    pub cvv2_hash: Option<String>,
    /// Keyed hash of the PIN, if the card has one.
    pub pin_hash: Option<String>,
    /// Wrong PINs in a row.
    pub pin_tries: u8,
    /// The PAN, sealed with AES-256-GCM under the vault key (cards issued by Antaca).
    #[serde(default)]
    pub pan_sealed: Option<String>,
    /// False for a physical card until the personalisation centre confirms it;
    /// until then it is not linked to its customer and cannot be activated.
    #[serde(default = "linked_by_default")]
    pub linked: bool,
    /// When the card was created (ms since epoch).
    #[serde(default)]
    pub created_ms: u64,
    /// When it was activated (ms since epoch).
    #[serde(default)]
    pub activated_ms: Option<u64>,
    /// For cards whose CVV2 Antaca derives (the CVV method under the card
    /// verification key): the generation, raised by each CVV reset. `None`:
    /// the CVV2 came from outside and only its keyed hash (`cvv2_hash`) is kept.
    #[serde(default)]
    pub cvv_generation: Option<u32>,
}

fn linked_by_default() -> bool {
    true
}

/// An external account: the other side of a posting that leaves our balances.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "id")]
pub enum Account {
    /// A balance's available bucket.
    Available(String),
    /// A balance's held bucket (authorization holds).
    Held(String),
    /// Settlement with the card network (merchants' side).
    Network,
    /// Money entering from outside: opening balances and reloads.
    Funding,
    /// What a partner_credit program's users consumed of its credit balance.
    PartnerUsage(String),
}

/// One line of a journal entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Posting {
    /// The account moved.
    pub account: Account,
    /// Signed amount in the entry's currency.
    pub amount: Decimal,
}

/// What caused a journal entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// Portfolio import.
    Opening,
    /// Funds credited from outside.
    Reload,
    /// Authorization hold placed.
    Hold,
    /// Hold released (reversal, expiry, or replaced by a completion).
    Release,
    /// A hold turned into a charge.
    Capture,
    /// A direct debit (financial message, advice without hold).
    Debit,
    /// A direct credit (refund, reversal of a charge).
    Credit,
}

/// A journal entry: postings in one currency that sum to zero.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// Sequence number, gap-free from 1.
    pub seq: u64,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Cause.
    pub kind: EntryKind,
    /// Transaction that caused it, if any.
    pub txn: Option<u64>,
    /// ISO 4217 alphabetic currency.
    pub currency: String,
    /// The postings.
    pub postings: Vec<Posting>,
}

impl JournalEntry {
    /// True when the postings sum to zero.
    pub fn balances(&self) -> bool {
        self.postings
            .iter()
            .map(|p| p.amount)
            .sum::<Decimal>()
            .is_zero()
    }
}

/// State of a transaction as partners see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TxnState {
    /// Funds blocked.
    Authorized,
    /// The block became a charge (or a direct charge/credit).
    Cleared,
    /// The block was removed or the charge returned.
    Reversed,
    /// Nothing moved (declines, inquiries, network messages).
    None,
}

/// One leg of a hold: how much is blocked on one balance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Leg {
    /// The balance.
    pub balance: String,
    /// The counterpart when the leg is charged.
    pub counterpart: Account,
}

/// A processed ISO 8583 message: what it asked, what we answered, what it moved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Txn {
    /// Transaction id, increasing.
    pub id: u64,
    /// Idempotency key (MTI class, acquirer, STAN, transmission time, terminal).
    pub key: String,
    /// Key by which later messages find this one as their original.
    pub original_key: String,
    /// MTI as received (repeat bit cleared).
    pub mti: String,
    /// Card, if it was found.
    pub card: Option<String>,
    /// Masked PAN.
    pub pan_masked: Option<String>,
    /// Processing code.
    pub processing_code: Option<String>,
    /// Amount in minor units of `currency`.
    pub amount_minor: u64,
    /// ISO 4217 numeric currency of the amount.
    pub currency: Option<u16>,
    /// The response code sent (dialect independent reason name).
    pub outcome: super::outcome::Outcome,
    /// Approval code (field 38) of an approval.
    pub approval_code: Option<String>,
    /// Field 54 sent (balance inquiries).
    pub additional_amounts: Option<String>,
    /// State.
    pub state: TxnState,
    /// Legs with what is still held on them.
    pub legs: Vec<Leg>,
    /// Amount still held (balance currency).
    pub held: Decimal,
    /// Amount charged so far, net of reversals (balance currency).
    pub charged: Decimal,
    /// The original transaction of a completion or reversal.
    pub original: Option<u64>,
    /// When the hold expires (ms since epoch), for holds.
    pub hold_expires_ms: Option<u64>,
    /// When it was processed (ms since epoch).
    pub at_ms: u64,
    /// Merchant category code (18).
    pub mcc: Option<String>,
    /// Card acceptor (merchant) id (42).
    pub merchant_id: Option<String>,
    /// Terminal id (41).
    pub terminal: Option<String>,
    /// Card, amount and processing code digest: a message with the same key
    /// but another fingerprint is not a duplicate.
    #[serde(default)]
    pub fingerprint: u64,
    /// For a reversal whose original had not arrived: the original's STAN,
    /// date-time and acquirer, so that a late original is not approved.
    #[serde(default)]
    pub orphan_of: Option<String>,
}

/// An e-mail to a partner, kept in the outbox (`outbox/{id:020}`) until
/// delivered, then under `outbox-sent/{id:020}` until its retention ends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Id, increasing.
    pub id: u64,
    /// What happened: `low_balance`.
    pub kind: String,
    /// The partner's program.
    pub program: String,
    /// The partner balance.
    pub balance: String,
    /// Its currency.
    pub currency: String,
    /// Available amount when it fell below the level.
    pub available: Decimal,
    /// The configured level.
    pub low_level: Decimal,
    /// When it happened (ms since epoch).
    pub created_ms: u64,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// Not before this time (ms since epoch).
    pub next_attempt_ms: u64,
    /// When it was delivered.
    pub delivered_ms: Option<u64>,
    /// The last delivery error.
    pub last_error: Option<String>,
}

impl Notification {
    /// Its key in the management records.
    pub fn key(id: u64) -> String {
        format!("outbox/{id:020}")
    }

    /// Its key once delivered.
    pub fn sent_key(id: u64) -> String {
        format!("outbox-sent/{id:020}")
    }
}
