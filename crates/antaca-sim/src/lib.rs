//! `antaca sim`: a processor/network load simulator. It drives a running
//! engine over TCP in any shipped spec with a realistic message mix from a
//! portfolio's cards, measures latency in an HDR histogram (corrected for
//! coordinated omission at a fixed rate), checks every response, and at the
//! end reconciles the balances it can see by balance inquiry with what it was
//! told was approved.
//!
//! Card data never leaves this module in clear: problems name card ids, never PANs.

pub mod book;
pub mod cli;
pub mod echo;
mod pacer;
pub mod plot;
pub mod report;

use antaca::iso8583::{EncodeError, Message, Spec};
use antaca::net::framing::{encode_frame, FrameCodec, LengthHeader};
use antaca::protocol::builder::{cvv2_subelement, request_mti, RequestBuilder};
use antaca::protocol::classify::{BALANCE_INQUIRY, PURCHASE, REFUND};
use antaca::protocol::respond::response_mti;
use antaca::protocol::NetworkFunction;
use book::{Book, SimCard};
use bytes::{Bytes, BytesMut};
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
pub use report::Report;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_util::codec::Decoder;

/// A boxed error with a message for the operator.
pub type SimError = Box<dyn std::error::Error + Send + Sync>;

/// The message kinds of the mix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Purchase authorization (0100, 000000): places a hold.
    Auth,
    /// Completion (0220) of an earlier approved authorization: posts its hold.
    Completion,
    /// Reversal (0400) of an earlier approved authorization: releases its hold.
    Reversal,
    /// Refund (0200, 200000): credits at once.
    Refund,
    /// Balance inquiry (0100, 310000): field 54.
    Inquiry,
    /// An earlier authorization sent again as a repeat (0101).
    Repeat,
    /// An earlier authorization sent again unchanged.
    Duplicate,
    /// A request that must be declined: locked/removed/expired card, wrong expiry, insufficient funds.
    Decline,
    /// Network management echo (0800 301 / 1804 831).
    Echo,
}

impl Kind {
    /// Every kind, in mix order.
    pub const ALL: [Kind; 9] = [
        Kind::Auth,
        Kind::Completion,
        Kind::Reversal,
        Kind::Refund,
        Kind::Inquiry,
        Kind::Repeat,
        Kind::Duplicate,
        Kind::Decline,
        Kind::Echo,
    ];

    /// The name used in `--mix` and reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Auth => "auth",
            Kind::Completion => "completion",
            Kind::Reversal => "reversal",
            Kind::Refund => "refund",
            Kind::Inquiry => "inquiry",
            Kind::Repeat => "repeat",
            Kind::Duplicate => "duplicate",
            Kind::Decline => "decline",
            Kind::Echo => "echo",
        }
    }

    fn index(self) -> usize {
        // The variants are declared in the order of `ALL`.
        self as usize
    }
}

/// Relative weights of the message kinds (`auth=60,completion=10,...`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mix {
    weights: [u32; 9],
}

impl Mix {
    /// The default mix.
    pub const DEFAULT: &'static str =
        "auth=60,completion=10,reversal=5,refund=3,inquiry=10,repeat=3,duplicate=2,decline=5,echo=2";

    /// Parses `kind=weight,...`; kinds left out weigh 0.
    pub fn parse(text: &str) -> Result<Mix, String> {
        let mut weights = [0u32; 9];
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("mix: {part:?} is not kind=weight"))?;
            let kind = Kind::ALL
                .iter()
                .find(|k| k.name() == name.trim())
                .ok_or_else(|| {
                    let names: Vec<_> = Kind::ALL.iter().map(|k| k.name()).collect();
                    format!("mix: unknown kind {name:?} (kinds: {})", names.join(", "))
                })?;
            weights[kind.index()] = weight
                .trim()
                .parse()
                .map_err(|_| format!("mix: weight of {name} is not a whole number"))?;
        }
        if weights.iter().all(|w| *w == 0) {
            return Err("mix: every weight is 0".into());
        }
        Ok(Mix { weights })
    }

    /// The weight of `kind`.
    pub fn weight(&self, kind: Kind) -> u32 {
        self.weights[kind.index()]
    }

    fn pick(&self, rng: &mut StdRng) -> Kind {
        let total: u32 = self.weights.iter().sum();
        let mut x = rng.gen_range(0..total.max(1));
        for (kind, w) in Kind::ALL.iter().zip(self.weights) {
            if x < w {
                return *kind;
            }
            x -= w;
        }
        Kind::Auth
    }
}

impl Default for Mix {
    fn default() -> Self {
        Mix::parse(Mix::DEFAULT).unwrap_or(Mix {
            weights: [1, 0, 0, 0, 0, 0, 0, 0, 0],
        })
    }
}

impl std::str::FromStr for Mix {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mix::parse(s)
    }
}

/// How much the sim checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checks {
    /// Matching, response code classes and balance reconciliation (a real engine).
    Full,
    /// Matching only (MTI, STAN, fields 7/11/41): for the echo server.
    Protocol,
}

/// What to run.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Engine (or echo server) ISO 8583 address.
    pub addr: String,
    /// The dialect.
    pub spec: Spec,
    /// Length header.
    pub header: LengthHeader,
    /// The cards and balances to use.
    pub book: Book,
    /// TCP connections.
    pub connections: usize,
    /// Requests outstanding per connection.
    pub inflight: usize,
    /// Requests per second over all connections; 0 = closed loop.
    pub rate: f64,
    /// How long to send.
    pub duration: Duration,
    /// Message mix.
    pub mix: Mix,
    /// What to check.
    pub checks: Checks,
    /// Print a progress line every second (stdout is a terminal).
    pub progress: bool,
    /// How long to wait for answers after sending stops.
    pub drain: Duration,
    /// Random seed (also makes the terminal ids of the run).
    pub seed: u64,
}

impl SimConfig {
    /// A config with the defaults: 1 connection, 1 in flight, closed loop, 10 s, default mix, full checks.
    pub fn new(addr: impl Into<String>, spec: Spec, book: Book) -> SimConfig {
        SimConfig {
            addr: addr.into(),
            spec,
            header: LengthHeader::Binary2,
            book,
            connections: 1,
            inflight: 1,
            rate: 0.0,
            duration: Duration::from_secs(10),
            mix: Mix::default(),
            checks: Checks::Full,
            progress: false,
            drain: Duration::from_secs(10),
            seed: rand::random(),
        }
    }
}

/// The dialect details the sim needs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Dialect {
    pub(crate) iso93: bool,
}

impl Dialect {
    pub(crate) fn of(spec: &Spec) -> Dialect {
        Dialect {
            iso93: spec.field(39).map(|f| f.length() == 4).unwrap_or(false),
        }
    }

    /// The dialect as the request builder knows it.
    fn wire(self) -> antaca::domain::outcome::Dialect {
        if self.iso93 {
            antaca::domain::outcome::Dialect::Iso93
        } else {
            antaca::domain::outcome::Dialect::Iso87
        }
    }

    pub(crate) fn approval(self) -> &'static str {
        if self.iso93 {
            "0000"
        } else {
            "00"
        }
    }

    fn approved(self, code: &[u8]) -> bool {
        if self.iso93 {
            code.len() == 4 && code.first() == Some(&b'0')
        } else {
            code == b"00"
        }
    }

    fn insufficient(self) -> &'static [u8] {
        if self.iso93 {
            b"1016"
        } else {
            b"51"
        }
    }
}

const MAX_OPEN_AUTHS: usize = 4096;
const MAX_ANSWERED: usize = 512;
const MAX_NOTES: usize = 20;
const HUGE_AMOUNT: i64 = 999_999_999_999;

/// The date-time fields of the current second (UTC), shared by every request
/// sent within it.
#[derive(Clone, Default)]
struct Clock {
    /// Seconds since the Unix epoch these fields describe.
    secs: u64,
    /// Field 7: MMDDhhmmss.
    transmission: Bytes,
    /// YYMMDDhhmmss, that fields 7, 12 and 13 are slices of.
    local_date_time: Bytes,
}

impl Clock {
    fn at(secs: u64) -> Clock {
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
fn date_time_digits(secs: u64) -> [u8; 12] {
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
struct WallClock {
    base: Instant,
    base_since_epoch: Duration,
}

impl WallClock {
    fn new() -> WallClock {
        WallClock {
            base: Instant::now(),
            base_since_epoch: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default(),
        }
    }

    fn secs_at(self, now: Instant) -> u64 {
        (self.base_since_epoch + now.saturating_duration_since(self.base)).as_secs()
    }
}

/// Where a connection cuts the bytes of its requests from (varying field
/// values, encoded bodies): one allocation serves many requests, and each
/// piece is a reference-counted slice of it.
struct Arena(BytesMut);

impl Arena {
    /// The size of one block.
    const BLOCK: usize = 16 * 1024;

    fn new() -> Arena {
        Arena(BytesMut::with_capacity(Arena::BLOCK))
    }

    /// Room for at least `len` more bytes: in the current block if it has
    /// them, else in a new one (the old block lives while a piece of it does).
    fn reserve(&mut self, len: usize) {
        if self.0.capacity() - self.0.len() < len {
            self.0.reserve(len.max(Arena::BLOCK));
        }
    }

    /// The buffer a request's numbers are cut from, with room for them.
    fn digits(&mut self) -> &mut BytesMut {
        self.reserve(128);
        &mut self.0
    }

    /// `spec`'s wire form of `message` (the frame body).
    fn encode(&mut self, spec: &Spec, message: &Message) -> Result<Bytes, EncodeError> {
        self.reserve(1024);
        spec.encode(message, &mut self.0)?;
        Ok(self.0.split().freeze())
    }
}

/// The field values of a card, built once per run so that a request costs
/// reference-count increments instead of allocations. Holds the clear PAN
/// and CVV2: never print it.
struct CardFields {
    pan: Bytes,
    expiry: Bytes,
    currency: Bytes,
    /// The CVV2 as the spec carries it (its TLV subelement).
    cvv2: Option<Bytes>,
}

impl CardFields {
    fn of_book(book: &Book, spec: &Spec) -> Vec<CardFields> {
        let location = spec.cvv2_location();
        let has_cvv2_field = spec.field(location.field).is_some();
        book.cards
            .iter()
            .map(|card| CardFields {
                pan: Bytes::from(card.pan.clone()),
                expiry: Bytes::from(card.expiry.clone()),
                currency: Bytes::from(format!("{:03}", card.currency.numeric)),
                cvv2: card
                    .cvv2
                    .as_ref()
                    .filter(|_| has_cvv2_field)
                    .map(|cvv2| cvv2_subelement(location, cvv2)),
            })
            .collect()
    }
}

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
struct Live {
    sent: AtomicU64,
    received: AtomicU64,
    errors: AtomicU64,
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

fn new_histogram() -> Histogram<u64> {
    Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)
        .unwrap_or_else(|_| Histogram::<u64>::new(3).unwrap_or_else(|_| unreachable_histogram()))
}

fn unreachable_histogram() -> Histogram<u64> {
    // new(3) only fails for a precision above 5.
    panic!("hdrhistogram rejects 3 significant digits")
}

struct Conn {
    index: usize,
    spec: Arc<Spec>,
    dialect: Dialect,
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
    fn tick_clock(&mut self, now: Instant) {
        let secs = self.wall.secs_at(now);
        if secs != self.clock.secs {
            self.clock = Clock::at(secs);
        }
    }

    /// A request of card `c` with the fields an acquirer sends.
    fn request(
        &mut self,
        mti: &[u8; 4],
        c: usize,
        processing: &'static [u8],
        amount: i64,
    ) -> RequestBuilder<'_> {
        let stan = self.next_stan();
        let card = &self.cards[c];
        let dialect = self.dialect.wire();
        let reference = (self.index % 10_000) as u64 * 100_000_000 + u64::from(stan);
        RequestBuilder::new(dialect, request_mti(dialect, mti), 16, self.arena.digits())
            .pan(card.pan.clone())
            .processing_code(Bytes::from_static(processing))
            .amount_minor(u64::try_from(amount).unwrap_or(0))
            .date_time(&self.clock.local_date_time)
            .stan(stan)
            .mcc(Bytes::from_static(b"5411"))
            .acquirer(self.acquirer.clone())
            .retrieval_reference(reference)
            .terminal(self.terminal.clone())
            .merchant(Bytes::from_static(b"SIMMERCHANT0001"))
            .currency(card.currency.clone())
    }

    /// A request of card `c` with its expiry (field 14).
    fn request_with_expiry(
        &mut self,
        mti: &[u8; 4],
        c: usize,
        processing: &'static [u8],
        amount: i64,
    ) -> RequestBuilder<'_> {
        let expiry = self.cards[c].expiry.clone();
        self.request(mti, c, processing, amount).expiry(expiry)
    }

    fn small_amount(&mut self, c: usize) -> i64 {
        let scale = 10i64.pow(self.book.cards[c].currency.exponent);
        (self.rng.gen_range(1..=2000) * scale / 100).max(1)
    }

    fn good_card(&mut self) -> usize {
        let i = self.rng.gen_range(0..self.book.good.len());
        self.book.good[i]
    }

    /// Builds the next request of the mix.
    fn next_request(&mut self, intended: Instant) -> Pending {
        let book = Arc::clone(&self.book);
        let mut kind = self.mix.pick(&mut self.rng);
        // Follow-ups need an original; without one they become authorizations.
        kind = match kind {
            Kind::Completion | Kind::Reversal if self.open.is_empty() => Kind::Auth,
            Kind::Repeat | Kind::Duplicate => {
                let n = self.answered.len();
                let free = n > 0 && {
                    let i = self.rng.gen_range(0..n);
                    self.answered.swap(i, n - 1);
                    !self.pending.contains_key(&self.answered[n - 1].stan)
                };
                if free {
                    kind
                } else {
                    Kind::Auth
                }
            }
            other => other,
        };
        let secs = self.clock.secs;
        let pending = |kind, card, amount, hold, request, expect| Pending {
            intended,
            kind,
            card,
            amount,
            hold,
            secs,
            request,
            body: Bytes::new(),
            expect,
        };
        match kind {
            Kind::Auth => {
                let c = self.good_card();
                let amount = self.small_amount(c);
                let cvv2 = self.cards[c].cvv2.clone();
                // A reference count, not a copy of the location, per message.
                let spec = Arc::clone(&self.spec);
                let mut m = self.request_with_expiry(b"0100", c, PURCHASE, amount);
                if let Some(cvv2) = cvv2 {
                    m = m.subelements(spec.cvv2_location(), cvv2);
                }
                pending(
                    kind,
                    Some(c),
                    amount,
                    0,
                    m.build(),
                    Expect::ApprovedOrInsufficient,
                )
            }
            Kind::Completion | Kind::Reversal => {
                let i = self.rng.gen_range(0..self.open.len());
                let Some(original) = self.open.swap_remove_back(i) else {
                    return self.auth_fallback(intended);
                };
                let (mti, amount) = if kind == Kind::Completion {
                    // Completions may differ from the hold (tips, fuel): 80–120 %.
                    let amount = (original.amount * self.rng.gen_range(80..=120) / 100)
                        .clamp(1, HUGE_AMOUNT);
                    (b"0220", amount)
                } else {
                    (b"0400", original.amount)
                };
                let acquirer = self.acquirer.clone();
                let named = original.original;
                let m = self
                    .request(mti, original.card, PURCHASE, amount)
                    .original(
                        named.mti,
                        named.stan,
                        &date_time_digits(named.secs),
                        &acquirer,
                    )
                    .build();
                pending(
                    kind,
                    Some(original.card),
                    amount,
                    original.amount,
                    m,
                    Expect::Approved,
                )
            }
            Kind::Refund => {
                // Give back what this connection took from the balance it drained most,
                // so balances stay near their opening amounts for any duration.
                let drained = self
                    .result
                    .deltas
                    .iter()
                    .filter(|(leg, d)| d.0 < 0 && book.spender.contains_key(leg))
                    .min_by_key(|(leg, d)| (d.0, **leg))
                    .map(|(leg, d)| (*leg, -d.0));
                let (c, amount) = match drained {
                    Some((leg, taken)) => (
                        book.spender.get(&leg).copied().unwrap_or(book.good[0]),
                        taken.min(HUGE_AMOUNT),
                    ),
                    None => {
                        let c = self.good_card();
                        (c, self.small_amount(c))
                    }
                };
                let m = self.request_with_expiry(b"0200", c, REFUND, amount).build();
                pending(kind, Some(c), amount, 0, m, Expect::Approved)
            }
            Kind::Inquiry => {
                let c = self.good_card();
                let m = self
                    .request_with_expiry(b"0100", c, BALANCE_INQUIRY, 0)
                    .build();
                pending(kind, Some(c), 0, 0, m, Expect::Approved)
            }
            Kind::Repeat | Kind::Duplicate => {
                let Some(original) = self.answered.back() else {
                    return self.auth_fallback(intended);
                };
                // The request exactly as first sent: it decodes, since it was encoded.
                let Ok(mut m) = self.spec.decode(&original.body) else {
                    return self.auth_fallback(intended);
                };
                if kind == Kind::Repeat {
                    let mut mti = m.mti();
                    mti[3] |= 1;
                    m.set_mti(mti);
                }
                let expect = Expect::Replay {
                    code: original.code.clone(),
                    approval: original.approval.clone(),
                };
                pending(kind, None, 0, 0, m, expect)
            }
            Kind::Decline => {
                let choice = self.rng.gen_range(0..3);
                if choice == 0 && !book.bad.is_empty() {
                    let c = book.bad[self.rng.gen_range(0..book.bad.len())];
                    let amount = self.small_amount(c);
                    let m = self
                        .request_with_expiry(b"0100", c, PURCHASE, amount)
                        .build();
                    return pending(kind, Some(c), amount, 0, m, Expect::Declined);
                }
                let c = self.good_card();
                if choice == 1 {
                    let amount = self.small_amount(c);
                    let m = self.request(b"0100", c, PURCHASE, amount);
                    let wrong: &'static [u8] = if book.cards[c].expiry == "2001" {
                        b"2002"
                    } else {
                        b"2001"
                    };
                    let m = m.expiry(Bytes::from_static(wrong)).build();
                    pending(kind, Some(c), amount, 0, m, Expect::Declined)
                } else {
                    let m = self
                        .request_with_expiry(b"0100", c, PURCHASE, HUGE_AMOUNT)
                        .build();
                    pending(kind, Some(c), HUGE_AMOUNT, 0, m, Expect::Insufficient)
                }
            }
            Kind::Echo => {
                let stan = self.next_stan();
                let m = RequestBuilder::network_management(
                    self.dialect.wire(),
                    NetworkFunction::Echo,
                    self.clock.transmission.clone(),
                    stan,
                    self.arena.digits(),
                )
                .build();
                pending(kind, None, 0, 0, m, Expect::Approved)
            }
        }
    }

    fn auth_fallback(&mut self, intended: Instant) -> Pending {
        let mix = std::mem::replace(
            &mut self.mix,
            Mix {
                weights: [1, 0, 0, 0, 0, 0, 0, 0, 0],
            },
        );
        let p = self.next_request(intended);
        self.mix = mix;
        p
    }

    /// Encodes `p` into `out` and records it as in flight.
    fn send(&mut self, mut p: Pending, out: &mut BytesMut) {
        p.body = match self.arena.encode(&self.spec, &p.request) {
            Ok(body) => body,
            Err(e) => {
                self.result.protocol_errors += 1;
                self.note(format!("cannot encode a {} request: {e}", p.kind.name()));
                return;
            }
        };
        if let Err(e) = encode_frame(self.header, &p.body, out) {
            self.result.protocol_errors += 1;
            self.note(format!("cannot frame a {} request: {e}", p.kind.name()));
            return;
        }
        self.result.sent += 1;
        self.result.kinds[p.kind.index()] += 1;
        self.pending.insert(stan_of(&p.request), p);
    }

    fn move_legs(&mut self, card: usize, available: i64, held: i64) {
        for &leg in &self.book.cards[card].legs {
            let d = self.result.deltas.entry(leg).or_default();
            d.0 += available;
            d.1 += held;
        }
    }

    fn mark_unknown(&mut self, card: Option<usize>) {
        if let Some(card) = card {
            let legs = &self.book.cards[card].legs;
            self.result.unknown.extend(legs.iter().copied());
        }
    }

    fn error(&mut self) {
        self.live.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Matches a response frame with its request, checks it and books its effect.
    fn on_frame(&mut self, frame: &Bytes, now: Instant) {
        let response = match self.spec.decode(frame) {
            Ok(m) => m,
            Err(e) => {
                self.result.protocol_errors += 1;
                self.error();
                self.note(format!("undecodable response: {e}"));
                return;
            }
        };
        let stan = stan_of(&response);
        let Some(p) = self.pending.remove(&stan) else {
            self.result.mismatches += 1;
            self.error();
            let mti = String::from_utf8_lossy(&response.mti()).into_owned();
            self.note(format!(
                "response {mti} with STAN {stan:06} matches no request in flight"
            ));
            return;
        };
        self.result.received += 1;
        let micros = u64::try_from(now.saturating_duration_since(p.intended).as_micros())
            .unwrap_or(u64::MAX);
        self.result.histogram.saturating_record(micros.max(1));
        let expected_mti = response_mti(p.request.mti());
        let mut wrong = Vec::new();
        if response.mti() != expected_mti {
            wrong.push(format!(
                "MTI {} (expected {})",
                String::from_utf8_lossy(&response.mti()),
                String::from_utf8_lossy(&expected_mti)
            ));
        }
        for n in [7, 11, 41] {
            if p.request.get(n) != response.get(n) {
                wrong.push(format!("field {n}"));
            }
        }
        let code = response.get_bytes(39).cloned();
        if code.is_none() {
            wrong.push("no field 39".into());
        }
        if !wrong.is_empty() {
            self.result.mismatches += 1;
            self.error();
            self.mark_unknown(p.card);
            self.note(format!(
                "{} STAN {stan:06}: mismatched response: {}",
                p.kind.name(),
                wrong.join(", ")
            ));
            return;
        }
        let code = code.unwrap_or_default();
        let code_text = String::from_utf8_lossy(&code);
        match self.result.codes.get_mut(code_text.as_ref()) {
            Some(count) => *count += 1,
            None => {
                self.result.codes.insert(code_text.into_owned(), 1);
            }
        }
        let approved = self.dialect.approved(&code);
        if approved {
            self.result.approved[p.kind.index()] += 1;
        }
        if self.checks == Checks::Full {
            if let Some(problem) = self.check(&p, &code, &response) {
                self.result.unexpected += 1;
                self.error();
                let card = p
                    .card
                    .map(|c| format!(" card {}", self.book.cards[c].id))
                    .unwrap_or_default();
                self.note(format!(
                    "{}{card} STAN {stan:06}: code {}: {problem}",
                    p.kind.name(),
                    String::from_utf8_lossy(&code)
                ));
                // What moved is unknown: leave these balances out of the reconciliation.
                self.mark_unknown(p.card);
                return;
            }
        }
        match p.kind {
            Kind::Auth | Kind::Decline => {
                // A decline the server approved (the echo server does) is no original.
                if let (true, Kind::Auth, Some(card)) = (approved, p.kind, p.card) {
                    self.move_legs(card, -p.amount, p.amount);
                    if self.open.len() >= MAX_OPEN_AUTHS {
                        self.open.pop_front();
                    }
                    self.open.push_back(OpenAuth {
                        card,
                        amount: p.amount,
                        original: Original {
                            mti: p.request.mti(),
                            stan,
                            secs: p.secs,
                        },
                    });
                }
                if self.answered.len() >= MAX_ANSWERED {
                    self.answered.pop_front();
                }
                self.answered.push_back(Answered {
                    stan,
                    body: p.body,
                    code,
                    approval: response.get_bytes(38).cloned(),
                });
            }
            Kind::Completion if approved => {
                if let Some(card) = p.card {
                    self.move_legs(card, p.hold - p.amount, -p.hold);
                }
            }
            Kind::Reversal if approved => {
                if let Some(card) = p.card {
                    self.move_legs(card, p.hold, -p.hold);
                }
            }
            Kind::Refund if approved => {
                if let Some(card) = p.card {
                    self.move_legs(card, p.amount, 0);
                }
            }
            Kind::Completion | Kind::Reversal | Kind::Refund => self.mark_unknown(p.card),
            Kind::Inquiry | Kind::Repeat | Kind::Duplicate | Kind::Echo => {}
        }
    }

    /// Why a response code breaks the expectation, if it does.
    fn check(&self, p: &Pending, code: &[u8], response: &Message) -> Option<String> {
        let approved = self.dialect.approved(code);
        match &p.expect {
            Expect::Approved if !approved => Some("expected an approval".into()),
            Expect::Approved if p.kind == Kind::Inquiry => match response.get(54).map(parse_54) {
                Some(Some(_)) => None,
                _ => Some("balance inquiry without a readable field 54".into()),
            },
            Expect::ApprovedOrInsufficient if !approved && code != self.dialect.insufficient() => {
                Some("expected an approval or insufficient funds".into())
            }
            Expect::Declined if approved => Some("approved, but it must be declined".into()),
            Expect::Insufficient if code != self.dialect.insufficient() => {
                Some("expected insufficient funds".into())
            }
            Expect::Replay {
                code: first,
                approval,
            } => {
                if code != first.as_ref() {
                    Some(format!(
                        "a repeat/duplicate got another code than the first answer ({})",
                        String::from_utf8_lossy(first)
                    ))
                } else if approval.as_deref() != response.get(38) {
                    Some("a repeat/duplicate got another approval code".into())
                } else {
                    None
                }
            }
            _ => None,
        }
    }
}

/// Field 11 as a number; `u32::MAX` (no STAN the sim sends) when absent or not 1–9 digits.
fn stan_of(m: &Message) -> u32 {
    match m.get(11) {
        Some(digits) if (1..=9).contains(&digits.len()) => digits.iter().try_fold(0u32, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
        }),
        _ => None,
    }
    .unwrap_or(u32::MAX)
}

/// Field 54: (ledger "01", available "02") in signed minor units.
pub fn parse_54(value: &[u8]) -> Option<(i64, i64)> {
    let mut ledger = None;
    let mut available = None;
    for chunk in value.chunks(20) {
        if chunk.len() != 20 {
            return None;
        }
        let digits = std::str::from_utf8(&chunk[8..20]).ok()?;
        let mut amount: i64 = digits.parse().ok()?;
        match chunk[7] {
            b'C' => {}
            b'D' => amount = -amount,
            _ => return None,
        }
        match &chunk[2..4] {
            b"01" => ledger = Some(amount),
            b"02" => available = Some(amount),
            _ => {}
        }
    }
    Some((ledger?, available?))
}

async fn connect(addr: &str) -> Result<TcpStream, SimError> {
    let socket = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    socket.set_nodelay(true)?;
    Ok(socket)
}

/// When a connection sends.
enum Sending {
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
async fn drive(
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
                                Ok(Some(frame)) if frame.is_empty() => continue,
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

/// A connection that sends one request at a time (opening and closing inquiries).
struct Serial {
    socket: TcpStream,
    codec: FrameCodec,
    inbuf: BytesMut,
    spec: Arc<Spec>,
    header: LengthHeader,
}

impl Serial {
    async fn call(&mut self, request: &Message) -> Result<Message, SimError> {
        let mut body = BytesMut::new();
        self.spec.encode(request, &mut body)?;
        let mut out = BytesMut::new();
        encode_frame(self.header, &body, &mut out)?;
        self.socket.write_all(&out).await?;
        let wanted = stan_of(request);
        loop {
            while let Some(frame) = self.codec.decode(&mut self.inbuf)? {
                if frame.is_empty() {
                    continue;
                }
                let m = self.spec.decode(&frame)?;
                if stan_of(&m) == wanted {
                    return Ok(m);
                }
            }
            let read = tokio::time::timeout(
                Duration::from_secs(10),
                self.socket.read_buf(&mut self.inbuf),
            )
            .await
            .map_err(|_| "no answer to a balance inquiry in 10 s")??;
            if read == 0 {
                return Err("the server closed the connection".into());
            }
        }
    }
}

/// Balance inquiry of every good card: (ledger, available) by card index.
async fn inquire_all(
    config: &SimConfig,
    shared: &RunShared,
    terminal: String,
) -> Result<HashMap<usize, Result<(i64, i64), String>>, SimError> {
    let socket = connect(&config.addr).await?;
    let mut serial = Serial {
        socket,
        codec: FrameCodec::new(config.header, 64 * 1024),
        inbuf: BytesMut::new(),
        spec: Arc::clone(&shared.spec),
        header: config.header,
    };
    let mut conn = new_conn(config, shared, usize::MAX, terminal);
    let mut out = HashMap::new();
    for &c in &shared.book.good {
        conn.tick_clock(Instant::now());
        let m = conn
            .request_with_expiry(b"0100", c, BALANCE_INQUIRY, 0)
            .build();
        let answer = serial.call(&m).await?;
        let code = answer.get(39).unwrap_or_default();
        let result = if !conn.dialect.approved(code) {
            Err(format!(
                "inquiry declined {}",
                String::from_utf8_lossy(code)
            ))
        } else {
            answer
                .get(54)
                .and_then(parse_54)
                .ok_or_else(|| "inquiry without a readable field 54".to_string())
        };
        out.insert(c, result);
    }
    Ok(out)
}

/// What the connections of a run share.
struct RunShared {
    spec: Arc<Spec>,
    book: Arc<Book>,
    cards: Arc<[CardFields]>,
    live: Arc<Live>,
    wall: WallClock,
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

fn new_conn(config: &SimConfig, shared: &RunShared, index: usize, terminal: String) -> Conn {
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

/// Per-balance opening amounts (available, held) the reconciliation starts from,
/// and the balances the sim does not own.
struct Opening {
    accounts: HashMap<usize, (i64, i64)>,
    foreign: HashSet<usize>,
    notes: Vec<String>,
}

/// Opening amounts: from the portfolio, re-based on a single-balance card's
/// inquiry (which gives its balance's available and held amounts exactly).
/// A card over several balances whose inquiry disagrees with the model marks
/// them foreign: the sim does not own them and leaves them out.
fn opening_from(book: &Book, inquiries: &HashMap<usize, Result<(i64, i64), String>>) -> Opening {
    let mut accounts: HashMap<usize, (i64, i64)> = book
        .accounts
        .iter()
        .enumerate()
        .map(|(i, a)| (i, (a.opening, 0)))
        .collect();
    let mut foreign = HashSet::new();
    let mut notes = Vec::new();
    for &c in &book.good {
        let card = &book.cards[c];
        match inquiries.get(&c) {
            Some(Ok((ledger, available))) if card.legs.len() == 1 => {
                let leg = card.legs[0];
                let before = accounts.get(&leg).copied().unwrap_or_default();
                let now = (*available, ledger - available);
                if before != now {
                    notes.push(format!(
                        "balance {} starts at available {} held {} (portfolio: {}): the store is not fresh; reconciling from the inquired amounts",
                        book.accounts[leg].id, now.0, now.1, book.accounts[leg].opening
                    ));
                    accounts.insert(leg, now);
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                notes.push(format!(
                    "card {}: opening {e}; its balances are left out",
                    card.id
                ));
                foreign.extend(card.legs.iter().copied());
            }
            None => {}
        }
    }
    for &c in &book.good {
        let card = &book.cards[c];
        if let Some(Ok(seen)) = inquiries.get(&c) {
            if card.legs.len() > 1 && expected_inquiry(card, &accounts) != *seen {
                notes.push(format!(
                    "card {}: opening inquiry disagrees with the portfolio over balances {}: not owned, left out",
                    card.id,
                    card.legs
                        .iter()
                        .map(|l| book.accounts[*l].id.as_str())
                        .collect::<Vec<_>>()
                        .join("+")
                ));
                foreign.extend(card.legs.iter().copied());
            }
        }
    }
    Opening {
        accounts,
        foreign,
        notes,
    }
}

/// What a balance inquiry of `card` answers over `accounts`: ledger of its first
/// balance, and the smallest available amount of its balances.
fn expected_inquiry(card: &SimCard, accounts: &HashMap<usize, (i64, i64)>) -> (i64, i64) {
    let first = accounts.get(&card.legs[0]).copied().unwrap_or_default();
    let available = card
        .legs
        .iter()
        .map(|l| accounts.get(l).map(|a| a.0).unwrap_or_default())
        .min()
        .unwrap_or(first.0);
    (first.0 + first.1, available)
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
