//! Card secrets: the data key and keyed hashes (`secrets`), the PAN vault
//! (`vault`), CVV2 checks (`cvv`), PIN blocks (`pinblock`), and PAN masking
//! and Luhn (`pan`, a leaf the codec may use), and the one redacting, wiping
//! wrapper for all of them (`secret`); key files written whole, private by
//! default (`keyfile`).
//!
//! Owns: how card secrets are hashed, sealed, checked, masked and wiped.
//! (A clear PAN also passes through `iso8583::Message`, the vault's answer
//! and `manage::cards::CardData`; ARCHITECTURE.md lists where.) Must never
//! touch: the store, a socket, a decision.

pub mod cvv;
pub mod keyfile;
pub mod pan;
pub mod pinblock;
pub mod secret;
pub mod secrets;
pub mod vault;
