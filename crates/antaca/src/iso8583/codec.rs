//! The decode and encode loops over a compiled field table.
//!
//! Decode never panics: every read is bounds-checked against the frame before
//! slicing, and lengths are capped by the spec (max 999 units) before use.
//! ASCII and binary values are zero-copy `Bytes::slice`s of the frame; values
//! that need conversion (BCD, EBCDIC, hex) are written into one scratch buffer
//! per message and split off, so a message costs at most one allocation for them.

use std::borrow::Cow;

use bytes::{BufMut, Bytes, BytesMut};

use super::ebcdic;
use super::error::{DecodeError, DecodeErrorKind, EncodeError, EncodeErrorKind};
use super::message::{FieldNumbers, Message};
use super::spec::{
    BitmapEncoding, ContentType, DataEncoding, FieldKind, FieldSpec, MtiEncoding, NibblePad,
    Padding, PrefixEncoding,
};
use super::Spec;

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Bit of the secondary-bitmap indicator (field 1) in a wire-order `u128`.
const SECONDARY_BIT: u128 = 1u128 << 127;

#[inline]
fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'F' => Some(c - b'A' + 10),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Takes `n` bytes at `*pos`, or reports how many were missing.
#[inline]
fn take<'a>(buf: &'a [u8], pos: &mut usize, n: usize) -> Result<&'a [u8], DecodeErrorKind> {
    let available = buf.len().saturating_sub(*pos);
    if n > available {
        return Err(DecodeErrorKind::Truncated {
            needed: n,
            available,
        });
    }
    let s = buf.get(*pos..*pos + n).ok_or(DecodeErrorKind::Truncated {
        needed: n,
        available,
    })?;
    *pos += n;
    Ok(s)
}

fn decode_mti(enc: MtiEncoding, buf: &[u8], pos: &mut usize) -> Result<[u8; 4], DecodeErrorKind> {
    let mut mti = [0u8; 4];
    match enc {
        MtiEncoding::Ascii => mti.copy_from_slice(take(buf, pos, 4)?),
        MtiEncoding::Ebcdic => {
            for (d, &e) in mti.iter_mut().zip(take(buf, pos, 4)?) {
                *d = ebcdic::to_ascii(e).unwrap_or(0);
            }
        }
        MtiEncoding::Bcd => {
            let raw = take(buf, pos, 2)?;
            for (i, d) in mti.iter_mut().enumerate() {
                let byte = raw[i / 2];
                let nib = if i % 2 == 0 { byte >> 4 } else { byte & 0x0F };
                *d = if nib <= 9 { b'0' + nib } else { 0 };
            }
        }
    }
    if mti.iter().all(u8::is_ascii_digit) {
        Ok(mti)
    } else {
        Err(DecodeErrorKind::BadMti)
    }
}

fn decode_bitmap(enc: BitmapEncoding, buf: &[u8], pos: &mut usize) -> Result<u64, DecodeErrorKind> {
    match enc {
        BitmapEncoding::Binary => {
            let raw = take(buf, pos, 8)?;
            let mut a = [0u8; 8];
            a.copy_from_slice(raw);
            Ok(u64::from_be_bytes(a))
        }
        BitmapEncoding::HexAscii | BitmapEncoding::HexEbcdic => {
            let raw = take(buf, pos, 16)?;
            let mut v = 0u64;
            for &c in raw {
                let c = if enc == BitmapEncoding::HexEbcdic {
                    ebcdic::to_ascii(c).ok_or(DecodeErrorKind::BadBitmap)?
                } else {
                    c
                };
                let h = hex_value(c).ok_or(DecodeErrorKind::BadBitmap)?;
                v = (v << 4) | u64::from(h);
            }
            Ok(v)
        }
    }
}

fn read_prefix(
    enc: PrefixEncoding,
    digits: usize,
    buf: &[u8],
    pos: &mut usize,
) -> Result<usize, DecodeErrorKind> {
    match enc {
        PrefixEncoding::Ascii | PrefixEncoding::Ebcdic => {
            let raw = take(buf, pos, digits)?;
            let mut v = 0usize;
            for &c in raw {
                let c = if enc == PrefixEncoding::Ebcdic {
                    ebcdic::to_ascii(c).unwrap_or(0)
                } else {
                    c
                };
                if !c.is_ascii_digit() {
                    return Err(DecodeErrorKind::BadLengthPrefix);
                }
                v = v * 10 + usize::from(c - b'0');
            }
            Ok(v)
        }
        PrefixEncoding::Bcd => {
            let raw = take(buf, pos, digits.div_ceil(2))?;
            let mut v = 0usize;
            for &b in raw {
                let (hi, lo) = (b >> 4, b & 0x0F);
                if hi > 9 || lo > 9 {
                    return Err(DecodeErrorKind::BadLengthPrefix);
                }
                v = v * 100 + usize::from(hi) * 10 + usize::from(lo);
            }
            Ok(v)
        }
        PrefixEncoding::Binary => {
            let raw = take(buf, pos, digits.div_ceil(2))?;
            Ok(raw.iter().fold(0usize, |v, &b| (v << 8) | usize::from(b)))
        }
    }
}

/// Wire size of a value of `len` logical units.
#[inline]
fn wire_len(fs: &FieldSpec, len: usize) -> usize {
    match fs.encoding {
        DataEncoding::Ascii | DataEncoding::Ebcdic | DataEncoding::Binary => len,
        DataEncoding::HexAscii | DataEncoding::HexEbcdic => len * 2,
        DataEncoding::Bcd => {
            if fs.content == ContentType::SignedAmount {
                1 + len.saturating_sub(1).div_ceil(2)
            } else {
                len.div_ceil(2)
            }
        }
    }
}

#[inline]
fn validate(content: ContentType, value: &[u8]) -> Result<(), DecodeErrorKind> {
    if content == ContentType::Binary {
        return Ok(());
    }
    match value
        .iter()
        .enumerate()
        .find(|&(i, &b)| !content.accepts(i, b))
    {
        None => Ok(()),
        Some((position, &found)) => Err(DecodeErrorKind::BadCharacter {
            position,
            expected: content,
            length: value.len(),
            found,
        }),
    }
}

/// Unpacks `digits` BCD digits from `raw` into `out` as ASCII.
fn unpack_bcd(
    content: ContentType,
    pad: NibblePad,
    digits: usize,
    raw: &[u8],
    out: &mut BytesMut,
) -> Result<(), DecodeErrorKind> {
    let odd = digits % 2 == 1;
    let skip_first = odd && pad == NibblePad::Left;
    let total = raw.len() * 2;
    let start = out.len();
    for k in 0..total {
        let byte = raw[k / 2];
        let nib = if k % 2 == 0 { byte >> 4 } else { byte & 0x0F };
        let is_filler = odd && ((skip_first && k == 0) || (!skip_first && k == total - 1));
        if is_filler {
            if nib != 0 {
                return Err(DecodeErrorKind::BadPadding);
            }
            continue;
        }
        let c = match nib {
            0..=9 => b'0' + nib,
            0x0D if content == ContentType::Track => b'=',
            _ => {
                return Err(DecodeErrorKind::BadCharacter {
                    position: out.len() - start,
                    expected: content,
                    length: digits,
                    found: nib,
                })
            }
        };
        out.put_u8(c);
    }
    Ok(())
}

fn decode_field(
    fs: &FieldSpec,
    frame: &Bytes,
    pos: &mut usize,
    scratch: &mut BytesMut,
) -> Result<Bytes, DecodeErrorKind> {
    let buf: &[u8] = frame;
    let len = match fs.kind {
        FieldKind::Fixed => fs.length,
        FieldKind::Llvar => read_prefix(fs.prefix, 2, buf, pos)?,
        FieldKind::Lllvar => read_prefix(fs.prefix, 3, buf, pos)?,
    };
    if len > fs.length {
        return Err(DecodeErrorKind::TooLong {
            length: len,
            max: fs.length,
        });
    }
    let start = *pos;
    let raw = take(buf, pos, wire_len(fs, len))?;
    match fs.encoding {
        DataEncoding::Ascii => {
            validate(fs.content, raw)?;
            Ok(frame.slice(start..*pos))
        }
        DataEncoding::Binary => Ok(frame.slice(start..*pos)),
        DataEncoding::Ebcdic => {
            scratch.reserve(raw.len());
            for (i, &e) in raw.iter().enumerate() {
                let a = ebcdic::to_ascii(e).ok_or(DecodeErrorKind::BadCharacter {
                    position: i,
                    expected: fs.content,
                    length: len,
                    found: e,
                })?;
                scratch.put_u8(a);
            }
            if let Err(e) = validate(fs.content, scratch) {
                scratch.clear();
                return Err(e);
            }
            Ok(scratch.split().freeze())
        }
        DataEncoding::HexAscii | DataEncoding::HexEbcdic => {
            scratch.reserve(len);
            for (i, pair) in raw.chunks_exact(2).enumerate() {
                let mut nibs = [0u8; 2];
                for (j, &c) in pair.iter().enumerate() {
                    let c = if fs.encoding == DataEncoding::HexEbcdic {
                        ebcdic::to_ascii(c).unwrap_or(0)
                    } else {
                        c
                    };
                    nibs[j] = hex_value(c).ok_or(DecodeErrorKind::BadCharacter {
                        position: i * 2 + j,
                        expected: fs.content,
                        length: len,
                        found: c,
                    })?;
                }
                scratch.put_u8((nibs[0] << 4) | nibs[1]);
            }
            Ok(scratch.split().freeze())
        }
        DataEncoding::Bcd => {
            scratch.reserve(len);
            let result = if fs.content == ContentType::SignedAmount {
                let sign = raw.first().copied().unwrap_or(0);
                if sign != b'C' && sign != b'D' {
                    Err(DecodeErrorKind::BadCharacter {
                        position: 0,
                        expected: fs.content,
                        length: len,
                        found: sign,
                    })
                } else {
                    scratch.put_u8(sign);
                    unpack_bcd(
                        ContentType::Numeric,
                        fs.nibble_pad,
                        len - 1,
                        raw.get(1..).unwrap_or(&[]),
                        scratch,
                    )
                    .map_err(|e| match e {
                        DecodeErrorKind::BadCharacter {
                            position, found, ..
                        } => DecodeErrorKind::BadCharacter {
                            position: position + 1,
                            expected: fs.content,
                            length: len,
                            found,
                        },
                        other => other,
                    })
                }
            } else {
                unpack_bcd(fs.content, fs.nibble_pad, len, raw, scratch)
            };
            if let Err(e) = result {
                scratch.clear();
                return Err(e);
            }
            Ok(scratch.split().freeze())
        }
    }
}

pub(crate) fn decode(spec: &Spec, frame: &Bytes) -> Result<Message, DecodeError> {
    let buf: &[u8] = frame;
    let mut pos = 0usize;
    let mti = decode_mti(spec.mti_encoding, buf, &mut pos).map_err(|kind| DecodeError {
        field: None,
        kind,
        partial: None,
    })?;
    let bitmap_error = |kind| DecodeError {
        field: None,
        kind,
        partial: Some(Box::new(Message::new(mti))),
    };
    let primary = decode_bitmap(spec.bitmap_encoding, buf, &mut pos).map_err(bitmap_error)?;
    let mut bits = u128::from(primary) << 64;
    if bits & SECONDARY_BIT != 0 {
        let secondary = decode_bitmap(spec.bitmap_encoding, buf, &mut pos).map_err(bitmap_error)?;
        bits |= u128::from(secondary);
    }
    let bits = bits & !SECONDARY_BIT;
    let mut msg = Message::with_capacity(mti, bits.count_ones() as usize);
    let mut scratch = if spec.needs_scratch {
        BytesMut::with_capacity(buf.len() * 2)
    } else {
        BytesMut::new()
    };
    for n in FieldNumbers(bits) {
        let result = match spec.fields.get(n).and_then(Option::as_ref) {
            Some(fs) => decode_field(fs, frame, &mut pos, &mut scratch),
            None => Err(DecodeErrorKind::NoSpec),
        };
        match result {
            Ok(v) => msg.push_ascending(n, v),
            Err(kind) => {
                return Err(DecodeError {
                    field: Some(n),
                    kind,
                    partial: Some(Box::new(msg)),
                })
            }
        }
    }
    if pos != buf.len() {
        return Err(DecodeError {
            field: None,
            kind: DecodeErrorKind::TrailingBytes {
                count: buf.len() - pos,
            },
            partial: Some(Box::new(msg)),
        });
    }
    Ok(msg)
}

fn write_bitmap(enc: BitmapEncoding, v: u64, out: &mut BytesMut) {
    match enc {
        BitmapEncoding::Binary => out.put_u64(v),
        BitmapEncoding::HexAscii | BitmapEncoding::HexEbcdic => {
            let mut hex = [0u8; 16];
            for (i, h) in hex.iter_mut().enumerate() {
                let c = HEX_UPPER[((v >> (60 - 4 * i)) & 0x0F) as usize];
                *h = if enc == BitmapEncoding::HexEbcdic {
                    ebcdic::ASCII_TO_EBCDIC[c as usize]
                } else {
                    c
                };
            }
            out.extend_from_slice(&hex);
        }
    }
}

fn write_prefix(enc: PrefixEncoding, digits: usize, len: usize, out: &mut BytesMut) {
    match enc {
        PrefixEncoding::Ascii | PrefixEncoding::Ebcdic => {
            let mut d = [0u8; 3];
            let mut v = len;
            for slot in d[..digits].iter_mut().rev() {
                *slot = b'0' + (v % 10) as u8;
                v /= 10;
            }
            for &c in &d[..digits] {
                out.put_u8(if enc == PrefixEncoding::Ebcdic {
                    ebcdic::ASCII_TO_EBCDIC[c as usize]
                } else {
                    c
                });
            }
        }
        PrefixEncoding::Bcd => {
            if digits == 3 {
                out.put_u8(((len / 100) % 10) as u8);
            }
            out.put_u8(((((len / 10) % 10) as u8) << 4) | (len % 10) as u8);
        }
        PrefixEncoding::Binary => {
            if digits == 3 {
                out.put_u16(len as u16);
            } else {
                out.put_u8(len as u8);
            }
        }
    }
}

#[inline]
fn bcd_nibble(c: u8) -> u8 {
    match c {
        b'=' | b'D' => 0x0D,
        _ => c.wrapping_sub(b'0') & 0x0F,
    }
}

fn pack_bcd(pad: NibblePad, digits: &[u8], out: &mut BytesMut) {
    let odd = digits.len() % 2 == 1;
    let mut i = 0;
    if odd && pad == NibblePad::Left {
        out.put_u8(bcd_nibble(digits[0]));
        i = 1;
    }
    while i + 1 < digits.len() {
        out.put_u8((bcd_nibble(digits[i]) << 4) | bcd_nibble(digits[i + 1]));
        i += 2;
    }
    if i < digits.len() {
        out.put_u8(bcd_nibble(digits[i]) << 4);
    }
}

fn encode_field(n: usize, fs: &FieldSpec, v: &[u8], out: &mut BytesMut) -> Result<(), EncodeError> {
    let err = |kind| EncodeError { field: n, kind };
    if v.len() > fs.length {
        return Err(err(EncodeErrorKind::TooLong {
            length: v.len(),
            max: fs.length,
        }));
    }
    if fs.content != ContentType::Binary {
        if let Some((position, &found)) = v
            .iter()
            .enumerate()
            .find(|&(i, &b)| !fs.content.accepts(i, b))
        {
            return Err(err(EncodeErrorKind::BadCharacter {
                position,
                expected: fs.content,
                found,
            }));
        }
    }
    let value: Cow<[u8]> = if fs.kind == FieldKind::Fixed && v.len() < fs.length {
        let missing = fs.length - v.len();
        match fs.padding {
            Padding::None => {
                return Err(err(EncodeErrorKind::TooShort {
                    length: v.len(),
                    expected: fs.length,
                }))
            }
            Padding::SpaceRight => {
                let mut p = Vec::with_capacity(fs.length);
                p.extend_from_slice(v);
                p.resize(fs.length, b' ');
                Cow::Owned(p)
            }
            Padding::ZeroLeft => {
                let mut p = Vec::with_capacity(fs.length);
                let digits = if fs.content == ContentType::SignedAmount {
                    match v.split_first() {
                        Some((&sign, rest)) => {
                            p.push(sign);
                            rest
                        }
                        None => {
                            return Err(err(EncodeErrorKind::TooShort {
                                length: 0,
                                expected: fs.length,
                            }))
                        }
                    }
                } else {
                    v
                };
                p.resize(p.len() + missing, b'0');
                p.extend_from_slice(digits);
                Cow::Owned(p)
            }
        }
    } else {
        Cow::Borrowed(v)
    };
    let value: &[u8] = &value;
    match fs.kind {
        FieldKind::Fixed => {}
        FieldKind::Llvar => write_prefix(fs.prefix, 2, value.len(), out),
        FieldKind::Lllvar => write_prefix(fs.prefix, 3, value.len(), out),
    }
    match fs.encoding {
        DataEncoding::Ascii | DataEncoding::Binary => out.extend_from_slice(value),
        DataEncoding::Ebcdic => {
            out.reserve(value.len());
            for &c in value {
                // Content validation admitted only ASCII, which cp037 maps fully.
                out.put_u8(ebcdic::ASCII_TO_EBCDIC[c as usize]);
            }
        }
        DataEncoding::HexAscii | DataEncoding::HexEbcdic => {
            out.reserve(value.len() * 2);
            for &b in value {
                for c in [HEX_UPPER[(b >> 4) as usize], HEX_UPPER[(b & 0x0F) as usize]] {
                    out.put_u8(if fs.encoding == DataEncoding::HexEbcdic {
                        ebcdic::ASCII_TO_EBCDIC[c as usize]
                    } else {
                        c
                    });
                }
            }
        }
        DataEncoding::Bcd => {
            if fs.content == ContentType::SignedAmount {
                if let Some((&sign, digits)) = value.split_first() {
                    out.put_u8(sign);
                    pack_bcd(fs.nibble_pad, digits, out);
                }
            } else {
                pack_bcd(fs.nibble_pad, value, out);
            }
        }
    }
    Ok(())
}

fn encode_inner(spec: &Spec, msg: &Message, out: &mut BytesMut) -> Result<(), EncodeError> {
    let mti = msg.mti();
    if !mti.iter().all(u8::is_ascii_digit) {
        return Err(EncodeError {
            field: 0,
            kind: EncodeErrorKind::BadMti,
        });
    }
    out.reserve(spec.size_hint);
    match spec.mti_encoding {
        MtiEncoding::Ascii => out.extend_from_slice(&mti),
        MtiEncoding::Ebcdic => {
            for c in mti {
                out.put_u8(ebcdic::ASCII_TO_EBCDIC[c as usize]);
            }
        }
        MtiEncoding::Bcd => pack_bcd(NibblePad::Left, &mti, out),
    }
    let mut bits = msg.presence() & !SECONDARY_BIT;
    if bits & u128::from(u64::MAX) != 0 {
        bits |= SECONDARY_BIT;
    }
    write_bitmap(spec.bitmap_encoding, (bits >> 64) as u64, out);
    if bits & SECONDARY_BIT != 0 {
        write_bitmap(spec.bitmap_encoding, bits as u64, out);
    }
    for (n, v) in msg.fields() {
        match spec.fields.get(n).and_then(Option::as_ref) {
            Some(fs) => encode_field(n, fs, v, out)?,
            None => {
                return Err(EncodeError {
                    field: n,
                    kind: EncodeErrorKind::NoSpec,
                })
            }
        }
    }
    Ok(())
}

pub(crate) fn encode(spec: &Spec, msg: &Message, out: &mut BytesMut) -> Result<(), EncodeError> {
    let start = out.len();
    let result = encode_inner(spec, msg, out);
    if result.is_err() {
        out.truncate(start);
    }
    result
}
