//! KYC: starting a case (manual or through the eKYC provider), adding
//! identity documents, and the decision that accepts or rejects a customer
//! (opening the customer's first balance on acceptance). Never touches HTTP,
//! ISO 8583 or the store directly (only `State` and `Changes`).

use super::balances::new_user_balance;
use super::customers::customer;
use super::error::ErrorCode;
use super::{valid_id, ManageError};
use crate::domain::model::{BalanceOwner, Kyc, User};
use crate::engine::state::{Changes, State};
use serde::{Deserialize, Serialize};

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
    /// The status an admin sees for the user's KYC state.
    pub(super) fn of(kyc: Kyc) -> KycStatus {
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

/// A document's metadata (its bytes are the blob named by `sha256`, or, for
/// documents stored by an older version, the record `kycdoc/{user}/{id}`).
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

/// Record key of a KYC document's bytes as an older version stored them.
pub fn document_key(user: &str, id: &str) -> String {
    format!("kycdoc/{user}/{id}")
}

/// Record key of the eKYC reference index.
pub fn reference_key(reference: &str) -> String {
    format!("kycref/{reference}")
}

/// A new case of `user`: no data, documents, decision or references yet.
fn new_case(user: &User, mode: KycMode, status: KycStatus, now: u64) -> KycCase {
    KycCase {
        customer_id: user.id.clone(),
        program: user.program.clone(),
        mode,
        status,
        data: serde_json::json!({}),
        documents: Vec::new(),
        reason: None,
        decided_by: None,
        reference: None,
        provider_reference: None,
        provider_error: None,
        created_ms: now,
        updated_ms: now,
    }
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
            ErrorCode::KycAlreadyAccepted,
            "the customer's KYC is already accepted",
        ));
    }
    if !data.is_object() {
        return Err(ManageError::invalid(
            ErrorCode::InvalidField,
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
        data,
        documents: previous.map(|p| p.documents).unwrap_or_default(),
        reference: reference.clone(),
        ..new_case(&user, mode, KycStatus::InProgress, now)
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

/// Checks an upload before anything is stored, in this order: the kind, the
/// content type, the size (1 byte to 5 MiB), the magic bytes. Pure: the HTTP
/// plane runs it before it writes the blob, and [`add_document`] checks the
/// metadata again on the writer.
pub fn validate_document(kind: &str, content_type: &str, bytes: &[u8]) -> Result<(), ManageError> {
    check_kind_and_type(kind, content_type)?;
    check_size(bytes.len())?;
    if !magic_matches(content_type, bytes) {
        return Err(ManageError::invalid(
            ErrorCode::InvalidDocument,
            "the bytes are not of the declared content type",
        ));
    }
    Ok(())
}

fn check_kind_and_type(kind: &str, content_type: &str) -> Result<(), ManageError> {
    if !valid_id(kind) {
        return Err(ManageError::invalid(
            ErrorCode::InvalidField,
            "document kind must be letters, digits, '-' or '_'",
        ));
    }
    if !DOCUMENT_TYPES.contains(&content_type) {
        return Err(ManageError::invalid(
            ErrorCode::UnsupportedMediaType,
            "documents are image/jpeg, image/png or application/pdf",
        ));
    }
    Ok(())
}

fn check_size(size: usize) -> Result<(), ManageError> {
    if size == 0 || size > DOCUMENT_MAX_BYTES {
        return Err(ManageError::invalid(
            ErrorCode::InvalidDocumentSize,
            "a document is 1 byte to 5 MiB",
        ));
    }
    Ok(())
}

/// An upload whose bytes are already stored as a blob: what the writer records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocumentUpload {
    /// What it shows, e.g. `id_front`.
    pub kind: String,
    /// One of [`DOCUMENT_TYPES`].
    pub content_type: String,
    /// Size in bytes.
    pub size: usize,
    /// SHA-256 of the bytes, hex: the blob's name.
    pub sha256: String,
    /// `customer` or the administrator's login.
    pub uploaded_by: String,
}

/// Whether customer `user_id` (in `program`) could take one more document
/// now: the same checks, in the same order, as [`add_document`] makes on the
/// writer. The HTTP plane asks this before it writes a blob, so that a
/// refused upload leaves no file behind.
pub fn can_add_document(
    state: &State,
    user_id: &str,
    program: Option<&str>,
) -> Result<(), ManageError> {
    let user = customer(state, user_id, program)?;
    case_taking_documents(state, user, 0).map(|_| ())
}

/// The customer's KYC case (a new manual one if none), if it may take
/// another document: not accepted, fewer than [`DOCUMENTS_PER_CASE_MAX`].
fn case_taking_documents(state: &State, user: &User, now: u64) -> Result<KycCase, ManageError> {
    let case: KycCase = state
        .record(&kyc_key(&user.id))
        .unwrap_or_else(|| new_case(user, KycMode::Manual, KycStatus::None, now));
    if case.status == KycStatus::Accepted {
        return Err(ManageError::conflict(
            ErrorCode::KycAlreadyAccepted,
            "the customer's KYC is already accepted",
        ));
    }
    if case.documents.len() >= DOCUMENTS_PER_CASE_MAX {
        return Err(ManageError::conflict(
            ErrorCode::TooManyDocuments,
            format!("a KYC case holds at most {DOCUMENTS_PER_CASE_MAX} documents"),
        ));
    }
    Ok(case)
}

/// Adds a document's metadata to a customer's KYC case (creating a manual
/// case if none). The bytes are not here: they were validated with
/// [`validate_document`] and stored as the blob `upload.sha256` beforehand.
pub fn add_document(
    state: &mut State,
    changes: &mut Changes,
    user_id: &str,
    program: Option<&str>,
    upload: DocumentUpload,
    now: u64,
) -> Result<DocumentMeta, ManageError> {
    let user = customer(state, user_id, program)?.clone();
    check_kind_and_type(&upload.kind, &upload.content_type)?;
    check_size(upload.size)?;
    if !crate::store::blobs::is_digest(&upload.sha256) {
        return Err(ManageError::invalid(
            ErrorCode::InvalidDocument,
            "the document's digest is not a hex SHA-256",
        ));
    }
    let mut case = case_taking_documents(state, &user, now)?;
    let id = format!("doc_{}", changes.next_in_sequence(state, "document"));
    let meta = DocumentMeta {
        id,
        kind: upload.kind,
        content_type: upload.content_type,
        size: upload.size,
        sha256: upload.sha256,
        uploaded_ms: now,
        uploaded_by: upload.uploaded_by,
    };
    case.documents.push(meta.clone());
    case.updated_ms = now;
    changes.put_record(state, &kyc_key(user_id), &case);
    Ok(meta)
}

/// A document's bytes as an older version stored them, in the record
/// `kycdoc/{user}/{id}` (still read; new documents are blobs).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StoredDocument {
    /// Content type.
    pub content_type: String,
    /// The bytes, base64.
    pub base64: String,
}

/// Where a document's bytes are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DocumentBytes {
    /// In an older version's record, already decoded.
    Inline(Vec<u8>),
    /// In the blob of this hex SHA-256, to be read (and checked) off the writer.
    Blob(String),
}

/// The content type of a stored document and where its bytes are.
pub fn document_bytes(state: &State, user_id: &str, id: &str) -> Option<(String, DocumentBytes)> {
    use base64::Engine as _;
    if let Some(stored) = state.record::<StoredDocument>(&document_key(user_id, id)) {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(stored.base64)
            .ok()?;
        return Some((stored.content_type, DocumentBytes::Inline(bytes)));
    }
    let case: KycCase = state.record(&kyc_key(user_id))?;
    let meta = case.documents.into_iter().find(|d| d.id == id)?;
    Some((meta.content_type, DocumentBytes::Blob(meta.sha256)))
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
                ErrorCode::KycNotInProgress,
                "there is no KYC submission waiting for a decision",
            ))
        }
        (Decider::Provider, Some(case))
            if case.status == KycStatus::InProgress && case.mode == KycMode::Automatic => {}
        (Decider::Provider, _) => {
            return Err(ManageError::conflict(
                ErrorCode::KycNotInProgress,
                "no automatic KYC is waiting for this reference",
            ))
        }
        // A partner sets the result of its own KYC only; it cannot overrule a
        // manual or automatic case that Antaca runs or has decided.
        (Decider::Partner, Some(case)) if case.mode != KycMode::External && case.status != KycStatus::None => {
            return Err(ManageError::conflict(
                ErrorCode::KycDecidedElsewhere,
                "this customer's KYC is run by Antaca (manual or automatic); the partner cannot set it",
            ))
        }
        (Decider::Partner, _) => {}
    }
    if !accepted && reason.as_deref().is_none_or(str::is_empty) {
        return Err(ManageError::invalid(
            ErrorCode::ReasonRequired,
            "a rejection needs a reason",
        ));
    }
    if user.kyc == Kyc::Verified && !accepted {
        return Err(ManageError::conflict(
            ErrorCode::KycAlreadyAccepted,
            "an accepted KYC cannot be rejected afterwards",
        ));
    }
    // From here the decision is recorded.
    let mut case = existing.unwrap_or_else(|| new_case(&user, mode, KycStatus::InProgress, now));
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
