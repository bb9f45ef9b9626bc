//! The fixed-rate pacer: wakes each connection when its next request is due,
//! with sub-millisecond precision.
//!
//! tokio's timer rounds every deadline up to a whole millisecond. At a fixed
//! rate, latency counts from each request's intended send time (coordinated
//! omission correction), so a connection woken by that timer would add up to
//! 1 ms of the simulator's own lateness to every measurement. The pacer is a
//! thread that sleeps with the operating system's finer timer and notifies
//! the connections whose sends are due; a connection still decides what to
//! send from its own schedule.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// The shortest sleep between two rounds: above this rate, one round
/// notifies several connections instead of waking the thread more often.
const MIN_SLEEP: Duration = Duration::from_micros(50);

/// The longest sleep, so that a stop is seen soon even at a very low rate.
const MAX_SLEEP: Duration = Duration::from_millis(10);

/// One connection's schedule: sends at `first`, `first + step`, ...
pub(crate) struct Schedule {
    /// When its first request is due.
    pub(crate) first: Instant,
    /// Notified when a send is due.
    pub(crate) due: Arc<Notify>,
}

/// A running pacer; stops (and joins its thread) when dropped.
pub(crate) struct Pacer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Pacer {
    /// Starts pacing `schedules`, every one with the same `step`, until `end`.
    pub(crate) fn start(
        schedules: Vec<Schedule>,
        step: Duration,
        end: Instant,
    ) -> std::io::Result<Pacer> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("antaca-sim-pacer".into())
            .spawn(move || pace(schedules, step, end, &stopped))?;
        Ok(Pacer {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Pacer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn pace(schedules: Vec<Schedule>, step: Duration, end: Instant, stop: &AtomicBool) {
    // The next due time of each connection, advanced by `step` exactly as the
    // connection advances its own.
    let mut next: Vec<Instant> = schedules.iter().map(|s| s.first).collect();
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= end {
            return;
        }
        let mut earliest = end;
        for (schedule, next) in schedules.iter().zip(next.iter_mut()) {
            if *next <= now {
                schedule.due.notify_one();
                while *next <= now {
                    *next += step;
                }
            }
            earliest = earliest.min(*next);
        }
        let sleep = earliest
            .saturating_duration_since(now)
            .clamp(MIN_SLEEP, MAX_SLEEP);
        std::thread::sleep(sleep);
    }
}
