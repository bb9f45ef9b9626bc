//! JWE layer: round trips with josekit, an independent implementation
//! (rsa + aes-gcm, compact serialization parsed by hand), error codes and the
//! on-disk server key.

use std::path::Path;

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use antaca::http::jwe::{
    encrypt_response, open_request, parse_headers, seal_response, ClientKey, Encryption, JweError,
    JweRequest, ServerKeys,
};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use hyper::header::{HeaderName, HeaderValue};
use hyper::HeaderMap;
use josekit::jwe::{Dir, JweHeader, RSA_OAEP, RSA_OAEP_256};
use josekit::jwk::alg::ec::{EcCurve, EcKeyPair};
use josekit::jwk::alg::rsa::RsaKeyPair;
use josekit::jwk::KeyPair;
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::{BigUint, Oaep, RsaPrivateKey, RsaPublicKey};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn server() -> Result<(tempfile::TempDir, ServerKeys), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let keys = ServerKeys::load_or_create(dir.path())?;
    Ok((dir, keys))
}

fn client_pair(bits: u32) -> Result<RsaKeyPair, Box<dyn std::error::Error>> {
    Ok(RsaKeyPair::generate(bits)?)
}

/// `Public-Key` header value: base64 of the PEM document.
fn pem_header(pair: &dyn KeyPair) -> String {
    STANDARD.encode(pair.to_pem_public_key())
}

/// `Public-Key` header value: base64 of DER SubjectPublicKeyInfo.
fn der_header(pair: &dyn KeyPair) -> String {
    STANDARD.encode(pair.to_der_public_key())
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).expect("test header name"),
            HeaderValue::from_str(value).expect("test header value"),
        );
    }
    map
}

fn encrypted_headers(public_key: &str) -> HeaderMap {
    headers(&[("Encrypted-Request", "true"), ("Public-Key", public_key)])
}

/// `{"payload": jwe}` body for a request, encrypted with josekit.
fn josekit_request(
    keys: &ServerKeys,
    alg: &str,
    enc: &str,
    plaintext: &[u8],
) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let mut header = JweHeader::new();
    header.set_content_encryption(enc);
    let pem = keys.public_key_pem();
    let compact = match alg {
        "RSA-OAEP-256" => josekit::jwe::serialize_compact(
            plaintext,
            &header,
            &RSA_OAEP_256.encrypter_from_pem(&pem)?,
        )?,
        "RSA-OAEP" => {
            // Exercise the DER form of our published key as well.
            let der = STANDARD.decode(keys.public_key_der_base64())?;
            josekit::jwe::serialize_compact(plaintext, &header, &RSA_OAEP.encrypter_from_der(der)?)?
        }
        "RSA1_5" => josekit::jwe::serialize_compact(plaintext, &header, &rsa1_5_encrypter(&pem)?)?,
        other => return Err(format!("unknown alg {other}").into()),
    };
    Ok(payload_body(&compact))
}

/// RSA1_5 is deprecated in josekit; we only use it to prove it is refused.
#[allow(deprecated)]
fn rsa1_5_encrypter(
    pem: &str,
) -> Result<josekit::jwe::alg::rsaes::RsaesJweEncrypter, josekit::JoseError> {
    josekit::jwe::RSA1_5.encrypter_from_pem(pem)
}

fn payload_body(compact: &str) -> Vec<u8> {
    json!({ "payload": compact }).to_string().into_bytes()
}

fn payload_of(body: &[u8]) -> Result<String, Box<dyn std::error::Error>> {
    let value: Value = serde_json::from_slice(body)?;
    let object = value.as_object().ok_or("response is not an object")?;
    assert_eq!(
        object.len(),
        1,
        "response envelope has only payload: {value}"
    );
    Ok(object
        .get("payload")
        .and_then(Value::as_str)
        .ok_or("no payload string")?
        .to_string())
}

/// Decrypts a response envelope with josekit and the client's private key.
fn josekit_open_response(
    pair: &RsaKeyPair,
    body: &[u8],
) -> Result<(Vec<u8>, JweHeader), Box<dyn std::error::Error>> {
    let compact = payload_of(body)?;
    let decrypter = RSA_OAEP_256.decrypter_from_pem(pair.to_pem_private_key())?;
    Ok(josekit::jwe::deserialize_compact(&compact, &decrypter)?)
}

// ---------------------------------------------------------------------------
// An independent JWE implementation: rsa + aes-gcm, no josekit.
// ---------------------------------------------------------------------------

struct Compact {
    header_b64: String,
    header: Value,
    encrypted_key: Vec<u8>,
    iv: Vec<u8>,
    ciphertext: Vec<u8>,
    tag: Vec<u8>,
}

fn parse_compact(compact: &str) -> Result<Compact, Box<dyn std::error::Error>> {
    let parts: Vec<&str> = compact.split('.').collect();
    assert_eq!(parts.len(), 5, "compact JWE has five parts");
    let header_bytes = URL_SAFE_NO_PAD.decode(parts[0])?;
    Ok(Compact {
        header_b64: parts[0].to_string(),
        header: serde_json::from_slice(&header_bytes)?,
        encrypted_key: URL_SAFE_NO_PAD.decode(parts[1])?,
        iv: URL_SAFE_NO_PAD.decode(parts[2])?,
        ciphertext: URL_SAFE_NO_PAD.decode(parts[3])?,
        tag: URL_SAFE_NO_PAD.decode(parts[4])?,
    })
}

/// RSA-OAEP-256 key unwrap + A256GCM with the protected header's ASCII as AAD.
fn independent_decrypt(
    private: &RsaPrivateKey,
    compact: &str,
) -> Result<(Value, Vec<u8>), Box<dyn std::error::Error>> {
    let jwe = parse_compact(compact)?;
    assert_eq!(jwe.header["alg"], "RSA-OAEP-256");
    assert_eq!(jwe.header["enc"], "A256GCM");
    let cek = private.decrypt(Oaep::new::<Sha256>(), &jwe.encrypted_key)?;
    assert_eq!(cek.len(), 32, "A256GCM content key is 256 bits");
    assert_eq!(jwe.iv.len(), 12);
    assert_eq!(jwe.tag.len(), 16);
    let cipher = Aes256Gcm::new_from_slice(&cek)?;
    let mut sealed = jwe.ciphertext.clone();
    sealed.extend_from_slice(&jwe.tag);
    let plain = cipher
        .decrypt(
            Nonce::from_slice(&jwe.iv),
            Payload {
                msg: &sealed,
                aad: jwe.header_b64.as_bytes(),
            },
        )
        .map_err(|_| "AES-GCM open failed")?;
    Ok((jwe.header, plain))
}

/// Builds a compact RSA-OAEP-256 + A256GCM JWE by hand.
fn independent_encrypt(
    public: &RsaPublicKey,
    header: &Value,
    plaintext: &[u8],
) -> Result<String, Box<dyn std::error::Error>> {
    let mut rng = rand::thread_rng();
    let cek: [u8; 32] = rand::random();
    let iv: [u8; 12] = rand::random();
    let encrypted_key = public.encrypt(&mut rng, Oaep::new::<Sha256>(), &cek)?;
    let header_b64 = URL_SAFE_NO_PAD.encode(header.to_string());
    let cipher = Aes256Gcm::new_from_slice(&cek)?;
    let sealed = cipher
        .encrypt(
            Nonce::from_slice(&iv),
            Payload {
                msg: plaintext,
                aad: header_b64.as_bytes(),
            },
        )
        .map_err(|_| "AES-GCM seal failed")?;
    let (ciphertext, tag) = sealed.split_at(sealed.len() - 16);
    Ok(format!(
        "{}.{}.{}.{}.{}",
        header_b64,
        URL_SAFE_NO_PAD.encode(encrypted_key),
        URL_SAFE_NO_PAD.encode(iv),
        URL_SAFE_NO_PAD.encode(ciphertext),
        URL_SAFE_NO_PAD.encode(tag)
    ))
}

fn rsa_private(pair: &RsaKeyPair) -> Result<RsaPrivateKey, Box<dyn std::error::Error>> {
    Ok(RsaPrivateKey::from_pkcs8_der(&pair.to_der_private_key())?)
}

// ---------------------------------------------------------------------------
// Round trips with josekit.
// ---------------------------------------------------------------------------

#[test]
fn request_encrypted_with_rsa_oaep_256_decrypts() -> TestResult {
    let (_dir, keys) = server()?;
    let plain = br#"{"card_no": 1337}"#;
    let body = josekit_request(&keys, "RSA-OAEP-256", "A256GCM", plain)?;
    assert_eq!(keys.decrypt_request(&body)?, plain);
    Ok(())
}

#[test]
fn request_encrypted_with_rsa_oaep_decrypts() -> TestResult {
    let (_dir, keys) = server()?;
    let plain = br#"{"cardNo": "5555444455554444"}"#;
    let body = josekit_request(&keys, "RSA-OAEP", "A256GCM", plain)?;
    assert_eq!(keys.decrypt_request(&body)?, plain);
    Ok(())
}

#[test]
fn response_decrypts_with_client_private_key_pem_and_der_headers() -> TestResult {
    let pair = client_pair(2048)?;
    for header in [pem_header(&pair), der_header(&pair)] {
        let client = ClientKey::from_header(&header)?;
        let plain = br#"{"id": 1125, "type": "new", "cardNo": "5555444455554444"}"#;
        let sealed = encrypt_response(&client, plain)?;
        let (opened, jwe_header) = josekit_open_response(&pair, &sealed)?;
        assert_eq!(opened, plain);
        assert_eq!(jwe_header.algorithm(), Some("RSA-OAEP-256"));
        assert_eq!(jwe_header.content_encryption(), Some("A256GCM"));
    }
    Ok(())
}

#[test]
fn public_key_header_accepts_url_safe_unpadded_and_rsa_public_key_pem() -> TestResult {
    let pair = client_pair(2048)?;
    let der = pair.to_der_public_key();
    ClientKey::from_header(&URL_SAFE_NO_PAD.encode(&der))?;
    ClientKey::from_header(&format!("  {}  ", STANDARD.encode(&der)))?;
    ClientKey::from_header(&STANDARD.encode(pair.to_traditional_pem_public_key()))?;
    let client = ClientKey::from_header(&pem_header(&client_pair(3072)?))?;
    assert!(format!("{client:?}").contains("3072"));
    Ok(())
}

#[test]
fn open_and_seal_full_exchange() -> TestResult {
    let (_dir, keys) = server()?;
    let pair = client_pair(2048)?;
    let hdrs = encrypted_headers(&pem_header(&pair));
    let body = josekit_request(&keys, "RSA-OAEP-256", "A256GCM", br#"{"card_no": 1337}"#)?;
    let (req, plain) = open_request(&keys, &hdrs, &body, Encryption::Required)?;
    assert!(req.encrypted);
    assert_eq!(plain, br#"{"card_no": 1337}"#);
    let response = br#"{"card_no": 1337}"#.to_vec();
    let sealed = seal_response(&req, 200, response.clone())?;
    assert_ne!(sealed, response);
    assert_eq!(josekit_open_response(&pair, &sealed)?.0, response);
    Ok(())
}

#[test]
fn get_and_empty_post_carry_only_headers_and_get_an_encrypted_response() -> TestResult {
    let (_dir, keys) = server()?;
    let pair = client_pair(2048)?;
    let hdrs = encrypted_headers(&der_header(&pair));
    for body in [&b""[..], b"  \r\n"] {
        let (req, plain) = open_request(&keys, &hdrs, body, Encryption::Required)?;
        assert!(req.encrypted);
        assert!(plain.is_empty());
        let sealed = seal_response(&req, 200, br#"{"balance": "10.00"}"#.to_vec())?;
        assert_eq!(
            josekit_open_response(&pair, &sealed)?.0,
            br#"{"balance": "10.00"}"#
        );
    }
    // A GET to a Required endpoint without the headers is still refused.
    let err = open_request(&keys, &HeaderMap::new(), b"", Encryption::Required);
    assert_eq!(err.err(), Some(JweError::EncryptionRequired));
    Ok(())
}

#[test]
fn optional_and_none_endpoints() -> TestResult {
    let (_dir, keys) = server()?;
    let plain = br#"{"a": 1}"#;
    // Optional without headers: plain both ways.
    let (req, body) = open_request(&keys, &HeaderMap::new(), plain, Encryption::Optional)?;
    assert!(!req.encrypted && req.client.is_none());
    assert_eq!(body, plain);
    assert_eq!(seal_response(&req, 200, plain.to_vec())?, plain);
    // Optional with Encrypted-Request: false ignores a garbage Public-Key.
    let hdrs = headers(&[("Encrypted-Request", "FALSE"), ("Public-Key", "garbage")]);
    let (req, body) = open_request(&keys, &hdrs, plain, Encryption::Optional)?;
    assert!(!req.encrypted);
    assert_eq!(body, plain);
    // None ignores the headers entirely, even malformed ones.
    let hdrs = headers(&[("Encrypted-Request", "maybe"), ("Public-Key", "garbage")]);
    let (req, body) = open_request(&keys, &hdrs, plain, Encryption::None)?;
    assert!(!req.encrypted);
    assert_eq!(body, plain);
    // Optional with encryption on: decrypted.
    let pair = client_pair(2048)?;
    let hdrs = headers(&[
        ("encrypted-request", " True "),
        ("public-key", &pem_header(&pair)),
    ]);
    let enc = josekit_request(&keys, "RSA-OAEP", "A256GCM", plain)?;
    let (req, body) = open_request(&keys, &hdrs, &enc, Encryption::Optional)?;
    assert!(req.encrypted && req.client.is_some());
    assert_eq!(body, plain);
    Ok(())
}

// ---------------------------------------------------------------------------
// Independent implementation.
// ---------------------------------------------------------------------------

#[test]
fn independent_decrypt_of_our_response() -> TestResult {
    let pair = client_pair(2048)?;
    let private = rsa_private(&pair)?;
    let client = ClientKey::from_header(&der_header(&pair))?;
    let plain = br#"{"cardNo": "5555444455554444", "exp": "2026-01-31"}"#;
    let sealed = encrypt_response(&client, plain)?;
    let (header, opened) = independent_decrypt(&private, &payload_of(&sealed)?)?;
    assert_eq!(opened, plain);
    assert_eq!(header["alg"], "RSA-OAEP-256");
    assert_eq!(header["enc"], "A256GCM");
    Ok(())
}

#[test]
fn independent_request_decrypts_on_our_server() -> TestResult {
    let (_dir, keys) = server()?;
    let plain = br#"{"card_no": 1337}"#;
    // Our key from the published DER (SPKI) ...
    let der = STANDARD.decode(keys.public_key_der_base64())?;
    let from_der = RsaPublicKey::from_public_key_der(&der)?;
    // ... equals our key from the published PEM and from the JWK's n and e.
    let from_pem = rsa::pkcs8::DecodePublicKey::from_public_key_pem(&keys.public_key_pem())?;
    assert_eq!(from_der, from_pem);
    let jwk = keys.public_key_jwk();
    let n = URL_SAFE_NO_PAD.decode(jwk["n"].as_str().ok_or("n")?)?;
    let e = URL_SAFE_NO_PAD.decode(jwk["e"].as_str().ok_or("e")?)?;
    let from_jwk = RsaPublicKey::new(BigUint::from_bytes_be(&n), BigUint::from_bytes_be(&e))?;
    assert_eq!(from_der, from_jwk);

    let header = json!({ "alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": jwk["kid"] });
    let compact = independent_encrypt(&from_jwk, &header, plain)?;
    assert_eq!(keys.decrypt_request(&payload_body(&compact))?, plain);
    Ok(())
}

#[test]
fn jwk_shape_and_rfc7638_kid() -> TestResult {
    let (_dir, keys) = server()?;
    let jwk = keys.public_key_jwk();
    assert_eq!(jwk["kty"], "RSA");
    assert_eq!(jwk["use"], "enc");
    assert_eq!(jwk["alg"], "RSA-OAEP-256");
    assert!(jwk.get("d").is_none(), "no private members");
    let n = jwk["n"].as_str().ok_or("n")?;
    let e = jwk["e"].as_str().ok_or("e")?;
    assert_eq!(URL_SAFE_NO_PAD.decode(n)?.len(), 256, "RSA-2048 modulus");
    let thumb = Sha256::digest(format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#).as_bytes());
    assert_eq!(jwk["kid"], URL_SAFE_NO_PAD.encode(thumb));
    assert!(keys
        .public_key_pem()
        .starts_with("-----BEGIN PUBLIC KEY-----"));
    Ok(())
}

// ---------------------------------------------------------------------------
// Errors.
// ---------------------------------------------------------------------------

fn request_err(keys: &ServerKeys, body: &[u8]) -> Option<JweError> {
    keys.decrypt_request(body).err()
}

#[test]
fn plain_data_on_required_endpoint_is_encryption_required() -> TestResult {
    let (_dir, keys) = server()?;
    let body = br#"{"card_no": 1337}"#;
    for hdrs in [
        HeaderMap::new(),
        headers(&[("Encrypted-Request", "false")]),
        headers(&[
            ("Encrypted-Request", "false"),
            ("Public-Key", &pem_header(&client_pair(2048)?)),
        ]),
    ] {
        let err = open_request(&keys, &hdrs, body, Encryption::Required).err();
        assert_eq!(err, Some(JweError::EncryptionRequired));
        let err = parse_headers(&hdrs, Encryption::Required, false).err();
        assert_eq!(err, Some(JweError::EncryptionRequired));
    }
    let e = JweError::EncryptionRequired;
    assert_eq!(
        (e.code().as_str(), e.status()),
        ("ENCRYPTION_REQUIRED", 400)
    );
    let body: Value = serde_json::from_slice(&e.body())?;
    assert_eq!(body["code"], "ENCRYPTION_REQUIRED");
    Ok(())
}

#[test]
fn bad_encrypted_request_header_is_invalid_payload() {
    for hdrs in [
        headers(&[("Encrypted-Request", "yes")]),
        headers(&[("Encrypted-Request", "")]),
        headers(&[("Encrypted-Request", "true"), ("Encrypted-Request", "true")]),
    ] {
        let err = parse_headers(&hdrs, Encryption::Optional, true).err();
        assert!(matches!(err, Some(JweError::InvalidPayload(_))), "{err:?}");
    }
}

#[test]
fn unusable_public_keys_are_invalid_public_key() -> TestResult {
    let ec = EcKeyPair::generate(EcCurve::P256)?;
    let rsa1024 = client_pair(1024)?;
    let garbage = [
        "not base64 at all!!".to_string(),
        STANDARD.encode("hello world"),
        STANDARD.encode("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"),
        STANDARD.encode(rsa1024.to_pem_private_key()),
        pem_header(&ec),
        der_header(&ec),
        pem_header(&rsa1024),
        der_header(&rsa1024),
        "  ".to_string(),
    ];
    for value in &garbage {
        let err = ClientKey::from_header(value).err();
        assert!(
            matches!(err, Some(JweError::InvalidPublicKey(_))),
            "{value}: {err:?}"
        );
        let err = parse_headers(&encrypted_headers(value), Encryption::Optional, true).err();
        assert!(
            matches!(err, Some(JweError::InvalidPublicKey(_))),
            "{value}: {err:?}"
        );
    }
    // Encryption on without any Public-Key header.
    let err = parse_headers(
        &headers(&[("Encrypted-Request", "true")]),
        Encryption::Required,
        false,
    )
    .err();
    assert!(
        matches!(err, Some(JweError::InvalidPublicKey(_))),
        "{err:?}"
    );
    let e = JweError::InvalidPublicKey(String::new());
    assert_eq!((e.code().as_str(), e.status()), ("INVALID_PUBLIC_KEY", 400));
    Ok(())
}

#[test]
fn malformed_bodies_are_invalid_payload() -> TestResult {
    let (_dir, keys) = server()?;
    let good = josekit_request(&keys, "RSA-OAEP-256", "A256GCM", b"{}")?;
    let good_compact = payload_of(&good)?;
    let bodies: Vec<Vec<u8>> = vec![
        b"not json".to_vec(),
        br#"{"card_no": 1337}"#.to_vec(),
        b"{}".to_vec(),
        br#"{"payload": 5}"#.to_vec(),
        br#"{"payload": null}"#.to_vec(),
        br#"[{"payload": "x"}]"#.to_vec(),
        payload_body("not a jwe"),
        payload_body("a.b.c"),
        payload_body("a.b.c.d.e"),
        payload_body(&format!("{good_compact}.extra")),
        json!({ "payload": good_compact, "extra": 1 })
            .to_string()
            .into_bytes(),
    ];
    for body in &bodies {
        let err = request_err(&keys, body);
        assert!(
            matches!(err, Some(JweError::InvalidPayload(_))),
            "{}: {err:?}",
            String::from_utf8_lossy(body)
        );
    }
    let e = JweError::InvalidPayload(String::new());
    assert_eq!((e.code().as_str(), e.status()), ("INVALID_PAYLOAD", 400));
    Ok(())
}

#[test]
fn forbidden_algorithms_are_invalid_payload() -> TestResult {
    let (_dir, keys) = server()?;
    // alg "dir" with a shared AES key.
    let mut header = JweHeader::new();
    header.set_content_encryption("A256GCM");
    let dir =
        josekit::jwe::serialize_compact(b"{}", &header, &Dir.encrypter_from_bytes([7u8; 32])?)?;
    // RSA1_5 to our key, and RSA-OAEP-256 with enc A128GCM.
    let rsa1_5 = josekit_request(&keys, "RSA1_5", "A256GCM", b"{}")?;
    let a128 = josekit_request(&keys, "RSA-OAEP-256", "A128GCM", b"{}")?;
    let cbc = josekit_request(&keys, "RSA-OAEP", "A256CBC-HS512", b"{}")?;
    for body in [payload_body(&dir), rsa1_5, a128, cbc] {
        let err = request_err(&keys, &body);
        assert!(matches!(err, Some(JweError::InvalidPayload(_))), "{err:?}");
    }
    // zip is refused too.
    let mut header = JweHeader::new();
    header.set_content_encryption("A256GCM");
    header.set_compression("DEF");
    let zipped = josekit::jwe::serialize_compact(
        b"{}",
        &header,
        &RSA_OAEP_256.encrypter_from_pem(keys.public_key_pem())?,
    )?;
    let err = request_err(&keys, &payload_body(&zipped));
    assert!(matches!(err, Some(JweError::InvalidPayload(_))), "{err:?}");
    Ok(())
}

fn tamper(compact: &str, part: usize) -> Result<String, Box<dyn std::error::Error>> {
    let mut parts: Vec<String> = compact.split('.').map(str::to_string).collect();
    let mut bytes = URL_SAFE_NO_PAD.decode(&parts[part])?;
    let last = bytes.len() - 1;
    bytes[last / 2] ^= 0x01;
    parts[part] = URL_SAFE_NO_PAD.encode(bytes);
    Ok(parts.join("."))
}

#[test]
fn undecryptable_jwe_is_cant_decrypt_payload() -> TestResult {
    let (_dir, keys) = server()?;
    let (_dir2, other) = server()?;
    // Encrypted to another server's key.
    let to_other = josekit_request(&other, "RSA-OAEP-256", "A256GCM", b"{}")?;
    assert_eq!(request_err(&keys, &to_other), Some(JweError::CantDecrypt));
    let to_other = josekit_request(&other, "RSA-OAEP", "A256GCM", b"{}")?;
    assert_eq!(request_err(&keys, &to_other), Some(JweError::CantDecrypt));

    let good = payload_of(&josekit_request(
        &keys,
        "RSA-OAEP-256",
        "A256GCM",
        br#"{"pan": "5555444455554444"}"#,
    )?)?;
    // Flipped bit in the encrypted key, the ciphertext, the tag.
    for part in [1, 3, 4] {
        let body = payload_body(&tamper(&good, part)?);
        assert_eq!(
            request_err(&keys, &body),
            Some(JweError::CantDecrypt),
            "part {part}"
        );
    }
    // An altered (still valid) protected header breaks the AAD.
    let mut parts: Vec<&str> = good.split('.').collect();
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"RSA-OAEP-256","enc":"A256GCM","kid":"x"}"#);
    parts[0] = &header;
    assert_eq!(
        request_err(&keys, &payload_body(&parts.join("."))),
        Some(JweError::CantDecrypt)
    );

    // Through open_request too, and the code.
    let hdrs = encrypted_headers(&pem_header(&client_pair(2048)?));
    let err = open_request(&keys, &hdrs, &to_other, Encryption::Required).err();
    assert_eq!(err, Some(JweError::CantDecrypt));
    assert_eq!(
        (
            JweError::CantDecrypt.code().as_str(),
            JweError::CantDecrypt.status()
        ),
        ("CANT_DECRYPT_PAYLOAD", 400)
    );
    Ok(())
}

#[test]
fn only_2xx_other_than_204_is_encrypted() -> TestResult {
    let pair = client_pair(2048)?;
    let req = JweRequest {
        encrypted: true,
        client: Some(ClientKey::from_header(&pem_header(&pair))?),
    };
    let body = br#"{"code": "X", "message": "m"}"#.to_vec();
    for status in [204, 301, 400, 401, 403, 404, 409, 422, 500, 503] {
        assert_eq!(
            seal_response(&req, status, body.clone())?,
            body,
            "status {status}"
        );
    }
    assert_eq!(seal_response(&req, 204, Vec::new())?, Vec::<u8>::new());
    for status in [200, 201, 202, 299] {
        let sealed = seal_response(&req, status, body.clone())?;
        assert_eq!(
            josekit_open_response(&pair, &sealed)?.0,
            body,
            "status {status}"
        );
    }
    // Not encrypted when the request was plain.
    assert_eq!(
        seal_response(&JweRequest::plain(), 200, body.clone())?,
        body
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Key files.
// ---------------------------------------------------------------------------

fn mode(path: &Path) -> Result<u32, Box<dyn std::error::Error>> {
    use std::os::unix::fs::PermissionsExt;
    Ok(std::fs::metadata(path)?.permissions().mode() & 0o777)
}

#[test]
fn key_files_created_0600_and_reloaded_identically() -> TestResult {
    let dir = tempfile::tempdir()?;
    let key_path = dir.path().join("jwe").join("server.key");
    let pub_path = dir.path().join("jwe").join("server.pub.pem");
    assert!(!key_path.exists());
    let first = ServerKeys::load_or_create(dir.path())?;
    assert_eq!(mode(&key_path)?, 0o600);
    assert_eq!(mode(&dir.path().join("jwe"))?, 0o700);
    let key_pem = std::fs::read_to_string(&key_path)?;
    assert!(
        key_pem.starts_with("-----BEGIN PRIVATE KEY-----"),
        "PKCS#8 PEM"
    );
    assert_eq!(std::fs::read_to_string(&pub_path)?, first.public_key_pem());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("jwe"))?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty());

    let second = ServerKeys::load_or_create(dir.path())?;
    assert_eq!(second.public_key_pem(), first.public_key_pem());
    assert_eq!(
        second.public_key_der_base64(),
        first.public_key_der_base64()
    );
    assert_eq!(second.public_key_jwk(), first.public_key_jwk());
    assert_eq!(std::fs::read_to_string(&key_path)?, key_pem);
    assert_eq!(mode(&key_path)?, 0o600);

    // What was encrypted to the first instance opens with the second.
    let body = josekit_request(&first, "RSA-OAEP-256", "A256GCM", b"{\"x\":1}")?;
    assert_eq!(second.decrypt_request(&body)?, b"{\"x\":1}");

    // A missing public file is rewritten from the private key.
    std::fs::remove_file(&pub_path)?;
    let third = ServerKeys::load_or_create(dir.path())?;
    assert_eq!(std::fs::read_to_string(&pub_path)?, first.public_key_pem());
    assert_eq!(third.public_key_jwk(), first.public_key_jwk());
    Ok(())
}

#[test]
fn corrupt_key_file_is_an_io_error() -> TestResult {
    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(dir.path().join("jwe"))?;
    std::fs::write(dir.path().join("jwe").join("server.key"), "not a key")?;
    let err = ServerKeys::load_or_create(dir.path()).err();
    assert!(matches!(err, Some(JweError::Io { .. })), "{err:?}");
    let err = err.ok_or("no error")?;
    assert_eq!((err.code().as_str(), err.status()), ("INTERNAL_ERROR", 500));
    let body: Value = serde_json::from_slice(&err.body())?;
    assert_eq!(body["message"], "internal error");
    Ok(())
}
