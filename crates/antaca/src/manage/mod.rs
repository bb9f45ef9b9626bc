//! Management operations on the engine's state, one file per resource:
//! `customers`, `kyc`, `balances` (reloads, partner balances, the summary),
//! `history` and `cards`; `portfolio` imports a whole portfolio into an
//! empty store; `error` holds the one list of error codes. They run on the
//! writer (through `EngineHandle::apply`), so every change is committed in
//! the same batch stream as authorizations and is seen by the very next one.
//! No HTTP and no ISO 8583 here: the channels in `http/` call these.
//! This file keeps only what they share: [`ManageError`] and tiny helpers.
//!
//! Each operation validates first and changes state only once it must succeed.
//!
//! Must never touch: HTTP or ISO 8583 (no status codes, no headers, no
//! fields), or the store directly (changes go through the writer's `Changes`).

pub mod balances;
pub mod cards;
pub mod customers;
pub mod error;
pub mod history;
pub mod kyc;
pub mod portfolio;

use crate::domain::calendar;
use crate::engine::state::{Changes, State};
use error::ErrorCode;

/// Why a management operation was refused. Each maps to an HTTP status and a stable code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManageError {
    /// Nothing with this id (for this caller).
    NotFound {
        /// Machine-readable code, e.g. `CUSTOMER_NOT_FOUND`.
        code: ErrorCode,
        /// Human-readable message.
        message: String,
    },
    /// The request is well formed but conflicts with the current state.
    Conflict {
        /// Machine-readable code.
        code: ErrorCode,
        /// Human-readable message.
        message: String,
    },
    /// A field is invalid.
    Invalid {
        /// Machine-readable code.
        code: ErrorCode,
        /// Human-readable message.
        message: String,
    },
}

impl ManageError {
    fn not_found(code: ErrorCode, message: impl Into<String>) -> ManageError {
        ManageError::NotFound {
            code,
            message: message.into(),
        }
    }
    fn conflict(code: ErrorCode, message: impl Into<String>) -> ManageError {
        ManageError::Conflict {
            code,
            message: message.into(),
        }
    }
    fn invalid(code: ErrorCode, message: impl Into<String>) -> ManageError {
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

/// An id a partner may choose: 1 to 64 ASCII letters, digits, `-` or `_`.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The id the caller chose (if valid), else `{prefix}_` and the next number of `sequence`.
fn chosen_or_next_id(
    state: &mut State,
    changes: &mut Changes,
    chosen: Option<String>,
    prefix: &str,
    sequence: &str,
) -> Result<String, ManageError> {
    match chosen {
        Some(id) if !valid_id(&id) => Err(ManageError::invalid(
            ErrorCode::InvalidField,
            "id must be 1 to 64 letters, digits, '-' or '_'",
        )),
        Some(id) => Ok(id),
        None => Ok(format!(
            "{prefix}_{}",
            changes.next_in_sequence(state, sequence)
        )),
    }
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
