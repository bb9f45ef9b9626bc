//! The one list of error codes the HTTP API answers with: each variant is a
//! stable, machine-readable `code` of an error body, and [`ErrorCode::as_str`]
//! is its exact wire text. `manage` and `http` name codes only through this
//! enum; `specs/openapi.json` lists the same set (tests/openapi.rs checks
//! both ways). Owns no HTTP status, no message and no behaviour: it must never
//! depend on `http` (http depends on manage, not the other way round).

/// Defines [`ErrorCode`], its wire text and [`ErrorCode::ALL`] from one table,
/// so that the three cannot disagree.
macro_rules! error_codes {
    ($($(#[$doc:meta])* $variant:ident => $code:literal,)*) => {
        /// A stable, machine-readable error code of the HTTP API.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ErrorCode {
            $($(#[$doc])* $variant,)*
        }

        impl ErrorCode {
            /// Every error code, in alphabetical order of its wire text.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The exact text of the code on the wire (e.g. `"CUSTOMER_NOT_FOUND"`).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)*
                }
            }
        }
    };
}

error_codes! {
    /// `ADMINISTRATOR_EXISTS`: An administrator with this name exists already.
    AdministratorExists => "ADMINISTRATOR_EXISTS",
    /// `ALREADY_ACTIVE`: The card is active already.
    AlreadyActive => "ALREADY_ACTIVE",
    /// `ALREADY_LINKED`: The physical card is linked already.
    AlreadyLinked => "ALREADY_LINKED",
    /// `AMOUNT_TOO_LARGE`: The amount would overflow the balance.
    AmountTooLarge => "AMOUNT_TOO_LARGE",
    /// `BALANCE_EXISTS`: A balance with this id (or of this kind and currency) exists already.
    BalanceExists => "BALANCE_EXISTS",
    /// `BALANCE_NOT_FOUND`: No balance with this id (for this caller).
    BalanceNotFound => "BALANCE_NOT_FOUND",
    /// `CANT_DECRYPT_PAYLOAD`: A JWE request body could not be decrypted.
    CantDecryptPayload => "CANT_DECRYPT_PAYLOAD",
    /// `CARD_DATA_UNAVAILABLE`: The card's sealed data cannot be opened.
    CardDataUnavailable => "CARD_DATA_UNAVAILABLE",
    /// `CARD_KEYS_UNAVAILABLE`: The server runs without card keys, so card operations are off.
    CardKeysUnavailable => "CARD_KEYS_UNAVAILABLE",
    /// `CARD_NOT_FOUND`: No card with this id (for this caller).
    CardNotFound => "CARD_NOT_FOUND",
    /// `CARD_REMOVED`: The card is removed; nothing more can be done with it.
    CardRemoved => "CARD_REMOVED",
    /// `CERTIFICATE_REVOKED`: The partner's client certificate has been revoked.
    CertificateRevoked => "CERTIFICATE_REVOKED",
    /// `CLIENT_CERTIFICATE_REQUIRED`: The route needs a partner client certificate.
    ClientCertificateRequired => "CLIENT_CERTIFICATE_REQUIRED",
    /// `CURRENCY_MISMATCH`: The request's currency is not the balance's.
    CurrencyMismatch => "CURRENCY_MISMATCH",
    /// `CUSTOMER_EXISTS`: A customer with this id exists already.
    CustomerExists => "CUSTOMER_EXISTS",
    /// `CUSTOMER_NOT_FOUND`: No customer with this id (for this caller).
    CustomerNotFound => "CUSTOMER_NOT_FOUND",
    /// `CVV_RESET_NOT_ALLOWED`: The card's CVV2 cannot be reset.
    CvvResetNotAllowed => "CVV_RESET_NOT_ALLOWED",
    /// `DOCUMENT_NOT_FOUND`: No KYC document with this id.
    DocumentNotFound => "DOCUMENT_NOT_FOUND",
    /// `EKYC_NOT_CONFIGURED`: The eKYC provider is not configured.
    EkycNotConfigured => "EKYC_NOT_CONFIGURED",
    /// `ENCRYPTION_REQUIRED`: The request must be a JWE.
    EncryptionRequired => "ENCRYPTION_REQUIRED",
    /// `ENCRYPTION_UNAVAILABLE`: The server has no JWE key, so encrypted answers are off.
    EncryptionUnavailable => "ENCRYPTION_UNAVAILABLE",
    /// `ENGINE_UNAVAILABLE`: The engine is not answering.
    EngineUnavailable => "ENGINE_UNAVAILABLE",
    /// `FORBIDDEN_ROLE`: The administrator's role may not do this.
    ForbiddenRole => "FORBIDDEN_ROLE",
    /// `IDEMPOTENCY_KEY_REQUIRED`: The request needs an `Idempotency-Key` header.
    IdempotencyKeyRequired => "IDEMPOTENCY_KEY_REQUIRED",
    /// `IDEMPOTENCY_KEY_REUSED`: The idempotency key was used with a different request.
    IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED",
    /// `INSTALLATION_REPLACED`: The installation was replaced by a newer pairing.
    InstallationReplaced => "INSTALLATION_REPLACED",
    /// `INTERNAL_ERROR`: An unexpected server failure.
    InternalError => "INTERNAL_ERROR",
    /// `INVALID_AMOUNT`: The amount is not a positive amount in the currency.
    InvalidAmount => "INVALID_AMOUNT",
    /// `INVALID_CREDENTIALS`: Wrong administrator name or password.
    InvalidCredentials => "INVALID_CREDENTIALS",
    /// `INVALID_CURRENCY`: Not an ISO 4217 currency.
    InvalidCurrency => "INVALID_CURRENCY",
    /// `INVALID_DOCUMENT`: The document is not of a type it claims or accepted.
    InvalidDocument => "INVALID_DOCUMENT",
    /// `INVALID_DOCUMENT_SIZE`: The document is empty or too large.
    InvalidDocumentSize => "INVALID_DOCUMENT_SIZE",
    /// `INVALID_FIELD`: A field has a wrong value or type.
    InvalidField => "INVALID_FIELD",
    /// `INVALID_IDEMPOTENCY_KEY`: The `Idempotency-Key` header is malformed.
    InvalidIdempotencyKey => "INVALID_IDEMPOTENCY_KEY",
    /// `INVALID_INSTALLATION`: Unknown installation or wrong installation secret.
    InvalidInstallation => "INVALID_INSTALLATION",
    /// `INVALID_LOCK_REASON`: Not a lock reason this operation accepts.
    InvalidLockReason => "INVALID_LOCK_REASON",
    /// `INVALID_PAIRING_CODE`: The pairing code is unknown, used or expired.
    InvalidPairingCode => "INVALID_PAIRING_CODE",
    /// `INVALID_PATH`: A path parameter is malformed.
    InvalidPath => "INVALID_PATH",
    /// `INVALID_PAYLOAD`: A JWE or callback body is not what it should be.
    InvalidPayload => "INVALID_PAYLOAD",
    /// `INVALID_PIN`: The PIN is not 4 to 12 digits.
    InvalidPin => "INVALID_PIN",
    /// `INVALID_PUBLIC_KEY`: The client's public key for a JWE answer is unusable.
    InvalidPublicKey => "INVALID_PUBLIC_KEY",
    /// `INVALID_QUERY`: A query parameter is malformed.
    InvalidQuery => "INVALID_QUERY",
    /// `INVALID_SESSION`: The session token is unknown.
    InvalidSession => "INVALID_SESSION",
    /// `INVALID_SIGNATURE`: A provider callback's signature does not verify.
    InvalidSignature => "INVALID_SIGNATURE",
    /// `INVALID_TIMESTAMP`: A provider callback's timestamp is malformed.
    InvalidTimestamp => "INVALID_TIMESTAMP",
    /// `KYC_ALREADY_ACCEPTED`: The customer's KYC is accepted already.
    KycAlreadyAccepted => "KYC_ALREADY_ACCEPTED",
    /// `KYC_DECIDED_ELSEWHERE`: The KYC case is decided by the provider, not here.
    KycDecidedElsewhere => "KYC_DECIDED_ELSEWHERE",
    /// `KYC_NOT_ACCEPTED`: The customer's KYC is not accepted.
    KycNotAccepted => "KYC_NOT_ACCEPTED",
    /// `KYC_NOT_IN_PROGRESS`: The customer's KYC case is not waiting for a decision.
    KycNotInProgress => "KYC_NOT_IN_PROGRESS",
    /// `KYC_NOT_STARTED`: The customer has no KYC case.
    KycNotStarted => "KYC_NOT_STARTED",
    /// `KYC_REFERENCE_NOT_FOUND`: No KYC case with this provider reference.
    KycReferenceNotFound => "KYC_REFERENCE_NOT_FOUND",
    /// `LOCK_IRREVERSIBLE`: The card's lock cannot be lifted.
    LockIrreversible => "LOCK_IRREVERSIBLE",
    /// `LOGIN_LOCKED`: Too many failed logins; the administrator is locked for a while.
    LoginLocked => "LOGIN_LOCKED",
    /// `MALFORMED_JSON`: The body is not JSON.
    MalformedJson => "MALFORMED_JSON",
    /// `METHOD_NOT_ALLOWED`: The route exists but not with this method.
    MethodNotAllowed => "METHOD_NOT_ALLOWED",
    /// `MISSING_FIELD`: A required field is missing.
    MissingField => "MISSING_FIELD",
    /// `MISSING_SIGNATURE`: A provider callback carries no signature.
    MissingSignature => "MISSING_SIGNATURE",
    /// `NOT_AN_EXTERNAL_ENTITY`: The route is for the partner's server only.
    NotAnExternalEntity => "NOT_AN_EXTERNAL_ENTITY",
    /// `NOT_A_PHYSICAL_CARD`: The operation is for physical cards only.
    NotAPhysicalCard => "NOT_A_PHYSICAL_CARD",
    /// `NOT_DIGITAL_FIRST`: The operation is for Digital First cards only.
    NotDigitalFirst => "NOT_DIGITAL_FIRST",
    /// `NOT_FOUND`: No such route.
    NotFound => "NOT_FOUND",
    /// `NOT_LOCKED`: The card is not locked.
    NotLocked => "NOT_LOCKED",
    /// `NOT_PERSONALISED`: The physical card is not personalised yet.
    NotPersonalised => "NOT_PERSONALISED",
    /// `NOT_PRINTABLE`: The card cannot be printed.
    NotPrintable => "NOT_PRINTABLE",
    /// `NOT_READY`: The server is not ready (the answer lists the failing checks).
    NotReady => "NOT_READY",
    /// `OPERATION_NOT_FOUND`: No asynchronous operation with this id.
    OperationNotFound => "OPERATION_NOT_FOUND",
    /// `PAN_RANGE_EXHAUSTED`: The program's PAN range has no free number left.
    PanRangeExhausted => "PAN_RANGE_EXHAUSTED",
    /// `PAYLOAD_TOO_LARGE`: The body is larger than the limit.
    PayloadTooLarge => "PAYLOAD_TOO_LARGE",
    /// `PIN_NOT_ALLOWED`: A PIN cannot be set on this card.
    PinNotAllowed => "PIN_NOT_ALLOWED",
    /// `PROGRAM_NOT_FOUND`: No program with this id.
    ProgramNotFound => "PROGRAM_NOT_FOUND",
    /// `REASON_REQUIRED`: A rejection needs a reason.
    ReasonRequired => "REASON_REQUIRED",
    /// `REQUEST_TIMEOUT`: The request took too long to arrive.
    RequestTimeout => "REQUEST_TIMEOUT",
    /// `SESSION_EXPIRED`: The session token has expired.
    SessionExpired => "SESSION_EXPIRED",
    /// `STALE_CALLBACK`: A provider callback is older than allowed.
    StaleCallback => "STALE_CALLBACK",
    /// `STORAGE_UNAVAILABLE`: The change could not be made durable; retry later.
    StorageUnavailable => "STORAGE_UNAVAILABLE",
    /// `TOO_MANY_DOCUMENTS`: The KYC case holds the most documents allowed.
    TooManyDocuments => "TOO_MANY_DOCUMENTS",
    /// `TRUSTED_IDENTITY_BAD_ALGORITHM`: The trusted identity token is not signed with RS256.
    TrustedIdentityBadAlgorithm => "TRUSTED_IDENTITY_BAD_ALGORITHM",
    /// `TRUSTED_IDENTITY_BAD_SIGNATURE`: The trusted identity token's signature does not verify.
    TrustedIdentityBadSignature => "TRUSTED_IDENTITY_BAD_SIGNATURE",
    /// `TRUSTED_IDENTITY_BUSY`: Too many trusted identity checks at once; retry.
    TrustedIdentityBusy => "TRUSTED_IDENTITY_BUSY",
    /// `TRUSTED_IDENTITY_CERTIFICATE_REVOKED`: The trusted identity token's certificate is revoked.
    TrustedIdentityCertificateRevoked => "TRUSTED_IDENTITY_CERTIFICATE_REVOKED",
    /// `TRUSTED_IDENTITY_EXPIRED`: The trusted identity token has expired.
    TrustedIdentityExpired => "TRUSTED_IDENTITY_EXPIRED",
    /// `TRUSTED_IDENTITY_ISSUED_IN_FUTURE`: The trusted identity token is issued in the future.
    TrustedIdentityIssuedInFuture => "TRUSTED_IDENTITY_ISSUED_IN_FUTURE",
    /// `TRUSTED_IDENTITY_MALFORMED`: The trusted identity token is malformed.
    TrustedIdentityMalformed => "TRUSTED_IDENTITY_MALFORMED",
    /// `TRUSTED_IDENTITY_NOT_CONFIGURED`: Trusted identity sign-in is not configured.
    TrustedIdentityNotConfigured => "TRUSTED_IDENTITY_NOT_CONFIGURED",
    /// `TRUSTED_IDENTITY_NO_CERTIFICATE`: The trusted identity token carries no certificate.
    TrustedIdentityNoCertificate => "TRUSTED_IDENTITY_NO_CERTIFICATE",
    /// `TRUSTED_IDENTITY_NO_PROGRAM`: The trusted identity certificate names no program.
    TrustedIdentityNoProgram => "TRUSTED_IDENTITY_NO_PROGRAM",
    /// `TRUSTED_IDENTITY_REUSED_JTI`: The trusted identity token was used already.
    TrustedIdentityReusedJti => "TRUSTED_IDENTITY_REUSED_JTI",
    /// `TRUSTED_IDENTITY_UNKNOWN_USER`: The trusted identity token names an unknown customer.
    TrustedIdentityUnknownUser => "TRUSTED_IDENTITY_UNKNOWN_USER",
    /// `TRUSTED_IDENTITY_UNTRUSTED_CERTIFICATE`: The trusted identity certificate is not from a trusted CA.
    TrustedIdentityUntrustedCertificate => "TRUSTED_IDENTITY_UNTRUSTED_CERTIFICATE",
    /// `UNAUTHORIZED`: The route needs authentication.
    Unauthorized => "UNAUTHORIZED",
    /// `UNKNOWN_FIELD`: The body has a field the operation does not know.
    UnknownField => "UNKNOWN_FIELD",
    /// `UNSUPPORTED_MEDIA_TYPE`: The body's content type is not accepted.
    UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
    /// `WEAK_PASSWORD`: The new password is too weak.
    WeakPassword => "WEAK_PASSWORD",
    /// `WRONG_CHANNEL`: The route is not for this caller's channel.
    WrongChannel => "WRONG_CHANNEL",
}

impl ErrorCode {
    /// The code whose wire text is `text`, if there is one.
    pub fn from_wire(text: &str) -> Option<ErrorCode> {
        ErrorCode::ALL
            .iter()
            .copied()
            .find(|code| code.as_str() == text)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Serialized as its wire text, so a JSON body carries `"code": "CUSTOMER_NOT_FOUND"`.
impl serde::Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorCode;

    #[test]
    fn wire_texts_are_unique_sorted_and_screaming_snake() {
        let texts: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        let mut sorted = texts.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(texts, sorted, "ALL is sorted and has no duplicate");
        for text in texts {
            assert!(
                text.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'),
                "{text}"
            );
            assert_eq!(
                ErrorCode::from_wire(text).map(ErrorCode::as_str),
                Some(text)
            );
        }
    }
}
