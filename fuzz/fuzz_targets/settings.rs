#![no_main]
//! See `surge_engine::fuzzing::settings` for what the bytes are.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| surge_engine::fuzzing::settings(data));
