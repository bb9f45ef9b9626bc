//! The pure authorization decision: card, balances, request and time in,
//! approval or decline out. No IO, no clock, no logging.
//!
//! Declines are values, checked in precedence order (see [`decide`]); one
//! table (`domain::outcome::OUTCOMES`, behind [`Outcome::code`]) maps every
//! outcome to the wire code of each dialect.
//!
//! Owns: the rules of an authorization. Must never touch: IO, the clock, a
//! socket, the store, logging; it imports only `domain`.

use crate::domain::calendar::{self, Date};
use crate::domain::model::{Balance, Card, CardState};
use crate::domain::money::Currency;
use crate::domain::outcome::Outcome;
use rust_decimal::Decimal;

/// Wrong PINs in a row that lock the card with reason 6 (the last one answers as the lock).
pub const PIN_TRIES_MAX: u8 = 3;

/// What the card is asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Block funds (authorization).
    Hold,
    /// Charge at once (financial request).
    Debit,
    /// Credit (refund).
    Credit,
    /// Report balances; moves nothing.
    Inquiry,
    /// The network already approved or settled it (advice, completion): post
    /// whatever the card's state, lock, expiry or funds; only a card we cannot
    /// find, or an amount we cannot express in the balance currency, is refused.
    Forced,
}

/// The parts of a request the decision looks at.
#[derive(Clone, Copy, Debug)]
pub struct Request {
    /// Operation.
    pub operation: Operation,
    /// Transaction amount in minor units of `currency`.
    pub amount_minor: u64,
    /// Transaction currency (field 49).
    pub currency: Currency,
    /// Cardholder billing amount and currency (fields 6 and 51), if sent.
    pub billing: Option<(u64, Currency)>,
    /// Expiry date sent by the terminal (field 14), YYMM digits.
    pub expiry: Option<[u8; 4]>,
    /// Transmission month and day (field 7), if sent.
    pub transmission: Option<(u32, u32)>,
    /// Whether the CVV2 presented verified; `None` when none was presented.
    pub cvv2_ok: Option<bool>,
    /// Whether the PIN presented verified; `None` when none was presented (or it cannot be verified).
    pub pin_ok: Option<bool>,
    /// A PIN was presented that cannot be verified (no zone PIN key).
    pub pin_unverifiable: bool,
}

/// The decision.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Decision {
    /// Approved for this amount in the balance currency.
    Approve {
        /// Amount to hold, charge or credit (zero for inquiries).
        amount: Decimal,
    },
    /// Declined.
    Decline(Outcome),
}

/// Decides a request for a card whose spending legs have these balances
/// (in leg order), at `now_ms`. Checks in precedence order: unknown card,
/// removed, not activated, locked, expired, CVV2, PIN, currency, funds.
/// Forced operations skip everything from removed to PIN.
pub fn decide(card: Option<&Card>, legs: &[&Balance], request: &Request, now_ms: u64) -> Decision {
    let Some(card) = card else {
        return Decision::Decline(Outcome::UnknownCard);
    };
    if request.operation != Operation::Forced {
        if let Some(outcome) = card_checks(card, request, now_ms) {
            return Decision::Decline(outcome);
        }
        if request.pin_unverifiable {
            return Decision::Decline(Outcome::PinUnverifiable);
        }
        if request.pin_ok == Some(false) {
            if card.pin_tries.saturating_add(1) >= PIN_TRIES_MAX {
                return Decision::Decline(Outcome::Locked(6));
            }
            return Decision::Decline(Outcome::IncorrectPin);
        }
    }
    let Some(currency) = legs.first().and_then(|b| Currency::from_alpha(&b.currency)) else {
        return Decision::Decline(Outcome::InvalidTransaction);
    };
    let amount = if request.currency == currency {
        currency.from_minor(request.amount_minor)
    } else {
        match request.billing {
            Some((billing_minor, billing_currency)) if billing_currency == currency => {
                currency.from_minor(billing_minor)
            }
            _ => return Decision::Decline(Outcome::CurrencyMismatch),
        }
    };
    let spends = matches!(request.operation, Operation::Hold | Operation::Debit);
    if spends && legs.iter().any(|leg| leg.available < amount) {
        return Decision::Decline(Outcome::InsufficientFunds);
    }
    // From here the request must succeed.
    let amount = if request.operation == Operation::Inquiry {
        Decimal::ZERO
    } else {
        amount
    };
    Decision::Approve { amount }
}

/// The checks before the PIN, in precedence order: removed, not activated,
/// locked, expired, CVV2.
fn card_checks(card: &Card, request: &Request, now_ms: u64) -> Option<Outcome> {
    if card.state == CardState::Removed {
        return Some(Outcome::CardRemoved);
    }
    if card.state == CardState::Inactive {
        return Some(Outcome::CardNotActivated);
    }
    if let Some(reason) = card.lock {
        return Some(Outcome::Locked(reason));
    }
    if is_expired(card, request, now_ms) {
        return Some(Outcome::Expired);
    }
    if request.cvv2_ok == Some(false) {
        return Some(Outcome::WrongCvv2);
    }
    None
}

/// A card's PIN tries after a PIN check, and the lock it brings (reason 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PinTries {
    /// Wrong PINs in a row, this one included (0 after a right PIN).
    pub tries: u8,
    /// `Some(6)` when this wrong PIN locks the card.
    pub lock: Option<u8>,
}

/// What the PIN check of a request does to the card's PIN tries, once the
/// checks before it passed: a wrong PIN counts one more (the
/// [`PIN_TRIES_MAX`]th also locks with reason 6), a right one resets the
/// count. `None` when nothing changes. Pure, like [`decide`].
pub fn pin_tries_after(card: &Card, request: &Request, now_ms: u64) -> Option<PinTries> {
    if request.operation == Operation::Forced || request.pin_unverifiable {
        return None;
    }
    let pin_ok = request.pin_ok?;
    if card_checks(card, request, now_ms).is_some() {
        return None;
    }
    if pin_ok {
        return (card.pin_tries != 0).then_some(PinTries {
            tries: 0,
            lock: None,
        });
    }
    let tries = card.pin_tries.saturating_add(1);
    Some(PinTries {
        tries,
        lock: (tries >= PIN_TRIES_MAX).then_some(6),
    })
}

/// Expired: the terminal's expiry (field 14) differs from the card's, or the
/// card's expiry month ended before the transmission date (field 7, year
/// inferred from `now_ms`) or before today, whichever is later, so that a
/// back-dated field 7 cannot revive an expired card.
fn is_expired(card: &Card, request: &Request, now_ms: u64) -> bool {
    let card_expiry = card.expiry.as_bytes();
    if let Some(sent) = request.expiry {
        if sent.as_slice() != card_expiry {
            return true;
        }
    }
    let Some((year, month)) = parse_yymm(card_expiry) else {
        return true;
    };
    let today = calendar::date_of_ms(now_ms);
    let date: Date = match request.transmission {
        Some((m, d)) => calendar::infer_year(m, d, today).max(today),
        None => today,
    };
    (date.year, date.month) > (year, month)
}

/// YYMM → (2000 + YY, MM).
fn parse_yymm(yymm: &[u8]) -> Option<(i32, u32)> {
    if yymm.len() != 4 || !yymm.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = |i: usize| u32::from(yymm[i] - b'0');
    let month = n(2) * 10 + n(3);
    if !(1..=12).contains(&month) {
        return None;
    }
    Some((2000 + i32::try_from(n(0) * 10 + n(1)).ok()?, month))
}

#[cfg(test)]
mod tests;
