//! Answer → message: the response MTI, the fields a response echoes, field 39
//! through the dialect's code, field 54 amounts. Never decides the outcome
//! (except that network management is always approved, answered here before
//! anything reaches the writer).

use super::{ascii, AuthResponse, Profile};
use crate::domain::money::Currency;
use crate::domain::outcome::{Dialect, Outcome};
use crate::iso8583::Message;
use bytes::Bytes;

/// The answer to network management (sign-on, sign-off, echo): always
/// approved, by the connection, without reaching the writer. The one place it is decided.
pub fn network_management() -> AuthResponse {
    AuthResponse::outcome(Outcome::Approved)
}

/// Fields a response echoes from its request when present.
const ECHO_FIELDS: &[usize] = &[
    2, 3, 4, 7, 11, 12, 13, 24, 32, 37, 41, 42, 49, 56, 70, 90, 91, 95, 101,
];

/// The response MTI of a request MTI (0100 → 0110, 0401 → 0410, 1804 → 1814).
pub fn response_mti(mti: [u8; 4]) -> [u8; 4] {
    let mut out = mti;
    out[2] = match mti[2] {
        b'0' => b'1',
        b'2' => b'3',
        b'4' => b'5',
        other => other,
    };
    // A repeat (odd origin digit) is answered as its original.
    if out[3].is_ascii_digit() {
        out[3] &= !1;
    }
    out
}

/// Whether a request MTI has a response to send (0600 → 0610 has; 0190 has none).
pub fn has_response(mti: [u8; 4]) -> bool {
    response_mti(mti) != mti
}

/// Whether a message that did not decode completely can still be answered
/// with a format error: it has a STAN (field 11) to be matched on and an
/// MTI with a response.
pub fn can_answer_partial(partial: &Message) -> bool {
    partial.has(11) && has_response(partial.mti())
}

/// The response code (field 39) of a response; empty when absent.
pub fn response_code(response: &Message) -> &[u8] {
    response.get(39).unwrap_or(b"")
}

/// Builds the response to `request` carrying `response`.
pub fn build_response(request: &Message, response: &AuthResponse, profile: Profile) -> Message {
    into_response(request.clone(), response, profile)
}

/// Turns `request` into its response carrying `response`: the echoed fields
/// stay where they are (neither copied nor reference-counted again), the
/// others go.
pub fn into_response(request: Message, response: &AuthResponse, profile: Profile) -> Message {
    const ECHOED: u128 = crate::iso8583::field_mask(ECHO_FIELDS);
    let mti = request.mti();
    let mut out = request;
    out.set_mti(response_mti(mti));
    out.retain(ECHOED);
    if let Some(code) = &response.approval_code {
        out.set(38, Bytes::copy_from_slice(code.as_bytes()));
    }
    // 1993/2003 approvals are class-specific: 0800 network management, 3000 file actions.
    let approved93 = response.outcome == Outcome::Approved && profile.dialect == Dialect::Iso93;
    let code = match mti[1] {
        b'8' if approved93 => "0800",
        b'3' if approved93 => "3000",
        _ => response.outcome.code(profile.dialect),
    };
    out.set(39, Bytes::from_static(code.as_bytes()));
    if let Some(amounts) = &response.additional_amounts {
        out.set(54, Bytes::copy_from_slice(amounts.as_bytes()));
    }
    out
}

/// Builds the format-error (or invalid-transaction) answer to a message that
/// could not be read completely: the MTI and whatever fields decoded are echoed.
pub fn build_error_response(partial: &Message, outcome: Outcome, profile: Profile) -> Message {
    build_response(partial, &AuthResponse::outcome(outcome), profile)
}

/// Field 54 amount: account type, amount type, currency, C/D sign, 12 digits of minor units.
pub fn additional_amount(
    account_type: [u8; 2],
    amount_type: &str,
    currency: Currency,
    minor: i64,
) -> String {
    let sign = if minor < 0 { 'D' } else { 'C' };
    format!(
        "{}{}{:03}{}{:012}",
        ascii(&account_type),
        amount_type,
        currency.numeric,
        sign,
        minor.unsigned_abs()
    )
}
