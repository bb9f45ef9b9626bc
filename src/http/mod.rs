//! The HTTP listener. For now it serves `GET /health`; the management plane
//! (three channels) builds on it. `tls` is the mutual-TLS listener for partners.

pub mod tls;

use crate::engine::EngineHandle;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A JSON response.
fn json(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

/// The error body every endpoint uses: a machine-readable code and a message.
pub fn error(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    json(
        status,
        serde_json::json!({ "code": code, "message": message }).to_string(),
    )
}

async fn route(
    request: Request<Incoming>,
    engine: EngineHandle,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let response = match (request.method(), request.uri().path()) {
        (&Method::GET, "/health") => {
            // Healthy when the writer answers within a second.
            let alive = tokio::time::timeout(
                Duration::from_secs(1),
                engine.inspect(|state| state.cards.len()),
            )
            .await;
            match alive {
                Ok(Ok(cards)) => json(
                    StatusCode::OK,
                    serde_json::json!({ "status": "ok", "cards": cards }).to_string(),
                ),
                _ => error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ENGINE_UNAVAILABLE",
                    "the authorization engine is not answering",
                ),
            }
        }
        (_, "/health") => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            "use GET",
        ),
        _ => error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such endpoint"),
    };
    Ok(response)
}

/// Serves HTTP/1.1 until `shutdown` is cancelled.
pub async fn serve(listener: TcpListener, engine: EngineHandle, shutdown: CancellationToken) {
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let (socket, _) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "http accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let engine = engine.clone();
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            let service = service_fn(move |request| route(request, engine.clone()));
            let connection = http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(socket), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(5), connection).await;
                }
            }
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}
