//! PANs encrypted at rest with AES-256-GCM, and generation of fresh PANs.
//!
//! The vault key is derived from the data key (`DATA_DIR/data.key`) as
//! HMAC-SHA256(data key, "antaca pan vault v1"), so no new key file exists.
//! A sealed PAN is `"v1:" + base64(nonce || ciphertext || tag)` with a random
//! 96-bit nonce; the card id is the associated data, so a sealed PAN only
//! opens for the card it was sealed for.

use crate::security::secrets::CardSecrets;
use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rand::rngs::OsRng;
use rand::{Rng, RngCore};
use std::fmt;

/// Label of the vault key derived from the data key.
const VAULT_KEY_LABEL: &[u8] = b"antaca pan vault v1";
/// Prefix of a sealed PAN of this format version.
const PREFIX: &str = "v1:";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// How many candidates `generate_pan` draws before giving up.
const MAX_TRIES: usize = 1000;

/// Why the vault refused; no message carries a PAN or key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VaultError {
    /// The sealed value is not `v1:` + base64 of a nonce, ciphertext and tag.
    Malformed,
    /// The sealed value does not open under this key for this card (wrong card, key or tampered).
    Unauthentic,
    /// The BIN is not digits, or leaves no room in a PAN of the requested length (8..=19).
    BadBin,
    /// Every PAN drawn already existed.
    Exhausted,
}

impl fmt::Display for VaultError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VaultError::Malformed => "sealed PAN is malformed",
            VaultError::Unauthentic => "sealed PAN does not open for this card under this key",
            VaultError::BadBin => {
                "BIN must be digits, and the PAN 8 to 19 digits with room for the BIN, one random digit and the check digit"
            }
            VaultError::Exhausted => "no unused PAN found for this BIN; the range may be full",
        })
    }
}

impl std::error::Error for VaultError {}

/// Seals and opens PANs with AES-256-GCM under a key derived from the data key; Debug redacts.
#[derive(Clone)]
pub struct Vault {
    cipher: Aes256Gcm,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Vault(<redacted>)")
    }
}

impl Vault {
    /// The vault keyed by HMAC-SHA256(data key, "antaca pan vault v1").
    pub fn from_secrets(secrets: &CardSecrets) -> Vault {
        let mut key = secrets.derive_key(VAULT_KEY_LABEL);
        let cipher = Aes256Gcm::new(&key.into());
        key.fill(0);
        std::hint::black_box(&key);
        Vault { cipher }
    }

    /// Encrypts `pan` for `card_id`: `"v1:" + base64(nonce || ciphertext || tag)`.
    pub fn seal_pan(&self, card_id: &str, pan: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let payload = Payload {
            msg: pan,
            aad: card_id.as_bytes(),
        };
        // AES-GCM only fails for plaintexts beyond 2^36 bytes; a PAN is never that long.
        let sealed = match self.cipher.encrypt(Nonce::from_slice(&nonce), payload) {
            Ok(c) => c,
            Err(_) => unreachable!("AES-GCM encrypts any PAN-sized input"),
        };
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        format!("{PREFIX}{}", B64.encode(out))
    }

    /// Decrypts a value from [`Vault::seal_pan`] sealed for the same `card_id`.
    pub fn open_pan(&self, card_id: &str, sealed: &str) -> Result<Vec<u8>, VaultError> {
        let body = sealed.strip_prefix(PREFIX).ok_or(VaultError::Malformed)?;
        let raw = B64.decode(body).map_err(|_| VaultError::Malformed)?;
        if raw.len() < NONCE_LEN + TAG_LEN {
            return Err(VaultError::Malformed);
        }
        let (nonce, ciphertext) = raw.split_at(NONCE_LEN);
        let payload = Payload {
            msg: ciphertext,
            aad: card_id.as_bytes(),
        };
        self.cipher
            .decrypt(Nonce::from_slice(nonce), payload)
            .map_err(|_| VaultError::Unauthentic)
    }
}

/// A random Luhn-valid PAN of `length` digits starting with `bin`, for which `exists` is false.
pub fn generate_pan(
    bin: &str,
    length: usize,
    exists: impl Fn(&[u8]) -> bool,
) -> Result<String, VaultError> {
    if bin.is_empty()
        || !bin.bytes().all(|b| b.is_ascii_digit())
        || !(8..=19).contains(&length)
        || bin.len() + 2 > length
    {
        return Err(VaultError::BadBin);
    }
    let mut pan = vec![0u8; length];
    pan[..bin.len()].copy_from_slice(bin.as_bytes());
    for _ in 0..MAX_TRIES {
        for d in &mut pan[bin.len()..length - 1] {
            *d = b'0' + OsRng.gen_range(0..10u8);
        }
        pan[length - 1] = crate::security::pan::luhn_check_digit(&pan[..length - 1]);
        if !exists(&pan) {
            // Only ASCII digits were written.
            return String::from_utf8(pan).map_err(|_| VaultError::BadBin);
        }
    }
    Err(VaultError::Exhausted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::pan::luhn_valid;
    use std::cell::RefCell;
    use std::collections::HashSet;

    fn vault() -> Vault {
        Vault::from_secrets(&CardSecrets::from_key([3u8; 32]))
    }

    #[test]
    fn round_trip() {
        let v = vault();
        let sealed = v.seal_pan("card-1", b"5355220000000012");
        assert!(sealed.starts_with("v1:"));
        assert!(!sealed.contains("5355220000000012"));
        assert_eq!(
            v.open_pan("card-1", &sealed).expect("open"),
            b"5355220000000012"
        );
        // Same data key, new Vault instance: still opens.
        let again = Vault::from_secrets(&CardSecrets::from_key([3u8; 32]));
        assert_eq!(
            again.open_pan("card-1", &sealed).expect("open"),
            b"5355220000000012"
        );
    }

    #[test]
    fn bound_to_card_id_and_key() {
        let v = vault();
        let sealed = v.seal_pan("card-1", b"5355220000000012");
        assert_eq!(v.open_pan("card-2", &sealed), Err(VaultError::Unauthentic));
        assert_eq!(v.open_pan("", &sealed), Err(VaultError::Unauthentic));
        let other = Vault::from_secrets(&CardSecrets::from_key([4u8; 32]));
        assert_eq!(
            other.open_pan("card-1", &sealed),
            Err(VaultError::Unauthentic)
        );
    }

    #[test]
    fn vault_key_is_hmac_of_label() {
        use hmac::{Hmac, Mac};
        let data_key = [3u8; 32];
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&data_key).expect("hmac");
        mac.update(b"antaca pan vault v1");
        let expected: [u8; 32] = mac.finalize().into_bytes().into();
        assert_eq!(
            CardSecrets::from_key(data_key).derive_key(VAULT_KEY_LABEL),
            expected
        );
        // The vault built from that key opens what `vault()` sealed.
        let direct = Vault {
            cipher: Aes256Gcm::new(&expected.into()),
        };
        let sealed = vault().seal_pan("c", b"4000001234562000");
        assert_eq!(
            direct.open_pan("c", &sealed).expect("open"),
            b"4000001234562000"
        );
    }

    #[test]
    fn tampering_is_detected() {
        let v = vault();
        let sealed = v.seal_pan("card-1", b"5355220000000012");
        let raw = B64.decode(&sealed[3..]).expect("b64");
        for i in 0..raw.len() {
            let mut t = raw.clone();
            t[i] ^= 0x01;
            let forged = format!("v1:{}", B64.encode(&t));
            assert_eq!(
                v.open_pan("card-1", &forged),
                Err(VaultError::Unauthentic),
                "{i}"
            );
        }
        // Truncated tag, extra byte.
        let short = format!("v1:{}", B64.encode(&raw[..raw.len() - 1]));
        assert_eq!(v.open_pan("card-1", &short), Err(VaultError::Unauthentic));
        let mut long = raw.clone();
        long.push(0);
        let long = format!("v1:{}", B64.encode(&long));
        assert_eq!(v.open_pan("card-1", &long), Err(VaultError::Unauthentic));
    }

    #[test]
    fn malformed_values() {
        let v = vault();
        for bad in [
            "",
            "v1:",
            "v2:AAAA",
            "5355220000000012",
            "v1:!!!!",
            "v1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", // 27 bytes: shorter than nonce + tag
        ] {
            assert_eq!(
                v.open_pan("card-1", bad),
                Err(VaultError::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn seals_differ_by_nonce() {
        let v = vault();
        let a = v.seal_pan("card-1", b"5355220000000012");
        let b = v.seal_pan("card-1", b"5355220000000012");
        assert_ne!(a, b);
        assert_ne!(a[3..19], b[3..19]);
        assert_eq!(v.open_pan("card-1", &a), v.open_pan("card-1", &b));
    }

    #[test]
    fn check_digit_matches_luhn_valid() {
        assert_eq!(
            crate::security::pan::luhn_check_digit(b"535522000000001"),
            b'2'
        );
        assert_eq!(crate::security::pan::luhn_check_digit(b"7992739871"), b'3'); // the textbook Luhn example
                                                                                 // Exactly one appended digit makes any payload Luhn-valid, and it is ours.
        for _ in 0..200 {
            let len = OsRng.gen_range(1..19);
            let payload: Vec<u8> = (0..len).map(|_| b'0' + OsRng.gen_range(0..10u8)).collect();
            let check = crate::security::pan::luhn_check_digit(&payload);
            for d in b'0'..=b'9' {
                let mut pan = payload.clone();
                pan.push(d);
                assert_eq!(luhn_valid(&pan), d == check);
            }
        }
    }

    #[test]
    fn generated_pans_are_valid() {
        let mut seen = HashSet::new();
        for _ in 0..500 {
            let pan = generate_pan("535522", 16, |_| false).expect("pan");
            assert_eq!(pan.len(), 16);
            assert!(pan.starts_with("535522"));
            assert!(luhn_valid(pan.as_bytes()), "{pan}");
            seen.insert(pan);
        }
        assert!(seen.len() > 495);
        for len in [8, 13, 19] {
            let pan = generate_pan("4", len, |_| false).expect("pan");
            assert_eq!(pan.len(), len);
            assert!(luhn_valid(pan.as_bytes()));
        }
    }

    #[test]
    fn skips_existing_pans() {
        let rejected = RefCell::new(Vec::new());
        let pan = generate_pan("535522", 16, |p| {
            let mut r = rejected.borrow_mut();
            if r.len() < 5 {
                r.push(p.to_vec());
                true
            } else {
                false
            }
        })
        .expect("pan");
        let rejected = rejected.into_inner();
        assert_eq!(rejected.len(), 5);
        assert!(!rejected.contains(&pan.as_bytes().to_vec()));

        // A range with a single free PAN: BIN + one digit + check digit.
        let taken: Vec<String> = (0..10)
            .filter(|&d| d != 7)
            .map(|d| {
                let payload = format!("1234567{d}");
                let check = char::from(crate::security::pan::luhn_check_digit(payload.as_bytes()));
                format!("{payload}{check}")
            })
            .collect();
        let pan =
            generate_pan("1234567", 9, |p| taken.iter().any(|t| t.as_bytes() == p)).expect("pan");
        assert!(pan.starts_with("12345677"));
    }

    #[test]
    fn gives_up_and_refuses_bad_bins() {
        assert_eq!(
            generate_pan("535522", 16, |_| true),
            Err(VaultError::Exhausted)
        );
        for (bin, len) in [
            ("", 16),
            ("53552a", 16),
            ("535522", 7),
            ("535522", 20),
            ("535522", 7),
            ("12345678901234", 15),
        ] {
            assert_eq!(
                generate_pan(bin, len, |_| false),
                Err(VaultError::BadBin),
                "{bin} {len}"
            );
        }
        assert!(generate_pan("1234567890123", 15, |_| false).is_ok());
    }

    #[test]
    fn nothing_secret_in_debug() {
        assert_eq!(format!("{:?}", vault()), "Vault(<redacted>)");
    }
}
