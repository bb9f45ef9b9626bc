//! The HTTP plane: the cardholder's app (`/customers/me`) and the
//! administration panel (`/admin`) on the plain listener, the partner's
//! servers (`/secure`) on the TLS listener with client certificates. Every
//! change goes through the engine's writer, so the next authorization sees it.
//!
//! Owns: the router and one handler file per resource (`routes`), the JWE
//! envelope (`jwe`), sessions and roles (`sessions`), trusted identities
//! (`trusted_identity`), TLS and the client-certificate verifier (`tls`).
//! Must never touch: management rules (they are `manage`'s) or the store;
//! state is read and changed only through the engine's handle.

pub mod api;
pub mod jwe;
pub mod routes;
pub mod sessions;
pub mod tls;
pub mod trusted_identity;

use crate::engine::EngineHandle;
use crate::net::accept::AcceptLoop;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The OpenAPI document of the HTTP plane (served at `/openapi.json`).
pub const OPENAPI: &str = include_str!("../../../../specs/openapi.json");

/// Most HTTP connections at once on the plain listener by default; more wait in the backlog.
pub const CONNECTIONS_MAX: usize = 1024;

/// Largest JSON request body by default, in bytes.
pub const BODY_LIMIT: usize = 64 * 1024;

/// When repeated wrong passwords lock an administrator's login, and for how long.
#[derive(Clone, Copy, Debug)]
pub struct LoginPolicy {
    /// Wrong passwords in a row that lock the login.
    pub max_failures: u32,
    /// How long it stays locked.
    pub lock: Duration,
}

/// Settings of the HTTP plane.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// Lifetime of an app session.
    pub customer_session: Duration,
    /// Lifetime of an admin session.
    pub admin_session: Duration,
    /// Lifetime of a pairing code.
    pub pairing_code: Duration,
    /// Login lockout.
    pub login_policy: LoginPolicy,
    /// Time to send the request headers.
    pub header_timeout: Duration,
    /// Time to send the body.
    pub body_timeout: Duration,
    /// The external eKYC provider, if automatic KYC is offered.
    pub kyc_provider: Option<crate::integrations::kyc_provider::ProviderConfig>,
    /// Most connections at once on the plain listener; more wait in the backlog.
    pub max_connections: usize,
    /// Largest JSON request body, in bytes (document uploads have their own limit).
    pub body_limit: usize,
}

/// Which listeners are up, for the readiness probe.
#[derive(Debug, Default)]
pub struct Listeners {
    /// The ISO 8583 listener accepts.
    pub iso: std::sync::atomic::AtomicBool,
    /// The plain HTTP listener accepts.
    pub http: std::sync::atomic::AtomicBool,
    /// The TLS listener accepts; `None`: none is configured.
    pub secure: Option<std::sync::atomic::AtomicBool>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            customer_session: Duration::from_mins(10),
            admin_session: Duration::from_mins(15),
            pairing_code: Duration::from_mins(10),
            login_policy: LoginPolicy {
                max_failures: 5,
                lock: Duration::from_mins(15),
            },
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            kyc_provider: None,
            max_connections: CONNECTIONS_MAX,
            body_limit: BODY_LIMIT,
        }
    }
}

/// What every HTTP request shares.
pub struct HttpContext {
    /// The writer.
    pub engine: EngineHandle,
    /// Session tokens and pairing codes.
    pub sessions: sessions::Sessions,
    /// Login lockout.
    pub login_policy: LoginPolicy,
    /// Lifetime of a pairing code.
    pub pairing_ttl: Duration,
    /// The eKYC provider.
    pub kyc_provider: Option<crate::integrations::kyc_provider::ProviderConfig>,
    /// Body timeout.
    pub body_timeout: Duration,
    /// Header timeout.
    pub header_timeout: Duration,
    /// The route table.
    pub routes: Vec<routes::Route>,
    /// Our CA: checks trusted identities (and partner certificates on the TLS listener).
    pub ca: Option<Arc<crate::ca::Ca>>,
    /// Trusted-identity `jti`s already used.
    pub jtis: crate::http::trusted_identity::JtiCache,
    /// Oldest `iat` a trusted identity may carry, in seconds.
    pub identity_max_age_secs: u64,
    /// Our JWE key pair (sensitive requests and responses).
    pub jwe: Option<Arc<crate::http::jwe::ServerKeys>>,
    /// Keyed hashes, the PAN vault and the CVK for card operations.
    pub card_keys: Option<crate::manage::cards::CardKeys>,
    /// Most connections at once on the plain listener.
    pub max_connections: usize,
    /// Largest JSON request body, in bytes.
    pub body_limit: usize,
    /// Which listeners are up (`None`: not tracked, taken as up).
    pub listeners: Option<Arc<Listeners>>,
    /// The process's Prometheus recorder, rendered at `/metrics` (`None`: `/metrics` is empty).
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// Where KYC documents' bytes are kept (`None`: uploads are refused as
    /// storage unavailable).
    pub blobs: Option<crate::store::blobs::BlobStore>,
}

impl HttpContext {
    /// A context over the engine with these settings and the CA.
    pub fn new(
        engine: EngineHandle,
        config: HttpConfig,
        ca: Option<Arc<crate::ca::Ca>>,
    ) -> HttpContext {
        HttpContext {
            engine,
            sessions: sessions::Sessions::new(config.customer_session, config.admin_session),
            login_policy: config.login_policy,
            pairing_ttl: config.pairing_code,
            kyc_provider: config.kyc_provider,
            body_timeout: config.body_timeout,
            header_timeout: config.header_timeout,
            routes: routes::routes(),
            ca,
            jtis: crate::http::trusted_identity::JtiCache::default(),
            identity_max_age_secs: crate::http::trusted_identity::MAX_AGE_SECS_DEFAULT,
            jwe: None,
            card_keys: None,
            max_connections: config.max_connections.max(1),
            body_limit: config.body_limit,
            listeners: None,
            metrics: None,
            blobs: None,
        }
    }
}

/// Dispatches one request. `partner` is the program of the verified client
/// certificate (TLS listener).
pub async fn handle(
    ctx: Arc<HttpContext>,
    request: Request<Incoming>,
    partner: Option<String>,
) -> Response<Full<Bytes>> {
    let started = std::time::Instant::now();
    let method = request.method().clone();
    let pattern = routes::pattern_of(&ctx.routes, &method, request.uri().path());
    let response = routes::dispatch(ctx, request, partner.as_deref()).await;
    // Labels are the route's pattern and the method, never the raw path (it may carry ids).
    let method: &'static str = match method.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "OTHER",
    };
    metrics::counter!(
        "antaca_http_requests_total",
        "method" => method,
        "route" => pattern,
        "status" => response.status().as_str().to_string()
    )
    .increment(1);
    metrics::histogram!("antaca_http_request_duration_seconds", "route" => pattern)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Serves the plain HTTP/1.1 listener (app and admin channels) until `shutdown`.
pub async fn serve(listener: TcpListener, ctx: Arc<HttpContext>, shutdown: CancellationToken) {
    let accept = AcceptLoop::new("http", ctx.max_connections);
    let mut tasks = accept
        .run(&listener, &shutdown, |socket, _peer| {
            let ctx = ctx.clone();
            let shutdown = shutdown.clone();
            async move {
                let header_timeout = ctx.header_timeout;
                let service = service_fn(move |request| {
                    let ctx = ctx.clone();
                    async move { Ok::<_, Infallible>(handle(ctx, request, None).await) }
                });
                serve_connection(TokioIo::new(socket), service, header_timeout, shutdown).await;
            }
        })
        .await;
    while tasks.join_next().await.is_some() {}
}

/// Serves one HTTP/1.1 connection, finishing gracefully on shutdown.
pub async fn serve_connection<I, S>(
    io: I,
    service: S,
    header_timeout: Duration,
    shutdown: CancellationToken,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = Full<Bytes>> + Send,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let connection = http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(io, service);
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), connection).await;
        }
    }
}
