//! Time as the requests name it: the date-time fields of the current second
//! (fields 7, 12 and 13), built once a second, and the wall-clock second of a
//! monotonic instant, so that the hot path reads no system clock.
//!
//! Reads the system clock only when a [`WallClock`] is made; builds no message.

use bytes::Bytes;
use std::time::{Duration, Instant};

/// The date-time fields of the current second (UTC), shared by every request
/// sent within it.
#[derive(Clone, Default)]
pub(crate) struct Clock {
    /// Seconds since the Unix epoch these fields describe.
    pub(crate) secs: u64,
    /// Field 7: MMDDhhmmss.
    pub(crate) transmission: Bytes,
    /// YYMMDDhhmmss, that fields 7, 12 and 13 are slices of.
    pub(crate) local_date_time: Bytes,
}

impl Clock {
    pub(crate) fn at(secs: u64) -> Clock {
        // One allocation; every field is a slice of YYMMDDhhmmss.
        let all = Bytes::copy_from_slice(&date_time_digits(secs));
        Clock {
            secs,
            transmission: all.slice(2..12),
            local_date_time: all,
        }
    }
}

/// `secs` since the Unix epoch as YYMMDDhhmmss (UTC).
pub(crate) fn date_time_digits(secs: u64) -> [u8; 12] {
    let date = antaca::domain::calendar::date_of_ms(secs.saturating_mul(1000));
    let s = secs % 86_400;
    let pairs = [
        u64::from(date.year.rem_euclid(100).unsigned_abs()),
        u64::from(date.month),
        u64::from(date.day),
        s / 3600,
        (s / 60) % 60,
        s % 60,
    ];
    let mut out = [b'0'; 12];
    for (digits, value) in out.chunks_exact_mut(2).zip(pairs) {
        digits[0] = b'0' + (value / 10 % 10) as u8;
        digits[1] = b'0' + (value % 10) as u8;
    }
    out
}

/// Wall-clock seconds at `now`, from a (monotonic, wall) pair taken once, so
/// that the hot path reads no system clock.
#[derive(Clone, Copy)]
pub(crate) struct WallClock {
    base: Instant,
    base_since_epoch: Duration,
}

impl WallClock {
    pub(crate) fn new() -> WallClock {
        WallClock {
            base: Instant::now(),
            base_since_epoch: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default(),
        }
    }

    pub(crate) fn secs_at(self, now: Instant) -> u64 {
        (self.base_since_epoch + now.saturating_duration_since(self.base)).as_secs()
    }
}
