//! ISO 8583 codec: specs are data (JSON, see `specs/README.md`), compiled once
//! into a field table; messages hold logical values as `Bytes`.
//!
//! Owns: bytes ⇄ [`Message`] for every dialect. Must never touch: a card, the
//! meaning of a field (that is `protocol`), a socket, the engine.
#![warn(missing_docs)]

mod codec;
pub mod ebcdic;
mod error;
mod message;
mod spec;

use std::fmt;

use bytes::{Bytes, BytesMut};

pub use error::{DecodeError, DecodeErrorKind, EncodeError, EncodeErrorKind};
pub use message::{field_mask, Message};
pub use spec::{
    is_sensitive, BitmapEncoding, ContentType, DataEncoding, FieldKind, FieldSpec, MtiEncoding,
    NibblePad, Padding, PrefixEncoding, SpecError, TlvLocation, MAX_FIELD, SENSITIVE_FIELDS,
};

/// Names of the built-in specs, in the order `Spec::builtin_names` returns them.
pub(crate) const BUILTIN_NAMES: &[&str] = &[
    "iso87ascii",
    "iso87ascii-binbitmap",
    "iso87binary",
    "iso93",
    "iso87ebcdic",
];

fn builtin_text(name: &str) -> Option<&'static str> {
    Some(match name {
        "iso87ascii" => include_str!("../../../../specs/iso87ascii.json"),
        "iso87ascii-binbitmap" => include_str!("../../../../specs/iso87ascii-binbitmap.json"),
        "iso87binary" => include_str!("../../../../specs/iso87binary.json"),
        "iso93" => include_str!("../../../../specs/iso93.json"),
        "iso87ebcdic" => include_str!("../../../../specs/iso87ebcdic.json"),
        _ => return None,
    })
}

/// A compiled ISO 8583 dialect: MTI/bitmap encodings plus a field table indexed by number.
#[derive(Clone)]
pub struct Spec {
    name: String,
    pub(crate) mti_encoding: MtiEncoding,
    pub(crate) bitmap_encoding: BitmapEncoding,
    /// Index = field number (0 and 1 are always `None`).
    pub(crate) fields: Vec<Option<FieldSpec>>,
    /// Whether any field needs conversion (BCD/EBCDIC/hex) on decode.
    pub(crate) needs_scratch: bool,
    /// Bytes reserved up front when encoding.
    pub(crate) size_hint: usize,
    /// Where a card-not-present CVV2 travels.
    pub(crate) cvv2: TlvLocation,
    /// Where the lock reason of a file update travels.
    pub(crate) lock_reason: TlvLocation,
}

impl fmt::Debug for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spec")
            .field("name", &self.name)
            .field("mti_encoding", &self.mti_encoding)
            .field("bitmap_encoding", &self.bitmap_encoding)
            .field("fields", &self.fields.iter().flatten().count())
            .finish()
    }
}

impl Spec {
    /// A built-in spec by name (see [`Spec::builtin_names`]), or `None`.
    pub fn builtin(name: &str) -> Option<Spec> {
        builtin_text(name).and_then(|text| Spec::from_json(text).ok())
    }

    /// Names accepted by [`Spec::builtin`].
    pub fn builtin_names() -> &'static [&'static str] {
        BUILTIN_NAMES
    }

    /// A built-in spec name, or else a path to a spec JSON file.
    pub fn load(name_or_path: &str) -> Result<Spec, SpecError> {
        if let Some(text) = builtin_text(name_or_path) {
            return Spec::from_json(text);
        }
        let text = std::fs::read_to_string(name_or_path).map_err(|source| SpecError::NotFound {
            name: name_or_path.to_string(),
            source,
        })?;
        Spec::from_json(&text)
    }

    /// Parses and validates spec JSON (format in `specs/README.md`).
    pub fn from_json(text: &str) -> Result<Spec, SpecError> {
        let raw: spec::RawSpec = serde_json::from_str(text).map_err(SpecError::Json)?;
        if raw.name.trim().is_empty() {
            return Err(SpecError::Invalid {
                field: None,
                reason: "name must not be empty".into(),
            });
        }
        let mut fields: Vec<Option<FieldSpec>> = vec![None; MAX_FIELD + 1];
        let mut needs_scratch = false;
        let mut size_hint = 4 + 32;
        for rf in raw.fields {
            let fs = spec::compile_field(rf)?;
            let n = fs.number;
            if fields[n].is_some() {
                return Err(SpecError::Invalid {
                    field: Some(n),
                    reason: "defined twice".into(),
                });
            }
            needs_scratch |= !matches!(fs.encoding, DataEncoding::Ascii | DataEncoding::Binary);
            if fs.kind == FieldKind::Fixed && fs.length <= 64 {
                size_hint += fs.length;
            }
            fields[n] = Some(fs);
        }
        let cvv2 = spec::tlv_location("cvv2", raw.cvv2, spec::default_cvv2_location, &fields)?;
        let lock_reason = spec::tlv_location(
            "lock_reason",
            raw.lock_reason,
            spec::default_lock_reason_location,
            &fields,
        )?;
        Ok(Spec {
            name: raw.name,
            mti_encoding: raw.mti_encoding,
            bitmap_encoding: raw.bitmap_encoding,
            fields,
            needs_scratch,
            size_hint: size_hint.min(1024),
            cvv2,
            lock_reason,
        })
    }

    /// The spec's name (e.g. `iso87ascii`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How the MTI is encoded on the wire.
    pub fn mti_encoding(&self) -> MtiEncoding {
        self.mti_encoding
    }

    /// How bitmaps are encoded on the wire.
    pub fn bitmap_encoding(&self) -> BitmapEncoding {
        self.bitmap_encoding
    }

    /// Decodes one frame body (no length header) into a message.
    pub fn decode(&self, frame: &Bytes) -> Result<Message, DecodeError> {
        codec::decode(self, frame)
    }

    /// Appends the wire form of `msg` to `out`; on error `out` is left as it was.
    pub fn encode(&self, msg: &Message, out: &mut BytesMut) -> Result<(), EncodeError> {
        codec::encode(self, msg, out)
    }

    /// The definition of field `n`, if the spec has one.
    pub fn field(&self, n: usize) -> Option<&FieldSpec> {
        self.fields.get(n).and_then(Option::as_ref)
    }

    /// Where a card-not-present CVV2 travels (`"cvv2"` in the spec; field 48 tag 92 by default).
    pub fn cvv2_location(&self) -> &TlvLocation {
        &self.cvv2
    }

    /// Where a file update's lock reason travels (`"lock_reason"`; field 48 tag 90 by default).
    pub fn lock_reason_location(&self) -> &TlvLocation {
        &self.lock_reason
    }

    /// Defined fields in ascending order.
    pub fn fields(&self) -> impl Iterator<Item = &FieldSpec> {
        self.fields.iter().flatten()
    }
}

#[cfg(test)]
mod tests;
