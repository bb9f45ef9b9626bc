//! Customers: creating one in a program, its profile record and the view
//! the channels show. Runs on the writer like the rest of `manage`; never
//! touches HTTP, ISO 8583 or the store directly (only `State` and `Changes`).

use super::error::ErrorCode;
use super::kyc::KycStatus;
use super::{chosen_or_next_id, ManageError};
use crate::domain::model::{BalanceOwner, Kyc, User};
use crate::engine::state::{Changes, State};
use serde::{Deserialize, Serialize};

/// A customer's profile, kept as the record `profile/{id}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    /// E-mail address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Phone number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// Given name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    /// Family name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    /// When the customer was created (ms since epoch).
    #[serde(default)]
    pub created_ms: u64,
}

/// A new customer from the partner's server.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewCustomer {
    /// The partner's own id for the customer; generated when absent.
    #[serde(default)]
    pub id: Option<String>,
    /// E-mail address.
    #[serde(default)]
    pub email: Option<String>,
    /// Phone number.
    #[serde(default)]
    pub phone: Option<String>,
    /// Given name.
    #[serde(default)]
    pub first_name: Option<String>,
    /// Family name.
    #[serde(default)]
    pub last_name: Option<String>,
}

/// Record key of a customer's profile.
pub fn profile_key(user: &str) -> String {
    format!("profile/{user}")
}

/// A customer as the channels show it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomerView {
    /// Id.
    pub id: String,
    /// Program.
    pub program: String,
    /// KYC status.
    pub kyc_status: KycStatus,
    /// Profile.
    #[serde(flatten)]
    pub profile: Profile,
    /// The customer's balance ids.
    pub balances: Vec<String>,
}

/// The customer with this id in this program (`None` = any program, for administrators).
pub fn customer<'a>(
    state: &'a State,
    id: &str,
    program: Option<&str>,
) -> Result<&'a User, ManageError> {
    match state.users.get(id) {
        Some(user) if program.is_none_or(|p| p == user.program) => Ok(user),
        _ => Err(ManageError::not_found(
            ErrorCode::CustomerNotFound,
            format!("no customer {id:?}"),
        )),
    }
}

/// The view of a customer.
pub fn customer_view(state: &State, user: &User) -> CustomerView {
    let mut balances: Vec<String> = state
        .balances
        .values()
        .filter(|b| b.owner == BalanceOwner::User(user.id.clone()))
        .map(|b| b.id.clone())
        .collect();
    balances.sort();
    CustomerView {
        id: user.id.clone(),
        program: user.program.clone(),
        kyc_status: KycStatus::of(user.kyc),
        profile: state.record(&profile_key(&user.id)).unwrap_or_default(),
        balances,
    }
}

/// Creates a customer in `program`.
pub fn create_customer(
    state: &mut State,
    changes: &mut Changes,
    program: &str,
    new: NewCustomer,
    now: u64,
) -> Result<CustomerView, ManageError> {
    if !state.programs.contains_key(program) {
        return Err(ManageError::not_found(
            ErrorCode::ProgramNotFound,
            format!("no program {program:?}"),
        ));
    }
    let id = chosen_or_next_id(state, changes, new.id, "cus", "customer")?;
    if state.users.contains_key(&id) {
        return Err(ManageError::conflict(
            ErrorCode::CustomerExists,
            format!("customer {id:?} already exists"),
        ));
    }
    if let Some(email) = &new.email {
        if email.len() > 254 || !email.contains('@') {
            return Err(ManageError::invalid(
                ErrorCode::InvalidField,
                "email is not an e-mail address",
            ));
        }
    }
    let user = User {
        id: id.clone(),
        program: program.to_string(),
        kyc: Kyc::None,
    };
    let profile = Profile {
        email: new.email,
        phone: new.phone,
        first_name: new.first_name,
        last_name: new.last_name,
        created_ms: now,
    };
    changes.put_user(state, user.clone());
    changes.put_record(state, &profile_key(&id), &profile);
    Ok(customer_view(state, &user))
}
