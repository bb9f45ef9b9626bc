//! Bytes on a socket: the network length header and frame size limit
//! (`framing`).
//!
//! Owns: where one ISO 8583 message ends and the next begins. Must never
//! touch: a field, a card, the engine.

pub mod framing;
