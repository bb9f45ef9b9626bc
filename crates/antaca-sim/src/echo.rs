//! The baseline: a bare echo server with the engine's framing. It answers
//! every request with MTI + 10 and an approval in field 39, echoing the
//! fields the engine echoes, without touching a store. One thread
//! (current-thread tokio), batched reads and writes.
//!
//! The durable variant ([`EchoServer::start_durable`]) appends as many bytes
//! as every request (zeros: no card data on disk) to a log file and answers
//! only once an `fdatasync` covers them, with group
//! commit across connections and the next group written while one syncs, as
//! the engine does: what durability costs on this disk with no decision, no
//! state and no store behind it.

use crate::config::Dialect;
use crate::SimError;
use antaca::iso8583::{Message, Spec};
use antaca::net::accept::AcceptLoop;
use antaca::net::framing::{encode_frame, FrameCodec, LengthHeader};
use antaca::protocol::respond::response_mti;
use bytes::{Bytes, BytesMut};
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;

/// The most connections open at once (the benchmarks open at most a few hundred).
const CONNECTIONS_MAX: usize = 65_536;

/// Fields the answer echoes when the request has them (as the engine does).
const ECHO_FIELDS: &[usize] = &[
    2, 3, 4, 7, 11, 12, 13, 24, 32, 37, 41, 42, 49, 56, 70, 90, 91, 95, 101,
];

/// The answer to `request`: MTI + 10, echoed fields, field 39 approved.
///
/// The request becomes its answer in place, so the echoed values are
/// neither copied nor reference-counted again.
pub fn answer(mut request: Message, approval: &'static str) -> Message {
    request.set_mti(response_mti(request.mti()));
    // Field numbers are at most 128: a stack list, no allocation.
    let mut dropped = [0usize; 128];
    let mut count = 0;
    for (n, _) in request.fields() {
        if !ECHO_FIELDS.contains(&n) {
            dropped[count] = n;
            count += 1;
        }
    }
    for &n in &dropped[..count] {
        request.remove(n);
    }
    request.set(39, Bytes::from_static(approval.as_bytes()));
    request
}

/// A connection's socket: whole for the bare echo; for the durable one,
/// split so that answers wait for the log while requests are still read.
enum Socket {
    Whole(TcpStream),
    Durable {
        read: OwnedReadHalf,
        log: Arc<SyncLog>,
        to_writer: mpsc::Sender<(oneshot::Receiver<()>, BytesMut)>,
    },
}

/// Reads whose answers may wait for the log at once on a connection;
/// beyond, the connection stops reading (as the bare echo stops while its
/// write waits).
const ANSWERS_WAITING: usize = 64;

async fn connection(
    socket: TcpStream,
    spec: Arc<Spec>,
    header: LengthHeader,
    log: Option<Arc<SyncLog>>,
) {
    let _ = socket.set_nodelay(true);
    let mut socket = match log {
        None => Socket::Whole(socket),
        Some(log) => {
            let (read, write) = socket.into_split();
            let (to_writer, from_reader) = mpsc::channel(ANSWERS_WAITING);
            tokio::spawn(answer_when_durable(write, from_reader));
            Socket::Durable {
                read,
                log,
                to_writer,
            }
        }
    };
    let approval = Dialect::of(&spec).approval();
    let mut codec = FrameCodec::new(header, 64 * 1024);
    let mut inbuf = BytesMut::with_capacity(64 * 1024);
    let mut out = BytesMut::with_capacity(64 * 1024);
    let mut logged = Vec::new();
    let mut body = BytesMut::with_capacity(512);
    loop {
        let received = match &mut socket {
            Socket::Whole(whole) => whole.read_buf(&mut inbuf).await,
            Socket::Durable { read, .. } => read.read_buf(&mut inbuf).await,
        };
        match received {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        out.clear();
        logged.clear();
        loop {
            match codec.decode(&mut inbuf) {
                Ok(Some(frame)) if frame.is_empty() => {}
                Ok(Some(frame)) => {
                    let Ok(request) = spec.decode(&frame) else {
                        continue;
                    };
                    if matches!(socket, Socket::Durable { .. }) {
                        // As many bytes as the request, but not its card
                        // data: the disk does the same work.
                        logged.resize(logged.len() + frame.len(), 0);
                    }
                    body.clear();
                    if spec.encode(&answer(request, approval), &mut body).is_ok() {
                        let _ = encode_frame(header, &body, &mut out);
                    }
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        if out.is_empty() {
            continue;
        }
        let sent = match &mut socket {
            Socket::Whole(whole) => whole.write_all(&out).await.is_ok(),
            Socket::Durable { log, to_writer, .. } => {
                let durable = log.append(&logged);
                to_writer.send((durable, out.split())).await.is_ok()
            }
        };
        if !sent {
            return;
        }
    }
}

/// Writes each read's answers once the log says its requests are durable,
/// in order, and together with the later ones already durable.
async fn answer_when_durable(
    mut write: OwnedWriteHalf,
    mut from_reader: mpsc::Receiver<(oneshot::Receiver<()>, BytesMut)>,
) {
    let mut out = BytesMut::with_capacity(64 * 1024);
    let mut next = None;
    loop {
        let (durable, answers) = match next.take() {
            Some(waiting) => waiting,
            None => match from_reader.recv().await {
                Some(waiting) => waiting,
                None => return,
            },
        };
        if durable.await.is_err() {
            return; // the log failed: no answer
        }
        out.extend_from_slice(&answers);
        while let Ok((mut durable, answers)) = from_reader.try_recv() {
            match durable.try_recv() {
                Ok(()) => out.extend_from_slice(&answers),
                Err(oneshot::error::TryRecvError::Empty) => {
                    next = Some((durable, answers));
                    break;
                }
                Err(oneshot::error::TryRecvError::Closed) => return,
            }
        }
        if write.write_all(&out).await.is_err() {
            return;
        }
        out.clear();
    }
}

/// The durable echo's log: requests appended by every connection, one
/// `fdatasync` for all that were appended since the last, on a thread of
/// its own.
pub struct SyncLog {
    pending: Mutex<Pending>,
    appended: Condvar,
}

#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    waiters: Vec<oneshot::Sender<()>>,
    stopped: bool,
}

impl SyncLog {
    /// Opens (appends to) `path` and starts the sync thread.
    fn start(path: &Path) -> std::io::Result<(Arc<SyncLog>, std::thread::JoinHandle<()>)> {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let log = Arc::new(SyncLog {
            pending: Mutex::new(Pending::default()),
            appended: Condvar::new(),
        });
        let shared = log.clone();
        let thread = std::thread::Builder::new()
            .name("antaca-echo-sync".into())
            .spawn(move || {
                let mut bytes = Vec::new();
                while let Some(waiters) = shared.take(&mut bytes) {
                    let written = file.write_all(&bytes).and_then(|()| file.sync_data());
                    if let Err(e) = written {
                        // Nobody is answered: every connection waiting, in
                        // this group or appended since, sees its wait fail
                        // and closes.
                        eprintln!("echo server: the log failed: {e}");
                        let mut pending = shared.lock();
                        pending.stopped = true;
                        pending.waiters.clear();
                        pending.bytes.clear();
                        return;
                    }
                    for waiter in waiters {
                        let _ = waiter.send(());
                    }
                }
            })?;
        Ok((log, thread))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends `bytes`; the receiver completes once they are durable.
    fn append(&self, bytes: &[u8]) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let mut pending = self.lock();
        if !pending.stopped {
            pending.bytes.extend_from_slice(bytes);
            pending.waiters.push(tx);
            self.appended.notify_one();
        }
        rx
    }

    /// Waits for appended bytes and swaps them into `bytes`, with their
    /// waiters; `None` once stopped and drained.
    fn take(&self, bytes: &mut Vec<u8>) -> Option<Vec<oneshot::Sender<()>>> {
        let mut pending = self.lock();
        while pending.waiters.is_empty() && !pending.stopped {
            pending = self
                .appended
                .wait(pending)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        if pending.waiters.is_empty() {
            return None;
        }
        bytes.clear();
        std::mem::swap(bytes, &mut pending.bytes);
        Some(std::mem::take(&mut pending.waiters))
    }

    fn stop(&self) {
        self.lock().stopped = true;
        self.appended.notify_one();
    }
}

/// Serves until `stop` is cancelled.
pub async fn serve(
    listener: TcpListener,
    spec: Arc<Spec>,
    header: LengthHeader,
    log: Option<Arc<SyncLog>>,
    stop: CancellationToken,
) {
    // Connections still open when it stops end with the runtime: the set is dropped.
    let _open = AcceptLoop::new("echo", CONNECTIONS_MAX)
        .run(&listener, &stop, |socket, _peer| {
            connection(socket, Arc::clone(&spec), header, log.clone())
        })
        .await;
}

/// A running echo server on its own thread.
pub struct EchoServer {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
    log: Option<(Arc<SyncLog>, std::thread::JoinHandle<()>)>,
}

impl EchoServer {
    /// Binds `addr` and serves on a new thread with a current-thread runtime.
    pub fn start(addr: &str, spec: Spec, header: LengthHeader) -> Result<EchoServer, SimError> {
        EchoServer::run(addr, spec, header, None)
    }

    /// Like [`EchoServer::start`], but every request is answered once an
    /// `fdatasync` covers as many bytes appended to the file `log`.
    pub fn start_durable(
        addr: &str,
        spec: Spec,
        header: LengthHeader,
        log: &Path,
    ) -> Result<EchoServer, SimError> {
        let log =
            SyncLog::start(log).map_err(|e| format!("echo server: log {}: {e}", log.display()))?;
        let stopper = log.0.clone();
        // Not serving: the sync thread must not wait for appends forever.
        EchoServer::run(addr, spec, header, Some(log)).inspect_err(|_| stopper.stop())
    }

    fn run(
        addr: &str,
        spec: Spec,
        header: LengthHeader,
        log: Option<(Arc<SyncLog>, std::thread::JoinHandle<()>)>,
    ) -> Result<EchoServer, SimError> {
        let shared_log = log.as_ref().map(|(log, _)| log.clone());
        let listener = std::net::TcpListener::bind(addr)
            .map_err(|e| format!("echo server: cannot listen on {addr}: {e}"))?;
        listener.set_nonblocking(true)?;
        let local = listener.local_addr()?;
        let stop = CancellationToken::new();
        let token = stop.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new()
            .name("antaca-echo".into())
            .spawn(move || {
                runtime.block_on(async move {
                    if let Ok(listener) = TcpListener::from_std(listener) {
                        serve(listener, Arc::new(spec), header, shared_log, token).await;
                    }
                });
            })?;
        Ok(EchoServer {
            addr: local,
            stop,
            thread: Some(thread),
            log,
        })
    }

    /// Stops accepting and waits for the thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some((log, thread)) = self.log.take() {
            log.stop();
            let _ = thread.join();
        }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}
