//! The sync thread: one `fdatasync` for every log record written since the
//! last one (group commit), then each waiting batch told, in commit order,
//! and the durable lsn published in `Synced`. After a failed `fdatasync` it
//! records why, wakes the writer and stops for good, telling nobody.
//!
//! It never touches sled, the pending writes or the checkpoint thread, and
//! never writes to the log: it only syncs the files the writer hands it.

use crate::store::OnDurable;
use std::fs::File;
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::Instant;

/// A log record written and waiting for its `fdatasync`, or (no file) a
/// barrier that is durable once the records before it are.
pub(super) struct SyncJob {
    pub(super) lsn: u64,
    pub(super) file: Option<Arc<File>>,
    pub(super) done: Box<dyn OnDurable>,
}

/// How far the sync thread has made the log durable.
#[derive(Default)]
pub(super) struct SyncProgress {
    /// Every record up to this lsn is on disk.
    pub(super) durable: u64,
    /// Why an `fdatasync` failed; the store refuses commits from then on.
    pub(super) failed: Option<Arc<std::io::Error>>,
}

#[derive(Default)]
pub(super) struct Synced {
    pub(super) progress: Mutex<SyncProgress>,
    pub(super) changed: Condvar,
    /// Told when an `fdatasync` fails (see [`Store::on_refusal`](crate::store::Store::on_refusal)).
    pub(super) waker: Mutex<Option<Box<dyn Fn() + Send>>>,
    /// Test hook: the next `fdatasync` fails.
    #[cfg(test)]
    pub(super) fail_next: std::sync::atomic::AtomicBool,
}

impl Synced {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, SyncProgress> {
        // A poisoned lock only means the sync thread panicked; its progress is still right.
        self.progress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records that the log can no longer be made durable, and says so.
    fn fail(&self, error: std::io::Error) {
        self.lock().failed.get_or_insert(Arc::new(error));
        self.changed.notify_all();
        let waker = self
            .waker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(wake) = waker.as_ref() {
            wake();
        }
    }
}

/// The sync thread: one `fdatasync` for every record written since the
/// last one (group commit across the writer's batches), then tells each
/// batch, in order. After a failed `fdatasync` the kernel may have dropped
/// the pages it could not write, so a later one that succeeds proves
/// nothing: the store stops there (as PostgreSQL does), and the batches
/// waiting are never told.
pub(super) fn run_syncs(jobs: &mpsc::Receiver<SyncJob>, synced: &Synced) {
    /// A panic must not leave the writer or `Drop` waiting for a sync forever.
    struct OnPanic<'a>(&'a Synced);
    impl Drop for OnPanic<'_> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                self.0
                    .fail(std::io::Error::other("the sync thread panicked"));
            }
        }
    }
    let _guard = OnPanic(synced);
    let mut batch: Vec<SyncJob> = Vec::new();
    while let Ok(first) = jobs.recv() {
        batch.push(first);
        while let Ok(job) = jobs.try_recv() {
            batch.push(job);
        }
        let started = Instant::now();
        let mut result = Ok(());
        let mut files: Vec<&Arc<File>> = Vec::with_capacity(2);
        for file in batch.iter().filter_map(|job| job.file.as_ref()) {
            if !files.iter().any(|f| Arc::ptr_eq(f, file)) {
                files.push(file);
            }
        }
        #[cfg(test)]
        if synced
            .fail_next
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            result = Err(std::io::Error::other("injected: fdatasync failed"));
            files.clear();
        }
        for file in &files {
            if let Err(e) = file.sync_data() {
                result = Err(e);
                break;
            }
        }
        if !files.is_empty() {
            metrics::histogram!("antaca_store_sync_seconds")
                .record(started.elapsed().as_secs_f64());
        }
        let upto = batch.iter().map(|job| job.lsn).max().unwrap_or(0);
        if let Err(e) = result {
            tracing::error!(error = %e, "fdatasync of the write-ahead log failed; the store stops taking commits");
            synced.fail(e);
            return;
        }
        // Answer first, then publish: an empty batch that finds everything
        // durable is answered by the writer at once, and must come after these.
        for job in batch.drain(..) {
            job.done.durable();
        }
        {
            let mut progress = synced.lock();
            progress.durable = progress.durable.max(upto);
        }
        synced.changed.notify_all();
    }
}
