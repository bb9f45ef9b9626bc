//! Bytes on a socket: the network length header and frame size limit
//! (`framing`), and the one bounded accept loop every listener uses
//! (`accept`).
//!
//! Owns: where one ISO 8583 message ends and the next begins, and how
//! connections are let in. Must never touch: a field, a card, the engine.

pub mod accept;
pub mod framing;
