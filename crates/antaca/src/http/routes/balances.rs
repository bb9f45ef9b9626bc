//! Balances: the customer's, partner balances, reloads (idempotent under an
//! `Idempotency-Key`) and the panel's summary.

use super::scope::{actor, apply, balance_scope, customer_scope, inspect};
use super::Call;
use crate::http::api::{self, created, ok, parse_json, ApiError, HttpResponse};
use crate::http::HttpContext;
use crate::manage::error::ErrorCode;
use crate::manage::{self, ManageError};
use hyper::StatusCode;
use serde::Deserialize;
use std::sync::Arc;

pub(super) async fn list_balances(
    ctx: Arc<HttpContext>,
    call: Call,
) -> Result<HttpResponse, ApiError> {
    let (user, program) = customer_scope(&call)?;
    let views = inspect(&ctx, move |state| {
        let user = manage::customers::customer(state, &user, program.as_deref())?;
        let owner = crate::domain::model::BalanceOwner::User(user.id.clone());
        let mut views: Vec<_> = state
            .balances
            .values()
            .filter(|b| b.owner == owner)
            .map(|b| manage::balances::balance_view(state, b))
            .collect();
        views.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(views)
    })
    .await?;
    ok(&serde_json::json!({ "items": views }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewBalance {
    currency: String,
}

pub(super) async fn create_balance(
    ctx: Arc<HttpContext>,
    call: Call,
) -> Result<HttpResponse, ApiError> {
    let (user, program) = customer_scope(&call)?;
    let body: NewBalance = parse_json(&call.headers, &call.body)?;
    let view = apply(&ctx, move |state, changes, _| {
        manage::balances::create_user_balance(
            state,
            changes,
            &user,
            program.as_deref(),
            &body.currency,
        )
    })
    .await?;
    created(&view)
}

pub(super) async fn get_balance(
    ctx: Arc<HttpContext>,
    call: Call,
) -> Result<HttpResponse, ApiError> {
    let (balance, user, program) = balance_scope(&call)?;
    let view = inspect(&ctx, move |state| {
        manage::balances::user_balance(state, &balance, user.as_deref(), program.as_deref())
            .map(|b| manage::balances::balance_view(state, b))
    })
    .await?;
    ok(&view)
}

pub(super) async fn admin_get_balance(
    ctx: Arc<HttpContext>,
    call: Call,
) -> Result<HttpResponse, ApiError> {
    let balance = call.param("balanceId")?.to_string();
    let view = inspect(&ctx, move |state| {
        state
            .balances
            .get(&balance)
            .map(|b| manage::balances::balance_view(state, b))
            .ok_or(ManageError::NotFound {
                code: ErrorCode::BalanceNotFound,
                message: format!("no balance {balance:?}"),
            })
    })
    .await?;
    ok(&view)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReloadRequest {
    amount: String,
    currency: String,
}

/// A reload, idempotent under an `Idempotency-Key` header: a retry with the
/// same key and body returns the first answer and moves nothing twice.
pub(super) async fn reload(
    ctx: Arc<HttpContext>,
    call: Call,
    partner_balance: bool,
) -> Result<HttpResponse, ApiError> {
    let (balance, user, program) = balance_scope(&call)?;
    let body: ReloadRequest = parse_json(&call.headers, &call.body)?;
    let idempotency = idempotency_key(&call)?.ok_or_else(|| {
        ApiError::bad_request(
            ErrorCode::IdempotencyKeyRequired,
            "a reload moves money: send an Idempotency-Key header",
        )
    })?;
    // The request as understood, not its bytes: key order and "25.0" vs "25.00" do not matter.
    let fingerprint = {
        use sha2::Digest;
        let amount = body
            .amount
            .parse::<rust_decimal::Decimal>()
            .map_or_else(|_| body.amount.clone(), |d| d.normalize().to_string());
        hex::encode(sha2::Sha256::digest(format!(
            "{} {}\n{amount}\n{}",
            call.method, call.path, body.currency
        )))
    };
    let scope = actor(&call);
    let (status, value) = apply(&ctx, move |state, changes, now| {
        let record_key = Some(format!("idem/{scope}/{idempotency}"));
        if let Some(key) = &record_key {
            if let Some(stored) = state.record::<StoredAnswer>(key) {
                if stored.fingerprint != fingerprint {
                    return Err(ManageError::Conflict {
                        code: ErrorCode::IdempotencyKeyReused,
                        message: "this Idempotency-Key was used for another request".into(),
                    });
                }
                return Ok((stored.status, stored.body));
            }
        }
        let target = if partner_balance {
            manage::balances::partner_balance(state, &balance)?
        } else {
            manage::balances::user_balance(state, &balance, user.as_deref(), program.as_deref())?
        };
        if target.currency != body.currency {
            return Err(ManageError::Invalid {
                code: ErrorCode::CurrencyMismatch,
                message: format!("the balance is in {}", target.currency),
            });
        }
        let amount = manage::balances::parse_amount(&body.amount, &body.currency)?;
        let view = manage::balances::reload(state, changes, &balance, amount, now)?;
        let value = serde_json::to_value(&view).unwrap_or_default();
        if let Some(key) = &record_key {
            changes.put_record(
                state,
                key,
                &StoredAnswer {
                    fingerprint,
                    status: 200,
                    body: value.clone(),
                    created_ms: now,
                },
            );
        }
        Ok((200u16, value))
    })
    .await?;
    Ok(api::json_response(
        StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
        &value,
    ))
}

/// A stored answer to an idempotent request, kept as `idem/{caller}/{key}`.
#[derive(serde::Serialize, Deserialize)]
struct StoredAnswer {
    fingerprint: String,
    status: u16,
    body: serde_json::Value,
    created_ms: u64,
}

fn idempotency_key(call: &Call) -> Result<Option<String>, ApiError> {
    match call.headers.get("idempotency-key") {
        None => Ok(None),
        Some(value) => match value.to_str() {
            Ok(key)
                if !key.is_empty()
                    && key.len() <= 128
                    && key.bytes().all(|b| b.is_ascii_graphic()) =>
            {
                Ok(Some(key.to_string()))
            }
            _ => Err(ApiError::bad_request(
                ErrorCode::InvalidIdempotencyKey,
                "Idempotency-Key is 1 to 128 visible ASCII characters",
            )),
        },
    }
}

pub(super) async fn reload_user_balance(
    ctx: Arc<HttpContext>,
    call: Call,
) -> Result<HttpResponse, ApiError> {
    reload(ctx, call, false).await
}

pub(super) async fn reload_partner_balance(
    ctx: Arc<HttpContext>,
    call: Call,
) -> Result<HttpResponse, ApiError> {
    reload(ctx, call, true).await
}

pub(super) async fn create_partner_balance(
    ctx: Arc<HttpContext>,
    call: Call,
) -> Result<HttpResponse, ApiError> {
    let body: manage::balances::NewPartnerBalance = parse_json(&call.headers, &call.body)?;
    let view = apply(&ctx, move |state, changes, _| {
        manage::balances::create_partner_balance(state, changes, body)
    })
    .await?;
    created(&view)
}

pub(super) async fn get_partner_balance(
    ctx: Arc<HttpContext>,
    call: Call,
) -> Result<HttpResponse, ApiError> {
    let balance = call.param("balanceId")?.to_string();
    let view = inspect(&ctx, move |state| {
        manage::balances::partner_balance(state, &balance)
            .map(|b| manage::balances::balance_view(state, b))
    })
    .await?;
    ok(&view)
}

pub(super) async fn summary(ctx: Arc<HttpContext>, _call: Call) -> Result<HttpResponse, ApiError> {
    let rows = inspect(&ctx, |state| Ok(manage::balances::summary(state))).await?;
    ok(&serde_json::json!({ "items": rows }))
}
