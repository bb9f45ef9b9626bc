//! Antaca: a card issuer's authorization engine.
pub mod app;
pub mod authz;
pub mod ca;
pub mod calendar;
pub mod client;
pub mod engine;
pub mod framing;
pub mod http;
pub mod iso8583;
pub mod model;
pub mod money;
pub mod portfolio;
pub mod protocol;
pub mod secrets;
pub mod server;
pub mod store;
pub mod trusted_identity;
