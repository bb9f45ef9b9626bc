//! ISO 8583 message ⇄ [`AuthRequest`] / [`AuthResponse`]: the only place that
//! knows field numbers. It reads fields, checks their form, and builds the
//! response message; it decides nothing about cards or money.

use crate::domain::money::Currency;
use crate::domain::outcome::{Dialect, Outcome};
use crate::iso8583::{Message, Spec, TlvLocation};
use crate::security::pinblock::{Pin, ZonePinKey};
use crate::security::{pan::mask_pan, secrets::CardSecrets};
use bytes::Bytes;

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

/// A CVV2 as presented (3 or 4 digits); Debug redacts it.
#[derive(Clone)]
pub struct Cvv2(String);

impl Cvv2 {
    /// The digits, for verification only.
    pub fn digits(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Cvv2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cvv2(<redacted>)")
    }
}

impl Drop for Cvv2 {
    fn drop(&mut self) {
        // Best effort: overwrite the digits before the memory is freed.
        let mut bytes = std::mem::take(&mut self.0).into_bytes();
        bytes.iter_mut().for_each(|b| *b = 0);
        std::hint::black_box(&bytes);
    }
}

/// A clear PAN kept only while a derived CVV2 must be checked against it;
/// Debug redacts it and it is wiped when dropped. Never stored or logged.
#[derive(Clone)]
pub struct ClearPan(Vec<u8>);

impl ClearPan {
    /// The ASCII digits, for CVV2 derivation only.
    pub fn digits(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for ClearPan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClearPan(<redacted>)")
    }
}

impl Drop for ClearPan {
    fn drop(&mut self) {
        self.0.iter_mut().for_each(|b| *b = 0);
        std::hint::black_box(&self.0);
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

    /// The idempotency key: MTI (repeat cleared), acquirer, STAN, date-time, terminal.
    pub fn idempotency_key(&self) -> String {
        idempotency_key(
            &self.mti,
            &self.acquirer,
            &self.stan,
            &self.key_datetime,
            &self.terminal,
        )
    }

    /// What must match for a message with the same key to be its duplicate:
    /// card, amount and processing code.
    pub fn fingerprint(&self) -> u64 {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        hasher.update(self.pan_hash.unwrap_or_default());
        hasher.update(self.amount_minor.to_be_bytes());
        hasher.update(self.processing_code.unwrap_or_default());
        match self.file_action {
            None => {}
            Some(FileAction::Add { reason }) => hasher.update([b'A', reason]),
            Some(FileAction::Delete) => hasher.update(b"D"),
            Some(FileAction::Other) => hasher.update(b"O"),
        }
        let digest = hasher.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_be_bytes(first)
    }

    /// The key an orphan reversal is kept under until its original arrives:
    /// STAN, date-time and acquirer, without the MTI.
    pub fn orphan_key(&self) -> String {
        key_of(&[ascii(&self.stan), &self.key_datetime, &self.acquirer])
    }

    /// The key later messages name this one by (field 90/56 carry no terminal).
    pub fn original_key(&self) -> String {
        original_key(&self.mti, &self.stan, &self.key_datetime, &self.acquirer)
    }
}

/// The idempotency key of a message: MTI, acquirer, STAN, date-time, terminal.
pub fn idempotency_key(
    mti: &[u8; 4],
    acquirer: &str,
    stan: &[u8; 6],
    datetime: &str,
    terminal: &str,
) -> String {
    key_of(&[ascii(mti), acquirer, ascii(stan), datetime, terminal])
}

/// The key of an original: MTI, STAN, date-time, acquirer.
pub fn original_key(mti: &[u8; 4], stan: &[u8; 6], datetime: &str, acquirer: &str) -> String {
    key_of(&[ascii(mti), ascii(stan), datetime, acquirer])
}

/// The parts joined with `|` (what `format!` did, without its machinery:
/// keys are built several times per message).
fn key_of(parts: &[&str]) -> String {
    let len = parts.iter().map(|p| p.len() + 1).sum();
    let mut key = String::with_capacity(len);
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            key.push('|');
        }
        key.push_str(part);
    }
    key
}

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

    fn version_digit(self) -> u8 {
        match self.dialect {
            Dialect::Iso87 => b'0',
            Dialect::Iso93 => b'1',
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

/// Subelements that do not follow the `tag(2) length(2) value` layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MalformedTlv;

impl std::fmt::Display for MalformedTlv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("malformed TLV subelements")
    }
}

impl std::error::Error for MalformedTlv {}

/// Finds subelement `tag` in a field of `tag(2) length(2) value` subelements
/// (Mastercard DE48 style; a leading alphabetic transaction category code is
/// skipped). `Err` when the subelements are malformed.
pub fn tlv_find<'a>(data: &'a [u8], tag: &[u8]) -> Result<Option<&'a [u8]>, MalformedTlv> {
    let mut rest = match data.first() {
        Some(b) if b.is_ascii_alphabetic() => &data[1..],
        _ => data,
    };
    let mut found = None;
    while !rest.is_empty() {
        let head = rest.get(..4).ok_or(MalformedTlv)?;
        if !head.iter().all(u8::is_ascii_digit) {
            return Err(MalformedTlv);
        }
        let len = usize::from((head[2] - b'0') * 10 + (head[3] - b'0'));
        let value = rest.get(4..4 + len).ok_or(MalformedTlv)?;
        if found.is_none() && &head[..2] == tag {
            found = Some(value);
        }
        rest = &rest[4 + len..];
    }
    Ok(found)
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
        let (field, on, off, echo) = match profile.dialect {
            Dialect::Iso87 => (70, b"001", b"002", b"301"),
            Dialect::Iso93 => (24, b"801", b"802", b"831"),
        };
        let code = required(digits(msg, field, 3)?, field)?;
        request.network = Some(if code == on {
            NetworkFunction::SignOn
        } else if code == off {
            NetworkFunction::SignOff
        } else if code == echo {
            NetworkFunction::Echo
        } else {
            return Err(ParseError::Format {
                field,
                reason: "unknown network management code",
            });
        });
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
        request.cvv2 = Some(Cvv2(ascii(cvv2).to_string()));
        request.cvv2_pan = Some(ClearPan(pan.to_vec()));
    }
    let processing = required(digits(msg, 3, 6)?, 3)?;
    request.processing_code = processing.try_into().ok();
    // Balance inquiries may leave out the amount and currency.
    let inquiry = matches!(&processing[0..2], b"30" | b"31");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tlv_finds_subelements_and_rejects_malformed_ones() {
        assert_eq!(tlv_find(b"9203123", b"92"), Ok(Some(&b"123"[..])));
        assert_eq!(tlv_find(b"10020A9204123490", b"92"), Err(MalformedTlv));
        assert_eq!(tlv_find(b"10020A92041234", b"92"), Ok(Some(&b"1234"[..])));
        assert_eq!(tlv_find(b"100201", b"92"), Ok(None));
        assert_eq!(tlv_find(b"", b"92"), Ok(None));
        assert_eq!(tlv_find(b"9000", b"90"), Ok(Some(&b""[..])));
        // A leading transaction category code (Mastercard DE48) is skipped.
        assert_eq!(tlv_find(b"R9203123", b"92"), Ok(Some(&b"123"[..])));
        // The first occurrence wins.
        assert_eq!(tlv_find(b"92031119203222", b"92"), Ok(Some(&b"111"[..])));
        for bad in [
            &b"9"[..],
            b"920",
            b"9203",
            b"920312",
            b"92X3123",
            b"9203123 ",
            b"RR9203123",
            b"92031231",
        ] {
            assert_eq!(tlv_find(bad, b"92"), Err(MalformedTlv), "{bad:?}");
        }
    }

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
        for bad in ["92031", "9202AB", "92051234X", "920212"] {
            m.set(48, bad.to_string());
            assert!(
                matches!(
                    parse(&m, profile(), &secrets),
                    Err(ParseError::Format { field: 48, .. })
                ),
                "{bad}"
            );
        }
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
        for bad in ["900209", "900200", "90017", "9002A1"] {
            m.set(48, bad.to_string());
            assert!(
                matches!(
                    parse(&m, profile(), &secrets),
                    Err(ParseError::Format { field: 48, .. })
                ),
                "{bad}"
            );
        }
        m.remove(48);
        assert!(matches!(
            parse(&m, profile(), &secrets),
            Err(ParseError::Format { field: 48, .. })
        ));
        m.set(91, "3".to_string());
        let r = parse(&m, profile(), &secrets).expect("parse");
        assert_eq!(r.file_action, Some(FileAction::Delete));
        m.set(91, "5".to_string());
        assert_eq!(
            parse(&m, profile(), &secrets).expect("parse").file_action,
            Some(FileAction::Other)
        );
        m.remove(91);
        assert!(matches!(
            parse(&m, profile(), &secrets),
            Err(ParseError::Format { field: 91, .. })
        ));
        // The response MTI and the echoed fields.
        assert_eq!(response_mti(*b"0302"), *b"0312");
        assert_eq!(response_mti(*b"1302"), *b"1312");
    }
}
