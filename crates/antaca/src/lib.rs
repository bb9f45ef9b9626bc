//! Antaca: a card issuer's authorization engine.
//!
//! The map is `ARCHITECTURE.md` at the repository root. In one line: bytes
//! (`net`) become messages (`iso8583`), messages become typed requests
//! (`protocol`), the one writer (`engine`) decides them (`authz`) and makes
//! them durable (`store`) before the answer leaves (`iso_server`); `http`
//! and `manage` change the same state through the same writer.
pub mod app;
pub mod authz;
pub mod ca;
pub mod domain;
pub mod engine;
pub mod http;
pub mod integrations;
pub mod iso8583;
pub mod iso_server;
pub mod manage;
pub mod net;
pub mod protocol;
pub mod security;
pub mod store;
pub mod tools;
