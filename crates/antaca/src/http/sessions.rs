//! Sessions of the app and admin channels, device pairing codes, and the
//! administrators' credentials.
//!
//! Session tokens and pairing codes live in memory (a restart signs everyone
//! out); installations and administrators are records in the store.

use crate::manage::error::ErrorCode;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// An administrator's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// Everything, including partner balances and administrators.
    Admin,
    /// Day-to-day operations: KYC decisions, balances, reloads.
    Manager,
    /// Read-only views and document uploads.
    Employee,
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        match s.to_ascii_lowercase().as_str() {
            "admin" => Ok(Role::Admin),
            "manager" => Ok(Role::Manager),
            "employee" => Ok(Role::Employee),
            _ => Err(format!("role {s:?} is not Admin, Manager or Employee")),
        }
    }
}

/// An administrator, kept as the record `admin/{login}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Administrator {
    /// Login.
    pub login: String,
    /// Role.
    pub role: Role,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// Wrong passwords in a row.
    #[serde(default)]
    pub failed_attempts: u32,
    /// Locked until this time (ms since epoch).
    #[serde(default)]
    pub locked_until_ms: u64,
}

/// Record key of an administrator.
pub fn admin_key(login: &str) -> String {
    format!("admin/{login}")
}

/// An Argon2id hash of a password.
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// A real hash of nothing in particular: checked against for unknown logins,
/// so that a login's existence does not show in the time a refusal takes.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("not a password of anyone").unwrap_or_default())
}

/// Whether `password` matches the PHC string.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// Why a new administrator is refused (the panel and `antaca admin add` say the same).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NewAdministratorError {
    /// The login is empty, longer than 64 bytes, or has a character other than letters, digits and `-_.@`.
    InvalidLogin,
    /// The password has fewer than 12 characters.
    WeakPassword,
    /// The password could not be hashed.
    Hash(String),
}

impl NewAdministratorError {
    /// The error code the HTTP plane answers with.
    pub fn code(&self) -> ErrorCode {
        match self {
            NewAdministratorError::InvalidLogin | NewAdministratorError::Hash(_) => {
                ErrorCode::InvalidField
            }
            NewAdministratorError::WeakPassword => ErrorCode::WeakPassword,
        }
    }
}

impl std::fmt::Display for NewAdministratorError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NewAdministratorError::InvalidLogin => {
                f.write_str("login is 1 to 64 letters, digits or -_.@")
            }
            NewAdministratorError::WeakPassword => {
                f.write_str("a password has at least 12 characters")
            }
            NewAdministratorError::Hash(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for NewAdministratorError {}

/// Checks a new administrator's login and password.
fn validate_new_administrator(login: &str, password: &str) -> Result<(), NewAdministratorError> {
    if login.is_empty()
        || login.len() > 64
        || !login
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b))
    {
        return Err(NewAdministratorError::InvalidLogin);
    }
    if password.chars().count() < 12 {
        return Err(NewAdministratorError::WeakPassword);
    }
    Ok(())
}

/// The record of a new administrator: login and password checked, then the
/// password hashed (Argon2id is slow: keep it off the network thread).
pub fn new_administrator(
    login: &str,
    password: &str,
    role: Role,
) -> Result<Administrator, NewAdministratorError> {
    validate_new_administrator(login, password)?;
    let password_hash = hash_password(password).map_err(NewAdministratorError::Hash)?;
    Ok(Administrator {
        login: login.to_string(),
        role,
        password_hash,
        failed_attempts: 0,
        locked_until_ms: 0,
    })
}

/// Adds a new administrator's record unless its login exists; `false` (and
/// nothing changed) when it does.
pub fn insert_administrator(
    state: &mut crate::engine::state::State,
    changes: &mut crate::engine::state::Changes,
    admin: &Administrator,
) -> bool {
    let key = admin_key(&admin.login);
    if state.records.contains_key(&key) {
        return false;
    }
    changes.put_record(state, &key, admin);
    true
}

/// A device installation, kept as the record `device/{user}/{installation}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Installation {
    /// Installation id.
    pub installation_id: String,
    /// The customer.
    pub user: String,
    /// The device's own id.
    pub device_id: String,
    /// SHA-256 of the installation secret, hex.
    pub secret_sha256: String,
    /// False once another installation on the same device replaced it.
    pub active: bool,
    /// Paired when (ms since epoch).
    pub created_ms: u64,
}

/// Record key of an installation.
pub fn installation_key(user: &str, installation: &str) -> String {
    format!("device/{user}/{installation}")
}

/// SHA-256 hex of a secret.
pub fn sha256_hex(secret: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(secret.as_bytes()))
}

/// A random token: 32 bytes, hex.
pub fn random_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// Who a session belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    /// A cardholder, through one installation (or a trusted identity).
    Customer {
        /// The customer.
        user: String,
        /// The customer's program.
        program: String,
        /// The installation, when the session came from pairing.
        installation: Option<String>,
    },
    /// An administrator.
    Admin {
        /// Login.
        login: String,
        /// Role.
        role: Role,
    },
}

#[derive(Clone, Debug)]
struct Session {
    subject: Subject,
    expires_ms: u64,
}

/// Why a session token was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionError {
    /// No such token.
    Unknown,
    /// The token expired.
    Expired,
}

/// A pairing code the partner's server obtained for a customer.
#[derive(Clone, Debug)]
pub struct PairingCode {
    /// The customer.
    pub user: String,
    /// Valid until (ms since epoch).
    pub expires_ms: u64,
}

/// Session tokens and pairing codes, in memory.
pub struct Sessions {
    sessions: Mutex<HashMap<String, Session>>,
    pairing: Mutex<HashMap<String, PairingCode>>,
    /// Lifetime of an app session.
    pub customer_ttl: Duration,
    /// Lifetime of an admin session.
    pub admin_ttl: Duration,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Sessions {
    /// Empty, with the session lifetimes.
    pub fn new(customer_ttl: Duration, admin_ttl: Duration) -> Sessions {
        Sessions {
            sessions: Mutex::new(HashMap::new()),
            pairing: Mutex::new(HashMap::new()),
            customer_ttl,
            admin_ttl,
        }
    }

    /// Starts a session; returns the token and its expiry.
    pub fn start(&self, subject: Subject, now_ms: u64) -> (String, u64) {
        let ttl = match subject {
            Subject::Customer { .. } => self.customer_ttl,
            Subject::Admin { .. } => self.admin_ttl,
        };
        let expires_ms = now_ms.saturating_add(ms(ttl));
        let token = random_token();
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        // Bounded by live sessions: expired ones go whenever a new one starts.
        sessions.retain(|_, s| s.expires_ms > now_ms);
        sessions.insert(
            token.clone(),
            Session {
                subject,
                expires_ms,
            },
        );
        (token, expires_ms)
    }

    /// The subject of a live token.
    pub fn check(&self, token: &str, now_ms: u64) -> Result<Subject, SessionError> {
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        match sessions.get(token) {
            None => Err(SessionError::Unknown),
            Some(s) if s.expires_ms <= now_ms => {
                sessions.remove(token);
                Err(SessionError::Expired)
            }
            Some(s) => Ok(s.subject.clone()),
        }
    }

    /// Ends a session.
    pub fn end(&self, token: &str) {
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(token);
    }

    /// Ends every session of an installation (it was replaced on its device).
    pub fn end_installation(&self, installation: &str) {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner).retain(|_, s| {
            !matches!(&s.subject, Subject::Customer { installation: Some(i), .. } if i == installation)
        });
    }

    /// A new single-use pairing code for a customer, valid `ttl`.
    pub fn new_pairing_code(&self, user: &str, ttl: Duration, now_ms: u64) -> (String, u64) {
        let code = hex::encode(rand::random::<[u8; 10]>());
        let expires_ms = now_ms.saturating_add(ms(ttl));
        let mut codes = self.pairing.lock().unwrap_or_else(PoisonError::into_inner);
        codes.retain(|_, c| c.expires_ms > now_ms);
        codes.insert(
            sha256_hex(&code),
            PairingCode {
                user: user.to_string(),
                expires_ms,
            },
        );
        (code, expires_ms)
    }

    /// Uses up a pairing code.
    pub fn take_pairing_code(&self, code: &str, now_ms: u64) -> Option<PairingCode> {
        let mut codes = self.pairing.lock().unwrap_or_else(PoisonError::into_inner);
        codes
            .remove(&sha256_hex(code))
            .filter(|c| c.expires_ms > now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_and_end() {
        let sessions = Sessions::new(Duration::from_mins(10), Duration::from_mins(15));
        let subject = Subject::Admin {
            login: "a".into(),
            role: Role::Admin,
        };
        let (token, expires) = sessions.start(subject.clone(), 1_000);
        assert_eq!(expires, 901_000);
        assert_eq!(sessions.check(&token, 900_999), Ok(subject));
        assert_eq!(sessions.check(&token, 901_000), Err(SessionError::Expired));
        assert_eq!(sessions.check(&token, 901_000), Err(SessionError::Unknown));
        assert_eq!(sessions.check("nope", 0), Err(SessionError::Unknown));
    }

    #[test]
    fn pairing_codes_are_single_use_and_expire() {
        let sessions = Sessions::new(Duration::from_mins(10), Duration::from_mins(15));
        let (code, _) = sessions.new_pairing_code("u-1", Duration::from_mins(1), 0);
        assert_eq!(
            sessions.take_pairing_code(&code, 1).map(|c| c.user),
            Some("u-1".into())
        );
        assert!(sessions.take_pairing_code(&code, 1).is_none());
        let (late, _) = sessions.new_pairing_code("u-1", Duration::from_mins(1), 0);
        assert!(sessions.take_pairing_code(&late, 60_000).is_none());
    }

    #[test]
    fn passwords_hash_and_verify() {
        let hash = hash_password("correct horse").expect("hash");
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong", &hash));
        assert!(!verify_password("x", "not a hash"));
    }
}
