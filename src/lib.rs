//! Antaca: a card issuer's authorization engine.
pub mod framing;
pub mod iso8583;
