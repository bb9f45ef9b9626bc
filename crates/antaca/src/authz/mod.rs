//! The pure authorization decision: card, balances, request and time in,
//! approval or decline out. No IO, no clock, no logging.
//!
//! Declines are values, checked in precedence order (see [`decide`]); one
//! table ([`Outcome::code`]) maps every outcome to the wire code of each dialect.

use crate::domain::calendar::{self, Date};
use crate::domain::model::{Balance, Card, CardState};
use crate::domain::money::Currency;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// What a message asked for and how we answered, independent of the dialect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Approved (or, for advices and reversals, accepted).
    Approved,
    /// No card with this PAN.
    UnknownCard,
    /// The card was removed.
    CardRemoved,
    /// A physical card not yet activated.
    CardNotActivated,
    /// Locked with reason 1–8 (see [`LOCK_REASONS`]).
    Locked(u8),
    /// Expired, or the expiry date sent does not match the card.
    Expired,
    /// The CVV2 presented is not the card's.
    WrongCvv2,
    /// The PIN presented is not the card's (or the PIN block did not decrypt); the third in a row locks with reason 6.
    IncorrectPin,
    /// A PIN came but cannot be verified here (no zone PIN key configured).
    PinUnverifiable,
    /// The transaction currency is not the balance's and no cardholder billing amount says how much to take.
    CurrencyMismatch,
    /// Not enough available funds on one of the legs.
    InsufficientFunds,
    /// A message or processing code we do not process.
    InvalidTransaction,
    /// Same key as an earlier message but another card, amount or processing code.
    DuplicateTransmission,
    /// The acquirer reversed this message before it reached us.
    AlreadyReversed,
    /// The message decoded far enough to answer but not further.
    FormatError,
    /// We could not make the effect durable.
    SystemMalfunction,
    /// A file update refused: the card's lock is irreversible.
    FileUpdateRefused,
    /// A file update code other than add (1) or delete (3).
    FileUpdateUnsupported,
}

/// Wrong PINs in a row that lock the card with reason 6 (the last one answers as the lock).
pub const PIN_TRIES_MAX: u8 = 3;

/// Wire dialects of the response code (field 39).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// ISO 8583:1987 two-character response codes.
    Iso87,
    /// ISO 8583:1993/2003-style four-digit action codes.
    Iso93,
}

/// A lock reason of the seed's table: number, name, codes, irreversible.
#[derive(Clone, Copy, Debug)]
pub struct LockReason {
    /// 1–8.
    pub number: u8,
    /// What it means.
    pub name: &'static str,
    /// ISO 8583:1993/2003 action code.
    pub code_iso93: &'static str,
    /// ISO 8583:1987 response code.
    pub code_iso87: &'static str,
    /// Whether an unlock is refused.
    pub irreversible: bool,
}

/// The seed's lock table (../shared/DESIGN.md).
pub const LOCK_REASONS: [LockReason; 8] = [
    LockReason {
        number: 1,
        name: "card lost",
        code_iso93: "2008",
        code_iso87: "41",
        irreversible: true,
    },
    LockReason {
        number: 2,
        name: "card stolen",
        code_iso93: "2009",
        code_iso87: "43",
        irreversible: true,
    },
    LockReason {
        number: 3,
        name: "pending query",
        code_iso93: "1000",
        code_iso87: "05",
        irreversible: false,
    },
    LockReason {
        number: 4,
        name: "card consolidation",
        code_iso93: "1016",
        code_iso87: "05",
        irreversible: false,
    },
    LockReason {
        number: 5,
        name: "card inactive",
        code_iso93: "1018",
        code_iso87: "62",
        irreversible: true,
    },
    LockReason {
        number: 6,
        name: "PIN tries exceeded",
        code_iso93: "1006",
        code_iso87: "75",
        irreversible: false,
    },
    LockReason {
        number: 7,
        name: "suspected fraud",
        code_iso93: "1002",
        code_iso87: "59",
        irreversible: false,
    },
    LockReason {
        number: 8,
        name: "card replaced",
        code_iso93: "1011",
        code_iso87: "14",
        irreversible: true,
    },
];

/// The lock reason with this number, if it is one of the eight.
pub fn lock_reason(number: u8) -> Option<&'static LockReason> {
    LOCK_REASONS.iter().find(|r| r.number == number)
}

impl Outcome {
    /// The field 39 value for this outcome in a dialect.
    pub fn code(self, dialect: Dialect) -> &'static str {
        let (iso87, iso93) = match self {
            Outcome::Approved => ("00", "0000"),
            Outcome::UnknownCard | Outcome::CardRemoved => ("14", "1011"),
            Outcome::CardNotActivated => ("62", "1018"),
            Outcome::Locked(n) => match lock_reason(n) {
                Some(r) => (r.code_iso87, r.code_iso93),
                None => ("05", "1000"),
            },
            Outcome::Expired => ("54", "1001"),
            // No ISO code says "CVV2 mismatch": Visa's N7 in 1987, and the
            // nearest action code, 1022 "security violation", in 1993.
            Outcome::WrongCvv2 => ("N7", "1022"),
            Outcome::IncorrectPin => ("55", "1017"),
            // Our fault, not the cardholder's: answered as a system malfunction
            // so the network treats it as issuer trouble (stand-in rules apply).
            Outcome::PinUnverifiable => ("96", "9009"),
            Outcome::CurrencyMismatch | Outcome::InvalidTransaction => ("12", "9002"),
            Outcome::DuplicateTransmission => ("94", "9013"),
            Outcome::AlreadyReversed => ("05", "1000"),
            Outcome::InsufficientFunds => ("51", "1016"),
            Outcome::FormatError => ("30", "9004"),
            Outcome::SystemMalfunction => ("96", "9009"),
            // ISO 8583 file action codes: update not successful / not supported.
            Outcome::FileUpdateRefused => ("29", "3006"),
            Outcome::FileUpdateUnsupported => ("24", "3001"),
        };
        match dialect {
            Dialect::Iso87 => iso87,
            Dialect::Iso93 => iso93,
        }
    }

    /// A short machine-readable name (for history and logs).
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Approved => "approved",
            Outcome::UnknownCard => "unknown_card",
            Outcome::CardRemoved => "card_removed",
            Outcome::CardNotActivated => "card_not_activated",
            Outcome::Locked(_) => "card_locked",
            Outcome::Expired => "expired_card",
            Outcome::WrongCvv2 => "wrong_cvv2",
            Outcome::IncorrectPin => "incorrect_pin",
            Outcome::PinUnverifiable => "pin_unverifiable",
            Outcome::CurrencyMismatch => "currency_mismatch",
            Outcome::InsufficientFunds => "insufficient_funds",
            Outcome::InvalidTransaction => "invalid_transaction",
            Outcome::DuplicateTransmission => "duplicate_transmission",
            Outcome::AlreadyReversed => "already_reversed",
            Outcome::FormatError => "format_error",
            Outcome::SystemMalfunction => "system_malfunction",
            Outcome::FileUpdateRefused => "file_update_refused",
            Outcome::FileUpdateUnsupported => "file_update_unsupported",
        }
    }

    /// Every outcome, for documentation and tests.
    pub fn all() -> Vec<Outcome> {
        let mut all = vec![
            Outcome::Approved,
            Outcome::UnknownCard,
            Outcome::CardRemoved,
            Outcome::CardNotActivated,
        ];
        all.extend(LOCK_REASONS.iter().map(|r| Outcome::Locked(r.number)));
        all.extend([
            Outcome::Expired,
            Outcome::WrongCvv2,
            Outcome::IncorrectPin,
            Outcome::PinUnverifiable,
            Outcome::CurrencyMismatch,
            Outcome::InsufficientFunds,
            Outcome::InvalidTransaction,
            Outcome::DuplicateTransmission,
            Outcome::AlreadyReversed,
            Outcome::FormatError,
            Outcome::SystemMalfunction,
            Outcome::FileUpdateRefused,
            Outcome::FileUpdateUnsupported,
        ]);
        all
    }
}

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
