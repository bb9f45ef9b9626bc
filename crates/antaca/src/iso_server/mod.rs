//! The ISO 8583 TCP server: accepts connections, reads frames, turns messages
//! into requests for the engine, and writes responses in whatever order they
//! become durable (clients match them on STAN). One task per connection owns
//! both halves of the socket, so a slow or silent client stalls only itself.
//!
//! Owns: ISO 8583 connections, their limits and timeouts, and the answers to
//! network management (they never reach the writer). Must never touch: a
//! decision, a balance or the store.

use crate::domain::outcome::Outcome;
use crate::engine::{Command, EngineHandle, Reply};
use crate::iso8583::{Message, Spec};
use crate::net::accept::AcceptLoop;
use crate::net::framing::{encode_frame, FrameCodec, LengthHeader};
use crate::protocol::{self, AuthResponse, MessageClass, ParseError, Profile};
use crate::security::secrets::CardSecrets;
use bytes::{Bytes, BytesMut};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;

/// Settings of the ISO 8583 listener.
#[derive(Clone, Debug)]
pub struct IsoConfig {
    /// Length header of every frame.
    pub header: LengthHeader,
    /// Largest frame accepted, in bytes.
    pub max_frame: usize,
    /// Most connections at once; further clients wait in the kernel's backlog.
    pub max_connections: usize,
    /// Most requests in flight on one connection; beyond it the connection stops reading.
    pub max_in_flight: usize,
    /// A connection with nothing in flight and no bytes for this long is closed.
    pub idle_timeout: Duration,
    /// A frame begun (some bytes, e.g. its length header) but not complete this long after is dropped with its connection.
    pub read_timeout: Duration,
    /// A client that does not take its responses for this long is disconnected.
    pub write_timeout: Duration,
}

impl Default for IsoConfig {
    fn default() -> Self {
        IsoConfig {
            header: LengthHeader::Binary2,
            max_frame: 8192,
            max_connections: 4096,
            max_in_flight: 256,
            idle_timeout: Duration::from_mins(5),
            read_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
        }
    }
}

/// What every connection shares.
pub struct IsoContext {
    /// The dialect's spec.
    pub spec: Spec,
    /// Protocol settings derived from the spec.
    pub profile: Profile,
    /// Zone PIN key and TLV locations for reading PINs, CVV2s and lock reasons.
    pub parse_options: protocol::parse::ParseOptions,
    /// Keyed hashing of PANs.
    pub secrets: CardSecrets,
    /// Listener settings.
    pub config: IsoConfig,
    /// The writer.
    pub engine: EngineHandle,
}

/// Accepts connections until `shutdown` is cancelled, then waits for every
/// connection to answer what it has in flight.
pub async fn serve(listener: TcpListener, context: Arc<IsoContext>, shutdown: CancellationToken) {
    let accept = AcceptLoop::new("iso8583", context.config.max_connections);
    let mut tasks = accept
        .run(&listener, &shutdown, |socket, peer| {
            let context = context.clone();
            let shutdown = shutdown.clone();
            metrics::counter!("antaca_iso_connections_total").increment(1);
            metrics::gauge!("antaca_iso_connections_open").increment(1.0);
            async move {
                let _open = OpenConnection;
                if let Err(e) = Connection::new(socket, peer, context).run(shutdown).await {
                    tracing::debug!(%peer, error = %e, "connection closed");
                }
            }
        })
        .await;
    while tasks.join_next().await.is_some() {}
}

/// Counts an open connection in the gauge until dropped (also when its task panics).
struct OpenConnection;

impl Drop for OpenConnection {
    fn drop(&mut self) {
        metrics::gauge!("antaca_iso_connections_open").decrement(1.0);
    }
}

/// Why a connection ended early.
#[derive(Debug)]
enum ConnectionError {
    Io(std::io::Error),
    Frame(String),
    Undecodable(String),
}

impl std::fmt::Display for ConnectionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectionError::Io(e) => write!(f, "io: {e}"),
            ConnectionError::Frame(e) => write!(f, "framing: {e}"),
            ConnectionError::Undecodable(e) => write!(f, "undecodable message: {e}"),
        }
    }
}

impl From<std::io::Error> for ConnectionError {
    fn from(e: std::io::Error) -> Self {
        ConnectionError::Io(e)
    }
}

struct Connection {
    socket: TcpStream,
    peer: SocketAddr,
    context: Arc<IsoContext>,
    codec: FrameCodec,
    read_buf: BytesMut,
    write_buf: BytesMut,
    scratch: BytesMut,
    in_flight: HashMap<u64, (Message, Instant)>,
    next_tag: u64,
    replies_tx: mpsc::UnboundedSender<(u64, AuthResponse)>,
    replies_rx: mpsc::UnboundedReceiver<(u64, AuthResponse)>,
    meters: Meters,
}

impl Connection {
    fn new(socket: TcpStream, peer: SocketAddr, context: Arc<IsoContext>) -> Connection {
        // Small request/response messages: do not let Nagle hold a response back.
        let _ = socket.set_nodelay(true);
        let (replies_tx, replies_rx) = mpsc::unbounded_channel();
        let codec = FrameCodec::new(context.config.header, context.config.max_frame);
        Connection {
            socket,
            peer,
            context,
            codec,
            read_buf: BytesMut::with_capacity(16 * 1024),
            write_buf: BytesMut::with_capacity(16 * 1024),
            scratch: BytesMut::with_capacity(1024),
            in_flight: HashMap::new(),
            next_tag: 0,
            replies_tx,
            replies_rx,
            meters: Meters::default(),
        }
    }

    async fn run(mut self, shutdown: CancellationToken) -> Result<(), ConnectionError> {
        let mut reading = true;
        let idle = self.context.config.idle_timeout;
        let max_in_flight = self.context.config.max_in_flight;
        let read_timeout = self.context.config.read_timeout;
        // When the first byte of a frame not yet complete arrived: that frame must be whole by then + read_timeout.
        let mut partial_since: Option<tokio::time::Instant> = None;
        loop {
            if !self.write_buf.is_empty() {
                // Bounded: a client that stops reading loses its connection, not
                // the server's ability to stop.
                let write = self.socket.write_all(&self.write_buf);
                match tokio::time::timeout(self.context.config.write_timeout, write).await {
                    Ok(result) => result?,
                    Err(_) => {
                        return Err(ConnectionError::Io(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "the client did not read its responses",
                        )))
                    }
                }
                self.write_buf.clear();
            }
            if !reading && self.in_flight.is_empty() {
                return Ok(());
            }
            let can_read = reading && self.in_flight.len() < max_in_flight;
            tokio::select! {
                biased;
                reply = self.replies_rx.recv(), if !self.in_flight.is_empty() => {
                    if let Some((tag, response)) = reply {
                        self.answer(tag, &response);
                        while let Ok((tag, response)) = self.replies_rx.try_recv() {
                            self.answer(tag, &response);
                        }
                    }
                }
                read = self.socket.read_buf(&mut self.read_buf), if can_read => {
                    if read? == 0 {
                        // The client closed its side: answer what is in flight, then close.
                        reading = false;
                        continue;
                    }
                    let buffered = self.read_buf.len();
                    self.read_frames().await?;
                    // A whole frame arrived: the client is sending, so a new
                    // partial frame starts its clock now.
                    let progressed = self.read_buf.len() < buffered;
                    partial_since = match (self.read_buf.is_empty(), partial_since) {
                        (true, _) => None,
                        (false, Some(since)) if !progressed => Some(since),
                        (false, _) => Some(tokio::time::Instant::now()),
                    };
                }
                () = self.context.engine.stopped(), if !reading && !self.in_flight.is_empty() => {
                    // Shutting down, and the writer stopped without answering what
                    // is in flight (its store could not tell what it holds): no
                    // answer will come. Let the answers already handed out arrive,
                    // then close rather than wait forever.
                    tokio::task::yield_now().await;
                    while let Ok((tag, response)) = self.replies_rx.try_recv() {
                        self.answer(tag, &response);
                    }
                    if !self.write_buf.is_empty() {
                        let write = self.socket.write_all(&self.write_buf);
                        let _ = tokio::time::timeout(self.context.config.write_timeout, write).await;
                    }
                    return Ok(());
                }
                () = shutdown.cancelled(), if reading => {
                    // Stop taking requests; the loop ends once in-flight ones are answered.
                    reading = false;
                }
                () = tokio::time::sleep_until(partial_since.unwrap_or_else(tokio::time::Instant::now) + read_timeout), if can_read && partial_since.is_some() => {
                    tracing::debug!(peer = %self.peer, "read timeout: a frame was begun and not completed");
                    metrics::counter!("antaca_iso_read_timeouts_total").increment(1);
                    return Err(ConnectionError::Io(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "a frame was begun and not completed in time",
                    )));
                }
                () = tokio::time::sleep(idle), if self.in_flight.is_empty() => {
                    tracing::debug!(peer = %self.peer, "idle timeout");
                    return Ok(());
                }
            }
        }
    }

    /// Decodes every whole frame in the read buffer.
    async fn read_frames(&mut self) -> Result<(), ConnectionError> {
        loop {
            let frame = match self.codec.decode(&mut self.read_buf) {
                Ok(Some(frame)) => frame,
                Ok(None) => return Ok(()),
                Err(e) => return Err(ConnectionError::Frame(e.to_string())),
            };
            if frame.is_empty() {
                continue; // keep-alive
            }
            self.on_frame(frame).await?;
        }
    }

    async fn on_frame(&mut self, frame: Bytes) -> Result<(), ConnectionError> {
        let context = self.context.clone();
        let message = match context.spec.decode(&frame) {
            Ok(message) => message,
            Err(e) => {
                // Answer with a format error when we know whom to answer (MTI and STAN); else close.
                return match e.partial.as_deref() {
                    Some(partial) if protocol::respond::can_answer_partial(partial) => {
                        tracing::info!(peer = %self.peer, error = %e, "format error");
                        self.respond_now(partial, Outcome::FormatError);
                        Ok(())
                    }
                    _ => Err(ConnectionError::Undecodable(e.to_string())),
                };
            }
        };
        let request = match protocol::parse::parse_with(
            &message,
            context.profile,
            &context.secrets,
            &context.parse_options,
        ) {
            Ok(request) => request,
            Err(ParseError::Format { field, reason }) => {
                tracing::info!(peer = %self.peer, field, reason, "format error");
                self.respond_now(&message, Outcome::FormatError);
                return Ok(());
            }
            Err(ParseError::UnsupportedMti) => {
                // Answer only when the answer's MTI differs from the request's
                // (0600 → 0610); an MTI like 0190 has no response to send.
                if protocol::respond::has_response(message.mti()) {
                    self.respond_now(&message, Outcome::InvalidTransaction);
                } else {
                    tracing::info!(peer = %self.peer, "ignored a message with an unanswerable MTI");
                }
                return Ok(());
            }
            Err(ParseError::NotARequest) => {
                tracing::info!(peer = %self.peer, "ignored a response message");
                return Ok(());
            }
        };
        if request.class == MessageClass::NetworkManagement {
            // Answered by the connection: network management never reaches the writer.
            tracing::debug!(peer = %self.peer, function = ?request.network, "network management");
            self.respond_now(&message, protocol::respond::network_management().outcome);
            return Ok(());
        }
        let tag = self.next_tag;
        self.next_tag += 1;
        self.in_flight.insert(tag, (message, Instant::now()));
        let command = Command::Iso {
            request: Box::new(request),
            reply: Reply::Channel {
                tx: self.replies_tx.clone(),
                tag,
            },
        };
        if context.engine.send(command).await.is_err() {
            // The writer is gone (shutting down or failed): say so rather than leave the request unanswered.
            if let Some((message, _)) = self.in_flight.remove(&tag) {
                self.respond_now(&message, Outcome::SystemMalfunction);
            }
        }
        Ok(())
    }

    fn answer(&mut self, tag: u64, response: &AuthResponse) {
        let Some((request, started)) = self.in_flight.remove(&tag) else {
            return;
        };
        let mti = request.mti();
        let message = protocol::respond::into_response(request, response, self.context.profile);
        self.meters.record(mti, &message, started);
        self.write_message(&message);
    }

    fn respond_now(&mut self, request: &Message, outcome: Outcome) {
        let message =
            protocol::respond::build_error_response(request, outcome, self.context.profile);
        self.meters.record(request.mti(), &message, Instant::now());
        self.write_message(&message);
    }

    fn write_message(&mut self, message: &Message) {
        self.scratch.clear();
        if let Err(e) = self.context.spec.encode(message, &mut self.scratch) {
            tracing::error!(peer = %self.peer, error = %e, "cannot encode a response");
            return;
        }
        if let Err(e) = encode_frame(
            self.context.config.header,
            &self.scratch,
            &mut self.write_buf,
        ) {
            tracing::error!(peer = %self.peer, error = %e, "cannot frame a response");
        }
    }
}

/// A metric label for an MTI (4 characters) or a response code (2 to 4):
/// digits and letters only, otherwise `other` (what came from outside never
/// becomes a label as is).
fn label_key(value: &[u8], lengths: std::ops::RangeInclusive<usize>) -> [u8; 4] {
    let mut key = [0u8; 4];
    if lengths.contains(&value.len()) && value.iter().all(u8::is_ascii_alphanumeric) {
        key[..value.len()].copy_from_slice(value);
    }
    key
}

/// Most distinct label values a connection keeps handles for; a peer that
/// cycles through MTIs gets `other` beyond it.
const METER_LABELS: usize = 32;

fn label_of(key: &[u8; 4]) -> String {
    match key.iter().position(|b| *b == 0) {
        Some(0) => "other".to_string(),
        Some(n) => String::from_utf8_lossy(&key[..n]).into_owned(),
        None => String::from_utf8_lossy(key).into_owned(),
    }
}

/// A connection's metric handles, looked up in the registry once per MTI
/// and response code rather than once per message.
#[derive(Default)]
struct Meters {
    latency: Vec<([u8; 4], metrics::Histogram)>,
    responses: Vec<([u8; 4], [u8; 4], metrics::Counter)>,
}

impl Meters {
    /// Records one answer: latency per request MTI, count per MTI and response code.
    fn record(&mut self, request_mti: [u8; 4], response: &Message, started: Instant) {
        let mut mti = label_key(&request_mti, 4..=4);
        let mut code = label_key(protocol::respond::response_code(response), 2..=4);
        if self.responses.len() >= METER_LABELS {
            // Keep the handles already made; anything new is `other`.
            if !self.latency.iter().any(|(m, _)| *m == mti) {
                mti = [0; 4];
            }
            if !self
                .responses
                .iter()
                .any(|(m, c, _)| *m == mti && *c == code)
            {
                code = [0; 4];
            }
        }
        let latency = match self.latency.iter().position(|(m, _)| *m == mti) {
            Some(i) => &self.latency[i].1,
            None => {
                let h = metrics::histogram!("antaca_iso_request_duration_seconds", "mti" => label_of(&mti));
                self.latency.push((mti, h));
                &self.latency[self.latency.len() - 1].1
            }
        };
        latency.record(started.elapsed().as_secs_f64());
        let count = match self
            .responses
            .iter()
            .position(|(m, c, _)| *m == mti && *c == code)
        {
            Some(i) => &self.responses[i].2,
            None => {
                let c = metrics::counter!("antaca_iso_responses_total", "mti" => label_of(&mti), "code" => label_of(&code));
                self.responses.push((mti, code, c));
                &self.responses[self.responses.len() - 1].2
            }
        };
        count.increment(1);
    }
}
