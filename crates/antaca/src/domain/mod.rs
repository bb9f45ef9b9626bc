//! The issuer's vocabulary: programs, users, balances, cards, transactions
//! and journal entries (`model`), exact money in minor units (`money`) and
//! civil dates without a clock (`calendar`), and the outcome of a message
//! with its one table of codes and record tags (`outcome`).
//!
//! Owns: plain data types and their invariants. Must never touch: IO, the
//! clock, the store, a socket, or any wire format.

pub mod calendar;
pub mod model;
pub mod money;
pub mod outcome;
