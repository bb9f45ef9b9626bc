//! The route table of the three channels and their handlers. The table is the
//! router: `dispatch` matches against it, and a test checks it against the
//! OpenAPI document in `specs/openapi.json`, so the two cannot drift.

use super::api::{self, bearer, created, no_content, ok, parse_json, ApiError, HttpResponse};
use super::sessions::{self, Administrator, Installation, Role, SessionError, Subject};
use super::{card_routes, HttpContext};
use crate::engine::now_ms;
use crate::http::jwe::{self, Encryption};
use crate::manage::error::ErrorCode;
use crate::manage::history::HistoryFilter;
use crate::manage::kyc::{Decider, KycMode};
use crate::manage::{self, ManageError};
use bytes::Bytes;
use hyper::header::HeaderMap;
use hyper::{Method, StatusCode};
use serde::Deserialize;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone (login, pairing, health, the OpenAPI document).
    Public,
    /// The cardholder's app, with a session token.
    Customer,
    /// The administration panel, with a session token of one of these roles.
    Admin(&'static [Role]),
    /// The partner's servers, with a client certificate (TLS listener only).
    Partner,
}

/// Every role.
pub const ANY_ROLE: &[Role] = &[Role::Admin, Role::Manager, Role::Employee];
/// Admin and Manager.
pub const MANAGERS: &[Role] = &[Role::Admin, Role::Manager];
/// Admin only.
pub const ADMINS: &[Role] = &[Role::Admin];

/// The caller, once authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// Not authenticated (public routes).
    Anonymous,
    /// A cardholder.
    Customer {
        /// The customer.
        user: String,
        /// The customer's program.
        program: String,
        /// The session token.
        token: String,
    },
    /// An administrator.
    Admin {
        /// Login.
        login: String,
        /// Role.
        role: Role,
        /// The session token.
        token: String,
    },
    /// A partner's server.
    Partner {
        /// The program its certificate names.
        program: String,
    },
}

/// One request, as a handler sees it.
pub struct Call {
    /// Path parameters by name.
    pub params: HashMap<&'static str, String>,
    /// Query parameters.
    pub query: HashMap<String, String>,
    /// Request headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
    /// The caller.
    pub who: Principal,
    /// Method and path, for idempotency fingerprints.
    pub method: Method,
    /// The path.
    pub path: String,
}

impl Call {
    fn param(&self, name: &str) -> Result<&str, ApiError> {
        self.params.get(name).map(String::as_str).ok_or_else(|| {
            ApiError::bad_request("INVALID_PATH", format!("missing path parameter {name}"))
        })
    }
}

/// What a handler returns.
pub type Reply = Pin<Box<dyn Future<Output = Result<HttpResponse, ApiError>> + Send>>;
/// A handler.
pub type Handler = fn(Arc<HttpContext>, Call) -> Reply;

/// A route: method, path pattern (`{name}` segments), who may call it, handler.
pub struct Route {
    /// HTTP method.
    pub method: Method,
    /// Path pattern.
    pub pattern: &'static str,
    /// Who may call it.
    pub access: Access,
    /// The handler.
    pub handler: Handler,
    /// Whether the request and 2xx response travel as JWE (the seed's tables).
    pub encryption: Encryption,
}

macro_rules! route {
    ($method:ident $pattern:literal, $access:expr, $handler:path) => {
        route!($method $pattern, $access, $handler, Encryption::None)
    };
    ($method:ident $pattern:literal, $access:expr, $handler:path, $encryption:expr) => {
        Route {
            method: Method::$method,
            pattern: $pattern,
            access: $access,
            handler: |ctx, call| Box::pin($handler(ctx, call)),
            encryption: $encryption,
        }
    };
}

/// Every route of the HTTP plane.
pub fn routes() -> Vec<Route> {
    use Access::{Admin, Customer, Partner, Public};
    vec![
        route!(GET "/health", Public, health),
        route!(GET "/openapi.json", Public, openapi),
        route!(POST "/kyc/callback", Public, kyc_callback),
        // The cardholder's app.
        route!(POST "/customers/me/devices", Public, pair_device),
        route!(POST "/customers/me/sessions", Public, start_customer_session),
        route!(POST "/customers/me/sessions/trusted", Public, trusted_session),
        route!(DELETE "/customers/me/session", Customer, end_session),
        route!(GET "/customers/me", Customer, me),
        route!(POST "/customers/me/register", Customer, me_register),
        route!(GET "/customers/me/kyc", Customer, me_kyc),
        route!(PUT "/customers/me/kyc/documents/{kind}", Customer, me_upload_document),
        route!(GET "/customers/me/balances", Customer, list_balances),
        route!(POST "/customers/me/balances", Customer, create_balance),
        route!(GET "/customers/me/balances/{balanceId}", Customer, get_balance),
        route!(GET "/customers/me/balances/{balanceId}/transactions", Customer, balance_history),
        route!(GET "/customers/me/cards/{cardId}/transactions", Customer, card_history),
        // The partner's servers.
        route!(POST "/secure/customers", Partner, create_customer),
        route!(GET "/secure/customers/{customerId}", Partner, get_customer),
        route!(POST "/secure/customers/{customerId}/register", Partner, partner_register),
        route!(PUT "/secure/customers/{customerId}/kyc", Partner, external_kyc),
        route!(POST "/secure/customers/{customerId}/pairing-codes", Partner, pairing_code),
        route!(GET "/secure/customers/{customerId}/balances", Partner, list_balances),
        route!(POST "/secure/customers/{customerId}/balances", Partner, create_balance),
        route!(GET "/secure/customers/{customerId}/balances/{balanceId}", Partner, get_balance),
        route!(POST "/secure/customers/{customerId}/balances/{balanceId}/reload", Partner, reload_user_balance),
        route!(GET "/secure/customers/{customerId}/balances/{balanceId}/transactions", Partner, balance_history),
        route!(GET "/secure/customers/{customerId}/cards/{cardId}/transactions", Partner, card_history),
        route!(PUT "/secure/notification-emails", Partner, set_notification_emails),
        // The administration panel.
        route!(POST "/admin/login", Public, admin_login),
        route!(POST "/admin/logout", Admin(ANY_ROLE), end_session),
        route!(POST "/admin/administrators", Admin(ADMINS), add_administrator),
        route!(GET "/admin/kyc", Admin(ANY_ROLE), list_kyc),
        route!(GET "/admin/kyc/{customerId}", Admin(ANY_ROLE), get_kyc),
        route!(GET "/admin/kyc/{customerId}/documents/{documentId}", Admin(ANY_ROLE), get_document),
        route!(PUT "/admin/kyc/{customerId}/documents/{kind}", Admin(ANY_ROLE), admin_upload_document),
        route!(POST "/admin/kyc/{customerId}/decision", Admin(MANAGERS), decide_kyc),
        route!(GET "/admin/customers/{customerId}", Admin(ANY_ROLE), get_customer),
        route!(GET "/admin/customers/{customerId}/balances", Admin(ANY_ROLE), list_balances),
        route!(POST "/admin/customers/{customerId}/balances", Admin(MANAGERS), create_balance),
        route!(GET "/admin/balances/{balanceId}", Admin(ANY_ROLE), admin_get_balance),
        route!(POST "/admin/balances/{balanceId}/reload", Admin(MANAGERS), reload_user_balance),
        route!(GET "/admin/balances/{balanceId}/transactions", Admin(ANY_ROLE), balance_history),
        route!(GET "/admin/cards/{cardId}/transactions", Admin(ANY_ROLE), card_history),
        route!(POST "/admin/partner-balances", Admin(ADMINS), create_partner_balance),
        route!(GET "/admin/partner-balances/{balanceId}", Admin(ANY_ROLE), get_partner_balance),
        route!(POST "/admin/partner-balances/{balanceId}/reload", Admin(MANAGERS), reload_partner_balance),
        route!(GET "/admin/summary", Admin(ANY_ROLE), summary),
        // Cards, and the JWE public keys (the seed's tables say which travel as JWE).
        route!(GET "/customers/me/public_key", Public, card_routes::public_key),
        route!(GET "/customers/me/cards", Customer, card_routes::list),
        route!(POST "/customers/me/cards/virtual", Customer, card_routes::create_virtual, Encryption::Required),
        route!(POST "/customers/me/cards/virtual/async", Customer, card_routes::create_virtual_async),
        route!(GET "/customers/me/cards/operations/{operationId}", Customer, card_routes::operation),
        route!(POST "/customers/me/cards/physical", Customer, card_routes::order_physical, Encryption::Required),
        route!(GET "/customers/me/cards/{cardId}", Customer, card_routes::full_data, Encryption::Required),
        route!(POST "/customers/me/cards/{cardId}/print", Customer, card_routes::print, Encryption::Required),
        route!(POST "/customers/me/cards/{cardId}/activate", Customer, card_routes::activate),
        route!(POST "/customers/me/cards/{cardId}/lock", Customer, card_routes::lock),
        route!(POST "/customers/me/cards/{cardId}/unlock", Customer, card_routes::unlock),
        route!(DELETE "/customers/me/cards/{cardId}", Customer, card_routes::remove),
        route!(POST "/customers/me/cards/{cardId}/cvv", Customer, card_routes::reset_cvv, Encryption::Required),
        route!(POST "/customers/me/cards/{cardId}/pin", Customer, card_routes::set_pin, Encryption::Required),
        route!(GET "/secure/public_key", Partner, card_routes::public_key),
        route!(GET "/secure/customers/{customerId}/cards", Partner, card_routes::list),
        route!(POST "/secure/customers/{customerId}/cards/virtual", Partner, card_routes::create_virtual, Encryption::Required),
        route!(POST "/secure/customers/{customerId}/cards/virtual/async", Partner, card_routes::create_virtual_async),
        route!(GET "/secure/customers/{customerId}/cards/operations/{operationId}", Partner, card_routes::operation),
        route!(POST "/secure/customers/{customerId}/cards/physical", Partner, card_routes::order_physical, Encryption::Required),
        route!(GET "/secure/customers/{customerId}/cards/{cardId}", Partner, card_routes::full_data, Encryption::Required),
        route!(POST "/secure/customers/{customerId}/cards/{cardId}/print", Partner, card_routes::print, Encryption::Required),
        route!(POST "/secure/customers/{customerId}/cards/{cardId}/activate", Partner, card_routes::activate),
        route!(POST "/secure/customers/{customerId}/cards/{cardId}/lock", Partner, card_routes::lock),
        route!(POST "/secure/customers/{customerId}/cards/{cardId}/unlock", Partner, card_routes::unlock),
        route!(POST "/secure/external/locks", Partner, card_routes::external_lock),
        route!(GET "/admin/public_key", Public, card_routes::public_key),
        route!(GET "/admin/customers/{customerId}/cards", Admin(ANY_ROLE), card_routes::list),
        route!(POST "/admin/customers/{customerId}/cards/virtual", Admin(MANAGERS), card_routes::create_virtual, Encryption::Required),
        route!(POST "/admin/customers/{customerId}/cards/physical", Admin(ANY_ROLE), card_routes::order_physical, Encryption::Required),
        route!(GET "/admin/cards/{cardId}", Admin(ANY_ROLE), card_routes::get_masked),
        route!(POST "/admin/cards/{cardId}/print", Admin(ANY_ROLE), card_routes::print, Encryption::Required),
        route!(POST "/admin/cards/{cardId}/activate", Admin(ANY_ROLE), card_routes::activate),
        route!(POST "/admin/cards/{cardId}/lock", Admin(MANAGERS), card_routes::lock),
        route!(POST "/admin/cards/{cardId}/unlock", Admin(MANAGERS), card_routes::unlock),
        route!(DELETE "/admin/cards/{cardId}", Admin(MANAGERS), card_routes::remove),
        route!(POST "/admin/cards/{cardId}/cvv", Admin(ANY_ROLE), card_routes::reset_cvv, Encryption::Required),
        route!(POST "/admin/cards/{cardId}/personalised", Admin(MANAGERS), card_routes::personalised),
        // Operations.
        route!(GET "/ready", Public, ready),
        route!(GET "/metrics", Public, metrics_text),
    ]
}

/// The pattern of the route `method` and `path` reach (for metrics labels):
/// the route with that method, else any route of that path, else `"unmatched"`.
pub fn pattern_of(routes: &[Route], method: &Method, path: &str) -> &'static str {
    let mut by_path = None;
    for route in routes {
        if match_path(route.pattern, path).is_some() {
            if route.method == *method {
                return route.pattern;
            }
            by_path.get_or_insert(route.pattern);
        }
    }
    by_path.unwrap_or("unmatched")
}

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
fn authenticate(
    ctx: &HttpContext,
    access: Access,
    headers: &HeaderMap,
    partner: Option<&str>,
) -> Result<Principal, ApiError> {
    let session = |headers: &HeaderMap| -> Result<(String, Subject), ApiError> {
        let token = bearer(headers).ok_or_else(|| {
            ApiError::unauthorized(
                "UNAUTHORIZED",
                "send the session token as Authorization: Bearer <token>",
            )
        })?;
        match ctx.sessions.check(token, now_ms()) {
            Ok(subject) => Ok((token.to_string(), subject)),
            Err(SessionError::Expired) => Err(ApiError::unauthorized(
                "SESSION_EXPIRED",
                "the session expired; start a new one",
            )),
            Err(SessionError::Unknown) => Err(ApiError::unauthorized(
                "INVALID_SESSION",
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
                "CLIENT_CERTIFICATE_REQUIRED",
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
                "WRONG_CHANNEL",
                "an administrator's session cannot use the app channel",
            )),
        },
        Access::Admin(roles) => match session(headers)? {
            (token, Subject::Admin { login, role }) if roles.contains(&role) => {
                Ok(Principal::Admin { login, role, token })
            }
            (_, Subject::Admin { role, .. }) => Err(ApiError::forbidden(
                "FORBIDDEN_ROLE",
                format!("the {role:?} role may not do this; it needs one of {roles:?}"),
            )),
            _ => Err(ApiError::forbidden(
                "WRONG_CHANNEL",
                "a customer's session cannot use the admin channel",
            )),
        },
    }
}

/// Routes one request: finds the route, authenticates the caller, only then
/// reads the body (within the route's size limit and the body timeout), and
/// runs the handler. `partner` is the program of a verified client certificate
/// (TLS listener only); on that listener only partner routes are served, on
/// the plain one only the others.
pub async fn dispatch(
    ctx: Arc<HttpContext>,
    request: hyper::Request<hyper::body::Incoming>,
    partner: Option<&str>,
) -> HttpResponse {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path();
    let mut allowed: Vec<&str> = Vec::new();
    for route in ctx.routes.iter() {
        let Some(params) = match_path(route.pattern, path) else {
            continue;
        };
        let on_this_listener = (route.access == Access::Partner) == partner.is_some();
        if !on_this_listener && partner.is_some() {
            continue;
        }
        allowed.push(route.method.as_str());
        if route.method != parts.method {
            continue;
        }
        let who = match authenticate(&ctx, route.access, &parts.headers, partner) {
            Ok(who) => who,
            Err(e) => return e.response(),
        };
        let limit = if route.pattern.ends_with("/documents/{kind}") {
            body_limit(route.pattern)
        } else {
            ctx.body_limit
        };
        let body = match read_body(&ctx, body, limit).await {
            Ok(body) => body,
            Err(e) => return e.response(),
        };
        let (envelope, body) = match open_envelope(&ctx, route.encryption, &parts.headers, body) {
            Ok(opened) => opened,
            Err(response) => return response,
        };
        let call = Call {
            params,
            query: api::query_params(parts.uri.query()),
            headers: parts.headers,
            body,
            who,
            method: parts.method,
            path: path.to_string(),
        };
        let response = match (route.handler)(ctx.clone(), call).await {
            Ok(response) => response,
            Err(e) => e.response(),
        };
        return match envelope {
            Some(request) => seal(&request, response).await,
            None => response,
        };
    }
    if allowed.is_empty() {
        return ApiError::not_found("NOT_FOUND", "no such endpoint").response();
    }
    let mut response = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        format!("this path takes {}", allowed.join(", ")),
    )
    .response();
    if let Ok(value) = hyper::header::HeaderValue::from_str(&allowed.join(", ")) {
        response.headers_mut().insert(hyper::header::ALLOW, value);
    }
    response
}

/// Opens a JWE request on a route that takes encryption: the plain body for
/// the handler, and how to answer. Errors are the seed's codes, plain.
#[allow(clippy::result_large_err)]
fn open_envelope(
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
            "ENCRYPTION_UNAVAILABLE",
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
async fn seal(request: &jwe::JweRequest, response: HttpResponse) -> HttpResponse {
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
async fn read_body(
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
            "PAYLOAD_TOO_LARGE",
            format!("the body is larger than {limit} bytes or was cut off"),
        )),
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "REQUEST_TIMEOUT",
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

// ---------------------------------------------------------------------------
// Scope: which customer a call is about, and whether the caller may see it.

/// (customer id, program restriction) of a call: the session's own customer,
/// a customer of the partner's program, or any customer for administrators.
fn customer_scope(call: &Call) -> Result<(String, Option<String>), ApiError> {
    match &call.who {
        Principal::Customer { user, program, .. } => Ok((user.clone(), Some(program.clone()))),
        Principal::Partner { program } => {
            Ok((call.param("customerId")?.to_string(), Some(program.clone())))
        }
        Principal::Admin { .. } => Ok((call.param("customerId")?.to_string(), None)),
        Principal::Anonymous => Err(ApiError::unauthorized(
            "UNAUTHORIZED",
            "authentication required",
        )),
    }
}

/// Who made a change, for records.
fn actor(call: &Call) -> String {
    match &call.who {
        Principal::Customer { .. } => "customer".into(),
        Principal::Partner { program } => format!("partner:{program}"),
        Principal::Admin { login, .. } => format!("admin:{login}"),
        Principal::Anonymous => "anonymous".into(),
    }
}

async fn inspect<T: Send + 'static>(
    ctx: &HttpContext,
    f: impl FnOnce(&crate::engine::state::State) -> Result<T, ManageError> + Send + 'static,
) -> Result<T, ApiError> {
    match ctx.engine.inspect(f).await {
        Ok(result) => result.map_err(ApiError::from),
        Err(_) => Err(ApiError::from(crate::engine::ApplyError::Stopped)),
    }
}

async fn apply<T: Send + 'static>(
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

// ---------------------------------------------------------------------------
// Public.

async fn health(ctx: Arc<HttpContext>, _call: Call) -> Result<HttpResponse, ApiError> {
    let alive = tokio::time::timeout(
        std::time::Duration::from_secs(1),
        ctx.engine.inspect(|s| s.cards.len()),
    )
    .await;
    match alive {
        Ok(Ok(_)) => ok(&serde_json::json!({ "status": "ok" })),
        _ => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ENGINE_UNAVAILABLE",
            "the authorization engine is not answering",
        )),
    }
}

/// Readiness: the writer answers, its last commit did not fail, every listener is up.
async fn ready(ctx: Arc<HttpContext>, _call: Call) -> Result<HttpResponse, ApiError> {
    use std::sync::atomic::Ordering;
    let writer = tokio::time::timeout(
        std::time::Duration::from_secs(1),
        ctx.engine.inspect(|_| ()),
    )
    .await
    .is_ok_and(|answered| answered.is_ok());
    let status = ctx.engine.status();
    let commit_ok = !status.last_commit_failed();
    let last_commit_ms = status.last_commit_ms();
    let now = now_ms();
    let (iso, http, secure) = match &ctx.listeners {
        Some(l) => (
            l.iso.load(Ordering::Relaxed),
            l.http.load(Ordering::Relaxed),
            l.secure.as_ref().map(|s| s.load(Ordering::Relaxed)),
        ),
        None => (true, true, None),
    };
    let listeners_ok = iso && http && secure.unwrap_or(true);
    let details = serde_json::json!({
        "writer": writer,
        "store": {
            "lastCommitOk": commit_ok,
            "lastCommitAgeMs": (last_commit_ms > 0).then(|| now.saturating_sub(last_commit_ms)),
        },
        "listeners": { "iso": iso, "http": http, "secure": secure },
    });
    if writer && commit_ok && listeners_ok {
        let mut body = details;
        body["status"] = serde_json::json!("ready");
        return ok(&body);
    }
    let mut failing = Vec::new();
    if !writer {
        failing.push("the writer is not answering");
    }
    if !commit_ok {
        failing.push("the last commit failed");
    }
    if !listeners_ok {
        failing.push("a listener is down");
    }
    let body = serde_json::json!({
        "code": "NOT_READY",
        "message": format!("not ready: {}", failing.join("; ")),
        "details": details,
    });
    let mut response =
        hyper::Response::new(http_body_util::Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// The Prometheus text exposition of this process's metrics.
async fn metrics_text(_ctx: Arc<HttpContext>, _call: Call) -> Result<HttpResponse, ApiError> {
    let text = crate::app::metrics_handle()
        .map(|handle| handle.render())
        .unwrap_or_default();
    let mut response = hyper::Response::new(http_body_util::Full::new(Bytes::from(text)));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
}

async fn openapi(_ctx: Arc<HttpContext>, _call: Call) -> Result<HttpResponse, ApiError> {
    let mut response = hyper::Response::new(http_body_util::Full::new(Bytes::from_static(
        super::OPENAPI.as_bytes(),
    )));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

async fn kyc_callback(ctx: Arc<HttpContext>, call: Call) -> Result<HttpResponse, ApiError> {
    super::ekyc::callback(ctx, &call.headers, &call.body).await
}

// ---------------------------------------------------------------------------
// Sessions and pairing.

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PairRequest {
    pairing_code: String,
    device_id: String,
}

/// Pairs a device: uses the partner's single-use pairing code, replaces any
/// active installation of this customer on this device, starts a session.
async fn pair_device(ctx: Arc<HttpContext>, call: Call) -> Result<HttpResponse, ApiError> {
    let body: PairRequest = parse_json(&call.headers, &call.body)?;
    if body.device_id.is_empty() || body.device_id.len() > 128 {
        return Err(ApiError::bad_request(
            "INVALID_FIELD",
            "deviceId is 1 to 128 characters",
        ));
    }
    let now = now_ms();
    let code = ctx
        .sessions
        .take_pairing_code(&body.pairing_code, now)
        .ok_or_else(|| {
            ApiError::unauthorized(
                "INVALID_PAIRING_CODE",
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
async fn start_customer_session(
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
            "INVALID_INSTALLATION",
            "unknown installation",
        ));
    };
    if !installation.active {
        return Err(ApiError::unauthorized(
            "INSTALLATION_REPLACED",
            "this installation was replaced by a newer pairing on the device",
        ));
    }
    if sessions::sha256_hex(&body.installation_secret) != installation.secret_sha256 {
        return Err(ApiError::unauthorized(
            "INVALID_INSTALLATION",
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
async fn trusted_session(ctx: Arc<HttpContext>, call: Call) -> Result<HttpResponse, ApiError> {
    let body: TrustedRequest = parse_json(&call.headers, &call.body)?;
    let Some(ca) = ctx.ca.clone() else {
        return Err(ApiError::not_found(
            "TRUSTED_IDENTITY_NOT_CONFIGURED",
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
            "TRUSTED_IDENTITY_MALFORMED",
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
            "TRUSTED_IDENTITY_UNKNOWN_USER",
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

async fn end_session(ctx: Arc<HttpContext>, call: Call) -> Result<HttpResponse, ApiError> {
    match &call.who {
        Principal::Customer { token, .. } | Principal::Admin { token, .. } => {
            ctx.sessions.end(token)
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
async fn admin_login(ctx: Arc<HttpContext>, call: Call) -> Result<HttpResponse, ApiError> {
    let body: LoginRequest = parse_json(&call.headers, &call.body)?;
    let key = sessions::admin_key(&body.login);
    let lookup = key.clone();
    let admin: Option<Administrator> =
        inspect(&ctx, move |state| Ok(state.record(&lookup))).await?;
    let invalid = || ApiError::unauthorized("INVALID_CREDENTIALS", "wrong login or password");
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
                "LOGIN_LOCKED",
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAdministrator {
    login: String,
    password: String,
    role: Role,
}

async fn add_administrator(ctx: Arc<HttpContext>, call: Call) -> Result<HttpResponse, ApiError> {
    let body: NewAdministrator = parse_json(&call.headers, &call.body)?;
    validate_new_administrator(&body.login, &body.password)?;
    let password = body.password;
    let hash = tokio::task::spawn_blocking(move || sessions::hash_password(&password))
        .await
        .map_err(|_| ApiError::bad_request("INVALID_FIELD", "could not hash the password"))?
        .map_err(|e| ApiError::bad_request("INVALID_FIELD", e))?;
    let admin = Administrator {
        login: body.login.clone(),
        role: body.role,
        password_hash: hash,
        failed_attempts: 0,
        locked_until_ms: 0,
    };
    apply(&ctx, move |state, changes, _| {
        let key = sessions::admin_key(&admin.login);
        if state.records.contains_key(&key) {
            return Err(ManageError::Conflict {
                code: ErrorCode::AdministratorExists,
                message: format!("login {:?} exists", admin.login),
            });
        }
        changes.put_record(state, &key, &admin);
        Ok(())
    })
    .await?;
    created(&serde_json::json!({ "login": body.login, "role": body.role }))
}

/// Checks a new administrator's login and password.
pub fn validate_new_administrator(login: &str, password: &str) -> Result<(), ApiError> {
    if login.is_empty()
        || login.len() > 64
        || !login
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b))
    {
        return Err(ApiError::bad_request(
            "INVALID_FIELD",
            "login is 1 to 64 letters, digits or -_.@",
        ));
    }
    if password.chars().count() < 12 {
        return Err(ApiError::bad_request(
            "WEAK_PASSWORD",
            "a password has at least 12 characters",
        ));
    }
    Ok(())
}

/// A single-use code the app pairs a device with.
async fn pairing_code(ctx: Arc<HttpContext>, call: Call) -> Result<HttpResponse, ApiError> {
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

// ---------------------------------------------------------------------------
// Customers and KYC.

async fn create_customer(ctx: Arc<HttpContext>, call: Call) -> Result<HttpResponse, ApiError> {
    let Principal::Partner { program } = &call.who else {
        return Err(ApiError::forbidden(
            "WRONG_CHANNEL",
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

async fn get_customer(ctx: Arc<HttpContext>, call: Call) -> Result<HttpResponse, ApiError> {
    let (user, program) = customer_scope(&call)?;
    let view = inspect(&ctx, move |state| {
        manage::customers::customer(state, &user, program.as_deref())
            .map(|u| manage::customers::customer_view(state, u))
    })
    .await?;
    ok(&view)
}

async fn me(ctx: Arc<HttpContext>, call: Call) -> Result<HttpResponse, ApiError> {
    get_customer(ctx, call).await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RegisterRequest {
    #[serde(default)]
    mode: Option<KycMode>,
    #[serde(default)]
    data: Option<serde_json::Value>,
}

async fn register(ctx: Arc<HttpContext>, call: Call) -> Result<HttpResponse, ApiError> {
    let (user, program) = customer_scope(&call)?;
    let body: RegisterRequest = if call.body.is_empty() {
        RegisterRequest {
            mode: None,
            data: None,
        }
    } else {
        parse_json(&call.headers, &call.body)?
    };
    let mode = body.mode.unwrap_or(KycMode::Manual);
    if mode == KycMode::External {
        return Err(ApiError::bad_request(
            "INVALID_FIELD",
            "external KYC is set with PUT /secure/customers/{customerId}/kyc",
        ));
    }
    if mode == KycMode::Automatic && ctx.kyc_provider.is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "EKYC_NOT_CONFIGURED",
            "no eKYC provider is configured; use manual KYC",
        ));
    }
    let data = body.data.unwrap_or_else(|| serde_json::json!({}));
    let case = apply(&ctx, move |state, changes, now| {
        manage::kyc::start_kyc(state, changes, &user, program.as_deref(), mode, data, now)
    })
    .await?;
    if mode == KycMode::Automatic {
        super::ekyc::submit_in_background(ctx.clone(), case.clone());
    }
    Ok(api::json_response(StatusCode::ACCEPTED, &case))
}

async fn me_register(ctx: Arc<HttpContext>, call: Call) -> Result<HttpResponse, ApiError> {
    register(ctx, call).await
}

async fn partner_register(ctx: Arc<HttpContext>, call: Call) -> Result<HttpResponse, ApiError> {
    register(ctx, call).await
}

async fn me_kyc(ctx: Arc<HttpContext>, call: Call) -> Result<HttpResponse, ApiError> {
    let (user, _) = customer_scope(&call)?;
    let case: Option<manage::kyc::KycCase> = inspect(&ctx, move |state| {
        Ok(state.record(&manage::kyc::kyc_key(&user)))
    })
    .await?;
    match case {
        Some(case) => ok(&case),
        None => Err(ApiError::not_found(
            "KYC_NOT_STARTED",
            "no KYC submission yet",
        )),
    }
}

async fn upload_document(ctx: Arc<HttpContext>, call: Call) -> Result<HttpResponse, ApiError> {
    let (user, program) = customer_scope(&call)?;
    let kind = call.param("kind")?.to_string();
    let content_type = call
        .headers
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    let by = actor(&call);
    let body = call.body;
    let meta = apply(&ctx, move |state, changes, now| {
        manage::kyc::add_document(
            state,
            changes,
            &user,
            program.as_deref(),
            &kind,
            &content_type,
            &body,
            &by,
            now,
        )
    })
    .await?;
    created(&meta)
}

async fn me_upload_document(ctx: Arc<HttpContext>, call: Call) -> Result<HttpResponse, ApiError> {
    upload_document(ctx, call).await
}

async fn admin_upload_document(
    ctx: Arc<HttpContext>,
    call: Call,
) -> Result<HttpResponse, ApiError> {
    upload_document(ctx, call).await
}

#[derive(Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum Verdict {
    Accepted,
    Rejected,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionRequest {
    #[serde(alias = "status")]
    decision: Verdict,
    #[serde(default)]
    reason: Option<String>,
}

async fn decide(
    ctx: Arc<HttpContext>,
    call: Call,
    decider: Decider,
) -> Result<HttpResponse, ApiError> {
    let (user, program) = customer_scope(&call)?;
    let body: DecisionRequest = parse_json(&call.headers, &call.body)?;
    let accepted = matches!(body.decision, Verdict::Accepted);
    let case = apply(&ctx, move |state, changes, now| {
        manage::kyc::decide_kyc(
            state,
            changes,
            &user,
            program.as_deref(),
            accepted,
            body.reason,
            decider,
            now,
        )
    })
    .await?;
    ok(&case)
}

async fn decide_kyc(ctx: Arc<HttpContext>, call: Call) -> Result<HttpResponse, ApiError> {
    let Principal::Admin { login, .. } = &call.who else {
        return Err(ApiError::forbidden(
            "WRONG_CHANNEL",
            "manual KYC is decided in the administration panel",
        ));
    };
    let decider = Decider::Administrator(login.clone());
    decide(ctx, call, decider).await
}

async fn external_kyc(ctx: Arc<HttpContext>, call: Call) -> Result<HttpResponse, ApiError> {
    decide(ctx, call, Decider::Partner).await
}

async fn list_kyc(ctx: Arc<HttpContext>, call: Call) -> Result<HttpResponse, ApiError> {
    let status = call.query.get("status").cloned();
    let customer = call.query.get("customerId").cloned();
    let from = day_param(&call, "from")?;
    let to = day_param(&call, "to")?;
    let cases = inspect(&ctx, move |state| {
        let status = match status.as_deref() {
            None => None,
            Some(s) => Some(
                serde_json::from_value::<manage::kyc::KycStatus>(serde_json::Value::String(
                    s.to_string(),
                ))
                .map_err(|_| ManageError::Invalid {
                    code: ErrorCode::InvalidQuery,
                    message: "status is NONE, IN_PROGRESS, ACCEPTED or REJECTED".into(),
                })?,
            ),
        };
        Ok(state
            .records_under::<manage::kyc::KycCase>("kyc/")
            .map(|(_, c)| c)
            .filter(|c| status.is_none_or(|s| c.status == s))
            .filter(|c| customer.as_ref().is_none_or(|id| &c.customer_id == id))
            .filter(|c| {
                let day = crate::domain::calendar::date_of_ms(c.created_ms);
                from.is_none_or(|f| day >= f) && to.is_none_or(|t| day <= t)
            })
            .collect::<Vec<_>>())
    })
    .await?;
    ok(&serde_json::json!({ "items": cases }))
}

async fn get_kyc(ctx: Arc<HttpContext>, call: Call) -> Result<HttpResponse, ApiError> {
    let (user, _) = customer_scope(&call)?;
    let case: Option<manage::kyc::KycCase> = inspect(&ctx, move |state| {
        Ok(state.record(&manage::kyc::kyc_key(&user)))
    })
    .await?;
    case.map_or_else(
        || {
            Err(ApiError::not_found(
                "KYC_NOT_STARTED",
                "no KYC submission for this customer",
            ))
        },
        |c| ok(&c),
    )
}

async fn get_document(ctx: Arc<HttpContext>, call: Call) -> Result<HttpResponse, ApiError> {
    let (user, _) = customer_scope(&call)?;
    let id = call.param("documentId")?.to_string();
    let document = inspect(&ctx, move |state| {
        Ok(manage::kyc::document_bytes(state, &user, &id))
    })
    .await?;
    let Some((content_type, bytes)) = document else {
        return Err(ApiError::not_found(
            "DOCUMENT_NOT_FOUND",
            "no such document",
        ));
    };
    let mut response = hyper::Response::new(http_body_util::Full::new(Bytes::from(bytes)));
    if let Ok(value) = hyper::header::HeaderValue::from_str(&content_type) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    // Uploaded by customers: never let a browser render it in the panel's origin.
    let headers = response.headers_mut();
    headers.insert(
        "x-content-type-options",
        hyper::header::HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        hyper::header::CONTENT_DISPOSITION,
        hyper::header::HeaderValue::from_static("attachment"),
    );
    Ok(response)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EmailsRequest {
    emails: Vec<String>,
}

async fn set_notification_emails(
    ctx: Arc<HttpContext>,
    call: Call,
) -> Result<HttpResponse, ApiError> {
    let Principal::Partner { program } = &call.who else {
        return Err(ApiError::forbidden("WRONG_CHANNEL", "partner only"));
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

// ---------------------------------------------------------------------------
// Balances.

async fn list_balances(ctx: Arc<HttpContext>, call: Call) -> Result<HttpResponse, ApiError> {
    let (user, program) = customer_scope(&call)?;
    let views = inspect(&ctx, move |state| {
        let user = manage::customers::customer(state, &user, program.as_deref())?;
        let owner = crate::domain::model::BalanceOwner::User(user.id.clone());
        let mut views: Vec<_> = state
            .balances
            .values()
            .filter(|b| b.owner == owner)
            .map(|b| manage::balances::balance_view(state, b))
            .collect();
        views.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(views)
    })
    .await?;
    ok(&serde_json::json!({ "items": views }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewBalance {
    currency: String,
}

async fn create_balance(ctx: Arc<HttpContext>, call: Call) -> Result<HttpResponse, ApiError> {
    let (user, program) = customer_scope(&call)?;
    let body: NewBalance = parse_json(&call.headers, &call.body)?;
    let view = apply(&ctx, move |state, changes, _| {
        manage::balances::create_user_balance(
            state,
            changes,
            &user,
            program.as_deref(),
            &body.currency,
        )
    })
    .await?;
    created(&view)
}

/// The user balance of the path, as the caller may see it.
fn balance_scope(call: &Call) -> Result<(String, Option<String>, Option<String>), ApiError> {
    let balance = call.param("balanceId")?.to_string();
    Ok(match &call.who {
        Principal::Admin { .. } => (balance, None, None),
        _ => {
            let (user, program) = customer_scope(call)?;
            (balance, Some(user), program)
        }
    })
}

async fn get_balance(ctx: Arc<HttpContext>, call: Call) -> Result<HttpResponse, ApiError> {
    let (balance, user, program) = balance_scope(&call)?;
    let view = inspect(&ctx, move |state| {
        manage::balances::user_balance(state, &balance, user.as_deref(), program.as_deref())
            .map(|b| manage::balances::balance_view(state, b))
    })
    .await?;
    ok(&view)
}

async fn admin_get_balance(ctx: Arc<HttpContext>, call: Call) -> Result<HttpResponse, ApiError> {
    let balance = call.param("balanceId")?.to_string();
    let view = inspect(&ctx, move |state| {
        state
            .balances
            .get(&balance)
            .map(|b| manage::balances::balance_view(state, b))
            .ok_or(ManageError::NotFound {
                code: ErrorCode::BalanceNotFound,
                message: format!("no balance {balance:?}"),
            })
    })
    .await?;
    ok(&view)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReloadRequest {
    amount: String,
    currency: String,
}

/// A reload, idempotent under an `Idempotency-Key` header: a retry with the
/// same key and body returns the first answer and moves nothing twice.
async fn reload(
    ctx: Arc<HttpContext>,
    call: Call,
    partner_balance: bool,
) -> Result<HttpResponse, ApiError> {
    let (balance, user, program) = balance_scope(&call)?;
    let body: ReloadRequest = parse_json(&call.headers, &call.body)?;
    let idempotency = idempotency_key(&call)?.ok_or_else(|| {
        ApiError::bad_request(
            "IDEMPOTENCY_KEY_REQUIRED",
            "a reload moves money: send an Idempotency-Key header",
        )
    })?;
    // The request as understood, not its bytes: key order and "25.0" vs "25.00" do not matter.
    let fingerprint = {
        use sha2::Digest;
        let amount = body
            .amount
            .parse::<rust_decimal::Decimal>()
            .map(|d| d.normalize().to_string())
            .unwrap_or_else(|_| body.amount.clone());
        hex::encode(sha2::Sha256::digest(format!(
            "{} {}\n{amount}\n{}",
            call.method, call.path, body.currency
        )))
    };
    let scope = actor(&call);
    let (status, value) = apply(&ctx, move |state, changes, now| {
        let record_key = Some(format!("idem/{scope}/{idempotency}"));
        if let Some(key) = &record_key {
            if let Some(stored) = state.record::<StoredAnswer>(key) {
                if stored.fingerprint != fingerprint {
                    return Err(ManageError::Conflict {
                        code: ErrorCode::IdempotencyKeyReused,
                        message: "this Idempotency-Key was used for another request".into(),
                    });
                }
                return Ok((stored.status, stored.body));
            }
        }
        let target = if partner_balance {
            manage::balances::partner_balance(state, &balance)?
        } else {
            manage::balances::user_balance(state, &balance, user.as_deref(), program.as_deref())?
        };
        if target.currency != body.currency {
            return Err(ManageError::Invalid {
                code: ErrorCode::CurrencyMismatch,
                message: format!("the balance is in {}", target.currency),
            });
        }
        let amount = manage::balances::parse_amount(&body.amount, &body.currency)?;
        let view = manage::balances::reload(state, changes, &balance, amount, now)?;
        let value = serde_json::to_value(&view).unwrap_or_default();
        if let Some(key) = &record_key {
            changes.put_record(
                state,
                key,
                &StoredAnswer {
                    fingerprint,
                    status: 200,
                    body: value.clone(),
                    created_ms: now,
                },
            );
        }
        Ok((200u16, value))
    })
    .await?;
    Ok(api::json_response(
        StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
        &value,
    ))
}

/// A stored answer to an idempotent request, kept as `idem/{caller}/{key}`.
#[derive(serde::Serialize, Deserialize)]
struct StoredAnswer {
    fingerprint: String,
    status: u16,
    body: serde_json::Value,
    created_ms: u64,
}

fn idempotency_key(call: &Call) -> Result<Option<String>, ApiError> {
    match call.headers.get("idempotency-key") {
        None => Ok(None),
        Some(value) => match value.to_str() {
            Ok(key)
                if !key.is_empty()
                    && key.len() <= 128
                    && key.bytes().all(|b| b.is_ascii_graphic()) =>
            {
                Ok(Some(key.to_string()))
            }
            _ => Err(ApiError::bad_request(
                "INVALID_IDEMPOTENCY_KEY",
                "Idempotency-Key is 1 to 128 visible ASCII characters",
            )),
        },
    }
}

async fn reload_user_balance(ctx: Arc<HttpContext>, call: Call) -> Result<HttpResponse, ApiError> {
    reload(ctx, call, false).await
}

async fn reload_partner_balance(
    ctx: Arc<HttpContext>,
    call: Call,
) -> Result<HttpResponse, ApiError> {
    reload(ctx, call, true).await
}

async fn create_partner_balance(
    ctx: Arc<HttpContext>,
    call: Call,
) -> Result<HttpResponse, ApiError> {
    let body: manage::balances::NewPartnerBalance = parse_json(&call.headers, &call.body)?;
    let view = apply(&ctx, move |state, changes, _| {
        manage::balances::create_partner_balance(state, changes, body)
    })
    .await?;
    created(&view)
}

async fn get_partner_balance(ctx: Arc<HttpContext>, call: Call) -> Result<HttpResponse, ApiError> {
    let balance = call.param("balanceId")?.to_string();
    let view = inspect(&ctx, move |state| {
        manage::balances::partner_balance(state, &balance)
            .map(|b| manage::balances::balance_view(state, b))
    })
    .await?;
    ok(&view)
}

async fn summary(ctx: Arc<HttpContext>, _call: Call) -> Result<HttpResponse, ApiError> {
    let rows = inspect(&ctx, |state| Ok(manage::balances::summary(state))).await?;
    ok(&serde_json::json!({ "items": rows }))
}

// ---------------------------------------------------------------------------
// History.

fn day_param(call: &Call, name: &str) -> Result<Option<crate::domain::calendar::Date>, ApiError> {
    match call.query.get(name) {
        None => Ok(None),
        Some(text) => manage::history::parse_day(text).map(Some).ok_or_else(|| {
            ApiError::bad_request("INVALID_QUERY", format!("{name} is a day, YYYY-MM-DD"))
        }),
    }
}

fn history_filter(call: &Call) -> Result<HistoryFilter, ApiError> {
    let number = |name: &str| -> Result<Option<u64>, ApiError> {
        match call.query.get(name) {
            None => Ok(None),
            Some(t) => t
                .parse()
                .map(Some)
                .map_err(|_| ApiError::bad_request("INVALID_QUERY", format!("{name} is a number"))),
        }
    };
    let limit = number("limit")?.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad_request("INVALID_QUERY", "limit is 1 to 500"));
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

async fn balance_history(ctx: Arc<HttpContext>, call: Call) -> Result<HttpResponse, ApiError> {
    let (balance, user, program) = balance_scope(&call)?;
    let mut filter = history_filter(&call)?;
    let page = inspect(&ctx, move |state| {
        if user.is_some() {
            manage::balances::user_balance(state, &balance, user.as_deref(), program.as_deref())?;
        } else if !state.balances.contains_key(&balance) {
            return Err(ManageError::NotFound {
                code: ErrorCode::BalanceNotFound,
                message: format!("no balance {balance:?}"),
            });
        }
        filter.balance = Some(balance);
        Ok(manage::history::history(state, &filter))
    })
    .await?;
    ok(&page)
}

async fn card_history(ctx: Arc<HttpContext>, call: Call) -> Result<HttpResponse, ApiError> {
    let card = call.param("cardId")?.to_string();
    let scope = match &call.who {
        Principal::Admin { .. } => None,
        _ => Some(customer_scope(&call)?),
    };
    let mut filter = history_filter(&call)?;
    let page = inspect(&ctx, move |state| {
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
        Ok(manage::history::history(state, &filter))
    })
    .await?;
    ok(&page)
}
