#![no_main]
//! See `surge_engine::fuzzing::deflate_frames` for what the bytes are.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| surge_engine::fuzzing::deflate_frames(data));
