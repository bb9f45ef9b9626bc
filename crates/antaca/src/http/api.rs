//! What every endpoint shares: the JSON error body, strict JSON bodies,
//! query parameters, responses, and the mapping of domain errors to statuses.

use crate::engine::ApplyError;
use crate::manage::error::ErrorCode;
use crate::manage::ManageError;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;

/// An HTTP response with a full body.
pub type HttpResponse = Response<Full<Bytes>>;

/// An error answered as `{"code": "...", "message": "..."}` with a 4xx/5xx status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: ErrorCode,
    /// Human-readable message (never card data).
    pub message: String,
}

impl ApiError {
    /// An error with a status, code and message.
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 with a code.
    pub fn bad_request(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401 with a code.
    pub fn unauthorized(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, code, message)
    }

    /// 403 with a code.
    pub fn forbidden(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, code, message)
    }

    /// 404 with a code.
    pub fn not_found(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }

    /// The response that carries this error.
    pub fn response(&self) -> HttpResponse {
        json_response(
            self.status,
            &serde_json::json!({ "code": self.code.as_str(), "message": self.message }),
        )
    }
}

impl From<ManageError> for ApiError {
    fn from(e: ManageError) -> ApiError {
        match e {
            ManageError::NotFound { code, message } => {
                ApiError::new(StatusCode::NOT_FOUND, code, message)
            }
            ManageError::Conflict { code, message } => {
                ApiError::new(StatusCode::CONFLICT, code, message)
            }
            ManageError::Invalid { code, message } if code == ErrorCode::UnsupportedMediaType => {
                ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, code, message)
            }
            ManageError::Invalid { code, message } => {
                ApiError::new(StatusCode::BAD_REQUEST, code, message)
            }
        }
    }
}

impl From<ApplyError> for ApiError {
    fn from(e: ApplyError) -> ApiError {
        // Not the client's fault: the one 5xx, for a store that cannot commit.
        tracing::error!(error = %e, "management operation not committed");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::StorageUnavailable,
            "the change could not be made durable; retry later",
        )
    }
}

/// A JSON response.
pub fn json_response<T: Serialize>(status: StatusCode, value: &T) -> HttpResponse {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// 200 with a JSON body.
pub fn ok<T: Serialize>(value: &T) -> Result<HttpResponse, ApiError> {
    Ok(json_response(StatusCode::OK, value))
}

/// 201 with a JSON body.
pub fn created<T: Serialize>(value: &T) -> Result<HttpResponse, ApiError> {
    Ok(json_response(StatusCode::CREATED, value))
}

/// 204 without a body.
pub fn no_content() -> Result<HttpResponse, ApiError> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    Ok(response)
}

/// Parses a JSON body strictly: it must be JSON, with known fields of the right types.
pub fn parse_json<T: DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, ApiError> {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    if !content_type.is_empty() && !media_type.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnsupportedMediaType,
            "send the body as application/json",
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        let message = e.to_string();
        let code = match e.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                ErrorCode::MalformedJson
            }
            serde_json::error::Category::Data if message.starts_with("unknown field") => {
                ErrorCode::UnknownField
            }
            serde_json::error::Category::Data if message.starts_with("missing field") => {
                ErrorCode::MissingField
            }
            _ => ErrorCode::InvalidField,
        };
        ApiError::bad_request(code, message)
    })
}

/// Query parameters (`a=1&b=2`), percent-decoded.
pub fn query_params(query: Option<&str>) -> HashMap<String, String> {
    let Some(query) = query else {
        return HashMap::new();
    };
    url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

/// The bearer token of the `Authorization` header.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}
