//! Sessions of the app and admin channels: device pairing and pairing codes,
//! app sessions from an installation or a partner's trusted identity, admin
//! login with its lockout, and logout. Tokens live in `http::sessions`; the
//! installation and administrator records change only through the writer.

use super::scope::{apply, customer_scope, inspect};
use super::{Call, Principal};
use crate::engine::now_ms;
use crate::http::api::{created, no_content, ok, parse_json, ApiError, HttpResponse};
use crate::http::sessions::{self, Administrator, Installation, Subject};
use crate::http::HttpContext;
use crate::manage;
use crate::manage::error::ErrorCode;
use hyper::StatusCode;
use serde::Deserialize;
use std::sync::Arc;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PairRequest {
    pairing_code: String,
    device_id: String,
}

/// Pairs a device: uses the partner's single-use pairing code, replaces any
/// active installation of this customer on this device, starts a session.
pub(super) async fn pair_device(
    ctx: Arc<HttpContext>,
    call: Call,
) -> Result<HttpResponse, ApiError> {
    let body: PairRequest = parse_json(&call.headers, &call.body)?;
    if body.device_id.is_empty() || body.device_id.len() > 128 {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidField,
            "deviceId is 1 to 128 characters",
        ));
    }
    let now = now_ms();
    let code = ctx
        .sessions
        .take_pairing_code(&body.pairing_code, now)
        .ok_or_else(|| {
            ApiError::unauthorized(
                ErrorCode::InvalidPairingCode,
                "the pairing code is unknown, used or expired",
            )
        })?;
    let secret = sessions::random_token();
    let secret_sha256 = sessions::sha256_hex(&secret);
    let user = code.user.clone();
    let device_id = body.device_id.clone();
    let (installation_id, program, replaced) = apply(&ctx, move |state, changes, now| {
        let program = manage::customers::customer(state, &user, None)?
            .program
            .clone();
        let prefix = format!("device/{user}/");
        let replaced: Vec<Installation> = state
            .records_under::<Installation>(&prefix)
            .filter(|(_, i)| i.active && i.device_id == device_id)
            .map(|(_, i)| i)
            .collect();
        for old in &replaced {
            let key = sessions::installation_key(&user, &old.installation_id);
            changes.put_record(
                state,
                &key,
                &Installation {
                    active: false,
                    ..old.clone()
                },
            );
        }
        let installation_id = format!("ins_{}", changes.next_in_sequence(state, "installation"));
        let installation = Installation {
            installation_id: installation_id.clone(),
            user: user.clone(),
            device_id,
            secret_sha256,
            active: true,
            created_ms: now,
        };
        changes.put_record(
            state,
            &sessions::installation_key(&user, &installation_id),
            &installation,
        );
        Ok((installation_id, program, replaced))
    })
    .await?;
    for old in replaced {
        ctx.sessions.end_installation(&old.installation_id);
    }
    let subject = Subject::Customer {
        user: code.user.clone(),
        program,
        installation: Some(installation_id.clone()),
    };
    let (token, expires) = ctx.sessions.start(subject, now);
    created(&serde_json::json!({
        "customerId": code.user,
        "installationId": installation_id,
        "installationSecret": secret,
        "sessionToken": token,
        "expiresAt": manage::rfc3339(expires),
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SessionRequest {
    customer_id: String,
    installation_id: String,
    installation_secret: String,
}

/// Starts a new app session from an active installation's credentials.
pub(super) async fn start_customer_session(
    ctx: Arc<HttpContext>,
    call: Call,
) -> Result<HttpResponse, ApiError> {
    let body: SessionRequest = parse_json(&call.headers, &call.body)?;
    let key = sessions::installation_key(&body.customer_id, &body.installation_id);
    let user = body.customer_id.clone();
    let found = inspect(&ctx, move |state| {
        let program = state.users.get(&user).map(|u| u.program.clone());
        Ok((state.record::<Installation>(&key), program))
    })
    .await?;
    let (Some(installation), Some(program)) = found else {
        return Err(ApiError::unauthorized(
            ErrorCode::InvalidInstallation,
            "unknown installation",
        ));
    };
    if !installation.active {
        return Err(ApiError::unauthorized(
            ErrorCode::InstallationReplaced,
            "this installation was replaced by a newer pairing on the device",
        ));
    }
    if sessions::sha256_hex(&body.installation_secret) != installation.secret_sha256 {
        return Err(ApiError::unauthorized(
            ErrorCode::InvalidInstallation,
            "wrong installation secret",
        ));
    }
    let subject = Subject::Customer {
        user: body.customer_id.clone(),
        program,
        installation: Some(body.installation_id),
    };
    let (token, expires) = ctx.sessions.start(subject, now_ms());
    created(&serde_json::json!({ "sessionToken": token, "expiresAt": manage::rfc3339(expires) }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrustedRequest {
    token: String,
}

/// Starts an app session from a partner backend's signed trusted identity
/// (JWS RS256, x5c chain from our CA, userId/iat/jti, short-lived, single-use).
pub(super) async fn trusted_session(
    ctx: Arc<HttpContext>,
    call: Call,
) -> Result<HttpResponse, ApiError> {
    let body: TrustedRequest = parse_json(&call.headers, &call.body)?;
    let Some(ca) = ctx.ca.clone() else {
        return Err(ApiError::not_found(
            ErrorCode::TrustedIdentityNotConfigured,
            "no certificate authority is configured",
        ));
    };
    let now = now_ms();
    let ctx_for_check = ctx.clone();
    // Signature checks and the revocation file read are blocking work.
    let verified = tokio::task::spawn_blocking(move || {
        crate::http::trusted_identity::verify(
            &body.token,
            &ca,
            &ctx_for_check.jtis,
            now / 1000,
            ctx_for_check.identity_max_age_secs,
        )
    })
    .await
    .map_err(|_| {
        ApiError::unauthorized(
            ErrorCode::TrustedIdentityMalformed,
            "the token could not be checked",
        )
    })?
    .map_err(|e| match e {
        // Not the token's fault: the replay cache is full of live entries; retry shortly.
        crate::http::trusted_identity::IdentityError::ReplayCacheFull => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.code(), e.to_string())
        }
        _ => ApiError::unauthorized(e.code(), e.to_string()),
    })?;
    let user = verified.user_id.clone();
    let program = verified.program.clone();
    let found = inspect(&ctx, move |state| {
        manage::customers::customer(state, &user, Some(&program)).map(|u| u.program.clone())
    })
    .await;
    // A partner vouches only for its own program's customers.
    let program = found.map_err(|e| {
        if e.status == StatusCode::SERVICE_UNAVAILABLE {
            return e;
        }
        ApiError::unauthorized(
            ErrorCode::TrustedIdentityUnknownUser,
            "the partner has no such customer",
        )
    })?;
    let subject = Subject::Customer {
        user: verified.user_id.clone(),
        program,
        installation: None,
    };
    let (token, expires) = ctx.sessions.start(subject, now);
    created(&serde_json::json!({
        "customerId": verified.user_id,
        "sessionToken": token,
        "expiresAt": manage::rfc3339(expires),
    }))
}

pub(super) async fn end_session(
    ctx: Arc<HttpContext>,
    call: Call,
) -> Result<HttpResponse, ApiError> {
    match &call.who {
        Principal::Customer { token, .. } | Principal::Admin { token, .. } => {
            ctx.sessions.end(token);
        }
        _ => {}
    }
    no_content()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    login: String,
    password: String,
}

/// Starts an admin session. Repeated wrong passwords lock the login for a while.
pub(super) async fn admin_login(
    ctx: Arc<HttpContext>,
    call: Call,
) -> Result<HttpResponse, ApiError> {
    let body: LoginRequest = parse_json(&call.headers, &call.body)?;
    let key = sessions::admin_key(&body.login);
    let lookup = key.clone();
    let admin: Option<Administrator> =
        inspect(&ctx, move |state| Ok(state.record(&lookup))).await?;
    let invalid =
        || ApiError::unauthorized(ErrorCode::InvalidCredentials, "wrong login or password");
    // Unknown logins cost a real check too, so their absence does not show in the time.
    let hash = admin.as_ref().map_or_else(
        || sessions::dummy_hash().to_string(),
        |a| a.password_hash.clone(),
    );
    let password = body.password;
    let good = tokio::task::spawn_blocking(move || sessions::verify_password(&password, &hash))
        .await
        .unwrap_or(false);
    let Some(admin) = admin else {
        return Err(invalid());
    };
    let now = now_ms();
    if admin.locked_until_ms > now {
        // Only the right password learns of the lock: a wrong one looks like any wrong one.
        return Err(if good {
            ApiError::new(
                StatusCode::LOCKED,
                ErrorCode::LoginLocked,
                format!(
                    "too many wrong passwords; try again after {}",
                    manage::rfc3339(admin.locked_until_ms)
                ),
            )
        } else {
            invalid()
        });
    }
    let policy = ctx.login_policy;
    let login = admin.login.clone();
    let locked = apply(&ctx, move |state, changes, now| {
        let Some(mut current) = state.record::<Administrator>(&key) else {
            return Ok(false);
        };
        if good {
            current.failed_attempts = 0;
        } else {
            current.failed_attempts += 1;
            if current.failed_attempts >= policy.max_failures {
                current.failed_attempts = 0;
                current.locked_until_ms =
                    now.saturating_add(u64::try_from(policy.lock.as_millis()).unwrap_or(u64::MAX));
            }
        }
        let locked = current.locked_until_ms > now;
        changes.put_record(state, &key, &current);
        Ok(locked)
    })
    .await?;
    if !good {
        if locked {
            tracing::warn!(login = %login, "administrator login locked after repeated wrong passwords");
        }
        return Err(invalid());
    }
    let (token, expires) = ctx.sessions.start(
        Subject::Admin {
            login: admin.login.clone(),
            role: admin.role,
        },
        now,
    );
    ok(
        &serde_json::json!({ "sessionToken": token, "expiresAt": manage::rfc3339(expires), "role": admin.role }),
    )
}

/// A single-use code the app pairs a device with.
pub(super) async fn pairing_code(
    ctx: Arc<HttpContext>,
    call: Call,
) -> Result<HttpResponse, ApiError> {
    let (user, program) = customer_scope(&call)?;
    let check = user.clone();
    inspect(&ctx, move |state| {
        manage::customers::customer(state, &check, program.as_deref()).map(|_| ())
    })
    .await?;
    let (code, expires) = ctx
        .sessions
        .new_pairing_code(&user, ctx.pairing_ttl, now_ms());
    created(&serde_json::json!({ "pairingCode": code, "expiresAt": manage::rfc3339(expires) }))
}
