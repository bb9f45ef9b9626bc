//! What a run is asked to do: the message kinds and their mix, how much is
//! checked, the run's configuration, and the dialect details (ISO 87 or 93)
//! that the requests and checks depend on.
//!
//! Plain values only: nothing here opens a socket, reads a clock or sees a
//! response.

use crate::book::Book;
use antaca::iso8583::Spec;
use antaca::net::framing::LengthHeader;
use rand::rngs::StdRng;
use rand::Rng;
use std::time::Duration;

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

    pub(crate) fn index(self) -> usize {
        // The variants are declared in the order of `ALL`.
        self as usize
    }
}

/// Relative weights of the message kinds (`auth=60,completion=10,...`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mix {
    pub(crate) weights: [u32; 9],
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

    pub(crate) fn pick(&self, rng: &mut StdRng) -> Kind {
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
            iso93: spec.field(39).is_some_and(|f| f.length() == 4),
        }
    }

    /// The dialect as the request builder knows it.
    pub(crate) fn wire(self) -> antaca::domain::outcome::Dialect {
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

    pub(crate) fn approved(self, code: &[u8]) -> bool {
        if self.iso93 {
            code.len() == 4 && code.first() == Some(&b'0')
        } else {
            code == b"00"
        }
    }

    pub(crate) fn insufficient(self) -> &'static [u8] {
        if self.iso93 {
            b"1016"
        } else {
            b"51"
        }
    }
}
