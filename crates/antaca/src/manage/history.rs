//! Transaction history: the filter, the page of items and how a transaction
//! is named for the channels. Read only: it never changes state and never
//! touches HTTP or ISO 8583; it reads the store's transactions through the
//! writer's [`Reader`] (the history indexes of `engine::index`).

use super::rfc3339;
use crate::domain::calendar;
use crate::domain::model::{Txn, TxnState};
use crate::domain::money::Currency;
use crate::domain::outcome::Outcome;
use crate::engine::{index, Reader};
use crate::store::{keys, StoreError};
use serde::Serialize;

/// Which transactions a history page lists.
#[derive(Clone, Debug, Default)]
pub struct HistoryFilter {
    /// Only this balance's transactions.
    pub balance: Option<String>,
    /// Only this card's transactions.
    pub card: Option<String>,
    /// From this day (inclusive, UTC).
    pub from: Option<calendar::Date>,
    /// To this day (inclusive, UTC).
    pub to: Option<calendar::Date>,
    /// Only transactions with an id below this (the previous page's `nextCursor`).
    pub before: Option<u64>,
    /// Page size.
    pub limit: usize,
}

/// One transaction of a history.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryItem {
    /// Transaction id.
    pub id: u64,
    /// AUTHORIZATION, ADVICE, PURCHASE, REFUND, COMPLETION, REVERSAL, BALANCE_INQUIRY or RELOAD.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// DEBIT or CREDIT.
    pub category: &'static str,
    /// AUTHORIZED, CLEARED, REVERSED, or NONE when nothing moved.
    pub state: TxnState,
    /// SUCCESS or DECLINED.
    pub outcome: &'static str,
    /// Why it was declined.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decline_reason: Option<&'static str>,
    /// Amount in minor units of `currency`, as the message carried it.
    pub amount_minor: u64,
    /// ISO 4217 currency of the amount.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<&'static str>,
    /// When (RFC 3339, UTC).
    pub created_at: String,
    /// The card (masked PAN only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub card_id: Option<String>,
    /// First 6 and last 4 digits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub masked_pan: Option<String>,
    /// The balances it moved.
    pub balance_ids: Vec<String>,
    /// The transaction it completes or reverses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original_id: Option<u64>,
    /// Merchant category code (field 18).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mcc: Option<String>,
    /// Merchant id (field 42).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merchant_id: Option<String>,
    /// Terminal id (field 41).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub terminal_id: Option<String>,
}

/// A page of history, newest first.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryPage {
    /// The transactions.
    pub items: Vec<HistoryItem>,
    /// Pass as `before` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<u64>,
}

fn kind_of(txn: &Txn) -> (&'static str, &'static str) {
    let processing = txn.processing_code.as_deref().unwrap_or("000000");
    let credit = processing.starts_with("20");
    let inquiry = processing.starts_with("30") || processing.starts_with("31");
    let mti = txn.mti.as_bytes();
    let kind = match (mti.get(1), mti.get(2)) {
        _ if txn.mti == "RELOAD" => "RELOAD",
        _ if inquiry => "BALANCE_INQUIRY",
        (Some(b'1'), Some(b'2')) => "ADVICE",
        (Some(b'1'), _) => "AUTHORIZATION",
        (Some(b'2'), Some(b'2')) => "COMPLETION",
        (Some(b'2'), _) if credit => "REFUND",
        (Some(b'2'), _) => "PURCHASE",
        (Some(b'4'), _) => "REVERSAL",
        _ => "OTHER",
    };
    let category = if credit || kind == "RELOAD" || kind == "REVERSAL" {
        "CREDIT"
    } else {
        "DEBIT"
    };
    (kind, category)
}

/// Most transactions one page looks at: a page whose filter (a day range
/// far back, a card within a balance) skips more ends early, with a cursor
/// to go on from. A page runs on the writer between batches, so this
/// bounds what a page can delay authorizations: 1,000 transactions read
/// from the store take ~1.7 ms on the project's machine (`cargo bench
/// --bench history`, `card_day_filter_scan`; 10,000 took 25.7 ms).
pub const SCAN_MAX: usize = 1_000;

/// Transactions read from the store at a time.
const SCAN_PAGE: usize = 256;

/// A history page under a filter, newest first: read from the index of the
/// card (or balance, or every transaction) from the cursor down, without
/// looking at newer transactions or older pages.
pub fn history(reader: &Reader<'_>, filter: &HistoryFilter) -> Result<HistoryPage, StoreError> {
    let state = reader.state;
    let card_balance = |txn: &Txn| {
        txn.card
            .as_ref()
            .and_then(|c| state.cards.get(c))
            .map(|c| c.balance.clone())
    };
    let limit = filter.limit.clamp(1, 500);
    let prefix = match (&filter.card, &filter.balance) {
        (Some(card), _) => index::prefix(index::BY_CARD, card),
        (None, Some(balance)) => index::prefix(index::BY_BALANCE, balance),
        (None, None) => keys::TXN.to_vec(),
    };
    let mut items = Vec::new();
    let mut below = filter.before;
    let mut scanned = 0usize;
    loop {
        let ids = reader.ids_below(&prefix, below, SCAN_PAGE)?;
        let Some(&last) = ids.last() else {
            return Ok(HistoryPage {
                items,
                next_cursor: None,
            });
        };
        for id in ids {
            scanned += 1;
            let Some(txn) = reader.txn(id)? else {
                continue;
            };
            let mut balances: Vec<String> = txn.legs.iter().map(|l| l.balance.clone()).collect();
            if let Some(b) = card_balance(&txn) {
                if !balances.contains(&b) {
                    balances.push(b);
                }
            }
            let day = calendar::date_of_ms(txn.at_ms);
            if filter.from.is_some_and(|from| day < from) {
                // Ids grow with time: everything below is older still.
                return Ok(HistoryPage {
                    items,
                    next_cursor: None,
                });
            }
            let wanted = filter.balance.as_ref().is_none_or(|b| balances.contains(b))
                && filter
                    .card
                    .as_ref()
                    .is_none_or(|c| txn.card.as_ref() == Some(c))
                && filter.to.is_none_or(|to| day <= to);
            if wanted {
                if items.len() == limit {
                    let next_cursor = items.last().map(|i: &HistoryItem| i.id);
                    return Ok(HistoryPage { items, next_cursor });
                }
                items.push(item(&txn, balances));
            }
            if scanned >= SCAN_MAX {
                // Go on from here on the next page.
                return Ok(HistoryPage {
                    items,
                    next_cursor: Some(id),
                });
            }
        }
        below = Some(last);
    }
}

fn item(txn: &Txn, balances: Vec<String>) -> HistoryItem {
    let (kind, category) = kind_of(txn);
    HistoryItem {
        id: txn.id,
        kind,
        category,
        state: txn.state,
        outcome: if txn.outcome == Outcome::Approved {
            "SUCCESS"
        } else {
            "DECLINED"
        },
        decline_reason: (txn.outcome != Outcome::Approved).then(|| txn.outcome.name()),
        amount_minor: txn.amount_minor,
        currency: txn
            .currency
            .and_then(Currency::from_numeric)
            .map(|c| c.alpha),
        created_at: rfc3339(txn.at_ms),
        card_id: txn.card.clone(),
        masked_pan: txn.pan_masked.clone(),
        balance_ids: balances,
        original_id: txn.original,
        mcc: txn.mcc.clone(),
        merchant_id: txn.merchant_id.clone(),
        terminal_id: txn.terminal.clone(),
    }
}

/// Parses a `YYYY-MM-DD` day.
pub fn parse_day(text: &str) -> Option<calendar::Date> {
    let mut parts = text.split('-');
    let year: i32 = parts.next()?.parse().ok()?;
    let month: u32 = parts.next()?.parse().ok()?;
    let day: u32 = parts.next()?.parse().ok()?;
    if parts.next().is_some()
        || text.len() != 10
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
    {
        return None;
    }
    Some(calendar::Date { year, month, day })
}
