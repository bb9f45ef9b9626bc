//! What a message asked for and how we answered ([`Outcome`]), and the one
//! table that says, for every outcome, its stored record tag, its
//! machine-readable name and its wire code in each dialect; beside it the
//! seed's lock table (reasons 1–8).
//!
//! Owns: the outcome vocabulary and its codes, as data. Must never touch:
//! the decision rules (authz), IO, the clock, the store, a socket, or the
//! encoding of a message (it only names the field 39 values).

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

/// Wire dialects of the response code (field 39).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// ISO 8583:1987 two-character response codes.
    Iso87,
    /// ISO 8583:1993/2003-style four-digit action codes.
    Iso93,
}

/// One row of [`OUTCOMES`]: an outcome and everything said about it.
#[derive(Clone, Copy, Debug)]
pub struct OutcomeRow {
    /// The outcome (`Locked(0)` stands for every lock reason).
    pub outcome: Outcome,
    /// Its tag in an on-disk transaction record: fixed forever, a new outcome takes the next one.
    pub tag: u8,
    /// A short machine-readable name (for history and logs).
    pub name: &'static str,
    /// ISO 8583:1987 response code.
    pub code_iso87: &'static str,
    /// ISO 8583:1993/2003 action code (for `Locked`, the code of a reason outside the lock table).
    pub code_iso93: &'static str,
}

/// Shorthand for a row of [`OUTCOMES`].
const fn row(
    outcome: Outcome,
    tag: u8,
    name: &'static str,
    code_iso87: &'static str,
    code_iso93: &'static str,
) -> OutcomeRow {
    OutcomeRow {
        outcome,
        tag,
        name,
        code_iso87,
        code_iso93,
    }
}

/// Every outcome, in record-tag order: tag, name, 1987 code, 1993 code.
/// A `Locked` outcome answers with its reason's codes from [`LOCK_REASONS`];
/// the row's codes are for a reason outside it.
pub const OUTCOMES: [OutcomeRow; 18] = [
    row(Outcome::Approved, 0, "approved", "00", "0000"),
    row(Outcome::UnknownCard, 1, "unknown_card", "14", "1011"),
    row(Outcome::CardRemoved, 2, "card_removed", "14", "1011"),
    row(
        Outcome::CardNotActivated,
        3,
        "card_not_activated",
        "62",
        "1018",
    ),
    row(Outcome::Locked(0), 4, "card_locked", "05", "1000"),
    row(Outcome::Expired, 5, "expired_card", "54", "1001"),
    // No ISO code says "CVV2 mismatch": Visa's N7 in 1987, and the
    // nearest action code, 1022 "security violation", in 1993.
    row(Outcome::WrongCvv2, 6, "wrong_cvv2", "N7", "1022"),
    row(Outcome::IncorrectPin, 7, "incorrect_pin", "55", "1017"),
    // Our fault, not the cardholder's: answered as a system malfunction
    // so the network treats it as issuer trouble (stand-in rules apply).
    row(
        Outcome::PinUnverifiable,
        8,
        "pin_unverifiable",
        "96",
        "9009",
    ),
    row(
        Outcome::CurrencyMismatch,
        9,
        "currency_mismatch",
        "12",
        "9002",
    ),
    row(
        Outcome::InsufficientFunds,
        10,
        "insufficient_funds",
        "51",
        "1016",
    ),
    row(
        Outcome::InvalidTransaction,
        11,
        "invalid_transaction",
        "12",
        "9002",
    ),
    row(
        Outcome::DuplicateTransmission,
        12,
        "duplicate_transmission",
        "94",
        "9013",
    ),
    row(
        Outcome::AlreadyReversed,
        13,
        "already_reversed",
        "05",
        "1000",
    ),
    row(Outcome::FormatError, 14, "format_error", "30", "9004"),
    row(
        Outcome::SystemMalfunction,
        15,
        "system_malfunction",
        "96",
        "9009",
    ),
    // ISO 8583 file action codes: update not successful / not supported.
    row(
        Outcome::FileUpdateRefused,
        16,
        "file_update_refused",
        "29",
        "3006",
    ),
    row(
        Outcome::FileUpdateUnsupported,
        17,
        "file_update_unsupported",
        "24",
        "3001",
    ),
];

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

/// Shorthand for a row of [`LOCK_REASONS`].
const fn lock(
    number: u8,
    name: &'static str,
    code_iso93: &'static str,
    code_iso87: &'static str,
    irreversible: bool,
) -> LockReason {
    LockReason {
        number,
        name,
        code_iso93,
        code_iso87,
        irreversible,
    }
}

/// The seed's lock table (../shared/DESIGN.md): number, name, 1993 action
/// code, 1987 response code, irreversible.
pub const LOCK_REASONS: [LockReason; 8] = [
    lock(1, "card lost", "2008", "41", true),
    lock(2, "card stolen", "2009", "43", true),
    lock(3, "pending query", "1000", "05", false),
    lock(4, "card consolidation", "1016", "05", false),
    lock(5, "card inactive", "1018", "62", true),
    lock(6, "PIN tries exceeded", "1006", "75", false),
    lock(7, "suspected fraud", "1002", "59", false),
    lock(8, "card replaced", "1011", "14", true),
];

/// The lock reason with this number, if it is one of the eight.
pub fn lock_reason(number: u8) -> Option<&'static LockReason> {
    LOCK_REASONS.iter().find(|r| r.number == number)
}

impl Outcome {
    /// This outcome's row of [`OUTCOMES`] (any lock reason finds the `Locked` row).
    pub fn row(self) -> &'static OutcomeRow {
        let kind = std::mem::discriminant(&self);
        match OUTCOMES
            .iter()
            .find(|r| std::mem::discriminant(&r.outcome) == kind)
        {
            Some(row) => row,
            // Every variant has a row: `every_variant_has_one_row` proves it.
            None => unreachable!("an outcome without a row in OUTCOMES"),
        }
    }

    /// The field 39 value for this outcome in a dialect.
    pub fn code(self, dialect: Dialect) -> &'static str {
        let (iso87, iso93) = match self {
            Outcome::Locked(n) => match lock_reason(n) {
                Some(r) => (r.code_iso87, r.code_iso93),
                None => (self.row().code_iso87, self.row().code_iso93),
            },
            _ => (self.row().code_iso87, self.row().code_iso93),
        };
        match dialect {
            Dialect::Iso87 => iso87,
            Dialect::Iso93 => iso93,
        }
    }

    /// A short machine-readable name (for history and logs).
    pub fn name(self) -> &'static str {
        self.row().name
    }

    /// The tag that stands for this outcome in an on-disk record (a lock's reason travels apart).
    pub fn tag(self) -> u8 {
        self.row().tag
    }

    /// The outcome a stored tag stands for (`Locked(0)` for the lock tag), if any.
    pub fn from_tag(tag: u8) -> Option<Outcome> {
        OUTCOMES.iter().find(|r| r.tag == tag).map(|r| r.outcome)
    }

    /// Every outcome, each lock reason apart, for documentation and tests.
    pub fn all() -> Vec<Outcome> {
        let mut all = Vec::with_capacity(OUTCOMES.len() + LOCK_REASONS.len());
        for row in &OUTCOMES {
            match row.outcome {
                Outcome::Locked(_) => {
                    all.extend(LOCK_REASONS.iter().map(|r| Outcome::Locked(r.number)));
                }
                outcome => all.push(outcome),
            }
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_the_row_numbers_and_round_trip() {
        // The stored tags are fixed forever; `from_tag` is their inverse.
        for (index, row) in OUTCOMES.iter().enumerate() {
            assert_eq!(usize::from(row.tag), index);
            assert_eq!(Outcome::from_tag(row.tag), Some(row.outcome));
        }
        assert_eq!(Outcome::from_tag(18), None);
        for outcome in Outcome::all() {
            assert_eq!(
                Outcome::from_tag(outcome.tag()).map(super::Outcome::name),
                Some(outcome.name())
            );
        }
    }

    #[test]
    fn every_variant_has_one_row() {
        for outcome in Outcome::all() {
            let kind = std::mem::discriminant(&outcome);
            let rows = OUTCOMES
                .iter()
                .filter(|r| std::mem::discriminant(&r.outcome) == kind)
                .count();
            assert_eq!(rows, 1, "{outcome:?}");
        }
        assert_eq!(
            Outcome::all().len(),
            OUTCOMES.len() - 1 + LOCK_REASONS.len()
        );
    }

    #[test]
    fn code_table_matches_the_seed() {
        let expect = [
            (1, "2008", "41"),
            (2, "2009", "43"),
            (3, "1000", "05"),
            (4, "1016", "05"),
            (5, "1018", "62"),
            (6, "1006", "75"),
            (7, "1002", "59"),
            (8, "1011", "14"),
        ];
        for (n, iso93, iso87) in expect {
            assert_eq!(Outcome::Locked(n).code(Dialect::Iso93), iso93);
            assert_eq!(Outcome::Locked(n).code(Dialect::Iso87), iso87);
        }
        assert_eq!(Outcome::Locked(0).code(Dialect::Iso87), "05");
        assert_eq!(Outcome::Locked(9).code(Dialect::Iso93), "1000");
        for o in Outcome::all() {
            assert_eq!(o.code(Dialect::Iso87).len(), 2);
            assert_eq!(o.code(Dialect::Iso93).len(), 4);
        }
    }

    #[test]
    fn new_outcomes_have_codes_and_names() {
        for (o, c87, c93) in [
            (Outcome::WrongCvv2, "N7", "1022"),
            (Outcome::IncorrectPin, "55", "1017"),
            (Outcome::PinUnverifiable, "96", "9009"),
            (Outcome::FileUpdateRefused, "29", "3006"),
            (Outcome::FileUpdateUnsupported, "24", "3001"),
        ] {
            assert!(Outcome::all().contains(&o));
            assert_eq!(o.code(Dialect::Iso87), c87);
            assert_eq!(o.code(Dialect::Iso93), c93);
        }
        let names: std::collections::HashSet<_> = Outcome::all()
            .into_iter()
            .filter(|o| !matches!(o, Outcome::Locked(_)))
            .map(Outcome::name)
            .collect();
        assert_eq!(names.len(), Outcome::all().len() - 8);
    }
}
