//! Creating the CA and issuing certificates: `ca init` and `load` (with the
//! `/secure` listener's own certificate, reissued before it expires), signing a
//! partner's CSR into `issued.json`, and checking that a certificate is ours.
//! Never touches the revocation list or a connection.

use super::revocation::{serial_hex_of, RevokedCache};
use super::{
    corrupt, create_private_dir, crypto, first_pem_cert, is_valid_program, now_secs,
    partner_identity, read_json_list, read_optional, replace_file, write_json_list, write_new, Ca,
    CaError, DirLock, IssuedCert, IssuedRecord, PartnerIdentity, BACKDATE_SECS, CA_CERT_FILE,
    CA_COMMON_NAME, CA_DIR, CA_KEY_FILE, CA_VALID_DAYS, DAY_SECS, ISSUED_FILE,
    PARTNER_VALID_DAYS_MAX, PROGRAM_URI_PREFIX, SERVER_CERT_FILE, SERVER_KEY_FILE,
    SERVER_RENEW_BEFORE_DAYS, SERVER_VALID_DAYS,
};
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, CertificateSigningRequestParams,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
    SerialNumber,
};
use rustls::pki_types::CertificateDer;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

fn random_serial() -> [u8; 16] {
    let mut bytes: [u8; 16] = rand::random();
    // Positive (top bit clear) and without a leading zero byte, so the DER
    // integer is exactly these 16 bytes and the hex is stable.
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    bytes
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

        let _guard = self
            .write_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
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
}
