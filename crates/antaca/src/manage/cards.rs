//! The card lifecycle: issue virtual and physical cards, link a personalised
//! card, print a virtual card (Digital First), activate, lock, unlock,
//! remove, reveal full card data, reset the CVV2 and set the PIN. Like
//! `manage`, these run on the writer, so the next authorization sees them.
//!
//! Card data: the PAN is sealed in the vault (AES-256-GCM) and found by its
//! keyed hash; the CVV2 of a card Antaca issues is never stored — it is
//! derived with the CVV method under the card verification key; the PIN is
//! kept as a keyed hash.

use crate::domain::calendar;
use crate::domain::model::{BalanceOwner, Card, CardState, CardType, Kyc};
use crate::domain::outcome::lock_reason;
use crate::engine::state::{Changes, State};
use crate::manage::error::ErrorCode;
use crate::manage::{balances, customers, ManageError};
use crate::security::cvv;
use crate::security::pan::mask_pan;
use crate::security::pinblock::Pin;
use crate::security::secrets::CardSecrets;
use crate::security::vault::{self, Vault};
use serde::Serialize;

/// The keys card operations need: keyed hashes, the vault and the CVK.
#[derive(Clone)]
pub struct CardKeys {
    /// Keyed hashes of PANs and PINs.
    pub secrets: CardSecrets,
    /// The PAN vault.
    pub vault: Vault,
}

impl CardKeys {
    /// The keys derived from the data key.
    pub fn new(secrets: CardSecrets) -> CardKeys {
        let vault = Vault::from_secrets(&secrets);
        CardKeys { secrets, vault }
    }
}

/// Who asks: the customer (and program) a card must belong to, or anyone (administrators).
#[derive(Clone, Debug)]
pub struct Scope {
    /// The card's customer must be this one.
    pub customer: Option<String>,
    /// The card's program must be this one.
    pub program: Option<String>,
}

impl Scope {
    /// No restriction (administrators).
    pub fn any() -> Scope {
        Scope {
            customer: None,
            program: None,
        }
    }
}

/// A card as the channels show it: masked PAN only.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CardView {
    /// Id.
    pub id: String,
    /// `virtual`, `physical` or `digital_first`.
    #[serde(rename = "type")]
    pub card_type: CardType,
    /// `active`, `inactive` or `removed`.
    pub state: CardState,
    /// Lock reason 1–8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock: Option<u8>,
    /// First 6 and last 4 digits.
    pub masked_pan: String,
    /// Expiry as a date: the last day of the expiry month.
    pub exp: String,
    /// The balance it spends from.
    pub balance_id: String,
    /// False until the personalisation centre confirms a physical card.
    pub linked: bool,
    /// Whether a PIN is set.
    pub pin_set: bool,
}

/// Full card data, for JWE responses only.
#[derive(Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CardData {
    /// Id.
    pub id: String,
    /// Type.
    #[serde(rename = "type")]
    pub card_type: CardType,
    /// The full PAN.
    pub card_no: String,
    /// The CVV2 (absent for a card whose CVV2 came from outside and was never reset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cvv: Option<String>,
    /// Expiry as a date (last day of the month).
    pub exp: String,
    /// The balance.
    pub balance_id: String,
}

impl std::fmt::Debug for CardData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CardData")
            .field("id", &self.id)
            .field("cardNo", &mask_pan(self.card_no.as_bytes()))
            .finish_non_exhaustive()
    }
}

fn missing(card: &str) -> ManageError {
    ManageError::not_found(ErrorCode::CardNotFound, format!("no card {card:?}"))
}

/// What every operation on a removed card answers.
fn removed() -> ManageError {
    ManageError::conflict(ErrorCode::CardRemoved, "the card was removed")
}

/// The last day of a YYMM expiry month, as `YYYY-MM-DD`.
pub fn expiry_date(yymm: &str) -> String {
    let year: i32 = yymm
        .get(0..2)
        .and_then(|y| y.parse().ok())
        .map_or(2000, |y: i32| 2000 + y);
    let month: u32 = yymm
        .get(2..4)
        .and_then(|m| m.parse().ok())
        .unwrap_or(1)
        .clamp(1, 12);
    let next = if month == 12 {
        calendar::Date {
            year: year + 1,
            month: 1,
            day: 1,
        }
    } else {
        calendar::Date {
            year,
            month: month + 1,
            day: 1,
        }
    };
    let last = calendar::civil_date(calendar::days_from_civil(next) - 1);
    format!("{:04}-{:02}-{:02}", last.year, last.month, last.day)
}

/// The masked view of a card.
pub fn view(card: &Card) -> CardView {
    CardView {
        id: card.id.clone(),
        card_type: card.card_type,
        state: card.state,
        lock: card.lock,
        masked_pan: card.pan_masked.clone(),
        exp: expiry_date(&card.expiry),
        balance_id: card.balance.clone(),
        linked: card.linked,
        pin_set: card.pin_hash.is_some(),
    }
}

/// The customer a card belongs to (through its balance).
pub fn owner(state: &State, card: &Card) -> Option<String> {
    match state.balances.get(&card.balance).map(|b| &b.owner) {
        Some(BalanceOwner::User(user)) => Some(user.clone()),
        _ => None,
    }
}

/// A card the scope may act on. A physical card not yet linked is not visible to its customer.
pub fn card<'a>(state: &'a State, id: &str, scope: &Scope) -> Result<&'a Card, ManageError> {
    let card = state.cards.get(id).ok_or_else(|| missing(id))?;
    if let Some(customer) = &scope.customer {
        if owner(state, card).as_ref() != Some(customer) || !card.linked {
            return Err(missing(id));
        }
    }
    if scope.program.as_ref().is_some_and(|p| p != &card.program) {
        return Err(missing(id));
    }
    Ok(card)
}

/// A card the scope may act on that is not removed.
fn live_card<'a>(state: &'a State, id: &str, scope: &Scope) -> Result<&'a Card, ManageError> {
    let card = card(state, id, scope)?;
    if card.state == CardState::Removed {
        return Err(removed());
    }
    Ok(card)
}

/// A copy of a card the scope may act on: one of `types` (else a conflict
/// with `code` and `message`), then not removed.
fn live_card_of_type(
    state: &State,
    id: &str,
    scope: &Scope,
    types: &[CardType],
    code: ErrorCode,
    message: &'static str,
) -> Result<Card, ManageError> {
    let card = card(state, id, scope)?;
    if !types.contains(&card.card_type) {
        return Err(ManageError::conflict(code, message));
    }
    if card.state == CardState::Removed {
        return Err(removed());
    }
    Ok(card.clone())
}

/// The cards of a customer (linked ones only, unless `all`).
pub fn list(state: &State, customer: &str, all: bool) -> Vec<CardView> {
    let mut cards: Vec<CardView> = state
        .cards
        .values()
        .filter(|c| owner(state, c).as_deref() == Some(customer) && (all || c.linked))
        .map(view)
        .collect();
    cards.sort_by(|a, b| a.id.cmp(&b.id));
    cards
}

/// YYMM of the month `months` after the month of `now`.
fn expiry_after(now: u64, months: u32) -> String {
    let today = calendar::date_of_ms(now);
    let total = i64::from(today.year) * 12 + i64::from(today.month) - 1 + i64::from(months);
    let year = total.div_euclid(12);
    let month = total.rem_euclid(12) + 1;
    format!("{:02}{:02}", year.rem_euclid(100), month)
}

/// Issues a card of `card_type` on a customer's balance: a new PAN from the
/// program's BIN (never one in use or used before), sealed; expiry per program;
/// a derived CVV2. Returns the card and its full data.
#[allow(clippy::too_many_arguments)]
fn issue(
    state: &mut State,
    changes: &mut Changes,
    keys: &CardKeys,
    customer: &str,
    scope: &Scope,
    balance_id: &str,
    card_type: CardType,
    now: u64,
) -> Result<(Card, CardData), ManageError> {
    let user = customers::customer(state, customer, scope.program.as_deref())?.clone();
    if user.kyc != Kyc::Verified {
        return Err(ManageError::conflict(
            ErrorCode::KycNotAccepted,
            "cards are issued only to customers whose KYC is accepted",
        ));
    }
    balances::user_balance(state, balance_id, Some(&user.id), scope.program.as_deref())?;
    let program = state.programs.get(&user.program).cloned().ok_or_else(|| {
        ManageError::not_found(ErrorCode::ProgramNotFound, "the customer's program is gone")
    })?;
    let secrets = &keys.secrets;
    let pan = vault::generate_pan(&program.bin, 16, |candidate| {
        state.card_by_pan.contains_key(&secrets.pan_hash(candidate))
    })
    .map_err(|e| ManageError::conflict(ErrorCode::PanRangeExhausted, e.to_string()))?;
    // From here the card is issued.
    let id = format!("card_{}", changes.next_in_sequence(state, "card"));
    let expiry = expiry_after(now, program.card_validity_months);
    let physical = card_type == CardType::Physical;
    let card = Card {
        id: id.clone(),
        balance: balance_id.to_string(),
        program: program.id.clone(),
        card_type,
        state: if physical {
            CardState::Inactive
        } else {
            CardState::Active
        },
        lock: None,
        expiry: expiry.clone(),
        pan_hash: hex::encode(secrets.pan_hash(pan.as_bytes())),
        pan_masked: mask_pan(pan.as_bytes()),
        cvv2_hash: None,
        pin_hash: None,
        pin_tries: 0,
        pan_sealed: Some(keys.vault.seal_pan(&id, pan.as_bytes())),
        linked: !physical,
        created_ms: now,
        activated_ms: (!physical).then_some(now),
        cvv_generation: Some(1),
    };
    let cvv = cvv::derive_cvv2(
        &cvv::card_verification_key(secrets),
        pan.as_bytes(),
        &expiry,
        1,
    );
    changes.put_card(state, card.clone(), secrets.pan_hash(pan.as_bytes()));
    let data = CardData {
        id,
        card_type,
        card_no: pan,
        cvv: Some(cvv),
        exp: expiry_date(&expiry),
        balance_id: balance_id.to_string(),
    };
    Ok((card, data))
}

/// Creates a virtual card: active at once; returns its full data.
pub fn create_virtual(
    state: &mut State,
    changes: &mut Changes,
    keys: &CardKeys,
    customer: &str,
    scope: &Scope,
    balance_id: &str,
    now: u64,
) -> Result<CardData, ManageError> {
    issue(
        state,
        changes,
        keys,
        customer,
        scope,
        balance_id,
        CardType::Virtual,
        now,
    )
    .map(|(_, data)| data)
}

/// Orders a physical card: inactive, and not linked to the customer until the
/// personalisation centre confirms it.
pub fn order_physical(
    state: &mut State,
    changes: &mut Changes,
    keys: &CardKeys,
    customer: &str,
    scope: &Scope,
    balance_id: &str,
    now: u64,
) -> Result<CardView, ManageError> {
    issue(
        state,
        changes,
        keys,
        customer,
        scope,
        balance_id,
        CardType::Physical,
        now,
    )
    .map(|(card, _)| view(&card))
}

fn update(state: &mut State, changes: &mut Changes, card: Card) -> CardView {
    let hash = card_pan_hash(&card);
    let out = view(&card);
    changes.put_card(state, card, hash);
    out
}

fn card_pan_hash(card: &Card) -> [u8; 32] {
    let mut hash = [0u8; 32];
    // Stored by us as 64 hex digits; a record that is not is left unindexed rather than panicking.
    let _ = hex::decode_to_slice(&card.pan_hash, &mut hash);
    hash
}

/// The personalisation centre confirmed a physical card: link it to its customer and balance.
pub fn confirm_personalised(
    state: &mut State,
    changes: &mut Changes,
    id: &str,
) -> Result<CardView, ManageError> {
    let mut card = card(state, id, &Scope::any())?.clone();
    if card.card_type != CardType::Physical {
        return Err(ManageError::conflict(
            ErrorCode::NotAPhysicalCard,
            "only physical cards are personalised",
        ));
    }
    if card.linked {
        return Err(ManageError::conflict(
            ErrorCode::AlreadyLinked,
            "the card is already linked",
        ));
    }
    card.linked = true;
    Ok(update(state, changes, card))
}

/// Prints a virtual card as a Digital First plastic: same PAN, no activation;
/// only for programs registered in Digital First.
pub fn print_virtual(
    state: &mut State,
    changes: &mut Changes,
    id: &str,
    scope: &Scope,
) -> Result<CardView, ManageError> {
    let mut card = card(state, id, scope)?.clone();
    let digital_first = state
        .programs
        .get(&card.program)
        .is_some_and(|p| p.digital_first);
    if !digital_first {
        return Err(ManageError::conflict(
            ErrorCode::NotDigitalFirst,
            "the card's program is not registered in Digital First",
        ));
    }
    if card.card_type != CardType::Virtual || card.state == CardState::Removed {
        return Err(ManageError::conflict(
            ErrorCode::NotPrintable,
            "only a virtual card that is not removed can be printed",
        ));
    }
    card.card_type = CardType::DigitalFirst;
    Ok(update(state, changes, card))
}

/// Activates a physical card once it is linked.
pub fn activate(
    state: &mut State,
    changes: &mut Changes,
    id: &str,
    scope: &Scope,
    now: u64,
) -> Result<CardView, ManageError> {
    let mut card = card(state, id, scope)?.clone();
    match (card.state, card.linked) {
        (CardState::Removed, _) => return Err(removed()),
        (CardState::Active, _) => {
            return Err(ManageError::conflict(
                ErrorCode::AlreadyActive,
                "the card is already active",
            ))
        }
        (CardState::Inactive, false) => {
            return Err(ManageError::conflict(
                ErrorCode::NotPersonalised,
                "the personalisation centre has not confirmed the card yet",
            ))
        }
        (CardState::Inactive, true) => {}
    }
    card.state = CardState::Active;
    card.activated_ms = Some(now);
    Ok(update(state, changes, card))
}

/// Locks a card with a reason 1–8. A card locked for an irreversible reason keeps it.
pub fn lock(
    state: &mut State,
    changes: &mut Changes,
    id: &str,
    scope: &Scope,
    reason: u8,
) -> Result<CardView, ManageError> {
    if lock_reason(reason).is_none() {
        return Err(ManageError::invalid(
            ErrorCode::InvalidLockReason,
            "the reason is 1 to 8",
        ));
    }
    let mut card = live_card(state, id, scope)?.clone();
    if let Some(current) = card.lock.and_then(lock_reason) {
        if current.irreversible && current.number != reason {
            return Err(ManageError::conflict(
                ErrorCode::LockIrreversible,
                format!(
                    "the card is locked for good ({}); the reason cannot change",
                    current.name
                ),
            ));
        }
    }
    card.lock = Some(reason);
    Ok(update(state, changes, card))
}

/// Unlocks a card, unless it was locked for an irreversible reason (1, 2, 5, 8).
pub fn unlock(
    state: &mut State,
    changes: &mut Changes,
    id: &str,
    scope: &Scope,
) -> Result<CardView, ManageError> {
    let mut card = live_card(state, id, scope)?.clone();
    let Some(current) = card.lock.and_then(lock_reason) else {
        return Err(ManageError::conflict(
            ErrorCode::NotLocked,
            "the card is not locked",
        ));
    };
    if current.irreversible {
        return Err(ManageError::conflict(
            ErrorCode::LockIrreversible,
            format!("a card locked as \"{}\" cannot be unlocked", current.name),
        ));
    }
    card.lock = None;
    if current.number == 6 {
        card.pin_tries = 0;
    }
    Ok(update(state, changes, card))
}

/// Removes a card for good: its PAN declines as an invalid card from now on.
pub fn remove(
    state: &mut State,
    changes: &mut Changes,
    id: &str,
    scope: &Scope,
) -> Result<CardView, ManageError> {
    let mut card = card(state, id, scope)?.clone();
    if card.state == CardState::Removed {
        return Err(ManageError::conflict(
            ErrorCode::CardRemoved,
            "the card was already removed",
        ));
    }
    card.state = CardState::Removed;
    Ok(update(state, changes, card))
}

fn clear_pan(keys: &CardKeys, card: &Card) -> Result<Vec<u8>, ManageError> {
    let sealed = card.pan_sealed.as_deref().ok_or_else(|| {
        ManageError::conflict(
            ErrorCode::CardDataUnavailable,
            "this card's PAN is not held by Antaca",
        )
    })?;
    keys.vault.open_pan(&card.id, sealed).map_err(|_| {
        ManageError::conflict(
            ErrorCode::CardDataUnavailable,
            "this card's sealed PAN cannot be opened",
        )
    })
}

/// Full card data: PAN, expiry and (for derived ones) CVV2.
pub fn full_data(
    state: &State,
    keys: &CardKeys,
    id: &str,
    scope: &Scope,
) -> Result<CardData, ManageError> {
    let card = live_card(state, id, scope)?;
    let pan = clear_pan(keys, card)?;
    let cvv = card.cvv_generation.map(|generation| {
        cvv::derive_cvv2(
            &cvv::card_verification_key(&keys.secrets),
            &pan,
            &card.expiry,
            generation,
        )
    });
    Ok(CardData {
        id: card.id.clone(),
        card_type: card.card_type,
        card_no: String::from_utf8_lossy(&pan).into_owned(),
        cvv,
        exp: expiry_date(&card.expiry),
        balance_id: card.balance.clone(),
    })
}

/// A new CVV2 for a virtual or Digital First card; the old one declines from now on.
pub fn reset_cvv(
    state: &mut State,
    changes: &mut Changes,
    keys: &CardKeys,
    id: &str,
    scope: &Scope,
) -> Result<CardData, ManageError> {
    let mut card = live_card_of_type(
        state,
        id,
        scope,
        &[CardType::Virtual, CardType::DigitalFirst],
        ErrorCode::CvvResetNotAllowed,
        "the CVV2 is reset for virtual and Digital First cards",
    )?;
    clear_pan(keys, &card)?;
    card.cvv_generation = Some(card.cvv_generation.map_or(1, |g| g.wrapping_add(1)));
    card.cvv2_hash = None;
    let hash = card_pan_hash(&card);
    changes.put_card(state, card, hash);
    full_data(state, keys, id, scope)
}

/// Sets the PIN of a physical or Digital First card (kept as a keyed hash; resets the tries).
pub fn set_pin(
    state: &mut State,
    changes: &mut Changes,
    keys: &CardKeys,
    id: &str,
    scope: &Scope,
    pin: &Pin,
) -> Result<CardView, ManageError> {
    let mut card = live_card_of_type(
        state,
        id,
        scope,
        &[CardType::Physical, CardType::DigitalFirst],
        ErrorCode::PinNotAllowed,
        "a PIN is set on physical and Digital First cards",
    )?;
    card.pin_hash = Some(keys.secrets.pin_hash(&card.id, pin.as_bytes()));
    card.pin_tries = 0;
    Ok(update(state, changes, card))
}

/// Locks a card found by its PAN (external entities: networks, acquirers).
pub fn lock_by_pan(
    state: &mut State,
    changes: &mut Changes,
    keys: &CardKeys,
    pan: &[u8],
    reason: u8,
) -> Result<CardView, ManageError> {
    let hash = keys.secrets.pan_hash(pan);
    let id = state
        .card_by_pan
        .get(&hash)
        .cloned()
        .ok_or_else(|| missing("(by PAN)"))?;
    lock(state, changes, &id, &Scope::any(), reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_dates_are_the_last_day_of_the_month() {
        assert_eq!(expiry_date("2812"), "2028-12-31");
        assert_eq!(expiry_date("2802"), "2028-02-29");
        assert_eq!(expiry_date("2702"), "2027-02-28");
        assert_eq!(expiry_after(1_795_564_800_000, 36), "2911");
        assert_eq!(expiry_after(1_795_564_800_000, 2), "2701");
    }
}
