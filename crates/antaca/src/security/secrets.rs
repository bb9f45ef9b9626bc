//! The data key: keyed hashes of PANs, CVV2s and PINs, so that none is kept
//! in clear. The key lives in a file beside the store, created on first start
//! with owner-only permissions, and never in the store itself.

use crate::security::keyfile::{self, Access};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::path::Path;

type HmacSha256 = Hmac<Sha256>;

/// File name of the key inside the data directory.
pub const KEY_FILE: &str = "data.key";

/// Computes keyed hashes of card secrets.
#[derive(Clone)]
pub struct CardSecrets {
    /// HMAC already keyed with the data key: cloning it skips hashing the
    /// key's two pads, half the work of a short message's MAC.
    keyed: HmacSha256,
}

impl std::fmt::Debug for CardSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CardSecrets(<redacted>)")
    }
}

impl CardSecrets {
    /// Uses a given key (tests).
    pub fn from_key(key: [u8; 32]) -> CardSecrets {
        // A key of any length is accepted by HMAC, so `new_from_slice` cannot fail here.
        let keyed = match HmacSha256::new_from_slice(&key) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC accepts keys of any length"),
        };
        CardSecrets { keyed }
    }

    /// Loads the key from `dir/data.key`, creating it (mode 0600) on first use.
    pub fn load_or_create(dir: &Path) -> std::io::Result<CardSecrets> {
        let path = dir.join(KEY_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => CardSecrets::from_file_bytes(&path, &bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir)?;
                let key: [u8; 32] = rand::random();
                if keyfile::write_new(&path, &key, Access::Private)? {
                    Ok(CardSecrets::from_key(key))
                } else {
                    // Another process created it first: use its key.
                    CardSecrets::from_file_bytes(&path, &std::fs::read(&path)?)
                }
            }
            Err(e) => Err(e),
        }
    }

    /// The key read from `path`, which must hold exactly 32 bytes.
    fn from_file_bytes(path: &Path, bytes: &[u8]) -> std::io::Result<CardSecrets> {
        let key: [u8; 32] = bytes.try_into().map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} must hold exactly 32 bytes", path.display()),
            )
        })?;
        Ok(CardSecrets::from_key(key))
    }

    fn mac(&self, domain: &[u8], parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = self.keyed.clone();
        mac.update(domain);
        for part in parts {
            mac.update(&[0]);
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    /// A 32-byte subkey: HMAC-SHA256(data key, `label`), so that new uses need no new key file.
    pub(crate) fn derive_key(&self, label: &[u8]) -> [u8; 32] {
        let mut mac = self.keyed.clone();
        mac.update(label);
        mac.finalize().into_bytes().into()
    }

    /// The keyed hash a PAN is found by.
    pub fn pan_hash(&self, pan: &[u8]) -> [u8; 32] {
        self.mac(b"pan", &[pan])
    }

    /// The keyed hash of a card's CVV2 (bound to the card id).
    pub fn cvv2_hash(&self, card_id: &str, cvv2: &[u8]) -> String {
        hex::encode(self.cvv2_mac(card_id, cvv2))
    }

    /// The keyed hash of a CVV2 as bytes (what [`CardSecrets::cvv2_hash`] writes in hex).
    pub fn cvv2_mac(&self, card_id: &str, cvv2: &[u8]) -> [u8; 32] {
        self.mac(b"cvv2", &[card_id.as_bytes(), cvv2])
    }

    /// The keyed hash of a card's PIN (bound to the card id).
    pub fn pin_hash(&self, card_id: &str, pin: &[u8]) -> String {
        hex::encode(self.pin_mac(card_id, pin))
    }

    /// The keyed hash of a PIN as bytes (what [`CardSecrets::pin_hash`] writes in hex).
    pub fn pin_mac(&self, card_id: &str, pin: &[u8]) -> [u8; 32] {
        self.mac(b"pin", &[card_id.as_bytes(), pin])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_created_once_and_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = CardSecrets::load_or_create(dir.path()).expect("create");
        let b = CardSecrets::load_or_create(dir.path()).expect("load");
        assert_eq!(
            a.pan_hash(b"5355220000000017"),
            b.pan_hash(b"5355220000000017")
        );
        assert_ne!(
            a.pan_hash(b"5355220000000017"),
            a.pan_hash(b"5355220000000025")
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
