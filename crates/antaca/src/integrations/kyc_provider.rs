//! The external eKYC provider: submitting a user's identity data for
//! verification over HTTP, and authenticating the provider's signed callback
//! that carries the decision.
//!
//! Submission data is personal data: it is sent to the provider and never
//! logged or put in an error message. Neither are the API key nor the
//! callback secret (`ProviderConfig`'s `Debug` hides them).

use crate::manage::error::ErrorCode;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::time::Duration;

/// Header carrying the callback signature.
pub const SIGNATURE_HEADER: &str = "X-Kyc-Signature";
/// Header carrying the callback timestamp (Unix seconds).
pub const TIMESTAMP_HEADER: &str = "X-Kyc-Timestamp";
/// Oldest callback accepted.
pub const CALLBACK_AGE_MAX_SECS: u64 = 300;
/// How far ahead of our clock a callback's timestamp may be.
pub const CALLBACK_SKEW_MAX_SECS: u64 = 60;
/// Largest callback body accepted.
pub const CALLBACK_BODY_MAX: usize = 64 * 1024;
/// Largest provider answer read.
const RESPONSE_BODY_MAX: usize = 64 * 1024;
/// Longest provider reference accepted.
const PROVIDER_REFERENCE_MAX: usize = 200;

/// How to reach the eKYC provider and authenticate its callbacks.
#[derive(Clone)]
pub struct ProviderConfig {
    /// Submission endpoint, `http://host:port/path`.
    pub url: String,
    /// Our API key, sent as a bearer token.
    pub api_key: String,
    /// Shared secret of the callback signature.
    pub callback_secret: Vec<u8>,
    /// Where the provider posts its decision.
    pub callback_url: String,
    /// Most time one submission (connect, send, read the answer) may take.
    pub timeout: Duration,
}

impl std::fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderConfig")
            .field("url", &self.url)
            .field("api_key", &"<hidden>")
            .field("callback_secret", &"<hidden>")
            .field("callback_url", &self.callback_url)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// One verification request for a user.
#[derive(Clone, Debug)]
pub struct Submission {
    /// Our user id.
    pub user_id: String,
    /// Our id for this verification; the callback names it.
    pub reference: String,
    /// Identity data: name, birth date, document numbers… (personal data).
    pub data: serde_json::Value,
}

/// The provider took the submission.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderAck {
    /// The provider's id for the verification.
    pub provider_reference: String,
}

/// Why a submission did not reach the provider or was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderError {
    /// The configured URL is not usable.
    InvalidUrl(String),
    /// The provider could not be reached.
    Connect(String),
    /// No complete answer within the configured timeout.
    Timeout(Duration),
    /// The exchange broke off (connection reset, malformed HTTP…).
    Transport(String),
    /// The provider answered with a non-2xx status.
    Status(u16),
    /// A 2xx answer without a usable `providerReference`.
    InvalidResponse(String),
}

impl ProviderError {
    /// A stable code for logs and API answers.
    pub fn code(&self) -> &'static str {
        match self {
            ProviderError::InvalidUrl(_) => "PROVIDER_CONFIG",
            ProviderError::Connect(_) => "PROVIDER_UNREACHABLE",
            ProviderError::Timeout(_) => "PROVIDER_TIMEOUT",
            ProviderError::Transport(_) => "PROVIDER_TRANSPORT",
            ProviderError::Status(_) => "PROVIDER_STATUS",
            ProviderError::InvalidResponse(_) => "PROVIDER_INVALID_RESPONSE",
        }
    }

    /// True when trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            ProviderError::Connect(_) | ProviderError::Timeout(_) | ProviderError::Transport(_) => {
                true
            }
            ProviderError::Status(status) => *status == 429 || *status >= 500,
            ProviderError::InvalidUrl(_) | ProviderError::InvalidResponse(_) => false,
        }
    }
}

impl std::fmt::Display for ProviderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProviderError::InvalidUrl(why) => {
                write!(f, "the eKYC provider URL is not usable: {why}")
            }
            ProviderError::Connect(why) => write!(
                f,
                "could not connect to the eKYC provider ({why}); check its URL and that it is up"
            ),
            ProviderError::Timeout(limit) => write!(
                f,
                "the eKYC provider did not answer within {} ms; try again later",
                limit.as_millis()
            ),
            ProviderError::Transport(why) => {
                write!(f, "the exchange with the eKYC provider failed: {why}")
            }
            ProviderError::Status(401 | 403) => f.write_str(
                "the eKYC provider refused our credentials; check the configured API key",
            ),
            ProviderError::Status(status) => {
                write!(f, "the eKYC provider answered HTTP {status}")
            }
            ProviderError::InvalidResponse(why) => {
                write!(f, "the eKYC provider's answer is not understood: {why}")
            }
        }
    }
}

impl std::error::Error for ProviderError {}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SubmissionBody<'a> {
    reference: &'a str,
    user_id: &'a str,
    data: &'a serde_json::Value,
    callback_url: &'a str,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AckBody {
    provider_reference: String,
}

/// Checks and parses the configured URL: plain `http` with a host.
fn endpoint(url: &str) -> Result<Uri, ProviderError> {
    let uri: Uri = url
        .parse()
        .map_err(|e| ProviderError::InvalidUrl(format!("{url:?}: {e}")))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => {
            return Err(ProviderError::InvalidUrl(format!(
                "scheme {other:?} is not supported; use http://"
            )))
        }
        None => return Err(ProviderError::InvalidUrl(format!("{url:?} has no scheme"))),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(ProviderError::InvalidUrl(format!("{url:?} has no host")));
    }
    Ok(uri)
}

/// Sends a submission to the provider and returns its reference for it.
pub async fn submit(
    config: &ProviderConfig,
    submission: &Submission,
) -> Result<ProviderAck, ProviderError> {
    let uri = endpoint(&config.url)?;
    let body = serde_json::to_vec(&SubmissionBody {
        reference: &submission.reference,
        user_id: &submission.user_id,
        data: &submission.data,
        callback_url: &config.callback_url,
    })
    .map_err(|e| ProviderError::InvalidResponse(format!("could not encode the submission: {e}")))?;
    let request = Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::ACCEPT, "application/json")
        .header(
            hyper::header::AUTHORIZATION,
            format!("Bearer {}", config.api_key),
        )
        .body(Full::new(Bytes::from(body)))
        .map_err(|_| {
            // The message would name the header value, i.e. the key: keep it out.
            ProviderError::InvalidUrl(
                "the request could not be built; check the API key's characters".into(),
            )
        })?;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let exchange = async {
        let response = client.request(request).await.map_err(|e| {
            if e.is_connect() {
                ProviderError::Connect(error_chain(&e))
            } else {
                ProviderError::Transport(error_chain(&e))
            }
        })?;
        let status = response.status();
        let bytes = Limited::new(response.into_body(), RESPONSE_BODY_MAX)
            .collect()
            .await
            .map_err(|e| ProviderError::Transport(format!("reading the answer: {e}")))?
            .to_bytes();
        Ok::<_, ProviderError>((status, bytes))
    };
    let (status, bytes) = tokio::time::timeout(config.timeout, exchange)
        .await
        .map_err(|_| ProviderError::Timeout(config.timeout))??;
    accept(status, &bytes)
}

/// Reads the provider's answer: 2xx with a non-empty `providerReference`.
fn accept(status: StatusCode, bytes: &[u8]) -> Result<ProviderAck, ProviderError> {
    if !status.is_success() {
        return Err(ProviderError::Status(status.as_u16()));
    }
    let ack: AckBody = serde_json::from_slice(bytes).map_err(|e| {
        ProviderError::InvalidResponse(format!("expected JSON with \"providerReference\": {e}"))
    })?;
    let reference = ack.provider_reference.trim();
    if reference.is_empty() || reference.len() > PROVIDER_REFERENCE_MAX {
        return Err(ProviderError::InvalidResponse(
            "\"providerReference\" is empty or too long".into(),
        ));
    }
    Ok(ProviderAck {
        provider_reference: reference.to_string(),
    })
}

/// An error and its causes on one line ("connection refused" sits in the source).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The provider's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KycDecision {
    /// The identity is verified.
    Approved,
    /// The identity could not be verified.
    Rejected,
}

/// An authenticated callback from the provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallbackDecision {
    /// Our reference given at submission.
    pub reference: String,
    /// The verdict.
    pub decision: KycDecision,
    /// The provider's reason, mostly for rejections.
    pub reason: Option<String>,
}

/// Why a callback is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackError {
    /// No `X-Kyc-Signature` header.
    MissingSignature,
    /// No `X-Kyc-Timestamp` header, or not Unix seconds.
    InvalidTimestamp,
    /// The signature does not match the body and timestamp.
    InvalidSignature,
    /// Signed too long ago, or too far in the future (seconds off our clock, positive = in the past).
    StaleCallback(i128),
    /// The body is not `{"reference","decision","reason"}`.
    InvalidPayload(String),
}

impl CallbackError {
    /// A stable code for the HTTP answer and logs.
    pub fn code(&self) -> ErrorCode {
        match self {
            CallbackError::MissingSignature => ErrorCode::MissingSignature,
            CallbackError::InvalidTimestamp => ErrorCode::InvalidTimestamp,
            CallbackError::InvalidSignature => ErrorCode::InvalidSignature,
            CallbackError::StaleCallback(_) => ErrorCode::StaleCallback,
            CallbackError::InvalidPayload(_) => ErrorCode::InvalidPayload,
        }
    }
}

impl std::fmt::Display for CallbackError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallbackError::MissingSignature => write!(f, "the {SIGNATURE_HEADER} header is missing"),
            CallbackError::InvalidTimestamp => write!(
                f,
                "the {TIMESTAMP_HEADER} header is missing or not Unix seconds"
            ),
            CallbackError::InvalidSignature => f.write_str(
                "the signature does not match; check the shared callback secret",
            ),
            CallbackError::StaleCallback(age) if *age < 0 => write!(
                f,
                "the callback is dated {}s in the future (at most {CALLBACK_SKEW_MAX_SECS}s allowed); check the clocks",
                -age
            ),
            CallbackError::StaleCallback(age) => write!(
                f,
                "the callback was signed {age}s ago (at most {CALLBACK_AGE_MAX_SECS}s allowed)"
            ),
            CallbackError::InvalidPayload(why) => write!(f, "the callback body is malformed: {why}"),
        }
    }
}

impl std::error::Error for CallbackError {}

fn mac(secret: &[u8], timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes a key of any length; new_from_slice cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `X-Kyc-Signature` value of a callback: hex HMAC-SHA256 of `"{timestamp}.{body}"`.
pub fn sign_callback(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    hex::encode(
        mac(secret, &timestamp.to_string(), body)
            .finalize()
            .into_bytes(),
    )
}

#[derive(Deserialize)]
struct CallbackBody {
    reference: String,
    decision: KycDecision,
    #[serde(default)]
    reason: Option<String>,
}

/// Authenticates a provider callback and reads its decision.
pub fn verify_callback(
    secret: &[u8],
    body: &[u8],
    signature_header: Option<&str>,
    timestamp_header: Option<&str>,
    now_secs: u64,
) -> Result<CallbackDecision, CallbackError> {
    if body.len() > CALLBACK_BODY_MAX {
        return Err(CallbackError::InvalidPayload(format!(
            "larger than {CALLBACK_BODY_MAX} bytes"
        )));
    }
    let signature = signature_header
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or(CallbackError::MissingSignature)?;
    let timestamp_text = timestamp_header
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 20 && t.bytes().all(|b| b.is_ascii_digit()))
        .ok_or(CallbackError::InvalidTimestamp)?;
    let timestamp: u64 = timestamp_text
        .parse()
        .map_err(|_| CallbackError::InvalidTimestamp)?;
    let signature = hex::decode(signature).map_err(|_| CallbackError::InvalidSignature)?;
    // Constant-time comparison.
    mac(secret, timestamp_text, body)
        .verify_slice(&signature)
        .map_err(|_| CallbackError::InvalidSignature)?;
    // From here the sender knows the secret; what is left is replay and shape.
    let age = i128::from(now_secs) - i128::from(timestamp);
    if age > i128::from(CALLBACK_AGE_MAX_SECS) || -age > i128::from(CALLBACK_SKEW_MAX_SECS) {
        return Err(CallbackError::StaleCallback(age));
    }
    let parsed: CallbackBody = serde_json::from_slice(body).map_err(|e| {
        CallbackError::InvalidPayload(format!(
            "expected {{\"reference\", \"decision\": \"approved\"|\"rejected\", \"reason\"}}: {e}"
        ))
    })?;
    let reference = parsed.reference.trim();
    if reference.is_empty() {
        return Err(CallbackError::InvalidPayload(
            "\"reference\" is empty".into(),
        ));
    }
    Ok(CallbackDecision {
        reference: reference.to_string(),
        decision: parsed.decision,
        reason: parsed.reason.filter(|r| !r.trim().is_empty()),
    })
}
