//! The bodies of Antaca's fuzz targets, shared by two drivers:
//!
//! * the cargo-fuzz targets in `fuzz/fuzz_targets/` (libFuzzer, needs nightly), and
//! * the bounded proptest run in the main crate's `tests/fuzz_bounded.rs`, which
//!   includes this file with `#[path]` so it runs on stable in `cargo test`.
//!
//! Every function takes arbitrary bytes and must never panic. Where a target also
//! checks a property (round trip, chunking invariance, empty store after a failed
//! import), a violation is reported with `assert!`, i.e. as a panic, so both
//! drivers catch it the same way.
//!
//! Keep this file free of crate-level attributes: it is also compiled as a module.

use std::sync::OnceLock;

use antaca::engine::{Engine, EngineConfig};
use antaca::http::jwe::{self, Encryption, ServerKeys};
use antaca::iso8583::Spec;
use antaca::manage::portfolio::{self, Portfolio};
use antaca::net::framing::{encode_frame, FrameCodec, LengthHeader};
use antaca::protocol::parse::ParseOptions;
use antaca::protocol::{self, Profile};
use antaca::security::pinblock::ZonePinKey;
use antaca::security::secrets::CardSecrets;
use antaca::store::{MemoryStore, Store};
use bytes::{Bytes, BytesMut};
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use tokio_util::codec::Decoder;

/// The target names, in the order `run` dispatches them (also the corpus folder names).
pub const TARGETS: &[&str] = &[
    "iso8583_decode",
    "framing",
    "protocol_parse",
    "portfolio",
    "http_json",
];

/// Runs the target called `name` on `data`.
pub fn run(name: &str, data: &[u8]) {
    match name {
        "iso8583_decode" => iso8583_decode(data),
        "framing" => framing(data),
        "protocol_parse" => protocol_parse(data),
        "portfolio" => portfolio(data),
        "http_json" => http_json(data),
        other => panic!("unknown fuzz target {other}"),
    }
}

fn all_specs() -> &'static [Spec] {
    static SPECS: OnceLock<Vec<Spec>> = OnceLock::new();
    SPECS.get_or_init(|| {
        Spec::builtin_names()
            .iter()
            .map(|n| Spec::builtin(n).expect("built-in spec compiles"))
            .collect()
    })
}

fn spec(name: &str) -> &'static Spec {
    all_specs()
        .iter()
        .find(|s| s.name() == name)
        .expect("built-in spec")
}

/// Target 1: every built-in spec decodes arbitrary bytes without panicking; a
/// decoded message encodes without panicking, and what encodes decodes back to
/// the same message.
pub fn iso8583_decode(data: &[u8]) {
    let frame = Bytes::copy_from_slice(data);
    for spec in all_specs() {
        let Ok(msg) = spec.decode(&frame) else {
            continue;
        };
        let mut out = BytesMut::new();
        if spec.encode(&msg, &mut out).is_err() {
            assert!(
                out.is_empty(),
                "{}: a failed encode left bytes",
                spec.name()
            );
            continue;
        }
        let again = spec.decode(&out.freeze());
        match again {
            Ok(back) => assert!(
                back == msg,
                "{}: re-decoding the encoding gives another message:\n{msg:?}\n{back:?}",
                spec.name()
            ),
            Err(e) => panic!(
                "{}: the encoding of a decoded message does not decode: {e}",
                spec.name()
            ),
        }
    }
}

/// Splits `data` into frames with `codec`, fed in chunks whose sizes come from
/// `sizes` (cycled; 0 means "the rest"). Returns the frames and whether it
/// stopped on an error.
fn split_frames(mut codec: FrameCodec, data: &[u8], sizes: &[u8]) -> (Vec<Bytes>, bool) {
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut pos = 0;
    let mut turn = 0;
    while pos < data.len() {
        let size = match sizes.get(turn % sizes.len().max(1)) {
            None | Some(0) => data.len() - pos,
            Some(&s) => usize::from(s).min(data.len() - pos),
        };
        turn += 1;
        buf.extend_from_slice(&data[pos..pos + size]);
        pos += size;
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(_) => return (frames, true),
            }
        }
    }
    (frames, false)
}

/// Target 2: `FrameCodec` with either length header, fed in random chunk sizes.
///
/// Input: byte 0 bit 0 picks the header, bits 1-2 the frame limit; byte 1 says
/// how many of the following bytes are chunk sizes; the rest is the stream.
/// Checks: the frames do not depend on the chunking, none exceeds the limit,
/// and re-framing them reproduces the start of the stream.
pub fn framing(data: &[u8]) {
    let [control, n_sizes, rest @ ..] = data else {
        return;
    };
    let header = if control & 1 == 0 {
        LengthHeader::Binary2
    } else {
        LengthHeader::Ascii4
    };
    let max_frame = match (control >> 1) & 3 {
        0 => 0,
        1 => 64,
        2 => 8192,
        _ => header.max_body(),
    };
    let n_sizes = usize::from(*n_sizes % 16).min(rest.len());
    let (sizes, stream) = rest.split_at(n_sizes);
    let codec = FrameCodec::new(header, max_frame);
    let (chunked, chunked_err) = split_frames(codec.clone(), stream, sizes);
    let (whole, whole_err) = split_frames(codec.clone(), stream, &[]);
    let (bytewise, bytewise_err) = split_frames(codec, stream, &[1]);
    assert_eq!(chunked, whole, "frames depend on the chunking");
    assert_eq!(
        bytewise, whole,
        "frames depend on the chunking (byte by byte)"
    );
    assert_eq!(chunked_err, whole_err, "errors depend on the chunking");
    assert_eq!(bytewise_err, whole_err, "errors depend on the chunking");
    let mut reframed = BytesMut::new();
    for frame in &whole {
        assert!(frame.len() <= max_frame, "a frame exceeds max_frame");
        encode_frame(header, frame, &mut reframed).expect("a decoded frame re-encodes");
    }
    assert!(
        stream.starts_with(&reframed),
        "re-framing the frames does not give the stream back"
    );
}

fn card_secrets() -> &'static CardSecrets {
    static SECRETS: OnceLock<CardSecrets> = OnceLock::new();
    SECRETS.get_or_init(|| CardSecrets::from_key([7; 32]))
}

fn zone_pin_key() -> &'static ZonePinKey {
    static ZPK: OnceLock<ZonePinKey> = OnceLock::new();
    ZPK.get_or_init(|| {
        ZonePinKey::from_hex("0123456789ABCDEFFEDCBA98765432100123456789ABCDEF").expect("ZPK")
    })
}

/// Target 3: a frame decoded with iso87ascii or iso93 goes through
/// `protocol::parse` (and `parse_with` a zone PIN key) without panicking.
pub fn protocol_parse(data: &[u8]) {
    let frame = Bytes::copy_from_slice(data);
    for name in ["iso87ascii", "iso93"] {
        let spec = spec(name);
        let Ok(msg) = spec.decode(&frame) else {
            continue;
        };
        let profile = Profile::for_spec(spec);
        let _ = protocol::parse::parse(&msg, profile, card_secrets());
        let options = ParseOptions::for_spec(spec, Some(zone_pin_key().clone()));
        let _ = protocol::parse::parse_with(&msg, profile, card_secrets(), &options);
    }
}

/// Target 4: `Portfolio::parse` on arbitrary text; a parsed portfolio is
/// imported into an empty in-memory engine without panicking, and a failed
/// import leaves the store empty.
pub fn portfolio(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(parsed) = Portfolio::parse(&text) else {
        return;
    };
    let store = MemoryStore::new();
    let mut engine =
        Engine::open(store.clone(), EngineConfig::default()).expect("open an empty store");
    if portfolio::import(&mut engine, &parsed, card_secrets(), 0).is_err() {
        let left = store.scan_prefix(b"").expect("scan");
        assert!(
            left.is_empty(),
            "a failed import left {} keys in the store",
            left.len()
        );
    }
}

fn server_keys() -> &'static ServerKeys {
    static KEYS: OnceLock<ServerKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = std::env::temp_dir().join("antaca-fuzz-jwe");
        ServerKeys::load_or_create(&dir).expect("server keys")
    })
}

/// The public key of the fuzz server keys as the `Public-Key` header value
/// (base64 of the DER SubjectPublicKeyInfo), for seeds.
pub fn server_public_key_header() -> String {
    server_keys().public_key_der_base64()
}

const CONTENT_TYPES: &[&str] = &[
    "application/json",
    "application/json; charset=utf-8",
    " Application/JSON ;x=y",
    "text/plain",
    "",
    ";",
];

/// Headers from text lines `name: value` (lines that are no valid header are skipped).
fn headers_from(text: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for line in text.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let name = line[..colon].trim_ascii();
        let value = line[colon + 1..].trim_ascii();
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            headers.append(name, value);
        }
    }
    headers
}

/// Target 5: request bodies of the HTTP API.
///
/// Input: byte 0 picks what to run: `% 4` = 0..2 the strict JSON body parser
/// (`parse_json`) for `serde_json::Value`, `NewCustomer`, `NewPartnerBalance`
/// (with a content type picked by `byte 0 / 4`); 3 = JWE request opening, with
/// the policy picked by `byte 0 / 4`. For JWE, the rest is `headers \0 body`,
/// headers as `name: value` lines.
pub fn http_json(data: &[u8]) {
    let [control, rest @ ..] = data else {
        return;
    };
    let pick = usize::from(control / 4);
    match control % 4 {
        3 => {
            let policy = match pick % 3 {
                0 => Encryption::Required,
                1 => Encryption::Optional,
                _ => Encryption::None,
            };
            let (head, body) = match rest.iter().position(|b| *b == 0) {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, &[][..]),
            };
            let headers = headers_from(head);
            if let Ok((request, _plain)) = jwe::open_request(server_keys(), &headers, body, policy)
            {
                assert!(
                    !request.encrypted || request.client.is_some(),
                    "an encrypted request without a client key"
                );
            }
        }
        which => {
            let mut headers = HeaderMap::new();
            let content_type = CONTENT_TYPES[pick % CONTENT_TYPES.len()];
            if !content_type.is_empty() {
                headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
            }
            let _ = match which {
                0 => antaca::http::api::parse_json::<serde_json::Value>(&headers, rest).map(drop),
                1 => antaca::http::api::parse_json::<antaca::manage::customers::NewCustomer>(
                    &headers, rest,
                )
                .map(drop),
                _ => antaca::http::api::parse_json::<antaca::manage::balances::NewPartnerBalance>(
                    &headers, rest,
                )
                .map(drop),
            };
        }
    }
}
