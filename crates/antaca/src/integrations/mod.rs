//! Outside services Antaca talks to: the SMTP notifier that drains the
//! outbox (`notify`) and the external eKYC provider (`kyc_provider`).
//!
//! Owns: the client side of those protocols, retries and back-off. Must
//! never touch: balances or cards directly; they read and write through the
//! engine.

pub mod kyc_provider;
pub mod notify;
