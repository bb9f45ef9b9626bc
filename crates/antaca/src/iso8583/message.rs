//! The in-memory ISO 8583 message: an MTI plus fields 2..=128 as logical values.
//!
//! Storage is a `u128` presence bitmap in wire order (field `n` is bit
//! `128 - n`) plus a `Vec` of values in ascending field order; the index of a
//! field's value is the number of present fields below it (a popcount), so
//! lookups are O(1) and decode only ever pushes.

use std::fmt;

use bytes::Bytes;

use super::spec::{is_sensitive, MAX_FIELD};
use crate::security::pan::mask_pan;

/// An ISO 8583 message: MTI and logical field values (no bitmaps).
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    mti: [u8; 4],
    present: u128,
    values: Vec<Bytes>,
}

impl Default for Message {
    fn default() -> Self {
        Message::new(*b"0000")
    }
}

/// Bit of field `n` (2..=128) in the presence bitmap.
#[inline]
pub(crate) fn bit(n: usize) -> u128 {
    1u128 << (MAX_FIELD - n)
}

/// The presence bits of `fields` (numbers 2..=128; others are left out),
/// for [`Message::retain`].
pub const fn field_mask(fields: &[usize]) -> u128 {
    let mut mask = 0;
    let mut i = 0;
    while i < fields.len() {
        if fields[i] >= 2 && fields[i] <= MAX_FIELD {
            mask |= 1u128 << (MAX_FIELD - fields[i]);
        }
        i += 1;
    }
    mask
}

impl Message {
    /// Creates an empty message with the given MTI (ASCII digits, e.g. `*b"0100"`).
    pub fn new(mti: [u8; 4]) -> Message {
        Message {
            mti,
            present: 0,
            values: Vec::new(),
        }
    }

    /// Creates an empty message with room for `capacity` fields.
    #[inline]
    pub fn with_capacity(mti: [u8; 4], capacity: usize) -> Message {
        Message {
            mti,
            present: 0,
            values: Vec::with_capacity(capacity),
        }
    }

    /// Appends a field greater than every field present (decode fast path).
    #[inline]
    pub(crate) fn push_ascending(&mut self, n: usize, value: Bytes) {
        debug_assert!((2..=MAX_FIELD).contains(&n));
        debug_assert!(self.present & ((bit(n) << 1).wrapping_sub(1)) == 0);
        self.present |= bit(n);
        self.values.push(value);
    }

    /// The MTI as four ASCII digits, whatever the wire encoding.
    #[inline]
    pub fn mti(&self) -> [u8; 4] {
        self.mti
    }

    /// Replaces the MTI (ASCII digits).
    pub fn set_mti(&mut self, mti: [u8; 4]) {
        self.mti = mti;
    }

    #[inline]
    fn index(&self, n: usize) -> usize {
        // Fields below n occupy the bits above bit(n).
        (self.present >> (MAX_FIELD + 1 - n)).count_ones() as usize
    }

    /// The logical value of field `n`, if present.
    #[inline]
    pub fn get(&self, n: usize) -> Option<&[u8]> {
        self.get_bytes(n).map(std::convert::AsRef::as_ref)
    }

    /// The logical value of field `n` as shared `Bytes`, if present.
    #[inline]
    pub fn get_bytes(&self, n: usize) -> Option<&Bytes> {
        if self.has(n) {
            self.values.get(self.index(n))
        } else {
            None
        }
    }

    /// Sets field `n` (2..=128) to a logical value; other numbers are ignored
    /// (the MTI and bitmaps are not fields of the message).
    pub fn set(&mut self, n: usize, value: impl Into<Bytes>) {
        if !(2..=MAX_FIELD).contains(&n) {
            return;
        }
        let value = value.into();
        let i = self.index(n);
        if self.present & bit(n) != 0 {
            if let Some(slot) = self.values.get_mut(i) {
                *slot = value;
            }
        } else {
            self.present |= bit(n);
            self.values.insert(i, value);
        }
    }

    /// Removes field `n` if present.
    pub fn remove(&mut self, n: usize) {
        if self.has(n) {
            let i = self.index(n);
            self.values.remove(i);
            self.present &= !bit(n);
        }
    }

    /// Keeps only the fields in `mask` (see [`field_mask`]), in one pass.
    pub fn retain(&mut self, mask: u128) {
        let mut numbers = FieldNumbers(self.present);
        self.values
            .retain(|_| numbers.next().is_some_and(|n| mask & bit(n) != 0));
        self.present &= mask;
    }

    /// Whether field `n` is present.
    #[inline]
    pub fn has(&self, n: usize) -> bool {
        (2..=MAX_FIELD).contains(&n) && self.present & bit(n) != 0
    }

    /// Present fields in ascending order as `(number, value)`.
    pub fn fields(&self) -> impl Iterator<Item = (usize, &Bytes)> {
        FieldNumbers(self.present).zip(self.values.iter())
    }

    /// Number of fields present.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether no field is present.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Presence bitmap in wire order (field `n` is bit `128 - n`; bit 127 is never set).
    pub(crate) fn presence(&self) -> u128 {
        self.present
    }
}

/// Iterates the field numbers of a presence bitmap in ascending order.
pub(crate) struct FieldNumbers(pub(crate) u128);

impl Iterator for FieldNumbers {
    type Item = usize;
    #[inline]
    fn next(&mut self) -> Option<usize> {
        if self.0 == 0 {
            return None;
        }
        let lz = self.0.leading_zeros() as usize;
        self.0 &= !(1u128 << (127 - lz));
        Some(lz + 1)
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        map.entry(&"mti", &String::from_utf8_lossy(&self.mti));
        for (n, v) in self.fields() {
            let shown = if n == 2 {
                mask_pan(v)
            } else if is_sensitive(n) {
                "***".to_string()
            } else if v.iter().all(|b| (0x20..=0x7E).contains(b)) {
                String::from_utf8_lossy(v).into_owned()
            } else {
                format!("0x{}", hex::encode_upper(v))
            };
            map.entry(&n, &shown);
        }
        map.finish()
    }
}
