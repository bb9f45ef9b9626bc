//! Antaca's own certificate authority for partner backends.
//!
//! Files live under `DATA_DIR/ca/`: `ca.key` (0600) and `ca.crt`, the
//! `/secure` listener's `server.key` (0600) and `server.crt`, the register of
//! issued certificates `issued.json` and the revocation list `revoked.json`.
//!
//! A partner certificate names its card program twice: as the SAN URI
//! `urn:antaca:program:<ID>` (authoritative) and as the subject OU.
//! Revocations are appended to `revoked.json` by whichever process revokes
//! (the server or the `antaca ca revoke` command); every `Ca` re-reads the file
//! when its modification time, size or inode changes, so a revocation reaches a
//! running server on its next handshake without a restart.
//!
//! This file holds the `Ca` type, its errors and the files it shares;
//! `issue` creates the CA and signs certificates, `revocation` keeps the
//! revocation list and the serials. The TLS side (the rustls configuration and
//! client-certificate verifier) belongs to `http::tls`: `ca` owns certificates,
//! never a connection.
//!
//! Owns: the CA's keys and certificates, CSR signing (`issue`) and
//! revocation (`revocation`). Must never touch: TLS sessions (the rustls
//! verifier is `http::tls`), the engine, the store.

pub mod issue;
pub mod revocation;

use crate::security::keyfile::{self, Access};
use rcgen::{Certificate, KeyPair};
use revocation::{serial_hex_of, RevokedCache};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use x509_parser::extensions::GeneralName;

/// The SAN URI prefix that names a card program in a partner certificate.
pub const PROGRAM_URI_PREFIX: &str = "urn:antaca:program:";
/// The longest certificate lifetime `sign_csr` grants, in days.
pub const PARTNER_VALID_DAYS_MAX: u32 = 3650;
/// The longest program id accepted, in bytes.
pub const PROGRAM_ID_LEN_MAX: usize = 64;

const CA_DIR: &str = "ca";
const CA_KEY_FILE: &str = "ca.key";
const CA_CERT_FILE: &str = "ca.crt";
const SERVER_KEY_FILE: &str = "server.key";
const SERVER_CERT_FILE: &str = "server.crt";
const ISSUED_FILE: &str = "issued.json";
const REVOKED_FILE: &str = "revoked.json";
const CA_COMMON_NAME: &str = "Antaca Partner CA";
const CA_VALID_DAYS: u64 = 3650;
const SERVER_VALID_DAYS: u64 = 825;
/// A server certificate closer than this to its end is replaced on load.
const SERVER_RENEW_BEFORE_DAYS: u64 = 30;
/// Certificates start this much in the past so a partner's slow clock accepts them.
const BACKDATE_SECS: u64 = 300;
const DAY_SECS: u64 = 86_400;

/// Why a CA operation failed; `Display` tells the operator what to do.
#[derive(Debug)]
pub enum CaError {
    /// `init` found an existing CA.
    AlreadyExists(PathBuf),
    /// `load` found no CA.
    Missing(PathBuf),
    /// A file could not be read or written.
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A CA file exists but does not hold what it should.
    Corrupt {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The certificate signing request is unreadable or its signature does not verify.
    BadCsr(String),
    /// The program id is empty, too long or has characters outside `A-Z a-z 0-9 - _ .`.
    BadProgram(String),
    /// The requested lifetime is zero or longer than `PARTNER_VALID_DAYS_MAX`.
    BadValidity(u32),
    /// The serial is not hexadecimal.
    BadSerial(String),
    /// No certificate with this serial was issued by this CA.
    UnknownSerial(String),
    /// The certificate given to revoke is unreadable or not issued by this CA.
    BadCertificate(String),
    /// Key generation, signing or TLS configuration failed.
    Crypto(String),
}

impl fmt::Display for CaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaError::AlreadyExists(dir) => write!(
                f,
                "a CA already exists in {}; keep using it, or move that directory away to start a new CA (every partner certificate must then be reissued)",
                dir.display()
            ),
            CaError::Missing(dir) => write!(
                f,
                "no CA in {}; create one with `antaca ca init --data DIR`",
                dir.display()
            ),
            CaError::Io { path, source } => write!(
                f,
                "{}: {source}; check that the path exists and is readable and writable by this user",
                path.display()
            ),
            CaError::Corrupt { path, reason } => write!(
                f,
                "{} is damaged ({reason}); restore the CA directory from a backup",
                path.display()
            ),
            CaError::BadCsr(reason) => write!(
                f,
                "the certificate signing request is not acceptable ({reason}); ask the partner for a new PKCS#10 CSR in PEM form"
            ),
            CaError::BadProgram(program) => write!(
                f,
                "program id {program:?} is not acceptable; use 1 to {PROGRAM_ID_LEN_MAX} characters from A-Z a-z 0-9 - _ ."
            ),
            CaError::BadValidity(days) => write!(
                f,
                "a lifetime of {days} days is not acceptable; choose 1 to {PARTNER_VALID_DAYS_MAX} days"
            ),
            CaError::BadSerial(serial) => write!(
                f,
                "serial {serial:?} is not hexadecimal; copy it from the output of `antaca ca sign` or from ca/issued.json"
            ),
            CaError::UnknownSerial(serial) => write!(
                f,
                "no certificate with serial {serial} was issued by this CA; check ca/issued.json or revoke by certificate file with --cert"
            ),
            CaError::BadCertificate(reason) => write!(
                f,
                "the certificate cannot be revoked here ({reason}); give the PEM file this CA issued"
            ),
            CaError::Crypto(reason) => write!(
                f,
                "a cryptographic operation failed ({reason}); this is a bug or a damaged key, report it with the CA directory's file list"
            ),
        }
    }
}

impl std::error::Error for CaError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CaError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> CaError + '_ {
    move |source| CaError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn corrupt(path: &Path, reason: impl fmt::Display) -> CaError {
    CaError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// A failure of the certificate library as a `CaError`.
pub(crate) fn crypto(e: impl fmt::Display) -> CaError {
    CaError::Crypto(e.to_string())
}

/// A certificate `sign_csr` issued.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    /// The serial number, lowercase hex without leading zero bytes.
    pub serial_hex: String,
    /// The certificate in PEM form, to hand to the partner.
    pub cert_pem: String,
    /// The card program the certificate names.
    pub program: String,
}

/// Who is on the other end of a verified partner certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerIdentity {
    /// The card program named by the certificate's `urn:antaca:program:` SAN URI.
    pub program: String,
    /// The certificate's serial, lowercase hex without leading zero bytes.
    pub serial_hex: String,
    /// The certificate's subject as an RFC 4514 string.
    pub subject: String,
}

const LOCK_FILE: &str = ".lock";
/// How long to wait for another process's lock on the register files.
const LOCK_WAIT: Duration = Duration::from_secs(5);
/// A lock file older than this was left by a crashed process and is removed.
const LOCK_STALE: Duration = Duration::from_secs(30);

/// A lock across processes on `issued.json` and `revoked.json` (a file created
/// exclusively), so two revokers never lose each other's line.
struct DirLock {
    path: PathBuf,
}

impl DirLock {
    fn acquire(dir: &Path) -> Result<DirLock, CaError> {
        let path = dir.join(LOCK_FILE);
        let started = std::time::Instant::now();
        loop {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(_) => return Ok(DirLock { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let stale = std::fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .is_some_and(|age| age > LOCK_STALE);
                    if stale {
                        let _ = std::fs::remove_file(&path);
                        continue;
                    }
                    if started.elapsed() > LOCK_WAIT {
                        return Err(CaError::Io {
                            path,
                            source: std::io::Error::new(
                                std::io::ErrorKind::WouldBlock,
                                "another antaca process holds the CA lock; retry, or remove the file if no antaca process is running",
                            ),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(io_error(&path)(e)),
            }
        }
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// One line of `issued.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct IssuedRecord {
    serial_hex: String,
    program: String,
    subject: String,
    issued_at_secs: u64,
    not_after_secs: u64,
}

/// Antaca's certificate authority, loaded from `DATA_DIR/ca/`.
pub struct Ca {
    dir: PathBuf,
    ca_cert_pem: String,
    ca_cert_der: Vec<u8>,
    key: KeyPair,
    /// The CA certificate as rcgen needs it to sign (same name and key as `ca.crt`).
    issuer: Certificate,
    server_cert_der: Vec<u8>,
    server_key_der: Vec<u8>,
    /// Serialises this process's writes to `issued.json` and `revoked.json` (`DirLock` does it across processes).
    write_lock: Mutex<()>,
    revoked: Mutex<RevokedCache>,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("Ca").field("dir", &self.dir).finish()
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Whether `program` is a usable program id.
pub fn is_valid_program(program: &str) -> bool {
    !program.is_empty()
        && program.len() <= PROGRAM_ID_LEN_MAX
        && program
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn create_private_dir(dir: &Path) -> Result<(), CaError> {
    keyfile::create_private_dir(dir).map_err(io_error(dir))
}

/// Writes a new file (`private` ones mode 0600) through the one key-file
/// helper; a file that exists already is an error.
fn write_new(path: &Path, bytes: &[u8], private: bool) -> Result<(), CaError> {
    let access = if private {
        Access::Private
    } else {
        Access::Public
    };
    match keyfile::write_new(path, bytes, access) {
        Ok(true) => Ok(()),
        // The OS's own words for it, as when the file was opened create-new.
        Ok(false) => Err(io_error(path)(std::io::Error::from_raw_os_error(
            libc::EEXIST,
        ))),
        Err(e) => Err(io_error(path)(e)),
    }
}

/// Replaces a file atomically, so a reader in another process sees the old
/// or the new content, never half.
fn replace_file(path: &Path, bytes: &[u8]) -> Result<(), CaError> {
    keyfile::replace(path, bytes, Access::Public).map_err(io_error(path))
}

fn read_optional(path: &Path) -> Result<Option<String>, CaError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(path)(e)),
    }
}

fn read_json_list<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>, CaError> {
    match read_optional(path)? {
        None => Ok(Vec::new()),
        Some(text) => serde_json::from_str(&text).map_err(|e| corrupt(path, e)),
    }
}

fn write_json_list<T: Serialize>(path: &Path, list: &[T]) -> Result<(), CaError> {
    let mut text = serde_json::to_string_pretty(list).map_err(|e| corrupt(path, e))?;
    text.push('\n');
    replace_file(path, text.as_bytes())
}

fn first_pem_cert(path: &Path, pem: &str) -> Result<Vec<u8>, CaError> {
    let mut reader = pem.as_bytes();
    let first = rustls_pemfile::certs(&mut reader).next();
    match first {
        Some(Ok(der)) => Ok(der.as_ref().to_vec()),
        Some(Err(e)) => Err(corrupt(path, e)),
        None => Err(corrupt(path, "no PEM certificate in it")),
    }
}

impl Ca {
    /// The CA certificate in PEM form, as partners install it.
    pub fn ca_cert_pem(&self) -> String {
        self.ca_cert_pem.clone()
    }

    /// The CA certificate in DER form.
    pub fn ca_cert_der(&self) -> Vec<u8> {
        self.ca_cert_der.clone()
    }

    /// The path of the CA certificate file.
    pub fn ca_cert_path(&self) -> PathBuf {
        self.dir.join(CA_CERT_FILE)
    }

    /// The `/secure` listener's certificate chain (its own, then the CA's) and key, for the TLS side.
    pub(crate) fn server_chain_and_key(
        &self,
    ) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let chain = vec![
            CertificateDer::from(self.server_cert_der.clone()),
            CertificateDer::from(self.ca_cert_der.clone()),
        ];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key_der.clone()));
        (chain, key)
    }
}

/// The identity a partner certificate carries: exactly one program SAN URI, and an OU (if any) that agrees.
///
/// Call it on a certificate already verified (by the TLS handshake or `Ca::verify_issued`).
pub fn partner_identity(cert_der: &[u8]) -> Option<PartnerIdentity> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    let mut programs = san
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::URI(uri) => uri.strip_prefix(PROGRAM_URI_PREFIX),
            _ => None,
        });
    let program = programs.next()?;
    if programs.next().is_some() || !is_valid_program(program) {
        return None;
    }
    for unit in cert.subject().iter_organizational_unit() {
        if unit.as_str().ok()? != program {
            return None;
        }
    }
    Some(PartnerIdentity {
        program: program.to_string(),
        serial_hex: serial_hex_of(cert.raw_serial()),
        subject: cert.subject().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_ids_are_restricted() {
        assert!(is_valid_program("ACME-01.eu_x"));
        assert!(!is_valid_program(""));
        assert!(!is_valid_program("a b"));
        assert!(!is_valid_program("a/b"));
        assert!(!is_valid_program(&"x".repeat(PROGRAM_ID_LEN_MAX + 1)));
    }
}
