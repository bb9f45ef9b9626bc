//! Message → [`AuthRequest`]: reads and checks every field a request may
//! carry (PAN hashed and masked at once, PIN block decrypted, CVV2 and lock
//! reason from their TLV subelements). Decides nothing about cards or money.

use super::classify::{classify, is_balance_inquiry, network_field, network_function, Classified};
use super::tlv::{tlv_find, MalformedTlv};
use super::{ascii, AuthRequest, FileAction, MessageClass, OriginalRef, ParseError, Profile};
use crate::domain::money::Currency;
use crate::domain::outcome::Dialect;
use crate::iso8583::{Message, Spec, TlvLocation};
use crate::security::pan::mask_pan;
use crate::security::pinblock::ZonePinKey;
use crate::security::secret::Secret;
use crate::security::secrets::CardSecrets;

/// A CVV2 as presented (3 or 4 digits); Debug prints `Cvv2(<redacted>)` and
/// the digits are wiped when dropped.
#[derive(Clone, Debug)]
pub struct Cvv2(Secret<String>);

impl Cvv2 {
    /// The digits, for verification only.
    pub fn digits(&self) -> &str {
        self.0.expose()
    }
}

/// A clear PAN kept only while a derived CVV2 must be checked against it;
/// Debug prints `ClearPan(<redacted>)` and it is wiped when dropped. Never
/// stored or logged.
#[derive(Clone, Debug)]
pub struct ClearPan(Secret<Vec<u8>>);

impl ClearPan {
    /// The ASCII digits, for CVV2 derivation only.
    pub fn digits(&self) -> &[u8] {
        self.0.expose()
    }
}

/// Parse settings beyond the dialect: the zone PIN key and where TLV subelements travel.
#[derive(Clone, Debug)]
pub struct ParseOptions {
    /// The zone PIN key field 52 is encrypted under; `None`: PINs cannot be verified.
    pub zpk: Option<ZonePinKey>,
    /// Where a card-not-present CVV2 travels.
    pub cvv2: TlvLocation,
    /// Where a file update's lock reason travels.
    pub lock_reason: TlvLocation,
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions {
            zpk: None,
            cvv2: TlvLocation {
                field: 48,
                tag: "92".into(),
            },
            lock_reason: TlvLocation {
                field: 48,
                tag: "90".into(),
            },
        }
    }
}

impl ParseOptions {
    /// The TLV locations of a spec, with a zone PIN key.
    pub fn for_spec(spec: &Spec, zpk: Option<ZonePinKey>) -> ParseOptions {
        ParseOptions {
            zpk,
            cvv2: spec.cvv2_location().clone(),
            lock_reason: spec.lock_reason_location().clone(),
        }
    }
}

fn digits(msg: &Message, field: usize, len: usize) -> Result<Option<&[u8]>, ParseError> {
    match msg.get(field) {
        None => Ok(None),
        Some(v) if v.len() == len && v.iter().all(u8::is_ascii_digit) => Ok(Some(v)),
        Some(_) => Err(ParseError::Format {
            field,
            reason: "expected fixed-length digits",
        }),
    }
}

fn number(v: &[u8]) -> u64 {
    v.iter().fold(0u64, |acc, d| {
        acc.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    })
}

fn text(msg: &Message, field: usize) -> Option<String> {
    msg.get(field)
        .map(|v| String::from_utf8_lossy(v).trim().to_string())
}

fn strip_zeros(s: &[u8]) -> String {
    let t = String::from_utf8_lossy(s);
    let t = t.trim();
    let stripped = t.trim_start_matches('0');
    stripped.to_string()
}

fn missing(field: usize) -> ParseError {
    ParseError::Format {
        field,
        reason: "required field missing",
    }
}

fn required<T>(value: Option<T>, field: usize) -> Result<T, ParseError> {
    value.ok_or(missing(field))
}

fn subelement<'a>(
    msg: &'a Message,
    location: &TlvLocation,
) -> Result<Option<&'a [u8]>, ParseError> {
    match msg.get(location.field) {
        None => Ok(None),
        Some(data) => {
            tlv_find(data, location.tag.as_bytes()).map_err(|MalformedTlv| ParseError::Format {
                field: location.field,
                reason: "malformed TLV subelements",
            })
        }
    }
}

/// Reads a request message into an [`AuthRequest`], hashing the PAN with
/// `secrets`, without a zone PIN key and with the default TLV locations.
pub fn parse(
    msg: &Message,
    profile: Profile,
    secrets: &CardSecrets,
) -> Result<AuthRequest, ParseError> {
    parse_with(msg, profile, secrets, &ParseOptions::default())
}

/// Reads a request message into an [`AuthRequest`]: hashes the PAN with
/// `secrets`, decrypts field 52 under the zone PIN key, reads the CVV2 and a
/// file update's lock reason where `options` say they travel.
pub fn parse_with(
    msg: &Message,
    profile: Profile,
    secrets: &CardSecrets,
    options: &ParseOptions,
) -> Result<AuthRequest, ParseError> {
    let mti = msg.mti();
    let Classified {
        class,
        advice,
        repeat,
        mti: normalized,
    } = classify(mti, profile)?;

    let stan = required(digits(msg, 11, 6)?, 11)?;
    let stan: [u8; 6] = stan.try_into().map_err(|_| ParseError::Format {
        field: 11,
        reason: "bad STAN",
    })?;
    let transmission_field = digits(msg, 7, 10)?;
    let transmission = match transmission_field {
        Some(t) => {
            let month = u32::try_from(number(&t[0..2])).unwrap_or(0);
            let day = u32::try_from(number(&t[2..4])).unwrap_or(0);
            if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
                return Err(ParseError::Format {
                    field: 7,
                    reason: "not a valid MMDDhhmmss",
                });
            }
            Some((month, day))
        }
        None => None,
    };
    let key_datetime = match profile.dialect {
        Dialect::Iso87 => transmission_field
            .map(|t| ascii(t).to_string())
            .unwrap_or_default(),
        Dialect::Iso93 => digits(msg, 12, 12)?
            .or(transmission_field)
            .map(|t| ascii(t).to_string())
            .unwrap_or_default(),
    };
    let acquirer = msg.get(32).map(strip_zeros).unwrap_or_default();
    let terminal = text(msg, 41).unwrap_or_default();

    let mut request = AuthRequest {
        class,
        advice,
        repeat,
        mti: normalized,
        pan_hash: None,
        pan_masked: None,
        processing_code: None,
        amount_minor: 0,
        currency: None,
        billing: None,
        transmission,
        key_datetime,
        stan,
        acquirer,
        terminal,
        expiry: None,
        original: None,
        replacement_amount: None,
        network: None,
        advice_response_approved: None,
        mcc: text(msg, 18),
        merchant_id: text(msg, 42),
        pin: None,
        pin_invalid: false,
        pin_unverifiable: false,
        cvv2: None,
        cvv2_pan: None,
        file_action: None,
    };

    if class == MessageClass::NetworkManagement {
        let field = network_field(profile.dialect);
        let code = required(digits(msg, field, 3)?, field)?;
        request.network = Some(network_function(profile.dialect, code).ok_or(
            ParseError::Format {
                field,
                reason: "unknown network management code",
            },
        )?);
        return Ok(request);
    }

    let pan = required(msg.get(2), 2)?;
    if pan.len() < 12 || pan.len() > 19 || !pan.iter().all(u8::is_ascii_digit) {
        return Err(ParseError::Format {
            field: 2,
            reason: "PAN must be 12 to 19 digits",
        });
    }
    request.pan_hash = Some(secrets.pan_hash(pan));
    request.pan_masked = Some(mask_pan(pan));
    if request.key_datetime.is_empty() {
        // Without it the idempotency key cannot tell two messages apart.
        return Err(ParseError::Format {
            field: 7,
            reason: "transmission date-time required",
        });
    }
    if class == MessageClass::FileUpdate {
        if mti[2] != b'0' {
            // File update advices and notifications are not processed.
            return Err(ParseError::UnsupportedMti);
        }
        let code = required(msg.get(91), 91)?;
        request.file_action = Some(match code {
            b"1" => {
                let reason = required(subelement(msg, &options.lock_reason)?, 48)?;
                let reason = match reason {
                    [b'0', d @ b'1'..=b'8'] => d - b'0',
                    _ => {
                        return Err(ParseError::Format {
                            field: options.lock_reason.field,
                            reason: "lock reason must be 01 to 08",
                        })
                    }
                };
                FileAction::Add { reason }
            }
            b"3" => FileAction::Delete,
            _ => FileAction::Other,
        });
        return Ok(request);
    }
    if let Some(block) = msg.get(52) {
        let block: [u8; 8] = block.try_into().map_err(|_| ParseError::Format {
            field: 52,
            reason: "PIN block must be 8 bytes",
        })?;
        match &options.zpk {
            Some(zpk) => match zpk.decrypt_pin_block(&block, pan) {
                Ok(pin) => request.pin = Some(pin),
                Err(_) => request.pin_invalid = true,
            },
            None => request.pin_unverifiable = true,
        }
    }
    if let Some(cvv2) = subelement(msg, &options.cvv2)? {
        if !(3..=4).contains(&cvv2.len()) || !cvv2.iter().all(u8::is_ascii_digit) {
            return Err(ParseError::Format {
                field: options.cvv2.field,
                reason: "CVV2 must be 3 or 4 digits",
            });
        }
        request.cvv2 = Some(Cvv2(Secret::new(ascii(cvv2).to_string())));
        request.cvv2_pan = Some(ClearPan(Secret::new(pan.to_vec())));
    }
    let processing = required(digits(msg, 3, 6)?, 3)?;
    request.processing_code = processing.try_into().ok();
    // Balance inquiries may leave out the amount and currency.
    let inquiry = is_balance_inquiry(processing);
    request.amount_minor = match digits(msg, 4, 12)? {
        Some(amount) => number(amount),
        None if inquiry => 0,
        None => return Err(missing(4)),
    };
    request.currency = match msg.get(49) {
        Some(code) => Some(
            Currency::from_numeric_ascii(code).ok_or(ParseError::Format {
                field: 49,
                reason: "not an ISO 4217 numeric currency",
            })?,
        ),
        None if inquiry => None,
        None => return Err(missing(49)),
    };
    if let (Some(amount), Some(cur)) = (digits(msg, 6, 12)?, msg.get(51)) {
        let cur = Currency::from_numeric_ascii(cur).ok_or(ParseError::Format {
            field: 51,
            reason: "not an ISO 4217 numeric currency",
        })?;
        request.billing = Some((number(amount), cur));
    }
    if let Some(exp) = digits(msg, 14, 4)? {
        request.expiry = exp.try_into().ok();
    }
    if advice {
        request.advice_response_approved = msg.get(39).map(|code| match profile.dialect {
            // 1987 approvals: 00, 08 (honour with identification), 10 (partial), 11 (VIP).
            Dialect::Iso87 => matches!(code, b"00" | b"08" | b"10" | b"11"),
            // 1993/2003: the 0xxx action codes are approvals.
            Dialect::Iso93 => code.first() == Some(&b'0'),
        });
    }
    match profile.dialect {
        Dialect::Iso87 => {
            if let Some(original) = digits(msg, 90, 42)? {
                request.original = Some(OriginalRef {
                    mti: original[0..4].try_into().map_err(|_| bad(90))?,
                    stan: original[4..10].try_into().map_err(|_| bad(90))?,
                    datetime: ascii(&original[10..20]).to_string(),
                    acquirer: strip_zeros(&original[20..31]),
                });
            }
            if let Some(replacement) = msg.get(95) {
                if replacement.len() < 12 || !replacement[..12].iter().all(u8::is_ascii_digit) {
                    return Err(bad(95));
                }
                request.replacement_amount = Some(number(&replacement[..12]));
            }
        }
        Dialect::Iso93 => {
            if let Some(original) = msg.get(56) {
                // MTI n4, STAN n6, local date-time n12, acquirer LLVAR n..11.
                if original.len() < 22 || !original.iter().all(u8::is_ascii_digit) {
                    return Err(bad(56));
                }
                let acquirer = original.get(24..).map(strip_zeros).unwrap_or_default();
                request.original = Some(OriginalRef {
                    mti: original[0..4].try_into().map_err(|_| bad(56))?,
                    stan: original[4..10].try_into().map_err(|_| bad(56))?,
                    datetime: ascii(&original[10..22]).to_string(),
                    acquirer,
                });
            }
            if class == MessageClass::Reversal && digits(msg, 30, 24)?.is_some() {
                request.replacement_amount = Some(request.amount_minor);
            }
        }
    }
    if let Some(original) = &mut request.original {
        original.mti[3] = b'0';
    }
    Ok(request)
}

fn bad(field: usize) -> ParseError {
    ParseError::Format {
        field,
        reason: "malformed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::respond::response_mti;
    use crate::security::pinblock::Pin;
    use bytes::Bytes;

    fn message(mti: &[u8; 4]) -> Message {
        let mut m = Message::new(*mti);
        m.set(2, "5355220000000012".to_string());
        m.set(3, "000000".to_string());
        m.set(4, "000000000100".to_string());
        m.set(7, "1125120000".to_string());
        m.set(11, "000001".to_string());
        m.set(49, "978".to_string());
        m
    }

    fn profile() -> Profile {
        Profile {
            dialect: Dialect::Iso87,
        }
    }

    /// Whether `m` fails to parse with a format error on `field`.
    fn format_error_on(m: &Message, secrets: &CardSecrets, field: usize) -> bool {
        matches!(
            parse(m, profile(), secrets),
            Err(ParseError::Format { field: f, .. }) if f == field
        )
    }

    /// Asserts that each of `bad` as field 48 of `m` is a format error on field 48.
    fn assert_bad_field_48(m: &mut Message, secrets: &CardSecrets, bad: &[&str]) {
        for value in bad {
            m.set(48, (*value).to_string());
            assert!(format_error_on(m, secrets, 48), "{value}");
        }
    }

    #[test]
    fn pin_block_and_cvv2_are_read_and_redacted() {
        let secrets = CardSecrets::from_key([1u8; 32]);
        let zpk = ZonePinKey::from_hex("0123456789ABCDEFFEDCBA9876543210").expect("zpk");
        let options = ParseOptions {
            zpk: Some(zpk.clone()),
            ..ParseOptions::default()
        };
        let mut m = message(b"0100");
        let block = zpk
            .encrypt_pin_block("4821", b"5355220000000012")
            .expect("block");
        m.set(52, Bytes::copy_from_slice(&block));
        m.set(48, "9203987".to_string());
        let r = parse_with(&m, profile(), &secrets, &options).expect("parse");
        assert_eq!(r.pin.as_ref().map(Pin::as_bytes), Some(&b"4821"[..]));
        assert!(!r.pin_invalid && !r.pin_unverifiable);
        assert_eq!(r.cvv2.as_ref().map(Cvv2::digits), Some("987"));
        let debug = format!("{r:?}");
        for secret in ["4821", "987", "5355220000000012"] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
        // A garbage block is a wrong PIN, not a format error.
        m.set(52, Bytes::from_static(&[0x55; 8]));
        let r = parse_with(&m, profile(), &secrets, &options).expect("parse");
        assert!(r.pin.is_none() && r.pin_invalid);
        // Without a ZPK the PIN cannot be verified.
        let r = parse(&m, profile(), &secrets).expect("parse");
        assert!(r.pin.is_none() && r.pin_unverifiable && !r.pin_invalid);
        // Malformed subelements and a malformed CVV2 are format errors on field 48.
        assert_bad_field_48(
            &mut m,
            &secrets,
            &["92031", "9202AB", "92051234X", "920212"],
        );
        // Field 48 without tag 92: no CVV2.
        m.set(48, "10021A".to_string());
        assert!(parse(&m, profile(), &secrets)
            .expect("parse")
            .cvv2
            .is_none());
    }

    #[test]
    fn file_update_add_delete_and_reason() {
        let secrets = CardSecrets::from_key([1u8; 32]);
        let mut m = message(b"0302");
        m.set(91, "1".to_string());
        m.set(101, "EXCEPTIONS".to_string());
        m.set(48, "9002071001X".to_string());
        let r = parse(&m, profile(), &secrets).expect("parse");
        assert_eq!(r.class, MessageClass::FileUpdate);
        assert_eq!(r.file_action, Some(FileAction::Add { reason: 7 }));
        assert_bad_field_48(&mut m, &secrets, &["900209", "900200", "90017", "9002A1"]);
        m.remove(48);
        assert!(format_error_on(&m, &secrets, 48));
        m.set(91, "3".to_string());
        let r = parse(&m, profile(), &secrets).expect("parse");
        assert_eq!(r.file_action, Some(FileAction::Delete));
        m.set(91, "5".to_string());
        assert_eq!(
            parse(&m, profile(), &secrets).expect("parse").file_action,
            Some(FileAction::Other)
        );
        m.remove(91);
        assert!(format_error_on(&m, &secrets, 91));
        // The response MTI and the echoed fields.
        assert_eq!(response_mti(*b"0302"), *b"0312");
        assert_eq!(response_mti(*b"1302"), *b"1312");
    }
}
