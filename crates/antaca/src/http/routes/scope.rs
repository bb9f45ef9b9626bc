//! Whose data a call is about (the session's customer, the partner's program,
//! any customer for administrators), who made a change, the query parameters
//! several resources share, and the two ways a handler reaches the writer.
//! Nothing here answers a request.

use super::{Call, Principal};
use crate::http::api::ApiError;
use crate::http::HttpContext;
use crate::manage::error::ErrorCode;
use crate::manage::{self, ManageError};

/// (customer id, program restriction) of a call: the session's own customer,
/// a customer of the partner's program, or any customer for administrators.
pub(super) fn customer_scope(call: &Call) -> Result<(String, Option<String>), ApiError> {
    match &call.who {
        Principal::Customer { user, program, .. } => Ok((user.clone(), Some(program.clone()))),
        Principal::Partner { program } => {
            Ok((call.param("customerId")?.to_string(), Some(program.clone())))
        }
        Principal::Admin { .. } => Ok((call.param("customerId")?.to_string(), None)),
        Principal::Anonymous => Err(ApiError::unauthorized(
            ErrorCode::Unauthorized,
            "authentication required",
        )),
    }
}

/// Who made a change, for records.
pub(super) fn actor(call: &Call) -> String {
    match &call.who {
        Principal::Customer { .. } => "customer".into(),
        Principal::Partner { program } => format!("partner:{program}"),
        Principal::Admin { login, .. } => format!("admin:{login}"),
        Principal::Anonymous => "anonymous".into(),
    }
}

/// Reads the engine state on the writer.
pub(super) async fn inspect<T: Send + 'static>(
    ctx: &HttpContext,
    f: impl FnOnce(&crate::engine::state::State) -> Result<T, ManageError> + Send + 'static,
) -> Result<T, ApiError> {
    match ctx.engine.inspect(f).await {
        Ok(result) => result.map_err(ApiError::from),
        Err(_) => Err(ApiError::from(crate::engine::ApplyError::Stopped)),
    }
}

/// Reads the state and the store's transactions on the writer (history):
/// `f`'s outer error is the store's (a 503), its inner one the caller's.
pub(super) async fn read<T: Send + 'static>(
    ctx: &HttpContext,
    f: impl FnOnce(
            &crate::engine::Reader<'_>,
        ) -> Result<Result<T, crate::store::StoreError>, ManageError>
        + Send
        + 'static,
) -> Result<T, ApiError> {
    match ctx.engine.read(f).await {
        Ok(Ok(Ok(value))) => Ok(value),
        Ok(Ok(Err(e))) => Err(ApiError::from(crate::engine::ApplyError::Storage(
            e.to_string(),
        ))),
        Ok(Err(e)) => Err(ApiError::from(e)),
        Err(_) => Err(ApiError::from(crate::engine::ApplyError::Stopped)),
    }
}

/// Changes the engine state on the writer; the change is committed before it answers.
pub(super) async fn apply<T: Send + 'static>(
    ctx: &HttpContext,
    f: impl FnOnce(
            &mut crate::engine::state::State,
            &mut crate::engine::state::Changes,
            u64,
        ) -> Result<T, ManageError>
        + Send
        + 'static,
) -> Result<T, ApiError> {
    ctx.engine.apply(f).await?.map_err(ApiError::from)
}

/// The user balance of the path, as the caller may see it.
pub(super) fn balance_scope(
    call: &Call,
) -> Result<(String, Option<String>, Option<String>), ApiError> {
    let balance = call.param("balanceId")?.to_string();
    Ok(match &call.who {
        Principal::Admin { .. } => (balance, None, None),
        _ => {
            let (user, program) = customer_scope(call)?;
            (balance, Some(user), program)
        }
    })
}

/// A day query parameter (`YYYY-MM-DD`), if present.
pub(super) fn day_param(
    call: &Call,
    name: &str,
) -> Result<Option<crate::domain::calendar::Date>, ApiError> {
    match call.query.get(name) {
        None => Ok(None),
        Some(text) => manage::history::parse_day(text).map(Some).ok_or_else(|| {
            ApiError::bad_request(
                ErrorCode::InvalidQuery,
                format!("{name} is a day, YYYY-MM-DD"),
            )
        }),
    }
}
