//! Spec files: the JSON format, its validation, and the precompiled field table.
//!
//! A spec is data (moov-io/jPOS style): each field is kind × content type ×
//! data encoding × length-prefix encoding × padding. The JSON is parsed once
//! into a `Vec` indexed by field number so decoding is a table lookup.

use std::fmt;

use serde::Deserialize;

/// Highest field number a message can carry (primary + secondary bitmap).
pub const MAX_FIELD: usize = 128;

/// How the 4-digit message type indicator is carried on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MtiEncoding {
    /// Four ASCII digits.
    Ascii,
    /// Two bytes of packed BCD.
    Bcd,
    /// Four EBCDIC (cp037) digits.
    Ebcdic,
}

/// How each 64-bit bitmap is carried on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BitmapEncoding {
    /// Sixteen ASCII hex characters (uppercase on encode, either case on decode).
    HexAscii,
    /// Eight raw bytes.
    Binary,
    /// Sixteen EBCDIC hex characters.
    HexEbcdic,
}

/// Whether a field has a fixed length or a length prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FieldKind {
    /// Always exactly `length` units long.
    Fixed,
    /// Up to `length` units (max 99), preceded by a 2-digit length.
    Llvar,
    /// Up to `length` units (max 999), preceded by a 3-digit length.
    Lllvar,
}

/// The character class of a field's logical value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ContentType {
    /// Digits `0-9`.
    #[serde(rename = "n")]
    Numeric,
    /// Letters and space.
    #[serde(rename = "a")]
    Alpha,
    /// Letters, digits and space.
    #[serde(rename = "an")]
    AlphaNumeric,
    /// Any printable ASCII character (0x20..=0x7E).
    #[serde(rename = "ans")]
    AlphaNumericSpecial,
    /// Track data: digits plus the separators `=` and `D`.
    #[serde(rename = "z")]
    Track,
    /// Raw bytes.
    #[serde(rename = "b")]
    Binary,
    /// Amount: `C` (credit) or `D` (debit) followed by digits; `length` counts the sign.
    #[serde(rename = "x+n")]
    SignedAmount,
}

impl ContentType {
    /// Short name used in error messages ("numeric digits", ...).
    pub fn describe(self) -> &'static str {
        match self {
            ContentType::Numeric => "numeric digits",
            ContentType::Alpha => "alphabetic characters",
            ContentType::AlphaNumeric => "alphanumeric characters",
            ContentType::AlphaNumericSpecial => "printable characters",
            ContentType::Track => "track characters (digits, '=', 'D')",
            ContentType::Binary => "bytes",
            ContentType::SignedAmount => "characters of a C/D signed amount",
        }
    }

    /// Whether byte `b` at position `index` of a value is allowed.
    #[inline]
    pub fn accepts(self, index: usize, b: u8) -> bool {
        match self {
            ContentType::Numeric => b.is_ascii_digit(),
            ContentType::Alpha => b.is_ascii_alphabetic() || b == b' ',
            ContentType::AlphaNumeric => b.is_ascii_alphanumeric() || b == b' ',
            ContentType::AlphaNumericSpecial => (0x20..=0x7E).contains(&b),
            ContentType::Track => b.is_ascii_digit() || b == b'=' || b == b'D',
            ContentType::Binary => true,
            ContentType::SignedAmount => {
                if index == 0 {
                    b == b'C' || b == b'D'
                } else {
                    b.is_ascii_digit()
                }
            }
        }
    }

    /// Whether the content is digits-like (BCD-packable, zero-padded).
    pub fn is_numeric_like(self) -> bool {
        matches!(
            self,
            ContentType::Numeric | ContentType::Track | ContentType::SignedAmount
        )
    }
}

/// How a field's value bytes are carried on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DataEncoding {
    /// Characters as ASCII bytes (no conversion).
    Ascii,
    /// Packed BCD, two digits a byte (n, z, x+n only; x+n keeps its sign as one ASCII byte).
    Bcd,
    /// Raw bytes (b only).
    Binary,
    /// Characters as EBCDIC (cp037) bytes.
    Ebcdic,
    /// Binary value carried as two ASCII hex characters a byte (b only).
    HexAscii,
    /// Binary value carried as two EBCDIC hex characters a byte (b only).
    HexEbcdic,
}

/// How the length prefix of a variable field is carried on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PrefixEncoding {
    /// 2 or 3 ASCII digits.
    Ascii,
    /// 1 byte (LL) or 2 bytes (LLL) of packed BCD.
    Bcd,
    /// 1 byte (LL) or 2 bytes big-endian (LLL) binary count.
    Binary,
    /// 2 or 3 EBCDIC digits.
    Ebcdic,
}

/// How a short value of a fixed field is padded on encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Padding {
    /// Left-pad with `0` (numeric default; x+n pads the digits after the sign).
    ZeroLeft,
    /// Right-pad with spaces (text default).
    SpaceRight,
    /// No padding: a short value is an error (binary default).
    None,
}

/// Which side of an odd-length BCD value gets the filler `0` nibble.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NibblePad {
    /// Filler nibble first (jPOS `BCDInterpreter.LEFT_PADDED`).
    Left,
    /// Filler nibble last (jPOS `BCDInterpreter.RIGHT_PADDED`).
    Right,
}

/// One field's compiled definition (read-only view of the spec).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldSpec {
    pub(crate) number: usize,
    pub(crate) kind: FieldKind,
    pub(crate) length: usize,
    pub(crate) content: ContentType,
    pub(crate) encoding: DataEncoding,
    pub(crate) prefix: PrefixEncoding,
    pub(crate) padding: Padding,
    pub(crate) nibble_pad: NibblePad,
    pub(crate) description: String,
}

impl FieldSpec {
    /// Field number (2..=128).
    pub fn number(&self) -> usize {
        self.number
    }
    /// Fixed or variable with a 2/3-digit prefix.
    pub fn kind(&self) -> FieldKind {
        self.kind
    }
    /// Fixed length, or maximum length, in logical units (characters, digits or bytes).
    pub fn length(&self) -> usize {
        self.length
    }
    /// Character class of the logical value.
    pub fn content(&self) -> ContentType {
        self.content
    }
    /// Wire encoding of the value.
    pub fn encoding(&self) -> DataEncoding {
        self.encoding
    }
    /// Wire encoding of the length prefix (meaningless for fixed fields).
    pub fn prefix(&self) -> PrefixEncoding {
        self.prefix
    }
    /// Padding applied to short values of fixed fields on encode.
    pub fn padding(&self) -> Padding {
        self.padding
    }
    /// Side of the filler nibble for odd-length BCD values.
    pub fn nibble_pad(&self) -> NibblePad {
        self.nibble_pad
    }
    /// Human-readable name of the field.
    pub fn description(&self) -> &str {
        &self.description
    }
    /// Whether this field holds card data that must never be printed.
    pub fn is_sensitive(&self) -> bool {
        is_sensitive(self.number)
    }
}

/// Fields whose contents are never printed (PAN, expiry, tracks, PIN block, ICC data).
pub const SENSITIVE_FIELDS: [usize; 7] = [2, 14, 35, 36, 45, 52, 55];

/// Whether field `n` holds card data that must never be printed.
#[inline]
pub fn is_sensitive(n: usize) -> bool {
    SENSITIVE_FIELDS.contains(&n)
}

/// Why a spec could not be loaded; the message says what to fix.
#[derive(Debug)]
pub enum SpecError {
    /// The argument is neither a built-in spec name nor a readable file.
    NotFound {
        /// What the user passed.
        name: String,
        /// The I/O error from trying it as a path.
        source: std::io::Error,
    },
    /// The text is not valid JSON of the spec format.
    Json(serde_json::Error),
    /// The JSON parsed but a field definition is inconsistent.
    Invalid {
        /// Field number at fault, or `None` for the spec header.
        field: Option<usize>,
        /// What is wrong.
        reason: String,
    },
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpecError::NotFound { name, source } => write!(
                f,
                "spec '{name}' is not a built-in spec ({}) and could not be read as a file: {source}",
                super::BUILTIN_NAMES.join(", ")
            ),
            SpecError::Json(e) => write!(f, "spec file is not valid spec JSON: {e} (see specs/README.md)"),
            SpecError::Invalid { field: Some(n), reason } => {
                write!(f, "spec field {n}: {reason} (see specs/README.md)")
            }
            SpecError::Invalid { field: None, reason } => {
                write!(f, "spec: {reason} (see specs/README.md)")
            }
        }
    }
}

impl std::error::Error for SpecError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SpecError::NotFound { source, .. } => Some(source),
            SpecError::Json(e) => Some(e),
            SpecError::Invalid { .. } => None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSpec {
    pub name: String,
    #[serde(default)]
    #[allow(dead_code)]
    pub description: String,
    pub mti_encoding: MtiEncoding,
    pub bitmap_encoding: BitmapEncoding,
    pub fields: Vec<RawField>,
    /// Absent: field 48 tag 92 (see [`default_cvv2_location`]).
    #[serde(default)]
    pub cvv2: Option<TlvLocation>,
    /// Absent: field 48 tag 90 (see [`default_lock_reason_location`]).
    #[serde(default)]
    pub lock_reason: Option<TlvLocation>,
}

/// Where a TLV subelement travels: a field holding `tag(2) length(2) value`
/// subelements (Mastercard DE48 style) and the subelement's 2-digit tag.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlvLocation {
    /// The field that holds the subelements (48 by default).
    pub field: usize,
    /// The 2-digit subelement tag.
    pub tag: String,
}

/// The CVV2 location of a spec that names none: field 48, tag 92.
pub(crate) fn default_cvv2_location() -> TlvLocation {
    TlvLocation {
        field: 48,
        tag: "92".into(),
    }
}

/// The lock reason location of a spec that names none: field 48, tag 90.
pub(crate) fn default_lock_reason_location() -> TlvLocation {
    TlvLocation {
        field: 48,
        tag: "90".into(),
    }
}

/// Checks a TLV location named in the spec (a text field of the spec and a
/// 2-digit tag) or takes the default, which needs no field 48 in the spec: a
/// spec without it simply never carries the subelement.
pub(crate) fn tlv_location(
    what: &str,
    named: Option<TlvLocation>,
    default: fn() -> TlvLocation,
    fields: &[Option<FieldSpec>],
) -> Result<TlvLocation, SpecError> {
    let Some(location) = named else {
        return Ok(default());
    };
    let tag = location.tag.as_bytes();
    if tag.len() != 2 || !tag.iter().all(u8::is_ascii_digit) {
        return Err(SpecError::Invalid {
            field: None,
            reason: format!("{what}.tag must be 2 digits"),
        });
    }
    match fields.get(location.field).and_then(Option::as_ref) {
        Some(f) if f.content != ContentType::Binary => Ok(location),
        Some(_) => Err(SpecError::Invalid {
            field: Some(location.field),
            reason: format!("{what} subelements need a text field, not a binary one"),
        }),
        None => Err(SpecError::Invalid {
            field: None,
            reason: format!("{what}.field {} is not defined in the spec", location.field),
        }),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawField {
    pub number: usize,
    pub kind: FieldKind,
    pub length: usize,
    pub content: ContentType,
    #[serde(default)]
    pub encoding: Option<DataEncoding>,
    #[serde(default)]
    pub prefix: Option<PrefixEncoding>,
    #[serde(default)]
    pub padding: Option<Padding>,
    #[serde(default)]
    pub nibble_pad: Option<NibblePad>,
    #[serde(default)]
    pub description: String,
}

/// Validates one raw field definition and fills in defaults.
pub(crate) fn compile_field(raw: RawField) -> Result<FieldSpec, SpecError> {
    let n = raw.number;
    let bad = |reason: String| SpecError::Invalid {
        field: Some(n),
        reason,
    };
    if !(2..=MAX_FIELD).contains(&n) {
        return Err(SpecError::Invalid {
            field: None,
            reason: format!("field number {n} is outside 2..=128"),
        });
    }
    let encoding = raw.encoding.unwrap_or(match raw.content {
        ContentType::Binary => DataEncoding::Binary,
        _ => DataEncoding::Ascii,
    });
    let prefix = raw.prefix.unwrap_or(PrefixEncoding::Ascii);
    let padding = raw.padding.unwrap_or(match raw.content {
        ContentType::Numeric | ContentType::SignedAmount => Padding::ZeroLeft,
        ContentType::Binary => Padding::None,
        _ => Padding::SpaceRight,
    });
    let nibble_pad = raw.nibble_pad.unwrap_or(NibblePad::Left);
    let max_var = match raw.kind {
        FieldKind::Fixed => usize::MAX,
        FieldKind::Llvar => 99,
        FieldKind::Lllvar => 999,
    };
    if raw.length == 0 {
        return Err(bad("length must be at least 1".into()));
    }
    if raw.length > max_var {
        return Err(bad(format!(
            "length {} does not fit a {:?} prefix (max {max_var})",
            raw.length, raw.kind
        )));
    }
    if raw.length > 9999 {
        return Err(bad(format!(
            "length {} is too large (max 9999)",
            raw.length
        )));
    }
    match (raw.content, encoding) {
        (
            ContentType::Binary,
            DataEncoding::Binary | DataEncoding::HexAscii | DataEncoding::HexEbcdic,
        ) => {}
        (ContentType::Binary, e) => {
            return Err(bad(format!(
                "binary content needs encoding binary, hex-ascii or hex-ebcdic, not {e:?}"
            )))
        }
        (_, DataEncoding::Binary | DataEncoding::HexAscii | DataEncoding::HexEbcdic) => {
            return Err(bad(format!(
                "encoding {encoding:?} is only for binary (b) content"
            )))
        }
        (c, DataEncoding::Bcd) if !c.is_numeric_like() => {
            return Err(bad(
                "bcd encoding is only for n, z or x+n content".to_string()
            ))
        }
        _ => {}
    }
    if raw.content == ContentType::SignedAmount {
        if raw.kind != FieldKind::Fixed {
            return Err(bad("x+n amounts must be fixed length".into()));
        }
        if raw.length < 2 {
            return Err(bad("x+n length counts the sign and needs at least 2".into()));
        }
    }
    if raw.content == ContentType::Binary && padding != Padding::None {
        return Err(bad("binary fields cannot be padded".into()));
    }
    Ok(FieldSpec {
        number: n,
        kind: raw.kind,
        length: raw.length,
        content: raw.content,
        encoding,
        prefix,
        padding,
        nibble_pad,
        description: raw.description,
    })
}
