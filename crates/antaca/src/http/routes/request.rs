//! What `dispatch` does to a request before a handler sees it: match the
//! path, authenticate the caller, read the body within its limits, open and
//! seal JWE envelopes. It never looks at what a handler does with the call.

use super::{Access, Principal};
use crate::engine::now_ms;
use crate::http::api::{bearer, ApiError, HttpResponse};
use crate::http::jwe::{self, Encryption};
use crate::http::sessions::{SessionError, Subject};
use crate::http::HttpContext;
use crate::manage;
use crate::manage::error::ErrorCode;
use bytes::Bytes;
use hyper::header::HeaderMap;
use hyper::StatusCode;
use std::collections::HashMap;

/// Matches a path against a pattern; returns the parameters.
pub fn match_path(pattern: &'static str, path: &str) -> Option<HashMap<&'static str, String>> {
    let mut params = HashMap::new();
    let mut pattern_parts = pattern.split('/');
    let mut path_parts = path.split('/');
    loop {
        match (pattern_parts.next(), path_parts.next()) {
            (None, None) => return Some(params),
            (Some(p), Some(s)) if p.starts_with('{') && p.ends_with('}') && !s.is_empty() => {
                let decoded = percent_decode(s)?;
                params.insert(&p[1..p.len() - 1], decoded);
            }
            (Some(p), Some(s)) if p == s => {}
            _ => return None,
        }
    }
}

fn percent_decode(segment: &str) -> Option<String> {
    let decoded: String =
        url::form_urlencoded::parse(format!("x={}", segment.replace('+', "%2B")).as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())?;
    (!decoded.contains('/')).then_some(decoded)
}

/// Authenticates the caller for a route.
pub(super) fn authenticate(
    ctx: &HttpContext,
    access: Access,
    headers: &HeaderMap,
    partner: Option<&str>,
) -> Result<Principal, ApiError> {
    let session = |headers: &HeaderMap| -> Result<(String, Subject), ApiError> {
        let token = bearer(headers).ok_or_else(|| {
            ApiError::unauthorized(
                ErrorCode::Unauthorized,
                "send the session token as Authorization: Bearer <token>",
            )
        })?;
        match ctx.sessions.check(token, now_ms()) {
            Ok(subject) => Ok((token.to_string(), subject)),
            Err(SessionError::Expired) => Err(ApiError::unauthorized(
                ErrorCode::SessionExpired,
                "the session expired; start a new one",
            )),
            Err(SessionError::Unknown) => Err(ApiError::unauthorized(
                ErrorCode::InvalidSession,
                "unknown session token",
            )),
        }
    };
    match access {
        Access::Public => Ok(Principal::Anonymous),
        Access::Partner => match partner {
            Some(program) => Ok(Principal::Partner {
                program: program.to_string(),
            }),
            None => Err(ApiError::forbidden(
                ErrorCode::ClientCertificateRequired,
                "the /secure channel is served on the TLS listener with a client certificate",
            )),
        },
        Access::Customer => match session(headers)? {
            (token, Subject::Customer { user, program, .. }) => Ok(Principal::Customer {
                user,
                program,
                token,
            }),
            _ => Err(ApiError::forbidden(
                ErrorCode::WrongChannel,
                "an administrator's session cannot use the app channel",
            )),
        },
        Access::Admin(roles) => match session(headers)? {
            (token, Subject::Admin { login, role }) if roles.contains(&role) => {
                Ok(Principal::Admin { login, role, token })
            }
            (_, Subject::Admin { role, .. }) => Err(ApiError::forbidden(
                ErrorCode::ForbiddenRole,
                format!("the {role:?} role may not do this; it needs one of {roles:?}"),
            )),
            _ => Err(ApiError::forbidden(
                ErrorCode::WrongChannel,
                "a customer's session cannot use the admin channel",
            )),
        },
    }
}

/// Opens a JWE request on a route that takes encryption: the plain body for
/// the handler, and how to answer. Errors are the seed's codes, plain.
#[allow(clippy::result_large_err)]
pub(super) fn open_envelope(
    ctx: &HttpContext,
    policy: Encryption,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<(Option<jwe::JweRequest>, Bytes), HttpResponse> {
    if policy == Encryption::None {
        return Ok((None, body));
    }
    let Some(keys) = &ctx.jwe else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::EncryptionUnavailable,
            "no JWE key is configured",
        )
        .response());
    };
    match jwe::open_request(keys, headers, &body, policy) {
        Ok((request, plain)) => Ok((Some(request), Bytes::from(plain))),
        Err(e) => Err(jwe_error(&e)),
    }
}

fn jwe_error(e: &jwe::JweError) -> HttpResponse {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = hyper::Response::new(http_body_util::Full::new(Bytes::from(e.body())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

/// Encrypts a 2xx answer (not 204) to the client's key when its request was encrypted.
pub(super) async fn seal(request: &jwe::JweRequest, response: HttpResponse) -> HttpResponse {
    use http_body_util::BodyExt;
    if !request.encrypted {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = match body.collect().await {
        Ok(collected) => collected.to_bytes().to_vec(),
        Err(never) => match never {},
    };
    match jwe::seal_response(request, parts.status.as_u16(), bytes) {
        Ok(sealed) => {
            parts.headers.insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json"),
            );
            parts.headers.remove(hyper::header::CONTENT_LENGTH);
            hyper::Response::from_parts(parts, http_body_util::Full::new(Bytes::from(sealed)))
        }
        Err(e) => jwe_error(&e),
    }
}

/// Reads a whole body within `limit` bytes and the body timeout.
pub(super) async fn read_body(
    ctx: &HttpContext,
    body: hyper::body::Incoming,
    limit: usize,
) -> Result<Bytes, ApiError> {
    use http_body_util::BodyExt;
    let collected = tokio::time::timeout(
        ctx.body_timeout,
        http_body_util::Limited::new(body, limit).collect(),
    )
    .await;
    match collected {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(_)) => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::PayloadTooLarge,
            format!("the body is larger than {limit} bytes or was cut off"),
        )),
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            ErrorCode::RequestTimeout,
            "the body took too long",
        )),
    }
}

/// The largest body a route accepts: document uploads are bigger than JSON.
pub fn body_limit(pattern: &str) -> usize {
    if pattern.ends_with("/documents/{kind}") {
        manage::kyc::DOCUMENT_MAX_BYTES + 1024
    } else {
        64 * 1024
    }
}
