use super::*;
use crate::domain::model::{BalanceOwner, CardType};

// 2026-11-25T00:00:00Z
const NOW: u64 = 1_795_564_800_000;

fn eur() -> Currency {
    Currency::from_alpha("EUR").expect("EUR")
}

fn card() -> Card {
    Card {
        id: "c-1".into(),
        balance: "b-1".into(),
        program: "demo".into(),
        card_type: CardType::Virtual,
        state: CardState::Active,
        lock: None,
        expiry: "2812".into(),
        pan_hash: String::new(),
        pan_masked: "535522******0017".into(),
        cvv2_hash: None,
        pin_hash: None,
        pin_tries: 0,
        pan_sealed: None,
        linked: true,
        created_ms: 0,
        activated_ms: None,
        cvv_generation: None,
    }
}

fn balance(available: &str) -> Balance {
    Balance {
        id: "b-1".into(),
        owner: BalanceOwner::User("u-1".into()),
        currency: "EUR".into(),
        available: available.parse().expect("decimal"),
        held: Decimal::ZERO,
        low_level: None,
    }
}

fn hold(amount_minor: u64) -> Request {
    Request {
        operation: Operation::Hold,
        amount_minor,
        currency: eur(),
        billing: None,
        expiry: None,
        transmission: Some((11, 25)),
        cvv2_ok: None,
        pin_ok: None,
        pin_unverifiable: false,
    }
}

fn amount(s: &str) -> Decimal {
    s.parse().expect("decimal")
}

#[test]
fn approves_within_funds() {
    let b = balance("150.00");
    assert_eq!(
        decide(Some(&card()), &[&b], &hold(15000), NOW),
        Decision::Approve {
            amount: amount("150.00")
        }
    );
    assert_eq!(
        decide(Some(&card()), &[&b], &hold(15001), NOW),
        Decision::Decline(Outcome::InsufficientFunds)
    );
}

#[test]
fn every_leg_must_cover_the_amount() {
    let user = balance("150.00");
    let mut partner = balance("10.00");
    partner.id = "pc-1".into();
    assert_eq!(
        decide(Some(&card()), &[&user, &partner], &hold(1001), NOW),
        Decision::Decline(Outcome::InsufficientFunds)
    );
    assert_eq!(
        decide(Some(&card()), &[&user, &partner], &hold(1000), NOW),
        Decision::Approve {
            amount: amount("10.00")
        }
    );
}

#[test]
fn precedence_order() {
    let b = balance("0.00");
    let mut c = card();
    c.state = CardState::Removed;
    c.lock = Some(1);
    c.expiry = "2001".into();
    assert_eq!(
        decide(None, &[&b], &hold(1), NOW),
        Decision::Decline(Outcome::UnknownCard)
    );
    assert_eq!(
        decide(Some(&c), &[&b], &hold(1), NOW),
        Decision::Decline(Outcome::CardRemoved)
    );
    c.state = CardState::Inactive;
    assert_eq!(
        decide(Some(&c), &[&b], &hold(1), NOW),
        Decision::Decline(Outcome::CardNotActivated)
    );
    c.state = CardState::Active;
    assert_eq!(
        decide(Some(&c), &[&b], &hold(1), NOW),
        Decision::Decline(Outcome::Locked(1))
    );
    c.lock = None;
    assert_eq!(
        decide(Some(&c), &[&b], &hold(1), NOW),
        Decision::Decline(Outcome::Expired)
    );
    c.expiry = "2812".into();
    let mut usd = hold(1);
    usd.currency = Currency::from_alpha("USD").expect("USD");
    assert_eq!(
        decide(Some(&c), &[&b], &usd, NOW),
        Decision::Decline(Outcome::CurrencyMismatch)
    );
    assert_eq!(
        decide(Some(&c), &[&b], &hold(1), NOW),
        Decision::Decline(Outcome::InsufficientFunds)
    );
}

#[test]
fn expiry_month_is_inclusive_and_field_14_must_match() {
    let b = balance("100.00");
    let mut c = card();
    c.expiry = "2611".into();
    assert_eq!(
        decide(Some(&c), &[&b], &hold(1), NOW),
        Decision::Approve {
            amount: amount("0.01")
        }
    );
    let mut next_month = hold(1);
    next_month.transmission = Some((12, 1));
    assert_eq!(
        decide(Some(&c), &[&b], &next_month, NOW),
        Decision::Decline(Outcome::Expired)
    );
    let mut wrong = hold(1);
    wrong.expiry = Some(*b"2612");
    assert_eq!(
        decide(Some(&c), &[&b], &wrong, NOW),
        Decision::Decline(Outcome::Expired)
    );
    wrong.expiry = Some(*b"2611");
    assert_eq!(
        decide(Some(&c), &[&b], &wrong, NOW),
        Decision::Approve {
            amount: amount("0.01")
        }
    );
}

#[test]
fn billing_amount_converts_foreign_currency() {
    let b = balance("100.00");
    let mut usd = hold(5000);
    usd.currency = Currency::from_alpha("USD").expect("USD");
    usd.billing = Some((4321, eur()));
    assert_eq!(
        decide(Some(&card()), &[&b], &usd, NOW),
        Decision::Approve {
            amount: amount("43.21")
        }
    );
}

#[test]
fn forced_posts_past_locks_funds_and_removal() {
    let b = balance("0.00");
    let mut c = card();
    c.lock = Some(7);
    let mut advice = hold(5000);
    advice.operation = Operation::Forced;
    assert_eq!(
        decide(Some(&c), &[&b], &advice, NOW),
        Decision::Approve {
            amount: amount("50.00")
        }
    );
    c.state = CardState::Removed;
    assert_eq!(
        decide(Some(&c), &[&b], &advice, NOW),
        Decision::Approve {
            amount: amount("50.00")
        }
    );
    assert_eq!(
        decide(None, &[&b], &advice, NOW),
        Decision::Decline(Outcome::UnknownCard)
    );
}

#[test]
fn a_back_dated_transmission_date_does_not_revive_an_expired_card() {
    let b = balance("100.00");
    let mut c = card();
    c.expiry = "2610".into();
    let mut back_dated = hold(1);
    back_dated.transmission = Some((10, 15));
    assert_eq!(
        decide(Some(&c), &[&b], &back_dated, NOW),
        Decision::Decline(Outcome::Expired)
    );
}

#[test]
fn inquiry_and_credit_ignore_funds() {
    let b = balance("0.00");
    let mut r = hold(100);
    r.operation = Operation::Inquiry;
    assert_eq!(
        decide(Some(&card()), &[&b], &r, NOW),
        Decision::Approve {
            amount: Decimal::ZERO
        }
    );
    r.operation = Operation::Credit;
    assert_eq!(
        decide(Some(&card()), &[&b], &r, NOW),
        Decision::Approve {
            amount: amount("1.00")
        }
    );
}

#[test]
fn cvv2_then_pin_after_expiry_before_funds() {
    let b = balance("1.00");
    let mut r = hold(1000);
    r.cvv2_ok = Some(false);
    r.pin_ok = Some(false);
    assert_eq!(
        decide(Some(&card()), &[&b], &r, NOW),
        Decision::Decline(Outcome::WrongCvv2)
    );
    r.cvv2_ok = Some(true);
    assert_eq!(
        decide(Some(&card()), &[&b], &r, NOW),
        Decision::Decline(Outcome::IncorrectPin)
    );
    r.pin_ok = Some(true);
    assert_eq!(
        decide(Some(&card()), &[&b], &r, NOW),
        Decision::Decline(Outcome::InsufficientFunds)
    );
    r.pin_ok = None;
    r.pin_unverifiable = true;
    assert_eq!(
        decide(Some(&card()), &[&b], &r, NOW),
        Decision::Decline(Outcome::PinUnverifiable)
    );
    // Locked and expired come first.
    let mut locked = card();
    locked.lock = Some(7);
    r.cvv2_ok = Some(false);
    assert_eq!(
        decide(Some(&locked), &[&b], &r, NOW),
        Decision::Decline(Outcome::Locked(7))
    );
    let mut expired = card();
    expired.expiry = "2001".into();
    assert_eq!(
        decide(Some(&expired), &[&b], &r, NOW),
        Decision::Decline(Outcome::Expired)
    );
    // Forced operations skip CVV2 and PIN.
    r.operation = Operation::Forced;
    r.pin_unverifiable = false;
    r.pin_ok = Some(false);
    assert!(matches!(
        decide(Some(&card()), &[&b], &r, NOW),
        Decision::Approve { .. }
    ));
}

#[test]
fn third_wrong_pin_locks_and_right_pin_resets() {
    let b = balance("100.00");
    let mut r = hold(100);
    r.pin_ok = Some(false);
    let mut c = card();
    assert_eq!(
        pin_tries_after(&c, &r, NOW),
        Some(PinTries {
            tries: 1,
            lock: None
        })
    );
    c.pin_tries = 1;
    assert_eq!(
        decide(Some(&c), &[&b], &r, NOW),
        Decision::Decline(Outcome::IncorrectPin)
    );
    assert_eq!(
        pin_tries_after(&c, &r, NOW),
        Some(PinTries {
            tries: 2,
            lock: None
        })
    );
    c.pin_tries = 2;
    assert_eq!(
        decide(Some(&c), &[&b], &r, NOW),
        Decision::Decline(Outcome::Locked(6))
    );
    assert_eq!(
        pin_tries_after(&c, &r, NOW),
        Some(PinTries {
            tries: 3,
            lock: Some(6)
        })
    );
    r.pin_ok = Some(true);
    assert_eq!(
        pin_tries_after(&c, &r, NOW),
        Some(PinTries {
            tries: 0,
            lock: None
        })
    );
    c.pin_tries = 0;
    assert_eq!(pin_tries_after(&c, &r, NOW), None, "nothing to reset");
    // Not reached: a locked card, a wrong CVV2, a forced operation.
    r.pin_ok = Some(false);
    c.lock = Some(3);
    assert_eq!(pin_tries_after(&c, &r, NOW), None);
    c.lock = None;
    r.cvv2_ok = Some(false);
    assert_eq!(pin_tries_after(&c, &r, NOW), None);
    r.cvv2_ok = None;
    r.operation = Operation::Forced;
    assert_eq!(pin_tries_after(&c, &r, NOW), None);
}
