//! The run across connections: check the config, take the opening balances,
//! start every connection (and the pacer at a fixed rate), show progress,
//! merge what the connections saw into the report and reconcile it with the
//! closing balances.
//!
//! Owns no per-message work: that is [`crate::conn`]'s.

use crate::balances::{inquire_all, opening_from};
use crate::book::Book;
use crate::clock::WallClock;
use crate::config::{Checks, SimConfig};
use crate::conn::{drive, new_conn, CardFields, Live, Sending};
use crate::report::{self, Report};
use crate::{pacer, SimError};
use antaca::iso8583::Spec;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// What the connections of a run share.
pub(crate) struct RunShared {
    pub(crate) spec: Arc<Spec>,
    pub(crate) book: Arc<Book>,
    pub(crate) cards: Arc<[CardFields]>,
    pub(crate) live: Arc<Live>,
    pub(crate) wall: WallClock,
}

impl RunShared {
    fn new(config: &SimConfig) -> RunShared {
        RunShared {
            cards: CardFields::of_book(&config.book, &config.spec).into(),
            spec: Arc::new(config.spec.clone()),
            book: Arc::new(config.book.clone()),
            live: Arc::default(),
            wall: WallClock::new(),
        }
    }
}

/// The terminal id (field 41, 8 characters) of connection `index` in a run with `tag`.
fn terminal_id(tag: &str, index: usize) -> String {
    format!("S{tag}{:05}", index % 100_000)
}

fn run_tag(seed: u64) -> String {
    const DIGITS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let a = DIGITS[(seed % 36) as usize] as char;
    let b = DIGITS[((seed / 36) % 36) as usize] as char;
    format!("{a}{b}")
}

/// Waits until the wall clock enters a new second, so that every message of
/// this run names (fields 7 and 12) a later second than any message of a run
/// that ended before it started. Field 90/56 names an original by MTI, STAN,
/// date-time and acquirer, and every run reuses the acquirer ids and restarts
/// its STANs at 1: without this, a run started in the second the last one
/// ended in could name that run's messages as its originals.
async fn start_on_a_new_second() {
    let since_epoch = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
    };
    let begun = since_epoch().as_secs();
    loop {
        let now = since_epoch();
        if now.as_secs() != begun {
            return;
        }
        let rest = Duration::from_secs(1)
            .saturating_sub(Duration::from_nanos(u64::from(now.subsec_nanos())));
        tokio::time::sleep(rest + Duration::from_millis(1)).await;
    }
}

/// Runs the simulation on the current tokio runtime.
pub async fn run(config: SimConfig) -> Result<Report, SimError> {
    if config.connections == 0 || config.inflight == 0 {
        return Err("--connections and --inflight must be at least 1".into());
    }
    if !(config.rate.is_finite() && config.rate >= 0.0) {
        return Err("--rate must be 0 (closed loop) or a positive number".into());
    }
    start_on_a_new_second().await;
    let shared = RunShared::new(&config);
    let book = Arc::clone(&shared.book);
    let tag = run_tag(config.seed);
    let full = config.checks == Checks::Full;
    let opening = if full {
        let inquiries = inquire_all(&config, &shared, format!("O{tag}00000")).await?;
        Some(opening_from(&book, &inquiries))
    } else {
        None
    };
    let interval = (config.rate > 0.0)
        .then(|| Duration::from_secs_f64(config.connections as f64 / config.rate));
    let start = Instant::now();
    let end = start + config.duration;
    let mut connections = Vec::with_capacity(config.connections);
    let mut schedules = Vec::new();
    for i in 0..config.connections {
        let conn = new_conn(&config, &shared, i, terminal_id(&tag, i));
        let sending = match interval {
            None => Sending::ClosedLoop,
            Some(step) => {
                // Spread the connections' schedules over one interval.
                let first = start + step.mul_f64(i as f64 / config.connections as f64);
                let due = Arc::new(Notify::new());
                schedules.push(pacer::Schedule {
                    first,
                    due: Arc::clone(&due),
                });
                Sending::FixedRate { first, step, due }
            }
        };
        connections.push((conn, sending));
    }
    let pacer = match interval {
        Some(step) => Some(pacer::Pacer::start(schedules, step, end)?),
        None => None,
    };
    let tasks: Vec<_> = connections
        .into_iter()
        .map(|(conn, sending)| {
            tokio::spawn(drive(
                conn,
                config.addr.clone(),
                config.inflight,
                sending,
                end,
                config.drain,
            ))
        })
        .collect();
    let ticker = config.progress.then(|| {
        let live = Arc::clone(&shared.live);
        tokio::spawn(progress(live, start, config.duration))
    });
    let mut results = Vec::with_capacity(tasks.len());
    for t in tasks {
        results.push(
            t.await
                .map_err(|e| format!("a connection task failed: {e}"))?,
        );
    }
    // Stops and joins the pacer thread (it has stopped by itself at the end of sending).
    drop(pacer);
    let elapsed = start
        .elapsed()
        .min(config.duration.max(Duration::from_millis(1)) + config.drain);
    let send_window = config.duration.min(elapsed);
    if let Some(t) = ticker {
        t.abort();
        println!();
    }
    let mut report = Report::merge(&config, results, send_window);
    if let Some(opening) = opening {
        let inquiries = inquire_all(&config, &shared, format!("C{tag}00000")).await?;
        report.reconciliation = Some(report::reconcile(
            &book,
            &opening.accounts,
            &opening.foreign,
            opening.notes,
            &report.deltas,
            &report.unknown,
            &inquiries,
        ));
        if let Some(r) = &report.reconciliation {
            report.errors += r.mismatches.len() as u64;
        }
    }
    Ok(report)
}

/// Runs the simulation on its own single-threaded runtime.
///
/// One thread drives every connection: on a small machine shared with the
/// engine under test, that costs less per message than several workers
/// (no cross-thread wake-ups, no allocator contention), and leaves the other
/// cores to the engine.
pub fn run_blocking(config: SimConfig) -> Result<Report, SimError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(config))
}

async fn progress(live: Arc<Live>, start: Instant, duration: Duration) {
    use std::io::Write;
    let mut last = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tick.tick().await;
        let received = live.received.load(Ordering::Relaxed);
        print!(
            "\r[{:>4.0}s/{}s] sent {} received {} ({}/s) errors {}   ",
            start.elapsed().as_secs_f64(),
            duration.as_secs(),
            live.sent.load(Ordering::Relaxed),
            received,
            received - last,
            live.errors.load(Ordering::Relaxed)
        );
        let _ = std::io::stdout().flush();
        last = received;
    }
}
