//! One connection's state machine: the requests in flight (by STAN), the
//! approved authorizations a completion or reversal may follow, the answers
//! a repeat or duplicate may replay, and what the connection measured.
//!
//! [`request`] builds and sends what the mix asks for, [`response`] matches,
//! checks and books what comes back, [`drive`] runs the socket loop. This
//! module owns the state and its limits; it knows nothing of other
//! connections or of the reconciliation, and never prints a PAN.

mod drive;
mod request;
mod response;

pub(crate) use drive::{connect, drive, Sending};
pub(crate) use request::{CardFields, Expiry};
pub use response::parse_54;

use crate::book::Book;
use crate::clock::{Clock, WallClock};
use crate::config::{Checks, Dialect, Kind, Mix, SimConfig};
use crate::run::RunShared;
use antaca::iso8583::{Message, Spec};
use antaca::net::framing::LengthHeader;
use bytes::Bytes;
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::SeedableRng;
use request::Arena;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;

const MAX_OPEN_AUTHS: usize = 4096;
const MAX_ANSWERED: usize = 512;
const MAX_NOTES: usize = 20;
const HUGE_AMOUNT: i64 = 999_999_999_999;

/// What the sim expects of a response code.
#[derive(Clone, Debug)]
enum Expect {
    Approved,
    ApprovedOrInsufficient,
    Declined,
    Insufficient,
    Replay {
        code: Bytes,
        approval: Option<Bytes>,
    },
}

/// A request in flight, by STAN.
struct Pending {
    intended: Instant,
    kind: Kind,
    card: Option<usize>,
    amount: i64,
    hold: i64,
    /// The second its date-time fields name.
    secs: u64,
    request: Message,
    /// The encoded request (frame body), once sent.
    body: Bytes,
    expect: Expect,
}

/// What names an approved authorization in field 90/56, with the
/// connection's acquirer: plain values, so that thousands of them cost
/// no allocation and no reference count.
#[derive(Clone, Copy)]
struct Original {
    mti: [u8; 4],
    stan: u32,
    /// The second its fields 7 and 12 name.
    secs: u64,
}

/// An approved authorization that a completion or reversal may follow.
struct OpenAuth {
    card: usize,
    amount: i64,
    original: Original,
}

/// Hashes a STAN (a number below 1,000,000) with one multiplication: the
/// pending map is looked up twice per message.
#[derive(Default)]
struct StanHasher(u64);

impl std::hash::Hasher for StanHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type PendingMap = HashMap<u32, Pending, std::hash::BuildHasherDefault<StanHasher>>;

/// An answered authorization (or decline) that a repeat or duplicate may replay.
struct Answered {
    stan: u32,
    /// The request as sent (frame body).
    body: Bytes,
    code: Bytes,
    approval: Option<Bytes>,
}

/// Counters shared with the progress line, added to once per batch.
#[derive(Default)]
pub(crate) struct Live {
    pub(crate) sent: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) errors: AtomicU64,
}

/// What one connection measured and saw.
pub(crate) struct ConnResult {
    pub(crate) histogram: Histogram<u64>,
    pub(crate) sent: u64,
    pub(crate) received: u64,
    pub(crate) protocol_errors: u64,
    pub(crate) mismatches: u64,
    pub(crate) unexpected: u64,
    pub(crate) timeouts: u64,
    pub(crate) codes: BTreeMap<String, u64>,
    /// Requests sent, by [`Kind::index`].
    pub(crate) kinds: [u64; 9],
    /// Approvals, by [`Kind::index`].
    pub(crate) approved: [u64; 9],
    pub(crate) deltas: HashMap<usize, (i64, i64)>,
    pub(crate) unknown: HashSet<usize>,
    pub(crate) notes: Vec<String>,
}

pub(crate) fn new_histogram() -> Histogram<u64> {
    Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)
        .unwrap_or_else(|_| Histogram::<u64>::new(3).unwrap_or_else(|_| unreachable_histogram()))
}

fn unreachable_histogram() -> Histogram<u64> {
    // new(3) only fails for a precision above 5.
    panic!("hdrhistogram rejects 3 significant digits")
}

pub(crate) struct Conn {
    index: usize,
    spec: Arc<Spec>,
    pub(crate) dialect: Dialect,
    header: LengthHeader,
    book: Arc<Book>,
    cards: Arc<[CardFields]>,
    mix: Mix,
    checks: Checks,
    rng: StdRng,
    terminal: Bytes,
    /// Field 32: one acquirer per connection, because field 90/56 names an
    /// original by MTI, STAN, date-time and acquirer, without the terminal.
    acquirer: Bytes,
    stan: u32,
    wall: WallClock,
    clock: Clock,
    pending: PendingMap,
    open: VecDeque<OpenAuth>,
    answered: VecDeque<Answered>,
    live: Arc<Live>,
    arena: Arena,
    result: ConnResult,
}

impl Conn {
    fn note(&mut self, text: String) {
        if self.result.notes.len() < MAX_NOTES {
            self.result.notes.push(text);
        }
    }

    fn next_stan(&mut self) -> u32 {
        loop {
            self.stan = if self.stan >= 999_999 {
                1
            } else {
                self.stan + 1
            };
            if !self.pending.contains_key(&self.stan) {
                return self.stan;
            }
        }
    }

    /// Brings the date-time fields to the second of `now`.
    pub(crate) fn tick_clock(&mut self, now: Instant) {
        let secs = self.wall.secs_at(now);
        if secs != self.clock.secs {
            self.clock = Clock::at(secs);
        }
    }
}

/// Field 11 as a number; `u32::MAX` (no STAN the sim sends) when absent or not 1–9 digits.
pub(crate) fn stan_of(m: &Message) -> u32 {
    match m.get(11) {
        Some(digits) if (1..=9).contains(&digits.len()) => digits.iter().try_fold(0u32, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
        }),
        _ => None,
    }
    .unwrap_or(u32::MAX)
}

pub(crate) fn new_conn(
    config: &SimConfig,
    shared: &RunShared,
    index: usize,
    terminal: String,
) -> Conn {
    Conn {
        index,
        spec: Arc::clone(&shared.spec),
        dialect: Dialect::of(&shared.spec),
        header: config.header,
        book: Arc::clone(&shared.book),
        cards: Arc::clone(&shared.cards),
        mix: config.mix.clone(),
        checks: config.checks,
        rng: StdRng::seed_from_u64(
            config.seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        ),
        terminal: Bytes::from(terminal),
        acquirer: Bytes::from(format!("6{:05}", index % 100_000)),
        stan: 0,
        wall: shared.wall,
        clock: Clock::default(),
        pending: PendingMap::default(),
        open: VecDeque::new(),
        answered: VecDeque::new(),
        live: Arc::clone(&shared.live),
        arena: Arena::new(),
        result: ConnResult {
            histogram: new_histogram(),
            sent: 0,
            received: 0,
            protocol_errors: 0,
            mismatches: 0,
            unexpected: 0,
            timeouts: 0,
            codes: BTreeMap::new(),
            kinds: [0; 9],
            approved: [0; 9],
            deltas: HashMap::new(),
            unknown: HashSet::new(),
            notes: Vec::new(),
        },
    }
}
