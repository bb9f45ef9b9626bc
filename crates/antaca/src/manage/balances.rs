//! Balances: user balances, reloads, partner (credit and deposit) balances,
//! the views the channels show and the summary across all balances. Never
//! touches HTTP, ISO 8583 or the store directly (only `State` and `Changes`).

use super::customers::customer;
use super::error::ErrorCode;
use super::{chosen_or_next_id, ManageError};
use crate::domain::model::{
    Account, Balance, BalanceOwner, EntryKind, Funding, JournalEntry, Kyc, Leg, Posting, Txn,
    TxnState,
};
use crate::domain::money::Currency;
use crate::domain::outcome::Outcome;
use crate::engine::state::{Changes, State};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A balance as the channels show it: decimal and minor units.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BalanceView {
    /// Id.
    pub id: String,
    /// `USER`, `PARTNER_CREDIT` or `PARTNER_DEPOSIT`.
    pub kind: &'static str,
    /// Owner: the customer id, or the program of a partner balance.
    pub owner: String,
    /// ISO 4217 currency.
    pub currency: String,
    /// Ledger amount (available + held), decimal string.
    pub ledger: String,
    /// Available amount, decimal string.
    pub available: String,
    /// Held by authorizations, decimal string.
    pub held: String,
    /// Ledger in minor units.
    pub ledger_minor: Option<i64>,
    /// Available in minor units.
    pub available_minor: Option<i64>,
    /// Low-level notification threshold (partner balances), decimal string.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub low_level: Option<String>,
    /// Cards on this balance (user balances).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cards: Vec<BalanceCardView>,
}

/// A card as the balance view lists it (masked PAN only).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BalanceCardView {
    /// Id.
    pub id: String,
    /// `virtual`, `physical` or `digital_first`.
    #[serde(rename = "type")]
    pub card_type: crate::domain::model::CardType,
    /// `active`, `inactive` or `removed`.
    pub state: crate::domain::model::CardState,
    /// Lock reason 1–8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock: Option<u8>,
    /// First 6 and last 4 digits.
    pub masked_pan: String,
    /// YYMM.
    pub expiry: String,
}

/// The view of a balance, with its cards.
pub fn balance_view(state: &State, balance: &Balance) -> BalanceView {
    let (kind, owner) = match &balance.owner {
        BalanceOwner::User(u) => ("USER", u.clone()),
        BalanceOwner::PartnerCredit(p) => ("PARTNER_CREDIT", p.clone()),
        BalanceOwner::PartnerDeposit(p) => ("PARTNER_DEPOSIT", p.clone()),
    };
    let currency = Currency::from_alpha(&balance.currency);
    let minor = |d: Decimal| currency.and_then(|c| c.to_minor(d));
    let mut cards: Vec<BalanceCardView> = state
        .cards
        .values()
        .filter(|c| c.balance == balance.id)
        .map(|c| BalanceCardView {
            id: c.id.clone(),
            card_type: c.card_type,
            state: c.state,
            lock: c.lock,
            masked_pan: c.pan_masked.clone(),
            expiry: c.expiry.clone(),
        })
        .collect();
    cards.sort_by(|a, b| a.id.cmp(&b.id));
    BalanceView {
        id: balance.id.clone(),
        kind,
        owner,
        currency: balance.currency.clone(),
        ledger: balance.ledger().to_string(),
        available: balance.available.to_string(),
        held: balance.held.to_string(),
        ledger_minor: minor(balance.ledger()),
        available_minor: minor(balance.available),
        low_level: balance.low_level.map(|l| l.to_string()),
        cards,
    }
}

/// A new, empty user balance for `user_id` in `currency` (KYC acceptance opens one too).
pub(super) fn new_user_balance(
    state: &mut State,
    changes: &mut Changes,
    user_id: &str,
    currency: &str,
) -> Balance {
    let balance = Balance {
        id: format!("bal_{}", changes.next_in_sequence(state, "balance")),
        owner: BalanceOwner::User(user_id.to_string()),
        currency: currency.to_string(),
        available: Decimal::ZERO,
        held: Decimal::ZERO,
        low_level: None,
    };
    changes.put_balance(state, balance.clone());
    balance
}

fn currency(code: &str) -> Result<Currency, ManageError> {
    Currency::from_alpha(code).ok_or_else(|| {
        ManageError::invalid(
            ErrorCode::InvalidCurrency,
            format!("{code:?} is not an ISO 4217 currency"),
        )
    })
}

/// Creates a user balance in any ISO 4217 currency for a customer whose KYC is accepted.
pub fn create_user_balance(
    state: &mut State,
    changes: &mut Changes,
    user_id: &str,
    program: Option<&str>,
    currency_code: &str,
) -> Result<BalanceView, ManageError> {
    let user = customer(state, user_id, program)?.clone();
    let currency = currency(currency_code)?;
    if user.kyc != Kyc::Verified {
        return Err(ManageError::conflict(
            ErrorCode::KycNotAccepted,
            "a balance is created only for a customer whose KYC is accepted",
        ));
    }
    let balance = new_user_balance(state, changes, &user.id, currency.alpha);
    Ok(balance_view(state, &balance))
}

/// A user balance of this customer (or any, for administrators).
pub fn user_balance<'a>(
    state: &'a State,
    balance_id: &str,
    user_id: Option<&str>,
    program: Option<&str>,
) -> Result<&'a Balance, ManageError> {
    let missing = || {
        ManageError::not_found(
            ErrorCode::BalanceNotFound,
            format!("no balance {balance_id:?}"),
        )
    };
    let balance = state.balances.get(balance_id).ok_or_else(missing)?;
    let BalanceOwner::User(owner) = &balance.owner else {
        return Err(missing());
    };
    if user_id.is_some_and(|u| u != owner) {
        return Err(missing());
    }
    let owner_program = state.users.get(owner).map(|u| u.program.as_str());
    if program.is_some_and(|p| Some(p) != owner_program) {
        return Err(missing());
    }
    Ok(balance)
}

/// Parses a decimal amount for a currency, refusing zero, negatives and extra digits.
pub fn parse_amount(text: &str, currency_code: &str) -> Result<Decimal, ManageError> {
    let currency = currency(currency_code)?;
    let amount = currency.parse_amount(text).map_err(|e| {
        ManageError::invalid(ErrorCode::InvalidAmount, format!("amount {text:?}: {e}"))
    })?;
    if amount <= Decimal::ZERO {
        return Err(ManageError::invalid(
            ErrorCode::InvalidAmount,
            "the amount must be more than zero",
        ));
    }
    Ok(amount)
}

/// Credits a balance from outside (a reload): one journal entry from the
/// funding account, and a RELOAD transaction in the balance's history.
pub fn reload(
    state: &mut State,
    changes: &mut Changes,
    balance_id: &str,
    amount: Decimal,
    now: u64,
) -> Result<BalanceView, ManageError> {
    let mut balance = state.balances.get(balance_id).cloned().ok_or_else(|| {
        ManageError::not_found(
            ErrorCode::BalanceNotFound,
            format!("no balance {balance_id:?}"),
        )
    })?;
    let currency = currency(&balance.currency)?;
    let minor = currency
        .to_minor(amount)
        .and_then(|m| u64::try_from(m).ok())
        .ok_or_else(|| {
            ManageError::invalid(
                ErrorCode::InvalidAmount,
                "the amount does not fit the currency",
            )
        })?;
    if currency.to_minor(balance.ledger() + amount).is_none()
        || currency.to_minor(balance.available + amount).is_none()
    {
        return Err(ManageError::invalid(
            ErrorCode::AmountTooLarge,
            "the balance would exceed what the engine can hold",
        ));
    }
    // From here the reload succeeds.
    let id = changes.next_txn_id(state);
    balance.available += amount;
    changes.journal(
        state,
        JournalEntry {
            seq: 0,
            at_ms: now,
            kind: EntryKind::Reload,
            txn: Some(id),
            currency: balance.currency.clone(),
            postings: vec![
                Posting {
                    account: Account::Funding,
                    amount: -amount,
                },
                Posting {
                    account: Account::Available(balance.id.clone()),
                    amount,
                },
            ],
        },
    );
    changes.put_balance(state, balance.clone());
    let txn = Txn {
        id,
        key: format!("reload|{id}"),
        original_key: format!("reload|{id}"),
        mti: "RELOAD".into(),
        card: None,
        pan_masked: None,
        processing_code: None,
        amount_minor: minor,
        currency: Some(currency.numeric),
        outcome: Outcome::Approved,
        approval_code: None,
        additional_amounts: None,
        state: TxnState::Cleared,
        legs: vec![Leg {
            balance: balance.id.clone(),
            counterpart: Account::Funding,
        }],
        held: Decimal::ZERO,
        charged: -amount,
        original: None,
        hold_expires_ms: None,
        at_ms: now,
        mcc: None,
        merchant_id: None,
        terminal: None,
        fingerprint: 0,
        orphan_of: None,
    };
    changes.put_txn(state, txn);
    Ok(balance_view(state, &balance))
}

/// A new partner balance from the administration panel.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewPartnerBalance {
    /// Id; generated when absent.
    #[serde(default)]
    pub id: Option<String>,
    /// The program.
    pub program: String,
    /// `credit` or `deposit`.
    pub kind: crate::manage::portfolio::PartnerKind,
    /// ISO 4217 currency.
    pub currency: String,
    /// Low-level notification threshold, decimal string.
    #[serde(default)]
    pub low_level: Option<String>,
}

/// Creates a partner credit or deposit balance; a partner_* program without
/// one is linked to it.
pub fn create_partner_balance(
    state: &mut State,
    changes: &mut Changes,
    new: NewPartnerBalance,
) -> Result<BalanceView, ManageError> {
    let program = state.programs.get(&new.program).cloned().ok_or_else(|| {
        ManageError::not_found(
            ErrorCode::ProgramNotFound,
            format!("no program {:?}", new.program),
        )
    })?;
    let cur = currency(&new.currency)?;
    let low_level = match &new.low_level {
        Some(text) => Some(cur.parse_amount(text).map_err(|e| {
            ManageError::invalid(ErrorCode::InvalidAmount, format!("lowLevel {text:?}: {e}"))
        })?),
        None => None,
    };
    let id = chosen_or_next_id(state, changes, new.id, "pbal", "partner_balance")?;
    if state.balances.contains_key(&id) {
        return Err(ManageError::conflict(
            ErrorCode::BalanceExists,
            format!("balance {id:?} already exists"),
        ));
    }
    let expected = match program.funding {
        Funding::PartnerCredit => Some(crate::manage::portfolio::PartnerKind::Credit),
        Funding::PartnerDeposit => Some(crate::manage::portfolio::PartnerKind::Deposit),
        Funding::UserBalance => None,
    };
    let link = program.partner_balance.is_none() && expected == Some(new.kind);
    if link && cur.alpha != program.currency {
        return Err(ManageError::invalid(
            ErrorCode::InvalidCurrency,
            "the program's partner balance is in the program's currency",
        ));
    }
    let owner = match new.kind {
        crate::manage::portfolio::PartnerKind::Credit => {
            BalanceOwner::PartnerCredit(program.id.clone())
        }
        crate::manage::portfolio::PartnerKind::Deposit => {
            BalanceOwner::PartnerDeposit(program.id.clone())
        }
    };
    let balance = Balance {
        id: id.clone(),
        owner,
        currency: cur.alpha.to_string(),
        available: Decimal::ZERO,
        held: Decimal::ZERO,
        low_level,
    };
    changes.put_balance(state, balance.clone());
    if link {
        changes.put_program(
            state,
            crate::domain::model::Program {
                partner_balance: Some(id),
                ..program
            },
        );
    }
    Ok(balance_view(state, &balance))
}

/// A partner balance by id.
pub fn partner_balance<'a>(state: &'a State, id: &str) -> Result<&'a Balance, ManageError> {
    match state.balances.get(id) {
        Some(b) if !matches!(b.owner, BalanceOwner::User(_)) => Ok(b),
        _ => Err(ManageError::not_found(
            ErrorCode::BalanceNotFound,
            format!("no partner balance {id:?}"),
        )),
    }
}

/// One currency of the balance summary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SummaryRow {
    /// ISO 4217 currency.
    pub currency: String,
    /// Sum of the ledger amounts of all user balances.
    pub users: String,
    /// Users plus all partner balances.
    pub wallet: String,
}

/// The balance summary per currency: Users (user balances) and Wallet (users
/// plus partner balances), summed from the balances, which are the journal's projection.
pub fn summary(state: &State) -> Vec<SummaryRow> {
    let mut rows: BTreeMap<&str, (Decimal, Decimal)> = BTreeMap::new();
    for balance in state.balances.values() {
        let row = rows.entry(balance.currency.as_str()).or_default();
        if matches!(balance.owner, BalanceOwner::User(_)) {
            row.0 += balance.ledger();
        }
        row.1 += balance.ledger();
    }
    rows.into_iter()
        .map(|(currency, (users, wallet))| SummaryRow {
            currency: currency.to_string(),
            users: users.to_string(),
            wallet: wallet.to_string(),
        })
        .collect()
}
