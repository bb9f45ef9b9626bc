//! Decode and encode errors. They name the field, and never print the
//! contents of card-data fields (only lengths and positions).

use std::fmt;

use super::message::Message;
use super::spec::{is_sensitive, ContentType};

/// What went wrong while decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeErrorKind {
    /// The frame ended before the element was complete.
    Truncated {
        /// Bytes the element needs.
        needed: usize,
        /// Bytes left in the frame.
        available: usize,
    },
    /// The length prefix is not a number in its encoding.
    BadLengthPrefix,
    /// The length prefix exceeds the field's maximum length.
    TooLong {
        /// Length announced by the prefix.
        length: usize,
        /// Maximum allowed by the spec.
        max: usize,
    },
    /// A byte is not allowed by the field's content type.
    BadCharacter {
        /// Zero-based position within the value.
        position: usize,
        /// The content type the spec requires.
        expected: ContentType,
        /// Length of the value (units of the content type).
        length: usize,
        /// The offending byte (after BCD/EBCDIC decoding where possible).
        found: u8,
    },
    /// The filler nibble of an odd-length BCD value is not zero.
    BadPadding,
    /// The MTI is not four digits.
    BadMti,
    /// A bitmap is not valid in its encoding.
    BadBitmap,
    /// The bitmap announces a field the spec does not define.
    NoSpec,
    /// Bytes remain after the last field.
    TrailingBytes {
        /// How many bytes are left over.
        count: usize,
    },
}

/// A frame could not be decoded: which field, why, and what was decoded before.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeError {
    /// Field at fault; `None` for the MTI or a bitmap (or trailing bytes).
    pub field: Option<usize>,
    /// What went wrong.
    pub kind: DecodeErrorKind,
    /// MTI and the fields decoded before the failure, if the MTI was readable.
    pub partial: Option<Box<Message>>,
}

fn printable(b: u8) -> String {
    if (0x20..=0x7E).contains(&b) {
        format!("'{}'", b as char)
    } else {
        format!("byte 0x{b:02X}")
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.field {
            Some(n) => write!(f, "field {n}: ")?,
            None => match self.kind {
                DecodeErrorKind::TrailingBytes { .. } => write!(f, "message: ")?,
                DecodeErrorKind::BadMti => write!(f, "MTI: ")?,
                _ => write!(f, "MTI/bitmap: ")?,
            },
        }
        let sensitive = self.field.is_some_and(is_sensitive);
        match &self.kind {
            DecodeErrorKind::Truncated { needed, available } => write!(
                f,
                "frame truncated: needs {needed} bytes, only {available} left"
            ),
            DecodeErrorKind::BadLengthPrefix => write!(f, "length prefix is not a valid number"),
            DecodeErrorKind::TooLong { length, max } => {
                write!(f, "length {length} exceeds the maximum of {max}")
            }
            DecodeErrorKind::BadCharacter {
                position,
                expected,
                length,
                found,
            } => {
                if sensitive {
                    write!(
                        f,
                        "expected {length} {}, found an invalid byte at position {position}",
                        expected.describe()
                    )
                } else {
                    write!(
                        f,
                        "expected {length} {}, found {} at position {position}",
                        expected.describe(),
                        printable(*found)
                    )
                }
            }
            DecodeErrorKind::BadPadding => {
                write!(f, "filler nibble of odd-length BCD value is not 0")
            }
            DecodeErrorKind::BadMti => write!(f, "expected 4 digits"),
            DecodeErrorKind::BadBitmap => write!(f, "bitmap is not valid"),
            DecodeErrorKind::NoSpec => {
                write!(f, "present in the bitmap but not defined by the spec")
            }
            DecodeErrorKind::TrailingBytes { count } => {
                write!(f, "{count} unexpected bytes after the last field")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// What went wrong while encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncodeErrorKind {
    /// The message carries a field the spec does not define.
    NoSpec,
    /// The value is longer than the spec allows.
    TooLong {
        /// Length of the value.
        length: usize,
        /// Maximum allowed.
        max: usize,
    },
    /// The value is shorter than a fixed field that cannot be padded.
    TooShort {
        /// Length of the value.
        length: usize,
        /// Length required.
        expected: usize,
    },
    /// A byte is not allowed by the field's content type (or encoding).
    BadCharacter {
        /// Zero-based position within the value.
        position: usize,
        /// The content type the spec requires.
        expected: ContentType,
        /// The offending byte.
        found: u8,
    },
    /// The MTI is not four digits.
    BadMti,
}

/// A message could not be encoded: which field and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodeError {
    /// Field at fault (0 for the MTI).
    pub field: usize,
    /// What went wrong.
    pub kind: EncodeErrorKind,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field == 0 {
            write!(f, "MTI: ")?;
        } else {
            write!(f, "field {}: ", self.field)?;
        }
        match &self.kind {
            EncodeErrorKind::NoSpec => write!(f, "not defined by the spec"),
            EncodeErrorKind::TooLong { length, max } => {
                write!(f, "value of length {length} exceeds the maximum of {max}")
            }
            EncodeErrorKind::TooShort { length, expected } => write!(
                f,
                "value of length {length} is shorter than the required {expected}"
            ),
            EncodeErrorKind::BadCharacter {
                position,
                expected,
                found,
            } => {
                if is_sensitive(self.field) {
                    write!(
                        f,
                        "expected {}, found an invalid byte at position {position}",
                        expected.describe()
                    )
                } else {
                    write!(
                        f,
                        "expected {}, found {} at position {position}",
                        expected.describe(),
                        printable(*found)
                    )
                }
            }
            EncodeErrorKind::BadMti => write!(f, "expected 4 digits"),
        }
    }
}

impl std::error::Error for EncodeError {}
