//! The mutual-TLS accept loop for partner endpoints: TLS handshake (client
//! certificate required by the `ServerConfig`, see `Ca::server_tls_config`),
//! the partner's identity from the verified certificate, then HTTP/1.1 with
//! hyper, the identity handed to every request.

use crate::ca::{partner_identity, PartnerIdentity};
use crate::net::accept::AcceptLoop;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// The longest a client may take to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The most partner connections open at once; more wait in the kernel's backlog.
pub const CONNECTIONS_MAX: usize = 1024;
/// How long connections in flight get to finish after shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves HTTP/1.1 over mutual TLS until `shutdown` is cancelled; `handler` gets each request with the partner's identity.
pub async fn serve_tls<F, Fut>(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    shutdown: CancellationToken,
    handler: F,
) where
    F: Fn(Request<Incoming>, Arc<PartnerIdentity>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let acceptor = TlsAcceptor::from(config);
    let accept = AcceptLoop::new("tls", CONNECTIONS_MAX);
    let mut tasks = accept
        .run(&listener, &shutdown, |socket, peer| {
        let acceptor = acceptor.clone();
        let handler = handler.clone();
        let shutdown = shutdown.clone();
        async move {
            let handshake = tokio::select! {
                _ = shutdown.cancelled() => return,
                done = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(socket)) => done,
            };
            let stream = match handshake {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "tls handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "tls handshake timed out");
                    return;
                }
            };
            // The verifier already checked chain, program and revocation; this
            // only reads the identity back out of the verified certificate.
            let identity = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|leaf| partner_identity(leaf.as_ref()));
            let Some(identity) = identity else {
                tracing::debug!(%peer, "tls peer has no partner identity; closing");
                return;
            };
            let identity = Arc::new(identity);
            let service = service_fn(move |request| {
                let handler = handler.clone();
                let identity = Arc::clone(&identity);
                async move { Ok::<_, Infallible>(handler(request, identity).await) }
            });
            let connection = http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(%peer, error = %e, "partner connection ended with an error");
                    }
                }
                _ = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(DRAIN_TIMEOUT, connection).await;
                }
            }
        }
        })
        .await;
    while tasks.join_next().await.is_some() {}
}
