//! A partner backend's "trusted identity" token: a compact JWS (RS256) whose
//! `x5c` header carries the partner certificate this CA issued, and whose
//! payload names the user (`userId`), when it was made (`iat`) and a one-time
//! id (`jti`).
//!
//! Checks run in precedence order, each an early return: form, algorithm,
//! certificate (chains to our CA, in its validity period, not revoked, names a
//! program), signature, payload, age, and last the one-time id. The time is an
//! argument; this module never reads the clock.

use crate::ca::{partner_identity, Ca, PartnerIdentity};
use crate::manage::error::ErrorCode;
use base64::Engine as _;
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::Mutex;

/// The default longest age of a token, from its `iat`, in seconds.
pub const MAX_AGE_SECS_DEFAULT: u64 = 60;
/// How far in the future an `iat` may be (partner clock skew), in seconds.
pub const FUTURE_SKEW_SECS_MAX: u64 = 30;
/// The longest token accepted, in bytes.
pub const TOKEN_LEN_MAX: usize = 16 * 1024;
/// The most certificates accepted in `x5c`.
pub const X5C_LEN_MAX: usize = 4;
/// The longest `jti` and `userId` accepted, in bytes.
pub const CLAIM_LEN_MAX: usize = 256;
/// The default number of one-time ids a `JtiCache` remembers.
pub const JTI_CACHE_CAPACITY_DEFAULT: usize = 100_000;

/// A verified trusted identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedIdentity {
    /// The partner's id for the user.
    pub user_id: String,
    /// The token's one-time id.
    pub jti: String,
    /// When the partner made the token, in Unix seconds.
    pub iat: u64,
    /// The card program named by the partner certificate.
    pub program: String,
    /// The partner certificate's serial, lowercase hex.
    pub serial_hex: String,
}

/// Why a trusted identity token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityError {
    /// Not a compact JWS with JSON header and payload, or a required claim is missing.
    Malformed,
    /// `alg` is not RS256, or the certificate's key cannot do RS256.
    BadAlgorithm,
    /// No `x5c` header.
    NoCertificate,
    /// The certificate was not issued by this CA or is outside its validity period.
    UntrustedCertificate,
    /// The certificate has been revoked.
    Revoked,
    /// The certificate names no card program.
    NoProgram,
    /// The signature does not verify with the certificate's key.
    BadSignature,
    /// `iat` is older than the allowed age.
    Expired,
    /// `iat` is too far in the future.
    IssuedInFuture,
    /// This `jti` was already used by this program.
    ReusedJti,
    /// Too many unexpired one-time ids are remembered; try again shortly.
    ReplayCacheFull,
}

impl IdentityError {
    /// The stable machine-readable code of this refusal.
    pub fn code(&self) -> ErrorCode {
        match self {
            IdentityError::Malformed => ErrorCode::TrustedIdentityMalformed,
            IdentityError::BadAlgorithm => ErrorCode::TrustedIdentityBadAlgorithm,
            IdentityError::NoCertificate => ErrorCode::TrustedIdentityNoCertificate,
            IdentityError::UntrustedCertificate => ErrorCode::TrustedIdentityUntrustedCertificate,
            IdentityError::Revoked => ErrorCode::TrustedIdentityCertificateRevoked,
            IdentityError::NoProgram => ErrorCode::TrustedIdentityNoProgram,
            IdentityError::BadSignature => ErrorCode::TrustedIdentityBadSignature,
            IdentityError::Expired => ErrorCode::TrustedIdentityExpired,
            IdentityError::IssuedInFuture => ErrorCode::TrustedIdentityIssuedInFuture,
            IdentityError::ReusedJti => ErrorCode::TrustedIdentityReusedJti,
            IdentityError::ReplayCacheFull => ErrorCode::TrustedIdentityBusy,
        }
    }
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let message = match self {
            IdentityError::Malformed => "the token is not a compact JWS with userId, iat and jti",
            IdentityError::BadAlgorithm => {
                "the token must be signed RS256 with an RSA key of 2048 bits or more"
            }
            IdentityError::NoCertificate => "the token has no x5c certificate chain",
            IdentityError::UntrustedCertificate => {
                "the x5c certificate was not issued by Antaca's CA or is not valid now"
            }
            IdentityError::Revoked => "the x5c certificate has been revoked",
            IdentityError::NoProgram => "the x5c certificate names no card program",
            IdentityError::BadSignature => {
                "the signature does not verify with the x5c certificate's key"
            }
            IdentityError::Expired => "the token is too old; make a new one for each session",
            IdentityError::IssuedInFuture => {
                "the token's iat is in the future; check the partner's clock"
            }
            IdentityError::ReusedJti => {
                "this jti was already used; make a new token with a fresh jti"
            }
            IdentityError::ReplayCacheFull => {
                "too many tokens in the last minutes; try again shortly"
            }
        };
        write!(f, "{message} ({})", self.code())
    }
}

impl std::error::Error for IdentityError {}

/// Remembers used `jti` values (per program) until their token would be refused as expired anyway.
#[derive(Debug)]
pub struct JtiCache {
    capacity: usize,
    inner: Mutex<JtiSet>,
}

#[derive(Debug, Default)]
struct JtiSet {
    /// key -> expiry (Unix seconds).
    expiry_by_key: HashMap<String, u64>,
    /// (expiry, key), oldest first, to evict by expiry.
    by_expiry: BTreeSet<(u64, String)>,
}

impl JtiCache {
    /// A cache remembering at most `capacity` unexpired one-time ids.
    pub fn new(capacity: usize) -> JtiCache {
        JtiCache {
            capacity: capacity.max(1),
            inner: Mutex::new(JtiSet::default()),
        }
    }

    /// How many one-time ids are remembered now.
    pub fn len(&self) -> usize {
        self.lock().expiry_by_key.len()
    }

    /// Whether no one-time id is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, JtiSet> {
        // The set stays consistent even if a holder panicked: every update is one insert pair.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records `key` until `expiry_secs`; refuses a key already present and unexpired.
    fn insert(&self, key: String, expiry_secs: u64, now_secs: u64) -> Result<(), IdentityError> {
        let mut set = self.lock();
        // Forget what has expired: such tokens are refused by age already.
        while let Some(first) = set.by_expiry.first() {
            if first.0 >= now_secs {
                break;
            }
            if let Some((_, old)) = set.by_expiry.pop_first() {
                set.expiry_by_key.remove(&old);
            }
        }
        if set.expiry_by_key.contains_key(&key) {
            return Err(IdentityError::ReusedJti);
        }
        if set.expiry_by_key.len() >= self.capacity {
            // Evicting an unexpired id would allow its replay: refuse instead.
            return Err(IdentityError::ReplayCacheFull);
        }
        set.by_expiry.insert((expiry_secs, key.clone()));
        set.expiry_by_key.insert(key, expiry_secs);
        debug_assert_eq!(set.by_expiry.len(), set.expiry_by_key.len());
        Ok(())
    }
}

impl Default for JtiCache {
    fn default() -> Self {
        JtiCache::new(JTI_CACHE_CAPACITY_DEFAULT)
    }
}

fn b64url(part: &str) -> Result<Vec<u8>, IdentityError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| IdentityError::Malformed)
}

/// The leaf certificate (DER) from the header, after the algorithm check.
fn leaf_certificate(header: &serde_json::Value) -> Result<Vec<u8>, IdentityError> {
    let header = header.as_object().ok_or(IdentityError::Malformed)?;
    if header.get("alg").and_then(|a| a.as_str()) != Some("RS256") {
        return Err(IdentityError::BadAlgorithm);
    }
    // "crit" (for example b64=false) would change what is signed; partners do not need it.
    if header.contains_key("crit") || header.contains_key("b64") {
        return Err(IdentityError::Malformed);
    }
    let chain = match header.get("x5c") {
        None => return Err(IdentityError::NoCertificate),
        Some(serde_json::Value::Array(chain)) => chain,
        Some(_) => return Err(IdentityError::Malformed),
    };
    if chain.len() > X5C_LEN_MAX {
        return Err(IdentityError::Malformed);
    }
    let leaf = chain
        .first()
        .ok_or(IdentityError::NoCertificate)?
        .as_str()
        .ok_or(IdentityError::Malformed)?;
    // x5c entries are standard base64 with padding (RFC 7515 §4.1.6).
    base64::engine::general_purpose::STANDARD
        .decode(leaf)
        .map_err(|_| IdentityError::Malformed)
}

/// Verifies a trusted identity token at `now_secs`; records its `jti` only when everything else passed.
pub fn verify(
    token: &str,
    ca: &Ca,
    jtis: &JtiCache,
    now_secs: u64,
    max_age_secs: u64,
) -> Result<TrustedIdentity, IdentityError> {
    if token.len() > TOKEN_LEN_MAX {
        return Err(IdentityError::Malformed);
    }
    let parts: Vec<&str> = token.split('.').collect();
    let [header_part, _, _] = parts.as_slice() else {
        return Err(IdentityError::Malformed);
    };
    let header: serde_json::Value =
        serde_json::from_slice(&b64url(header_part)?).map_err(|_| IdentityError::Malformed)?;
    let leaf_der = leaf_certificate(&header)?;

    if !ca.is_issued_and_valid(&leaf_der, now_secs) {
        return Err(IdentityError::UntrustedCertificate);
    }
    let identity: PartnerIdentity = partner_identity(&leaf_der).ok_or(IdentityError::NoProgram)?;
    if ca.is_revoked(&identity.serial_hex) {
        return Err(IdentityError::Revoked);
    }

    let spki = x509_parser::parse_x509_certificate(&leaf_der)
        .map_err(|_| IdentityError::UntrustedCertificate)?
        .1
        .public_key()
        .raw
        .to_vec();
    let verifier = josekit::jws::RS256
        .verifier_from_der(&spki)
        .map_err(|_| IdentityError::BadAlgorithm)?;
    let (payload, _) =
        josekit::jws::deserialize_compact(token, &verifier).map_err(|e| match e {
            josekit::JoseError::InvalidSignature(_) => IdentityError::BadSignature,
            _ => IdentityError::Malformed,
        })?;

    let claims: serde_json::Value =
        serde_json::from_slice(&payload).map_err(|_| IdentityError::Malformed)?;
    let claim_str = |name: &str| -> Result<String, IdentityError> {
        match claims.get(name).and_then(|v| v.as_str()) {
            Some(value) if !value.is_empty() && value.len() <= CLAIM_LEN_MAX => {
                Ok(value.to_string())
            }
            _ => Err(IdentityError::Malformed),
        }
    };
    let user_id = claim_str("userId")?;
    let jti = claim_str("jti")?;
    let iat = claims
        .get("iat")
        .and_then(josekit::Value::as_u64)
        .ok_or(IdentityError::Malformed)?;

    if now_secs > iat.saturating_add(max_age_secs) {
        return Err(IdentityError::Expired);
    }
    if iat > now_secs.saturating_add(FUTURE_SKEW_SECS_MAX) {
        return Err(IdentityError::IssuedInFuture);
    }
    // From here the token is good; only a replay can still refuse it.
    // One-time ids are per program: one partner cannot burn another's.
    let key = format!("{}\u{0}{}", identity.program, jti);
    jtis.insert(key, iat.saturating_add(max_age_secs), now_secs)?;
    Ok(TrustedIdentity {
        user_id,
        jti,
        iat,
        program: identity.program,
        serial_hex: identity.serial_hex,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jti_cache_refuses_reuse_forgets_expired_and_is_bounded() {
        let cache = JtiCache::new(2);
        assert_eq!(cache.insert("a".into(), 100, 50), Ok(()));
        assert_eq!(
            cache.insert("a".into(), 100, 60),
            Err(IdentityError::ReusedJti)
        );
        assert_eq!(cache.insert("b".into(), 110, 60), Ok(()));
        assert_eq!(
            cache.insert("c".into(), 120, 60),
            Err(IdentityError::ReplayCacheFull)
        );
        // At 101 "a" has expired and is forgotten, making room.
        assert_eq!(cache.insert("c".into(), 160, 101), Ok(()));
        assert_eq!(cache.len(), 2);
        assert_eq!(
            cache.insert("a".into(), 161, 101),
            Err(IdentityError::ReplayCacheFull)
        );
    }

    #[test]
    fn codes_are_stable() {
        assert_eq!(
            IdentityError::Expired.code().as_str(),
            "TRUSTED_IDENTITY_EXPIRED"
        );
        assert_eq!(
            IdentityError::ReusedJti.code().as_str(),
            "TRUSTED_IDENTITY_REUSED_JTI"
        );
    }
}
