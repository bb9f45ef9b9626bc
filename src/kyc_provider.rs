//! TEMPORARY: the eKYC provider adapter lands from branch `notify`.
#![allow(missing_docs, clippy::all, dead_code)]
use std::time::Duration;
#[derive(Clone, Debug)]
pub struct ProviderConfig {
    pub url: String,
    pub api_key: String,
    pub callback_secret: Vec<u8>,
    pub callback_url: String,
    pub timeout: Duration,
}
pub struct Submission {
    pub user_id: String,
    pub reference: String,
    pub data: serde_json::Value,
}
pub struct ProviderAck {
    pub provider_reference: String,
}
#[derive(Debug)]
pub struct ProviderError(pub String);
impl std::fmt::Display for ProviderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
pub async fn submit(_: &ProviderConfig, _: &Submission) -> Result<ProviderAck, ProviderError> {
    Err(ProviderError("not wired".into()))
}
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KycDecision {
    Approved,
    Rejected,
}
pub struct CallbackDecision {
    pub reference: String,
    pub decision: KycDecision,
    pub reason: Option<String>,
}
#[derive(Debug)]
pub struct CallbackError;
impl CallbackError {
    pub fn code(&self) -> &'static str {
        "INVALID_SIGNATURE"
    }
}
impl std::fmt::Display for CallbackError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("invalid")
    }
}
pub fn verify_callback(
    _: &[u8],
    _: &[u8],
    _: Option<&str>,
    _: Option<&str>,
    _: u64,
) -> Result<CallbackDecision, CallbackError> {
    Err(CallbackError)
}
