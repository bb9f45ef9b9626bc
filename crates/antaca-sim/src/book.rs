//! The cards and balances the simulator drives, read from a portfolio.

use antaca::domain::model::{CardState, Funding};
use antaca::domain::money::Currency;
use antaca::manage::portfolio::Portfolio;
use std::collections::HashMap;

/// Why a card cannot be approved (the sim expects a decline).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadReason {
    /// Card state removed.
    Removed,
    /// Physical card not activated.
    Inactive,
    /// Lock code 1–8.
    Locked(u8),
    /// Expiry month ended.
    Expired,
}

/// One card as the simulator sees it. Holds the clear PAN: never print it.
#[derive(Clone)]
pub struct SimCard {
    /// Portfolio id (safe to print).
    pub id: String,
    /// PAN (never printed).
    pub pan: String,
    /// YYMM.
    pub expiry: String,
    /// CVV2 from the portfolio, sent in field 48 tag 92 (never printed).
    pub cvv2: Option<String>,
    /// Currency of the balance the card spends from.
    pub currency: Currency,
    /// Indexes into [`Book::accounts`] of the balances an approval moves (the engine's legs).
    pub legs: Vec<usize>,
    /// `None` for a card that can be approved.
    pub bad: Option<BadReason>,
}

impl std::fmt::Debug for SimCard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimCard")
            .field("id", &self.id)
            .field("pan", &antaca::security::pan::mask_pan(self.pan.as_bytes()))
            .field("bad", &self.bad)
            .finish_non_exhaustive()
    }
}

/// A balance (user or partner) with its opening amount in minor units.
#[derive(Clone, Debug)]
pub struct Account {
    /// Balance id from the portfolio.
    pub id: String,
    /// Opening available amount (minor units).
    pub opening: i64,
}

/// Cards and balances of a portfolio.
#[derive(Clone, Debug, Default)]
pub struct Book {
    /// All cards with a known balance.
    pub cards: Vec<SimCard>,
    /// All balances cards spend from.
    pub accounts: Vec<Account>,
    /// Indexes of cards that can be approved.
    pub good: Vec<usize>,
    /// Indexes of cards that must never be approved.
    pub bad: Vec<usize>,
    /// A card that can be approved, by the first balance it spends from.
    pub spender: HashMap<usize, usize>,
}

/// Current YYMM (UTC).
pub fn current_yymm() -> u32 {
    let date = antaca::domain::calendar::date_of_ms(antaca::engine::now_ms());
    date.year.rem_euclid(100).unsigned_abs() * 100 + date.month
}

impl Book {
    /// Builds the book from a parsed portfolio; `yymm` decides which cards are expired.
    pub fn from_portfolio(portfolio: &Portfolio, yymm: u32) -> Result<Book, String> {
        let mut book = Book::default();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut add = |book: &mut Book, id: &str, currency: &str, amount: &str| {
            let currency = Currency::from_alpha(currency)
                .ok_or_else(|| format!("balance {id}: unknown currency {currency}"))?;
            let amount = currency
                .parse_amount(amount)
                .map_err(|e| format!("balance {id}: amount: {e}"))?;
            let opening = currency
                .to_minor(amount)
                .ok_or_else(|| format!("balance {id}: amount out of range"))?;
            index.insert(id.to_string(), book.accounts.len());
            book.accounts.push(Account {
                id: id.to_string(),
                opening,
            });
            Ok::<Currency, String>(currency)
        };
        let mut currencies = Vec::new();
        for b in &portfolio.balances {
            currencies.push(add(&mut book, &b.id, &b.currency, &b.amount)?);
        }
        for b in &portfolio.partner_balances {
            currencies.push(add(&mut book, &b.id, &b.currency, &b.amount)?);
        }
        let programs: HashMap<&str, _> = portfolio
            .programs
            .iter()
            .map(|p| (p.id.as_str(), p))
            .collect();
        let user_program: HashMap<&str, &str> = portfolio
            .users
            .iter()
            .map(|u| (u.id.as_str(), u.program.as_str()))
            .collect();
        let balance_user: HashMap<&str, &str> = portfolio
            .balances
            .iter()
            .map(|b| (b.id.as_str(), b.user.as_str()))
            .collect();
        for card in &portfolio.cards {
            let Some(&user_leg) = index.get(&card.balance) else {
                continue;
            };
            let program = balance_user
                .get(card.balance.as_str())
                .and_then(|u| user_program.get(u))
                .and_then(|p| programs.get(p));
            let Some(program) = program else { continue };
            let partner = program
                .partner_balance
                .as_ref()
                .and_then(|id| index.get(id).copied());
            let legs = match (program.funding, partner) {
                (Funding::UserBalance, _) => vec![user_leg],
                (Funding::PartnerCredit, Some(p)) => vec![user_leg, p],
                (Funding::PartnerDeposit, Some(p)) => vec![p],
                _ => continue,
            };
            let currency = currencies[legs[0]];
            let expiry_n: u32 = card.expiry.parse().unwrap_or(0);
            let bad = match (card.state, card.lock) {
                (CardState::Removed, _) => Some(BadReason::Removed),
                (CardState::Inactive, _) => Some(BadReason::Inactive),
                (_, Some(l)) => Some(BadReason::Locked(l)),
                _ if expiry_n < yymm => Some(BadReason::Expired),
                _ => None,
            };
            let i = book.cards.len();
            if bad.is_some() {
                book.bad.push(i);
            } else {
                book.good.push(i);
                book.spender.entry(legs[0]).or_insert(i);
            }
            book.cards.push(SimCard {
                id: card.id.clone(),
                pan: card.pan.clone(),
                expiry: card.expiry.clone(),
                cvv2: card.cvv2.clone(),
                currency,
                legs,
                bad,
            });
        }
        if book.good.is_empty() {
            return Err("the portfolio has no card that can be approved".into());
        }
        Ok(book)
    }
}
