//! Card endpoints of the three channels (see `routes()` for the table and
//! which of them travel as JWE), and the JWE public keys. Card data comes
//! from `manage::cards` through the writer; nothing here reads the store.

use super::scope::{apply, inspect};
use super::{Call, Principal};
use crate::engine::state::{Changes, State};
use crate::http::api::{self, created, no_content, ok, parse_json, ApiError, HttpResponse};
use crate::http::HttpContext;
use crate::manage::cards::{self, CardKeys, Scope};
use crate::manage::error::ErrorCode;
use crate::manage::ManageError;
use hyper::StatusCode;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

fn keys(ctx: &HttpContext) -> Result<CardKeys, ApiError> {
    ctx.card_keys.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::CardKeysUnavailable,
            "no card keys are configured",
        )
    })
}

/// The customer a call issues cards to, and what it may act on.
fn scope(call: &Call) -> Result<(Option<String>, Scope), ApiError> {
    let param = |name: &str| call.params.get(name).cloned();
    match &call.who {
        Principal::Customer { user, program, .. } => Ok((
            Some(user.clone()),
            Scope {
                customer: Some(user.clone()),
                program: Some(program.clone()),
            },
        )),
        Principal::Partner { program } => {
            let customer = param("customerId");
            Ok((
                customer.clone(),
                Scope {
                    customer,
                    program: Some(program.clone()),
                },
            ))
        }
        Principal::Admin { .. } => Ok((param("customerId"), Scope::any())),
        Principal::Anonymous => Err(ApiError::unauthorized(
            ErrorCode::Unauthorized,
            "authentication required",
        )),
    }
}

fn card_id(call: &Call) -> Result<String, ApiError> {
    call.params
        .get("cardId")
        .cloned()
        .ok_or_else(|| ApiError::bad_request(ErrorCode::InvalidPath, "missing card id"))
}

/// The customer a call names (required) and what it may act on.
fn named_customer(call: &Call) -> Result<(String, Scope), ApiError> {
    let (customer, scope) = scope(call)?;
    let customer = customer
        .ok_or_else(|| ApiError::bad_request(ErrorCode::InvalidPath, "missing customer"))?;
    Ok((customer, scope))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct IssueRequest {
    balance_id: String,
}

/// What a call that issues a card carries.
struct Issue {
    customer: String,
    scope: Scope,
    balance_id: String,
    keys: CardKeys,
}

/// The customer, scope, balance and keys of a call that issues a card.
fn issue_request(ctx: &HttpContext, call: &Call) -> Result<Issue, ApiError> {
    let (customer, scope) = named_customer(call)?;
    let body: IssueRequest = parse_json(&call.headers, &call.body)?;
    Ok(Issue {
        customer,
        scope,
        balance_id: body.balance_id,
        keys: keys(ctx)?,
    })
}

/// `cards::create_virtual` or `cards::order_physical`.
type IssueFn<T> =
    fn(&mut State, &mut Changes, &CardKeys, &str, &Scope, &str, u64) -> Result<T, ManageError>;

/// Issues a card as the call asks, with `issue`, on the writer.
async fn issue_card<T: Send + 'static>(
    ctx: &HttpContext,
    call: &Call,
    issue: IssueFn<T>,
) -> Result<T, ApiError> {
    let Issue {
        customer,
        scope,
        balance_id,
        keys,
    } = issue_request(ctx, call)?;
    apply(ctx, move |state, changes, now| {
        issue(state, changes, &keys, &customer, &scope, &balance_id, now)
    })
    .await
}

/// Creates a virtual card synchronously; the answer carries its full data (JWE).
pub async fn create_virtual(ctx: Arc<HttpContext>, call: Call) -> Result<HttpResponse, ApiError> {
    created(&issue_card(&ctx, &call, cards::create_virtual).await?)
}

/// An asynchronous card operation, kept as the record `cardop/{id}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CardOperation {
    /// Operation id.
    pub id: String,
    /// The customer.
    pub customer_id: String,
    /// PENDING, DONE or FAILED.
    pub status: String,
    /// The card, once done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub card_id: Option<String>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<serde_json::Value>,
}

fn operation_key(id: &str) -> String {
    format!("cardop/{id}")
}

/// Starts creating a virtual card and answers at once with an operation to poll.
pub async fn create_virtual_async(
    ctx: Arc<HttpContext>,
    call: Call,
) -> Result<HttpResponse, ApiError> {
    let Issue {
        customer,
        scope,
        balance_id,
        keys,
    } = issue_request(&ctx, &call)?;
    let for_record = customer.clone();
    let operation = apply(&ctx, move |state, changes, _| {
        crate::manage::customers::customer(state, &for_record, scope.program.as_deref())?;
        let id = format!("op_{}", changes.next_in_sequence(state, "card_operation"));
        let operation = CardOperation {
            id: id.clone(),
            customer_id: for_record,
            status: "PENDING".into(),
            card_id: None,
            error: None,
        };
        changes.put_record(state, &operation_key(&id), &operation);
        Ok(operation)
    })
    .await?;
    let background = ctx.clone();
    let pending = operation.clone();
    let scope = scope_for(&call)?;
    tokio::spawn(async move {
        let result = background
            .engine
            .apply(move |state, changes, now| {
                let outcome = cards::create_virtual(
                    state,
                    changes,
                    &keys,
                    &customer,
                    &scope,
                    &balance_id,
                    now,
                );
                let mut done = pending.clone();
                match &outcome {
                    Ok(data) => {
                        done.status = "DONE".into();
                        done.card_id = Some(data.id.clone());
                    }
                    Err(e) => {
                        let api = ApiError::from(e.clone());
                        done.status = "FAILED".into();
                        done.error =
                            Some(serde_json::json!({ "code": api.code, "message": api.message }));
                    }
                }
                changes.put_record(state, &operation_key(&done.id), &done);
            })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "asynchronous card creation not committed");
        }
    });
    Ok(api::json_response(StatusCode::ACCEPTED, &operation))
}

fn scope_for(call: &Call) -> Result<Scope, ApiError> {
    scope(call).map(|(_, s)| s)
}

/// The state of an asynchronous card operation.
pub async fn operation(ctx: Arc<HttpContext>, call: Call) -> Result<HttpResponse, ApiError> {
    let (customer, scope) = scope(&call)?;
    let id = call.params.get("operationId").cloned().unwrap_or_default();
    let found: Option<CardOperation> = ctx
        .engine
        .inspect(move |state| {
            // The operation's customer must be one the caller may see (its program's).
            state
                .record::<CardOperation>(&operation_key(&id))
                .filter(|op| {
                    crate::manage::customers::customer(
                        state,
                        &op.customer_id,
                        scope.program.as_deref(),
                    )
                    .is_ok()
                })
        })
        .await
        .map_err(|_| ApiError::from(crate::engine::ApplyError::Stopped))?;
    match found {
        Some(op) if customer.as_ref().is_none_or(|c| c == &op.customer_id) => ok(&op),
        _ => Err(ApiError::not_found(
            ErrorCode::OperationNotFound,
            "no such card operation",
        )),
    }
}

/// Orders a physical card (inactive until personalised and activated).
pub async fn order_physical(ctx: Arc<HttpContext>, call: Call) -> Result<HttpResponse, ApiError> {
    created(&issue_card(&ctx, &call, cards::order_physical).await?)
}

/// Lists a customer's cards (masked).
pub async fn list(ctx: Arc<HttpContext>, call: Call) -> Result<HttpResponse, ApiError> {
    let (customer, scope) = named_customer(&call)?;
    let admin = matches!(call.who, Principal::Admin { .. });
    let views = inspect(&ctx, move |state| {
        crate::manage::customers::customer(state, &customer, scope.program.as_deref())
            .map(|_| cards::list(state, &customer, admin))
    })
    .await?;
    ok(&serde_json::json!({ "items": views }))
}

/// A card, masked (administrators; they never see full card data).
pub async fn get_masked(ctx: Arc<HttpContext>, call: Call) -> Result<HttpResponse, ApiError> {
    let id = card_id(&call)?;
    let scope = scope_for(&call)?;
    let view = inspect(&ctx, move |state| {
        cards::card(state, &id, &scope).map(cards::view)
    })
    .await?;
    ok(&view)
}

/// Full card data: PAN, expiry, CVV2 (JWE).
pub async fn full_data(ctx: Arc<HttpContext>, call: Call) -> Result<HttpResponse, ApiError> {
    let id = card_id(&call)?;
    let scope = scope_for(&call)?;
    let keys = keys(&ctx)?;
    let data = inspect(&ctx, move |state| {
        cards::full_data(state, &keys, &id, &scope)
    })
    .await?;
    ok(&data)
}

macro_rules! card_action {
    ($name:ident, $doc:literal, |$state:ident, $changes:ident, $keys:ident, $id:ident, $scope:ident, $now:ident, $call:ident| $body:expr) => {
        #[doc = $doc]
        pub async fn $name(ctx: Arc<HttpContext>, $call: Call) -> Result<HttpResponse, ApiError> {
            let $id = card_id(&$call)?;
            let $scope = scope_for(&$call)?;
            let $keys = keys(&ctx)?;
            let out = apply(&ctx, move |$state, $changes, $now| {
                let _ = (&$keys, &$scope, $now);
                $body
            })
            .await?;
            ok(&out)
        }
    };
}

card_action!(
    activate,
    "Activates a linked physical card.",
    |state, changes, keys, id, scope, now, call| cards::activate(state, changes, &id, &scope, now)
);
card_action!(
    unlock,
    "Unlocks a card (not for reasons 1, 2, 5, 8).",
    |state, changes, keys, id, scope, now, call| cards::unlock(state, changes, &id, &scope)
);
card_action!(
    print,
    "Prints a virtual card as a Digital First plastic.",
    |state, changes, keys, id, scope, now, call| cards::print_virtual(state, changes, &id, &scope)
);
card_action!(
    reset_cvv,
    "A new CVV2 (JWE answer).",
    |state, changes, keys, id, scope, now, call| cards::reset_cvv(
        state, changes, &keys, &id, &scope
    )
);
card_action!(
    personalised,
    "The personalisation centre confirmed the card: link it.",
    |state, changes, keys, id, scope, now, call| cards::confirm_personalised(state, changes, &id)
);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LockRequest {
    reason: u8,
}

/// Locks a card with a reason 1–8.
pub async fn lock(ctx: Arc<HttpContext>, call: Call) -> Result<HttpResponse, ApiError> {
    let id = card_id(&call)?;
    let scope = scope_for(&call)?;
    let body: LockRequest = parse_json(&call.headers, &call.body)?;
    let view = apply(&ctx, move |state, changes, _| {
        cards::lock(state, changes, &id, &scope, body.reason)
    })
    .await?;
    ok(&view)
}

/// Removes a card for good.
pub async fn remove(ctx: Arc<HttpContext>, call: Call) -> Result<HttpResponse, ApiError> {
    let id = card_id(&call)?;
    let scope = scope_for(&call)?;
    apply(&ctx, move |state, changes, _| {
        cards::remove(state, changes, &id, &scope)
    })
    .await?;
    no_content()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PinRequest {
    pin: String,
}

/// Sets the PIN of a physical or Digital First card (JWE request).
pub async fn set_pin(ctx: Arc<HttpContext>, call: Call) -> Result<HttpResponse, ApiError> {
    let id = card_id(&call)?;
    let scope = scope_for(&call)?;
    let body: PinRequest = parse_json(&call.headers, &call.body)?;
    let pin = crate::security::pinblock::Pin::parse(&body.pin)
        .map_err(|_| ApiError::bad_request(ErrorCode::InvalidPin, "a PIN is 4 to 12 digits"))?;
    let keys = keys(&ctx)?;
    let view = apply(&ctx, move |state, changes, _| {
        cards::set_pin(state, changes, &keys, &id, &scope, &pin)
    })
    .await?;
    ok(&view)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExternalLockRequest {
    pan: String,
    reason: u8,
}

/// "Lock outside": a network or acquirer locks a card by its PAN, for fraud or PIN reasons.
pub async fn external_lock(ctx: Arc<HttpContext>, call: Call) -> Result<HttpResponse, ApiError> {
    let Principal::Partner { program } = &call.who else {
        return Err(ApiError::forbidden(
            ErrorCode::WrongChannel,
            "external locks come over the TLS listener",
        ));
    };
    if !program.starts_with("network-") {
        return Err(ApiError::forbidden(
            ErrorCode::NotAnExternalEntity,
            "only certificates issued to external entities (program network-…) may lock cards by PAN",
        ));
    }
    let body: ExternalLockRequest = parse_json(&call.headers, &call.body)?;
    if !(12..=19).contains(&body.pan.len()) || !body.pan.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidField,
            "pan is 12 to 19 digits",
        ));
    }
    let keys = keys(&ctx)?;
    let by = program.clone();
    let view = apply(&ctx, move |state, changes, _| {
        cards::lock_by_pan(state, changes, &keys, body.pan.as_bytes(), body.reason)
    })
    .await?;
    tracing::info!(entity = %by, card = %view.id, reason = body.reason, "card locked by an external entity");
    ok(&view)
}

/// Our JWE public key (base64 DER, PEM and JWK).
pub async fn public_key(ctx: Arc<HttpContext>, _call: Call) -> Result<HttpResponse, ApiError> {
    let Some(keys) = &ctx.jwe else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::EncryptionUnavailable,
            "no JWE key is configured",
        ));
    };
    ok(&serde_json::json!({
        "publicKey": keys.public_key_der_base64(),
        "pem": keys.public_key_pem(),
        "jwk": keys.public_key_jwk(),
        "alg": ["RSA-OAEP-256", "RSA-OAEP"],
        "enc": "A256GCM",
    }))
}
