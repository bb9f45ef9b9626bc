//! The administrators of the panel (`/admin/administrators`). The rule for a
//! new administrator lives in `http::sessions`, shared with `antaca admin add`.

use super::scope::apply;
use super::Call;
use crate::http::api::{created, parse_json, ApiError, HttpResponse};
use crate::http::sessions::{self, Role};
use crate::http::HttpContext;
use crate::manage::error::ErrorCode;
use crate::manage::ManageError;
use serde::Deserialize;
use std::sync::Arc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAdministrator {
    login: String,
    password: String,
    role: Role,
}

pub(super) async fn add_administrator(
    ctx: Arc<HttpContext>,
    call: Call,
) -> Result<HttpResponse, ApiError> {
    let body: NewAdministrator = parse_json(&call.headers, &call.body)?;
    let (login, password, role) = (body.login.clone(), body.password, body.role);
    let admin =
        tokio::task::spawn_blocking(move || sessions::new_administrator(&login, &password, role))
            .await
            .map_err(|_| {
                ApiError::bad_request(ErrorCode::InvalidField, "could not hash the password")
            })?
            .map_err(|e| ApiError::bad_request(e.code(), e.to_string()))?;
    apply(&ctx, move |state, changes, _| {
        if !sessions::insert_administrator(state, changes, &admin) {
            return Err(ManageError::Conflict {
                code: ErrorCode::AdministratorExists,
                message: format!("login {:?} exists", admin.login),
            });
        }
        Ok(())
    })
    .await?;
    created(&serde_json::json!({ "login": body.login, "role": body.role }))
}
