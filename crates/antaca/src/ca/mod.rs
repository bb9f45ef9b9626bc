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

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, CertificateSigningRequestParams,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
    SerialNumber,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName as TlsDistinguishedName, SignatureScheme};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
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

fn crypto(e: impl fmt::Display) -> CaError {
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
struct RevokedCache {
    stamp: Option<FileStamp>,
    serials: HashSet<String>,
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
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Whether `program` is a usable program id.
pub fn is_valid_program(program: &str) -> bool {
    !program.is_empty()
        && program.len() <= PROGRAM_ID_LEN_MAX
        && program
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A serial as lowercase hex without leading zero bytes.
fn serial_hex_of(raw: &[u8]) -> String {
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

fn random_serial() -> [u8; 16] {
    let mut bytes: [u8; 16] = rand::random();
    // Positive (top bit clear) and without a leading zero byte, so the DER
    // integer is exactly these 16 bytes and the hex is stable.
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    bytes
}

fn create_private_dir(dir: &Path) -> Result<(), CaError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(io_error(dir))
}

/// Writes a new file; `private` files are created mode 0600.
fn write_new(path: &Path, bytes: &[u8], private: bool) -> Result<(), CaError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(path).map_err(io_error(path))?;
    file.write_all(bytes).map_err(io_error(path))?;
    file.sync_all().map_err(io_error(path))
}

/// Replaces a file atomically (write a temporary file, then rename), so a
/// reader in another process sees the old or the new content, never half.
fn replace_file(path: &Path, bytes: &[u8]) -> Result<(), CaError> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    write_new(&tmp, bytes, false)?;
    std::fs::rename(&tmp, path).map_err(io_error(path))
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

/// The CA certificate's parameters (name, constraints, key usages) with a lifetime from `now`.
fn ca_params(now: u64) -> CertificateParams {
    let at = |secs: u64| rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs(secs);
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, CA_COMMON_NAME);
    name.push(DnType::OrganizationName, "Antaca");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(SerialNumber::from_slice(&random_serial()));
    params.not_before = at(now.saturating_sub(BACKDATE_SECS));
    params.not_after = at(now.saturating_add(CA_VALID_DAYS * DAY_SECS));
    params
}

/// Issues a server certificate for the `/secure` listener; returns (cert PEM, key PEM).
fn issue_server_cert(
    issuer: &Certificate,
    issuer_key: &KeyPair,
    now: u64,
) -> Result<(String, String), CaError> {
    let at = |secs: u64| rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs(secs);
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(crypto)?;
    let mut params = CertificateParams::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ])
    .map_err(crypto)?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "Antaca secure listener");
    name.push(DnType::OrganizationName, "Antaca");
    params.distinguished_name = name;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(SerialNumber::from_slice(&random_serial()));
    params.not_before = at(now.saturating_sub(BACKDATE_SECS));
    params.not_after = at(now.saturating_add(SERVER_VALID_DAYS * DAY_SECS));
    let cert = params.signed_by(&key, issuer, issuer_key).map_err(crypto)?;
    Ok((cert.pem(), key.serialize_pem()))
}

impl Ca {
    /// Creates a new CA and the `/secure` listener's certificate under `data_dir/ca/`; refuses if one exists.
    pub fn init(data_dir: &Path) -> Result<Ca, CaError> {
        let dir = data_dir.join(CA_DIR);
        if dir.join(CA_CERT_FILE).exists() || dir.join(CA_KEY_FILE).exists() {
            return Err(CaError::AlreadyExists(dir));
        }
        create_private_dir(&dir)?;
        let now = now_secs();
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(crypto)?;
        let cert = ca_params(now).self_signed(&key).map_err(crypto)?;
        let (server_pem, server_key_pem) = issue_server_cert(&cert, &key, now)?;
        // The key first: `create_new` makes a concurrent second `init` fail here.
        write_new(&dir.join(CA_KEY_FILE), key.serialize_pem().as_bytes(), true)?;
        write_new(&dir.join(SERVER_KEY_FILE), server_key_pem.as_bytes(), true)?;
        write_new(&dir.join(SERVER_CERT_FILE), server_pem.as_bytes(), false)?;
        write_new(&dir.join(CA_CERT_FILE), cert.pem().as_bytes(), false)?;
        Ca::load(data_dir)
    }

    /// Loads the CA from `data_dir/ca/`, reissuing the listener certificate if it is missing or about to expire.
    pub fn load(data_dir: &Path) -> Result<Ca, CaError> {
        let dir = data_dir.join(CA_DIR);
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let Some(ca_cert_pem) = read_optional(&cert_path)? else {
            return Err(CaError::Missing(dir));
        };
        let Some(key_pem) = read_optional(&key_path)? else {
            return Err(corrupt(&key_path, "the CA key is missing"));
        };
        let ca_cert_der = first_pem_cert(&cert_path, &ca_cert_pem)?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| corrupt(&key_path, e))?;
        let (_, parsed) = x509_parser::parse_x509_certificate(&ca_cert_der)
            .map_err(|e| corrupt(&cert_path, e))?;
        if parsed.public_key().raw != key.public_key_der().as_slice() {
            return Err(corrupt(&key_path, "the key does not match ca.crt"));
        }
        let issuer =
            CertificateParams::from_ca_cert_der(&CertificateDer::from(ca_cert_der.as_slice()))
                .map_err(|e| corrupt(&cert_path, e))?
                .self_signed(&key)
                .map_err(crypto)?;

        let (server_cert_der, server_key_der) = Self::load_server_cert(&dir, &issuer, &key)?;
        Ok(Ca {
            dir,
            ca_cert_pem,
            ca_cert_der,
            key,
            issuer,
            server_cert_der,
            server_key_der,
            write_lock: Mutex::new(()),
            revoked: Mutex::new(RevokedCache::default()),
        })
    }

    /// Loads the CA if there is one, creates it otherwise.
    pub fn load_or_init(data_dir: &Path) -> Result<Ca, CaError> {
        match Ca::load(data_dir) {
            Err(CaError::Missing(_)) => Ca::init(data_dir),
            other => other,
        }
    }

    /// The listener certificate and key (DER), reissued when missing or near expiry.
    fn load_server_cert(
        dir: &Path,
        issuer: &Certificate,
        issuer_key: &KeyPair,
    ) -> Result<(Vec<u8>, Vec<u8>), CaError> {
        let cert_path = dir.join(SERVER_CERT_FILE);
        let key_path = dir.join(SERVER_KEY_FILE);
        let now = now_secs();
        let existing = match (read_optional(&cert_path)?, read_optional(&key_path)?) {
            (Some(cert_pem), Some(key_pem)) => {
                let der = first_pem_cert(&cert_path, &cert_pem)?;
                let not_after = x509_parser::parse_x509_certificate(&der)
                    .map_err(|e| corrupt(&cert_path, e))?
                    .1
                    .validity()
                    .not_after
                    .timestamp();
                let renew_at = now.saturating_add(SERVER_RENEW_BEFORE_DAYS * DAY_SECS);
                if u64::try_from(not_after).unwrap_or(0) > renew_at {
                    Some((der, key_pem))
                } else {
                    None
                }
            }
            _ => None,
        };
        let (cert_der, key_pem) = match existing {
            Some(found) => found,
            None => {
                let (cert_pem, key_pem) = issue_server_cert(issuer, issuer_key, now)?;
                let _ = std::fs::remove_file(&key_path);
                write_new(&key_path, key_pem.as_bytes(), true)?;
                replace_file(&cert_path, cert_pem.as_bytes())?;
                (first_pem_cert(&cert_path, &cert_pem)?, key_pem)
            }
        };
        let key = KeyPair::from_pem(&key_pem).map_err(|e| corrupt(&key_path, e))?;
        Ok((cert_der, key.serialize_der()))
    }

    /// Issues a client certificate for `program` from a partner's PEM CSR, after checking its self-signature.
    pub fn sign_csr(
        &self,
        csr_pem: &str,
        program: &str,
        valid_days: u32,
    ) -> Result<IssuedCert, CaError> {
        if !is_valid_program(program) {
            return Err(CaError::BadProgram(program.to_string()));
        }
        if valid_days == 0 || valid_days > PARTNER_VALID_DAYS_MAX {
            return Err(CaError::BadValidity(valid_days));
        }
        // `from_pem` verifies the CSR's signature with the key it carries.
        let mut csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| {
            CaError::BadCsr(match e {
                rcgen::Error::CouldNotParseCertificationRequest => {
                    "it is not a PEM certificate signing request".to_string()
                }
                rcgen::Error::RingUnspecified => {
                    "its signature does not verify with the key it carries".to_string()
                }
                rcgen::Error::UnsupportedExtension => {
                    "it asks for extensions this CA does not grant; send a CSR with a subject only"
                        .to_string()
                }
                other => other.to_string(),
            })
        })?;

        // Only the subject name and the key come from the partner; everything
        // else (names, usages, lifetime) is decided here.
        let mut name = DistinguishedName::new();
        match csr.params.distinguished_name.get(&DnType::CommonName) {
            Some(common_name) => name.push(DnType::CommonName, common_name.clone()),
            None => name.push(DnType::CommonName, format!("partner {program}")),
        }
        if let Some(organization) = csr.params.distinguished_name.get(&DnType::OrganizationName) {
            name.push(DnType::OrganizationName, organization.clone());
        }
        name.push(DnType::OrganizationalUnitName, program);

        let uri = rcgen::Ia5String::try_from(format!("{PROGRAM_URI_PREFIX}{program}"))
            .map_err(|_| CaError::BadProgram(program.to_string()))?;

        let _guard = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        let _lock = DirLock::acquire(&self.dir)?;
        let issued_path = self.dir.join(ISSUED_FILE);
        let mut issued: Vec<IssuedRecord> = read_json_list(&issued_path)?;
        let serial = loop {
            let candidate = random_serial();
            let hex = serial_hex_of(&candidate);
            if !issued.iter().any(|r| r.serial_hex == hex) {
                break candidate;
            }
        };
        let now = now_secs();
        let not_after = now.saturating_add(u64::from(valid_days) * DAY_SECS);
        let at = |secs: u64| rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs(secs);
        let mut params = CertificateParams::default();
        params.distinguished_name = name;
        params.subject_alt_names = vec![SanType::URI(uri)];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        params.not_before = at(now.saturating_sub(BACKDATE_SECS));
        params.not_after = at(not_after);
        csr.params = params;
        let cert = csr.signed_by(&self.issuer, &self.key).map_err(crypto)?;

        let serial_hex = serial_hex_of(&serial);
        let subject = x509_parser::parse_x509_certificate(cert.der())
            .map(|(_, parsed)| parsed.subject().to_string())
            .map_err(crypto)?;
        issued.push(IssuedRecord {
            serial_hex: serial_hex.clone(),
            program: program.to_string(),
            subject,
            issued_at_secs: now,
            not_after_secs: not_after,
        });
        write_json_list(&issued_path, &issued)?;
        Ok(IssuedCert {
            serial_hex,
            cert_pem: cert.pem(),
            program: program.to_string(),
        })
    }

    /// Revokes the certificate with this serial (hex, any case, colons allowed); an unknown serial is an error.
    pub fn revoke(&self, serial_hex: &str) -> Result<(), CaError> {
        let serial = normalize_serial(serial_hex)
            .ok_or_else(|| CaError::BadSerial(serial_hex.to_string()))?;
        let _guard = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
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
        let mut cache = self.revoked.lock().unwrap_or_else(|p| p.into_inner());
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

    /// Whether `cert_der` was signed by this CA and is within its validity period at `now_secs`.
    pub fn is_issued_and_valid(&self, cert_der: &[u8], now_secs: u64) -> bool {
        let Ok((rest, cert)) = x509_parser::parse_x509_certificate(cert_der) else {
            return false;
        };
        let Ok((_, ca)) = x509_parser::parse_x509_certificate(&self.ca_cert_der) else {
            return false;
        };
        if !rest.is_empty() || cert.issuer().as_raw() != ca.subject().as_raw() {
            return false;
        }
        if cert.verify_signature(Some(ca.public_key())).is_err() {
            return false;
        }
        let Ok(now) = i64::try_from(now_secs) else {
            return false;
        };
        let validity = cert.validity();
        validity.not_before.timestamp() <= now && now <= validity.not_after.timestamp()
    }

    /// The partner identity of `cert_der` if this CA issued it, it is valid at `now_secs` and names a program; revocation is not checked.
    pub fn verify_issued(&self, cert_der: &[u8], now_secs: u64) -> Option<PartnerIdentity> {
        if !self.is_issued_and_valid(cert_der, now_secs) {
            return None;
        }
        partner_identity(cert_der)
    }

    /// The rustls configuration of the `/secure` listener: a client certificate from this CA, not revoked, is required.
    pub fn server_tls_config(self: &Arc<Self>) -> Result<Arc<rustls::ServerConfig>, CaError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(self.ca_cert_der.clone()))
            .map_err(crypto)?;
        let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(crypto)?;
        let verifier = Arc::new(PartnerCertVerifier {
            inner,
            ca: Arc::clone(self),
        });
        let chain = vec![
            CertificateDer::from(self.server_cert_der.clone()),
            CertificateDer::from(self.ca_cert_der.clone()),
        ];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key_der.clone()));
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(crypto)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(crypto)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        // No session resumption: a resumed session skips client certificate
        // verification, so a revoked partner could keep reconnecting with an
        // old session. Every connection does a full handshake.
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        Ok(Arc::new(config))
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

/// WebPKI chain verification against our CA, then: a program is named and the serial is not revoked.
#[derive(Debug)]
struct PartnerCertVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    ca: Arc<Ca>,
}

impl ClientCertVerifier for PartnerCertVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[TlsDistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let Some(identity) = partner_identity(end_entity.as_ref()) else {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ));
        };
        if self.ca.is_revoked(&identity.serial_hex) {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Revoked,
            ));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
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

    #[test]
    fn program_ids_are_restricted() {
        assert!(is_valid_program("ACME-01.eu_x"));
        assert!(!is_valid_program(""));
        assert!(!is_valid_program("a b"));
        assert!(!is_valid_program("a/b"));
        assert!(!is_valid_program(&"x".repeat(PROGRAM_ID_LEN_MAX + 1)));
    }
}
