//! Property tests over every built-in spec (EBCDIC included): random valid
//! messages round-trip both ways, and arbitrary or mutated frames never panic.

use antaca::iso8583::{ContentType, DataEncoding, FieldKind, FieldSpec, Message, Spec};
use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

const DIGITS: &[u8] = b"0123456789";
const ALPHA: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz ";
const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 ";
const TRACK_ASCII: &[u8] = b"0123456789=D";
const TRACK_BCD: &[u8] = b"0123456789=";

fn specs() -> Vec<Spec> {
    Spec::builtin_names()
        .iter()
        .map(|n| Spec::builtin(n).expect("built-in spec"))
        .collect()
}

/// A valid logical value for `fs`, derived from random `seed` bytes.
fn value_for(fs: &FieldSpec, len_seed: usize, seed: &[u8]) -> Vec<u8> {
    let len = match fs.kind() {
        FieldKind::Fixed => fs.length(),
        _ => len_seed % (fs.length() + 1),
    };
    let byte = |i: usize| seed.get(i % seed.len().max(1)).copied().unwrap_or(0) as usize + i;
    let pick = |set: &[u8], i: usize| set[byte(i) % set.len()];
    (0..len)
        .map(|i| match fs.content() {
            ContentType::Numeric => pick(DIGITS, i),
            ContentType::Alpha => pick(ALPHA, i),
            ContentType::AlphaNumeric => pick(ALNUM, i),
            ContentType::AlphaNumericSpecial => 0x20 + (byte(i) % 95) as u8,
            ContentType::Track if fs.encoding() == DataEncoding::Bcd => pick(TRACK_BCD, i),
            ContentType::Track => pick(TRACK_ASCII, i),
            ContentType::Binary => byte(i) as u8,
            ContentType::SignedAmount if i == 0 => pick(b"CD", i),
            ContentType::SignedAmount => pick(DIGITS, i),
        })
        .collect()
}

type Choice = (usize, usize, Vec<u8>);

fn choices() -> impl Strategy<Value = (Vec<Choice>, [u8; 4])> {
    (
        prop::collection::vec(
            (
                2usize..=128,
                any::<usize>(),
                prop::collection::vec(any::<u8>(), 0..24),
            ),
            0..24,
        ),
        prop::array::uniform4(0u8..10).prop_map(|d| d.map(|x| b'0' + x)),
    )
}

fn build(spec: &Spec, picks: &[Choice], mti: [u8; 4]) -> Message {
    let mut m = Message::new(mti);
    for (n, len_seed, seed) in picks {
        if let Some(fs) = spec.field(*n) {
            m.set(*n, value_for(fs, *len_seed, seed));
        }
    }
    m
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn valid_messages_round_trip((picks, mti) in choices()) {
        for spec in specs() {
            let m = build(&spec, &picks, mti);
            let mut out = BytesMut::new();
            spec.encode(&m, &mut out)
                .map_err(|e| TestCaseError::fail(format!("{}: {e}", spec.name())))?;
            let wire = out.freeze();
            let back = spec.decode(&wire)
                .map_err(|e| TestCaseError::fail(format!("{}: {e}", spec.name())))?;
            prop_assert_eq!(&back, &m, "{}", spec.name());
            let mut again = BytesMut::new();
            spec.encode(&back, &mut again)
                .map_err(|e| TestCaseError::fail(format!("{}: {e}", spec.name())))?;
            prop_assert_eq!(&again[..], &wire[..], "{}", spec.name());
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let frame = Bytes::from(bytes);
        for spec in specs() {
            if let Ok(m) = spec.decode(&frame) {
                let _ = spec.encode(&m, &mut BytesMut::new());
            }
        }
    }

    #[test]
    fn plausible_headers_never_panic(
        tail in prop::collection::vec(any::<u8>(), 0..300),
        bitmap in any::<u128>(),
    ) {
        // A valid MTI and bitmap followed by noise reaches the field decoders.
        for spec in specs() {
            let mut m = Message::new(*b"0100");
            let mut head = BytesMut::new();
            spec.encode(&m, &mut head).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let mut raw = head.to_vec();
            let mti_len = raw.len() - if spec.bitmap_encoding() == antaca::iso8583::BitmapEncoding::Binary { 8 } else { 16 };
            raw.truncate(mti_len);
            let bm = bitmap.to_be_bytes();
            match spec.bitmap_encoding() {
                antaca::iso8583::BitmapEncoding::Binary => raw.extend_from_slice(&bm),
                _ => raw.extend_from_slice(hex::encode_upper(bm).as_bytes()),
            }
            raw.extend_from_slice(&tail);
            let frame = Bytes::from(raw);
            if let Ok(d) = spec.decode(&frame) {
                m = d;
                let _ = spec.encode(&m, &mut BytesMut::new());
            }
        }
    }

    #[test]
    fn mutated_encodings_never_panic(
        (picks, mti) in choices(),
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        cut in any::<usize>(),
    ) {
        for spec in specs() {
            let m = build(&spec, &picks, mti);
            let mut out = BytesMut::new();
            spec.encode(&m, &mut out).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let mut raw = out.to_vec();
            for (at, b) in &edits {
                if !raw.is_empty() {
                    let i = at % raw.len();
                    raw[i] = *b;
                }
            }
            let mutated = Bytes::from(raw.clone());
            if let Ok(d) = spec.decode(&mutated) {
                let _ = spec.encode(&d, &mut BytesMut::new());
            }
            let keep = cut % (raw.len() + 1);
            let truncated = Bytes::from(raw[..keep].to_vec());
            if let Err(e) = spec.decode(&truncated) {
                // Errors always render, without panicking.
                let _ = e.to_string();
            }
        }
    }
}
