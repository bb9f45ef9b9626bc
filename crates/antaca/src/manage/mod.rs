//! Management operations on the engine's state: customers, KYC, balances,
//! reloads, partner balances, the balance summary and transaction history.
//! They run on the writer (through `EngineHandle::apply`), so every change is
//! committed in the same batch stream as authorizations and is seen by the
//! very next one. No HTTP here: the channels in `http/` call these.
//!
//! Each operation validates first and changes state only once it must succeed.

pub mod cards;
pub mod portfolio;

use crate::domain::calendar;
use crate::domain::model::{
    Account, Balance, BalanceOwner, EntryKind, Funding, JournalEntry, Kyc, Leg, Posting, Txn,
    TxnState, User,
};
use crate::domain::money::Currency;
use crate::domain::outcome::Outcome;
use crate::engine::state::{Changes, State};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Why a management operation was refused. Each maps to an HTTP status and a stable code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManageError {
    /// Nothing with this id (for this caller).
    NotFound {
        /// Machine-readable code, e.g. `CUSTOMER_NOT_FOUND`.
        code: &'static str,
        /// Human-readable message.
        message: String,
    },
    /// The request is well formed but conflicts with the current state.
    Conflict {
        /// Machine-readable code.
        code: &'static str,
        /// Human-readable message.
        message: String,
    },
    /// A field is invalid.
    Invalid {
        /// Machine-readable code.
        code: &'static str,
        /// Human-readable message.
        message: String,
    },
}

impl ManageError {
    fn not_found(code: &'static str, message: impl Into<String>) -> ManageError {
        ManageError::NotFound {
            code,
            message: message.into(),
        }
    }
    fn conflict(code: &'static str, message: impl Into<String>) -> ManageError {
        ManageError::Conflict {
            code,
            message: message.into(),
        }
    }
    fn invalid(code: &'static str, message: impl Into<String>) -> ManageError {
        ManageError::Invalid {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ManageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ManageError::NotFound { code, message }
            | ManageError::Conflict { code, message }
            | ManageError::Invalid { code, message } => write!(f, "{code}: {message}"),
        }
    }
}

impl std::error::Error for ManageError {}

/// A customer's profile, kept as the record `profile/{id}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    /// E-mail address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Phone number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// Given name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    /// Family name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    /// When the customer was created (ms since epoch).
    #[serde(default)]
    pub created_ms: u64,
}

/// A new customer from the partner's server.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewCustomer {
    /// The partner's own id for the customer; generated when absent.
    #[serde(default)]
    pub id: Option<String>,
    /// E-mail address.
    #[serde(default)]
    pub email: Option<String>,
    /// Phone number.
    #[serde(default)]
    pub phone: Option<String>,
    /// Given name.
    #[serde(default)]
    pub first_name: Option<String>,
    /// Family name.
    #[serde(default)]
    pub last_name: Option<String>,
}

/// KYC status as the admin panel shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum KycStatus {
    /// Not started.
    None,
    /// Submitted, waiting for a decision.
    InProgress,
    /// Positive decision.
    Accepted,
    /// Negative decision.
    Rejected,
}

impl KycStatus {
    fn of(kyc: Kyc) -> KycStatus {
        match kyc {
            Kyc::None => KycStatus::None,
            Kyc::Pending => KycStatus::InProgress,
            Kyc::Verified => KycStatus::Accepted,
            Kyc::Rejected => KycStatus::Rejected,
        }
    }
}

/// How a KYC case is decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KycMode {
    /// Data and documents reviewed by an administrator.
    Manual,
    /// Decided by the external eKYC provider.
    Automatic,
    /// The partner runs its own KYC and sets the result.
    External,
}

/// A document's metadata (its bytes are the record `kycdoc/{user}/{id}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DocumentMeta {
    /// Document id.
    pub id: String,
    /// What it shows, e.g. `id_front`, `selfie`.
    pub kind: String,
    /// `image/jpeg`, `image/png` or `application/pdf`.
    pub content_type: String,
    /// Size in bytes.
    pub size: usize,
    /// SHA-256 of the bytes, hex.
    pub sha256: String,
    /// Uploaded when (ms since epoch).
    pub uploaded_ms: u64,
    /// `customer` or the administrator's login.
    pub uploaded_by: String,
}

/// A KYC case, kept as the record `kyc/{user}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KycCase {
    /// The customer.
    pub customer_id: String,
    /// The customer's program.
    pub program: String,
    /// How it is decided.
    pub mode: KycMode,
    /// Status.
    pub status: KycStatus,
    /// Submitted personal data.
    pub data: serde_json::Value,
    /// Uploaded documents.
    pub documents: Vec<DocumentMeta>,
    /// Reason of the decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Who decided: an administrator's login, `partner` or `provider`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// Our reference sent to the eKYC provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// The provider's reference, once it accepted the submission.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_reference: Option<String>,
    /// The last error talking to the provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_error: Option<String>,
    /// Created (ms since epoch).
    pub created_ms: u64,
    /// Last change (ms since epoch).
    pub updated_ms: u64,
}

/// Record key of a customer's KYC case.
pub fn kyc_key(user: &str) -> String {
    format!("kyc/{user}")
}

/// Record key of a customer's profile.
pub fn profile_key(user: &str) -> String {
    format!("profile/{user}")
}

/// Record key of a KYC document's bytes.
pub fn document_key(user: &str, id: &str) -> String {
    format!("kycdoc/{user}/{id}")
}

/// Record key of the eKYC reference index.
pub fn reference_key(reference: &str) -> String {
    format!("kycref/{reference}")
}

/// A customer as the channels show it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomerView {
    /// Id.
    pub id: String,
    /// Program.
    pub program: String,
    /// KYC status.
    pub kyc_status: KycStatus,
    /// Profile.
    #[serde(flatten)]
    pub profile: Profile,
    /// The customer's balance ids.
    pub balances: Vec<String>,
}

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
    pub cards: Vec<CardView>,
}

/// A card as the balance view lists it (masked PAN only).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CardView {
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
    let mut cards: Vec<CardView> = state
        .cards
        .values()
        .filter(|c| c.balance == balance.id)
        .map(|c| CardView {
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

/// The customer with this id in this program (`None` = any program, for administrators).
pub fn customer<'a>(
    state: &'a State,
    id: &str,
    program: Option<&str>,
) -> Result<&'a User, ManageError> {
    match state.users.get(id) {
        Some(user) if program.is_none_or(|p| p == user.program) => Ok(user),
        _ => Err(ManageError::not_found(
            "CUSTOMER_NOT_FOUND",
            format!("no customer {id:?}"),
        )),
    }
}

/// The view of a customer.
pub fn customer_view(state: &State, user: &User) -> CustomerView {
    let mut balances: Vec<String> = state
        .balances
        .values()
        .filter(|b| b.owner == BalanceOwner::User(user.id.clone()))
        .map(|b| b.id.clone())
        .collect();
    balances.sort();
    CustomerView {
        id: user.id.clone(),
        program: user.program.clone(),
        kyc_status: KycStatus::of(user.kyc),
        profile: state.record(&profile_key(&user.id)).unwrap_or_default(),
        balances,
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Creates a customer in `program`.
pub fn create_customer(
    state: &mut State,
    changes: &mut Changes,
    program: &str,
    new: NewCustomer,
    now: u64,
) -> Result<CustomerView, ManageError> {
    if !state.programs.contains_key(program) {
        return Err(ManageError::not_found(
            "PROGRAM_NOT_FOUND",
            format!("no program {program:?}"),
        ));
    }
    let id = match new.id {
        Some(id) if !valid_id(&id) => {
            return Err(ManageError::invalid(
                "INVALID_FIELD",
                "id must be 1 to 64 letters, digits, '-' or '_'",
            ))
        }
        Some(id) => id,
        None => format!("cus_{}", changes.next_in_sequence(state, "customer")),
    };
    if state.users.contains_key(&id) {
        return Err(ManageError::conflict(
            "CUSTOMER_EXISTS",
            format!("customer {id:?} already exists"),
        ));
    }
    if let Some(email) = &new.email {
        if email.len() > 254 || !email.contains('@') {
            return Err(ManageError::invalid(
                "INVALID_FIELD",
                "email is not an e-mail address",
            ));
        }
    }
    let user = User {
        id: id.clone(),
        program: program.to_string(),
        kyc: Kyc::None,
    };
    let profile = Profile {
        email: new.email,
        phone: new.phone,
        first_name: new.first_name,
        last_name: new.last_name,
        created_ms: now,
    };
    changes.put_user(state, user.clone());
    changes.put_record(state, &profile_key(&id), &profile);
    Ok(customer_view(state, &user))
}

/// Starts KYC (manual or automatic) with the customer's data. A case already
/// accepted is a conflict; a rejected or pending one starts again.
pub fn start_kyc(
    state: &mut State,
    changes: &mut Changes,
    user_id: &str,
    program: Option<&str>,
    mode: KycMode,
    data: serde_json::Value,
    now: u64,
) -> Result<KycCase, ManageError> {
    let user = customer(state, user_id, program)?.clone();
    if user.kyc == Kyc::Verified {
        return Err(ManageError::conflict(
            "KYC_ALREADY_ACCEPTED",
            "the customer's KYC is already accepted",
        ));
    }
    if !data.is_object() {
        return Err(ManageError::invalid(
            "INVALID_FIELD",
            "data must be a JSON object",
        ));
    }
    let previous: Option<KycCase> = state.record(&kyc_key(user_id));
    let reference = match mode {
        KycMode::Automatic => Some(format!(
            "kyc_{}",
            changes.next_in_sequence(state, "kyc_reference")
        )),
        _ => None,
    };
    let case = KycCase {
        customer_id: user.id.clone(),
        program: user.program.clone(),
        mode,
        status: KycStatus::InProgress,
        data,
        documents: previous.map(|p| p.documents).unwrap_or_default(),
        reason: None,
        decided_by: None,
        reference: reference.clone(),
        provider_reference: None,
        provider_error: None,
        created_ms: now,
        updated_ms: now,
    };
    if let Some(reference) = &reference {
        changes.put_record(state, &reference_key(reference), &user.id);
    }
    changes.put_record(state, &kyc_key(user_id), &case);
    changes.put_user(
        state,
        User {
            kyc: Kyc::Pending,
            ..user
        },
    );
    Ok(case)
}

/// Content types accepted for KYC documents.
pub const DOCUMENT_TYPES: [&str; 3] = ["image/jpeg", "image/png", "application/pdf"];

/// Largest KYC document, in bytes.
pub const DOCUMENT_MAX_BYTES: usize = 5 * 1024 * 1024;

/// Most documents in one KYC case.
pub const DOCUMENTS_PER_CASE_MAX: usize = 10;

/// Adds a document to a customer's KYC case (creating a manual case if none).
#[allow(clippy::too_many_arguments)]
pub fn add_document(
    state: &mut State,
    changes: &mut Changes,
    user_id: &str,
    program: Option<&str>,
    kind: &str,
    content_type: &str,
    bytes: &[u8],
    uploaded_by: &str,
    now: u64,
) -> Result<DocumentMeta, ManageError> {
    let user = customer(state, user_id, program)?.clone();
    if !valid_id(kind) {
        return Err(ManageError::invalid(
            "INVALID_FIELD",
            "document kind must be letters, digits, '-' or '_'",
        ));
    }
    if !DOCUMENT_TYPES.contains(&content_type) {
        return Err(ManageError::invalid(
            "UNSUPPORTED_MEDIA_TYPE",
            "documents are image/jpeg, image/png or application/pdf",
        ));
    }
    if bytes.is_empty() || bytes.len() > DOCUMENT_MAX_BYTES {
        return Err(ManageError::invalid(
            "INVALID_DOCUMENT_SIZE",
            "a document is 1 byte to 5 MiB",
        ));
    }
    if !magic_matches(content_type, bytes) {
        return Err(ManageError::invalid(
            "INVALID_DOCUMENT",
            "the bytes are not of the declared content type",
        ));
    }
    let mut case: KycCase = state.record(&kyc_key(user_id)).unwrap_or(KycCase {
        customer_id: user.id.clone(),
        program: user.program.clone(),
        mode: KycMode::Manual,
        status: KycStatus::None,
        data: serde_json::json!({}),
        documents: Vec::new(),
        reason: None,
        decided_by: None,
        reference: None,
        provider_reference: None,
        provider_error: None,
        created_ms: now,
        updated_ms: now,
    });
    if case.status == KycStatus::Accepted {
        return Err(ManageError::conflict(
            "KYC_ALREADY_ACCEPTED",
            "the customer's KYC is already accepted",
        ));
    }
    if case.documents.len() >= DOCUMENTS_PER_CASE_MAX {
        return Err(ManageError::conflict(
            "TOO_MANY_DOCUMENTS",
            format!("a KYC case holds at most {DOCUMENTS_PER_CASE_MAX} documents"),
        ));
    }
    use sha2::Digest;
    let id = format!("doc_{}", changes.next_in_sequence(state, "document"));
    let meta = DocumentMeta {
        id: id.clone(),
        kind: kind.to_string(),
        content_type: content_type.to_string(),
        size: bytes.len(),
        sha256: hex::encode(sha2::Sha256::digest(bytes)),
        uploaded_ms: now,
        uploaded_by: uploaded_by.to_string(),
    };
    case.documents.push(meta.clone());
    case.updated_ms = now;
    changes.put_record(
        state,
        &document_key(user_id, &id),
        &StoredDocument {
            content_type: content_type.to_string(),
            base64: base64_encode(bytes),
        },
    );
    changes.put_record(state, &kyc_key(user_id), &case);
    Ok(meta)
}

/// A document's bytes as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StoredDocument {
    /// Content type.
    pub content_type: String,
    /// The bytes, base64.
    pub base64: String,
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The bytes of a stored document.
pub fn document_bytes(state: &State, user_id: &str, id: &str) -> Option<(String, Vec<u8>)> {
    use base64::Engine as _;
    let stored: StoredDocument = state.record(&document_key(user_id, id))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(stored.base64)
        .ok()?;
    Some((stored.content_type, bytes))
}

/// Whether the first bytes are those of the content type (JPEG, PNG, PDF).
fn magic_matches(content_type: &str, bytes: &[u8]) -> bool {
    match content_type {
        "image/jpeg" => bytes.starts_with(&[0xFF, 0xD8, 0xFF]),
        "image/png" => bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "application/pdf" => bytes.starts_with(b"%PDF-"),
        _ => false,
    }
}

/// Who made a KYC decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decider {
    /// An administrator (manual KYC), by login.
    Administrator(String),
    /// The partner's own KYC (external).
    Partner,
    /// The eKYC provider's callback (automatic).
    Provider,
}

/// Records a KYC decision. A positive one marks the customer verified and
/// creates a user balance in the program's currency if the customer has none.
#[allow(clippy::too_many_arguments)]
pub fn decide_kyc(
    state: &mut State,
    changes: &mut Changes,
    user_id: &str,
    program: Option<&str>,
    accepted: bool,
    reason: Option<String>,
    decider: Decider,
    now: u64,
) -> Result<KycCase, ManageError> {
    let user = customer(state, user_id, program)?.clone();
    let existing: Option<KycCase> = state.record(&kyc_key(user_id));
    let mode = match &decider {
        Decider::Administrator(_) => KycMode::Manual,
        Decider::Partner => KycMode::External,
        Decider::Provider => KycMode::Automatic,
    };
    match (&decider, &existing) {
        (Decider::Administrator(_), Some(case)) if case.status == KycStatus::InProgress => {}
        (Decider::Administrator(_), _) => {
            return Err(ManageError::conflict(
                "KYC_NOT_IN_PROGRESS",
                "there is no KYC submission waiting for a decision",
            ))
        }
        (Decider::Provider, Some(case))
            if case.status == KycStatus::InProgress && case.mode == KycMode::Automatic => {}
        (Decider::Provider, _) => {
            return Err(ManageError::conflict(
                "KYC_NOT_IN_PROGRESS",
                "no automatic KYC is waiting for this reference",
            ))
        }
        // A partner sets the result of its own KYC only; it cannot overrule a
        // manual or automatic case that Antaca runs or has decided.
        (Decider::Partner, Some(case)) if case.mode != KycMode::External && case.status != KycStatus::None => {
            return Err(ManageError::conflict(
                "KYC_DECIDED_ELSEWHERE",
                "this customer's KYC is run by Antaca (manual or automatic); the partner cannot set it",
            ))
        }
        (Decider::Partner, _) => {}
    }
    if !accepted && reason.as_deref().is_none_or(str::is_empty) {
        return Err(ManageError::invalid(
            "REASON_REQUIRED",
            "a rejection needs a reason",
        ));
    }
    if user.kyc == Kyc::Verified && !accepted {
        return Err(ManageError::conflict(
            "KYC_ALREADY_ACCEPTED",
            "an accepted KYC cannot be rejected afterwards",
        ));
    }
    // From here the decision is recorded.
    let mut case = existing.unwrap_or(KycCase {
        customer_id: user.id.clone(),
        program: user.program.clone(),
        mode,
        status: KycStatus::InProgress,
        data: serde_json::json!({}),
        documents: Vec::new(),
        reason: None,
        decided_by: None,
        reference: None,
        provider_reference: None,
        provider_error: None,
        created_ms: now,
        updated_ms: now,
    });
    case.status = if accepted {
        KycStatus::Accepted
    } else {
        KycStatus::Rejected
    };
    case.reason = reason;
    case.decided_by = Some(match decider {
        Decider::Administrator(login) => login,
        Decider::Partner => "partner".into(),
        Decider::Provider => "provider".into(),
    });
    case.updated_ms = now;
    changes.put_record(state, &kyc_key(user_id), &case);
    let kyc = if accepted {
        Kyc::Verified
    } else {
        Kyc::Rejected
    };
    changes.put_user(
        state,
        User {
            kyc,
            ..user.clone()
        },
    );
    if accepted {
        let currency = state
            .programs
            .get(&user.program)
            .map(|p| p.currency.clone());
        if let Some(currency) = currency {
            let has_one = state
                .balances
                .values()
                .any(|b| b.owner == BalanceOwner::User(user.id.clone()) && b.currency == currency);
            if !has_one {
                new_user_balance(state, changes, &user.id, &currency);
            }
        }
    }
    Ok(case)
}

fn new_user_balance(
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
            "INVALID_CURRENCY",
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
            "KYC_NOT_ACCEPTED",
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
    let missing =
        || ManageError::not_found("BALANCE_NOT_FOUND", format!("no balance {balance_id:?}"));
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
    let amount = currency
        .parse_amount(text)
        .map_err(|e| ManageError::invalid("INVALID_AMOUNT", format!("amount {text:?}: {e}")))?;
    if amount <= Decimal::ZERO {
        return Err(ManageError::invalid(
            "INVALID_AMOUNT",
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
        ManageError::not_found("BALANCE_NOT_FOUND", format!("no balance {balance_id:?}"))
    })?;
    let currency = currency(&balance.currency)?;
    let minor = currency
        .to_minor(amount)
        .and_then(|m| u64::try_from(m).ok())
        .ok_or_else(|| {
            ManageError::invalid("INVALID_AMOUNT", "the amount does not fit the currency")
        })?;
    if currency.to_minor(balance.ledger() + amount).is_none()
        || currency.to_minor(balance.available + amount).is_none()
    {
        return Err(ManageError::invalid(
            "AMOUNT_TOO_LARGE",
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
        ManageError::not_found("PROGRAM_NOT_FOUND", format!("no program {:?}", new.program))
    })?;
    let cur = currency(&new.currency)?;
    let low_level = match &new.low_level {
        Some(text) => Some(cur.parse_amount(text).map_err(|e| {
            ManageError::invalid("INVALID_AMOUNT", format!("lowLevel {text:?}: {e}"))
        })?),
        None => None,
    };
    let id = match new.id {
        Some(id) if !valid_id(&id) => {
            return Err(ManageError::invalid(
                "INVALID_FIELD",
                "id must be 1 to 64 letters, digits, '-' or '_'",
            ))
        }
        Some(id) => id,
        None => format!(
            "pbal_{}",
            changes.next_in_sequence(state, "partner_balance")
        ),
    };
    if state.balances.contains_key(&id) {
        return Err(ManageError::conflict(
            "BALANCE_EXISTS",
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
            "INVALID_CURRENCY",
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
            "BALANCE_NOT_FOUND",
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

/// RFC 3339 (UTC, milliseconds) of a time in ms since the epoch.
pub fn rfc3339(ms: u64) -> String {
    let date = calendar::date_of_ms(ms);
    let secs = (ms / 1000) % 86_400;
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        date.year,
        date.month,
        date.day,
        secs / 3600,
        (secs / 60) % 60,
        secs % 60,
        ms % 1000
    )
}

/// A history page under a filter.
pub fn history(state: &State, filter: &HistoryFilter) -> HistoryPage {
    let card_balance = |txn: &Txn| {
        txn.card
            .as_ref()
            .and_then(|c| state.cards.get(c))
            .map(|c| c.balance.clone())
    };
    let limit = filter.limit.clamp(1, 500);
    let mut items = Vec::new();
    let mut next_cursor = None;
    // Newest first, from the cursor down, without looking at older pages.
    let below = filter
        .before
        .map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
    let newest_first = state.txns.range((std::ops::Bound::Unbounded, below)).rev();
    for (_, txn) in newest_first {
        let mut balances: Vec<String> = txn.legs.iter().map(|l| l.balance.clone()).collect();
        if let Some(b) = card_balance(txn) {
            if !balances.contains(&b) {
                balances.push(b);
            }
        }
        if filter
            .balance
            .as_ref()
            .is_some_and(|b| !balances.contains(b))
        {
            continue;
        }
        if filter
            .card
            .as_ref()
            .is_some_and(|c| txn.card.as_ref() != Some(c))
        {
            continue;
        }
        let day = calendar::date_of_ms(txn.at_ms);
        if filter.from.is_some_and(|from| day < from) || filter.to.is_some_and(|to| day > to) {
            continue;
        }
        if items.len() == limit {
            next_cursor = items.last().map(|i: &HistoryItem| i.id);
            break;
        }
        let (kind, category) = kind_of(txn);
        items.push(HistoryItem {
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
        });
    }
    HistoryPage { items, next_cursor }
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
