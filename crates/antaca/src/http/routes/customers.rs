//! Customers: created by the partner's servers (`/secure/customers`), read
//! by the customer (`/customers/me`), the partner and the panel.

use super::scope::{apply, customer_scope, inspect};
use super::{Call, Principal};
use crate::http::api::{created, ok, parse_json, ApiError, HttpResponse};
use crate::http::HttpContext;
use crate::manage;
use crate::manage::error::ErrorCode;
use std::sync::Arc;

pub(super) async fn create_customer(
    ctx: Arc<HttpContext>,
    call: Call,
) -> Result<HttpResponse, ApiError> {
    let Principal::Partner { program } = &call.who else {
        return Err(ApiError::forbidden(
            ErrorCode::WrongChannel,
            "customers are created by the partner's servers",
        ));
    };
    let body: manage::customers::NewCustomer = parse_json(&call.headers, &call.body)?;
    let program = program.clone();
    let view = apply(&ctx, move |state, changes, now| {
        manage::customers::create_customer(state, changes, &program, body, now)
    })
    .await?;
    created(&view)
}

pub(super) async fn get_customer(
    ctx: Arc<HttpContext>,
    call: Call,
) -> Result<HttpResponse, ApiError> {
    let (user, program) = customer_scope(&call)?;
    let view = inspect(&ctx, move |state| {
        manage::customers::customer(state, &user, program.as_deref())
            .map(|u| manage::customers::customer_view(state, u))
    })
    .await?;
    ok(&view)
}
