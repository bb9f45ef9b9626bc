//! TLV subelements (`tag(2) length(2) value`, Mastercard DE48 style): finding
//! one in a field, and writing one. Knows nothing of which field or tag
//! carries what (that is the spec's `TlvLocation`).

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

/// Appends subelement `tag` carrying `value` to `out` (`tag(2) length(2) value`);
/// the inverse of [`tlv_find`]. `value` must be at most 99 bytes.
pub fn tlv_push(out: &mut Vec<u8>, tag: &[u8], value: &[u8]) {
    debug_assert!(tag.len() == 2 && value.len() <= 99);
    out.extend_from_slice(tag);
    let len = value.len().min(99);
    out.extend_from_slice(&[b'0' + (len / 10) as u8, b'0' + (len % 10) as u8]);
    out.extend_from_slice(&value[..len]);
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

    #[test]
    fn tlv_push_writes_what_tlv_find_reads() {
        let mut out = b"R".to_vec();
        tlv_push(&mut out, b"10", b"A");
        tlv_push(&mut out, b"92", b"123");
        assert_eq!(out, b"R1001A9203123");
        assert_eq!(tlv_find(&out, b"92"), Ok(Some(&b"123"[..])));
    }
}
