//! The server's RSA key pair (created on first use, kept as key files) and
//! the client's public key from the `Public-Key` header, with the DER checks
//! that run before josekit sees a key. Owns: key material and its parsing.
//! Must never touch: request or response bodies (that is the envelope in
//! `http::jwe`).

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use josekit::jwe::alg::rsaes::{RsaesJweDecrypter, RsaesJweEncrypter};
use josekit::jwe::{RSA_OAEP, RSA_OAEP_256};
use josekit::jwk::alg::rsa::RsaKeyPair;
use josekit::jwk::KeyPair;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{
    check_compact, payload_of, JweError, MAX_CLIENT_KEY_BITS, MAX_PUBLIC_KEY_HEADER,
    MIN_CLIENT_KEY_BITS, RESPONSE_ALG, SERVER_KEY_BITS,
};
use crate::security::keyfile::{self, Access};
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
                if created {
                    pem
                } else {
                    std::fs::read(&key_path).map_err(io_error(&key_path))?
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
    pub(super) encrypter: RsaesJweEncrypter,
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
