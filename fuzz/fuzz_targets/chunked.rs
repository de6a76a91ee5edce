//! The chunked body decoder: any split, and encode-then-decode.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gavel::fuzzing::chunked(data));
