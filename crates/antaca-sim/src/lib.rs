//! `antaca sim`: a processor/network load simulator. It drives a running
//! engine over TCP in any shipped spec with a realistic message mix from a
//! portfolio's cards, measures latency in an HDR histogram (corrected for
//! coordinated omission at a fixed rate), checks every response, and at the
//! end reconciles the balances it can see by balance inquiry with what it was
//! told was approved.
//!
//! Card data never leaves this module in clear: problems name card ids, never PANs.
//!
//! Layout, from the outside in:
//!
//! - [`cli`]: the `antaca sim` commands (run, echo, plot);
//! - `run`: one run across connections, start to report ([`run_blocking`]);
//! - `balances`: the opening and closing inquiries, the opening amounts;
//! - `conn`: one connection's state machine (what it sends, what it checks,
//!   its socket loop), the per-message hot path;
//! - `config`, `clock`: what to run, and time as the requests name it;
//! - `pacer`: the fixed-rate schedule;
//! - [`book`], [`report`], [`plot`], [`echo`]: the cards, the results, their
//!   plot, and the echo baseline.

pub mod book;
pub mod cli;
pub mod echo;
pub mod plot;
pub mod report;

mod balances;
mod clock;
mod config;
mod conn;
mod pacer;
mod run;

pub use config::{Checks, Kind, Mix, SimConfig};
pub use conn::parse_54;
pub use report::Report;
pub use run::{run, run_blocking};

/// A boxed error with a message for the operator.
pub type SimError = Box<dyn std::error::Error + Send + Sync>;
