//! Unit tests of the codec.

use bytes::{Bytes, BytesMut};

use super::*;

fn spec(name: &str) -> Spec {
    Spec::builtin(name).expect("built-in spec")
}

fn sample_0100() -> Message {
    let mut m = Message::new(*b"0100");
    m.set(2, &b"4111111111111111"[..]);
    m.set(3, &b"000000"[..]);
    m.set(4, &b"000000012345"[..]);
    m.set(7, &b"0615123456"[..]);
    m.set(11, &b"123456"[..]);
    m.set(14, &b"2712"[..]);
    m.set(22, &b"051"[..]);
    m.set(35, &b"4111111111111111=27121011234567"[..]);
    m.set(41, &b"TERM0001"[..]);
    m.set(49, &b"840"[..]);
    m.set(52, &[0x01u8, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF][..]);
    m
}

fn encode(spec: &Spec, m: &Message) -> Bytes {
    let mut out = BytesMut::new();
    spec.encode(m, &mut out).expect("encodes");
    out.freeze()
}

#[test]
fn all_builtins_load() {
    for name in Spec::builtin_names() {
        let s = Spec::load(name).expect("loads");
        assert_eq!(s.name(), *name);
        assert!(s.field(2).is_some());
        assert!(s.field(1).is_none());
        assert!(s.field(129).is_none());
    }
    assert!(Spec::builtin("nope").is_none());
}

#[test]
fn load_unknown_says_what_is_wrong() {
    let e = Spec::load("/nonexistent/spec.json").expect_err("fails");
    let text = e.to_string();
    assert!(text.contains("iso87ascii"), "{text}");
    assert!(text.contains("/nonexistent/spec.json"), "{text}");
}

#[test]
fn from_json_rejects_bad_fields() {
    let bad = r#"{"name":"x","mti_encoding":"ascii","bitmap_encoding":"binary",
        "fields":[{"number":2,"kind":"llvar","length":100,"content":"n"}]}"#;
    let e = Spec::from_json(bad).expect_err("LL cannot hold 100");
    assert!(e.to_string().contains("field 2"), "{e}");
    let bad = r#"{"name":"x","mti_encoding":"ascii","bitmap_encoding":"binary",
        "fields":[{"number":3,"kind":"fixed","length":4,"content":"ans","encoding":"bcd"}]}"#;
    assert!(Spec::from_json(bad).is_err());
    let bad = r#"{"name":"x","mti_encoding":"ascii","bitmap_encoding":"binary",
        "fields":[{"number":3,"kind":"fixed","length":4,"content":"n","colour":"red"}]}"#;
    assert!(Spec::from_json(bad).is_err());
}

#[test]
fn ascii_known_bytes() {
    let s = spec("iso87ascii");
    let mut m = Message::new(*b"0800");
    m.set(7, &b"0615123456"[..]);
    m.set(11, &b"000001"[..]);
    m.set(70, &b"301"[..]);
    let wire = encode(&s, &m);
    assert_eq!(
        &wire[..],
        &b"0800822000000000000004000000000000000615123456000001301"[..]
    );
    assert_eq!(s.decode(&wire).expect("decodes"), m);
}

#[test]
fn binary_known_bytes_and_odd_bcd() {
    let s = spec("iso87binary");
    let mut m = Message::new(*b"0200");
    m.set(2, &b"123456789012345"[..]); // 15 digits: LLNUM right-padded
    m.set(22, &b"051"[..]); // n3: IFB_NUMERIC left-padded
    m.set(28, &b"D00000100"[..]);
    let wire = encode(&s, &m);
    let expected = [
        vec![0x02, 0x00],
        vec![0x40, 0x00, 0x04, 0x10, 0, 0, 0, 0],
        vec![0x15, 0x12, 0x34, 0x56, 0x78, 0x90, 0x12, 0x34, 0x50],
        vec![0x00, 0x51],
        vec![b'D', 0x00, 0x00, 0x01, 0x00],
    ]
    .concat();
    assert_eq!(hex::encode(&wire), hex::encode(&expected));
    assert_eq!(s.decode(&wire).expect("decodes"), m);
    // Non-zero filler nibble is rejected (keeps encode(decode(x)) == x).
    let mut bad = expected.clone();
    bad[19] = 0x10;
    let e = s.decode(&Bytes::from(bad)).expect_err("bad filler");
    assert_eq!(e.field, Some(22));
    assert_eq!(e.kind, DecodeErrorKind::BadPadding);
}

#[test]
fn round_trip_every_builtin() {
    for name in Spec::builtin_names() {
        let s = spec(name);
        let mut m = sample_0100();
        m.set(90, &b"010012345606151234560000000000100000000000"[..]);
        let wire = encode(&s, &m);
        let back = s.decode(&wire).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(back, m, "{name}");
        assert_eq!(encode(&s, &back), wire, "{name}");
    }
}

#[test]
fn secondary_bitmap_is_automatic() {
    let s = spec("iso87ascii");
    let mut m = Message::new(*b"0800");
    m.set(11, &b"000001"[..]);
    let wire = encode(&s, &m);
    assert_eq!(&wire[4..20], b"0020000000000000");
    m.set(128, &[0u8; 8][..]);
    let wire = encode(&s, &m);
    assert_eq!(&wire[4..36], b"80200000000000000000000000000001");
    assert_eq!(s.decode(&wire).expect("decodes"), m);
    m.remove(128);
    let wire = encode(&s, &m);
    assert_eq!(&wire[4..20], b"0020000000000000");
}

#[test]
fn ebcdic_spec_uses_cp037() {
    let s = spec("iso87ebcdic");
    let mut m = Message::new(*b"0100");
    m.set(3, &b"000000"[..]);
    m.set(41, &b"TERM 001"[..]);
    let wire = encode(&s, &m);
    assert_eq!(&wire[..4], &[0xF0, 0xF1, 0xF0, 0xF0]);
    assert_eq!(&wire[4..6], &[0xF2, 0xF0]); // "20"...
    assert_eq!(
        &wire[wire.len() - 8..],
        &[0xE3, 0xC5, 0xD9, 0xD4, 0x40, 0xF0, 0xF0, 0xF1]
    );
    assert_eq!(s.decode(&wire).expect("decodes"), m);
}

#[test]
fn encode_pads_fixed_fields_and_rejects_bad_values() {
    let s = spec("iso87ascii");
    let mut m = Message::new(*b"0100");
    m.set(4, &b"100"[..]);
    m.set(41, &b"T1"[..]);
    let wire = encode(&s, &m);
    let back = s.decode(&wire).expect("decodes");
    assert_eq!(back.get(4), Some(&b"000000000100"[..]));
    assert_eq!(back.get(41), Some(&b"T1      "[..]));

    let mut out = BytesMut::from(&b"keep"[..]);
    let mut m = Message::new(*b"0100");
    m.set(4, &b"0000000001000"[..]);
    let e = s.encode(&m, &mut out).expect_err("too long");
    assert_eq!(e.field, 4);
    assert_eq!(&out[..], b"keep", "output untouched on error");
    m.set(4, &b"00000000010A"[..]);
    let e = s.encode(&m, &mut out).expect_err("bad char");
    assert_eq!(
        e.to_string(),
        "field 4: expected numeric digits, found 'A' at position 11"
    );
    m.set(4, &b"1"[..]);
    m.set(2, &b"41111111111111111111"[..]);
    let e = s.encode(&m, &mut out).expect_err("PAN too long");
    assert_eq!(e.field, 2);
    m.set(2, &b"41111111X1111"[..]);
    let e = s.encode(&m, &mut out).expect_err("bad PAN");
    assert!(!e.to_string().contains('X'), "{e}");
    m.set(2, &b"4111"[..]);
    m.set(52, &[1u8, 2, 3][..]);
    let e = s.encode(&m, &mut out).expect_err("short PIN block");
    assert_eq!(e.field, 52);
}

#[test]
fn encode_missing_spec_is_an_error() {
    let s = Spec::from_json(
        r#"{"name":"tiny","mti_encoding":"ascii","bitmap_encoding":"hex-ascii",
        "fields":[{"number":3,"kind":"fixed","length":6,"content":"n"}]}"#,
    )
    .expect("valid");
    let mut m = Message::new(*b"0100");
    m.set(3, &b"000000"[..]);
    m.set(4, &b"000000000100"[..]);
    let e = s
        .encode(&m, &mut BytesMut::new())
        .expect_err("no spec for 4");
    assert_eq!((e.field, e.kind), (4, EncodeErrorKind::NoSpec));
}

#[test]
fn decode_errors_name_the_field_and_keep_partial() {
    let s = spec("iso87ascii");
    let mut m = Message::new(*b"0100");
    m.set(3, &b"000000"[..]);
    m.set(4, &b"000000000100"[..]);
    m.set(11, &b"000001"[..]);
    let wire = encode(&s, &m);
    let mut bad = wire.to_vec();
    let pos = 4 + 16 + 6 + 3;
    bad[pos] = b'A';
    let e = s.decode(&Bytes::from(bad)).expect_err("bad");
    assert_eq!(e.field, Some(4));
    assert_eq!(
        e.to_string(),
        "field 4: expected 12 numeric digits, found 'A' at position 3"
    );
    let partial = e.partial.expect("partial");
    assert_eq!(partial.mti(), *b"0100");
    assert_eq!(partial.get(3), Some(&b"000000"[..]));
    assert!(!partial.has(4));

    // Trailing bytes.
    let mut long = wire.to_vec();
    long.push(b'0');
    let e = s.decode(&Bytes::from(long)).expect_err("trailing");
    assert_eq!(e.field, None);
    assert_eq!(e.kind, DecodeErrorKind::TrailingBytes { count: 1 });

    // Truncated.
    let e = s.decode(&wire.slice(..wire.len() - 1)).expect_err("short");
    assert_eq!(e.field, Some(11));

    // Bad MTI and bitmap.
    let e = s.decode(&Bytes::from_static(b"01X0")).expect_err("mti");
    assert_eq!((e.field, e.kind), (None, DecodeErrorKind::BadMti));
    let e = s
        .decode(&Bytes::from_static(b"0100G000000000000000"))
        .expect_err("bitmap");
    assert_eq!((e.field, e.kind), (None, DecodeErrorKind::BadBitmap));
    let e = s.decode(&Bytes::from_static(b"")).expect_err("empty");
    assert_eq!(e.field, None);
}

#[test]
fn sensitive_fields_are_not_printed_in_errors() {
    let s = spec("iso87ascii");
    // Field 2 with a letter inside.
    let frame = Bytes::from_static(b"0100400000000000000016411111X111111111");
    let e = s.decode(&frame).expect_err("bad PAN");
    let text = e.to_string();
    assert_eq!(e.field, Some(2));
    assert!(!text.contains('X') && !text.contains("4111"), "{text}");
    assert!(text.contains("position 6"), "{text}");
}

#[test]
fn absurd_length_prefixes() {
    let s = spec("iso87ascii");
    let e = s
        .decode(&Bytes::from_static(b"010040000000000000009941111"))
        .expect_err("99 > 19");
    assert_eq!(e.field, Some(2));
    assert_eq!(
        e.kind,
        DecodeErrorKind::TooLong {
            length: 99,
            max: 19
        }
    );
    // LLL prefix claiming 999 bytes that are not there.
    let e = s
        .decode(&Bytes::from_static(b"01000000000000010000999abc"))
        .expect_err("truncated");
    assert_eq!(e.field, Some(48));
    assert!(matches!(
        e.kind,
        DecodeErrorKind::Truncated { needed: 999, .. }
    ));
    let e = s
        .decode(&Bytes::from_static(b"01004000000000000000-1"))
        .expect_err("non-digit prefix");
    assert_eq!(e.kind, DecodeErrorKind::BadLengthPrefix);
    let b = spec("iso87binary");
    let e = b
        .decode(&Bytes::from_static(&[
            0x01, 0x00, 0x40, 0, 0, 0, 0, 0, 0, 0, 0xFF,
        ]))
        .expect_err("non-BCD prefix");
    assert_eq!(
        (e.field, e.kind),
        (Some(2), DecodeErrorKind::BadLengthPrefix)
    );
}

#[test]
fn bitmap_field_without_spec_is_a_decode_error() {
    let s = Spec::from_json(
        r#"{"name":"tiny","mti_encoding":"ascii","bitmap_encoding":"hex-ascii",
        "fields":[{"number":3,"kind":"fixed","length":6,"content":"n"}]}"#,
    )
    .expect("valid");
    let e = s
        .decode(&Bytes::from_static(b"01001000000000000000000000000000"))
        .expect_err("no spec for 4");
    assert_eq!((e.field, e.kind), (Some(4), DecodeErrorKind::NoSpec));
}

#[test]
fn debug_masks_card_data() {
    let m = sample_0100();
    let text = format!("{m:?}");
    assert!(text.contains("411111******1111"), "{text}");
    assert!(!text.contains("4111111111111111"), "{text}");
    assert!(!text.contains("2712"), "{text}");
    assert!(!text.contains("0123456789"), "{text}");
    assert!(text.contains("TERM0001"), "{text}");
}

#[test]
fn message_accessors() {
    let mut m = Message::new(*b"0100");
    m.set(64, &b"x"[..]);
    m.set(2, &b"a"[..]);
    m.set(128, &b"z"[..]);
    m.set(65, &b"y"[..]);
    m.set(1, &b"ignored"[..]);
    m.set(129, &b"ignored"[..]);
    m.set(2, &b"b"[..]);
    let got: Vec<_> = m.fields().map(|(n, v)| (n, v.to_vec())).collect();
    assert_eq!(
        got,
        vec![
            (2, b"b".to_vec()),
            (64, b"x".to_vec()),
            (65, b"y".to_vec()),
            (128, b"z".to_vec())
        ]
    );
    m.remove(64);
    assert!(!m.has(64));
    assert_eq!(m.get(65), Some(&b"y"[..]));
    assert_eq!(m.get(0), None);
    assert_eq!(m.get(1000), None);
    assert_eq!(m.len(), 3);
    assert_eq!(Message::default().mti(), *b"0000");
}

#[test]
fn iso93_overrides() {
    let s = spec("iso93");
    assert_eq!(
        s.field(39).map(|f| (f.length(), f.content())),
        Some((4, ContentType::Numeric))
    );
    assert_eq!(
        s.field(56).map(super::spec::FieldSpec::kind),
        Some(FieldKind::Llvar)
    );
    let mut m = Message::new(*b"1110");
    m.set(39, &b"0000"[..]);
    m.set(12, &b"240615123456"[..]);
    let wire = encode(&s, &m);
    assert_eq!(s.decode(&wire).expect("decodes"), m);
}

#[test]
fn track2_bcd_separator() {
    let s = spec("iso87binary");
    let mut m = Message::new(*b"0100");
    m.set(35, &b"4111111111111111D2712"[..]);
    let wire = encode(&s, &m);
    // 21 digits, right-padded: 0x21 then 11 bytes.
    assert_eq!(wire[10], 0x21);
    assert_eq!(&wire[wire.len() - 3..], &[0xD2, 0x71, 0x20]);
    let back = s.decode(&wire).expect("decodes");
    assert_eq!(back.get(35), Some(&b"4111111111111111=2712"[..]));
}

#[test]
fn tlv_locations_default_explicit_and_checked() {
    for name in Spec::builtin_names() {
        let s = spec(name);
        assert_eq!(s.cvv2_location().field, 48, "{name}");
        assert_eq!(s.cvv2_location().tag, "92", "{name}");
        assert_eq!(s.lock_reason_location().tag, "90", "{name}");
    }
    let base = r#"{"name":"t","mti_encoding":"ascii","bitmap_encoding":"hex-ascii",
        "fields":[{"number":48,"kind":"lllvar","length":999,"content":"ans"},
                  {"number":62,"kind":"lllvar","length":999,"content":"ans"},
                  {"number":52,"kind":"fixed","length":8,"content":"b"}]"#;
    let s = Spec::from_json(&format!("{base}}}")).expect("defaults");
    assert_eq!(s.cvv2_location().field, 48);
    let s = Spec::from_json(&format!(
        r#"{base},"cvv2":{{"field":62,"tag":"07"}},"lock_reason":{{"field":62,"tag":"11"}}}}"#
    ))
    .expect("explicit");
    assert_eq!(s.cvv2_location().field, 62);
    assert_eq!(s.cvv2_location().tag, "07");
    assert_eq!(s.lock_reason_location().tag, "11");
    for bad in [
        r#""cvv2":{"field":63,"tag":"92"}"#,
        r#""cvv2":{"field":52,"tag":"92"}"#,
        r#""cvv2":{"field":48,"tag":"9"}"#,
        r#""lock_reason":{"field":48,"tag":"A0"}"#,
        r#""cvv2":{"field":48,"tag":"92","extra":1}"#,
    ] {
        assert!(
            Spec::from_json(&format!("{base},{bad}}}")).is_err(),
            "{bad}"
        );
    }
    // A spec without field 48 that names no location still loads.
    let no48 = r#"{"name":"t","mti_encoding":"ascii","bitmap_encoding":"hex-ascii",
        "fields":[{"number":2,"kind":"llvar","length":19,"content":"n"}]}"#;
    assert!(Spec::from_json(no48).is_ok());
}

#[test]
fn retain_keeps_exactly_the_masked_fields_with_their_values() {
    let mut m = Message::new(*b"0100");
    for n in [2usize, 3, 4, 11, 14, 35, 39, 52, 64, 90, 128] {
        m.set(n, Bytes::from(format!("v{n}")));
    }
    let mask = field_mask(&[3, 11, 39, 90, 100, 1, 129]);
    m.retain(mask);
    let kept: Vec<(usize, Bytes)> = m.fields().map(|(n, v)| (n, v.clone())).collect();
    assert_eq!(
        kept,
        vec![
            (3, Bytes::from("v3")),
            (11, Bytes::from("v11")),
            (39, Bytes::from("v39")),
            (90, Bytes::from("v90")),
        ]
    );
    assert_eq!(m.get(39), Some(&b"v39"[..]));
    assert!(!m.has(100) && !m.has(2) && !m.has(128));
    m.set(38, Bytes::from("A1"));
    assert_eq!(
        m.fields().map(|(n, _)| n).collect::<Vec<_>>(),
        vec![3, 11, 38, 39, 90]
    );
}
