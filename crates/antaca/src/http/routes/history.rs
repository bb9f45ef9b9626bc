//! Transaction history of a balance or a card, paged and filtered by day.

use super::scope::{balance_scope, customer_scope, day_param, read};
use super::{Call, Principal};
use crate::http::api::{ok, ApiError, HttpResponse};
use crate::http::HttpContext;
use crate::manage::error::ErrorCode;
use crate::manage::history::HistoryFilter;
use crate::manage::{self, ManageError};
use std::sync::Arc;

fn history_filter(call: &Call) -> Result<HistoryFilter, ApiError> {
    let number = |name: &str| -> Result<Option<u64>, ApiError> {
        match call.query.get(name) {
            None => Ok(None),
            Some(t) => t.parse().map(Some).map_err(|_| {
                ApiError::bad_request(ErrorCode::InvalidQuery, format!("{name} is a number"))
            }),
        }
    };
    let limit = number("limit")?.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidQuery,
            "limit is 1 to 500",
        ));
    }
    Ok(HistoryFilter {
        balance: None,
        card: None,
        from: day_param(call, "from")?,
        to: day_param(call, "to")?,
        before: number("before")?,
        limit: usize::try_from(limit).unwrap_or(50),
    })
}

pub(super) async fn balance_history(
    ctx: Arc<HttpContext>,
    call: Call,
) -> Result<HttpResponse, ApiError> {
    let (balance, user, program) = balance_scope(&call)?;
    let mut filter = history_filter(&call)?;
    let page = read(&ctx, move |reader| {
        let state = reader.state;
        if user.is_some() {
            manage::balances::user_balance(state, &balance, user.as_deref(), program.as_deref())?;
        } else if !state.balances.contains_key(&balance) {
            return Err(ManageError::NotFound {
                code: ErrorCode::BalanceNotFound,
                message: format!("no balance {balance:?}"),
            });
        }
        filter.balance = Some(balance);
        Ok(manage::history::history(reader, &filter))
    })
    .await?;
    ok(&page)
}

pub(super) async fn card_history(
    ctx: Arc<HttpContext>,
    call: Call,
) -> Result<HttpResponse, ApiError> {
    let card = call.param("cardId")?.to_string();
    let scope = match &call.who {
        Principal::Admin { .. } => None,
        _ => Some(customer_scope(&call)?),
    };
    let mut filter = history_filter(&call)?;
    let page = read(&ctx, move |reader| {
        let state = reader.state;
        let missing = || ManageError::NotFound {
            code: ErrorCode::CardNotFound,
            message: format!("no card {card:?}"),
        };
        let found = state.cards.get(&card).ok_or_else(missing)?;
        if let Some((user, program)) = &scope {
            manage::balances::user_balance(state, &found.balance, Some(user), program.as_deref())
                .map_err(|_| missing())?;
        }
        filter.card = Some(card);
        Ok(manage::history::history(reader, &filter))
    })
    .await?;
    ok(&page)
}
