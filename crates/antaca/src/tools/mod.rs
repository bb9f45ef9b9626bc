//! Operator tools behind the CLI: the offline consistency check (`verify`)
//! and the one-message ISO 8583 client (`send`).
//!
//! Owns: nothing the server needs at run time. Must never touch: a running
//! engine's state except over its sockets.

pub mod send;
pub mod verify;
