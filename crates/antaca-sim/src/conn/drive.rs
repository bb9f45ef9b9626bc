//! One connection's socket loop: connect, write every due request as one
//! batch, read and hand every whole frame to the state machine, until the
//! sending window and the drain are over.
//!
//! Owns the socket, the frame buffers and the timers; decides nothing about
//! what to send or whether an answer is right.

use super::{Conn, ConnResult};
use crate::SimError;
use antaca::net::framing::FrameCodec;
use bytes::BytesMut;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_util::codec::Decoder;

pub(crate) async fn connect(addr: &str) -> Result<TcpStream, SimError> {
    let socket = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    socket.set_nodelay(true)?;
    Ok(socket)
}

/// When a connection sends.
pub(crate) enum Sending {
    /// As soon as a request in flight is answered.
    ClosedLoop,
    /// At `first`, `first + step`, ...; `due` is notified (by the pacer) when a send is due.
    FixedRate {
        first: Instant,
        step: Duration,
        due: Arc<Notify>,
    },
}

/// One connection's load: until `end`, then drain for `drain`.
///
/// Each turn of the loop sends everything that is due as one write (the
/// requests encoded back to back into one buffer), then waits for whatever
/// comes first: bytes to read (every whole frame in them is handled), a send
/// falling due, or the end of the sending window or of the drain.
pub(crate) async fn drive(
    mut conn: Conn,
    addr: String,
    inflight: usize,
    sending: Sending,
    end: Instant,
    drain: Duration,
) -> ConnResult {
    let mut socket = match connect(&addr).await {
        Ok(s) => s,
        Err(e) => {
            conn.result.protocol_errors += 1;
            conn.note(e.to_string());
            return conn.result;
        }
    };
    let mut codec = FrameCodec::new(conn.header, 64 * 1024);
    let mut inbuf = BytesMut::with_capacity(64 * 1024);
    let mut out = BytesMut::with_capacity(16 * 1024);
    // At a fixed rate: the intended time of the next request, and its notification.
    let (mut next_intended, due) = match &sending {
        Sending::ClosedLoop => (end, None),
        Sending::FixedRate { first, due, .. } => (*first, Some(Arc::clone(due))),
    };
    let drain_end = end + drain;
    // One timer for the whole run, moved only when the next wake-up changes.
    let timer = tokio::time::sleep_until(end.into());
    tokio::pin!(timer);
    let mut now = Instant::now();
    loop {
        let in_window = now < end;
        out.clear();
        if in_window {
            conn.tick_clock(now);
            let sent_before = conn.result.sent;
            match &sending {
                // Closed loop: the batch goes out now, in one write.
                Sending::ClosedLoop => {
                    while conn.pending.len() < inflight {
                        let p = conn.next_request(now);
                        conn.send(p, &mut out);
                    }
                }
                // Fixed rate: latency counts from each request's intended time.
                Sending::FixedRate { step, .. } => {
                    while conn.pending.len() < inflight && next_intended <= now {
                        let p = conn.next_request(next_intended);
                        conn.send(p, &mut out);
                        next_intended += *step;
                    }
                }
            }
            conn.live
                .sent
                .fetch_add(conn.result.sent - sent_before, Ordering::Relaxed);
        }
        if !out.is_empty() {
            if let Err(e) = socket.write_all(&out).await {
                conn.result.protocol_errors += 1;
                conn.note(format!("write failed: {e}"));
                break;
            }
        }
        if !in_window && conn.pending.is_empty() {
            break;
        }
        if now >= drain_end {
            break;
        }
        let wake = if in_window { end } else { drain_end };
        if timer.deadline() != wake.into() {
            timer.as_mut().reset(wake.into());
        }
        // Only a send that can go out now is worth waking for.
        let may_send = in_window && conn.pending.len() < inflight;
        let paced = async {
            match &due {
                Some(due) if may_send => due.notified().await,
                _ => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            read = socket.read_buf(&mut inbuf) => {
                match read {
                    Ok(0) => {
                        conn.result.protocol_errors += 1;
                        conn.note("the server closed the connection".into());
                        break;
                    }
                    Ok(_) => {
                        let arrived = Instant::now();
                        let received_before = conn.result.received;
                        loop {
                            match codec.decode(&mut inbuf) {
                                Ok(Some(frame)) if frame.is_empty() => {}
                                Ok(Some(frame)) => conn.on_frame(&frame, arrived),
                                Ok(None) => break,
                                Err(e) => {
                                    conn.result.protocol_errors += 1;
                                    conn.note(format!("bad frame: {e}"));
                                    inbuf.clear();
                                    break;
                                }
                            }
                        }
                        conn.live
                            .received
                            .fetch_add(conn.result.received - received_before, Ordering::Relaxed);
                    }
                    Err(e) => {
                        conn.result.protocol_errors += 1;
                        conn.note(format!("read failed: {e}"));
                        break;
                    }
                }
            }
            () = &mut timer => {}
            () = paced => {}
        }
        now = Instant::now();
    }
    let unanswered: Vec<_> = conn.pending.drain().map(|(_, p)| p).collect();
    for p in unanswered {
        conn.result.timeouts += 1;
        conn.mark_unknown(p.card);
    }
    if conn.result.timeouts > 0 {
        let n = conn.result.timeouts;
        conn.note(format!(
            "connection {}: {n} requests unanswered after the drain",
            conn.index
        ));
    }
    conn.result
}
