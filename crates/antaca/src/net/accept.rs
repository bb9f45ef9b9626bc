//! The one accept loop every listener uses (ISO 8583, HTTP, mutual TLS, the
//! simulator's echo server): a semaphore bounds the connections open at
//! once, a failed accept backs off instead of spinning, the shutdown token
//! stops it, and each accepted socket goes to a handler as its own task.
//!
//! Owns: accepting, the connection bound, the back-off. Must never touch:
//! the bytes on a connection, a message, a card, the engine.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// First pause after a failed accept (the pause doubles on each failure in a row).
pub const BACKOFF_FIRST: Duration = Duration::from_millis(1);
/// Longest pause after failed accepts in a row.
pub const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// How one listener accepts: its name in logs, its connection bound, its back-off.
#[derive(Clone, Copy, Debug)]
pub struct AcceptLoop {
    /// Which listener this is, for the log line of a failed accept.
    pub name: &'static str,
    /// The most connections open at once; more wait in the kernel's backlog.
    pub connections_max: usize,
    /// First pause after a failed accept.
    pub backoff_first: Duration,
    /// Longest pause after failed accepts in a row.
    pub backoff_max: Duration,
}

impl AcceptLoop {
    /// A loop with this bound and the default back-off ([`BACKOFF_FIRST`] doubling up to [`BACKOFF_MAX`]).
    pub fn new(name: &'static str, connections_max: usize) -> AcceptLoop {
        AcceptLoop {
            name,
            connections_max,
            backoff_first: BACKOFF_FIRST,
            backoff_max: BACKOFF_MAX,
        }
    }

    /// Accepts until `shutdown` is cancelled. A connection is accepted only
    /// once a slot is free, so a flood queues in the backlog rather than in
    /// memory. `handler` is called on the accept loop for each socket (keep
    /// it short: counting, cloning) and the future it returns runs as its own
    /// task, which holds the connection's slot until it ends (or panics).
    ///
    /// Returns the tasks still running: await them to drain (`join_next`),
    /// or drop the set to abort them.
    pub async fn run<H, F>(
        self,
        listener: &TcpListener,
        shutdown: &CancellationToken,
        mut handler: H,
    ) -> JoinSet<()>
    where
        H: FnMut(TcpStream, SocketAddr) -> F,
        F: Future<Output = ()> + Send + 'static,
    {
        let slots = Arc::new(Semaphore::new(self.connections_max));
        let mut tasks = JoinSet::new();
        let mut backoff = self.backoff_first;
        loop {
            let permit = tokio::select! {
                () = shutdown.cancelled() => break,
                permit = Arc::clone(&slots).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    // The semaphore is ours and never closed; stop rather than spin if it were.
                    Err(_) => break,
                },
            };
            let accepted = tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((socket, peer)) => {
                    backoff = self.backoff_first;
                    let connection = handler(socket, peer);
                    tasks.spawn(async move {
                        let _permit = permit;
                        connection.await;
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off rather than spin.
                    tracing::warn!(listener = self.name, error = %e, "accept failed");
                    drop(permit);
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(self.backoff_max);
                }
            }
            // Reap finished connections so the set stays as small as the bound.
            while tasks.try_join_next().is_some() {}
        }
        tasks
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn bounds_connections_and_stops_on_shutdown() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        let accepted = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(tokio::sync::Notify::new());
        let server = {
            let (shutdown, accepted, release) = (
                shutdown.clone(),
                Arc::clone(&accepted),
                Arc::clone(&release),
            );
            tokio::spawn(async move {
                let tasks = AcceptLoop::new("test", 2)
                    .run(&listener, &shutdown, move |_socket, _peer| {
                        accepted.fetch_add(1, Ordering::SeqCst);
                        let release = Arc::clone(&release);
                        async move { release.notified().await }
                    })
                    .await;
                tasks.len()
            })
        };
        let mut clients = Vec::new();
        for _ in 0..3 {
            clients.push(TcpStream::connect(addr).await.expect("connect"));
        }
        // Two slots: the third connection waits in the backlog.
        while accepted.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        // One ends: the third gets its slot.
        release.notify_one();
        while accepted.load(Ordering::SeqCst) < 3 {
            tokio::task::yield_now().await;
        }
        shutdown.cancel();
        // The loop stops; the two open connections are handed back (a third
        // entry may be the finished one, not yet reaped).
        let still_running = server.await.expect("server");
        assert!((2..=3).contains(&still_running), "{still_running}");
    }
}
