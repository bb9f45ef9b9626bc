//! MTI and processing code → the kind of request: message class, advice,
//! repeat, network management function, balance inquiry. The codes of the
//! wire, both ways (the request builder writes what this reads); no field
//! content beyond them, no card, no money.

use super::{MessageClass, NetworkFunction, ParseError, Profile};
use crate::domain::outcome::Dialect;

/// Processing code of a purchase (goods and services, default accounts).
pub const PURCHASE: &[u8; 6] = b"000000";
/// Processing code of a refund (returns).
pub const REFUND: &[u8; 6] = b"200000";
/// Processing code of a balance inquiry.
pub const BALANCE_INQUIRY: &[u8; 6] = b"310000";

/// What the MTI says a message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Classified {
    /// Message class (second digit).
    pub class: MessageClass,
    /// An advice (x120, x220, x420): the network already acted.
    pub advice: bool,
    /// A repeat (odd fourth digit).
    pub repeat: bool,
    /// The MTI with the repeat digit cleared (0101 → 0100).
    pub mti: [u8; 4],
}

impl Profile {
    /// The MTI's first digit in this dialect: 0 for 1987, 1 for 1993/2003.
    fn version_digit(self) -> u8 {
        match self.dialect {
            Dialect::Iso87 => b'0',
            Dialect::Iso93 => b'1',
        }
    }
}

/// Classifies a request MTI of `profile`'s dialect; an MTI we do not process
/// or a response MTI is an error.
pub fn classify(mti: [u8; 4], profile: Profile) -> Result<Classified, ParseError> {
    if mti[0] != profile.version_digit() || !mti.iter().all(u8::is_ascii_digit) {
        return Err(ParseError::UnsupportedMti);
    }
    let class = match mti[1] {
        b'1' => MessageClass::Authorization,
        b'2' => MessageClass::Financial,
        b'3' => MessageClass::FileUpdate,
        b'4' => MessageClass::Reversal,
        b'8' => MessageClass::NetworkManagement,
        _ => return Err(ParseError::UnsupportedMti),
    };
    // Third digit: 0 request, 2 advice (4 notification); odd = response.
    let advice = match (class, mti[2]) {
        (MessageClass::NetworkManagement, b'0' | b'2' | b'4') => false,
        (_, b'0') => false,
        (MessageClass::Authorization | MessageClass::Financial | MessageClass::Reversal, b'2') => {
            true
        }
        (_, b'1' | b'3' | b'5') => return Err(ParseError::NotARequest),
        _ => return Err(ParseError::UnsupportedMti),
    };
    // Fourth digit: origin (0 acquirer, 2 issuer, 4 other); odd = repeat of the even one.
    if !(b'0'..=b'5').contains(&mti[3]) {
        return Err(ParseError::UnsupportedMti);
    }
    let repeat = mti[3] & 1 == 1;
    let mut normalized = mti;
    normalized[3] &= !1;
    Ok(Classified {
        class,
        advice,
        repeat,
        mti: normalized,
    })
}

/// Whether a processing code is a balance inquiry (transaction type 30 or 31).
pub fn is_balance_inquiry(processing: &[u8]) -> bool {
    matches!(processing.get(0..2), Some(b"30" | b"31"))
}

/// The field network management functions travel in: 70 (1987) or 24 (1993).
pub fn network_field(dialect: Dialect) -> usize {
    match dialect {
        Dialect::Iso87 => 70,
        Dialect::Iso93 => 24,
    }
}

/// The network management codes of a dialect: sign-on, sign-off, echo.
fn network_codes(dialect: Dialect) -> [(NetworkFunction, &'static [u8; 3]); 3] {
    match dialect {
        Dialect::Iso87 => [
            (NetworkFunction::SignOn, b"001"),
            (NetworkFunction::SignOff, b"002"),
            (NetworkFunction::Echo, b"301"),
        ],
        Dialect::Iso93 => [
            (NetworkFunction::SignOn, b"801"),
            (NetworkFunction::SignOff, b"802"),
            (NetworkFunction::Echo, b"831"),
        ],
    }
}

/// The network management function of a code in [`network_field`]; `None` when unknown.
pub fn network_function(dialect: Dialect, code: &[u8]) -> Option<NetworkFunction> {
    network_codes(dialect)
        .into_iter()
        .find(|(_, c)| c.as_slice() == code)
        .map(|(function, _)| function)
}

/// The code of a network management function in [`network_field`].
pub fn network_code(dialect: Dialect, function: NetworkFunction) -> &'static [u8; 3] {
    let codes = network_codes(dialect);
    match codes.iter().find(|(f, _)| *f == function) {
        Some((_, code)) => code,
        None => codes[0].1,
    }
}

/// The MTI of a network management request: 0800 (1987) or 1804 (1993).
pub fn network_mti(dialect: Dialect) -> [u8; 4] {
    match dialect {
        Dialect::Iso87 => *b"0800",
        Dialect::Iso93 => *b"1804",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_codes_round_trip() {
        for dialect in [Dialect::Iso87, Dialect::Iso93] {
            for function in [
                NetworkFunction::SignOn,
                NetworkFunction::SignOff,
                NetworkFunction::Echo,
            ] {
                let code = network_code(dialect, function);
                assert_eq!(network_function(dialect, code), Some(function));
            }
            assert_eq!(network_function(dialect, b"999"), None);
        }
    }
}
