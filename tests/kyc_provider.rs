//! The eKYC provider adapter against the provider stub in `support` (real
//! HTTP on 127.0.0.1:0), and the callback signature check.

mod support;

use antaca::integrations::kyc_provider::{
    self, sign_callback, verify_callback, CallbackError, KycDecision, ProviderConfig,
    ProviderError, Submission,
};
use serde_json::json;
use std::time::Duration;
use support::{ProviderMode, ProviderStub};

const KEY: &str = "test-api-key";
const SECRET: &[u8] = b"callback secret";
const NOW: u64 = 1_760_000_000;

fn config(url: String) -> ProviderConfig {
    ProviderConfig {
        url,
        api_key: KEY.into(),
        callback_secret: SECRET.to_vec(),
        callback_url: "http://antaca.test/kyc/callback".into(),
        timeout: Duration::from_secs(5),
    }
}

fn submission() -> Submission {
    Submission {
        user_id: "u-ok".into(),
        reference: "kyc-1".into(),
        data: json!({"name": "Ada Lovelace", "birthDate": "1815-12-10", "document": "X1234567"}),
    }
}

#[tokio::test]
async fn a_submission_is_posted_with_the_key_and_acknowledged() {
    let stub = ProviderStub::start(KEY).await;
    let ack = kyc_provider::submit(&config(stub.url()), &submission())
        .await
        .expect("accepted");
    assert_eq!(ack.provider_reference, "prv-1");
    let seen = stub.submissions();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, support::PROVIDER_PATH);
    assert_eq!(
        seen[0].authorization.as_deref(),
        Some("Bearer test-api-key")
    );
    assert_eq!(
        seen[0].body,
        json!({
            "reference": "kyc-1",
            "userId": "u-ok",
            "data": {"name": "Ada Lovelace", "birthDate": "1815-12-10", "document": "X1234567"},
            "callbackUrl": "http://antaca.test/kyc/callback"
        })
    );
}

#[tokio::test]
async fn a_wrong_key_is_an_error_that_names_the_key() {
    let stub = ProviderStub::start("another key").await;
    let error = kyc_provider::submit(&config(stub.url()), &submission())
        .await
        .expect_err("refused");
    assert_eq!(error, ProviderError::Status(401));
    assert_eq!(error.code(), "PROVIDER_STATUS");
    assert!(!error.is_retryable());
    let text = error.to_string();
    assert!(text.contains("API key"), "{text}");
    assert!(!text.contains(KEY), "the key leaks: {text}");
}

#[tokio::test]
async fn server_errors_and_bad_answers_are_errors() {
    let stub = ProviderStub::start(KEY).await;
    stub.set_mode(ProviderMode::Status(503));
    let error = kyc_provider::submit(&config(stub.url()), &submission())
        .await
        .expect_err("503");
    assert_eq!(error, ProviderError::Status(503));
    assert!(error.is_retryable());

    stub.set_mode(ProviderMode::BadJson);
    let error = kyc_provider::submit(&config(stub.url()), &submission())
        .await
        .expect_err("bad json");
    assert!(
        matches!(error, ProviderError::InvalidResponse(_)),
        "{error:?}"
    );
    assert_eq!(error.code(), "PROVIDER_INVALID_RESPONSE");
}

#[tokio::test]
async fn a_provider_that_is_down_is_an_error() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = closed.local_addr().expect("addr");
    drop(closed);
    let error = kyc_provider::submit(
        &config(format!("http://{addr}/v1/verifications")),
        &submission(),
    )
    .await
    .expect_err("down");
    assert!(matches!(error, ProviderError::Connect(_)), "{error:?}");
    assert_eq!(error.code(), "PROVIDER_UNREACHABLE");
    assert!(error.is_retryable());
}

#[tokio::test]
async fn a_slow_provider_times_out() {
    let stub = ProviderStub::start(KEY).await;
    stub.set_mode(ProviderMode::Delay(Duration::from_secs(30)));
    let mut config = config(stub.url());
    config.timeout = Duration::from_millis(200);
    let error = kyc_provider::submit(&config, &submission())
        .await
        .expect_err("timeout");
    assert_eq!(error, ProviderError::Timeout(Duration::from_millis(200)));
    assert_eq!(error.code(), "PROVIDER_TIMEOUT");
}

#[tokio::test]
async fn an_unusable_url_is_refused_before_any_connection() {
    for url in ["https://provider.test/v1", "provider.test/v1", "not a url"] {
        let error = kyc_provider::submit(&config(url.into()), &submission())
            .await
            .expect_err("invalid url");
        assert!(
            matches!(error, ProviderError::InvalidUrl(_)),
            "{url}: {error:?}"
        );
    }
}

#[test]
fn the_config_debug_hides_the_secrets() {
    let text = format!("{:?}", config("http://provider.test/v1".into()));
    assert!(!text.contains(KEY));
    assert!(!text.contains("callback secret"));
}

fn approved() -> Vec<u8> {
    br#"{"reference":"kyc-1","decision":"approved","reason":null}"#.to_vec()
}

fn verify(
    body: &[u8],
    signature: Option<&str>,
    timestamp: u64,
    now: u64,
) -> Result<kyc_provider::CallbackDecision, CallbackError> {
    verify_callback(SECRET, body, signature, Some(&timestamp.to_string()), now)
}

#[test]
fn a_validly_signed_callback_is_accepted() {
    let body = approved();
    let signature = sign_callback(SECRET, NOW, &body);
    assert_eq!(signature.len(), 64);
    let decision = verify(&body, Some(&signature), NOW, NOW).expect("valid");
    assert_eq!(decision.reference, "kyc-1");
    assert_eq!(decision.decision, KycDecision::Approved);
    assert_eq!(decision.reason, None);

    let body = br#"{"reference":"kyc-2","decision":"rejected","reason":"document expired"}"#;
    let signature = sign_callback(SECRET, NOW - 10, body);
    let decision = verify(body, Some(&signature.to_uppercase()), NOW - 10, NOW).expect("valid");
    assert_eq!(decision.decision, KycDecision::Rejected);
    assert_eq!(decision.reason.as_deref(), Some("document expired"));
}

#[test]
fn a_tampered_body_or_a_wrong_secret_is_an_invalid_signature() {
    let body = approved();
    let signature = sign_callback(SECRET, NOW, &body);
    let tampered = br#"{"reference":"kyc-1","decision":"rejected","reason":null}"#;
    let error = verify(tampered, Some(&signature), NOW, NOW).expect_err("tampered");
    assert_eq!(error.code().as_str(), "INVALID_SIGNATURE");

    let forged = sign_callback(b"another secret", NOW, &body);
    assert_eq!(
        verify(&body, Some(&forged), NOW, NOW),
        Err(CallbackError::InvalidSignature)
    );
    // The timestamp is signed too.
    assert_eq!(
        verify(&body, Some(&signature), NOW + 1, NOW),
        Err(CallbackError::InvalidSignature)
    );
    for garbage in ["zz", "abcd", &signature[..62]] {
        assert_eq!(
            verify(&body, Some(garbage), NOW, NOW),
            Err(CallbackError::InvalidSignature)
        );
    }
}

#[test]
fn stale_and_future_callbacks_are_refused() {
    let body = approved();
    let at = |t: u64| sign_callback(SECRET, t, &body);
    assert!(verify(&body, Some(&at(NOW - 300)), NOW - 300, NOW).is_ok());
    let error = verify(&body, Some(&at(NOW - 301)), NOW - 301, NOW).expect_err("stale");
    assert_eq!(error.code().as_str(), "STALE_CALLBACK");
    assert!(verify(&body, Some(&at(NOW + 60)), NOW + 60, NOW).is_ok());
    let error = verify(&body, Some(&at(NOW + 61)), NOW + 61, NOW).expect_err("future");
    assert_eq!(error, CallbackError::StaleCallback(-61));
}

#[test]
fn missing_headers_are_refused() {
    let body = approved();
    let signature = sign_callback(SECRET, NOW, &body);
    let error = verify_callback(SECRET, &body, None, Some(&NOW.to_string()), NOW)
        .expect_err("no signature");
    assert_eq!(error.code().as_str(), "MISSING_SIGNATURE");
    let error =
        verify_callback(SECRET, &body, Some(&signature), None, NOW).expect_err("no timestamp");
    assert_eq!(error.code().as_str(), "INVALID_TIMESTAMP");
    for bad in ["", "+1760000000", "1760000000.5", "soon"] {
        assert_eq!(
            verify_callback(SECRET, &body, Some(&signature), Some(bad), NOW),
            Err(CallbackError::InvalidTimestamp),
            "{bad:?}"
        );
    }
}

#[test]
fn a_signed_but_malformed_body_is_an_invalid_payload() {
    for body in [
        &br#"{"reference":"kyc-1","decision":"maybe"}"#[..],
        br#"{"decision":"approved"}"#,
        br#"{"reference":"","decision":"approved"}"#,
        b"not json",
    ] {
        let signature = sign_callback(SECRET, NOW, body);
        let error = verify(body, Some(&signature), NOW, NOW).expect_err("malformed");
        assert_eq!(
            error.code().as_str(),
            "INVALID_PAYLOAD",
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    let huge = vec![b' '; kyc_provider::CALLBACK_BODY_MAX + 1];
    let signature = sign_callback(SECRET, NOW, &huge);
    assert_eq!(
        verify(&huge, Some(&signature), NOW, NOW).map_err(|e| e.code().as_str()),
        Err("INVALID_PAYLOAD")
    );
}
