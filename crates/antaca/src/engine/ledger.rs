//! Money movements as journal entries: which balances a card spends from,
//! and the postings of holds, releases, captures, debits and credits.

use super::state::{Changes, State};
use crate::domain::model::{
    Account, Balance, BalanceOwner, Card, EntryKind, Funding, JournalEntry, Leg, Notification,
    Posting, Txn,
};
use crate::domain::money::Currency;
use crate::protocol::AuthRequest;
use rust_decimal::{Decimal, RoundingStrategy};

/// What a processing code asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Takes money: purchase 00, cash 01, cashback 09, quasi-cash 11.
    Spend,
    /// Gives money: refund 20.
    Credit,
    /// Moves nothing: available funds 30, balance inquiry 31.
    Inquiry,
    /// Anything else.
    Unsupported,
}

/// The kind of a request by the first two digits of its processing code.
pub fn kind_of(request: &AuthRequest) -> Kind {
    match &request.transaction_type() {
        b"00" | b"01" | b"09" | b"11" => Kind::Spend,
        b"20" => Kind::Credit,
        b"30" | b"31" => Kind::Inquiry,
        _ => Kind::Unsupported,
    }
}

/// The legs a card spends from, by its program's funding model.
pub fn legs_for(state: &State, card: &Card) -> Vec<Leg> {
    let Some(program) = state.programs.get(&card.program) else {
        return Vec::new();
    };
    let user = Leg {
        balance: card.balance.clone(),
        counterpart: Account::Network,
    };
    let partner = |counterpart: Account| {
        program.partner_balance.as_ref().map(|id| Leg {
            balance: id.clone(),
            counterpart,
        })
    };
    match program.funding {
        Funding::UserBalance => vec![user],
        Funding::PartnerCredit => match partner(Account::PartnerUsage(program.id.clone())) {
            Some(p) => vec![user, p],
            None => Vec::new(),
        },
        Funding::PartnerDeposit => partner(Account::Network).into_iter().collect(),
    }
}

/// A movement applied to every leg of a transaction.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Movement {
    /// Block funds: available → held.
    Hold(Decimal),
    /// Unblock funds: held → available.
    Release(Decimal),
    /// Turn a hold of `held` into a charge of `amount` (which may differ).
    Capture {
        /// What the hold blocked.
        held: Decimal,
        /// What is charged.
        amount: Decimal,
    },
    /// Charge directly: available → counterpart.
    Debit(Decimal),
    /// Credit: counterpart → available.
    Credit(Decimal),
}

impl Movement {
    fn kind(self) -> EntryKind {
        match self {
            Movement::Hold(_) => EntryKind::Hold,
            Movement::Release(_) => EntryKind::Release,
            Movement::Capture { .. } => EntryKind::Capture,
            Movement::Debit(_) => EntryKind::Debit,
            Movement::Credit(_) => EntryKind::Credit,
        }
    }

    /// (available, held, counterpart) deltas of one leg.
    fn deltas(self) -> (Decimal, Decimal, Decimal) {
        match self {
            Movement::Hold(x) => (-x, x, Decimal::ZERO),
            Movement::Release(x) => (x, -x, Decimal::ZERO),
            Movement::Capture { held, amount } => (held - amount, -held, amount),
            Movement::Debit(x) => (-x, Decimal::ZERO, x),
            Movement::Credit(x) => (x, Decimal::ZERO, -x),
        }
    }
}

/// Applies `movement` to every leg's balance and returns the journal entry
/// that records it (`None` when it moves nothing).
pub fn entry(
    state: &mut State,
    changes: &mut Changes,
    legs: &[Leg],
    movement: Movement,
    txn: u64,
    now: u64,
) -> Option<JournalEntry> {
    let (available, held, counterpart) = movement.deltas();
    let mut postings = Vec::with_capacity(legs.len() * 3);
    let mut currency = None;
    for leg in legs {
        let Some(mut balance) = state.balances.get(&leg.balance).cloned() else {
            continue;
        };
        currency.get_or_insert_with(|| balance.currency.clone());
        let before = balance.available;
        balance.available += available;
        balance.held += held;
        notify_if_low(state, changes, &balance, before, now);
        for (account, amount) in [
            (Account::Available(leg.balance.clone()), available),
            (Account::Held(leg.balance.clone()), held),
            (leg.counterpart.clone(), counterpart),
        ] {
            if !amount.is_zero() {
                postings.push(Posting { account, amount });
            }
        }
        changes.put_balance(state, balance);
    }
    if postings.is_empty() {
        return None;
    }
    Some(JournalEntry {
        seq: 0,
        at_ms: now,
        kind: movement.kind(),
        txn: Some(txn),
        currency: currency?,
        postings,
    })
}

/// Queues a notification when a partner balance's available amount falls
/// below its configured level (crossing it, not every time it stays below).
fn notify_if_low(
    state: &mut State,
    changes: &mut Changes,
    balance: &Balance,
    before: Decimal,
    now: u64,
) {
    let program = match &balance.owner {
        BalanceOwner::PartnerCredit(p) | BalanceOwner::PartnerDeposit(p) => p.clone(),
        BalanceOwner::User(_) => return,
    };
    let Some(level) = balance.low_level else {
        return;
    };
    if before < level || balance.available >= level {
        return;
    }
    let id = changes.next_in_sequence(state, "outbox");
    let notification = Notification {
        id,
        kind: "low_balance".into(),
        program,
        balance: balance.id.clone(),
        currency: balance.currency.clone(),
        available: balance.available,
        low_level: level,
        created_ms: now,
        attempts: 0,
        next_attempt_ms: now,
        delivered_ms: None,
        last_error: None,
    };
    changes.put_record(state, &Notification::key(id), &notification);
}

/// Field 54 of a balance inquiry: the ledger ("01") of the balance the card
/// spends from (the partner's for partner_deposit programs) and what the card
/// can spend ("02"): the smallest available amount of its legs.
pub fn inquiry_amounts(state: &State, legs: &[Leg], request: &AuthRequest) -> String {
    let balances: Vec<_> = legs
        .iter()
        .filter_map(|leg| state.balances.get(&leg.balance))
        .collect();
    let Some(balance) = balances.first() else {
        return String::new();
    };
    let Some(currency) = Currency::from_alpha(&balance.currency) else {
        return String::new();
    };
    let spendable = balances
        .iter()
        .map(|b| b.available)
        .min()
        .unwrap_or(balance.available);
    let minor = |amount: Decimal| currency.to_minor(amount).unwrap_or(0);
    let account = request.account_type();
    let mut out = crate::protocol::respond::additional_amount(
        account,
        "01",
        currency,
        minor(balance.ledger()),
    );
    out.push_str(&crate::protocol::respond::additional_amount(
        account,
        "02",
        currency,
        minor(spendable),
    ));
    out
}

/// What a partial reversal's replacement amount (minor units of the original
/// transaction currency) is in the balance currency. Same currency: exact.
/// Converted transactions: in proportion to what was held or charged,
/// rounded half-even to the currency's exponent.
pub fn replacement_in_balance_currency(
    original: &Txn,
    replacement: u64,
    current: Decimal,
    currency: Currency,
) -> Decimal {
    if original.currency == Some(currency.numeric) {
        return currency.from_minor(replacement);
    }
    if replacement >= original.amount_minor {
        return current;
    }
    scale(
        current,
        replacement,
        original.amount_minor,
        currency.exponent,
    )
}

/// `amount` scaled by the amounts the network sent for a completion
/// (`numerator`) and its authorization (`denominator`), in the first leg's
/// currency: for a completion in a currency the balance does not hold.
pub fn in_proportion(
    amount: Decimal,
    numerator: u64,
    denominator: u64,
    state: &State,
    legs: &[Leg],
) -> Decimal {
    let exponent = legs
        .first()
        .and_then(|leg| state.balances.get(&leg.balance))
        .and_then(|b| Currency::from_alpha(&b.currency))
        .map_or(2, |c| c.exponent);
    scale(amount, numerator, denominator, exponent)
}

/// `amount × numerator / denominator`, rounded half-even to `exponent` digits
/// (the amount itself when the denominator is 0).
fn scale(amount: Decimal, numerator: u64, denominator: u64, exponent: u32) -> Decimal {
    if denominator == 0 {
        return amount;
    }
    let share = Decimal::from(numerator) / Decimal::from(denominator);
    (amount * share).round_dp_with_strategy(exponent, RoundingStrategy::MidpointNearestEven)
}
