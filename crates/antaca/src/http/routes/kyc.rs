//! KYC: registration (manual or automatic), identity documents, the panel's
//! manual decision, the partner's external decision, and automatic eKYC (the
//! case is sent to the configured provider once committed; the provider's
//! signed callback decides it). Cases change only through the writer.

use super::scope::{actor, apply, customer_scope, day_param, inspect};
use super::{Call, Principal};
use crate::http::api::{self, created, ok, parse_json, ApiError, HttpResponse};
use crate::http::HttpContext;
use crate::integrations::kyc_provider::{self, KycDecision, Submission};
use crate::manage::error::ErrorCode;
use crate::manage::kyc::Decider;
use crate::manage::kyc::KycCase;
use crate::manage::kyc::KycMode;
use crate::manage::{self, ManageError};
use bytes::Bytes;
use hyper::StatusCode;
use serde::Deserialize;
use std::sync::Arc;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RegisterRequest {
    #[serde(default)]
    mode: Option<KycMode>,
    #[serde(default)]
    data: Option<serde_json::Value>,
}

pub(super) async fn register(ctx: Arc<HttpContext>, call: Call) -> Result<HttpResponse, ApiError> {
    let (user, program) = customer_scope(&call)?;
    let body: RegisterRequest = if call.body.is_empty() {
        RegisterRequest {
            mode: None,
            data: None,
        }
    } else {
        parse_json(&call.headers, &call.body)?
    };
    let mode = body.mode.unwrap_or(KycMode::Manual);
    if mode == KycMode::External {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidField,
            "external KYC is set with PUT /secure/customers/{customerId}/kyc",
        ));
    }
    if mode == KycMode::Automatic && ctx.kyc_provider.is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::EkycNotConfigured,
            "no eKYC provider is configured; use manual KYC",
        ));
    }
    let data = body.data.unwrap_or_else(|| serde_json::json!({}));
    let case = apply(&ctx, move |state, changes, now| {
        manage::kyc::start_kyc(state, changes, &user, program.as_deref(), mode, data, now)
    })
    .await?;
    if mode == KycMode::Automatic {
        submit_in_background(ctx.clone(), case.clone());
    }
    Ok(api::json_response(StatusCode::ACCEPTED, &case))
}

pub(super) async fn me_kyc(ctx: Arc<HttpContext>, call: Call) -> Result<HttpResponse, ApiError> {
    let (user, _) = customer_scope(&call)?;
    let case: Option<manage::kyc::KycCase> = inspect(&ctx, move |state| {
        Ok(state.record(&manage::kyc::kyc_key(&user)))
    })
    .await?;
    match case {
        Some(case) => ok(&case),
        None => Err(ApiError::not_found(
            ErrorCode::KycNotStarted,
            "no KYC submission yet",
        )),
    }
}

pub(super) async fn upload_document(
    ctx: Arc<HttpContext>,
    call: Call,
) -> Result<HttpResponse, ApiError> {
    let (user, program) = customer_scope(&call)?;
    let kind = call.param("kind")?.to_string();
    let content_type = call
        .headers
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    let by = actor(&call);
    let body = call.body;
    if let Err(invalid) = manage::kyc::validate_document(&kind, &content_type, &body) {
        // An unknown customer answers before a bad document, as it always did.
        inspect(&ctx, move |state| {
            manage::customers::customer(state, &user, program.as_deref()).map(|_| ())
        })
        .await?;
        return Err(invalid.into());
    }
    // Refuse before any byte reaches the disk: a customer whose case is
    // accepted or full must not be able to leave files behind.
    {
        let (user, program) = (user.clone(), program.clone());
        inspect(&ctx, move |state| {
            manage::kyc::can_add_document(state, &user, program.as_deref())
        })
        .await?;
    }
    // The bytes go to their blob here, off the writer; the writer records
    // only the metadata and checks again. Only a race with another upload
    // (the case filling up in between) can leave an unreferenced blob.
    let blobs = ctx.blobs.clone().ok_or_else(document_storage_error)?;
    let size = body.len();
    let sha256 = tokio::task::spawn_blocking(move || blobs.put(&body))
        .await
        .map_err(|_| document_storage_error())?
        .map_err(|e| {
            tracing::error!(error = %e, "KYC document not stored");
            document_storage_error()
        })?;
    let upload = manage::kyc::DocumentUpload {
        kind,
        content_type,
        size,
        sha256,
        uploaded_by: by,
    };
    let meta = apply(&ctx, move |state, changes, now| {
        manage::kyc::add_document(state, changes, &user, program.as_deref(), upload, now)
    })
    .await?;
    created(&meta)
}

/// A document's bytes could not be written, or read back whole and unchanged.
fn document_storage_error() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::StorageUnavailable,
        "the document's bytes could not be stored or read back intact",
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum Verdict {
    Accepted,
    Rejected,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionRequest {
    #[serde(alias = "status")]
    decision: Verdict,
    #[serde(default)]
    reason: Option<String>,
}

pub(super) async fn decide(
    ctx: Arc<HttpContext>,
    call: Call,
    decider: Decider,
) -> Result<HttpResponse, ApiError> {
    let (user, program) = customer_scope(&call)?;
    let body: DecisionRequest = parse_json(&call.headers, &call.body)?;
    let accepted = matches!(body.decision, Verdict::Accepted);
    let case = apply(&ctx, move |state, changes, now| {
        manage::kyc::decide_kyc(
            state,
            changes,
            &user,
            program.as_deref(),
            accepted,
            body.reason,
            decider,
            now,
        )
    })
    .await?;
    ok(&case)
}

pub(super) async fn decide_kyc(
    ctx: Arc<HttpContext>,
    call: Call,
) -> Result<HttpResponse, ApiError> {
    let Principal::Admin { login, .. } = &call.who else {
        return Err(ApiError::forbidden(
            ErrorCode::WrongChannel,
            "manual KYC is decided in the administration panel",
        ));
    };
    let decider = Decider::Administrator(login.clone());
    decide(ctx, call, decider).await
}

pub(super) async fn external_kyc(
    ctx: Arc<HttpContext>,
    call: Call,
) -> Result<HttpResponse, ApiError> {
    decide(ctx, call, Decider::Partner).await
}

pub(super) async fn list_kyc(ctx: Arc<HttpContext>, call: Call) -> Result<HttpResponse, ApiError> {
    let status = call.query.get("status").cloned();
    let customer = call.query.get("customerId").cloned();
    let from = day_param(&call, "from")?;
    let to = day_param(&call, "to")?;
    let cases = inspect(&ctx, move |state| {
        let status = match status.as_deref() {
            None => None,
            Some(s) => Some(
                serde_json::from_value::<manage::kyc::KycStatus>(serde_json::Value::String(
                    s.to_string(),
                ))
                .map_err(|_| ManageError::Invalid {
                    code: ErrorCode::InvalidQuery,
                    message: "status is NONE, IN_PROGRESS, ACCEPTED or REJECTED".into(),
                })?,
            ),
        };
        Ok(state
            .records_under::<manage::kyc::KycCase>("kyc/")
            .map(|(_, c)| c)
            .filter(|c| status.is_none_or(|s| c.status == s))
            .filter(|c| customer.as_ref().is_none_or(|id| &c.customer_id == id))
            .filter(|c| {
                let day = crate::domain::calendar::date_of_ms(c.created_ms);
                from.is_none_or(|f| day >= f) && to.is_none_or(|t| day <= t)
            })
            .collect::<Vec<_>>())
    })
    .await?;
    ok(&serde_json::json!({ "items": cases }))
}

pub(super) async fn get_kyc(ctx: Arc<HttpContext>, call: Call) -> Result<HttpResponse, ApiError> {
    let (user, _) = customer_scope(&call)?;
    let case: Option<manage::kyc::KycCase> = inspect(&ctx, move |state| {
        Ok(state.record(&manage::kyc::kyc_key(&user)))
    })
    .await?;
    case.map_or_else(
        || {
            Err(ApiError::not_found(
                ErrorCode::KycNotStarted,
                "no KYC submission for this customer",
            ))
        },
        |c| ok(&c),
    )
}

pub(super) async fn get_document(
    ctx: Arc<HttpContext>,
    call: Call,
) -> Result<HttpResponse, ApiError> {
    let (user, _) = customer_scope(&call)?;
    let id = call.param("documentId")?.to_string();
    let id_for_log = id.clone();
    let document = inspect(&ctx, move |state| {
        Ok(manage::kyc::document_bytes(state, &user, &id))
    })
    .await?;
    let Some((content_type, stored)) = document else {
        return Err(ApiError::not_found(
            ErrorCode::DocumentNotFound,
            "no such document",
        ));
    };
    let bytes = match stored {
        manage::kyc::DocumentBytes::Inline(bytes) => bytes,
        manage::kyc::DocumentBytes::Blob(sha256) => {
            let blobs = ctx.blobs.clone().ok_or_else(document_storage_error)?;
            // Read and checked against its digest off the writer.
            tokio::task::spawn_blocking(move || blobs.get(&sha256))
                .await
                .map_err(|_| document_storage_error())?
                .map_err(|e| {
                    tracing::error!(error = %e, document = %id_for_log, "KYC document unreadable");
                    document_storage_error()
                })?
        }
    };
    let mut response = hyper::Response::new(http_body_util::Full::new(Bytes::from(bytes)));
    if let Ok(value) = hyper::header::HeaderValue::from_str(&content_type) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    // Uploaded by customers: never let a browser render it in the panel's origin.
    let headers = response.headers_mut();
    headers.insert(
        "x-content-type-options",
        hyper::header::HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        hyper::header::CONTENT_DISPOSITION,
        hyper::header::HeaderValue::from_static("attachment"),
    );
    Ok(response)
}

/// Sends a committed automatic KYC case to the provider in the background and
/// records the provider's reference, or the error (the case stays in progress).
fn submit_in_background(ctx: Arc<HttpContext>, case: KycCase) {
    let (Some(config), Some(reference)) = (ctx.kyc_provider.clone(), case.reference.clone()) else {
        return;
    };
    tokio::spawn(async move {
        let submission = Submission {
            user_id: case.customer_id.clone(),
            reference: reference.clone(),
            data: case.data.clone(),
        };
        let result = kyc_provider::submit(&config, &submission).await;
        let user = case.customer_id.clone();
        let outcome = ctx
            .engine
            .apply(move |state, changes, now| {
                let key = manage::kyc::kyc_key(&user);
                let Some(mut current) = state.record::<KycCase>(&key) else {
                    return;
                };
                if current.reference.as_deref() != Some(reference.as_str()) {
                    return; // a newer submission replaced this one
                }
                match &result {
                    Ok(ack) => {
                        current.provider_reference = Some(ack.provider_reference.clone());
                        current.provider_error = None;
                    }
                    Err(e) => current.provider_error = Some(e.to_string()),
                }
                current.updated_ms = now;
                changes.put_record(state, &key, &current);
            })
            .await;
        if let Err(e) = outcome {
            tracing::error!(error = %e, "could not record the eKYC submission");
        }
    });
}

/// `POST /kyc/callback`: the provider's decision, signed with the shared secret.
pub(super) async fn callback(ctx: Arc<HttpContext>, call: Call) -> Result<HttpResponse, ApiError> {
    let headers = &call.headers;
    let body: &[u8] = &call.body;
    let Some(config) = &ctx.kyc_provider else {
        return Err(ApiError::not_found(
            ErrorCode::EkycNotConfigured,
            "no eKYC provider is configured",
        ));
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let now_secs = crate::engine::now_ms() / 1000;
    let decision = kyc_provider::verify_callback(
        &config.callback_secret,
        body,
        header("x-kyc-signature"),
        header("x-kyc-timestamp"),
        now_secs,
    )
    .map_err(|e| match e {
        // Signed correctly but unreadable: the request is bad, not its sender.
        kyc_provider::CallbackError::InvalidPayload(_) => {
            ApiError::bad_request(e.code(), e.to_string())
        }
        _ => ApiError::unauthorized(e.code(), e.to_string()),
    })?;
    let case = ctx
        .engine
        .apply(move |state, changes, now| {
            let Some(user) =
                state.record::<String>(&manage::kyc::reference_key(&decision.reference))
            else {
                return Err(manage::ManageError::NotFound {
                    code: ErrorCode::KycReferenceNotFound,
                    message: "no KYC case has this reference".into(),
                });
            };
            let current: Option<KycCase> = state.record(&manage::kyc::kyc_key(&user));
            if current.as_ref().and_then(|c| c.reference.as_deref())
                != Some(decision.reference.as_str())
            {
                return Err(manage::ManageError::Conflict {
                    code: ErrorCode::KycNotInProgress,
                    message: "this reference was replaced by a newer submission".into(),
                });
            }
            let accepted = decision.decision == KycDecision::Approved;
            let reason = match decision.reason.filter(|r| !r.trim().is_empty()) {
                None if !accepted => Some("rejected by the eKYC provider".to_string()),
                reason => reason,
            };
            manage::kyc::decide_kyc(
                state,
                changes,
                &user,
                None,
                accepted,
                reason,
                Decider::Provider,
                now,
            )
        })
        .await?
        .map_err(ApiError::from)?;
    api::ok(&case)
}
