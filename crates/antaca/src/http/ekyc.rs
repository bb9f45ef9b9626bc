//! Automatic eKYC: submit a case to the configured provider after it is
//! committed, and apply the provider's signed callback.

use super::api::{self, ApiError, HttpResponse};
use super::HttpContext;
use crate::integrations::kyc_provider::{self, KycDecision, Submission};
use crate::manage;
use crate::manage::error::ErrorCode;
use crate::manage::kyc::{Decider, KycCase};
use std::sync::Arc;

/// Sends a committed automatic KYC case to the provider in the background and
/// records the provider's reference, or the error (the case stays in progress).
pub fn submit_in_background(ctx: Arc<HttpContext>, case: KycCase) {
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
pub async fn callback(
    ctx: Arc<HttpContext>,
    headers: &hyper::HeaderMap,
    body: &[u8],
) -> Result<HttpResponse, ApiError> {
    let Some(config) = &ctx.kyc_provider else {
        return Err(ApiError::not_found(
            "EKYC_NOT_CONFIGURED",
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
