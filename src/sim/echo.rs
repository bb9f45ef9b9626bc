//! The baseline: a bare echo server with the engine's framing. It answers
//! every request with MTI + 10 and an approval in field 39, echoing the
//! fields the engine echoes, without touching a store. One thread
//! (current-thread tokio), batched reads and writes.

use super::{Dialect, SimError};
use crate::framing::{encode_frame, FrameCodec, LengthHeader};
use crate::iso8583::{Message, Spec};
use crate::protocol::response_mti;
use bytes::{Bytes, BytesMut};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;

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

async fn connection(mut socket: TcpStream, spec: Arc<Spec>, header: LengthHeader) {
    let _ = socket.set_nodelay(true);
    let approval = Dialect::of(&spec).approval();
    let mut codec = FrameCodec::new(header, 64 * 1024);
    let mut inbuf = BytesMut::with_capacity(64 * 1024);
    let mut out = BytesMut::with_capacity(64 * 1024);
    let mut body = BytesMut::with_capacity(512);
    loop {
        match socket.read_buf(&mut inbuf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        out.clear();
        loop {
            match codec.decode(&mut inbuf) {
                Ok(Some(frame)) if frame.is_empty() => continue,
                Ok(Some(frame)) => {
                    let Ok(request) = spec.decode(&frame) else {
                        continue;
                    };
                    body.clear();
                    if spec.encode(&answer(request, approval), &mut body).is_ok() {
                        let _ = encode_frame(header, &body, &mut out);
                    }
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        if !out.is_empty() && socket.write_all(&out).await.is_err() {
            return;
        }
    }
}

/// Serves until `stop` is cancelled.
pub async fn serve(
    listener: TcpListener,
    spec: Arc<Spec>,
    header: LengthHeader,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((socket, _)) = accepted {
                    tokio::spawn(connection(socket, Arc::clone(&spec), header));
                }
            }
            _ = stop.cancelled() => return,
        }
    }
}

/// A running echo server on its own thread.
pub struct EchoServer {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EchoServer {
    /// Binds `addr` and serves on a new thread with a current-thread runtime.
    pub fn start(addr: &str, spec: Spec, header: LengthHeader) -> Result<EchoServer, SimError> {
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
                        serve(listener, Arc::new(spec), header, token).await;
                    }
                });
            })?;
        Ok(EchoServer {
            addr: local,
            stop,
            thread: Some(thread),
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
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}
