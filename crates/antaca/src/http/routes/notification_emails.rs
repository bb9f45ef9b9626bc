//! The partner's notification e-mail addresses (`/secure/notification-emails`).

use super::scope::apply;
use super::{Call, Principal};
use crate::http::api::{ok, parse_json, ApiError, HttpResponse};
use crate::http::HttpContext;
use crate::manage::error::ErrorCode;
use crate::manage::ManageError;
use serde::Deserialize;
use std::sync::Arc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EmailsRequest {
    emails: Vec<String>,
}

pub(super) async fn set_notification_emails(
    ctx: Arc<HttpContext>,
    call: Call,
) -> Result<HttpResponse, ApiError> {
    let Principal::Partner { program } = &call.who else {
        return Err(ApiError::forbidden(ErrorCode::WrongChannel, "partner only"));
    };
    let body: EmailsRequest = parse_json(&call.headers, &call.body)?;
    let program = program.clone();
    let emails = body.emails.clone();
    apply(&ctx, move |state, changes, _| {
        crate::integrations::notify::set_partner_emails(state, changes, &program, &emails).map_err(
            |e| ManageError::Invalid {
                code: ErrorCode::InvalidField,
                message: e.to_string(),
            },
        )
    })
    .await?;
    ok(&serde_json::json!({ "emails": body.emails }))
}
