//! Request messages for clients of an engine: `antaca send`, the simulator
//! and the tests build authorizations, purchases, refunds, completions,
//! reversals, file updates and network management through [`RequestBuilder`],
//! which knows the field numbers, their widths and where a dialect carries
//! what (field 12, the original in 90 or 56, network management in 70 or 24).
//! It only writes fields; it never reads an answer, a card or a socket.
//!
//! Numbers are cut from a caller's buffer (`digits`) so that a load generator
//! pays no allocation per message: every value is a slice of that buffer or a
//! reference-counted `Bytes` the caller already holds.

use super::classify::{network_code, network_field, network_mti};
use super::tlv::tlv_push;
use super::NetworkFunction;
use crate::domain::outcome::Dialect;
use crate::iso8583::{Message, TlvLocation};
use bytes::{Bytes, BytesMut};

/// A request message being built field by field; [`RequestBuilder::build`] gives the message.
pub struct RequestBuilder<'a> {
    message: Message,
    dialect: Dialect,
    digits: &'a mut BytesMut,
}

/// `mti` written in its 1987 form (0100, 0200, 0220, 0400) as `dialect` sends it (1100, 1200, ...).
#[inline]
pub fn request_mti(dialect: Dialect, mti: &[u8; 4]) -> [u8; 4] {
    let mut out = *mti;
    if dialect == Dialect::Iso93 {
        out[0] = b'1';
    }
    out
}

impl<'a> RequestBuilder<'a> {
    /// A request with MTI `mti` exactly as given, room for `capacity` fields,
    /// numbers cut from `digits`.
    #[inline]
    pub fn new(
        dialect: Dialect,
        mti: [u8; 4],
        capacity: usize,
        digits: &'a mut BytesMut,
    ) -> RequestBuilder<'a> {
        RequestBuilder {
            message: Message::with_capacity(mti, capacity),
            dialect,
            digits,
        }
    }

    /// A network management request (0800 in 1987, 1804 in 1993) for
    /// `function`, with field 7 `transmission` (MMDDhhmmss) and STAN `stan`.
    pub fn network_management(
        dialect: Dialect,
        function: NetworkFunction,
        transmission: impl Into<Bytes>,
        stan: u32,
        digits: &'a mut BytesMut,
    ) -> RequestBuilder<'a> {
        let mut builder = RequestBuilder::new(dialect, network_mti(dialect), 3, digits)
            .transmission(transmission)
            .stan(stan);
        builder.message.set(
            network_field(dialect),
            Bytes::from_static(network_code(dialect, function)),
        );
        builder
    }

    /// The message built.
    #[inline]
    pub fn build(self) -> Message {
        self.message
    }

    /// `value` in decimal, zero-padded to at least `width` digits (as
    /// `{value:0width$}`), cut from the digits buffer.
    #[inline]
    fn number(&mut self, value: u64, width: usize) -> Bytes {
        push_number(self.digits, value, width);
        self.digits.split().freeze()
    }

    #[inline]
    fn field(mut self, n: usize, value: impl Into<Bytes>) -> Self {
        // No field from `n` up present (the usual, ascending order): append,
        // without `set`'s out-of-line search and insert.
        if (2..=128).contains(&n) && self.message.presence() & ((1u128 << (129 - n)) - 1) == 0 {
            self.message.push_ascending(n, value.into());
        } else {
            self.message.set(n, value);
        }
        self
    }

    /// Field 2: the card number. Holds the clear PAN: never print the message unmasked.
    #[inline]
    pub fn pan(self, pan: impl Into<Bytes>) -> Self {
        self.field(2, pan)
    }

    /// Field 3: the processing code (see `classify::PURCHASE`, `REFUND`, `BALANCE_INQUIRY`).
    #[inline]
    pub fn processing_code(self, code: impl Into<Bytes>) -> Self {
        self.field(3, code)
    }

    /// Field 4: the transaction amount in minor units, 12 digits.
    #[inline]
    pub fn amount_minor(mut self, minor: u64) -> Self {
        let value = self.number(minor, 12);
        self.field(4, value)
    }

    /// Field 7: transmission date-time, MMDDhhmmss.
    #[inline]
    pub fn transmission(self, mmddhhmmss: impl Into<Bytes>) -> Self {
        self.field(7, mmddhhmmss)
    }

    /// Field 11: the systems trace audit number, 6 digits.
    #[inline]
    pub fn stan(mut self, stan: u32) -> Self {
        let value = self.number(u64::from(stan), 6);
        self.field(11, value)
    }

    /// Field 12 as given (hhmmss in 1987, YYMMDDhhmmss in 1993).
    #[inline]
    pub fn local_time(self, value: impl Into<Bytes>) -> Self {
        self.field(12, value)
    }

    /// Field 13: local date, MMDD.
    #[inline]
    pub fn local_date(self, mmdd: impl Into<Bytes>) -> Self {
        self.field(13, mmdd)
    }

    /// Fields 7, 12 and 13 of one moment, as slices of its YYMMDDhhmmss
    /// digits: field 12 is hhmmss in 1987 and the whole YYMMDDhhmmss in 1993.
    #[inline]
    pub fn date_time(self, yymmddhhmmss: &Bytes) -> Self {
        debug_assert_eq!(yymmddhhmmss.len(), 12);
        let local = match self.dialect {
            Dialect::Iso87 => yymmddhhmmss.slice(6..12),
            Dialect::Iso93 => yymmddhhmmss.clone(),
        };
        self.transmission(yymmddhhmmss.slice(2..12))
            .local_time(local)
            .local_date(yymmddhhmmss.slice(2..6))
    }

    /// Field 14: the expiry date the terminal read, YYMM.
    #[inline]
    pub fn expiry(self, yymm: impl Into<Bytes>) -> Self {
        self.field(14, yymm)
    }

    /// Field 18: the merchant category code.
    #[inline]
    pub fn mcc(self, mcc: impl Into<Bytes>) -> Self {
        self.field(18, mcc)
    }

    /// Field 22: the point-of-service entry mode.
    #[inline]
    pub fn pos_entry_mode(self, mode: impl Into<Bytes>) -> Self {
        self.field(22, mode)
    }

    /// Field 32: the acquiring institution id.
    #[inline]
    pub fn acquirer(self, acquirer: impl Into<Bytes>) -> Self {
        self.field(32, acquirer)
    }

    /// Field 37: the retrieval reference number, 12 digits.
    #[inline]
    pub fn retrieval_reference(mut self, reference: u64) -> Self {
        let value = self.number(reference, 12);
        self.field(37, value)
    }

    /// Field 41: the terminal id.
    #[inline]
    pub fn terminal(self, terminal: impl Into<Bytes>) -> Self {
        self.field(41, terminal)
    }

    /// Field 42: the card acceptor (merchant) id.
    #[inline]
    pub fn merchant(self, merchant: impl Into<Bytes>) -> Self {
        self.field(42, merchant)
    }

    /// Field 49: the transaction currency, ISO 4217 numeric as 3 digits.
    #[inline]
    pub fn currency(self, numeric: impl Into<Bytes>) -> Self {
        self.field(49, numeric)
    }

    /// Field 49 from the ISO 4217 numeric code.
    #[inline]
    pub fn currency_numeric(mut self, numeric: u16) -> Self {
        let value = self.number(u64::from(numeric), 3);
        self.field(49, value)
    }

    /// Field 52: an encrypted PIN block (8 bytes).
    #[inline]
    pub fn pin_block(self, block: impl Into<Bytes>) -> Self {
        self.field(52, block)
    }

    /// A field of TLV subelements, already encoded (see [`cvv2_subelement`]),
    /// in the field `location` names.
    #[inline]
    pub fn subelements(self, location: &TlvLocation, encoded: impl Into<Bytes>) -> Self {
        self.field(location.field, encoded)
    }

    /// The lock reason (1–8) of a file update, as its subelement (`tag`, 2 digits) in `location`.
    pub fn lock_reason(mut self, location: &TlvLocation, reason: u8) -> Self {
        let mut value = Vec::with_capacity(6);
        let digits = [b'0' + reason / 10 % 10, b'0' + reason % 10];
        tlv_push(&mut value, location.tag.as_bytes(), &digits);
        self.message.set(location.field, value);
        self
    }

    /// Field 90 (1987) or 56 (1993) naming an original by MTI, STAN, the
    /// YYMMDDhhmmss of its date-time fields, and acquirer id (`acquirer` digits).
    pub fn original(
        self,
        mti: [u8; 4],
        stan: u32,
        yymmddhhmmss: &[u8; 12],
        acquirer: &[u8],
    ) -> Self {
        self.digits.extend_from_slice(&mti);
        push_number(self.digits, u64::from(stan), 6);
        match self.dialect {
            Dialect::Iso93 => {
                // MTI n4, STAN n6, local date-time n12 (field 12), acquirer LLVAR.
                self.digits.extend_from_slice(yymmddhhmmss);
                let len = acquirer.len().min(99);
                self.digits
                    .extend_from_slice(&[b'0' + (len / 10) as u8, b'0' + (len % 10) as u8]);
                self.digits.extend_from_slice(acquirer);
                let value = self.digits.split().freeze();
                self.field(56, value)
            }
            Dialect::Iso87 => {
                // MTI, STAN, transmission date-time (field 7), then the acquirer
                // and forwarding institution, zero-padded to 11 digits each.
                self.digits.extend_from_slice(&yymmddhhmmss[2..]);
                let pad = 11usize.saturating_sub(acquirer.len());
                self.digits.extend_from_slice(&[b'0'; 11][..pad]);
                self.digits.extend_from_slice(acquirer);
                self.digits.extend_from_slice(&[b'0'; 11]);
                let value = self.digits.split().freeze();
                self.field(90, value)
            }
        }
    }

    /// Field 90 (original data elements) exactly as given.
    pub fn original_data(self, value: impl Into<Bytes>) -> Self {
        self.field(90, value)
    }

    /// Field 91: the file update code ("1" add, "3" delete).
    pub fn file_update_code(self, code: impl Into<Bytes>) -> Self {
        self.field(91, code)
    }

    /// Field 101: the name of the file a file update changes.
    pub fn file_name(self, name: impl Into<Bytes>) -> Self {
        self.field(101, name)
    }
}

/// Appends `value` in decimal, zero-padded to at least `width` digits, to `out`.
#[inline]
fn push_number(out: &mut BytesMut, value: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut rest = value;
    let mut start = digits.len();
    while rest > 0 {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    let start = start.min(digits.len() - width.min(digits.len()));
    out.extend_from_slice(&digits[start..]);
}

/// A CVV2 as the subelement (`location.tag`, length, digits) its field carries,
/// to pass to [`RequestBuilder::subelements`]; built once per card.
pub fn cvv2_subelement(location: &TlvLocation, cvv2: &str) -> Bytes {
    let mut value = Vec::with_capacity(4 + cvv2.len());
    tlv_push(&mut value, location.tag.as_bytes(), cvv2.as_bytes());
    Bytes::from(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_zero_padded_and_originals_follow_the_dialect() {
        let mut digits = BytesMut::new();
        let m = RequestBuilder::new(Dialect::Iso87, *b"0400", 8, &mut digits)
            .amount_minor(1234)
            .stan(42)
            .original(*b"0100", 7, b"261207112233", b"123456")
            .build();
        assert_eq!(m.get(4), Some(&b"000000001234"[..]));
        assert_eq!(m.get(11), Some(&b"000042"[..]));
        let expected = format!(
            "{}{:06}{}{:0>11}{:0>11}",
            "0100", 7, "1207112233", "123456", "0"
        );
        assert_eq!(m.get(90), Some(expected.as_bytes()));
        let m = RequestBuilder::new(Dialect::Iso93, *b"1420", 8, &mut digits)
            .original(*b"1100", 7, b"261207112233", b"123456")
            .build();
        assert_eq!(m.get(56), Some(&b"110000000726120711223306123456"[..]));
        assert_eq!(request_mti(Dialect::Iso93, b"0100"), *b"1100");
        let echo = RequestBuilder::network_management(
            Dialect::Iso93,
            NetworkFunction::Echo,
            "1207112233",
            5,
            &mut digits,
        )
        .build();
        assert_eq!(echo.mti(), *b"1804");
        assert_eq!(echo.get(24), Some(&b"831"[..]));
    }
}
