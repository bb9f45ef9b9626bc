//! JSON Web Encryption of request and response bodies (seed: "Additional data
//! encryption & integration").
//!
//! The server owns one RSA key pair (`DATA_DIR/jwe/server.key`, PKCS#8 PEM,
//! mode 0600, and `server.pub.pem`), created on first use and published so
//! clients can encrypt to it. A client that wants encryption sends
//! `Encrypted-Request: true` and `Public-Key: <base64 of its RSA public key>`.
//!
//! * Request bodies are `{"payload": "<compact JWE>"}` encrypted to our key
//!   with `alg` `RSA-OAEP-256` or `RSA-OAEP` and `enc` `A256GCM`; the
//!   plaintext is the JSON the endpoint would otherwise take.
//! * GET requests and POSTs without a body carry only the headers: there is
//!   nothing to decrypt, but the 2xx response is still encrypted.
//! * 2xx responses other than 204 are sealed to the client's key with
//!   `RSA-OAEP-256` + `A256GCM` as `{"payload": "<compact JWE>"}`; every other
//!   response (errors included) stays plain JSON.
//!
//! Header rules ([`parse_headers`]):
//! * `Encryption::None` endpoints ignore both headers entirely.
//! * `Encrypted-Request` is compared case-insensitively (surrounding spaces
//!   ignored) with `true`/`false`; an absent header means `false`. Any other
//!   value, a non-ASCII value or a repeated header is `INVALID_PAYLOAD`: the
//!   client asked for *something* about encryption and we must not guess
//!   (treating it as `false` could send sensitive data back in the clear).
//! * A `Required` endpoint without `Encrypted-Request: true` answers
//!   `ENCRYPTION_REQUIRED`, with or without a body.
//! * With `Encrypted-Request: true`, a missing, repeated, empty or unusable
//!   `Public-Key` is `INVALID_PUBLIC_KEY`. With `false` the header is ignored.
//!
//! Body rules ([`ServerKeys::decrypt_request`]): the body must be a JSON
//! object whose only member is `payload`, a string holding a five-part compact
//! JWE whose protected header has an allowed `alg`, `enc` = `A256GCM`, and no
//! `zip` or `crit`; otherwise `INVALID_PAYLOAD`. A well-formed JWE that does
//! not decrypt under our key (another recipient, tampered bytes) is
//! `CANT_DECRYPT_PAYLOAD`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use hyper::HeaderMap;
use josekit::jwe::alg::rsaes::{RsaesJweDecrypter, RsaesJweEncrypter};
use josekit::jwe::{JweHeader, RSA_OAEP, RSA_OAEP_256};
use josekit::jwk::alg::rsa::RsaKeyPair;
use josekit::jwk::KeyPair;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::security::keyfile::{self, Access};

/// Name of the header that says whether the request is encrypted.
pub const ENCRYPTED_REQUEST_HEADER: &str = "encrypted-request";
/// Name of the header that carries the client's base64 public key.
pub const PUBLIC_KEY_HEADER: &str = "public-key";
/// Key-encryption algorithms accepted on requests.
pub const ALLOWED_REQUEST_ALGS: [&str; 2] = ["RSA-OAEP-256", "RSA-OAEP"];
/// The only content-encryption algorithm, both directions.
pub const CONTENT_ENCRYPTION: &str = "A256GCM";
/// Key-encryption algorithm used on responses.
pub const RESPONSE_ALG: &str = "RSA-OAEP-256";

/// Size of a newly created server key, in bits.
const SERVER_KEY_BITS: u32 = 2048;
/// Longest `Public-Key` header we look at (an RSA-8192 PEM is about 1.5 KiB).
const MAX_PUBLIC_KEY_HEADER: usize = 16 * 1024;
/// Shortest client key we accept, in bits.
const MIN_CLIENT_KEY_BITS: usize = 2048;
/// Largest client key we accept, in bits.
const MAX_CLIENT_KEY_BITS: usize = 8192;
/// AES-GCM nonce and tag lengths (RFC 7518 §5.3).
const GCM_IV_LEN: usize = 12;
const GCM_TAG_LEN: usize = 16;

/// Why a request could not be opened or a response sealed.
#[derive(Debug, Clone)]
pub enum JweError {
    /// The endpoint requires encryption and the request is not encrypted.
    EncryptionRequired,
    /// The `Public-Key` header is missing or unusable.
    InvalidPublicKey(String),
    /// The body or the `Encrypted-Request` header is malformed, or the JWE uses a forbidden algorithm.
    InvalidPayload(String),
    /// A well-formed JWE that does not decrypt under our key.
    CantDecrypt,
    /// A key file could not be read or written, or holds no usable key; answered as 500.
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the file system said (shared, so that the error stays `Clone`).
        source: Arc<std::io::Error>,
    },
    /// A local failure of the crypto library; answered as 500.
    Internal(String),
}

impl PartialEq for JweError {
    fn eq(&self, other: &JweError) -> bool {
        match (self, other) {
            (JweError::EncryptionRequired, JweError::EncryptionRequired)
            | (JweError::CantDecrypt, JweError::CantDecrypt) => true,
            (JweError::InvalidPublicKey(a), JweError::InvalidPublicKey(b))
            | (JweError::InvalidPayload(a), JweError::InvalidPayload(b))
            | (JweError::Internal(a), JweError::Internal(b)) => a == b,
            (
                JweError::Io { path, source },
                JweError::Io {
                    path: other_path,
                    source: other_source,
                },
            ) => path == other_path && source.kind() == other_source.kind(),
            _ => false,
        }
    }
}

impl Eq for JweError {}

impl JweError {
    /// The API error code (`ENCRYPTION_REQUIRED`, `INVALID_PUBLIC_KEY`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            JweError::EncryptionRequired => "ENCRYPTION_REQUIRED",
            JweError::InvalidPublicKey(_) => "INVALID_PUBLIC_KEY",
            JweError::InvalidPayload(_) => "INVALID_PAYLOAD",
            JweError::CantDecrypt => "CANT_DECRYPT_PAYLOAD",
            JweError::Io { .. } | JweError::Internal(_) => "INTERNAL_ERROR",
        }
    }

    /// The HTTP status: 400 for every client error, 500 for a local failure.
    pub fn status(&self) -> u16 {
        match self {
            JweError::Io { .. } | JweError::Internal(_) => 500,
            _ => 400,
        }
    }

    /// The plain (never encrypted) error body `{"code": ..., "message": ...}`.
    pub fn body(&self) -> Vec<u8> {
        let message = match self {
            // Do not leak local paths or library internals to the client.
            JweError::Io { .. } | JweError::Internal(_) => "internal error".to_string(),
            other => other.to_string(),
        };
        serde_json::json!({ "code": self.code(), "message": message })
            .to_string()
            .into_bytes()
    }
}

impl fmt::Display for JweError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JweError::EncryptionRequired => {
                write!(
                    f,
                    "this endpoint requires an encrypted request (Encrypted-Request: true)"
                )
            }
            JweError::InvalidPublicKey(why) => write!(f, "invalid Public-Key header: {why}"),
            JweError::InvalidPayload(why) => write!(f, "invalid encrypted payload: {why}"),
            JweError::CantDecrypt => {
                write!(f, "the payload cannot be decrypted with the server key")
            }
            JweError::Io { path, source } => {
                write!(f, "JWE key store: {}: {source}", path.display())
            }
            JweError::Internal(why) => write!(f, "JWE key store: {why}"),
        }
    }
}

impl std::error::Error for JweError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            JweError::Io { source, .. } => Some(source.as_ref()),
            _ => None,
        }
    }
}

/// The server's RSA key pair, used to decrypt requests.
pub struct ServerKeys {
    public_pem: String,
    public_der: Vec<u8>,
    jwk: Value,
    oaep256: RsaesJweDecrypter,
    oaep: RsaesJweDecrypter,
}

impl fmt::Debug for ServerKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerKeys")
            .field("kid", &self.jwk.get("kid"))
            .finish_non_exhaustive()
    }
}

impl ServerKeys {
    /// Loads `DATA_DIR/jwe/server.key`, creating the key pair (0600 PKCS#8 PEM + `server.pub.pem`) on first use.
    pub fn load_or_create(data_dir: &Path) -> Result<ServerKeys, JweError> {
        let dir = data_dir.join("jwe");
        let key_path = dir.join("server.key");
        let pub_path = dir.join("server.pub.pem");
        keyfile::create_private_dir(&dir).map_err(io_error(&dir))?;
        let private_pem = match std::fs::read(&key_path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let pair = RsaKeyPair::generate(SERVER_KEY_BITS)
                    .map_err(|e| JweError::Internal(format!("generating the server key: {e}")))?;
                let pem = pair.to_pem_private_key();
                // Another process may have won the race; then use its key.
                let created = keyfile::write_new(&key_path, &pem, Access::Private)
                    .map_err(io_error(&key_path))?;
                if !created {
                    std::fs::read(&key_path).map_err(io_error(&key_path))?
                } else {
                    pem
                }
            }
            Err(e) => return Err(io_error(&key_path)(e)),
        };
        let keys = ServerKeys::from_private_pem(&private_pem).map_err(|why| {
            io_error(&key_path)(std::io::Error::new(std::io::ErrorKind::InvalidData, why))
        })?;
        // Keep server.pub.pem in step with the private key.
        let current = std::fs::read(&pub_path).ok();
        if current.as_deref() != Some(keys.public_pem.as_bytes()) {
            keyfile::replace(&pub_path, keys.public_pem.as_bytes(), Access::Public)
                .map_err(io_error(&pub_path))?;
        }
        Ok(keys)
    }

    fn from_private_pem(pem: &[u8]) -> Result<ServerKeys, String> {
        let pair = RsaKeyPair::from_pem(pem).map_err(|e| format!("not an RSA private key: {e}"))?;
        if (pair.key_len() as usize) * 8 < 2048 {
            return Err("the RSA key is shorter than 2048 bits".to_string());
        }
        let oaep256 = RSA_OAEP_256
            .decrypter_from_pem(pem)
            .map_err(|e| format!("unusable for RSA-OAEP-256: {e}"))?;
        let oaep = RSA_OAEP
            .decrypter_from_pem(pem)
            .map_err(|e| format!("unusable for RSA-OAEP: {e}"))?;
        let public_pem = String::from_utf8(pair.to_pem_public_key())
            .map_err(|_| "public key PEM is not UTF-8".to_string())?;
        let public_der = pair.to_der_public_key();
        let jwk = public_jwk(&pair)?;
        Ok(ServerKeys {
            public_pem,
            public_der,
            jwk,
            oaep256,
            oaep,
        })
    }

    /// Our public key as a `-----BEGIN PUBLIC KEY-----` PEM document.
    pub fn public_key_pem(&self) -> String {
        self.public_pem.clone()
    }

    /// Our public key as standard base64 of the DER SubjectPublicKeyInfo.
    pub fn public_key_der_base64(&self) -> String {
        STANDARD.encode(&self.public_der)
    }

    /// Our public key as a JWK: kty, n, e, use=enc, alg=RSA-OAEP-256, kid = RFC 7638 thumbprint.
    pub fn public_key_jwk(&self) -> Value {
        self.jwk.clone()
    }

    /// Opens a `{"payload": "<compact JWE>"}` body and returns the plaintext bytes.
    pub fn decrypt_request(&self, body: &[u8]) -> Result<Vec<u8>, JweError> {
        let compact = payload_of(body)?;
        let alg = check_compact(&compact)?;
        let decrypter = if alg == "RSA-OAEP-256" {
            &self.oaep256
        } else {
            &self.oaep
        };
        match josekit::jwe::deserialize_compact(&compact, decrypter) {
            Ok((plain, _header)) => Ok(plain),
            Err(_) => Err(JweError::CantDecrypt),
        }
    }
}

/// A client's RSA public key from the `Public-Key` header; responses are sealed to it.
#[derive(Clone)]
pub struct ClientKey {
    encrypter: RsaesJweEncrypter,
    bits: usize,
}

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientKey")
            .field("bits", &self.bits)
            .finish()
    }
}

impl ClientKey {
    /// Parses base64 of a PEM public key (`PUBLIC KEY` or `RSA PUBLIC KEY`) or of DER SubjectPublicKeyInfo; RSA >= 2048 bits only.
    pub fn from_header(value: &str) -> Result<ClientKey, JweError> {
        let value = value.trim();
        if value.is_empty() {
            return Err(JweError::InvalidPublicKey(
                "the header is empty".to_string(),
            ));
        }
        if value.len() > MAX_PUBLIC_KEY_HEADER {
            return Err(JweError::InvalidPublicKey(
                "the header is too long".to_string(),
            ));
        }
        let decoded = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
            .iter()
            .find_map(|engine| engine.decode(value).ok())
            .ok_or_else(|| JweError::InvalidPublicKey("not base64".to_string()))?;
        let is_pem = decoded
            .iter()
            .skip_while(|b| b.is_ascii_whitespace())
            .take(10)
            .eq(b"-----BEGIN".iter());
        // josekit's DER reader allocates whatever a length field announces before
        // reading it: a forged length (e.g. 2^48) aborts the process. Check every
        // length against the input first, on the same DER bytes josekit will read.
        let der = if is_pem {
            pem_body(&decoded)
        } else {
            Some(decoded.clone())
        };
        if !der.as_deref().is_some_and(der_lengths_fit) {
            return Err(JweError::InvalidPublicKey(
                "not a well-formed DER or PEM RSA public key".to_string(),
            ));
        }
        let encrypter = if is_pem {
            RSA_OAEP_256.encrypter_from_pem(&decoded)
        } else {
            RSA_OAEP_256.encrypter_from_der(&decoded)
        }
        .map_err(|e| {
            JweError::InvalidPublicKey(format!(
                "not an RSA public key of at least 2048 bits ({})",
                first_line(&e.to_string())
            ))
        })?;
        let bits = modulus_bits(&decoded, is_pem).unwrap_or(0);
        if bits < MIN_CLIENT_KEY_BITS {
            return Err(JweError::InvalidPublicKey(format!(
                "RSA keys shorter than {MIN_CLIENT_KEY_BITS} bits are not accepted"
            )));
        }
        if bits > MAX_CLIENT_KEY_BITS {
            return Err(JweError::InvalidPublicKey(format!(
                "RSA keys longer than {MAX_CLIENT_KEY_BITS} bits are not accepted"
            )));
        }
        Ok(ClientKey { encrypter, bits })
    }
}

/// Seals a 2xx response body to the client's key: `{"payload": jwe}` with RSA-OAEP-256 + A256GCM.
pub fn encrypt_response(client: &ClientKey, plaintext: &[u8]) -> Result<Vec<u8>, JweError> {
    let mut header = JweHeader::new();
    header.set_content_encryption(CONTENT_ENCRYPTION);
    let compact = josekit::jwe::serialize_compact(plaintext, &header, &client.encrypter)
        .map_err(|e| JweError::Internal(format!("encrypting the response: {e}")))?;
    Ok(serde_json::json!({ "payload": compact })
        .to_string()
        .into_bytes())
}

/// What an endpoint needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encryption {
    /// Only encrypted requests are served (`ENCRYPTION_REQUIRED` otherwise).
    Required,
    /// Encrypted and plain requests are both served.
    Optional,
    /// The endpoint never encrypts; the JWE headers are ignored.
    None,
}

/// Parsed request headers: whether the exchange is encrypted, and the client's key if so.
#[derive(Debug, Clone)]
pub struct JweRequest {
    /// True when the request body (if any) is a JWE and a 2xx response must be sealed.
    pub encrypted: bool,
    /// The client's key; always `Some` when `encrypted`.
    pub client: Option<ClientKey>,
}

impl JweRequest {
    /// A plain exchange (no encryption either way).
    pub fn plain() -> JweRequest {
        JweRequest {
            encrypted: false,
            client: None,
        }
    }
}

/// Reads `Encrypted-Request` and `Public-Key` under `policy` (see the module docs for the rules).
///
/// `has_body` does not relax anything: per the seed, GETs and empty POSTs
/// still send both headers, and their 2xx responses are encrypted; it is
/// accepted so call sites state which case they are in.
pub fn parse_headers(
    headers: &HeaderMap,
    policy: Encryption,
    has_body: bool,
) -> Result<JweRequest, JweError> {
    let _ = has_body;
    if policy == Encryption::None {
        return Ok(JweRequest::plain());
    }
    let encrypted = encrypted_flag(headers)?;
    if !encrypted {
        return match policy {
            Encryption::Required => Err(JweError::EncryptionRequired),
            _ => Ok(JweRequest::plain()),
        };
    }
    let mut values = headers.get_all(PUBLIC_KEY_HEADER).iter();
    let value = match (values.next(), values.next()) {
        (Some(v), None) => v,
        (None, _) => {
            return Err(JweError::InvalidPublicKey(
                "Encrypted-Request: true needs a Public-Key header".to_string(),
            ))
        }
        (Some(_), Some(_)) => {
            return Err(JweError::InvalidPublicKey(
                "more than one Public-Key header".to_string(),
            ))
        }
    };
    let value = value
        .to_str()
        .map_err(|_| JweError::InvalidPublicKey("not ASCII".to_string()))?;
    let client = ClientKey::from_header(value)?;
    Ok(JweRequest {
        encrypted: true,
        client: Some(client),
    })
}

/// Applies [`parse_headers`] and decrypts the body; returns the plain body the endpoint should see.
///
/// A body that is empty or only whitespace counts as "no body" (GET, empty
/// POST): nothing is decrypted and the endpoint sees an empty body.
pub fn open_request(
    keys: &ServerKeys,
    headers: &HeaderMap,
    body: &[u8],
    policy: Encryption,
) -> Result<(JweRequest, Vec<u8>), JweError> {
    let has_body = !body.iter().all(u8::is_ascii_whitespace);
    let request = parse_headers(headers, policy, has_body)?;
    let plain = if !request.encrypted {
        body.to_vec()
    } else if has_body {
        keys.decrypt_request(body)?
    } else {
        Vec::new()
    };
    Ok((request, plain))
}

/// Seals a response body when `req.encrypted` and the status is 2xx other than 204; otherwise returns it as is.
pub fn seal_response(req: &JweRequest, status: u16, body: Vec<u8>) -> Result<Vec<u8>, JweError> {
    if !req.encrypted || !(200..300).contains(&status) || status == 204 {
        return Ok(body);
    }
    match &req.client {
        Some(client) => encrypt_response(client, &body),
        None => Err(JweError::InvalidPublicKey(
            "no client key to encrypt the response to".to_string(),
        )),
    }
}

fn encrypted_flag(headers: &HeaderMap) -> Result<bool, JweError> {
    let mut values = headers.get_all(ENCRYPTED_REQUEST_HEADER).iter();
    let value = match (values.next(), values.next()) {
        (None, _) => return Ok(false),
        (Some(v), None) => v,
        (Some(_), Some(_)) => {
            return Err(JweError::InvalidPayload(
                "more than one Encrypted-Request header".to_string(),
            ))
        }
    };
    let text = value.to_str().map(str::trim).unwrap_or("");
    if text.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if text.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err(JweError::InvalidPayload(
            "Encrypted-Request must be true or false".to_string(),
        ))
    }
}

/// Extracts the string of `{"payload": "..."}` (the only member allowed).
fn payload_of(body: &[u8]) -> Result<String, JweError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| JweError::InvalidPayload("the body is not JSON".to_string()))?;
    let Value::Object(mut map) = value else {
        return Err(JweError::InvalidPayload(
            "the body must be {\"payload\": \"<JWE>\"}".to_string(),
        ));
    };
    if map.len() != 1 {
        return Err(JweError::InvalidPayload(
            "the body must be {\"payload\": \"<JWE>\"} and nothing else".to_string(),
        ));
    }
    match map.remove("payload") {
        Some(Value::String(s)) => Ok(s),
        _ => Err(JweError::InvalidPayload(
            "payload must be a string holding a compact JWE".to_string(),
        )),
    }
}

/// Checks the compact serialization and its protected header; returns the `alg`.
fn check_compact(compact: &str) -> Result<String, JweError> {
    let bad = |why: &str| JweError::InvalidPayload(why.to_string());
    let parts: Vec<&str> = compact.trim().split('.').collect();
    let [header_b64, key_b64, iv_b64, ct_b64, tag_b64] = parts[..] else {
        return Err(bad(
            "payload is not a compact JWE (five dot-separated parts)",
        ));
    };
    let decode = |part: &str, what: &str| {
        URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| JweError::InvalidPayload(format!("the JWE {what} is not base64url")))
    };
    let header_bytes = decode(header_b64, "header")?;
    let encrypted_key = decode(key_b64, "encrypted key")?;
    let iv = decode(iv_b64, "IV")?;
    decode(ct_b64, "ciphertext")?;
    let tag = decode(tag_b64, "tag")?;
    let header: serde_json::Map<String, Value> = serde_json::from_slice(&header_bytes)
        .map_err(|_| bad("the JWE header is not a JSON object"))?;
    let alg = match header.get("alg") {
        Some(Value::String(a)) if ALLOWED_REQUEST_ALGS.contains(&a.as_str()) => a.clone(),
        Some(Value::String(a)) => {
            return Err(JweError::InvalidPayload(format!(
                "alg {a} is not allowed (RSA-OAEP-256 or RSA-OAEP)"
            )))
        }
        _ => return Err(bad("the JWE header has no alg")),
    };
    match header.get("enc") {
        Some(Value::String(e)) if e == CONTENT_ENCRYPTION => {}
        Some(Value::String(e)) => {
            return Err(JweError::InvalidPayload(format!(
                "enc {e} is not allowed (A256GCM)"
            )))
        }
        _ => return Err(bad("the JWE header has no enc")),
    }
    if header.contains_key("zip") {
        return Err(bad("compressed JWE (zip) is not accepted"));
    }
    if header.contains_key("crit") {
        return Err(bad("critical JWE header parameters are not supported"));
    }
    if encrypted_key.is_empty() {
        return Err(bad("the JWE has no encrypted key"));
    }
    if iv.len() != GCM_IV_LEN {
        return Err(bad("the JWE IV must be 96 bits for A256GCM"));
    }
    if tag.len() != GCM_TAG_LEN {
        return Err(bad("the JWE tag must be 128 bits for A256GCM"));
    }
    Ok(alg)
}

/// Builds our public JWK with `use`, `alg` and an RFC 7638 thumbprint `kid`.
fn public_jwk(pair: &RsaKeyPair) -> Result<Value, String> {
    let jwk = pair.to_jwk_public_key();
    let n = jwk
        .parameter("n")
        .and_then(Value::as_str)
        .ok_or("public JWK has no n")?
        .to_string();
    let e = jwk
        .parameter("e")
        .and_then(Value::as_str)
        .ok_or("public JWK has no e")?
        .to_string();
    // RFC 7638: members in lexicographic order, no whitespace.
    let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
    let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
    Ok(serde_json::json!({
        "kty": "RSA",
        "n": n,
        "e": e,
        "use": "enc",
        "alg": RESPONSE_ALG,
        "kid": kid,
    }))
}

/// Bit length of the modulus of an RSA public key given as PEM or DER.
fn modulus_bits(decoded: &[u8], is_pem: bool) -> Option<usize> {
    let der;
    let der: &[u8] = if is_pem {
        let text = std::str::from_utf8(decoded).ok()?;
        let body: String = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.starts_with("-----"))
            .collect();
        der = STANDARD.decode(body).ok()?;
        &der
    } else {
        decoded
    };
    let (n, _e) = rsa_n_e(der)?;
    let first = n.iter().position(|b| *b != 0)?;
    Some((n.len() - first) * 8 - n[first].leading_zeros() as usize)
}

/// Finds (n, e) in a DER SubjectPublicKeyInfo or PKCS#1 RSAPublicKey.
fn rsa_n_e(der: &[u8]) -> Option<(&[u8], &[u8])> {
    let (tag, outer, _) = der_tlv(der)?;
    if tag != 0x30 {
        return None;
    }
    let (first_tag, first, rest) = der_tlv(outer)?;
    match first_tag {
        // PKCS#1: SEQUENCE { INTEGER n, INTEGER e }
        0x02 => {
            let (etag, e, _) = der_tlv(rest)?;
            (etag == 0x02).then_some((first, e))
        }
        // SPKI: SEQUENCE { AlgorithmIdentifier, BIT STRING { RSAPublicKey } }
        0x30 => {
            let (btag, bits, _) = der_tlv(rest)?;
            if btag != 0x03 || bits.first() != Some(&0) {
                return None;
            }
            rsa_n_e(&bits[1..])
        }
        _ => None,
    }
}

/// The DER inside a PEM document, extracted as josekit does (the text between the
/// `-----BEGIN …-----` label and `-----END`, with spaces, tabs and line breaks
/// removed, standard base64). `None` when there is none; any mismatch with josekit's
/// own parsing leaves a `-` in the text and fails the base64 decode.
fn pem_body(pem: &[u8]) -> Option<Vec<u8>> {
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    let begin = find(pem, b"-----BEGIN")? + 10;
    let label_end = begin + find(&pem[begin..], b"-----")? + 5;
    let end = label_end + find(&pem[label_end..], b"-----END")?;
    let body: Vec<u8> = pem[label_end..end]
        .iter()
        .copied()
        .filter(|b| !matches!(b, b'\t' | b'\r' | b'\n' | b' '))
        .collect();
    STANDARD
        .decode(&body)
        .or_else(|_| STANDARD_NO_PAD.decode(&body))
        .ok()
}

/// True when every DER element in `der`, read in order the way josekit's
/// `DerReader` does (into constructed elements, over primitive contents), has a
/// definite length that fits in what is left of the input.
fn der_lengths_fit(der: &[u8]) -> bool {
    let mut rest = der;
    while let Some((&tag, after_tag)) = rest.split_first() {
        // High tag numbers never occur in an RSA public key.
        if tag & 0x1f == 0x1f {
            return false;
        }
        let Some((&len0, after_len0)) = after_tag.split_first() else {
            return false;
        };
        let (len, after_len) = match len0 {
            0..=0x7f => (len0 as usize, after_len0),
            // Indefinite (0x80) is not DER; 0xff is reserved; more than 4 length bytes is absurd here.
            0x81..=0x84 => {
                let count = (len0 & 0x7f) as usize;
                if after_len0.len() < count {
                    return false;
                }
                let len = after_len0[..count]
                    .iter()
                    .fold(0usize, |acc, b| (acc << 8) | *b as usize);
                (len, &after_len0[count..])
            }
            _ => return false,
        };
        if len > after_len.len() {
            return false;
        }
        rest = if tag & 0x20 != 0 {
            after_len
        } else {
            &after_len[len..]
        };
    }
    true
}

/// Splits one DER TLV off the front: (tag, value, rest).
fn der_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&len0, rest) = rest.split_first()?;
    let (len, rest) = if len0 < 0x80 {
        (len0 as usize, rest)
    } else {
        let count = (len0 & 0x7f) as usize;
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let len = rest[..count]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, &rest[count..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> JweError + '_ {
    move |source| JweError::Io {
        path: path.to_path_buf(),
        source: Arc::new(source),
    }
}
