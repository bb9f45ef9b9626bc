//! The route table of the three channels: what a route is, who may call it,
//! and every route of the HTTP plane. The table is the router: `dispatch`
//! matches against it, and a test checks it against the OpenAPI document in
//! `specs/openapi.json`, so the two cannot drift.
//!
//! `dispatch` finds the route and runs it; `request` authenticates the caller,
//! reads the body and opens JWE envelopes; `scope` says whose data a call is
//! about. One file per resource holds the handlers:
//! `sessions` (pairing, app sessions, admin login), `administrators`,
//! `customers`, `kyc` (with the eKYC provider's glue), `balances` (reloads,
//! partner balances, summary), `history`, `cards`, `notification_emails`,
//! and `ops` (health, readiness, metrics, OpenAPI). No handler touches a
//! socket or the store: every read and change goes through the engine's writer.

mod administrators;
mod balances;
mod cards;
mod customers;
mod history;
mod kyc;
mod notification_emails;
mod ops;
mod request;
mod scope;
mod sessions;

use super::api::{self, ApiError, HttpResponse};
use super::sessions::Role;
use super::HttpContext;
use crate::http::jwe::Encryption;
use crate::manage::error::ErrorCode;
use bytes::Bytes;
use hyper::header::HeaderMap;
use hyper::{Method, StatusCode};
use request::{authenticate, body_limit, match_path, open_envelope, read_body, seal};
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
            ApiError::bad_request(
                ErrorCode::InvalidPath,
                format!("missing path parameter {name}"),
            )
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
        route!(GET "/health", Public, ops::health),
        route!(GET "/openapi.json", Public, ops::openapi),
        route!(POST "/kyc/callback", Public, kyc::callback),
        // The cardholder's app.
        route!(POST "/customers/me/devices", Public, sessions::pair_device),
        route!(POST "/customers/me/sessions", Public, sessions::start_customer_session),
        route!(POST "/customers/me/sessions/trusted", Public, sessions::trusted_session),
        route!(DELETE "/customers/me/session", Customer, sessions::end_session),
        route!(GET "/customers/me", Customer, customers::get_customer),
        route!(POST "/customers/me/register", Customer, kyc::register),
        route!(GET "/customers/me/kyc", Customer, kyc::me_kyc),
        route!(PUT "/customers/me/kyc/documents/{kind}", Customer, kyc::upload_document),
        route!(GET "/customers/me/balances", Customer, balances::list_balances),
        route!(POST "/customers/me/balances", Customer, balances::create_balance),
        route!(GET "/customers/me/balances/{balanceId}", Customer, balances::get_balance),
        route!(GET "/customers/me/balances/{balanceId}/transactions", Customer, history::balance_history),
        route!(GET "/customers/me/cards/{cardId}/transactions", Customer, history::card_history),
        // The partner's servers.
        route!(POST "/secure/customers", Partner, customers::create_customer),
        route!(GET "/secure/customers/{customerId}", Partner, customers::get_customer),
        route!(POST "/secure/customers/{customerId}/register", Partner, kyc::register),
        route!(PUT "/secure/customers/{customerId}/kyc", Partner, kyc::external_kyc),
        route!(POST "/secure/customers/{customerId}/pairing-codes", Partner, sessions::pairing_code),
        route!(GET "/secure/customers/{customerId}/balances", Partner, balances::list_balances),
        route!(POST "/secure/customers/{customerId}/balances", Partner, balances::create_balance),
        route!(GET "/secure/customers/{customerId}/balances/{balanceId}", Partner, balances::get_balance),
        route!(POST "/secure/customers/{customerId}/balances/{balanceId}/reload", Partner, balances::reload_user_balance),
        route!(GET "/secure/customers/{customerId}/balances/{balanceId}/transactions", Partner, history::balance_history),
        route!(GET "/secure/customers/{customerId}/cards/{cardId}/transactions", Partner, history::card_history),
        route!(PUT "/secure/notification-emails", Partner, notification_emails::set_notification_emails),
        // The administration panel.
        route!(POST "/admin/login", Public, sessions::admin_login),
        route!(POST "/admin/logout", Admin(ANY_ROLE), sessions::end_session),
        route!(POST "/admin/administrators", Admin(ADMINS), administrators::add_administrator),
        route!(GET "/admin/kyc", Admin(ANY_ROLE), kyc::list_kyc),
        route!(GET "/admin/kyc/{customerId}", Admin(ANY_ROLE), kyc::get_kyc),
        route!(GET "/admin/kyc/{customerId}/documents/{documentId}", Admin(ANY_ROLE), kyc::get_document),
        route!(PUT "/admin/kyc/{customerId}/documents/{kind}", Admin(ANY_ROLE), kyc::upload_document),
        route!(POST "/admin/kyc/{customerId}/decision", Admin(MANAGERS), kyc::decide_kyc),
        route!(GET "/admin/customers/{customerId}", Admin(ANY_ROLE), customers::get_customer),
        route!(GET "/admin/customers/{customerId}/balances", Admin(ANY_ROLE), balances::list_balances),
        route!(POST "/admin/customers/{customerId}/balances", Admin(MANAGERS), balances::create_balance),
        route!(GET "/admin/balances/{balanceId}", Admin(ANY_ROLE), balances::admin_get_balance),
        route!(POST "/admin/balances/{balanceId}/reload", Admin(MANAGERS), balances::reload_user_balance),
        route!(GET "/admin/balances/{balanceId}/transactions", Admin(ANY_ROLE), history::balance_history),
        route!(GET "/admin/cards/{cardId}/transactions", Admin(ANY_ROLE), history::card_history),
        route!(POST "/admin/partner-balances", Admin(ADMINS), balances::create_partner_balance),
        route!(GET "/admin/partner-balances/{balanceId}", Admin(ANY_ROLE), balances::get_partner_balance),
        route!(POST "/admin/partner-balances/{balanceId}/reload", Admin(MANAGERS), balances::reload_partner_balance),
        route!(GET "/admin/summary", Admin(ANY_ROLE), balances::summary),
        // Cards, and the JWE public keys (the seed's tables say which travel as JWE).
        route!(GET "/customers/me/public_key", Public, cards::public_key),
        route!(GET "/customers/me/cards", Customer, cards::list),
        route!(POST "/customers/me/cards/virtual", Customer, cards::create_virtual, Encryption::Required),
        route!(POST "/customers/me/cards/virtual/async", Customer, cards::create_virtual_async),
        route!(GET "/customers/me/cards/operations/{operationId}", Customer, cards::operation),
        route!(POST "/customers/me/cards/physical", Customer, cards::order_physical, Encryption::Required),
        route!(GET "/customers/me/cards/{cardId}", Customer, cards::full_data, Encryption::Required),
        route!(POST "/customers/me/cards/{cardId}/print", Customer, cards::print, Encryption::Required),
        route!(POST "/customers/me/cards/{cardId}/activate", Customer, cards::activate),
        route!(POST "/customers/me/cards/{cardId}/lock", Customer, cards::lock),
        route!(POST "/customers/me/cards/{cardId}/unlock", Customer, cards::unlock),
        route!(DELETE "/customers/me/cards/{cardId}", Customer, cards::remove),
        route!(POST "/customers/me/cards/{cardId}/cvv", Customer, cards::reset_cvv, Encryption::Required),
        route!(POST "/customers/me/cards/{cardId}/pin", Customer, cards::set_pin, Encryption::Required),
        route!(GET "/secure/public_key", Partner, cards::public_key),
        route!(GET "/secure/customers/{customerId}/cards", Partner, cards::list),
        route!(POST "/secure/customers/{customerId}/cards/virtual", Partner, cards::create_virtual, Encryption::Required),
        route!(POST "/secure/customers/{customerId}/cards/virtual/async", Partner, cards::create_virtual_async),
        route!(GET "/secure/customers/{customerId}/cards/operations/{operationId}", Partner, cards::operation),
        route!(POST "/secure/customers/{customerId}/cards/physical", Partner, cards::order_physical, Encryption::Required),
        route!(GET "/secure/customers/{customerId}/cards/{cardId}", Partner, cards::full_data, Encryption::Required),
        route!(POST "/secure/customers/{customerId}/cards/{cardId}/print", Partner, cards::print, Encryption::Required),
        route!(POST "/secure/customers/{customerId}/cards/{cardId}/activate", Partner, cards::activate),
        route!(POST "/secure/customers/{customerId}/cards/{cardId}/lock", Partner, cards::lock),
        route!(POST "/secure/customers/{customerId}/cards/{cardId}/unlock", Partner, cards::unlock),
        route!(POST "/secure/external/locks", Partner, cards::external_lock),
        route!(GET "/admin/public_key", Public, cards::public_key),
        route!(GET "/admin/customers/{customerId}/cards", Admin(ANY_ROLE), cards::list),
        route!(POST "/admin/customers/{customerId}/cards/virtual", Admin(MANAGERS), cards::create_virtual, Encryption::Required),
        route!(POST "/admin/customers/{customerId}/cards/physical", Admin(ANY_ROLE), cards::order_physical, Encryption::Required),
        route!(GET "/admin/cards/{cardId}", Admin(ANY_ROLE), cards::get_masked),
        route!(POST "/admin/cards/{cardId}/print", Admin(ANY_ROLE), cards::print, Encryption::Required),
        route!(POST "/admin/cards/{cardId}/activate", Admin(ANY_ROLE), cards::activate),
        route!(POST "/admin/cards/{cardId}/lock", Admin(MANAGERS), cards::lock),
        route!(POST "/admin/cards/{cardId}/unlock", Admin(MANAGERS), cards::unlock),
        route!(DELETE "/admin/cards/{cardId}", Admin(MANAGERS), cards::remove),
        route!(POST "/admin/cards/{cardId}/cvv", Admin(ANY_ROLE), cards::reset_cvv, Encryption::Required),
        route!(POST "/admin/cards/{cardId}/personalised", Admin(MANAGERS), cards::personalised),
        // Operations.
        route!(GET "/ready", Public, ops::ready),
        route!(GET "/metrics", Public, ops::metrics_text),
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
    for route in &ctx.routes {
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
        return ApiError::not_found(ErrorCode::NotFound, "no such endpoint").response();
    }
    let mut response = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotAllowed,
        format!("this path takes {}", allowed.join(", ")),
    )
    .response();
    if let Ok(value) = hyper::header::HeaderValue::from_str(&allowed.join(", ")) {
        response.headers_mut().insert(hyper::header::ALLOW, value);
    }
    response
}
