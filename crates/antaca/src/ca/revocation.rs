//! The revocation list and certificate serials: `revoked.json`, appended by
//! whichever process revokes and re-read by every `Ca` when it changes, and the
//! one normal form of a serial. Never issues a certificate.

use super::{
    crypto, now_secs, read_json_list, write_json_list, Ca, CaError, DirLock, IssuedRecord,
    ISSUED_FILE, REVOKED_FILE,
};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::time::SystemTime;

/// One line of `revoked.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RevokedRecord {
    serial_hex: String,
    revoked_at_secs: u64,
}

/// What identifies one version of `revoked.json`: mtime, size and inode.
type FileStamp = (Option<SystemTime>, u64, u64);

/// The revoked serials as last read, and the version of the file they came from.
#[derive(Default)]
pub(super) struct RevokedCache {
    stamp: Option<FileStamp>,
    serials: HashSet<String>,
}

/// A serial as lowercase hex without leading zero bytes.
pub(super) fn serial_hex_of(raw: &[u8]) -> String {
    let first = raw
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(raw.len().saturating_sub(1));
    hex::encode(&raw[first.min(raw.len())..])
}

/// Normalises an operator-typed serial ("0A:1b..." or "0a1b...") to `serial_hex_of` form.
pub fn normalize_serial(input: &str) -> Option<String> {
    let digits: String = input
        .chars()
        .filter(|c| !matches!(c, ':' | ' '))
        .collect::<String>()
        .to_ascii_lowercase();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let padded = if digits.len() % 2 == 1 {
        format!("0{digits}")
    } else {
        digits
    };
    let bytes = hex::decode(padded).ok()?;
    Some(serial_hex_of(&bytes))
}

fn file_stamp(meta: &std::fs::Metadata) -> FileStamp {
    #[cfg(unix)]
    let inode = {
        use std::os::unix::fs::MetadataExt;
        meta.ino()
    };
    #[cfg(not(unix))]
    let inode = 0;
    (meta.modified().ok(), meta.len(), inode)
}

impl Ca {
    /// Revokes the certificate with this serial (hex, any case, colons allowed); an unknown serial is an error.
    pub fn revoke(&self, serial_hex: &str) -> Result<(), CaError> {
        let serial = normalize_serial(serial_hex)
            .ok_or_else(|| CaError::BadSerial(serial_hex.to_string()))?;
        let _guard = self
            .write_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _lock = DirLock::acquire(&self.dir)?;
        let issued: Vec<IssuedRecord> = read_json_list(&self.dir.join(ISSUED_FILE))?;
        if !issued.iter().any(|r| r.serial_hex == serial) {
            return Err(CaError::UnknownSerial(serial));
        }
        let revoked_path = self.dir.join(REVOKED_FILE);
        let mut revoked: Vec<RevokedRecord> = read_json_list(&revoked_path)?;
        if revoked.iter().any(|r| r.serial_hex == serial) {
            return Ok(());
        }
        revoked.push(RevokedRecord {
            serial_hex: serial,
            revoked_at_secs: now_secs(),
        });
        write_json_list(&revoked_path, &revoked)
    }

    /// Revokes the certificate in this PEM file (it must be one this CA issued); returns its serial.
    pub fn revoke_cert_pem(&self, cert_pem: &str) -> Result<String, CaError> {
        let mut reader = cert_pem.as_bytes();
        let first = rustls_pemfile::certs(&mut reader).next();
        let der = match first {
            Some(Ok(der)) => der,
            _ => {
                return Err(CaError::BadCertificate(
                    "no PEM certificate found".to_string(),
                ))
            }
        };
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
            .map_err(|e| CaError::BadCertificate(e.to_string()))?;
        let (_, ca) = x509_parser::parse_x509_certificate(&self.ca_cert_der).map_err(crypto)?;
        cert.verify_signature(Some(ca.public_key()))
            .map_err(|_| CaError::BadCertificate("it was not issued by this CA".to_string()))?;
        let serial = serial_hex_of(cert.raw_serial());
        self.revoke(&serial)?;
        Ok(serial)
    }

    /// Whether this serial is revoked; sees revocations by other processes (re-reads `revoked.json` when it changes).
    ///
    /// Fails closed: if `revoked.json` exists but cannot be read, every serial counts as revoked.
    pub fn is_revoked(&self, serial_hex: &str) -> bool {
        let Some(serial) = normalize_serial(serial_hex) else {
            return true;
        };
        let path = self.dir.join(REVOKED_FILE);
        let mut cache = self
            .revoked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match std::fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                cache.stamp = None;
                cache.serials.clear();
            }
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "cannot read the revocation list; refusing every partner certificate");
                return true;
            }
            Ok(meta) => {
                let stamp = file_stamp(&meta);
                if cache.stamp != Some(stamp) {
                    match read_json_list::<RevokedRecord>(&path) {
                        Ok(list) => {
                            cache.serials = list.into_iter().map(|r| r.serial_hex).collect();
                            cache.stamp = Some(stamp);
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "cannot read the revocation list; refusing every partner certificate");
                            cache.stamp = None;
                            return true;
                        }
                    }
                }
            }
        }
        cache.serials.contains(&serial)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_normalise_to_one_form() {
        assert_eq!(normalize_serial("00:0A:ff").as_deref(), Some("0aff"));
        assert_eq!(normalize_serial("aff").as_deref(), Some("0aff"));
        assert_eq!(normalize_serial("0").as_deref(), Some("00"));
        assert_eq!(normalize_serial("zz"), None);
        assert_eq!(normalize_serial(""), None);
        assert_eq!(serial_hex_of(&[0, 0, 0x12]), "12");
    }
}
