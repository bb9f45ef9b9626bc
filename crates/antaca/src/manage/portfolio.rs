//! Portfolio import: programs, partner balances, users, balances and cards
//! from the JSON other tools write. Everything is checked first; a single
//! bad record refuses the whole file, naming the record, and nothing is imported.

use crate::domain::model::{
    Account, Balance, BalanceOwner, Card, CardState, CardType, EntryKind, Funding, JournalEntry,
    Kyc, Posting, Program, User,
};
use crate::domain::money::Currency;
use crate::engine::Engine;
use crate::security::pan::{luhn_valid, mask_pan};
use crate::security::secrets::CardSecrets;
use crate::store::{Store, StoreError};
use rust_decimal::Decimal;
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::fmt;

/// The portfolio file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Portfolio {
    /// Card programs.
    pub programs: Vec<ProgramRecord>,
    /// Partner credit and deposit balances.
    #[serde(default)]
    pub partner_balances: Vec<PartnerBalanceRecord>,
    /// Cardholders.
    #[serde(default)]
    pub users: Vec<UserRecord>,
    /// User balances.
    #[serde(default)]
    pub balances: Vec<BalanceRecord>,
    /// Cards.
    #[serde(default)]
    pub cards: Vec<CardRecord>,
}

/// A program record.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgramRecord {
    /// Id.
    pub id: String,
    /// BIN the program's PANs start with.
    pub bin: String,
    /// ISO 4217 alphabetic currency.
    pub currency: String,
    /// Funding model.
    pub funding: Funding,
    /// Partner balance of a partner_* program.
    #[serde(default)]
    pub partner_balance: Option<String>,
    /// Registered in Digital First (virtual cards may be printed); default false.
    #[serde(default)]
    pub digital_first: bool,
    /// Validity of new cards in months; default 36.
    #[serde(default)]
    pub card_validity_months: Option<u32>,
}

/// Kind of a partner balance.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PartnerKind {
    /// Partner credit balance.
    Credit,
    /// Partner deposit balance.
    Deposit,
}

/// A partner balance record.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartnerBalanceRecord {
    /// Id.
    pub id: String,
    /// Program.
    pub program: String,
    /// Credit or deposit.
    pub kind: PartnerKind,
    /// Currency.
    pub currency: String,
    /// Opening amount, decimal string.
    pub amount: String,
    /// Low-level notification threshold, decimal string.
    #[serde(default)]
    pub low_level: Option<String>,
}

/// A user record.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserRecord {
    /// Id.
    pub id: String,
    /// Program.
    pub program: String,
    /// KYC status.
    pub kyc: Kyc,
}

/// A user balance record.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BalanceRecord {
    /// Id.
    pub id: String,
    /// Owner.
    pub user: String,
    /// Currency.
    pub currency: String,
    /// Opening amount, decimal string.
    pub amount: String,
}

/// A card record. Carries card data in clear: the file is PCI data.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardRecord {
    /// Id.
    pub id: String,
    /// User balance.
    pub balance: String,
    /// Type.
    #[serde(rename = "type")]
    pub card_type: CardType,
    /// PAN.
    pub pan: String,
    /// YYMM.
    pub expiry: String,
    /// CVV2.
    #[serde(default)]
    pub cvv2: Option<String>,
    /// PIN.
    #[serde(default)]
    pub pin: Option<String>,
    /// State.
    pub state: CardState,
    /// Lock reason.
    #[serde(default)]
    pub lock: Option<u8>,
}

impl fmt::Debug for CardRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CardRecord")
            .field("id", &self.id)
            .field("pan", &mask_pan(self.pan.as_bytes()))
            .finish_non_exhaustive()
    }
}

/// Why a portfolio was refused.
#[derive(Debug)]
pub enum ImportError {
    /// The file could not be read.
    Io {
        /// The portfolio file.
        path: std::path::PathBuf,
        /// Why reading it failed.
        source: std::io::Error,
    },
    /// Not the portfolio JSON format.
    Syntax(serde_json::Error),
    /// A record is wrong; names it.
    Record {
        /// e.g. `cards[2] "c-3"`.
        record: String,
        /// What is wrong.
        problem: String,
    },
    /// The store already holds a portfolio.
    NotEmpty,
    /// The store failed.
    Store(StoreError),
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImportError::Io { path, source } => {
                write!(f, "cannot read the portfolio: {}: {source}", path.display())
            }
            ImportError::Syntax(e) => write!(f, "the portfolio is not valid portfolio JSON: {e}"),
            ImportError::Record { record, problem } => write!(f, "{record}: {problem}; nothing was imported"),
            ImportError::NotEmpty => f.write_str(
                "the store already holds a portfolio; import only into an empty data directory (use a new --data)",
            ),
            ImportError::Store(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ImportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ImportError::Io { source, .. } => Some(source),
            ImportError::Syntax(e) => Some(e),
            ImportError::Store(e) => Some(e),
            ImportError::Record { .. } | ImportError::NotEmpty => None,
        }
    }
}

/// What an import created.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    /// Programs.
    pub programs: usize,
    /// Users.
    pub users: usize,
    /// User and partner balances.
    pub balances: usize,
    /// Cards.
    pub cards: usize,
}

impl Portfolio {
    /// Parses portfolio JSON (syntax and field names only; see [`Portfolio::check`]).
    pub fn parse(text: &str) -> Result<Portfolio, ImportError> {
        serde_json::from_str(text).map_err(ImportError::Syntax)
    }

    /// Reads and parses a portfolio file.
    pub fn read(path: &std::path::Path) -> Result<Portfolio, ImportError> {
        let text = std::fs::read_to_string(path).map_err(|source| ImportError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Portfolio::parse(&text)
    }
}

fn refuse<T>(record: String, problem: impl Into<String>) -> Result<T, ImportError> {
    Err(ImportError::Record {
        record,
        problem: problem.into(),
    })
}

fn currency(record: &str, code: &str) -> Result<Currency, ImportError> {
    Currency::from_alpha(code).ok_or_else(|| ImportError::Record {
        record: record.to_string(),
        problem: format!("unknown ISO 4217 currency {code:?}"),
    })
}

fn amount(
    record: &str,
    field: &str,
    currency: Currency,
    text: &str,
) -> Result<Decimal, ImportError> {
    currency
        .parse_amount(text)
        .map_err(|e| ImportError::Record {
            record: record.to_string(),
            problem: format!("{field} {text:?}: {e}"),
        })
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Checked records ready to store.
struct Checked {
    programs: Vec<Program>,
    users: Vec<User>,
    balances: Vec<Balance>,
    cards: Vec<(Card, [u8; 32])>,
}

/// Checks every record and turns them into stored records (hashing card secrets).
fn check(p: &Portfolio, secrets: &CardSecrets) -> Result<Checked, ImportError> {
    let mut ids = HashSet::new();
    let mut unique = |kind: &str, record: &str, id: &str| -> Result<(), ImportError> {
        if id.is_empty() || !ids.insert(format!("{kind}/{id}")) {
            return refuse(
                record.to_string(),
                format!("id {id:?} is empty or used twice"),
            );
        }
        Ok(())
    };
    let mut programs = HashMap::new();
    for (i, r) in p.programs.iter().enumerate() {
        let name = format!("programs[{i}] {:?}", r.id);
        unique("program", &name, &r.id)?;
        currency(&name, &r.currency)?;
        if !(6..=8).contains(&r.bin.len()) || !all_digits(&r.bin) {
            return refuse(name, "bin must be 6 to 8 digits");
        }
        if r.card_validity_months
            .is_some_and(|m| !(1..=120).contains(&m))
        {
            return refuse(name, "card_validity_months must be 1 to 120");
        }
        match (r.funding, &r.partner_balance) {
            (Funding::UserBalance, Some(_)) => {
                return refuse(name, "a user_balance program names no partner_balance")
            }
            (Funding::PartnerCredit | Funding::PartnerDeposit, None) => {
                return refuse(name, "a partner_* program must name its partner_balance")
            }
            _ => {}
        }
        programs.insert(r.id.clone(), r);
    }
    let mut balances: HashMap<String, Balance> = HashMap::new();
    let mut ordered_balances = Vec::new();
    for (i, r) in p.partner_balances.iter().enumerate() {
        let name = format!("partner_balances[{i}] {:?}", r.id);
        unique("balance", &name, &r.id)?;
        let cur = currency(&name, &r.currency)?;
        let Some(program) = programs.get(&r.program) else {
            return refuse(name, format!("program {:?} does not exist", r.program));
        };
        let expected = match program.funding {
            Funding::PartnerCredit => Some(PartnerKind::Credit),
            Funding::PartnerDeposit => Some(PartnerKind::Deposit),
            Funding::UserBalance => None,
        };
        if program.partner_balance.as_deref() == Some(r.id.as_str()) && expected != Some(r.kind) {
            return refuse(name, "kind does not match the program's funding model");
        }
        let owner = match r.kind {
            PartnerKind::Credit => BalanceOwner::PartnerCredit(r.program.clone()),
            PartnerKind::Deposit => BalanceOwner::PartnerDeposit(r.program.clone()),
        };
        let low_level = match &r.low_level {
            Some(t) => Some(amount(&name, "low_level", cur, t)?),
            None => None,
        };
        let balance = Balance {
            id: r.id.clone(),
            owner,
            currency: cur.alpha.to_string(),
            available: amount(&name, "amount", cur, &r.amount)?,
            held: Decimal::ZERO,
            low_level,
        };
        balances.insert(r.id.clone(), balance.clone());
        ordered_balances.push(balance);
    }
    for (i, r) in p.programs.iter().enumerate() {
        if let Some(id) = &r.partner_balance {
            if !balances.contains_key(id) {
                return refuse(
                    format!("programs[{i}] {:?}", r.id),
                    format!("partner_balance {id:?} does not exist"),
                );
            }
        }
    }
    let mut users = HashMap::new();
    for (i, r) in p.users.iter().enumerate() {
        let name = format!("users[{i}] {:?}", r.id);
        unique("user", &name, &r.id)?;
        if !programs.contains_key(&r.program) {
            return refuse(name, format!("program {:?} does not exist", r.program));
        }
        users.insert(
            r.id.clone(),
            User {
                id: r.id.clone(),
                program: r.program.clone(),
                kyc: r.kyc,
            },
        );
    }
    for (i, r) in p.balances.iter().enumerate() {
        let name = format!("balances[{i}] {:?}", r.id);
        unique("balance", &name, &r.id)?;
        let cur = currency(&name, &r.currency)?;
        if !users.contains_key(&r.user) {
            return refuse(name, format!("user {:?} does not exist", r.user));
        }
        let balance = Balance {
            id: r.id.clone(),
            owner: BalanceOwner::User(r.user.clone()),
            currency: cur.alpha.to_string(),
            available: amount(&name, "amount", cur, &r.amount)?,
            held: Decimal::ZERO,
            low_level: None,
        };
        balances.insert(r.id.clone(), balance.clone());
        ordered_balances.push(balance);
    }
    let mut pans = HashSet::new();
    let mut cards = Vec::new();
    for (i, r) in p.cards.iter().enumerate() {
        let name = format!("cards[{i}] {:?}", r.id);
        unique("card", &name, &r.id)?;
        let Some(balance) = balances.get(&r.balance) else {
            return refuse(name, format!("balance {:?} does not exist", r.balance));
        };
        let BalanceOwner::User(user_id) = &balance.owner else {
            return refuse(
                name,
                format!(
                    "balance {:?} is a partner balance, not a user balance",
                    r.balance
                ),
            );
        };
        let Some(program) = users.get(user_id).and_then(|u| programs.get(&u.program)) else {
            return refuse(name, "its balance's user has no program");
        };
        let pan = r.pan.as_bytes();
        if !(12..=19).contains(&pan.len()) || !all_digits(&r.pan) {
            return refuse(name, "pan must be 12 to 19 digits");
        }
        if !luhn_valid(pan) {
            return refuse(name, "pan fails the Luhn check");
        }
        if !r.pan.starts_with(&program.bin) {
            return refuse(
                name,
                format!(
                    "pan is outside program {:?}'s BIN {}",
                    program.id, program.bin
                ),
            );
        }
        if !pans.insert(r.pan.clone()) {
            return refuse(name, "pan is used by another card");
        }
        let month = r.expiry.get(2..4).and_then(|m| m.parse::<u32>().ok());
        if r.expiry.len() != 4 || !all_digits(&r.expiry) || !matches!(month, Some(1..=12)) {
            return refuse(name, "expiry must be YYMM");
        }
        if let Some(cvv2) = &r.cvv2 {
            if !(3..=4).contains(&cvv2.len()) || !all_digits(cvv2) {
                return refuse(name, "cvv2 must be 3 or 4 digits");
            }
        }
        if let Some(pin) = &r.pin {
            if !(4..=12).contains(&pin.len()) || !all_digits(pin) {
                return refuse(name, "pin must be 4 to 12 digits");
            }
        }
        if let Some(lock) = r.lock {
            if !(1..=8).contains(&lock) {
                return refuse(name, "lock must be null or 1 to 8");
            }
        }
        if let Some(partner) = &program.partner_balance {
            let partner_currency = balances.get(partner).map(|b| b.currency.as_str());
            if program.funding == Funding::PartnerCredit
                && partner_currency != Some(balance.currency.as_str())
            {
                return refuse(
                    name,
                    "its balance's currency differs from the program's partner credit balance",
                );
            }
        }
        let hash = secrets.pan_hash(pan);
        let vault = crate::security::vault::Vault::from_secrets(secrets);
        cards.push((
            Card {
                id: r.id.clone(),
                balance: r.balance.clone(),
                program: program.id.clone(),
                card_type: r.card_type,
                state: r.state,
                lock: r.lock,
                expiry: r.expiry.clone(),
                pan_hash: hex::encode(hash),
                pan_masked: mask_pan(pan),
                cvv2_hash: r
                    .cvv2
                    .as_ref()
                    .map(|c| secrets.cvv2_hash(&r.id, c.as_bytes())),
                pin_hash: r
                    .pin
                    .as_ref()
                    .map(|c| secrets.pin_hash(&r.id, c.as_bytes())),
                pin_tries: 0,
                pan_sealed: Some(vault.seal_pan(&r.id, pan)),
                linked: true,
                created_ms: 0,
                activated_ms: None,
                cvv_generation: None,
            },
            hash,
        ));
    }
    let programs = p
        .programs
        .iter()
        .map(|r| Program {
            id: r.id.clone(),
            bin: r.bin.clone(),
            currency: r.currency.clone(),
            funding: r.funding,
            partner_balance: r.partner_balance.clone(),
            digital_first: r.digital_first,
            card_validity_months: r
                .card_validity_months
                .unwrap_or_else(crate::domain::model::default_card_validity_months),
        })
        .collect();
    let users = p
        .users
        .iter()
        .filter_map(|r| users.get(&r.id).cloned())
        .collect();
    Ok(Checked {
        programs,
        users,
        balances: ordered_balances,
        cards,
    })
}

/// Imports a portfolio into an empty store: every balance's opening amount is
/// a journal entry from the funding account.
pub fn import<S: Store>(
    engine: &mut Engine<S>,
    portfolio: &Portfolio,
    secrets: &CardSecrets,
    now_ms: u64,
) -> Result<ImportSummary, ImportError> {
    if !engine.is_empty() {
        return Err(ImportError::NotEmpty);
    }
    let checked = check(portfolio, secrets)?;
    let summary = ImportSummary {
        programs: checked.programs.len(),
        users: checked.users.len(),
        balances: checked.balances.len(),
        cards: checked.cards.len(),
    };
    engine
        .apply(move |state, changes| {
            for program in checked.programs {
                changes.put_program(state, program);
            }
            for user in checked.users {
                changes.put_user(state, user);
            }
            for balance in checked.balances {
                if !balance.available.is_zero() {
                    changes.journal(
                        state,
                        JournalEntry {
                            seq: 0,
                            at_ms: now_ms,
                            kind: EntryKind::Opening,
                            txn: None,
                            currency: balance.currency.clone(),
                            postings: vec![
                                Posting {
                                    account: Account::Funding,
                                    amount: -balance.available,
                                },
                                Posting {
                                    account: Account::Available(balance.id.clone()),
                                    amount: balance.available,
                                },
                            ],
                        },
                    );
                }
                changes.put_balance(state, balance);
            }
            for (card, hash) in checked.cards {
                changes.put_card(state, card, hash);
            }
        })
        .map_err(ImportError::Store)?;
    Ok(summary)
}
