#![no_main]
//! cargo-fuzz target `iso8583_decode`; the body lives in `fuzz/src/lib.rs` (shared with
//! the bounded run in `tests/fuzz_bounded.rs`).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    antaca_fuzz::iso8583_decode(data);
});
