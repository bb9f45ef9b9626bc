//! ISO 8583 codec.
