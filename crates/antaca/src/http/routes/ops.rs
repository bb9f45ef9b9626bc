//! Operations endpoints: liveness, readiness, Prometheus metrics and the
//! OpenAPI document. They read the engine's status; they change nothing.

use super::Call;
use crate::engine::now_ms;
use crate::http::api::{ok, ApiError, HttpResponse};
use crate::http::HttpContext;
use crate::manage::error::ErrorCode;
use bytes::Bytes;
use hyper::StatusCode;
use std::sync::Arc;

pub(super) async fn health(ctx: Arc<HttpContext>, _call: Call) -> Result<HttpResponse, ApiError> {
    let alive = tokio::time::timeout(
        std::time::Duration::from_secs(1),
        ctx.engine.inspect(|s| s.cards.len()),
    )
    .await;
    match alive {
        Ok(Ok(_)) => ok(&serde_json::json!({ "status": "ok" })),
        _ => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::EngineUnavailable,
            "the authorization engine is not answering",
        )),
    }
}

/// Readiness: the writer answers, its last commit did not fail, every listener is up.
pub(super) async fn ready(ctx: Arc<HttpContext>, _call: Call) -> Result<HttpResponse, ApiError> {
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
        "code": ErrorCode::NotReady,
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
pub(super) async fn metrics_text(
    ctx: Arc<HttpContext>,
    _call: Call,
) -> Result<HttpResponse, ApiError> {
    let text = ctx
        .metrics
        .as_ref()
        .map(metrics_exporter_prometheus::PrometheusHandle::render)
        .unwrap_or_default();
    let mut response = hyper::Response::new(http_body_util::Full::new(Bytes::from(text)));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
}

pub(super) async fn openapi(_ctx: Arc<HttpContext>, _call: Call) -> Result<HttpResponse, ApiError> {
    let mut response = hyper::Response::new(http_body_util::Full::new(Bytes::from_static(
        crate::http::OPENAPI.as_bytes(),
    )));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}
