//! Customers: created by the partner's servers (`/secure/customers`), read
//! by the customer (`/customers/me`), the partner and the panel.

use super::scope::{apply, customer_scope, inspect};
use super::{Call, Principal};
use crate::http::api::{created, ok, parse_json, ApiError, HttpResponse};
use crate::http::HttpContext;
use crate::manage;
use std::sync::Arc;

pub(super) async fn create_customer(
    ctx: Arc<HttpContext>,
    call: Call,
) -> Result<HttpResponse, ApiError> {
    let Principal::Partner { program } = &call.who else {
        return Err(ApiError::forbidden(
            "WRONG_CHANNEL",
            "customers are created by the partner's servers",
        ));
    };
    let body: manage::NewCustomer = parse_json(&call.headers, &call.body)?;
    let program = program.clone();
    let view = apply(&ctx, move |state, changes, now| {
        manage::create_customer(state, changes, &program, body, now)
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
        manage::customer(state, &user, program.as_deref()).map(|u| manage::customer_view(state, u))
    })
    .await?;
    ok(&view)
}
