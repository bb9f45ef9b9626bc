//! Mutual TLS for partner endpoints: the rustls configuration and the
//! client-certificate verifier (a certificate from our CA, naming a program,
//! not revoked; see [`server_config`]), and the accept loop: TLS handshake,
//! the partner's identity from the verified certificate, then HTTP/1.1 with
//! hyper, the identity handed to every request.

use crate::ca::{crypto, partner_identity, Ca, CaError, PartnerIdentity};
use crate::net::accept::AcceptLoop;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName as TlsDistinguishedName, SignatureScheme};
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
                () = shutdown.cancelled() => return,
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
                () = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(DRAIN_TIMEOUT, connection).await;
                }
            }
        }
        })
        .await;
    while tasks.join_next().await.is_some() {}
}

/// The rustls configuration of the `/secure` listener: a client certificate from `ca`, not revoked, is required.
pub fn server_config(ca: &Arc<Ca>) -> Result<Arc<rustls::ServerConfig>, CaError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca.ca_cert_der()))
        .map_err(crypto)?;
    let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(crypto)?;
    let verifier = Arc::new(PartnerCertVerifier {
        inner,
        ca: Arc::clone(ca),
    });
    let (chain, key) = ca.server_chain_and_key();
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(crypto)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(crypto)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // No session resumption: a resumed session skips client certificate
    // verification, so a revoked partner could keep reconnecting with an
    // old session. Every connection does a full handshake.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// WebPKI chain verification against our CA, then: a program is named and the serial is not revoked.
#[derive(Debug)]
struct PartnerCertVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    ca: Arc<Ca>,
}

impl ClientCertVerifier for PartnerCertVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[TlsDistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let Some(identity) = partner_identity(end_entity.as_ref()) else {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ));
        };
        if self.ca.is_revoked(&identity.serial_hex) {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Revoked,
            ));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
