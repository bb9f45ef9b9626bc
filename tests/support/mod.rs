//! Test doubles of the outside world, shared by the integration tests: an
//! SMTP sink that records what it is sent (and can fail on demand), and an
//! eKYC provider stub over real HTTP. Both listen on 127.0.0.1:0 and stop
//! when dropped.
#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Locks a test double's shared state; a panicking handler poisons nothing we care about.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

// ---------------------------------------------------------------- SMTP sink

/// How the SMTP sink answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpMode {
    /// A normal server: every message is accepted and recorded.
    Accept,
    /// Answers `451` to DATA (a temporary failure); nothing is recorded.
    RejectData,
    /// Greets with `421` and closes the connection at once.
    Refuse,
}

/// One message the sink accepted.
#[derive(Clone, Debug)]
pub struct ReceivedMail {
    /// The envelope sender (MAIL FROM).
    pub from: String,
    /// The envelope recipients (RCPT TO).
    pub to: Vec<String>,
    /// The message as sent after DATA (headers and body, dot-unstuffed).
    pub data: String,
}

impl ReceivedMail {
    /// The value of the first header called `name` (case-insensitive), unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        let (head, _) = self.data.split_once("\r\n\r\n")?;
        let mut value: Option<String> = None;
        for line in head.split("\r\n") {
            if let Some(v) = value.as_mut() {
                if line.starts_with(' ') || line.starts_with('\t') {
                    v.push_str(line);
                    continue;
                }
                break;
            }
            if let Some((n, v)) = line.split_once(':') {
                if n.eq_ignore_ascii_case(name) {
                    value = Some(v.trim().to_string());
                }
            }
        }
        value
    }

    /// The body after the headers.
    pub fn body(&self) -> String {
        self.data
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default()
    }
}

#[derive(Debug)]
struct SinkShared {
    mode: SmtpMode,
    mails: Vec<ReceivedMail>,
    connections: usize,
}

/// A tiny SMTP server speaking just enough of RFC 5321 for lettre.
pub struct SmtpSink {
    /// Where it listens.
    pub addr: SocketAddr,
    shared: Arc<Mutex<SinkShared>>,
    task: JoinHandle<()>,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Longest command or data line the sink reads.
const SMTP_LINE_MAX: u64 = 4096;
/// Largest message the sink takes.
const SMTP_MESSAGE_MAX: usize = 1 << 20;

impl SmtpSink {
    /// Starts a sink on 127.0.0.1:0 that accepts everything.
    pub async fn start() -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shared = Arc::new(Mutex::new(SinkShared {
            mode: SmtpMode::Accept,
            mails: Vec::new(),
            connections: 0,
        }));
        let accept_shared = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                lock(&accept_shared).connections += 1;
                let shared = accept_shared.clone();
                tokio::spawn(async move {
                    // A broken session only matters to the test through what was recorded.
                    let _ = smtp_session(stream, shared).await;
                });
            }
        });
        SmtpSink { addr, shared, task }
    }

    /// Changes how the next commands are answered.
    pub fn set_mode(&self, mode: SmtpMode) {
        lock(&self.shared).mode = mode;
    }

    /// Every message accepted so far.
    pub fn mails(&self) -> Vec<ReceivedMail> {
        lock(&self.shared).mails.clone()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        lock(&self.shared).connections
    }

    /// An SMTP configuration pointing at this sink.
    pub fn config(&self) -> antaca::integrations::notify::SmtpConfig {
        antaca::integrations::notify::SmtpConfig {
            host: self.addr.ip().to_string(),
            port: self.addr.port(),
            from: "antaca@issuer.test".into(),
            timeout: Duration::from_secs(5),
        }
    }

    /// Waits (in real time, up to `limit`) until at least `n` messages arrived.
    pub async fn wait_for(&self, n: usize, limit: Duration) -> Vec<ReceivedMail> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let mails = self.mails();
            if mails.len() >= n || tokio::time::Instant::now() >= deadline {
                return mails;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The address inside `<...>` of a MAIL FROM / RCPT TO argument.
fn angle_address(argument: &str) -> String {
    match (argument.find('<'), argument.find('>')) {
        (Some(start), Some(end)) if start < end => argument[start + 1..end].to_string(),
        _ => argument.trim().to_string(),
    }
}

async fn smtp_session(stream: TcpStream, shared: Arc<Mutex<SinkShared>>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    if lock(&shared).mode == SmtpMode::Refuse {
        write
            .write_all(b"421 sink.test refuses service\r\n")
            .await?;
        return Ok(());
    }
    write.write_all(b"220 sink.test ESMTP ready\r\n").await?;
    let mut from = String::new();
    let mut to: Vec<String> = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if (&mut read).take(SMTP_LINE_MAX).read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end();
        let upper = command.to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            write
                .write_all(b"250-sink.test\r\n250 8BITMIME\r\n")
                .await?;
        } else if upper.starts_with("HELO") {
            write.write_all(b"250 sink.test\r\n").await?;
        } else if upper.starts_with("MAIL FROM:") {
            from = angle_address(&command[10..]);
            to.clear();
            write.write_all(b"250 OK\r\n").await?;
        } else if upper.starts_with("RCPT TO:") {
            to.push(angle_address(&command[8..]));
            write.write_all(b"250 OK\r\n").await?;
        } else if upper == "DATA" {
            if lock(&shared).mode != SmtpMode::Accept {
                write
                    .write_all(b"451 4.3.0 sink.test: try again later\r\n")
                    .await?;
                continue;
            }
            write
                .write_all(b"354 end data with <CR><LF>.<CR><LF>\r\n")
                .await?;
            let mut data = String::new();
            loop {
                line.clear();
                if (&mut read).take(SMTP_LINE_MAX).read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
                let unstuffed = line.strip_prefix('.').unwrap_or(&line);
                if data.len() + unstuffed.len() > SMTP_MESSAGE_MAX {
                    write.write_all(b"552 message too large\r\n").await?;
                    return Ok(());
                }
                data.push_str(unstuffed);
            }
            lock(&shared).mails.push(ReceivedMail {
                from: std::mem::take(&mut from),
                to: std::mem::take(&mut to),
                data,
            });
            write.write_all(b"250 OK queued\r\n").await?;
        } else if upper == "RSET" {
            from.clear();
            to.clear();
            write.write_all(b"250 OK\r\n").await?;
        } else if upper == "NOOP" {
            write.write_all(b"250 OK\r\n").await?;
        } else if upper == "QUIT" {
            write.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else {
            write.write_all(b"502 command not implemented\r\n").await?;
        }
    }
}

// ------------------------------------------------------- eKYC provider stub

/// How the provider stub answers a submission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProviderMode {
    /// 202 with `{"providerReference": "prv-N"}`.
    Accept,
    /// This status with a small JSON error body.
    Status(u16),
    /// 200 with a body that is not the expected JSON.
    BadJson,
    /// Waits this long before accepting.
    Delay(Duration),
}

/// One request the stub received.
#[derive(Clone, Debug)]
pub struct RecordedSubmission {
    /// The request path.
    pub path: String,
    /// The Authorization header, if any.
    pub authorization: Option<String>,
    /// The JSON body (Null when it was not JSON).
    pub body: serde_json::Value,
    /// Whether the bearer key matched (only these are answered 2xx).
    pub authorized: bool,
}

#[derive(Debug)]
struct ProviderShared {
    api_key: String,
    mode: ProviderMode,
    submissions: Vec<RecordedSubmission>,
}

/// An eKYC provider over real HTTP/1.1: checks the bearer key, records submissions.
pub struct ProviderStub {
    /// Where it listens.
    pub addr: SocketAddr,
    shared: Arc<Mutex<ProviderShared>>,
    task: JoinHandle<()>,
}

impl Drop for ProviderStub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The path the stub serves verifications on.
pub const PROVIDER_PATH: &str = "/v1/verifications";

impl ProviderStub {
    /// Starts a stub on 127.0.0.1:0 expecting `Authorization: Bearer {api_key}`.
    pub async fn start(api_key: &str) -> ProviderStub {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shared = Arc::new(Mutex::new(ProviderShared {
            api_key: api_key.to_string(),
            mode: ProviderMode::Accept,
            submissions: Vec::new(),
        }));
        let accept_shared = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = accept_shared.clone();
                tokio::spawn(async move {
                    let service =
                        service_fn(move |request| provider_answer(request, shared.clone()));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        ProviderStub { addr, shared, task }
    }

    /// The submission URL.
    pub fn url(&self) -> String {
        format!("http://{}{PROVIDER_PATH}", self.addr)
    }

    /// Changes how the next submissions are answered.
    pub fn set_mode(&self, mode: ProviderMode) {
        lock(&self.shared).mode = mode;
    }

    /// Every request received so far.
    pub fn submissions(&self) -> Vec<RecordedSubmission> {
        lock(&self.shared).submissions.clone()
    }
}

fn json_response(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

async fn provider_answer(
    request: Request<Incoming>,
    shared: Arc<Mutex<ProviderShared>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path().to_string();
    let authorization = request
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let is_post = request.method() == hyper::Method::POST;
    let bytes = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    let (authorized, mode, number) = {
        let mut shared = lock(&shared);
        let authorized = authorization.as_deref() == Some(&format!("Bearer {}", shared.api_key));
        shared.submissions.push(RecordedSubmission {
            path: path.clone(),
            authorization,
            body: body.clone(),
            authorized,
        });
        (authorized, shared.mode, shared.submissions.len())
    };
    if !authorized {
        return Ok(json_response(
            StatusCode::UNAUTHORIZED,
            r#"{"error":"invalid api key"}"#.into(),
        ));
    }
    if !is_post || path != PROVIDER_PATH {
        return Ok(json_response(
            StatusCode::NOT_FOUND,
            r#"{"error":"not found"}"#.into(),
        ));
    }
    if body.get("reference").and_then(|r| r.as_str()).is_none() {
        return Ok(json_response(
            StatusCode::BAD_REQUEST,
            r#"{"error":"reference missing"}"#.into(),
        ));
    }
    match mode {
        ProviderMode::Accept => {}
        ProviderMode::Status(status) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return Ok(json_response(status, r#"{"error":"stub says no"}"#.into()));
        }
        ProviderMode::BadJson => {
            return Ok(json_response(StatusCode::OK, "this is not json".into()));
        }
        ProviderMode::Delay(wait) => tokio::time::sleep(wait).await,
    }
    Ok(json_response(
        StatusCode::ACCEPTED,
        format!(r#"{{"providerReference":"prv-{number}"}}"#),
    ))
}
