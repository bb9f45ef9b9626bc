//! The checkpoint thread: the log's writes applied to the backend (sled or
//! fjall, see `backend.rs`), coalesced by key, made durable, then the
//! checkpointed lsn (`m/wal_lsn`) recorded in a second step; then the
//! overlay's entries the backend now holds retired. `Shared` tells the
//! writer how far it got, so that a log segment is reused only once the
//! backend holds it. The thread runs at a lower priority (`lower_priority`,
//! the store's one `unsafe` block).
//!
//! It never reads or writes the write-ahead log and never answers a batch:
//! it is given only writes that are already durable in the log.

use super::backend::{Target, Writes};
use super::overlay::Overlay;
use crate::store::wal::Op;
use crate::store::StoreError;
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::Instant;

/// What the checkpoint thread has done, shared with the writer.
#[derive(Default)]
pub(super) struct Progress {
    /// Every record up to this lsn is durable in the backend.
    pub(super) checkpointed: u64,
    /// Why the last checkpoint failed; the store refuses commits from then on.
    pub(super) failed: Option<Arc<StoreError>>,
}

pub(super) struct Shared {
    pub(super) progress: Mutex<Progress>,
    pub(super) changed: Condvar,
}

impl Shared {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Progress> {
        // A poisoned lock only means a checkpoint thread panicked; its progress is still right.
        self.progress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

pub(super) enum Job {
    /// Apply these writes (in commit order: the last write of a key wins) and
    /// record `upto` as checkpointed.
    Apply { writes: Vec<Op>, upto: u64 },
}

/// Applies `writes` (in commit order: the last write of each key wins) to
/// the backend and makes them durable, records `upto` as checkpointed, then
/// retires the overlay's entries the backend now holds.
pub(super) fn checkpoint(
    target: &mut Target,
    writes: Vec<Op>,
    upto: u64,
    overlay: &Overlay,
) -> Result<(), StoreError> {
    // A balance written by a thousand commits reaches the backend once.
    let writes: Writes = writes.into_iter().collect();
    target.apply(&writes, upto)?;
    overlay.retire(writes.keys(), upto);
    Ok(())
}

/// The checkpoint thread: applies jobs in order, merging those that queued up.
pub(super) fn run_checkpoints(
    target: &mut Target,
    jobs: &mpsc::Receiver<Job>,
    shared: &Shared,
    overlay: &Overlay,
) {
    /// A panic (sled asserts on what it reads) must not leave the writer
    /// waiting for a checkpoint forever: it records a failure on the way out.
    struct OnPanic<'a>(&'a Shared);
    impl Drop for OnPanic<'_> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                self.0
                    .lock()
                    .failed
                    .get_or_insert_with(|| Arc::new(StoreError::ThreadPanicked("checkpoint")));
                self.0.changed.notify_all();
            }
        }
    }
    let _guard = OnPanic(shared);
    lower_priority();
    while let Ok(Job::Apply {
        mut writes,
        mut upto,
    }) = jobs.recv()
    {
        while let Ok(Job::Apply {
            writes: later,
            upto: later_upto,
        }) = jobs.try_recv()
        {
            writes.extend(later);
            upto = later_upto;
        }
        let started = Instant::now();
        let result = checkpoint(target, writes, upto, overlay);
        metrics::histogram!("antaca_store_checkpoint_seconds")
            .record(started.elapsed().as_secs_f64());
        let mut progress = shared.lock();
        match result {
            Ok(()) => progress.checkpointed = upto,
            Err(e) => {
                tracing::error!(error = %e, "checkpoint failed; the store stops taking commits");
                progress.failed = Some(Arc::new(e));
            }
        }
        shared.changed.notify_all();
        if progress.failed.is_some() {
            return;
        }
    }
}

/// Checkpoints are background work: give the network and the writer the CPU
/// first (nice 10 for this thread). If checkpoints fall behind by every log
/// segment, the writer waits for them and they get the CPU anyway.
#[allow(unsafe_code)] // The crate's one exception (Cargo.toml): std has no setpriority.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid has no preconditions; setpriority on our own thread id
    // only changes this thread's nice value, and failing is harmless.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        let _ = libc::setpriority(libc::PRIO_PROCESS, tid, 10);
    }
}
