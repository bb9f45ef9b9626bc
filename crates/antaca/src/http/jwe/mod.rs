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

use crate::manage::error::ErrorCode;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hyper::HeaderMap;
use josekit::jwe::JweHeader;
use serde_json::Value;

mod keys;

pub use keys::{ClientKey, ServerKeys};

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
    pub fn code(&self) -> ErrorCode {
        match self {
            JweError::EncryptionRequired => ErrorCode::EncryptionRequired,
            JweError::InvalidPublicKey(_) => ErrorCode::InvalidPublicKey,
            JweError::InvalidPayload(_) => ErrorCode::InvalidPayload,
            JweError::CantDecrypt => ErrorCode::CantDecryptPayload,
            JweError::Io { .. } | JweError::Internal(_) => ErrorCode::InternalError,
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
    let text = value.to_str().map_or("", str::trim);
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
