//! ISO 8583 message ⇄ [`AuthRequest`] / [`AuthResponse`]: the only place that
//! knows field numbers, MTIs and processing codes. It reads fields, checks
//! their form, and builds messages; it decides nothing about cards or money,
//! and never sees a socket or the store.
//! Must never touch: the engine, the store, HTTP.
//!
//! This file holds the typed operation the rest of the engine works with;
//! the mappings live beside it: [`classify`] (MTI and processing code → kind
//! of request), [`parse`] (message → request), [`respond`] (answer →
//! message), [`keys`] (idempotency and original keys), [`tlv`] (subelements)
//! and [`builder`] (request messages for clients: `send`, the simulator, tests).

pub mod builder;
pub mod classify;
pub mod keys;
pub mod parse;
pub mod respond;
pub mod tlv;

use crate::domain::money::Currency;
use crate::domain::outcome::{Dialect, Outcome};
use crate::iso8583::Spec;
use crate::security::pinblock::Pin;
use parse::{ClearPan, Cvv2};

/// The kind of message by its MTI class (second digit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageClass {
    /// x1xx: authorization.
    Authorization,
    /// x2xx: financial.
    Financial,
    /// x3xx: file action (file update: add to or delete from the exception file).
    FileUpdate,
    /// x4xx: reversal.
    Reversal,
    /// x8xx: network management.
    NetworkManagement,
}

/// Network management functions (field 70 in 1987, field 24 in 1993).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetworkFunction {
    /// Sign-on (001 / 801).
    SignOn,
    /// Sign-off (002 / 802).
    SignOff,
    /// Echo test (301 / 831).
    Echo,
}

/// What the original of a completion or reversal was (field 90 or 56).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OriginalRef {
    /// Original MTI, repeat digit cleared.
    pub mti: [u8; 4],
    /// Original STAN.
    pub stan: [u8; 6],
    /// Original transmission (1987) or local (1993) date-time.
    pub datetime: String,
    /// Original acquirer id, leading zeros removed.
    pub acquirer: String,
}

/// What a file update (0302/1302) asks for (field 91).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileAction {
    /// "1": add the card to the exception file, i.e. lock it with a reason (1–8).
    Add {
        /// Lock reason 1–8 (field 48 subelement, tag 90 by default).
        reason: u8,
    },
    /// "3": delete the card from the exception file, i.e. unlock it.
    Delete,
    /// Any other file update code (change, replace, inquiry): not supported.
    Other,
}

/// A request as the engine sees it. Holds no clear PAN (only its keyed hash
/// and masked form), except, redacted, beside a CVV2 to derive it from.
#[derive(Clone, Debug)]
pub struct AuthRequest {
    /// Message class.
    pub class: MessageClass,
    /// An advice (x120, x220, x420): the network already acted.
    pub advice: bool,
    /// A repeat (x101, x121, x401, x421).
    pub repeat: bool,
    /// MTI with the repeat digit cleared (0101 → 0100).
    pub mti: [u8; 4],
    /// Keyed hash of the PAN (field 2).
    pub pan_hash: Option<[u8; 32]>,
    /// Masked PAN.
    pub pan_masked: Option<String>,
    /// Processing code (field 3).
    pub processing_code: Option<[u8; 6]>,
    /// Transaction amount in minor units (field 4).
    pub amount_minor: u64,
    /// Transaction currency (field 49).
    pub currency: Option<Currency>,
    /// Cardholder billing amount and currency (fields 6 and 51).
    pub billing: Option<(u64, Currency)>,
    /// Transmission month and day (field 7).
    pub transmission: Option<(u32, u32)>,
    /// The date-time that identifies the message in keys (field 7, or 12 in 1993).
    pub key_datetime: String,
    /// STAN (field 11).
    pub stan: [u8; 6],
    /// Acquirer id (field 32), leading zeros removed.
    pub acquirer: String,
    /// Terminal id (field 41), trimmed.
    pub terminal: String,
    /// Expiry sent by the terminal (field 14).
    pub expiry: Option<[u8; 4]>,
    /// Original of a completion or reversal.
    pub original: Option<OriginalRef>,
    /// Amount that remains after a partial reversal (field 95, or 4 with 30 in 1993).
    pub replacement_amount: Option<u64>,
    /// Network management function.
    pub network: Option<NetworkFunction>,
    /// The network's own answer carried by an advice (field 39).
    pub advice_response_approved: Option<bool>,
    /// Merchant category code (field 18).
    pub mcc: Option<String>,
    /// Card acceptor id (field 42).
    pub merchant_id: Option<String>,
    /// The PIN of field 52, decrypted under the zone PIN key (Debug redacts it).
    pub pin: Option<Pin>,
    /// Field 52 did not decrypt to a valid format 0 block: a wrong PIN.
    pub pin_invalid: bool,
    /// Field 52 came but no zone PIN key is configured: the PIN cannot be verified.
    pub pin_unverifiable: bool,
    /// Card-not-present CVV2 (field 48 subelement, tag 92 by default).
    pub cvv2: Option<Cvv2>,
    /// The clear PAN, only when a CVV2 came (a derived CVV2 is computed from it).
    pub cvv2_pan: Option<ClearPan>,
    /// What a file update (x302) asks for.
    pub file_action: Option<FileAction>,
}

impl AuthRequest {
    /// Transaction type: the first two digits of the processing code ("00" purchase).
    pub fn transaction_type(&self) -> [u8; 2] {
        match self.processing_code {
            Some(p) => [p[0], p[1]],
            None => *b"00",
        }
    }

    /// Account type "from" (digits 3–4 of the processing code).
    pub fn account_type(&self) -> [u8; 2] {
        match self.processing_code {
            Some(p) => [p[2], p[3]],
            None => *b"00",
        }
    }
}

/// `b` as text; empty when it is not UTF-8 (fields checked as digits always are).
fn ascii(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap_or("")
}

/// What the engine answers, independent of the dialect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthResponse {
    /// Outcome (field 39 through the dialect table).
    pub outcome: Outcome,
    /// Approval code (field 38).
    pub approval_code: Option<String>,
    /// Additional amounts (field 54) for balance inquiries.
    pub additional_amounts: Option<String>,
}

impl AuthResponse {
    /// An answer with only an outcome.
    pub fn outcome(outcome: Outcome) -> AuthResponse {
        AuthResponse {
            outcome,
            approval_code: None,
            additional_amounts: None,
        }
    }
}

/// Why a message could not become a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// A field is missing or malformed: answer with the format-error code.
    Format {
        /// The field.
        field: usize,
        /// What is wrong (never the field's content).
        reason: &'static str,
    },
    /// An MTI we do not process: answer with invalid transaction.
    UnsupportedMti,
    /// A response MTI or one we cannot answer at all: do not answer.
    NotARequest,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseError::Format { field, reason } => write!(f, "field {field}: {reason}"),
            ParseError::UnsupportedMti => f.write_str("unsupported message type"),
            ParseError::NotARequest => f.write_str("not a request message"),
        }
    }
}

/// Protocol settings of one dialect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Profile {
    /// Response-code dialect.
    pub dialect: Dialect,
}

impl Profile {
    /// The profile of a spec: four-digit field 39 means 1993/2003 action codes.
    pub fn for_spec(spec: &Spec) -> Profile {
        let dialect = match spec.field(39) {
            Some(f) if f.length == 4 => Dialect::Iso93,
            _ => Dialect::Iso87,
        };
        Profile { dialect }
    }
}
